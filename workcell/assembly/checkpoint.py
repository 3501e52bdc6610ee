"""Snapshot and restore the workcell's state between steps, so a run can resume.

What a restarted process cannot rebuild from the config: which plate sits where
(deck site, incubator slot), PyLabRobot's tip and volume trackers, and, in a
dry-run, the whole simulated world (the clock, every vessel's cells, the chambers,
and the random generators of the simulators, so a resumed dry-run continues
exactly as an uninterrupted one). The snapshot is JSON and lives in the store,
written in the same transaction as the step it follows.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from pylabrobot.resources import Plate, ResourceHolder

from simulators.chamber import DECK, Chamber, Excursion, room_temperature
from simulators.culture import Environment, Liquid, Vessel
from workcell.assembly.workcell import Workcell
from workcell.clock import SimClock

VERSION = 1


def _environment(wc: Workcell, name: str | None) -> Environment | None:
    if name is None:
        return None
    if name == DECK:
        return room_temperature
    assert wc.world is not None
    return wc.world.chambers[name.removeprefix("chamber:")].temperature_at


def _rngs(wc: Workcell) -> dict[str, Any]:
    """Every random generator of the simulated devices, by a stable name."""
    out: dict[str, Any] = {}
    counter = getattr(wc.cell_counter.backend, "instrument", None)
    if counter is not None:
        out["counter"] = counter.rng
    imager = getattr(wc.imager.imager, "backend", None)
    if imager is not None and hasattr(imager, "rng"):
        out["imager"] = imager.rng
    lh_rng = getattr(wc.liquid_handler.backend, "rng", None)
    if lh_rng is not None:
        out["liquid_handler"] = lh_rng
    if wc.world is not None:
        for name, chamber in wc.world.chambers.items():
            out[f"chamber:{name}"] = chamber.rng
        for sim in wc.world.serial_simulators:  # simulators behind a pseudo-terminal
            instrument = getattr(sim, "instrument", None)
            if instrument is not None and hasattr(instrument, "rng"):
                out[f"serial:{sim.name}"] = instrument.rng
            out[f"faults:{sim.name}"] = sim.faults.rng
    return out


def _plate_places(wc: Workcell) -> dict[str, str]:
    places = {}
    for name in _plate_names(wc):
        res = wc.resource(name)
        if isinstance(res, Plate) and res.parent is not None:
            holder = res.parent
            inc = wc._incubator_of(res)
            places[name] = f"{inc.name}/{holder.name}" if inc else f"deck/{holder.name}"
    return places


def _plate_names(wc: Workcell) -> list[str]:
    """Resources with state: the config's deck sites and the vessels drawn from the hotel."""
    drawn = list(wc.inventory.in_use) if wc.inventory is not None else []
    return [s.name for s in wc.config.deck.sites()] + drawn


def snapshot(wc: Workcell) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": VERSION,
        "plates": _plate_places(wc),
        "resources": {n: wc.resource(n).serialize_all_state() for n in _plate_names(wc)},
    }
    if wc.inventory is not None:
        data["inventory"] = wc.inventory.state()
    if isinstance(wc.clock, SimClock):
        data["clock_elapsed"] = wc.clock.elapsed()
        data["clock_start"] = wc.clock.start().isoformat()
    if wc.world is not None:
        c = wc.world.culture
        c.sync()
        data["culture"] = {
            "t": c._t,
            "vessels": {
                n: {f.name: getattr(v, f.name) for f in fields(Vessel) if f.name != "environment"}
                | {"medium": asdict(v.medium)}
                for n, v in c.vessels.items()
            },
            "containers": {n: asdict(liq) for n, liq in c.containers.items()},
        }
        data["chambers"] = {n: _chamber_state(ch) for n, ch in wc.world.chambers.items()}
        data["rngs"] = {n: rng.bit_generator.state for n, rng in _rngs(wc).items()}
        backend = wc.liquid_handler.backend
        data["cells_discarded_in_tips"] = getattr(backend, "cells_discarded_in_tips", 0.0)
    return data


def _chamber_state(ch: Chamber) -> dict[str, Any]:
    ch.temperature()  # bring it up to now
    return {
        "door_open": ch.door_open,
        "slots": {str(k): v for k, v in ch.slots.items()},
        "transfer_station": ch.transfer_station,
        "wells": ch.wells,
        "t": ch._t,
        "drift_C": ch._drift_C,
        "drift_co2": ch._drift_co2,
        "door_loss_C": ch._door_loss_C,
        "door_loss_co2": ch._door_loss_co2,
        "excursions": [asdict(e) for e in ch._excursions],
    }


def restore(wc: Workcell, data: dict[str, Any]) -> None:
    """Put a freshly built workcell (set up, reservoirs not loaded) into a snapshot's state."""
    if data.get("version") != VERSION:
        raise ValueError(f"checkpoint version {data.get('version')} is not {VERSION}")
    if isinstance(wc.clock, SimClock) and "clock_elapsed" in data:
        wc.clock.resume(datetime.fromisoformat(data["clock_start"]), data["clock_elapsed"])
    drawn = (
        wc.inventory.restore(data["inventory"])
        if wc.inventory is not None and "inventory" in data
        else {}
    )
    for plate_name, place in data["plates"].items():
        where, holder_name = place.split("/", 1)
        if plate_name in drawn:  # a vessel from the hotel: put it where it was
            plate = drawn[plate_name]
            if where == "deck":
                site = wc.deck.get_resource(holder_name)
                assert isinstance(site, ResourceHolder)
                site.assign_child_resource(plate)
                continue
        else:
            plate = wc.plate(plate_name)
        if where == "deck":
            continue
        inc = wc.incubators[where]
        holder = (
            inc.get_resource(holder_name)
            if holder_name != inc.loading_tray.name
            else (inc.loading_tray)
        )
        assert isinstance(holder, ResourceHolder)
        if isinstance(plate.parent, ResourceHolder):
            wc._home[plate_name] = plate.parent
        plate.unassign()
        holder.assign_child_resource(plate)
    for name, state in data["resources"].items():
        wc.resource(name).load_all_state(state)
    if wc.world is None or "culture" not in data:
        return
    c = wc.world.culture
    for name, st in data["chambers"].items():
        ch = wc.world.chambers[name]
        ch.door_open = st["door_open"]
        ch.slots = {int(k): v for k, v in st["slots"].items()}
        ch.transfer_station = st["transfer_station"]
        ch.wells = st["wells"]
        ch._t = st["t"]
        ch._drift_C, ch._drift_co2 = st["drift_C"], st["drift_co2"]
        ch._door_loss_C, ch._door_loss_co2 = st["door_loss_C"], st["door_loss_co2"]
        ch._excursions = [Excursion(**e) for e in st["excursions"]]
    c._t = data["culture"]["t"]
    c.vessels = {}
    for name, st in data["culture"]["vessels"].items():
        st = dict(st)
        st["medium"] = Liquid(**st["medium"])
        v = Vessel(**st)
        v.environment = _environment(wc, v.environment_name)
        c.vessels[name] = v
    c.containers = {n: Liquid(**liq) for n, liq in data["culture"]["containers"].items()}
    for name, rng in _rngs(wc).items():
        if name in data["rngs"]:
            rng.bit_generator.state = data["rngs"][name]
    if hasattr(wc.liquid_handler.backend, "cells_discarded_in_tips"):
        wc.liquid_handler.backend.cells_discarded_in_tips = data["cells_discarded_in_tips"]
