"""The scheduler: plans keep the windows, two campaigns on one workcell judged from their
batch records, and the measured device times still match the dry-runs."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocols.campaign.audit import audit
from protocols.campaign.engine import CampaignParams
from protocols.campaign.floor import FLOOR_STORE, CampaignSpec, Floor, FloorParams
from protocols.campaign.profiles import fit, floor_config, load_profiles, measure
from protocols.campaign.scheduler import Policy, Request, Scheduler, SchedulerParams, Seg
from tests.campaign_helpers import child_env
from tests.conftest import run
from workcell.store import STORE_FILE, Store


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
            assert plan.start_of("a2") == 300 and plan.start_of("b1") == 1289
    assert late == {Policy.FIFO: 1, Policy.PRIORITY: 1, Policy.DISPATCH: 0, Policy.CPSAT: 0}


def test_recovery_goes_first_in_every_policy() -> None:
    a = _req("a1", [Seg(devices=["star"], duration_s=600)], 0, seq=1, priority=9)
    b = _req("b1", [Seg(devices=["star"], duration_s=600)], 0, seq=2, recovery=True)
    for policy in Policy:
        plan = Scheduler(SchedulerParams(policy=policy)).plan([a, b], {}, 0)
        assert plan.start_of("b1") == 0, policy


def _two_campaigns(folder: Path, policy: Policy) -> tuple[Floor, dict[str, Path]]:
    # twins started together: their passages and harvests fall on the same hour
    specs = [
        CampaignSpec(name=n, params=CampaignParams(max_days=8, max_vessels=12)) for n in ("a", "b")
    ]
    floor = Floor(
        folder / policy.value, specs, FloorParams(scheduler=SchedulerParams(policy=policy))
    )
    run(floor.run())
    return floor, {s.name: folder / policy.value / s.name for s in specs}


def test_two_campaigns_fifo_overruns_the_enzyme_and_cpsat_does_not(tmp_path: Path) -> None:
    params = {n: CampaignParams(max_days=8, max_vessels=12) for n in ("a", "b")}
    results = {}
    for policy in (Policy.FIFO, Policy.CPSAT):
        floor, dirs = _two_campaigns(tmp_path, policy)
        results[policy] = audit(dirs, params, floor.params.windows)
        # both campaigns ran to their end, in their own records
        assert results[policy].feeds > 0 and len(results[policy].enzyme_waits_min) == 4
        assert results[policy].device_overlaps == 0
    fifo, cp = results[Policy.FIFO], results[Policy.CPSAT]
    assert any(v.window == "enzyme" and v.hard for v in fifo.violations)
    assert cp.hard == 0
    assert max(cp.enzyme_waits_min) <= 5 + 3


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
    folder = tmp_path / "floor"
    cmd = [sys.executable, "-m", "protocols.campaign.floor", str(folder), "--days", "8"]
    env = child_env(tmp_path / "locks")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = None
    try:
        deadline = time.monotonic() + 120
        while victim is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            victim = _granted_passage(folder / FLOOR_STORE)
        assert victim is not None, "the floor never granted a passage"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
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
    # the campaign's own record: the passage was done once, after the recovery grant
    record = Store(folder / victim / STORE_FILE)
    try:
        passages = [e for e in record.events("step_finished") if "passage" in e.data["step"]]
        scheduled = [e for e in record.events("scheduled") if "recovery" in e.data["reason"]]
    finally:
        record.close()
    assert len(passages) == 1 and scheduled and passages[0].time >= scheduled[0].time


def _granted_passage(path: Path) -> str | None:
    """The campaign the floor gave a passage to and has not released yet, if any."""
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
        if "passage" in request and "after" not in request:
            return campaign
    return None
