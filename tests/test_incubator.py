"""Incubators in the workcell: plates in slots, the chamber's climate, alarms in the store."""

from __future__ import annotations

import re
from typing import Any

from protocols import seeding
from tests.conftest import run
from workcell.assembly.build import build_workcell
from workcell.assembly.config import parse_config
from workcell.assembly.workcell import Workcell

SEED = seeding.SeedingParams(
    suspension=seeding.Suspension(volume_mL=5, viable_cells_per_mL=5e5),
    plates=["plate_1", "plate_2"],
)
DAY = 86400.0


def test_plates_grow_in_the_incubator_not_on_the_deck(wc: Workcell) -> None:
    assert wc.lab is not None
    run(seeding.run(wc, SEED))
    run(wc.store_plate("plate_1"))
    assert list(wc.lab.chamber("incubator")["slots"].values()) == ["plate_1"]
    assert wc.store.vessel("plate_1_well_A1").location.startswith("incubator:")  # type: ignore[union-attr]
    run(wc.clock.sleep(3 * DAY))
    inside = wc.lab.vessel("plate_1_well_A1").attached_viable
    on_deck = wc.lab.vessel("plate_2_well_A1").attached_viable
    assert inside > 1.8 * on_deck
    run(wc.fetch_plate("plate_1"))
    chamber = wc.lab.chamber("incubator")
    assert chamber["slots"] == {} and chamber["transfer_station"] is None
    assert wc.plate("plate_1").parent is not None
    assert wc.store.vessel("plate_1_well_A1").location == "deck:plate_carrier-0"  # type: ignore[union-attr]


def test_door_open_too_long_and_temperature_excursion_are_alarms(wc: Workcell) -> None:
    assert wc.lab is not None
    assert run(wc.check_incubators()) == []
    wc.lab.set_door("incubator", True)
    assert run(wc.check_incubators()) == []  # just opened
    run(wc.clock.sleep(90))
    messages = run(wc.check_incubators())
    assert any("device door open for 90 s (limit 60 s)" in m for m in messages)
    wc.lab.set_door("incubator", False)
    run(wc.clock.sleep(3600))
    assert run(wc.check_incubators()) == []  # recovered after closing
    wc.lab.heater_fault("incubator", 2.0, 1800)
    messages = run(wc.check_incubators())
    assert any(re.search(r"temperature 3[89]\.\d C outside 37\.0 \+/- 0\.5 C", m) for m in messages)
    kinds = [e.data["alarm"] for e in wc.store.events("alarm")]
    # the open door also let heat and CO2 out: those alarms came with it
    assert kinds.count("door_open_too_long") == 1
    assert {"temperature_excursion", "co2_excursion"} <= set(kinds[:-1])
    assert kinds[-1] == "temperature_excursion"


def test_open_door_cools_the_chamber_and_slows_growth(wc: Workcell) -> None:
    assert wc.lab is not None
    wc.lab.set_door("incubator", True)
    run(wc.clock.sleep(1200))
    chamber = wc.lab.chamber("incubator")
    assert chamber["temperature_C"] < 33.0
    assert chamber["co2_percent"] < 1.0


def test_simulated_serial_incubator_through_the_workcell(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["incubator"]["driver"] = "simulated-serial"
    wc = build_workcell(parse_config(sim_data))

    async def scenario() -> list[str]:
        await seeding.run(wc, SEED.model_copy(update={"plates": ["plate_1"]}))
        await wc.store_plate("plate_1")
        await wc.clock.sleep(DAY)
        alarms = await wc.check_incubators()
        await wc.fetch_plate("plate_1")
        return alarms

    async def scenario_and_lab() -> tuple[list[str], dict[str, Any]]:
        async with wc:
            alarms = await scenario()
            assert wc.lab is not None
            return alarms, wc.lab.serial("incubator")

    alarms, sim = run(scenario_and_lab())
    assert alarms == []
    assert [c for c in sim["commands"] if c.startswith("mv:")] == ["mv:ts 001", "mv:st 001"]
    assert "ch:it" in sim["commands"] and "ch:bs" in sim["commands"]
    assert sim["port"].startswith("/dev/pts/")
    assert wc.store.vessel("plate_1_well_A1").location == "deck:plate_carrier-0"  # type: ignore[union-attr]


def test_a_plate_move_lands_in_the_record_whole_or_not_at_all(
    wc: Workcell, monkeypatch: Any
) -> None:
    """The wells' new place and the plate_moved event are one transaction: a failure
    writing the event leaves the record as it was, the wells where they were."""
    run(seeding.run(wc, SEED))
    store = wc.store
    original = store._insert_event

    def failing(e: Any) -> int:
        if e.kind == "plate_moved":
            raise OSError("disk full")
        return original(e)

    monkeypatch.setattr(store, "_insert_event", failing)
    entries = store.record.head()[0]
    try:
        run(wc.store_plate("plate_1"))
    except OSError:
        pass
    else:
        raise AssertionError("the failed write was not raised")
    monkeypatch.undo()
    assert store.vessel("plate_1_well_A1").location.startswith("deck:")  # type: ignore[union-attr]
    assert not store.events("plate_moved")
    assert store.record.verify().ok
    later = [e.kind for e in store.record.entries() if e.seq > entries]
    assert later and "vessel_moved" not in later and "plate_moved" not in later, later
