"""The simulated imager back end: brightfield fields rendered from the culture model.

A PyLabRobot ``ImagerBackend``: each ``capture`` renders one field of the well
(``simulators/brightfield.py``) at the well's true confluence, with the cells the
culture model says are there (their size changes with passage), and
takes simulated time. The confluence estimator then measures these pictures as it
would real ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pylabrobot.plate_reading.backend import ImagerBackend
from pylabrobot.plate_reading.standard import ImagingMode, ImagingResult, Objective
from pylabrobot.resources import Plate

from simulators.brightfield import FieldOptics, capture_field
from simulators.culture import CultureModel
from workcell.actions import ActionLog
from workcell.clock import Clock
from workcell.compute import run_cpu

CAPTURE_S = 2.0
FIXED_EXPOSURE_MS = 5.0
FIXED_FOCUS_MM = 1.0


class SimulatedImagerBackend(ImagerBackend):
    # fields may be captured concurrently: rendering runs on worker processes, and
    # simulated time adds up the same as one field after another
    concurrent_captures = True

    def __init__(
        self,
        device: str,
        culture: CultureModel,
        clock: Clock,
        log: ActionLog,
        rng: np.random.Generator,
        optics: FieldOptics | None = None,
    ) -> None:
        super().__init__()
        self.device = device
        self.culture = culture
        self.clock = clock
        self.log = log
        self.rng = rng
        self.optics = optics or FieldOptics()
        self.last_truth: float | None = None

    async def setup(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def capture(
        self,
        row: int,
        column: int,
        mode: ImagingMode,
        objective: Objective,
        exposure_time: Any,
        focal_height: Any,
        gain: Any,
        plate: Plate,
        **backend_kwargs: Any,
    ) -> ImagingResult:
        if mode != ImagingMode.BRIGHTFIELD:
            raise NotImplementedError(f"{self.device}: only brightfield is simulated, not {mode}")
        well = plate.get_well((row, column))
        confluence, cell_um = 0.0, self.culture.params.cell_shape_um(0.0)
        if well.name in self.culture.vessels:
            state = self.culture.state(well.name)
            confluence = state.confluence
            cell_um = (state.cell_length_um, state.cell_width_um)
        seed = int(self.rng.integers(2**63))  # drawn in call order: same fields on resume
        self.log.record(self.clock.now(), self.device, "capture", well=well.name)
        await self.clock.sleep(CAPTURE_S)
        image, covered = await run_cpu(capture_field, confluence, cell_um, seed, self.optics)
        self.last_truth = covered
        return ImagingResult(
            images=[image], exposure_time=FIXED_EXPOSURE_MS, focal_height=FIXED_FOCUS_MM
        )
