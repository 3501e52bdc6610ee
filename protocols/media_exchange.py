"""Media exchange (feeding): spent medium out, fresh pre-warmed medium in.

Bench version: for each vessel, aspirate the spent medium down to a residual that
keeps the monolayer wet, then run fresh medium slowly down the wall of the well.
Tips are changed per vessel (the safe default: no carry-over between cultures) or
per plate, as the parameters say. The plates come out of the incubator for it and
go back after.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from protocols.pipetting import TipSupply, check_supplies, plan_tips
from protocols.recovery.declarations import MEDIA_EXCHANGE
from protocols.recovery.resumable import Tip, add, remove, unit
from protocols.selection import Target, active_vessels
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused
from workcell.labware import growth_area_cm2
from workcell.store import Measurement

NAME = "media_exchange"


class TipPolicy(StrEnum):
    PER_VESSEL = "per_vessel"
    PER_PLATE = "per_plate"


class MediaExchangeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plates: list[str] = Field(min_length=1, description="plates whose vessels are fed")
    wells: list[str] = Field(default_factory=list, description="wells to feed (empty: all)")
    medium_mL_per_cm2: float = Field(default=0.2, ge=0.05, le=1.0)
    residual_uL_per_cm2: float = Field(
        default=10.0, ge=5.0, le=100.0, description="left on the cells so they never dry"
    )
    dispense_flow_uL_per_s: float = Field(default=100.0, ge=20, le=500)
    tips: TipPolicy = TipPolicy.PER_VESSEL
    medium_reservoir: str = "medium"
    waste: str = "waste"


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
    """What each tip moves: spent medium out, fresh in; per vessel, or per plate each way."""
    if policy is TipPolicy.PER_VESSEL:
        return [g for x in planned for g in ([x.remove_uL], [x.add_uL])]
    groups = []
    for plate in dict.fromkeys(x.plate for x in planned):
        group = [x for x in planned if x.plate == plate]
        groups += [[x.remove_uL for x in group], [x.add_uL for x in group]]
    return groups


async def run(wc: Workcell, params: MediaExchangeParams, actor: str = NAME) -> MediaExchangeResult:
    """Feed the vessels. Resumable: re-entered after an interruption, a vessel whose
    medium was drawn off gets its fresh medium at once, and none twice."""
    p = MediaExchangePlan.model_validate(
        wc.journal.once(f"{NAME}:plan", lambda: plan(wc, params)[0].model_dump(mode="json"))
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

    try:
        async with wc.plates_on_deck(list(dict.fromkeys(x.plate for x in p.vessels))):
            for plate in dict.fromkeys(x.plate for x in p.vessels):
                group = [x for x in p.vessels if x.plate == plate]
                # spent medium out, then fresh in (a fresh tip each way)
                out_uL = [x.remove_uL for x in group]
                async with Tip(wc, tips, f"remove:{plate}", out_uL) as shared:
                    for x in group:
                        async with unit(wc, f"remove:{x.vessel}", [x.vessel]) as u:
                            if u.done:
                                continue
                            own_tip = Tip(wc, tips, f"remove:{x.vessel}", [x.remove_uL])
                            async with own_tip as own:
                                tip = own if per_vessel else shared
                                await remove(wc, tip, wells[x.vessel], waste, residual(x.vessel))
                in_uL = [x.add_uL for x in group]
                async with Tip(wc, tips, f"add:{plate}", in_uL) as shared:
                    for x in group:
                        async with unit(wc, f"add:{x.vessel}", [x.vessel]) as u:
                            if not u.done:
                                _check_without_medium(wc, x.vessel)
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
                        done.append(x.vessel)
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


def _check_without_medium(wc: Workcell, vessel: str) -> None:
    """Resumed with a vessel drained and not fed: past the window, a deviation names it."""
    if not wc.journal.resumed:
        return
    drained = [
        r["time"]
        for r in wc.journal.rows()
        if r["kind"] == "unit" and r["key"] == f"remove:{vessel}"
    ]
    if not drained:
        return
    minutes = (wc.clock.now() - drained[0]).total_seconds() / 60
    window = MEDIA_EXCHANGE.windows.without_medium_max_min
    wc.journal.recovery(
        f"fresh medium into {vessel} at once",
        f"its spent medium was drawn off {minutes:.0f} min ago, before the interruption",
        [vessel],
    )
    if minutes > window:
        wc.event(
            "deviation",
            "workcell",
            vessel_id=vessel,
            message=f"{vessel} stood {minutes:.0f} min under its residual without medium "
            f"(window {window:g} min) after an interruption",
            vessels=[vessel],
        )
