"""What a controller starts ends when it is SIGKILLed: its lab, its image workers, a server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.campaign_helpers import child_env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _gone(pids: list[int], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


CONTROLLER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from workcell import compute
    from workcell.assembly.build import build_workcell
    from workcell.assembly.config import load_config

    wc = build_workcell(load_config(None))  # starts a lab of its own
    pool = compute.pool()
    pids = {"lab": wc.lab_handle.process.pid, "workers": compute.worker_pids()}
    print(json.dumps(pids), flush=True)
    time.sleep(600)
    """
)


def test_a_killed_controller_leaves_no_lab_and_no_image_workers(tmp_path: Path) -> None:
    env = child_env(tmp_path / "locks") | {"WORKCELL_CPU_WORKERS": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pids = json.loads(proc.stdout.readline())
        children = [pids["lab"], *pids["workers"]]
        assert len(children) == 3 and all(_alive(p) for p in children)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _gone(children), "a process outlived the controller that started it"


SERVER_PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    server = subprocess.Popen(
        [sys.executable, "-m", "workcell.lifeline", str(os.getpid()), "http.server",
         "--bind", "127.0.0.1", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    print(server.pid, flush=True)
    time.sleep(600)
    """
)


def test_a_server_started_through_the_lifeline_ends_with_its_parent(tmp_path: Path) -> None:
    """How the campaign starts Prefect's temporary API server (``python -m uvicorn``)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", SERVER_PARENT],
        env=child_env(tmp_path / "locks"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        server = int(parent.stdout.readline())
        time.sleep(1.0)
        assert _alive(server)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _gone([server]), "the server outlived its parent"
