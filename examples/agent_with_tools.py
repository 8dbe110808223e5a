"""A LangChain agent with a tool whose every model call goes through OpenAI's Batch API.

`create_agent` runs its usual loop (model, tool, model, ...); `batching_middleware` sends each
model call to the bridge graph `agent_bridge` as one batch request, and the thread sleeps
until the batch answers. Register both graphs in langgraph.json (see examples/langgraph.json).

`ChatOpenAI()` and `OpenAIBatch()` read OPENAI_BASE_URL and OPENAI_API_KEY, so this runs
against the offline emulator (`batch-bridge emulator`), which calls the first tool (its
string arguments are the user's text, its numbers 1) and then answers "Echo: <the tool's
result>".
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from batch_bridge import Bridge
from batch_bridge.integrations.langchain import batching_middleware
from batch_bridge.providers.openai import OpenAIBatch

provider = OpenAIBatch()

# Flushes after 2 s for trying it out; at a real provider, wait longer to fill batches.
agent_bridge = Bridge(
    submit=provider.submit,
    poll=provider.poll,
    cancel=provider.cancel,
    release=provider.release,
    name="agent_bridge",
    max_batch_age=2,
    poll_interval=1,
)


@tool
def forecast(city: str, days: int) -> str:
    """The weather in `city` for the next `days` days."""
    return f"{city}: sunny for {days} day(s)."


graph = create_agent(
    model=ChatOpenAI(model="gpt-4o-mini"),
    tools=[forecast],
    system_prompt="Answer weather questions with the forecast tool.",
    middleware=[batching_middleware(batcher="agent_bridge")],
)
