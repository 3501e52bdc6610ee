"""The cell counter link driver: counts in the simulated lab, without a serial line (fast).

The other simulated counter answers the serial protocol of
``docs/instruments/cell-counter.md`` on a pseudo-terminal, through the real driver
(``devices.cell_counter_serial``).
"""

from __future__ import annotations

from devices.cell_counter import CellCounterBackend, CountResult
from devices.lab import LabLink


class LabCellCounterBackend(CellCounterBackend):
    def __init__(self, device: str, link: LabLink) -> None:
        self.device = device
        self.link = link

    async def count(self, sample: str, volume_uL: float) -> CountResult:
        result = self.link.call(
            self.device, "counter.count", device=self.device, sample=sample, volume_uL=volume_uL
        )
        return CountResult.model_validate(result)
