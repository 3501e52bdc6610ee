"""Refuse before motion: every unit operation against generated parameters, many times.

    .venv/bin/python benchmarks/refusals.py                  # 300 examples per operation
    .venv/bin/python benchmarks/refusals.py --examples 50 --operations passaging

For each unit operation, hypothesis generates parameter sets across and beyond their
bounds (plates that exist, do not exist or are not plates; wells named twice or
not on the plate; densities and volumes outside their ranges; reservoirs used for
the wrong role; few tips, drained reagents, a pool tube that is not empty) and runs
the operation on the simulated workcell, grown for a week, each example on a fresh
copy. Each example must end one of three ways, judged from the simulators' own
action log and the batch record:

* **invalid**: the parameter model refuses it (the CLI and the Prefect form say
  which field); nothing is built, nothing moves;
* **refused**: the plan refuses it; the action log and the record hold no device
  action of it;
* **completed**: it ran to its end (a passage may end with its cells *held* in the
  pool tube and a deviation recorded), and it used exactly the tips it planned.

Anything else (an exception after the first device action, or before it one that
is not a refusal) fails the example. ``tests/test_refusals.py`` runs the same
property with fewer examples; this script prints how many ran and how they ended.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.dry_run import prepare_cultures  # noqa: E402
from protocols.registry import PROTOCOLS  # noqa: E402
from workcell.assembly.build import Workcell, build_workcell  # noqa: E402
from workcell.assembly.checkpoint import restore, snapshot  # noqa: E402
from workcell.assembly.config import WorkcellConfig, load_config, parse_config  # noqa: E402
from workcell.assembly.lab import LAB_FOLDER, open_lab  # noqa: E402
from workcell.errors import ProtocolRefused  # noqa: E402
from workcell.store import STORE_FILE  # noqa: E402

OPERATIONS = ("seeding", "media_exchange", "passaging", "harvest")
GROWN = ["plate_1", "plate_2", "plate_3"]  # 6-well, 6-well, 24-well, a week in culture
EMPTY = ["plate_4", "plate_5", "plate_6", "plate_7", "plate_8", "plate_9", "plate_10"]
NOT_PLATES = ["plate_nope", "medium", "tips_1000_1", "p" * 70, "../x", ""]
CONTAINERS = [
    "medium",
    "pbs",
    "enzyme",
    "waste",
    "pool_tube",
    "cell_suspension",
    "harvest_pool",
    "plate_1",
    "plate_1_well_A1",
    "nowhere",
]
WELLS = ["A1", "B3", "D6", "C2", "A7", "H12", "a1", "Z9", "A"]


# --- the grown workcell, copied for each example ---------------------------------------


@dataclass
class Template:
    """A run folder holding a workcell grown for a week; each example works on a copy."""

    config: WorkcellConfig
    folder: Path

    @classmethod
    def make(cls, folder: Path, config: WorkcellConfig | None = None) -> Template:
        cfg = config or lean_config()
        folder.mkdir(parents=True, exist_ok=True)

        async def grow() -> None:
            # the grown cells, plates and reservoirs are the lab's (its folder is copied
            # with the store): the controller's model of them is the checkpoint
            lab = open_lab(cfg, folder / LAB_FOLDER)
            try:
                wc = build_workcell(cfg, folder / STORE_FILE, lab=lab)
                async with wc:
                    await prepare_cultures(wc, GROWN, 7.0)
                    wc.store.save_checkpoint(snapshot(wc))
                wc.store.close()
            finally:
                if lab is not None:
                    lab.close()

        asyncio.run(grow())
        return cls(cfg, folder)

    def copy(self, to: Path) -> Path:
        to.mkdir(parents=True, exist_ok=True)
        path = to / STORE_FILE
        with sqlite3.connect(self.folder / STORE_FILE) as src, sqlite3.connect(path) as dst:
            src.backup(dst)
        if (self.folder / LAB_FOLDER).exists():
            shutil.copytree(
                self.folder / LAB_FOLDER,
                to / LAB_FOLDER,
                ignore=shutil.ignore_patterns("lab.json", "lab.lock", "*.log"),
            )
        return path


def lean_config() -> WorkcellConfig:
    """The embedded simulated workcell with a cheaper imager (one small field per well):
    what is checked here is the plan, not the confluence estimate."""
    cfg = load_config()
    data = cfg.model_dump(mode="json")
    for dev in data["devices"].values():
        if dev["kind"] == "imager":
            dev["fields_per_well"] = 1
            dev["optics"]["size_px"] = 128
            dev["optics"]["um_per_px"] = 4.0
    return parse_config(data, "lean simulated workcell")


class Deck(BaseModel):
    """How the deck differs from the freshly loaded one in an example."""

    tips_left: int | None = None
    left_share: dict[str, float] = {}
    pool_prefill_uL: float = 0.0


def _perturb(wc: Workcell, deck: Deck) -> None:
    if deck.tips_left is not None:
        spots = [s for r in wc.tip_racks() for s in r.get_all_items() if s.tracker.has_tip]
        for spot in spots[deck.tips_left :]:
            spot.tracker.remove_tip(commit=True)
    for name, share in deck.left_share.items():
        c = wc.container(name)
        c.tracker.remove_liquid((1 - share) * c.tracker.get_used_volume())
        c.tracker.commit()
    if deck.pool_prefill_uL:
        c = wc.container("pool_tube")
        c.tracker.add_liquid(deck.pool_prefill_uL)
        c.tracker.commit()


# --- strategies ----------------------------------------------------------------------


def _name(pool: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(pool)


def _often(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``good``, sometimes ``bad``: most examples get past the model to the plan."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else good)


def _num(lo: float, hi: float, below: float, above: float) -> st.SearchStrategy[float]:
    """Within [lo, hi] mostly; sometimes in [below, lo) or (hi, above]."""
    return _often(st.floats(lo, hi), st.one_of(st.floats(below, lo), st.floats(hi, above)))


def _log(lo: float, hi: float, below: float, above: float) -> st.SearchStrategy[float]:
    """Like ``_num`` but spread evenly over orders of magnitude (concentrations, doses)."""
    return _num(math.log10(lo), math.log10(hi), math.log10(below), math.log10(above)).map(
        lambda e: 10.0**e
    )


def _plate(good: list[str]) -> st.SearchStrategy[str]:
    return _often(_name(good), _name(NOT_PLATES + GROWN + EMPTY))


def _plates(good: list[str], max_size: int = 4) -> st.SearchStrategy[list[str]]:
    return _often(
        st.lists(_name(good), min_size=1, max_size=max_size, unique=True),
        st.lists(_plate(good), min_size=0, max_size=max_size),
    )


def _role(right: str) -> st.SearchStrategy[str]:
    return _often(st.just(right), _name(CONTAINERS))


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or the key left out (the model's default)."""
    return st.one_of(st.just(None), value)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}


def _detach() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "wash_pbs_mL_per_cm2": _num(0.02, 0.5, 0.0, 0.8),
            "enzyme_mL_per_cm2": _num(0.01, 0.3, 0.0, 0.5),
            "enzyme_time_min": _num(2, 15, 0, 20),
            "neutralise_ratio": _num(1, 5, 0.5, 6),
            "residual_uL_per_cm2": _num(5, 100, 0, 150),
            "count_sample_uL": _num(10, 200, 5, 300),
            "pbs_reservoir": _role("pbs"),
            "enzyme_reservoir": _role("enzyme"),
            "medium_reservoir": _role("medium"),
            "waste": _role("waste"),
            "pool_tube": _role("pool_tube"),
        },
    )


def _deck() -> st.SearchStrategy[Deck]:
    return st.builds(
        Deck,
        tips_left=_maybe(st.integers(0, 288)),
        left_share=st.dictionaries(
            st.sampled_from(["medium", "pbs", "enzyme"]), st.floats(0.0, 1.0), max_size=2
        ),
        pool_prefill_uL=st.sampled_from([0.0, 0.0, 0.0, 5000.0]),
    )


def params_strategy(op: str) -> st.SearchStrategy[dict[str, Any]]:
    """Parameter dicts for ``op``, inside and outside the model's bounds."""
    wells = _often(
        st.lists(_name(WELLS[:4]), max_size=3, unique=True), st.lists(_name(WELLS), max_size=4)
    )
    if op == "seeding":
        return st.fixed_dictionaries(
            {
                "suspension": st.fixed_dictionaries(
                    {
                        "volume_mL": _num(0.5, 50, 0, 60),
                        "viable_cells_per_mL": _log(1e4, 1e8, 1e3, 2e8),
                    },
                    optional={
                        "tube": _role("cell_suspension"),
                        "viability_percent": _num(50, 100, 30, 110),
                        "lot": _often(st.text(min_size=1, max_size=40), st.text(max_size=300)),
                    },
                ),
                "plates": _plates(EMPTY),
            },
            optional={
                "wells": wells,
                "density_cells_per_cm2": _num(100, 10000, 10, 20000),
                "medium_mL_per_cm2": _num(0.05, 2.0, 0.01, 3.0),
                "medium_reservoir": _role("medium"),
            },
        )
    if op == "media_exchange":
        return st.fixed_dictionaries(
            {"plates": _plates(GROWN)},
            optional={
                "wells": wells,
                "medium_mL_per_cm2": _num(0.05, 1.0, 0.01, 1.5),
                "residual_uL_per_cm2": _num(5, 100, 1, 150),
                "tips": _often(st.sampled_from(["per_vessel", "per_plate"]), st.just("never")),
                "medium_reservoir": _role("medium"),
                "waste": _role("waste"),
            },
        )
    if op == "passaging":
        return st.fixed_dictionaries(
            {
                "plate": _plate(GROWN),
                "destination_plates": _plates(EMPTY[:4] + ["plate_3"], max_size=3),
            },
            optional={
                "confluence_threshold_percent": _num(10, 70, 5, 110),
                "density_cells_per_cm2": _num(100, 10000, 10, 20000),
                "medium_mL_per_cm2": _num(0.05, 1.0, 0.01, 1.5),
                "max_child_vessels": _maybe(_num(1, 30, 0, 60).map(int)),
                "detach": _detach(),
            },
        )
    if op == "harvest":
        return st.fixed_dictionaries(
            {"plates": _plates(GROWN, max_size=3)},
            optional={
                "patient_weight_kg": _num(1, 250, 0.5, 300),
                "target_dose_cells_per_kg": _log(1e4, 1e8, 1e3, 1e9),
                "detach": _detach(),
            },
        )
    raise ValueError(op)


# --- one example -----------------------------------------------------------------------


def _device_entries(wc: Workcell) -> int:
    row = wc.store._db.execute("SELECT COUNT(*) FROM record WHERE type = 'device'").fetchone()
    return int(row[0])


async def _attempt(
    template: Template, store: Path, op: str, params: BaseModel, deck: Deck
) -> tuple[str, str]:
    lab = open_lab(template.config, store.parent / LAB_FOLDER)
    wc = build_workcell(template.config, store, lab=lab)
    # a throw-away copy: no fsync per record entry (the entries are the same)
    wc.store._db.execute("PRAGMA synchronous = OFF")
    await wc.setup(load_reservoirs=False)
    try:
        saved = wc.store.checkpoint()
        assert saved is not None
        restore(wc, saved)
        _perturb(wc, deck)
        n0, r0 = len(wc.log), _device_entries(wc)
        tips0 = len(wc.log.of("pick_up_tip"))
        try:
            result = await PROTOCOLS[op].run(wc, params)
        except ProtocolRefused as refused:
            moved = wc.log.actions[n0:]
            assert not moved, f"refused after {len(moved)} device actions: {moved[:3]}"
            assert _device_entries(wc) == r0, "a refused protocol left device actions in the record"
            return "refused", refused.problems[0]
        except Exception as err:
            moved = wc.log.actions[n0:]
            where = (
                f"after {len(moved)} device actions (last: {moved[-1].device} {moved[-1].action})"
                if moved
                else "before any device action, but not as a refusal"
            )
            raise AssertionError(f"{op} failed {where}: {type(err).__name__}: {err}") from err
        used = len(wc.log.of("pick_up_tip")) - tips0
        planned = getattr(result, "tips_used", used)
        assert used == planned, f"{op} planned {planned} tips and used {used}"
        if getattr(result, "held", False):
            assert any("held" in e.data.get("message", "") for e in wc.store.events("deviation"))
            return "held", str(getattr(result, "deviation", ""))
        return "completed", ""
    finally:
        await wc.stop()
        wc.store.close()
        if lab is not None:
            lab.close()


def check_example(
    template: Template, work: Path, op: str, data: dict[str, Any], deck: Deck
) -> tuple[str, str]:
    """Run one generated example; returns (outcome, first problem); fails on a violation."""
    try:
        params = PROTOCOLS[op].params.model_validate(_drop_none(data))
    except ValidationError as err:
        return "invalid", str(err.errors()[0]["loc"])
    folder = Path(tempfile.mkdtemp(dir=work))
    try:
        store = template.copy(folder)
        return asyncio.run(_attempt(template, store, op, params, deck))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def property_test(
    template: Template, work: Path, op: str, outcomes: Counter[str], examples: int | None = None
) -> Any:
    """The hypothesis test of ``op``: call it to run it (settings from the active profile)."""

    @given(data=params_strategy(op), deck=_deck())
    def prop(data: dict[str, Any], deck: Deck) -> None:
        outcome, _ = check_example(template, work, op, data, deck)
        outcomes[outcome] += 1

    if examples is not None:
        prop = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )(prop)
    return prop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=300, help="examples per operation")
    ap.add_argument("--operations", nargs="*", default=list(OPERATIONS), choices=OPERATIONS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        template = Template.make(work / "template")
        print(f"grew the template workcell in {time.perf_counter() - t0:.1f} s")
        total: Counter[str] = Counter()
        print(
            f"{'operation':16} {'examples':>8} {'invalid':>8} {'refused':>8} "
            f"{'completed':>9} {'held':>5} {'wall s':>7}"
        )
        for op in args.operations:
            outcomes: Counter[str] = Counter()
            t1 = time.perf_counter()
            property_test(template, work, op, outcomes, args.examples)()
            n = sum(outcomes.values())
            total.update(outcomes)
            print(
                f"{op:16} {n:>8} {outcomes['invalid']:>8} {outcomes['refused']:>8} "
                f"{outcomes['completed']:>9} {outcomes['held']:>5} {time.perf_counter() - t1:>7.1f}"
            )
        print(
            f"{sum(total.values())} examples, 0 failures after a device action "
            f"({total['refused']} refused with no device action, "
            f"{total['completed'] + total['held']} completed)"
        )


if __name__ == "__main__":
    main()
