"""The OpenAI adapter's own CPU cost for one 50,000-request batch, against bare `json`.

Run: `python benchmarks/bench_adapter.py --requests 50000 --rounds 5`.

*Build*: the adapter validates each item, renders its line (`build_request`), packs the lines
into files by endpoint, model and limits (`pack`) and joins the file body; the baseline is
`json.dumps` of the same 50,000 line objects joined. *Match*: the adapter decodes the output
file into rows by custom_id and turns each row into the caller's result (`row_result`); the
baseline is `json.loads` of the same lines, kept in a list (matching must keep them).
Rounds interleave adapter and baseline; medians.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import click
from _report import machine, write_section
from rich.console import Console
from rich.table import Table

from batch_bridge.providers._packing import build_request, custom_id, pack
from batch_bridge.providers._rows import FileRows
from batch_bridge.providers.openai._rows import row_result

console = Console()


def items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You answer in one sentence."},
                    {"role": "user", "content": f"Question number {i}: what is {i} squared?"},
                ],
                "max_tokens": 64,
            },
        }
        for i in range(n)
    ]


def output_lines(ids: list[str]) -> bytes:
    rows = [
        {
            "id": f"batch_req_{i}",
            "custom_id": cid,
            "response": {
                "status_code": 200,
                "request_id": f"req_{i}",
                "body": {
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"{i} squared is {i * i}."},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
                },
            },
            "error": None,
        }
        for i, cid in enumerate(ids)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def timed(func: Callable[[], Any]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


@click.command()
@click.option("--requests", "n", type=int, default=50_000)
@click.option("--rounds", type=int, default=5)
def main(n: int, rounds: int) -> None:
    payloads = items(n)
    ids = [custom_id("bb_bench", i) for i in range(n)]
    lines = [
        {"custom_id": cid, "method": "POST", "url": p["url"], "body": p["body"]}
        for cid, p in zip(ids, payloads, strict=True)
    ]
    output = output_lines(ids)

    def adapter_build() -> None:
        built = [
            build_request(i, cid, p) for i, (cid, p) in enumerate(zip(ids, payloads, strict=True))
        ]
        requests = [r for r in built if not isinstance(r, str)]
        chunks = pack(
            requests, max_requests=50_000, max_bytes=200 << 20, token_budget=lambda m: None
        )
        for chunk in chunks:
            chunk.content()

    def json_build() -> None:
        "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()

    def adapter_match() -> None:
        rows = FileRows(output)  # indexed now, each row decoded as it is read
        for cid in ids:
            row_result(rows[cid], cid)

    def json_match() -> None:
        [json.loads(line) for line in output.splitlines()]  # kept, as matching must

    figures: dict[str, list[float]] = {k: [] for k in ("ab", "jb", "am", "jm")}
    adapter_build()  # warm-up
    for _ in range(rounds):
        figures["ab"].append(timed(adapter_build))
        figures["jb"].append(timed(json_build))
        figures["jm"].append(timed(json_match))
        figures["am"].append(timed(adapter_match))
    med = {k: statistics.median(v) for k, v in figures.items()}
    build_ratio, match_ratio = med["ab"] / med["jb"], med["am"] / med["jm"]
    table = Table("step", "adapter s", "bare json s", "ratio")
    table.add_row("build file", f"{med['ab']:.3f}", f"{med['jb']:.3f}", f"{build_ratio:.2f}")
    table.add_row("match output", f"{med['am']:.3f}", f"{med['jm']:.3f}", f"{match_ratio:.2f}")
    console.print(table)
    write_section(
        "adapter",
        "\n".join(
            [
                f"## Adapter throughput: {n:,} chat requests",
                "",
                f"`python benchmarks/bench_adapter.py --requests {n} --rounds {rounds}`; "
                f"{machine()}. Medians of {rounds} interleaved rounds; input file "
                f"{sum(len(json.dumps(x)) + 1 for x in lines) / 1e6:.1f} MB, output "
                f"{len(output) / 1e6:.1f} MB.",
                "",
                "| step | adapter s | bare `json` s | ratio (goal ≤ 1.25) |",
                "|---|---:|---:|---:|",
                f"| build the input file | {med['ab']:.3f} | {med['jb']:.3f} | "
                f"**{build_ratio:.2f}** |",
                f"| match output lines back | {med['am']:.3f} | {med['jm']:.3f} | "
                f"**{match_ratio:.2f}** |",
            ]
        ),
    )


if __name__ == "__main__":
    main()
