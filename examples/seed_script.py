"""The seed README's first example: a Batcher used from a plain script, no server needed.

Concurrent `submit` calls from several threads share batches under the same flush rules;
each call blocks until its own result is back. Run: `python examples/seed_script.py`.
"""

from __future__ import annotations

import itertools
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from batch_bridge import Batcher

submitted: dict[str, list[str]] = {}
batch_numbers = itertools.count(1)  # several batches may be submitted at once


def say(line: str) -> None:
    """One write per line: the bridge submits from its own threads while results print."""
    sys.stdout.write(line + "\n")


def submit_batch(items):
    """Submit a batch of items for processing."""
    say(f"Submitting batch of {len(items)} items")
    batch_id = f"batch_{next(batch_numbers)}"
    submitted[batch_id] = list(items)
    return batch_id


def poll_batch(batch_id):
    """Poll for the results of a batch: one result per submitted item, in order."""
    time.sleep(0.2)
    return [f"Processed: {item}" for item in submitted[batch_id]]


batcher = Batcher(
    submit_func=submit_batch,
    poll_func=poll_batch,
    max_batch_size=5,
    max_batch_age=timedelta(seconds=1),
    poll_interval=0.5,
)

if __name__ == "__main__":
    result = batcher.submit("item1")
    say(result)
    with ThreadPoolExecutor(max_workers=12) as pool:
        for line in pool.map(batcher.submit, [f"item{i}" for i in range(2, 14)]):
            say(line)
