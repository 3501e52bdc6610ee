"""A real Prefect server on 127.0.0.1: serve the deployments, run them as the UI does.

Starts ``prefect server start`` with a temporary PREFECT_HOME, then ``workcell
serve`` against it, then uses the Prefect client the way the UI does: read a
deployment's parameter schema, create flow runs from deployments, answer a paused
campaign's operator form, fill the suspended release flow's QC form; and the
``workcell`` command as analysts and signers do. Everything started here is
stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from flows.resume import resume_suspended
from tests.campaign_helpers import child_env, quick_config
from workcell.anchor import HEAD_FILE
from workcell.batch.release import Stage, release_state
from workcell.batch.users import UserRegistry
from workcell.lifeline import lifeline_preexec
from workcell.ports import free_port
from workcell.store import STORE_FILE, Store

SECRETS = {"q.lead": "lead secret 1", "a.analyst": "analyst secret 1", "o.op": "op secret 12"}
PREFECT = str(Path(sys.executable).parent / "prefect")
WORKCELL = str(Path(sys.executable).parent / "workcell")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = child_env(home / "locks") | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_URL": url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "WORKCELL_USERS": str(home / "users.json"),
    }
    registry = UserRegistry(home / "users.json")
    registry.add("q.lead", "Q. Lead", ["qa"], SECRETS["q.lead"], None, 2**14)
    lead = registry.authenticate("q.lead", SECRETS["q.lead"])
    for uid, name, role in [("a.analyst", "A. Analyst", "analyst"), ("o.op", "O. Op", "operator")]:
        registry.add(uid, name, [role], SECRETS[uid], lead, 2**14)  # type: ignore[list-item]
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    srv = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lifeline_preexec,  # ends with this test process, even if killed
    )
    procs = [srv]
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert srv.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        cfg = quick_config(home, name="ui-workcell")
        run_dir = home / "workcell-run"
        serve_log = open(home / "serve.log", "wb")  # noqa: SIM115
        served = subprocess.Popen(
            [WORKCELL, "serve", "--config", str(cfg), "--run-dir", str(run_dir)],
            env=env,
            stdout=serve_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lifeline_preexec,  # ends with this test process, even if killed
        )
        procs.append(served)
        yield {"url": url, "env": env, "run_dir": run_dir, "home": home, "served": served}
    finally:
        for p in reversed(procs):
            _stop(p)
        log.close()


def _client_call(url: str, fn: Any) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go() -> Any:
        with temporary_settings({PREFECT_API_URL: url}):
            async with get_client() as client:
                return await fn(client)

    return asyncio.run(go())


async def _deployment(client: Any, name: str) -> Any:
    operation = "campaign" if name == "expansion-campaign" else name
    deadline = time.monotonic() + 90
    while True:
        try:
            return await client.read_deployment_by_name(f"{name}/{operation} @ ui-workcell")
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _wait_state(client: Any, run_id: UUID, names: set[str], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        fr = await client.read_flow_run(run_id)
        if fr.state and fr.state.name in names:
            return fr
        if fr.state and fr.state.is_final():
            raise AssertionError(f"flow run ended {fr.state.name}: {fr.state.message}")
        assert time.monotonic() < deadline, f"still {fr.state.name if fr.state else None}"
        await asyncio.sleep(0.5)


def test_deployments_carry_the_pydantic_forms_and_run_as_from_the_ui(
    server: dict[str, Any],
) -> None:
    async def go(client: Any) -> dict[str, Any]:
        passage = await _deployment(client, "passage")
        schema = passage.parameter_openapi_schema
        seed = await _deployment(client, "seed")
        seed_params = {
            "suspension": {"volume_mL": 5, "viable_cells_per_mL": 5e5},
            "plates": ["plate_1"],
            "density_cells_per_cm2": 3000,
        }
        run = await client.create_flow_run_from_deployment(
            seed.id, parameters={"params": seed_params}
        )
        seeded = await _wait_state(client, run.id, {"Completed"})
        again = await client.create_flow_run_from_deployment(
            seed.id, parameters={"params": {**seed_params, "wells": ["A1"]}}
        )
        refused = await _wait_state(client, again.id, {"Failed"})
        run = await client.create_flow_run_from_deployment(
            passage.id,
            parameters={"params": {"plate": "plate_1", "destination_plates": ["plate_2"]}},
        )
        passaged = await _wait_state(client, run.id, {"Completed"})
        artifacts = await client.read_artifacts()
        return {
            "schema": schema,
            "seeded": seeded,
            "passaged": passaged,
            "artifacts": artifacts,
            "refused": refused,
        }

    got = _client_call(server["url"], go)
    defs = got["schema"]["definitions"]
    fields = defs["PassagingParams"]["properties"]
    assert {"plate", "destination_plates", "confluence_threshold_percent"} <= set(fields)
    assert fields["confluence_threshold_percent"]["default"] == 80
    assert defs["DetachParams"]["properties"]["enzyme_time_min"]["maximum"] == 15
    # a refusal: the run's state message is the refusal in one line, no traceback logged
    message = got["refused"].state.message
    assert message == (  # the seed flow put plate_1 away: seeding it again is refused
        "seeding refused before any device moved: plate 'plate_1' is in the incubator, "
        "not on the deck"
    )
    served_log = server["home"] / "serve.log"  # the runs' console output, as the lab sees it
    deadline = time.monotonic() + 30
    while message not in (printed := served_log.read_text(errors="replace")):
        assert time.monotonic() < deadline, printed[-3000:]
        time.sleep(0.5)
    assert "Traceback" not in printed, printed[-3000:]
    assert got["seeded"].state.message.startswith("Seeded 6 vessels on plate_1")
    kinds = {a.type for a in got["artifacts"]}
    assert {"table", "markdown"} <= kinds
    store = Store(server["run_dir"] / STORE_FILE)
    try:
        assert len([v for v in store.vessels() if v.plate == "plate_1"]) == 6
        (decision,) = [e for e in store.events("decision") if "passage" in e.data]
        assert decision.data["passage"] is False  # a day-0 plate is far below 80 %
    finally:
        store.close()


def test_campaign_pauses_for_the_operator_and_records_the_answer(
    server: dict[str, Any],
) -> None:
    campaign_dir = server["home"] / "campaign-run"

    async def go(client: Any) -> Any:
        dep = await _deployment(client, "expansion-campaign")
        run = await client.create_flow_run_from_deployment(
            dep.id,
            parameters={
                "params": {"patient_weight_kg": 1, "target_dose_cells_per_kg": 1e5},
                "run_dir": str(campaign_dir),
                "operator_timeout_s": 300,
            },
        )
        # a run from a deployment suspends: its process ends while the operator decides
        await _wait_state(client, run.id, {"Suspended"})
        await resume_suspended(
            client, run.id, {"operator": "J. Doe", "decision": "approve", "comment": "counts fine"}
        )
        done = await _wait_state(client, run.id, {"Completed"})
        progress = [a for a in await client.read_artifacts() if a.type == "progress"]
        return done, progress

    done, progress = _client_call(server["url"], go)
    # the resumed run starts from the top with a progress bar of its own; the last reaches 100
    assert progress and sorted(progress, key=lambda a: a.created)[-1].data == 100.0
    store = Store(campaign_dir / STORE_FILE)
    try:
        (answer,) = store.events("operator_decision")
        assert answer.actor == "J. Doe" and answer.data["decision"] == "approve"
        assert answer.data["comment"] == "counts fine"
        assert store.events("harvested")
    finally:
        store.close()


async def _release_run(client: Any, run_dir: Path) -> Any:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    deadline = time.monotonic() + 60
    while True:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["batch-release"]))
        )
        mine = [r for r in runs if Path(r.parameters.get("run_dir", "")) == run_dir.resolve()]
        if mine:
            return mine[0]
        assert time.monotonic() < deadline, "the harvest started no release flow"
        await asyncio.sleep(0.5)


async def _suspended_at(client: Any, run_id: UUID, key: str, timeout: float = 120) -> Any:
    """Wait until the run is suspended at the wait ``key`` (qc-1, sign-2, ...)."""
    deadline = time.monotonic() + timeout
    while True:
        fr = await client.read_flow_run(run_id)
        st = fr.state
        if st and st.name == "Suspended" and st.state_details.pause_key == key:
            return fr
        if st and st.is_final():
            raise AssertionError(f"release flow ended {st.name}: {st.message}")
        assert time.monotonic() < deadline, f"not suspended at {key}: {st.name if st else None}"
        await asyncio.sleep(0.5)


def _processes_of(run_id: UUID) -> list[int]:
    """Processes running this flow run (the runner gives each its id in the environment)."""
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _cli(server: dict[str, Any], *args: str, secret: str) -> str:
    proc = subprocess.run(
        [WORKCELL, *args],
        input=secret + "\n",
        env=server["env"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed release flow run" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


def test_harvest_hands_over_to_a_release_that_waits_for_late_results(
    server: dict[str, Any],
) -> None:
    """Harvest, the release flow suspended (no process) until sterility is read 14
    simulated days later, results from the UI form and the CLI, signatures, released."""
    run_dir = server["home"] / "campaign-run"  # harvested by the campaign test above
    store = Store(run_dir / STORE_FILE, read_only=True)
    try:
        harvest = store.events("harvested")[-1].time
    finally:
        store.close()
    old = server["home"] / "old-copy"  # the store and its head as they are at harvest
    old.mkdir()
    src, dst = sqlite3.connect(run_dir / STORE_FILE), sqlite3.connect(old / STORE_FILE)
    src.backup(dst)
    src.close()
    dst.close()
    shutil.copy(run_dir / HEAD_FILE, old / HEAD_FILE)
    day = 86400.0
    form = {  # the release's Resume form: one field per result (flows.release.QCForm)
        "analyst": "a.analyst",
        "reported_at": _at(harvest, 1 * day),
        **{"cd73": 99, "cd90": 98, "cd105": 97, "cd45": 0.5, "cd34": 0.5, "cd14": 0.4},
        **{"cd19": 0.3, "hla_dr": 1.0, "mycoplasma": "negative", "endotoxin": 0.1},
    }

    async def wait_for_qc(client: Any) -> Any:
        fr = await _release_run(client, run_dir)
        await _suspended_at(client, fr.id, "qc-1")
        await asyncio.sleep(2)  # the suspended run's process has had time to exit
        held = _processes_of(fr.id)
        await resume_suspended(client, fr.id, form)  # the UI's form
        await _suspended_at(client, fr.id, "qc-2")  # sterility still missing
        return fr.id, held

    run_id, held = _client_call(server["url"], wait_for_qc)
    assert held == []  # suspended: no process holds the waiting release
    store = Store(run_dir / STORE_FILE, read_only=True)
    try:
        entered = store.events("qc_result")
        assert {e.data["test"] for e in entered} == {"flow_cytometry", "mycoplasma", "endotoxin"}
        assert {e.actor for e in entered} == {"a.analyst"}
        assert all(e.data["entry"]["channel"] == "prefect-ui" for e in entered)
        assert release_state(store, None).stage is Stage.WAITING_QC
    finally:
        store.close()

    sterility = server["home"] / "sterility.json"  # read 14 simulated days after the harvest
    sterility.write_text(
        json.dumps(
            {"test": "sterility", "result": "negative", "reported_at": _at(harvest, 14 * day)}
        )
    )
    _cli(
        server,
        "release",
        "enter",
        str(run_dir),
        str(sterility),
        "-u",
        "a.analyst",
        secret=SECRETS["a.analyst"],
    )
    _client_call(server["url"], lambda c: _suspended_at(c, run_id, "sign-1"))
    _cli(
        server,
        "release",
        "sign",
        str(run_dir),
        "-u",
        "o.op",
        "--meaning",
        "performed",
        secret=SECRETS["o.op"],
    )
    _client_call(server["url"], lambda c: _suspended_at(c, run_id, "sign-2"))
    _cli(
        server,
        "release",
        "sign",
        str(run_dir),
        "-u",
        "q.lead",
        "--meaning",
        "approved",
        secret=SECRETS["q.lead"],
    )
    done = _client_call(server["url"], lambda c: _wait_state(c, run_id, {"Completed"}))
    assert done.state.name == "Completed"
    assert done.state.message.startswith("batch campaign-run released: every criterion passed")
    store = Store(run_dir / STORE_FILE, read_only=True)
    try:
        state = release_state(store, UserRegistry(server["home"] / "users.json"))
        assert state.released, state.reason
        assert [(s.user_id, s.meaning) for s in state.signatures] == [
            ("o.op", "performed"),
            ("q.lead", "approved"),
        ]
    finally:
        store.close()
    verify = [WORKCELL, "record", "verify", str(run_dir), "--prefect"]
    proc = subprocess.run(verify, env=server["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "record intact" in proc.stdout, proc.stdout + proc.stderr
    for name in (STORE_FILE, HEAD_FILE):  # replay: the harvest-day pair put back in place
        shutil.copy(old / name, run_dir / name)
    for stale in ("-wal", "-shm"):
        (run_dir / (STORE_FILE + stale)).unlink(missing_ok=True)
    proc = subprocess.run(verify, env=server["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Prefect artifact record-head-" in proc.stderr and "older copy" in proc.stderr


def _at(t: Any, seconds: float) -> str:
    from datetime import timedelta

    return (t + timedelta(seconds=seconds)).isoformat()


def test_the_ui_shows_the_capacity_plan_before_seeding_and_progress_against_it(
    server: dict[str, Any], tmp_path: Path
) -> None:
    from tests.test_capacity_plan import PARAMS, _clinical

    cfg = tmp_path / "clinical.yaml"
    cfg.write_text(yaml.safe_dump(_clinical()))
    params = tmp_path / "params.json"
    params.write_text(PARAMS.model_copy(update={"patient_weight_kg": 3.0}).model_dump_json())
    run_dir = tmp_path / "run"
    cmd = [WORKCELL, "campaign", "-c", str(cfg), "-p", str(params), "--run-dir", str(run_dir)]
    done = subprocess.run(
        [*cmd, "--auto-approve"], env=server["env"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]

    async def go(client: Any) -> Any:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        (plan,) = await client.read_artifacts(  # the plan of this run folder ("run")
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["capacity-plan-run"]))
        )
        progress = [a for a in await client.read_artifacts() if a.type == "progress"]
        runs = await client.read_task_runs()
        return plan, progress, runs

    plan, progress, runs = _client_call(server["url"], go)
    assert "Capacity plan" in plan.data and "incubator slots at peak" in plan.data
    seeding = [r for r in runs if r.name.endswith(" seed") and r.start_time is not None]
    assert len(runs) > 10, [r.name for r in runs]
    assert seeding and plan.created < min(r.start_time for r in seeding)
    assert any("planned vessels" in (a.description or "") for a in progress)


def test_a_resume_waits_for_the_form_prefect_writes_after_the_suspended_state(
    server: dict[str, Any],
) -> None:
    """Prefect writes a suspended run's form after its state: a resume in between is
    rejected, quietly. ``resume_suspended`` waits for the form; other refusals raise."""
    from prefect import flow
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Running, State, Suspended

    from flows.holds import HoldAnswer
    from flows.resume import SCHEMA_PENDING, ResumeRefused

    @flow(name="suspend-race")
    def held() -> None:  # never run: only its run's states are set here
        pass

    answer = {"operator": "J. Doe", "decision": "approve", "comment": ""}

    async def go(client: Any) -> tuple[Any, Any, Any, str]:
        # Prefect resumes only a deployment's run; no worker or runner polls this one
        dep = await client.create_deployment(await client.create_flow(held), "unpolled")
        run = await client.create_flow_run_from_deployment(dep)
        await client.set_flow_run_state(run.id, Running(), force=True)
        state: State[None] = Suspended(timeout_seconds=600, pause_key="decide-race")
        keyset = keyset_from_paused_state(state)
        state.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
        await client.set_flow_run_state(run.id, state, force=True)
        # between the two writes: Prefect's own resume is rejected and nothing raises
        early = await client.resume_flow_run(run.id, run_input=answer)
        form = HoldAnswer  # the campaign's hold form

        async def write_form_late() -> None:
            await asyncio.sleep(1.0)
            await form.asave(keyset, flow_run_id=run.id)

        await asyncio.gather(resume_suspended(client, run.id, answer), write_form_late())
        after = await client.read_flow_run(run.id)
        stored = await form.aload(keyset, flow_run_id=run.id)
        try:  # the run is no longer suspended: a second resume is refused aloud
            await resume_suspended(client, run.id, answer)
        except ResumeRefused as e:
            refused = str(e)
        else:
            refused = ""
        return early, after, stored, refused

    early, after, stored, refused = _client_call(server["url"], go)
    assert early.status.value == "REJECT" and early.details.reason == SCHEMA_PENDING, early
    assert after.state.name != "Suspended" and after.state.is_scheduled(), after.state
    assert stored.model_dump(include=set(answer)) == answer  # the answer the run will read
    assert "not paused" in refused, refused
