"""A column of wells worked together: one tip per well, one command per step for them all.

A STAR's channels share one X drive and spread along Y, so the wells of one plate
column (a 24-well plate's A1-D1) take a channel each in the same aspirate or
dispense, the way a lab feeds a plate on a multi-channel head. Each well keeps a tip
of its own (never one that touched another culture), so only the number of device
commands changes: a column of four is four commands for its spent medium, not
sixteen.

A reagent that goes in from above (PBS, enzyme, neutralising medium, a seeding's
medium) keeps tips shared by the plate, as it did on one channel: channel i serves
the i-th well of every column (``add_shared``).

Recovery stays per vessel. A column's work is one unit (its actions carry the key
``kind:v1+v2+...``) whose end marks each vessel's own unit done. Re-entered after an
interruption inside it, a tip-per-well column's tips go first (spent liquid still in
them to the waste, anything else discarded, each recorded), then each vessel gets
what it still needs on a tip of its own (``resumable.add``, ``resumable.remove``),
counted from the journal and the liquid level: never twice, never with a tip of
unknown history. A shared-tip column's reagent still in its tips goes into the wells
it was drawn for, and the rest follows a column at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pylabrobot.resources import Container

from protocols.pipettes import Pipette, choose
from protocols.pipetting import (
    CHANNEL_SPACING_MM,
    CULTURE_ASPIRATE_UL_PER_S,
    TipSupply,
    above_liquid,
    channels_fit,
    off_centre_low,
)
from protocols.recovery.resumable import (
    GROUP_SEPARATOR,
    TOLERANCE_UL,
    Tip,
    add,
    discard_left_tips,
    dispense_channels,
    done_into,
    in_tips,
    remove,
    tip_owner,
    unit,
    unit_vessels,
    wall_offset,
)
from workcell.assembly.workcell import Workcell


def group_key(kind: str, vessels: Sequence[str]) -> str:
    """The unit key of several vessels' work done together."""
    return f"{kind}:{GROUP_SEPARATOR.join(vessels)}"


def columns(
    wc: Workcell, tips: TipSupply, vessels: Sequence[str], volumes: Sequence[float]
) -> list[list[int]]:
    """The vessels (indices into ``vessels``) worked together, in order of first appearance.

    Together: wells of one plate column, each moving ``volumes[i]`` in one aspirate on
    one channel of the same multi-channel pipette, back to front (channel 0 is the
    backmost), no two closer than the channels can come, at most one per channel.
    Any other vessel is a group of its own (a single-channel pipette, a volume that
    needs several strokes or channels, a well beside no other).
    """
    by_column: dict[tuple[str, float, str], list[tuple[float, int]]] = {}
    order: list[tuple[str, float, str] | int] = []
    for i, (name, volume) in enumerate(zip(vessels, volumes, strict=True)):
        pipette = choose(tips.pipettes, [volume])
        well = wc.container(name)
        plate = well.parent.name if well.parent is not None else ""
        if pipette is None or len(pipette.channels) < 2 or volume > pipette.max_uL:
            order.append(i)
            continue
        loc = well.location  # in its plate: the plate may be in the incubator (a plan)
        if loc is None:
            order.append(i)
            continue
        key = (plate, round(loc.x, 1), pipette.name)
        if key not in by_column:
            by_column[key] = []
            order.append(key)
        by_column[key].append((loc.y, i))
    groups: list[list[int]] = []
    for item in order:
        if isinstance(item, int):
            groups.append([item])
            continue
        pipette = _pipette(tips, item[2])
        column = sorted(by_column[item], reverse=True)  # back (high Y) to front
        current: list[int] = []
        last_y = 0.0
        for y, i in column:
            if current and (
                last_y - y < CHANNEL_SPACING_MM - 0.01  # (a 96-well plate: 9 mm exactly)
                or len(current) >= len(pipette.channels)
            ):
                groups.append(current)
                current = []
            current.append(i)
            last_y = y
        if current:
            groups.append(current)
    return groups


def _pipette(tips: TipSupply, name: str) -> Pipette:
    return next(p for p in tips.pipettes if p.name == name)


def _touched(wc: Workcell) -> bool:
    """Whether the current unit sent any device action before this run re-entered it."""
    if not wc.journal.resumed:
        return False
    unit = wc.journal.current_unit()
    return any(a.unit == unit for a in wc.journal.actions())


async def _clear_tips(wc: Workcell, tips: TipSupply, waste: Container | None) -> None:
    """An interrupted column's tips off: the unit's liquid still in them into ``waste``
    (spent liquid), or discarded with them; every tip on the pipettes dropped, recorded."""
    unit = wc.journal.current_unit()
    lh = wc.liquid_handler
    channels = sorted({ch for p in tips.pipettes for ch in p.channels})
    if waste is not None:
        held = []
        for ch in channels:
            if lh.head[ch].has_tip:
                _, tip_unit, volume = tip_owner(wc, ch)
                if tip_unit == unit and volume > TOLERANCE_UL:
                    held.append((ch, volume))
        if held:
            await dispense_channels(wc, waste, held, offset=above_liquid(waste))
            wc.journal.recovery(
                f"discarded into {waste.name} the {sum(v for _, v in held):.0f} uL still in "
                f"{len(held)} tip(s) of the column",
                "the controller stopped between the column's aspirate and its dispense",
                unit_vessels(unit),
            )
    left = [(ch, *tip_owner(wc, ch)) for ch in channels if lh.head[ch].has_tip]
    if left:
        await discard_left_tips(wc, left)


async def drain_each(
    wc: Workcell,
    tips: TipSupply,
    kind: str,
    vessels: Sequence[str],
    volumes: Sequence[float],
    waste: Container,
    keep_uL: Sequence[float],
) -> None:
    """Each vessel drawn down to its ``keep_uL`` into ``waste`` as unit ``kind:vessel``, a
    tip per vessel: a plate column at a time where the pipette can (``volumes``: what
    the plan takes off each)."""
    for batch in columns(wc, tips, vessels, volumes):
        names = [vessels[i] for i in batch]
        keep = [keep_uL[i] for i in batch]
        if len(names) == 1:
            async with unit(wc, f"{kind}:{names[0]}", names) as u:
                if not u.done:
                    await _remove_one_by_one(wc, tips, kind, [wc.container(names[0])], waste, keep)
            continue
        key = group_key(kind, names)
        async with unit(wc, key, names, marks=[f"{kind}:{v}" for v in names]) as u:
            if not u.done:
                await remove_each(wc, tips, key, [wc.container(v) for v in names], waste, keep)


async def remove_each(
    wc: Workcell,
    tips: TipSupply,
    purpose: str,
    sources: Sequence[Container],
    waste: Container,
    keep_uL: Sequence[float],
) -> None:
    """Spent liquid off each of ``sources`` (a column, back to front) down to its
    ``keep_uL``, into ``waste``: a fresh tip per well, all of them moving together."""
    if _touched(wc):
        await _clear_tips(wc, tips, waste)
        await _remove_one_by_one(wc, tips, purpose, sources, waste, keep_uL)
        return
    todo = [(s, _left(s, k)) for s, k in zip(sources, keep_uL, strict=True)]
    todo = [(s, v) for s, v in todo if v > TOLERANCE_UL]
    if not todo:
        return
    if any(v > tip_max_uL(tips, [v for _, v in todo]) for _, v in todo):  # not one stroke each
        await _remove_one_by_one(wc, tips, purpose, sources, waste, keep_uL)
        return
    lh = wc.liquid_handler
    into = above_liquid(waste)
    async with Tip(wc, tips, purpose, [v for _, v in todo], channels=len(todo)) as tip:
        while todo:
            tip.most = min(len(todo), len(tip.pipette.channels))  # a tip per well still to do
            await tip.need()
            n = min(len(tip.channels), len(todo))
            now, todo = todo[:n], todo[n:]
            channels = tip.channels[:n]
            await lh.aspirate(
                [s for s, _ in now],
                vols=[v for _, v in now],
                use_channels=channels,
                flow_rates=[CULTURE_ASPIRATE_UL_PER_S] * n,
                offsets=[off_centre_low(s) for s, _ in now],
            )
            await dispense_channels(
                wc, waste, [(ch, v) for ch, (_, v) in zip(channels, now, strict=True)], offset=into
            )
            if todo:  # the next wells take fresh tips: these touched a culture and the waste
                await tip.release()


async def add_each(
    wc: Workcell,
    tips: TipSupply,
    purpose: str,
    source: Container,
    targets: Sequence[Container],
    volumes: Sequence[float],
    flow_uL_per_s: float | None = None,
    along_wall: bool = False,
) -> None:
    """``volumes[i]`` of ``source`` into each of ``targets`` (a column, back to front): a
    fresh tip per well, drawn together, dispensed together."""
    if _touched(wc):
        await _clear_tips(wc, tips, None)  # what a tip held is discarded, never guessed where
        await _add_one_by_one(
            wc, tips, purpose, source, targets, volumes, flow_uL_per_s, along_wall
        )
        return
    todo = [(t, v) for t, v in zip(targets, volumes, strict=True) if v > TOLERANCE_UL]
    if not todo:
        return
    if any(v > tip_max_uL(tips, [v for _, v in todo]) for _, v in todo):  # not one stroke each
        await _add_one_by_one(
            wc, tips, purpose, source, targets, volumes, flow_uL_per_s, along_wall
        )
        return
    async with Tip(wc, tips, purpose, [v for _, v in todo], channels=len(todo)) as tip:
        await _add_rounds(wc, tip, source, todo, flow_uL_per_s, along_wall, fresh=True)


async def _add_rounds(
    wc: Workcell,
    tip: Tip,
    source: Container,
    todo: list[tuple[Container, float]],
    flow_uL_per_s: float | None,
    along_wall: bool,
    fresh: bool,
) -> None:
    """Draw each (target, volume) of ``todo`` from ``source`` on a channel of its own, as
    many at once as ``tip`` holds channels, and dispense them together. ``fresh``: each
    round takes fresh tips (a tip per well); else the tips serve every round."""
    lh = wc.liquid_handler
    while todo:
        if fresh:
            tip.most = min(len(todo), len(tip.pipette.channels))  # a tip per well still to do
        await tip.need()
        n = min(len(tip.channels), len(todo))
        now, todo = todo[:n], todo[n:]
        channels = tip.channels[:n]
        fit = channels_fit(source, n)
        for i in range(0, n, fit):
            await lh.aspirate(
                [source] * len(now[i : i + fit]),
                vols=[v for _, v in now[i : i + fit]],
                use_channels=channels[i : i + fit],
            )
        await _dispense_into(wc, now, channels, flow_uL_per_s, along_wall)
        if todo and fresh:  # the next wells take fresh tips: these touched a culture
            await tip.release()


async def _dispense_into(
    wc: Workcell,
    into: list[tuple[Container, float]],
    channels: list[int],
    flow_uL_per_s: float | None,
    along_wall: bool,
) -> None:
    """One dispense: channel ``channels[i]`` gives ``into[i]``'s volume to its well (down
    the well's wall at ``flow_uL_per_s``, or plainly)."""
    kw: dict = {}
    if along_wall:
        kw["offsets"] = [wall_offset(t) for t, _ in into]
        if flow_uL_per_s is not None:
            kw["flow_rates"] = [flow_uL_per_s] * len(into)
    await wc.liquid_handler.dispense(
        [t for t, _ in into], vols=[v for _, v in into], use_channels=channels, **kw
    )


async def add_shared(
    wc: Workcell,
    tips: TipSupply,
    purpose: str,
    kind: str,
    vessels: Sequence[str],
    volumes: Sequence[float],
    source: Container,
    flow_uL_per_s: float | None,
    before: Callable[[str, str], object] | None = None,
    along_wall: bool = True,
) -> None:
    """Each vessel gets ``volumes[i]`` of ``source`` (down its wall) as unit ``kind:vessel``,
    with tips shared by all of them (a reagent that goes in from above: its tip never
    touches the cells): one tip, or a plate column per command on as many channels as
    its widest column, channel i serving the i-th well of every column.

    ``before(vessel, unit)``: called for each vessel about to get its reagent, with the
    key of the unit that adds it (a resumed step's checks on the vessel)."""
    batches = columns(wc, tips, vessels, volumes)
    width = max(len(b) for b in batches)
    async with Tip(wc, tips, purpose, list(volumes), channels=width if width > 1 else None) as tip:
        for batch in batches:
            names = [vessels[i] for i in batch]
            key = f"{kind}:{names[0]}" if len(names) == 1 else group_key(kind, names)
            marks = None if len(names) == 1 else [f"{kind}:{v}" for v in names]
            async with unit(wc, key, names, marks=marks) as u:
                if u.done:
                    continue
                todo = [i for i in batch if not wc.journal.done(f"{kind}:{vessels[i]}")]
                for i in todo:
                    if before is not None:
                        before(vessels[i], key)
                if len(names) == 1:
                    well = wc.container(names[0])
                    await add(wc, tip, source, well, volumes[batch[0]], flow_uL_per_s, along_wall)
                    continue
                need = [(wc.container(vessels[i]), volumes[i]) for i in todo]
                if _touched(wc):  # resumed inside the column
                    need = await _finish_held(wc, tip, source, need, flow_uL_per_s, along_wall)
                need = [(t, v) for t, v in need if v > TOLERANCE_UL]
                await _add_rounds(wc, tip, source, need, flow_uL_per_s, along_wall, fresh=False)


async def _finish_held(
    wc: Workcell,
    tip: Tip,
    source: Container,
    need: list[tuple[Container, float]],
    flow_uL_per_s: float | None,
    along_wall: bool,
) -> list[tuple[Container, float]]:
    """A shared-tip column re-entered: what each target still needs (the journal's count
    of what went in, per target), after the reagent still in the unit's tips went where
    it is needed (these tips never touched a culture): in one command when the channels
    go back to front into distinct wells, else a channel per command. A tip left
    holding more than any target needs is discarded, and that recorded."""
    unit = wc.journal.current_unit()
    left = [(t, v - done_into(wc, unit, t.name)[0]) for t, v in need]
    held = in_tips(wc, tip, unit)
    if not held:
        return left
    tip.adopt()
    surplus = []
    given: list[tuple[int, int, float]] = []  # (channel, index of its target, volume)
    for ch, volume in held:
        k = next((k for k, (_, v) in enumerate(left) if v >= volume - TOLERANCE_UL), None)
        if k is None:
            surplus.append((ch, *tip_owner(wc, ch)))
            continue
        target, v = left[k]
        give = min(volume, v)
        given.append((ch, k, give))
        left[k] = (target, v - give)
    # one command when the channels go back to front into distinct wells, as a column's do
    order = [k for _, k, _ in given]
    together = order == sorted(set(order))
    for part in [given] if together else [[g] for g in given]:
        if not part:
            continue
        into = [(left[k][0], g) for _, k, g in part]
        await _dispense_into(wc, into, [ch for ch, _, _ in part], flow_uL_per_s, along_wall)
    for ch, k, give in given:
        wc.journal.recovery(
            f"dispensed the {give:.0f} uL of {source.name} still in the tip on channel {ch} "
            f"into {left[k][0].name}",
            "the controller stopped between the column's aspirate and its dispense",
            [left[k][0].name],
        )
    if surplus:
        await discard_left_tips(wc, surplus)
    return left


def rows_of(
    wc: Workcell, tips: TipSupply, vessels: Sequence[str], volumes: Sequence[float]
) -> list[list[float]]:
    """What each of ``add_shared``'s tips moves: the volumes of the i-th well of each
    column (for a plan's count of tips)."""
    batches = columns(wc, tips, vessels, volumes)
    width = max((len(b) for b in batches), default=0)
    if width <= 1:
        return [list(volumes)]
    return [[volumes[b[j]] for b in batches if len(b) > j] for j in range(width)]


async def _remove_one_by_one(
    wc: Workcell,
    tips: TipSupply,
    purpose: str,
    sources: Sequence[Container],
    waste: Container,
    keep_uL: Sequence[float],
) -> None:
    """Each source on a tip of its own, what is left of it (still inside the column's unit:
    the journal counts what the column did before)."""
    for source, keep in zip(sources, keep_uL, strict=True):
        async with Tip(wc, tips, f"{purpose}:{source.name}", [_left(source, keep)]) as own:
            await remove(wc, own, source, waste, keep, to_waste=True)


async def _add_one_by_one(
    wc: Workcell,
    tips: TipSupply,
    purpose: str,
    source: Container,
    targets: Sequence[Container],
    volumes: Sequence[float],
    flow_uL_per_s: float | None,
    along_wall: bool,
) -> None:
    """Each target on a tip of its own, the rest of its volume (still inside the column's
    unit: the journal counts what the column put in before)."""
    for target, volume in zip(targets, volumes, strict=True):
        async with Tip(wc, tips, f"{purpose}:{target.name}", [volume]) as own:
            await add(wc, own, source, target, volume, flow_uL_per_s, along_wall)


def tip_max_uL(tips: TipSupply, volumes: list[float]) -> float:
    """The most one aspirate takes on the pipette these volumes go on (0: none can)."""
    pipette = choose(tips.pipettes, volumes)
    return 0.0 if pipette is None else pipette.max_uL


def _left(source: Container, keep_uL: float) -> float:
    return max(0.0, source.tracker.get_used_volume() - keep_uL)
