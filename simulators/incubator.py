"""The simulated incubator reached over the lab link (the fast dry-run driver).

The lab's other incubator, the Cytomat answering on a pseudo-terminal
(``simulators/cytomat.py``), shares the same chamber model, so what a plate
experiences does not depend on how the driver reaches it. This one answers the
lab link's ``incubator.*`` requests from ``devices.lab_incubator``: the gate, the
plate moves between the transfer station and a slot, and the query side of a
Cytomat (temperature, CO2, humidity, the overview register).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulators.chamber import Chamber
from simulators.liquid_handler import Refusal

PLATE_MOVE_S = 35.0
DOOR_S = 3.0


class IncubatorSimulator:
    def __init__(
        self,
        name: str,
        chamber: Chamber,
        advance: Callable[[float], None],
        log: Callable[..., None],
    ) -> None:
        self.name = name
        self.chamber = chamber
        self.advance = advance
        self.log = log
        self.gate_open = False
        self.ready = False

    def initialise(self) -> dict[str, Any]:
        self.ready = True
        self.log(self.name, "initialise")
        return {}

    def gate(self, is_open: bool) -> dict[str, Any]:
        self.gate_open = is_open
        self.log(self.name, "open_gate" if is_open else "close_gate")
        self.advance(DOOR_S)
        return {}

    def fetch(self, plate: str, slot: int) -> dict[str, Any]:
        """Slot -> transfer station."""
        held = self.chamber.slots.get(slot)
        if held is None:
            raise Refusal("slot_empty", f"{self.name}: slot {slot} is empty (handler empty)")
        if self.chamber.transfer_station is not None:
            raise Refusal("station_occupied", f"{self.name}: the transfer station is occupied")
        self.chamber.retrieve(slot)
        self.log(self.name, "fetch_plate", plate=held, slot=slot)
        self.advance(PLATE_MOVE_S)
        return {"plate": held}

    def take_in(self, plate: str, slot: int) -> dict[str, Any]:
        """Transfer station -> slot."""
        held = self.chamber.transfer_station
        if held is None:
            raise Refusal("station_empty", f"{self.name}: the transfer station is empty")
        if slot in self.chamber.slots:
            raise Refusal("slot_occupied", f"{self.name}: slot {slot} already holds a plate")
        self.chamber.store(slot)
        self.log(self.name, "take_in_plate", plate=held, slot=slot)
        self.advance(PLATE_MOVE_S)
        return {"plate": held}

    def climate(self) -> dict[str, Any]:
        c = self.chamber
        return {
            "temperature_C": round(c.temperature(), 1),
            "co2_percent": round(c.co2(), 1),
            "co2_setpoint_percent": c.co2_setpoint_percent,
            "humidity_percent": c.humidity_percent,
            "transfer_station_occupied": c.transfer_station is not None,
            "device_door_open": c.door_open,
            "automatic_gate_open": self.gate_open,
            "ready": self.ready,
        }

    def set_temperature(self, temperature_C: float) -> dict[str, Any]:
        self.chamber.setpoint_C = temperature_C
        self.log(self.name, "set_temperature", temperature_C=temperature_C)
        return {}

    def to_state(self) -> dict[str, Any]:
        return {"gate_open": self.gate_open, "ready": self.ready}

    def load_state(self, st: dict[str, Any]) -> None:
        self.gate_open = bool(st["gate_open"])
        self.ready = bool(st["ready"])
