"""OpenAI bridges against the emulator, one per failure mode, and a wrapped-client agent.

Each bridge's `OpenAIBatch(metadata=...)` passes emulator knobs per batch, so one emulator
serves them all. Item text markers: `[[fail]]` (error-file line), `[[status:400]]`.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

FAST = {"max_batch_age": 1, "poll_interval": 1}


def _bridge(
    name: str, *, max_batch_size: int = 1000, metadata: dict[str, str] | None = None, **options: Any
) -> Bridge:
    """Batches carry metadata {"test_bridge": name} so tests can find theirs in the emulator."""
    provider = OpenAIBatch(
        retry_backoff_s=0, metadata={"test_bridge": name, **(metadata or {})}, **options
    )
    return Bridge(
        submit=provider.submit,
        poll=provider.poll,
        release=provider.release,
        name=name,
        max_batch_size=max_batch_size,
        **FAST,
    )


oa_bridge = _bridge("oa_bridge")
oa_expire = _bridge(
    "oa_expire",
    max_attempts=2,
    metadata={"emulator_in_progress_s": "5", "emulator_expire_after_s": "0.5"},
)
oa_cancel = _bridge("oa_cancel", max_attempts=2, metadata={"emulator_in_progress_s": "30"})
oa_invalid = _bridge("oa_invalid", max_attempts=2, metadata={"emulator_max_requests_per_file": "2"})
oa_tokens = _bridge("oa_tokens", enqueued_token_budget=120)
oa_token_limit = _bridge(
    "oa_token_limit",
    max_batch_size=3,
    max_attempts=8,
    metadata={"emulator_enqueued_token_limit": "100"},
)
oa_late = _bridge("oa_late", metadata={"emulator_output_file_delay_s": "2"})
oa_split = _bridge("oa_split", max_requests_per_file=3, max_bytes_per_file=600)


class State(TypedDict, total=False):
    text: str
    bridge: str
    endpoint: str
    model: str
    answer: Any
    usage: dict[str, Any]


async def ask(state: State) -> State:
    client = wrap_openai(batcher=state.get("bridge", "oa_bridge"))
    model = state.get("model", "gpt-4o-mini")
    endpoint = state.get("endpoint", "chat")
    if endpoint == "responses":
        response = await client.responses.create(model=model, input=state["text"])
        return {"answer": response.output_text}
    if endpoint == "embeddings":
        embedding = await client.embeddings.create(
            model="text-embedding-3-small", input=state["text"]
        )
        return {"answer": len(embedding.data[0].embedding)}
    completion = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": state["text"]}]
    )
    return {
        "answer": completion.choices[0].message.content,
        "usage": completion.usage.model_dump() if completion.usage else {},
    }


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
