"""The demo's two graphs for `batch-bridge demo --provider gemini`.

The same bridge and agent as the project's graphs/bridge.py and graphs/agent.py, through
Gemini Batch Mode (`GeminiBatch`) and `wrap_gemini`, tuned by the same BATCH_BRIDGE_*
environment variables the demo sets. GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY point them
at the emulator, so no key is needed.
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

from google.genai import types
from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.gemini import GeminiBatch, wrap_gemini

MODEL = os.environ.get("BATCH_BRIDGE_DEMO_MODEL", "gemini-2.5-flash")


def _setting(name: str, default: str) -> str:
    return os.environ.get(f"BATCH_BRIDGE_{name}", default)


provider = GeminiBatch(retry_backoff_s=float(_setting("RETRY_BACKOFF_S", "2")))
bridge = Bridge(
    submit=provider.submit,
    poll=provider.poll,
    cancel=provider.cancel,
    release=provider.release,
    max_batch_size=int(_setting("MAX_BATCH_SIZE", "100")),
    max_batch_age=float(_setting("MAX_BATCH_AGE_S", "2")),
    poll_interval=float(_setting("POLL_INTERVAL_S", "1")),
)

client = wrap_gemini(batcher="bridge")  # was: client = genai.Client()


class State(TypedDict, total=False):
    question: str
    answer: str
    usage: dict[str, Any]


async def answer(state: State) -> State:
    response = await client.aio.models.generate_content(
        model=MODEL,
        contents=state["question"],
        config=types.GenerateContentConfig(system_instruction="Answer in one short sentence."),
    )
    counts = response.usage_metadata or types.GenerateContentResponseUsageMetadata()
    # The demo's summary counts tokens under OpenAI's names.
    usage = {
        "prompt_tokens": counts.prompt_token_count or 0,
        "completion_tokens": counts.candidates_token_count or 0,
    }
    return {"answer": response.text or "", "usage": usage}


graph = StateGraph(State).add_node(answer).add_edge(START, "answer").compile()
