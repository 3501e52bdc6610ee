"""Submit-to-start latency of a unit operation run from a deployment, as the UI submits it.

Starts a Prefect server and `workcell serve` on 127.0.0.1 (a temporary PREFECT_HOME),
creates seed runs from the deployment one after another (what Submit on the form
does), and prints for each: submit -> Running (the serving process's poll plus the
run's own process starting and importing the flows), Running -> finished, and the
time a fresh process takes to import the flows, for comparison.

    .venv/bin/python benchmarks/ui_latency.py [--runs 3] [--poll 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.prefect_helpers import prefect_and_workcell  # noqa: E402


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def import_s() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import flows.operations"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--poll", type=float, default=2.0, help="PREFECT_RUNNER_POLL_FREQUENCY")
    args = ap.parse_args()
    plates = ["plate_1", "plate_2", "plate_4", "plate_5", "plate_6", "plate_7"][: args.runs]
    home = Path(tempfile.mkdtemp(prefix="ui-latency-"))
    with prefect_and_workcell(home, "bench-workcell", ui=False, poll_s=args.poll) as served:
        dep = served.deployment_id("seed @ bench-workcell")
        rows = []
        for plate in plates:
            params = {
                "suspension": {"volume_mL": 5, "viable_cells_per_mL": 5e5},
                "plates": [plate],
            }
            run = served.api(
                f"/deployments/{dep}/create_flow_run", {"parameters": {"params": params}}
            )
            fr = served.wait_state(run["id"], {"Completed"})
            created, start, end = _t(fr["created"]), _t(fr["start_time"]), _t(fr["end_time"])
            rows.append(((start - created).total_seconds(), (end - start).total_seconds()))
    imports = [import_s() for _ in range(2)]
    print(
        f"poll every {args.poll:g} s; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    print("run  submit->running s  running->done s")
    for i, (wait, work) in enumerate(rows, 1):
        print(f"{i:>3}  {wait:17.1f}  {work:15.1f}")
    print(
        f"median submit->running {statistics.median(r[0] for r in rows):.1f} s; "
        f"a fresh process imports the flows in {min(imports):.1f} s"
    )


if __name__ == "__main__":
    main()
