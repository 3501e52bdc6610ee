"""The expansion campaign: its rules, a run to harvest, and a killed run resumed."""

from __future__ import annotations

import math
import signal
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protocols.campaign.engine import (
    DAY_S,
    GROUP_SHARE,
    CampaignEngine,
    CampaignParams,
    CampaignView,
    Kind,
    PlateState,
    auto_approve,
    cells_per_cm2_at_confluence,
    decide,
    estimated_cells,
    imaged_cells,
)
from simulators.lab.store import read_log
from tests.campaign_helpers import WORKCELL, child_env, histories, quick_config
from tests.conftest import run
from workcell.assembly.config import load_config
from workcell.assembly.lab import LAB_FOLDER
from workcell.assembly.session import open_session
from workcell.batch import lineage
from workcell.journal import CRASH_ENV
from workcell.store import STORE_FILE, Store

DECK = {f"plate_{i}": 6 for i in (1, 2, 4, 5, 6, 7, 8, 9, 10)}
P = CampaignParams()


def _view(now_days: float, plates: list[PlateState], **kw: object) -> CampaignView:
    return CampaignView(
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        now_s=now_days * DAY_S,
        plates=plates,
        finished=bool(kw.get("finished", False)),
        last_viability=kw.get("viability"),  # type: ignore[arg-type]
        used_plates={p.plate for p in plates} | set(kw.get("used", set())),  # type: ignore[call-overload]
    )


def _plate(
    name: str, conf: float | None, fed: float = 0, imaged: float = 0, passage: int = 1
) -> PlateState:
    return PlateState(
        plate=name,
        vessels=[f"{name}_well_A1"],
        area_cm2=57.6,
        passage=passage,
        last_fed_s=fed * DAY_S,
        last_imaged_s=imaged * DAY_S,
        confluence=conf,
    )


# --- the rules --------------------------------------------------------------------------


def test_first_action_is_seeding() -> None:
    v = CampaignView(
        started_at=None, now_s=0, plates=[], finished=False, last_viability=None, used_plates=set()
    )
    (a,) = decide(v, P, DECK).actions
    assert a.kind is Kind.SEED and a.plates == ["plate_1"]


def test_images_daily_feeds_on_schedule_and_waits_in_between() -> None:
    assert decide(_view(1.0, [_plate("plate_1", 0.2)]), P, DECK).actions[0].kind is Kind.IMAGE
    d = decide(_view(3.2, [_plate("plate_1", 0.3, fed=0, imaged=3.0)]), P, DECK)
    assert [a.kind for a in d.actions] == [Kind.FEED]
    d = decide(_view(3.5, [_plate("plate_1", 0.3, fed=3.2, imaged=3.0)]), P, DECK)
    assert d.actions == [] and d.wake_at_s == pytest.approx(4.0 * DAY_S)


def test_confluent_plate_is_passaged_into_free_plates() -> None:
    d = decide(_view(7.0, [_plate("plate_1", 0.85, fed=6, imaged=7)]), P, DECK)
    (a,) = d.actions
    assert a.kind is Kind.PASSAGE and a.plates == ["plate_1"]
    assert a.destinations == list(DECK)[1:] and "85 % >= 80 %" in a.reason


def test_a_vessel_cap_limits_children_and_destination_plates() -> None:
    capped = P.model_copy(update={"max_vessels": 8})
    plates = [_plate("plate_1", 0.85, fed=6, imaged=7), _plate("plate_2", 0.3, fed=6, imaged=7)]
    (a,) = decide(_view(7.0, plates), capped, DECK).actions
    assert a.kind is Kind.PASSAGE and a.max_children == 7  # 8 - plate_2's one vessel
    assert a.destinations == ["plate_4", "plate_5"]  # 7 children need two 6-well plates


def test_target_reached_means_harvest_after_an_operator_decision() -> None:
    # young cells, 4.6e4/cm2 at confluence: 6 x 57.6 cm2 x 4.6e4/cm2 x 0.4 = 6.4e6 cells,
    # over the target 6e6, under target x 1.3; at 0.6, 9.6e6: harvest
    assert cells_per_cm2_at_confluence(0) == pytest.approx(4.6e4, rel=0.02)
    plates = [_plate(f"plate_{i}", 0.4, fed=9, imaged=10) for i in (2, 4, 5, 6, 7, 8)]
    assert decide(_view(10.0, plates), P, DECK).actions == []
    plates = [_plate(f"plate_{i}", 0.6, fed=9, imaged=10) for i in (2, 4, 5, 6, 7, 8)]
    (a,) = decide(_view(10.0, plates), P, DECK).actions
    assert a.kind is Kind.HARVEST and a.needs_operator and not a.deviation
    assert len(a.plates) == 6


def test_the_confluence_calibration_follows_the_cells_age() -> None:
    """Late cells are larger: a confluent late-passage plate holds fewer cells (the model's
    confluent density), and the PD reached within a passage is read from the image."""
    young = cells_per_cm2_at_confluence(5)
    old = cells_per_cm2_at_confluence(40)
    assert 2e4 < young < 5e4 and old < 0.6 * young
    cells, pd = imaged_cells(0.8, 9.5, 5.0, 3000 * 9.5)
    assert pd == pytest.approx(5 + math.log2(0.8 * young * 9.5 / (3000 * 9.5)))
    assert cells == pytest.approx(0.8 * cells_per_cm2_at_confluence(pd) * 9.5)
    same = [_plate("plate_1", 0.5, fed=9, imaged=10)]
    aged = [same[0].model_copy(update={"population_doublings": 40})]
    assert estimated_cells(_view(10, aged), P) < 0.6 * estimated_cells(_view(10, same), P)


def test_passage_limit_and_viability_floor_stop_with_a_deviation() -> None:
    limit = decide(_view(7, [_plate("plate_1", 0.9, 6, 7, passage=5)]), P, DECK).actions[0]
    assert limit.kind is Kind.HARVEST and limit.deviation and "passage limit is 5" in limit.reason
    low = decide(_view(7, [_plate("plate_1", 0.5, 6, 7)], viability=60.0), P, DECK).actions[0]
    assert low.kind is Kind.STOP and low.deviation and "below the floor 70 %" in low.reason
    late = decide(_view(28.0, [_plate("plate_1", 0.5, 27.5, 27.9)]), P, DECK).actions[0]
    assert late.kind is Kind.HARVEST and late.deviation


# --- a whole campaign -------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted campaign on the quick workcell (run once for the module)."""
    folder = tmp_path_factory.mktemp("reference")
    cfg_path = quick_config(folder)

    async def go() -> None:
        async with open_session(load_config(cfg_path), folder / "run") as s:
            await CampaignEngine(s, CampaignParams(), auto_approve()).run()

    run(go())
    return cfg_path, folder / "run"


def test_campaign_runs_from_vial_to_harvest(reference: tuple[Path, Path]) -> None:
    _, run_dir = reference
    store = Store(run_dir / STORE_FILE)
    try:
        (done,) = store.events("campaign_finished")
        assert done.data["outcome"].startswith("harvested")
        (h,) = store.events("harvested")
        assert h.data["viable_cells"] >= CampaignParams().target_cells
        assert h.data["viability_percent"] > 90
        vessels = store.vessels()
        first = [v for v in vessels if not v.parents]
        children = [v for v in vessels if v.parents]
        assert {v.plate for v in first} == {"plate_1"} and children
        assert all(v.passage == 2 for v in children)
        assert {v.state for v in first} == {"passaged"}
        assert {v.state for v in children} == {"harvested"}
        # fed on schedule: never twice at one time, and every 3 days at the most (a
        # plate due within a quarter day joins the round of one due now)
        fed: dict[str, list[float]] = {}
        for e in store.events("fed"):
            fed.setdefault(e.vessel_id or "", []).append(e.time.timestamp())
        for times in fed.values():
            assert len(times) == len(set(times))
            early = (3 - GROUP_SHARE) * DAY_S
            assert all(b - a >= early for a, b in zip(times, times[1:], strict=False))
        # the simulated operator kept the workcell supplied, and the record says so
        assert store.events("load") and all(e.actor for e in store.events("load"))
        decisions = store.events("operator_decision")
        assert [d.data["action"] for d in decisions] == ["harvest"]
        assert decisions[0].actor.startswith("auto-approve")
        pd = lineage.population_doublings(store)
        ends = [pd[v.id].at_end for v in children]
        assert all(
            e is not None and e > pd[v.id].at_seeding for e, v in zip(ends, children, strict=True)
        )
    finally:
        store.close()


def test_plates_due_together_are_imaged_and_fed_in_one_round(
    reference: tuple[Path, Path],
) -> None:
    """A passage makes its child plates minutes apart; each day's image and each feed of
    them is one step (one Prefect task, one decision) for all of them, not one step per
    plate minutes apart. In the lab's own log, no well waits longer than its interval
    for an image, and none is imaged sooner than a round allows."""
    _, run_dir = reference
    store = Store(run_dir / STORE_FILE)
    try:
        taken = [e for e in store.events("decision") if "action" in e.data]  # the engine's
        decisions = [(e.data["action"], e.data["plates"]) for e in taken]
        children = sorted({v.plate for v in store.vessels() if v.parents})
        passaged_at = next(e.time for e in taken if e.data["action"] == "passage")
        horizon = max(e.time for e in store.events("campaign_finished")).timestamp()
    finally:
        store.close()
    after = decisions[[a for a, _ in decisions].index("passage") + 1 :]
    images = [sorted(plates) for action, plates in after if action == "image"]
    feeds = [sorted(plates) for action, plates in after if action == "feed"]
    assert len(children) > 1 and images and feeds
    assert images == [children] * len(images), images  # every round images every child
    assert feeds == [children] * len(feeds), feeds
    log = read_log(run_dir / LAB_FOLDER)
    t0 = datetime.fromisoformat(log[0]["time"]).timestamp() - log[0]["t"]  # the lab's t = 0
    captured: dict[str, list[float]] = {}
    for r in log:
        if r["action"] == "capture":
            captured.setdefault(r["detail"]["well"], []).append(r["t"])
    child_wells = {w: ts for w, ts in captured.items() if w.rsplit("_well_", 1)[0] in children}
    assert child_wells
    every = CampaignParams().image_every_days * DAY_S
    # fetching, imaging and returning the other plates of a round, or a feed round that
    # fell due first (8 plates: under 2 h)
    trip = 3 * 3600.0
    for well, ts in child_wells.items():
        gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
        assert all((1 - GROUP_SHARE) * every - trip <= g <= every + trip for g in gaps), (
            well,
            gaps,
        )
        assert horizon - (t0 + ts[-1]) <= every + trip, well  # imaged up to the harvest
    assert passaged_at.timestamp() < t0 + min(min(ts) for ts in child_wells.values())


def _steps_done(run_dir: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{run_dir / STORE_FILE}?mode=ro", uri=True, timeout=1)
        try:
            (n,) = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'step_finished'").fetchone()
        finally:
            db.close()
        return int(n)
    except sqlite3.Error:
        return 0


# A reading the recovery took again: the same vessel's reading at the same time compares
# within this. The retaken image kept its plate a few seconds longer on the deck at room
# temperature, so the cells of that lineage differ from the uninterrupted run's by ~1e-4;
# a near-confluent rendered field can turn that into up to 0.007 of measured confluence.
SAME_WORLD_CONFLUENCE = 0.02
RETAKE_DELAY_S = 60.0  # a retaken image is at most this much later than the first one


def _retakes(run_dir: Path) -> list[tuple[str, list[str], float]]:
    """The readings the record says were taken again on resume: (action, vessels, time)."""
    store = Store(run_dir / STORE_FILE)
    try:
        t0 = store.events("campaign_started")[0].time
        out = []
        for e in store.events("recovery"):
            what = str(e.data.get("what", ""))
            if what.endswith(("capture: not done", "count: not done")):
                action = what.split(":")[0].split()[-1]
                at = (e.time - t0).total_seconds()
                out.append((action, list(e.data.get("vessels") or []), at))
        return out
    finally:
        store.close()


def _assert_resumed_as_uninterrupted(run_dir: Path, ref_dir: Path) -> list[str]:
    """Every vessel's history as in the uninterrupted run, but for what a correct recovery
    changes: a retaken image's own readings (and that plate's next readings, which the daily
    imaging schedule moves with it). A count taken again changes the dilution it sets, so
    after one only the history before it is compared. Returns the vessels retaken."""
    got, want = histories(run_dir), histories(ref_dir)
    retakes = _retakes(run_dir)
    counts = [at for action, _, at in retakes if action == "count"]
    if counts:
        until = min(counts)
        got = {v: [x for x in h if _at(x) < until] for v, h in got.items()}
        want = {v: [x for x in h if _at(x) < until] for v, h in want.items()}
        got = {v: h for v, h in got.items() if h}
        want = {v: h for v, h in want.items() if h}
    images = [(vs, at) for action, vs, at in retakes if action == "capture"]
    retaken = {v for vs, _ in images for v in vs}
    assert sorted(got) == sorted(want), "a vessel was lost or added"
    for vessel, history in want.items():
        rest_got = sorted((x for x in got[vessel] if not _confluence(x)), key=repr)
        rest_want = sorted((x for x in history if not _confluence(x)), key=repr)
        assert rest_got == rest_want, vessel
        g = {x[2]: x[3] for x in got[vessel] if _confluence(x)}
        w = {x[2]: x[3] for x in history if _confluence(x)}
        if not images:
            assert g == w, vessel
            continue
        for t in g.keys() & w.keys():
            assert abs(g[t] - w[t]) <= SAME_WORLD_CONFLUENCE, (vessel, t, g[t], w[t])
        moved_got, moved_want = sorted(g.keys() - w.keys()), sorted(w.keys() - g.keys())
        assert len(moved_got) == len(moved_want), vessel
        if moved_got:
            assert vessel in retaken, f"{vessel}: a reading moved, and no image of it was retaken"
            first = min(at for vs, at in images if vessel in vs)
            for tg, tw in zip(moved_got, moved_want, strict=True):
                assert tw >= first - RETAKE_DELAY_S and 0 < tg - tw <= RETAKE_DELAY_S, vessel
    return sorted(retaken)


def _at(entry: tuple[object, ...]) -> float:
    return float(entry[5] if entry[0] == "vessel" else entry[2])  # type: ignore[arg-type]


def _confluence(entry: tuple[object, ...]) -> bool:
    return entry[:2] == ("measurement", "confluence")


def _campaign_cmd(cfg_path: Path, run_dir: Path) -> list[str]:
    return [
        *WORKCELL,
        "campaign",
        "--config",
        str(cfg_path),
        "--run-dir",
        str(run_dir),
        "--auto-approve",
        "--without-prefect",
    ]


def test_killed_campaign_resumes_with_every_vessel_history_intact(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg_path, ref_dir = reference
    run_dir = tmp_path / "run"
    cmd = _campaign_cmd(cfg_path, run_dir)
    env = child_env(tmp_path / "locks")
    kills = 0
    for kill_after in (3, 20, 27):  # seeding, first passage, during the second growth
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _steps_done(run_dir) < kill_after and proc.poll() is None:
            assert time.monotonic() < deadline, "the campaign made no progress"
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 3
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    _assert_resumed_as_uninterrupted(run_dir, ref_dir)


def test_campaign_killed_after_an_image_was_taken_retakes_only_that_image(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    """Killed after the lab captured the first plate image, before the reply was recorded:
    the image is taken again on resume (the lab's log shows its wells twice), and nothing
    but that image's readings differs from the uninterrupted run."""
    cfg_path, ref_dir = reference
    store = Store(ref_dir / STORE_FILE)
    try:
        intents = store.journal(kinds=("intent",))
    finally:
        store.close()
    n = 1 + next(i for i, r in enumerate(intents) if r["data"].get("action") == "capture")
    run_dir = tmp_path / "run"
    cmd = _campaign_cmd(cfg_path, run_dir)
    env = child_env(tmp_path / "locks")
    crashed = subprocess.run(
        cmd, env={**env, CRASH_ENV: f"{n}:reply"}, capture_output=True, timeout=300
    )
    assert crashed.returncode == -signal.SIGKILL
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    wells = intents[n - 1]["data"]["wells"]
    assert _assert_resumed_as_uninterrupted(run_dir, ref_dir) == sorted(wells)
    captures = [r for r in read_log(run_dir / LAB_FOLDER) if r["action"] == "capture"]
    ref_captures = [r for r in read_log(ref_dir / LAB_FOLDER) if r["action"] == "capture"]
    assert len(captures) == len(ref_captures) + len(wells)  # that image twice, no other


def test_the_campaign_decides_under_the_device_locks(
    reference: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A decision is taken while this run holds the locks, from the state they protect."""
    import shutil

    from protocols.campaign import engine as engine_module

    cfg_path, ref_dir = reference
    shutil.copytree(
        ref_dir, tmp_path / "run", ignore=shutil.ignore_patterns("lab.json", "lab.lock")
    )
    held: list[int] = []

    async def go() -> None:
        async with open_session(load_config(cfg_path), tmp_path / "run") as s:

            def decide(*args: object, **kw: object) -> engine_module.Decision:
                held.append(s._held)
                return engine_module.Decision(actions=[], finished=True)

            monkeypatch.setattr(engine_module, "decide", decide)
            await CampaignEngine(s, CampaignParams(), auto_approve()).run()

    run(go())
    assert held == [1]


def test_each_step_checkpoints_the_whole_model_writing_only_what_changed(tmp_path: Path) -> None:
    """A step's checkpoint writes only the resources that changed, yet the store holds
    the whole model: after every step, what it holds is a full serialization's equal, and
    a session opened again on the run folder restores that model."""
    import json

    from workcell.assembly.checkpoint import snapshot

    cfg_path = quick_config(tmp_path)
    compared: list[str] = []
    written: list[int] = []
    holds: dict[str, object] = {}
    saved: dict[str, bool] = {}  # step label: whether its end wrote a checkpoint

    async def go() -> None:
        async with open_session(load_config(cfg_path), tmp_path / "run") as s:
            save = s.wc.store.save_checkpoint

            def counting(data: dict[str, object], changed: object = None, base_seq: int = 0) -> int:
                written.append(len(changed) if changed is not None else -1)  # type: ignore[arg-type]
                return save(data, changed, base_seq)  # type: ignore[arg-type]

            s.wc.store.save_checkpoint = counting  # type: ignore[method-assign]

            async def checked(label: str, work: Callable[[], Awaitable[object]]) -> object:
                before = len(written)
                result = await work()
                whole = json.loads(json.dumps(snapshot(s.wc)))
                assert s.wc.store.checkpoint() == whole, label
                compared.append(label)
                saved[label] = len(written) > before
                return result

            engine = CampaignEngine(s, CampaignParams(), auto_approve(), run_step=checked)
            await engine.run(hand_over=lambda ran_s, wait_s: ran_s >= 3.5 * DAY_S)
            holds["model"] = json.loads(json.dumps(snapshot(s.wc)))
        async with open_session(load_config(cfg_path), tmp_path / "run") as again:
            assert json.loads(json.dumps(snapshot(again.wc))) == holds["model"]

    run(go())
    assert any(c.split()[2:3] == ["feed"] for c in compared), compared
    names = len(holds["model"]["resources"])  # type: ignore[index]
    assert written and max(written[1:]) < names, (written, names)  # never the whole deck again
    # a wait sends no device action: the last checkpoint stays true and is not written again
    waits = [label for label in saved if label.startswith("wait")]
    assert waits and not any(saved[w] for w in waits), saved
    assert all(done for label, done in saved.items() if label not in waits), saved
