"""The sandbox over real loopback HTTP: what only the server does (bytes, waits, drops)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from batch.sandbox.api import MESSAGES, Sandbox, SandboxSettings
from batch.sandbox.app import SandboxApp
from batch.sandbox.faults import FaultSettings
from batch.sandbox.server import BackgroundSandbox

CREDENTIALS = {"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"}
STATUS_PATH = "/payco/orders/status"


def served(**faults) -> BackgroundSandbox:
    return BackgroundSandbox(SandboxSettings(faults=FaultSettings(**faults)))


def stats(server: BackgroundSandbox) -> dict:
    response = httpx.get(server.url + "/__sandbox__/stats", timeout=2)
    assert response.status_code == 200
    return response.json()


def poll_stats(server: BackgroundSandbox, done, tries: int = 100) -> dict:
    """The stats once `done(stats)` holds, polling briefly; the last ones if it never does."""
    for _ in range(tries):
        current = stats(server)
        if done(current):
            return current
        time.sleep(0.02)
    return current


@pytest.fixture(scope="module")
def client():
    """A client of one fault-free sandbox shared by this module's plain tests."""
    with served() as server, httpx.Client(base_url=server.url, timeout=2) as client:
        token = client.post("/users/getToken", json=CREDENTIALS).json()["response"]
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        yield client


def test_status_call_round_trip(client):
    response = client.post(f"{STATUS_PATH}/imp_11", json={"status": "DELIVERY_START"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"code": 0, "message": None, "response": {"status": "DELIVERY_START"}}


def test_audit_endpoints_over_http(client):
    client.post(f"{STATUS_PATH}/imp_21", data={"status": "CANCELED"})
    order = client.get("/__sandbox__/orders/imp_21")
    assert order.status_code == 200
    assert order.json()["state"] == "CANCELED" and order.json()["requests"] == 1
    stats = client.get("/__sandbox__/stats").json()
    assert stats["requests_by_path"][STATUS_PATH]["200"] >= 1
    assert client.post("/__sandbox__/stats").status_code == 405


def test_drop_closes_the_connection_and_the_server_keeps_serving():
    with served(drop_rate=1.0) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(server.url + "/users/getToken", json=CREDENTIALS, timeout=2)
        current = poll_stats(server, lambda s: s["in_flight"] == 0)
    assert current["dropped"] == 1
    assert current["requests_by_path"] == {"/users/getToken": {"dropped": 1}}
    assert current["tokens_issued"] == 1  # processed, then dropped


def test_hung_request_times_out_and_is_audited_as_abandoned():
    with served(hang_rate=1.0, hang_seconds=5) as server:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/users/getToken", json=CREDENTIALS, timeout=0.3)
        assert time.monotonic() - started < 2
        current = poll_stats(server, lambda s: s["requests_by_path"])
    assert current["requests_by_path"] == {"/users/getToken": {"abandoned": 1}}
    assert current["hung"] == 1 and current["in_flight"] == 0


def test_latency_delays_the_answer():
    with served(latency_ms=100) as server, httpx.Client(base_url=server.url, timeout=2) as client:
        client.get("/__sandbox__/stats")  # connect first: time only the request
        started = time.monotonic()
        response = client.post("/users/getToken", json=CREDENTIALS)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.1


def test_error_rate_answers_5xx_envelopes():
    with served(error_rate=1.0, seed=2) as server:
        response = httpx.post(server.url + "/users/getToken", json=CREDENTIALS, timeout=2)
    assert response.status_code in (500, 503)
    assert response.headers["content-type"].startswith("application/json")
    assert "charset=utf-8" in response.headers["content-type"]
    body = response.json()
    assert body == {"code": -1, "message": MESSAGES[response.status_code], "response": None}


def test_throttle_answers_429_with_retry_after():
    with served(throttle=1) as server, httpx.Client(base_url=server.url, timeout=2) as client:
        first = client.post("/users/getToken", json=CREDENTIALS)
        second = client.post("/users/getToken", json=CREDENTIALS)
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["code"] == -1


def open_hung_request(server: BackgroundSandbox) -> socket.socket:
    """Send a getToken request that will hang, and keep its connection open."""
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=2)
    body = b'{"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"}'
    sock.sendall(
        b"POST /users/getToken HTTP/1.1\r\nHost: sandbox\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    poll_stats(server, lambda s: s["in_flight"] == 1)
    return sock


def test_server_stops_promptly_with_a_hung_request_open():
    server = served(hang_rate=1.0, hang_seconds=30).start()
    sock = None
    try:
        sock = open_hung_request(server)
        assert stats(server)["in_flight"] == 1
    finally:
        started = time.monotonic()
        server.__exit__(None, None, None)
        stopped_in = time.monotonic() - started
        if sock is not None:
            sock.close()
    assert stopped_in < 3
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/__sandbox__/stats", timeout=0.5)


def test_request_cancelled_at_shutdown_is_not_audited_as_answered():
    # At the ASGI level rather than over HTTP: a real shutdown waits out uvicorn's 1 s grace.
    sandbox = Sandbox(SandboxSettings(faults=FaultSettings(hang_rate=1.0, hang_seconds=30)))
    sent: list[dict] = []

    async def scenario() -> None:
        messages = [{"type": "http.request", "body": json.dumps(CREDENTIALS).encode()}]
        forever = asyncio.Event()

        async def receive() -> dict:
            if messages:
                return messages.pop()
            await forever.wait()  # the client keeps waiting
            raise AssertionError("unreachable")

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/users/getToken", "headers": []}
        task = asyncio.create_task(SandboxApp(sandbox)(scope, receive, send))
        for _ in range(100):
            if sandbox.audit.in_flight:
                break
            await asyncio.sleep(0)
        task.cancel()  # what uvicorn does to tasks still running after its grace period
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert sent == [] and sandbox.stats()["hung"] == 1
    assert "200" not in sandbox.stats()["requests_by_path"].get("/users/getToken", {})


def test_two_servers_get_different_free_ports():
    with served() as one, served() as two:
        ports = {urlsplit(one.url).port, urlsplit(two.url).port}
        assert urlsplit(one.url).hostname == "127.0.0.1"
        assert len(ports) == 2 and 0 not in ports
        assert stats(one)["requests"] == 0 and stats(two)["requests"] == 0
