"""Pipetting helpers shared by the protocols: tips from the deck, transfers in tip-sized parts.

Tips come from the configured tip racks in order, using PyLabRobot's tip tracking
to know which spots still hold a tip. Each fresh tip goes on the pipette that
``protocols.pipettes.choose`` picks for the volumes that tip will move (on a STAR
channel 0, or a group of channels; on an OT-2 the P1000 or the P300, with its own
tip racks), and the transfers with it use that pipette's channels and largest
aspirate. Volumes larger than that are moved in equal parts; volumes below
``MIN_VOLUME_UL`` are refused by seeding, since a 1 mL tip cannot deliver them
accurately.

A group of channels picks its tips from one column of a rack (the STAR's channels
share one X drive), channel i taking the i-th tip of the column, or, when no column
holds enough, from the next columns in turn, a pick-up each; it moves one
transfer in equal parts across its channels (``parts_across``) into containers wide
enough for them (``channels_fit``, from PyLabRobot's own channel spacing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.liquid_handling.channel_positioning import compute_channel_offsets
from pylabrobot.liquid_handling.errors import ChannelizedError, ChannelsDoNotFitError
from pylabrobot.resources import Container, Coordinate, TipRack, TipSpot
from pylabrobot.resources.errors import NoTipError

from protocols.pipettes import Pipette, channel_pipette, choose, mounted, no_pipette
from workcell.errors import TipPickupError, WorkcellError

if TYPE_CHECKING:
    from workcell.assembly.workcell import Workcell

# Liquid a container keeps that a pipette cannot reach, as a share of its capacity
# (the cone of a 50 mL tube, the V of a trough).
DEAD_VOLUME_SHARE = 0.02
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
# A cell suspension settles within minutes: mix the tube before each aspirate (in the
# aspirate's own command: a STAR's or an OT-2's aspiration mix, PyLabRobot's ``Mix``).
MIX_SUSPENSION_UL = 200.0
MIX_SUSPENSION_CYCLES = 3
MIX_UL_PER_S = 250.0  # a mixing stroke's flow, up and down
CHANNEL_SPACING_MM = 9.0  # the closest two STAR channels come along Y


def dead_volume_uL(container: Container) -> float:
    return DEAD_VOLUME_SHARE * container.max_volume


def usable_uL(container: Container) -> float:
    """What can still be aspirated from ``container``."""
    return max(0.0, container.tracker.get_used_volume() - dead_volume_uL(container))


def parts_across(
    volume_uL: float, max_part_uL: float, channels: int, min_part_uL: float = MIN_VOLUME_UL
) -> tuple[int, list[float]]:
    """Split a volume over up to ``channels`` channels moving together: (channels, parts).

    The fewest rounds of at most ``channels`` equal parts no larger than
    ``max_part_uL``, with as few channels as those rounds need, and never a part below
    ``min_part_uL`` where fewer channels avoid it. One channel: the fewest equal parts
    no larger than ``max_part_uL``.
    """
    if volume_uL <= 0:
        return 1, []
    rounds = math.ceil(volume_uL / (channels * max_part_uL) - 1e-9)
    n = max(1, math.ceil(volume_uL / (rounds * max_part_uL) - 1e-9))
    while n > 1 and volume_uL / (rounds * n) < min_part_uL:
        n -= 1
    return n, [volume_uL / (rounds * n)] * rounds


def channels_needed(volumes: list[float], max_part_uL: float, channels: int) -> int:
    """How many channels of a group a tip's transfers of ``volumes`` use at most."""
    return max([parts_across(v, max_part_uL, channels)[0] for v in volumes if v > 0] or [1])


_FIT: dict[tuple[object, ...], int] = {}


def channels_fit(container: Container, most: int, spacing_mm: float = CHANNEL_SPACING_MM) -> int:
    """How many of ``most`` channels fit in ``container`` side by side (PyLabRobot's spread).

    A 6-well plate's well or a 50 mL tube takes three, an OmniTray or a trough eight.
    """
    if most <= 1:
        return 1
    key = (
        type(container).__name__,
        container.model,
        container.get_size_x(),
        container.get_size_y(),
        most,
        spacing_mm,
    )
    if key not in _FIT:
        fit = 1
        for n in range(most, 1, -1):
            try:
                compute_channel_offsets(container, n, "wide", [spacing_mm] * n)
            except (ChannelsDoNotFitError, ValueError):
                continue
            fit = n
            break
        _FIT[key] = fit
    return _FIT[key]


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

    def choose(self, volumes: list[float]) -> Pipette:
        """Put the pipette for ``volumes`` in use (the plan has checked there is one)."""
        pipette = choose(self.pipettes, volumes)
        if pipette is None:
            raise WorkcellError(no_pipette(self.pipettes, volumes))
        self.current = pipette
        return pipette

    def next(self, pipette: Pipette | None = None) -> TipSpot:
        return self.next_group(pipette, 1)[0]

    def next_group(self, pipette: Pipette | None, n: int) -> list[TipSpot]:
        """``n`` tips from one column of a rack, back to front, for channels 0..n-1.

        The first column holding ``n`` tips; if none does, the column holding the most
        (``with_fresh_tips`` then picks the rest from other columns).
        """
        best: list[TipSpot] = []
        for rack in self.racks if pipette is None else pipette.racks:
            spots = rack.get_all_items()  # column by column, A to H
            rows = rack.num_items_y
            for start in range(0, len(spots), rows):
                column = [s for s in spots[start : start + rows] if s.tracker.has_tip]
                if len(column) >= n:
                    return column[:n]
                if len(column) > len(best):
                    best = column
        if not best:
            raise RuntimeError("no tips left on the deck: more were used than planned")
        return best


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


class SingleChannelGroup(list[float]):
    """The volumes of a tip that works on one channel only, whatever the pipette's group:
    a settling cell suspension, mixed and drawn from the bottom of its tube's cone."""


def tips_for(pipette: Pipette, volumes: list[float]) -> int:
    """The tips one tip group of ``volumes`` takes on ``pipette``: one per channel it uses."""
    if isinstance(volumes, SingleChannelGroup):
        return 1
    return channels_needed(volumes, pipette.max_uL, len(pipette.channels))


def tips_per_transfer(tips: TipSupply) -> Callable[[float], int]:
    """Tips one tip group takes to move so many uL (for capacity plans and batch sizes)."""

    def count(volume_uL: float) -> int:
        pipette = choose(tips.pipettes, [volume_uL])
        return 1 if pipette is None else tips_for(pipette, [volume_uL])

    return count


def plan_tips(tips: TipSupply, groups: list[list[float]], problems: list[str]) -> int:
    """Choose a pipette for each tip's group of transfer volumes; refuse what none can do.

    Counts the tips each pipette needs against its own tip racks (with one pipette, as
    on a STAR, that is the plain count); a group of channels takes a tip per channel
    its largest transfer uses (an upper bound: a narrow container takes fewer).
    Returns the number of tips.
    """
    per: dict[str, tuple[Pipette, int]] = {}
    total = 0
    for volumes in groups:
        pipette = choose(tips.pipettes, volumes)
        if pipette is None:
            line = no_pipette(tips.pipettes, volumes)
            if line not in problems:
                problems.append(line)
            total += 1
            continue
        n = tips_for(pipette, volumes)
        total += n
        per[pipette.name] = (pipette, per.get(pipette.name, (pipette, 0))[1] + n)
    if len(tips.pipettes) == 1:
        check_tips(tips, total, problems)
        return total
    for pipette, needed in per.values():
        have = tips.available(pipette)
        if have < needed:
            racks = ", ".join(r.name for r in pipette.racks)
            problems.append(
                f"{needed} tips needed for the {pipette.name}, {have} left in its tip racks "
                f"({racks})"
            )
    return total


PICKUP_ATTEMPTS = 3
PICKUP_ERRORS = (TipPickupError, NoTipError, ChannelizedError)


def _write_off(spots: list[TipSpot]) -> None:
    """Tips a failed pick-up left in the rack are never picked up again."""
    for spot in spots:
        if spot.tracker.has_tip:
            spot.tracker.remove_tip(commit=True)


async def with_fresh_tips(
    lh: LiquidHandler, tips: TipSupply, volumes: list[float] | None = None, channels: int = 1
) -> list[int]:
    """Pick up fresh tips on up to ``channels`` channels of the pipette for ``volumes``.

    Returns the channels that hold them. A group picks from one column where a column
    holds enough; where none does (the columns a long campaign's groups of six and
    seven leave behind hold one or two tips each), it picks the rest from the next
    columns, a pick-up each, channels in order: a pooling of 16 mL then goes on six
    channels in three strokes instead of nine on two. Only when the deck holds fewer
    tips than wanted does the group work with fewer channels. A failed pick-up writes
    its tips off; each channel left without a tip then tries the next tip on its own.

    A channel that comes up without a tip (a bent or missing tip, a 'no tip' error)
    has done nothing to any liquid, so trying the next tip repeats no liquid action.
    After ``PICKUP_ATTEMPTS`` failures in a row on a channel the error goes to the
    operator.
    """
    pipette = tips.choose(volumes or [])
    wanted = list(pipette.channels[: max(1, channels)])
    group: list[int] = []
    while len(group) < len(wanted):
        try:
            spots = tips.next_group(pipette, len(wanted) - len(group))
        except RuntimeError:
            if group:  # the deck's last tips: the group works with those it has
                break
            raise
        part = wanted[len(group) : len(group) + len(spots)]
        group += part
        try:
            await lh.pick_up_tips(spots, use_channels=part)
        except PICKUP_ERRORS:
            _write_off(spots)
            await _retry_one_by_one(lh, tips, pipette, [c for c in part if not lh.head[c].has_tip])
    return group


async def _retry_one_by_one(
    lh: LiquidHandler, tips: TipSupply, pipette: Pipette, channels: list[int]
) -> None:
    """Each channel of a failed pick-up that holds no tip tries the next tips alone."""
    for ch in channels:
        for attempt in range(2, PICKUP_ATTEMPTS + 1):
            spot = tips.next(pipette)
            try:
                await lh.pick_up_tips([spot], use_channels=[ch])
                break
            except PICKUP_ERRORS:
                _write_off([spot])
                if attempt == PICKUP_ATTEMPTS:
                    raise


def off_centre_low(well: Container) -> Coordinate:
    """Where a tip takes liquid off a monolayer: near the wall, just above the bottom."""
    return Coordinate(x=-ASPIRATE_WALL_SHARE * well.get_size_x(), y=0, z=ASPIRATE_HEIGHT_MM)


def above_liquid(container: Container) -> Coordinate:
    """Where a tip discards into a waste container: high up, clear of the liquid (and
    inside the container as both a STAR's and an OT-2's geometry describe it)."""
    return Coordinate(x=0, y=0, z=WASTE_HEIGHT_SHARE * container.get_size_z())


def removal_groups(volumes: list[float]) -> list[list[float]]:
    """The tips ``remove_to_waste`` uses for these wells: one each, none where nothing goes."""
    return [[v] for v in volumes if v > 0]


def suspension_mix_uL(container: Container, tips: TipSupply | None = None) -> float:
    """The mixing volume for a suspension: ``MIX_SUSPENSION_UL`` or less (a small volume,
    a small pipette)."""
    top = MIX_SUSPENSION_UL if tips is None else min(MIX_SUSPENSION_UL, tips.max_volume_uL())
    return min(top, 0.5 * usable_uL(container))


def suspension_group(volume_uL: float) -> list[float]:
    """What the tip that seeds ``volume_uL`` of a suspension moves: the mixing and the cells
    (on one channel)."""
    return SingleChannelGroup([MIX_SUSPENSION_UL, volume_uL] if volume_uL > 0 else [])
