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

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from protocols.checks import DeckName, DeckNames, Role, WellNames, check_roles
from protocols.pipetting import TipSupply, check_supplies, plan_tips, removal_groups
from protocols.recovery.columns import add_each, columns, drain_each, group_key
from protocols.recovery.resumable import Tip, add, unit
from protocols.recovery.without_liquid import check_without_liquid
from protocols.selection import Target, active_vessels
from workcell.assembly.choices import Choice, choice
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused
from workcell.labware import growth_area_cm2
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
    """Feed the vessels. Resumable: re-entered after an interruption, a vessel whose
    medium was drawn off gets its fresh medium at once, and none twice."""
    p = MediaExchangePlan.model_validate(
        wc.journal.once(
            f"{NAME}:plan",
            lambda: plan(wc, params)[0].model_dump(mode="json"),
            vessels=lambda kept: [v["vessel"] for v in kept["vessels"]],
        )
    )
    tips = TipSupply.of(wc)
    medium = wc.container(params.medium_reservoir)
    waste = wc.container(params.waste)
    wells = {x.vessel: wc.container(x.vessel) for x in p.vessels}
    started = datetime.fromisoformat(
        wc.journal.once(f"{NAME}:started", lambda: wc.clock.now().isoformat())
    )
    async with unit(wc, f"{NAME}:protocol_started", []) as u:
        if not u.done:
            u.then(
                lambda: wc.event(
                    "protocol_started", actor, protocol=NAME, params=params.model_dump(mode="json")
                )
            )
    done: list[str] = []
    per_vessel = params.tips is TipPolicy.PER_VESSEL

    def residual(vessel: str) -> float:
        return params.residual_uL_per_cm2 * growth_area_cm2(wells[vessel])  # type: ignore[arg-type]

    async def feed(x: PlannedExchange, shared: Tip) -> None:
        async with unit(wc, f"add:{x.vessel}", [x.vessel]) as u:
            if not u.done:
                check_without_liquid(
                    wc, x.vessel, f"remove:{x.vessel}", f"add:{x.vessel}", "fresh medium"
                )
                async with Tip(wc, tips, f"add:{x.vessel}", [x.add_uL]) as own:
                    tip = own if per_vessel else shared
                    await add(
                        wc,
                        tip,
                        medium,
                        wells[x.vessel],
                        x.add_uL,
                        params.dispense_flow_uL_per_s,
                        along_wall=True,
                    )
                u.then(_fed(wc, x, actor))

    async def feed_column(xs: list[PlannedExchange]) -> None:
        vessels = [x.vessel for x in xs]
        key = group_key("add", vessels)
        async with unit(wc, key, vessels, marks=[f"add:{v}" for v in vessels]) as u:
            if u.done:
                return
            todo = [x for x in xs if not wc.journal.done(f"add:{x.vessel}")]
            for x in todo:
                check_without_liquid(wc, x.vessel, f"remove:{x.vessel}", key, "fresh medium")
                u.then(_fed(wc, x, actor))
            await add_each(
                wc,
                tips,
                key,
                medium,
                [wells[x.vessel] for x in todo],
                [x.add_uL for x in todo],
                params.dispense_flow_uL_per_s,
                along_wall=True,
            )

    try:
        async with wc.plates_on_deck(list(dict.fromkeys(x.plate for x in p.vessels))):
            for plate in dict.fromkeys(x.plate for x in p.vessels):
                group = [x for x in p.vessels if x.plate == plate]
                # resumed with some vessels drained and others not: the drained get their
                # fresh medium at once, before the rest are drained (declarations.py)
                drained = [x for x in group if _drained_unfed(wc, x.vessel)]
                if drained and any(not wc.journal.done(f"remove:{x.vessel}") for x in group):
                    async with Tip(wc, tips, f"add:{plate}", [x.add_uL for x in drained]) as first:
                        for x in drained:
                            await feed(x, first)
                # spent medium out, a tip per vessel (it never touches another culture
                # after the waste); then fresh in, a tip per vessel or one for the plate.
                # A plate column's vessels go together on a multi-channel pipette, each
                # on its own channel and tip (recovery/columns.py)
                await drain_each(
                    wc,
                    tips,
                    "remove",
                    [x.vessel for x in group],
                    [x.remove_uL for x in group],
                    waste,
                    [residual(x.vessel) for x in group],
                )
                in_uL = [x.add_uL for x in group if x.add_uL > 0] or [0.0]
                async with Tip(wc, tips, f"add:{plate}", in_uL) as shared:
                    together = _columns(wc, tips, group, "add_uL") if per_vessel else None
                    for xs in together or [[x] for x in group]:
                        if len(xs) > 1:
                            await feed_column(xs)
                        else:
                            await feed(xs[0], shared)
                        done.extend(x.vessel for x in xs)
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
    async with unit(wc, f"{NAME}:protocol_finished", []) as u:
        if not u.done:
            u.then(lambda: wc.event("protocol_finished", actor, protocol=NAME, vessels=len(done)))
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


def _fed(wc: Workcell, x: PlannedExchange, actor: str) -> Callable[[], None]:
    def write() -> None:
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
        wc.event("fed", actor, vessel_id=x.vessel, removed_uL=x.remove_uL, added_uL=x.add_uL)

    return write


def _columns(
    wc: Workcell, tips: TipSupply, group: list[PlannedExchange], volume: str
) -> list[list[PlannedExchange]]:
    """The plate's vessels in the groups worked together (``volume``: the field each moves)."""
    batches = columns(wc, tips, [x.vessel for x in group], [getattr(x, volume) for x in group])
    return [[group[i] for i in batch] for batch in batches]


def _drained_unfed(wc: Workcell, vessel: str) -> bool:
    return (
        wc.journal.resumed
        and wc.journal.done(f"remove:{vessel}")
        and not wc.journal.done(f"add:{vessel}")
    )
