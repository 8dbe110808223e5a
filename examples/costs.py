"""What a batch cost and saved, in script mode: OpenAI's Batch API (the emulator here, so no
key is needed) behind a `Bridge`, then `bridge.usage()`. Run: `python examples/costs.py`.

On a server the same numbers are per caller thread: `await usage(client, thread_id)`.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import openai

from batch_bridge import Bridge, ModelPrice
from batch_bridge.providers.openai import OpenAIBatch
from batch_bridge.testing import Emulator, EmulatorServer


def question(model: str, text: str) -> dict[str, object]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"url": "/v1/chat/completions", "body": body}


def main() -> None:
    with EmulatorServer(Emulator(in_progress_s=0.5)) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="emulator")
        provider = OpenAIBatch(client)
        bridge = Bridge(
            submit=provider.submit,
            poll=provider.poll,
            release=provider.release,
            max_batch_size=3,
            max_batch_age=1,
            poll_interval=0.5,
            prices={"my-finetune": ModelPrice(input=0.30, output=1.20)},  # beside the defaults
        )
        questions = [
            question("gpt-4o-mini", "What does a batch API cost?"),
            question("gpt-4o-mini-2024-07-18", "And a dated snapshot?"),  # priced as gpt-4o-mini
            question("my-finetune", "Priced by the override."),
            question("someone-elses-model", "No price: counted in tokens only."),
        ]
        with ThreadPoolExecutor(len(questions)) as pool:
            answers = list(pool.map(bridge.submit, questions))
        print([a["choices"][0]["message"]["content"] for a in answers])
        report = bridge.usage()
        print(json.dumps(report, indent=2))
        assert report["items"] == 4 and report["unpriced_models"] == ["someone-elses-model"]
        assert report["saved_usd"] > 0


if __name__ == "__main__":
    main()
