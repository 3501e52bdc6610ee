"""Pipetting helpers shared by the protocols: tips from the deck, transfers in tip-sized parts.

Tips come from the configured tip racks in order, using PyLabRobot's tip tracking
to know which spots still hold a tip. Each fresh tip goes on the pipette that
``protocols.pipettes.choose`` picks for the volumes that tip will move (on a STAR
always channel 0; on an OT-2 the P1000 or the P300, with its own tip racks), and
the transfers with it use that pipette's channel and largest aspirate. Volumes
larger than that are moved in equal parts; volumes below ``MIN_VOLUME_UL`` are
refused by seeding, since a 1 mL tip cannot deliver them accurately.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.liquid_handling.errors import ChannelizedError
from pylabrobot.resources import Container, Coordinate, TipRack, TipSpot
from pylabrobot.resources.errors import NoTipError

from protocols.pipettes import Pipette, channel_pipette, choose, mounted, no_pipette
from workcell.errors import TipPickupError, WorkcellError

if TYPE_CHECKING:
    from workcell.assembly.workcell import Workcell

# Liquid a container keeps that a pipette cannot reach, as a share of its capacity
# (the cone of a 50 mL tube, the V of a trough).
DEAD_VOLUME_SHARE = 0.02
SINGLE_CHANNEL = [0]
MIN_VOLUME_UL = 20.0
# Dispensing "along the wall": offset from the well centre toward its side, a few mm up.
WALL_OFFSET_SHARE = 0.35
WALL_HEIGHT_MM = 3.0
# Taking spent medium or PBS off a monolayer: at the opposite wall, low but clear of the
# cells, slowly, so the aspirate does not lift cells off the surface.
ASPIRATE_WALL_SHARE = 0.35
ASPIRATE_HEIGHT_MM = 1.0
CULTURE_ASPIRATE_UL_PER_S = 100.0
# Discarding: from three quarters up the waste container (a free jet above the liquid of a
# waste that is not nearly full), so the tip never touches waste; and a tip that
# discarded into waste never enters another culture.
WASTE_HEIGHT_SHARE = 0.75
# A cell suspension settles within minutes: mix the tube before each aspirate.
MIX_SUSPENSION_UL = 200.0
MIX_SUSPENSION_CYCLES = 3


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
    """Hands out fresh tips from the given tip racks, in order, for the pipette in use.

    Pass the racks the workcell config placed (``Workcell.tip_racks()``), not every
    rack on the deck: a STAR deck also carries the teaching rack, whose needles are
    not tips. ``TipSupply.of(workcell)`` also knows the liquid handler's pipettes.
    """

    def __init__(self, racks: list[TipRack], pipettes: list[Pipette] | None = None) -> None:
        self.racks = racks
        self.pipettes = pipettes or [channel_pipette(racks)]
        self.current = self.pipettes[0]

    @classmethod
    def of(cls, wc: Workcell) -> TipSupply:
        return cls(wc.tip_racks(), mounted(wc))

    def available(self, pipette: Pipette | None = None) -> int:
        racks = self.racks if pipette is None else pipette.racks
        return sum(1 for r in racks for s in r.get_all_items() if s.tracker.has_tip)

    def max_volume_uL(self) -> float:
        """The most one aspirate may take with the pipette in use.

        Filling a tip to the brim wets its filter and makes the volume less
        accurate; 80 % keeps the 1 mL STAR tip (1250 uL capacity) at 1000 uL. An
        OT-2 pipette takes up to its own maximum with its own tips.
        """
        return self.current.max_uL

    @property
    def channels(self) -> list[int]:
        return [self.current.channel]

    def choose(self, volumes: list[float]) -> Pipette:
        """Put the pipette for ``volumes`` in use (the plan has checked there is one)."""
        pipette = choose(self.pipettes, volumes)
        if pipette is None:
            raise WorkcellError(no_pipette(self.pipettes, volumes))
        self.current = pipette
        return pipette

    def next(self, pipette: Pipette | None = None) -> TipSpot:
        for rack in self.racks if pipette is None else pipette.racks:
            for spot in rack.get_all_items():
                if spot.tracker.has_tip:
                    return spot
        raise RuntimeError("no tips left on the deck: more were used than planned")


async def transfer(
    lh: LiquidHandler,
    source: Container,
    target: Container,
    volume_uL: float,
    tips: TipSupply,
) -> None:
    """Move ``volume_uL`` from ``source`` to ``target`` with the tip on the pipette in use."""
    for part in parts(volume_uL, tips.max_volume_uL()):
        await lh.aspirate([source], vols=[part], use_channels=tips.channels)
        await lh.dispense([target], vols=[part], use_channels=tips.channels)


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
    """Refuse unless ``needed`` fresh tips are on the deck (``needed`` is what the plan uses)."""
    if tips.available() < needed:
        problems.append(f"{needed} tips needed, {tips.available()} left in the deck's tip racks")


def plan_tips(tips: TipSupply, groups: list[list[float]], problems: list[str]) -> int:
    """Choose a pipette for each tip's group of transfer volumes; refuse what none can do.

    Counts the tips each pipette needs against its own tip racks (with one pipette, as
    on a STAR, that is the plain count). Returns the number of tips.
    """
    per: dict[str, tuple[Pipette, int]] = {}
    for volumes in groups:
        pipette = choose(tips.pipettes, volumes)
        if pipette is None:
            line = no_pipette(tips.pipettes, volumes)
            if line not in problems:
                problems.append(line)
            continue
        per[pipette.name] = (pipette, per.get(pipette.name, (pipette, 0))[1] + 1)
    if len(tips.pipettes) == 1:
        check_tips(tips, len(groups), problems)
        return len(groups)
    for pipette, needed in per.values():
        have = tips.available(pipette)
        if have < needed:
            racks = ", ".join(r.name for r in pipette.racks)
            problems.append(
                f"{needed} tips needed for the {pipette.name}, {have} left in its tip racks "
                f"({racks})"
            )
    return len(groups)


PICKUP_ATTEMPTS = 3


async def with_fresh_tip(
    lh: LiquidHandler, tips: TipSupply, volumes: list[float] | None = None
) -> None:
    """Pick up a fresh tip on the pipette for ``volumes`` (the transfers this tip will do).

    A failed pick-up writes that tip off and tries the next.

    A channel that comes up without a tip (a bent or missing tip, a 'no tip' error)
    has done nothing to any liquid, so trying the next tip repeats no liquid action.
    After ``PICKUP_ATTEMPTS`` failures in a row the error goes to the operator.
    """
    pipette = tips.choose(volumes or [])
    for attempt in range(1, PICKUP_ATTEMPTS + 1):
        spot = tips.next(pipette)
        try:
            await lh.pick_up_tips([spot], use_channels=[pipette.channel])
            return
        except (TipPickupError, NoTipError, ChannelizedError):
            if spot.tracker.has_tip:
                spot.tracker.remove_tip(commit=True)  # written off: not picked up again
            if attempt == PICKUP_ATTEMPTS:
                raise


async def discard_tip(lh: LiquidHandler, tips: TipSupply | None = None) -> None:
    await lh.discard_tips(use_channels=tips.channels if tips is not None else SINGLE_CHANNEL)


async def swap_tip(lh: LiquidHandler, tips: TipSupply, volumes: list[float] | None = None) -> None:
    """Discard the tip in use and take a fresh one for ``volumes``."""
    await discard_tip(lh, tips)
    await with_fresh_tip(lh, tips, volumes)


def off_centre_low(well: Container) -> Coordinate:
    """Where a tip takes liquid off a monolayer: near the wall, just above the bottom."""
    return Coordinate(x=-ASPIRATE_WALL_SHARE * well.get_size_x(), y=0, z=ASPIRATE_HEIGHT_MM)


def above_liquid(container: Container) -> Coordinate:
    """Where a tip discards into a waste container: high up, clear of the liquid (and
    inside the container as both a STAR's and an OT-2's geometry describe it)."""
    return Coordinate(x=0, y=0, z=WASTE_HEIGHT_SHARE * container.get_size_z())


async def remove_to_waste(
    lh: LiquidHandler,
    tips: TipSupply,
    well: Container,
    waste: Container,
    volume_uL: float,
) -> None:
    """Spent liquid off one culture into the waste, with a tip of its own for this well.

    The tip takes the liquid near the wall, slowly, and discards it from above the
    waste's liquid; it returns only to this same well (for the next part) and is
    discarded before any other well is touched. Nothing to remove: no tip is used.
    """
    if volume_uL <= 0:
        return
    await with_fresh_tip(lh, tips, [volume_uL])
    for part in parts(volume_uL, tips.max_volume_uL()):
        await lh.aspirate(
            [well],
            vols=[part],
            use_channels=tips.channels,
            flow_rates=[CULTURE_ASPIRATE_UL_PER_S],
            offsets=[off_centre_low(well)],
        )
        await lh.dispense(
            [waste], vols=[part], use_channels=tips.channels, offsets=[above_liquid(waste)]
        )
    await discard_tip(lh, tips)


def removal_groups(volumes: list[float]) -> list[list[float]]:
    """The tips ``remove_to_waste`` uses for these wells: one each, none where nothing goes."""
    return [[v] for v in volumes if v > 0]


async def mix(
    lh: LiquidHandler, tips: TipSupply, container: Container, volume_uL: float, cycles: int
) -> None:
    """Pipette up and down in ``container`` (a suspension before it is aspirated)."""
    for _ in range(cycles):
        await lh.aspirate([container], vols=[volume_uL], use_channels=tips.channels)
        await lh.dispense([container], vols=[volume_uL], use_channels=tips.channels)


def suspension_mix_uL(container: Container, tips: TipSupply | None = None) -> float:
    """The mixing volume for a suspension: ``MIX_SUSPENSION_UL`` or less (a small volume,
    a small pipette)."""
    top = MIX_SUSPENSION_UL if tips is None else min(MIX_SUSPENSION_UL, tips.max_volume_uL())
    return min(top, 0.5 * usable_uL(container))


def suspension_group(volume_uL: float) -> list[float]:
    """What the tip that seeds ``volume_uL`` of a suspension moves: the mixing and the cells."""
    return [MIX_SUSPENSION_UL, volume_uL] if volume_uL > 0 else []


async def transfer_suspension(
    lh: LiquidHandler, tips: TipSupply, tube: Container, target: Container, volume_uL: float
) -> None:
    """Cells from a tube into a vessel: the tube is mixed before each aspirate."""
    for part in parts(volume_uL, tips.max_volume_uL()):
        mixing = suspension_mix_uL(tube, tips)
        if mixing > 0:
            await mix(lh, tips, tube, mixing, MIX_SUSPENSION_CYCLES)
        await lh.aspirate([tube], vols=[part], use_channels=tips.channels)
        await lh.dispense([target], vols=[part], use_channels=tips.channels)


async def dispense_along_wall(
    lh: LiquidHandler,
    source: Container,
    well: Container,
    volume_uL: float,
    tips: TipSupply,
    flow_uL_per_s: float,
) -> None:
    """Fresh medium down the side of the well, slowly, so the monolayer is not disturbed."""
    wall = Coordinate(x=WALL_OFFSET_SHARE * well.get_size_x(), y=0, z=WALL_HEIGHT_MM)
    for part in parts(volume_uL, tips.max_volume_uL()):
        await lh.aspirate([source], vols=[part], use_channels=tips.channels)
        await lh.dispense(
            [well],
            vols=[part],
            use_channels=tips.channels,
            flow_rates=[flow_uL_per_s],
            offsets=[wall],
        )
