"""Passaging: split a culture that has reached its confluence threshold.

Bench version: take the plate from the incubator and image it. Only if its mean
confluence reaches the threshold: detach and pool its cells (wash, enzyme at 37 C,
neutralise, pool), count the pool, and from the count work out how many new
vessels the cells fill at the seeding density (the split ratio follows from the
count and the vessels' growth area). Seed them into empty wells of the destination
plates, record each child with its parents and passage number, and put the new
plates into the incubator. Below the threshold the plate goes back, and the
decision is recorded either way.

The plan is made for the worst case before anything moves: every free destination
well the passage may seed (up to ``max_child_vessels``) must hold its volume, and
the tips and medium for seeding all of them, plus one tip to dilute the pool, must
be on the deck. What only the count can tell is handled after it, without a
failure: a pool too concentrated for the smallest seeding volume is diluted with
medium; a pool too dilute (or too small) to seed even one vessel at the density is
*held* in its tube, and a deviation says so: the cells are not lost, and the
record never claims that nothing moved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from devices.cell_counter import CountResult
from protocols import seeding
from protocols.checks import DeckName, DeckNames
from protocols.detachment import (
    DetachParams,
    DetachPlan,
    detach_and_pool,
    once_event,
    plan_detach,
)
from protocols.pipetting import (
    MIN_VOLUME_UL,
    SingleChannelGroup,
    TipSupply,
    dead_volume_uL,
    plan_tips,
)
from protocols.recovery.columns import rows_of
from protocols.recovery.resumable import Tip, add, mix_suspension, unit
from protocols.selection import Target, active_vessels, targets_named, well_of
from workcell.assembly.choices import EMPTY_IS_NONE, Choice, choice, optional_int
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused, WorkcellError
from workcell.labware import growth_area_cm2
from workcell.store import Measurement

NAME = "passaging"
# a diluted pool aims this far above the smallest volume a tip delivers accurately
DILUTION_MARGIN = 1.25
DILUTION_TIPS = 1


class PassagingParams(BaseModel):
    """Which plate to passage, and into which plates."""

    model_config = ConfigDict(extra="forbid", title="Passage")

    plate: DeckName = Field(
        title="Plate",
        description="plate whose vessels are imaged and, if confluent, passaged together",
        json_schema_extra=choice(Choice.PLATE),
    )
    confluence_threshold_percent: float = Field(
        default=80.0,
        ge=10,
        le=100,
        title="Confluence threshold (%)",
        description="passage only if the plate's mean imaged confluence reaches this",
    )
    destination_plates: DeckNames = Field(
        min_length=1,
        title="Destination plates",
        description="empty deck plates the children are seeded into, in this order",
        json_schema_extra=choice(Choice.PLATE),
    )
    density_cells_per_cm2: float = Field(
        default=3000,
        ge=100,
        le=10000,
        title="Density (cells/cm²)",
        description="viable cells seeded per cm² in each child vessel",
    )
    medium_mL_per_cm2: float = Field(
        default=0.2,
        ge=0.05,
        le=1.0,
        title="Medium (mL/cm²)",
        description="liquid per cm² in each child vessel",
    )
    max_child_vessels: Annotated[int | None, optional_int(1, 500)] = Field(
        default=None,
        ge=1,
        le=500,
        title="Most child vessels",
        description="cap on the vessels seeded; empty: as many as the count fills",
        json_schema_extra=EMPTY_IS_NONE,
    )
    detach: DetachParams = Field(
        default_factory=DetachParams,
        title="Detachment",
        description="wash, enzyme, neutralisation and pooling",
    )


class PassagingResult(BaseModel):
    plate: str
    confluence_percent: dict[str, float]
    passaged: bool
    decision: str
    count: CountResult | None = None
    cells_available: float = 0.0
    children: list[str] = Field(default_factory=list)
    surplus_cells: float = 0.0
    held: bool = Field(
        default=False, description="the cells stayed in the pool tube; a deviation says why"
    )
    deviation: str | None = None
    dilution_uL: float = 0.0
    reagents_uL: dict[str, float] = Field(default_factory=dict)
    tips_used: int = 0
    started: datetime
    finished: datetime


def _free_wells(wc: Workcell, plates: list[str], problems: list[str]) -> list[tuple[str, str]]:
    free = []
    for name in dict.fromkeys(plates):
        try:
            plate = wc.plate(name)
        except WorkcellError as err:
            problems.append(str(err))
            continue
        if wc.in_incubator(name):
            problems.append(f"destination plate {name!r} is in the incubator, not on the deck")
            continue
        for w in plate.get_all_items():
            if w.tracker.get_used_volume() == 0 and wc.store.vessel(w.name) is None:
                free.append((name, w.get_identifier()))
    if not free:
        problems.append(f"no empty well on the destination plates {plates}")
    return free


class PassagingPlan(BaseModel):
    """What the passage may use, in the worst case, checked before anything moves."""

    vessels: list[str]
    free: list[tuple[str, str]]  # empty destination wells, in seeding order
    areas: list[float]
    detach: DetachPlan
    tips_worst: int


def plan(wc: Workcell, params: PassagingParams) -> PassagingPlan:
    """Check everything the passage may do, for the largest split it may make."""
    problems: list[str] = []
    targets = active_vessels(wc, [params.plate], [], problems)
    if params.plate in params.destination_plates:
        problems.append(f"plate {params.plate!r} cannot be its own destination")
    if len(set(params.destination_plates)) != len(params.destination_plates):
        problems.append("a destination plate is named more than once")
    free = _free_wells(wc, params.destination_plates, problems)
    if params.max_child_vessels is not None:
        free = free[: params.max_child_vessels]
    d = params.detach
    detach = plan_detach(wc, targets, d, problems)
    areas: list[float] = []
    names: list[str] = []
    seed_medium = 0.0
    for p, w in free:
        well = well_of(wc.plate(p), w)
        assert well is not None
        area = growth_area_cm2(well)
        areas.append(area)
        names.append(well.name)
        total = params.medium_mL_per_cm2 * area * 1000.0
        seed_medium += total
        if total > well.max_volume + 1e-6:
            problems.append(
                f"vessel {well.name} holds {well.max_volume / 1000:.2f} mL; seeding would put "
                f"{total / 1000:.2f} mL in it ({params.medium_mL_per_cm2} mL/cm2 x {area:.2f} cm2)"
            )
    # the medium for every child the passage may seed, on top of the neutralising medium
    try:
        medium = wc.container(d.medium_reservoir)
        need = detach.reagents_uL.get(d.medium_reservoir, 0.0) + seed_medium
        have = max(0.0, medium.tracker.get_used_volume() - dead_volume_uL(medium))
        if seed_medium > 0 and need > have + 1e-6:
            problems.append(
                f"reservoir {d.medium_reservoir!r} would run dry: {need / 1000:.2f} mL needed to "
                f"neutralise and to seed up to {len(free)} vessels, {have / 1000:.2f} mL usable"
            )
    except WorkcellError:
        pass  # reported by the role check
    # seeding the children: the medium's tips per plate (one, or one per row of a plate
    # column on a group of channels) and a suspension tip per well at most, and one tip
    # to dilute the pool; which pipette takes the suspension (and the dilution) depends
    # on the count (left to the choice: [])
    medium_groups: list[list[float]] = []
    tips = TipSupply.of(wc)
    for plate in dict.fromkeys(p for p, _ in free):
        on = [i for i, (p, _) in enumerate(free) if p == plate]
        volumes = [params.medium_mL_per_cm2 * areas[i] * 1000 for i in on]
        medium_groups += rows_of(wc, tips, [names[i] for i in on], volumes)
    tips_worst = plan_tips(
        tips,
        detach.tip_groups + [[]] * DILUTION_TIPS + medium_groups + [[]] * len(free),
        problems,
    )
    if problems:
        raise ProtocolRefused(NAME, problems)
    return PassagingPlan(
        vessels=[t.vessel for t in targets],
        free=free,
        areas=areas,
        detach=detach,
        tips_worst=tips_worst,
    )


async def run(wc: Workcell, params: PassagingParams, actor: str = NAME) -> PassagingResult:
    """Image, decide, and if confluent detach, count and seed the children.

    Resumable (``protocols/recovery``): re-entered after an interruption it keeps its
    plan, its recorded decision and its count, and finishes each vessel's stage
    where it stopped.
    """
    pp = PassagingPlan.model_validate(
        wc.journal.once(
            f"{NAME}:plan",
            lambda: plan(wc, params).model_dump(mode="json"),
            vessels=lambda kept: list(kept["vessels"]),
        )
    )
    targets = targets_named(wc, pp.vessels)
    free, areas, detach, d = pp.free, pp.areas, pp.detach, params.detach
    started = datetime.fromisoformat(
        wc.journal.once(f"{NAME}:started", lambda: wc.clock.now().isoformat())
    )
    once_event(
        wc,
        f"{NAME}:protocol_started",
        "protocol_started",
        actor,
        protocol=NAME,
        params=params.model_dump(mode="json"),
    )
    was_in = bool(wc.journal.once(f"{NAME}:was_in", lambda: wc.in_incubator(params.plate)))
    found, decided = wc.journal.remembered(f"{NAME}:decision")
    if not found:
        plate = (
            await wc.fetch_plate(params.plate)
            if wc.in_incubator(params.plate)
            else wc.plate(params.plate)
        )
        imaged = await wc.imager.confluence(plate, [t.vessel for t in targets])
        measured = {t.vessel: 100 * imaged[t.vessel] for t in targets}
        mean = sum(measured.values()) / len(measured)
        passage = mean >= params.confluence_threshold_percent
        threshold = params.confluence_threshold_percent
        decision = (
            f"passage due: mean confluence {mean:.0f} % reached the {threshold:.0f} % threshold"
            if passage
            else f"no passage: mean confluence {mean:.0f} % is below the {threshold:.0f} % "
            "threshold"
        )
        decided = {"measured": measured, "passage": passage, "decision": decision}
        with wc.store.transaction():
            for vessel, value in measured.items():
                wc.store.add_measurement(
                    Measurement(
                        vessel_id=vessel,
                        kind="confluence",
                        value=value / 100,
                        unit="fraction",
                        time=wc.clock.now(),
                        source=wc.imager.name,
                    )
                )
            wc.event(
                "decision",
                actor,
                plate=params.plate,
                decision=decision,
                passage=passage,
                confluence_percent=measured,
            )
            wc.journal.remember(f"{NAME}:decision", decided)
    measured, passage, decision = decided["measured"], decided["passage"], decided["decision"]
    if not passage:
        if was_in and not wc.in_slot(params.plate):
            await wc.store_plate(params.plate)
        return PassagingResult(
            plate=params.plate,
            confluence_percent=measured,
            passaged=False,
            decision=decision,
            started=started,
            finished=wc.clock.now(),
        )
    if wc.in_incubator(params.plate):  # resumed before the plate reached the deck
        await wc.fetch_plate(params.plate)

    try:
        count = await detach_and_pool(wc, targets, detach, d, actor)
    except Exception as err:
        wc.event(
            "protocol_fault",
            actor,
            protocol=NAME,
            stage="detach",
            error=f"{type(err).__name__}: {err}",
            vessels=[t.vessel for t in targets],
        )
        raise
    parents = [t.vessel for t in targets]
    async with unit(wc, f"{NAME}:passaged", parents) as u:
        if not u.done:
            u.then(lambda: wc.store.set_state(parents, "passaged", wc.clock.now()))
    pool = wc.container(d.pool_tube)
    tips_used = detach.tips

    # from here on the cells are in the pool: a problem holds them there, it does not raise
    dilution = wc.journal.once(
        f"{NAME}:dilution", lambda: _dilution(wc, params, count, areas).model_dump()
    )
    dil = Dilution.model_validate(dilution)
    if dil.add_uL > 0:
        await _dilute(wc, params, dil, actor)
        tips_used += DILUTION_TIPS
    conc_per_mL, diluted_uL, held = dil.conc_per_mL, dil.add_uL, dil.held
    after = wc.journal.once(
        f"{NAME}:children",
        lambda: _children(wc, params, count, conc_per_mL, held, free, areas, targets),
    )
    cells, held = after["cells"], after["held"]
    children: list[str] = []
    seeded_uL = 0.0
    if held is None:
        sp = _seeding_params(after["params"])
        splan = seeding.SeedingPlan.model_validate(after["plan"])
        result = await seeding.seed(wc, splan, sp, actor, parents)
        children = [v.vessel for v in result.vessels]
        seeded_uL = result.reagents_uL.get(d.pool_tube, 0.0)
        tips_used += result.tips_used
        for plate_name in sp.plates:
            if not wc.in_slot(plate_name):
                await wc.store_plate(plate_name)
    left = conc_per_mL * pool.tracker.get_used_volume() / 1000.0
    if held is not None:
        held = (
            f"{held}; the {left:,.0f} viable cells of {params.plate} are held in "
            f"{d.pool_tube!r} for the operator"
        )
        once_event(
            wc,
            f"{NAME}:held",
            "deviation",
            actor,
            plate=params.plate,
            pool=d.pool_tube,
            message=held,
        )
    elif left > 0:
        once_event(
            wc,
            f"{NAME}:surplus",
            "surplus",
            actor,
            pool=d.pool_tube,
            viable_cells=left,
            message="cells left in the pool after seeding (for banking or discard)",
        )
    finished = wc.clock.now()
    once_event(
        wc,
        f"{NAME}:protocol_finished",
        "protocol_finished",
        actor,
        protocol=NAME,
        children=children,
        held=held is not None,
    )
    reagents = dict(detach.reagents_uL)
    if diluted_uL:
        reagents[d.medium_reservoir] = reagents.get(d.medium_reservoir, 0.0) + diluted_uL
    reagents[d.pool_tube] = seeded_uL
    return PassagingResult(
        plate=params.plate,
        confluence_percent=measured,
        passaged=True,
        decision=decision,
        count=count,
        cells_available=cells,
        children=children,
        surplus_cells=left if held is None else 0.0,
        held=held is not None,
        deviation=held,
        dilution_uL=diluted_uL,
        reagents_uL=reagents,
        tips_used=tips_used,
        started=started,
        finished=finished,
    )


class Dilution(BaseModel):
    """What the count implies for the pool, decided once (kept in the journal)."""

    model_config = ConfigDict(extra="forbid")

    conc_per_mL: float = Field(description="viable cells/mL of the pool after any dilution")
    add_uL: float = Field(default=0.0, description="medium to add to the pool")
    factor: float = 1.0
    held: str | None = Field(default=None, description="why the pool cannot be seeded")


def _dilution(
    wc: Workcell, params: PassagingParams, count: CountResult, areas: list[float]
) -> Dilution:
    """Whether a pool too concentrated for the smallest seeding volume is diluted, and how;
    or why the pool cannot be seeded at the density at all."""
    d = params.detach
    conc = count.viable_per_mL
    if count.below_detection:
        return Dilution(
            conc_per_mL=0.0, held="the pool is below the cell counter's detection limit"
        )
    if conc <= 0:
        return Dilution(conc_per_mL=0.0, held="the count found no viable cells")
    susp_per_cm2 = params.density_cells_per_cm2 / conc * 1000.0  # uL of pool per cm2
    total_per_cm2 = params.medium_mL_per_cm2 * 1000.0
    if susp_per_cm2 > total_per_cm2:
        return Dilution(
            conc_per_mL=conc,
            held=f"the pool holds {conc:,.0f} viable cells/mL: seeding "
            f"{params.density_cells_per_cm2:,.0f} cells/cm2 needs {susp_per_cm2:.0f} uL/cm2 of "
            f"it, more than the {total_per_cm2:.0f} uL/cm2 a vessel gets in all",
        )
    smallest = min(areas) * susp_per_cm2
    if smallest >= MIN_VOLUME_UL:
        return Dilution(conc_per_mL=conc)
    factor = min(DILUTION_MARGIN * MIN_VOLUME_UL / smallest, total_per_cm2 / susp_per_cm2)
    pool = wc.container(d.pool_tube)
    medium = wc.container(d.medium_reservoir)
    volume = pool.tracker.get_used_volume()
    add_uL = volume * (factor - 1.0)
    free = pool.tracker.get_free_volume()
    have = max(0.0, medium.tracker.get_used_volume() - dead_volume_uL(medium))
    seed_medium = sum(areas) * total_per_cm2
    if smallest * factor < MIN_VOLUME_UL or add_uL > free or add_uL + seed_medium > have:
        return Dilution(
            conc_per_mL=conc,
            held=f"the pool ({conc:,.0f} viable cells/mL) would need {add_uL / 1000:.1f} mL of "
            f"medium to bring the smallest seeding volume ({smallest:.1f} uL) to "
            f"{MIN_VOLUME_UL:.0f} uL; {d.pool_tube!r} has {free / 1000:.1f} mL free and "
            f"{d.medium_reservoir!r} {have / 1000:.1f} mL usable",
        )
    return Dilution(conc_per_mL=conc / factor, add_uL=add_uL, factor=factor)


async def _dilute(wc: Workcell, params: PassagingParams, dil: Dilution, actor: str) -> None:
    """Medium into the pool, once (resumable), then the pool mixed; recorded with it."""
    d = params.detach
    pool = wc.container(d.pool_tube)
    medium = wc.container(d.medium_reservoir)
    async with unit(wc, f"dilute:{d.pool_tube}", []) as u:
        if u.done:
            return
        async with Tip(
            wc, TipSupply.of(wc), f"dilute:{d.pool_tube}", SingleChannelGroup([dil.add_uL])
        ) as tip:
            await add(wc, tip, medium, pool, dil.add_uL)
            await mix_suspension(wc, tip, pool)

        def record() -> None:
            wc.store.add_measurement(
                Measurement(
                    vessel_id=None,
                    kind="pool_viable_per_mL_diluted",
                    value=dil.conc_per_mL,
                    unit="cells/mL",
                    time=wc.clock.now(),
                    source=actor,
                )
            )
            wc.event(
                "pool_diluted",
                actor,
                pool=d.pool_tube,
                medium_uL=dil.add_uL,
                factor=dil.factor,
                viable_per_mL=dil.conc_per_mL,
            )

        u.then(record)


def _children(
    wc: Workcell,
    params: PassagingParams,
    count: CountResult,
    conc_per_mL: float,
    held: str | None,
    free: list[tuple[str, str]],
    areas: list[float],
    targets: list[Target],
) -> dict[str, Any]:
    """How many children the (diluted) pool fills, where, and the seeding plan that makes
    them; or why the cells stay in the pool (``held``). Decided once, kept in the journal."""
    d = params.detach
    pool = wc.container(d.pool_tube)
    usable = max(0.0, pool.tracker.get_used_volume() - dead_volume_uL(pool))
    cells = conc_per_mL * usable / 1000.0
    out: dict[str, Any] = {"cells": cells, "held": held, "params": None, "plan": None}
    if held is not None:
        return out
    per_vessel = [params.density_cells_per_cm2 * a for a in areas]
    n = 0
    while n < len(free) and sum(per_vessel[: n + 1]) <= cells:
        n += 1
    chosen = free[:n]
    if n == 0:
        out["held"] = f"{cells:,.0f} viable cells are too few to seed one vessel"
        return out
    parent_passage = max(t.record.passage for t in targets)
    sp = seeding.SeedingParams.model_construct(
        suspension=seeding.Suspension.model_construct(
            tube=d.pool_tube,
            volume_mL=pool.tracker.get_used_volume() / 1000,
            viable_cells_per_mL=conc_per_mL,
            viability_percent=count.viability_percent,
            passage=parent_passage + 1,
            population_doublings=0.0,
            lot=f"passage of {params.plate}",
        ),
        plates=list(dict.fromkeys(p for p, _ in chosen)),
        wells=[],
        density_cells_per_cm2=params.density_cells_per_cm2,
        medium_mL_per_cm2=params.medium_mL_per_cm2,
        medium_reservoir=d.medium_reservoir,
    )
    try:
        splan = seeding.plan(wc, sp, loaded=True, only=chosen)
    except ProtocolRefused as refused:
        out["held"] = "seeding after the count is not possible: " + "; ".join(refused.problems)
        return out
    out["params"] = sp.model_dump(mode="json")
    out["plan"] = splan.model_dump(mode="json")
    return out


def _seeding_params(kept: dict[str, Any]) -> seeding.SeedingParams:
    """The children's seeding parameters as decided (from the pool's count, so not
    bounded as an operator's input is: built without validation, as when decided)."""
    rest = {k: v for k, v in kept.items() if k != "suspension"}
    return seeding.SeedingParams.model_construct(
        suspension=seeding.Suspension.model_construct(**kept["suspension"]), **rest
    )
