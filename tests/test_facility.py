"""Two simulated workcells on one Prefect server backed by PostgreSQL.

Starts PostgreSQL and a Prefect server on it, a worker for each of two workcells
that share one cell counter, and from their deployments runs at once: a campaign
on each, and a seed then a passage on each. Workcell A's campaign hands its
process over every 4 campaign days; workcell B's campaign suspends for the
operator before harvest and is resumed with the form's answer. Worker A is
SIGKILLed mid-campaign (its flow run dies with it), restarted, finds the dead run,
marks it Crashed and resumes it; the campaign finishes from its store. Then, from
the records on disk: both campaigns harvested and their records verify, every run
that touched a workcell's run folders came from that workcell's pool, the two
workcells never held the shared counter at once, and a run sent to the wrong
workcell was refused.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.facility.children import alive
from flows.facility.local import (
    local_facility,
    start_worker,
    stop,
    worker_env,
    write_workcell_config,
)
from flows.resume import resume_suspended
from tests.conftest import START
from workcell.store import STORE_FILE, Store

WORKCELLS = ("workcell-a", "workcell-b")
SHARED = {"counter": "shared-counter"}
SMALL = {"patient_weight_kg": 1, "target_dose_cells_per_kg": 1e6}  # ~7 days, ~18 steps
TINY = {"patient_weight_kg": 1, "target_dose_cells_per_kg": 1e5}  # 1 day, then harvest hold
SEED = {
    "suspension": {"volume_mL": 5, "viable_cells_per_mL": 5e5},
    "plates": ["plate_1"],
    "density_cells_per_cm2": 3000,
}


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("facility")
    with local_facility(home) as fac:
        server = fac.server
        env = worker_env(server, home / "locks")
        configs = {n: write_workcell_config(home, n, SHARED, START.isoformat()) for n in WORKCELLS}
        workers = {
            n: start_worker(configs[n], home / n, env, home / f"worker-{n}.log") for n in WORKCELLS
        }
        facility: dict[str, Any] = {"home": home, "server": server, "env": env}
        facility |= {"configs": configs, "workers": workers}
        try:
            yield facility
        finally:
            for w in facility["workers"].values():
                stop(w)


def _store(path: Path) -> Store:
    return Store(path / STORE_FILE)


def _steps_done(run_dir: Path) -> int:
    if not (run_dir / STORE_FILE).is_file():
        return 0
    store = _store(run_dir)
    try:
        return len(store.events("step_finished"))
    finally:
        store.close()


async def _deployment(client: Any, flow: str, name: str, log: Path, timeout: float = 300) -> Any:
    """A worker registers its deployments once it has started (slow on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.read_deployment_by_name(f"{flow}/{name}")
        except Exception:
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else "(no log)"
            assert time.monotonic() < deadline, f"no deployment {name!r}; worker log:\n{tail}"
            await asyncio.sleep(0.5)


async def _until(client: Any, run_id: UUID, names: set[str], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        fr = await client.read_flow_run(run_id)
        if fr.state and fr.state.name in names:
            return fr
        assert time.monotonic() < deadline, f"flow run still {fr.state.name if fr.state else None}"
        await asyncio.sleep(0.5)


async def _campaign_runs(client: Any, deployment_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


async def _scenario(f: dict[str, Any], client: Any) -> dict[str, Any]:
    home: Path = f["home"]
    deps = {
        (op, n): await _deployment(client, flow, f"{op} @ {n}", home / f"worker-{n}.log")
        for n in WORKCELLS
        for op, flow in (
            ("campaign", "expansion-campaign"),
            ("seed", "seed"),
            ("passage", "passage"),
        )
    }
    camp_a, camp_b = home / "campaign-a", home / "campaign-b"
    seeds = {
        n: await client.create_flow_run_from_deployment(
            deps["seed", n].id, parameters={"params": SEED}
        )
        for n in WORKCELLS
    }
    b = await client.create_flow_run_from_deployment(
        deps["campaign", "workcell-b"].id,
        parameters={"params": TINY, "run_dir": str(camp_b), "operator_timeout_s": 600},
    )
    # A's seed lands before its campaign starts: the kill below is meant for the campaign
    # (a seed killed mid-run would rightly stay Crashed for the operator)
    await _until(client, seeds["workcell-a"].id, {"Completed"})
    await client.create_flow_run_from_deployment(
        deps["campaign", "workcell-a"].id,
        parameters={
            "params": SMALL,
            "run_dir": str(camp_a),
            "auto_approve_dry_run": True,
            "days_per_run": 2,  # hands over after the resume wherever the kill fell
        },
    )

    # A: kill the worker while a campaign run is mid-way, then start it again
    deadline = time.monotonic() + 240
    while True:
        running = [
            r
            for r in await _campaign_runs(client, deps["campaign", "workcell-a"].id)
            if r.state and r.state.name == "Running" and r.infrastructure_pid
        ]
        if running and _steps_done(camp_a) >= 2:
            break
        assert time.monotonic() < deadline, "campaign A never got going"
        await asyncio.sleep(0.2)
    (victim,) = running
    victim_pid = int(victim.infrastructure_pid)
    f["workers"]["workcell-a"].send_signal(signal.SIGKILL)
    f["workers"]["workcell-a"].wait()
    steps_at_kill = _steps_done(camp_a)
    deadline = time.monotonic() + 30
    while alive(victim_pid):  # the run's process dies with its worker
        assert time.monotonic() < deadline, "the flow run outlived its worker"
        await asyncio.sleep(0.1)
    f["workers"]["workcell-a"] = start_worker(
        f["configs"]["workcell-a"], home / "workcell-a", f["env"], home / "worker-workcell-a.log"
    )

    # B meanwhile: its campaign suspends for the operator; answer it
    await _until(client, b.id, {"Suspended"})
    await resume_suspended(
        client, b.id, {"operator": "B. Operator", "decision": "approve", "comment": "ok"}
    )
    for n in WORKCELLS:
        await _until(client, seeds[n].id, {"Completed"})
    passages = {
        n: await client.create_flow_run_from_deployment(
            deps["passage", n].id,
            parameters={"params": {"plate": "plate_1", "destination_plates": ["plate_2"]}},
        )
        for n in WORKCELLS
    }
    # a run sent to the other workcell's config is refused before anything moves
    wrong = await client.create_flow_run_from_deployment(
        deps["seed", "workcell-b"].id,
        parameters={"params": SEED, "config": str(f["configs"]["workcell-a"])},
    )
    await _until(client, b.id, {"Completed"})
    for n in WORKCELLS:
        await _until(client, passages[n].id, {"Completed"})
    await _until(client, wrong.id, {"Failed"})
    victim_done = await _until(client, victim.id, {"Completed"}, timeout=300)
    deadline = time.monotonic() + 300
    while True:  # the campaign may hand over to further runs after the resumed one
        runs_a = await _campaign_runs(client, deps["campaign", "workcell-a"].id)
        if all(r.state and r.state.is_final() for r in runs_a) and _finished(camp_a):
            break
        assert time.monotonic() < deadline, [(r.name, r.state.name) for r in runs_a]
        await asyncio.sleep(0.5)
    history = await client.read_flow_run_states(victim.id)
    all_runs = await client.read_flow_runs()
    return {
        "dirs": {
            "workcell-a": [camp_a, home / "workcell-a"],
            "workcell-b": [camp_b, home / "workcell-b"],
        },
        "history": [s.name for s in history],
        "victim": victim_done,
        "steps_at_kill": steps_at_kill,
        "runs_a": runs_a,
        "wrong": await client.read_flow_run(wrong.id),
        "pools": {str(r.id): r.work_pool_name for r in all_runs},
        "deployments": {str(d.id): n for (op, n), d in deps.items()},
        "run_deployment": {str(r.id): str(r.deployment_id) for r in all_runs},
    }


def _finished(run_dir: Path) -> bool:
    store = _store(run_dir)
    try:
        return bool(store.events("campaign_finished"))
    finally:
        store.close()


def test_two_workcells_one_server_a_worker_killed_mid_campaign(facility: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go() -> dict[str, Any]:
        with temporary_settings({PREFECT_API_URL: facility["server"].api_url}):
            async with get_client() as client:
                return await _scenario(facility, client)

    got = asyncio.run(go())

    # the killed run: Running -> Crashed (found by the restarted worker) -> resumed -> Completed
    h = got["history"]
    assert "Crashed" in h and h.index("Crashed") < h.index("AwaitingRetry") < len(h) - 1, h
    assert h[-1] == "Completed"
    assert len(got["runs_a"]) >= 2  # A handed over to a new process at least once
    assert got["wrong"].state.name == "Failed"
    assert "a run acts only on the workcell of its pool" in (got["wrong"].state.message or "")

    used: dict[str, list[tuple[datetime, datetime]]] = {}
    for workcell, dirs in got["dirs"].items():
        for run_dir in dirs:
            store = _store(run_dir)
            try:
                check = store.record.verify()
                assert check.ok, (run_dir, check.problem)
                opened = store.events("flow_run_opened")
                assert opened
                for e in opened:
                    # every run that opened this folder came from this workcell's pool and
                    # from one of its deployments, and ran as this workcell
                    assert e.data["workcell"] == workcell
                    assert got["pools"][e.data["flow_run"]] == workcell
                    dep = got["run_deployment"][e.data["flow_run"]]
                    assert got["deployments"][dep] == workcell
                used.setdefault(workcell, []).extend(
                    (
                        datetime.fromisoformat(e.data["wall_start"]),
                        datetime.fromisoformat(e.data["wall_end"]),
                    )
                    for e in store.events("shared_device_used")
                )
                if run_dir.name.startswith("campaign"):
                    (finished,) = store.events("campaign_finished")
                    assert finished.data["outcome"].startswith("harvested"), finished.data
                    assert store.events("harvested")
            finally:
                store.close()
    (decision,) = _decisions(got["dirs"]["workcell-b"][0])
    assert decision == ("B. Operator", "approve")
    # the shared counter: both workcells used it, never at the same time
    assert used["workcell-a"] and used["workcell-b"]
    for s1, e1 in used["workcell-a"]:
        for s2, e2 in used["workcell-b"]:
            assert e1 <= s2 or e2 <= s1, ((s1, e1), (s2, e2))
    # the resumed campaign went on from the store: seeded once, no step done twice
    store = _store(got["dirs"]["workcell-a"][0])
    try:
        assert len(store.events("campaign_started")) == 1
        seeds = [e for e in store.events("decision") if e.data.get("action") == "seed"]
        assert len(seeds) == 1
        steps = [e.data["step"] for e in store.events("step_finished")]
        assert len(steps) == len(set(steps)) > got["steps_at_kill"] >= 2
        assert store.events("campaign_handed_over")
    finally:
        store.close()


def _decisions(run_dir: Path) -> list[tuple[str, str]]:
    store = _store(run_dir)
    try:
        return [(e.actor, e.data["decision"]) for e in store.events("operator_decision")]
    finally:
        store.close()
