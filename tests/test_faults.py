"""A small kill campaign: a passage killed at chosen device actions, resumed, judged from the lab.

The full campaign (every action of every unit operation, a campaign around a
passage) is ``benchmarks/faults.py``; this is its machinery on a handful of the
hardest points: the enzyme's dispense done but not recorded, a long outage that
closes the enzyme's window, a plate move, the count, a child's seeding, and the
lab itself killed in the middle of an action.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import judge
from benchmarks.kill import (
    Outcome,
    lost_vessels,
    operation_reference,
    operation_template,
    operation_work,
    output_of,
    run_point,
)
from protocols.detachment import DetachParams, enzyme_window_min
from protocols.recovery.declarations import WINDOWS
from workcell.store import STORE_FILE, Store

WINDOW_S = enzyme_window_min(DetachParams()) * 60  # last enzyme -> neutralisation starts

OP = "passaging"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKCELL_CPU_WORKERS", "0")  # controllers are forked: no worker pools
        yield operation_reference(tmp_path_factory.mktemp("kill"), OP)


def _index(intents: list[dict[str, Any]], unit: str, action: str, nth: int = 0) -> int:
    """The 1-based number of the ``nth`` action ``action`` of ``unit`` in the reference."""
    hits = [
        i + 1
        for i, r in enumerate(intents)
        if r["data"].get("unit") == unit and r["data"].get("action") == action
    ]
    return hits[nth]


def _run(bench: dict[str, Any], crash: str | None, **kw: Any) -> Outcome:
    return run_point(
        bench["template"],
        bench["folder"] / "k",
        bench["cfg"],
        operation_work(OP),
        output_of(OP),
        crash=crash,
        **kw,
    )


def _assert_clean(got: Outcome, ref: Outcome) -> None:
    assert judge.double_additions(got.log, ref.log) == []
    assert lost_vessels(got, ref) == []
    assert got.verified
    assert got.exit_codes[-1] == 0
    assert got.cells == pytest.approx(ref.cells, rel=0.1)


def test_the_uninterrupted_passage_keeps_the_enzyme_window(bench: dict[str, Any]) -> None:
    ref: Outcome = bench["ref"]
    assert ref.exit_codes == [0] and ref.verified
    assert len(ref.exposure_s) == 6 and all(e > 5 * 60 for e in ref.exposure_s.values())
    ((last, start),) = ref.enzyme_waits
    assert 5 * 60 <= start - last <= WINDOW_S
    # the reference's children exist in the lab with cells
    assert ref.cells > 1e5


@pytest.mark.parametrize(
    ("unit", "action", "phase"),
    [
        ("enzyme:plate_1_well_A1", "dispense", "reply"),  # done in the lab, not recorded
        ("enzyme:plate_1_well_A2", "aspirate", "reply"),  # enzyme in the tip at the crash
        ("incubate_in:plate_1", "take_in_plate", "reply"),
        ("pool:plate_1_well_B1", "dispense", "intent"),  # cells in the tip, not yet pooled
        ("cells:plate_6_well_A1", "dispense", "reply"),
    ],
)
def test_killed_at_an_action_no_reagent_twice_nothing_lost(
    bench: dict[str, Any], unit: str, action: str, phase: str
) -> None:
    ref: Outcome = bench["ref"]
    n = _index(bench["intents"], unit, action)
    got = _run(bench, f"{n}:{phase}")
    assert got.exit_codes == [-9, 0]  # SIGKILLed, then resumed to the end
    _assert_clean(got, ref)
    assert all(end - last <= WINDOW_S for last, end in got.enzyme_waits)
    (deviation,) = got.interruptions
    assert deviation["vessels"], "the interruption must name the vessels"
    store = Store(bench["folder"] / "k" / STORE_FILE)
    try:
        recoveries = store.events("recovery")
        times = [e.process_time for e in store.record.entries()]
    finally:
        store.close()
    assert recoveries and all(r.data["vessels"] is not None for r in recoveries)
    assert times == sorted(times), "process time went backwards in the record"


def test_a_long_outage_closes_the_enzyme_window_quarantine_and_hold(bench: dict[str, Any]) -> None:
    ref: Outcome = bench["ref"]
    n = _index(bench["intents"], "enzyme:plate_1_well_B3", "dispense")
    got = _run(bench, f"{n}:reply", outage_s=30 * 60)
    _assert_clean(got, ref)
    ((last, start),) = got.enzyme_waits
    assert start - last > WINDOW_S, "a 30 min outage after the enzyme must over-expose"
    assert got.resumed_at_t is not None
    # neutralised within the stated recovery time of the controller's return
    assert start - got.resumed_at_t <= WINDOWS.recovery_max_min * 60
    store = Store(bench["folder"] / "k" / STORE_FILE)
    try:
        deviations = [e.data for e in store.events("deviation") if e.data.get("over_exposure")]
        decisions = store.events("operator_decision")
        quarantined = [e for e in store.events("recovery") if e.data["what"] == "quarantined"]
    finally:
        store.close()
    six = sorted(got.exposure_s)
    (dev,) = deviations
    assert sorted(dev["vessels"]) == six  # the deviation names every over-exposed vessel
    assert [d.data["action"] for d in decisions] == ["over_exposure"]
    assert quarantined and sorted(quarantined[0].data["vessels"]) == six


def test_a_long_outage_half_way_through_the_enzyme_finishes_the_first_batch_first(
    bench: dict[str, Any],
) -> None:
    """Killed with some vessels in enzyme and the rest without: the first are neutralised
    at once on return (over-exposed, named, quarantined, held), and only then do the
    rest get theirs, within their window."""
    ref: Outcome = bench["ref"]
    n = _index(bench["intents"], "enzyme:plate_1_well_A2", "dispense")
    got = _run(bench, f"{n}:reply", outage_s=30 * 60)
    _assert_clean(got, ref)
    assert got.resumed_at_t is not None
    first = sorted(
        {
            r["detail"]["target"]
            for r in got.log
            if r["action"] == "dispense"
            and float(r["detail"].get("enzyme", 0.0)) > 0.5
            and r["t"] < got.resumed_at_t
        }
    )
    assert 0 < len(first) < len(got.exposure_s)
    (first_wait, rest_wait) = got.enzyme_waits
    assert first_wait[1] - got.resumed_at_t <= WINDOWS.recovery_max_min * 60
    assert rest_wait[1] - rest_wait[0] <= WINDOW_S  # the rest within their window
    rest = sorted(set(got.exposure_s) - set(first))
    assert max(got.exposure_s[v] for v in rest) <= WINDOW_S + max(ref.enzyme_spread.values())
    store = Store(bench["folder"] / "k" / STORE_FILE)
    try:
        all_deviations = [e.data for e in store.events("deviation")]
        decisions = store.events("operator_decision")
    finally:
        store.close()
    (dev,) = [d for d in all_deviations if d.get("over_exposure")]
    assert sorted(dev["vessels"]) == first  # exactly the vessels that sat in enzyme
    # the rest stood washed under their residual the whole outage: named too
    dry = sorted(
        v for d in all_deviations if "without enzyme" in d["message"] for v in d["vessels"]
    )
    assert dry == rest
    assert [d.data["action"] for d in decisions] == ["over_exposure"]


def test_the_lab_killed_mid_action_holds_then_nothing_is_lost(bench: dict[str, Any]) -> None:
    ref: Outcome = bench["ref"]
    got = _run(bench, None, lab_crash_at=len(bench["intents"]) // 2)
    assert got.exit_codes == [3, 0]  # held for the operator with a device error, then finished
    assert got.held == 1
    _assert_clean(got, ref)
    store = Store(bench["folder"] / "k" / STORE_FILE)
    try:
        (held,) = store.events("step_held")
    finally:
        store.close()
    assert "no answer from the simulated lab" in held.data["error"]
    assert held.data["vessels"]


def test_the_kill_campaign_judge_catches_a_double_addition(bench: dict[str, Any]) -> None:
    """The judge is not blind: a second enzyme addition to one vessel is flagged."""
    ref: Outcome = bench["ref"]
    doubled = list(ref.log)
    first = next(
        r for r in doubled if r["action"] == "dispense" and r["detail"].get("enzyme", 0) > 0.5
    )
    doubled.append({**first, "seq": 10**9, "t": doubled[-1]["t"] + 1})
    found = judge.double_additions(doubled, ref.log)
    assert [(v, s) for v, s, _ in found] == [(first["detail"]["target"], "enzyme")]


def test_a_lab_restarted_resumes_its_state(tmp_path: Path) -> None:
    """Killing and restarting the lab itself resumes the same physical state."""
    from benchmarks.kill import Lab, bench_config
    from simulators.lab.process import write_spec
    from workcell.assembly.config import load_config
    from workcell.assembly.lab import lab_spec

    cfg = load_config(bench_config(tmp_path))
    spec = lab_spec(cfg)
    assert spec is not None
    write_spec(tmp_path / "lab", spec)
    lab = Lab(tmp_path / "lab").start()
    link = lab.link()
    link.call(
        "operator",
        "operator.load",
        container="medium",
        liquid={"volume_uL": 50_000.0, "nutrient": 1.0},
        actor="test",
    )
    link.call("star", "star.pick_up_tip", device="star", channel=0, spot="tips_1000_1_A1")
    link.call("star", "star.aspirate", device="star", channel=0, source="medium", volume_uL=800.0)
    assert link.clock is not None
    link.clock.advance(3600)
    before = (link.liquid("medium"), link.star(), link.clock.elapsed())
    link.close()
    os.kill(lab.pid, 9)
    os.waitpid(lab.pid, 0)
    lab = Lab(tmp_path / "lab").start()
    link = lab.link()
    try:
        assert link.clock is not None
        after = (link.liquid("medium"), link.star(), link.clock.elapsed())
        assert after == before
        assert link.call("star", "star.volume_in_tip", device="star", channel=0) == 800.0
    finally:
        link.close()
        lab.stop()


def test_a_harvest_killed_after_its_approval_is_approved_once(tmp_path: Path) -> None:
    """The approval is part of the harvest's step: a kill inside the step repeats neither."""
    from benchmarks.kill import Lab, _controller, _fork, _wait
    from protocols.campaign.engine import Action, CampaignEngine, CampaignParams, Kind, auto_approve
    from workcell.assembly.config import WorkcellConfig
    from workcell.assembly.session import open_session

    cfg, template = operation_template(tmp_path / "tpl", "harvest")
    action = Action(
        kind=Kind.HARVEST, plates=["plate_1"], reason="target reached", needs_operator=True
    )

    async def work(config: WorkcellConfig, run_dir: Path) -> None:
        async with open_session(config, run_dir) as s:
            engine = CampaignEngine(s, CampaignParams(), auto_approve())
            await engine.finish_interrupted()
            if not s.wc.store.events("campaign_finished"):
                async with s.locked():
                    await engine._do(action)

    import shutil

    run = tmp_path / "run"
    shutil.copytree(template, run)
    lab = Lab(run / "lab").start()
    try:
        first = _wait(_fork(_controller, cfg, run, work, "15:reply"))  # inside the harvest
        second = _wait(_fork(_controller, cfg, run, work, None))
    finally:
        lab.stop()
    assert (first, second) == (-9, 0)
    store = Store(run / STORE_FILE)
    try:
        approvals = [e for e in store.events("operator_decision") if e.data["action"] == "harvest"]
        finished = store.events("campaign_finished")
        harvested = store.events("harvested")
        assert store.record.verify().ok
    finally:
        store.close()
    assert len(approvals) == 1 and len(finished) == 1 and len(harvested) == 1
