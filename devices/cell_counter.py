"""Automated cell counter: front end, back-end interface and the result model.

A count is taken from a sample of a container (a tube of suspension, say): total and
viable cells per mL, viability and mean diameter, as counters such as the
NucleoCounter, Vi-CELL or Countess report them. A sample below the instrument's
detection limit is a measurement too (error 20 of docs/instruments/cell-counter.md,
"TOO FEW CELLS"): it comes back as a result with ``below_detection`` set and no
cells, so a protocol that pooled cells holds them instead of failing after motion.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, Field

from workcell.errors import DeviceError

BELOW_DETECTION = "ERR 20"  # the instrument's answer to a sample below its detection limit


class CountResult(BaseModel):
    """One count of one sample, as the instrument reports it."""

    sample: str = Field(description="container the sample came from")
    total_per_mL: float = Field(ge=0)
    viable_per_mL: float = Field(ge=0)
    viability_percent: float = Field(ge=0, le=100)
    mean_diameter_um: float = Field(ge=0)
    below_detection: bool = Field(
        default=False, description="too few cells for the instrument to count (none reported)"
    )


class CellCounterBackend(ABC):
    """What a counter back end must do; simulators and serial drivers implement it."""

    async def setup(self) -> None:  # noqa: B027 - optional hook
        """Open the connection; most back ends need nothing."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close the connection."""

    @abstractmethod
    async def count(self, sample: str, volume_uL: float) -> CountResult:
        """Count ``volume_uL`` drawn from container ``sample``."""


class CellCounter:
    """The cell counter a protocol talks to."""

    def __init__(self, name: str, backend: CellCounterBackend) -> None:
        self.name = name
        self.backend = backend

    async def setup(self) -> None:
        await self.backend.setup()

    async def stop(self) -> None:
        await self.backend.stop()

    async def count(self, sample: str, volume_uL: float = 20.0) -> CountResult:
        if not 5.0 <= volume_uL <= 1000.0:
            raise ValueError(f"{self.name}: sample volume {volume_uL} uL is outside 5-1000 uL")
        try:
            return await self.backend.count(sample, volume_uL)
        except DeviceError as err:
            if BELOW_DETECTION not in str(err):
                raise
        return CountResult(
            sample=sample,
            total_per_mL=0.0,
            viable_per_mL=0.0,
            viability_percent=0.0,
            mean_diameter_um=0.0,
            below_detection=True,
        )
