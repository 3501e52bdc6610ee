"""The demo's temporary Prefect server: a generous, configurable, announced start-up wait."""

from __future__ import annotations

import subprocess
import sys

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
