"""Serving the sandbox: in the foreground (`payco-batch sandbox`) or in a background thread
(the default target of `payco-batch run`, and the end-to-end tests' fixture)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from batch.errors import SandboxStartError
from batch.sandbox import DEFAULT_HOST
from batch.sandbox.api import Sandbox, SandboxSettings
from batch.sandbox.app import SandboxApp, TransportExposingProtocol

STARTUP_TIMEOUT = 10.0
# Hung requests are still open at shutdown; do not wait for them.
SHUTDOWN_GRACE = 1.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SandboxStartError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(sandbox: Sandbox) -> uvicorn.Server:
    app = SandboxApp(sandbox)
    config = uvicorn.Config(
        app,
        http=TransportExposingProtocol,
        loop="auto",  # uvloop when installed
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    app.stopping = lambda: server.should_exit
    return server


def serve_forever(sandbox: Sandbox, sock: socket.socket) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (uvicorn handles both)."""
    make_server(sandbox).run(sockets=[sock])


class BackgroundSandbox:
    """A sandbox served from a thread of this process, on a free loopback port by default.

    Use as a context manager: the server is always stopped and its socket closed.
    """

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
    ) -> None:
        self.sandbox = Sandbox(settings)
        self._host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    def start(self) -> BackgroundSandbox:
        self._sock = bind(self._host, self._port)
        self.url = url_of(self._sock)
        self._server = make_server(self.sandbox)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="payco-batch-sandbox",
            daemon=True,  # never keep the process alive on its own
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SandboxStartError("the sandbox did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_GRACE + 5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> BackgroundSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
