"""Several campaigns on one workcell under Prefect: the floor, and a flow run per campaign.

``workcell-floor`` is one long-lived flow run: ``protocols.campaign.floor.Floor`` with
every campaign on the workcell, each with its own run folder and batch record, under
the chosen policy. It publishes, as it goes:

* the plan, as a markdown artifact on the floor's run, when the first plan of each
  simulated day is made (``protocols/campaign/gantt.py``: device by device, with the
  windows, and each campaign's next planned actions); key
  ``floor-<folder>-plan-day-<n>``;
* at the end, a table of every device's busy stretches (``floor-<folder>-device-busy``).

Each campaign runs as a child flow run of its own (``floor-campaign``, named
``<campaign> on <folder>``): the UI lists it under the floor's run with its own
state (Completed, or Failed with the campaign's error) and its own artifacts: a
progress bar updated every simulated 6 h with the campaign's day and its next
planned action, and its vessel table at the end.

Limits, honestly: the child runs are subflows of the floor's run, in the floor's
process and event loop (the floor decides who goes next, so they cannot be started
or stopped on their own); a campaign cannot join a floor already running, the
floor is started with all of its campaigns (run it again on the same folder to
resume after a stop or a kill, and the same campaigns carry on). The floor is a
dry-run: each campaign has its own simulated lab, the decisions that ask an
operator are approved automatically (and say so in the record); a hardware
workcell is refused.

Start it from the CLI (``workcell floor FOLDER``) or from the UI
(``workcell serve`` serves the ``floor @ <workcell>`` deployment).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

from flows.artifacts import publish_vessels
from protocols.campaign.engine import DAY_S, CampaignParams
from protocols.campaign.floor import CampaignSpec, Floor, FloorParams, FloorResult
from protocols.campaign.gantt import plan_markdown
from protocols.campaign.scheduler import Plan
from workcell.assembly.config import load_config
from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Store

# The campaigns' coroutines of the floors this process runs, by (folder, campaign):
# a child flow run takes its own and runs it (a coroutine is not a flow parameter).
_PENDING: dict[tuple[str, str], Coroutine[Any, Any, None]] = {}
_FLOORS: dict[str, Floor] = {}
# whoever started the floor in this process and wants each campaign's progress as it
# comes (the command line's bars): called with (campaign, percent, text)
progress_listeners: list[Callable[[str, float, str], None]] = []


def artifact_key(folder: str | Path, what: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for this floor."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(folder).resolve().name.lower()).strip("-")
    return f"floor-{slug or 'floor'}-{what}"


def _campaign_run_name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters
    spec, folder = p.get("spec"), str(p.get("folder", ""))
    name = spec.name if isinstance(spec, CampaignSpec) else dict(spec or {}).get("name", "?")
    return f"{name} on {Path(folder).name}"


@flow(name="floor-campaign", flow_run_name=_campaign_run_name)
async def floor_campaign(spec: CampaignSpec, folder: str) -> str:
    """One campaign on the floor: its own flow run, progress and vessels."""
    coro = _PENDING.pop((folder, spec.name))
    floor = _FLOORS[folder]
    progress_id = await acreate_progress_artifact(
        progress=0.0, description=f"{spec.name} on the floor {folder}"
    )

    async def progress(campaign: str, percent: float, text: str) -> None:
        if campaign == spec.name:
            await aupdate_progress_artifact(progress_id, percent, description=text)
            for listener in progress_listeners:
                listener(campaign, percent, text)

    floor.on_progress.append(progress)
    try:
        await coro
    finally:
        floor.on_progress.remove(progress)
    if spec.name in floor.deferred:
        return f"{spec.name}: not admitted (the incubator slots are taken)"
    run_dir = Path(folder) / spec.name
    if (run_dir / STORE_FILE).exists():
        store = Store(run_dir / STORE_FILE)
        try:
            await publish_vessels(store, str(run_dir))
        finally:
            store.close()
    return f"{spec.name}: finished"


@flow(name="workcell-floor")
async def floor_flow(
    campaigns: list[CampaignSpec] | None = None,
    run_dir: str = "runs/floor",
    params: FloorParams | None = None,
    config: str | None = None,
) -> FloorResult:
    """Several campaigns on one workcell (a dry-run): the scheduler decides who gets which
    device next; each campaign is a flow run of its own."""
    if campaigns is None:  # twins, half a day apart
        campaigns = [
            CampaignSpec(name=n, params=CampaignParams(max_days=8, max_vessels=12), start_day=d)
            for n, d in (("a", 0.0), ("b", 0.5))
        ]
    base = None
    if config is not None:
        base = load_config(config)
        if not base.simulated:
            raise WorkcellError("the floor is a dry-run: it runs on a simulated workcell only")
    if len({c.name for c in campaigns}) != len(campaigns):
        raise WorkcellError("the floor's campaigns need names of their own")
    folder = str(Path(run_dir).resolve())
    floor = Floor(folder, campaigns, params or FloorParams(), base=base)
    devices = sorted(floor.profiles_devices())
    last_day = [-1]

    async def on_plan(plan: Plan, f: Floor) -> None:
        day = int(plan.made_at_s // DAY_S)
        if day != last_day[0]:
            last_day[0] = day
            await acreate_markdown_artifact(
                markdown=plan_markdown(plan, devices),
                key=artifact_key(folder, f"plan-day-{day}"),
                description=f"the plan made on day {day}, device by device, with the windows",
            )

    async def runner(spec: CampaignSpec, coro: Coroutine[Any, Any, None]) -> None:
        _PENDING[(folder, spec.name)] = coro
        await floor_campaign(spec=spec, folder=folder)

    floor.on_plan.append(on_plan)
    floor.runner = runner
    _FLOORS[folder] = floor
    try:
        result = await floor.run()
    finally:
        _FLOORS.pop(folder, None)
        for spec in campaigns:
            left = _PENDING.pop((folder, spec.name), None)
            if left is not None:
                left.close()
    await acreate_table_artifact(
        table=[b.model_dump() for b in result.busy],
        key=artifact_key(folder, "device-busy"),
        description="every device's busy stretches, from the simulated lab's clock",
    )
    return result
