"""Passaging: split a culture that has reached its confluence threshold.

Bench version: take the plate from the incubator and image it. Only if its mean
confluence reaches the threshold: detach and pool its cells (wash, enzyme at 37 C,
neutralise, pool), count the pool, and from the count work out how many new
vessels the cells fill at the seeding density (the split ratio follows from the
count and the vessels' growth area). Seed them into empty wells of the destination
plates, record each child with its parents and passage number, and put the new
plates into the incubator. Below the threshold the plate goes back, and the
decision is recorded either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from devices.cell_counter import CountResult
from protocols import seeding
from protocols.detachment import DetachParams, detach_and_pool, plan_detach
from protocols.pipetting import TipSupply, dead_volume_uL, plan_tips
from protocols.selection import active_vessels, well_of
from workcell.assembly.choices import EMPTY_IS_NONE, Choice, choice, optional_int
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused, WorkcellError
from workcell.labware import growth_area_cm2
from workcell.store import Measurement

NAME = "passaging"


class PassagingParams(BaseModel):
    """Which plate to passage, and into which plates."""

    model_config = ConfigDict(extra="forbid", title="Passage")

    plate: str = Field(
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
    destination_plates: list[str] = Field(
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
    reagents_uL: dict[str, float] = Field(default_factory=dict)
    tips_used: int = 0
    started: datetime
    finished: datetime


def _free_wells(wc: Workcell, plates: list[str], problems: list[str]) -> list[tuple[str, str]]:
    free = []
    for name in plates:
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


async def run(wc: Workcell, params: PassagingParams, actor: str = NAME) -> PassagingResult:
    problems: list[str] = []
    targets = active_vessels(wc, [params.plate], [], problems)
    if params.plate in params.destination_plates:
        problems.append(f"plate {params.plate!r} cannot be its own destination")
    free = _free_wells(wc, params.destination_plates, problems)
    d = params.detach
    detach = plan_detach(wc, targets, d, problems)
    # upper bounds for what seeding the children can take: every free well
    areas = [growth_area_cm2(well_of(wc.plate(p), w)) for p, w in free]  # type: ignore[arg-type]
    # seeding the children: a medium tip per plate and a suspension tip per well at most;
    # which pipette takes the suspension depends on the count (left to the choice: [])
    medium = [[params.medium_mL_per_cm2 * a * 1000 for a in areas]]
    plan_tips(
        TipSupply.of(wc),
        detach.tip_groups + medium * len(params.destination_plates) + [[]] * len(free),
        problems,
    )
    if problems:
        raise ProtocolRefused(NAME, problems)

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

    pool = wc.container(d.pool_tube)
    usable_uL = max(0.0, pool.tracker.get_used_volume() - dead_volume_uL(pool))
    cells = count.viable_per_mL * usable_uL / 1000.0
    per_vessel = [params.density_cells_per_cm2 * a for a in areas]
    n = 0
    while n < len(free) and sum(per_vessel[: n + 1]) <= cells:
        n += 1
    if params.max_child_vessels is not None:
        n = min(n, params.max_child_vessels)
    chosen = free[:n]
    children: list[str] = []
    seeded_uL = 0.0
    parent_passage = max(t.record.passage for t in targets)
    if n == 0:
        wc.event(
            "deviation",
            actor,
            plate=params.plate,
            message=f"{cells:,.0f} viable cells are too few to seed one vessel",
        )
    else:
        sp = seeding.SeedingParams(
            suspension=seeding.Suspension(
                tube=d.pool_tube,
                volume_mL=pool.tracker.get_used_volume() / 1000,
                viable_cells_per_mL=count.viable_per_mL,
                viability_percent=max(50.0, count.viability_percent),
                passage=parent_passage + 1,
                lot=f"passage of {params.plate}",
            ),
            plates=list(dict.fromkeys(p for p, _ in chosen)),
            wells=[],
            density_cells_per_cm2=params.density_cells_per_cm2,
            medium_mL_per_cm2=params.medium_mL_per_cm2,
            medium_reservoir=d.medium_reservoir,
        )
        result = await _seed_wells(wc, sp, chosen, actor, [t.vessel for t in targets])
        children = [v.vessel for v in result.vessels]
        seeded_uL = result.reagents_uL.get(d.pool_tube, 0.0)
        for plate_name in sp.plates:
            await wc.store_plate(plate_name)
    surplus = count.viable_per_mL * (pool.tracker.get_used_volume()) / 1000.0
    if surplus > 0:
        wc.event(
            "surplus",
            actor,
            pool=d.pool_tube,
            viable_cells=surplus,
            message="cells left in the pool after seeding (for banking or discard)",
        )
    finished = wc.clock.now()
    wc.event("protocol_finished", actor, protocol=NAME, children=children)
    return PassagingResult(
        plate=params.plate,
        confluence_percent=measured,
        passaged=True,
        decision=decision,
        count=count,
        cells_available=cells,
        children=children,
        surplus_cells=surplus,
        reagents_uL={**detach.reagents_uL, d.pool_tube: seeded_uL},
        tips_used=detach.tips + len(children) + len({p for p, _ in chosen}),
        started=started,
        finished=finished,
    )


async def _seed_wells(
    wc: Workcell,
    sp: seeding.SeedingParams,
    chosen: list[tuple[str, str]],
    actor: str,
    parents: list[str],
) -> seeding.SeedingResult:
    plan = seeding.plan(wc, sp, loaded=True, only=chosen)
    return await seeding.seed(wc, plan, sp, actor, parents)
