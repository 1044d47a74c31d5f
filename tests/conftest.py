"""Shared test helpers: a fake clock, input-file writers and respx routes for a fake iamport."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import settings

# CI replays the same examples every time (a red build must mean a change broke something);
# a developer's run explores new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

KST = timezone(timedelta(hours=9))
API_URL = "https://api.iamport.test"
SECRET = "s3cr3t-DO-NOT-LEAK-9f8e7d"
TOKEN = "tok-DO-NOT-LEAK-1a2b3c"


class FakeClock:
    """A clock that never waits: `sleep` moves time forward at once and records the wait.

    With several tasks sleeping at once, time advances by the sum of their sleeps rather than
    the longest; tests that look at exact timings run one task, or use `sleeps`.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.t = 0.0
        self.start = start or datetime(2026, 12, 4, 18, 0, 0, tzinfo=KST)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def write_csv(tmp_path: Path):
    """write_csv(text, name="orders.csv", encoding="utf-8") -> Path of a new input file."""

    def write(text: str, name: str = "orders.csv", encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        return path

    return write


class FakeIamport:
    """An iamport stand-in for httpx.MockTransport: tokens, scripted answers, a request log.

    `script[imp_uid]` is a list of answers for that order's successive requests (the last
    one repeats); an answer is an httpx.Response, an exception to raise, or a callable taking
    the request. Orders not scripted succeed with the status asked for.
    """

    def __init__(self, lifetime: int = 1800) -> None:
        self.lifetime = lifetime
        self.script: dict[str, list] = {}
        self.token_answers: list = []  # scripted getToken answers, consumed in order
        self.status_requests: list[httpx.Request] = []
        self.token_requests: list[httpx.Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.tokens_issued = 0

    def handler(self, request: httpx.Request):
        if request.url.path == "/users/getToken":
            self.token_requests.append(request)
            if self.token_answers:
                return self._answer(self.token_answers.pop(0), request)
            self.tokens_issued += 1
            return httpx.Response(
                200,
                json={
                    "code": 0,
                    "message": None,
                    "response": {
                        "access_token": f"{TOKEN}-{self.tokens_issued}",
                        "now": 1_700_000_000,
                        "expired_at": 1_700_000_000 + self.lifetime,
                    },
                },
            )
        assert request.url.path.startswith("/payco/orders/status/"), request.url
        self.status_requests.append(request)
        imp_uid = request.url.path.rsplit("/", 1)[1]
        answers = self.script.get(imp_uid)
        if answers:
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            return self._answer(answer, request)
        status = json.loads(request.content)["status"]
        return success(status)

    async def async_handler(self, request: httpx.Request):
        # Yield a few times mid-request so that concurrent requests really overlap.
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return self.handler(request)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _answer(answer, request: httpx.Request):
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.async_handler)

    def sent_imp_uids(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[1] for r in self.status_requests]


def success(status: str) -> httpx.Response:
    return httpx.Response(200, json={"code": 0, "message": "", "response": {"status": status}})


def envelope(http_status: int, code: int, message: str | None, headers=None) -> httpx.Response:
    return httpx.Response(
        http_status, json={"code": code, "message": message, "response": None}, headers=headers
    )


@pytest.fixture
def iamport() -> FakeIamport:
    return FakeIamport()


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean working folder and the environment a run against the fake API needs."""
    monkeypatch.chdir(tmp_path)  # the default output folder reports/ lands in tmp_path
    monkeypatch.setenv("IAMPORT_API_URL", API_URL)
    monkeypatch.setenv("IMP_KEY", "key")
    monkeypatch.setenv("IMP_SECRET", SECRET)
    monkeypatch.delenv("IMP_TIER_CODE", raising=False)
    return tmp_path


def mock_http(**options):
    """respx's router, mocking at the httpx client.

    respx's default patches httpcore's connection pool, which the client's aiohttp-backed
    transport (batch/transport.py) never calls: every mock in the tests goes through here.
    """
    return respx.mock(using="httpx", **options)


@pytest.fixture
def api(iamport):
    """Route every request to api.iamport.test (any path) to the fake iamport."""
    with mock_http(assert_all_called=False) as mock:
        mock.route(host="api.iamport.test").mock(side_effect=iamport.handler)
        yield iamport
