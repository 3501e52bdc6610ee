"""The simulated liquid handler's physics, inside the simulated lab.

The controller drives PyLabRobot's ``LiquidHandler`` with ``devices.lab_star``'s back
end, which builds and checks the real STAR firmware commands and then sends each
channel operation here over the lab link. Here the operation happens to the lab:

* cells move with the liquid: an aspirate takes its share of the source's cells
  into the tip, a dispense delivers them (less a small pipetting loss that stays
  in the tip and is discarded with it) to the destination in the culture model;
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
from dataclasses import asdict
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

    def pick_up_tip(self, channel: int, spot: str) -> dict[str, Any]:
        ch = self._channel(channel)
        if ch in self.tips:
            raise Refusal("tip_present", f"{self.name}: channel {ch} already holds a tip")
        if self.tip_pickup_failure and self.rng.random() < self.tip_pickup_failure:
            self.log(self.name, "pick_up_tip_failed", channel=ch, tip_spot=spot)
            self.advance(TIP_PICKUP_S)
            raise Refusal("no_tip", f"{self.name}: no tip on channel {ch} from {spot}")
        self.tips[ch] = Liquid()
        self.sources[ch] = []
        self.log(self.name, "pick_up_tip", channel=ch, tip_spot=spot)
        self.advance(TIP_PICKUP_S)
        return {}

    def drop_tip(self, channel: int, to: str) -> dict[str, Any]:
        ch = self._channel(channel)
        if ch not in self.tips:
            raise Refusal("no_tip", f"{self.name}: channel {ch} holds no tip to drop")
        left = self.tips.pop(ch)
        self.sources.pop(ch, None)
        self.cells_discarded += left.cells
        self.log(
            self.name,
            "drop_tip",
            channel=ch,
            to=to,
            discarded_uL=left.volume_uL,
            discarded_cells=left.cells,
        )
        self.advance(TIP_DROP_S)
        return {"discarded_uL": left.volume_uL}

    def aspirate(
        self,
        channel: int,
        source: str,
        volume_uL: float,
        flow: float | None,
        offset_mm: list[float] | None = None,
    ) -> dict[str, Any]:
        ch = self._channel(channel)
        if ch not in self.tips:
            raise Refusal("no_tip", f"{self.name}: channel {ch} has no tip to aspirate with")
        self.touch(source)
        taken = self.culture.withdraw(source, volume_uL)
        self.tips[ch].add(taken)
        if source not in self.sources[ch]:
            self.sources[ch].append(source)
        self.log(
            self.name,
            "aspirate",
            channel=ch,
            source=source,
            volume_uL=volume_uL,
            cells=taken.viable,
            enzyme=taken.enzyme,
            flow_uL_per_s=flow,
            offset_mm=offset_mm or [0.0, 0.0, 0.0],
        )
        self.advance(LIQUID_MOVE_S + volume_uL / (flow or FLOW_RATE_UL_PER_S))
        return {"cells": taken.viable}

    def dispense(
        self,
        channel: int,
        target: str,
        volume_uL: float,
        flow: float | None,
        offset_mm: list[float] | None = None,
    ) -> dict[str, Any]:
        ch = self._channel(channel)
        if ch not in self.tips:
            raise Refusal("no_tip", f"{self.name}: channel {ch} has no tip to dispense from")
        tip = self.tips[ch]
        out = tip.take(volume_uL)
        loss = self.culture.params.pipetting_cell_loss
        kept = out.viable * loss, out.dead * loss
        out.viable -= kept[0]
        out.dead -= kept[1]
        tip.viable += kept[0]
        tip.dead += kept[1]
        self.touch(target)
        self.culture.deliver(target, out)
        after = self.culture.liquid_of(target)
        self.log(
            self.name,
            "dispense",
            channel=ch,
            target=target,
            volume_uL=volume_uL,
            cells=out.viable,
            sources=list(self.sources.get(ch, [])),
            enzyme=out.enzyme,
            volume_after_uL=after.volume_uL,
            enzyme_after=after.enzyme,
            flow_uL_per_s=flow,
            offset_mm=offset_mm or [0.0, 0.0, 0.0],
        )
        self.advance(LIQUID_MOVE_S + volume_uL / (flow or FLOW_RATE_UL_PER_S))
        return {"cells": out.viable}

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
