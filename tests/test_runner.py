import asyncio
import random

import httpx
import pytest
from conftest import API_URL, SECRET, FakeIamport, envelope, success

from batch.client import Credentials, IamportClient, open_http_client
from batch.ratelimit import RateLimiter
from batch.retry import BackoffPolicy
from batch.runner import send_rows


def send(iamport: FakeIamport, clock, rows, *, concurrency=4, max_attempts=5, rate=0):
    """Run send_rows against the fake; return (outcomes by row, SendReport)."""
    outcomes = {}

    async def go():
        async with open_http_client(
            API_URL, concurrency=concurrency, timeout=5, transport=iamport.transport()
        ) as http:
            client = IamportClient(
                http, Credentials("key", SECRET), RateLimiter(rate, clock), clock
            )
            return await send_rows(
                rows,
                client,
                concurrency=concurrency,
                max_attempts=max_attempts,
                backoff=BackoffPolicy(rng=random.Random(1)),
                clock=clock,
                record=lambda outcome: outcomes.__setitem__(outcome.row, outcome),
            )

    report = asyncio.run(go())
    return outcomes, report


def rows_for(*imp_uids, status="DELIVERY_START"):
    return [(row, imp_uid, status) for row, imp_uid in enumerate(imp_uids, start=2)]


def test_every_row_gets_exactly_one_outcome(iamport, clock):
    rows = rows_for(*(f"imp_{n}" for n in range(1, 41)))
    outcomes, report = send(iamport, clock, rows)
    assert sorted(outcomes) == [row for row, _, _ in rows]
    assert all(o.outcome == "succeeded" and o.attempts == 1 for o in outcomes.values())
    assert sorted(iamport.sent_imp_uids()) == sorted(imp for _, imp, _ in rows)
    assert report.requests == 40 and report.rows_finished == 40


def test_outcome_records_the_answer(iamport, clock):
    outcomes, _ = send(iamport, clock, rows_for("imp_1", status="CANCELED"))
    outcome = outcomes[2]
    assert (outcome.imp_uid, outcome.status, outcome.applied_status) == (
        "imp_1",
        "CANCELED",
        "CANCELED",
    )
    assert (outcome.http_status, outcome.api_code, outcome.error_kind) == (200, 0, "")
    assert outcome.finished_at.startswith("2026-12-04T18:00:00") and "+09:00" in outcome.finished_at


def test_concurrency_caps_requests_in_flight(iamport, clock):
    send(iamport, clock, rows_for(*(f"imp_{n}" for n in range(1, 31))), concurrency=3)
    assert iamport.max_in_flight == 3


def test_server_error_is_retried_with_backoff_then_succeeds(iamport, clock):
    iamport.script["imp_1"] = [
        envelope(500, -1, "내부 오류"),
        envelope(503, -1, "busy"),
        success("DELIVERY_START"),
    ]
    outcomes, report = send(iamport, clock, rows_for("imp_1"))
    assert outcomes[2].outcome == "succeeded"
    assert outcomes[2].attempts == 3
    assert report.requests == 3
    # full jitter: first wait within [0, 0.5], second within [0, 1.0]
    waits = [s for s in clock.sleeps if s > 0]
    assert len(waits) == 2 and waits[0] <= 0.5 and waits[1] <= 1.0


def test_retry_after_is_honoured_on_429(iamport, clock):
    iamport.script["imp_1"] = [
        envelope(429, -1, "too many", headers={"Retry-After": "3"}),
        success("DELIVERY_START"),
    ]
    outcomes, report = send(iamport, clock, rows_for("imp_1"))
    assert outcomes[2].outcome == "succeeded"
    assert outcomes[2].rate_limited == 1 and report.rate_limited == 1
    assert 3.0 in clock.sleeps


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (envelope(404, -1, "존재하지 않는 결제정보입니다."), "not_found"),
        (envelope(400, -1, "status is required"), "client_error"),
        (envelope(200, 1, "취소할 결제건이 존재하지 않습니다."), "business"),
    ],
)
def test_definitive_failures_are_not_retried(iamport, clock, answer, kind):
    iamport.script["imp_1"] = [answer]
    outcomes, _ = send(iamport, clock, rows_for("imp_1"))
    assert outcomes[2].outcome == "failed"
    assert outcomes[2].error_kind == kind
    assert outcomes[2].attempts == 1
    assert outcomes[2].api_message == answer.json()["message"]


def test_retries_stop_at_max_attempts(iamport, clock):
    iamport.script["imp_1"] = [envelope(503, -1, "busy")]
    outcomes, _ = send(iamport, clock, rows_for("imp_1"), max_attempts=4)
    assert outcomes[2].outcome == "failed"
    assert outcomes[2].error_kind == "server_error"
    assert outcomes[2].attempts == 4
    assert len(iamport.status_requests) == 4


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "network"),
        (httpx.RemoteProtocolError("dropped"), "network"),
    ],
)
def test_transport_errors_are_retried_and_named(iamport, clock, error, kind):
    iamport.script["imp_1"] = [error]
    outcomes, _ = send(iamport, clock, rows_for("imp_1"), max_attempts=2)
    assert (outcomes[2].outcome, outcomes[2].error_kind, outcomes[2].attempts) == (
        "failed",
        kind,
        2,
    )


def test_authentication_failure_mid_run_stops_new_rows(clock):
    iamport = FakeIamport(lifetime=100)  # refreshed after 50 s

    # imp_2's first request fails with a 503 and lets the token go stale; the refresh before
    # its retry is refused.
    def stale_then_503(request):
        clock.advance(60)
        return envelope(503, -1, "busy")

    iamport.script["imp_2"] = [stale_then_503]
    rows = rows_for(*(f"imp_{n}" for n in range(1, 11)))

    original = iamport.handler

    def handler(request):
        if request.url.path == "/users/getToken" and iamport.tokens_issued >= 1:
            iamport.token_requests.append(request)
            return envelope(401, -1, "Unauthorized")
        return original(request)

    iamport.handler = handler
    outcomes, report = send(iamport, clock, rows, concurrency=1)
    assert report.aborted_because == "authentication failed: check IMP_KEY and IMP_SECRET"
    # imp_1 went through; imp_2 was sent once (503) and could not be retried: it was sent, so
    # it is failed (auth), not not_sent; nothing after it was started.
    assert outcomes[2].outcome == "succeeded"
    assert outcomes[3].outcome == "failed" and outcomes[3].error_kind == "auth"
    assert sorted(outcomes) == [2, 3]
    assert iamport.sent_imp_uids() == ["imp_1", "imp_2"]


def test_rate_limit_spaces_every_request(iamport, clock):
    send(iamport, clock, rows_for(*(f"imp_{n}" for n in range(1, 21))), concurrency=1, rate=10)
    # 1 token request + 20 status requests, 0.1 s apart on the fake clock
    assert clock.t == pytest.approx(2.0, abs=1e-9)
