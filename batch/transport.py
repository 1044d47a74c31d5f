"""The HTTP transport under httpx: aiohttp's connection pool, with errors that tell the truth.

Why not httpx's own transport (httpcore): its connection pool is CPU-bound at the
concurrency a batch needs. Measured on a 2-core machine (2026-12-04, medians of 3, the
server on the other core): with 50 ms of server latency and 50 requests in flight, httpcore
reached 0.16 of the 1,000 requests/s possible, 73% of its CPU in
`_assign_requests_to_connections`, whose cost grows with the number of connections; httpx
on aiohttp's pool (the `httpx-aiohttp` package) keeps the latency-bound rate at the
network's limit (figures in docs/benchmarks.md). The rest of the tool still speaks only
httpx, so respx and `httpx.MockTransport` keep working in the tests.

What this module adds to `httpx_aiohttp.AiohttpTransport` is the error mapping. The
package turns every `aiohttp.ClientConnectionError` into `httpx.ConnectTimeout`, including
a connection lost after the request was written. The client reads ConnectTimeout and
ConnectError as "never sent, safe to send again", so that mapping would make a possibly
applied status change look unsent. Here only failures that provably happened before a
byte left (no connection could be made or taken from the pool in time) are connect errors;
every other failure is a read timeout or a protocol error, which the client counts as
"may have been applied".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# What a failed request can raise, from httpx-aiohttp (translated) or aiohttp (passed through).
_FAILURES = (httpx.TransportError, aiohttp.ClientError, TimeoutError)


def open_transport(*, connections: int) -> httpx.AsyncBaseTransport:
    """A transport with at most `connections` connections, every one of them kept alive."""
    return _HonestAiohttpTransport(
        verify=True,
        # The environment's proxy and certificate settings stay out of payment calls.
        trust_env=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


class _HonestAiohttpTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except _FAILURES as error:
            raise as_httpx_error(error, request) from error
        # The body is read after this returns, by httpx: its errors need the same mapping.
        response.stream = _HonestStream(response.stream, request)  # type: ignore[arg-type]
        return response


class _HonestStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except _FAILURES as error:
            raise as_httpx_error(error, self._request) from error

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except _FAILURES as error:
            raise as_httpx_error(error, self._request) from error


def as_httpx_error(error: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that says truthfully how far a failed request got.

    `error` is an aiohttp error, or httpx-aiohttp's translation of one (which keeps the
    original as its `__cause__`).
    """
    cause = error
    if isinstance(error, httpx.TransportError) and isinstance(error.__cause__, BaseException):
        cause = error.__cause__
    message = str(cause) or type(cause).__name__
    # Order matters: ConnectionTimeoutError is a ServerTimeoutError, and ClientConnectorError
    # is a ClientConnectionError.
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        # No connection was made (or none was free) in time: the request never left.
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(cause, aiohttp.ClientConnectorError):
        # Refused, unreachable, DNS, TLS handshake or certificate: nothing was sent.
        return httpx.ConnectError(message, request=request)
    if isinstance(cause, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(cause, asyncio.TimeoutError):
        # The request was sent and the answer did not come in time.
        return httpx.ReadTimeout(message, request=request)
    if isinstance(cause, aiohttp.ClientPayloadError):
        return httpx.ReadError(message, request=request)
    if isinstance(cause, aiohttp.ClientError):
        # The connection broke or closed once the request was on its way.
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(error, httpx.TransportError) and not isinstance(
        error, (httpx.ConnectError, httpx.ConnectTimeout)
    ):
        return error
    # An httpx connect error without an aiohttp cause to prove it: assume the worst.
    return httpx.RemoteProtocolError(message, request=request)
