"""The aiohttp-backed transport: what each way of failing is called, and so whether it may land.

The client treats ConnectError and ConnectTimeout as "never sent" and everything else as
"may have been applied", so the mapping decides whether a row can be sent again safely.
Real sockets on 127.0.0.1 where the failure is instant; the timeouts by their aiohttp error.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import pytest
import trustme

from batch.client import Credentials, IamportClient, open_http_client
from batch.clock import SystemClock
from batch.ratelimit import RateLimiter
from batch.transport import as_httpx_error, open_transport

REQUEST = httpx.Request("POST", "http://127.0.0.1/payco/orders/status/imp_1")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def post_to(handler: Handler) -> tuple[httpx.Response | Exception, list[bytes]]:
    """POST once through the real transport to a one-off server running `handler`."""
    received: list[bytes] = []

    async def serve(reader, writer):
        received.append(await read_request(reader))
        await handler(reader, writer)
        writer.close()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with open_http_client(
                f"http://127.0.0.1:{port}", concurrency=2, timeout=5
            ) as http:
                try:
                    return await http.post("/payco/orders/status/imp_1", json={"status": "X"})
                except Exception as error:  # noqa: BLE001 - the test looks at which one
                    return error
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), received


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_answer_comes_through_with_its_status_headers_and_body():
    async def answer(reader, writer):
        body = '{"code":0,"message":"처리","response":{"status":"X"}}'.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Retry-After: 3\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    response, received = post_to(answer)

    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.headers["retry-after"] == "3"
    assert response.json()["message"] == "처리"
    assert received[0].startswith(b"POST /payco/orders/status/imp_1 HTTP/1.1\r\n")
    assert b'{"status":"X"}' in received[0] or b'{"status": "X"}' in received[0]
    assert b"user-agent: payco-batch/" in received[0].lower()


def test_a_connection_closed_after_the_request_arrived_is_not_called_a_connect_error():
    async def hang_up(reader, writer):
        pass  # the request was read; close without a word

    error, received = post_to(hang_up)

    assert len(received) == 1  # the server did get the request: it may have acted on it
    assert isinstance(error, httpx.TransportError)
    assert not isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))


def test_a_body_cut_short_is_a_read_error_not_a_connect_error():
    async def cut_short(reader, writer):
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"code":0')
        await writer.drain()

    error, _ = post_to(cut_short)

    assert isinstance(error, httpx.TransportError)
    assert not isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))


def test_a_refused_connection_is_a_connect_error():
    async def main():
        async with httpx.AsyncClient(transport=open_transport(connections=1)) as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(f"http://127.0.0.1:{free_port()}/x", json={})

    asyncio.run(main())


def test_the_client_calls_a_lost_answer_maybe_applied_and_a_refusal_not():
    """End to end through IamportClient: the journal's 'unknown' depends on this flag."""

    async def hang_up_after_token(reader, writer):
        pass

    async def main():
        clock = SystemClock()
        refused = free_port()
        async with open_http_client(f"http://127.0.0.1:{refused}", concurrency=1, timeout=5) as h:
            client = IamportClient(h, Credentials("k", "s"), RateLimiter(0, clock), clock)
            # Pretend a token is cached, so that the status call itself is what fails.
            client._tokens._token, client._tokens._refresh_at = "t", float("inf")
            refused_answer = await client.change_status("imp_1", "DELIVERY_START")

        async def serve(reader, writer):
            await read_request(reader)
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with open_http_client(f"http://127.0.0.1:{port}", concurrency=1, timeout=5) as h:
                client = IamportClient(h, Credentials("k", "s"), RateLimiter(0, clock), clock)
                client._tokens._token, client._tokens._refresh_at = "t", float("inf")
                lost_answer = await client.change_status("imp_1", "DELIVERY_START")
        finally:
            server.close()
            await server.wait_closed()
        return refused_answer, lost_answer

    refused_answer, lost_answer = asyncio.run(main())

    assert refused_answer.retryable and not refused_answer.maybe_applied
    assert lost_answer.retryable and lost_answer.maybe_applied


@pytest.mark.parametrize(
    ("aiohttp_error", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("pool or connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError("read"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset by peer"), httpx.RemoteProtocolError),
        (aiohttp.ClientConnectionResetError("closing transport"), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.ReadError),
        (aiohttp.InvalidURL("x"), httpx.UnsupportedProtocol),
    ],
)
def test_aiohttp_errors_map_to_what_they_mean(aiohttp_error, expected):
    mapped = as_httpx_error(aiohttp_error, REQUEST)

    assert type(mapped) is expected
    assert mapped.request is REQUEST


@pytest.mark.parametrize("raw", [aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError()])
def test_httpx_aiohttps_connect_timeout_for_a_lost_connection_is_corrected(raw):
    """httpx-aiohttp 0.2 calls every ClientConnectionError a ConnectTimeout."""
    translated = httpx.ConnectTimeout(str(raw))
    translated.__cause__ = raw

    assert not isinstance(
        as_httpx_error(translated, REQUEST), (httpx.ConnectTimeout, httpx.ConnectError)
    )


def test_a_connect_error_with_no_cause_to_prove_it_is_assumed_to_have_been_sent():
    assert isinstance(as_httpx_error(httpx.ConnectTimeout("?"), REQUEST), httpx.RemoteProtocolError)


def test_a_connector_error_stays_a_connect_error():
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        OSError(111, "Connection refused"),
    )
    translated = httpx.ConnectTimeout(str(refused))
    translated.__cause__ = refused

    assert type(as_httpx_error(translated, REQUEST)) is httpx.ConnectError


def test_a_server_whose_certificate_is_not_trusted_is_refused_before_anything_is_sent():
    """TLS is always verified (against certifi's roots): a self-made CA is not enough."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    received: list[bytes] = []

    async def serve(reader, writer):
        try:
            received.append(await read_request(reader))
        except (asyncio.IncompleteReadError, ssl.SSLError, ConnectionError):
            pass  # the client gave up during the handshake, as it should
        writer.close()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            async with open_http_client(f"https://127.0.0.1:{port}", concurrency=1, timeout=5) as h:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await h.post("/payco/orders/status/imp_1", json={"status": "X"})
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())
    assert received == []
