"""A simulated CO2 incubator behind PyLabRobot's ``Incubator`` front end.

PyLabRobot's ``Incubator`` tracks which plate sits on which rack site; this back end
adds what the chamber does: it holds its set points with a small drift, and each
plate movement takes simulated time and is logged. The cells inside grow because
the culture model follows the workcell clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pylabrobot.resources.carrier import PlateHolder
from pylabrobot.resources.plate import Plate
from pylabrobot.storage.backend import IncubatorBackend

from workcell.actions import ActionLog
from workcell.clock import Clock

PLATE_MOVE_S = 35.0
DOOR_S = 3.0


class SimulatedIncubatorBackend(IncubatorBackend):
    def __init__(
        self,
        device: str,
        clock: Clock,
        log: ActionLog,
        rng: np.random.Generator,
        temperature_C: float = 37.0,
        co2_percent: float = 5.0,
        humidity_percent: float = 95.0,
    ) -> None:
        super().__init__()
        self.device = device
        self.clock = clock
        self.log = log
        self.rng = rng
        self.setpoint_C = temperature_C
        self.co2_percent = co2_percent
        self.humidity_percent = humidity_percent
        self.door_open = False

    def _record(self, action: str, **detail: Any) -> None:
        self.log.record(self.clock.now(), self.device, action, **detail)

    async def setup(self) -> None:
        self._record("initialise")

    async def stop(self) -> None:
        pass

    async def open_door(self) -> None:
        self.door_open = True
        self._record("open_door")
        await self.clock.sleep(DOOR_S)

    async def close_door(self) -> None:
        self.door_open = False
        self._record("close_door")
        await self.clock.sleep(DOOR_S)

    async def fetch_plate_to_loading_tray(self, plate: Plate, **backend_kwargs: Any) -> None:
        self._record(
            "fetch_plate", plate=plate.name, site=plate.parent.name if plate.parent else ""
        )
        await self.clock.sleep(PLATE_MOVE_S)

    async def take_in_plate(self, plate: Plate, site: PlateHolder, **backend_kwargs: Any) -> None:
        self._record("take_in_plate", plate=plate.name, site=site.name)
        await self.clock.sleep(PLATE_MOVE_S)

    async def set_temperature(self, temperature: float) -> None:
        self.setpoint_C = temperature
        self._record("set_temperature", temperature_C=temperature)

    async def get_temperature(self) -> float:
        return float(self.setpoint_C + self.rng.normal(0.0, 0.05))

    async def get_co2(self) -> float:
        return float(self.co2_percent + self.rng.normal(0.0, 0.05))

    async def start_shaking(self, frequency: float) -> None:
        raise NotImplementedError(f"{self.device}: a CO2 culture incubator does not shake")

    async def stop_shaking(self) -> None:
        raise NotImplementedError(f"{self.device}: a CO2 culture incubator does not shake")
