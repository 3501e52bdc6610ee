"""The simulated liquid handler's physics, inside the simulated lab.

The controller drives PyLabRobot's ``LiquidHandler`` with ``devices.lab_star``'s back
end, which builds and checks the real STAR firmware commands and then sends each
action here over the lab link, as one request for all its channels (``*_batch``
below), so an action of eight channels happens whole in the lab or not at all. A
batch is checked for every channel before anything changes; its channels move
together: one log row per channel, all at the action's time, and the clock advances
once, by the slowest channel. A one-channel batch is exactly a one-channel action
(the single-channel methods are one-op batches). Here the action happens to the lab:

* cells move with the liquid: an aspirate takes its share of the source's cells
  into the tip, a dispense delivers them (less a small pipetting loss that stays
  in the tip and is discarded with it) to the destination in the culture model;
* an aspirate may mix first, in the same command (a STAR's aspiration mix): its
  strokes move the source's liquid up and back, each leaving its pipetting loss in
  the tip, logged as one ``mix`` row before the aspirate's;
* each action takes time on the lab's clock;
* each action goes into the lab's physical log, with what the tip held (the
  containers it aspirated from), so a judge can count reagent additions per
  vessel from the lab's own account;
* a channel holds a tip or not, and a tip holds liquid: ``tip_presence`` and
  ``volume_in_tip`` answer as a STAR's tip sensor and pressure sensor do, and
  ``probe_volume`` as its capacitive liquid-level detection does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from simulators.culture import CultureModel, Liquid

# Seconds per action, from typical STAR method timings with 1 mL tips.
TIP_PICKUP_S = 8.0
TIP_DROP_S = 6.0
LIQUID_MOVE_S = 4.0
FLOW_RATE_UL_PER_S = 250.0
LLD_PROBE_S = 3.0


class Refusal(Exception):
    """The device refuses an action; ``kind`` says which (the driver maps it to its error)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


Log = Callable[..., None]  # log(device, action, **detail)


# One channel's part of an action, as a lab request carries it (a batch holds a list):
# the single-channel request's arguments, less the device. Plain dataclasses, so the
# values are logged exactly as they came (no coercion); a wrong key is a TypeError,
# which the lab answers as a bad request.


@dataclass(frozen=True, slots=True)
class PickUp:
    channel: int
    spot: str


@dataclass(frozen=True, slots=True)
class DropTip:
    channel: int
    to: str


@dataclass(frozen=True, slots=True)
class Aspirate:
    """``mix_cycles`` strokes of ``mix_uL`` in the source before the aspirate, in the same
    command (a STAR's aspiration mix: the channel mixes where it then draws from)."""

    channel: int
    source: str
    volume_uL: float
    flow: float | None = None
    offset_mm: list[float] | None = None
    mix_cycles: int = 0
    mix_uL: float = 0.0
    mix_flow: float | None = None


@dataclass(frozen=True, slots=True)
class Dispense:
    channel: int
    target: str
    volume_uL: float
    flow: float | None = None
    offset_mm: list[float] | None = None


def _liquid_move_s(ops: list[Aspirate] | list[Dispense]) -> float:
    """The channels move together: the slowest one's time (one channel: as before)."""
    return LIQUID_MOVE_S + max(op.volume_uL / (op.flow or FLOW_RATE_UL_PER_S) for op in ops)


def _mix_s(ops: list[Aspirate]) -> float:
    """The aspiration mixes, which the channels do together in place: the longest one."""
    return max(2 * op.mix_cycles * op.mix_uL / (op.mix_flow or FLOW_RATE_UL_PER_S) for op in ops)


class StarSimulator:
    """A STAR's channels, their tips and what the tips hold."""

    def __init__(
        self,
        name: str,
        culture: CultureModel,
        advance: Callable[[float], None],
        log: Log,
        touch: Callable[[str], None],
        channels: int = 8,
        tip_pickup_failure: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.name = name
        self.culture = culture
        self.advance = advance
        self.log = log
        self.touch = touch  # makes a well known to the culture model before it is used
        self.channels = channels
        self.tip_pickup_failure = tip_pickup_failure
        self.rng = rng or np.random.default_rng(0)
        self.tips: dict[int, Liquid] = {}  # channel -> what its tip holds (no key: no tip)
        self.sources: dict[int, list[str]] = {}  # channel -> containers its tip drew from
        self.cells_discarded = 0.0

    def _channel(self, channel: int) -> int:
        if not 0 <= channel < self.channels:
            raise Refusal("bad_channel", f"{self.name}: no channel {channel}")
        return channel

    def _check(self, channels: list[int], tip: bool, refusal: str) -> None:
        """Refuse a whole batch before anything changes: every channel exists, comes once,
        and holds a tip (``tip``) or none; ``refusal`` ends today's single-channel message
        (so one channel is refused exactly as before batches)."""
        if not channels:
            raise Refusal("no_channels", f"{self.name}: an action needs at least one channel")
        seen: set[int] = set()
        for channel in channels:
            ch = self._channel(channel)
            if ch in seen:
                raise Refusal("duplicate_channel", f"{self.name}: channel {ch} twice in one action")
            seen.add(ch)
            if tip and ch not in self.tips:
                raise Refusal("no_tip", f"{self.name}: channel {ch} {refusal}")
            if not tip and ch in self.tips:
                raise Refusal("tip_present", f"{self.name}: channel {ch} {refusal}")

    # --- one action of several channels (one lab request; the channels move together) -----

    def pick_up_tip_batch(self, ops: list[PickUp]) -> list[dict[str, Any]]:
        """Each channel picks up its tip; the failure to get one is drawn per channel, in
        order, as on a real STAR, where the other channels keep theirs.

        Returns one result per op: ``{}`` or ``{"error": {"kind": "no_tip", "message"}}``.
        """
        self._check([op.channel for op in ops], False, "already holds a tip")
        results: list[dict[str, Any]] = []
        for op in ops:
            ch = op.channel
            if self.tip_pickup_failure and self.rng.random() < self.tip_pickup_failure:
                self.log(self.name, "pick_up_tip_failed", channel=ch, tip_spot=op.spot)
                message = f"{self.name}: no tip on channel {ch} from {op.spot}"
                results.append({"error": {"kind": "no_tip", "message": message}})
                continue
            self.tips[ch] = Liquid()
            self.sources[ch] = []
            self.log(self.name, "pick_up_tip", channel=ch, tip_spot=op.spot)
            results.append({})
        self.advance(TIP_PICKUP_S)
        return results

    def drop_tip_batch(self, ops: list[DropTip]) -> list[dict[str, Any]]:
        self._check([op.channel for op in ops], True, "holds no tip to drop")
        results: list[dict[str, Any]] = []
        for op in ops:
            left = self.tips.pop(op.channel)
            self.sources.pop(op.channel, None)
            self.cells_discarded += left.cells
            self.log(
                self.name,
                "drop_tip",
                channel=op.channel,
                to=op.to,
                discarded_uL=left.volume_uL,
                discarded_cells=left.cells,
            )
            results.append({"discarded_uL": left.volume_uL})
        self.advance(TIP_DROP_S)
        return results

    def aspirate_batch(self, ops: list[Aspirate]) -> list[dict[str, Any]]:
        self._check([op.channel for op in ops], True, "has no tip to aspirate with")
        for op in ops:
            if op.mix_cycles < 0 or op.mix_uL < 0 or (op.mix_cycles > 0) != (op.mix_uL > 0):
                raise Refusal(
                    "bad_mix",
                    f"{self.name}: channel {op.channel}: a mix needs both cycles and a volume "
                    f"(got {op.mix_cycles} cycles of {op.mix_uL} uL)",
                )
        results: list[dict[str, Any]] = []
        for op in ops:
            ch = op.channel
            self.touch(op.source)
            if op.mix_cycles:
                self._mix(op)
            taken = self.culture.withdraw(op.source, op.volume_uL)
            self.tips[ch].add(taken)
            if op.source not in self.sources[ch]:
                self.sources[ch].append(op.source)
            self.log(
                self.name,
                "aspirate",
                channel=ch,
                source=op.source,
                volume_uL=op.volume_uL,
                cells=taken.viable,
                enzyme=taken.enzyme,
                flow_uL_per_s=op.flow,
                offset_mm=op.offset_mm or [0.0, 0.0, 0.0],
            )
            results.append({"cells": taken.viable})
        self.advance(_mix_s(ops) + _liquid_move_s(ops))
        return results

    def _mix(self, op: Aspirate) -> None:
        """The strokes of an aspiration mix: each draws ``mix_uL`` up and puts it back,
        leaving the pipetting loss of its cells in the tip, as a dispense does."""
        tip = self.tips[op.channel]
        before = tip.viable
        for _ in range(op.mix_cycles):
            tip.add(self.culture.withdraw(op.source, op.mix_uL))
            self.culture.deliver(op.source, self._out_of_tip(tip, op.mix_uL))
        self.log(
            self.name,
            "mix",
            channel=op.channel,
            container=op.source,
            cycles=op.mix_cycles,
            volume_uL=op.mix_uL,
            flow_uL_per_s=op.mix_flow,
            cells_kept_in_tip=tip.viable - before,
        )

    def _out_of_tip(self, tip: Liquid, volume_uL: float) -> Liquid:
        """``volume_uL`` leaving ``tip``, less the pipetting loss of its cells, which stays
        in the tip (and is discarded with it)."""
        loss = self.culture.params.pipetting_cell_loss
        out = tip.take(volume_uL)
        kept = out.viable * loss, out.dead * loss
        out.viable -= kept[0]
        out.dead -= kept[1]
        tip.viable += kept[0]
        tip.dead += kept[1]
        return out

    def dispense_batch(self, ops: list[Dispense]) -> list[dict[str, Any]]:
        self._check([op.channel for op in ops], True, "has no tip to dispense from")
        results: list[dict[str, Any]] = []
        for op in ops:
            ch = op.channel
            out = self._out_of_tip(self.tips[ch], op.volume_uL)
            self.touch(op.target)
            self.culture.deliver(op.target, out)
            after = self.culture.liquid_of(op.target)
            self.log(
                self.name,
                "dispense",
                channel=ch,
                target=op.target,
                volume_uL=op.volume_uL,
                cells=out.viable,
                sources=list(self.sources.get(ch, [])),
                enzyme=out.enzyme,
                volume_after_uL=after.volume_uL,
                enzyme_after=after.enzyme,
                flow_uL_per_s=op.flow,
                offset_mm=op.offset_mm or [0.0, 0.0, 0.0],
            )
            results.append({"cells": out.viable})
        self.advance(_liquid_move_s(ops))
        return results

    # --- one channel (the lab requests before batches; old redo logs replay them) ---------

    def pick_up_tip(self, channel: int, spot: str) -> dict[str, Any]:
        (result,) = self.pick_up_tip_batch([PickUp(channel, spot)])
        if "error" in result:
            raise Refusal(result["error"]["kind"], result["error"]["message"])
        return result

    def drop_tip(self, channel: int, to: str) -> dict[str, Any]:
        (result,) = self.drop_tip_batch([DropTip(channel, to)])
        return result

    def aspirate(
        self,
        channel: int,
        source: str,
        volume_uL: float,
        flow: float | None,
        offset_mm: list[float] | None = None,
    ) -> dict[str, Any]:
        (result,) = self.aspirate_batch([Aspirate(channel, source, volume_uL, flow, offset_mm)])
        return result

    def dispense(
        self,
        channel: int,
        target: str,
        volume_uL: float,
        flow: float | None,
        offset_mm: list[float] | None = None,
    ) -> dict[str, Any]:
        (result,) = self.dispense_batch([Dispense(channel, target, volume_uL, flow, offset_mm)])
        return result

    def tip_presence(self) -> list[bool]:
        return [ch in self.tips for ch in range(self.channels)]

    def volume_in_tip(self, channel: int) -> float:
        ch = self._channel(channel)
        if ch not in self.tips:
            raise Refusal("no_tip", f"{self.name}: channel {ch} holds no tip")
        return self.tips[ch].volume_uL

    def probe_volume(self, container: str) -> float:
        """Capacitive liquid-level detection: the liquid's height, as a volume."""
        self.touch(container)
        volume = self.culture.liquid_of(container).volume_uL
        self.log(self.name, "probe_volume", container=container, volume_uL=volume)
        self.advance(LLD_PROBE_S)
        return volume

    # --- persistence -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "tips": {str(ch): asdict(liq) for ch, liq in self.tips.items()},
            "sources": {str(ch): s for ch, s in self.sources.items()},
            "cells_discarded": self.cells_discarded,
            "rng": self.rng.bit_generator.state,
        }

    def load_state(self, st: dict[str, Any]) -> None:
        self.tips = {int(ch): Liquid(**liq) for ch, liq in st["tips"].items()}
        self.sources = {int(ch): list(s) for ch, s in st["sources"].items()}
        self.cells_discarded = float(st["cells_discarded"])
        self.rng.bit_generator.state = st["rng"]
