"""Offline test doubles: an OpenAI Batch API emulator and a thread server for it.

```python
from batch_bridge.testing import Emulator, EmulatorServer

with EmulatorServer(Emulator(in_progress_s=0.2)) as server:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
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
from batch_bridge.testing.server import EmulatorServer

__all__ = ["DevServer", "Emulator", "EmulatorServer", "Knobs"]
