"""Detach and pool: the half of passaging and harvest that is the same.

Bench version, plate by plate: fetch the plate from the incubator (at its turn),
aspirate the medium (leaving a wet residual; a tip per well, discarded from above
the waste), wash with PBS and aspirate it (again a tip per well), add the
detachment enzyme, incubate at 37 C for the set time, and neutralise with medium;
then the next plate. Once every plate is neutralised, each
well is resuspended by pipetting and everything is pooled into a tube, and a
sample of the pool is counted. How many cells lift, and how many the enzyme kills,
the culture model decides from the incubation time.

Each plate is an enzyme batch of its own, timed by itself: were all plates to get
their enzyme first and incubate together, the first plate would sit in enzyme for
its set time plus the time the others took (20.7 min against a set time of 5 and a
window of 8 on a campaign's harvest), and the culture model would over-digest it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pylabrobot.resources import Container

from devices.cell_counter import CountResult
from protocols.checks import DeckName, Role, check_empty, check_roles
from protocols.pipetting import TipSupply, check_supplies, removal_groups
from protocols.recovery.columns import add_shared, drain_each, rows_of
from protocols.recovery.holds import hold, quarantine
from protocols.recovery.resumable import Tip, remove, unit
from protocols.recovery.without_liquid import check_without_liquid
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
    groups = _tip_groups(wc, steps)
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


def _tip_groups(wc: Workcell, steps: list[DetachStep]) -> list[list[float]]:
    """What each tip moves, in the order ``detach_and_pool`` takes them: per plate, a tip
    per well for its spent medium, the PBS tips (one, or one per channel of a plate
    column, ``columns.add_shared``), a tip per well for the PBS out, the enzyme's
    (before its incubation) and the neutralising medium's (after it); then, per plate,
    one for mixing and pooling. The plan counts tips from these."""
    tips = TipSupply.of(wc)
    plates = list(dict.fromkeys(s.plate for s in steps))
    batches: list[list[float]] = []
    pooling: list[list[float]] = []
    for plate in plates:
        g = [s for s in steps if s.plate == plate]
        vessels = [s.vessel for s in g]
        batches += removal_groups([s.remove_uL for s in g])
        batches += rows_of(wc, tips, vessels, [s.pbs_uL for s in g])
        batches += removal_groups([s.pbs_uL for s in g])
        batches += rows_of(wc, tips, vessels, [s.enzyme_uL for s in g])
        batches += rows_of(wc, tips, vessels, [s.medium_uL for s in g])
        pooling += [[_pooled_uL(s) for s in g]]
    return batches + pooling


async def detach_and_pool(
    wc: Workcell, targets: list[Target], plan: DetachPlan, d: DetachParams, actor: str
) -> CountResult:
    """Carry out the plan; the plates are on the deck or in the incubator. Returns the count
    of the pool.

    Plate by plate: fetch (at its turn, so no plate waits on the deck for the others),
    drain, wash, enzyme, incubate (the plate alone, in the incubator,
    for the enzyme's set time from its last well's enzyme), neutralise; then the
    next plate. Once all are neutralised, each plate is resuspended and pooled.

    Resumable (``protocols/recovery``): re-entered after an interruption, each
    vessel's stages that are done are skipped, the one in progress is finished, no
    vessel gets a reagent twice, and a plate's enzyme time is counted from its last
    addition (its journal keys are the plate's own: ``incubate:<plate>``,
    ``enzyme_until:<plate>``, ``enzyme_window:<plate>``, ``enzyme_first:<plate>``);
    past its window the vessels are neutralised at once, quarantined, named in a
    deviation, and held for the operator before pooling.
    """
    tips = TipSupply.of(wc)
    wells = {t.vessel: t.well for t in targets}
    waste = wc.container(d.waste)
    pbs = wc.container(d.pbs_reservoir)
    enzyme = wc.container(d.enzyme_reservoir)
    medium = wc.container(d.medium_reservoir)
    pool = wc.container(d.pool_tube)
    plates = list(dict.fromkeys(s.plate for s in plan.steps))
    flow = d.medium_flow_uL_per_s

    async def stage(
        name: str,
        group: list[DetachStep],
        volumes: list[float],
        source: Container,
        before: Callable[[str, str], object] | None = None,
        purpose: str | None = None,
    ) -> None:
        """A reagent down the wall of each vessel (unit ``name:vessel``), with tips shared
        by the plate: a plate column per command where the channels allow."""
        await add_shared(
            wc,
            tips,
            f"{purpose or name}:{group[0].plate}",
            name,
            [s.vessel for s in group],
            volumes,
            source,
            flow,
            before,
        )

    async def neutralise(group: list[DetachStep], purpose: str | None = None) -> None:
        await stage("neutralise", group, [s.medium_uL for s in group], medium, purpose=purpose)

    last = plates[-1]
    for plate in plates:  # each plate is an enzyme batch of its own, timed by itself
        group = [s for s in plan.steps if s.plate == plate]
        vessels = [s.vessel for s in group]
        # only the last plate's incubation leaves the devices free for a scheduler: the
        # earlier ones are followed by the next plate's work, which must not wait
        lend = plate == last
        await _fetch_at_turn(wc, plate)
        await _finish_first_batch(wc, plate, group, d, neutralise, lend)
        # spent medium out, a tip per well; PBS in by the plate's tips; PBS out, a tip per
        # well (a plate column at a time where the pipette's channels can: recovery/columns.py)
        keep = [s.residual_uL for s in group]
        await drain_each(wc, tips, "drain", vessels, [s.remove_uL for s in group], waste, keep)

        def wash(vessel: str, adding: str) -> None:
            check_without_liquid(wc, vessel, f"drain:{vessel}", adding, "PBS")

        await stage("pbs", group, [s.pbs_uL for s in group], pbs, wash)
        await drain_each(wc, tips, "wash_out", vessels, [s.pbs_uL for s in group], waste, keep)
        if wc.journal.resumed and _enzyme_ago(wc, vessels):
            todo = [v for v in vessels if not wc.journal.done(f"enzyme:{v}")]
            if todo:
                wc.journal.recovery(
                    f"enzyme into the {len(todo)} vessels of {plate} that had none",
                    "the interruption came while the enzyme went in; a vessel that had it "
                    "(or, by its liquid level, may have had it) gets none again, and the "
                    "enzyme's time is counted from the plate's last addition",
                    todo,
                )

        def digest(vessel: str, adding: str) -> None:
            check_without_liquid(wc, vessel, f"wash_out:{vessel}", adding, "enzyme")

        # down the wall, from above: the enzyme tip never touches the cells
        await stage("enzyme", group, [s.enzyme_uL for s in group], enzyme, digest)
        once_event(wc, f"enzyme_added:{plate}", "enzyme_added", actor, plate=plate, vessels=vessels)
        await _incubate(wc, plate, vessels, d, plate, lend)
        once_event(
            wc,
            f"enzyme_incubated:{plate}",
            "enzyme_incubated",
            actor,
            plates=[plate],
            minutes=d.enzyme_time_min,
        )
        await _check_window(wc, plate, vessels, d)
        await neutralise(group)
        _check_neutralised_in_time(wc, plate, vessels, d)

    # over-exposed vessels, now neutralised and safe: the operator decides before pooling
    await _hold_if_over_exposed(wc, plan)
    for plate in plates:
        group = [s for s in plan.steps if s.plate == plate]
        async with Tip(wc, tips, f"pool:{plate}", [_pooled_uL(s) for s in group]) as tip:
            for s in group:
                async with unit(wc, f"pool:{s.vessel}", [s.vessel]) as u:
                    if not u.done:  # resuspended by the first aspirate's mix, then pooled
                        await remove(
                            wc, tip, wells[s.vessel], pool, 0.0, resuspend=(MIX_CYCLES, MIX_SHARE)
                        )
        once_event(
            wc,
            f"pooled:{plate}",
            "pooled",
            actor,
            plate=plate,
            vessels=[s.vessel for s in group],
            pool=d.pool_tube,
        )

    async with unit(wc, f"count:{d.pool_tube}", []) as u:
        if u.done:
            _, kept = wc.journal.remembered(f"count:{d.pool_tube}")
            return CountResult.model_validate(kept)
        # the counter's cassette is filled from the pool tube (by the counter's sampler or
        # the operator); the deck model's volume follows
        pool.tracker.remove_liquid(d.count_sample_uL)
        try:
            count = await wc.cell_counter.count(d.pool_tube, d.count_sample_uL)
        except BaseException:
            pool.tracker.rollback()
            raise
        pool.tracker.commit()
        now = wc.clock.now()

        def record() -> None:
            for kind, value, unit_ in (
                ("pool_viable_per_mL", count.viable_per_mL, "cells/mL"),
                ("pool_viability", count.viability_percent, "%"),
                ("pool_volume", pool.tracker.get_used_volume(), "uL"),
            ):
                wc.store.add_measurement(
                    Measurement(
                        vessel_id=None,
                        kind=kind,
                        value=value,
                        unit=unit_,
                        time=now,
                        source=wc.cell_counter.name,
                    )
                )
            wc.event("counted", wc.cell_counter.name, pool=d.pool_tube, **count.model_dump())
            wc.journal.remember(f"count:{d.pool_tube}", count.model_dump())

        u.then(record)
    return count


async def _fetch_at_turn(wc: Workcell, plate: str) -> None:
    """A plate comes out of the incubator at its turn, not with the others at the start.

    Fetched together, the last of n plates would wait on the deck for the n - 1 before
    it (about 21 min each): past the out-of-incubator window (90 min) from the sixth
    plate of a harvest. A plate in its enzyme incubation (a resumed step) stays in: its
    incubation (``_incubate``) brings it out when its time is up.
    """
    if not wc.in_incubator(plate):
        return
    if wc.journal.done(f"incubate_in:{plate}") or wc.journal.done(f"incubate_in:first:{plate}"):
        return
    await wc.fetch_plate(plate)


def once_event(wc: Workcell, key: str, kind: str, actor: str, **data: Any) -> None:
    """An event recorded once per step, whatever happens to the step."""
    if wc.journal.done(key):
        return
    with wc.store.transaction():
        wc.event(kind, actor, **data)
        wc.journal.mark_done(key, list(data.get("vessels", [])))


def enzyme_window_min(d: DetachParams) -> float:
    """The longest the enzyme may act: from a plate's last enzyme to its neutralisation,
    its set time plus the overrun the campaign's windows allow (``windows.py``)."""
    from protocols.campaign.windows import WindowParams  # windows imports the engine

    return d.enzyme_time_min + WindowParams().enzyme_over_min


def _enzyme_ago(wc: Workcell, vessels: list[str]) -> dict[str, float]:
    """How many seconds ago each vessel got its enzyme in this step (from its intent)."""
    now = wc.clock.now()
    out: dict[str, float] = {}
    for a in wc.journal.actions():
        if (
            a.outcome != "done"
            or a.action != "dispense"
            or not (a.unit or "").startswith("enzyme:")
        ):
            continue
        # the vessels its channels dispensed into (a plate column's unit has several)
        for op in a.data.get("ops", []):
            v = op.get("target")
            if v in vessels and v not in out and op.get("channel") not in a.failed_channels:
                out[v] = (now - a.time).total_seconds()
    return out


async def _incubate(
    wc: Workcell, plate: str, vessels: list[str], d: DetachParams, key: str, lend: bool
) -> None:
    """A plate's enzyme at 37 C, in the incubator, for its time; resumed, counted from the
    last addition to ``vessels`` (none left: the plate stays where it is).

    ``key`` names this incubation in the journal (its plate, or ``first:<plate>`` for a
    resumed plate's first batch); ``lend``: a scheduler may lend the devices out
    meanwhile (``Workcell.devices_free_for``), else the clock just waits.
    """
    if wc.journal.done(f"incubate:{key}"):
        return
    # from the last addition (the plate's trip into the incubator is part of the time):
    # in a fresh step, that is now; resumed, the journal says how long ago it was
    ago = _enzyme_ago(wc, vessels) if wc.journal.resumed else {}
    wait = d.enzyme_time_min * 60 - (min(ago.values()) if ago else 0.0)
    now = _lab_now(wc)
    until = datetime.fromisoformat(
        wc.journal.once(
            f"enzyme_until:{key}",
            lambda: (now + timedelta(seconds=max(0.0, wait))).isoformat(),
        )
    )
    async with unit(wc, f"incubate_in:{key}", []) as u:
        if not u.done and until > wc.clock.now() and not wc.in_slot(plate):
            await wc.store_plate(plate)
    left = (until - wc.clock.now()).total_seconds()
    if left > 0 and lend:  # no device is needed meanwhile: a scheduler may lend them out
        await wc.devices_free_for(left, "enzyme")
    elif left > 0:
        await wc.clock.sleep(left)
    async with unit(wc, f"incubate_out:{key}", []) as u:
        if not u.done and wc.in_incubator(plate):
            await wc.fetch_plate(plate)
    wc.journal.mark_done(f"incubate:{key}", [])


def _lab_now(wc: Workcell) -> datetime:
    """The time now, asked of the simulated lab if there is one: a liquid handler that is
    not the lab's own (an OT-2 behind its HTTP API) does not move the controller's view of
    the lab's time, which would otherwise lag by the pipetting just done."""
    if wc.lab is not None and wc.lab.clock is not None:
        wc.lab.clock.sync()
    return wc.clock.now()


async def _check_window(wc: Workcell, plate: str, vessels: list[str], d: DetachParams) -> None:
    """Resumed past a plate's enzyme window: a deviation naming its vessels and quarantine
    now; they are neutralised at once (next), and the operator decides once they are safe."""
    if not wc.journal.resumed or wc.journal.done(f"enzyme_window:{plate}"):
        return
    todo = [v for v in vessels if not wc.journal.done(f"neutralise:{v}")]
    ago = _enzyme_ago(wc, todo)
    if ago and min(ago.values()) > enzyme_window_min(d) * 60:
        _over_exposed(wc, ago, d, f"enzyme_window:{plate}")
    else:
        wc.journal.mark_done(f"enzyme_window:{plate}", sorted(ago))


def _check_neutralised_in_time(
    wc: Workcell, plate: str, vessels: list[str], d: DetachParams
) -> None:
    """Resumed: was the plate's neutralisation started within its window, by the journal?

    ``_check_window`` looks before the neutralisation; the window may close in the seconds
    between (a controller back just inside it, a plate still to be fetched). Then the
    over-exposure is recorded the same way (deviation, quarantine, hold before pooling).
    A first batch of the plate (``_finish_first_batch``) is not part of this batch."""
    key = f"enzyme_neutralised:{plate}"
    if not wc.journal.resumed or wc.journal.done(key):
        return
    _, first = wc.journal.remembered(f"enzyme_first:{plate}:vessels")
    _, over = wc.journal.remembered("over_exposed")
    held = set((over or {}).get("vessels", []))
    mine = [v for v in vessels if v not in (first or []) and v not in held]
    added: dict[str, datetime] = {}
    stopped: dict[str, datetime] = {}
    for a in wc.journal.actions():
        if a.outcome != "done" or a.action != "dispense":
            continue
        stage, _, rest = (a.unit or "").partition(":")
        v = rest.split("@", 1)[0]
        if v in mine and stage == "enzyme":
            added.setdefault(v, a.time)
        elif v in mine and stage == "neutralise":
            stopped.setdefault(v, a.time)
    late = {v: (stopped[v] - added[v]).total_seconds() for v in mine if v in added and v in stopped}
    if late and added and stopped:
        wait = (min(stopped.values()) - max(added.values())).total_seconds()
        if wait > enzyme_window_min(d) * 60:
            _over_exposed(wc, late, d, key)
            return
    wc.journal.mark_done(key, [])


def _over_exposed(wc: Workcell, ago: dict[str, float], d: DetachParams, done: str) -> None:
    """Record vessels the enzyme acted on past its window (``ago``: seconds since each got
    it): a deviation naming them and the hold before pooling (kept), with the unit
    ``done`` in the same transaction (recorded once); then quarantine."""
    over = sorted(ago)
    worst = max(ago.values()) / 60
    reason = (
        f"the enzyme acted {min(ago.values()) / 60:.1f} min (up to {worst:.1f} min) on "
        f"{', '.join(over)} before the controller was back, past its window of "
        f"{enzyme_window_min(d):g} min (over-exposure): neutralised at once and quarantined; "
        "decide whether they go on"
    )
    found, before = wc.journal.remembered("over_exposed")
    if found:  # another batch was over-exposed already: one hold names them all
        reason = f"{before['reason']}; {reason}"
        over = sorted({*before["vessels"], *over})
    with wc.store.transaction():
        wc.event(
            "deviation",
            "workcell",
            message=reason,
            vessels=sorted(ago),
            over_exposure=True,
            enzyme_s=ago,
        )
        wc.journal.remember("over_exposed", {"vessels": over, "reason": reason})
        wc.journal.mark_done(done, sorted(ago))
    quarantine(wc, sorted(ago), "over-exposed to the detachment enzyme")


async def _finish_first_batch(
    wc: Workcell,
    plate: str,
    group: list[DetachStep],
    d: DetachParams,
    neutralise: Callable[[list[DetachStep], str | None], Any],
    lend: bool,
) -> None:
    """Resumed in the middle of a plate's enzyme stage: the plate's vessels that had their
    enzyme are finished first, as a batch of their own.

    The plate's enzyme window is counted from its last vessel's enzyme: were the rest to
    get theirs now, the first would wait for them the whole outage longer than their
    window allows. So they are neutralised first: window open, after the rest of their
    enzyme's time (in the incubator, counted from their last addition); window closed,
    at once, quarantined and named in an over-exposure deviation, and held for the
    operator before pooling. Then the rest are washed, get their enzyme and go on as usual.
    """
    key = f"enzyme_first:{plate}"
    if not wc.journal.resumed or wc.journal.done(key):
        return
    vessels = [s.vessel for s in group]
    found, kept = wc.journal.remembered(f"{key}:vessels")
    if found:
        first = list(kept)
    else:
        had = _enzyme_ago(wc, vessels)
        first = [v for v in vessels if v in had and not wc.journal.done(f"neutralise:{v}")]
        if not first or all(v in had for v in vessels):
            wc.journal.mark_done(key, [])
            return
        with wc.store.transaction():
            wc.journal.remember(f"{key}:vessels", first, first)
            wc.journal.recovery(
                f"the vessels of {plate} that had their enzyme are neutralised first",
                "the interruption came while the enzyme went in; the rest would keep them "
                "in enzyme past its window, so they are finished as a batch of their own",
                first,
            )
    steps = [s for s in group if s.vessel in first]
    limit = enzyme_window_min(d) * 60
    todo = [v for v in first if not wc.journal.done(f"neutralise:{v}")]
    ago = _enzyme_ago(wc, todo)
    if ago and not wc.journal.done(f"{key}:window"):
        # the rest of their time in the incubator; none left, no trip (but a plate found
        # in the incubator, interrupted there, comes back to the deck first)
        await _incubate(wc, plate, todo, d, f"first:{plate}", lend)
        ago = _enzyme_ago(wc, todo)
        if min(ago.values()) > limit:
            _over_exposed(wc, ago, d, f"{key}:window")
        else:
            wc.journal.mark_done(f"{key}:window", todo)
    await neutralise(steps, "neutralise_first")
    wc.journal.mark_done(key, first)


async def _hold_if_over_exposed(wc: Workcell, plan: DetachPlan) -> None:
    """The over-exposed vessels are neutralised and pooled: the operator decides, once."""
    found, over = wc.journal.remembered("over_exposed")
    if found:
        await hold(wc, "over_exposure", "over_exposure", over["reason"], over["vessels"])
