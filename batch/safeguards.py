"""When an unattended run should stop by itself: too many errors, or the deadline.

Both stop the run the way a first Ctrl-C does (no new rows, rows in flight finish, the rest
`not_sent`), but the exit code is 3 (aborted) and the summary says why.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from batch.errors import ConfigError
from batch.outcomes import NETWORK, SERVER_ERROR, TIMEOUT

# The errors that say the server or the network is in trouble, as opposed to a bad row.
BUDGET_KINDS = frozenset({SERVER_ERROR, TIMEOUT, NETWORK})
WINDOW = 100  # requests the default and percentage budgets look back over
DEFAULT_PERCENT = 50.0


@dataclass(frozen=True)
class ErrorBudgetSpec:
    """`--max-errors`: a count over the whole run, or a percentage of the last 100 requests."""

    count: int | None = None
    percent: float | None = DEFAULT_PERCENT

    @classmethod
    def parse(cls, text: str | None) -> ErrorBudgetSpec:
        if text is None:
            return cls()
        text = text.strip()
        try:
            if text.endswith("%"):
                percent = float(text[:-1])
                if not 0 <= percent <= 100:
                    raise ValueError
                return cls(count=None, percent=percent)
            count = int(text)
            if count < 0:
                raise ValueError
            return cls(count=count, percent=None)
        except ValueError:
            raise ConfigError(
                f"--max-errors must be a number of errors (e.g. 20) or a percentage of the "
                f"last {WINDOW} requests (e.g. 10%), not {text!r}."
            ) from None

    def describe(self) -> str:
        if self.count is not None:
            return f"more than {self.count} errors"
        return f"more than {self.percent:g}% of the last {WINDOW} requests failing"


class ErrorBudget:
    """Counts server_error, timeout and network answers; says when there are too many."""

    def __init__(self, spec: ErrorBudgetSpec) -> None:
        self.spec = spec
        self.errors = 0
        self._recent: deque[bool] = deque(maxlen=WINDOW)
        self._recent_failures = 0  # kept as it goes: summing the window per request costs

    def record(self, error_kind: str) -> str | None:
        """Note one completed request; return why the run must stop, or None."""
        failed = error_kind in BUDGET_KINDS
        self.errors += failed
        if len(self._recent) == WINDOW:
            self._recent_failures -= self._recent[0]  # about to leave the window
        self._recent.append(failed)
        self._recent_failures += failed
        if self.spec.count is not None:
            if self.errors > self.spec.count:
                return (
                    f"the error budget is spent: {self.errors} requests failed with "
                    f"server_error, timeout or network errors (--max-errors {self.spec.count})"
                )
            return None
        recent_failures = self._recent_failures
        assert self.spec.percent is not None
        if recent_failures > WINDOW * self.spec.percent / 100:
            return (
                f"the error budget is spent: {recent_failures} of the last "
                f"{len(self._recent)} requests failed with server_error, timeout or network "
                f"errors (limit: {self.spec.describe()})"
            )
        return None


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> timedelta:
    """`45m`, `1h30m`, `90s`, `2h`: a positive duration."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"--deadline-in must look like 45m, 1h30m or 90s, not {text!r}.")
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    duration = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise ConfigError("--deadline-in must be more than zero.")
    return duration


def parse_deadline(text: str, now: datetime) -> datetime:
    """`HH:MM` local time: the next time the clock shows it (today, or tomorrow if past)."""
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if match is None:
        raise ConfigError(f"--deadline must be a local time HH:MM such as 18:30, not {text!r}.")
    at = now.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)
