"""Refuse before motion, as a property: each unit operation against generated parameters.

For every unit operation, hypothesis generates parameter sets across and beyond
their bounds (plates, wells, densities, volumes, reservoir roles, tips left,
drained reagents, duplicate names) and runs each on a fresh copy of a workcell
grown for a week. Every example must be refused by the model or the plan with no
device action in the action log or the batch record, or complete (a passage may
hold its cells with a deviation) using exactly the tips it planned; never fail
after the first device action (``benchmarks/refusals.py`` holds the property and
runs many more examples).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.refusals import OPERATIONS, Template, property_test


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Template, Path]]:
    work = tmp_path_factory.mktemp("refusals")
    yield Template.make(work / "template"), work


@pytest.mark.parametrize("operation", OPERATIONS)
def test_refused_before_motion_or_completed(
    template: tuple[Template, Path], operation: str
) -> None:
    tpl, work = template
    outcomes: Counter[str] = Counter()
    property_test(tpl, work, operation, outcomes)()
    assert sum(outcomes.values()) >= 1
