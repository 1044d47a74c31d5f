import asyncio
import random

import httpx
import pytest
from conftest import API_URL, SECRET, FakeIamport, envelope, success

from batch.client import Credentials, IamportClient, open_http_client
from batch.ratelimit import RateLimiter
from batch.retry import BackoffPolicy
from batch.runner import StopSignal, send_rows


def send(iamport: FakeIamport, clock, rows, *, concurrency=4, max_attempts=5, rate=0, **extra):
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
                **extra,
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
        envelope(502, -1, "bad gateway"),
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
    ("error", "kind", "outcome"),
    [
        # the request left and no answer came: it may have landed
        (httpx.ReadTimeout("slow"), "timeout", "unknown"),
        (httpx.RemoteProtocolError("dropped"), "network", "unknown"),
        # it never reached the server
        (httpx.ConnectError("refused"), "network", "failed"),
        (httpx.ConnectTimeout("slow"), "timeout", "failed"),
    ],
)
def test_transport_errors_are_retried_and_named(iamport, clock, error, kind, outcome):
    iamport.script["imp_1"] = [error]
    outcomes, _ = send(iamport, clock, rows_for("imp_1"), max_attempts=2)
    assert (outcomes[2].outcome, outcomes[2].error_kind, outcomes[2].attempts) == (
        outcome,
        kind,
        2,
    )


def test_a_definitive_answer_after_a_timeout_settles_the_doubt(iamport, clock):
    iamport.script["imp_1"] = [httpx.ReadTimeout("slow"), envelope(404, -1, "없음")]
    iamport.script["imp_2"] = [httpx.ReadTimeout("slow"), envelope(503, -1, "busy")]
    outcomes, _ = send(iamport, clock, rows_for("imp_1", "imp_2"), max_attempts=2)
    assert (outcomes[2].outcome, outcomes[2].error_kind) == ("failed", "not_found")
    # a 503 is no definitive answer: the first request may still have landed
    assert (outcomes[3].outcome, outcomes[3].error_kind) == ("unknown", "server_error")


def test_every_request_is_announced_before_it_leaves(iamport, clock):
    iamport.script["imp_1"] = [envelope(503, -1, "busy"), success("DELIVERY_START")]
    intents = []

    def intent(row, attempt):
        intents.append((row, attempt, len(iamport.status_requests)))

    outcomes, _ = send(
        iamport, clock, rows_for("imp_1", "imp_2"), concurrency=1, intent=intent, resent={3}
    )
    # each intent is written when the requests before it have been made, not after its own
    assert intents == [(2, 1, 0), (2, 2, 1), (3, 1, 2)]
    assert outcomes[2].resent is False and outcomes[3].resent is True


def test_a_stop_lets_rows_in_flight_finish_and_starts_no_more(iamport, clock):
    stop = StopSignal()

    def stop_during_request(request):
        stop.stop("SIGTERM received")
        return success("DELIVERY_START")

    iamport.script["imp_2"] = [stop_during_request]
    rows = rows_for("imp_1", "imp_2", "imp_3", "imp_4")
    outcomes, report = send(iamport, clock, rows, concurrency=1, stop=stop)
    assert report.stopped_because == "SIGTERM received"
    assert sorted(outcomes) == [2, 3]  # the row in flight finished; no new row started
    assert outcomes[3].outcome == "succeeded"


def test_a_stop_during_backoff_ends_the_row_as_not_final(iamport, clock):
    stop = StopSignal()

    def busy_then_stop(request):
        stop.stop("SIGINT received")
        return envelope(503, -1, "busy")

    iamport.script["imp_1"] = [busy_then_stop]
    outcomes, _ = send(iamport, clock, rows_for("imp_1", "imp_2"), concurrency=1, stop=stop)
    assert outcomes[2].outcome == "failed" and outcomes[2].final is False
    assert outcomes[2].attempts == 1  # no retry after the stop
    assert 3 not in outcomes


def test_quit_now_abandons_the_requests_in_flight_without_inventing_outcomes(clock):
    """A second Ctrl-C: the sending is cancelled; rows in flight keep their intent only."""
    stop = StopSignal()
    in_flight: list[str] = []

    async def never_answers(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/users/getToken":
            token = {"access_token": "t", "now": 0, "expired_at": 1800}
            return httpx.Response(200, json={"code": 0, "message": None, "response": token})
        in_flight.append(request.url.path)
        if len(in_flight) == 2:  # both workers are waiting on an answer
            stop.stop("SIGINT received")
            assert stop.quit_now()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    intents, outcomes = [], []

    async def go():
        transport = httpx.MockTransport(never_answers)
        async with open_http_client(API_URL, concurrency=2, timeout=5, transport=transport) as h:
            client = IamportClient(h, Credentials("key", SECRET), RateLimiter(0, clock), clock)
            await send_rows(
                rows_for("imp_1", "imp_2", "imp_3"),
                client,
                concurrency=2,
                max_attempts=3,
                backoff=BackoffPolicy(rng=random.Random(1)),
                clock=clock,
                record=outcomes.append,
                intent=lambda row, attempt: intents.append(row),
                stop=stop,
            )

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())
    assert intents == [2, 3] and outcomes == []  # sent, fate unknown: the journal says so
    assert in_flight == ["/payco/orders/status/imp_1", "/payco/orders/status/imp_2"]


def test_quit_now_outside_a_running_loop_leaves_it_to_the_caller():
    stop = StopSignal()
    assert stop.quit_now() is False
