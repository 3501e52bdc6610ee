"""Clocks: the only source of time for protocol code.

Protocols never call ``time.sleep``; they ``await clock.sleep(seconds)``. A dry-run
uses :class:`SimClock`, whose virtual time advances at once, so a three-week
campaign runs in seconds; a real run uses :class:`WallClock`.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta


class Clock(ABC):
    """Current time and waiting, shared by protocols, devices and the culture model."""

    simulated: bool = False

    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    @abstractmethod
    def elapsed(self) -> float:
        """Seconds since this clock was created: a monotonic process time."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; refuses negative waits, which are always a bug."""


def _check_wait(seconds: float) -> float:
    if seconds < 0:
        raise ValueError(f"cannot sleep a negative time ({seconds} s)")
    return float(seconds)


class SimClock(Clock):
    """Virtual time that advances at once.

    ``sleep`` moves time forward immediately. Callers in one workcell take turns
    on its devices, so the simple rule "time is the sum of what was waited" holds;
    concurrent waiters on one clock would add their waits rather than overlap.
    """

    simulated = True

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        self._start = start.astimezone(UTC)
        self._elapsed = 0.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def elapsed(self) -> float:
        return self._elapsed

    def start(self) -> datetime:
        return self._start

    def resume(self, start: datetime, elapsed: float) -> None:
        """Continue a checkpointed run: its start and the time it had reached."""
        if start.tzinfo is None or elapsed < 0:
            raise ValueError("resume needs an aware start and a non-negative elapsed time")
        self._start = start.astimezone(UTC)
        self._elapsed = elapsed

    def advance(self, seconds: float) -> None:
        """Move virtual time forward without yielding to the event loop."""
        self._elapsed += _check_wait(seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


class WallClock(Clock):
    """Real time; ``sleep`` really waits."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(_check_wait(seconds))
