"""What the benchmarks share: the benchmark workcell, the campaign sizes, and timers.

The benchmark workcell is the embedded simulated one with 24-well plates on every
plate site (6-well plates for a single vessel), so 48 vessels fit on two plates
and a 28-day campaign that passages about once a week fits the deck, and the
STAR's eight channels working as a group (``PIPETTING_CHANNELS``), as a lab runs a
STAR. Everything else (devices, imaging fields, the culture model) is the
embedded default.

A campaign size is the number of vessels in flight: the first plates are seeded
with that many wells and ``max_vessels`` keeps the passages to that many. The
target is out of reach, so each campaign runs its 28 days and then harvests (with
a deviation, auto-approved: this is a dry-run).
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from protocols.campaign.engine import CampaignParams
from protocols.seeding import Suspension
from workcell.assembly.config import DEFAULT_CONFIG

PLATE_24 = "cor_cos_24_wellplate_3470uL_Fb"
PLATE_6 = "cor_cos_6_wellplate_16800uL_Fb"
WELLS_24 = [f"{r}{c}" for r in "ABCD" for c in range(1, 7)]
WELLS_6 = [f"{r}{c}" for r in "AB" for c in range(1, 4)]
# the STAR's eight channels work as a group, as on the clinical workcell: a 24-well
# plate's column (four wells, a tip each) per command; 1 is the embedded default's
# one channel, well by well
PIPETTING_CHANNELS = 8


def labware_for(vessels: int) -> tuple[str, list[str]]:
    """24-well plates for many vessels; a single vessel in a 6-well plate's well, whose
    pool outgrows a tube's dead volume."""
    return (PLATE_6, WELLS_6) if vessels < 8 else (PLATE_24, WELLS_24)


def benchmark_config(
    folder: Path,
    vessels: int,
    name: str = "bench-workcell",
    imaging: str = "fast",
    channels: int = PIPETTING_CHANNELS,
) -> Path:
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["name"] = name
    data["devices"]["imager"]["fidelity"] = {"mode": imaging}
    data["devices"]["star"]["pipetting_channels"] = channels
    data["clock"]["start"] = "2026-01-05T08:00:00+00:00"
    plate, _ = labware_for(vessels)
    for carrier in data["deck"]["carriers"]:
        for site in carrier["sites"]:
            if site["name"].startswith("plate_"):
                site["labware"] = plate
    path = folder / "workcell.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def campaign_params(vessels: int, days: float = 28.0) -> CampaignParams:
    plate, all_wells = labware_for(vessels)
    plates = -(-vessels // len(all_wells))
    wells = [] if vessels % len(all_wells) == 0 else all_wells[:vessels]
    return CampaignParams(
        suspension=Suspension(
            volume_mL=10.0,
            viable_cells_per_mL=2.0e5,
            viability_percent=92,
            passage=1,
            population_doublings=4.0,
            lot="BENCH-01",
        ),  # diluted for 24-well plates: >= 20 uL of suspension per well
        initial_plates=[f"plate_{i}" for i in range(1, plates + 1)],
        initial_wells=wells,
        vessel_labware=plate,
        max_vessels=vessels,
        max_days=days,
        patient_weight_kg=250,
        target_dose_cells_per_kg=1e8,  # out of reach: the campaign runs its days
    )


class Timers:
    """Wall seconds per label, summed and per call; patched onto functions by ``wrap``.

    A timed call's own bookkeeping runs partly outside it (and so would count as
    orchestration): it is a plain object with ``__enter__``/``__exit__``, which costs a
    third of a generator-based context manager over the run's thousands of calls.
    """

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self._depth: dict[str, int] = defaultdict(int)
        self._outer = 0  # timed calls open now, of any label
        self._outer_t0 = 0.0
        self.outer_s = 0.0  # wall seconds inside any timed call (nesting counted once)
        self._outer_cpu0 = 0.0
        self.outer_cpu_s = 0.0  # the same in CPU seconds of this process

    def timing(self, label: str, outer: bool = True) -> _Timing:
        """Time a call; ``outer=False``: not part of the work whose share is measured."""
        return _Timing(self, label, outer)

    def wrap(self, owner: Any, name: str, label: str, piece: bool = False) -> None:
        """Time every call of ``owner.name`` under ``label``. ``piece``: a piece of the
        orchestration overhead, timed only outside every timed operation and not as one
        (the same function called by an operation is the operation's own time)."""
        original = getattr(owner, name)
        outer = not piece
        if _is_async(original):

            @functools.wraps(original)  # Prefect reads a task function's signature
            async def awrapped(*a: Any, **k: Any) -> Any:
                if piece and self._outer:
                    return await original(*a, **k)
                with self.timing(label, outer):
                    return await original(*a, **k)

            setattr(owner, name, awrapped)
        else:

            @functools.wraps(original)
            def wrapped(*a: Any, **k: Any) -> Any:
                if piece and self._outer:
                    return original(*a, **k)
                with self.timing(label, outer):
                    return original(*a, **k)

            setattr(owner, name, wrapped)

    def total(self, label: str) -> float:
        return sum(self.calls.get(label, []))

    def median(self, label: str) -> float | None:
        xs = self.calls.get(label)
        return statistics.median(xs) if xs else None


class _Timing:
    """One timed call (``Timers.timing``)."""

    __slots__ = ("timers", "label", "step", "t0")

    def __init__(self, timers: Timers, label: str, outer: bool) -> None:
        self.timers, self.label, self.step = timers, label, 1 if outer else 0

    def __enter__(self) -> None:
        t = self.timers
        t._depth[self.label] += 1
        t._outer += self.step
        self.t0 = time.perf_counter()
        if self.step and t._outer == 1:
            t._outer_t0 = self.t0
            t._outer_cpu0 = time.process_time()

    def __exit__(self, *exc: object) -> None:
        now = time.perf_counter()
        t = self.timers
        t._depth[self.label] -= 1
        t._outer -= self.step
        if t._depth[self.label] == 0:  # nested calls count once
            t.calls[self.label].append(now - self.t0)
        if self.step and t._outer == 0:
            t.outer_s += now - t._outer_t0
            t.outer_cpu_s += time.process_time() - t._outer_cpu0


def _is_async(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)
