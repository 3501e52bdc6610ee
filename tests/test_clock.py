from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import run
from workcell.clock import SimClock, WallClock


def test_sim_clock_advances_at_once() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = SimClock(start)
    t0 = time.perf_counter()
    run(clock.sleep(21 * 86400))
    assert time.perf_counter() - t0 < 1.0
    assert clock.elapsed() == 21 * 86400
    assert clock.now() == start + timedelta(days=21)


def test_sim_clock_refuses_negative_and_naive() -> None:
    clock = SimClock(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="negative"):
        run(clock.sleep(-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(datetime(2026, 1, 1))


def test_sim_clock_reports_utc() -> None:
    assert SimClock().now().tzinfo is not None


def test_wall_clock_really_waits() -> None:
    clock = WallClock()
    before = clock.now()
    run(clock.sleep(0.05))
    assert clock.elapsed() >= 0.05
    assert clock.now() - before >= timedelta(seconds=0.05)
    with pytest.raises(ValueError):
        run(clock.sleep(-0.1))
