"""The scheduler: plans keep the windows, two campaigns on one workcell judged from their
batch records, and the measured device times still match the dry-runs."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from protocols.campaign.audit import audit
from protocols.campaign.engine import CampaignParams
from protocols.campaign.floor import FLOOR_STORE, CampaignSpec, Floor, FloorParams
from protocols.campaign.profiles import fit, floor_config, load_profiles, measure
from protocols.campaign.scheduler import (
    Policy,
    Request,
    Scheduler,
    SchedulerParams,
    Seg,
    Stop,
    cpsat,
    window_dispatch,
)
from tests.campaign_helpers import child_env
from tests.conftest import run
from workcell.store import STORE_FILE, Event, Store


def _req(id_: str, segs: list[Seg], earliest: float, **kw: object) -> Request:
    return Request(
        id=id_,
        campaign=id_[0],
        label=id_,
        kind="x",
        segments=segs,
        earliest_s=earliest,
        due_s=earliest,
        submitted_s=kw.pop("submitted", earliest),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_fifo_gives_the_gap_away_and_the_planners_keep_the_enzyme_window() -> None:
    neutralise = _req(
        "a2",
        [Seg(devices=["star", "counter"], duration_s=989)],
        300,
        closes_s=480,
        hard=True,
        submitted=0,
        seq=2,
    )
    feed = _req("b1", [Seg(devices=["star"], duration_s=677)], 0, closes_s=43200, hard=True, seq=1)
    late = {}
    for policy in Policy:
        plan = Scheduler(SchedulerParams(policy=policy, budget_s=2)).plan([neutralise, feed], {}, 0)
        late[policy] = plan.hard_late
        if policy in (Policy.DISPATCH, Policy.CPSAT):
            # the feed follows the neutralisation's booking: 989 s and the 5 % overrun guard
            assert plan.start_of("a2") == 300
            assert plan.start_of("b1") == pytest.approx(300 + 989 * 1.05, abs=1)
    assert late == {Policy.FIFO: 1, Policy.PRIORITY: 1, Policy.DISPATCH: 0, Policy.CPSAT: 0}


def _act(
    policy: Policy, reqs: list[Request], free: dict[str, float], longer: float
) -> dict[str, float]:
    """Acts the plans out as the capacity sweep does: the first planned request starts
    when its plan says (or when its devices come free), runs ``longer`` than its measured
    time, then the rest is planned again. The starts as acted, by request."""
    sched, pending, free, began = (
        Scheduler(SchedulerParams(policy=policy)),
        list(reqs),
        dict(free),
        {},
    )
    while pending:
        plan = sched.plan(pending, free, 0.0)
        first = min((s for s in plan.slots if s.segment == 0), key=lambda s: s.start_s)
        r = next(x for x in pending if x.id == first.request)
        seg = r.segments[0]
        t = max(first.start_s, r.earliest_s, *(free.get(d, 0.0) for d in seg.devices))
        began[r.id] = t
        for d in seg.devices:
            free[d] = t + seg.duration_s * longer
        pending.remove(r)
    return began


def test_a_step_running_5_percent_long_does_not_push_the_enzyme_past_its_close() -> None:
    """The N=22 steady-state sweep's broken window, reduced: the enzyme of a passage is due
    at 300 s (tolerance 3 min) and a daily image (5.5 min on the incubator's mover) is due
    at 150 s. Squeezing the image in first plans the neutralisation at 478 s, 2 s inside its
    close: the image runs 5 % long (the sweep's spread) and the enzyme is late. Judged from
    the starts as acted, not from the plan's own hard-lateness count."""
    neutralise = _req(
        "a2",
        [Seg(devices=["counter", "incubator", "star"], duration_s=4973)],
        300,
        closes_s=480,
        hard=True,
        seq=2,
    )
    image = _req(
        "b1", [Seg(devices=["imager", "incubator"], duration_s=328)], 150, closes_s=21750, seq=1
    )
    for policy in (Policy.DISPATCH, Policy.CPSAT):
        began = _act(policy, [neutralise, image], {"incubator": 0.0, "star": 0.0}, 1.05)
        assert began["a2"] <= 480 + 1, (policy, began)
        assert began["b1"] < 21750, (policy, began)  # the image waits, inside its own window


def test_the_overrun_guard_does_not_collide_with_its_own_enzyme() -> None:
    """A harvest's first part (2.8 h) booked 5 % longer would reach past its own enzyme's
    close (5 min + 3 min): the guard stops at the next part's lag."""
    harvest = _req(
        "h1",
        [
            Seg(devices=["incubator", "star"], duration_s=10074),
            Seg(
                devices=["counter", "incubator", "star"],
                duration_s=3262,
                lag_min_s=300,
                lag_max_s=480,
            ),
        ],
        0,
        closes_s=3600,
        hard=True,
    )
    for policy in (Policy.DISPATCH, Policy.CPSAT):
        plan = Scheduler(SchedulerParams(policy=policy)).plan([harvest], {}, 0)
        assert plan.hard_late == 0, policy
        assert [s.start_s for s in plan.slots] == [0, 10074 + 300], policy


def test_recovery_goes_first_in_every_policy() -> None:
    a = _req("a1", [Seg(devices=["star"], duration_s=600)], 0, seq=1, priority=9)
    b = _req("b1", [Seg(devices=["star"], duration_s=600)], 0, seq=2, recovery=True)
    for policy in Policy:
        plan = Scheduler(SchedulerParams(policy=policy)).plan([a, b], {}, 0)
        assert plan.start_of("b1") == 0, policy


def _crowded(n: int = 24) -> list[Request]:
    """More work than the devices can do on time: CP-SAT cannot prove a plan optimal fast."""
    rng = random.Random(7)
    reqs: list[Request] = []
    for i in range(n):
        due = rng.uniform(0, 4 * 3600)
        segs = [Seg(devices=["star", "mover"], duration_s=rng.uniform(300, 1500))]
        if i % 3 == 0:  # an enzyme's wait, then the neutralisation
            segs.append(
                Seg(
                    devices=["star", "counter", "mover"],
                    duration_s=rng.uniform(300, 900),
                    lag_min_s=300,
                    lag_max_s=480,
                )
            )
        reqs.append(
            _req(
                f"c{i}", segs, due, closes_s=due + 7200, hard=i % 2 == 0, seq=i, positions=1 + i % 4
            )
        )
    return reqs


def test_cpsat_stopped_by_its_work_limit_gives_the_same_plan_twice() -> None:
    """The search is limited by deterministic work, not the wall clock: the same problem
    gives the same plan whatever else the machine is doing."""
    reqs = _crowded()
    hint = window_dispatch(reqs, {}, 0.0, 10)
    plans = []
    for _ in range(2):
        got = cpsat(reqs, {}, 0.0, hint, budget_s=30, workers=1, positions=10, work=0.05)
        assert got.stop is Stop.WORK, got  # the limit, not optimality, ended the search
        assert got.slots is not None and abs(got.work - 0.05) < 0.01
        plans.append([(s.request, s.segment, s.start_s) for s in got.slots])
    assert plans[0] == plans[1]
    wall = cpsat(reqs, {}, 0.0, hint, budget_s=0.01, workers=1, positions=10, work=50)
    assert wall.stop is Stop.WALL and wall.slots is None  # the safety net's plan is not kept
    sched = Scheduler(SchedulerParams(budget_s=0.01, work=50))
    plan = sched.plan(reqs, {}, 0.0, 10)
    assert plan.stop is Stop.WALL and "safety net" in plan.method and sched.fallbacks == 1


def test_every_policy_keeps_the_deck_positions() -> None:
    """A passage in its enzyme gap keeps its parent and destinations on the deck: a feed
    may have the free liquid handler meanwhile only if its plate finds a position."""
    gap = _req(
        "a2",
        [Seg(devices=["star"], duration_s=900)],
        300,
        closes_s=480,
        hard=True,
        positions=3,
        holds_from_s=0,
        submitted=0,
        seq=1,
    )
    feed = _req("b1", [Seg(devices=["star"], duration_s=200)], 0, positions=1, seq=2)
    for policy in Policy:
        sched = Scheduler(SchedulerParams(policy=policy, budget_s=2))
        assert sched.plan([gap, feed], {}, 0, positions=4).start_of("b1") == 0, policy
        # its plate fits when a2 has ended (1200 s); the planners book a2's liquid handler
        # 5 % longer (the overrun guard), the baselines do not
        guard = 900 * 0.05 if policy in (Policy.DISPATCH, Policy.CPSAT) else 0
        after = sched.plan([gap, feed], {}, 0, positions=3).start_of("b1")
        assert after == pytest.approx(1200 + guard, abs=1), policy


_FLOORS: dict[tuple[Policy, int | None], tuple[Floor, dict[str, Path]]] = {}


@pytest.fixture(scope="module")
def floors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two-campaign floors, each run once for the tests of this module that judge it."""
    folder = tmp_path_factory.mktemp("floors")

    def get(policy: Policy, positions: int | None = None) -> tuple[Floor, dict[str, Path]]:
        if (policy, positions) not in _FLOORS:
            _FLOORS[(policy, positions)] = _two_campaigns(folder, policy, positions)
        return _FLOORS[(policy, positions)]

    yield get
    _FLOORS.clear()


def _two_campaigns(
    folder: Path, policy: Policy, positions: int | None = None
) -> tuple[Floor, dict[str, Path]]:
    # twins started together: their passages and harvests fall on the same hour
    specs = [
        CampaignSpec(name=n, params=CampaignParams(max_days=8, max_vessels=12)) for n in ("a", "b")
    ]
    where = folder / f"{policy.value}-{positions}"
    params = FloorParams(scheduler=SchedulerParams(policy=policy), deck_positions=positions)
    floor = Floor(where, specs, params)
    run(floor.run())
    return floor, {s.name: where / s.name for s in specs}


def test_two_campaigns_fifo_overruns_the_enzyme_and_cpsat_does_not(floors: Any) -> None:
    params = {n: CampaignParams(max_days=8, max_vessels=12) for n in ("a", "b")}
    results = {}
    for policy in (Policy.FIFO, Policy.CPSAT):
        floor, dirs = floors(policy)
        results[policy] = audit(dirs, params, floor.params.windows)
        # both campaigns ran to their end, in their own records: each plate detached is an
        # enzyme batch of its own (per campaign a passage of one plate, a harvest of two)
        assert results[policy].feeds > 0 and len(results[policy].enzyme_waits_min) == 6
        assert results[policy].device_overlaps == 0
    fifo, cp = results[Policy.FIFO], results[Policy.CPSAT]
    assert any(v.window == "enzyme" and v.hard for v in fifo.violations)
    assert cp.hard == 0
    assert max(cp.enzyme_waits_min) <= 5 + 3
    assert fifo.mover_overlaps == 0 and cp.mover_overlaps == 0
    # every CP-SAT grant says what ended its plan's search, in the floor's own record
    store = Store(floors(Policy.CPSAT)[0].folder / FLOOR_STORE)
    try:
        stops = [e.data["stop"] for e in store.events("granted")]
    finally:
        store.close()
    assert stops and set(stops) <= {"optimal", "work limit", "wall-time safety net"}


def test_two_campaigns_keep_within_the_deck_positions(floors: Any) -> None:
    """Two plates at a time on the deck: FIFO with the config's ten positions puts a third
    on it (a feed in the other campaign's enzyme gap, its harvest's plates still there);
    with two, FIFO and CP-SAT keep within them. Judged from the batch records."""
    params = {n: CampaignParams(max_days=8, max_vessels=12) for n in ("a", "b")}
    floor, dirs = floors(Policy.FIFO)
    assert floor.positions == 10  # the config's culture plate sites
    free = audit(dirs, params, floor.params.windows, deck_positions=2)
    assert free.deck_peak > 2 and free.deck_overfull > 0
    for policy in (Policy.FIFO, Policy.CPSAT):
        floor, dirs = floors(policy, positions=2)
        kept = audit(dirs, params, floor.params.windows, deck_positions=2)
        assert kept.deck_peak == 2 and kept.deck_overfull == 0, policy
        assert len(kept.enzyme_waits_min) == 6 and kept.device_overlaps == 0, policy
        assert kept.mover_overlaps == 0, policy
    assert kept.hard == 0


def test_the_labs_own_logs_agree_with_the_records(floors: Any) -> None:
    """The twins judged a second time, from their simulated labs' logs merged on the
    floor's timeline: CP-SAT on a two-position deck keeps every device to one campaign,
    the deck within its positions, the plate mover to one campaign and each plate's
    enzyme within its maximum; FIFO overruns the enzyme and (judged against two
    positions) fills the deck, and the world sees it too. Records and world agree."""
    params = {n: CampaignParams(max_days=8, max_vessels=12) for n in ("a", "b")}
    floor, dirs = floors(Policy.CPSAT, positions=2)
    kept = audit(dirs, params, floor.params.windows, deck_positions=2)
    world = kept.world
    assert world is not None and world.labs == 2
    assert world.device_overlaps == 0 and world.mover_overlaps == 0, world.overlaps
    assert world.device_busy_s["star"] > 3600 and world.device_busy_s["imager"] > 0
    assert world.deck_peak == 2 and world.deck_overfull == 0
    windows = [m for batches in world.enzyme_window_min.values() for m in batches]
    assert len(windows) == 6 and world.enzyme_over == 0 and max(windows) <= 5 + 3
    assert world.out_over == 0 and len(world.out_of_incubator_min) == 6
    assert kept.disagreements == 0, kept.disagreeing
    floor, dirs = floors(Policy.FIFO)
    free = audit(dirs, params, floor.params.windows, deck_positions=2)
    assert free.world is not None
    assert free.world.enzyme_over == sum(v.window == "enzyme" for v in free.violations) > 0
    assert free.world.deck_peak > 2 and free.world.deck_overfull > 0
    assert free.disagreements == 0, free.disagreeing


def _row(seq: int, t: float, device: str, action: str, end: float, **detail: Any) -> Any:
    start = datetime(2026, 1, 5, 8, tzinfo=UTC) + timedelta(seconds=t)
    return {
        "seq": seq,
        "t": t,
        "time": start.isoformat(),
        "device": device,
        "action": action,
        "detail": detail,
        "end_t": end,
    }


def _hand_log(offset: float) -> list[Any]:
    """One campaign's lab: a plate seeded on the deck, its enzyme on and neutralised
    (10 min later), pooled; from ``offset`` seconds on the floor's timeline."""
    o = offset
    well = "plate_1_well_A1"
    return [
        _row(1, o, "star", "dispense", o + 10, target=well, volume_uL=1000, cells=1e5,
             sources=["cell_suspension"], enzyme=0.0, volume_after_uL=1000),
        _row(2, o + 10, "star", "aspirate", o + 20, source=well, volume_uL=1000, cells=0,
             enzyme=0.0),
        _row(3, o + 20, "star", "dispense", o + 30, target=well, volume_uL=500, cells=0,
             sources=["enzyme"], enzyme=1.0, volume_after_uL=500),
        _row(4, o + 630, "star", "dispense", o + 640, target=well, volume_uL=1000, cells=0,
             sources=["medium"], enzyme=0.0, volume_after_uL=1500),
        _row(5, o + 640, "star", "aspirate", o + 650, source=well, volume_uL=1500, cells=1e5,
             enzyme=0.3),
    ]  # fmt: skip


def test_the_world_audit_sees_what_the_labs_did_not_what_was_planned() -> None:
    """Hand-made lab logs: two campaigns' liquid handling 20 s apart overlaps on the
    star, puts two plates with cells on a one-position deck, and each enzyme acts 10 min
    against a maximum of 8. A record that says otherwise disagrees, by name."""
    from protocols.campaign.audit import Audit
    from protocols.campaign.world_audit import compare, world_audit

    logs = {"a": _hand_log(0), "b": _hand_log(20)}
    world = world_audit(logs=logs, deck_positions=1, enzyme_max_min={"a": 8, "b": 8})
    assert world.labs == 2 and world.device_overlaps == 1
    assert world.overlaps == ["star: b at day 0.000 (20 s) while a used it"]
    assert world.deck_peak == 2 and world.deck_overfull == 1
    assert world.enzyme_over == 2 and world.enzyme_window_min["a/plate_1"] == [10.0]
    apart = world_audit(logs={"a": _hand_log(0), "b": _hand_log(700)}, deck_positions=1)
    assert apart.device_overlaps == 0 and apart.deck_peak == 1 and apart.deck_overfull == 0
    record = Audit(
        campaigns=2,
        violations=[],
        soft_lateness_h=0,
        enzyme_waits_min=[10.0, 10.0],
        enzyme_first_plate_max_min=10.0,
        feeds=0,
        images=0,
        device_overlaps=0,
        device_busy_s={},
        deck_peak=1,
        enzyme_plate_min={"a/plate_1": [10.0], "b/plate_1": [5.0]},
    )
    assert compare(record, world) == [
        "device overlaps: record 0, world 1",
        "deck peak: record 1, world 2",
        "deck overfull: record 0, world 1",
        "enzyme b/plate_1 batch 1: record 5.00 min, world 10.00 min",
    ]


class _Forgetful(dict[str, float]):
    """Device release times the floor never keeps: its device exclusivity switched off."""

    def __setitem__(self, key: str, value: float) -> None:
        pass


def test_a_floor_that_shares_its_devices_carelessly_is_caught_by_its_labs(
    tmp_path: Path,
) -> None:
    """The twins on a floor that forgets who holds which device: each is granted its
    requests as if the devices were free, and the labs' logs show the liquid handler,
    the imager and the plate mover used by both at once (the records say the same)."""
    specs = [CampaignSpec(name=n, params=CampaignParams(max_days=2, max_vessels=12)) for n in "ab"]
    floor = Floor(tmp_path, specs)
    floor.free = _Forgetful()
    run(floor.run())
    params = {s.name: s.params for s in specs}
    found = audit({n: tmp_path / n for n in params}, params, floor.params.windows)
    world = found.world
    assert world is not None and world.device_overlaps > 0 and world.mover_overlaps > 0
    assert {o.split(":")[0] for o in world.overlaps} >= {"star", "imager", "plate mover"}
    assert found.device_overlaps == world.device_overlaps, found.disagreeing
    assert found.disagreements == 0, found.disagreeing


def test_stored_device_times_match_a_fresh_dry_run() -> None:
    stored = load_profiles()
    cfg = floor_config()
    fresh = fit(run(measure(cfg)), cfg.name)
    assert set(fresh.operations) == set(stored.operations)
    for kind, op in stored.operations.items():
        for old, new in zip(op.segments, fresh.operations[kind].segments, strict=True):
            assert old.devices == new.devices, kind
            for n in (1, 4):
                assert new.duration_s(n) == pytest.approx(old.duration_s(n), rel=0.05), kind


def test_after_a_kill_the_floor_rebuilds_and_the_interrupted_step_goes_first(
    tmp_path: Path,
) -> None:
    """SIGKILL the floor in the middle of a granted detachment (a passage or a harvest:
    the enzyme's window is hard), run it again on the same
    folder: judged from the batch records, the interrupted campaign's recovery (#11's
    declared recovery of its step) is granted before anything else and no window breaks."""
    folder = tmp_path / "floor"
    cmd = [sys.executable, "-m", "protocols.campaign.floor", str(folder), "--days", "8"]
    env = child_env(tmp_path / "locks")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = None
    try:
        deadline = time.monotonic() + 120
        while victim is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            victim = _mid_detach(folder)
        assert victim is not None, "the floor never granted a passage or a harvest"
        proc.send_signal(signal.SIGKILL)  # between two device actions of the step
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    names = ("c0", "c1")
    before = {c: _count_events(folder / c / STORE_FILE) for c in names}
    # resume on the same folders, to the end
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    store = Store(folder / FLOOR_STORE)
    try:
        events = store.events()
    finally:
        store.close()
    resumed = [i for i, e in enumerate(events) if e.kind == "floor_resumed"]
    assert resumed and victim in events[resumed[0]].data["interrupted"]
    first = next(e for e in events[resumed[0] :] if e.kind == "granted")
    assert first.data["campaign"] == victim
    assert first.data["reason"].startswith("recovery of an interrupted step")
    # the batch records, from what each wrote after the resume
    after: dict[str, list[Event]] = {}
    finished: list[Event] = []
    for c in names:
        record = Store(folder / c / STORE_FILE)
        try:
            after[c] = record.events()[before[c] :]
            finished = finished if c != victim else record.events("step_finished")
        finally:
            record.close()
    (cut,) = [e for e in after[victim] if e.kind == "deviation" and e.data.get("interruption")]
    # the interrupted step finished once, not redone as a new step
    assert [e.data["step_id"] for e in finished].count(cut.data["step_id"]) == 1
    mine = [e for e in after[victim] if e.kind == "scheduled"]
    assert mine and "recovery" in mine[0].data["reason"], [e.data for e in mine[:2]]
    resumed_step = [e for e in after[victim] if e.kind == "step_resumed"]
    assert resumed_step and resumed_step[0].time >= mine[0].time
    for c in names:
        if c != victim:
            theirs = [e.time for e in after[c] if e.kind == "scheduled"]
            assert all(t >= mine[0].time for t in theirs), c
    params = {c: CampaignParams(max_days=8, max_vessels=12) for c in names}
    judged = audit({c: folder / c for c in names}, params, FloorParams().windows)
    assert judged.hard == 0, judged.violations
    assert judged.device_overlaps == 0
    assert judged.world is not None and judged.world.device_overlaps == 0
    assert judged.disagreements == 0, judged.disagreeing
    # both passages (one plate each) and both harvests (two plates each: a batch a plate)
    assert len(judged.enzyme_waits_min) == 6


def _mid_detach(folder: Path) -> str | None:
    """A campaign the floor gave a detachment to (before its enzyme incubates) whose batch
    record shows the step begun, with device actions, and not finished."""
    c = _granted_detach(folder / FLOOR_STORE)
    path = folder / str(c) / STORE_FILE
    if c is None or not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        started = db.execute(
            "SELECT id, data FROM events WHERE kind='step_started' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        label = "" if started is None else json.loads(started[1])["step"]
        if started is None or not any(k in label for k in DETACHING):
            return None
        finished = db.execute(
            "SELECT COUNT(*) FROM events WHERE kind='step_finished' AND data LIKE ?",
            (f'%"step_id": {started[0]}}}',),
        ).fetchone()[0]
        intents = db.execute(
            "SELECT COUNT(*) FROM journal WHERE kind='intent' AND step_id=?", (started[0],)
        ).fetchone()[0]
        db.close()
    except sqlite3.Error:
        return None
    return c if not finished and intents >= 3 else None


def _count_events(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        db.close()


DETACHING = ("passage", "harvest")


def _granted_detach(path: Path) -> str | None:
    """The campaign the floor gave a passage or harvest to and has not released yet."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        rows = db.execute("SELECT kind, data FROM events ORDER BY id").fetchall()
        db.close()
    except sqlite3.Error:
        return None
    holding: dict[str, str] = {}
    for kind, data in rows:
        d = json.loads(data)
        if kind == "granted":
            holding[d["campaign"]] = d["request"]
        elif kind == "released":
            holding.pop(d["campaign"], None)
    for campaign, request in holding.items():
        if any(k in request for k in DETACHING) and "after" not in request:
            return campaign
    return None


def test_a_resumed_floor_goes_on_from_its_last_grant_not_a_later_release(
    tmp_path: Path,
) -> None:
    """The floor runs each campaign on its own clock: a release can lie ahead of a later
    grant. After a kill, the interrupted campaign must not wait for that release's time."""
    floor = Floor(tmp_path, [CampaignSpec(name="c0"), CampaignSpec(name="c1")])
    floor.now = 100
    floor.event("granted", "c1", request="c1: image", devices=["imager"], start_s=100)
    floor.now = 1100
    floor.event("released", "c1", request="c1: image", devices=["imager"], start_s=100, end_s=1100)
    floor.now = 500
    floor.event("granted", "c0", request="c0: passage", devices=["star"], start_s=500)
    floor.store.close()
    again = Floor(tmp_path, [CampaignSpec(name="c0"), CampaignSpec(name="c1")])
    again._resume()
    assert again.now == 500 and again.recovering == {"c0"}
    assert again.free == {"imager": 1100}
    again.store.close()
