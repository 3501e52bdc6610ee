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

A campaign joins a floor that is running, or one on it is cancelled, through the
floor's inbox (``flows/floor_requests.py``: the ``join floor`` and ``cancel on floor``
deployments, ``workcell floor-join`` and ``workcell floor-cancel``): a joined campaign
is a child run like the others; a cancelled one ends Cancelled, saying who and why.
Run the floor again on the same folder to resume after a stop or a kill: the same
campaigns, the joined ones included, carry on.

Limits, honestly: the child runs are subflows of the floor's run, in the floor's
process and event loop (the floor decides who goes next), so the UI's own Cancel
button on a child run is not how a campaign is stopped: ``cancel on floor`` is. A second floor on
a folder whose floor is still running is refused before it starts (``floor.lock``,
an ``flock`` the kernel frees when the process dies), as are a workcell with real
devices, two campaigns of one name, and a run folder that cannot be made: the run
fails with a one-line message saying why. The floor's run and each campaign's end
with a state message saying what became of them. The floor is a
dry-run: each campaign has its own simulated lab, the decisions that ask an
operator are approved automatically (and say so in the record); a hardware
workcell is refused.

Start it from the CLI (``workcell floor FOLDER``) or from the UI
(``workcell serve`` serves the ``floor @ <workcell>`` deployment).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.states import Cancelled, Completed, Failed

from flows.artifacts import publish_vessels
from protocols.campaign.engine import DAY_S, CampaignParams, summarize
from protocols.campaign.floor import CampaignSpec, Floor, FloorParams, FloorResult
from protocols.campaign.gantt import plan_markdown
from protocols.campaign.scheduler import Plan
from workcell.assembly.config import SIMULATED_DRIVERS, WorkcellConfig, load_config
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


# the form's defaults: twins half a day apart, and the floor's default settings
DEFAULT_CAMPAIGNS = [
    CampaignSpec(name=n, params=CampaignParams(max_days=8, max_vessels=12), start_day=d)
    for n, d in (("a", 0.0), ("b", 0.5))
]
DEFAULT_FLOOR = FloorParams()
LOCK_FILE = "floor.lock"


@contextlib.contextmanager
def floor_lock(folder: Path, holder: str) -> Iterator[None]:
    """One floor per run folder at a time, across processes: a second floor on the same
    folder would run the same campaigns twice on the same records. The kernel frees the
    ``flock`` when the process dies, so a killed floor never leaves its folder locked."""
    with open(folder / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "another process"
            raise WorkcellError(
                f"the floor {folder} is already running ({who}): wait for it to end or "
                "cancel it; to add a campaign to it, join it (join floor, or "
                "`workcell floor-join`)"
            ) from None
        f.truncate(0)
        f.write(f"{holder}, pid {os.getpid()}\n")
        f.flush()
        yield


def floor_running(folder: Path) -> bool:
    """Whether a floor holds the folder's lock now (without taking it from anyone)."""
    path = folder / LOCK_FILE
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def floor_folder(run_dir: str) -> Path:
    folder = Path(run_dir).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkcellError(
            f"the floor's run folder {folder} cannot be used: {e.strerror or e}"
        ) from None
    return folder


def _holder() -> str:
    from prefect.runtime import flow_run

    name, run_id = flow_run.name, flow_run.id
    return f"flow run {name!r}, id {run_id}" if run_id else "a floor on the command line"


def _floor_run_name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters
    names = [
        c.name if isinstance(c, CampaignSpec) else str(dict(c).get("name", "?"))
        for c in p.get("campaigns") or DEFAULT_CAMPAIGNS
    ]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    folder = Path(str(p.get("run_dir", "runs/floor"))).name
    return f"{'floor' if folder == 'floor' else f'floor {folder}'}: {shown}"


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
    if spec.name in floor.cancelled:
        c = floor.cancelled[spec.name]
        return Cancelled(message=f"{spec.name}: cancelled by {c.by} ({c.reason})")  # type: ignore[return-value]
    if spec.name in floor.deferred:
        line = f"{spec.name}: not admitted (the incubator slots are taken)"
        return Completed(message=line, data=line)  # type: ignore[return-value]
    run_dir = Path(folder) / spec.name
    line = f"{spec.name}: finished"
    if (run_dir / STORE_FILE).exists():
        store = Store(run_dir / STORE_FILE)
        try:
            summary = summarize(store, spec.params)
            line = f"{spec.name}: {summary.outcome} (day {summary.days:.1f})"
            await publish_vessels(store, str(run_dir))
        finally:
            store.close()
    return Completed(message=line, data=line)  # type: ignore[return-value]


@flow(name="workcell-floor", flow_run_name=_floor_run_name)
async def floor_flow(
    campaigns: list[CampaignSpec] = DEFAULT_CAMPAIGNS,
    run_dir: str = "runs/floor",
    params: FloorParams = DEFAULT_FLOOR,
    config: str | None = None,
) -> FloorResult:
    """Several campaigns on one workcell (a dry-run): the scheduler decides who gets which
    device next; each campaign is a flow run of its own."""
    campaigns = [c.model_copy(deep=True) for c in campaigns or DEFAULT_CAMPAIGNS]
    with contextlib.ExitStack() as held:
        try:  # refused before any campaign starts: the run fails saying why, in one line
            base = _simulated_base(config)
            names = [c.name for c in campaigns]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise WorkcellError(
                    f"the floor's campaigns need names of their own: {', '.join(twice)} twice"
                )
            where = floor_folder(run_dir)
            held.enter_context(floor_lock(where, _holder()))
        except WorkcellError as e:
            get_run_logger().error(f"floor not started: {e}")
            return Failed(message=f"floor not started: {e}")  # type: ignore[return-value]
        return await _run_floor(str(where), campaigns, params or DEFAULT_FLOOR, base)


def _simulated_base(config: str | None) -> WorkcellConfig | None:
    if config is None:
        return None
    base = load_config(config)
    real = sorted(n for n, d in base.devices.items() if d.driver not in SIMULATED_DRIVERS)
    if real:
        raise WorkcellError(
            f"the floor is a dry-run: it runs on a simulated workcell only; {config} drives "
            f"real devices: {', '.join(real)}"
        )
    return base


async def _run_floor(
    folder: str, campaigns: list[CampaignSpec], params: FloorParams, base: Any
) -> FloorResult:
    floor = Floor(folder, campaigns, params, base=base)
    devices = sorted(floor.profiles_devices())
    last_day = [-1]

    async def on_plan(plan: Plan, f: Floor) -> None:
        day = int(plan.made_at_s // DAY_S)
        if day != last_day[0]:
            last_day[0] = day
            await acreate_markdown_artifact(
                markdown=plan_markdown(plan, devices, start=params.start),
                key=artifact_key(folder, f"plan-day-{day}"),
                description=f"the plan made on day {day}, device by device, with the windows",
            )

    async def runner(spec: CampaignSpec, coro: Coroutine[Any, Any, None]) -> None:
        _PENDING[(folder, spec.name)] = coro
        state = await floor_campaign(spec=spec, folder=folder, return_state=True)
        if not state.is_cancelled():  # a cancelled campaign ends alone; a failure, loudly
            await state.aresult()

    floor.on_plan.append(on_plan)
    floor.runner = runner
    _FLOORS[folder] = floor
    try:
        result = await floor.run()
    finally:
        _FLOORS.pop(folder, None)
        for spec in floor.specs:  # the joined ones too
            left = _PENDING.pop((folder, spec.name), None)
            if left is not None:
                left.close()
    await acreate_table_artifact(
        table=[b.model_dump() for b in result.busy],
        key=artifact_key(folder, "device-busy"),
        description="every device's busy stretches, from the simulated lab's clock",
    )
    every = floor.specs
    admitted = len(every) - len(floor.deferred)
    stopped = f", {len(floor.cancelled)} cancelled" if floor.cancelled else ""
    line = (
        f"{admitted} of {len(every)} campaigns run ({', '.join(c.name for c in every)}){stopped}; "
        f"{result.grants} grants, {result.plans} plans, ended day {result.end_s / DAY_S:.2f}"
    )
    return Completed(message=line, data=result)  # type: ignore[return-value]
