"""Several campaigns on one workcell, the scheduler deciding who gets which device next.

Each campaign keeps what it has alone: its run folder, its store and batch record,
its vessels, its decisions (``engine.decide`` from its own store). What it shares is
the workcell's time and devices. The floor is a discrete-event run of all of them
on one timeline: every campaign, whenever it needs devices, posts a ``Request`` and
waits; the floor asks the scheduler for a plan and grants the request planned
first, at its planned time. The campaign's clock moves to that time and it does the
work (a whole operation, or the segment up to the enzyme's incubation, where
``Workcell.devices_free_for`` posts the next segment with its hard window). The
devices are busy from the grant until the campaign posts again, which is when the
simulated lab's clock says the work ended, not when the plan said it would.

Every grant is an event in the floor's own store (``floor.sqlite`` in the floor
folder: plan method, solve time, what ended CP-SAT's search, reason) and a
``scheduled`` event in the campaign's batch record. After a kill the floor is
rebuilt from these stores: the floor's time is its last grant, each device is free
from its last release, and the campaigns reopen their run folders. Opening one
reconciles the actions whose outcome the kill left unknown
(``workcell/assembly/reconcile.py``, asking the campaign's devices); every campaign
opens before the floor grants anything, so these questions come before any other
work. A campaign whose record holds an interrupted step asks for that step (its
decided action) as a ``recovery`` request, which every policy puts first, and the
engine finishes it by its declared recovery (``protocols/recovery/``: nothing done
twice, the enzyme's window counted from its last addition). A campaign whose last
grant has no release but no step begun has its next request marked ``recovery`` too.
``tests/test_scheduler.py`` kills a floor in the middle of a passage or harvest and
judges this from the batch records.

In a dry-run each campaign has its own simulated world (cells, deck, incubator
chamber); the devices they share are shared through the floor's grants, and the
audit (``protocols/campaign/audit.py``) checks from the records that no device
was ever used by two campaigns at once. Incubator slots are an admission limit: a
campaign starts when its plates fit. The deck's working positions (the culture plate
sites of the config's deck, or its inventory's working positions) are planned like
a shared resource: each request holds as many as its operation has plates on the
deck (``positions_of``), through its enzyme's gap, and no plan puts more on the
deck at once; the audit counts the plates on the deck from the records. (Each
dry-run campaign still has a deck of its own in its simulated world: the positions
are kept by the plans, as the devices are, and judged from the records.) The
incubator's plate mover is one of the devices (``profiles.py``).

A campaign may join a running floor, and a campaign on it may be cancelled, from
another process (``inbox.py``): the floor takes such requests between its decisions.
A joined campaign starts at the floor's present (or its own later start day) and is
in the floor's record, so a resumed floor runs it too. A cancelled one stops before
its next step, never inside one (its interrupted step, its enzyme's wait), and both
records say who cancelled it and why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from protocols.campaign import inbox
from protocols.campaign.engine import (
    DAY_S,
    Action,
    CampaignEngine,
    CampaignParams,
    Kind,
    auto_approve,
    decide,
    view,
)
from protocols.campaign.inbox import CAMPAIGN_NAME, Cancel, Posted
from protocols.campaign.profiles import Profiles, floor_config, load_profiles
from protocols.campaign.scheduler import Plan, Request, Scheduler, SchedulerParams, Seg
from protocols.campaign.windows import (
    Window,
    WindowParams,
    action_window,
    enzyme_window,
    upcoming,
)
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.session import Session, open_session
from workcell.store import Event, Store

FLOOR_STORE = "floor.sqlite"
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        pattern=CAMPAIGN_NAME,
        title="Campaign name",
        description="its run folder under the floor's (letters, digits, - and _)",
    )
    params: CampaignParams = Field(
        default_factory=CampaignParams, title="Campaign", description="the campaign's rules"
    )
    priority: int = Field(
        default=1, ge=1, le=100, title="Priority", description="higher goes first on a tie"
    )
    start_day: float = Field(
        default=0.0, ge=0, title="Start day", description="when it starts on the floor"
    )
    donor: dict[str, float] = Field(
        default_factory=dict,
        title="Donor",
        description="culture model parameters of this donor's cells (e.g. doubling_time_h)",
    )
    seed: int = Field(default=42, title="Seed", description="the simulated culture's seed")


class FloorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Floor settings")

    scheduler: SchedulerParams = Field(
        default_factory=SchedulerParams, title="Scheduler", description="the policy and its budget"
    )
    windows: WindowParams = Field(
        default_factory=WindowParams,
        title="Time windows",
        description="how late each kind of work may be, and which windows are hard",
    )
    incubator_slots: int | None = Field(
        default=None,
        ge=1,
        title="Incubator slots",
        description="plates the incubators hold (empty: the config's)",
    )
    deck_positions: int | None = Field(
        default=None,
        ge=1,
        title="Deck working positions",
        description="culture plates the liquid handler's deck holds at once (empty: the config's)",
    )
    start: datetime = Field(
        default=START, title="Start", description="the floor's simulated start (UTC)"
    )
    pace_days_per_min: float | None = Field(
        default=None,
        gt=0,
        le=1440,
        title="Pace (simulated days per minute)",
        description="a dry-run's speed against the wall clock (empty: as fast as the work "
        "allows, a day in about a second); a slow pace leaves time to join a campaign to "
        "it or cancel one",
    )


class Busy(BaseModel):
    campaign: str
    label: str
    devices: list[str]
    start_s: float
    end_s: float


class FloorResult(BaseModel):
    campaigns: list[str]
    busy: list[Busy]
    grants: int
    plans: int
    solve_s: list[float]
    fallbacks: int
    stops: dict[str, int] = Field(
        default_factory=dict, description="CP-SAT searches by what ended them"
    )
    end_s: float
    deferred_starts: dict[str, float] = Field(default_factory=dict)
    specs: list[CampaignSpec] = Field(default_factory=list)  # those that joined included
    cancelled: dict[str, str] = Field(default_factory=dict)  # campaign: by whom, and why


class CampaignCancelled(Exception):
    """Raised in a campaign waiting between two steps when it is cancelled."""

    def __init__(self, cancel: Cancel) -> None:
        super().__init__(f"{cancel.campaign} cancelled by {cancel.by}: {cancel.reason}")
        self.cancel = cancel


class _Waiting:
    def __init__(
        self,
        req: Request | None,
        wake_s: float | None,
        forecasts: list[Request],
        between_steps: bool = True,
    ):
        self.req = req
        self.wake_s = wake_s
        self.forecasts = forecasts
        self.between_steps = between_steps  # False: inside a step, which ends first
        self.fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()


class Floor:
    """Runs campaigns together on one workcell under one scheduler."""

    def __init__(
        self,
        folder: Path | str,
        specs: list[CampaignSpec],
        params: FloorParams | None = None,
        base: WorkcellConfig | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.specs = specs
        self.params = params or FloorParams()
        self.base = base or floor_config()
        self.profiles = profiles or load_profiles()
        self.scheduler = Scheduler(self.params.scheduler)
        self.positions = self.params.deck_positions or deck_positions(self.base)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.folder / FLOOR_STORE)
        self.waiting: dict[str, _Waiting] = {}
        self.posted = asyncio.Event()
        self.free: dict[str, float] = {}
        self.holding: dict[str, tuple[str, list[str], float]] = {}
        self.busy: list[Busy] = []
        self.seq = 0
        self.now = 0.0
        self.plans = 0
        self.grants = 0
        self.recovering: set[str] = set()
        self.deferred: dict[str, float] = {}
        self.cancels: dict[str, Cancel] = {}  # asked for, applied at the next step's start
        self.cancelled: dict[str, Cancel] = {}
        self._unanswered: list[Posted | tuple[str, str]] = []  # taken before a kill
        self.last_plan: Plan | None = None
        # for the UI (flows/floor.py): awaited as each plan is made, before its grant
        self.on_plan: list[Callable[[Plan, Floor], Awaitable[None]]] = []
        # each campaign's progress: (campaign, percent, text), every simulated 6 h
        self.on_progress: list[Callable[[str, float, str], Awaitable[None]]] = []
        # runs each campaign's coroutine (a Prefect child flow run per campaign)
        self.runner: Callable[[CampaignSpec, Coroutine[Any, Any, None]], Awaitable[None]] | None = (
            None
        )
        self._new_plan: Plan | None = None
        # waits the wall time a paced dry-run keeps between two decisions
        self.pause: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._last_reason: dict[str, str] = {}
        self._plates_in_use: dict[str, int] = {}

    # --- time ---------------------------------------------------------------------------

    def at(self, s: float) -> datetime:
        return self.params.start + timedelta(seconds=s)

    def seconds(self, t: datetime) -> float:
        return (t - self.params.start).total_seconds()

    def event(self, kind: str, campaign: str, **data: object) -> None:
        self.store.add_event(
            Event(time=self.at(self.now), kind=kind, actor="scheduler", data=data, vessel_id=None)
            if campaign == ""
            else Event(
                time=self.at(self.now),
                kind=kind,
                actor="scheduler",
                vessel_id=None,
                data={"campaign": campaign, **data},
            )
        )

    # --- run ----------------------------------------------------------------------------

    def _resume(self) -> None:
        """Rebuild the floor's picture from its own record after a stop or a kill."""
        events = self.store.events()
        answered = {str(e.data.get("ticket")) for e in events if e.kind in inbox.ANSWER_KINDS}
        self._unanswered = inbox.unanswered(self.folder, answered)
        if not events:
            self.event("floor_started", "", policy=self.params.scheduler.policy.value)
            return
        # The floor's time is its last decision (a grant), not the last release: a
        # release may lie ahead of a campaign that was granted meanwhile (the floor runs
        # each campaign on its own clock), and the interrupted step must go on from its
        # own campaign's time, not wait for the others'. A device is free once the last
        # release of it says so; one held by an interrupted step goes to its recovery.
        grants = [self.seconds(e.time) for e in events if e.kind == "granted"]
        self.now = max(grants) if grants else max(self.seconds(e.time) for e in events)
        last: dict[str, str] = {}
        for e in events:
            c = str(e.data.get("campaign", ""))
            if e.kind in ("granted", "released", "campaign_done"):
                last[c] = e.kind
            if e.kind == "released":
                for d in e.data.get("devices", []):
                    self.free[d] = max(self.free.get(d, 0.0), float(e.data["end_s"]))
        self.recovering = {c for c, k in last.items() if k == "granted"}
        known = {s.name for s in self.specs}
        for e in events:
            if e.kind == "campaign_joined" and e.data["campaign"] not in known:
                self.specs.append(CampaignSpec.model_validate(e.data["spec"]))
                known.add(str(e.data["campaign"]))
            elif e.kind == "cancel_requested":
                self.cancels[str(e.data["campaign"])] = Cancel.model_validate(
                    {k: e.data[k] for k in ("campaign", "by", "reason", "via") if k in e.data}
                )
            elif e.kind == "campaign_cancelled":
                self.cancelled[str(e.data["campaign"])] = self.cancels.pop(str(e.data["campaign"]))
        self.event(
            "floor_resumed",
            "",
            interrupted=sorted(self.recovering),
            at_day=round(self.now / DAY_S, 4),
        )

    def profiles_devices(self) -> set[str]:
        return {
            d for op in self.profiles.operations.values() for s in op.segments for d in s.devices
        }

    async def run(self) -> FloorResult:
        self._resume()
        tasks = {
            s.name: asyncio.create_task(self._run_one(s), name=s.name)
            for s in self.specs
            if s.name not in self.cancelled
        }
        live = set(tasks)
        try:
            while True:
                await self._until_all_waiting(tasks, live)
                if self._take_inbox(tasks, live):
                    continue  # a joined campaign posts first; a cancelled one stops
                if not live:
                    break
                before = self.now
                name, when = self._next()
                if self.params.pace_days_per_min and when > before:
                    await self.pause(60 * (when - before) / DAY_S / self.params.pace_days_per_min)
                self.now = max(self.now, when)
                if self._new_plan is not None:
                    plan, self._new_plan = self._new_plan, None
                    for cb in self.on_plan:
                        await cb(plan, self)
                w = self.waiting.pop(name)
                self.posted.clear()
                w.fut.set_result(when)
        finally:
            for t in tasks.values():
                if not t.done():
                    t.cancel()
            self.store.close()
        return FloorResult(
            campaigns=[s.name for s in self.specs],
            busy=self.busy,
            grants=self.grants,
            plans=self.plans,
            solve_s=self.scheduler.solve_times,
            fallbacks=self.scheduler.fallbacks,
            stops={k.value: v for k, v in self.scheduler.stops.items()},
            end_s=self.now,
            deferred_starts=self.deferred,
            specs=self.specs,
            cancelled={n: f"{c.by} ({c.reason})" for n, c in self.cancelled.items()},
        )

    def _take_inbox(self, tasks: dict[str, asyncio.Task[None]], live: set[str]) -> bool:
        """Take the campaigns that join and the cancellations posted since the last
        decision; True when any changed who is on the floor."""
        items, self._unanswered = self._unanswered + inbox.take(self.folder), []
        changed = False
        for item in items:
            if isinstance(item, tuple):
                self.event("join_refused", "", ticket=item[0], reason=item[1])
            elif item.kind == "join":
                changed |= self._join(item, tasks, live)
            else:
                changed |= self._cancel(item, tasks)
        return changed

    def _join(self, item: Posted, tasks: dict[str, asyncio.Task[None]], live: set[str]) -> bool:
        try:
            spec = CampaignSpec.model_validate(item.data)
        except ValueError as e:
            self.event("join_refused", "", ticket=item.ticket, reason=f"not a campaign: {e}")
            return False
        if spec.name in {s.name for s in self.specs} or (self.folder / spec.name).exists():
            self.event(
                "join_refused",
                spec.name,
                ticket=item.ticket,
                reason=f"the floor already has a campaign {spec.name!r}: choose another name",
            )
            return False
        spec.start_day = max(spec.start_day, self.now / DAY_S)
        self.specs.append(spec)
        self.event(
            "campaign_joined",
            spec.name,
            ticket=item.ticket,
            at_day=round(self.now / DAY_S, 4),
            spec=spec.model_dump(mode="json"),
        )
        tasks[spec.name] = asyncio.create_task(self._run_one(spec), name=spec.name)
        live.add(spec.name)
        return True

    def _cancel(self, item: Posted, tasks: dict[str, asyncio.Task[None]]) -> bool:
        try:
            c = Cancel.model_validate(item.data)
        except ValueError as e:
            self.event("cancel_refused", "", ticket=item.ticket, reason=f"not a cancel: {e}")
            return False
        task = tasks.get(c.campaign)
        if task is None or task.done() or c.campaign in self.cancels:
            why = "it is being cancelled" if c.campaign in self.cancels else "it is not running"
            self.event(
                "cancel_refused",
                c.campaign,
                ticket=item.ticket,
                reason=f"no campaign {c.campaign!r} to cancel on this floor: {why}",
            )
            return False
        self.cancels[c.campaign] = c
        self.event(
            "cancel_requested", c.campaign, ticket=item.ticket, by=c.by, reason=c.reason, via=c.via
        )
        w = self.waiting.get(c.campaign)
        if w is None or not w.between_steps:
            return False  # inside a step: it stops when it next asks between steps
        del self.waiting[c.campaign]
        w.fut.set_exception(CampaignCancelled(c))
        return True

    async def _until_all_waiting(
        self, tasks: dict[str, asyncio.Task[None]], live: set[str]
    ) -> None:
        while True:
            for n in list(live):
                if tasks[n].done():
                    live.discard(n)
                    tasks[n].result()  # a campaign's failure stops the floor, loudly
            if all(n in self.waiting for n in live):
                return
            posted = asyncio.create_task(self.posted.wait())
            running = [tasks[n] for n in live if n not in self.waiting]
            await asyncio.wait([posted, *running], return_when=asyncio.FIRST_COMPLETED)
            posted.cancel()
            self.posted.clear()

    def _next(self) -> tuple[str, float]:
        """The next campaign to go on, and when: a wake that comes first, or the real
        request the plan puts first."""
        wakes = [(w.wake_s, n) for n, w in self.waiting.items() if w.wake_s is not None]
        reqs = [w.req for w in self.waiting.values() if w.req is not None]
        if reqs:
            forecasts = [f for w in self.waiting.values() for f in w.forecasts]
            plan = self.scheduler.plan(reqs + forecasts, self.free, self.now, self.positions)
            self.plans += 1
            self.last_plan = self._new_plan = plan
            real = {r.id: r for r in reqs}
            first = min(
                (s for s in plan.slots if s.request in real and s.segment == 0),
                key=lambda s: s.start_s,
            )
            if not wakes or first.start_s < min(wakes)[0]:
                r = real[first.request]
                start = max(
                    first.start_s,
                    r.earliest_s,
                    *(self.free.get(d, 0.0) for d in r.segments[0].devices),
                )
                self._grant(r, start, plan, first.start_s)
                return r.campaign, start
        when, name = min(wakes)
        return name, when

    def _grant(self, r: Request, start: float, plan: Plan, planned: float) -> None:
        self.grants += 1
        reason = (
            "recovery of an interrupted step goes first"
            if r.recovery
            else f"{plan.policy.value}: first in the plan ({plan.method})"
        )
        if r.closes_s is not None:
            reason += (
                f"; window due day {r.due_s / DAY_S:.3f}, closes day {r.closes_s / DAY_S:.3f}"
                f" ({'hard' if r.hard else 'soft'})"
            )
        self.now = max(self.now, start)
        self.event(
            "granted",
            r.campaign,
            request=r.label,
            devices=r.segments[0].devices,
            start_s=start,
            planned_s=planned,
            policy=plan.policy.value,
            method=plan.method,
            solve_s=round(plan.solve_s, 4),
            stop=plan.stop.value if plan.stop else None,  # what ended CP-SAT's search
            work=round(plan.work, 4),  # its deterministic time
            reason=reason,
        )
        self.holding[r.campaign] = (r.label, r.segments[0].devices, start)
        self._last_reason[r.campaign] = reason

    # --- one campaign -------------------------------------------------------------------

    async def _run_one(self, spec: CampaignSpec) -> None:
        if self.runner is None:
            await self._campaign(spec)
        else:
            await self.runner(spec, self._campaign(spec))

    async def _progress(self, spec: CampaignSpec, day: float, last: list[int]) -> None:
        """Tell the progress hooks where a campaign is, every simulated 6 h (and at 100 %)."""
        quarter = int(day * 4)
        if not self.on_progress or (quarter == last[0] and day < spec.params.max_days):
            return
        last[0] = quarter
        percent = min(100.0, 100.0 * day / spec.params.max_days)
        text = f"{spec.name}: day {day:.2f} of {spec.params.max_days:g}"
        mine = [
            s
            for s in (self.last_plan.slots if self.last_plan else [])
            if s.campaign == spec.name and s.segment == 0
        ]
        if mine:
            nxt = min(mine, key=lambda s: s.start_s)
            text += f"; next planned: {nxt.label} at day {nxt.start_s / DAY_S:.2f}"
        for cb in self.on_progress:
            await cb(spec.name, percent, text)

    def config_for(self, spec: CampaignSpec) -> WorkcellConfig:
        c = self.base
        return c.model_copy(
            update={
                "name": f"{c.name}-{self.folder.name}-{spec.name}",
                "clock": c.clock.model_copy(update={"start": self.params.start}),
                "culture": c.culture.model_copy(
                    update={"seed": spec.seed, "overrides": {**c.culture.overrides, **spec.donor}}
                ),
            }
        )

    async def _ask(
        self,
        session: Session,
        spec: CampaignSpec,
        req: Request | None = None,
        wake_s: float | None = None,
        forecasts: list[Request] | None = None,
        between_steps: bool = True,
    ) -> float:
        """Post a request (or a wake-up time) and wait for the floor; move the clock there.
        Between two steps, a cancelled campaign stops here (``CampaignCancelled``)."""
        wc = session.wc
        now = wc.clock.elapsed()
        self._release(spec.name, now)
        if between_steps and spec.name in self.cancels:
            raise CampaignCancelled(self.cancels[spec.name])
        if req is not None and spec.name in self.recovering:
            req.recovery = True
            self.recovering.discard(spec.name)
        w = _Waiting(req, wake_s, forecasts or [], between_steps)
        self.waiting[spec.name] = w
        self.posted.set()
        when = await w.fut
        if when > wc.clock.elapsed():
            await wc.clock.sleep(when - wc.clock.elapsed())
        return when

    def _release(self, campaign: str, now: float) -> None:
        held = self.holding.pop(campaign, None)
        if held is None:
            return
        label, devices, start = held
        for d in devices:
            self.free[d] = max(self.free.get(d, 0.0), now)
        self.busy.append(
            Busy(campaign=campaign, label=label, devices=devices, start_s=start, end_s=now)
        )
        t, self.now = self.now, max(self.now, now)
        self.event("released", campaign, request=label, devices=devices, start_s=start, end_s=now)
        self.now = t

    def _request(
        self,
        spec: CampaignSpec,
        a: Action,
        segs: list[Seg],
        now: float,
        win_due: float,
        closes: float | None,
        hard: bool,
        forecast: bool = False,
        earliest: float | None = None,
    ) -> Request:
        self.seq += 1
        return Request(
            positions=min(positions_of(a), self.positions),
            id=f"{spec.name}#{self.seq}",
            campaign=spec.name,
            label=f"{spec.name}: {a.label}",
            kind=a.kind.value,
            segments=segs,
            earliest_s=now if earliest is None else earliest,
            due_s=win_due,
            closes_s=closes,
            hard=hard,
            priority=spec.priority,
            submitted_s=now,
            seq=self.seq,
            forecast=forecast,
        )

    def _windowed(
        self,
        spec: CampaignSpec,
        a: Action,
        win: Window,
        t0: float,
        now: float,
        earliest: float | None = None,
    ) -> Request:
        """A request for ``a`` in its window (the window's times count from the campaign's
        start ``t0``); with ``earliest``, a forecast of work not yet due."""
        return self._request(
            spec,
            a,
            self._segments(a, spec.params),
            now,
            t0 + win.due_s,
            None if win.closes_s is None else t0 + win.closes_s,
            win.hard,
            forecast=earliest is not None,
            earliest=earliest,
        )

    def _segments(self, a: Action, p: CampaignParams) -> list[Seg]:
        out = []
        for k, (devices, dur) in enumerate(self.profiles.durations(a)):
            if k == 0:
                out.append(Seg(devices=devices, duration_s=dur))
            else:
                e = enzyme_window(0.0, p.detach.enzyme_time_min, self.params.windows)
                out.append(
                    Seg(
                        devices=devices,
                        duration_s=dur,
                        lag_min_s=e.due_s,
                        lag_max_s=e.closes_s if e.hard else None,
                    )
                )
        return out

    async def _campaign(self, spec: CampaignSpec) -> None:
        run_dir = self.folder / spec.name
        p = spec.params
        async with open_session(self.config_for(spec), run_dir) as session:
            engine = CampaignEngine(session, p, auto_approve("auto-approve (floor dry-run)"))
            try:
                await self._steps(session, spec, engine)
            except CampaignCancelled as c:
                await self._stopped(session, spec, c.cancel)

    async def _stopped(self, session: Session, spec: CampaignSpec, c: Cancel) -> None:
        """A cancelled campaign: it ends between steps, at the floor's present (not at the
        wake it was waiting for); both records say who and why."""
        if self.now > session.wc.clock.elapsed():
            await session.wc.clock.sleep(self.now - session.wc.clock.elapsed())
        if not session.wc.store.events("campaign_cancelled"):  # once, after a kill too
            session.wc.event("campaign_cancelled", c.by, reason=c.reason, via=c.via)
        self._release(spec.name, session.wc.clock.elapsed())
        del self.cancels[spec.name]
        self.cancelled[spec.name] = c
        self._plates_in_use.pop(spec.name, None)
        self.event("campaign_cancelled", spec.name, by=c.by, reason=c.reason, via=c.via)
        for cb in self.on_progress:
            await cb(spec.name, 100.0, f"{spec.name}: cancelled by {c.by} ({c.reason})")

    async def _steps(self, session: Session, spec: CampaignSpec, engine: CampaignEngine) -> None:
        p = spec.params
        store = session.wc.store
        if not store.events("campaign_started"):
            start = spec.start_day * DAY_S
            slots = self.params.incubator_slots or _slots(session)
            if not self._admit(spec, slots, start):
                return
            await self._ask(session, spec, wake_s=max(start, session.wc.clock.elapsed()))
            session.wc.event(
                "campaign_started",
                "campaign",
                params=p.model_dump(mode="json"),
                floor=str(self.folder),
                priority=spec.priority,
                donor=spec.donor,
            )
        shown = [-1]
        while True:
            wc = session.wc
            t0 = self.seconds(store.events("campaign_started")[0].time)
            v = view(store, wc.clock.now())
            await self._progress(spec, max(0.0, v.now_s) / DAY_S, shown)
            redo = _interrupted_action(session)
            if redo is not None:  # finished first, as it was decided (#11's recovery)
                await self._recover(session, spec, engine, redo, p)
                continue
            d = decide(v, p, engine.deck_plates)
            if d.finished:
                break
            if not d.actions:
                assert d.wake_at_s is not None
                fc = [
                    self._windowed(
                        spec, a, win, t0, wc.clock.elapsed(), earliest=t0 + max(win.due_s, v.now_s)
                    )
                    for a, win in upcoming(v, p, self.params.windows)
                ]
                await self._ask(session, spec, wake_s=t0 + d.wake_at_s, forecasts=fc)
                continue
            a = d.actions[0]
            if a.kind is Kind.STOP:
                await engine.do(a)
                continue
            win = action_window(a, v, p, self.params.windows)
            req = self._windowed(spec, a, win, t0, wc.clock.elapsed())
            rest = req.segments[1:]
            await self._ask(session, spec, req=req)
            self._scheduled(session, spec, a, a.kind.value)
            session.wc.devices_free_hook = self._gap_hook(session, spec, a, rest, p)
            await engine.do(a)
        self._release(spec.name, session.wc.clock.elapsed())
        self.event("campaign_done", spec.name)
        for cb in self.on_progress:
            await cb(spec.name, 100.0, f"{spec.name}: finished")

    async def _recover(
        self,
        session: Session,
        spec: CampaignSpec,
        engine: CampaignEngine,
        a: Action,
        p: CampaignParams,
    ) -> None:
        """An interrupted step (a kill mid-step): its recovery is asked for as the action
        it was, due now, and every policy puts it first; the engine then finishes it by
        the step's declared recovery (``protocols/recovery/``), skipping what is done."""
        wc = session.wc
        now = wc.clock.elapsed()
        req = self._request(spec, a, self._segments(a, p), now, now, None, False)
        req.recovery = True
        self.recovering.discard(spec.name)
        rest = req.segments[1:]
        await self._ask(session, spec, req=req, between_steps=False)
        self._scheduled(session, spec, a, f"{a.kind.value} (recovery)")
        session.wc.devices_free_hook = self._gap_hook(session, spec, a, rest, p)
        await engine.finish_interrupted()

    def _scheduled(self, session: Session, spec: CampaignSpec, a: Action, what: str) -> None:
        """The grant, in the campaign's own batch record, with the floor's reason."""
        session.wc.event(
            "scheduled",
            "scheduler",
            action=what,
            plates=a.plates,
            reason=self._last_reason.get(spec.name, ""),
        )

    def _gap_hook(
        self, session: Session, spec: CampaignSpec, a: Action, rest: list[Seg], p: CampaignParams
    ):  # type: ignore[no-untyped-def]
        async def hook(seconds: float, why: str) -> None:
            wc = session.wc
            now = wc.clock.elapsed()
            e = enzyme_window(now, seconds / 60, self.params.windows)
            segs = [s.model_copy(update={"lag_min_s": 0.0, "lag_max_s": None}) for s in rest[:1]]
            segs += rest[1:]
            if not segs:
                segs = [Seg(devices=[], duration_s=0.0)]
            req = self._request(
                spec,
                Action(kind=a.kind, plates=a.plates, reason=why),
                segs,
                now,
                e.due_s,
                e.closes_s,
                e.hard,
                earliest=e.due_s,
            )
            req.label = f"{spec.name}: {a.label} after the {why}"
            # its plates are on the deck (or in the incubator, coming back): their
            # positions are held from now, through the gap
            req.positions = min(positions_of(a), self.positions)
            req.holds_from_s = now
            await self._ask(session, spec, req=req, between_steps=False)
            self._scheduled(session, spec, a, f"{a.kind.value} ({why} done)")

        return hook

    def _admit(self, spec: CampaignSpec, slots: int, start: float) -> bool:
        """Incubator slots: a campaign is admitted when the most plates it may hold fit."""
        need = peak_plates(spec.params, self.base)
        used = sum(self._plates_in_use.values())
        if used + need > slots:
            self.deferred[spec.name] = start
            self.event("not_admitted", spec.name, reason=f"{used} + {need} plates > {slots} slots")
            return False
        self._plates_in_use[spec.name] = need
        return True


def positions_of(a: Action) -> int:
    """Deck working positions an operation's plates hold: the plates it works on, and a
    passage's destinations with its parent; an image reads plates on the incubator's
    transfer station, off the deck."""
    if a.kind is Kind.IMAGE or a.kind is Kind.STOP:
        return 0
    if a.kind is Kind.PASSAGE:
        # (with vessels from a hotel, no destinations are named: at most max_children)
        return len(a.plates) + (len(a.destinations) if a.destinations else a.max_children or 1)
    return len(a.plates)


def deck_positions(config: WorkcellConfig) -> int:
    """The deck's working positions: the inventory's, or its culture plate sites."""
    from workcell.labware import is_plate

    if config.inventory is not None:
        return len(config.inventory.working_positions)
    return sum(1 for s in config.deck.sites() if is_plate(s.labware))


def _interrupted_action(session: Session) -> Action | None:
    """The decided action of the campaign's first interrupted step, if any."""
    for step in session.interrupted:
        if "action" in step.data:
            return Action.model_validate(step.data["action"])
    return None


def _slots(session: Session) -> int:
    return sum(len(r.sites) for inc in session.wc.incubators.values() for r in inc.racks)


def peak_plates(p: CampaignParams, config: WorkcellConfig) -> int:
    """The most plates a campaign holds at once: its initial plates and, with a vessel
    cap, the plates the cap fills (else every culture plate on the deck)."""
    deck = [s for s in config.deck.sites() if s.labware == p.vessel_labware]
    if p.max_vessels is None:
        return len(deck)
    wells = 6 if "6_well" in p.vessel_labware else 24
    return min(len(deck), len(p.initial_plates) + -(-p.max_vessels // wells))


@contextlib.asynccontextmanager
async def floor_store(folder: Path | str) -> AsyncIterator[Store]:
    s = Store(Path(folder) / FLOOR_STORE)
    try:
        yield s
    finally:
        s.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m protocols.campaign.floor FOLDER``: twin campaigns on the floor workcell
    (a dry-run; run it again on the same folder to resume after a stop or a kill)."""
    import argparse

    from protocols.campaign.scheduler import Policy

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--campaigns", type=int, default=2)
    ap.add_argument("--policy", choices=[p.value for p in Policy], default="cpsat")
    ap.add_argument("--days", type=float, default=8)
    ap.add_argument("--stagger-days", type=float, default=0.0)
    args = ap.parse_args(argv)
    specs = [
        CampaignSpec(
            name=f"c{i}",
            params=CampaignParams(max_days=args.days, max_vessels=12),
            start_day=i * args.stagger_days,
        )
        for i in range(args.campaigns)
    ]
    params = FloorParams(scheduler=SchedulerParams(policy=Policy(args.policy)))
    res = asyncio.run(Floor(args.folder, specs, params).run())
    print(f"{len(res.campaigns)} campaigns, {res.grants} grants, day {res.end_s / DAY_S:.2f}")


if __name__ == "__main__":
    main()
