"""The demo's two graphs for `batch-bridge demo --provider anthropic`.

The same bridge and agent as the project's graphs/bridge.py and graphs/agent.py, through
Anthropic Message Batches (`AnthropicBatch`) and `wrap_anthropic`, tuned by the same
BATCH_BRIDGE_* environment variables the demo sets. ANTHROPIC_BASE_URL and
ANTHROPIC_API_KEY point them at the emulator, so no key is needed.
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.anthropic import AnthropicBatch, wrap_anthropic

MODEL = os.environ.get("BATCH_BRIDGE_DEMO_MODEL", "claude-haiku-4-5")


def _setting(name: str, default: str) -> str:
    return os.environ.get(f"BATCH_BRIDGE_{name}", default)


provider = AnthropicBatch(retry_backoff_s=float(_setting("RETRY_BACKOFF_S", "2")))
bridge = Bridge(
    submit=provider.submit,
    poll=provider.poll,
    cancel=provider.cancel,
    release=provider.release,
    fallback=provider.fallback,  # callers that pass max_wait= get an answer by then
    max_batch_size=int(_setting("MAX_BATCH_SIZE", "100")),
    max_batch_age=float(_setting("MAX_BATCH_AGE_S", "2")),
    poll_interval=float(_setting("POLL_INTERVAL_S", "1")),
)

client = wrap_anthropic(batcher="bridge")  # was: client = AsyncAnthropic()


class State(TypedDict, total=False):
    question: str
    answer: str
    usage: dict[str, Any]


async def answer(state: State) -> State:
    message = await client.messages.create(
        model=MODEL,
        max_tokens=256,
        system="Answer in one short sentence.",
        messages=[{"role": "user", "content": state["question"]}],
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    # The demo's summary counts tokens under OpenAI's names.
    usage = {
        "prompt_tokens": message.usage.input_tokens,
        "completion_tokens": message.usage.output_tokens,
    }
    return {"answer": text, "usage": usage}


graph = StateGraph(State).add_node(answer).add_edge(START, "answer").compile()
