"""Benchmark: the expansion campaign dry-run over 28 simulated days, 1, 8 and 48 vessels.

    .venv/bin/python benchmarks/campaign.py                 # all three sizes, as Prefect flows
    .venv/bin/python benchmarks/campaign.py --vessels 48    # one size
    .venv/bin/python benchmarks/campaign.py --without-prefect

Each size runs in a fresh process (so peak RSS is its own) and prints: wall
seconds, peak RSS (the controller; its image workers; the simulated lab's process
or its largest image worker), simulated seconds per wall second, device actions
per second, and the orchestration overhead: the share of wall time spent outside
protocol code and the lab (Prefect, the engine's decisions, the store, the batch
record and journal, checkpoints). Then the median wall time of each unit
operation.
Targets (48 vessels): under 60 s, under 1 GiB, overhead under 30 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Timers, benchmark_config, campaign_params  # noqa: E402

OPERATIONS = {
    "seed": ("protocols.seeding", "run"),
    "feed": ("protocols.media_exchange", "run"),
    "passage": ("protocols.passaging", "run"),
    "harvest": ("protocols.harvest", "run"),
    "image": ("protocols.campaign.engine", "image_plates"),
    "housekeeping": ("protocols.campaign.housekeeping", "do"),
    "monitor": ("workcell.assembly.workcell:Workcell", "check_incubators"),
}
STORE_WRITES = (
    "add_event",
    "add_measurement",
    "add_device_action",
    "add_vessel",
    "set_state",
    "move_vessels",
)


def instrument() -> Timers:
    """Time every unit operation, and the store writes made inside them."""
    import importlib

    from workcell.store import Store

    timers = Timers()
    for label, (where, name) in OPERATIONS.items():
        module, _, cls = where.partition(":")
        owner = importlib.import_module(module)
        timers.wrap(getattr(owner, cls) if cls else owner, name, label)
    in_protocol = lambda: any(timers._depth[k] for k in OPERATIONS)  # noqa: E731
    for name in STORE_WRITES:
        original = getattr(Store, name)

        def wrapped(self: Any, *a: Any, _orig: Any = original, **k: Any) -> Any:
            label = "store in operations" if in_protocol() else "store"
            with timers.timing(label):
                return _orig(self, *a, **k)

        setattr(Store, name, wrapped)
    return timers


def run_one(vessels: int, days: float, with_prefect: bool) -> dict[str, Any]:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    timers = instrument()
    from protocols.campaign.engine import CampaignEngine, auto_approve
    from workcell.assembly.config import load_config
    from workcell.assembly.session import open_session
    from workcell.store import STORE_FILE, Store

    folder = Path(tempfile.mkdtemp(prefix=f"bench-{vessels}-"))
    cfg_path = benchmark_config(folder, vessels)
    params = campaign_params(vessels, days)
    run_dir = folder / "run"
    if with_prefect:
        from flows.campaign import campaign

        t_start = time.perf_counter()
        summary = asyncio.run(
            campaign(
                params=params,
                config=str(cfg_path),
                run_dir=str(run_dir),
                auto_approve_dry_run=True,
            )
        )
    else:

        async def go() -> Any:
            async with open_session(load_config(cfg_path), run_dir) as s:
                return await CampaignEngine(s, params, auto_approve()).run()

        t_start = time.perf_counter()
        summary = asyncio.run(go())
    wall = time.perf_counter() - t_start
    from workcell.compute import worker_pids

    workers_mib = sum(_peak_rss_mib(pid) for pid in worker_pids())
    store = Store(run_dir / STORE_FILE)
    try:
        actions = len(store.record.entries("device"))
        verified = store.record.verify().ok
        in_flight = max(
            (
                sum(1 for v in store.vessels() if v.created_at <= t and v.passage == p)
                for t, p in {(v.created_at, v.passage) for v in store.vessels()}
            ),
            default=0,
        )
    finally:
        store.close()
    ops = sum(timers.total(k) for k in OPERATIONS)
    inside = ops - timers.total("store in operations")
    return {
        "vessels": vessels,
        "wall_s": wall,
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_rss_MiB": workers_mib,
        # the simulated lab's process (and its image workers): the largest of them, once
        # the lab has ended with the session
        "lab_rss_MiB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "sim_s_per_wall_s": summary.days * 86400 / wall,
        "device_actions": actions,
        "device_actions_per_s": actions / wall,
        "overhead_share": max(0.0, 1 - inside / wall),
        "store_s": timers.total("store") + timers.total("store in operations"),
        "days": summary.days,
        "outcome": summary.outcome,
        "steps": summary.steps,
        "max_vessels_seen": in_flight,
        "record_verified": verified,
        "medians_s": {k: timers.median(k) for k in OPERATIONS},
        "counts": {k: len(timers.calls.get(k, [])) for k in OPERATIONS},
    }


def _peak_rss_mib(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--vessels", type=int, nargs="*", default=[1, 8, 48])
    ap.add_argument("--days", type=float, default=28.0)
    ap.add_argument("--without-prefect", action="store_true", help="the engine alone")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.days, not args.without_prefect)))
        return
    rows = []
    for n in args.vessels:
        cmd = [sys.executable, __file__, "--one", str(n), "--days", str(args.days)]
        if args.without_prefect:
            cmd.append("--without-prefect")
        print(f"running {n} vessel(s) for {args.days:g} simulated days ...", flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"{n} vessels failed:\n{res.stderr[-4000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    mode = "engine alone" if args.without_prefect else "Prefect flow (ephemeral server)"
    print(f"\nexpansion campaign dry-run, {args.days:g} simulated days, {mode}")
    head = (
        "vessels",
        "wall s",
        "peak RSS MiB",
        "sim s/wall s",
        "device act/s",
        "overhead",
        "steps",
        "record",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['vessels']} | {r['wall_s']:.1f} | "
            f"{r['peak_rss_MiB']:.0f} (+{r['workers_rss_MiB']:.0f}, lab {r['lab_rss_MiB']:.0f}) | "
            f"{r['sim_s_per_wall_s']:,.0f} | {r['device_actions_per_s']:,.0f} | "
            f"{100 * r['overhead_share']:.0f} % | {r['steps']} | "
            f"{'verified' if r['record_verified'] else 'NOT VERIFIED'} |"
        )
    print("\nmedian wall seconds per unit operation (calls)")
    ops = list(OPERATIONS)
    print("| vessels | " + " | ".join(ops) + " |")
    print("|" + "---|" * (len(ops) + 1))
    for r in rows:
        cells = [
            "-" if r["medians_s"][k] is None else f"{r['medians_s'][k]:.3f} ({r['counts'][k]})"
            for k in ops
        ]
        print(f"| {r['vessels']} | " + " | ".join(cells) + " |")
    for r in rows:
        print(f"{r['vessels']} vessels: {r['outcome']}; {r['days']:.1f} days")


if __name__ == "__main__":
    main()
