"""A real Prefect server on 127.0.0.1: serve the deployments, run them as the UI does.

Starts ``prefect server start`` with a temporary PREFECT_HOME, then ``workcell
serve`` against it, then uses the Prefect client the way the UI does: read a
deployment's parameter schema, create flow runs from deployments, answer a paused
campaign's operator form. Everything started here is stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.campaign_helpers import child_env, quick_config
from workcell.store import STORE_FILE, Store

PREFECT = str(Path(sys.executable).parent / "prefect")
WORKCELL = str(Path(sys.executable).parent / "workcell")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    port = _free_port()
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
    }
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    srv = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
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
        await client.resume_flow_run(
            run.id,
            run_input={"operator": "J. Doe", "decision": "approve", "comment": "counts fine"},
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
