"""Injected faults: errors, throttling, latency, hangs and dropped connections; seeded."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# How long a "hung" request waits before answering: far beyond any sensible client timeout.
DEFAULT_HANG_SECONDS = 120.0


@dataclass(frozen=True)
class FaultSettings:
    """Every fault is off by default."""

    error_rate: float = 0.0  # share of requests answered 500 or 503
    throttle: float | None = None  # requests per second allowed; beyond it, 429
    latency_ms: float = 0.0  # added to every answer...
    jitter_ms: float = 0.0  # ...plus or minus up to this much
    hang_rate: float = 0.0  # share of requests answered only after hang_seconds
    drop_rate: float = 0.0  # share of requests whose connection is closed with no answer
    hang_seconds: float = DEFAULT_HANG_SECONDS
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "hang_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.throttle is not None and self.throttle <= 0:
            raise ValueError("throttle must be a positive number of requests per second")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.hang_seconds < 0:
            raise ValueError("latency, jitter and hang time cannot be negative")

    def describe(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("error-rate", self.error_rate),
                ("throttle", self.throttle),
                ("latency", self.latency_ms),
                ("jitter", self.jitter_ms),
                ("hang-rate", self.hang_rate),
                ("drop-rate", self.drop_rate),
            )
            if value
        ]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Fate:
    """What the faults decided for one request."""

    error: int | None = None  # 500 or 503, answered without touching any order
    retry_after: int | None = None  # with error 429: throttled
    hang: bool = False  # the request is processed, the answer held back for hang_seconds
    drop: bool = False  # the request is processed, the connection closed with no answer
    delay: float = 0.0  # seconds to wait before answering


class Faults:
    def __init__(self, settings: FaultSettings, monotonic: Callable[[], float]) -> None:
        self.settings = settings
        self._monotonic = monotonic
        self._rng = random.Random(settings.seed)
        # Arrival times of the requests let through in the current window (throttle only).
        # The window is a second, or longer for a throttle under one per second, so that
        # 0.5 means one request every two seconds rather than one a second.
        self._admitted: deque[float] = deque()
        throttle = settings.throttle or 1.0
        self._window = max(1.0, 1.0 / throttle)
        self._capacity = max(1, math.floor(throttle * self._window + 1e-9))

    def decide(self) -> Fate:
        s = self.settings
        if s.throttle is not None:
            retry_after = self._throttle()
            if retry_after is not None:
                return Fate(error=429, retry_after=retry_after, delay=self._delay())
        # One draw per fault, in a fixed order, so a seed replays the same faults for the
        # same sequence of requests.
        if s.error_rate and self._rng.random() < s.error_rate:
            return Fate(error=self._rng.choice((500, 503)), delay=self._delay())
        if s.drop_rate and self._rng.random() < s.drop_rate:
            return Fate(drop=True, delay=self._delay())
        if s.hang_rate and self._rng.random() < s.hang_rate:
            return Fate(hang=True, delay=s.hang_seconds)
        return Fate(delay=self._delay())

    def _delay(self) -> float:
        s = self.settings
        if not (s.latency_ms or s.jitter_ms):
            return 0.0
        jitter = self._rng.uniform(-s.jitter_ms, s.jitter_ms) if s.jitter_ms else 0.0
        return max(0.0, s.latency_ms + jitter) / 1000

    def _throttle(self) -> int | None:
        """None if this request may pass; else the whole seconds to wait (Retry-After)."""
        now = self._monotonic()
        admitted = self._admitted
        while admitted and admitted[0] <= now - self._window:
            admitted.popleft()
        if len(admitted) < self._capacity:
            admitted.append(now)
            return None
        return max(1, math.ceil(admitted[0] + self._window - now))
