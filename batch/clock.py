"""Time, passed in rather than read from globals, so that tests run on a fake clock."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""

    def now(self) -> datetime:
        """The local wall-clock time, with its UTC offset."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (on this clock)."""


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now().astimezone()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
