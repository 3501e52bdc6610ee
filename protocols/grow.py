"""The demo job: seed a 6-well plate on the simulated workcell and watch it grow.

It seeds every well of ``plate_1`` from a counted suspension, puts the plate in
the incubator, and once a simulated day takes it out to the imager. Each day's
row holds, per vessel, the true cell number from the culture model (a dry-run can
see it, a lab cannot) and the confluence the imager measured, which is also
recorded in the store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from protocols import seeding
from workcell.assembly.build import build_workcell
from workcell.assembly.config import WorkcellConfig
from workcell.errors import WorkcellError
from workcell.store import Measurement

DAY_S = 86400.0

DEMO_SEEDING = seeding.SeedingParams(
    suspension=seeding.Suspension(volume_mL=5.0, viable_cells_per_mL=5.0e5, viability_percent=94),
    plates=["plate_1"],
    density_cells_per_cm2=3000,
    medium_mL_per_cm2=0.2,
)


class DayRow(BaseModel):
    day: int
    vessel: str
    cells: float
    confluence_percent: float
    viability_percent: float


class DemoResult(BaseModel):
    seeding: seeding.SeedingResult
    rows: list[DayRow]
    store_path: str


async def run_demo(
    config: WorkcellConfig,
    days: int = 5,
    store_path: str | Path = ":memory:",
    on_day: Callable[[list[DayRow]], None] | None = None,
) -> DemoResult:
    if not config.simulated or config.clock.kind != "simulated":
        raise WorkcellError("the demo runs on a fully simulated workcell with a simulated clock")
    if days < 1:
        raise WorkcellError("the demo needs at least one day")
    wc = build_workcell(config, store_path)
    rows: list[DayRow] = []
    async with wc:
        assert wc.clock.simulated and wc.lab is not None
        result = await seeding.run(wc, DEMO_SEEDING, actor="demo")
        plate = DEMO_SEEDING.plates[0]
        await wc.store_plate(plate)
        start = wc.clock.elapsed()
        for day in range(1, days + 1):
            await wc.clock.sleep(start + day * DAY_S - wc.clock.elapsed())
            imaged = await wc.imager.confluence(await wc.fetch_plate(plate, to_deck=False))
            today = []
            for v in result.vessels:
                state = wc.lab.vessel(v.vessel)
                wc.store.add_measurement(
                    Measurement(
                        vessel_id=v.vessel,
                        kind="confluence",
                        value=imaged[v.vessel],
                        unit="fraction",
                        time=wc.clock.now(),
                        source=wc.imager.name,
                    )
                )
                today.append(
                    DayRow(
                        day=day,
                        vessel=v.vessel,
                        cells=state.viable,
                        confluence_percent=100 * imaged[v.vessel],
                        viability_percent=100 * state.viability,
                    )
                )
            await wc.store_plate(plate)
            rows.extend(today)
            if on_day is not None:
                on_day(today)
    return DemoResult(seeding=result, rows=rows, store_path=str(store_path))
