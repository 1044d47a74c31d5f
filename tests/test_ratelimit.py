"""The global rate limiter: evenly spaced slots on an absolute timeline, no banked bursts."""

from __future__ import annotations

import asyncio
import bisect
import heapq
from datetime import datetime

import pytest
from conftest import FakeClock

from batch.ratelimit import RateLimiter


class WakeClock:
    """Time stands still; `sleep` records, per task, the absolute time it would wake at.

    With it many acquirers can ask at t=0 together and each one's slot can be read back.
    """

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self.wakes: dict[asyncio.Task, float] = {}
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:  # pragma: no cover - the limiter reads only monotonic time
        raise AssertionError("the rate limiter must not read wall-clock time")

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.wakes[asyncio.current_task()] = self.t + seconds
        await asyncio.sleep(0)


class LateClock(FakeClock):
    """A FakeClock whose every sleep oversleeps by `late` seconds, as a busy event loop does."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds + self.late)


def concurrent_wake_times(rate: float, callers: int) -> list[float]:
    clock = WakeClock()
    limiter = RateLimiter(rate, clock)

    async def one() -> float:
        await limiter.acquire()
        return clock.wakes.get(asyncio.current_task(), clock.t)

    async def main() -> list[float]:
        return await asyncio.gather(*(one() for _ in range(callers)))

    return sorted(asyncio.run(main()))


def acquisitions_within(
    clock: FakeClock, limiter: RateLimiter, seconds: float, limit: int = 10_000
) -> int:
    """How many sequential acquires complete before `seconds` of fake time have passed.

    Stops at `limit`, so that a limiter that never waits fails the test instead of hanging.
    """

    async def main() -> int:
        count = 0
        while count < limit:
            await limiter.acquire()
            if clock.t >= seconds:
                return count
            count += 1
        return count

    return asyncio.run(main())


def test_concurrent_acquirers_get_exactly_spaced_slots():
    wakes = concurrent_wake_times(rate=20, callers=100)
    assert wakes == pytest.approx([i * 0.05 for i in range(100)])


@pytest.mark.parametrize("rate", [1, 3, 20, 50])
def test_no_one_second_window_holds_more_than_rate_plus_one(rate):
    wakes = concurrent_wake_times(rate=rate, callers=5 * rate + 7)
    busiest = max(sum(1 for w in wakes if start <= w < start + 1) for start in wakes)
    assert busiest <= rate + 1
    assert busiest >= rate  # and the limiter does not throttle below the rate


@pytest.mark.parametrize("rate", [0, None])
def test_no_rate_never_sleeps(rate):
    clock = WakeClock()
    limiter = RateLimiter(rate, clock)

    async def main() -> None:
        await asyncio.gather(*(limiter.acquire() for _ in range(200)))

    asyncio.run(main())
    assert clock.sleeps == []
    assert limiter.rate is None


def test_a_positive_rate_is_limited():
    assert RateLimiter(5, WakeClock()).rate == 5


@pytest.mark.parametrize("rate", [-1, -0.5])
def test_negative_rate_is_refused(rate):
    with pytest.raises(ValueError):
        RateLimiter(rate, WakeClock())


def test_after_an_idle_pause_next_acquire_goes_at_once_without_banked_burst():
    clock = FakeClock()
    limiter = RateLimiter(10, clock)

    async def main() -> list[float]:
        await limiter.acquire()
        await limiter.acquire()
        clock.advance(5.0)  # idle for fifty intervals
        before = len(clock.sleeps)
        await limiter.acquire()
        await limiter.acquire()
        return clock.sleeps[before:]

    after_pause = asyncio.run(main())
    # The first after the pause does not sleep; the second waits one full interval.
    assert after_pause == pytest.approx([0.1])


@pytest.mark.parametrize("rate", [5, 20])
def test_sequential_acquires_over_ten_seconds_match_the_rate(rate):
    clock = FakeClock()
    count = acquisitions_within(clock, RateLimiter(rate, clock), 10.0)
    assert abs(count - rate * 10) <= 1


def test_late_wakeups_do_not_shift_later_slots():
    # Each sleep overshoots by a fifth of the interval; slots stay on the absolute grid, so
    # the throughput is still the rate (spacing from wake-ups would give ~83 instead of 100).
    clock = LateClock(late=0.02)
    count = acquisitions_within(clock, RateLimiter(10, clock), 10.0)
    assert abs(count - 100) <= 1


def test_caller_arriving_after_its_slot_goes_at_once_and_next_waits_one_interval():
    clock = WakeClock()
    limiter = RateLimiter(10, clock)

    async def main() -> list[float]:
        await limiter.acquire()  # slot 0.0
        clock.t = 0.13  # this caller comes back late, past the slot at 0.1
        await limiter.acquire()  # goes at once at 0.13
        await limiter.acquire()  # one interval after 0.13: no catching up on the missed 0.1
        return clock.sleeps

    assert asyncio.run(main()) == pytest.approx([0.1])


# --- adapting to the server ------------------------------------------------------------------


def acquire_times(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    """Sequential acquires on the advancing fake clock: when each caller got its slot."""
    times = []

    async def main() -> None:
        for _ in range(count):
            await limiter.acquire()
            times.append(clock.t)

    asyncio.run(main())
    return times


def test_throttle_pauses_everyone_for_retry_after():
    clock = FakeClock()
    limiter = RateLimiter(10, clock)
    acquire_times(limiter, clock, 1)
    limiter.throttled(retry_after=3.0)
    (when,) = acquire_times(limiter, clock, 1)
    assert when == pytest.approx(3.0)


def test_throttle_without_retry_after_cuts_the_rate_but_does_not_pause():
    clock = FakeClock()
    limiter = RateLimiter(10, clock)
    acquire_times(limiter, clock, 1)
    limiter.throttled(retry_after=None)
    assert limiter.rate == pytest.approx(5.0)  # halved at most: the window was nearly empty
    # the slot reserved before the cut stands; the one after it is spaced at the new rate
    assert acquire_times(limiter, clock, 2) == pytest.approx([0.1, 0.3])  # and no pause


def test_throttle_cuts_the_rate_to_just_under_what_the_server_answered():
    clock = FakeClock()
    limiter = RateLimiter(40, clock)
    for _ in range(30):  # the server answered 30 requests in the last second
        limiter.succeeded()
        clock.advance(0.01)
    limiter.throttled(retry_after=1.0)  # ...and the 31st with a 429
    assert limiter.rate == pytest.approx(31 * 0.9)
    assert limiter.cuts == 1 and limiter.lowest_rate == pytest.approx(27.9)


def test_one_cut_never_more_than_halves_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(100, clock)
    limiter.succeeded()
    limiter.throttled(retry_after=1.0)  # two answers in the window say little
    assert limiter.rate == pytest.approx(50)


def test_an_unlimited_run_takes_the_rate_the_server_showed():
    clock = FakeClock()
    limiter = RateLimiter(0, clock)
    for _ in range(40):
        limiter.succeeded()
        clock.advance(0.02)
    limiter.throttled(retry_after=2.0)
    # 41 answers in 0.8 s since the first: about 51 a second, and the cut keeps 90% of it
    assert limiter.rate == pytest.approx(41 / 0.8 * 0.9)


def test_many_429s_of_one_episode_cut_the_rate_once():
    clock = FakeClock()
    limiter = RateLimiter(50, clock)
    for _ in range(8):  # every worker in flight got a 429
        limiter.throttled(retry_after=1.0)
        clock.advance(0.05)
    assert limiter.cuts == 1
    assert limiter.rate == pytest.approx(25)
    clock.advance(1.0)  # a new episode after the Retry-After period: cut again
    limiter.throttled(retry_after=1.0)
    assert limiter.cuts == 2 and limiter.rate == pytest.approx(12.5)


def test_a_streak_of_successes_climbs_back_additively_up_to_the_configured_rate():
    clock = FakeClock()
    limiter = RateLimiter(10, clock)
    limiter.throttled(retry_after=1.0)
    assert limiter.rate == pytest.approx(5.0)
    for _ in range(10):  # two seconds' worth at 5 per second
        limiter.succeeded()
    assert limiter.rate == pytest.approx(5.5)
    for _ in range(1000):
        limiter.succeeded()
    assert limiter.rate == 10  # never above --rate


def test_the_rate_never_falls_below_the_floor():
    clock = FakeClock()
    limiter = RateLimiter(1, clock)
    for _ in range(20):
        limiter.throttled(retry_after=1.0)
        clock.advance(1.0)
    assert limiter.rate == pytest.approx(0.5)


def test_a_full_window_is_trusted_even_far_below_the_configured_rate():
    clock = FakeClock()
    limiter = RateLimiter(100, clock)
    for _ in range(30):  # the server let 30 through in the last second, far under --rate 100
        limiter.succeeded()
        clock.advance(0.01)
    limiter.throttled(retry_after=1.0)
    assert limiter.rate == pytest.approx(31 * 0.9)  # not merely halved to 50


class StallingClock:
    """Virtual time with an event loop's real failing: it sometimes stalls.

    Sleepers wake in time order as `run` advances virtual time; a stall of `length` seconds
    starting at `at` holds every wake-up due meanwhile until it ends, so they all happen at
    once, late, as after a garbage collection in a real run.
    """

    def __init__(self, stalls: list[tuple[float, float]]) -> None:
        self.t = 0.0
        self._stalls = sorted(stalls)
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._count = 0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:  # pragma: no cover - the limiter reads only monotonic time
        raise AssertionError("the rate limiter must not read wall-clock time")

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._sleepers, (self.t + max(0.0, seconds), self._count, future))
        await future

    async def run(self, until: float) -> None:
        while self._sleepers and self.t < until:
            for _ in range(3):  # let every woken task run until it sleeps again
                await asyncio.sleep(0)
            due = self._sleepers[0][0]
            if self._stalls and self._stalls[0][0] <= due:
                at, length = self._stalls.pop(0)
                due = max(due, at + length)
            self.t = max(self.t, due)
            while self._sleepers and self._sleepers[0][0] <= self.t:
                heapq.heappop(self._sleepers)[2].set_result(None)


def departures_under_stalls(rate: float, seconds: float, stalls: list[tuple[float, float]]):
    clock = StallingClock(stalls)
    limiter = RateLimiter(rate, clock)
    departures: list[float] = []

    async def worker() -> None:
        while True:
            await limiter.acquire()
            departures.append(clock.t)

    async def main() -> None:
        workers = [asyncio.ensure_future(worker()) for _ in range(50)]
        await asyncio.sleep(0)
        await clock.run(seconds)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    asyncio.run(main())
    return [t for t in departures if t < seconds]


def busiest_second(times: list[float]) -> int:
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


@pytest.mark.parametrize("rate", [200, 20, 7.5])
def test_late_wakeups_after_a_stall_never_put_more_than_rate_plus_one_in_a_second(rate):
    # The loop stalls for 30 ms twice a second, as it did under garbage collection at
    # --rate 200 (the server then counted 205 requests in one second without this rule).
    stalls = [(0.25 + 0.5 * k, 0.03) for k in range(20)]

    departures = departures_under_stalls(rate, 10.0, stalls)

    assert busiest_second(departures) <= rate + 1
    # ...and the stalls cost no throughput: late slots are made up, within the cap.
    assert len(departures) >= 0.98 * rate * 10
