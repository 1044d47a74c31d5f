"""The global request-rate limit shared by every worker, retries and token requests included."""

from __future__ import annotations

from batch.clock import Clock


class RateLimiter:
    """Spaces requests `1/rate` seconds apart on an absolute timeline (GCRA, burst of one).

    Each caller reserves the next free slot at the moment it asks, then sleeps until that
    slot. Slots are spaced exactly one interval apart from the previous *reservation*, not
    from when the previous caller woke up, so a late wake-up is not carried forward into
    every later slot. With slots one interval apart, no 1-second window holds more than
    rate + 1 of them. A rate of 0 or None means no limit.
    """

    def __init__(self, rate: float | None, clock: Clock) -> None:
        if rate is not None and rate < 0:
            raise ValueError("rate must be positive, or 0 for no limit")
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._next_slot: float | None = None

    @property
    def limited(self) -> bool:
        return self._interval > 0

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        if not self._interval:
            return
        now = self._clock.monotonic()
        # An idle limiter does not bank unused slots: after a pause the next request goes at
        # once, and the ones after it one interval apart again.
        slot = now if self._next_slot is None else max(self._next_slot, now)
        self._next_slot = slot + self._interval
        if slot > now:
            await self._clock.sleep(slot - now)
