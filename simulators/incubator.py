"""The in-process simulated incubator back end, for fast dry-runs.

A PyLabRobot ``IncubatorBackend`` bound to a :class:`~simulators.chamber.Chamber`.
It mirrors the query side of PyLabRobot's ``CytomatBackend`` (temperature, CO2,
humidity, the overview register) so the workcell's incubator monitor reads either
back end the same way. The other simulated back end, the Cytomat on a
pseudo-terminal (``simulators/cytomat.py``), shares the same chamber model.
"""

from __future__ import annotations

from typing import Any, cast

from pylabrobot.resources.carrier import PlateCarrier, PlateHolder
from pylabrobot.resources.plate import Plate
from pylabrobot.storage.backend import IncubatorBackend
from pylabrobot.storage.cytomat.constants import CytomatIncupationResponse
from pylabrobot.storage.cytomat.schemas import OverviewRegisterState

from simulators.chamber import Chamber
from workcell.actions import ActionLog
from workcell.clock import Clock

PLATE_MOVE_S = 35.0
DOOR_S = 3.0


def slot_number(racks: list[PlateCarrier], site: PlateHolder) -> int:
    """The 1-based absolute slot number of a rack site, as Cytomat firmware counts."""
    rack = cast(PlateCarrier, site.parent)
    idx = [r.name for r in racks].index(rack.name)
    before = sum(r.capacity for r in racks[:idx])
    return before + next(i for i, s in rack.sites.items() if s is site) + 1


class SimulatedIncubatorBackend(IncubatorBackend):
    def __init__(self, device: str, chamber: Chamber, clock: Clock, log: ActionLog) -> None:
        super().__init__()
        self.device = device
        self.chamber = chamber
        self.clock = clock
        self.log = log
        self.gate_open = False

    def _record(self, action: str, **detail: Any) -> None:
        self.log.record(self.clock.now(), self.device, action, **detail)

    async def setup(self) -> None:
        self._record("initialise")

    async def stop(self) -> None:
        pass

    async def open_door(self) -> None:
        self.gate_open = True
        self._record("open_gate")
        await self.clock.sleep(DOOR_S)

    async def close_door(self) -> None:
        self.gate_open = False
        self._record("close_gate")
        await self.clock.sleep(DOOR_S)

    async def fetch_plate_to_loading_tray(self, plate: Plate, **backend_kwargs: Any) -> None:
        site = cast(PlateHolder, plate.parent)
        slot = slot_number(self._racks, site)
        self.chamber.retrieve(slot)
        self._record("fetch_plate", plate=plate.name, slot=slot)
        await self.clock.sleep(PLATE_MOVE_S)

    async def take_in_plate(self, plate: Plate, site: PlateHolder, **backend_kwargs: Any) -> None:
        slot = slot_number(self._racks, site)
        self.chamber.store(slot)
        self._record("take_in_plate", plate=plate.name, slot=slot)
        await self.clock.sleep(PLATE_MOVE_S)

    async def set_temperature(self, temperature: float) -> None:
        self.chamber.setpoint_C = temperature
        self._record("set_temperature", temperature_C=temperature)

    async def get_temperature(self) -> float:
        return round(self.chamber.temperature(), 1)

    async def get_co2(self) -> CytomatIncupationResponse:
        return CytomatIncupationResponse(
            self.chamber.co2_setpoint_percent, round(self.chamber.co2(), 1)
        )

    async def get_humidity(self) -> CytomatIncupationResponse:
        h = self.chamber.humidity_percent
        return CytomatIncupationResponse(h, h)

    async def get_overview_register(self) -> OverviewRegisterState:
        return OverviewRegisterState(
            transfer_station_occupied=self.chamber.transfer_station is not None,
            device_door_open=self.chamber.door_open,
            automatic_gate_open=self.gate_open,
            handler_occupied=False,
            error_register_set=False,
            warning_register_set=False,
            ready_bit_set=True,
            busy_bit_set=False,
        )

    async def start_shaking(self, frequency: float) -> None:
        raise NotImplementedError(f"{self.device}: a CO2 culture incubator does not shake")

    async def stop_shaking(self) -> None:
        raise NotImplementedError(f"{self.device}: a CO2 culture incubator does not shake")
