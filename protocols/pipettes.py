"""Which pipette moves a liquid: one rule for every liquid handler, live or exported.

A STAR has identical channels with 1 mL tips: one "pipette", channel 0, or, with the
config's ``pipetting_channels`` above 1, a group of channels 0..n-1 that move one
transfer together where the containers are wide enough (an OmniTray, a trough). An
OT-2 has up to two single-channel pipettes, each with its own volume range (from
Opentrons' pipette definitions: P20 1-20 uL, P300 20-300 uL, P1000 100-1000 uL) and
its own tips (a P1000 takes 1000 uL tips, a P300 200/300 uL tips). What one tip does
(a group of transfers) is done by one pipette, chosen by ``choose``:

* only pipettes that have tip racks on the deck, and whose minimum is at most the
  smallest volume of the group (a part of a split volume is always more than half the
  pipette's maximum, so above its minimum);
* of those, the smallest one that takes the largest volume in one aspirate (best
  accuracy); if none does, the largest one, splitting volumes into equal parts;
* none: the plan refuses, naming the volume and the mounted ranges.

The same rule gives a single-channel STAR and the OT-2 (P1000 + P300) the same
aspirates for the same transfer whenever both split it the same way, so the same cells
move; a STAR's group of channels moves the same volume in fewer, wider actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pylabrobot.resources import TipRack

from workcell import ot_labware

if TYPE_CHECKING:
    from workcell.assembly.workcell import Workcell

# Filling a tip to the brim wets its filter: a STAR 1 mL tip (1250 uL capacity) takes 1000 uL.
TIP_FILL_SHARE = 0.8


@dataclass(frozen=True)
class Pipette:
    name: str
    # PyLabRobot channels that work together: the STAR's channels 0..n-1, or the OT-2's
    # mount (left first)
    channels: tuple[int, ...]
    min_uL: float
    max_uL: float  # the most one aspirate takes with this pipette's tips, per channel
    racks: tuple[TipRack, ...]

    @property
    def channel(self) -> int:
        """The first channel: the one a single-channel transfer (a cell suspension) uses."""
        return self.channels[0]

    def describe(self) -> str:
        return f"{self.name} {self.min_uL:g}-{self.max_uL:g} uL"


def tip_capacity_uL(rack: TipRack) -> float:
    return float(rack.get_item(0).make_tip().maximal_volume)


def channel_pipette(racks: list[TipRack], channels: int = 1) -> Pipette:
    """A STAR's channels 0..``channels``-1 with every configured tip rack."""
    vols = [tip_capacity_uL(r) for r in racks]
    name = "channel 0" if channels == 1 else f"channels 0-{channels - 1}"
    return Pipette(
        name,
        tuple(range(channels)),
        0.0,
        TIP_FILL_SHARE * min(vols) if vols else 0.0,
        tuple(racks),
    )


def mounted(wc: Workcell) -> list[Pipette]:
    """The pipettes of the workcell's liquid handler, each with the tip racks it can use."""
    racks = wc.tip_racks()
    lh = next(d for d in wc.config.devices.values() if d.kind == "liquid_handler")
    on_mounts = getattr(lh, "pipettes", None)
    if on_mounts is None:
        return [channel_pipette(racks, getattr(lh, "pipetting_channels", 1))]
    out = []
    for channel, (_, name) in enumerate(on_mounts.mounted()):
        low, high = ot_labware.pipette_range_uL(name)
        fits = tuple(r for r in racks if tip_capacity_uL(r) in ot_labware.TIP_VOLUMES[name])
        tip = min((tip_capacity_uL(r) for r in fits), default=high)
        out.append(Pipette(name, (channel,), low, min(high, tip), fits))
    return out


def choose(pipettes: list[Pipette], volumes: list[float]) -> Pipette | None:
    """The pipette for one tip's transfers of ``volumes`` (uL); None if none can do them."""
    usable = [p for p in pipettes if p.racks]
    vols = [v for v in volumes if v > 0]
    if not usable:
        return None
    if not vols:
        return max(usable, key=lambda p: p.max_uL)
    fits = [p for p in usable if p.min_uL <= min(vols) + 1e-9]
    if not fits:
        return None
    whole = [p for p in fits if p.max_uL >= max(vols) - 1e-9]
    if whole:
        return min(whole, key=lambda p: p.max_uL)
    return max(fits, key=lambda p: p.max_uL)


def no_pipette(pipettes: list[Pipette], volumes: list[float]) -> str:
    """Why ``choose`` found none: a line for a refusal."""
    vols = [v for v in volumes if v > 0]
    ranges = ", ".join(p.describe() for p in pipettes) or "none"
    without = [p.name for p in pipettes if not p.racks]
    if without and len(without) == len(pipettes):
        return f"no tip rack on the deck fits the mounted pipettes ({', '.join(without)})"
    return (
        f"a {min(vols):.1f} uL transfer is below every usable pipette's range (mounted: {ranges})"
    )
