"""Many campaigns on one workcell: each scheduling policy against the capacity bound.

Two parts, both printed:

1. **Simulated workcell** (``--real 1,2,4``): N campaigns with staggered starts and
   mixed donors (each its own culture model doubling time and seed) run their real
   protocols on the simulated devices under the floor (``protocols/campaign/floor.py``),
   each with its own run folder and batch record. Windows are judged from the
   records (``protocols/campaign/audit.py``).
2. **Capacity sweep** (``--model 1,2,4,8,16,...``): the same scheduler and windows,
   with campaigns reduced to their requests (seed, daily image, feed every 3 days,
   a passage when the donor's cells reach the threshold, harvest), each operation
   taking its measured device time (``durations.json``) +-5 %. This reaches the
   bound in seconds where the full simulation would take hours; violations here are
   the sweep's own account, not a record's.
3. **Steady state** (``--rolling DAYS``, instead of part 2): N lanes, each seeding its
   next campaign half a day after its last harvest, until DAYS; only work due after
   ``--warmup`` days counts, against the same lanes with no contention (their
   harvests and the bottleneck's busy share): does a policy carry N at once?

Two capacity bounds, both printed. The *steady-state bound*: from the operations'
device times, the busy hours per day one campaign needs on each device (the
incubator's plate mover among them: a segment that moves plates holds it); the
bottleneck device's 24 h divided by that, the incubator slots divided by a campaign's
peak plates, and the deck's working positions' hours per day divided by the
position-hours a campaign needs (each operation's plates on the deck, through its
enzyme's gap); the smallest of the three: N campaigns at once, each at its mean. The
*run bound*: the sweep's own staggered run of N, each device alone working the run's
operations from their due times by earliest window close, pre-emptively (a
relaxation: no policy keeps the windows of a run it cannot); the largest N it keeps
every window of, and every hard window of. Each sweep row also says how many
campaigns are live at once at the run's peak and the mover's demand over the run's
span. CP-SAT's search is limited by deterministic work (``--work``), so its rows
repeat from run to run; "net" counts the searches its wall-time safety net stopped.
Under each sweep row, every hard window it broke: its kind, campaign, due time, close,
when the work began and how late, and the plan that started it (CP-SAT's own, the
dispatch plan it fell back to, or one its safety net stopped).

    .venv/bin/python benchmarks/scheduling.py                 # both parts
    .venv/bin/python benchmarks/scheduling.py --real 1,2 --model 1,2,4,8,16,32
    .venv/bin/python benchmarks/scheduling.py --real 1,2,4,8 --model ""    # simulated only
    .venv/bin/python benchmarks/scheduling.py --real 2,4,8 --twins --stagger-days 0 --model ""
    .venv/bin/python benchmarks/scheduling.py --real ""      # the sweep only
    .venv/bin/python benchmarks/scheduling.py --real "" --rolling 42 --model 20,25,28

The simulated rows print as a markdown table: hard-window violations (and which
windows), soft lateness, device overlaps, each shared device's busy share (from the
records: each action's intent to its reply), the enzyme's longest wait and the first
plate's exposure, grants, solve times and wall seconds; last, how many figures the
simulated labs' own logs disagree with the records on (``world_audit.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.campaign.audit import audit  # noqa: E402
from protocols.campaign.engine import DAY_S, Action, CampaignParams, Kind  # noqa: E402
from protocols.campaign.floor import (  # noqa: E402
    CampaignSpec,
    Floor,
    FloorParams,
    deck_positions,
    positions_of,
)
from protocols.campaign.profiles import Profiles, floor_config, load_profiles  # noqa: E402
from protocols.campaign.scheduler import (  # noqa: E402
    Plan,
    Policy,
    Request,
    Scheduler,
    SchedulerParams,
    Seg,
    Stop,
)
from protocols.campaign.windows import HOUR_S, WindowParams  # noqa: E402

POLICIES = list(Policy)
INF = float("inf")
DONOR_TD_H = (28.0, 32.0, 36.0, 42.0, 48.0)  # doubling times of the mixed donors


# --- part 2: campaigns as their requests --------------------------------------------------


@dataclass
class ModelCampaign:
    """A campaign reduced to its rules' requests (plates: initial, after passage)."""

    name: str
    start: float
    td_h: float
    priority: int = 1
    plates0: int = 4
    plates1: int = 8
    feed_every: float = 3 * DAY_S
    image_every: float = DAY_S
    plates: int = 0
    last_fed: float = 0.0
    last_imaged: float = 0.0
    passaged: bool = False
    done: bool = False
    seeded: bool = False
    log: list[tuple[str, float]] = field(default_factory=list)

    @property
    def passage_at(self) -> float:  # the donor's cells reach the threshold
        return self.start + 7 * DAY_S * self.td_h / 36

    @property
    def harvest_at(self) -> float:
        return self.passage_at + 6 * DAY_S * self.td_h / 36

    def next(self, now: float, w: WindowParams) -> tuple[Action, float, float | None, bool]:
        """The next action, its due time, window close and whether it is hard."""
        if not self.seeded:
            return Action(kind=Kind.SEED, plates=_p(self.plates0)), self.start, None, False
        image = self.last_imaged + self.image_every
        feed = self.last_fed + self.feed_every
        stage = self.harvest_at if self.passaged else self.passage_at
        # the rules see confluence on the image of that day: passage/harvest follow it
        if stage <= image and stage <= feed:
            if self.passaged:
                return Action(kind=Kind.HARVEST, plates=_p(self.plates)), stage, None, False
            a = Action(kind=Kind.PASSAGE, plates=_p(1), destinations=_p(self.plates1))
            return a, stage, stage + w.passage_within_h * HOUR_S, "passage" in w.hard
        if feed <= image:
            return (
                Action(kind=Kind.FEED, plates=_p(self.plates)),
                feed,
                feed + w.feed_late_h * HOUR_S,
                "feed" in w.hard,
            )
        return (
            Action(kind=Kind.IMAGE, plates=_p(self.plates)),
            image,
            image + w.image_late_h * HOUR_S,
            "image" in w.hard,
        )

    def did(self, a: Action, end: float) -> None:
        if a.kind is Kind.SEED:
            self.seeded, self.plates = True, self.plates0
            self.last_fed = self.last_imaged = end
        elif a.kind is Kind.IMAGE:
            self.last_imaged = end
        elif a.kind is Kind.FEED:
            self.last_fed = end
        elif a.kind is Kind.PASSAGE:
            self.passaged, self.plates = True, self.plates1
            self.last_fed = self.last_imaged = end
        else:
            self.done = True


def _p(n: int) -> list[str]:
    return [f"plate_{i}" for i in range(1, n + 1)]


@dataclass
class Broken:
    """One hard window the sweep broke: which, by how much, and which plan acted."""

    kind: str  # the request's kind; "enzyme" for the rest of an operation after its enzyme
    campaign: str
    label: str
    due_s: float
    closes_s: float
    start_s: float  # when it began (INF: never, the run ended first)
    by: str  # the plan that started it (CP-SAT, dispatch fallback, safety-net fallback, ...)
    first_by: str = ""  # for the enzyme: the plan that started the operation's first part

    def line(self) -> str:
        late = (self.start_s - self.closes_s) / 60
        began = "never" if self.start_s == INF else f"{self.start_s / HOUR_S:.3f} h"
        more = f"; its first part by {self.first_by}" if self.first_by else ""
        return (
            f"    hard {self.kind} window broken: {self.campaign} {self.label!r}, due "
            f"{self.due_s / HOUR_S:.3f} h, closes {self.closes_s / HOUR_S:.3f} h, began "
            f"{began} ({late:.1f} min late), planned by {self.by}{more}"
        )


def cpsat_settings(sp: SchedulerParams) -> str:
    """The header line saying how CP-SAT searched, for either sweep."""
    return (
        f"  CP-SAT: {sp.work:g} deterministic s per plan, {sp.workers} worker(s), seed "
        f"{sp.seed}, wall-time safety net {sp.budget_s:g} s"
    )


def print_row(lead: str, policy: Policy, r: SweepResult, neck: str) -> None:
    """One policy's row of a sweep (after the sweep's own ``lead`` columns), then a line
    for every hard window it broke."""
    print(
        f"{lead}{policy.value:9s} {r.hard:4d} {r.missed:7d} {r.soft_h:7.1f} "
        f"{r.util.get('star', 0):9.2f}  {r.util.get(neck, 0):10.2f}  "
        f"{r.solve_max_s:6.3f}/{r.solve_median_s:.3f}"
        f"  {r.fallbacks:9d} {r.net:4d} {r.wall_s:7.1f}",
        flush=True,
    )
    for v in r.broken:
        print(v.line(), flush=True)


def plan_source(plan: Plan | None) -> str:
    """Which plan a start came from: CP-SAT's own, or the dispatch plan it fell back to."""
    if plan is None:
        return "?"
    m = plan.method
    if plan.policy is not Policy.CPSAT:
        return m
    if m.startswith("cp-sat"):
        return f"CP-SAT ({m})"
    if "safety net" in m:
        return f"safety-net fallback ({m})"
    return f"dispatch fallback ({m})"


@dataclass
class SweepResult:
    n: int
    policy: Policy
    hard: int
    soft_h: float
    util: dict[str, float]
    missed: int  # requests begun after their window closed, hard or soft
    solve_max_s: float
    solve_median_s: float
    fallbacks: int
    net: int  # CP-SAT searches stopped by the wall-time safety net (among the fallbacks)
    wall_s: float
    campaigns: int = 0  # campaigns started (rolling: over the whole run)
    harvests: int = 0  # harvests ended in the counted span (rolling: the lanes' throughput)
    broken: list[Broken] = field(default_factory=list)  # each hard window broken


@dataclass(frozen=True)
class Rolling:
    """Steady state: ``n`` lanes, each starting its next campaign (the next donor in the
    mix) ``turnaround_d`` days after its previous one's harvest, from the sweep's
    staggered first starts, until ``days``. Only work due in [``warmup_d``, ``days``)
    is counted (violations, missed windows, soft lateness), and device busy time is
    clipped to that span; the run goes on one day past ``days`` so that every counted
    window (the longest tolerance is 24 h) is decided."""

    days: float = 42.0
    warmup_d: float = 14.0
    turnaround_d: float = 0.5


def run_campaigns(n: int) -> list[ModelCampaign]:
    """The sweep's run of ``n``: starts staggered over the first week, mixed donors."""
    return [
        ModelCampaign(
            name=f"c{i}",
            start=i * (7 * DAY_S / max(1, n)),
            td_h=DONOR_TD_H[i % len(DONOR_TD_H)],
            priority=1 + (i % 3 == 0),
        )
        for i in range(n)
    ]


def sweep_one(
    n: int,
    policy: Policy,
    profiles: Profiles,
    w: WindowParams,
    sp: SchedulerParams,
    seed: int,
    positions: int | None = None,
    rolling: Rolling | None = None,
) -> SweepResult:
    """``rolling``: the steady-state run (see :class:`Rolling`); else the staggered run
    of ``n`` campaigns, each counted whole."""
    rng = random.Random(seed)
    enzyme = 5 * 60.0
    camps = run_campaigns(n)
    lo, hi = (rolling.warmup_d * DAY_S, rolling.days * DAY_S) if rolling else (-INF, INF)
    stop = hi + DAY_S if rolling else INF
    started = len(camps)
    harvests = 0
    lanes = {c.name: (i, 0) for i, c in enumerate(camps)}  # campaign: (lane, generation)
    sched = Scheduler(sp.model_copy(update={"policy": policy}))
    free: dict[str, float] = {}
    pending: dict[str, tuple[Request, Action, list[Seg]]] = {}
    seq = 0
    hard = 0
    missed = 0
    soft = 0.0
    busy: dict[str, float] = {}
    broken: list[Broken] = []
    first_by: dict[str, str] = {}  # an enzyme's continuation: the plan that began its operation
    t0 = time.perf_counter()

    def breaks(r: Request, start: float, by: str) -> None:
        assert r.closes_s is not None
        kind = "enzyme" if r.id in first_by else r.kind
        fb = first_by.get(r.id, "")
        broken.append(Broken(kind, r.campaign, r.label, r.due_s, r.closes_s, start, by, fb))

    def post(c: ModelCampaign, now: float) -> None:
        nonlocal seq
        a, due, closes, is_hard = c.next(now, w)
        segs = []
        for k, (dev, dur) in enumerate(profiles.durations(a)):
            segs.append(
                Seg(devices=dev, duration_s=dur)
                if k == 0
                else Seg(
                    devices=dev,
                    duration_s=dur,
                    lag_min_s=enzyme,
                    lag_max_s=enzyme + w.enzyme_over_min * 60,
                )
            )
        seq += 1
        r = Request(
            id=f"{c.name}#{seq}",
            campaign=c.name,
            label=a.label,
            kind=a.kind.value,
            segments=segs,
            earliest_s=due,
            due_s=due,
            closes_s=closes,
            hard=is_hard,
            priority=c.priority,
            submitted_s=now,
            seq=seq,
            positions=min(positions_of(a), positions or 10**6),
        )
        pending[c.name] = (r, a, segs)

    for c in camps:
        post(c, 0.0)
    by = {c.name: c for c in camps}
    now = 0.0
    end = 0.0
    while pending:
        reqs = [r for r, _, _ in pending.values()]
        plan = sched.plan(reqs, free, now, positions)
        first = min((s for s in plan.slots if s.segment == 0), key=lambda s: s.start_s)
        r, a, segs = pending[first.campaign]
        start = max(first.start_s, r.earliest_s, *(free.get(d, 0.0) for d in r.segments[0].devices))
        if start >= stop:  # rolling: past the counted span and its windows' tolerance
            for r2, _, _ in pending.values():  # counted work not begun by now: missed
                if lo <= r2.due_s < hi and r2.closes_s is not None and r2.closes_s + 1 < stop:
                    missed += 1
                    hard += r2.hard
                    if r2.hard:
                        breaks(r2, INF, "none (the run ended first)")
            break
        del pending[first.campaign]
        now = start
        counted = lo <= r.due_s < hi
        if counted and r.closes_s is not None and start > r.closes_s + 1:
            missed += 1
            hard += r.hard
            if r.hard:
                breaks(r, start, plan_source(plan))
        if counted:
            soft += r.priority * max(0.0, start - r.due_s) / HOUR_S
        dur = r.segments[0].duration_s * rng.uniform(0.95, 1.05)
        for d in r.segments[0].devices:
            free[d] = start + dur
            busy[d] = busy.get(d, 0.0) + max(0.0, min(start + dur, hi) - max(start, lo))
        end = max(end, start + dur)
        c = by[r.campaign]
        if len(r.segments) > 1:  # the enzyme incubates: the rest is a request of its own
            seq += 1
            e = start + dur + enzyme
            rest = [
                s.model_copy(update={"lag_min_s": 0.0, "lag_max_s": None}) for s in r.segments[1:]
            ]
            cont = Request(
                id=f"{c.name}#{seq}",
                campaign=c.name,
                label=f"{a.label} after the enzyme",
                kind=r.kind,
                segments=rest,
                earliest_s=e,
                due_s=e,
                closes_s=e + w.enzyme_over_min * 60,
                hard="enzyme" in w.hard,
                priority=c.priority,
                submitted_s=start + dur,
                seq=seq,
                positions=r.positions,  # its plates stay on the deck through the gap
                holds_from_s=start,
            )
            pending[c.name] = (cont, a, rest)
            first_by[cont.id] = plan_source(plan)
            continue
        c.did(a, start + dur)
        harvests += c.done and lo <= start + dur < hi
        if not c.done:
            post(c, start + dur)
        elif rolling and start + dur + rolling.turnaround_d * DAY_S < hi:
            lane, gen = lanes[c.name]  # the lane's next campaign: the next donor in the mix
            nc = ModelCampaign(
                name=f"c{lane}.{gen + 1}",
                start=start + dur + rolling.turnaround_d * DAY_S,
                td_h=DONOR_TD_H[(lane + gen + 1) % len(DONOR_TD_H)],
                priority=c.priority,
            )
            lanes[nc.name] = (lane, gen + 1)
            by[nc.name] = nc
            started += 1
            post(nc, start + dur)
    first_start = min(c.start for c in camps)
    span = max(1.0, end - first_start) if not rolling else hi - lo
    return SweepResult(
        n=n,
        policy=policy,
        hard=hard,
        soft_h=soft,
        util={d: b / span for d, b in busy.items()},
        missed=missed,
        solve_max_s=max(sched.solve_times, default=0.0),
        solve_median_s=statistics.median(sched.solve_times) if sched.solve_times else 0.0,
        fallbacks=sched.fallbacks,
        net=sched.stops.get(Stop.WALL, 0),
        wall_s=time.perf_counter() - t0,
        campaigns=started,
        harvests=harvests,
        broken=broken,
    )


def rolling_demand(n: int, profiles: Profiles, neck: str, roll: Rolling) -> tuple[int, float]:
    """The steady-state run with no contention (each campaign alone on the workcell, every
    step at its due time, mean device times): harvests ended in the counted span and the
    bottleneck's busy share of it. What the lanes ask for; a policy that leaves work
    waiting stretches its campaigns and harvests fewer."""
    lo, hi = roll.warmup_d * DAY_S, roll.days * DAY_S
    harvests, busy = 0, 0.0
    for c in run_campaigns(n):
        lane, gen = int(c.name[1:]), 0
        while True:
            now = c.start
            while not c.done:
                a, due, _, _ = c.next(now, WindowParams())
                now = max(now, due)
                for k, (dev, dur) in enumerate(profiles.durations(a)):
                    now += 5 * 60.0 if k else 0.0  # (the enzyme's gap before the rest)
                    if neck in dev:
                        busy += max(0.0, min(now + dur, hi) - max(now, lo))
                    now += dur
                c.did(a, now)
            harvests += lo <= now < hi
            gen += 1
            if now + roll.turnaround_d * DAY_S >= hi:
                break
            c = ModelCampaign(
                name=c.name,
                start=now + roll.turnaround_d * DAY_S,
                td_h=DONOR_TD_H[(lane + gen) % len(DONOR_TD_H)],
                priority=c.priority,
            )
    return harvests, busy / (hi - lo)


def bound(
    profiles: Profiles, slots: int, positions: int
) -> tuple[int, str, dict[str, float], int, int]:
    """Campaigns the workcell carries at most: bottleneck device hours, slots, and deck
    position-hours (each operation's plates on the deck from its start to its end)."""
    per_day: dict[str, list[float]] = {}
    deck_per_day: list[float] = []
    for td in DONOR_TD_H:
        c = ModelCampaign(name="x", start=0.0, td_h=td)
        busy: dict[str, float] = {}
        deck = 0.0
        now = 0.0
        while not c.done:
            a, due, _, _ = c.next(now, WindowParams())
            now = max(now, due)
            began = now
            for k, (dev, dur) in enumerate(profiles.durations(a)):
                for d in dev:
                    busy[d] = busy.get(d, 0.0) + dur
                now += dur + (5 * 60.0 if k else 0.0)  # (the enzyme's gap before the rest)
            deck += min(positions_of(a), positions) * (now - began)
            c.did(a, now)
        days = (now - c.start) / DAY_S
        deck_per_day.append(deck / days / HOUR_S)
        for d, b in busy.items():
            per_day.setdefault(d, []).append(b / days / HOUR_S)
    hours = {d: statistics.mean(v) for d, v in per_day.items()}
    neck = max(hours, key=lambda d: hours[d])
    by_device = int(24 / hours[neck])
    peak = ModelCampaign("x", 0, 36).plates0 + ModelCampaign("x", 0, 36).plates1
    by_slots = slots // peak
    by_deck = int(positions * 24 / statistics.mean(deck_per_day))
    return min(by_device, by_slots, by_deck), neck, hours, by_slots, by_deck


@dataclass
class RunDemand:
    """What the sweep's staggered run of ``n`` asks of the workcell: its operations at
    their due times (each campaign on its own, no contention), measured mean device
    times. Then each device alone works them in order of due time, each from its due
    time: how late does each start? One device at a time, no deck, no knock-on delays
    within a campaign: a relaxation, so no policy does better on any device."""

    n: int
    peak_live: int  # campaigns live at once, at the run's busiest moment
    span_h: float  # first seed to last harvest
    busy_h: dict[str, float]  # each device's busy hours over the run
    late_h: dict[str, float]  # per device, the latest start past due, as a share of its
    # window's tolerance (1.0: at the window's close)

    def fits(self) -> bool:
        """No operation's start past its window, on any device."""
        return all(x <= 1.0 for x in self.late_h.values())


def run_demand(
    n: int, profiles: Profiles, w: WindowParams | None = None, hard_only: bool = False
) -> RunDemand:
    """``hard_only``: only hard windows count (a soft one's work may wait as long as it
    takes; it still holds its device)."""
    w = w or WindowParams()
    tol = {  # hours an operation may start after its due time
        k: h
        for k, h in (
            (Kind.IMAGE, w.image_late_h),
            (Kind.FEED, w.feed_late_h),
            (Kind.PASSAGE, w.passage_within_h),
        )
        if not hard_only or k.value in w.hard
    }
    jobs: dict[str, list[tuple[float, float, float]]] = {}  # device: (due, busy, tolerance)
    busy: dict[str, float] = {}
    lives: list[tuple[float, float]] = []
    for c in run_campaigns(n):
        now = c.start
        while not c.done:
            a, due, _, _ = c.next(now, w)
            now = max(now, due)
            held: dict[str, float] = {}
            for k, (dev, dur) in enumerate(profiles.durations(a)):
                now += (5 * 60.0 if k else 0.0) + dur  # (the enzyme's gap before the rest)
                for d in dev:
                    held[d] = held.get(d, 0.0) + dur
            for d, h in held.items():
                jobs.setdefault(d, []).append((due, h, tol.get(a.kind, INF) * HOUR_S))
                busy[d] = busy.get(d, 0.0) + h
            c.did(a, now)
        lives.append((c.start, now))
    edges = sorted([(a, 1) for a, _ in lives] + [(b, -1) for _, b in lives])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    late = {d: _edf_late(js) for d, js in jobs.items()}
    span = max(b for _, b in lives) - min(a for a, _ in lives)
    return RunDemand(
        n=n,
        peak_live=peak,
        span_h=span / HOUR_S,
        busy_h={d: v / HOUR_S for d, v in busy.items()},
        late_h=late,
    )


def _edf_late(jobs: list[tuple[float, float, float]]) -> float:
    """One device, jobs (due, busy, tolerance) each released at its due time, worked
    preemptively by earliest window close (which meets every window if anything can):
    the latest (end - busy - due) / tolerance, 1.0 being a start at the window's close."""
    jobs = sorted(jobs)
    heap: list[tuple[float, int, float]] = []  # (close, index, work left)
    t, i, worst = -INF, 0, 0.0
    while i < len(jobs) or heap:
        if not heap:
            t = max(t, jobs[i][0])
        while i < len(jobs) and jobs[i][0] <= t:
            due, h, tol = jobs[i]
            heapq.heappush(heap, (due + tol, i, h))
            i += 1
        close, k, left = heapq.heappop(heap)
        nxt = jobs[i][0] if i < len(jobs) else INF
        if t + left <= nxt:  # done before the next release
            t += left
            due, h, tol = jobs[k]
            worst = max(worst, (t - h - due) / tol if tol else INF)
        else:  # the next release may close sooner: work up to it, then choose again
            heapq.heappush(heap, (close, k, left - (nxt - t)))
            t = nxt
    return worst


def run_bound(profiles: Profiles, hard_only: bool = False, upto: int = 120) -> int:
    """The largest N whose staggered run (the sweep's: same starts, donors and rules)
    fits: every device alone keeps every operation within its window (``hard_only``: its
    hard window). Every N from 1 is checked: lateness need not grow with N."""
    fits = [n for n in range(1, upto + 1) if run_demand(n, profiles, None, hard_only).fits()]
    return max(fits, default=0)


# --- part 1: the simulated workcell --------------------------------------------------------


@dataclass
class RealResult:
    hard: int
    soft_h: float
    overlaps: int
    util: dict[str, float]  # from the records' device actions (audit), over the floor's span
    solve_max: float
    solve_median: float
    fallbacks: int
    grants: int
    wall: float
    enzyme_max_min: float
    first_plate_max_min: float
    violations: list[str]
    deck_peak: int = 0
    deck_overfull: int = 0
    mover_overlaps: int = 0
    world_disagreements: int = 0


def real_one(
    n: int, policy: Policy, folder: Path, days: float, stagger: float = 0.37, twins: bool = False
) -> RealResult:
    """``twins``: one donor, the same seed, started ``stagger`` days apart (0: together)."""
    specs = [
        CampaignSpec(
            name=f"c{i}",
            params=CampaignParams(max_days=days, max_vessels=12),
            start_day=round(i * stagger, 2),
            donor={} if twins else {"doubling_time_h": DONOR_TD_H[i % len(DONOR_TD_H)]},
            seed=100 if twins else 100 + i,
            priority=1 + (i % 3 == 0),
        )
        for i in range(n)
    ]
    fp = FloorParams(scheduler=SchedulerParams(policy=policy), incubator_slots=210)
    floor = Floor(folder / f"{policy.value}-{n}", specs, fp)
    t0 = time.perf_counter()
    res = asyncio.run(floor.run())
    wall = time.perf_counter() - t0
    a = audit(
        {s.name: folder / f"{policy.value}-{n}" / s.name for s in specs},
        {s.name: s.params for s in specs},
        fp.windows,
        deck_positions=floor.positions,
    )
    span = max(1.0, res.end_s)  # the floor's first start (day 0) to its last release
    return RealResult(
        hard=a.hard,
        soft_h=a.soft_lateness_h,
        overlaps=a.device_overlaps,
        util={d: a.device_busy_s.get(d, 0.0) / span for d in ("star", "imager", "counter")},
        solve_max=max(res.solve_s, default=0.0),
        solve_median=statistics.median(res.solve_s) if res.solve_s else 0.0,
        fallbacks=res.fallbacks,
        grants=res.grants,
        wall=wall,
        enzyme_max_min=max(a.enzyme_waits_min, default=0.0),
        first_plate_max_min=a.enzyme_first_plate_max_min,
        violations=sorted({v.window.split()[0] for v in a.violations if v.hard}),
        deck_peak=a.deck_peak,
        deck_overfull=a.deck_overfull,
        mover_overlaps=a.mover_overlaps,
        world_disagreements=a.disagreements,
    )


def rolling_sweep(
    args: argparse.Namespace,
    profiles: Profiles,
    w: WindowParams,
    sp: SchedulerParams,
    policies: list[Policy],
    cap: int,
    neck: str,
    hours: dict[str, float],
) -> None:
    """The steady-state rows: N lanes each renewing its campaign until ``--rolling`` days,
    counted from ``--warmup``; the bottleneck's busy share over that span against N
    campaigns' mean demand (N x its busy hours per campaign-day / 24 h; the lanes'
    turnaround lowers it a little), and the harvests in that span (the lanes' throughput:
    soft work left waiting stretches a campaign)."""
    roll = Rolling(days=args.rolling, warmup_d=args.warmup, turnaround_d=args.turnaround)
    print(
        f"capacity bound (steady state): bottleneck {neck} {hours[neck]:.3f} h busy per "
        f"campaign-day: {int(24 / hours[neck])} campaigns; bound (with slots {args.slots}, "
        f"deck positions {args.positions}) = {cap}"
    )
    print(cpsat_settings(sp))
    print(
        f"\nsteady state: N lanes, each seeding its next campaign (next donor) "
        f"{roll.turnaround_d:g} d after its last harvest, until day {roll.days:g}; counted: "
        f"work due in days [{roll.warmup_d:g}, {roll.days:g}), busy time in that span; "
        f"demand: the same lanes with no contention (N x {hours[neck]:.3f} h / 24 h "
        f"less the turnaround)"
    )
    print(
        "  N  demand: harvests  mover %  camps  harvests  policy    hard  missed  soft h  "
        "star util  mover util  solve max/med s  fallbacks  net  wall s"
    )
    counts = sorted({int(x) for x in args.model.split(",") if x})
    best: dict[Policy, int] = {p: 0 for p in policies}
    broken: set[Policy] = set()
    paced: dict[Policy, int] = {p: 0 for p in policies}  # ... and kept up with the lanes
    behind: set[Policy] = set()
    mover: dict[tuple[Policy, int], float] = {}
    share: dict[tuple[Policy, int], float] = {}
    for n in counts:
        dh, dm = rolling_demand(n, profiles, neck, roll)
        for policy in policies:
            r = sweep_one(n, policy, profiles, w, sp, n, args.positions, roll)
            if r.hard == 0 and policy not in broken:
                best[policy] = n
            elif r.hard:
                broken.add(policy)
            mover[policy, n] = r.util.get(neck, 0.0)
            share[policy, n] = r.harvests / max(1, dh)
            if r.hard == 0 and share[policy, n] >= 0.95 and policy not in behind:
                paced[policy] = n
            else:
                behind.add(policy)
            lead = f"  {n:2d} {dh:17d} {100 * dm:8.0f} {r.campaigns:6d} {r.harvests:9d}  "
            print_row(lead, policy, r, neck)
    print(
        f"\nlargest N (of {','.join(map(str, counts))}) with zero hard-window violations at "
        f"every N up to it, steady state (bound {cap})"
    )
    for policy in policies:
        b = best[policy]
        more = (
            f", {neck} busy {100 * mover[policy, b]:.0f} %, harvests "
            f"{100 * share[policy, b]:.0f} % of demand"
            if b
            else ""
        )
        print(f"  {policy.value:9s} {b:3d}  ({100 * b / cap:.0f} % of the bound{more})")
    print(
        "largest N with zero hard-window violations and harvests at least 95 % of the "
        "demand's (the lanes kept up with), at every N up to it"
    )
    for policy in policies:
        b = paced[policy]
        print(f"  {policy.value:9s} {b:3d}  ({100 * b / cap:.0f} % of the bound)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", default="1,2,4", help="campaign counts on the simulated workcell")
    ap.add_argument("--real-days", type=float, default=10)
    ap.add_argument(
        "--stagger-days", type=float, default=0.37, help="days between the campaigns' starts"
    )
    ap.add_argument(
        "--twins", action="store_true", help="one donor and seed for all (their steps coincide)"
    )
    ap.add_argument("--model", default="1,2,4,8,16,32", help="campaign counts in the sweep")
    ap.add_argument(
        "--slots", type=int, default=600, help="incubator slots (600: several incubators)"
    )
    ap.add_argument(
        "--positions",
        type=int,
        default=deck_positions(floor_config()),
        help="the deck's working positions (default: the floor config's culture plate sites)",
    )
    d = SchedulerParams()
    ap.add_argument(
        "--work", type=float, default=d.work, help="CP-SAT's deterministic time per plan"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=d.budget_s,
        help="CP-SAT's wall-time safety net per plan (s); a search it stops is a fallback",
    )
    ap.add_argument("--workers", type=int, default=d.workers, help="CP-SAT's search workers")
    ap.add_argument("--policies", default=",".join(POLICIES), help="which policies (e.g. cpsat)")
    ap.add_argument("--horizon-h", type=float, default=24)
    ap.add_argument(
        "--rolling",
        type=float,
        default=0.0,
        metavar="DAYS",
        help="steady state instead of the capacity sweep: N lanes (--model), each starting "
        "a new campaign after its last one's harvest, until DAYS",
    )
    ap.add_argument(
        "--warmup", type=float, default=14.0, help="rolling: days not counted at the start"
    )
    ap.add_argument(
        "--turnaround", type=float, default=0.5, help="rolling: days from harvest to next seed"
    )
    args = ap.parse_args()
    if args.rolling and not 0 <= args.warmup < args.rolling:
        ap.error("--warmup must be at least 0 and below --rolling")
    began = time.perf_counter()
    profiles = load_profiles()
    w = WindowParams()
    policies = [Policy(x) for x in args.policies.split(",") if x]
    sp = SchedulerParams(
        work=args.work, budget_s=args.budget, horizon_h=args.horizon_h, workers=args.workers
    )

    cap, neck, hours, by_slots, by_deck = bound(profiles, args.slots, args.positions)
    if args.rolling:
        rolling_sweep(args, profiles, w, sp, policies, cap, neck, hours)
        print(f"\nwall {time.perf_counter() - began:.0f} s in all, {os.cpu_count()} cores")
        return
    run_all, run_hard = run_bound(profiles), run_bound(profiles, hard_only=True)
    print("capacity bound")
    for d_, h in sorted(hours.items()):
        print(f"  {d_:9s} {h:6.2f} h busy per campaign-day")
    print(
        f"  steady-state bound (N campaigns at once, each at its mean busy hours per day): "
        f"bottleneck {neck}: {int(24 / hours[neck])} campaigns; incubator slots "
        f"{args.slots}: {by_slots} campaigns; deck positions {args.positions}: {by_deck} "
        f"campaigns; bound = {cap}"
    )
    print(
        f"  run bound (the sweep's own staggered run of N, each device alone, pre-emptive, "
        f"by earliest window close; an upper bound): every window kept up to N = {run_all}; "
        f"hard windows kept (soft work may wait) up to N = {run_hard}"
    )
    print(cpsat_settings(sp))

    counts = [int(x) for x in args.model.split(",") if x]
    near = sorted({max(1, round(cap * f)) for f in (0.9, 1.0, 1.1)} - set(counts))
    if not counts:  # --model "": the simulated workcell only
        near = []
    print("\ncapacity sweep (campaigns as requests; measured device times +-5 %)")
    print(
        "  N  live  mover dem %  policy    hard  missed  soft h  star util  mover util  "
        "solve max/med s  fallbacks  net  wall s"
    )
    best: dict[Policy, int] = {p: 0 for p in policies}
    broken: set[Policy] = set()  # the frontier: every N up to it had no hard violation
    kept: dict[Policy, int] = {p: 0 for p in policies}  # ... and no window missed at all
    overrun: set[Policy] = set()
    for n in sorted(set(counts) | set(near)) if counts else []:
        rd = run_demand(n, profiles)
        dem = 100 * rd.busy_h.get(neck, 0.0) / max(1e-9, rd.span_h)
        for policy in policies:
            r = sweep_one(n, policy, profiles, w, sp, seed=n, positions=args.positions)
            if r.hard == 0 and policy not in broken:
                best[policy] = n
            elif r.hard:
                broken.add(policy)
            if r.missed == 0 and policy not in overrun:
                kept[policy] = n
            elif r.missed:
                overrun.add(policy)
            print_row(f"  {n:2d} {rd.peak_live:5d} {dem:12.0f}  ", policy, r, "incubator")
    if counts:
        print(
            f"\nlargest N with zero hard-window violations at every N up to it (steady-state "
            f"bound {cap}, run bound for hard windows {run_hard})"
        )
        for policy in policies:
            print(
                f"  {policy.value:9s} {best[policy]:3d}  "
                f"({100 * best[policy] / cap:.0f} % of the steady-state bound, "
                f"{100 * best[policy] / run_hard:.0f} % of the run bound)"
            )
        print(
            "largest N with no window missed at all (hard, or soft past its tolerance: the "
            f"work kept up with; run bound for every window {run_all})"
        )
        for policy in policies:
            print(
                f"  {policy.value:9s} {kept[policy]:3d}  "
                f"({100 * kept[policy] / cap:.0f} % of the steady-state bound, "
                f"{100 * kept[policy] / run_all:.0f} % of the run bound)"
            )

    real = [int(x) for x in args.real.split(",") if x]
    if real:
        kind = "twins (one donor)" if args.twins else "mixed donors"
        print(
            f"\nsimulated workcell ({args.real_days:g}-day campaigns, {kind}, starts "
            f"{args.stagger_days:g} d apart; judged from the batch records)"
        )
        print(
            "| N | policy | hard | which | soft h | overlaps | mover overlaps | deck peak "
            "| star % | imager % | counter % | enzyme max min | first plate max min | grants "
            "| solve max/median s | wall s | world disagreements |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        folder = Path(tempfile.mkdtemp(prefix="sched-bench-"))
        zero: dict[Policy, int] = {p: 0 for p in policies}
        ended: set[Policy] = set()  # a policy stops counting at its first hard violation
        try:
            for n in real:
                for policy in policies:
                    rr = real_one(n, policy, folder, args.real_days, args.stagger_days, args.twins)
                    u = rr.util
                    if rr.hard == 0 and policy not in ended:
                        zero[policy] = n
                    elif rr.hard:
                        ended.add(policy)
                    print(
                        f"| {n} | {policy.value} | {rr.hard} | {','.join(rr.violations) or '-'} "
                        f"| {rr.soft_h:.1f} | {rr.overlaps} | {rr.mover_overlaps} "
                        f"| {rr.deck_peak}{' (over)' if rr.deck_overfull else ''} "
                        f"| {100 * u['star']:.2f} "
                        f"| {100 * u['imager']:.2f} | {100 * u['counter']:.2f} "
                        f"| {rr.enzyme_max_min:.1f} | {rr.first_plate_max_min:.1f} "
                        f"| {rr.grants} | {rr.solve_max:.3f}/{rr.solve_median:.3f} "
                        f"| {rr.wall:.0f} | {rr.world_disagreements} |",
                        flush=True,
                    )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print("\nlargest N with zero hard-window violations at every N up to it (simulated)")
        for policy in policies:
            print(f"  {policy.value:9s} {zero[policy]:3d}")
    print(f"\nwall {time.perf_counter() - began:.0f} s in all, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
