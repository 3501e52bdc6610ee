"""Units of work that, re-entered after an interruption, finish what is missing and no more.

The unit operations move liquid with these instead of bare transfers. In a fresh
step they do exactly what a plain transfer does. In a step re-entered after a
crash they first look at the journal (which actions of this unit are done) and
the model (what the tip on the channel holds, whose it is), then:

* ``add``: the vessel gets the rest of its planned volume; liquid still in the tip
  for this addition is dispensed first; what is in never goes in again;
* ``remove``: liquid is drawn off down to what must stay, from the level now;
  liquid already in the tip goes to its destination first;
* a mix is part of its aspirate's command (PyLabRobot's ``Mix``): done whole with it,
  or not at all.

Several vessels' units can be one (a plate column on a group of channels,
``recovery/columns.py``): ``unit(..., marks=...)`` marks each vessel's own unit done.

``Tip`` picks up a tip (or a group's tips) for a purpose only when needed, keeps using
clean tips left from the same purpose, and discards any other tip left on its
channels (what it holds is recorded as discarded). Liquid found in several tips of
the unit goes to its destination per channel, in one action where the container
takes the channels together.

Every such decision on resume is a ``recovery`` record entry naming the vessel,
what was done and why.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from pylabrobot.liquid_handling.standard import Mix
from pylabrobot.resources import Container, Coordinate

from protocols.pipettes import Pipette, choose, no_pipette
from protocols.pipetting import (
    CULTURE_ASPIRATE_UL_PER_S,
    MIX_SUSPENSION_CYCLES,
    MIX_SUSPENSION_UL,
    MIX_UL_PER_S,
    WALL_HEIGHT_MM,
    WALL_OFFSET_SHARE,
    SingleChannelGroup,
    TipSupply,
    above_liquid,
    channels_fit,
    off_centre_low,
    parts_across,
    tips_for,
    usable_uL,
    with_fresh_tips,
)
from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError

TOLERANCE_UL = 0.5  # less than this is nothing (floating point, a pipette's resolution)
GROUP_SEPARATOR = "+"  # between the vessels of a unit key that names several


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
        if channel in a.failed_channels or channel not in (
            a.data.get("channels") or [op.get("channel") for op in a.data.get("ops", [])]
        ):
            continue  # not this channel's action, or one it failed in (a group's partial outcome)
        if a.action == "pick_up_tip":
            purpose, unit = a.data.get("purpose"), None
        elif a.action == "aspirate":
            unit = a.unit
        elif a.action == "drop_tip":
            purpose, unit = None, None
    return purpose, unit, volume


def done_into(wc: Workcell, unit: str | None, target: str) -> tuple[float, int]:
    """Volume dispensed into ``target`` by ``unit`` in this step, and how many dispenses
    (actions: a group of channels dispensing together is one, a mixing stroke)."""
    total, n = 0.0, 0
    if not wc.journal.resumed:  # a fresh step: nothing of a unit is done before it starts
        return total, n
    for a in wc.journal.actions():
        if a.outcome != "done" or a.action != "dispense" or a.unit != unit:
            continue
        failed = a.failed_channels  # a group's channels that did not dispense
        into = [
            float(op["volume_uL"])
            for op in a.data.get("ops", [])
            if op.get("target") == target and op.get("channel") not in failed
        ]
        if into:
            total += sum(into)
            n += 1
    return total, n


class Tip:
    """The tips for one purpose, on the pipette that purpose's volumes need, picked up when
    first needed and dropped at the end.

    On a pipette with a group of channels, the tips go on as many channels as the
    largest transfer uses (``tips_for``) and as fit the first container drawn from;
    ``channels`` are those that hold them. A ``SingleChannelGroup`` of volumes (a cell
    suspension) takes one tip.
    """

    def __init__(
        self,
        wc: Workcell,
        tips: TipSupply,
        purpose: str,
        volumes: list[float] | None = None,
        channels: int | None = None,
    ) -> None:
        """``channels``: as many tips as that (at most the pipette's channels), one per
        vessel of a column worked together, in place of what the volumes need."""
        self.wc = wc
        self.tips = tips
        self.purpose = purpose
        self.volumes = volumes if isinstance(volumes, SingleChannelGroup) else list(volumes or [])
        pipette = choose(tips.pipettes, self.volumes)
        if pipette is None:
            raise WorkcellError(no_pipette(tips.pipettes, self.volumes))
        self.pipette: Pipette = pipette
        self.most = (
            tips_for(pipette, self.volumes)
            if channels is None
            else max(1, min(channels, len(pipette.channels)))
        )
        self.channels: list[int] = []
        self.held = False

    @property
    def max_part_uL(self) -> float:
        return self.pipette.max_uL

    def _has_tip(self, channel: int) -> bool:
        return bool(self.wc.liquid_handler.head[channel].has_tip)

    async def need(self, source: Container | None = None) -> None:
        """Tips on this purpose's channels: kept if held, else clean ones left from this same
        work, else fresh ones (as many as fit in ``source``, the container drawn from)."""
        self.tips.current = self.pipette
        if self.held and self.channels and all(self._has_tip(ch) for ch in self.channels):
            return
        keep: list[int] = []
        left: list[tuple[int, str | None, str | None, float]] = []
        for ch in self.pipette.channels:
            if not self._has_tip(ch):
                continue
            purpose, unit, volume = tip_owner(self.wc, ch)
            if purpose == self.purpose and volume <= TOLERANCE_UL:
                keep.append(ch)  # a clean tip left from this same work
            else:
                left.append((ch, purpose, unit, volume))
        if left:
            await discard_left_tips(self.wc, left)
        if keep:
            self.channels, self.held = keep, True
            return
        want = self.most if source is None else channels_fit(source, self.most)
        with self.wc.journal.tip_purpose(self.purpose):
            self.channels = await with_fresh_tips(
                self.wc.liquid_handler, self.tips, self.volumes, want
            )
        self.held = True

    def adopt(self) -> None:
        """Take over the tips on this pipette's channels (found holding this unit's liquid)."""
        self.channels = [ch for ch in self.pipette.channels if self._has_tip(ch)]
        self.held = True

    async def release(self) -> None:
        on = [ch for ch in self.channels if self._has_tip(ch)]
        if self.held and on:
            await self.wc.liquid_handler.discard_tips(use_channels=on)
        self.held = False

    async def __aenter__(self) -> Tip:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if t is None:  # on a fault the tip stays where it is, for the recovery to see
            await self.release()


async def discard_left_tips(
    wc: Workcell, left: list[tuple[int, str | None, str | None, float]]
) -> None:
    """Drop tips an interrupted step left on channels (in one action), recording what each
    held: ``left`` is (channel, purpose, unit, volume) per tip."""
    await wc.liquid_handler.discard_tips(use_channels=[ch for ch, _, _, _ in left])
    for channel, purpose, unit, volume in left:
        wc.journal.recovery(
            f"discarded a tip left on channel {channel} ({volume:.0f} uL in it)",
            f"left by the interrupted step ({purpose or 'unknown use'}); a fresh tip is used "
            "for what follows, never one of unknown contents",
            unit_vessels(unit),
            discarded_uL=volume,
            unit=unit,
        )


def in_tips(wc: Workcell, tip: Tip, unit: str | None) -> list[tuple[int, float]]:
    """(channel, volume) of the tips on the pipette's channels holding ``unit``'s liquid."""
    held = []
    for ch in tip.pipette.channels:
        _, tip_unit, in_tip = tip_owner(wc, ch)
        if in_tip > TOLERANCE_UL and tip_unit == unit:
            held.append((ch, in_tip))
    return held


def _tips(n: int) -> str:
    return "the tip" if n == 1 else f"the {n} tips"


async def dispense_channels(
    wc: Workcell,
    target: Container,
    give: list[tuple[int, float]],
    flow: float | None = None,
    offset: Coordinate | None = None,
) -> None:
    """Dispense each (channel, volume) into ``target``, as many channels at once as fit."""
    fit = channels_fit(target, len(give))
    for i in range(0, len(give), fit):
        chunk = give[i : i + fit]
        k = len(chunk)
        kw: dict = {}
        if flow is not None:
            kw["flow_rates"] = [flow] * k
        if offset is not None:
            kw["offsets"] = [offset] * k
        await wc.liquid_handler.dispense(
            [target] * k, vols=[v for _, v in chunk], use_channels=[ch for ch, _ in chunk], **kw
        )


def wall_offset(target: Container) -> Coordinate:
    return Coordinate(x=WALL_OFFSET_SHARE * target.get_size_x(), y=0, z=WALL_HEIGHT_MM)


def unit_vessels(unit: str | None) -> list[str]:
    """The vessels a unit key names: ``kind:vessel``, or ``kind:v1+v2`` for a column's."""
    if not unit or ":" not in unit:
        return []
    return unit.split(":", 1)[1].split("@", 1)[0].split(GROUP_SEPARATOR)


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

    ``mix_source``: the source is a cell suspension that settles; each aspirate, on one
    channel, mixes it first in the same command (an aspiration mix: it happens whole with
    its aspirate or not at all, and is safe to repeat).
    """
    unit = wc.journal.current_unit()
    done, _ = done_into(wc, unit, target.name)
    flow = flow_uL_per_s if along_wall else None
    offset = wall_offset(target) if along_wall else None
    held = in_tips(wc, tip, unit)
    if held:
        tip.adopt()
        room = max(0.0, volume_uL - done)
        give = []
        for ch, in_tip in held:
            g = min(in_tip, room)
            room -= g
            if g > TOLERANCE_UL:
                give.append((ch, g))
        if give:
            await dispense_channels(wc, target, give, flow, offset)
            total = sum(g for _, g in give)
            wc.journal.recovery(
                f"dispensed the {total:.0f} uL of {source.name} still in {_tips(len(give))} "
                f"into {target.name}",
                "the controller stopped between the aspirate and its dispense; the tip held it",
                [target.name],
            )
            done += total
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
    await tip.need(source)
    n, split = parts_across(remaining, tip.max_part_uL, 1 if mix_source else len(tip.channels))
    for part in split:
        await tip.need(source)
        channels = tip.channels[:n]
        kw = (
            _mixing(suspension_stroke_uL(tip, source), MIX_SUSPENSION_CYCLES, n)
            if mix_source
            else {}
        )
        await lh.aspirate([source] * n, vols=[part] * n, use_channels=channels, **kw)
        await dispense_channels(wc, target, [(ch, part) for ch in channels], flow, offset)


def _mixing(stroke_uL: float, cycles: int, channels: int) -> dict[str, list[Mix]]:
    """An aspirate's mix on each of its ``channels`` (PyLabRobot's ``Mix``: the strokes in
    the source, then the draw, in one command); none for a stroke worth nothing."""
    if stroke_uL <= TOLERANCE_UL:
        return {}
    return {"mix": [Mix(volume=stroke_uL, repetitions=cycles, flow_rate=MIX_UL_PER_S)] * channels}


def suspension_stroke_uL(tip: Tip, tube: Container) -> float:
    """A suspension's mixing stroke: at most ``MIX_SUSPENSION_UL``, a full tip, or half of
    what the tube holds above its dead volume."""
    return min(MIX_SUSPENSION_UL, tip.max_part_uL, 0.5 * usable_uL(tube))


async def mix_suspension(wc: Workcell, tip: Tip, tube: Container) -> None:
    """Pipette the suspension up and down in its tube, on the first channel (a suspension
    is drawn from the bottom of the tube's cone): after medium went into it. Before an
    aspirate the mix is the aspirate's own (``add`` with ``mix_source``)."""
    volume = suspension_stroke_uL(tip, tube)
    if volume <= TOLERANCE_UL:
        return
    lh = wc.liquid_handler
    first = tip.channels[:1]
    for _ in range(MIX_SUSPENSION_CYCLES):
        await lh.aspirate([tube], vols=[volume], use_channels=first)
        await lh.dispense([tube], vols=[volume], use_channels=first)


async def remove(
    wc: Workcell,
    tip: Tip,
    source: Container,
    dest: Container,
    keep_uL: float,
    to_waste: bool = False,
    resuspend: tuple[int, float] | None = None,
) -> None:
    """Draw ``source`` down to ``keep_uL`` into ``dest`` (waste, a pool), from its level now.

    ``to_waste``: spent liquid off a monolayer, taken near the wall, low and slowly, and
    discarded from above the waste's liquid, so the tip never touches waste.
    ``resuspend``: (cycles, share): the first aspirate mixes first, in its own command
    (an aspiration mix), each stroke ``share`` of what the source holds over the
    channels (a full tip at most): detached cells pipetted up and down over the surface.
    Resumed, the first aspirate of what is left mixes it again: cells settled meanwhile.
    """
    unit = wc.journal.current_unit()
    lh = wc.liquid_handler
    into = above_liquid(dest) if to_waste else None
    held = in_tips(wc, tip, unit)
    if held:
        tip.adopt()
        await dispense_channels(wc, dest, held, offset=into)
        total = sum(v for _, v in held)
        wc.journal.recovery(
            f"delivered the {total:.0f} uL still in {_tips(len(held))} from {source.name} to "
            f"{dest.name}",
            "the controller stopped between the aspirate and its dispense",
            [source.name],
        )
    left = source.tracker.get_used_volume() - keep_uL
    if left <= TOLERANCE_UL:
        return
    await tip.need(source)
    n, split = parts_across(left, tip.max_part_uL, len(tip.channels))
    for i, part in enumerate(split):
        await tip.need(source)
        channels = tip.channels[:n]
        take: dict = {}
        if to_waste:
            take = {
                "flow_rates": [CULTURE_ASPIRATE_UL_PER_S] * n,
                "offsets": [off_centre_low(source)] * n,
            }
        if resuspend is not None and i == 0:
            cycles, share = resuspend
            stroke = min(tip.max_part_uL, share * source.tracker.get_used_volume() / n)
            take.update(_mixing(stroke, cycles, n))
        await lh.aspirate([source] * n, vols=[part] * n, use_channels=channels, **take)
        await dispense_channels(wc, dest, [(ch, part) for ch in channels], offset=into)


class Unit:
    """``async with unit(wc, key, vessels) as u``: skipped if done; store writes at its end.

    The unit's records (``u.then(...)``) are written in one transaction with the mark
    that the unit is done, so a unit is never recorded twice nor done without record.
    ``marks``: the unit is the work of several per-vessel units done together (a column
    of wells on a group of channels): its device actions carry ``key``, and its end
    marks each of ``marks`` done, as those units' own ends would have (it is done when
    all of them are).
    """

    def __init__(
        self, wc: Workcell, key: str, vessels: list[str], marks: list[str] | None = None
    ) -> None:
        self.wc = wc
        self.key = key
        self.vessels = vessels
        self.marks = marks
        self.done = (
            all(wc.journal.done(m) for m in marks) if marks is not None else wc.journal.done(key)
        )
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
            if self.marks is None:
                self.wc.journal.mark_done(self.key, self.vessels)
            for mark in self.marks or []:
                if not self.wc.journal.done(mark):
                    self.wc.journal.mark_done(mark, unit_vessels(mark))


def unit(
    wc: Workcell, key: str, vessels: list[str] | None = None, marks: list[str] | None = None
) -> Unit:
    return Unit(wc, key, vessels or [], marks)
