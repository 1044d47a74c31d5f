"""The sandbox as a raw ASGI app on uvicorn (httptools, uvloop when installed).

A plain ASGI callable rather than a framework: the sandbox has five routes, and without a
framework's request objects uvicorn serves a minimal status call about twice as fast as
Starlette or aiohttp.web did on one core (26,000 against 13,500 requests/s, measured when the
stack was chosen). The whole sandbox answers about 12,000 status calls a second on one core
(docs/benchmarks.md), so it is not what the client benchmarks measure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from batch.sandbox.api import SANDBOX_PREFIX, Reply, Sandbox

TRANSPORT_KEY = "payco_batch.transport"
JSON_TYPE = (b"content-type", b"application/json; charset=utf-8")
# How often a hung request looks whether the server is shutting down.
HANG_POLL = 0.1


class TransportExposingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, also handing the app its connection's transport.

    ASGI has no way to close a connection without answering; the drop fault needs one.
    This relies on uvicorn's HttpToolsProtocol internals (`scope`, `transport`), hence the
    pinned uvicorn range in pyproject.toml and the test that exercises it.
    """

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_KEY: self.transport}


class SandboxApp:
    """ASGI: move bytes between uvicorn and a Sandbox; wait, hang or drop as it says."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        # Set by the server: true once it is shutting down, so hung requests let go at once
        # instead of holding up the shutdown until uvicorn cancels them.
        self.stopping: Callable[[], bool] = lambda: False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path.startswith(SANDBOX_PREFIX):
            await _send(send, self.sandbox.inspect(method, path))
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        body = await _read_body(receive)
        reply = self.sandbox.handle(method, path, headers, body)
        assert reply is not None  # only /__sandbox__ paths give None, handled above
        outcome: int | str = reply.status
        try:
            if reply.hang:
                ended = await self._hang(receive, reply.delay)
                if ended == "stopping":
                    outcome = "cancelled"
                    await _drop(scope, receive)
                    return
                if ended == "disconnected":
                    outcome = "abandoned"  # the client gave up waiting, as intended
                    return
            elif reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.drop:
                outcome = "dropped"
                self.sandbox.audit.dropped += 1
                await _drop(scope, receive)
                return
            await _send(send, reply)
        except asyncio.CancelledError:
            # uvicorn cancels what is still running once its shutdown grace is over (a hung
            # request, typically): nothing was sent, so do not count it as answered. Ending
            # quietly here spares the console uvicorn's traceback for a cancelled app.
            outcome = "cancelled"
        finally:
            self.sandbox.audit.answered(reply.path, outcome)

    async def _hang(self, receive: Any, seconds: float) -> str:
        """Hold a request: "disconnected", "stopping" or "elapsed", whichever comes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        disconnect = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            while not disconnect.done():
                if self.stopping():
                    return "stopping"
                left = deadline - loop.time()
                if left <= 0:
                    return "elapsed"
                await asyncio.wait({disconnect}, timeout=min(left, HANG_POLL))
            return "disconnected"
        finally:
            disconnect.cancel()


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _send(send: Any, reply: Reply) -> None:
    body = reply.encode()
    headers = [JSON_TYPE, (b"content-length", str(len(body)).encode())]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _wait_for_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _drop(scope: dict, receive: Any) -> None:
    """Close the connection without sending a byte of an answer."""
    scope["extensions"][TRANSPORT_KEY].close()
    # Wait until uvicorn has seen the connection go, or it would send a 500 of its own.
    await _wait_for_disconnect(receive)
