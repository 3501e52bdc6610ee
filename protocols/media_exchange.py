"""Media exchange (feeding): spent medium out, fresh pre-warmed medium in.

Bench version: for each vessel, aspirate the spent medium down to a residual that
keeps the monolayer wet, then run fresh medium slowly down the wall of the well.
Spent medium leaves each vessel with a tip of its own, taken near the wall and
slowly, and discarded from above the waste (a tip that discarded into waste never
enters another culture). Fresh medium goes in with a fresh tip per vessel (the safe
default: no carry-over between cultures) or one per plate, as the parameters say.
The plates come out of the incubator for it and go back after.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from protocols.checks import DeckName, DeckNames, Role, WellNames, check_roles
from protocols.pipetting import (
    TipSupply,
    check_supplies,
    discard_tip,
    dispense_along_wall,
    plan_tips,
    removal_groups,
    remove_to_waste,
    with_fresh_tip,
)
from protocols.selection import Target, active_vessels
from workcell.assembly.choices import Choice, choice
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused
from workcell.store import Measurement

NAME = "media_exchange"


class TipPolicy(StrEnum):
    PER_VESSEL = "per_vessel"
    PER_PLATE = "per_plate"


class MediaExchangeParams(BaseModel):
    """Which vessels are fed, and how."""

    model_config = ConfigDict(extra="forbid", title="Feed (media exchange)")

    plates: DeckNames = Field(
        min_length=1,
        title="Plates",
        description="plates whose vessels are fed (they come out of the incubator and go back)",
        json_schema_extra=choice(Choice.PLATE),
    )
    wells: WellNames = Field(
        default_factory=list,
        title="Wells",
        description="wells to feed on every plate; empty: every vessel of the plates",
        json_schema_extra=choice(Choice.WELL),
    )
    medium_mL_per_cm2: float = Field(
        default=0.2,
        ge=0.05,
        le=1.0,
        title="Medium (mL/cm²)",
        description="fresh medium per cm² of growth area after the exchange",
    )
    residual_uL_per_cm2: float = Field(
        default=10.0,
        ge=5.0,
        le=100.0,
        title="Residual (µL/cm²)",
        description="spent medium left on the cells so they never dry",
    )
    dispense_flow_uL_per_s: float = Field(
        default=100.0,
        ge=20,
        le=500,
        title="Dispense flow (µL/s)",
        description="how fast fresh medium runs down the well wall (slow spares the cells)",
    )
    tips: TipPolicy = Field(
        default=TipPolicy.PER_VESSEL,
        title="Tips",
        description="a fresh tip per vessel (no carry-over between cultures) or per plate",
    )
    medium_reservoir: DeckName = Field(
        default="medium",
        title="Medium reservoir",
        description="reservoir of fresh, pre-warmed medium",
        json_schema_extra=choice(Choice.MEDIUM),
    )
    waste: DeckName = Field(
        default="waste",
        title="Waste",
        description="trough the spent medium goes to",
        json_schema_extra=choice(Choice.WASTE),
    )


class PlannedExchange(BaseModel):
    vessel: str
    plate: str
    remove_uL: float
    add_uL: float


class MediaExchangePlan(BaseModel):
    vessels: list[PlannedExchange]
    tips: int


class MediaExchangeResult(BaseModel):
    vessels: list[PlannedExchange]
    tips_used: int
    reagents_uL: dict[str, float]
    started: datetime
    finished: datetime


def plan(wc: Workcell, params: MediaExchangeParams) -> tuple[MediaExchangePlan, list[Target]]:
    problems: list[str] = []
    targets = active_vessels(wc, params.plates, params.wells, problems)
    check_roles(wc, [(params.medium_reservoir, Role.MEDIUM), (params.waste, Role.WASTE)], problems)
    planned = []
    for t in targets:
        residual = params.residual_uL_per_cm2 * t.area_cm2
        current = t.well.tracker.get_used_volume()
        total = params.medium_mL_per_cm2 * t.area_cm2 * 1000.0
        if total <= residual:
            problems.append(f"vessel {t.vessel}: the new volume is not above the residual")
        if total > t.well.max_volume:
            problems.append(
                f"vessel {t.vessel} holds {t.well.max_volume / 1000:.2f} mL; feeding would "
                f"put {total / 1000:.2f} mL in it"
            )
        remove = max(0.0, current - residual)
        planned.append(
            PlannedExchange(
                vessel=t.vessel,
                plate=t.plate,
                remove_uL=remove,
                add_uL=max(0.0, total - (current - remove)),
            )
        )
    tips = plan_tips(TipSupply.of(wc), _tip_groups(planned, params.tips), problems)
    check_supplies(
        wc,
        {params.medium_reservoir: sum(p.add_uL for p in planned)},
        problems,
        waste={params.waste: sum(p.remove_uL for p in planned)},
    )
    if problems:
        raise ProtocolRefused(NAME, problems)
    return MediaExchangePlan(vessels=planned, tips=tips), targets


def _tip_groups(planned: list[PlannedExchange], policy: TipPolicy) -> list[list[float]]:
    """What each tip moves, in the order ``run`` takes them: per plate, a tip per vessel
    for its spent medium; then fresh medium, a tip per vessel or one for the plate."""
    groups: list[list[float]] = []
    for plate in dict.fromkeys(x.plate for x in planned):
        group = [x for x in planned if x.plate == plate]
        groups += removal_groups([x.remove_uL for x in group])
        adding = [x.add_uL for x in group if x.add_uL > 0]
        if policy is TipPolicy.PER_VESSEL:
            groups += [[v] for v in adding]
        elif adding:
            groups.append(adding)
    return groups


async def run(wc: Workcell, params: MediaExchangeParams, actor: str = NAME) -> MediaExchangeResult:
    p, targets = plan(wc, params)
    lh = wc.liquid_handler
    tips = TipSupply.of(wc)
    medium = wc.container(params.medium_reservoir)
    waste = wc.container(params.waste)
    wells = {t.vessel: t.well for t in targets}
    started = wc.clock.now()
    wc.event("protocol_started", actor, protocol=NAME, params=params.model_dump(mode="json"))
    done: list[str] = []
    try:
        async with wc.plates_on_deck(list(dict.fromkeys(x.plate for x in p.vessels))):
            for plate in dict.fromkeys(x.plate for x in p.vessels):
                group = [x for x in p.vessels if x.plate == plate]
                per_vessel = params.tips is TipPolicy.PER_VESSEL
                # spent medium out, a tip per vessel; then fresh in
                for x in group:
                    await remove_to_waste(lh, tips, wells[x.vessel], waste, x.remove_uL)
                adding = [x.add_uL for x in group if x.add_uL > 0]
                shared = not per_vessel and bool(adding)
                if shared:
                    await with_fresh_tip(lh, tips, adding)
                for x in group:
                    fresh = per_vessel and x.add_uL > 0
                    if fresh:
                        await with_fresh_tip(lh, tips, [x.add_uL])
                    await dispense_along_wall(
                        lh,
                        medium,
                        wells[x.vessel],
                        x.add_uL,
                        tips,
                        params.dispense_flow_uL_per_s,
                    )
                    if fresh:
                        await discard_tip(lh, tips)
                    done.append(x.vessel)
                    wc.store.add_measurement(
                        Measurement(
                            vessel_id=x.vessel,
                            kind="medium_exchanged",
                            value=x.add_uL,
                            unit="uL",
                            time=wc.clock.now(),
                            source=actor,
                        )
                    )
                    wc.event(
                        "fed", actor, vessel_id=x.vessel, removed_uL=x.remove_uL, added_uL=x.add_uL
                    )
                if shared:
                    await discard_tip(lh, tips)
    except Exception as err:
        wc.event(
            "protocol_fault",
            actor,
            protocol=NAME,
            error=f"{type(err).__name__}: {err}",
            fed=done,
            not_fed=[x.vessel for x in p.vessels if x.vessel not in done],
        )
        raise
    wc.event("protocol_finished", actor, protocol=NAME, vessels=len(done))
    return MediaExchangeResult(
        vessels=p.vessels,
        tips_used=p.tips,
        reagents_uL={
            params.medium_reservoir: sum(x.add_uL for x in p.vessels),
            params.waste: sum(x.remove_uL for x in p.vessels),
        },
        started=started,
        finished=wc.clock.now(),
    )
