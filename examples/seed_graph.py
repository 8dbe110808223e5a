"""The seed README's LangGraph example: `batcher.submit(item)` inside a sync node.

Register both names in langgraph.json (see examples/langgraph.json): the Batcher instance
is the bridge graph, and `graph` is the caller whose thread sleeps until its result is back.
"""

from __future__ import annotations

from datetime import timedelta

from langgraph.graph import END, START, StateGraph

from batch_bridge import Batcher

results_by_batch: dict[str, list[str]] = {}


def submit_batch(items):
    batch_id = f"batch_{len(results_by_batch) + 1}"
    results_by_batch[batch_id] = [f"Processed: {item}" for item in items]
    return batch_id


def poll_batch(batch_id):
    return results_by_batch[batch_id]


# Create a batcher (its name is the graph name in langgraph.json)
batcher = Batcher(
    submit_func=submit_batch,
    poll_func=poll_batch,
    name="seed_batcher",
    max_batch_age=timedelta(seconds=2),
    poll_interval=1,
)


def process_with_batch(state):
    item = state["item"]
    # This will interrupt the graph until the result is available
    result = batcher.submit(item)
    return {"result": result}


builder = StateGraph(dict)
builder.add_node("process", process_with_batch)
builder.add_edge(START, "process")
builder.add_edge("process", END)
graph = builder.compile()
