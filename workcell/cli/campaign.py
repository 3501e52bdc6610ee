"""The terminal face of a campaign run: progress bar, growth table, batch summary.

Used by ``workcell campaign`` and ``workcell demo``. The campaign itself runs as
the Prefect flow (an ephemeral Prefect server when no ``PREFECT_API_URL`` is
set); this module only shows it.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from protocols.campaign.adoption import check_run_folder
from protocols.campaign.engine import (
    DAY_S,
    CampaignEngine,
    CampaignParams,
    CampaignSummary,
    auto_approve,
    summarize,
    summary_rows,
)
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.session import open_session
from workcell.batch.integrity import refuse_damaged
from workcell.errors import DeviceError, HeldForOperator, WorkcellError
from workcell.store import STORE_FILE, Store, store_path

HELD = 3  # the exit code of a run stopped at a hold point (a device fault, a closed window)


def new_run_dir() -> Path:
    return Path("runs") / datetime.now(UTC).strftime("campaign-%Y%m%d-%H%M%S")


def run_campaign_cli(
    cfg: WorkcellConfig,
    config_path: Path | None,
    run_dir: Path | None,
    params: CampaignParams,
    auto_approve: bool,
    out: Console,
    err: Console,
    without_prefect: bool = False,
    adopt_vessels: bool = False,
) -> int:
    if not auto_approve and not os.environ.get("PREFECT_API_URL"):
        err.print(
            "[bold red]error:[/] the campaign pauses for an operator before harvest and on "
            "deviations; a dry-run answers those only with --auto-approve. To decide yourself, "
            "start a Prefect server, set PREFECT_API_URL, and answer in the Prefect UI."
        )
        return 2
    if auto_approve and not cfg.simulated:
        err.print("[bold red]error:[/] --auto-approve is for simulated workcells only")
        return 2
    if without_prefect and not auto_approve:
        err.print("[bold red]error:[/] --without-prefect has no UI to ask: add --auto-approve")
        return 2
    from flows.ephemeral import ServerStartError, startup_timeout_s  # upward, lazily

    if not without_prefect and not os.environ.get("PREFECT_API_URL"):
        try:
            startup_timeout_s()  # before Prefect reads it
        except ValueError as e:
            err.print(f"[bold red]error:[/] {e}")
            return 2
    folder = run_dir or new_run_dir()
    try:  # before Prefect starts: a folder that cannot hold the record, or a damaged one
        store_path(folder)
        refuse_damaged(folder / STORE_FILE)
    except WorkcellError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        return 2

    out.print(f"expansion campaign on {cfg.name!r}, run folder {folder}")
    out.print(
        f"target {params.target_cells:.3g} viable cells "
        f"({params.target_dose_cells_per_kg:.3g} cells/kg x {params.patient_weight_kg:g} kg)"
    )
    t0 = time.perf_counter()
    with Progress(
        TextColumn("[bold]campaign"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=out,
        transient=False,
    ) as bar:
        tid = bar.add_task("starting (Prefect)", total=100)

        def show(percent: float, text: str) -> None:
            bar.update(tid, completed=percent, description=text)

        try:
            if without_prefect:
                summary = asyncio.run(_engine_only(cfg, folder, params, show, adopt_vessels))
            else:
                summary = _as_flow(
                    config_path, folder, params, auto_approve, show, out.print, adopt_vessels
                )
        except (DeviceError, HeldForOperator) as e:
            err.print(
                f"[bold red]held for the operator:[/] {e}\nThe step is recorded as held; "
                f"check the device and the vessels, then run the same command to resume "
                f"(run folder {folder})."
            )
            return HELD
        except WorkcellError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            return 2
        except (ServerStartError, ValueError) as e:
            err.print(f"[bold red]error:[/] {e}")
            return 1
    wall = time.perf_counter() - t0
    store = Store(folder / STORE_FILE)
    try:
        out.print(growth_table(store))
    finally:
        store.close()
    out.print(summary_table(summary, wall))
    out.print(f"record: {folder / STORE_FILE}")
    return 0 if summary.outcome.startswith("harvested") else 1


class CampaignEnded(WorkcellError):
    """The campaign flow ended Failed or Cancelled; the message is its state's."""


def _as_flow(
    config_path: Path | None,
    folder: Path,
    params: CampaignParams,
    auto_approve: bool,
    show: Callable[[float, str], None],
    say: Callable[[str], None],
    adopt_vessels: bool = False,
) -> CampaignSummary:
    """The campaign flow, on the Prefect API in PREFECT_API_URL or a temporary one."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the bar, not a log per task
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline
    from flows.ephemeral import prefect_api

    # the flow's modules load while a temporary server starts
    with prefect_api(say, meanwhile=lambda: importlib.import_module("flows.campaign")):
        from flows.campaign import campaign, progress_listeners

        progress_listeners.append(show)
        try:
            state: Any = asyncio.run(
                campaign(  # type: ignore[arg-type]
                    params=params,
                    config=str(config_path) if config_path else None,
                    run_dir=str(folder),
                    auto_approve_dry_run=auto_approve,
                    adopt_vessels=adopt_vessels,
                    return_state=True,
                )
            )
            if state.is_completed():
                return asyncio.run(state.aresult())  # type: ignore[no-any-return]
            if not (folder / STORE_FILE).exists():
                raise CampaignEnded(state.message or state.name)
            say(f"campaign ended {state.name}: {state.message}")
            return _summary(folder, params)
        finally:
            progress_listeners.remove(show)


def _summary(folder: Path, params: CampaignParams) -> CampaignSummary:
    store = Store(folder / STORE_FILE)
    try:
        if not store.events("campaign_started"):
            raise CampaignEnded("the campaign did not start (see the message above)")
        return summarize(store, params)
    finally:
        store.close()


async def _engine_only(
    cfg: WorkcellConfig,
    folder: Path,
    params: CampaignParams,
    show: Callable[[float, str], None],
    adopt_vessels: bool = False,
) -> CampaignSummary:
    """The same campaign engine without Prefect: for CI and for benchmarks of the engine."""
    async with open_session(cfg, folder) as session:
        check_run_folder(session.wc, adopt_vessels, "command line")
        summary = await CampaignEngine(session, params, auto_approve(), progress=show).run()
    show(100.0, summary.outcome)
    return summary


PLATE_COLUMNS = 12  # more plates than this: a column per passage, not per plate


def growth_table(store: Store) -> Table:
    """Per day and plate: mean imaged confluence of the plate's vessels.

    A campaign of more plates than fit a terminal's columns (the 70 kg dose: 54 trays)
    gets a column per passage instead: the plates' mean, and the lowest and highest.
    """
    started = store.events("campaign_started")
    if not started:
        return Table(title="no campaign in this run folder")
    t0 = started[0].time
    vessels = store.vessels()
    plate_of = {v.id: v.plate for v in vessels}
    passage_of = {v.plate: v.passage for v in vessels}
    cells: dict[tuple[int, str], list[float]] = defaultdict(list)
    for m in store.measurements(kind="confluence"):
        if m.vessel_id in plate_of:
            day = int((m.time - t0).total_seconds() // DAY_S)
            cells[(day, plate_of[m.vessel_id])].append(m.value)
    plates = sorted({p for _, p in cells}, key=lambda p: (len(p), p))
    days = sorted({d for d, _ in cells})
    mean = {k: 100 * sum(v) / len(v) for k, v in cells.items()}
    if len(plates) <= PLATE_COLUMNS:
        table = Table("day", *plates, title="mean confluence per plate (imager), %")
        for day in days:
            row = [f"{mean[(day, p)]:.0f}" if (day, p) in mean else "" for p in plates]
            table.add_row(str(day), *row)
        return table
    passages = sorted({passage_of[p] for p in plates})
    members = {n: [p for p in plates if passage_of[p] == n] for n in passages}
    table = Table(
        "day",
        *(f"P{n} ({len(members[n])} plates)" for n in passages),
        title="mean confluence of the plates at each passage (imager), %: mean (lowest-highest)",
    )
    for day in days:
        row = []
        for n in passages:
            vals = [mean[(day, p)] for p in members[n] if (day, p) in mean]
            row.append(
                f"{sum(vals) / len(vals):.0f} ({min(vals):.0f}-{max(vals):.0f}), {len(vals)} imaged"
                if vals
                else ""
            )
        table.add_row(str(day), *row)
    return table


def summary_table(s: CampaignSummary, wall_s: float) -> Table:
    t = Table("batch summary", "", title="expansion campaign")
    for k, v in [*summary_rows(s), ("wall seconds", f"{wall_s:.1f}")]:
        t.add_row(k, v)
    return t
