"""What checking a batch record costs: the full check, the check before a session, a signature.

    .venv/bin/python benchmarks/record.py                      # a 28-day, 8-vessel campaign
    .venv/bin/python benchmarks/record.py --vessels 48 --days 28
    .venv/bin/python benchmarks/record.py --run-dir runs/batch-01   # an existing run folder

Runs the campaign engine alone on the benchmark workcell (``benchmarks/common.py``)
unless given a run folder, then prints: record entries, anchors, store size; the
full check (``record verify``: SQLite integrity check, chain, anchors, derived
tables rebuilt, signatures) and each of its parts; the quick check a session makes
before it opens a run folder; and a signature with the default scrypt cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import benchmark_config, campaign_params  # noqa: E402
from protocols.campaign.engine import CampaignEngine, auto_approve  # noqa: E402
from workcell import anchor  # noqa: E402
from workcell.assembly.config import load_config  # noqa: E402
from workcell.assembly.session import open_session  # noqa: E402
from workcell.batch.integrity import refuse_damaged, verify_run  # noqa: E402
from workcell.batch.release import sign, simulated_qc  # noqa: E402
from workcell.batch.users import UserRegistry  # noqa: E402
from workcell.store import STORE_FILE, Store  # noqa: E402


def timed(label: str, fn: object, *args: object) -> object:
    t0 = time.perf_counter()
    result = fn(*args)  # type: ignore[operator]
    print(f"{label:48} {time.perf_counter() - t0:8.3f} s")
    return result


def campaign(folder: Path, vessels: int, days: float) -> Path:
    cfg = load_config(benchmark_config(folder, vessels))
    run_dir = folder / "run"

    async def go() -> None:
        async with open_session(cfg, run_dir) as s:
            await CampaignEngine(s, campaign_params(vessels, days), auto_approve()).run()

    t0 = time.perf_counter()
    asyncio.run(go())
    print(f"campaign ({vessels} vessels, {days:g} days): {time.perf_counter() - t0:.1f} s")
    return run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--vessels", type=int, default=8)
    ap.add_argument("--days", type=float, default=28.0)
    ap.add_argument("--run-dir", type=Path, help="an existing run folder (it is not changed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_dir = args.run_dir or campaign(folder, args.vessels, args.days)
        store = Store(run_dir / STORE_FILE, read_only=True)
        entries = store.record.head()[0]
        store.close()
        anchors = anchor.read(anchor.head_file(run_dir / STORE_FILE))
        size = (run_dir / STORE_FILE).stat().st_size / 1e6
        print(f"record: {entries} entries, {len(anchors)} anchors, store {size:.1f} MB")
        result = timed("full check (record verify)", verify_run, run_dir)
        print(f"  -> {result.line()[:100]}")  # type: ignore[attr-defined]
        store = Store(run_dir / STORE_FILE, read_only=True)
        timed("  SQLite integrity_check", store.sqlite_check)
        timed("  hash chain", store.record.verify)
        timed("  derived tables rebuilt and compared", store.derived_mismatches)
        store.close()
        timed("quick check before a session opens the folder", refuse_damaged, run_dir / STORE_FILE)
        if args.run_dir is None and result.ok:  # type: ignore[attr-defined]
            registry = UserRegistry(folder / "users.json")
            registry.add("q.lead", "Q. Lead", ["qa"], "benchmark secret", None)
            lead = registry.authenticate("q.lead", "benchmark secret")
            registry.add("o.op", "O. Op", ["operator"], "benchmark secret", lead)
            store = Store(run_dir / STORE_FILE)
            simulated_qc(store)
            timed(
                "a signature (scrypt N=2^17, then the full check)",
                sign,
                store,
                registry,
                "o.op",
                "benchmark secret",
                "performed",
            )
            store.close()


if __name__ == "__main__":
    main()
