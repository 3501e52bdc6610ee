"""Harvest: detach every vessel of a batch, pool, count, and report the dose.

Bench version: the same wash, enzyme, neutralisation and pooling as a passage, for
all the batch's plates into one tube; then a count of the pool gives the total
viable cells, the viability and the dose for the patient (viable cells per kg of
body weight), compared with the target dose.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from devices.cell_counter import CountResult
from protocols.checks import DeckName, DeckNames
from protocols.detachment import DetachParams, DetachPlan, detach_and_pool, once_event, plan_detach
from protocols.pipetting import TipSupply, plan_tips
from protocols.recovery.resumable import unit
from protocols.selection import active_vessels, targets_named
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


class HarvestPlan(BaseModel):
    vessels: list[str]
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
    return HarvestPlan(vessels=[t.vessel for t in targets], detach=detach)


async def run(wc: Workcell, params: HarvestParams, actor: str = NAME) -> HarvestResult:
    """Detach, pool and count the batch. Resumable (``protocols/recovery``)."""
    hp = HarvestPlan.model_validate(
        wc.journal.once(
            f"{NAME}:plan",
            lambda: plan(wc, params).model_dump(mode="json"),
            vessels=lambda kept: list(kept["vessels"]),
        )
    )
    targets = targets_named(wc, hp.vessels)
    detach, d = hp.detach, params.detach
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
    # each plate is fetched from the incubator at its turn (``detach_and_pool``)
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
    batch = [t.vessel for t in targets]
    # the pool as counted (kept: a batch's pool leaves the deck once it is collected)
    pooled = wc.journal.once(
        f"{NAME}:pooled",
        lambda: {"volume_mL": wc.container(d.pool_tube).tracker.get_used_volume() / 1000},
    )
    volume_mL = float(pooled["volume_mL"])
    total = count.viable_per_mL * volume_mL
    viability = count.viability_percent
    if params.parts is not None:
        async with unit(wc, f"{NAME}:collected", batch) as u:
            if not u.done:
                _collect(wc, d.pool_tube, params, actor)
                now = wc.clock.now()

                def record_part() -> None:
                    wc.store.set_state(batch, "harvested", now)
                    wc.event(
                        "harvest_part",
                        actor,
                        part=params.part,
                        parts=params.parts,
                        vessels=batch,
                        viable_cells=total,
                        viability_percent=viability,
                        volume_mL=volume_mL,
                        collected_into=params.collect_into,
                    )

                u.then(record_part)
        if (params.part or 1) < params.parts:
            return HarvestResult(
                vessels=batch,
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
    vessel_names = (
        [v for e in wc.store.events("harvest_part") for v in e.data["vessels"]]
        if params.parts is not None
        else batch
    )
    dose = total / params.patient_weight_kg
    reached = dose >= params.target_dose_cells_per_kg
    now = wc.clock.now()
    async with unit(wc, f"{NAME}:harvested", batch) as u:
        if not u.done:

            def record() -> None:
                if params.parts is None:  # a batch of a lot is recorded as it is collected
                    wc.store.set_state(batch, "harvested", now)
                for kind, value, unit_ in (
                    ("harvest_viable_cells", total, "cells"),
                    ("harvest_dose", dose, "cells/kg"),
                ):
                    wc.store.add_measurement(
                        Measurement(
                            vessel_id=None,
                            kind=kind,
                            value=value,
                            unit=unit_,
                            time=now,
                            source=actor,
                        )
                    )
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

            u.then(record)
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


def _collect(wc: Workcell, pool: str, params: HarvestParams, actor: str) -> None:
    """A counted batch's pool goes off the deck into the lot's container (a bag or bottle).

    The operator's action, journaled; in a dry-run the lab moves the cells."""
    wc.collect(pool, params.collect_into, actor)
