"""The floor under Prefect, started as the UI does: from the deployment ``workcell serve``
serves, judged from the Prefect API. Each campaign is a child flow run of its own with
its progress; the plan of each day is published while the floor runs, not at its end."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flows.floor import floor_lock
from tests.prefect_helpers import Served, prefect_and_workcell
from workcell.store import STORE_FILE, Store


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One Prefect server and `workcell serve` for this module's floors (a start costs
    about 20 s on 2 cores): each floor has a folder of its own, so they do not meet."""
    with prefect_and_workcell(tmp_path_factory.mktemp("floor-flow"), ui=False) as s:
        yield s


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_floor_flow_runs_each_campaign_as_its_own_flow_run_and_publishes_the_plan_live(
    served: Served,
) -> None:
    campaigns = [
        {"name": "a", "params": {"max_days": 2.2}},
        {"name": "b", "params": {"max_days": 2.2}, "start_day": 0.4, "priority": 2},
    ]
    dep = served.deployment_id("floor @ ui-workcell")
    floors = (served.run_dir / "floors").resolve()
    before = {p.name for p in floors.iterdir()} if floors.is_dir() else set()

    def start(parameters: dict[str, Any]) -> str:
        made = served.api(f"/deployments/{dep}/create_flow_run", {"parameters": parameters})
        return str(made["id"])

    # a floor already running under the name (here: its lock held): a second is refused
    # before any campaign starts, saying so in one line; so is a name that is a path
    (floors / "twin").mkdir(parents=True)
    with floor_lock(floors / "twin", "the test's floor"):
        twice = start({"name": "twin", "campaigns": campaigns})
        refused = served.wait_state(twice, {"Failed"}, timeout=600)
    assert refused["state"]["message"].startswith(
        f"floor not started: the floor {floors / 'twin'} is already running (the test's floor, pid "
    ), refused["state"]["message"]
    bad = served.wait_state(start({"name": "../up", "campaigns": campaigns}), {"Failed"})
    assert bad["state"]["message"] == (
        "floor not started: floor name '../up' has a path separator: a floor name is one "
        "folder name (letters, digits, - _ .), the floor's folder is made under floors/"
    )
    # two floors from the deployment with no name: each in a new folder of its own,
    # both running at once (neither waits for the other's lock)
    first = start({"campaigns": campaigns})
    second = start({"campaigns": [{"name": "a", "params": {"max_days": 1.2}}]})
    floor = served.wait_state(first, {"Completed"}, timeout=600)
    other = served.wait_state(second, {"Completed"}, timeout=600)
    # the first floor's name again: it ran to its end, so it is refused, not resumed
    folder = floors / floor["name"].split()[1].rstrip(":")
    again = served.wait_state(start({"name": folder.name, "campaigns": campaigns}), {"Failed"})
    run = {"id": first}
    children = served.api(
        "/flow_runs/filter",
        {"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}},
    )
    artifacts: dict[str, list[dict[str, Any]]] = {}
    for fr in [floor, *children]:
        artifacts[fr["id"]] = served.api(
            "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [fr["id"]]}}}
        )
    # each floor in its own folder under floors/, named after the day and its run, with
    # its own record; the finished one's name is kept
    assert re.fullmatch(r"\d{8}-\d{6}-" + first[:8], folder.name), folder
    assert floor["name"] == f"floor {folder.name}: a, b"
    elsewhere = floors / other["name"].split()[1].rstrip(":")
    assert elsewhere.name.endswith(second[:8]) and elsewhere != folder
    made = {p.name for p in floors.iterdir()} - before
    assert made == {"twin", folder.name, elsewhere.name}, made
    assert not (floors / "twin" / "a").exists() and not (floors.parent / "up").exists()
    for where, names in ((folder, ["a", "b"]), (elsewhere, ["a"])):
        assert sorted(p.name for p in where.iterdir() if p.is_dir()) == names
        (ended,) = _floor_events(where, "floor_ended")
        assert ended.data["flow_run_id"] in (first, second)
    assert _floor_events(folder, "floor_ended")[0].data["flow_run_id"] == first
    assert again["state"]["message"].startswith(
        f"floor not started: floor name '{folder.name}' is taken: that floor ran to its end "
        "(2 of 2 campaigns run (a, b); "
    ), again["state"]["message"]
    assert len(_floor_events(folder, "floor_started")) == 1  # it did not run again
    # a flow run per campaign, under the floor's, each with its own state and artifacts
    assert sorted(c["name"] for c in children) == [f"a on {folder.name}", f"b on {folder.name}"]
    assert all(c["state"]["name"] == "Completed" for c in children)
    # each run's state says what became of it, from the campaign's own record
    assert floor["state"]["message"].startswith("2 of 2 campaigns run (a, b); ")
    for c in children:
        name = c["name"].split()[0]
        store = Store(folder / name / STORE_FILE)
        try:
            outcome = store.events("campaign_finished")[-1].data["outcome"]
        finally:
            store.close()
        assert c["state"]["message"].startswith(f"{name}: {outcome} (day "), c["state"]
    for c in children:
        mine = artifacts[c["id"]]
        progress = [a for a in mine if a["type"] == "progress"]
        assert progress and progress[0]["data"] == 100.0, progress
        assert any(a["type"] == "table" for a in mine)  # its vessels
    # the plan: one artifact per simulated day, device by device with the windows,
    # each published while the campaigns were still running
    plans = sorted(
        (a for a in artifacts[floor["id"]] if a["type"] == "markdown"), key=lambda a: a["key"]
    )
    assert [a["key"] for a in plans] == [f"floor-{folder.name}-plan-day-{d}" for d in range(3)]
    for a in plans:
        text = a["data"]
        assert text.startswith("# Plan at d") and "star" in text and "imager" in text
        assert "| start | end | campaign | work | devices | due | closes |" in text
        assert "## Next planned actions" in text
    ended = min(_t(c["end_time"]) for c in children)
    assert _t(plans[0]["created"]) < _t(plans[1]["created"]) < ended
    assert any(a["key"] == f"floor-{folder.name}-device-busy" for a in artifacts[floor["id"]])
    # each campaign's batch record is its own, in its own run folder under the floor's
    for name in ("a", "b"):
        store = Store(folder / name / STORE_FILE)
        try:
            assert store.events("campaign_started") and store.events("scheduled")
        finally:
            store.close()


def test_a_campaign_joins_the_running_floor_and_another_is_cancelled_from_their_deployments(
    served: Served,
) -> None:
    """As an operator does from the UI: ``join floor`` while the floor runs, then
    ``cancel on floor``; judged from the Prefect API and the batch records."""
    floor_dep = served.deployment_id("floor @ ui-workcell")
    join_dep = served.deployment_id("join floor @ ui-workcell")
    cancel_dep = served.deployment_id("cancel on floor @ ui-workcell")
    floors = (served.run_dir / "floors").resolve()

    def start(dep: str, parameters: dict[str, Any]) -> str:
        made = served.api(f"/deployments/{dep}/create_flow_run", {"parameters": parameters})
        return str(made["id"])

    # no floor yet: the join is refused in one line, and nothing is left to start later
    early = start(join_dep, {"campaign": {"name": "b", "params": {"max_days": 3}}})
    refused = served.wait_state(early, {"Failed"})
    assert refused["state"]["message"].startswith(
        f"b not joined: no floor is running under {floors}: start one"
    ), refused["state"]["message"]

    # a floor with no name: join and cancel find it by themselves
    # a aims above what its deck holds, so it still runs when it is cancelled below
    a = {"name": "a", "params": {"max_days": 20, "harvest_margin": 3}}
    floor_id = start(floor_dep, {"campaigns": [a]})
    deadline = time.monotonic() + 300
    mine = f"*-{floor_id[:8]}/floor.sqlite"  # a new floor's folder ends with its run's id
    while not (records := list(floors.glob(mine))) or not _granted(records[0]):
        assert time.monotonic() < deadline, "the floor did not start"
        time.sleep(0.5)
    folder = records[0].parent
    joined = served.wait_state(
        start(join_dep, {"campaign": {"name": "b", "params": {"max_days": 4}}}),
        {"Completed"},
    )
    assert re.match(
        rf"b joined the floor {folder.name} at day \d+\.\d\d: its run is 'b on {folder.name}'",
        joined["state"]["message"],
    ), joined["state"]["message"]
    # a floor name that is not running is refused, saying which one is
    stop = {"campaign": "a", "by": "o.op", "reason": "donor consent withdrawn"}
    wrong = served.wait_state(start(cancel_dep, {"cancel": stop, "floor": "nope"}), {"Failed"})
    assert wrong["state"]["message"] == (
        f"a not cancelled: no floor 'nope' is running under {floors} (there is no such "
        f"floor); running: {folder.name}"
    )
    cancel_id = start(cancel_dep, {"cancel": stop, "floor": folder.name})
    cancelled = served.wait_state(cancel_id, {"Completed"})
    assert f"a is cancelled on the floor {folder.name} by o.op" in cancelled["state"]["message"]
    floor = served.wait_state(floor_id, {"Completed"}, timeout=600)
    children = served.api(
        "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [floor_id]}}}
    )
    assert "2 of 2 campaigns run (a, b), 1 cancelled" in floor["state"]["message"]
    states = {c["name"]: (c["state"]["name"], c["state"]["message"]) for c in children}
    assert states[f"a on {folder.name}"] == (
        "Cancelled",
        "a: cancelled by o.op (donor consent withdrawn)",
    )
    assert states[f"b on {folder.name}"][0] == "Completed"
    store = Store(folder / "a" / STORE_FILE)
    try:
        (stopped,) = store.events("campaign_cancelled")
        assert stopped.actor == "o.op" and not store.events("campaign_finished")
    finally:
        store.close()
    # "by" is as typed; the batch record says which flow run asked, from which deployment
    assert stopped.data["via"] == (
        f"deployment 'cancel on floor @ ui-workcell', flow run 'cancel a on the floor "
        f"{folder.name}' (id {cancel_id}); 'by' not authenticated"
    )
    (asked,) = _floor_events(folder, "cancel_requested")
    assert asked.data["via"] == stopped.data["via"]
    assert not (folder / "inbox").exists() or not list((folder / "inbox").glob("*.json"))


def _floor_events(folder: Path, kind: str) -> list[Any]:
    store = Store(folder / "floor.sqlite", read_only=True)
    try:
        return store.events(kind)
    finally:
        store.close()


def _granted(record: Path) -> bool:
    store = Store(record, read_only=True)
    try:
        return bool(store.events("granted"))
    except sqlite3.OperationalError as err:  # the floor made its file, not yet its tables
        if "no such table" not in str(err):
            raise
        return False
    finally:
        store.close()
