"""Seeding: put MSC from a counted suspension into culture vessels at a set density.

Bench version: fill each well with fresh medium, then add the volume of cell
suspension that holds ``density x area`` viable cells, with a fresh tip per well.
The plan is computed and checked in full (parameter ranges, wells that exist and
can hold the volume, enough suspension, medium and tips) before any device moves.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pylabrobot.resources import Container

from protocols.checks import DeckName, DeckNames, Role, Text, WellNames, check_roles, distinct
from protocols.pipetting import (
    MIN_VOLUME_UL,
    TipSupply,
    dead_volume_uL,
    plan_tips,
    suspension_group,
    usable_uL,
)
from protocols.recovery.columns import add_shared, rows_of
from protocols.recovery.resumable import Tip, add, unit
from protocols.selection import well_of
from simulators.culture import Liquid
from workcell.assembly.build import Workcell
from workcell.assembly.choices import EMPTY_IS_NONE, Choice, choice, optional_text
from workcell.errors import DeviceRefused, ProtocolRefused, WorkcellError
from workcell.labware import growth_area_cm2
from workcell.store import Measurement, VesselRecord

NAME = "seeding"


class Suspension(BaseModel):
    """The counted cell suspension the operator puts on the deck."""

    model_config = ConfigDict(extra="forbid", title="Cell suspension")

    tube: DeckName = Field(
        default="cell_suspension",
        title="Suspension tube",
        description="the deck tube the operator loads the suspension into",
        json_schema_extra=choice(Choice.TUBE),
    )
    volume_mL: float = Field(
        gt=0, le=50, title="Volume (mL)", description="volume loaded into the tube"
    )
    viable_cells_per_mL: float = Field(
        ge=1e4,
        le=1e8,
        title="Viable cells (cells/mL)",
        description="viable cell concentration from the last count, e.g. 500000",
    )
    viability_percent: float = Field(
        default=95.0, ge=50, le=100, title="Viability (%)", description="from the last count"
    )
    passage: int = Field(
        default=0, ge=0, le=20, title="Passage", description="passage number of these cells"
    )
    population_doublings: float = Field(
        default=0.0,
        ge=0,
        le=60,
        title="Population doublings (PD)",
        description="cumulative population doublings of these cells so far",
    )
    lot: Text = Field(
        default="MSC-LOT-001",
        title="Lot",
        description="donor or vial lot id, recorded with every vessel",
    )
    donor: Annotated[str | None, optional_text(64)] = Field(
        default=None,
        min_length=1,
        max_length=64,
        title="Donor",
        description="donor id; in a dry-run it fixes the simulated cells' growth "
        "(drawn from published donor spreads); empty: the reference donor",
        json_schema_extra=EMPTY_IS_NONE,
    )


class SeedingParams(BaseModel):
    """What to seed, where, and how densely."""

    model_config = ConfigDict(extra="forbid", title="Seeding")

    suspension: Suspension = Field(
        title="Cell suspension", description="the counted suspension the cells come from"
    )
    plates: DeckNames = Field(
        min_length=1,
        title="Plates",
        description="empty deck plates to seed, every listed well of each",
        json_schema_extra=choice(Choice.PLATE),
    )
    wells: WellNames = Field(
        default_factory=list,
        title="Wells",
        description="wells to seed on every plate; empty: all wells",
        json_schema_extra=choice(Choice.WELL),
    )
    density_cells_per_cm2: float = Field(
        default=3000,
        ge=100,
        le=10000,
        title="Density (cells/cm²)",
        description="viable cells seeded per cm² of growth area",
    )
    medium_mL_per_cm2: float = Field(
        default=0.2,
        ge=0.05,
        le=2.0,
        title="Medium (mL/cm²)",
        description="total liquid per cm² after seeding (medium plus suspension)",
    )
    medium_reservoir: DeckName = Field(
        default="medium",
        title="Medium reservoir",
        description="reservoir of fresh, pre-warmed medium",
        json_schema_extra=choice(Choice.MEDIUM),
    )


class PlannedVessel(BaseModel):
    vessel: str
    plate: str
    well: str
    area_cm2: float
    cells: float
    suspension_uL: float
    medium_uL: float


class SeedingPlan(BaseModel):
    vessels: list[PlannedVessel]
    tips: int
    suspension_uL: float
    medium_uL: float


class SeededVessel(PlannedVessel):
    cells_delivered: float | None = Field(
        default=None, description="viable cells that arrived (known only in a dry-run)"
    )


class SeedingResult(BaseModel):
    vessels: list[SeededVessel]
    tips_used: int
    reagents_uL: dict[str, float]
    started: datetime
    finished: datetime

    @property
    def duration_s(self) -> float:
        return (self.finished - self.started).total_seconds()


def plan(
    wc: Workcell,
    params: SeedingParams,
    loaded: bool = False,
    only: list[tuple[str, str]] | None = None,
) -> SeedingPlan:
    """Compute every volume and check it can be done; raises ProtocolRefused otherwise.

    ``loaded``: the suspension is already in its tube (a passage's pool), rather than
    about to be loaded by the operator. ``only``: exactly these (plate, well) pairs,
    instead of ``params.wells`` on every plate.
    """
    problems: list[str] = []
    conc_per_uL = params.suspension.viable_cells_per_mL / 1000.0
    vessels: list[PlannedVessel] = []
    distinct(params.plates, "plate", problems)
    check_roles(
        wc,
        [(params.suspension.tube, Role.SUSPENSION), (params.medium_reservoir, Role.MEDIUM)],
        problems,
    )
    for plate_name in dict.fromkeys(params.plates):
        try:
            plate = wc.plate(plate_name)
        except WorkcellError as err:
            problems.append(str(err))
            continue
        if wc.in_incubator(plate_name):
            problems.append(f"plate {plate_name!r} is in the incubator, not on the deck")
            continue
        if only is not None:
            idents = [w for p, w in only if p == plate_name]
        else:
            idents = params.wells or [w.get_identifier() for w in plate.get_all_items()]
        for ident in idents:
            well = well_of(plate, ident)
            if well is None:
                problems.append(f"plate {plate_name!r} has no well {ident!r}")
                continue
            if any(v.vessel == well.name for v in vessels):
                problems.append(f"well {ident!r} of plate {plate_name!r} is named more than once")
                continue
            area = growth_area_cm2(well)
            cells = params.density_cells_per_cm2 * area
            total = params.medium_mL_per_cm2 * area * 1000.0
            susp = cells / conc_per_uL
            free = well.tracker.get_free_volume()
            if wc.store.vessel(well.name) is not None or well.tracker.get_used_volume() > 0:
                problems.append(f"vessel {well.name} is not empty; seed into empty wells only")
            elif total > free + 1e-6:
                problems.append(
                    f"vessel {well.name} holds {well.max_volume / 1000:.2f} mL; seeding would "
                    f"put {total / 1000:.2f} mL in it ({params.medium_mL_per_cm2} mL/cm2 x "
                    f"{area:.2f} cm2)"
                )
            if susp < MIN_VOLUME_UL:
                problems.append(
                    f"vessel {well.name}: only {susp:.1f} uL of suspension per well, below the "
                    f"{MIN_VOLUME_UL:.0f} uL a 1 mL tip delivers accurately; dilute the "
                    f"suspension to at most {cells / MIN_VOLUME_UL * 1000:,.0f} cells/mL"
                )
            if susp > total:
                problems.append(
                    f"vessel {well.name}: {susp / 1000:.2f} mL of suspension is needed for "
                    f"{cells:,.0f} cells but the well gets only {total / 1000:.2f} mL in all; "
                    "concentrate the suspension"
                )
            vessels.append(
                PlannedVessel(
                    vessel=well.name,
                    plate=plate_name,
                    well=ident,
                    area_cm2=area,
                    cells=cells,
                    suspension_uL=susp,
                    medium_uL=max(0.0, total - susp),
                )
            )
    susp_total = sum(v.suspension_uL for v in vessels)
    medium_total = sum(v.medium_uL for v in vessels)
    _check_source(
        wc,
        params.suspension.tube,
        susp_total,
        None if loaded else params.suspension.volume_mL * 1000,
        "cell suspension",
        problems,
    )
    _check_source(wc, params.medium_reservoir, medium_total, None, "medium", problems)
    needed = plan_tips(TipSupply.of(wc), _tip_groups(wc, vessels), problems)
    if problems:
        raise ProtocolRefused(NAME, problems)
    return SeedingPlan(
        vessels=vessels, tips=needed, suspension_uL=susp_total, medium_uL=medium_total
    )


def _tip_groups(wc: Workcell, vessels: list[PlannedVessel]) -> list[list[float]]:
    """What each tip moves, in the order ``seed`` takes them: the medium's per plate (one,
    or one per row of a plate column on a group of channels), then one per vessel for
    its cells (mixing the tube before each aspirate)."""
    tips = TipSupply.of(wc)
    medium: list[list[float]] = []
    for plate in dict.fromkeys(v.plate for v in vessels if v.medium_uL > 0):
        group = [v for v in vessels if v.plate == plate and v.medium_uL > 0]
        medium += rows_of(wc, tips, [v.vessel for v in group], [v.medium_uL for v in group])
    return medium + [suspension_group(v.suspension_uL) for v in vessels if v.suspension_uL > 0]


def _check_source(
    wc: Workcell,
    name: str,
    need_uL: float,
    loading_uL: float | None,
    what: str,
    problems: list[str],
) -> None:
    try:
        c = wc.container(name)
    except WorkcellError as err:
        problems.append(f"{what}: {err}")
        return
    if loading_uL is not None:
        free = c.tracker.get_free_volume()
        if loading_uL > free:
            problems.append(
                f"{what}: {loading_uL / 1000:.2f} mL does not fit in {name!r} "
                f"({free / 1000:.2f} mL free)"
            )
            return
        have = max(0.0, c.tracker.get_used_volume() + loading_uL - dead_volume_uL(c))
    else:
        have = usable_uL(c)
    if need_uL > have + 1e-6:
        problems.append(
            f"{what}: {need_uL / 1000:.2f} mL needed from {name!r}, "
            f"only {have / 1000:.2f} mL usable"
        )


async def run(wc: Workcell, params: SeedingParams, actor: str = "seeding") -> SeedingResult:
    """Seed the vessels from a suspension the operator loads into the tube.

    Resumable: re-entered after an interruption, the plan and the operator's load
    are the ones of the interrupted run (``protocols/recovery``).
    """
    p = SeedingPlan.model_validate(
        wc.journal.once(
            f"{NAME}:plan",
            lambda: plan(wc, params).model_dump(mode="json"),
            vessels=lambda kept: [v["vessel"] for v in kept["vessels"]],
        )
    )
    s = params.suspension
    async with unit(wc, f"load:{s.tube}", []) as u:
        if not u.done:
            wc.load(
                s.tube,
                s.volume_mL * 1000.0,
                Liquid(
                    viable=s.viable_cells_per_mL * s.volume_mL,
                    dead=s.viable_cells_per_mL * s.volume_mL * (100 / s.viability_percent - 1),
                    nutrient=1.0,
                    pd=s.population_doublings,
                    serum=1.0,
                    donor=s.donor,
                ),
                actor="operator",
            )
    return await seed(wc, p, params, actor)


async def seed(
    wc: Workcell,
    p: SeedingPlan,
    params: SeedingParams,
    actor: str,
    parents: list[str] | None = None,
) -> SeedingResult:
    """Carry out a seeding plan; every vessel is in the store the moment its cells are in it.

    Resumable: a vessel's medium and cells are each added once, whatever was
    interrupted (``protocols/recovery/resumable.py``).
    """
    tips = TipSupply.of(wc)
    s = params.suspension
    started = datetime.fromisoformat(
        wc.journal.once(f"{NAME}:started", lambda: wc.clock.now().isoformat())
    )
    tube = wc.container(s.tube)
    medium = wc.container(params.medium_reservoir)
    async with unit(wc, f"{NAME}:protocol_started", []) as u:
        if not u.done:
            u.then(
                lambda: wc.event(
                    "protocol_started", actor, protocol=NAME, params=params.model_dump(mode="json")
                )
            )
    with_medium: list[str] = []
    seeded: list[SeededVessel] = []
    try:
        for plate in dict.fromkeys(v.plate for v in p.vessels if v.medium_uL > 0):
            group = [v for v in p.vessels if v.plate == plate and v.medium_uL > 0]
            # a tip for the plate's medium (into empty wells), or a plate column per
            # command on a group of channels, a tip per row (recovery/columns.py)
            await add_shared(
                wc,
                tips,
                f"medium:{plate}",
                "medium",
                [v.vessel for v in group],
                [v.medium_uL for v in group],
                medium,
                None,
                along_wall=False,
            )
            with_medium.extend(v.vessel for v in group)
        for v in p.vessels:
            async with unit(wc, f"cells:{v.vessel}", [v.vessel]) as u:
                if u.done:
                    _, kept = wc.journal.remembered(f"seeded:{v.vessel}")
                    seeded.append(SeededVessel.model_validate(kept))
                    continue
                target = _target(wc, v)
                before = _viable(wc, v.vessel)
                moves = suspension_group(v.suspension_uL)
                async with Tip(wc, tips, f"cells:{v.vessel}", moves) as tip:
                    await add(wc, tip, tube, target, v.suspension_uL, mix_source=True)
                after = _viable(wc, v.vessel)
                done = SeededVessel(
                    **v.model_dump(),
                    cells_delivered=None if after is None or before is None else after - before,
                )
                u.then(_recorder(wc, done, s, actor, parents or []))
                seeded.append(done)
    except Exception as err:
        wc.event(
            "protocol_fault",
            actor,
            protocol=NAME,
            error=f"{type(err).__name__}: {err}",
            seeded=[v.vessel for v in seeded],
            medium_only=[x for x in with_medium if x not in {v.vessel for v in seeded}],
            untouched=[v.vessel for v in p.vessels if v.vessel not in with_medium],
        )
        raise
    finished = wc.clock.now()
    async with unit(wc, f"{NAME}:protocol_finished", []) as u:
        if not u.done:
            u.then(lambda: wc.event("protocol_finished", actor, protocol=NAME, vessels=len(seeded)))
    return SeedingResult(
        vessels=seeded,
        tips_used=p.tips,
        reagents_uL={s.tube: p.suspension_uL, params.medium_reservoir: p.medium_uL},
        started=started,
        finished=finished,
    )


def _recorder(
    wc: Workcell, v: SeededVessel, s: Suspension, actor: str, parents: list[str]
) -> Callable[[], None]:
    """The records of a seeded vessel, written with the mark that its cells are in."""

    def write() -> None:
        _record_seeded(wc, v, s, actor, parents)
        wc.journal.remember(f"seeded:{v.vessel}", v.model_dump(mode="json"))

    return write


def _target(wc: Workcell, v: PlannedVessel) -> Container:
    well = well_of(wc.plate(v.plate), v.well)
    assert well is not None  # checked by plan()
    return well


def _viable(wc: Workcell, vessel: str) -> float | None:
    """A dry-run's report only: the simulated lab's count of the vessel's viable cells."""
    if wc.lab is None:
        return None
    try:
        return wc.lab.vessel(vessel).viable
    except DeviceRefused:  # the lab's only refusal of it: no culture in the vessel yet
        return 0.0


def _record_seeded(
    wc: Workcell, v: SeededVessel, s: Suspension, actor: str, parents: list[str]
) -> None:
    plate = wc.plate(v.plate)
    now = wc.clock.now()
    wc.store.add_vessel(
        VesselRecord(
            id=v.vessel,
            labware=plate.model or "",
            plate=plate.name,
            location=f"deck:{plate.name}",
            passage=s.passage,
            parents=parents,
            area_cm2=v.area_cm2,
            created_at=now,
        )
    )
    wc.store.add_measurement(
        Measurement(
            vessel_id=v.vessel,
            kind="seeded_cells",
            value=v.cells,
            unit="cells",
            time=now,
            source=actor,
        )
    )
    wc.event(
        "seeded",
        actor,
        vessel_id=v.vessel,
        lot=s.lot,
        cells=v.cells,
        suspension_uL=v.suspension_uL,
        medium_uL=v.medium_uL,
        population_doublings=s.population_doublings,
    )
