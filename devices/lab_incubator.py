"""The incubator link driver: a PyLabRobot ``IncubatorBackend`` for the simulated lab's incubator.

It mirrors the query side of PyLabRobot's ``CytomatBackend`` (temperature, CO2,
humidity, the overview register), so the workcell's incubator monitor and the
reconciliation after a crash (is the transfer station occupied?) read it as they
read a Cytomat. The other simulated incubator is a Cytomat answering on a
pseudo-terminal, driven by PyLabRobot's own ``CytomatBackend``.
"""

from __future__ import annotations

from typing import Any, cast

from pylabrobot.resources.carrier import PlateCarrier, PlateHolder
from pylabrobot.resources.plate import Plate
from pylabrobot.storage.backend import IncubatorBackend
from pylabrobot.storage.cytomat.constants import CytomatIncupationResponse
from pylabrobot.storage.cytomat.schemas import OverviewRegisterState

from devices.lab import LabLink


def slot_number(racks: list[PlateCarrier], site: PlateHolder) -> int:
    """The 1-based absolute slot number of a rack site, as Cytomat firmware counts."""
    rack = cast(PlateCarrier, site.parent)
    idx = [r.name for r in racks].index(rack.name)
    before = sum(r.capacity for r in racks[:idx])
    return before + next(i for i, s in rack.sites.items() if s is site) + 1


class LabIncubatorBackend(IncubatorBackend):
    def __init__(self, device: str, link: LabLink) -> None:
        super().__init__()
        self.device = device
        self.link = link
        self._climate: tuple[float, dict[str, Any]] | None = None

    def _call(self, op: str, **args: Any) -> Any:
        return self.link.call(self.device, op, device=self.device, **args)

    async def setup(self) -> None:
        self._call("incubator.initialise")

    async def stop(self) -> None:
        pass

    async def open_door(self) -> None:
        self._call("incubator.gate", open=True)

    async def close_door(self) -> None:
        self._call("incubator.gate", open=False)

    async def fetch_plate_to_loading_tray(self, plate: Plate, **backend_kwargs: Any) -> None:
        site = cast(PlateHolder, plate.parent)
        self._call("incubator.fetch", plate=plate.name, slot=slot_number(self._racks, site))

    async def take_in_plate(self, plate: Plate, site: PlateHolder, **backend_kwargs: Any) -> None:
        self._call("incubator.take_in", plate=plate.name, slot=slot_number(self._racks, site))

    async def set_temperature(self, temperature: float) -> None:
        self._call("incubator.set_temperature", temperature_C=temperature)

    def climate(self, fresh: bool = True) -> dict[str, Any]:
        """One reading of everything; ``fresh=False`` reuses the last one if the lab's time
        has not moved (the monitor reads temperature, then CO2 and the register, in one
        check: one round trip). Reconciliation reads the register fresh."""
        clock = self.link.clock
        now = clock.elapsed() if clock is not None else 0.0
        if fresh or self._climate is None or self._climate[0] != now:
            self._climate = (now, dict(self._call("incubator.climate")))
        return self._climate[1]

    async def get_temperature(self) -> float:
        return float(self.climate()["temperature_C"])

    async def get_co2(self) -> CytomatIncupationResponse:
        c = self.climate(fresh=False)
        return CytomatIncupationResponse(c["co2_setpoint_percent"], c["co2_percent"])

    async def get_humidity(self) -> CytomatIncupationResponse:
        h = self.climate()["humidity_percent"]
        return CytomatIncupationResponse(h, h)

    async def get_overview_register(self, fresh: bool = False) -> OverviewRegisterState:
        c = self.climate(fresh=fresh)  # one reading per check while the lab's time stands
        return OverviewRegisterState(
            transfer_station_occupied=c["transfer_station_occupied"],
            device_door_open=c["device_door_open"],
            automatic_gate_open=c["automatic_gate_open"],
            handler_occupied=False,
            error_register_set=False,
            warning_register_set=False,
            ready_bit_set=c["ready"],
            busy_bit_set=False,
        )

    async def start_shaking(self, frequency: float) -> None:
        raise NotImplementedError(f"{self.device}: a CO2 culture incubator does not shake")

    async def stop_shaking(self) -> None:
        raise NotImplementedError(f"{self.device}: a CO2 culture incubator does not shake")
