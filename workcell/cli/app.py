"""The ``workcell`` command line: dry-runs, the demo, config checks.

Every error a user can cause (a bad config field, a parameter out of range, a
volume a vessel cannot hold, a path that cannot be written) ends as one clear
message on stderr and exit code 2, before any device moves; a fault ends with
exit code 1. No command ends in a traceback: ``GuardedGroup`` is the click group
behind the command, and every sub-command (and sub-group: ``record``,
``release``) runs inside its ``invoke``, so one place decides how an error ends:
exit 2 for bad input (a ``WorkcellError``: config, parameters, a refused plan; a
pydantic ``ValidationError``; a path that cannot be read or written; a file that
is not a workcell store), exit 1 for a fault (anything else, named by its type).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import sqlite3
import time
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup
from typer.exceptions import TyperException

from workcell.assembly.config import DEFAULT_CONFIG, load_config
from workcell.cli.batch import UsersOpt, record_app, release_app, users_app
from workcell.errors import ProtocolRefused, WorkcellError
from workcell.store import store_path

out = Console(width=max(120, Console().width))
err = Console(stderr=True, soft_wrap=True)

# typer vendors its own click; the installed click's exceptions pass through as well
_CLICK: tuple[type[BaseException], ...] = (click.exceptions.Exit, click.ClickException, click.Abort)
_PASS_THROUGH: tuple[type[BaseException], ...] = (
    typer.Exit,
    typer.Abort,
    TyperException,
    KeyboardInterrupt,
    *_CLICK,
)
BAD_INPUT = 2
FAULT = 1
MAX_MESSAGE = 2000

# At exit the interpreter sweeps the whole heap for garbage once more, to free memory the
# operating system takes back anyway: 1.2 s after the 70 kg demo (PyLabRobot's decks, the
# store's rows, Prefect's models). Frozen at exit, the heap is left out of that sweep;
# every atexit handler, flush and close still runs (the stores and the lab are closed by
# the commands themselves, before).
atexit.register(gc.freeze)


def _exit_with(message: str, code: int) -> typer.Exit:
    """Print ``message`` as the command's error and return the Exit to raise."""
    text = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " ..."
    err.print(f"[bold red]error:[/] {text}", markup=True, highlight=False)
    return typer.Exit(code=code)


def _validation(error: ValidationError) -> str:
    lines = [
        f"  {'.'.join(str(p) for p in e['loc'])[:120] or '(top level)'}: {e['msg'][:300]}"
        for e in error.errors()[:20]
    ]
    return f"invalid {error.title} input:\n" + "\n".join(lines)


def classify(error: BaseException) -> tuple[str, int]:
    """The message and exit code for an error that reached the command line."""
    if isinstance(error, ProtocolRefused | WorkcellError):
        return str(error), BAD_INPUT
    if isinstance(error, ValidationError):
        return _validation(error), BAD_INPUT
    if isinstance(error, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({error.reason} at byte {error.start})", BAD_INPUT
    if isinstance(error, OSError):
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        return f"cannot use{where}: {error.strerror or error}", BAD_INPUT
    if isinstance(error, sqlite3.DatabaseError):
        return f"the run folder's store cannot be used: {error}", BAD_INPUT
    return f"failed: {type(error).__name__}: {error}", FAULT


class GuardedGroup(TyperGroup):
    """A typer group whose commands end every error as a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as e:  # noqa: BLE001 - the one place errors become exit codes
            message, code = classify(e)
            raise _exit_with(message, code) from None


HELP = (
    "The MSC workcell: dry-runs, the demo campaign, config checks, serving flows to the "
    "Prefect UI, the batch record and its release.\n\n"
    "Bad input (a config field, a parameter out of range, a path that cannot be written) "
    "ends as one message and exit code 2, before any device moves; a fault ends with "
    "exit code 1."
)
app = typer.Typer(cls=GuardedGroup, add_completion=False, no_args_is_help=True, help=HELP)
ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="workcell config YAML", show_default=True)
]
RunDirOpt = Annotated[
    Path | None,
    typer.Option("--run-dir", help="folder for the run's SQLite store (default: in memory)"),
]


def _fail(e: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
    return typer.Exit(code=2)


def _writable_output(path: Path) -> None:
    """Refuse an output file whose folder is missing, or that is a folder, before any work."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise WorkcellError(f"cannot write {path}: the folder {folder} does not exist")
    if path.is_dir():
        raise WorkcellError(f"cannot write {path}: it is a folder")


@app.command("check-config")
def check_config(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Validate a workcell config (all that building it checks, no device touched)."""
    from workcell.assembly.build import check_buildable

    try:
        cfg = load_config(config)
        check_buildable(cfg)
    except WorkcellError as e:
        raise _fail(e) from None
    out.print(f"{config}: valid workcell config {cfg.name!r}")
    for name, dev in cfg.devices.items():
        where = getattr(dev, "port", None) or getattr(dev, "host", None) or ""
        out.print(f"  {dev.kind:15} {name:12} driver={dev.driver} {where}")
        if getattr(dev, "pipettes", None) is not None:
            mounts = ", ".join(f"{m}: {p}" for m, p in dev.pipettes.mounted())  # type: ignore[union-attr]
            out.print(f"  {'':15} {'':12} pipettes {mounts}")
    for s in cfg.deck.slots:
        tubes = ", ".join(f"{t.position} {t.name}" for t in s.tubes)
        out.print(f"  slot {s.slot:>2}: {s.name} ({s.labware})" + (f": {tubes}" if tubes else ""))
    for c in cfg.deck.carriers:
        out.print(
            f"  rails {c.rails:>2}: {c.name} ({c.type}): " + ", ".join(s.name for s in c.sites)
        )


@app.command("dry-run")
def dry_run_cmd(
    protocol: Annotated[str, typer.Argument(help="seeding, media_exchange, passaging, harvest")],
    params: Annotated[Path, typer.Option("--params", "-p", help="parameters JSON")],
    config: ConfigOpt = DEFAULT_CONFIG,
    run_dir: RunDirOpt = None,
    culture_days: Annotated[
        float, typer.Option(help="days the plates grow before a non-seeding protocol", min=0)
    ] = 7.0,
) -> None:
    """Run a protocol on the simulated workcell and print what it did."""
    from protocols.dry_run import dry_run, load_params

    try:
        cfg = load_config(config)
        model = load_params(protocol, params)
        path = store_path(run_dir, new=True)
        report, wc = asyncio.run(dry_run(cfg, protocol, model, path, culture_days))
    except WorkcellError as e:
        raise _fail(e) from None
    except Exception as e:  # a device or resource error the plan did not foresee
        err.print(f"[bold red]dry-run of {protocol} failed:[/] {type(e).__name__}: {e}")
        raise typer.Exit(code=1) from None
    _print_report(protocol, cfg.name, report)
    if run_dir is not None:
        out.print(f"store: {run_dir / 'workcell.db'}")
    wc.store.close()


def _print_report(protocol: str, workcell: str, report: Any) -> None:
    prelude = (
        f" after {report.prelude_days:g} simulated days of culture" if report.prelude_days else ""
    )
    res = report.result
    outcome = (
        f"done, with a deviation: {res['deviation']}"
        if res.get("deviation")
        else "done, nothing failed"
    )
    out.print(f"[bold]dry-run of {protocol}[/] on {workcell!r}{prelude}: {outcome}")
    steps = Table("device: action", "count", title="Steps")
    for k, n in report.steps.items():
        steps.add_row(k, str(n))
    out.print(steps)
    reagents = Table("container", "volume (mL)", title="Reagents used")
    for name, ul in res.get("reagents_uL", {}).items():
        reagents.add_row(name, f"{ul / 1000:.3f}")
    out.print(reagents)
    vessels = res.get("vessels")
    if vessels and isinstance(vessels[0], dict):
        keys = [k for k in vessels[0] if k not in ("plate", "well")]
        vt = Table(*keys, title="Vessels")
        for v in vessels:
            vt.add_row(*(_fmt(v[k]) for k in keys))
        out.print(vt)
    for key, value in res.items():
        if key in ("reagents_uL", "vessels", "started", "finished", "tips_used"):
            continue
        out.print(f"{key}: {_fmt(value)}")
    out.print(f"tips used: {res.get('tips_used', 0)}")
    out.print(
        f"duration: {report.simulated_seconds:.0f} s simulated "
        f"({report.simulated_seconds / 60:.1f} min)"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:.3e}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return f"{len(value)}: " + ", ".join(map(str, value)) if value else "none"
    return str(value)


@app.command("export-opentrons")
def export_opentrons(
    protocol: Annotated[str, typer.Argument(help="seeding, media_exchange, passaging, harvest")],
    params: Annotated[Path, typer.Option("--params", "-p", help="parameters JSON")],
    output: Annotated[Path, typer.Option("--output", "-o", help="protocol file to write")],
    config: ConfigOpt = DEFAULT_CONFIG,
    culture_days: Annotated[float, typer.Option(min=0)] = 7.0,
) -> None:
    """Write a protocol as an Opentrons (OT-2) protocol file, after a dry-run of it."""
    from protocols.dry_run import load_params
    from protocols.export.opentrons import export, write

    try:
        _writable_output(output)
        cfg = load_config(config)
        model = load_params(protocol, params)
        result = asyncio.run(export(cfg, protocol, model, culture_days))
        write(result, output)
    except WorkcellError as e:
        raise _fail(e) from None
    moved = sum(v for k, v in result.volumes_uL.items() if k.startswith("aspirate"))
    out.print(f"wrote {output}: {result.tips} tips, {moved / 1000:.2f} mL aspirated in all")


@app.command()
def grow(
    config: ConfigOpt = DEFAULT_CONFIG,
    days: Annotated[int, typer.Option(help="simulated days to grow", min=1, max=60)] = 5,
    run_dir: RunDirOpt = None,
) -> None:
    """Seed a 6-well plate on the simulated workcell and grow it, printing a daily table."""
    from protocols.grow import DEMO_SEEDING, DayRow, run_demo

    t0 = time.perf_counter()
    table = Table(
        "day",
        "vessel",
        "cells (model)",
        "confluence (imager)",
        "viability",
        title=f"{DEMO_SEEDING.plates[0]} seeded at "
        f"{DEMO_SEEDING.density_cells_per_cm2:,.0f} cells/cm2",
    )

    def add(rows: list[DayRow]) -> None:
        for r in rows:
            table.add_row(
                str(r.day),
                r.vessel,
                f"{r.cells:,.0f}",
                f"{r.confluence_percent:5.1f} %",
                f"{r.viability_percent:5.1f} %",
            )
        table.add_section()

    try:
        cfg = load_config(config)
        result = asyncio.run(run_demo(cfg, days, store_path(run_dir, new=True), on_day=add))
    except WorkcellError as e:
        raise _fail(e) from None
    s = result.seeding
    out.print(
        f"seeded {len(s.vessels)} vessels with {s.tips_used} tips in "
        f"{s.duration_s / 60:.1f} simulated min"
    )
    out.print(table)
    out.print(f"{days} simulated days in {time.perf_counter() - t0:.2f} s wall time")


@app.command()
def campaign(
    config: ConfigOpt = DEFAULT_CONFIG,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="run folder; an existing one resumes (default: a new one in runs/)"),
    ] = None,
    params: Annotated[
        Path | None, typer.Option("--params", "-p", help="campaign parameters JSON")
    ] = None,
    auto_approve: Annotated[
        bool,
        typer.Option("--auto-approve", help="dry-run: approve every hold point (recorded as such)"),
    ] = False,
    without_prefect: Annotated[
        bool, typer.Option("--without-prefect", help="run the engine alone (CI, benchmarks)")
    ] = False,
    adopt_vessels: Annotated[
        bool,
        typer.Option(
            "--adopt-vessels",
            help="take over vessels already in the run folder instead of seeding (recorded)",
        ),
    ] = False,
) -> None:
    """Run (or resume) the expansion campaign as a Prefect flow, with a progress bar."""
    from protocols.campaign.engine import CampaignParams
    from workcell.cli.campaign import run_campaign_cli

    try:
        cfg = load_config(config)
        model = (
            CampaignParams.model_validate_json(params.read_text()) if params else CampaignParams()
        )
    except WorkcellError as e:
        raise _fail(e) from None
    except (OSError, ValueError) as e:
        raise _fail(WorkcellError(f"campaign parameters {params}: {e}")) from None
    code = run_campaign_cli(
        cfg,
        config,
        run_dir,
        model,
        auto_approve,
        out,
        err,
        without_prefect=without_prefect,
        adopt_vessels=adopt_vessels,
    )
    raise typer.Exit(code=code)


@app.command()
def plan(
    config: ConfigOpt = DEFAULT_CONFIG,
    params: Annotated[
        Path | None, typer.Option("--params", "-p", help="campaign parameters JSON")
    ] = None,
) -> None:
    """Print the campaign's capacity plan on a workcell; exit 2 if the dose cannot fit."""
    from protocols.campaign.engine import CampaignParams, plan_for
    from protocols.campaign.plan import plan_rows
    from workcell.assembly.build import build_workcell

    try:
        cfg = load_config(config)
        model = (
            CampaignParams.model_validate_json(params.read_text()) if params else CampaignParams()
        )
    except WorkcellError as e:
        raise _fail(e) from None
    except (OSError, ValueError) as e:
        raise _fail(WorkcellError(f"campaign parameters {params}: {e}")) from None
    if cfg.inventory is None:
        raise _fail(
            WorkcellError(f"{config}: no vessel inventory (hotel) in this config; nothing to plan")
        )
    wc = build_workcell(cfg)
    try:
        result = plan_for(wc, model)
    finally:
        import asyncio

        asyncio.run(wc.stop())  # the lab started for it (a dry-run's config) stops too
        wc.store.close()
    table = Table("capacity plan", "", title=f"{model.target_cells:.3g} cells on {cfg.name!r}")
    for k, v in plan_rows(result):
        table.add_row(k, v)
    out.print(table)
    if not result.fits:
        raise _fail(
            WorkcellError(
                "the dose does not fit this workcell: "
                + "; ".join(s.message for s in result.shortfalls)
            )
        )


@app.command()
def demo(
    run_dir: Annotated[Path | None, typer.Option(help="run folder (default: a new one)")] = None,
    small: Annotated[
        bool,
        typer.Option(
            "--small",
            help="a 3 kg dose on the small workcell (6-well plates on the deck) instead of the "
            "70 kg dose from one vial on the clinical workcell (OmniTrays from a hotel)",
        ),
    ] = False,
    rendered: Annotated[
        bool,
        typer.Option(
            "--rendered",
            help="render and measure every brightfield field (slower; default: the fast "
            "imaging path, the estimator's measured error)",
        ),
    ] = False,
) -> None:
    """The whole expansion campaign as a dry-run on the embedded simulated workcell: a 70 kg
    dose from one vial on the clinical workcell (``--small``: a 3 kg dose on 6-well plates)."""
    import yaml

    from protocols.campaign.engine import CampaignParams
    from workcell.cli.campaign import new_run_dir, run_campaign_cli
    from workcell.store import store_path

    path = DEFAULT_CONFIG.parent / "clinical.yaml"
    params = CampaignParams.model_validate_json(
        (DEFAULT_CONFIG.parent / "campaign-70kg.json").read_text()
    )
    if small:
        path, params = DEFAULT_CONFIG, CampaignParams()
    folder = run_dir or new_run_dir()
    try:
        store_path(folder)  # the folder can hold the record (and the demo's config)
    except WorkcellError as e:
        raise _fail(e) from None
    data = yaml.safe_load(path.read_text())
    mode = "rendered" if rendered else "fast"
    for dev in data["devices"].values():
        if dev.get("kind") == "imager" and dev.get("driver") == "simulated":
            dev["fidelity"] = {**dev.get("fidelity", {}), "mode": mode}
    path = folder / "demo-config.yaml"  # what the demo ran on, kept with its record
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out.print(f"imaging: {mode} path ({path})")
    code = run_campaign_cli(load_config(path), path, folder, params, True, out, err)
    raise typer.Exit(code=code)


FloorRunDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="the workcell's run folder, as `workcell serve` has it: floors are in its floors/ "
        "(default: runs/<workcell name>)"
    ),
]


def _floors_dir(config: Path, run_dir: Path | None) -> Path:
    """Where a workcell's floors are: ``<run folder>/floors``, as the UI's deployments have."""
    from flows.floor import FLOORS

    return (run_dir or Path("runs") / load_config(config).name) / FLOORS


@app.command()
def floor(
    name: Annotated[
        str,
        typer.Argument(
            help="the floor's name, its folder under floors/ (empty: a new one named after "
            "the date and the run); a stopped or killed floor's name resumes it"
        ),
    ] = "",
    config: ConfigOpt = DEFAULT_CONFIG,
    run_dir: FloorRunDirOpt = None,
    campaigns: Annotated[
        int, typer.Option(help="twin campaigns named c0, c1, ...", min=1, max=26)
    ] = 2,
    days: Annotated[float, typer.Option(help="days each campaign runs", min=1, max=60)] = 8,
    stagger_days: Annotated[
        float, typer.Option(help="days between the campaigns' starts", min=0)
    ] = 0.0,
    policy: Annotated[
        str, typer.Option(help="who gets the devices: fifo, priority, dispatch or cpsat")
    ] = "cpsat",
    specs: Annotated[
        Path | None,
        typer.Option(help="JSON list of campaigns (name, params, priority, start_day, donor)"),
    ] = None,
    pace: Annotated[
        float | None,
        typer.Option(
            help="simulated days per wall minute (default: as fast as the work allows); a "
            "slow pace leaves time for floor-join and floor-cancel",
            min=0.001,
            max=1440,
        ),
    ] = None,
) -> None:
    """Several campaigns on one simulated workcell, the scheduler deciding who goes next
    (a dry-run under Prefect; each campaign is a flow run of its own)."""
    from pydantic import TypeAdapter

    from flows.floor import named_floor
    from protocols.campaign.engine import CampaignParams
    from protocols.campaign.floor import CampaignSpec, FloorParams
    from protocols.campaign.scheduler import Policy, SchedulerParams
    from workcell.cli.floor import run_floor_cli

    try:
        floors = _floors_dir(config, run_dir)
        if name:  # refused here, before a server starts (the flow refuses it too)
            named_floor(floors, name)
        if not load_config(config).simulated:
            raise WorkcellError("the floor is a dry-run: it runs on a simulated workcell only")
        chosen = Policy(policy) if policy in {p.value for p in Policy} else None
        if chosen is None:
            raise WorkcellError(f"--policy {policy!r}: one of fifo, priority, dispatch, cpsat")
        if specs is not None:
            given = TypeAdapter(list[CampaignSpec]).validate_json(specs.read_text())
        else:
            given = [
                CampaignSpec(
                    name=f"c{i}",
                    params=CampaignParams(max_days=days, max_vessels=12),
                    start_day=i * stagger_days,
                )
                for i in range(campaigns)
            ]
        if not given or len({s.name for s in given}) != len(given):
            raise WorkcellError(f"{specs}: campaigns need names of their own (and at least one)")
        for where in (floors.parent, floors):
            if where.exists() and not where.is_dir():
                raise WorkcellError(f"{where} is not a folder")
    except WorkcellError as e:
        raise _fail(e) from None
    except (OSError, ValueError) as e:
        raise _fail(WorkcellError(f"campaigns {specs}: {e}")) from None
    params = FloorParams(scheduler=SchedulerParams(policy=chosen), pace_days_per_min=pace)
    code = run_floor_cli(floors, name, given, params, config, out, err)
    raise typer.Exit(code=code)


FloorNameOpt = Annotated[
    str,
    typer.Option(
        "--floor",
        help="the running floor's name (default: the one floor running; needed when several run)",
    ),
]


@app.command("floor-join")
def floor_join(
    spec: Annotated[
        Path, typer.Argument(help="JSON of the campaign (name, params, priority, start_day, donor)")
    ],
    floor: FloorNameOpt = "",
    config: ConfigOpt = DEFAULT_CONFIG,
    run_dir: FloorRunDirOpt = None,
) -> None:
    """Add a campaign to a floor that is running (``workcell floor``, or the UI's floor):
    it starts at the floor's present, a flow run of its own under the floor's."""
    from flows.floor import the_running_floor  # upward, lazily
    from flows.floor_requests import ask_floor
    from protocols.campaign.floor import CampaignSpec

    given = CampaignSpec.model_validate_json(spec.read_text())  # refused in one line each
    folder = the_running_floor(_floors_dir(config, run_dir), floor)
    out.print(asyncio.run(ask_floor(str(folder), "join", given.name, given)))


@app.command("floor-cancel")
def floor_cancel(
    campaign: Annotated[str, typer.Argument(help="the campaign to stop")],
    by: Annotated[
        str, typer.Option(help="who cancels it (a user id; recorded as typed, not authenticated)")
    ],
    reason: Annotated[str, typer.Option(help="why, for the batch record")],
    floor: FloorNameOpt = "",
    config: ConfigOpt = DEFAULT_CONFIG,
    run_dir: FloorRunDirOpt = None,
) -> None:
    """Stop a campaign on a floor that is running, before its next step (a step under way
    ends first); both records say who (as typed, with this OS user and host) and why."""
    from flows.floor import the_running_floor  # upward, lazily
    from flows.floor_requests import ask_floor, via_command_line
    from protocols.campaign.inbox import Cancel

    cancel = Cancel(campaign=campaign, by=by, reason=reason, via=via_command_line())
    folder = the_running_floor(_floors_dir(config, run_dir), floor)
    out.print(asyncio.run(ask_floor(str(folder), "cancel", campaign, cancel)))


@app.command()
def lab(
    config: ConfigOpt = DEFAULT_CONFIG,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            help="the lab's folder: its state and physical log (a run folder's lab is <run>/lab)",
        ),
    ] = Path("runs/lab"),
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0: any free port)")] = 0,
) -> None:
    """Run the simulated lab of a config in the foreground, until Ctrl-C.

    Controllers (dry-runs, the campaign, the flows) connect to it; it outlives them,
    keeps its state on disk after every action, and resumes that state when started
    again. Without it, they start a lab of their own that ends when they do.
    """
    from simulators.lab.process import write_spec
    from simulators.lab.server import main as serve_lab
    from workcell.assembly.lab import lab_spec

    try:
        spec = lab_spec(load_config(config))
        if spec is None:
            raise WorkcellError(
                f"{config}: every device is on a hardware driver; nothing to simulate"
            )
        write_spec(state_dir, spec)
    except (WorkcellError, RuntimeError) as e:
        raise _fail(e) from None
    serve_lab(["--state-dir", str(state_dir), "--port", str(port)])


@app.command()
def serve(
    config: ConfigOpt = DEFAULT_CONFIG,
    run_dir: Annotated[
        Path | None, typer.Option(help="the workcell's run folder (default: runs/<name>)")
    ] = None,
) -> None:
    """Serve a deployment of every flow to the Prefect API in PREFECT_API_URL."""
    from flows.serve import serve_workcell

    try:
        load_config(config)
    except WorkcellError as e:
        raise _fail(e) from None
    serve_workcell(str(config), str(run_dir) if run_dir else None)


def _facility_commands() -> None:
    from workcell.cli.facility import facility_app, worker

    app.command()(worker)
    app.add_typer(facility_app, name="facility")


_facility_commands()

RunDirArg = Annotated[Path, typer.Argument(help="the run folder (holds workcell.db)")]
app.add_typer(record_app, name="record")
app.add_typer(release_app, name="release")
app.add_typer(users_app, name="users")


def _open_store(run_dir: Path) -> Any:
    from workcell.store import STORE_FILE, Store

    path = run_dir / STORE_FILE
    if not path.is_file():
        raise _fail(WorkcellError(f"no batch record in {run_dir} (expected {path})"))
    try:
        return Store(path, read_only=True)
    except WorkcellError as e:
        raise _fail(e) from None


@app.command()
def lineage(run_dir: RunDirArg) -> None:
    """The tree from the vial through every passage to the harvest, with PD per plate."""
    from workcell.batch.lineage import lineage_tree

    store = _open_store(run_dir)
    try:
        out.print(lineage_tree(store))
    finally:
        store.close()


@app.command()
def report(
    run_dir: RunDirArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write")] = Path(
        "report.html"
    ),
    users: UsersOpt = None,
) -> None:
    """One self-contained HTML batch report: summary, plots, lineage, faults, release."""
    from protocols.campaign.report import write_report
    from workcell.batch.users import UserRegistry

    try:
        _writable_output(output)
    except WorkcellError as e:
        raise _fail(e) from None
    _open_store(run_dir).close()
    write_report(run_dir, output, registry=UserRegistry(users))
    out.print(f"wrote {output}")
