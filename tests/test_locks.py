"""Two runs on one workcell, in two processes, never drive a device at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from protocols import seeding
from tests.campaign_helpers import child_env, quick_config
from tests.conftest import run
from workcell.assembly.config import load_config
from workcell.assembly.session import open_session

FEEDS = 3
WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from protocols import media_exchange
    from workcell.assembly.config import load_config
    from workcell.assembly.session import open_session

    cfg, run_dir, plate, log, feeds = sys.argv[1:6]

    async def main():
        async with open_session(load_config(cfg), run_dir) as s:
            for i in range(int(feeds)):
                async with s.step(f"feed {plate} #{i}") as wc:
                    t0 = time.time()
                    await media_exchange.run(
                        wc, media_exchange.MediaExchangeParams(plates=[plate]), actor=plate
                    )
                    await asyncio.sleep(0.05)
                    t1 = time.time()
                with open(log, "a") as f:
                    f.write(json.dumps([plate, i, t0, t1]) + "\\n")
            print(s.reloads)

    asyncio.run(main())
    """
)


def test_two_processes_take_turns_and_neither_loses_the_others_work(tmp_path: Path) -> None:
    cfg_path = quick_config(tmp_path, name="lock-test")
    cfg = load_config(cfg_path)
    run_dir = tmp_path / "run"

    async def seed() -> float:
        async with open_session(cfg, run_dir) as s:
            async with s.step("seed") as wc:
                await seeding.run(
                    wc,
                    seeding.SeedingParams(
                        suspension=seeding.Suspension(volume_mL=10, viable_cells_per_mL=5e5),
                        plates=["plate_1", "plate_2"],
                        density_cells_per_cm2=3000,
                    ),
                )
                for plate in ("plate_1", "plate_2"):
                    await wc.store_plate(plate)
            return wc.container("medium").tracker.get_used_volume()

    medium_after_seeding = run(seed())
    log = tmp_path / "steps.jsonl"
    env = child_env(tmp_path / "locks")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(cfg_path),
                str(run_dir),
                plate,
                str(log),
                str(FEEDS),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for plate in ("plate_1", "plate_2")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    reloads = [int(out.strip()) for out, _ in outs]

    steps = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert len(steps) == 2 * FEEDS
    spans = sorted((t0, t1, plate) for plate, _, t0, t1 in steps)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        assert end <= start, f"{a} and {b} drove the workcell at once"
    assert sum(reloads) >= 1, "the runs never picked up each other's work"

    async def check() -> None:
        async with open_session(cfg, run_dir) as s:
            wc = s.wc
            fed = [e for e in wc.store.events("fed")]
            assert sorted({e.actor for e in fed}) == ["plate_1", "plate_2"]
            assert len(fed) == 2 * 6 * FEEDS  # every well of both plates, every time
            per_feed = sum(e.data["added_uL"] for e in fed)
            used = medium_after_seeding - wc.container("medium").tracker.get_used_volume()
            assert abs(used - per_feed) < 1.0, "one run's pipetting was lost in the checkpoint"
            assert wc.in_incubator("plate_1") and wc.in_incubator("plate_2")

    run(check())
