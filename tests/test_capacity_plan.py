"""Capacity planning: the 70 kg dose fits the clinical workcell; one that cannot is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from protocols.campaign.engine import CampaignEngine, CampaignParams, auto_approve, plan_for
from simulators.lab.store import read_log
from tests.conftest import START, run
from workcell.assembly.build import build_workcell
from workcell.assembly.config import DEFAULT_CONFIG, parse_config
from workcell.assembly.lab import LAB_FOLDER
from workcell.assembly.session import open_session
from workcell.errors import ProtocolRefused
from workcell.store import STORE_FILE, Store

CLINICAL = DEFAULT_CONFIG.parent / "clinical.yaml"
PARAMS = CampaignParams.model_validate_json(
    (Path(__file__).parents[1] / "examples" / "campaign-70kg.json").read_text()
)


def _clinical(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(CLINICAL.read_text()))
    data["clock"]["start"] = START.isoformat()
    for key, value in changes.items():
        if key == "stock":
            data["inventory"]["hotel"]["stock"] = value
        elif key == "racks":
            data["devices"]["incubator"]["racks"] = value
        elif key == "overrides":
            data["culture"]["overrides"] = value
        elif key == "supplies":
            data["inventory"]["supplies"] = value
    return data


def _plan(data: dict[str, Any], params: CampaignParams = PARAMS) -> Any:
    wc = build_workcell(parse_config(data))
    try:
        return plan_for(wc, params)
    finally:
        run(wc.stop())  # the lab it started stops with it


def test_the_70kg_dose_fits_the_clinical_workcell_within_five_weeks() -> None:
    plan = _plan(_clinical())
    assert plan.fits, plan.shortfalls
    assert plan.days <= 35 and plan.phases[-1].passage <= PARAMS.passage_limit
    assert plan.peak_slots <= plan.incubator_slots == 210
    # 4 of the vial's 5 mL can be pipetted (the 50 mL tube keeps 1 mL): 2e6 of 2.5e6 cells
    assert plan.vial_cells_used + plan.vial_cells_unused == pytest.approx(2.0e6)
    # the expectation is the culture model's: slower cells, more days
    slow = _plan(_clinical(overrides={"doubling_time_h": 60.0}))
    assert slow.days > plan.days * 1.3


def test_a_dose_that_cannot_fit_is_refused_before_any_device_moves(tmp_path: Path) -> None:
    data = _clinical(
        stock={"thermo_nunc_1_troughplate_90000uL_Fb_omnitray": 40},
        racks=[{"type": "cytomat_rack_23mm_21"}] * 2,
        supplies={"medium_L": 2.0, "tips": 300},
    )

    params = PARAMS.model_copy(update={"max_days": 10.0})

    async def go() -> None:
        async with open_session(parse_config(data), tmp_path / "run") as s:
            await CampaignEngine(s, params, auto_approve()).run()

    with pytest.raises(ProtocolRefused) as err:
        run(go())
    text = str(err.value)
    assert "the hotel holds 40" in text and "the incubators hold 42" in text
    assert "L of medium needed, 2 L on hand" in text and "tips needed, 300 on hand" in text
    assert "days expected, the campaign allows 10" in text
    store = Store(tmp_path / "run" / STORE_FILE)
    try:  # the record: nothing but connecting and the config's reservoirs loaded
        moved = [
            e
            for e in store.record.entries("device")
            if e.kind != "initialise" and not (e.kind == "load" and e.data["actor"] == "config")
        ]
        assert moved == []
        assert not store.events("campaign_started") and not store.vessels()
    finally:
        store.close()
    # and the lab's own log: devices initialised, the operator filled the reservoirs, no more
    lab_log = read_log(tmp_path / "run" / LAB_FOLDER)
    assert {r["action"] for r in lab_log} == {"initialise", "load"}
    assert {r["device"] for r in lab_log if r["action"] == "load"} == {"operator"}


def test_start_short_starts_with_a_recorded_deviation_saying_how_far(tmp_path: Path) -> None:
    data = _clinical(stock={"thermo_nunc_1_troughplate_90000uL_Fb_omnitray": 40})
    params = PARAMS.model_copy(update={"start_short": True})

    async def go() -> None:
        async with open_session(parse_config(data), tmp_path / "run") as s:
            engine = CampaignEngine(s, params, auto_approve())
            assert engine.prepare() is not None
            (dev,) = s.wc.store.events("deviation")
            assert "the hotel holds 40" in dev.data["message"]
            assert "expects to reach" in dev.data["message"]

    run(go())
