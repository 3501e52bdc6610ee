"""A detach of several plates times each plate's enzyme by itself, judged from the lab.

Were all plates to get their enzyme first and incubate together, the first plate
would sit in enzyme its set time plus the time the others took; the culture model
would over-digest it. Here a harvest of two plates runs on the simulated lab and
every vessel's exposure is read from the lab's own physical log (``judge``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import judge
from benchmarks.kill import OPERATIONS, operation_template, operation_work, output_of, run_point
from protocols.detachment import DetachParams, enzyme_window_min

WINDOW_S = enzyme_window_min(DetachParams()) * 60
SET_S = DetachParams().enzyme_time_min * 60


def test_every_vessel_of_a_two_plate_harvest_is_in_enzyme_within_its_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKCELL_CPU_WORKERS", "0")  # controllers are forked: no worker pools
    plates = OPERATIONS["harvest"][2]["plates"]
    assert len(plates) >= 2
    cfg, template = operation_template(tmp_path / "tpl", "harvest")
    got = run_point(
        template, tmp_path / "run", cfg, operation_work("harvest"), output_of("harvest")
    )
    assert got.exit_codes == [0] and got.verified
    exposure = judge.enzyme_exposure(got.log)
    wells = {p: sorted(v for v in exposure if v.startswith(f"{p}_well_")) for p in plates}
    assert all(len(w) >= 2 for w in wells.values()), wells
    assert len(exposure) == sum(len(w) for w in wells.values())
    # each vessel: at least the set time (it lifts), at most set time + overrun
    for v, s in exposure.items():
        assert SET_S - 1 <= s <= WINDOW_S, (v, s / 60)
    # one enzyme batch per plate, each neutralised after its own set time
    batches = judge.enzyme_waits(got.log)
    assert len(batches) == len(plates)
    assert all(SET_S - 1 <= end - last <= WINDOW_S for last, end in batches)
    assert got.cells > 0
