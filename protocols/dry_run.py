"""Run one protocol against the simulated workcell and report what it did.

A protocol other than seeding needs cultures to work on, so a dry-run first
prepares them: it seeds the plates the protocol names and grows them for
``culture_days`` in the incubator, fed twice a week (the *prelude*, not part of the
report). The prelude is the simulated operator's preparation, not the protocol
under test: each plate gets a suspension sized for its wells (a 24-well plate
needs a more dilute one than a 6-well plate), reagents are topped up before each
feed, and at its end the deck is put back as the config loads it (reagents full,
waste and tubes empty, every tip rack full), so the protocol under test finds the
supplies it would find on a freshly loaded deck. The report is drawn from the
action log and the protocol's result: the steps each device took, the reagent
volumes, the tips, and the duration in simulated time.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pylabrobot.resources import Plate

from protocols import media_exchange, seeding
from protocols.campaign import housekeeping
from protocols.pipetting import dead_volume_uL
from protocols.registry import PROTOCOLS
from workcell.assembly.build import Workcell, build_workcell
from workcell.assembly.config import WorkcellConfig
from workcell.errors import ProtocolRefused, WorkcellError
from workcell.labware import growth_area_cm2

DAY_S = 86400.0
MAX_PARAMS_BYTES = 1_000_000
FEED_EVERY_DAYS = 3
PRELUDE_ACTOR = "prelude (simulated operator)"
# the prelude's suspension puts this much into the plate's smallest well
PRELUDE_SEED_UL = 100.0
PRELUDE_SEEDING = seeding.SeedingParams(
    suspension=seeding.Suspension(volume_mL=1.0, viable_cells_per_mL=5.0e5), plates=["each"]
)


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
        if path.stat().st_size > MAX_PARAMS_BYTES:
            raise WorkcellError(f"parameters {path} are larger than {MAX_PARAMS_BYTES:,} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise WorkcellError(f"cannot read parameters {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise WorkcellError(f"parameters {path} are not UTF-8 text ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise WorkcellError(f"parameters {path} are not valid JSON: {err}") from None
    except RecursionError:
        raise WorkcellError(f"parameters {path} are nested too deeply") from None
    try:
        return PROTOCOLS[protocol].params.model_validate(data)
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc'])[:120] or '(top level)'}: {e['msg'][:300]}"
            for e in err.errors()[:20]
        ]
        raise WorkcellError(
            f"invalid {protocol} parameters in {path}:\n" + "\n".join(lines)
        ) from None


def restore_deck(wc: Workcell) -> None:
    """Put the deck back as the config loads it: reagents full, waste and tubes empty,
    every tip rack full. What the simulated operator does around a dry-run."""
    chores = [c for c in housekeeping.due(wc) if c.kind != "tips"]
    chores.append(housekeeping.Chore(kind="tips", target="every rack"))
    housekeeping.do(wc, chores, PRELUDE_ACTOR)


def prelude_seeding(wc: Workcell, plate: Plate) -> seeding.SeedingParams:
    """Seeding of one plate at the default density, from a suspension sized for its wells."""
    base = PRELUDE_SEEDING
    areas = [growth_area_cm2(w) for w in plate.get_all_items()]
    per_uL = base.density_cells_per_cm2 * min(areas) / PRELUDE_SEED_UL
    need_uL = sum(base.density_cells_per_cm2 * a for a in areas) / per_uL
    tube = wc.container(base.suspension.tube)
    volume_mL = math.ceil(1.2 * need_uL / 1000 + dead_volume_uL(tube) / 1000 + 0.5)
    return base.model_copy(
        update={
            "plates": [plate.name],
            "suspension": base.suspension.model_copy(
                update={"volume_mL": volume_mL, "viable_cells_per_mL": per_uL * 1000}
            ),
        }
    )


async def prepare_cultures(wc: Workcell, plates: list[str], days: float) -> None:
    """Seed ``plates`` and grow them ``days`` in the incubator, fed every few days.

    Plates that are not deck plates, or already hold cultures, are left to the
    protocol under test to refuse or use.
    """
    todo = []
    for name in dict.fromkeys(plates):
        try:
            plate = wc.plate(name)
        except WorkcellError:
            continue
        if not any(v.plate == name for v in wc.store.vessels(state="active")):
            todo.append(plate)
    if not todo or days <= 0:
        return
    for plate in todo:
        restore_deck(wc)
        try:
            # each plate's seeding is a part of the step of its own: its plan and units
            # are not the previous plate's (``Journal.scope``)
            with wc.journal.scope(f"prelude-seed-{plate.name}"):
                await seeding.run(wc, prelude_seeding(wc, plate), actor=PRELUDE_ACTOR)
        except ProtocolRefused as refused:
            raise WorkcellError(
                f"the dry-run's culture prelude cannot seed {plate.name!r}: {refused}"
            ) from None
        await wc.store_plate(plate.name)
    names = [p.name for p in todo]
    start = wc.clock.elapsed()
    day = 0
    while day + FEED_EVERY_DAYS < days:
        day += FEED_EVERY_DAYS
        await wc.clock.sleep(start + day * DAY_S - wc.clock.elapsed())
        restore_deck(wc)
        await media_exchange.run(
            wc, media_exchange.MediaExchangeParams(plates=names), PRELUDE_ACTOR
        )
    await wc.clock.sleep(max(0.0, start + days * DAY_S - wc.clock.elapsed()))
    restore_deck(wc)


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
