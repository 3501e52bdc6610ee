"""Who gets which device next: plans for several campaigns sharing one workcell.

Each campaign asks for its next piece of work as a ``Request``: the segments it
will hold devices for (from the measured profiles), when it may start (due),
when its window closes (hard or soft) and its priority. Requests known ahead (the
next image, the next feed) come as *forecasts*, so the plan can keep room for
them. A ``Plan`` gives every segment a start; the workcell's floor grants the real
request planned first, and plans again when something new is asked for or the
world ran late.

Policies:

* ``fifo``: first come, first served, whoever's device is free (the default of
  MADSci/WEI); no look-ahead.
* ``priority``: the same, highest campaign priority first (AlabOS's greedy rule).
* ``dispatch``: a window-aware list schedule: requests in order of their hard
  windows' closing times (then priority), each placed at the earliest time all its
  segments fit with their lags (a segment after the enzyme is reserved when the
  enzyme goes on). Quick; also the warm start of:
* ``cpsat``: OR-Tools CP-SAT over a horizon: intervals per segment, no overlap per
  device, lags between segments, lateness of hard windows weighted far above soft
  lateness times priority; hinted with the dispatch plan. Its search is limited by
  work, not by the wall clock: ``SchedulerParams.work`` units of the solver's
  deterministic time, a fixed seed and number of workers, so the same problem gets
  the same plan however busy the machine is. A wall-time safety net
  (``budget_s``, counted from the start of the re-plan: the dispatch plan and the
  model's building come out of it) abandons a search that runs too long (a plan made
  then would depend on the load), so a re-plan takes about ``budget_s`` at most however
  loaded the machine; if the solver finds nothing, is stopped by the net, or finds a plan
  worse than the hint, the dispatch plan is used, counted as a fallback, and the plan
  says so (``Plan.stop``: what ended the search).

A request interrupted by a crash (``recovery``) goes before everything else in
every policy.

Besides the devices, every policy keeps within the deck's *working positions*: a
request holds ``positions`` of them (the culture plates its operation has on the
liquid handler's deck) from its first segment's start, or from ``holds_from_s`` if
its plates are on the deck already (the rest of an operation after its enzyme), to
its last segment's end, across the gaps between its segments. CP-SAT keeps them
with a cumulative constraint, the heuristics by not starting a request whose plates
would not fit. The incubator's plate mover (and its transfer station, where the
imager reads) is a device like the others: a segment that moves plates holds it
(``profiles.py``), so one plate moves at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

INF = math.inf
# how much longer than its measured time a step may run (the capacity sweep draws +-5 %);
# CP-SAT and the window dispatch book each device that much longer, so a step that runs
# long still ends before the next planned start: a hard window is never planned closer
# to its close than the step before it can overrun (#15: CP-SAT squeezed an image into an
# enzyme's 3 min tolerance with seconds to spare; the image ran long, the enzyme was late)
OVERRUN_DEFAULT = 0.05
# CP-SAT's deterministic budget per plan: 0.36 s of one core at most on this 2-core machine
# (README, "the scheduler"), so a re-plan stays below 2 s with a quarter of a core
WORK_DEFAULT = 0.1
HARD_WEIGHT = 100_000  # one second late on a hard window outweighs any soft lateness


class Policy(StrEnum):
    FIFO = "fifo"
    PRIORITY = "priority"
    DISPATCH = "dispatch"
    CPSAT = "cpsat"


class Seg(BaseModel):
    """Devices held for ``duration_s``, starting ``lag_min_s``..``lag_max_s`` after the
    previous segment of the same request ended (ignored for the first)."""

    model_config = ConfigDict(extra="forbid")

    devices: list[str]
    duration_s: float = Field(ge=0)
    lag_min_s: float = 0.0
    lag_max_s: float | None = None


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    campaign: str
    label: str
    kind: str
    segments: list[Seg] = Field(min_length=1)
    earliest_s: float
    due_s: float
    closes_s: float | None = None
    hard: bool = False
    priority: int = Field(default=1, ge=1, le=100)
    submitted_s: float = 0.0
    seq: int = 0
    forecast: bool = False
    recovery: bool = False
    positions: int = Field(default=0, ge=0, description="deck working positions it holds")
    holds_from_s: float | None = Field(
        default=None, description="its plates hold their positions from then (already on deck)"
    )


class Slot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: str
    campaign: str
    label: str
    segment: int
    devices: list[str]
    start_s: float
    end_s: float
    forecast: bool = False
    due_s: float | None = None
    closes_s: float | None = None
    hard: bool = False
    positions: int = 0
    holds_from_s: float | None = None


class Stop(StrEnum):
    """What ended a CP-SAT search."""

    OPTIMAL = "optimal"
    WORK = "work limit"  # the deterministic budget: repeatable
    WALL = "wall-time safety net"  # not repeatable: the plan is not used


class Solved(BaseModel):
    """A CP-SAT search's outcome: its plan (None: none kept), how it ended, its cost."""

    model_config = ConfigDict(extra="forbid")

    slots: list[Slot] | None = None
    method: str = ""
    stop: Stop
    wall_s: float
    work: float = Field(description="deterministic time the search used")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Policy
    made_at_s: float
    slots: list[Slot]
    method: str = Field(description="how it was made, e.g. 'cp-sat optimal'")
    solve_s: float = 0.0
    stop: Stop | None = Field(default=None, description="what ended CP-SAT's search")
    work: float = Field(default=0.0, description="CP-SAT's deterministic time used")
    hard_late: int = Field(default=0, description="requests planned past a hard window")
    soft_late_s: float = 0.0

    def start_of(self, request_id: str) -> float | None:
        starts = [s.start_s for s in self.slots if s.request == request_id and s.segment == 0]
        return starts[0] if starts else None


class SchedulerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Scheduler")

    policy: Policy = Field(
        default=Policy.CPSAT,
        title="Policy",
        description="who gets the devices next: fifo (first asked, first served), priority "
        "(greedy by priority), dispatch (window-aware heuristic) or cpsat (OR-Tools CP-SAT "
        "over the horizon, warm-started from dispatch)",
    )
    horizon_h: float = Field(
        default=24, ge=1, le=24 * 14, title="Horizon (h)", description="how far ahead to plan"
    )
    work: float = Field(
        default=WORK_DEFAULT,
        gt=0,
        le=100,
        title="Solve budget (deterministic s)",
        description="CP-SAT's search per plan in the solver's deterministic time (about a "
        "second of one core's work each): the same problem gets the same plan however busy "
        "the machine is",
    )
    budget_s: float = Field(
        default=1.8,
        gt=0,
        le=60,
        title="Safety net (wall s)",
        description="wall time from the start of a re-plan after which a CP-SAT search is "
        "abandoned and the dispatch plan used (counted as a fallback)",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=16,
        title="Solver threads",
        description="CP-SAT's search workers (one: a sequential search; more: an interleaved "
        "portfolio, repeatable too but coarser in its work limit)",
    )
    seed: int = Field(default=0, title="Solver seed", description="CP-SAT's random seed")
    overrun: float = Field(
        default=OVERRUN_DEFAULT,
        ge=0,
        le=1,
        title="Overrun guard",
        description="how much longer than its measured time a step may run (a fraction): "
        "cpsat and dispatch book each device that much longer, so a step running long "
        "does not push a planned hard window past its close",
    )


def booked_s(r: Request, k: int, overrun: float) -> float:
    """How long segment ``k`` of ``r`` holds its devices in a plan: its measured time and
    the overrun guard, but not into the same request's next segment (its lag counts from
    this one's real end: the rest is planned again when this part has ended)."""
    seg = r.segments[k]
    pad = seg.duration_s * overrun
    if k + 1 < len(r.segments):
        pad = min(pad, r.segments[k + 1].lag_min_s)
    return seg.duration_s + pad


# --- plans from list scheduling ---------------------------------------------------------


class _Positions:
    """The deck's working positions over time: holds of (start, end, count); a hold whose
    request has not placed its last segment yet has no end (``INF``)."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.holds: dict[str, tuple[float, float, int]] = {}

    def used(self, t: float, skip: str = "") -> int:
        return sum(n for k, (a, b, n) in self.holds.items() if k != skip and a <= t < b)

    def fits(self, a: float, b: float, n: int, skip: str = "") -> bool:
        """Whether ``n`` more positions are free all through [a, b)."""
        if self.capacity is None or n == 0:
            return True
        n = min(n, self.capacity)  # an operation larger than the deck takes the whole deck
        points = [a] + [x for k, (x, _, _) in self.holds.items() if k != skip and a < x < b]
        return all(self.used(t, skip) + n <= self.capacity for t in points)

    def next_free(self, t: float, n: int, length: float = 0.0, skip: str = "") -> float:
        """The earliest time from ``t`` when ``n`` positions are free for ``length``."""
        if self.fits(t, t + max(length, 1e-6), n, skip):
            return t
        for end in sorted({b for k, (_, b, _) in self.holds.items() if k != skip and b > t}):
            if end < INF and self.fits(end, end + max(length, 1e-6), n, skip):
                return end
        return INF


def simulate_dispatch(
    requests: list[Request],
    free: dict[str, float],
    now: float,
    key: Callable[[Request, float], tuple[Any, ...]],
    positions: int | None = None,
) -> list[Slot]:
    """Non-delay dispatch in time order: whenever a request could start, the first by
    ``key`` among those that could start then gets its devices (and its plates their
    deck positions). A later segment of a request joins the queue when the one before
    it ends, as a new arrival."""
    dev = dict(free)
    deck = _Positions(positions)
    for r in requests:  # plates on the deck already hold their positions from then
        if r.positions and r.holds_from_s is not None:
            deck.holds[r.id] = (min(r.holds_from_s, now), INF, r.positions)
    queue: list[tuple[Request, int, float, float]] = [
        (r, 0, max(r.earliest_s, now), r.submitted_s) for r in requests
    ]
    slots: list[Slot] = []

    def est(e: tuple[Request, int, float, float]) -> float:
        r, k, ready, _ = e
        t = max([ready, *(dev.get(d, now) for d in r.segments[k].devices)])
        if k == 0 and r.positions and r.id not in deck.holds:
            t = deck.next_free(t, r.positions)
        return t

    while queue:
        t = min(est(e) for e in queue)
        if t == INF:  # cannot happen while holds end with their requests' last segments
            raise RuntimeError("dispatch found no request that fits the deck")
        cands = [e for e in queue if est(e) <= t + 1e-6]
        pick = min(cands, key=lambda e: (not e[0].recovery, *key(e[0], e[3])))
        queue.remove(pick)
        r, k, _, _ = pick
        seg = r.segments[k]
        slots.append(_slot(r, k, t, t + seg.duration_s))
        for d in seg.devices:
            dev[d] = t + seg.duration_s
        if r.positions and r.id not in deck.holds:
            deck.holds[r.id] = (t, INF, r.positions)
        if r.positions and k + 1 == len(r.segments):
            a, _, n = deck.holds[r.id]
            deck.holds[r.id] = (a, t + seg.duration_s, n)
        if k + 1 < len(r.segments):
            end = t + seg.duration_s
            queue.append((r, k + 1, end + r.segments[k + 1].lag_min_s, end))
    return slots


def fifo_key(r: Request, submitted: float) -> tuple[Any, ...]:
    return (submitted, r.seq)


def priority_key(r: Request, submitted: float) -> tuple[Any, ...]:
    return (-r.priority, submitted, r.seq)


class _Timeline:
    """Busy intervals of one device, to find the earliest gap that fits."""

    def __init__(self, free_from: float) -> None:
        self.busy: list[tuple[float, float]] = [(-INF, free_from)]

    def fit(self, t: float, dur: float) -> float:
        for a, b in self.busy:
            if t + dur <= a + 1e-9:
                return t
            t = max(t, b)
        return t

    def add(self, a: float, b: float) -> None:
        self.busy.append((a, b))
        self.busy.sort()


def window_dispatch(
    requests: list[Request],
    free: dict[str, float],
    now: float,
    positions: int | None = None,
    overrun: float = 0.0,
) -> list[Slot]:
    """Requests in order of their hard windows' closing, then priority; each request's
    segments placed together at the earliest times that fit their lags and the deck, each
    booking its devices ``overrun`` longer than its measured time (:func:`booked_s`)."""
    lines: dict[str, _Timeline] = {}
    deck = _Positions(positions)

    def line(d: str) -> _Timeline:
        if d not in lines:
            lines[d] = _Timeline(max(now, free.get(d, now)))
        return lines[d]

    def order(r: Request) -> tuple[Any, ...]:
        closes = r.closes_s if (r.hard and r.closes_s is not None) else INF
        return (not r.recovery, closes, -r.priority, r.earliest_s, r.seq)

    slots: list[Slot] = []
    for r in sorted(requests, key=order):
        t = max(r.earliest_s, now)
        for _ in range(200):
            placed = _place(r, t, line, overrun)
            if placed[1] is not None:
                t = placed[1]  # a lag would be overrun: start the first segment later
                continue
            starts = placed[0]
            end = starts[-1] + r.segments[-1].duration_s
            if not r.positions or r.holds_from_s is not None:
                break  # (plates on the deck already: their positions are theirs)
            later = deck.next_free(starts[0], r.positions, end - starts[0])
            if later <= starts[0]:
                break
            if later == INF:
                break  # nothing ends within the plan: keep the devices' times
            t = later  # the deck is full meanwhile: start when its plates fit
        starts = placed[0]
        for k, (a, seg) in enumerate(zip(starts, r.segments, strict=True)):
            for d in seg.devices:
                line(d).add(a, a + booked_s(r, k, overrun))
            slots.append(_slot(r, k, a, a + seg.duration_s))
        if r.positions:
            begin = starts[0] if r.holds_from_s is None else min(r.holds_from_s, starts[0])
            deck.holds[r.id] = (begin, starts[-1] + r.segments[-1].duration_s, r.positions)
    return slots


def _place(
    r: Request, t: float, line: Callable[[str], _Timeline], overrun: float = 0.0
) -> tuple[list[float], float | None]:
    """Starts of all segments from ``t``; and a later first start to retry, if a lag broke."""
    starts: list[float] = []
    end = t
    for k, seg in enumerate(r.segments):
        lo = t if k == 0 else end + seg.lag_min_s
        a = lo
        book = booked_s(r, k, overrun)
        for _ in range(100):
            b = max(line(d).fit(a, book) for d in seg.devices) if seg.devices else a
            if b == a:
                break
            a = b
        if k > 0 and seg.lag_max_s is not None and a > end + seg.lag_max_s + 1e-6:
            return starts, starts[0] + (a - end - seg.lag_max_s)
        starts.append(a)
        end = a + seg.duration_s
    return starts, None


def _slot(r: Request, k: int, a: float, b: float) -> Slot:
    return Slot(
        request=r.id,
        campaign=r.campaign,
        label=r.label,
        segment=k,
        devices=r.segments[k].devices,
        start_s=a,
        end_s=b,
        forecast=r.forecast,
        due_s=r.due_s,
        closes_s=r.closes_s,
        hard=r.hard,
        positions=r.positions,
        holds_from_s=r.holds_from_s,
    )


def score(requests: list[Request], slots: list[Slot]) -> tuple[int, float]:
    """Hard windows broken (first segments late, or lags overrun) and priority-weighted
    soft lateness (seconds) of a plan."""
    by = {(s.request, s.segment): s for s in slots}
    hard, soft = 0, 0.0
    for r in requests:
        first = by.get((r.id, 0))
        if first is None:
            continue
        if r.hard and r.closes_s is not None and first.start_s > r.closes_s + 1.0:
            hard += 1
        soft += r.priority * max(0.0, first.start_s - r.due_s)
        for k in range(1, len(r.segments)):
            seg, a, b = r.segments[k], by.get((r.id, k - 1)), by.get((r.id, k))
            if a and b and seg.lag_max_s is not None and b.start_s > a.end_s + seg.lag_max_s + 1:
                hard += 1
    return hard, soft


# --- CP-SAT ----------------------------------------------------------------------------


def cpsat(
    requests: list[Request],
    free: dict[str, float],
    now: float,
    hint: list[Slot],
    budget_s: float,
    workers: int,
    positions: int | None = None,
    work: float = 1.0,
    seed: int = 0,
    overrun: float = 0.0,
) -> Solved:
    """The plan that minimises hard-window lateness first, then soft lateness x priority.

    The search stops at ``work`` units of the solver's deterministic time (or when it
    proves the plan optimal), with ``interleave_search`` and a fixed seed: the same
    problem gives the same plan on a busy machine or an idle one. ``budget_s`` of wall
    time from this call (building the model comes out of it) is a safety net: a search
    it stops gives no plan (``Stop.WALL``), since where the search was then depends on
    the machine's load. Each segment holds its devices
    ``overrun`` longer than its measured time (:func:`booked_s`): a hard window is planned
    no closer to its close than the step before it on its devices may run long."""
    from ortools.sat.python import cp_model  # imported here: a heavy module

    began = time.perf_counter()

    m = cp_model.CpModel()
    hinted = {(s.request, s.segment): s.start_s for s in hint}
    total = sum(
        booked_s(r, k, overrun) + seg.lag_min_s
        for r in requests
        for k, seg in enumerate(r.segments)
    )
    latest = max([r.earliest_s for r in requests] + list(free.values()) + [now])
    horizon = int(latest - now + total + 3600) + 1

    def rel(x: float) -> int:
        return max(0, int(math.ceil(x - now)))

    starts: dict[tuple[str, int], Any] = {}
    intervals: dict[str, list[Any]] = {}
    holds: list[tuple[Any, int]] = []  # deck positions: (interval, plates)
    objective = []
    for r in requests:
        prev_end = None
        for k, seg in enumerate(r.segments):
            dur = int(math.ceil(seg.duration_s))
            lb = rel(max([r.earliest_s, *(free.get(d, now) for d in seg.devices)]))
            s = m.NewIntVar(lb, horizon, f"s_{r.id}_{k}")
            book = int(math.ceil(booked_s(r, k, overrun)))
            iv = m.NewFixedSizeIntervalVar(s, book, f"i_{r.id}_{k}")
            for d in seg.devices:
                intervals.setdefault(d, []).append(iv)
            if prev_end is not None:
                m.Add(s >= prev_end + int(seg.lag_min_s))
                if seg.lag_max_s is not None:  # a hard lag: late only as a last resort
                    over = m.NewIntVar(0, horizon, f"o_{r.id}_{k}")
                    m.Add(over >= s - prev_end - int(seg.lag_max_s))
                    objective.append(HARD_WEIGHT * over)
            starts[(r.id, k)] = s
            if (r.id, k) in hinted:
                m.AddHint(s, min(horizon, max(lb, rel(hinted[(r.id, k)]))))
            prev_end = s + dur
        if r.positions and positions is not None:
            assert prev_end is not None
            begin = starts[(r.id, 0)] if r.holds_from_s is None else rel(r.holds_from_s)
            size = m.NewIntVar(0, horizon, f"z_{r.id}")
            iv = m.NewIntervalVar(begin, size, prev_end, f"p_{r.id}")
            holds.append((iv, min(r.positions, positions)))
        first = starts[(r.id, 0)]
        soft = m.NewIntVar(0, horizon, f"l_{r.id}")
        m.Add(soft >= first - rel(r.due_s))
        objective.append(r.priority * soft)
        if r.closes_s is not None and r.hard:
            late = m.NewIntVar(0, horizon, f"h_{r.id}")
            m.Add(late >= first - rel(r.closes_s))
            objective.append(HARD_WEIGHT * late)
        if r.recovery:
            objective.append(HARD_WEIGHT * 10 * soft)
    for ivs in intervals.values():
        m.AddNoOverlap(ivs)
    if holds and positions is not None:
        m.AddCumulative([h for h, _ in holds], [n for _, n in holds], positions)
    m.Minimize(sum(objective))
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.num_workers = workers  # one: a sequential search, repeatable under a work limit
    if workers > 1:  # the parallel portfolio is repeatable only interleaved (its work limit is
        prm.interleave_search = True  # checked between batches, so it overshoots it)
    prm.random_seed = seed
    prm.linearization_level = 0  # no LP: its bound is useless here, and it costs wall time
    prm.max_deterministic_time = work
    # the safety net only (past it, the plan is not kept): what is left of it once built
    prm.max_time_in_seconds = max(0.01, budget_s - (time.perf_counter() - began))
    status = solver.Solve(m)
    wall, dtime = solver.wall_time, solver.response_proto.deterministic_time
    if status in (cp_model.OPTIMAL, cp_model.INFEASIBLE):
        stop = Stop.OPTIMAL  # the search ended by itself
    elif dtime >= work * 0.98:  # (the solver stops a hair short of its work limit)
        stop = Stop.WORK
    else:  # a limit ended it before its work was done: the only other is the wall clock
        stop = Stop.WALL
    out = Solved(stop=stop, wall_s=wall, work=dtime)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out.method = f"cp-sat found no plan ({stop.value})"
        return out
    if stop is Stop.WALL:  # where the search was when the wall clock ran out: not repeatable
        out.method = f"cp-sat stopped by the {budget_s:g} s safety net"
        return out
    out.slots = []
    for r in requests:
        for k, seg in enumerate(r.segments):
            a = now + solver.Value(starts[(r.id, k)])
            out.slots.append(_slot(r, k, a, a + seg.duration_s))
    out.method = (
        "cp-sat optimal" if stop is Stop.OPTIMAL else f"cp-sat feasible (work limit {work:g})"
    )
    return out


def _no_worse(a: tuple[int, float], b: tuple[int, float], reqs: list[Request]) -> bool:
    """CP-SAT plans in whole seconds (rounded up): allow a second per request."""
    return a[0] < b[0] or (a[0] == b[0] and a[1] <= b[1] + sum(r.priority for r in reqs))


class Scheduler:
    """Makes plans with one policy; remembers the last for the floor and the UI."""

    def __init__(self, params: SchedulerParams | None = None) -> None:
        self.params = params or SchedulerParams()
        self.last: Plan | None = None
        self.solve_times: list[float] = []
        self.fallbacks = 0  # plans where the dispatch plan was kept instead of CP-SAT's
        self.stops: dict[Stop, int] = {}  # what ended each CP-SAT search

    def plan(
        self,
        requests: list[Request],
        free: dict[str, float],
        now: float,
        positions: int | None = None,
    ) -> Plan:
        """A plan of ``requests`` from ``now``; ``free``: when each device is free;
        ``positions``: the deck's working positions (None: not a constraint)."""
        p = self.params
        reqs = [
            r
            for r in requests
            if not r.forecast or r.earliest_s <= now + p.horizon_h * 3600 or r.recovery
        ]
        t0 = time.perf_counter()
        stop: Stop | None = None
        work = 0.0
        if p.policy is Policy.FIFO:
            slots = simulate_dispatch(reqs, free, now, fifo_key, positions)
            method = "fifo dispatch"
        elif p.policy is Policy.PRIORITY:
            slots = simulate_dispatch(reqs, free, now, priority_key, positions)
            method = "priority dispatch"
        else:
            slots = window_dispatch(reqs, free, now, positions, p.overrun)
            method = "window dispatch"
            if p.policy is Policy.CPSAT and reqs:
                got = cpsat(
                    reqs,
                    free,
                    now,
                    slots,
                    p.budget_s - (time.perf_counter() - t0),  # the dispatch plan took some
                    p.workers,
                    positions,
                    p.work,
                    p.seed,
                    p.overrun,
                )
                stop, work = got.stop, got.work
                self.stops[got.stop] = self.stops.get(got.stop, 0) + 1
                if got.slots is not None and _no_worse(
                    score(reqs, got.slots), score(reqs, slots), reqs
                ):
                    slots, method = got.slots, got.method
                else:
                    self.fallbacks += 1
                    why = (
                        got.method
                        if got.slots is None
                        else f"{got.method}, no better than the heuristic"
                    )
                    method = f"window dispatch ({why})"
        took = time.perf_counter() - t0
        if p.policy is Policy.CPSAT:
            self.solve_times.append(took)
        hard, soft = score(reqs, slots)
        slots.sort(key=lambda s: (s.start_s, s.request, s.segment))
        self.last = Plan(
            policy=p.policy,
            made_at_s=now,
            slots=slots,
            method=method,
            solve_s=took,
            stop=stop,
            work=work,
            hard_late=hard,
            soft_late_s=soft,
        )
        return self.last
