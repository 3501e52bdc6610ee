"""Pipetting helpers shared by the protocols: tips from the deck, transfers in tip-sized parts.

Tips come from the configured tip racks in order, using PyLabRobot's tip tracking
to know which spots still hold a tip. Volumes larger than a tip should hold are
moved in equal parts; volumes below ``MIN_VOLUME_UL`` are refused by the protocols,
since a 1 mL tip cannot deliver them accurately.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.liquid_handling.errors import ChannelizedError
from pylabrobot.resources import Container, Coordinate, TipRack, TipSpot
from pylabrobot.resources.errors import NoTipError

from workcell.errors import TipPickupError, WorkcellError

if TYPE_CHECKING:
    from workcell.assembly.workcell import Workcell

# Liquid a container keeps that a pipette cannot reach, as a share of its capacity
# (the cone of a 50 mL tube, the V of a trough).
DEAD_VOLUME_SHARE = 0.02
SINGLE_CHANNEL = [0]
TIP_FILL_SHARE = 0.8
MIN_VOLUME_UL = 20.0
# Dispensing "along the wall": offset from the well centre toward its side, a few mm up.
WALL_OFFSET_SHARE = 0.35
WALL_HEIGHT_MM = 3.0


def dead_volume_uL(container: Container) -> float:
    return DEAD_VOLUME_SHARE * container.max_volume


def usable_uL(container: Container) -> float:
    """What can still be aspirated from ``container``."""
    return max(0.0, container.tracker.get_used_volume() - dead_volume_uL(container))


def parts(volume_uL: float, max_part_uL: float) -> list[float]:
    """Split a volume into the fewest equal parts no larger than ``max_part_uL``."""
    if volume_uL <= 0:
        return []
    n = math.ceil(volume_uL / max_part_uL - 1e-9)
    return [volume_uL / n] * n


class TipSupply:
    """Hands out fresh tips from the given tip racks, in order.

    Pass the racks the workcell config placed (``Workcell.tip_racks()``), not every
    rack on the deck: a STAR deck also carries the teaching rack, whose needles are
    not tips.
    """

    def __init__(self, racks: list[TipRack]) -> None:
        self.racks = racks

    def available(self) -> int:
        return sum(1 for r in self.racks for s in r.get_all_items() if s.tracker.has_tip)

    def max_volume_uL(self) -> float:
        """The most one aspirate may take: 80 % of the smallest tip's capacity.

        Filling a tip to the brim wets its filter and makes the volume less
        accurate; 80 % keeps the 1 mL STAR tip (1250 uL capacity) at 1000 uL.
        """
        vols = [r.get_item(0).make_tip().maximal_volume for r in self.racks]
        return TIP_FILL_SHARE * min(vols) if vols else 0.0

    def next(self) -> TipSpot:
        for rack in self.racks:
            for spot in rack.get_all_items():
                if spot.tracker.has_tip:
                    return spot
        raise RuntimeError("no tips left on the deck")


async def transfer(
    lh: LiquidHandler,
    source: Container,
    target: Container,
    volume_uL: float,
    max_part_uL: float,
) -> None:
    """Move ``volume_uL`` from ``source`` to ``target`` with the tip on channel 0."""
    for part in parts(volume_uL, max_part_uL):
        await lh.aspirate([source], vols=[part], use_channels=SINGLE_CHANNEL)
        await lh.dispense([target], vols=[part], use_channels=SINGLE_CHANNEL)


def check_supplies(
    wc: Workcell, needs_uL: dict[str, float], problems: list[str], waste: dict[str, float]
) -> None:
    """Refuse (by appending to ``problems``) any reservoir that would run dry, or waste
    container that would overflow, before the protocol ends."""
    for name, need in needs_uL.items():
        if need <= 0:
            continue
        try:
            c = wc.container(name)
        except WorkcellError as err:
            problems.append(str(err))
            continue
        have = usable_uL(c)
        if need > have + 1e-6:
            problems.append(
                f"reservoir {name!r} would run dry: {need / 1000:.2f} mL needed, "
                f"{have / 1000:.2f} mL usable"
            )
    for name, volume in waste.items():
        if volume <= 0:
            continue
        try:
            c = wc.container(name)
        except WorkcellError as err:
            problems.append(str(err))
            continue
        free = c.tracker.get_free_volume()
        if volume > free + 1e-6:
            problems.append(
                f"{name!r} would overflow: {volume / 1000:.2f} mL to discard, "
                f"{free / 1000:.2f} mL free"
            )


def check_tips(tips: TipSupply, needed: int, problems: list[str]) -> None:
    if tips.available() < needed:
        problems.append(f"{needed} tips needed, {tips.available()} left in the deck's tip racks")


PICKUP_ATTEMPTS = 3


async def with_fresh_tip(lh: LiquidHandler, tips: TipSupply) -> None:
    """Pick up the next fresh tip; a failed pick-up writes that tip off and tries the next.

    A channel that comes up without a tip (a bent or missing tip, a 'no tip' error)
    has done nothing to any liquid, so trying the next tip repeats no liquid action.
    After ``PICKUP_ATTEMPTS`` failures in a row the error goes to the operator.
    """
    for attempt in range(1, PICKUP_ATTEMPTS + 1):
        spot = tips.next()
        try:
            await lh.pick_up_tips([spot], use_channels=SINGLE_CHANNEL)
            return
        except (TipPickupError, NoTipError, ChannelizedError):
            if spot.tracker.has_tip:
                spot.tracker.remove_tip(commit=True)  # written off: not picked up again
            if attempt == PICKUP_ATTEMPTS:
                raise


async def discard_tip(lh: LiquidHandler) -> None:
    await lh.discard_tips(use_channels=SINGLE_CHANNEL)


async def swap_tip(lh: LiquidHandler, tips: TipSupply) -> None:
    """Discard the tip on channel 0 and take a fresh one."""
    await discard_tip(lh)
    await with_fresh_tip(lh, tips)


async def dispense_along_wall(
    lh: LiquidHandler,
    source: Container,
    well: Container,
    volume_uL: float,
    max_part_uL: float,
    flow_uL_per_s: float,
) -> None:
    """Fresh medium down the side of the well, slowly, so the monolayer is not disturbed."""
    wall = Coordinate(x=WALL_OFFSET_SHARE * well.get_size_x(), y=0, z=WALL_HEIGHT_MM)
    for part in parts(volume_uL, max_part_uL):
        await lh.aspirate([source], vols=[part], use_channels=SINGLE_CHANNEL)
        await lh.dispense(
            [well],
            vols=[part],
            use_channels=SINGLE_CHANNEL,
            flow_rates=[flow_uL_per_s],
            offsets=[wall],
        )
