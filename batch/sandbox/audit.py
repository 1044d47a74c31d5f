"""What the sandbox saw: the numbers a test or a benchmark checks the client against."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

TOKEN_PATH = "/users/getToken"
STATUS_PATH = "/payco/orders/status"
OTHER_PATH = "other"


class Audit:
    """Counts requests by path and HTTP status, state changes, peaks of rate and concurrency."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self.by_path: dict[str, Counter[int | str]] = {}
        self.state_changes = 0
        self.no_ops = 0
        self.dropped = 0
        self.hung = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_per_second = 0
        self._window: deque[float] = deque()
        self.requests = 0

    def arrived(self) -> None:
        """A request to the API (not to /__sandbox__) arrived."""
        now = self._monotonic()
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        window = self._window
        window.append(now)
        while window[0] <= now - 1.0:
            window.popleft()
        self.max_per_second = max(self.max_per_second, len(window))

    def answered(self, path: str, outcome: int | str) -> None:
        """The request to `path` ended with HTTP status `outcome` (or "dropped")."""
        self.in_flight -= 1
        self.by_path.setdefault(path, Counter())[outcome] += 1

    def snapshot(self) -> dict:
        return {
            "requests": self.requests,
            "requests_by_path": {
                path: {str(code): count for code, count in sorted(codes.items(), key=str)}
                for path, codes in self.by_path.items()
            },
            "state_changes": self.state_changes,
            "no_ops": self.no_ops,
            "dropped": self.dropped,
            "hung": self.hung,
            "max_requests_in_1s": self.max_per_second,
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
        }
