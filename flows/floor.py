"""Several campaigns on one workcell as one long-lived Prefect flow run: the scheduler.

The flow runs ``protocols.campaign.floor.Floor``: every campaign on the workcell,
each with its own run folder and batch record, under the chosen policy. Each day of
simulated (or real) time it publishes the plan as a markdown artifact
(``protocols/campaign/gantt.py``: device by device, with the windows, and each
campaign's next planned actions), and at the end a table of every device's busy
stretches. Each campaign's vessel table is published as the single-campaign flow
does.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from flows.artifacts import publish_vessels
from protocols.campaign.engine import DAY_S
from protocols.campaign.floor import CampaignSpec, Floor, FloorParams, FloorResult
from protocols.campaign.gantt import plan_markdown
from protocols.campaign.scheduler import Plan
from workcell.store import STORE_FILE, Store


@flow(name="workcell-floor")
async def floor_flow(
    campaigns: list[CampaignSpec],
    folder: str = "runs/floor",
    params: FloorParams | None = None,
) -> FloorResult:
    """Run the campaigns together; the scheduler decides who gets which device next."""
    floor = Floor(folder, campaigns, params or FloorParams())
    devices = sorted(floor.profiles_devices())
    pending: list[str] = []
    last_day = [-1]

    def on_plan(plan: Plan, f: Floor) -> None:
        day = int(plan.made_at_s // DAY_S)
        if day != last_day[0]:
            last_day[0] = day
            pending.append(plan_markdown(plan, devices))

    floor.on_plan.append(on_plan)
    task = floor.run()
    result = await task
    for i, text in enumerate(pending):
        await acreate_markdown_artifact(
            markdown=text, key=f"floor-plan-day-{i}", description="the plan, device by device"
        )
    await acreate_table_artifact(
        table=[b.model_dump() for b in result.busy],
        key="floor-device-busy",
        description="every device's busy stretches, from the simulated lab's clock",
    )
    for spec in campaigns:
        run_dir = Path(folder) / spec.name
        if (run_dir / STORE_FILE).exists():
            store = Store(run_dir / STORE_FILE)
            try:
                await publish_vessels(store, str(run_dir))
            finally:
                store.close()
    return result
