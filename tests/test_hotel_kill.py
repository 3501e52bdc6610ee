"""Vessels from a hotel survive a killed controller: the lab keeps the hotel, the record agrees.

The clinical workcell's first campaign step draws its trays from the hotel and
seeds them from the vial. The controller is SIGKILLed at a draw (the hotel handed
the tray out, the controller had not recorded it) and at the first seeding
dispense into a drawn tray, then resumed; the outcome is judged from the lab: its
hotel stock and the vessels out of it against the record's draws, no reagent or
cells added twice, nothing lost (``benchmarks/kill.py``; the benchmark's
``--only clinical`` scenario does this at every action of a passage).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import judge
from benchmarks.kill import (
    Outcome,
    _controller,
    _fork,
    _stop_labs_in,
    _wait,
    campaign_output,
    campaign_work,
    clinical_config,
    journal_intents,
    lost_vessels,
    run_point,
)
from tests.test_capacity_plan import PARAMS
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.session import open_session
from workcell.store import STORE_FILE, Store

PARAMS_20KG = PARAMS.model_copy(update={"patient_weight_kg": 20.0})


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKCELL_CPU_WORKERS", "0")  # controllers are forked: no worker pools
        folder = tmp_path_factory.mktemp("hotel-kill")
        cfg = clinical_config(folder / "tpl")
        template = folder / "tpl" / "template"

        async def fresh(config: WorkcellConfig, run_dir: Path) -> None:
            async with open_session(config, run_dir):
                pass  # a run folder with its lab and nothing done

        assert _wait(_fork(_controller, cfg, template, fresh, None)) == 0
        _stop_labs_in(template)
        work = campaign_work(PARAMS_20KG, 1)  # the campaign's first step: draw and seed
        ref = run_point(template, folder / "ref", cfg, work, campaign_output)
        before = len(journal_intents(template))
        intents = journal_intents(folder / "ref")[before:]  # the step's own
        yield {
            "folder": folder,
            "cfg": cfg,
            "template": template,
            "ref": ref,
            "work": work,
            "intents": intents,
        }


def _nth(intents: list[dict[str, Any]], pred: Any, nth: int = 0) -> int:
    return [i + 1 for i, r in enumerate(intents) if pred(r["data"])][nth]


def test_the_uninterrupted_step_draws_and_seeds_from_the_hotel(bench: dict[str, Any]) -> None:
    ref: Outcome = bench["ref"]
    assert ref.exit_codes == [0] and ref.verified and ref.hotel == []
    draws = [r for r in ref.log if r["action"] == "draw_vessel"]
    assert len(draws) >= 2 and ref.cells > 1e5


@pytest.mark.parametrize(
    ("which", "phase"),
    [
        ("first draw", "reply"),  # the hotel handed the tray out; the controller died
        ("second draw", "intent"),  # recorded, not sent
        ("first seeding dispense", "intent"),  # recorded, not sent
    ],
)
def test_killed_controller_resumes_with_the_same_hotel(
    bench: dict[str, Any], which: str, phase: str
) -> None:
    ref: Outcome = bench["ref"]
    intents = bench["intents"]
    if which.endswith("draw"):
        nth = 0 if which == "first draw" else 1
        n = _nth(intents, lambda d: d.get("action") == "draw_vessel", nth)
    else:
        n = _nth(
            intents,
            lambda d: d.get("action") == "dispense" and str(d.get("unit", "")).startswith("cells"),
        )
    got = run_point(
        bench["template"],
        bench["folder"] / "k",
        bench["cfg"],
        bench["work"],
        campaign_output,
        crash=f"{n}:{phase}",
    )
    assert got.exit_codes == [-9, 0]  # SIGKILLed, then resumed to the end of the step
    killed_at = bench["intents"][n - 1]["data"]
    assert killed_at["action"] == ("draw_vessel" if which.endswith("draw") else "dispense")
    assert got.hotel == [], got.hotel  # the lab's hotel and the record agree
    if (which, phase) == ("first draw", "reply"):  # its event written once it was found done
        store = Store(bench["folder"] / "k" / STORE_FILE)
        try:
            late = [e for e in store.events("vessel_drawn") if e.data.get("recorded_after_restart")]
            found = [e for e in store.events("recovery") if "draw_vessel: done" in e.data["what"]]
        finally:
            store.close()
        assert len(late) == 1 and len(found) == 1
    draws = [r["detail"]["plate"] for r in got.log if r["action"] == "draw_vessel"]
    assert sorted(draws) == sorted(
        r["detail"]["plate"] for r in ref.log if r["action"] == "draw_vessel"
    ), "the resumed step drew other (or more) trays than the uninterrupted one"
    assert judge.double_additions(got.log, ref.log) == []
    assert lost_vessels(got, ref) == []
    assert got.verified
    assert got.cells == pytest.approx(ref.cells, rel=0.1)


@pytest.mark.parametrize(
    ("action", "phase"),
    [
        ("aspirate", "reply"),  # medium in a group of tips at the crash
        ("dispense", "intent"),  # the group's tips full, the dispense recorded, not sent
        ("dispense", "reply"),  # dispensed by every channel, not recorded
    ],
)
def test_killed_in_a_group_of_channels_the_medium_goes_in_once(
    bench: dict[str, Any], action: str, phase: str
) -> None:
    """The clinical STAR moves a tray's medium on several channels at once; killed around
    such an action, each tray still gets its medium exactly once (the lab's log)."""
    ref: Outcome = bench["ref"]
    intents = bench["intents"]
    n = _nth(
        intents,
        lambda d: (
            d.get("action") == action
            and str(d.get("unit", "")).startswith("medium:")
            and len(d.get("ops", [])) > 1
        ),
        1,  # the second: the first tray's medium is under way
    )
    got = run_point(
        bench["template"],
        bench["folder"] / "k",
        bench["cfg"],
        bench["work"],
        campaign_output,
        crash=f"{n}:{phase}",
    )
    assert got.exit_codes == [-9, 0]
    assert judge.double_additions(got.log, ref.log) == []
    medium = {k: v for k, v in judge.additions(got.log).items() if k[1] == "medium"}
    expected = {k: v for k, v in judge.additions(ref.log).items() if k[1] == "medium"}
    assert medium.keys() == expected.keys()
    for key, volume in expected.items():
        assert medium[key] == pytest.approx(volume, abs=1.0), key
    # the lab moved the channels together: rows of one dispense share the lab's time
    groups: dict[float, int] = {}
    for r in got.log:
        if r["action"] == "dispense" and r["detail"]["sources"] == ["medium"]:
            groups[r["t"]] = groups.get(r["t"], 0) + 1
    assert max(groups.values()) > 1
    assert lost_vessels(got, ref) == []
    assert got.verified


def test_a_restarted_lab_has_the_same_hotel_and_drawn_vessels() -> None:
    """The lab's state on disk holds the hotel: a lab started again from it (as after a
    SIGKILL) has the same stock and the same vessels out, with their wells."""
    from datetime import UTC, datetime

    from simulators.lab.spec import HotelSpec, LabSpec
    from simulators.lab.world import Lab, Refusal

    tray = "thermo_nunc_1_troughplate_90000uL_Fb_omnitray"
    spec = LabSpec(name="hotel", hotel=HotelSpec(name="hotel", stock={tray: 2}))
    start = datetime(2026, 1, 5, tzinfo=UTC)
    lab = Lab(spec, start)
    well = {"name": "v0001_well", "area_cm2": 77.0, "max_volume_uL": 90000.0}
    lab.handle("hotel.draw", {"labware": tray, "plate": "v0001", "wells": [well], "actor": "t"})
    again = Lab(spec, start)
    again.load_state(lab.to_state())
    assert again.handle("hotel.state", {})[0] == {"stock": {tray: 1}, "drawn": {"v0001": tray}}
    assert again.plate_wells["v0001"] == ["v0001_well"]
    again.handle("hotel.put_back", {"plate": "v0001", "actor": "t"})
    assert again.handle("hotel.state", {})[0] == {"stock": {tray: 2}, "drawn": {}}
    with pytest.raises(Refusal, match="not a vessel drawn"):
        again.handle("hotel.discard", {"plate": "v0001", "actor": "t"})
