"""Shared fixtures: the embedded simulated workcell, as data and assembled."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import yaml

from workcell.assembly.build import Workcell, build_workcell
from workcell.assembly.config import DEFAULT_CONFIG, WorkcellConfig, parse_config

T = TypeVar("T")
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


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
