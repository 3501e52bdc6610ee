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
    import json, sys
    from flows.ephemeral import TemporaryServer, prefect_api

    loaded = []
    with prefect_api(lambda text: None, meanwhile=lambda: loaded.append(True)) as url:
        server = TemporaryServer.current
        print(json.dumps({"url": url, "pid": server.process.pid, "meanwhile": loaded}))
        sys.stdout.flush()
        sys.stdin.readline()  # the test says when to leave (or kills this process)
    print("left", flush=True)
    """
)


def _server_user(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
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
    process ends when the command leaves, and when the command is SIGKILLed."""
    proc, started = _server_user(tmp_path)
    try:
        assert started["meanwhile"] == [True]
        assert started["url"].startswith("http://127.0.0.1:")
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


def test_a_port_taken_before_the_server_binds_it_is_not_the_end(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The port found free may be taken before the server binds it: the server then
    fails to start, and is started again on another port (here the first port is
    held by the test)."""
    import flows.ephemeral as ephemeral

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    real = ephemeral.free_port
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    ports = [int(held.getsockname()[1])]
    monkeypatch.setattr(ephemeral, "free_port", lambda: ports.pop(0) if ports else real())
    try:
        server = ephemeral.TemporaryServer()
        server.launch()
        first = server.port
        server.wait(300)
        try:
            assert first == held.getsockname()[1] and server.port != first
            assert httpx.get(f"{server.api_url}/health", timeout=30).status_code == 200
        finally:
            server.stop()
    finally:
        held.close()
