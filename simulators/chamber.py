"""The physical chamber of a simulated CO2 incubator.

Shared by both simulated incubator back ends (in-process and the Cytomat on a
pseudo-terminal), so what a plate experiences does not depend on how the driver
reaches it. The chamber:

* holds its temperature and CO2 set points with a small random drift
  (an Ornstein-Uhlenbeck process, SD about 0.1 C and 0.05 % CO2);
* loses heat and CO2 toward room air while the device door is open (time
  constants of minutes) and recovers once it is closed;
* can be given a heater fault (a temperature excursion) for a while;
* tracks which plate sits in which slot, and on the transfer station;
* places the wells of the plates inside it in its own temperature environment in
  the culture model, and plates that leave it back on the deck at room
  temperature.

Time is the workcell clock's simulated seconds; the state advances in steps of at
most a minute whenever it is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from simulators.culture import CultureModel

ROOM_C = 22.0
AIR_CO2_PERCENT = 0.04
DRIFT_TAU_S = 1800.0
DOOR_TAU_S = 600.0
CO2_DOOR_TAU_S = 180.0
RECOVER_TAU_S = 480.0
STEP_S = 60.0
DECK = "deck"


@dataclass
class Excursion:
    delta_C: float
    until_s: float
    from_s: float = 0.0


@dataclass
class Chamber:
    """Temperature, CO2, door and plate positions of one incubator."""

    name: str
    now_s: Callable[[], float]
    rng: np.random.Generator
    culture: CultureModel | None = None
    setpoint_C: float = 37.0
    co2_setpoint_percent: float = 5.0
    humidity_percent: float = 95.0
    capacity: int = 21
    drift_sd_C: float = 0.1
    drift_sd_co2: float = 0.05
    door_open: bool = False
    slots: dict[int, str] = field(default_factory=dict)
    transfer_station: str | None = None
    wells: dict[str, list[str]] = field(default_factory=dict)
    _t: float = 0.0
    _drift_C: float = 0.0
    _drift_co2: float = 0.0
    _door_loss_C: float = 0.0
    _door_loss_co2: float = 0.0
    _excursions: list[Excursion] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._t = self.now_s()

    # --- physics --------------------------------------------------------------------

    def _advance(self, target: float) -> None:
        while self._t < target:
            dt = min(STEP_S, target - self._t)
            keep = math.exp(-dt / DRIFT_TAU_S)
            spread = math.sqrt(1 - keep**2)
            self._drift_C = self._drift_C * keep + self.drift_sd_C * spread * self.rng.normal()
            self._drift_co2 = (
                self._drift_co2 * keep + self.drift_sd_co2 * spread * self.rng.normal()
            )
            full_C = self.setpoint_C - ROOM_C
            full_co2 = self.co2_setpoint_percent - AIR_CO2_PERCENT
            if self.door_open:
                self._door_loss_C += (full_C - self._door_loss_C) * (1 - math.exp(-dt / DOOR_TAU_S))
                self._door_loss_co2 += (full_co2 - self._door_loss_co2) * (
                    1 - math.exp(-dt / CO2_DOOR_TAU_S)
                )
            else:
                self._door_loss_C *= math.exp(-dt / RECOVER_TAU_S)
                self._door_loss_co2 *= math.exp(-dt / RECOVER_TAU_S)
            self._t += dt

    def temperature_at(self, t: float) -> float:
        """The chamber temperature (C) at simulated time ``t`` (never earlier than now)."""
        self._advance(t)
        heater = sum(e.delta_C for e in self._excursions if e.from_s <= self._t < e.until_s)
        return self.setpoint_C + self._drift_C - self._door_loss_C + heater

    def temperature(self) -> float:
        return self.temperature_at(self.now_s())

    def co2(self) -> float:
        self._advance(self.now_s())
        return max(0.0, self.co2_setpoint_percent + self._drift_co2 - self._door_loss_co2)

    def inject_excursion(
        self, delta_C: float, duration_s: float, start_s: float | None = None
    ) -> None:
        """A heater fault: the temperature is off by ``delta_C`` for ``duration_s``,
        from now or from the simulated time ``start_s`` (a scheduled fault)."""
        self._advance(self.now_s())
        start = self.now_s() if start_s is None else start_s
        self._excursions.append(Excursion(delta_C, start + duration_s, start))

    def set_door(self, is_open: bool) -> None:
        self._advance(self.now_s())
        self.door_open = is_open

    # --- plates ---------------------------------------------------------------------

    def arrive_at_transfer_station(self, plate: str, wells: list[str]) -> None:
        """A plate is put on the transfer station from outside (by the robot arm)."""
        if self.transfer_station is not None:
            raise RuntimeError(
                f"{self.name}: transfer station already holds {self.transfer_station!r}"
            )
        self.transfer_station = plate
        self.wells[plate] = wells

    def leave_transfer_station(self) -> str | None:
        """The robot arm takes the plate off the transfer station."""
        plate, self.transfer_station = self.transfer_station, None
        return plate

    def store(self, slot: int) -> str:
        """Transfer station -> slot; the plate's wells enter the chamber's climate."""
        plate = self.transfer_station
        if plate is None:
            raise RuntimeError(f"{self.name}: transfer station is empty")
        if slot in self.slots:
            raise RuntimeError(f"{self.name}: slot {slot} already holds {self.slots[slot]!r}")
        self.slots[slot] = plate
        self.transfer_station = None
        if self.culture is not None:
            self.culture.place(self.wells.get(plate, []), self.temperature_at, self.env_name)
        return plate

    def retrieve(self, slot: int) -> str:
        """Slot -> transfer station; the plate's wells are at room temperature again."""
        if slot not in self.slots:
            raise RuntimeError(f"{self.name}: slot {slot} is empty")
        if self.transfer_station is not None:
            raise RuntimeError(f"{self.name}: transfer station is occupied")
        plate = self.slots.pop(slot)
        self.transfer_station = plate
        if self.culture is not None:
            self.culture.place(self.wells.get(plate, []), room_temperature, DECK)
        return plate

    @property
    def env_name(self) -> str:
        return f"chamber:{self.name}"

    def slot_of(self, plate: str) -> int | None:
        return next((s for s, p in self.slots.items() if p == plate), None)

    # --- persistence -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The chamber's state as JSON-able data (its random generator included)."""
        return {
            "setpoint_C": self.setpoint_C,
            "door_open": self.door_open,
            "slots": {str(k): v for k, v in self.slots.items()},
            "transfer_station": self.transfer_station,
            "wells": self.wells,
            "t": self._t,
            "drift_C": self._drift_C,
            "drift_co2": self._drift_co2,
            "door_loss_C": self._door_loss_C,
            "door_loss_co2": self._door_loss_co2,
            "excursions": [asdict(e) for e in self._excursions],
            "rng": self.rng.bit_generator.state,
        }

    def load_state(self, st: dict[str, Any]) -> None:
        self.setpoint_C = float(st["setpoint_C"])
        self.door_open = bool(st["door_open"])
        self.slots = {int(k): v for k, v in st["slots"].items()}
        self.transfer_station = st["transfer_station"]
        self.wells = {k: list(v) for k, v in st["wells"].items()}
        self._t = float(st["t"])
        self._drift_C, self._drift_co2 = st["drift_C"], st["drift_co2"]
        self._door_loss_C, self._door_loss_co2 = st["door_loss_C"], st["door_loss_co2"]
        self._excursions = [Excursion(**e) for e in st["excursions"]]
        self.rng.bit_generator.state = st["rng"]


def room_temperature(_t: float) -> float:
    """The environment of a plate on the deck."""
    return ROOM_C
