"""Benchmark: the expansion campaign dry-run over 28 simulated days, 1, 8 and 48 vessels.

    .venv/bin/python benchmarks/campaign.py                 # all three sizes, as Prefect flows
    .venv/bin/python benchmarks/campaign.py --vessels 48    # one size
    .venv/bin/python benchmarks/campaign.py --without-prefect
    .venv/bin/python benchmarks/campaign.py --vessels 48 --channels 1   # well by well
    .venv/bin/python benchmarks/campaign.py --clinical [--rendered]  # the 70 kg dose

``--clinical`` runs the 70 kg campaign (examples/campaign-70kg.json) on the clinical
workcell (configs/clinical.yaml: OmniTrays from a hotel, 210 incubator slots) and
prints simulated days to the dose, passages, vessels, incubator slots at the peak,
litres of medium, tips, device busy hours per simulated day, wall seconds and peak
RSS; ``--rendered`` uses the rendered imaging path instead of the fast one.

Each size runs in a fresh process (so peak RSS is its own) and prints: wall
seconds, peak RSS (the controller; its image workers; the simulated lab's process
or its largest image worker), simulated seconds per wall second, device actions
per second, and the orchestration overhead: the share of wall time spent outside
the unit operations and the lab (Prefect, the engine's decisions, the steps' own
journal rows and checkpoints, the batch record's anchors and its check at the end),
plus the events and measurements the operations write to the store. The lab
process's start and stop and the lab moving its time on count as the lab's. A device
action's write-ahead journal rows count as the operation's own time (the action
is not sent before its intent is committed); the line "journal" says how much
that is. The line "the overhead's ... by piece" splits the overhead into what can be
timed around a call outside the operations (the flow's start and end, Prefect's task
runs, the engine's view and progress reports, the steps' journal rows, checkpoints and
anchors, the record's check) and the rest. With Prefect, the CPU column adds the
Prefect server's CPU seconds during the campaign. Then the median wall time of each
unit operation, and the flow's start: from its call to the campaign's own code. The
wall seconds start at the flow's call: the flow's module is imported before, as
``workcell demo`` imports it while the temporary server starts, and the server's start
is timed apart.
Targets (#14, a 2-core machine, fast imaging): 48 vessels under 20 s wall and the
70 kg campaign under 60 s, memory under 1 GiB, orchestration overhead under 15 %.
Compare code versions as ratios of runs made in turn in the same minutes: the
machine's load moves wall seconds by 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    PIPETTING_CHANNELS,
    Timers,
    benchmark_config,
    campaign_params,
)

OPERATIONS = {
    "seed": ("protocols.seeding", "run"),
    "feed": ("protocols.media_exchange", "run"),
    "passage": ("protocols.passaging", "run"),
    "harvest": ("protocols.harvest", "run"),
    "image": ("protocols.campaign.engine", "image_plates"),
    "housekeeping": ("protocols.campaign.housekeeping", "do"),
    "monitor": ("workcell.assembly.workcell:Workcell", "check_incubators"),
    "vessel moves": ("workcell.assembly.workcell:Workcell", "store_plate"),
    "vessel fetches": ("workcell.assembly.workcell:Workcell", "fetch_plate"),
    "hotel": ("workcell.assembly.workcell:Workcell", "draw_vessels"),
    "discard": ("workcell.assembly.workcell:Workcell", "discard_vessel"),
    # simulator code wherever it runs: the culture model catching up (after a wait,
    # at a checkpoint) is the simulated lab's work, not orchestration
    "culture model": ("simulators.culture:CultureModel", "sync"),
    # the simulated lab moving its time on (its culture model and incubators stepped):
    # the world's own work, which a hardware workcell spends waiting
    "lab clock": ("devices.lab:LabClock", "advance"),
    # the simulated lab's process starting (its imports, its state): there is none on
    # hardware; the controller waits for it in the session's opening
    "lab start": ("simulators.lab.process", "ensure_lab"),
    # ... and stopping at the session's end (the controller waits for it to exit)
    "lab stop": ("workcell.assembly.lab:LabHandle", "close"),
}
STORE_WRITES = (
    "add_event",
    "add_measurement",
    "add_device_action",
    "add_vessel",
    "set_state",
    "move_vessels",
)
# The orchestration overhead's pieces that can be timed around a call, each only where
# no operation is running (a piece an operation calls is that operation's time): label,
# then (module[:class], function) of every call it is made of.
OVERHEAD_PIECES: dict[str, tuple[tuple[str, str], ...]] = {
    "the engine's view": (("protocols.campaign.engine:CampaignEngine", "_view"),),
    "progress reports": (("protocols.campaign.engine:CampaignEngine", "_report"),),
    "steps' journal rows": (
        ("workcell.journal:Journal", "start_step"),
        ("workcell.journal:Journal", "finish_step"),
    ),
    "checkpoints": (("workcell.assembly.session", "save"),),
    "anchors": (("workcell.store:Store", "anchor"),),
    "the record's check": (("workcell.record:BatchRecord", "verify"),),
}


def instrument() -> Timers:
    """Time every unit operation, and the store writes made inside them."""
    import importlib

    from workcell.store import Store

    timers = Timers()
    for label, (where, name) in OPERATIONS.items():
        module, _, cls = where.partition(":")
        owner = importlib.import_module(module)
        timers.wrap(getattr(owner, cls) if cls else owner, name, label)
    in_protocol = lambda: timers._outer > 0  # noqa: E731
    for name in STORE_WRITES:
        original = getattr(Store, name)

        def wrapped(self: Any, *a: Any, _orig: Any = original, **k: Any) -> Any:
            label = "store in operations" if in_protocol() else "store"
            with timers.timing(label, outer=False):
                return _orig(self, *a, **k)

        setattr(Store, name, wrapped)
    original_journal = Store.add_journal
    journal = timers.calls["journal"]

    def journal_row(self: Any, *a: Any, **k: Any) -> Any:
        # a device action's write-ahead rows: counted as the operation's own time (the
        # action is not sent before its intent is on disk), but shown apart; timed
        # with as little around it as can be (tens of thousands of rows)
        t0 = time.perf_counter()
        try:
            return original_journal(self, *a, **k)
        finally:
            if timers._outer:
                journal.append(time.perf_counter() - t0)

    Store.add_journal = journal_row  # type: ignore[method-assign]
    for label, calls in OVERHEAD_PIECES.items():
        for where, name in calls:
            module, _, cls = where.partition(":")
            owner = importlib.import_module(module)
            timers.wrap(getattr(owner, cls) if cls else owner, name, label, piece=True)
    return timers


def time_prefect_tasks(timers: Timers) -> None:
    """Time Prefect's part of each step's task run: the task's call (``as_task``, as the
    campaign flow makes it) less the step's own work inside it (the task's function)."""
    import flows.campaign
    import flows.steps

    timers.wrap(flows.campaign, "as_task", "task runs, whole", piece=True)
    timers.wrap(flows.steps.workcell_step, "fn", "task runs, their work", piece=True)


def overhead_pieces(
    timers: Timers, wall: float, inside: float, flow: list[float] | None = None
) -> dict[str, float]:
    """The overhead's seconds by piece, and what no piece names (``rest``): the session's
    opening and end besides the lab's, the flow's artifacts, the device locks, the
    steps' waits and the engine's loop. ``flow``: when the flow's code began and ended
    (``time_flow_entry``) and when the flow was called and returned."""
    pieces = {"the operations' store writes": timers.total("store in operations")}
    if flow:
        called, began, ended, returned = flow
        pieces["the flow's start"] = began - called
        pieces["the flow's end"] = returned - ended
        pieces["Prefect's task runs"] = timers.total("task runs, whole") - timers.total(
            "task runs, their work"
        )
    pieces.update({label: timers.total(label) for label in OVERHEAD_PIECES})
    pieces["rest"] = wall - inside - sum(pieces.values())
    return pieces


def pieces_line(r: dict[str, Any]) -> str:
    """The overhead's pieces, largest first, the rest last."""
    pieces = dict(r["overhead_pieces_s"])
    rest = pieces.pop("rest")
    parts = [f"{k} {v:.2f}" for k, v in sorted(pieces.items(), key=lambda kv: -kv[1])]
    over = r["overhead_share"] * r["wall_s"]
    return (
        f"the overhead's {over:.2f} s by piece: " + ", ".join(parts) + f"; the rest {rest:.2f} "
        "(the session's opening and end, artifacts, locks, waits, the engine's loop)"
    )


# the temporary Prefect server, stopped when the process ends, and the run folders, removed
stack = contextlib.ExitStack()


def run_one(
    vessels: int, days: float, with_prefect: bool, imaging: str, channels: int = PIPETTING_CHANNELS
) -> dict[str, Any]:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    timers = instrument()
    from protocols.campaign.engine import CampaignEngine, auto_approve
    from workcell.assembly.config import load_config
    from workcell.assembly.session import open_session
    from workcell.store import STORE_FILE, Store

    folder = Path(tempfile.mkdtemp(prefix=f"bench-{vessels}-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)  # the run folder: tens of MB
    cfg_path = benchmark_config(folder, vessels, imaging=imaging, channels=channels)
    params = campaign_params(vessels, days)
    run_dir = folder / "run"
    prefect_start = 0.0
    if with_prefect:
        from flows.campaign import campaign

        marks = time_flow_entry()
        time_prefect_tasks(timers)
        prefect_start = start_prefect(stack)
        server0 = _server_cpu_s()
        t_start, c_start = time.perf_counter(), time.process_time()
        lab_start = _children_cpu_s()
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

        t_start, c_start = time.perf_counter(), time.process_time()
        lab_start = _children_cpu_s()
        summary = asyncio.run(go())
    wall = time.perf_counter() - t_start
    # before the checks below, which read the store outside the run
    inside = timers.outer_s - timers.total("store in operations")
    flow = [t_start, marks[0], marks[-1], t_start + wall] if with_prefect else None
    pieces = overhead_pieces(timers, wall, inside, flow)
    cpu = time.process_time() - c_start
    lab_cpu = _children_cpu_s() - lab_start
    server_cpu = _server_cpu_s() - server0 if with_prefect else 0.0
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
    return {
        "vessels": vessels,
        "pipetting_channels": channels,
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
        "cpu_s": cpu,
        "lab_cpu_s": lab_cpu,
        "server_cpu_s": server_cpu,
        "overhead_cpu_share": max(0.0, 1 - timers.outer_cpu_s / cpu),
        "store_s": timers.total("store") + timers.total("store in operations"),
        "store_in_ops_s": timers.total("store in operations"),
        "journal_in_ops_s": timers.total("journal"),
        "prefect_start_s": prefect_start,
        "flow_start_s": pieces.get("the flow's start", 0.0),
        "overhead_pieces_s": pieces,
        "days": summary.days,
        "outcome": summary.outcome,
        "steps": summary.steps,
        "max_vessels_seen": in_flight,
        "record_verified": verified,
        "medians_s": {k: timers.median(k) for k in OPERATIONS},
        "counts": {k: len(timers.calls.get(k, [])) for k in OPERATIONS},
    }


def run_clinical(rendered: bool, with_prefect: bool) -> dict[str, Any]:
    """The 70 kg campaign from one vial on the clinical workcell; figures from its store."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import yaml

    timers = instrument()
    from protocols.campaign.engine import CampaignEngine, CampaignParams, auto_approve
    from workcell.assembly.config import DEFAULT_CONFIG, load_config
    from workcell.assembly.session import open_session
    from workcell.store import STORE_FILE, Store

    root = Path(__file__).resolve().parent.parent
    params = CampaignParams.model_validate_json((root / "examples/campaign-70kg.json").read_text())
    folder = Path(tempfile.mkdtemp(prefix="bench-70kg-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)  # the run folder: tens of MB
    data = yaml.safe_load((DEFAULT_CONFIG.parent / "clinical.yaml").read_text())
    data["clock"]["start"] = "2026-01-05T08:00:00+00:00"
    if rendered:
        data["devices"]["imager"]["fidelity"] = {"mode": "rendered"}
    cfg_path = folder / "workcell.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    run_dir = folder / "run"
    prefect_start = 0.0
    if with_prefect:
        # imported before the clock, as in run_one: the demo imports the flows while the
        # server starts, and a deployment's worker before the run (0.7 s of imports)
        from flows.campaign import campaign

        marks = time_flow_entry()
        time_prefect_tasks(timers)
        prefect_start = start_prefect(stack)
    t0, c0, lab0 = time.perf_counter(), time.process_time(), _children_cpu_s()
    if with_prefect:
        summary = asyncio.run(
            campaign(
                params=params, config=str(cfg_path), run_dir=str(run_dir), auto_approve_dry_run=True
            )
        )
    else:

        async def go() -> Any:
            async with open_session(load_config(cfg_path), run_dir) as s:
                return await CampaignEngine(s, params, auto_approve()).run()

        summary = asyncio.run(go())
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    lab_cpu = _children_cpu_s() - lab0  # the simulated lab's process, ended with the session
    inside = timers.outer_s - timers.total("store in operations")
    flow = [t0, marks[0], marks[-1], t0 + wall] if with_prefect else None
    pieces = overhead_pieces(timers, wall, inside, flow)
    store = Store(run_dir / STORE_FILE)
    try:
        figures = clinical_figures(store)
    finally:
        store.close()
    return {
        **figures,
        "overhead_share": max(0.0, 1 - inside / wall),
        "overhead_pieces_s": pieces,
        "cpu_s": cpu,
        "lab_cpu_s": lab_cpu,
        "overhead_cpu_share": max(0.0, 1 - timers.outer_cpu_s / cpu),
        "journal_in_ops_s": timers.total("journal"),
        "medians_s": {k: timers.median(k) for k in OPERATIONS},
        "counts": {k: len(timers.calls.get(k, [])) for k in OPERATIONS},
        "totals_s": {k: timers.total(k) for k in OPERATIONS},
        "imaging": "rendered" if rendered else "fast",
        "prefect": with_prefect,
        "outcome": summary.outcome,
        "viable_cells": summary.viable_cells,
        "viability_percent": summary.viability_percent,
        "days": summary.days,
        "passages": summary.passages,
        "wall_s": wall,
        "prefect_start_s": prefect_start,
        "flow_start_s": pieces.get("the flow's start", 0.0),
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def clinical_figures(store: Any) -> dict[str, Any]:
    """Vessels, slots at the peak, medium, tips and device busy time, from the record alone."""
    started = store.events("campaign_started")[0].time
    where: dict[str, str] = {}
    peak = 0
    for e in store.events():  # where each plate is, event by event; discarded ones leave
        if e.kind == "plate_moved":
            where[e.data["plate"]] = e.data["location"]
        elif e.kind == "vessel_discarded":
            where.pop(e.data["plate"], None)
        else:
            continue
        peak = max(peak, sum(1 for loc in where.values() if _in_slot(loc)))
    drawn = store.events("vessel_drawn")
    returned = store.events("vessel_returned")
    medium_uL = sum(
        e.data["volume_uL"] for e in store.events("load") if e.data["container"] == "medium"
    )
    actions = store.record.entries("device")
    tips = sum(len(a.data.get("ops") or [a]) for a in actions if a.kind == "pick_up_tip")
    busy_s = 0.0
    steps = {e.data["step"]: e.time for e in store.events("step_started")}
    for e in store.events("step_finished"):
        name = e.data["step"]
        if not name.startswith("wait") and name in steps:
            busy_s += (e.time - steps[name]).total_seconds()
    last = store.events()[-1].time
    days = (last - started).total_seconds() / 86400
    return {
        "vessels": len(drawn) - len(returned),
        "slots_at_peak": peak,
        "medium_L": medium_uL / 1e6,
        "tips": tips,
        "busy_h_per_day": busy_s / 3600 / max(days, 1e-9),
        "device_actions": len(actions),
    }


def _in_slot(location: str) -> bool:
    """An incubator slot (``incubator:<site>``), not the deck or a transfer station."""
    return ":" in location and not location.startswith("deck") and "transfer" not in location


def time_flow_entry() -> list[float]:
    """When the campaign flow's own code begins and ends (``perf_counter``, appended at
    each entry into ``flows.campaign._run`` and each return from it): the time from the
    call to the beginning is Prefect's part of the run's start, creating the flow run and
    its context (the first run of a process also pays what Prefect imports then); from
    the end to the flow's return, Prefect's part of its end."""
    import flows.campaign

    marks: list[float] = []
    run = flows.campaign._run

    async def timed(*args: Any, **kwargs: Any) -> Any:
        marks.append(time.perf_counter())
        try:
            return await run(*args, **kwargs)
        finally:
            marks.append(time.perf_counter())

    flows.campaign._run = timed  # type: ignore[assignment]
    return marks


def start_prefect(stack: contextlib.ExitStack) -> float:
    """Start the temporary Prefect server (as `make demo` does); its wall seconds.

    Timed apart from the campaign: the targets are the campaign's wall time "plus
    the Prefect server's start", and the server starts once per process. The
    server stops when ``stack`` closes.
    """
    from flows.ephemeral import prefect_api

    t0 = time.perf_counter()
    stack.enter_context(prefect_api(lambda text: None))
    return time.perf_counter() - t0


def _server_cpu_s() -> float:
    """CPU seconds the temporary Prefect server's process has used so far (0: none here)."""
    from flows.ephemeral import TemporaryServer

    server = TemporaryServer.current
    proc = server.process if server is not None else None
    if proc is None:
        return 0.0
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _children_cpu_s() -> float:
    """CPU seconds of this process's ended children (the lab process, once it has stopped)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _peak_rss_mib(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def journal_line(r: dict[str, Any]) -> str:
    """The write-ahead journal's rows written inside the operations: in their time."""
    s = r["journal_in_ops_s"]
    return (
        f"{s:.1f} s ({100 * s / r['wall_s']:.0f} % of wall) of the operations' time "
        "is their device actions' journal rows (two commits an action, written ahead)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--vessels", type=int, nargs="*", default=[1, 8, 48])
    ap.add_argument("--days", type=float, default=28.0)
    ap.add_argument("--without-prefect", action="store_true", help="the engine alone")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--clinical", action="store_true", help="the 70 kg dose from one vial")
    ap.add_argument("--rendered", action="store_true", help="rendered imaging (default: fast)")
    ap.add_argument(
        "--channels",
        type=int,
        default=PIPETTING_CHANNELS,
        choices=range(1, 9),
        metavar="1-8",
        help=f"the STAR's channels working as a group (default {PIPETTING_CHANNELS}: a 24-well "
        "column per command; 1: well by well)",
    )
    args = ap.parse_args()
    if args.clinical:
        with stack:
            r = run_clinical(args.rendered, not args.without_prefect)
        print(
            f"70 kg campaign, {r['imaging']} imaging, "
            f"{'Prefect flow' if r['prefect'] else 'engine alone'}"
        )
        for k in (
            "outcome",
            "viable_cells",
            "viability_percent",
            "days",
            "passages",
            "vessels",
            "slots_at_peak",
            "medium_L",
            "tips",
            "busy_h_per_day",
            "device_actions",
            "wall_s",
            "prefect_start_s",
            "flow_start_s",
            "peak_rss_MiB",
        ):
            v = r[k]
            print(f"  {k:18} {v:.4g}" if isinstance(v, float) else f"  {k:18} {v}")
        print(f"  {'cpu_s':18} {r['cpu_s']:.4g} (the lab's process: {r['lab_cpu_s']:.4g})")
        print(
            f"  {'overhead':18} {100 * r['overhead_share']:.0f} % of wall, "
            f"{100 * r['overhead_cpu_share']:.0f} % of CPU"
        )
        print(f"  {'journal':18} {journal_line(r)}")
        print(f"  {'overhead pieces':18} {pieces_line(r)}")
        print("  per operation: calls, median s, total s")
        for k in OPERATIONS:
            if r["counts"][k]:
                print(
                    f"    {k:13} {r['counts'][k]:5d} {r['medians_s'][k]:8.3f} "
                    f"{r['totals_s'][k]:8.1f}"
                )
        return
    if args.one is not None:
        imaging = "rendered" if args.rendered else "fast"
        with stack:
            result = run_one(args.one, args.days, not args.without_prefect, imaging, args.channels)
        print(json.dumps(result))
        return
    rows = []
    for n in args.vessels:
        cmd = [sys.executable, __file__, "--one", str(n), "--days", str(args.days)]
        cmd += ["--channels", str(args.channels)]
        if args.without_prefect:
            cmd.append("--without-prefect")
        if args.rendered:
            cmd.append("--rendered")
        print(f"running {n} vessel(s) for {args.days:g} simulated days ...", flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"{n} vessels failed:\n{res.stderr[-4000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    mode = "engine alone" if args.without_prefect else "Prefect flow (ephemeral server)"
    imaging = "rendered" if args.rendered else "fast"
    print(
        f"\nexpansion campaign dry-run, {args.days:g} simulated days, {mode}, {imaging} imaging, "
        f"{args.channels} pipetting channel(s)"
    )
    head = (
        "vessels",
        "wall s",
        "peak RSS MiB",
        "sim s/wall s",
        "device act/s",
        "overhead",
        "CPU s (lab's; server's)",
        "overhead (CPU)",
        "steps",
        "record",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    starts = [r["prefect_start_s"] for r in rows if r["prefect_start_s"]]
    for r in rows:
        server = f"; {r['server_cpu_s']:.1f}" if r["server_cpu_s"] else ""
        print(
            f"| {r['vessels']} | {r['wall_s']:.1f} | "
            f"{r['peak_rss_MiB']:.0f} (+{r['workers_rss_MiB']:.0f}, lab {r['lab_rss_MiB']:.0f}) | "
            f"{r['sim_s_per_wall_s']:,.0f} | {r['device_actions_per_s']:,.0f} | "
            f"{100 * r['overhead_share']:.0f} % | {r['cpu_s']:.1f} ({r['lab_cpu_s']:.1f}"
            f"{server}) | "
            f"{100 * r['overhead_cpu_share']:.0f} % | {r['steps']} | "
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
    for r in rows:
        print(f"{r['vessels']} vessels: journal {journal_line(r)}")
        w = r["store_in_ops_s"]
        print(
            f"{r['vessels']} vessels: the overhead includes {w:.1f} s "
            f"({100 * w / r['wall_s']:.1f} % of wall) of events and measurements the "
            "operations write to the store"
        )
        print(f"{r['vessels']} vessels: {pieces_line(r)}")
    for r in rows:
        if r["flow_start_s"]:
            print(
                f"{r['vessels']} vessels: the flow's start took {r['flow_start_s']:.2f} s (from "
                "its call to the campaign's own code: Prefect creating and entering the run)"
            )
    if starts:
        print(
            "Prefect server start (ephemeral, timed apart, not in the wall seconds above): "
            + ", ".join(f"{x:.1f} s" for x in starts)
        )


if __name__ == "__main__":
    main()
