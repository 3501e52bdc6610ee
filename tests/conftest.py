"""Shared fixtures: the embedded simulated workcell, as data and assembled."""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, settings

from workcell.assembly.build import Workcell, build_workcell
from workcell.assembly.config import DEFAULT_CONFIG, WorkcellConfig, parse_config

T = TypeVar("T")

# Property tests (tests/test_refusals.py): a lean profile for every run and CI, more
# examples with HYPOTHESIS_PROFILE=thorough; benchmarks/refusals.py runs many more.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
# The suite's examples are derandomized (the same on every run, so CI cannot fail on a
# draw no one can reproduce); the thorough profile and the benchmark draw new ones.
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "thorough", max_examples=100, deadline=None, suppress_health_check=_SLOW_OK
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(autouse=True, scope="session")
def _own_lock_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Device locks of this test session in a folder of its own (its subprocesses inherit
    it), so a suite running beside another on the same machine never waits on its locks."""
    if not os.environ.get("WORKCELL_LOCK_DIR"):
        os.environ["WORKCELL_LOCK_DIR"] = str(tmp_path_factory.mktemp("locks"))


@pytest.fixture(autouse=True, scope="session")
def _check_checkpoints() -> None:
    """Every checkpoint of every test (and of the processes tests start) is compared with
    a whole serialization of the model: a change PyLabRobot did not report stops it."""
    os.environ["WORKCELL_CHECK_CHECKPOINTS"] = "1"


@pytest.fixture
def sim_data() -> dict[str, Any]:
    """The embedded simulated config as plain data, to be edited by a test."""
    return copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))


@pytest.fixture
def sim_config(sim_data: dict[str, Any]) -> WorkcellConfig:
    sim_data["clock"]["start"] = START.isoformat()
    return parse_config(sim_data)


@pytest.fixture
def wc(sim_config: WorkcellConfig) -> Iterator[Workcell]:
    """An assembled simulated workcell (its lab process started), set up and ready."""
    workcell = build_workcell(sim_config)
    try:
        run(workcell.setup())
        yield workcell
    finally:
        run(workcell.stop())
