"""When to try a request again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

# The HTTP statuses worth another try: throttling and the server's passing troubles.
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})

# A Retry-After longer than this is taken as this: an end-of-day batch should not sit idle
# for an hour on one header; the retry that follows will ask again.
MAX_RETRY_AFTER = 120.0


@dataclass
class BackoffPolicy:
    """Exponential backoff with full jitter (a random wait in [0, base * 2^(n-1)], capped).

    Full jitter spreads the retries of many workers that failed together, so they do not
    all come back at the same instant. A server's Retry-After, when given, is honoured
    instead.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the attempt after `failed_attempts` failures."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        # The exponent is bounded so that a huge --max-attempts cannot overflow the float.
        ceiling = min(self.cap, self.base * 2 ** min(failed_attempts - 1, 64))
        return self.rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an odd server may omit the zone.
        return None
    return max(0.0, (when - now).total_seconds())
