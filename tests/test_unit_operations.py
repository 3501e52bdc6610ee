"""Media exchange, passaging and harvest on the simulated STAR, and their refusals."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from protocols import harvest, media_exchange, passaging
from protocols.campaign import housekeeping
from protocols.dry_run import prepare_cultures
from protocols.pipetting import dead_volume_uL
from tests.conftest import run
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused

DESTS = ["plate_6", "plate_7", "plate_8", "plate_9", "plate_10"]


def _grow(wc: Workcell, days: float = 7.0, plates: list[str] | None = None) -> None:
    run(prepare_cultures(wc, plates or ["plate_1"], days))


def _refused(wc: Workcell, coro: Any) -> str:
    n0, t0 = len(wc.log), wc.clock.elapsed()
    with pytest.raises(ProtocolRefused) as exc:
        run(coro)
    assert len(wc.log) == n0, "a refused protocol must not move any device"
    assert wc.clock.elapsed() == t0
    return str(exc.value)


# --- media exchange ---------------------------------------------------------------------


# spent medium out: a tip per vessel; fresh medium in: a tip per vessel or per plate
@pytest.mark.parametrize(("policy", "tips"), [("per_vessel", 12), ("per_plate", 7)])
def test_media_exchange_renews_medium(wc: Workcell, policy: str, tips: int) -> None:
    assert wc.lab is not None
    _grow(wc, 2.5)
    before = {v: wc.lab.vessel(v) for v in wc.lab.vessels()}
    result = run(
        media_exchange.run(
            wc,
            media_exchange.MediaExchangeParams(
                plates=["plate_1"], tips=policy, medium_mL_per_cm2=0.25
            ),
        )
    )
    assert result.tips_used == tips
    assert len(wc.log.of("pick_up_tip")) - 7 == tips  # 7 tips went to the prelude's seeding
    plate = wc.plate("plate_1")
    for well in plate.get_all_items():
        area = math.pi * (well.get_size_x() / 2) ** 2 / 100
        assert well.tracker.get_used_volume() == pytest.approx(250 * area)
        state = wc.lab.vessel(well.name)
        assert state.nutrient > 0.97 > before[well.name].nutrient
        assert state.dead < 0.1 * before[well.name].dead  # floating dead cells went to waste
        assert state.attached_viable == pytest.approx(before[well.name].attached_viable, rel=0.01)
    assert wc.in_incubator("plate_1")  # back where it was
    assert len(wc.store.events("fed")) == 6


def test_media_exchange_refusals(wc: Workcell) -> None:
    _grow(wc, 1)
    msg = _refused(
        wc,
        media_exchange.run(
            wc, media_exchange.MediaExchangeParams(plates=["plate_2"], wells=["A1"])
        ),
    )
    assert "vessel plate_2_well_A1 is not in the store, not an active culture" in msg
    msg = _refused(
        wc, media_exchange.run(wc, media_exchange.MediaExchangeParams(plates=["plate_4"]))
    )
    assert "plate 'plate_4' holds no active culture vessel" in msg
    wc.container("medium").tracker.remove_liquid(
        wc.container("medium").tracker.get_used_volume() - 10_000
    )
    wc.container("medium").tracker.commit()
    msg = _refused(
        wc, media_exchange.run(wc, media_exchange.MediaExchangeParams(plates=["plate_1"]))
    )
    assert "reservoir 'medium' would run dry: 11.24 mL needed, 6.00 mL usable" in msg
    wc.container("waste").tracker.add_liquid(195_000)
    wc.container("waste").tracker.commit()
    msg = _refused(
        wc, media_exchange.run(wc, media_exchange.MediaExchangeParams(plates=["plate_1"]))
    )
    assert "'waste' would overflow" in msg


@pytest.mark.parametrize(
    "change",
    [{"medium_mL_per_cm2": 0.01}, {"residual_uL_per_cm2": 1}, {"tips": "never"}, {"plates": []}],
)
def test_media_exchange_parameter_ranges(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        media_exchange.MediaExchangeParams.model_validate({"plates": ["plate_1"], **change})


# --- passaging -----------------------------------------------------------------------------


def test_passaging_85_percent_plate_gives_the_children_the_count_implies(wc: Workcell) -> None:
    assert wc.lab is not None
    _grow(wc, 7)
    conf = [wc.lab.vessel(v).confluence for v in wc.lab.vessels()]
    assert 0.8 < sum(conf) / len(conf) < 0.92  # about 85 %
    # an 85 % plate holds about 3.7e4 cells/cm2 at PD 4-10 (4.4e4 at confluence): 5 x 6
    # free wells at 7,000 cells/cm2 take them all
    params = passaging.PassagingParams(
        plate="plate_1", destination_plates=DESTS, density_cells_per_cm2=7000
    )
    result = run(passaging.run(wc, params))
    assert result.passaged and result.count is not None
    pool = wc.container("pool_tube")
    area = wc.store.vessel(result.children[0]).area_cm2  # type: ignore[union-attr]
    assert len(result.children) == int(result.cells_available // (7000 * area))
    pooled_uL = wc.store.measurements(kind="pool_volume")[0].value
    assert result.cells_available == pytest.approx(
        result.count.viable_per_mL * (pooled_uL - dead_volume_uL(pool)) / 1000
    )
    # a real split; not capped by the 30 free wells: the count above says how many (an 85 %
    # plate's count implies about 30, so one draw of the counter's noise may make it 30)
    assert 3 <= len(result.children) <= 30
    sources = sorted(f"plate_1_well_{w}" for w in ("A1", "A2", "A3", "B1", "B2", "B3"))
    for child in result.children:
        record = wc.store.vessel(child)
        assert record is not None
        assert record.parents == sources and record.passage == 1 and record.state == "active"
    assert all(wc.store.vessel(v).state == "passaged" for v in sources)  # type: ignore[union-attr]
    for plate in {c.split("_well_")[0] for c in result.children}:
        assert wc.in_incubator(plate)
    assert "passage due: mean confluence" in wc.store.events("decision")[0].data["decision"]


def test_passaging_below_threshold_puts_the_plate_back(wc: Workcell) -> None:
    _grow(wc, 3)
    result = run(
        passaging.run(
            wc, passaging.PassagingParams(plate="plate_1", destination_plates=["plate_6"])
        )
    )
    assert not result.passaged and result.children == []
    assert result.decision.startswith("no passage: mean confluence")
    assert wc.in_incubator("plate_1")
    assert not wc.log.of("count")
    assert all(v.state == "active" for v in wc.store.vessels())


def test_enzyme_time_trades_yield_against_viability(wc: Workcell) -> None:
    assert wc.lab is not None
    _grow(wc, 6, ["plate_1", "plate_2"])
    short = passaging.PassagingParams(
        plate="plate_1",
        destination_plates=["plate_6"],
        confluence_threshold_percent=10,
        detach={"enzyme_time_min": 2},
    )
    long = short.model_copy(
        update={
            "plate": "plate_2",
            "destination_plates": ["plate_7"],
            "detach": short.detach.model_copy(update={"enzyme_time_min": 12}),
        }
    )
    left = {}
    for p in (short, long):
        housekeeping.do(wc, housekeeping.due(wc), "operator")  # the last pool is emptied
        run(passaging.run(wc, p))
        left[p.plate] = sum(
            wc.lab.vessel(f"{p.plate}_well_{w}").attached_viable
            for w in ("A1", "A2", "A3", "B1", "B2", "B3")
        )
    assert left["plate_1"] > 3 * left["plate_2"]  # 2 min leaves many more cells behind
    counts = [e.data for e in wc.store.events("counted")]
    assert counts[0]["viability_percent"] > counts[1]["viability_percent"]


def test_passaging_refusals(wc: Workcell) -> None:
    _grow(wc, 2)
    msg = _refused(
        wc,
        passaging.run(
            wc, passaging.PassagingParams(plate="plate_1", destination_plates=["plate_1"])
        ),
    )
    assert "cannot be its own destination" in msg
    assert "destination plate 'plate_1' is in the incubator" in msg
    msg = _refused(
        wc,
        passaging.run(
            wc, passaging.PassagingParams(plate="plate_3", destination_plates=["plate_nope"])
        ),
    )
    assert "plate 'plate_3' holds no active culture vessel" in msg
    assert "no resource 'plate_nope'" in msg
    wc.container("enzyme").tracker.remove_liquid(38_000)
    wc.container("enzyme").tracker.commit()
    msg = _refused(
        wc,
        passaging.run(
            wc, passaging.PassagingParams(plate="plate_1", destination_plates=["plate_6"])
        ),
    )
    assert "reservoir 'enzyme' would run dry: 2.96 mL needed, 0.80 mL usable" in msg
    with pytest.raises(ValidationError, match="enzyme_time_min"):
        passaging.PassagingParams(
            plate="plate_1", destination_plates=["plate_6"], detach={"enzyme_time_min": 30}
        )


# --- harvest ---------------------------------------------------------------------------------


def test_harvest_reports_total_cells_viability_and_dose(wc: Workcell) -> None:
    assert wc.lab is not None
    _grow(wc, 7, ["plate_1", "plate_2"])
    truth = sum(wc.lab.vessel(v).attached_viable for v in wc.lab.vessels())
    result = run(
        harvest.run(
            wc,
            harvest.HarvestParams(
                plates=["plate_1", "plate_2"], patient_weight_kg=1.5, target_dose_cells_per_kg=1e6
            ),
        )
    )
    assert len(result.vessels) == 12
    # the harvest loses some cells; the count's own noise (3 % instrument CV and counting
    # statistics) can still put one reading a little over the truth
    assert 0.75 * truth < result.total_viable_cells < 1.1 * truth
    assert result.dose_cells_per_kg == pytest.approx(result.total_viable_cells / 1.5)
    assert result.dose_reached == (result.dose_cells_per_kg >= 1e6)
    assert 85 < result.viability_percent <= 100
    assert all(v.state == "harvested" for v in wc.store.vessels())
    assert wc.store.events("harvested")[0].data["decision"].startswith("dose ")
    # judged from the lab's log: each vessel's first draw into the pool resuspended it
    # (two strokes of its own command, in the same well, on the same channels), once
    rows = [r for r in wc.lab.log() if r["device"] == "star"]
    pooled = [
        i
        for i, r in enumerate(rows)
        if r["action"] == "dispense" and r["detail"]["target"] == "pool_tube"
    ]
    firsts: dict[str, int] = {}
    for i in pooled:
        back = i - 1
        while rows[back]["action"] != "aspirate":
            back -= 1
        firsts.setdefault(rows[back]["detail"]["source"], back)
    assert sorted(firsts) == sorted(result.vessels)
    for well, i in firsts.items():
        mixes = [r for r in rows if r["action"] == "mix" and r["detail"]["container"] == well]
        draw = [r for r in rows if r["t"] == rows[i]["t"] and r["action"] == "aspirate"]
        assert {m["t"] for m in mixes} == {rows[i]["t"]}, well  # in the first draw's command
        assert sorted(m["detail"]["channel"] for m in mixes) == sorted(
            r["detail"]["channel"] for r in draw
        )
        assert all(m["detail"]["cycles"] == 2 for m in mixes)


def test_harvest_refuses_a_pool_that_would_overflow(wc: Workcell) -> None:
    plates = ["plate_1", "plate_2", "plate_4", "plate_5", "plate_6", "plate_7"]
    _grow(wc, 1, plates)
    msg = _refused(wc, harvest.run(wc, harvest.HarvestParams(plates=plates)))
    assert "'pool_tube' would overflow" in msg
