"""Units of work that, re-entered after an interruption, finish what is missing and no more.

The unit operations move liquid with these instead of bare transfers. In a fresh
step they do exactly what a plain transfer does. In a step re-entered after a
crash they first look at the journal (which actions of this unit are done) and
the model (what the tip on the channel holds, whose it is), then:

* ``add``: the vessel gets the rest of its planned volume; liquid still in the tip
  for this addition is dispensed first; what is in never goes in again;
* ``remove``: liquid is drawn off down to what must stay, from the level now;
  liquid already in the tip goes to its destination first;
* ``mix``: the remaining strokes; a stroke in the tip goes back to its well.

``Tip`` picks up a tip for a purpose only when one is needed, keeps using a clean
tip left from the same purpose, and discards any other tip left on the channel
(what it holds is recorded as discarded).

Every such decision on resume is a ``recovery`` record entry naming the vessel,
what was done and why.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from pylabrobot.resources import Container, Coordinate

from protocols.pipettes import Pipette, choose, no_pipette
from protocols.pipetting import (
    CULTURE_ASPIRATE_UL_PER_S,
    MIX_SUSPENSION_CYCLES,
    MIX_SUSPENSION_UL,
    WALL_HEIGHT_MM,
    WALL_OFFSET_SHARE,
    TipSupply,
    above_liquid,
    off_centre_low,
    parts,
    usable_uL,
    with_fresh_tip,
)
from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError

TOLERANCE_UL = 0.5  # less than this is nothing (floating point, a pipette's resolution)


def tip_owner(wc: Workcell, channel: int = 0) -> tuple[str | None, str | None, float]:
    """(purpose, unit of its last aspirate, volume held) of the tip on ``channel``."""
    head = wc.liquid_handler.head[channel]
    if not head.has_tip:
        return None, None, 0.0
    volume = head.get_tip().tracker.get_used_volume()
    if not wc.journal.resumed:  # a fresh step: the tip is the one this run picked up
        return None, None, volume
    purpose: str | None = None
    unit: str | None = None
    for a in wc.journal.actions():
        if a.outcome != "done" or a.device != wc.lh_name:
            continue
        if channel not in (
            a.data.get("channels") or [op.get("channel") for op in a.data.get("ops", [])]
        ):
            continue
        if a.action == "pick_up_tip":
            purpose, unit = a.data.get("purpose"), None
        elif a.action == "aspirate":
            unit = a.unit
        elif a.action == "drop_tip":
            purpose, unit = None, None
    return purpose, unit, volume


def done_into(wc: Workcell, unit: str | None, target: str) -> tuple[float, int]:
    """Volume dispensed into ``target`` by ``unit`` in this step, and how many dispenses."""
    total, n = 0.0, 0
    if not wc.journal.resumed:  # a fresh step: nothing of a unit is done before it starts
        return total, n
    for a in wc.journal.actions():
        if a.outcome != "done" or a.action != "dispense" or a.unit != unit:
            continue
        for op in a.data.get("ops", []):
            if op.get("target") == target:
                total += float(op["volume_uL"])
                n += 1
    return total, n


class Tip:
    """The tip for one purpose, on the pipette that purpose's volumes need, picked up when
    first needed and dropped at the end."""

    def __init__(
        self, wc: Workcell, tips: TipSupply, purpose: str, volumes: list[float] | None = None
    ) -> None:
        self.wc = wc
        self.tips = tips
        self.purpose = purpose
        self.volumes = list(volumes or [])
        pipette = choose(tips.pipettes, self.volumes)
        if pipette is None:
            raise WorkcellError(no_pipette(tips.pipettes, self.volumes))
        self.pipette: Pipette = pipette
        self.held = False

    @property
    def channel(self) -> int:
        return self.pipette.channel

    @property
    def channels(self) -> list[int]:
        return [self.pipette.channel]

    @property
    def max_part_uL(self) -> float:
        return self.pipette.max_uL

    async def need(self) -> None:
        head = self.wc.liquid_handler.head[self.channel]
        self.tips.current = self.pipette
        if self.held and head.has_tip:
            return
        if head.has_tip:
            purpose, unit, volume = tip_owner(self.wc, self.channel)
            if purpose == self.purpose and volume <= TOLERANCE_UL:
                self.held = True  # a clean tip left from this same work
                return
            await discard_left_tip(self.wc, self.channel, purpose, unit, volume)
        with self.wc.journal.tip_purpose(self.purpose):
            await with_fresh_tip(self.wc.liquid_handler, self.tips, self.volumes)
        self.held = True

    def adopt(self) -> None:
        self.held = True

    async def release(self) -> None:
        if self.held and self.wc.liquid_handler.head[self.channel].has_tip:
            await self.wc.liquid_handler.discard_tips(use_channels=self.channels)
        self.held = False

    async def __aenter__(self) -> Tip:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if t is None:  # on a fault the tip stays where it is, for the recovery to see
            await self.release()


async def discard_left_tip(
    wc: Workcell, channel: int, purpose: str | None, unit: str | None, volume: float
) -> None:
    """Drop a tip an interrupted step left on a channel, recording what it held."""
    vessels = [unit.split(":", 1)[1]] if unit and ":" in unit else []
    await wc.liquid_handler.discard_tips(use_channels=[channel])
    wc.journal.recovery(
        f"discarded a tip left on channel {channel} ({volume:.0f} uL in it)",
        f"left by the interrupted step ({purpose or 'unknown use'}); a fresh tip is used for "
        "what follows, never one of unknown contents",
        vessels,
        discarded_uL=volume,
        unit=unit,
    )


async def _dispense(
    wc: Workcell, tip: Tip, target: Container, volume: float, flow: float | None, wall: bool
) -> None:
    lh = wc.liquid_handler
    if wall:
        offset = Coordinate(x=WALL_OFFSET_SHARE * target.get_size_x(), y=0, z=WALL_HEIGHT_MM)
        await lh.dispense(
            [target],
            vols=[volume],
            use_channels=tip.channels,
            flow_rates=[flow],
            offsets=[offset],
        )
    else:
        await lh.dispense([target], vols=[volume], use_channels=tip.channels)


def _unit_vessel(unit: str | None) -> list[str]:
    return [unit.split(":", 1)[1]] if unit and ":" in unit else []


async def add(
    wc: Workcell,
    tip: Tip,
    source: Container,
    target: Container,
    volume_uL: float,
    flow_uL_per_s: float | None = None,
    along_wall: bool = False,
    mix_source: bool = False,
) -> None:
    """Add ``volume_uL`` from ``source`` to ``target``: once, whatever was interrupted.

    ``mix_source``: the source is a cell suspension that settles; it is mixed before each
    aspirate (mixing the source is safe to repeat; a mixing stroke found in the tip on
    resume is the same suspension and counts toward the addition).
    """
    unit = wc.journal.current_unit()
    done, _ = done_into(wc, unit, target.name)
    _, tip_unit, in_tip = tip_owner(wc, tip.channel)
    if in_tip > TOLERANCE_UL and tip_unit == unit:
        tip.adopt()
        give = min(in_tip, max(0.0, volume_uL - done))
        if give > TOLERANCE_UL:
            await _dispense(wc, tip, target, give, flow_uL_per_s, along_wall)
            wc.journal.recovery(
                f"dispensed the {give:.0f} uL of {source.name} still in the tip into {target.name}",
                "the controller stopped between the aspirate and its dispense; the tip held it",
                [target.name],
            )
            done += give
    remaining = volume_uL - done
    if done > TOLERANCE_UL and remaining > TOLERANCE_UL:
        wc.journal.recovery(
            f"added the remaining {remaining:.0f} of {volume_uL:.0f} uL of {source.name} to "
            f"{target.name}",
            f"{done:.0f} uL were in before the interruption (journal); never added twice",
            [target.name],
        )
    if remaining <= TOLERANCE_UL:
        return
    lh = wc.liquid_handler
    for part in parts(remaining, tip.max_part_uL):
        await tip.need()
        if mix_source:
            await mix_suspension(wc, tip, source)
        await lh.aspirate([source], vols=[part], use_channels=tip.channels)
        await _dispense(wc, tip, target, part, flow_uL_per_s, along_wall)


async def mix_suspension(wc: Workcell, tip: Tip, tube: Container) -> None:
    """Pipette the settling suspension up and down in its tube before an aspirate."""
    volume = min(MIX_SUSPENSION_UL, tip.max_part_uL, 0.5 * usable_uL(tube))
    if volume <= TOLERANCE_UL:
        return
    lh = wc.liquid_handler
    for _ in range(MIX_SUSPENSION_CYCLES):
        await lh.aspirate([tube], vols=[volume], use_channels=tip.channels)
        await lh.dispense([tube], vols=[volume], use_channels=tip.channels)


async def remove(
    wc: Workcell,
    tip: Tip,
    source: Container,
    dest: Container,
    keep_uL: float,
    to_waste: bool = False,
) -> None:
    """Draw ``source`` down to ``keep_uL`` into ``dest`` (waste, a pool), from its level now.

    ``to_waste``: spent liquid off a monolayer, taken near the wall, low and slowly, and
    discarded from above the waste's liquid (``protocols.pipetting.remove_to_waste``).
    """
    unit = wc.journal.current_unit()
    _, tip_unit, in_tip = tip_owner(wc, tip.channel)
    lh = wc.liquid_handler
    take: dict = {}
    give: dict = {}
    if to_waste:
        take = {"flow_rates": [CULTURE_ASPIRATE_UL_PER_S], "offsets": [off_centre_low(source)]}
        give = {"offsets": [above_liquid(dest)]}
    if in_tip > TOLERANCE_UL and tip_unit == unit:
        tip.adopt()
        await lh.dispense([dest], vols=[in_tip], use_channels=tip.channels, **give)
        wc.journal.recovery(
            f"delivered the {in_tip:.0f} uL still in the tip from {source.name} to {dest.name}",
            "the controller stopped between the aspirate and its dispense",
            [source.name],
        )
    left = source.tracker.get_used_volume() - keep_uL
    if left <= TOLERANCE_UL:
        return
    for part in parts(left, tip.max_part_uL):
        await tip.need()
        await lh.aspirate([source], vols=[part], use_channels=tip.channels, **take)
        await lh.dispense([dest], vols=[part], use_channels=tip.channels, **give)


async def mix(wc: Workcell, tip: Tip, well: Container, cycles: int, share: float) -> None:
    """Resuspend by pipetting up and down: the strokes not yet done."""
    unit = wc.journal.current_unit()
    lh = wc.liquid_handler
    _, tip_unit, in_tip = tip_owner(wc, tip.channel)
    if in_tip > TOLERANCE_UL and tip_unit == unit:
        tip.adopt()
        await lh.dispense([well], vols=[in_tip], use_channels=tip.channels)
    _, strokes = done_into(wc, unit, well.name)
    volume = well.tracker.get_used_volume()
    for _ in range(max(0, cycles - strokes)):
        part = min(tip.max_part_uL, share * volume)
        if part <= TOLERANCE_UL:
            return
        await tip.need()
        await lh.aspirate([well], vols=[part], use_channels=tip.channels)
        await lh.dispense([well], vols=[part], use_channels=tip.channels)


class Unit:
    """``async with unit(wc, key, vessels) as u``: skipped if done; store writes at its end.

    The unit's records (``u.then(...)``) are written in one transaction with the mark
    that the unit is done, so a unit is never recorded twice nor done without record.
    """

    def __init__(self, wc: Workcell, key: str, vessels: list[str]) -> None:
        self.wc = wc
        self.key = key
        self.vessels = vessels
        self.done = wc.journal.done(key)
        self._after: list[Callable[[], object]] = []
        self._cm = wc.journal.unit(key, vessels)

    def then(self, write: Callable[[], object]) -> None:
        self._after.append(write)

    async def __aenter__(self) -> Unit:
        if not self.done:
            self._token = self.wc.journal.enter_unit(self.key)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.done:
            return
        self.wc.journal.exit_unit(self._token)
        if t is not None:
            return
        with self.wc.store.transaction():
            for write in self._after:
                write()
            self.wc.journal.mark_done(self.key, self.vessels)


def unit(wc: Workcell, key: str, vessels: list[str] | None = None) -> Unit:
    return Unit(wc, key, vessels or [])
