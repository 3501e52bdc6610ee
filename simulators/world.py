"""Everything a dry-run simulates beyond the devices' own back ends.

The culture model, each simulated incubator's chamber, the serial simulators
running on pseudo-terminals and the simulated OT-2's HTTP servers (stopped with the
workcell). On hardware the workcell has no world: the cells and the chambers are real.

What the operator or an arm does to the simulated lab (a plate carried off the deck,
a tip rack replaced) is told to the world, which tells the robots that can see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.chamber import Chamber
from simulators.culture import CultureModel
from simulators.ot2_api import OT2ApiServer
from simulators.serial_port import PtySimulator


@dataclass
class SimWorld:
    culture: CultureModel
    chambers: dict[str, Chamber] = field(default_factory=dict)
    serial_simulators: list[PtySimulator] = field(default_factory=list)
    http_simulators: list[OT2ApiServer] = field(default_factory=list)

    def plate_moved(self, plate: str, on_deck: bool) -> None:
        for server in self.http_simulators:
            server.robot.plate_moved(plate, on_deck)

    def tips_replaced(self, rack: str) -> None:
        for server in self.http_simulators:
            server.robot.tips_replaced(rack)

    def stop(self) -> None:
        for sim in self.serial_simulators:
            sim.stop()
        for server in self.http_simulators:
            server.stop()
