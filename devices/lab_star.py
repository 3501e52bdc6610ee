"""A STAR back end whose channels act in the simulated lab.

PyLabRobot's ``STARChatterboxBackend`` builds and checks the real STAR firmware
commands for every operation (without a USB device); this back end then sends each
channel operation to the simulated lab over the lab link, where it happens to the
liquids and cells. It also answers the questions a real STAR answers after a
crash: which channels hold a tip (``request_tip_presence``), how much liquid a tip
holds (``request_volume_in_tip``), and how much liquid is in a container
(``probe_liquid_volumes``, capacitive liquid-level detection), with the same
method names as PyLabRobot's ``STARBackend``, so reconciliation runs the same code
against a real STAR.
"""

from __future__ import annotations

from typing import Any

from pylabrobot.liquid_handling.backends.hamilton.STAR_chatterbox import STARChatterboxBackend
from pylabrobot.liquid_handling.standard import (
    Drop,
    Pickup,
    SingleChannelAspiration,
    SingleChannelDispense,
)
from pylabrobot.resources import Container

from devices.lab import LabLink


class LabSTARBackend(STARChatterboxBackend):
    def __init__(self, device: str, link: LabLink, num_channels: int = 8) -> None:
        super().__init__(num_channels=num_channels)
        self.device = device
        self.link = link
        self.last_results: list[dict[str, Any]] = []  # what the lab said of the last operation

    def _call(self, op: str, **args: Any) -> Any:
        return self.link.call(self.device, op, device=self.device, **args)

    async def pick_up_tips(self, ops: list[Pickup], use_channels: list[int], **kw: Any) -> None:
        await super().pick_up_tips(ops, use_channels, **kw)
        self.last_results = [
            self._call("star.pick_up_tip", channel=ch, spot=op.resource.name)
            for op, ch in zip(ops, use_channels, strict=True)
        ]

    async def drop_tips(self, ops: list[Drop], use_channels: list[int], **kw: Any) -> None:
        await super().drop_tips(ops, use_channels, **kw)
        self.last_results = [
            self._call("star.drop_tip", channel=ch, to=op.resource.name)
            for op, ch in zip(ops, use_channels, strict=True)
        ]

    async def aspirate(
        self, ops: list[SingleChannelAspiration], use_channels: list[int], **kw: Any
    ) -> None:
        await super().aspirate(ops, use_channels, **kw)
        self.last_results = [
            self._call(
                "star.aspirate",
                channel=ch,
                source=op.resource.name,
                volume_uL=op.volume,
                flow=op.flow_rate,
                offset_mm=[op.offset.x, op.offset.y, op.offset.z],
            )
            for op, ch in zip(ops, use_channels, strict=True)
        ]

    async def dispense(
        self, ops: list[SingleChannelDispense], use_channels: list[int], **kw: Any
    ) -> None:
        await super().dispense(ops, use_channels, **kw)
        self.last_results = [
            self._call(
                "star.dispense",
                channel=ch,
                target=op.resource.name,
                volume_uL=op.volume,
                flow=op.flow_rate,
                offset_mm=[op.offset.x, op.offset.y, op.offset.z],
            )
            for op, ch in zip(ops, use_channels, strict=True)
        ]

    # --- what a STAR can tell about itself after a crash -------------------------------

    async def request_tip_presence(self) -> list[bool | None]:
        return list(self._call("star.tip_presence"))

    async def request_volume_in_tip(self, channel: int) -> float:
        return float(self._call("star.volume_in_tip", channel=channel))

    async def probe_liquid_volumes(  # type: ignore[override]
        self, containers: list[Container], *args: Any, **kw: Any
    ) -> list[float]:
        return [
            float(v)
            for v in self._call("star.probe_volumes", containers=[c.name for c in containers])
        ]
