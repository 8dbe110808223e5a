"""Offline test doubles for your own tests: the OpenAI, Anthropic and Gemini batch API
emulator and a thread server for it, a real `langgraph dev` runner, an in-process fake
provider, and the pytest plugin (`batch_bridge.testing.pytest_plugin`, registered on install).

```python
from batch_bridge.testing import Emulator, EmulatorServer, FakeProvider

with EmulatorServer(Emulator(in_progress_s=0.2)) as server:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")

fake = FakeProvider()
bridge = Bridge(submit=fake.submit, poll=fake.poll)
```
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "batch_bridge.testing needs its server parts: pip install 'batch-bridge[testing]'"
    ) from exc

from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing.devserver import DevServer
from batch_bridge.testing.emulator import Emulator
from batch_bridge.testing.fake import FakeProvider
from batch_bridge.testing.server import EmulatorServer

__all__ = ["DevServer", "Emulator", "EmulatorServer", "FakeProvider", "Knobs"]
