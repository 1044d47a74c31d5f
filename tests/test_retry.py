"""Backoff delays (exponential, full jitter, capped) and reading the Retry-After header."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta, timezone

import pytest

from batch.retry import MAX_RETRY_AFTER, BackoffPolicy, parse_retry_after

DRAWS = 2000
NOW = datetime(2026, 12, 4, 9, 0, 0, tzinfo=UTC)


def draws(policy: BackoffPolicy, failed_attempts: int, n: int = DRAWS) -> list[float]:
    return [policy.delay(failed_attempts) for _ in range(n)]


@pytest.mark.parametrize("failed_attempts", range(1, 11))
def test_delay_is_within_zero_and_exponential_ceiling(failed_attempts):
    policy = BackoffPolicy(rng=random.Random(failed_attempts))
    ceiling = min(policy.cap, policy.base * 2 ** (failed_attempts - 1))
    delays = draws(policy, failed_attempts)
    assert min(delays) >= 0.0
    assert max(delays) <= ceiling


@pytest.mark.parametrize("failed_attempts", [7, 10, 20, 64, 200, 1000])
def test_delay_never_exceeds_the_cap(failed_attempts):
    policy = BackoffPolicy(base=0.5, cap=5.0, rng=random.Random(1))
    assert max(draws(policy, failed_attempts, 500)) <= 5.0


def test_delay_cap_holds_for_a_huge_attempt_count():
    # 2 ** 1099 does not fit a float: the exponent must be bounded before the cap applies.
    policy = BackoffPolicy(rng=random.Random(1))
    assert 0.0 <= policy.delay(1100) <= policy.cap


def test_delay_is_full_jitter_spread_over_the_whole_range():
    policy = BackoffPolicy(base=0.5, cap=30.0, rng=random.Random(42))
    ceiling = 8.0  # 0.5 * 2^4 after 5 failures
    delays = draws(policy, 5)
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling
    assert statistics.mean(delays) == pytest.approx(ceiling / 2, rel=0.1)
    assert len(set(delays)) > DRAWS * 0.95
    # Every tenth of the range gets a fair share: no clustering, no constant value.
    buckets = [0] * 10
    for delay in delays:
        buckets[min(int(delay / ceiling * 10), 9)] += 1
    assert min(buckets) > DRAWS / 10 * 0.6


def test_delay_is_reproducible_with_a_seeded_rng():
    first = draws(BackoffPolicy(rng=random.Random(7)), 4, 50)
    second = draws(BackoffPolicy(rng=random.Random(7)), 4, 50)
    assert first == second


@pytest.mark.parametrize(
    "retry_after, expected",
    [
        (7.5, 7.5),
        (0.0, 0.0),
        (MAX_RETRY_AFTER, MAX_RETRY_AFTER),
        (MAX_RETRY_AFTER + 3600, MAX_RETRY_AFTER),
        (-3.0, 0.0),
    ],
)
@pytest.mark.parametrize("failed_attempts", [1, 10])
def test_delay_honours_retry_after_exactly_capped_and_not_negative(
    failed_attempts, retry_after, expected
):
    policy = BackoffPolicy(rng=random.Random(3))
    assert policy.delay(failed_attempts, retry_after) == expected


def test_max_retry_after_is_finite_and_positive():
    assert 0 < MAX_RETRY_AFTER < float("inf")


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("3", 3.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        ("Fri, 04 Dec 2026 09:00:10 GMT", 10.0),
        ("Fri, 04 Dec 2026 08:59:00 GMT", 0.0),
        ("Fri, 04 Dec 2026 09:00:00 GMT", 0.0),
        ("soon", None),
        ("Fri, 99 Foo 2026", None),
        ("Fri, 04 Dec 2026 09:00:10", None),
    ],
    ids=[
        "none",
        "empty",
        "blank",
        "seconds",
        "padded-seconds",
        "fractional",
        "zero",
        "negative",
        "future-date",
        "past-date",
        "date-now",
        "garbage",
        "garbage-date",
        "date-without-zone",
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_date_is_independent_of_now_timezone():
    kst_now = NOW.astimezone(timezone(timedelta(hours=9)))
    assert parse_retry_after("Fri, 04 Dec 2026 09:00:10 GMT", kst_now) == 10.0
