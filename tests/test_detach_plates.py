"""A detach of several plates times each plate's enzyme by itself, judged from the lab.

Were all plates to get their enzyme first and incubate together, the first plate
would sit in enzyme its set time plus the time the others took; the culture model
would over-digest it. Here a harvest of two plates runs on the simulated lab and
every vessel's exposure is read from the lab's own physical log (``judge``), once
uninterrupted and once killed while the second plate gets its enzyme.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import judge
from benchmarks.kill import (
    OPERATIONS,
    lost_vessels,
    operation_reference,
    operation_work,
    output_of,
    run_point,
)
from protocols.detachment import DetachParams, enzyme_window_min

WINDOW_S = enzyme_window_min(DetachParams()) * 60
SET_S = DetachParams().enzyme_time_min * 60
OP = "harvest"
PLATES: list[str] = OPERATIONS[OP][2]["plates"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKCELL_CPU_WORKERS", "0")  # controllers are forked: no worker pools
        yield operation_reference(tmp_path_factory.mktemp("plates"), OP)


def _within_window(log: list[dict[str, Any]]) -> dict[str, float]:
    exposure = judge.enzyme_exposure(log)
    wells = {p: [v for v in exposure if v.startswith(f"{p}_well_")] for p in PLATES}
    assert all(len(w) >= 2 for w in wells.values()), wells
    assert len(exposure) == sum(len(w) for w in wells.values())
    # each vessel: at least the set time (it lifts), at most set time + overrun
    for v, s in exposure.items():
        assert SET_S - 1 <= s <= WINDOW_S, (v, s / 60)
    return exposure


def test_every_vessel_of_a_two_plate_harvest_is_in_enzyme_within_its_window(
    bench: dict[str, Any],
) -> None:
    assert len(PLATES) >= 2
    ref = bench["ref"]
    assert ref.exit_codes == [0] and ref.verified and ref.cells > 0
    _within_window(ref.log)
    # one enzyme batch per plate, each neutralised after its own set time
    batches = judge.enzyme_waits(ref.log)
    assert len(batches) == len(PLATES)
    assert all(SET_S - 1 <= end - last <= WINDOW_S for last, end in batches)


def test_killed_in_the_second_plates_enzyme_each_plate_keeps_its_window(
    bench: dict[str, Any],
) -> None:
    """The first plate is neutralised before the kill and is not touched again; the second
    plate's wells that had their enzyme are finished first, the rest get theirs."""
    well = f"{PLATES[1]}_well_A2"  # a well in the middle of the plate's enzyme
    hits = [
        i + 1
        for i, r in enumerate(bench["intents"])
        if r["data"].get("unit") == f"enzyme:{well}" and r["data"].get("action") == "dispense"
    ]
    got = run_point(
        bench["template"],
        bench["folder"] / "k",
        bench["cfg"],
        operation_work(OP),
        output_of(OP),
        crash=f"{hits[0]}:reply",
    )
    ref = bench["ref"]
    assert got.exit_codes[0] == -9 and got.exit_codes[-1] == 0
    assert judge.double_additions(got.log, ref.log) == []
    assert lost_vessels(got, ref) == []
    assert got.verified
    exposure = _within_window(got.log)
    # the first plate's exposure is what it was uninterrupted (its batch was over)
    before = judge.enzyme_exposure(ref.log)
    for v in exposure:
        if v.startswith(f"{PLATES[0]}_well_"):
            assert exposure[v] == pytest.approx(before[v], abs=1.0), v
    # the second plate went in two batches: the wells in enzyme, then the rest
    assert len(judge.enzyme_waits(got.log)) == len(PLATES) + 1
    assert got.cells == pytest.approx(ref.cells, rel=0.1)
