"""Serve an `Emulator` over real HTTP from a background thread.

Tests that drive the real `openai` SDK need a socket, not an ASGI app. The socket is bound
before uvicorn starts, so port 0 resolves to a free port that is known at once.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from batch_bridge.testing.emulator import Emulator

__all__ = ["EmulatorServer", "bind_socket", "server_config"]

_START_TIMEOUT_S = 5.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one).

    It listens before uvicorn takes it over, so a client told the URL can connect at once:
    early connections wait in the backlog instead of being refused.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def server_config(emulator: Emulator, *, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn settings both the thread server and the CLI use."""
    return uvicorn.Config(
        emulator.app,
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
    )


class EmulatorServer:
    """Runs an emulator under uvicorn in a daemon thread; use it as a context manager.

    `url` is the server root, `base_url` the value for `openai.OpenAI(base_url=...)` and
    `anthropic_base_url` the one for `anthropic.Anthropic(base_url=...)`.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ):
        self.emulator = emulator if emulator is not None else Emulator()
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port; only known once the server has started."""
        if self._port is None:
            raise RuntimeError("EmulatorServer is not running; call start() or use `with`")
        return self._port

    @property
    def url(self) -> str:
        """The server root, e.g. `http://127.0.0.1:PORT`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI `base_url`: the root, the profile's prefix (Azure: `/openai`), `/v1`."""
        return self.url + self.emulator.profile.path_prefix + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The Anthropic `base_url`: the root itself (the SDK adds `/v1/messages...`)."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """The `google-genai` `HttpOptions(base_url=...)`: the root plus `/gemini`."""
        return self.url + "/gemini"

    def start(self) -> EmulatorServer:
        """Bind, start serving and wait until uvicorn accepts connections."""
        if self._thread is not None:
            raise RuntimeError("EmulatorServer is already running")
        sock = bind_socket(self.host, self._requested_port)
        server = uvicorn.Server(server_config(self.emulator, log_level=self._log_level))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="emulator-server", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(_START_TIMEOUT_S)
                sock.close()
                raise RuntimeError(f"emulator server failed to start on {self.host}")
            time.sleep(0.005)
        self._port = sock.getsockname()[1]
        self._server, self._thread, self._socket = server, thread, sock
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread; safe to call twice."""
        if self._server is None or self._thread is None or self._socket is None:
            return
        self._server.should_exit = True
        self._thread.join(_START_TIMEOUT_S)
        self._socket.close()
        self._server, self._thread, self._socket, self._port = None, None, None, None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
