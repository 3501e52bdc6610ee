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

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from devices.cell_counter import CountResult
from protocols import seeding
from protocols.checks import DeckName, DeckNames
from protocols.detachment import DetachParams, DetachPlan, detach_and_pool, plan_detach
from protocols.pipetting import (
    MIN_VOLUME_UL,
    MIX_SUSPENSION_CYCLES,
    TipSupply,
    dead_volume_uL,
    discard_tip,
    mix,
    plan_tips,
    suspension_mix_uL,
    transfer,
    with_fresh_tip,
)
from protocols.selection import Target, active_vessels, well_of
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


@dataclass(frozen=True)
class PassagingPlan:
    """What the passage may use, in the worst case, decided before anything moves."""

    targets: list[Target]
    detach: DetachPlan
    free: list[tuple[str, str]]  # empty destination wells, in seeding order
    areas: list[float]
    tips_worst: int


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
    seed_medium = 0.0
    for p, w in free:
        well = well_of(wc.plate(p), w)
        assert well is not None
        area = growth_area_cm2(well)
        areas.append(area)
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
    # seeding the children: a medium tip per plate and a suspension tip per well at most,
    # and one tip to dilute the pool; which pipette takes the suspension (and the
    # dilution) depends on the count (left to the choice: [])
    medium_groups = [
        [
            params.medium_mL_per_cm2 * a * 1000
            for (p, _), a in zip(free, areas, strict=True)
            if p == plate
        ]
        for plate in dict.fromkeys(p for p, _ in free)
    ]
    tips_worst = plan_tips(
        TipSupply.of(wc),
        detach.tip_groups + [[]] * DILUTION_TIPS + medium_groups + [[]] * len(free),
        problems,
    )
    if problems:
        raise ProtocolRefused(NAME, problems)
    return PassagingPlan(
        targets=targets, detach=detach, free=free, areas=areas, tips_worst=tips_worst
    )


async def run(wc: Workcell, params: PassagingParams, actor: str = NAME) -> PassagingResult:
    pp = plan(wc, params)
    targets, detach, free, areas = pp.targets, pp.detach, pp.free, pp.areas
    d = params.detach

    started = wc.clock.now()
    wc.event("protocol_started", actor, protocol=NAME, params=params.model_dump(mode="json"))
    was_in = wc.in_incubator(params.plate)
    plate = await wc.fetch_plate(params.plate) if was_in else wc.plate(params.plate)
    imaged = await wc.imager.confluence(plate, [t.vessel for t in targets])
    measured = {t.vessel: 100 * imaged[t.vessel] for t in targets}
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
    mean = sum(measured.values()) / len(measured)
    passage = mean >= params.confluence_threshold_percent
    threshold = params.confluence_threshold_percent
    decision = (
        f"passage due: mean confluence {mean:.0f} % reached the {threshold:.0f} % threshold"
        if passage
        else f"no passage: mean confluence {mean:.0f} % is below the {threshold:.0f} % threshold"
    )
    wc.event(
        "decision",
        actor,
        plate=params.plate,
        decision=decision,
        passage=passage,
        confluence_percent=measured,
    )
    if not passage:
        if was_in:
            await wc.store_plate(params.plate)
        return PassagingResult(
            plate=params.plate,
            confluence_percent=measured,
            passaged=False,
            decision=decision,
            started=started,
            finished=wc.clock.now(),
        )

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
    wc.store.set_state([t.vessel for t in targets], "passaged", wc.clock.now())
    parents = [t.vessel for t in targets]
    parent_passage = max(t.record.passage for t in targets)
    pool = wc.container(d.pool_tube)
    tips_used = detach.tips

    # from here on the cells are in the pool: a problem holds them there, it does not raise
    conc_per_mL, diluted_uL, held = await _dilute_if_needed(wc, params, count, areas, actor)
    tips_used += DILUTION_TIPS if diluted_uL > 0 else 0
    usable = max(0.0, pool.tracker.get_used_volume() - dead_volume_uL(pool))
    cells = conc_per_mL * usable / 1000.0
    children: list[str] = []
    seeded_uL = 0.0
    if held is None:
        per_vessel = [params.density_cells_per_cm2 * a for a in areas]
        n = 0
        while n < len(free) and sum(per_vessel[: n + 1]) <= cells:
            n += 1
        chosen = free[:n]
        if n == 0:
            held = f"{cells:,.0f} viable cells are too few to seed one vessel"
        else:
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
                held = "seeding after the count is not possible: " + "; ".join(refused.problems)
            else:
                result = await seeding.seed(wc, splan, sp, actor, parents)
                children = [v.vessel for v in result.vessels]
                seeded_uL = result.reagents_uL.get(d.pool_tube, 0.0)
                tips_used += result.tips_used
                for plate_name in sp.plates:
                    await wc.store_plate(plate_name)
    left = conc_per_mL * pool.tracker.get_used_volume() / 1000.0
    if held is not None:
        held = (
            f"{held}; the {left:,.0f} viable cells of {params.plate} are held in "
            f"{d.pool_tube!r} for the operator"
        )
        wc.event("deviation", actor, plate=params.plate, pool=d.pool_tube, message=held)
    elif left > 0:
        wc.event(
            "surplus",
            actor,
            pool=d.pool_tube,
            viable_cells=left,
            message="cells left in the pool after seeding (for banking or discard)",
        )
    finished = wc.clock.now()
    wc.event("protocol_finished", actor, protocol=NAME, children=children, held=held is not None)
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


async def _dilute_if_needed(
    wc: Workcell,
    params: PassagingParams,
    count: CountResult,
    areas: list[float],
    actor: str,
) -> tuple[float, float, str | None]:
    """Dilute a pool too concentrated for the smallest seeding volume.

    Returns the pool's concentration (viable/mL) after it, the medium added (uL),
    and, when the pool cannot be seeded at the density at all, why (None if it can).
    """
    d = params.detach
    conc = count.viable_per_mL
    if conc <= 0:
        return 0.0, 0.0, "the count found no viable cells"
    susp_per_cm2 = params.density_cells_per_cm2 / conc * 1000.0  # uL of pool per cm2
    total_per_cm2 = params.medium_mL_per_cm2 * 1000.0
    if susp_per_cm2 > total_per_cm2:
        return (
            conc,
            0.0,
            f"the pool holds {conc:,.0f} viable cells/mL: seeding "
            f"{params.density_cells_per_cm2:,.0f} cells/cm2 needs {susp_per_cm2:.0f} uL/cm2 of it, "
            f"more than the {total_per_cm2:.0f} uL/cm2 a vessel gets in all",
        )
    smallest = min(areas) * susp_per_cm2
    if smallest >= MIN_VOLUME_UL:
        return conc, 0.0, None
    factor = min(DILUTION_MARGIN * MIN_VOLUME_UL / smallest, total_per_cm2 / susp_per_cm2)
    pool = wc.container(d.pool_tube)
    medium = wc.container(d.medium_reservoir)
    volume = pool.tracker.get_used_volume()
    add = volume * (factor - 1.0)
    free = pool.tracker.get_free_volume()
    have = max(0.0, medium.tracker.get_used_volume() - dead_volume_uL(medium))
    seed_medium = sum(areas) * total_per_cm2
    if smallest * factor < MIN_VOLUME_UL or add > free or add + seed_medium > have:
        return (
            conc,
            0.0,
            f"the pool ({conc:,.0f} viable cells/mL) would need {add / 1000:.1f} mL of medium to "
            f"bring the smallest seeding volume ({smallest:.1f} uL) to {MIN_VOLUME_UL:.0f} uL; "
            f"{d.pool_tube!r} has {free / 1000:.1f} mL free and {d.medium_reservoir!r} "
            f"{have / 1000:.1f} mL usable",
        )
    lh = wc.liquid_handler
    tips = TipSupply.of(wc)
    await with_fresh_tip(lh, tips, [add])
    await transfer(lh, medium, pool, add, tips)
    await mix(lh, tips, pool, suspension_mix_uL(pool, tips), MIX_SUSPENSION_CYCLES)
    await discard_tip(lh, tips)
    diluted = conc / factor
    wc.store.add_measurement(
        Measurement(
            vessel_id=None,
            kind="pool_viable_per_mL_diluted",
            value=diluted,
            unit="cells/mL",
            time=wc.clock.now(),
            source=actor,
        )
    )
    wc.event(
        "pool_diluted",
        actor,
        pool=d.pool_tube,
        medium_uL=add,
        factor=factor,
        viable_per_mL=diluted,
    )
    return diluted, add, None
