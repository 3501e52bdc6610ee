"""Everything a dry-run simulates beyond the devices' own back ends.

The culture model, each simulated incubator's chamber, and the serial simulators
running on pseudo-terminals (stopped with the workcell). On hardware the workcell
has no world: the cells and the chambers are real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.chamber import Chamber
from simulators.culture import CultureModel
from simulators.serial_port import PtySimulator


@dataclass
class SimWorld:
    culture: CultureModel
    chambers: dict[str, Chamber] = field(default_factory=dict)
    serial_simulators: list[PtySimulator] = field(default_factory=list)

    def stop(self) -> None:
        for sim in self.serial_simulators:
            sim.stop()
