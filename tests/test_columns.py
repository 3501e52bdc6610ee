"""A 24-well plate worked a column at a time on the STAR's channels, judged by the lab's log.

With the liquid handler's channels working as a group (``pipetting_channels: 8``),
a media exchange takes each column of a 24-well plate (A-D) on four channels at
once: one aspirate for the four wells' spent medium, one dispense of it into the
waste, then one aspirate of fresh medium and one dispense into the four wells. Each
well keeps a tip of its own. The same feed on one channel is the reference: every
well must end with exactly what it got there, whatever the kill point, and no tip
may ever touch two wells.

A harvest's detachment does the same with its drain and its PBS wash-out (a tip per
well), and puts PBS, enzyme and neutralising medium into a column at a time with
tips shared by the plate, channel i serving row i.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import judge, kill
from benchmarks.faults import judge_point
from benchmarks.kill import Outcome, operation_reference, operation_work, output_of, run_point
from workcell.store import STORE_FILE, Store

OP = "media_exchange"


def _reference(folder: Path, channels: int, op: str = OP) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp, kill.column_bench(channels):
        mp.setenv("WORKCELL_CPU_WORKERS", "0")  # controllers are forked: no worker pools
        return {**operation_reference(folder, op), "work": operation_work(op)}


@pytest.fixture(scope="module")
def columns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield _reference(tmp_path_factory.mktemp("cols8"), 8)


@pytest.fixture(scope="module")
def one_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield _reference(tmp_path_factory.mktemp("cols1"), 1)


def _wells(r: dict[str, Any]) -> str | None:
    d = r["detail"]
    place = d.get("source") if r["action"] == "aspirate" else d.get("target")
    return place if place and "_well_" in place else None


def _tips_touching(
    log: list[dict[str, Any]], actions: tuple[str, ...] = ("aspirate", "dispense")
) -> list[set[str]]:
    """The wells each tip touched (by ``actions``), from its pick-up to its drop, per
    channel (the lab's log)."""
    on: dict[int, set[str]] = {}
    used: list[set[str]] = []
    for r in log:
        ch = r["detail"].get("channel")
        if r["action"] == "pick_up_tip":
            on[ch] = set()
        elif r["action"] == "drop_tip" and ch in on:
            used.append(on.pop(ch))
        elif r["action"] in actions and ch in on and _wells(r):
            on[ch].add(_wells(r))
    assert not on, f"tips never dropped on channels {sorted(on)}"
    return used


def _commands(log: list[dict[str, Any]], action: str) -> list[list[dict[str, Any]]]:
    """The lab's rows of ``action`` grouped by command (one time, consecutive rows)."""
    out: list[list[dict[str, Any]]] = []
    for r in log:
        if r["action"] != action:
            continue
        if out and out[-1][0]["t"] == r["t"] and out[-1][-1]["seq"] == r["seq"] - 1:
            out[-1].append(r)
        else:
            out.append([r])
    return out


def _channel(r: dict[str, Any]) -> int:
    return int(r["detail"]["channel"])


def _column(well: str) -> str:
    return well.rsplit("_", 1)[1][1:]


def test_a_column_is_fed_on_four_channels_with_a_tip_per_well(
    columns: dict[str, Any], one_channel: dict[str, Any]
) -> None:
    ref: Outcome = columns["ref"]
    single: Outcome = one_channel["ref"]
    assert ref.exit_codes == [0] and ref.verified
    assert single.exit_codes == [0] and single.verified
    # every well got what the one-channel feed gave it, once
    got, want = judge.additions(ref.log), judge.additions(single.log)
    assert len(want) == 24 and got.keys() == want.keys()
    for key, volume in want.items():
        assert got[key] == pytest.approx(volume, abs=1.0), key
    assert set(judge.episodes(ref.log).values()) == {1}
    # spent medium: one aspirate per column, four wells of one column on four channels
    drains = [c for c in _commands(ref.log, "aspirate") if all(_wells(r) for r in c)]
    assert len(drains) == 6
    for c in drains:
        wells = [_wells(r) for r in c]
        assert len(set(wells)) == 4 and len({_column(w) for w in wells if w}) == 1
        assert len({r["detail"]["channel"] for r in c}) == 4
        # back to front: channel 0 (the backmost) in row A, the next channels in B, C, D
        rows = [str(_wells(r)).rsplit("_", 1)[1][0] for r in sorted(c, key=_channel)]
        assert rows == ["A", "B", "C", "D"]
    # fresh medium: one dispense per column into its four wells
    feeds = [c for c in _commands(ref.log, "dispense") if all(_wells(r) for r in c)]
    assert len(feeds) == 6 and all(len({_wells(r) for r in c}) == 4 for c in feeds)
    # no tip touched two wells; each well was touched by one tip out and one tip in
    touched = [t for t in _tips_touching(ref.log) if t]
    assert all(len(t) == 1 for t in touched)
    per_well: dict[str, int] = defaultdict(int)
    for t in touched:
        per_well[next(iter(t))] += 1
    assert set(per_well.values()) == {2} and len(per_well) == 24
    # a quarter of the one-channel feed's device commands
    assert len(_commands(ref.log, "aspirate")) * 4 == len(_commands(single.log, "aspirate"))


def _nth(intents: list[dict[str, Any]], action: str, what: str) -> int:
    """1-based number of the second column's ``action`` of ``what`` (spent or fresh
    medium), a command on four channels."""

    def moves(op: dict[str, Any]) -> str:
        if action == "aspirate":
            return "spent" if "_well_" in str(op.get("source")) else str(op.get("source"))
        return "spent" if op.get("target") == "waste" else str(op.get("from"))

    hits = [
        i + 1
        for i, r in enumerate(intents)
        if r["data"].get("action") == action
        and len(r["data"].get("ops", [])) == 4
        and {moves(op) for op in r["data"]["ops"]} == {what}
    ]
    assert len(hits) == 6, hits
    return hits[1]


@pytest.mark.parametrize(
    ("action", "source", "phase"),
    [
        ("aspirate", "spent", "reply"),  # spent medium in four tips, not recorded
        ("dispense", "spent", "intent"),  # spent medium in the tips, its discard not sent
        ("dispense", "medium", "intent"),  # fresh medium in four tips, not sent
        ("dispense", "medium", "reply"),  # fresh medium in the wells, not recorded
    ],
)
def test_a_column_killed_mid_feed_gets_its_medium_once(
    columns: dict[str, Any],
    one_channel: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    action: str,
    source: str,
    phase: str,
) -> None:
    ref: Outcome = columns["ref"]
    monkeypatch.setenv("WORKCELL_CPU_WORKERS", "0")
    n = _nth(columns["intents"], action, source)
    got = run_point(
        columns["template"],
        columns["folder"] / f"k-{action}-{source}-{phase}",
        columns["cfg"],
        columns["work"],
        output_of(OP),
        crash=f"{n}:{phase}",
    )
    assert got.exit_codes == [-9, 0]  # SIGKILLed at the action, then resumed to the end
    assert got.verified
    assert judge.double_additions(got.log, ref.log) == []
    added, expected = judge.additions(got.log), judge.additions(one_channel["ref"].log)
    assert added.keys() == expected.keys()
    for key, volume in expected.items():
        assert added[key] == pytest.approx(volume, abs=1.0), key
    assert all(len(t) <= 1 for t in _tips_touching(got.log)), "a tip touched two wells"
    assert got.interruptions, "the interruption is not a deviation"
    # whatever liquid went to the bin in a tip, the record says so (the lab's log says how much)
    dropped = sum(
        r["detail"].get("discarded_uL", 0.0) for r in got.log if r["action"] == "drop_tip"
    )
    store = Store(columns["folder"] / f"k-{action}-{source}-{phase}" / STORE_FILE)
    try:
        recorded = sum(e.data.get("discarded_uL", 0.0) for e in store.events("recovery"))
        fed = sorted(e.vessel_id or "" for e in store.events("fed"))
    finally:
        store.close()
    assert fed == sorted({v for v, _ in expected}), "a vessel's feed recorded twice, or never"
    assert recorded == pytest.approx(dropped, abs=1.0)
    if (action, source, phase) == ("dispense", "medium", "intent"):
        assert dropped > 100  # fresh medium in the tips is discarded, never guessed where


@pytest.fixture(scope="module")
def harvest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield _reference(tmp_path_factory.mktemp("harvest8"), 8, "harvest")


def test_a_harvest_detaches_a_column_at_a_time(harvest: dict[str, Any], tmp_path: Path) -> None:
    """Every well gets what the one-channel harvest gives it; the enzyme goes into a column
    per command, so no well waits in enzyme longer than on one channel; the PBS, enzyme
    and medium tips are four shared by the plate, each serving one row."""
    got: Outcome = harvest["ref"]
    single: Outcome = _reference(tmp_path / "1", 1, "harvest")["ref"]
    assert got.exit_codes == [0] == single.exit_codes and got.verified
    added, want = judge.additions(got.log), judge.additions(single.log)
    assert added.keys() == want.keys() and len({v for v, _ in want}) == 24
    for key, volume in want.items():
        assert added[key] == pytest.approx(volume, abs=1.0), key
    assert got.cells == pytest.approx(single.cells, rel=0.02)
    enzyme = [
        c
        for c in _commands(got.log, "dispense")
        if all(_wells(r) and "enzyme" in r["detail"].get("sources", []) for r in c)
    ]
    assert [len(c) for c in enzyme] == [4] * 6
    exposure, before = judge.enzyme_exposure(got.log), judge.enzyme_exposure(single.log)
    assert max(exposure.values()) <= max(before.values())
    # the reagent tips (they dispense into wells): each serves the wells of one row only
    reagent = [t for t in _tips_touching(got.log, ("dispense",)) if t]
    assert len(reagent) == 3 * 4  # PBS, enzyme, medium: four tips each
    assert all(len({w.rsplit("_", 1)[1][0] for w in t}) == 1 for t in reagent)


@pytest.mark.parametrize("action, phase", [("pick_up_tip", "reply"), ("dispense", "intent")])
def test_a_neutralisation_killed_in_its_first_column_stays_in_the_enzyme_window(
    harvest: dict[str, Any], monkeypatch: pytest.MonkeyPatch, action: str, phase: str
) -> None:
    """Killed as the neutralising medium's first column begins (its shared tips picked up,
    or filled and not yet dispensed), then resumed after a 2-minute outage: the medium
    still in the tips goes into the wells it was drawn for and the rest follows a column
    at a time, so no vessel overstays the enzyme's window unrecorded (judged from the
    lab's log as the kill campaign judges it), and none gets medium twice."""
    monkeypatch.setenv("WORKCELL_CPU_WORKERS", "0")
    ref: Outcome = harvest["ref"]
    n = next(
        i + 1
        for i, r in enumerate(harvest["intents"])
        if r["data"].get("action") == action
        and str(r["data"].get("unit", "")).startswith("neutralise:")
    )
    got = run_point(
        harvest["template"],
        harvest["folder"] / f"k-{action}-{phase}",
        harvest["cfg"],
        harvest["work"],
        output_of("harvest"),
        crash=f"{n}:{phase}",
    )
    assert got.exit_codes == [-9, 0] and got.verified
    judged = judge_point(got, ref, kill.OUTAGE_S)
    assert judged["doubles"] == [] and judged["lost"] == []
    assert judged["over_exposed_unrecorded"] == []
    added, expected = judge.additions(got.log), judge.additions(ref.log)
    for key, volume in expected.items():
        assert added[key] == pytest.approx(volume, abs=1.0), key
