"""A small fault campaign: faults in every simulator, the process killed twice, resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.faults import one_run


def test_fault_campaign_repeats_nothing_loses_nothing_and_verifies(tmp_path: Path) -> None:
    rates = {"no_answer": 0.05, "garbled": 0.05, "tip_pickup_failure": 0.05}
    r = one_run(seed=3, vessels=6, days=10, kills=2, folder=tmp_path, rates=rates)
    assert r["kills"] == 2
    assert r["tip_failures"] >= 1 and r["alarms"] >= 1  # the heater fault was seen
    assert r["recovered"] == r["injected"]
    assert r["repeated"] == 0 and r["lost"] == 0 and r["verified"]
    assert r["harvest"] == pytest.approx(r["reference"], rel=0.05)
