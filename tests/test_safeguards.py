import random
from datetime import datetime, timedelta

import pytest
from conftest import KST

from batch.errors import ConfigError
from batch.safeguards import (
    WINDOW,
    ErrorBudget,
    ErrorBudgetSpec,
    parse_deadline,
    parse_duration,
)


def test_default_budget_is_half_of_the_last_hundred():
    budget = ErrorBudget(ErrorBudgetSpec.parse(None))
    for _ in range(50):
        assert budget.record("server_error") is None
    for _ in range(49):
        assert budget.record("") is None
    reason = budget.record("timeout")  # 51 failures among the last 100
    assert reason == (
        "the error budget is spent: 51 of the last 100 requests failed with server_error, "
        "timeout or network errors (limit: more than 50% of the last 100 requests failing)"
    )


def test_percentage_budget_forgets_requests_older_than_the_window():
    budget = ErrorBudget(ErrorBudgetSpec.parse("10%"))
    for _ in range(10):
        assert budget.record("network") is None
    for _ in range(100):  # the ten failures slide out of the window
        assert budget.record("") is None
    for _ in range(10):
        assert budget.record("network") is None
    assert budget.record("network") is not None


def test_count_budget_counts_the_whole_run():
    budget = ErrorBudget(ErrorBudgetSpec.parse("3"))
    kinds = ["server_error", "", "timeout", "", "", "network"]
    assert [budget.record(kind) for kind in kinds] == [None] * 6
    assert "4 requests failed" in budget.record("server_error")


@pytest.mark.parametrize("kind", ["not_found", "business", "client_error", "rate_limited", ""])
def test_row_level_failures_do_not_spend_the_budget(kind):
    budget = ErrorBudget(ErrorBudgetSpec.parse("0"))
    assert budget.record(kind) is None


@pytest.mark.parametrize("text", ["x", "-1", "150%", "5.5", ""])
def test_bad_max_errors_is_refused(text):
    with pytest.raises(ConfigError, match="--max-errors must be"):
        ErrorBudgetSpec.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45m", timedelta(minutes=45)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2H", timedelta(hours=2)),
        ("0.5s", timedelta(seconds=0.5)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "45", "m", "1d", "0s", "-5m"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="--deadline-in"):
        parse_duration(text)


def test_deadline_later_today():
    now = datetime(2026, 12, 4, 17, 0, tzinfo=KST)
    assert parse_deadline("18:30", now) == datetime(2026, 12, 4, 18, 30, tzinfo=KST)


def test_deadline_already_past_means_tomorrow():
    now = datetime(2026, 12, 4, 23, 50, tzinfo=KST)
    assert parse_deadline("00:30", now) == datetime(2026, 12, 5, 0, 30, tzinfo=KST)


@pytest.mark.parametrize("text", ["24:00", "7", "18:60", "6pm"])
def test_bad_deadlines(text):
    with pytest.raises(ConfigError, match="--deadline must be"):
        parse_deadline(text, datetime(2026, 12, 4, 17, 0, tzinfo=KST))


def test_the_percentage_budget_counts_exactly_the_failures_in_its_window():
    """The running count matches a recount of the last WINDOW requests, request by request."""
    rng = random.Random(7)
    spec = ErrorBudgetSpec.parse("30%")
    budget = ErrorBudget(spec)
    history: list[bool] = []
    for _ in range(2_000):
        failed = rng.random() < 0.28
        verdict = budget.record("timeout" if failed else "")
        history.append(failed)
        in_window = sum(history[-WINDOW:])
        assert (verdict is not None) == (in_window > WINDOW * 30 / 100)
        if verdict is not None:
            assert f"{in_window} of the last {min(len(history), WINDOW)} requests" in verdict
