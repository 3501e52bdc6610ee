"""Detach and pool: the half of passaging and harvest that is the same.

Bench version, per plate: aspirate the medium (leaving a wet residual; a tip per
well, discarded from above the waste), wash with PBS and aspirate it (again a tip
per well), add the detachment enzyme, incubate at 37 C for the set time,
neutralise with medium, resuspend each well by pipetting and pool everything into
a tube, then count a sample of the pool. How many cells lift, and how many the
enzyme kills, the culture model decides from the incubation time.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from devices.cell_counter import CountResult
from protocols.checks import DeckName, Role, check_empty, check_roles
from protocols.pipetting import (
    TipSupply,
    check_supplies,
    discard_tip,
    dispense_along_wall,
    parts,
    removal_groups,
    remove_to_waste,
    swap_tip,
    with_fresh_tip,
)
from protocols.selection import Target
from workcell.assembly.choices import Choice, choice
from workcell.assembly.workcell import Workcell
from workcell.store import Measurement

MIX_CYCLES = 2
MIX_SHARE = 0.8


class DetachParams(BaseModel):
    """Wash, enzyme, neutralisation and pooling: shared by passaging and harvest."""

    model_config = ConfigDict(extra="forbid", title="Detachment")

    wash_pbs_mL_per_cm2: float = Field(
        default=0.1, ge=0.02, le=0.5, title="PBS wash (mL/cm²)", description="PBS per wash"
    )
    enzyme_mL_per_cm2: float = Field(
        default=0.05,
        ge=0.01,
        le=0.3,
        title="Enzyme (mL/cm²)",
        description="detachment enzyme (e.g. TrypLE) per cm² of growth area",
    )
    enzyme_time_min: float = Field(
        default=5.0,
        ge=2,
        le=15,
        title="Enzyme time (min)",
        description="incubation at 37 °C; longer lifts more cells and kills more",
    )
    neutralise_ratio: float = Field(
        default=2.0,
        ge=1,
        le=5,
        title="Neutralising medium (× enzyme volume)",
        description="volumes of medium added per volume of enzyme",
    )
    residual_uL_per_cm2: float = Field(
        default=10.0,
        ge=5,
        le=100,
        title="Residual (µL/cm²)",
        description="liquid left on the cells after aspirating",
    )
    count_sample_uL: float = Field(
        default=20.0,
        ge=10,
        le=200,
        title="Count sample (µL)",
        description="taken from the pool for the cell counter",
    )
    medium_flow_uL_per_s: float = Field(
        default=100.0,
        ge=20,
        le=500,
        title="Dispense flow (µL/s)",
        description="how fast PBS and medium run down the well wall",
    )
    pbs_reservoir: DeckName = Field(
        default="pbs", title="PBS reservoir", json_schema_extra=choice(Choice.PBS)
    )
    enzyme_reservoir: DeckName = Field(
        default="enzyme", title="Enzyme reservoir", json_schema_extra=choice(Choice.ENZYME)
    )
    medium_reservoir: DeckName = Field(
        default="medium",
        title="Medium reservoir",
        description="neutralises the enzyme",
        json_schema_extra=choice(Choice.MEDIUM),
    )
    waste: DeckName = Field(
        default="waste",
        title="Waste",
        description="trough for spent medium and PBS",
        json_schema_extra=choice(Choice.WASTE),
    )
    pool_tube: DeckName = Field(
        default="pool_tube",
        title="Pool",
        description="empty tube (or trough) the detached cells are pooled in",
        json_schema_extra=choice(Choice.POOL),
    )

    def roles(self) -> list[tuple[str, Role]]:
        return [
            (self.pbs_reservoir, Role.PBS),
            (self.enzyme_reservoir, Role.ENZYME),
            (self.medium_reservoir, Role.MEDIUM),
            (self.waste, Role.WASTE),
            (self.pool_tube, Role.POOL),
        ]


class DetachStep(BaseModel):
    vessel: str
    plate: str
    remove_uL: float
    pbs_uL: float
    enzyme_uL: float
    medium_uL: float
    residual_uL: float


class DetachPlan(BaseModel):
    steps: list[DetachStep]
    tips: int
    tip_groups: list[list[float]] = Field(
        default_factory=list, description="the transfer volumes of each tip, in order"
    )
    reagents_uL: dict[str, float]
    waste_uL: float
    pool_uL: float


def plan_detach(
    wc: Workcell, targets: list[Target], d: DetachParams, problems: list[str]
) -> DetachPlan:
    check_roles(wc, d.roles(), problems)
    check_empty(wc, d.pool_tube, "pool tube", problems)
    steps = []
    for t in targets:
        residual = d.residual_uL_per_cm2 * t.area_cm2
        enzyme = d.enzyme_mL_per_cm2 * t.area_cm2 * 1000
        steps.append(
            DetachStep(
                vessel=t.vessel,
                plate=t.plate,
                remove_uL=max(0.0, t.well.tracker.get_used_volume() - residual),
                pbs_uL=d.wash_pbs_mL_per_cm2 * t.area_cm2 * 1000,
                enzyme_uL=enzyme,
                medium_uL=enzyme * d.neutralise_ratio,
                residual_uL=residual,
            )
        )
    reagents = {
        d.pbs_reservoir: sum(s.pbs_uL for s in steps),
        d.enzyme_reservoir: sum(s.enzyme_uL for s in steps),
        d.medium_reservoir: sum(s.medium_uL for s in steps),
    }
    waste = sum(s.remove_uL + s.pbs_uL for s in steps)
    pool = sum(s.residual_uL + s.enzyme_uL + s.medium_uL for s in steps)
    for t, s in zip(targets, steps, strict=True):
        peak = s.residual_uL + s.enzyme_uL + s.medium_uL
        if max(peak, s.residual_uL + s.pbs_uL) > t.well.max_volume:
            problems.append(f"vessel {t.vessel} cannot hold {peak / 1000:.2f} mL")
    check_supplies(wc, reagents, problems, waste={d.waste: waste, d.pool_tube: pool})
    groups = _tip_groups(steps)
    return DetachPlan(
        steps=steps,
        tips=len(groups),
        tip_groups=groups,
        reagents_uL=reagents,
        waste_uL=waste,
        pool_uL=pool,
    )


def _pooled_uL(s: DetachStep) -> float:
    return s.residual_uL + s.enzyme_uL + s.medium_uL


def _tip_groups(steps: list[DetachStep]) -> list[list[float]]:
    """What each tip moves, in the order ``detach_and_pool`` takes them: per plate, a tip
    per well for its spent medium, one for PBS in, a tip per well for the PBS out, one
    for the enzyme (before the incubation); then one for the neutralising medium and
    one for mixing and pooling (after it). The plan counts tips from these groups."""
    plates = list(dict.fromkeys(s.plate for s in steps))
    before: list[list[float]] = []
    after: list[list[float]] = []
    for plate in plates:
        g = [s for s in steps if s.plate == plate]
        before += removal_groups([s.remove_uL for s in g])
        before += [[s.pbs_uL for s in g]]
        before += removal_groups([s.pbs_uL for s in g])
        before += [[s.enzyme_uL for s in g]]
        after += [[s.medium_uL for s in g], [_pooled_uL(s) for s in g]]
    return before + after


async def detach_and_pool(
    wc: Workcell, targets: list[Target], plan: DetachPlan, d: DetachParams, actor: str
) -> CountResult:
    """Carry out the plan; the plates are on the deck. Returns the count of the pool."""
    lh = wc.liquid_handler
    tips = TipSupply.of(wc)
    wells = {t.vessel: t.well for t in targets}
    waste = wc.container(d.waste)
    pbs = wc.container(d.pbs_reservoir)
    enzyme = wc.container(d.enzyme_reservoir)
    medium = wc.container(d.medium_reservoir)
    pool = wc.container(d.pool_tube)
    plates = list(dict.fromkeys(s.plate for s in plan.steps))

    for plate in plates:
        group = [s for s in plan.steps if s.plate == plate]
        for s in group:  # spent medium out, a tip per well
            await remove_to_waste(lh, tips, wells[s.vessel], waste, s.remove_uL)
        await with_fresh_tip(lh, tips, [s.pbs_uL for s in group])
        for s in group:
            await dispense_along_wall(
                lh, pbs, wells[s.vessel], s.pbs_uL, tips, d.medium_flow_uL_per_s
            )
        await discard_tip(lh, tips)
        for s in group:  # PBS out, a tip per well
            await remove_to_waste(lh, tips, wells[s.vessel], waste, s.pbs_uL)
        await with_fresh_tip(lh, tips, [s.enzyme_uL for s in group])
        for s in group:  # down the wall, from above: the enzyme tip never touches the cells
            await dispense_along_wall(
                lh, enzyme, wells[s.vessel], s.enzyme_uL, tips, d.medium_flow_uL_per_s
            )
        await discard_tip(lh, tips)
        wc.event("enzyme_added", actor, plate=plate, vessels=[s.vessel for s in group])

    # incubate at 37 C for the enzyme time
    for plate in plates:
        await wc.store_plate(plate)
    await wc.devices_free_for(d.enzyme_time_min * 60, "enzyme")
    for plate in plates:
        await wc.fetch_plate(plate)
    wc.event("enzyme_incubated", actor, plates=plates, minutes=d.enzyme_time_min)

    for plate in plates:
        group = [s for s in plan.steps if s.plate == plate]
        await with_fresh_tip(lh, tips, [s.medium_uL for s in group])
        for s in group:
            await dispense_along_wall(
                lh, medium, wells[s.vessel], s.medium_uL, tips, d.medium_flow_uL_per_s
            )
        await swap_tip(lh, tips, [_pooled_uL(s) for s in group])
        max_part = tips.max_volume_uL()
        for s in group:
            well = wells[s.vessel]
            volume = well.tracker.get_used_volume()
            for _ in range(MIX_CYCLES):  # resuspend: pipette up and down over the surface
                part = min(max_part, MIX_SHARE * volume)
                await lh.aspirate([well], vols=[part], use_channels=tips.channels)
                await lh.dispense([well], vols=[part], use_channels=tips.channels)
            for part in parts(well.tracker.get_used_volume(), max_part):
                await lh.aspirate([well], vols=[part], use_channels=tips.channels)
                await lh.dispense([pool], vols=[part], use_channels=tips.channels)
        await discard_tip(lh, tips)
        wc.event("pooled", actor, plate=plate, vessels=[s.vessel for s in group], pool=d.pool_tube)

    count = await wc.cell_counter.count(d.pool_tube, d.count_sample_uL)
    # the counter's cassette is filled from the pool tube (by the counter's sampler or
    # the operator); the deck model's volume follows
    pool.tracker.remove_liquid(d.count_sample_uL)
    pool.tracker.commit()
    now = wc.clock.now()
    for kind, value, unit in (
        ("pool_viable_per_mL", count.viable_per_mL, "cells/mL"),
        ("pool_viability", count.viability_percent, "%"),
        ("pool_volume", pool.tracker.get_used_volume(), "uL"),
    ):
        wc.store.add_measurement(
            Measurement(
                vessel_id=None,
                kind=kind,
                value=value,
                unit=unit,
                time=now,
                source=wc.cell_counter.name,
            )
        )
    wc.event("counted", wc.cell_counter.name, pool=d.pool_tube, **count.model_dump())
    return count
