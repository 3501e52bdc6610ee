"""A STAR back end whose channels act in the simulated lab.

PyLabRobot's ``STARChatterboxBackend`` builds and checks the real STAR firmware
commands for every operation (without a USB device); this back end then sends each
operation, all its channels in one request, to the simulated lab over the lab link,
where it happens to the liquids and cells (whole or not at all, as on a STAR whose
channels move together). ``last_results`` holds what the lab said of each channel of
the last operation, in order. It also answers the questions a real STAR answers after a
crash: which channels hold a tip (``request_tip_presence``), how much liquid a tip
holds (``request_volume_in_tip``), and how much liquid is in a container
(``probe_liquid_volumes``, capacitive liquid-level detection), with the same
method names as PyLabRobot's ``STARBackend``, so reconciliation runs the same code
against a real STAR.
"""

from __future__ import annotations

from typing import Any

from pylabrobot.liquid_handling.backends.hamilton.STAR_chatterbox import STARChatterboxBackend
from pylabrobot.liquid_handling.errors import ChannelizedError
from pylabrobot.liquid_handling.standard import (
    Drop,
    Pickup,
    SingleChannelAspiration,
    SingleChannelDispense,
)
from pylabrobot.resources import Container

from devices.lab import LabLink
from workcell.errors import TipPickupError


class LabSTARBackend(STARChatterboxBackend):
    def __init__(self, device: str, link: LabLink, num_channels: int = 8) -> None:
        super().__init__(num_channels=num_channels)
        self.device = device
        self.link = link
        self.last_results: list[dict[str, Any]] = []  # what the lab said of the last operation

    def _call(self, op: str, **args: Any) -> Any:
        return self.link.call(self.device, op, device=self.device, **args)

    def _batch(self, op: str, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One lab request for all channels of an action: the lab carries it out whole or
        refuses it whole (a refusal raises as the lab link maps it), so a lab killed
        mid-action leaves all of its channels done or none."""
        self.last_results = list(self._call(op, ops=ops))
        return self.last_results

    async def pick_up_tips(self, ops: list[Pickup], use_channels: list[int], **kw: Any) -> None:
        """Channels that got no tip raise. A one-channel pick-up raises ``TipPickupError``,
        as it always did; a pick-up of several raises PyLabRobot's ``ChannelizedError``
        naming exactly the channels without a tip (some or all), each with its
        ``TipPickupError``. The other channels hold their tips, as on a real STAR;
        PyLabRobot then asks ``request_tip_presence`` and keeps those on its head."""
        await super().pick_up_tips(ops, use_channels, **kw)
        results = self._batch(
            "star.pick_up_tip_batch",
            [
                {"channel": ch, "spot": op.resource.name}
                for op, ch in zip(ops, use_channels, strict=True)
            ],
        )
        failed = {
            ch: TipPickupError(self.device, "pick up tip", r["error"]["message"])
            for ch, r in zip(use_channels, results, strict=True)
            if "error" in r
        }
        if not failed:
            return
        if len(use_channels) == 1:
            raise failed[use_channels[0]]
        raise ChannelizedError(errors=dict(failed), raw_response=results)

    async def drop_tips(self, ops: list[Drop], use_channels: list[int], **kw: Any) -> None:
        await super().drop_tips(ops, use_channels, **kw)
        self._batch(
            "star.drop_tip_batch",
            [
                {"channel": ch, "to": op.resource.name}
                for op, ch in zip(ops, use_channels, strict=True)
            ],
        )

    async def aspirate(
        self, ops: list[SingleChannelAspiration], use_channels: list[int], **kw: Any
    ) -> None:
        await super().aspirate(ops, use_channels, **kw)
        self._batch(
            "star.aspirate_batch",
            [
                {"channel": ch, "source": op.resource.name, **_liquid(op), **_mix(op)}
                for op, ch in zip(ops, use_channels, strict=True)
            ],
        )

    async def dispense(
        self, ops: list[SingleChannelDispense], use_channels: list[int], **kw: Any
    ) -> None:
        await super().dispense(ops, use_channels, **kw)
        self._batch(
            "star.dispense_batch",
            [
                {"channel": ch, "target": op.resource.name, **_liquid(op)}
                for op, ch in zip(ops, use_channels, strict=True)
            ],
        )

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


def _liquid(op: SingleChannelAspiration | SingleChannelDispense) -> dict[str, Any]:
    return {
        "volume_uL": op.volume,
        "flow": op.flow_rate,
        "offset_mm": [op.offset.x, op.offset.y, op.offset.z],
    }


def _mix(op: SingleChannelAspiration) -> dict[str, Any]:
    """An aspiration mix (PyLabRobot's ``Mix``; the firmware command carries it too): the
    strokes the channel makes in the source before it draws."""
    if op.mix is None:
        return {}
    return {
        "mix_cycles": op.mix.repetitions,
        "mix_uL": op.mix.volume,
        "mix_flow": op.mix.flow_rate,
    }
