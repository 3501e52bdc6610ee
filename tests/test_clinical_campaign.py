"""A campaign with vessels from a hotel, end to end, judged from the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.campaign.engine import CampaignEngine, auto_approve
from tests.conftest import run
from tests.test_capacity_plan import PARAMS, _clinical
from workcell.assembly.config import parse_config
from workcell.assembly.session import open_session
from workcell.store import STORE_FILE, Store

TRAY = "thermo_nunc_1_troughplate_90000uL_Fb_omnitray"


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 kg dose (4e7 cells): two phases, one passage round, a harvest in batches."""
    folder = tmp_path_factory.mktemp("clinical")
    params = PARAMS.model_copy(update={"patient_weight_kg": 20.0})

    async def go() -> None:
        async with open_session(parse_config(_clinical()), folder / "run") as s:
            await CampaignEngine(s, params, auto_approve()).run()

    run(go())
    return folder / "run" / STORE_FILE


def test_vessels_come_from_the_hotel_and_every_one_is_accounted_for(record: Path) -> None:
    store = Store(record)
    try:
        (planned,) = store.events("campaign_planned")
        plan = planned.data["plan"]
        drawn = {e.data["plate"] for e in store.events("vessel_drawn")}
        returned = {e.data["plate"] for e in store.events("vessel_returned")}
        discarded = {e.data["plate"] for e in store.events("vessel_discarded")}
        assert drawn == returned | discarded and not returned & discarded
        used = {v.plate for v in store.vessels()}
        assert used == discarded
        assert len(used) <= plan["vessels"] + 2  # the plan's count, give or take a split
        assert {v.labware for v in store.vessels()} == {TRAY}
        # the plan came before any motion; the vial's unused cells are on record
        # (the reservoirs the config says are filled are loaded at set-up, before any plan)
        first_motion = min(
            e.seq
            for e in store.record.entries("device")
            if e.kind != "initialise" and e.data.get("actor") != "config"
        )
        planned_seq = next(
            e.seq for e in store.record.entries("event") if e.kind == "campaign_planned"
        )
        assert planned_seq < first_motion
        (rest,) = store.events("vial_remainder")
        assert rest.data["viable_cells"] > 0
        # a working position holds one vessel at a time: never more on the deck than positions
        on_deck: set[str] = set()
        most = 0
        for e in store.events():
            if e.kind == "vessel_drawn" or (
                e.kind == "plate_moved" and e.data["location"].startswith("deck")
            ):
                on_deck.add(e.data["plate"])
            elif e.kind in ("vessel_returned", "vessel_discarded") or e.kind == "plate_moved":
                on_deck.discard(e.data["plate"])
            most = max(most, len(on_deck))
        assert 1 < most <= 10
    finally:
        store.close()


def test_harvest_in_batches_adds_up_to_the_dose(record: Path) -> None:
    store = Store(record)
    try:
        parts = store.events("harvest_part")
        (h,) = store.events("harvested")
        assert len(parts) > 1
        assert h.data["viable_cells"] == pytest.approx(sum(p.data["viable_cells"] for p in parts))
        assert h.data["viable_cells"] >= 20 * 2e6 and h.data["viability_percent"] >= 70
        assert max(v.passage for v in store.vessels()) <= PARAMS.passage_limit
        # chores at scale were done and recorded: reagents topped up, waste emptied
        assert [e for e in store.events("load") if e.actor != "config"] and store.events("emptied")
        # the plan's tips are the tips the protocols took (#12: planned = used)
        planned = store.events("campaign_planned")[0].data["plan"]["tips"]
        picked = sum(  # a tip per channel of each pick-up
            len(e.data.get("ops") or [e])
            for e in store.record.entries("device")
            if e.kind == "pick_up_tip"
        )
        assert abs(picked - planned) <= 0.1 * planned, (picked, planned)
    finally:
        store.close()


def test_the_growth_table_has_a_column_per_passage_at_scale(record: Path) -> None:
    """The demo's table of many trays: a readable column per passage, not one per tray."""
    from rich.console import Console

    from workcell.cli.campaign import PLATE_COLUMNS, growth_table

    store = Store(record)
    try:
        plates = {v.plate for v in store.vessels()}
        console = Console(width=100, record=True)
        console.print(growth_table(store))
    finally:
        store.close()
    text = console.export_text()
    assert len(plates) > PLATE_COLUMNS
    assert "P1 (" in text and "P2 (" in text and "mean (lowest-highest)" in text
    assert "imaged" in text and max(len(line) for line in text.splitlines()) <= 100
