"""A simulated confluence imager: the culture model's confluence plus measurement error."""

from __future__ import annotations

import numpy as np
from pylabrobot.resources import Plate

from devices.imager import ImagerBackend
from simulators.culture import CultureModel
from workcell.actions import ActionLog
from workcell.clock import Clock

IMAGE_PER_WELL_S = 20.0


class SimulatedImagerBackend(ImagerBackend):
    def __init__(
        self,
        device: str,
        culture: CultureModel,
        clock: Clock,
        log: ActionLog,
        rng: np.random.Generator,
        noise_points: float = 2.0,
    ) -> None:
        self.device = device
        self.culture = culture
        self.clock = clock
        self.log = log
        self.rng = rng
        self.noise = noise_points / 100.0

    async def confluence(self, plate: Plate) -> dict[str, float]:
        out: dict[str, float] = {}
        for well in plate.get_all_items():
            if well.name not in self.culture.vessels:
                out[well.name] = 0.0
                continue
            true = self.culture.state(well.name).confluence
            out[well.name] = float(np.clip(true + self.rng.normal(0.0, self.noise), 0.0, 1.0))
        self.log.record(self.clock.now(), self.device, "image", plate=plate.name, wells=out)
        await self.clock.sleep(IMAGE_PER_WELL_S * len(out))
        return out
