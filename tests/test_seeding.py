"""Seeding on the simulated workcell: cells conserved, and bad input refused before any move."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from protocols import seeding
from protocols.pipetting import TipSupply
from tests.conftest import run
from workcell.assembly.build import Workcell
from workcell.errors import ProtocolRefused


def _params(**changes: Any) -> seeding.SeedingParams:
    data: dict[str, Any] = {
        "suspension": {"volume_mL": 5.0, "viable_cells_per_mL": 5e5, "viability_percent": 90},
        "plates": ["plate_1"],
        "density_cells_per_cm2": 3000,
        "medium_mL_per_cm2": 0.2,
    }
    data.update(changes)
    return seeding.SeedingParams.model_validate(data)


def test_cells_taken_equal_cells_seeded_within_pipetting_loss(wc: Workcell) -> None:
    assert wc.lab is not None
    result = run(seeding.run(wc, _params()))
    tube = wc.lab.liquid("cell_suspension")
    loaded = 5.0 * 5e5
    taken = loaded - tube.viable
    delivered = sum(v.cells_delivered or 0 for v in result.vessels)
    lost = wc.lab.star()["cells_discarded"]
    # cells leave the tube only into wells or the discarded tips (viable + dead in tips)
    assert delivered <= taken
    assert taken - delivered <= lost + 1e-6 * taken
    assert delivered / taken >= 0.97
    # and the wells got what the plan asked for, less that loss
    for v in result.vessels:
        assert v.cells_delivered == pytest.approx(v.cells, rel=0.03)
        assert v.cells == pytest.approx(3000 * v.area_cm2)


def test_volumes_tips_and_store_follow_the_plan(wc: Workcell) -> None:
    before = TipSupply(wc.tip_racks()).available()
    result = run(seeding.run(wc, _params()))
    assert result.tips_used == 7  # one for the medium of the plate, one per well
    assert before - TipSupply(wc.tip_racks()).available() == 7
    plate = wc.plate("plate_1")
    for v in result.vessels:
        well = plate.get_item(v.well)
        assert well.tracker.get_used_volume() == pytest.approx(0.2 * v.area_cm2 * 1000)
    stored = wc.store.vessels()
    assert sorted(s.id for s in stored) == sorted(v.vessel for v in result.vessels)
    assert all(s.passage == 0 and s.parents == [] for s in stored)
    assert len(wc.store.events("seeded")) == 6
    assert result.duration_s > 0
    assert wc.container("medium").tracker.get_used_volume() == pytest.approx(
        150_000 - result.reagents_uL["medium"]
    )


def _refused(wc: Workcell, params: seeding.SeedingParams) -> str:
    t0 = wc.clock.elapsed()
    with pytest.raises(ProtocolRefused) as exc:
        run(seeding.run(wc, params))
    assert len(wc.log) == 3  # only the operator filling the three reagent troughs: nothing moved
    assert wc.store.vessels() == []
    assert wc.clock.elapsed() == t0
    assert wc.container("cell_suspension").tracker.get_used_volume() == 0
    return str(exc.value)


def test_volume_over_a_well_capacity_is_refused_naming_vessel_and_volume(wc: Workcell) -> None:
    msg = _refused(wc, _params(medium_mL_per_cm2=1.9))
    assert "plate_1_well_A1 holds 16.80 mL; seeding would put 18.73 mL" in msg


def test_unknown_plate_and_well(wc: Workcell) -> None:
    msg = _refused(wc, _params(plates=["plate_99"]))
    assert "no resource 'plate_99'" in msg
    msg = _refused(wc, _params(wells=["A1", "Z9"]))
    assert "plate 'plate_1' has no well 'Z9'" in msg


def test_not_a_plate(wc: Workcell) -> None:
    assert "'medium' is a Trough, not a plate" in _refused(wc, _params(plates=["medium"]))


def test_not_enough_suspension(wc: Workcell) -> None:
    params = _params(plates=["plate_1", "plate_2"])
    params.suspension.volume_mL = 0.8
    msg = _refused(wc, params)
    assert "cell suspension: 0.71 mL needed from 'cell_suspension', only 0.00 mL usable" in msg


def test_suspension_too_concentrated_to_pipette(wc: Workcell) -> None:
    params = _params()
    params.suspension.viable_cells_per_mL = 5e6
    assert "dilute the suspension" in _refused(wc, params)


def test_not_enough_tips(wc: Workcell) -> None:
    tips = TipSupply(wc.tip_racks())
    for _ in range(tips.available() - 3):
        tips.next().tracker.remove_tip()
    assert "7 tips needed, 3 left" in _refused(wc, _params())


def test_not_enough_medium(wc: Workcell) -> None:
    wc.container("medium").tracker.remove_liquid(145_000)
    wc.container("medium").tracker.commit()
    assert "medium: 11.48 mL needed from 'medium', only 1.00 mL usable" in _refused(wc, _params())


def test_well_already_seeded(wc: Workcell) -> None:
    run(seeding.run(wc, _params(wells=["A1"])))
    with pytest.raises(ProtocolRefused, match="plate_1_well_A1 is not empty"):
        run(seeding.run(wc, _params(wells=["A1"])))


@pytest.mark.parametrize(
    "change",
    [
        {"density_cells_per_cm2": 50},
        {"density_cells_per_cm2": 20000},
        {"medium_mL_per_cm2": 0.0},
        {"plates": []},
        {"suspension": {"volume_mL": 5, "viable_cells_per_mL": 1e9}},
        {"suspension": {"volume_mL": 5, "viable_cells_per_mL": 1e6, "viability_percent": 30}},
        {"unexpected": 1},
    ],
)
def test_parameters_out_of_range_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _params(**change)


def test_fault_mid_protocol_records_which_vessel_is_in_which_state(wc: Workcell) -> None:
    backend = wc.liquid_handler.backend
    original = backend.dispense
    calls = {"n": 0}

    async def failing_dispense(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        # medium done (12 dispenses); each well's cells: one dispense into the well (the
        # tube is mixed in its aspirate's own command). The third well's cells fail.
        if calls["n"] == 12 + 2 + 1:
            raise RuntimeError("simulated pressure fault")
        await original(*args, **kwargs)

    backend.dispense = failing_dispense  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="pressure fault"):
        run(seeding.run(wc, _params()))
    fault = wc.store.events("protocol_fault")[0].data
    assert fault["seeded"] == ["plate_1_well_A1", "plate_1_well_B1"]
    assert fault["medium_only"] == [
        "plate_1_well_A2",
        "plate_1_well_B2",
        "plate_1_well_A3",
        "plate_1_well_B3",
    ]
    assert [v.id for v in wc.store.vessels()] == fault["seeded"]


def test_the_suspension_is_mixed_by_each_of_its_aspirates_in_the_lab(wc: Workcell) -> None:
    """Judged from the lab's own log: each aspirate from the tube comes right after its
    mix, on the same channel and in the same tube (one command: the strokes, then the
    draw); no stroke is an action of its own (nothing is dispensed into the tube)."""
    assert wc.lab is not None
    run(seeding.run(wc, _params()))
    rows = [r for r in wc.lab.log() if r["device"] == "star"]
    drawn = [i for i, r in enumerate(rows) if r["action"] == "aspirate"]
    from_tube = [i for i in drawn if rows[i]["detail"]["source"] == "cell_suspension"]
    assert len(from_tube) == 6  # one per well
    for i in from_tube:
        mix = rows[i - 1]
        assert mix["action"] == "mix", rows[i - 1 : i + 1]
        assert mix["detail"]["container"] == "cell_suspension"
        assert mix["detail"]["channel"] == rows[i]["detail"]["channel"]
        assert mix["detail"]["cycles"] == 3 and mix["detail"]["volume_uL"] > 0
        assert mix["t"] == rows[i]["t"]  # one command, at one time
    mixes = [r for r in rows if r["action"] == "mix"]
    assert len(mixes) == len(from_tube)
    assert not [
        r for r in rows if r["action"] == "dispense" and r["detail"]["target"] == "cell_suspension"
    ]
