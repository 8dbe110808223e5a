"""A LangChain agent with a tool over many threads, every model call through a provider batch.

Run: `python benchmarks/bench_agent.py --threads 200`.

Serves `examples/agent_with_tools.py` (`create_agent` + `batching_middleware`, its own
`agent_bridge` with the real `OpenAIBatch`) on `langgraph dev` against the offline emulator
(batches take `--provider-latency` seconds). Each thread asks one question: model call, tool
call, model call. Reports wall time, provider batches and requests (from the emulator, through
the `openai` SDK), the requests the plain chat endpoint got (must be none), tokens, and the
price of those tokens at gpt-4o-mini's normal and batch rates.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import click
import openai
from _report import machine, start_callers, write_section
from langgraph_sdk import get_client
from rich.console import Console

from batch_bridge._prices import DEFAULT_PRICES, TokenUsage
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
console = Console()


async def run(url: str, emulator: EmulatorServer, n: int) -> dict[str, float]:
    client = get_client(url=url)
    tag = f"agent-{uuid.uuid4().hex[:8]}"
    questions = [{"messages": [{"role": "user", "content": f"Paris {i}"}]} for i in range(n)]
    started = time.monotonic()
    threads = await start_callers(client, "agent_with_tools", tag, questions)
    while await client.threads.count(metadata={"bench": tag}, status="idle") < n:
        await asyncio.sleep(0.5)
    wall = time.monotonic() - started
    tokens_in = tokens_out = 0
    tool_calls = 0
    for thread_id in threads:
        state = await client.threads.get_state(thread_id)
        for message in state["values"]["messages"]:
            if message["type"] == "ai":
                usage = message.get("usage_metadata") or {}
                tokens_in += usage.get("input_tokens", 0)
                tokens_out += usage.get("output_tokens", 0)
                tool_calls += len(message.get("tool_calls") or [])
    sdk = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="emulator")
    batches = [b async for b in sdk.batches.list(limit=100)]
    stats = emulator.emulator.stats()
    batch, normal = DEFAULT_PRICES["gpt-4o-mini"].cost_usd(
        TokenUsage("gpt-4o-mini", tokens_in, tokens_out)
    )
    return {
        "threads": n,
        "wall_s": wall,
        "batches": len(batches),
        "batched_requests": sum(b.request_counts.total for b in batches if b.request_counts),
        "plain_calls": stats["calls"].get("POST /v1/chat/completions", 0),
        "tool_calls": tool_calls,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "normal_usd": normal,
        "batch_usd": batch,
    }


@click.command()
@click.option("--threads", "n", type=int, default=200)
@click.option("--provider-latency", type=float, default=3.0)
def main(n: int, provider_latency: float) -> None:
    emulator = Emulator(in_progress_s=provider_latency)
    with EmulatorServer(emulator) as emu, tempfile.TemporaryDirectory() as workdir:
        env = {"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": "emulator"}
        graphs = {
            "agent_bridge": "agent_with_tools.py:agent_bridge",
            "agent_with_tools": "agent_with_tools.py:graph",
        }
        with DevServer(Path(workdir), graphs, base_dir=EXAMPLES, env=env) as server:
            r = asyncio.run(run(server.url, emu, n))
    console.log(r)
    write_section(
        "agent",
        "\n".join(
            [
                f"## An agent with a tool over {n} threads",
                "",
                f"`python benchmarks/bench_agent.py --threads {n} --provider-latency "
                f"{provider_latency}` (examples/agent_with_tools.py on `langgraph dev`, "
                f"max_batch_age 2 s, emulated batches taking {provider_latency:g} s); {machine()}.",
                "",
                "| threads | wall s | provider batches | batched requests | plain chat calls | "
                "tool calls | tokens in / out | at normal price | at batch price |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {n} | {r['wall_s']:.1f} | {r['batches']:.0f} | {r['batched_requests']:.0f} | "
                f"{r['plain_calls']:.0f} | {r['tool_calls']:.0f} | "
                f"{r['tokens_in']:.0f} / {r['tokens_out']:.0f} | ${r['normal_usd']:.5f} | "
                f"${r['batch_usd']:.5f} |",
            ]
        ),
    )


if __name__ == "__main__":
    main()
