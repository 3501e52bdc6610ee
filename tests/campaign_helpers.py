"""What the campaign tests share: a quick simulated workcell and vessel histories."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import START
from workcell.assembly.config import DEFAULT_CONFIG
from workcell.store import STORE_FILE, Store

WORKCELL = [sys.executable, "-m", "workcell.cli"]


def quick_config(folder: Path, name: str = "test-workcell") -> Path:
    """The embedded workcell with one imaging field per well (the campaign images daily)."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["name"] = name
    data["clock"]["start"] = START.isoformat()
    data["devices"]["imager"]["fields_per_well"] = 1
    path = folder / "workcell.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def child_env(lock_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["WORKCELL_LOCK_DIR"] = str(lock_dir)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")]
    )
    return env


def histories(run_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every vessel's record: what it is, each event and measurement at its campaign time."""
    store = Store(run_dir / STORE_FILE)
    try:
        t0 = store.events("campaign_started")[0].time

        def at(t: Any) -> float:
            return round((t - t0).total_seconds(), 3)

        out: dict[str, list[tuple[Any, ...]]] = {}
        for v in store.vessels():
            out[v.id] = [
                ("vessel", v.plate, v.passage, tuple(v.parents), v.state, at(v.created_at))
            ]
        for e in store.events():
            if e.vessel_id:
                data = tuple(sorted((k, _round(x)) for k, x in e.data.items()))
                out[e.vessel_id].append(("event", e.kind, at(e.time), data))
        for m in store.measurements():
            if m.vessel_id:
                out[m.vessel_id].append(("measurement", m.kind, at(m.time), _round(m.value)))
        return out
    finally:
        store.close()


def _round(x: Any) -> Any:
    return round(x, 6) if isinstance(x, float) else (str(x) if isinstance(x, list | dict) else x)
