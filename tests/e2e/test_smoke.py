from __future__ import annotations

from langgraph_sdk import get_client

from tests.e2e.helpers import finished, start


async def test_one_caller_gets_its_result(dev_server):
    client = get_client(url=dev_server.url)
    (thread_id,) = await start(client, "agent", [{"item": "hello"}])
    (thread,) = await finished(client, [thread_id])
    assert thread["status"] == "idle", dev_server.log()[-3000:]
    assert thread["values"]["result"]["echo"] == "hello"
