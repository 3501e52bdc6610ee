"""Run one protocol against the simulated workcell and report what it did.

The report is drawn from the action log and the protocol's result: the steps each
device took, the reagent volumes, the tips, the cells per vessel, and the duration
in simulated time.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from protocols.registry import PROTOCOLS
from workcell.assembly import Workcell, build_workcell
from workcell.config import WorkcellConfig
from workcell.errors import WorkcellError


class DryRunReport(BaseModel):
    protocol: str
    steps: dict[str, int]
    result: dict[str, Any]
    simulated_seconds: float


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


async def dry_run(
    config: WorkcellConfig, protocol: str, params: BaseModel, store_path: str | Path = ":memory:"
) -> tuple[DryRunReport, Workcell]:
    if not config.simulated:
        raise WorkcellError(
            f"config {config.name!r} drives real devices; a dry-run needs every device simulated"
        )
    wc = build_workcell(config, store_path)
    async with wc:
        t0, n0 = wc.clock.elapsed(), len(wc.log)
        result = await PROTOCOLS[protocol].run(wc, params)
        steps = Counter(f"{a.device}: {a.action}" for a in wc.log.actions[n0:])
        report = DryRunReport(
            protocol=protocol,
            steps=dict(steps),
            result=result.model_dump(mode="json"),
            simulated_seconds=wc.clock.elapsed() - t0,
        )
    return report, wc
