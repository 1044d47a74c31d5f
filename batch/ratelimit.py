"""The global request-rate limit shared by every worker, retries and token requests included.

It adapts to the server: a 429 or 503 pauses every worker for the server's Retry-After, if
it gave one, and cuts the rate (multiplicative decrease); a streak of other answers raises it
again by a small step (additive increase), never above the configured --rate.
"""

from __future__ import annotations

import math
from collections import deque

from batch.clock import Clock

# After a throttle, the new rate is this share of the requests the server answered in the
# last second (or of the current rate, if lower): just under the limit it showed.
DECREASE = 0.9
# With fewer answers than this in the last second, one cut keeps at least MAX_CUT of the
# rate in force; with more, the count is taken as the server's limit.
TRUSTED_ANSWERS = 10
MAX_CUT = 0.5
# Climb back by this many requests per second...
INCREASE = 0.5
# ...after this many seconds' worth of successes in a row at the current rate. Slow on
# purpose: every throttle costs a whole Retry-After pause, so probing the limit too often
# loses more than it gains.
STREAK_SECONDS = 2.0
# The rate is cut at most once per Retry-After period, or per this long without one.
CUT_PERIOD = 1.0
# Never slow below this, whatever the server says.
MIN_RATE = 0.5


class RateLimiter:
    """Spaces requests `1/rate` seconds apart on an absolute timeline (GCRA, burst of one).

    Each caller reserves the next free slot at the moment it asks, then sleeps until that
    slot. Slots are spaced exactly one interval apart from the previous *reservation*, not
    from when the previous caller woke up, so a late wake-up is not carried forward into
    every later slot and the average rate stays on target.

    Slots one interval apart put at most rate + 1 in any 1-second window, but requests leave
    when their callers wake, and a stalled event loop (a garbage collection, a burst of
    answers to parse) wakes several late callers at once: at --rate 200 the server counted
    up to 205 requests in one second. So a second rule caps what actually leaves: a caller
    also waits until the request rate + 1 places before its own left at least a second ago.
    In steady state that request left 1 + 1/rate seconds ago, so the rule costs nothing; it
    only holds back a bunch of late wake-ups. A rate of 0 or None means no limit until the
    server throttles.
    """

    def __init__(self, rate: float | None, clock: Clock) -> None:
        if rate is not None and rate < 0:
            raise ValueError("rate must be positive, or 0 for no limit")
        self._clock = clock
        self._ceiling = rate or math.inf
        self._rate = rate or math.inf  # the rate in force now
        self._next_slot: float | None = None
        self._paused_until = -math.inf
        self._cut_allowed_from = -math.inf
        self._streak = 0
        self._answers: deque[float] = deque()  # when requests were answered, last second
        self._answers_total = 0
        self._first_answer_at: float | None = None
        self.cuts = 0
        self.lowest_rate: float | None = None
        # When the last rate + 1 requests left: the window rule's memory.
        self._sent: deque[float] = deque(maxlen=_window_size(self._rate))

    @property
    def rate(self) -> float | None:
        """Requests per second in force now; None when unlimited."""
        return None if math.isinf(self._rate) else self._rate

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        while True:
            now = self._clock.monotonic()
            start = max(now, self._paused_until)
            if math.isinf(self._rate):
                slot = start
            else:
                # An idle limiter does not bank unused slots: after a pause the next request
                # goes at once, and the ones after it one interval apart again.
                slot = start if self._next_slot is None else max(self._next_slot, start)
                self._next_slot = slot + 1.0 / self._rate
            if slot > now:
                await self._clock.sleep(slot - now)
            now = self._clock.monotonic()
            # A pause that began while this caller slept (another worker's 429) holds it too:
            # it queues again behind the pause rather than sending into it.
            if self._paused_until > now:
                continue
            # Decided the moment this caller wakes, with nothing awaited in between, so that
            # callers woken together each see the departures of those before them.
            ready = max(now, slot)
            leave = self._reserve_departure(ready)
            if leave > ready:
                await self._clock.sleep(leave - ready)
                if self._paused_until > self._clock.monotonic():
                    continue
            return

    def _reserve_departure(self, earliest: float) -> float:
        """The time a request ready at `earliest` may leave: rate + 1 per second at most."""
        sent = self._sent
        if not sent.maxlen:
            return earliest
        leave = earliest
        if sent:
            leave = max(leave, sent[-1])  # in order, so sent[0] is always rate + 1 places back
        if len(sent) == sent.maxlen:
            leave = max(leave, sent[0] + 1.0)
        sent.append(leave)
        return leave

    def throttled(self, retry_after: float | None) -> None:
        """The server said slow down (429 or 503): pause everyone, and cut the rate once.

        Many workers see the same episode's 429s; the rate is cut at most once per
        Retry-After period, not once per 429.
        """
        now = self._clock.monotonic()
        answered = self._answered(now)
        if retry_after is not None and now + retry_after > self._paused_until:
            self._paused_until = now + retry_after
            self._next_slot = None  # slots reserved before the pause are void
        self._streak = 0
        if now < self._cut_allowed_from:
            return
        if math.isinf(self._rate):
            # No rate yet: start from what the server has been answering. Early in a run the
            # last second holds only a few answers, so the pace since the first one counts too.
            first = now if self._first_answer_at is None else self._first_answer_at
            elapsed = max(now - first, 0.05)
            cut = max(answered, self._answers_total / elapsed) * DECREASE
        elif answered >= TRUSTED_ANSWERS:
            # Enough answers in the last second to show the server's limit: go just under it.
            cut = min(self._rate, answered) * DECREASE
        else:
            # A nearly empty window (the run just started, or just paused) says little about
            # the server's limit: never more than halve a known rate in one cut.
            cut = max(min(self._rate, answered) * DECREASE, self._rate * MAX_CUT)
        self._set_rate(max(MIN_RATE, cut))
        self._cut_allowed_from = now + max(retry_after or 0.0, CUT_PERIOD)
        self.cuts += 1
        self.lowest_rate = min(self.lowest_rate or math.inf, self._rate)

    def succeeded(self) -> None:
        """A request was answered without throttling: count towards raising the rate."""
        self._answered(self._clock.monotonic())
        if self._rate >= self._ceiling:
            return
        self._streak += 1
        if self._streak >= max(1.0, self._rate * STREAK_SECONDS):
            self._set_rate(min(self._ceiling, self._rate + INCREASE))
            self._streak = 0

    def _set_rate(self, rate: float) -> None:
        self._rate = rate
        size = _window_size(rate)
        if size != self._sent.maxlen:
            self._sent = deque(self._sent, maxlen=size)  # keeps the latest departures

    def _answered(self, now: float) -> int:
        """Note an answer; return how many came in the last second, this one included."""
        self._answers_total += 1
        if self._first_answer_at is None:
            self._first_answer_at = now
        answers = self._answers
        answers.append(now)
        while answers[0] <= now - 1.0:
            answers.popleft()
        return len(answers)


def _window_size(rate: float) -> int:
    """How many requests may leave within one second at `rate`: rate + 1 (0: no window)."""
    return 0 if math.isinf(rate) else math.floor(rate) + 1
