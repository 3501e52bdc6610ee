"""How long each plate of a multi-plate harvest stays out of the incubator, from the lab's log.

Seeds ``--plates`` plates on the embedded simulated workcell, lets them grow, harvests
them all in one step (each plate its own enzyme batch, ``protocols/detachment.py``)
and prints, per plate, the longest stretch between leaving an incubator slot and going
back into one, as the simulated lab's own physical log says (``benchmarks/judge.py``),
against the out-of-incubator window (``protocols/campaign/windows.py``).

    .venv/bin/python benchmarks/plates_out.py --plates 6
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import judge  # noqa: E402
from protocols import seeding  # noqa: E402
from protocols.campaign.engine import DAY_S, Action, CampaignEngine, CampaignParams, Kind  # noqa: E402
from protocols.campaign.profiles import floor_config  # noqa: E402
from protocols.campaign.windows import WindowParams  # noqa: E402
from workcell.assembly.lab import LAB_FOLDER  # noqa: E402
from workcell.assembly.session import open_session  # noqa: E402

PLATES = ["plate_1", "plate_2", "plate_4", "plate_5", "plate_6", "plate_7", "plate_8", "plate_9"]


async def _approve(action: Action) -> Any:
    raise RuntimeError("the measurement needs no operator")


async def harvest_out(folder: Path, n: int) -> dict[str, float]:
    """Per plate, seconds out of the incubator during a harvest of ``n`` plates (lab's log)."""
    plates = PLATES[:n]
    params = CampaignParams(
        suspension=seeding.Suspension(volume_mL=40.0, viable_cells_per_mL=5.0e5),
        confluence_threshold_percent=10,
    )
    async with open_session(floor_config(), folder) as session:
        engine = CampaignEngine(session, params, _approve)
        wc = session.wc
        await engine.do(Action(kind=Kind.SEED, plates=plates))
        await wc.clock.sleep(5 * DAY_S)
        await engine.do(Action(kind=Kind.HARVEST, plates=plates))
    # (the seeded plates went straight into the incubator: only the harvest's trips count)
    return judge.out_of_incubator(judge.rows(folder / LAB_FOLDER))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plates", type=int, default=6, choices=range(1, len(PLATES) + 1))
    args = ap.parse_args()
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = asyncio.run(harvest_out(Path(tmp), args.plates))
    limit = WindowParams().max_out_of_incubator_min * 60
    print(f"harvest of {args.plates} plates: out of the incubator (s), window {limit:.0f} s")
    for plate, s in sorted(out.items(), key=lambda x: PLATES.index(x[0])):
        print(f"  {plate}: {s:.0f}{'  OVER' if s > limit else ''}")
    worst = max(out.values(), default=0.0)
    print(f"largest {worst:.0f} s; over the window: {sum(v > limit for v in out.values())}")
    print(f"wall {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
