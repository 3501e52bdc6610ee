"""The demo's temporary Prefect server: a generous, configurable, announced start-up wait."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.ephemeral import DEFAULT_TIMEOUT_S, TIMEOUT_ENV, startup_timeout_s


def test_the_wait_is_generous_by_default_and_set_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert startup_timeout_s() == DEFAULT_TIMEOUT_S >= 300
    monkeypatch.setenv(TIMEOUT_ENV, "1200")
    assert startup_timeout_s() == 1200
    for bad in ("abc", "0"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=TIMEOUT_ENV):
            startup_timeout_s()


def test_a_bad_wait_is_refused_before_anything_starts(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", TIMEOUT_ENV: "soon", "PREFECT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "workcell.cli", "demo", "--run-dir", f"{tmp_path}/run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{TIMEOUT_ENV}='soon' is not a whole number of seconds" in done.stderr


SERVER_USER = textwrap.dedent(
    """
    import json, os, sys
    import flows.ephemeral as ephemeral
    from flows.ephemeral import TemporaryServer, prefect_api

    held = [int(p) for p in os.environ.get("HELD_PORT", "").split()]  # given out first
    real = ephemeral.free_port
    ephemeral.free_port = lambda: held.pop(0) if held else real()
    ports, launch = [], TemporaryServer._launch

    def counted(self):
        process = launch(self)
        ports.append(self.port)
        return process

    TemporaryServer._launch = counted
    loaded = []
    with prefect_api(lambda text: None, meanwhile=lambda: loaded.append(True)) as url:
        server = TemporaryServer.current
        out = {"url": url, "pid": server.process.pid, "meanwhile": loaded, "ports": ports}
        print(json.dumps(out), flush=True)
        sys.stdin.readline()  # the test says when to leave (or kills this process)
    print("left", flush=True)
    """
)


def _server_user(tmp_path: Path, held: int | None = None) -> tuple[subprocess.Popen[str], Any]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    if held is not None:
        env["HELD_PORT"] = str(held)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_USER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the temporary server did not start"
    return proc, json.loads(line)


def _gone(pid: int, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat")
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True  # ended, not yet reaped by its parent
        except (OSError, IndexError):
            return True
        time.sleep(0.1)
    return False


def test_the_temporary_server_answers_and_ends_with_the_command(tmp_path: Path) -> None:
    """Started as Prefect starts it, but here: it answers the API once ``prefect_api``
    enters (asked from outside), the work given for meanwhile is done, and the server's
    process ends when the command leaves, and when the command is SIGKILLed.

    The first port it is given is held by this test (a port found free may be taken
    before the server binds it): the server fails to start there and is started
    again on another port."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = int(held.getsockname()[1])
    try:
        proc, started = _server_user(tmp_path, held=port)
    finally:
        held.close()
    try:
        assert started["ports"][0] == port and len(started["ports"]) == 2, started
        assert started["url"] == f"http://127.0.0.1:{started['ports'][1]}/api"
        assert started["meanwhile"] == [True]
        assert httpx.get(f"{started['url']}/health", timeout=30).status_code == 200
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "left"
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert _gone(started["pid"]), "the server outlived the command that left it"

    proc, started = _server_user(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _gone(started["pid"]), "the server outlived the command that was killed"
