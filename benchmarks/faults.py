"""Fault campaign: the expansion campaign with faults in every simulator, killed and resumed.

    .venv/bin/python benchmarks/faults.py               # 20 runs, seeds 1..20
    .venv/bin/python benchmarks/faults.py --runs 3 --vessels 6 --days 14

Each run is a 28-day campaign on the benchmark workcell (``benchmarks/common.py``)
with the cell counter on its pseudo-terminal simulator answering 1 % of commands
not at all and garbling 1 %, 1 % of tip pick-ups failing on the liquid handler,
and one heater fault (+2.5 C for 2 h on a random day) in the incubator. The
process is killed (SIGKILL) at random steps and started again on the same run
folder until the campaign ends. The same seed without faults and without kills
is the reference. Per run it prints: faults injected and recovered (from the
batch record), actions repeated and vessels lost (both must be 0), whether the
record verifies, and the harvest against the reference.

The Cytomat's own serial faults are exercised by tests/test_cytomat.py; here the
incubator is the in-process simulator, because PyLabRobot's Cytomat driver polls
once a second in real time, which would make each run last hours.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import benchmark_config, campaign_params  # noqa: E402
from workcell.store import STORE_FILE, Store  # noqa: E402

WORKCELL = [sys.executable, "-m", "workcell.cli"]


RATES = {"no_answer": 0.01, "garbled": 0.01, "tip_pickup_failure": 0.01}


def configs(
    folder: Path, vessels: int, seed: int, days: float, rates: dict[str, float] = RATES
) -> tuple[Path, Path]:
    """The faulty workcell and its fault-free twin (same seed, same drivers)."""
    rng = random.Random(seed)
    out = []
    for faulty in (True, False):
        sub = folder / ("faulty" if faulty else "clean")
        sub.mkdir(parents=True, exist_ok=True)
        path = benchmark_config(sub, vessels, name=f"faults-{seed}-{sub.name}")
        data: dict[str, Any] = yaml.safe_load(path.read_text())
        data["culture"]["seed"] = seed
        data["devices"]["counter"] = {
            "kind": "cell_counter",
            "driver": "simulated-serial",
            "faults": {
                "no_answer": rates["no_answer"] if faulty else 0.0,
                "garbled": rates["garbled"] if faulty else 0.0,
            },
        }
        data["devices"]["star"]["faults"] = {
            "tip_pickup_failure": rates["tip_pickup_failure"] if faulty else 0.0
        }
        if faulty:
            data["devices"]["incubator"]["heater_faults"] = [
                {
                    "start_day": round(rng.uniform(2, max(3.0, days - 2)), 2),
                    "hours": 2,
                    "delta_C": 2.5,
                }
            ]
        path.write_text(yaml.safe_dump(data))
        out.append(path)
    return out[0], out[1]


def steps_done(run_dir: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{run_dir / STORE_FILE}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'step_finished'").fetchone()
        finally:
            db.close()
        return int(row[0])
    except sqlite3.Error:
        return 0


def campaign(cfg: Path, run_dir: Path, vessels: int, days: float, kill_at: list[int]) -> int:
    """Run to the end, killing the process once it has finished each step in ``kill_at``."""
    params = run_dir.parent / f"{run_dir.name}-params.json"
    params.write_text(campaign_params(vessels, days).model_dump_json())
    cmd = [
        *WORKCELL,
        "campaign",
        "--config",
        str(cfg),
        "--run-dir",
        str(run_dir),
        "--params",
        str(params),
        "--auto-approve",
        "--without-prefect",
    ]
    kills = 0
    for at in [*sorted(kill_at), None]:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if at is None:
            _, err = proc.communicate(timeout=1800)
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"campaign failed:\n{err.decode()[-3000:]}")
            return kills
        while steps_done(run_dir) < at and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    return kills


def examine(run_dir: Path) -> dict[str, Any]:
    store = Store(run_dir / STORE_FILE)
    try:
        device = store.record.entries("device")
        kinds = Counter(e.kind for e in device)
        steps = Counter(e.data.get("step") for e in store.events("step_finished"))
        # a tip spot picked up twice without a rack being replaced in between
        picked: set[str] = set()
        twice_tips = 0
        for e in store.record.entries():
            if e.type == "event" and e.kind == "tips_replaced":
                picked = {p for p in picked if not p.startswith(e.data["rack"])}
            if e.type == "device" and e.kind == "pick_up_tip":
                spot = e.data["tip_spot"]
                twice_tips += spot in picked
                picked.add(spot)
        counted = len(store.events("counted"))
        counts_done = kinds.get("count", 0)
        harvested = store.events("harvested")
        alarms = store.events("alarm")
        return {
            "tip_failures": kinds.get("pick_up_tip_failed", 0),
            "serial_faults": kinds.get("retry", 0),
            "alarms": len(alarms),
            "repeated": sum(n - 1 for n in steps.values() if n > 1)
            + twice_tips
            + max(0, counts_done - counted),
            "vessels": {v.id: (v.state, v.passage, tuple(v.parents)) for v in store.vessels()},
            "verified": store.record.verify().ok,
            "harvest": harvested[-1].data["viable_cells"] if harvested else None,
            "finished": bool(store.events("campaign_finished")),
            "steps": sum(steps.values()),
        }
    finally:
        store.close()


def one_run(
    seed: int,
    vessels: int,
    days: float,
    kills: int,
    folder: Path,
    rates: dict[str, float] = RATES,
) -> dict[str, Any]:
    faulty_cfg, clean_cfg = configs(folder, vessels, seed, days, rates)
    campaign(clean_cfg, folder / "clean-run", vessels, days, [])
    clean = examine(folder / "clean-run")
    rng = random.Random(seed * 7919)
    kill_at = sorted(rng.sample(range(2, max(3 + kills, clean["steps"] - 1)), kills))
    killed = campaign(faulty_cfg, folder / "faulty-run", vessels, days, kill_at)
    got = examine(folder / "faulty-run")
    lost = sorted(set(clean["vessels"]) - set(got["vessels"]))
    lost += [
        v
        for v in got["vessels"]
        if v in clean["vessels"] and got["vessels"][v][0] == "active" and got["finished"]
    ]
    injected = got["tip_failures"] + got["serial_faults"] + 1  # + the heater fault
    recovered = (
        got["tip_failures"] + got["serial_faults"] + min(1, got["alarms"]) if got["finished"] else 0
    )
    return {
        "seed": seed,
        "kills": killed,
        "injected": injected,
        "tip_failures": got["tip_failures"],
        "serial_faults": got["serial_faults"],
        "alarms": got["alarms"],
        "recovered": recovered,
        "repeated": got["repeated"],
        "lost": len(lost),
        "verified": got["verified"],
        "harvest": got["harvest"],
        "reference": clean["harvest"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--vessels", type=int, default=8)
    ap.add_argument("--days", type=float, default=28.0)
    ap.add_argument("--kills", type=int, default=2, help="kills per run, at random steps")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    head = (
        "seed",
        "kills",
        "faults injected",
        "recovered",
        "actions repeated",
        "vessels lost",
        "record",
        "harvest / fault-free",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head), flush=True)
    for seed in range(args.first_seed, args.first_seed + args.runs):
        with tempfile.TemporaryDirectory(prefix=f"faults-{seed}-") as tmp:
            r = one_run(seed, args.vessels, args.days, args.kills, Path(tmp))
        rows.append(r)
        ratio = (
            f"{r['harvest']:.3g} / {r['reference']:.3g} ({r['harvest'] / r['reference']:.3f})"
            if r["harvest"] and r["reference"]
            else "-"
        )
        print(
            f"| {r['seed']} | {r['kills']} | {r['injected']} (tips {r['tip_failures']}, serial "
            f"{r['serial_faults']}, heater 1 -> {r['alarms']} alarm(s)) | {r['recovered']} | "
            f"{r['repeated']} | {r['lost']} | {'verified' if r['verified'] else 'NOT VERIFIED'} | "
            f"{ratio} |",
            flush=True,
        )
    bad = [r for r in rows if r["repeated"] or r["lost"] or not r["verified"]]
    print(
        f"\n{len(rows)} runs, {sum(r['kills'] for r in rows)} kills, "
        f"{sum(r['injected'] for r in rows)} faults injected, "
        f"{sum(r['recovered'] for r in rows)} recovered; "
        f"{'all clean' if not bad else f'{len(bad)} runs with repeats, losses or a bad record'}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
