"""The seed README's OpenAI example, unchanged but for this docstring and the flush keywords.

`AsyncOpenAI()` reads OPENAI_BASE_URL and OPENAI_API_KEY, so it runs against the offline
emulator (`python -m batch_bridge.testing`). Note what it gets wrong, and what
`batch_bridge.providers.openai.OpenAIBatch` does instead: it matches results by position,
but the output file is not in input order, so callers may receive each other's answers;
per-request errors in the error file are dropped; an expired batch loses its finished rows.
"""

import io
import json
from typing import Any, List, TypedDict

from openai import AsyncOpenAI
from batch_bridge import Bridge, wait

# Initialize AsyncOpenAI client
client = AsyncOpenAI()


class TaskBody(TypedDict):
    model: str
    temperature: float
    response_format: dict[str, str]
    messages: List[dict[str, str]]


class Task(TypedDict):
    custom_id: str
    method: str
    url: str
    body: TaskBody


async def submit_openai(tasks: list[list[dict[str, str]]]) -> dict:
    """Submits a batch of tasks to OpenAI using an in-memory JSONL file."""
    # Create in-memory JSONL string from tasks
    jsonl_str = "\n".join(
        json.dumps(
            Task(
                custom_id=str(i),
                method="POST",
                url="/v1/chat/completions",
                body={"model": "gpt-3.5-turbo-0125", "messages": task},
            )
        )
        for i, task in enumerate(tasks)
    )
    
    # Convert to bytes and create in-memory file
    jsonl_bytes = jsonl_str.encode("utf-8")
    in_memory_file = io.BytesIO(jsonl_bytes)

    # Upload the in-memory file for batch processing
    batch_input_file = await client.files.create(file=in_memory_file, purpose="batch")
    batch_input_file_id = batch_input_file.id

    # Create the batch job with a 24h completion window
    batch_object = await client.batches.create(
        input_file_id=batch_input_file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"description": "batch job example"},
    )

    return batch_object.id


async def poll_openai(batch_id: str) -> Any:
    """Polls a batch job and, if complete, retrieves and parses the results."""
    batch_obj = await client.batches.retrieve(batch_id)
    if batch_obj.status == "failed":
        return ValueError(f"Batch {batch_id} failed")
    if batch_obj.status != "completed":
        return None

    result_file_id = batch_obj.output_file_id
    result_content = (await client.files.content(result_file_id)).content

    # Parse JSONL content from the result file into a list of objects
    results = []
    for line in result_content.decode("utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            if (response := data.get("response")) and (body := response.get("body")):
                results.append(body)
            else:
                results.append(data)
    return results


# Create a bridge for OpenAI
bridge = Bridge(
    submit=submit_openai,
    poll=poll_openai,
    max_batch_size=50,
    max_batch_age=2,
    poll_interval=1,
)


# Integration with LangGraph
from langgraph.graph import StateGraph
from typing_extensions import Annotated, TypedDict


def add_messages(old, new):
    if not isinstance(new, list):
        new = [new]
    return (old or []) + new


class State(TypedDict):
    messages: Annotated[list[dict], add_messages]


async def my_model(state: State):
    # This will interrupt the graph until the result is available
    result = await wait(state["messages"], batcher="bridge")
    return {"messages": [result]}


# Build the graph
graph = StateGraph(State).add_node(my_model).add_edge("__start__", "my_model").compile()
