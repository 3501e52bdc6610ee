"""Harvest: detach every vessel of a batch, pool, count, and report the dose.

Bench version: the same wash, enzyme, neutralisation and pooling as a passage, for
all the batch's plates into one tube; then a count of the pool gives the total
viable cells, the viability and the dose for the patient (viable cells per kg of
body weight), compared with the target dose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from devices.cell_counter import CountResult
from protocols.checks import DeckName, DeckNames
from protocols.detachment import DetachParams, DetachPlan, detach_and_pool, plan_detach
from protocols.pipetting import TipSupply, plan_tips
from protocols.selection import Target, active_vessels
from workcell.assembly.choices import Choice, choice
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused
from workcell.store import Measurement

NAME = "harvest"


class HarvestParams(BaseModel):
    """The batch's plates, and the dose they are for."""

    model_config = ConfigDict(extra="forbid", title="Harvest")

    plates: DeckNames = Field(
        min_length=1,
        title="Plates",
        description="the batch's plates: every vessel on them is detached and pooled",
        json_schema_extra=choice(Choice.PLATE),
    )
    patient_weight_kg: float = Field(
        default=70.0, ge=1, le=250, title="Patient weight (kg)", description="for the dose"
    )
    target_dose_cells_per_kg: float = Field(
        default=2.0e6,
        ge=1e4,
        le=1e8,
        title="Target dose (cells/kg)",
        description="viable cells per kg of body weight, e.g. 2000000",
    )
    detach: DetachParams = Field(
        default_factory=DetachParams,
        title="Detachment",
        description="wash, enzyme, neutralisation and pooling",
    )
    part: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        title="Part",
        description="this batch's number, when a harvest is done in batches (else empty)",
    )
    parts: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        title="Parts",
        description="how many batches the harvest is done in (else empty)",
    )
    collect_into: DeckName = Field(
        default="harvest_bag",
        title="Collect into",
        description="off-deck container each counted batch is collected into (batches only)",
    )


class HarvestResult(BaseModel):
    vessels: list[str]
    count: CountResult
    pool_volume_mL: float
    total_viable_cells: float
    viability_percent: float
    dose_cells_per_kg: float
    target_dose_cells_per_kg: float
    dose_reached: bool
    reagents_uL: dict[str, float]
    tips_used: int
    started: datetime
    finished: datetime


@dataclass(frozen=True)
class HarvestPlan:
    targets: list[Target]
    detach: DetachPlan

    @property
    def tips(self) -> int:
        return self.detach.tips


def plan(wc: Workcell, params: HarvestParams) -> HarvestPlan:
    """Every vessel, volume, reservoir role and tip of the harvest, checked; or refused."""
    problems: list[str] = []
    targets = active_vessels(wc, params.plates, [], problems)
    detach = plan_detach(wc, targets, params.detach, problems)
    plan_tips(TipSupply.of(wc), detach.tip_groups, problems)
    if problems:
        raise ProtocolRefused(NAME, problems)
    return HarvestPlan(targets, detach)


async def run(wc: Workcell, params: HarvestParams, actor: str = NAME) -> HarvestResult:
    hp = plan(wc, params)
    targets, detach, d = hp.targets, hp.detach, params.detach

    started = wc.clock.now()
    wc.event("protocol_started", actor, protocol=NAME, params=params.model_dump(mode="json"))
    for plate in params.plates:
        if wc.in_incubator(plate):
            await wc.fetch_plate(plate)
    try:
        count = await detach_and_pool(wc, targets, detach, d, actor)
    except Exception as err:
        wc.event(
            "protocol_fault",
            actor,
            protocol=NAME,
            error=f"{type(err).__name__}: {err}",
            vessels=[t.vessel for t in targets],
        )
        raise
    wc.store.set_state([t.vessel for t in targets], "harvested", wc.clock.now())
    volume_mL = wc.container(d.pool_tube).tracker.get_used_volume() / 1000
    total = count.viable_per_mL * volume_mL
    viability = count.viability_percent
    if params.parts is not None:
        _collect(wc, d.pool_tube, params, total, viability, volume_mL, actor, targets)
        if (params.part or 1) < params.parts:
            return HarvestResult(
                vessels=[t.vessel for t in targets],
                count=count,
                pool_volume_mL=volume_mL,
                total_viable_cells=total,
                viability_percent=viability,
                dose_cells_per_kg=total / params.patient_weight_kg,
                target_dose_cells_per_kg=params.target_dose_cells_per_kg,
                dose_reached=False,
                reagents_uL=detach.reagents_uL,
                tips_used=detach.tips,
                started=started,
                finished=wc.clock.now(),
            )
        parts = wc.store.events("harvest_part")  # the whole lot: every batch's count
        total = sum(e.data["viable_cells"] for e in parts)
        dead = sum(e.data["viable_cells"] * (100 / e.data["viability_percent"] - 1) for e in parts)
        viability = 100 * total / (total + dead) if total > 0 else 0.0
        volume_mL = sum(e.data["volume_mL"] for e in parts)
        targets = [t for e in parts for t in e.data["vessels"]]  # type: ignore[misc]
    dose = total / params.patient_weight_kg
    reached = dose >= params.target_dose_cells_per_kg
    now = wc.clock.now()
    for kind, value, unit in (
        ("harvest_viable_cells", total, "cells"),
        ("harvest_dose", dose, "cells/kg"),
    ):
        wc.store.add_measurement(
            Measurement(vessel_id=None, kind=kind, value=value, unit=unit, time=now, source=actor)
        )
    vessel_names = [t if isinstance(t, str) else t.vessel for t in targets]
    wc.event(
        "harvested",
        actor,
        vessels=vessel_names,
        viable_cells=total,
        viability_percent=viability,
        dose_cells_per_kg=dose,
        decision=f"dose {dose:.3g} cells/kg {'>=' if reached else '<'} target "
        f"{params.target_dose_cells_per_kg:.3g}",
    )
    return HarvestResult(
        vessels=vessel_names,
        count=count,
        pool_volume_mL=volume_mL,
        total_viable_cells=total,
        viability_percent=viability,
        dose_cells_per_kg=dose,
        target_dose_cells_per_kg=params.target_dose_cells_per_kg,
        dose_reached=reached,
        reagents_uL=detach.reagents_uL,
        tips_used=detach.tips,
        started=started,
        finished=wc.clock.now(),
    )


def _collect(
    wc: Workcell,
    pool: str,
    params: HarvestParams,
    viable: float,
    viability: float,
    volume_mL: float,
    actor: str,
    targets: list[Target],
) -> None:
    """A counted batch's pool goes off the deck into the lot's container (a bag or bottle)."""
    c = wc.container(pool)
    volume = c.tracker.get_used_volume()
    c.tracker.remove_liquid(volume)
    c.tracker.commit()
    if wc.culture is not None:
        wc.culture.load(params.collect_into, wc.culture.withdraw(pool, volume))
    wc.event(
        "harvest_part",
        actor,
        part=params.part,
        parts=params.parts,
        vessels=[t.vessel for t in targets],
        viable_cells=viable,
        viability_percent=viability,
        volume_mL=volume_mL,
        collected_into=params.collect_into,
    )
