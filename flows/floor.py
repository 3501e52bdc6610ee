"""Several campaigns on one workcell under Prefect: the floor, and a flow run per campaign.

``workcell-floor`` is one long-lived flow run: ``protocols.campaign.floor.Floor`` with
every campaign on the workcell, each with its own run folder and batch record, under
the chosen policy. Each floor has a folder of its own, ``<floors folder>/<name>``
(the deployment's ``floors_dir``: ``<workcell run folder>/floors``): the name given on
the form or the command line, or, with none, a new one named after the run's UTC
start and short id (``new_floor_name``). A bad name (a path, ``..``, blank) is refused
in one line (``check_floor_name``); the name of a floor that ran to its end (its
record's last event ``floor_ended``) is refused rather than appended to; the name of
one stopped or killed resumes it. It publishes, as it goes:

* the plan, as a markdown artifact on the floor's run, when the first plan of each
  simulated day is made (``protocols/campaign/gantt.py``: device by device, with the
  windows, and each campaign's next planned actions); key
  ``floor-<folder>-plan-day-<n>``;
* at the end, a table of every device's busy stretches (``floor-<folder>-device-busy``).

Each campaign runs as a child flow run of its own (``floor-campaign``, named
``<campaign> on <floor name>``): the UI lists it under the floor's run with its own
state (Completed, or Failed with the campaign's error) and its own artifacts: a
progress bar updated every simulated 6 h with the campaign's day and its next
planned action, and its vessel table at the end.

A campaign joins a floor that is running, or one on it is cancelled, through the
floor's inbox (``flows/floor_requests.py``: the ``join floor`` and ``cancel on floor``
deployments, ``workcell floor-join`` and ``workcell floor-cancel``, which find the
running floor by its lock, ``the_running_floor``, or take its name when several run):
a joined campaign is a child run like the others; a cancelled one ends Cancelled,
saying who and why. Run the floor again under the same name to resume after a stop or
a kill: the same campaigns, the joined ones included, carry on.

Limits, honestly: the child runs are subflows of the floor's run, in the floor's
process and event loop (the floor decides who goes next), so the UI's own Cancel
button on a child run is not how a campaign is stopped: ``cancel on floor`` is. A second floor
under the name of one still running is refused before it starts (``floor.lock``,
an ``flock`` the kernel frees when the process dies), as are a workcell with real
devices, two campaigns of one name, and a run folder that cannot be made: the run
fails with a one-line message saying why. The floor's run and each campaign's end
with a state message saying what became of them. The floor is a
dry-run: each campaign has its own simulated lab, the decisions that ask an
operator are approved automatically (and say so in the record); a hardware
workcell is refused.

Start it from the CLI (``workcell floor [NAME]``) or from the UI
(``workcell serve`` serves the ``floor @ <workcell>`` deployment).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
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
from protocols.campaign.floor import FLOOR_STORE, CampaignSpec, Floor, FloorParams, FloorResult
from protocols.campaign.gantt import plan_markdown
from protocols.campaign.scheduler import Plan
from workcell.assembly.config import SIMULATED_DRIVERS, WorkcellConfig, load_config
from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Event, Store

# The campaigns' coroutines of the floors this process runs, by (folder, campaign):
# a child flow run takes its own and runs it (a coroutine is not a flow parameter).
_PENDING: dict[tuple[str, str], Coroutine[Any, Any, None]] = {}
_FLOORS: dict[str, Floor] = {}
# whoever started the floor in this process and wants each campaign's progress as it
# comes (the command line's bars): called with (campaign, percent, text)
progress_listeners: list[Callable[[str, float, str], None]] = []
# ... and the floor's folder, once it is chosen (a floor with no name gets a new one)
folder_listeners: list[Callable[[Path], None]] = []


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


def floor_folder(run_dir: str | Path) -> Path:
    folder = Path(run_dir).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkcellError(
            f"the floor's run folder {folder} cannot be used: {e.strerror or e}"
        ) from None
    return folder


# --- the floors of a workcell: one folder each, under <runs>/floors/, by name --------------

FLOORS = "floors"  # <the workcell's run folder>/floors/<floor name>/
ENDED = "floor_ended"  # the floor's record's last event when it ran to its end
NAME_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
NAME_MAX = 64


def check_floor_name(name: str) -> str:
    """The floor's name as given, stripped; ``WorkcellError`` saying what is wrong with
    it in one line. A name is one folder under ``floors/``, never a path."""
    given = name.strip()
    if not given:
        raise WorkcellError(
            f"floor name {name!r} is empty: leave it out for a new floor, or give letters "
            "and digits"
        )
    if "/" in given or "\\" in given:
        raise WorkcellError(
            f"floor name {given!r} has a path separator: a floor name is one folder name "
            "(letters, digits, - _ .), the floor's folder is made under floors/"
        )
    if given in (".", ".."):
        raise WorkcellError(
            f"floor name {given!r} is not a folder name of its own: give letters and digits"
        )
    if given.startswith("."):
        raise WorkcellError(f"floor name {given!r} begins with '.': begin with a letter or digit")
    if len(given) > NAME_MAX:
        raise WorkcellError(f"floor name {given[:20]!r}... is too long ({NAME_MAX} at most)")
    if not NAME_CHARS.match(given):
        bad = sorted({c for c in given if not (c.isascii() and (c.isalnum() or c in "-_."))})
        raise WorkcellError(
            f"floor name {given!r}: letters, digits, - _ and . only "
            f"(not {' '.join(map(repr, bad))})"
        )
    return given


def new_floor_name() -> str:
    """A new floor's name when none is given: its flow run's UTC start and short id
    (``20261126-152013-1a2b3c4d``). The same for a run started again (a retry, a resumed
    worker): it keeps its folder."""
    from prefect.runtime import flow_run

    started = flow_run.scheduled_start_time
    when = started.astimezone(UTC) if started is not None else datetime.now(UTC)
    short = str(flow_run.id or "")[:8] or f"pid{os.getpid()}"
    return f"{when:%Y%m%d-%H%M%S}-{short}"


def floor_ended(folder: Path) -> Event | None:
    """The ``floor_ended`` event of a floor that ran to its end, else None (a floor that
    was killed or failed has none: it resumes when run again)."""
    path = folder / FLOOR_STORE
    if not path.exists():
        return None
    store = Store(path, read_only=True)
    try:
        ended = store.events(ENDED)
    finally:
        store.close()
    return ended[-1] if ended else None


def named_floor(floors_dir: str | Path, name: str) -> Path:
    """The folder of a new floor, or of one to resume: ``floors_dir/name`` (a new dated
    name when ``name`` is empty). Refuses a bad name, and a name a finished floor has."""
    if name == "":
        name = new_floor_name()
    name = check_floor_name(name)
    folder = Path(floors_dir).resolve() / name
    ended = floor_ended(folder)
    if ended is not None:
        raise WorkcellError(
            f"floor name {name!r} is taken: that floor ran to its end "
            f"({ended.data.get('summary', '')}; record {folder / FLOOR_STORE}); "
            "give another name, or none for a new floor"
        )
    return folder


def running_floors(floors_dir: str | Path) -> list[Path]:
    """The floors under ``floors_dir`` running now (each holds its folder's lock)."""
    root = Path(floors_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and floor_running(p))


def the_running_floor(floors_dir: str | Path, name: str = "") -> Path:
    """The folder of the floor a request is for: the one named, or else the one floor
    running under ``floors_dir``. ``WorkcellError`` when it is not running, when none
    runs, or when several run and no name says which."""
    root = Path(floors_dir).resolve()
    if name.strip():
        folder = root / check_floor_name(name)
        if not floor_running(folder):
            why = "it ran to its end" if floor_ended(folder) else "it is not running"
            if not folder.is_dir():
                why = "there is no such floor"
            others = [p.name for p in running_floors(root)]
            raise WorkcellError(
                f"no floor {name.strip()!r} is running under {root} ({why}); "
                + (f"running: {', '.join(others)}" if others else "none is running")
            )
        return folder
    running = running_floors(root)
    if not running:
        raise WorkcellError(
            f"no floor is running under {root}: start one (floor @ <workcell>, or `workcell floor`)"
        )
    if len(running) > 1:
        raise WorkcellError(
            f"{len(running)} floors are running under {root} "
            f"({', '.join(p.name for p in running)}): name the one you mean (the form's "
            "Floor name, or --floor)"
        )
    return running[0]


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
    name = str(p.get("name") or "")
    try:  # the floor's folder's name: what join and cancel take to say which floor
        folder = check_floor_name(name) if name else new_floor_name()
    except WorkcellError:
        folder = "(bad name)"
    return f"floor {folder}: {shown}"


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
    name: str = "",
    campaigns: list[CampaignSpec] = DEFAULT_CAMPAIGNS,
    params: FloorParams = DEFAULT_FLOOR,
    config: str | None = None,
    floors_dir: str = str(Path("runs") / FLOORS),
) -> FloorResult:
    """Several campaigns on one workcell (a dry-run): the scheduler decides who gets which
    device next; each campaign is a flow run of its own. The floor's folder is
    ``floors_dir/name`` (a new one, named after the date and this run, when ``name`` is
    empty); a name of a floor that was stopped or killed resumes it."""
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
            where = floor_folder(named_floor(floors_dir, name))
            held.enter_context(floor_lock(where, _holder()))
            ended = floor_ended(where)  # it ended while this one waited to start
            if ended is not None:
                raise WorkcellError(f"the floor {where.name} ran to its end meanwhile")
        except WorkcellError as e:
            get_run_logger().error(f"floor not started: {e}")
            return Failed(message=f"floor not started: {e}")  # type: ignore[return-value]
        get_run_logger().info(f"the floor {where.name}: folder {where}")
        for listener in folder_listeners:
            listener(where)
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
    recorded = granted_in_record(Path(folder))  # a resumed floor: the runs before it too
    before = f" ({recorded} in all, with the runs it resumed)" if recorded != result.grants else ""
    line = (
        f"{admitted} of {len(every)} campaigns run ({', '.join(c.name for c in every)}){stopped}; "
        f"{result.grants} grants{before}, {result.plans} plans, "
        f"ended day {result.end_s / DAY_S:.2f}"
    )
    _record_end(Path(folder), floor, line)
    return Completed(message=line, data=result)  # type: ignore[return-value]


def granted_in_record(folder: Path) -> int:
    """The grants in the floor's record: this run's and those of the runs it resumed."""
    store = Store(folder / FLOOR_STORE, read_only=True)
    try:
        return store.count_events("granted")
    finally:
        store.close()


def _record_end(folder: Path, floor: Floor, line: str) -> None:
    """The floor ran to its end: its record says so, and its name is not used again (a
    floor stopped or killed before this resumes under its name instead)."""
    from prefect.runtime import flow_run

    store = Store(folder / FLOOR_STORE)
    try:
        store.add_event(
            Event(
                time=floor.at(floor.now),
                kind=ENDED,
                actor="scheduler",
                vessel_id=None,
                data={"summary": line, "flow_run": flow_run.name, "flow_run_id": flow_run.id},
            )
        )
    finally:
        store.close()
