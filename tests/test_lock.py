"""The lock files match pyproject.toml and requirements-opentrons.in (offline).

The check itself is shown to catch each way a lock goes stale: a dependency list
edited without ``make lock``, a pin edited by hand outside its bounds, a pin
without a hash.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).parent.parent


def _lockfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockfile", ROOT / "scripts" / "lockfile.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["lockfile"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


lockfile = _lockfile()


def test_the_committed_locks_match_their_inputs() -> None:
    assert lockfile.problems(ROOT / "requirements.lock", ROOT / "pyproject.toml") == []
    assert (
        lockfile.problems(ROOT / "requirements-opentrons.lock", ROOT / "requirements-opentrons.in")
        == []
    )


def test_every_dependency_has_a_lower_and_an_upper_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        assert ">=" in req and "<" in req.replace("<=", ""), req


def test_the_check_catches_a_stale_or_edited_lock(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    lock = tmp_path / "requirements.lock"
    shutil.copy(ROOT / "requirements.lock", lock)
    text = (ROOT / "pyproject.toml").read_text()
    pyproject.write_text(text)
    assert lockfile.problems(lock, pyproject) == []

    pyproject.write_text(text.replace('"prefect>=3.9,<4"', '"prefect>=3.9,<3.10"'))
    (stale,) = lockfile.problems(lock, pyproject)
    assert "run `make lock`" in stale

    pyproject.write_text(text)
    locked = lock.read_text()
    lock.write_text(re.sub(r"^prefect==\S+", "prefect==3.4.1", locked, flags=re.M))
    assert lockfile.problems(lock, pyproject) == [
        "prefect==3.4.1 in " + str(lock) + " is outside <4,>=3.9"
    ]

    lock.write_text(
        re.sub(
            r"(^pyserial==\S+ \\\n)(\s+--hash=\S+\s*\\?\n)+", r"pyserial==3.5\n", locked, flags=re.M
        )
    )
    assert lockfile.problems(lock, pyproject) == [f"pyserial is pinned in {lock} without a hash"]
