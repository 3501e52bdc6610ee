"""The simulated imager back end: brightfield fields rendered from the culture model.

A PyLabRobot ``ImagerBackend``: each ``capture`` renders one field of the well
(``simulators/brightfield.py``) at the well's true confluence, with the cells the
culture model says are there (their size changes with passage), and
takes simulated time. The confluence estimator then measures these pictures as it
would real ones.

With ``fidelity="fast"`` no pixels are drawn: like an imager whose own software
reports confluence, the back end answers ``measure_confluence`` with the true
confluence plus the estimator's error as measured on rendered fields
(``simulators/confluence_error.py``), in the same simulated time.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pylabrobot.plate_reading.backend import ImagerBackend
from pylabrobot.plate_reading.standard import ImagingMode, ImagingResult, Objective
from pylabrobot.resources import Plate, Well

from simulators.brightfield import FieldOptics, capture_field
from simulators.confluence_error import EstimatorError, sample
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
        fidelity: Literal["rendered", "fast"] = "rendered",
        error: EstimatorError | None = None,
    ) -> None:
        super().__init__()
        self.fidelity = fidelity
        self.error = error
        self.device = device
        self.culture = culture
        self.clock = clock
        self.log = log
        self.rng = rng
        self.optics = optics or FieldOptics()
        self.last_truth: float | None = None

    async def setup(self) -> None:
        pass

    @property
    def reports_confluence(self) -> bool:
        """True on the fast path: ask ``measure_confluence``, there are no images."""
        return self.fidelity == "fast"

    def _truth(self, well: Well) -> tuple[float, float, tuple[float, float]]:
        """True confluence, population doublings and cell size (um) of a well's culture."""
        if well.name not in self.culture.vessels:
            return 0.0, 0.0, self.culture.params.cell_shape_um(0.0)
        state = self.culture.state(well.name)
        cell_um = (state.cell_length_um, state.cell_width_um)
        return state.confluence, state.population_doublings, cell_um

    async def measure_confluence(
        self, plate: Plate, wells: list[Well], fields: int
    ) -> dict[str, list[float]]:
        """The fast path: each field's estimate, drawn from the estimator's measured error."""
        if self.error is None:
            raise RuntimeError(f"{self.device}: the fast imaging path needs an error table")
        out: dict[str, list[float]] = {}
        for well in wells:
            confluence, pd, _ = self._truth(well)
            self.log.record(
                self.clock.now(), self.device, "capture", well=well.name, fields=fields, fast=True
            )
            await self.clock.sleep(CAPTURE_S * fields)
            out[well.name] = sample(self.error, confluence, pd, self.rng, fields)
            self.last_truth = confluence
        return out

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
        confluence, _, cell_um = self._truth(well)
        seed = int(self.rng.integers(2**63))  # drawn in call order: same fields on resume
        self.log.record(self.clock.now(), self.device, "capture", well=well.name)
        await self.clock.sleep(CAPTURE_S)
        image, covered = await run_cpu(capture_field, confluence, cell_um, seed, self.optics)
        self.last_truth = covered
        return ImagingResult(
            images=[image], exposure_time=FIXED_EXPOSURE_MS, focal_height=FIXED_FOCUS_MM
        )
