"""A simulated automated cell counter that measures the culture model.

Noise model, as for an image-based counter: the instrument counts the cells in a
small imaged chamber volume (``chamber_volume_uL``), so the number counted is
Poisson-distributed about the true concentration times that volume (counting
statistics); on top, each reading carries a multiplicative instrument error with
coefficient of variation ``instrument_cv``. Viable and dead cells are counted
separately, so viability scatters too.
"""

from __future__ import annotations

import numpy as np

from devices.cell_counter import CellCounterBackend, CountResult
from simulators.culture import CultureModel
from workcell.actions import ActionLog
from workcell.clock import Clock

COUNT_S = 60.0
MSC_DIAMETER_UM = 17.0


class SimulatedCellCounterBackend(CellCounterBackend):
    def __init__(
        self,
        device: str,
        culture: CultureModel,
        clock: Clock,
        log: ActionLog,
        rng: np.random.Generator,
        chamber_volume_uL: float = 0.4,
        instrument_cv: float = 0.03,
    ) -> None:
        self.device = device
        self.culture = culture
        self.clock = clock
        self.log = log
        self.rng = rng
        self.chamber_volume_uL = chamber_volume_uL
        self.instrument_cv = instrument_cv

    def _read(self, per_uL: float) -> float:
        counted = self.rng.poisson(per_uL * self.chamber_volume_uL)
        error = self.rng.normal(1.0, self.instrument_cv)
        return max(0.0, counted * error / self.chamber_volume_uL * 1000.0)

    async def count(self, sample: str, volume_uL: float) -> CountResult:
        drawn = self.culture.withdraw(sample, volume_uL)
        if drawn.volume_uL <= 0:
            raise ValueError(f"{self.device}: sample container {sample!r} is empty")
        viable = self._read(drawn.viable / drawn.volume_uL)
        dead = self._read(drawn.dead / drawn.volume_uL)
        total = viable + dead
        result = CountResult(
            sample=sample,
            total_per_mL=total,
            viable_per_mL=viable,
            viability_percent=100.0 * viable / total if total > 0 else 0.0,
            mean_diameter_um=float(self.rng.normal(MSC_DIAMETER_UM, 0.5)),
        )
        self.log.record(self.clock.now(), self.device, "count", **result.model_dump())
        await self.clock.sleep(COUNT_S)
        return result
