"""Run one protocol against the simulated workcell and report what it did.

A protocol other than seeding needs cultures to work on, so a dry-run first
prepares them: it seeds the plates the protocol names and grows them for
``culture_days`` in the incubator, fed twice a week (the *prelude*, not part of the
report). The report is drawn from the action log and the protocol's result: the
steps each device took, the reagent volumes, the tips, and the duration in
simulated time.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from protocols import media_exchange, seeding
from protocols.registry import PROTOCOLS
from workcell.assembly.build import Workcell, build_workcell
from workcell.assembly.config import WorkcellConfig
from workcell.errors import WorkcellError

DAY_S = 86400.0
FEED_EVERY_DAYS = 3
PRELUDE_SUSPENSION = seeding.Suspension(volume_mL=40.0, viable_cells_per_mL=5.0e5)


class DryRunReport(BaseModel):
    protocol: str
    steps: dict[str, int]
    result: dict[str, Any]
    simulated_seconds: float
    prelude_days: float = 0.0


def load_params(protocol: str, path: Path) -> BaseModel:
    """Parameters from a JSON file, validated by the protocol's model, errors by field."""
    if protocol not in PROTOCOLS:
        raise WorkcellError(f"unknown protocol {protocol!r}; known: {', '.join(sorted(PROTOCOLS))}")
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise WorkcellError(f"cannot read parameters {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise WorkcellError(f"parameters {path} are not valid JSON: {err}") from None
    try:
        return PROTOCOLS[protocol].params.model_validate(data)
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in err.errors()
        ]
        raise WorkcellError(
            f"invalid {protocol} parameters in {path}:\n" + "\n".join(lines)
        ) from None


async def prepare_cultures(wc: Workcell, plates: list[str], days: float) -> None:
    """Seed ``plates`` and grow them ``days`` in the incubator, fed every few days."""
    if not plates or days <= 0:
        return
    await seeding.run(
        wc, seeding.SeedingParams(suspension=PRELUDE_SUSPENSION, plates=plates), actor="prelude"
    )
    for plate in plates:
        await wc.store_plate(plate)
    start = wc.clock.elapsed()
    day = 0
    while day + FEED_EVERY_DAYS < days:
        day += FEED_EVERY_DAYS
        await wc.clock.sleep(start + day * DAY_S - wc.clock.elapsed())
        await media_exchange.run(wc, media_exchange.MediaExchangeParams(plates=plates), "prelude")
    await wc.clock.sleep(max(0.0, start + days * DAY_S - wc.clock.elapsed()))


async def dry_run(
    config: WorkcellConfig,
    protocol: str,
    params: BaseModel,
    store_path: str | Path = ":memory:",
    culture_days: float = 7.0,
) -> tuple[DryRunReport, Workcell]:
    if not config.simulated:
        raise WorkcellError(
            f"config {config.name!r} drives real devices; a dry-run needs every device simulated"
        )
    entry = PROTOCOLS[protocol]
    wc = build_workcell(config, store_path)
    async with wc:
        days = 0.0 if protocol == "seeding" else culture_days
        await prepare_cultures(wc, entry.plates(params), days)
        t0, n0 = wc.clock.elapsed(), len(wc.log)
        result = await entry.run(wc, params)
        steps = Counter(f"{a.device}: {a.action}" for a in wc.log.actions[n0:])
        report = DryRunReport(
            protocol=protocol,
            steps=dict(steps),
            result=result.model_dump(mode="json"),
            simulated_seconds=wc.clock.elapsed() - t0,
            prelude_days=days,
        )
    return report, wc
