"""Benchmark: N simulated workcells on one Prefect server backed by PostgreSQL.

    .venv/bin/python benchmarks/facility.py                  # N = 1, 2, 5, 10, 20
    .venv/bin/python benchmarks/facility.py --n 1 --n 5      # chosen sizes
    .venv/bin/python benchmarks/facility.py --lengths        # memory vs campaign length

For each N a fresh facility (a throw-away PostgreSQL cluster, one Prefect server
on it) and N workcells, each with its own worker, work pool and deployments, each
pair of workcells sharing one cell counter (a global concurrency limit). Every
workcell runs the same small campaign from its deployment at once (accelerated
clock: about 7 simulated days, ~18 steps, one vessel, auto-approved, imaging
in-process). While
they run, a probe moves throw-away flow runs through Pending -> Running ->
Completed and times each state change as a client sees it. Printed per N:

* wall seconds from the first campaign created to the last finished;
* flow runs and task runs (one task per workcell step) per minute;
* state-change latency, median and p95, in ms;
* CPU used by the server, PostgreSQL and the workers with their flow runs, as a
  share of one core over the wall time (the machine has ``nproc`` cores);
* peak memory (PSS, shared pages split between processes) of the server,
  PostgreSQL, and all workers with their flow runs (and per workcell).

``--lengths`` runs one workcell's campaign for 7 and 28 simulated days with a
hand-over every 7 days, and 28 days in one process, and prints the peak memory
of the largest campaign process in each: what a long campaign costs in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.facility.local import (  # noqa: E402
    local_facility,
    start_worker,
    stop,
    worker_env,
    write_workcell_config,
)
from workcell.store import STORE_FILE, Store  # noqa: E402

START = "2026-01-05T08:00:00+00:00"
CAMPAIGN = {"patient_weight_kg": 1, "target_dose_cells_per_kg": 1e6}  # ~7 days, ~18 steps
TICK = os.sysconf("SC_CLK_TCK")


# --- process sampling -----------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids[ppid].append(int(d.name))
    return kids


def _tree(root: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime


@dataclass
class Group:
    """A set of process trees sampled together: peak memory, CPU time per process."""

    roots: list[int]
    peak_kib: int = 0
    peak_single_kib: int = 0  # the largest single process (e.g. one flow run)
    ticks: dict[int, int] = field(default_factory=dict)

    def sample(self, kids: dict[int, list[int]]) -> None:
        pids = [p for r in self.roots for p in _tree(r, kids)]
        sizes = [_pss_kib(p) for p in pids]
        self.peak_kib = max(self.peak_kib, sum(sizes))
        self.peak_single_kib = max([self.peak_single_kib, *sizes])
        for p in pids:
            self.ticks[p] = max(self.ticks.get(p, 0), _cpu_ticks(p))

    def cpu_s(self) -> float:
        return sum(self.ticks.values()) / TICK


class Sampler(threading.Thread):
    def __init__(self, groups: dict[str, Group], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.groups, self.every_s = groups, every_s
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            kids = _children()
            for g in self.groups.values():
                g.sample(kids)
            self.done.wait(self.every_s)


# --- the probe ------------------------------------------------------------------------


async def probe(client: Any, stop_at: asyncio.Event, latencies: list[float]) -> None:
    """Throw-away flow runs moved through their states; each state change timed."""
    from prefect import flow
    from prefect.states import Completed, Pending, Running, State

    @flow(name="latency-probe")
    def nothing() -> None:  # never run: only its flow runs' states are set
        return None

    while not stop_at.is_set():
        run = await client.create_flow_run(nothing, state=Pending())
        states: list[State[Any]] = [Running(), Completed()]
        for state in states:
            t0 = time.perf_counter()
            await client.set_flow_run_state(run.id, state, force=True)
            latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0.2)


# --- one size -------------------------------------------------------------------------


def _store_counts(run_dir: Path) -> tuple[bool, int]:
    path = run_dir / STORE_FILE
    if not path.is_file():
        return False, 0
    store = Store(path)
    try:
        return bool(store.events("campaign_finished")), len(store.events("step_finished"))
    finally:
        store.close()


async def _run_size(
    n: int, home: Path, server: Any, pg_pid: int, shared: bool, say: Any
) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    names = [f"wc-{i:02d}" for i in range(1, n + 1)]
    env = worker_env(server, home / "locks", poll_s=2.0)
    configs = {
        w: write_workcell_config(
            home, w, {"counter": f"shared-counter-{(i + 1) // 2}"} if shared else None, START
        )
        for i, w in enumerate(names, start=1)
    }
    workers = {w: start_worker(configs[w], home / w, env, home / f"worker-{w}.log") for w in names}
    groups = {
        "server": Group([server.proc.pid]),
        "postgres": Group([pg_pid]),
        "workers": Group([p.pid for p in workers.values()]),
    }
    sampler = Sampler(groups)
    sampler.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            async with get_client() as client:
                deps = {}
                for w in names:
                    while True:
                        try:
                            deps[w] = await client.read_deployment_by_name(
                                f"expansion-campaign/campaign @ {w}"
                            )
                            break
                        except Exception:
                            await asyncio.sleep(0.5)
                say(f"N={n}: {n} workers registered; starting {n} campaigns")
                t0 = time.perf_counter()
                started = datetime.now(UTC)
                for w in names:
                    await client.create_flow_run_from_deployment(
                        deps[w].id,
                        parameters={
                            "params": CAMPAIGN,
                            "run_dir": str(home / f"campaign-{w}"),
                            "auto_approve_dry_run": True,
                        },
                    )
                latencies: list[float] = []
                stop_probe = asyncio.Event()
                prober = asyncio.create_task(probe(client, stop_probe, latencies))
                deadline = time.monotonic() + 3600
                while True:
                    states = [_store_counts(home / f"campaign-{w}") for w in names]
                    if all(done for done, _ in states):
                        runs = await client.read_flow_runs(
                            flow_run_filter=FlowRunFilter(
                                start_time=FlowRunFilterStartTime(after_=started)  # type: ignore[arg-type]
                            ),
                            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=names)),
                        )
                        if all(r.state and r.state.is_final() for r in runs):
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"N={n}: campaigns unfinished after an hour")
                    await asyncio.sleep(1.0)
                wall = time.perf_counter() - t0
                stop_probe.set()
                await prober
    finally:
        sampler.done.set()
        sampler.join()
        for proc in workers.values():
            stop(proc)
    tasks = sum(_store_counts(home / f"campaign-{w}")[1] for w in names)
    lat = sorted(latencies)
    return {
        "n": n,
        "load": os.getloadavg()[0],
        "wall_s": wall,
        "flow_runs": len(runs),
        "flow_runs_per_min": 60 * len(runs) / wall,
        "tasks_per_min": 60 * tasks / wall,
        "lat_median_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "lat_p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
        "probes": len(lat),
        "cpu": {k: g.cpu_s() / wall for k, g in groups.items()},
        "mem_mib": {k: g.peak_kib / 1024 for k, g in groups.items()},
        "largest_process_mib": groups["workers"].peak_single_kib / 1024,
        "run_s": statistics.median(
            [r.total_run_time.total_seconds() for r in runs if r.total_run_time] or [0.0]
        ),
    }


def run_size(n: int, shared: bool, say: Any) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"facility-bench-{n}-"))
    try:
        with local_facility(home) as fac:
            assert fac.server.proc is not None and fac.pg.proc is not None
            return asyncio.run(_run_size(n, home, fac.server, fac.pg.proc.pid, shared, say))
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --- memory against campaign length ---------------------------------------------------


async def _lengths(home: Path, server: Any, say: Any) -> list[tuple[str, float, int]]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    name = "wc-long"
    config = write_workcell_config(home, name, None, START)
    worker = start_worker(config, home / name, worker_env(server, home / "locks"), home / "w.log")
    out = []
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            async with get_client() as client:
                while True:
                    try:
                        dep = await client.read_deployment_by_name(
                            f"expansion-campaign/campaign @ {name}"
                        )
                        break
                    except Exception:
                        await asyncio.sleep(0.5)
                for label, days, per_run in (
                    ("7 days, a run per 7 days", 7, 7),
                    ("28 days, a run per 7 days", 28, 7),
                    ("28 days in one run", 28, 28),
                ):
                    group = Group([worker.pid])
                    sampler = Sampler({"w": group}, every_s=0.25)
                    sampler.start()
                    run_dir = home / f"campaign-{days}-{per_run}"
                    await client.create_flow_run_from_deployment(
                        dep.id,
                        parameters={
                            # out of reach: the campaign runs its days, then harvests
                            "params": {
                                "patient_weight_kg": 250,
                                "target_dose_cells_per_kg": 1e8,
                                "max_days": days,
                            },
                            "run_dir": str(run_dir),
                            "auto_approve_dry_run": True,
                            "days_per_run": per_run,
                        },
                    )
                    while not _store_counts(run_dir)[0]:
                        await asyncio.sleep(1.0)
                    await asyncio.sleep(3.0)  # the last run's process ends
                    sampler.done.set()
                    sampler.join()
                    steps = _store_counts(run_dir)[1]
                    out.append((label, group.peak_single_kib / 1024, steps))
                    say(f"{label}: largest campaign process {out[-1][1]:.0f} MiB, {steps} steps")
    finally:
        stop(worker)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, action="append", help="workcells (repeatable)")
    ap.add_argument("--lengths", action="store_true", help="memory against campaign length")
    ap.add_argument("--no-shared", action="store_true", help="no shared counter")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    print(f"machine: {os.cpu_count()} cores")
    if args.lengths:
        home = Path(tempfile.mkdtemp(prefix="facility-lengths-"))
        try:
            with local_facility(home) as fac:
                rows = asyncio.run(_lengths(home, fac.server, say))
        finally:
            shutil.rmtree(home, ignore_errors=True)
        print("| campaign | steps | largest campaign process, PSS MiB |")
        print("|---|---|---|")
        for label, mib, steps in rows:
            print(f"| {label} | {steps} | {mib:.0f} |")
        return
    print(
        "| N | wall s | flow runs | run s (median) | flow runs/min | tasks/min "
        "| state change ms (median / p95) "
        "| CPU, cores: server / postgres / workers | PSS MiB: server / postgres / workers "
        "(per workcell) | load (1 min) at end |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.n or [1, 2, 5, 10, 20]:
        r = run_size(n, not args.no_shared, say)
        c, m = r["cpu"], r["mem_mib"]
        print(
            f"| {n} | {r['wall_s']:.0f} | {r['flow_runs']} | {r['run_s']:.0f} "
            f"| {r['flow_runs_per_min']:.1f} "
            f"| {r['tasks_per_min']:.0f} | {r['lat_median_ms']:.0f} / {r['lat_p95_ms']:.0f} "
            f"| {c['server']:.2f} / {c['postgres']:.2f} / {c['workers']:.2f} "
            f"| {m['server']:.0f} / {m['postgres']:.0f} / {m['workers']:.0f} "
            f"({m['workers'] / n:.0f}) | {r['load']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
