"""The bridge graph: one thread per bridge; each run is a tick (`tick.py`).

The graph is one node that loops while work is due within seconds; the server's store,
its in-process client and the wall clock are handed to each tick here.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.config import get_config, get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from batch_bridge import _client
from batch_bridge._config import Reliability
from batch_bridge._prices import DEFAULT_TABLE, PriceTable
from batch_bridge.bridge.calls import Provider
from batch_bridge.bridge.intake import QueueView
from batch_bridge.bridge.state import BridgeState, TickInput
from batch_bridge.bridge.tick import Tick
from batch_bridge.types import FlushPolicy


def _run_id(config: Any) -> str:
    return str(
        config.get("run_id")
        or config["configurable"].get("run_id")
        or config.get("metadata", {}).get("run_id")
        or ""
    )


def build_bridge_graph(
    provider: Provider,
    policy: FlushPolicy,
    reliability: Reliability,
    name: str,
    prices: PriceTable = DEFAULT_TABLE,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled graph that langgraph.json registers; its graph id names the bridge."""

    async def tick(state: BridgeState) -> BridgeState:
        config = get_config()
        bridge = config["configurable"].get("graph_id") or name
        seen = QueueView(int(state.get("pending") or 0), state.get("oldest_pending_at"))
        work = Tick(
            bridge,
            provider,
            policy,
            reliability,
            seen,
            store=get_store(),
            client=_client.client_for(None),
            client_for=_client.callback_client,
            clock=time.time,
            prices=prices,
        ).run(state, _run_id(config))
        return await _client.as_deployment(work)

    def next_pass(state: BridgeState) -> str:
        return "tick" if state.get("continue_in_s") is not None else END

    builder = StateGraph(BridgeState, input_schema=TickInput)
    builder.add_node("tick", tick)
    builder.add_edge(START, "tick")
    builder.add_conditional_edges("tick", next_pass, ["tick", END])
    return builder.compile(name=name)
