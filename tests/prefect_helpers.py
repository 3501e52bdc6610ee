"""A real Prefect server and `workcell serve` on 127.0.0.1, started and stopped by a test.

Everything runs in its own process group and is stopped when the fixture ends;
PREFECT_HOME is a temporary folder, so nothing outside the test is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.campaign_helpers import child_env, quick_config
from workcell.lifeline import lifeline_preexec
from workcell.ports import free_port

BIN = Path(sys.executable).parent


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Served:
    url: str  # the API
    ui: str
    home: Path
    run_dir: Path
    env: dict[str, str]

    def api(self, path: str, body: Any = None) -> Any:
        """One call to the Prefect REST API (POST with a JSON body, GET without)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, headers={"content-type": "application/json"}
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:  # 503 while the server settles: ask again
                if e.code != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def flow_runs(self) -> list[dict[str, Any]]:
        return list(self.api("/flow_runs/filter", {}))

    def deployment_id(self, name: str) -> str:
        deadline = time.monotonic() + 300
        while True:
            try:
                found = self.api("/deployments/filter", {})
            except OSError:  # the server is still starting (503) or busy
                found = []
            for d in found:
                if d["name"] == name:
                    return str(d["id"])
            assert time.monotonic() < deadline, f"no deployment {name!r}"
            time.sleep(0.5)

    def wait_state(self, run_id: str, names: set[str], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fr = self.api(f"/flow_runs/{run_id}")
            except OSError:  # a busy machine: the server answers late; ask again
                assert time.monotonic() < deadline, "the server stopped answering"
                continue
            state = fr.get("state") or {}
            if state.get("name") in names:
                return dict(fr)
            if state.get("type") in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                raise AssertionError(f"run ended {state.get('name')}: {state.get('message')}")
            assert time.monotonic() < deadline, f"still {state.get('name')}"
            time.sleep(0.5)


@contextlib.contextmanager
def prefect_and_workcell(
    home: Path,
    name: str = "ui-workcell",
    ui: bool = True,
    poll_s: float = 1.0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """A Prefect server (with its UI) and `workcell serve` of a quick simulated workcell
    (``extra_env``: more environment for both, e.g. the user registry)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = (
        child_env(home / "locks")
        | {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true" if ui else "false",
            "PREFECT_API_URL": url,
            "PREFECT_RUNNER_POLL_FREQUENCY": f"{poll_s:g}",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        | (extra_env or {})
    )
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lifeline_preexec,  # ends with this test process, even if killed
            )
        )
        deadline = time.monotonic() + 600  # a busy 2-core machine: as the demo waits
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert procs[0].poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        cfg = quick_config(home, name=name)
        run_dir = home / "workcell-run"
        serve_log = open(home / "serve.log", "wb")  # noqa: SIM115
        logs.append(serve_log)
        procs.append(
            subprocess.Popen(
                [str(BIN / "workcell"), "serve", "--config", str(cfg), "--run-dir", str(run_dir)],
                env=env,
                stdout=serve_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lifeline_preexec,  # ends with this test process, even if killed
            )
        )
        yield Served(url=url, ui=f"http://127.0.0.1:{port}", home=home, run_dir=run_dir, env=env)
    finally:
        for p in reversed(procs):
            stop(p)
        for f in logs:
            f.close()
