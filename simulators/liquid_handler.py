"""The simulated liquid handler: PyLabRobot's STAR back end without hardware, plus biology.

``SimulatedSTARBackend`` is PyLabRobot's ``STARChatterboxBackend`` (which builds the
real STAR firmware commands and checks them, but sends them nowhere) with three
additions that make a dry-run faithful:

* cells move with the liquid: an aspirate takes its share of the source's cells
  into the tip, a dispense delivers them (less a small pipetting loss that stays
  in the tip and is discarded with it) to the destination in the culture model;
* each action takes simulated time on the workcell clock;
* each action is recorded in the workcell's action log.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pylabrobot.liquid_handling.backends.hamilton.STAR_chatterbox import STARChatterboxBackend
from pylabrobot.liquid_handling.standard import (
    Drop,
    Pickup,
    SingleChannelAspiration,
    SingleChannelDispense,
)

from simulators.culture import CultureModel, Liquid
from workcell.actions import ActionLog
from workcell.clock import Clock
from workcell.errors import TipPickupError

# Seconds per action, from typical STAR method timings with 1 mL tips.
TIP_PICKUP_S = 8.0
TIP_DROP_S = 6.0
LIQUID_MOVE_S = 4.0
FLOW_RATE_UL_PER_S = 250.0


class SimulatedSTARBackend(STARChatterboxBackend):
    """A STAR with no hardware whose pipetting acts on the culture model."""

    def __init__(
        self,
        device: str,
        culture: CultureModel,
        clock: Clock,
        log: ActionLog,
        num_channels: int = 8,
        tip_pickup_failure: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(num_channels=num_channels)
        self.tip_pickup_failure = tip_pickup_failure
        self.rng = rng or np.random.default_rng(0)
        self.device = device
        self.culture = culture
        self.clock = clock
        self.log = log
        self.tip_contents: dict[int, Liquid] = {}
        self.cells_discarded_in_tips = 0.0

    def _record(self, action: str, **detail: Any) -> None:
        self.log.record(self.clock.now(), self.device, action, **detail)

    async def pick_up_tips(self, ops: list[Pickup], use_channels: list[int], **kw: Any) -> None:
        if self.tip_pickup_failure and self.rng.random() < self.tip_pickup_failure:
            spots = [op.resource.name for op in ops]
            self._record("pick_up_tip_failed", channels=use_channels, tip_spots=spots)
            await self.clock.sleep(TIP_PICKUP_S)
            raise TipPickupError(
                self.device, "pick up tip", f"no tip on the channel from {', '.join(spots)}"
            )
        await super().pick_up_tips(ops, use_channels, **kw)
        for op, ch in zip(ops, use_channels, strict=True):
            self.tip_contents[ch] = Liquid()
            self._record("pick_up_tip", channel=ch, tip_spot=op.resource.name)
        await self.clock.sleep(TIP_PICKUP_S)

    async def request_tip_presence(self) -> list[bool | None]:
        """Which channels hold a tip: what PyLabRobot asks after a failed pick-up."""
        return [ch in self.tip_contents for ch in range(self.num_channels)]

    async def drop_tips(self, ops: list[Drop], use_channels: list[int], **kw: Any) -> None:
        await super().drop_tips(ops, use_channels, **kw)
        for op, ch in zip(ops, use_channels, strict=True):
            left = self.tip_contents.pop(ch, Liquid())
            self.cells_discarded_in_tips += left.cells
            self._record("drop_tip", channel=ch, to=op.resource.name)
        await self.clock.sleep(TIP_DROP_S)

    async def aspirate(
        self, ops: list[SingleChannelAspiration], use_channels: list[int], **kw: Any
    ) -> None:
        await super().aspirate(ops, use_channels, **kw)
        for op, ch in zip(ops, use_channels, strict=True):
            taken = self.culture.withdraw(op.resource.name, op.volume)
            self.tip_contents.setdefault(ch, Liquid()).add(taken)
            self._record(
                "aspirate",
                channel=ch,
                source=op.resource.name,
                volume_uL=op.volume,
                cells=taken.viable,
                flow_uL_per_s=op.flow_rate,
                offset_mm=[op.offset.x, op.offset.y, op.offset.z],
            )
        await self.clock.sleep(_duration(ops))

    async def dispense(
        self, ops: list[SingleChannelDispense], use_channels: list[int], **kw: Any
    ) -> None:
        await super().dispense(ops, use_channels, **kw)
        loss = self.culture.params.pipetting_cell_loss
        for op, ch in zip(ops, use_channels, strict=True):
            tip = self.tip_contents.setdefault(ch, Liquid())
            out = tip.take(op.volume)
            kept = out.viable * loss, out.dead * loss
            out.viable -= kept[0]
            out.dead -= kept[1]
            tip.viable += kept[0]
            tip.dead += kept[1]
            self.culture.deliver(op.resource.name, out)
            self._record(
                "dispense",
                channel=ch,
                target=op.resource.name,
                volume_uL=op.volume,
                cells=out.viable,
                flow_uL_per_s=op.flow_rate,
                offset_mm=[op.offset.x, op.offset.y, op.offset.z],
            )
        await self.clock.sleep(_duration(ops))


def _duration(ops: list[SingleChannelAspiration] | list[SingleChannelDispense]) -> float:
    """Seconds a liquid step takes: moving, plus the slowest channel's volume at its flow."""
    return LIQUID_MOVE_S + max(op.volume / (op.flow_rate or FLOW_RATE_UL_PER_S) for op in ops)
