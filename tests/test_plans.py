"""The plans behind "refuse before motion": each case that once failed after the robot moved.

Each test judges from the simulators' action log and the store: a refusal leaves
no device action; a run that completes used exactly the tips it planned.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocols import harvest, media_exchange, passaging, seeding
from protocols.detachment import DetachParams
from protocols.dry_run import dry_run, prepare_cultures
from protocols.pipetting import MIN_VOLUME_UL, TipSupply
from tests.conftest import run
from workcell.assembly.build import build_workcell
from workcell.assembly.config import WorkcellConfig, parse_config
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused
from workcell.locks import devices_locked, lock_dir


def _refused(wc: Workcell, coro: Any) -> str:
    n0 = len(wc.log)
    with pytest.raises(ProtocolRefused) as exc:
        run(coro)
    assert wc.log.actions[n0:] == [], "a refused protocol must not move any device"
    return str(exc.value)


def _leave_tips(wc: Workcell, n: int) -> None:
    spots = [s for r in wc.tip_racks() for s in r.get_all_items() if s.tracker.has_tip]
    for spot in spots[n:]:
        spot.tracker.remove_tip(commit=True)


def _picked(wc: Workcell, n0: int) -> int:
    return sum(1 for a in wc.log.actions[n0:] if a.action == "pick_up_tip")


def test_harvest_runs_on_exactly_the_tips_it_plans_and_refuses_one_fewer(
    sim_config: WorkcellConfig,
) -> None:
    for spare in (0, -1):
        wc = build_workcell(sim_config)
        run(wc.setup())
        run(prepare_cultures(wc, ["plate_1"], 3))
        params = harvest.HarvestParams(plates=["plate_1"])
        detach = harvest.plan(wc, params).tips  # 6 wells: 6 + 6 removal tips, 4 shared
        assert detach == 16
        _leave_tips(wc, detach + spare)
        n0 = len(wc.log)
        if spare < 0:
            assert f"{detach} tips needed, {detach - 1} left" in _refused(
                wc, harvest.run(wc, params)
            )
        else:
            result = run(harvest.run(wc, params))
            assert result.tips_used == _picked(wc, n0) == detach
        run(wc.stop())


def test_duplicate_wells_and_plates_are_refused_by_the_model_and_by_the_plan(wc: Workcell) -> None:
    good = {"suspension": {"volume_mL": 5, "viable_cells_per_mL": 5e5}, "plates": ["plate_1"]}
    with pytest.raises(ValueError, match="named more than once: a1"):
        seeding.SeedingParams.model_validate({**good, "wells": ["A1", "a1"]})
    with pytest.raises(ValueError, match="named more than once: plate_1"):
        harvest.HarvestParams.model_validate({"plates": ["plate_1", "plate_1"]})
    # a model built without validation (a flow's internal call) meets the plan
    sneaky = seeding.SeedingParams.model_construct(
        **{**seeding.SeedingParams.model_validate(good).__dict__, "wells": ["A1", "A1"]}
    )
    assert "named more than once" in _refused(wc, seeding.run(wc, sneaky))


def test_reservoir_roles_are_checked(wc: Workcell, sim_data: dict[str, Any]) -> None:
    run(prepare_cultures(wc, ["plate_1"], 2))
    msg = _refused(
        wc,
        passaging.run(
            wc,
            passaging.PassagingParams(
                plate="plate_1",
                destination_plates=["plate_6"],
                detach=DetachParams(waste="medium"),
            ),
        ),
    )
    assert "'medium' holds medium, a reagent; it cannot be the waste" in msg
    assert "each role needs a container of its own" in msg
    msg = _refused(
        wc,
        media_exchange.run(
            wc, media_exchange.MediaExchangeParams(plates=["plate_1"], medium_reservoir="enzyme")
        ),
    )
    assert "'enzyme' is loaded with enzyme; the medium reservoir must be" in msg
    # enzyme loaded into the trough called "medium"
    sim_data["deck"]["carriers"][2]["sites"][0]["contents"]["reagent"] = "enzyme"
    wrong = build_workcell(parse_config(sim_data))
    run(wrong.setup())
    msg = _refused(
        wrong,
        seeding.run(
            wrong,
            seeding.SeedingParams(
                suspension=seeding.Suspension(volume_mL=5, viable_cells_per_mL=5e5),
                plates=["plate_1"],
            ),
        ),
    )
    assert "'medium' is loaded with enzyme" in msg
    run(wrong.stop())


def test_a_pool_tube_that_is_not_empty_is_refused(wc: Workcell) -> None:
    run(prepare_cultures(wc, ["plate_1"], 2))
    wc.container("pool_tube").tracker.add_liquid(3000)
    wc.container("pool_tube").tracker.commit()
    msg = _refused(wc, harvest.run(wc, harvest.HarvestParams(plates=["plate_1"])))
    assert "pool tube 'pool_tube' still holds 3.00 mL from before" in msg


def test_passage_into_a_24_well_plate_at_low_density_dilutes_the_pool(wc: Workcell) -> None:
    """Once refused after the cells were pooled: 12 uL per well is below a tip's minimum."""
    run(prepare_cultures(wc, ["plate_1"], 7))
    n0 = len(wc.log)
    result = run(
        passaging.run(
            wc,
            passaging.PassagingParams(
                plate="plate_1",
                destination_plates=["plate_3"],
                density_cells_per_cm2=1234,
                confluence_threshold_percent=10,
            ),
        )
    )
    assert result.passaged and not result.held and len(result.children) == 24
    assert result.dilution_uL > 0 and wc.store.events("pool_diluted")
    into_wells = [
        a.detail["volume_uL"]
        for a in wc.log.actions[n0:]
        if a.action == "dispense"
        and a.detail["target"].startswith("plate_3")
        and a.detail["offset_mm"] == [0, 0, 0]
    ]
    assert min(into_wells) >= MIN_VOLUME_UL
    assert result.tips_used == _picked(wc, n0)


def test_a_pool_too_dilute_to_seed_is_held_with_a_deviation(wc: Workcell) -> None:
    run(prepare_cultures(wc, ["plate_1"], 7))
    result = run(
        passaging.run(
            wc,
            passaging.PassagingParams(
                plate="plate_1",
                destination_plates=["plate_6"],
                density_cells_per_cm2=10000,
                medium_mL_per_cm2=0.05,
                confluence_threshold_percent=10,
                # much enzyme and neutralising medium: a large, dilute pool (in a trough)
                detach=DetachParams(
                    enzyme_mL_per_cm2=0.25, neutralise_ratio=5, pool_tube="harvest_pool"
                ),
            ),
        )
    )
    assert result.passaged and result.held and result.children == []
    deviation = wc.store.events("deviation")[-1].data["message"]
    assert "held in 'harvest_pool'" in deviation and "more than the 50 uL/cm2" in deviation
    assert all(v.state == "passaged" for v in wc.store.vessels() if v.plate == "plate_1")
    assert wc.container("harvest_pool").tracker.get_used_volume() > 0  # the cells are there


@pytest.mark.parametrize(
    "plates",
    [["plate_3"], ["plate_1", "plate_2", "plate_4", "plate_5", "plate_6"]],
    ids=["24-well", "five-6-well"],
)
def test_dry_run_prelude_prepares_any_plates_and_leaves_the_deck_loaded(
    sim_config: WorkcellConfig, plates: list[str]
) -> None:
    params = media_exchange.MediaExchangeParams(plates=plates)
    report, wc = run(dry_run(sim_config, "media_exchange", params, culture_days=7))
    assert report.result["vessels"]
    wc.store.close()


def test_lock_files_never_leave_the_lock_folder(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKCELL_LOCK_DIR", str(tmp_path / "locks"))

    async def take() -> None:
        async with devices_locked("../../evil", ["../../x", "a/b", "star"]):
            pass

    run(take())
    made = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert all(str(p).startswith("locks") for p in made), made
    assert lock_dir("../../evil").parent == tmp_path / "locks"


def test_tips_left_check_counts_only_fresh_tips(wc: Workcell) -> None:
    _leave_tips(wc, 5)
    assert TipSupply(wc.tip_racks()).available() == 5
