"""The terminal face of the floor: several campaigns on one workcell under the scheduler.

``workcell floor [NAME]`` runs the ``workcell-floor`` flow (``flows/floor.py``) on the
Prefect API in ``PREFECT_API_URL``, or on a temporary server it starts, and prints
each campaign's outcome and the floor's figures. The floor's folder follows the UI's
rule: ``<run folder>/floors/NAME`` (``--run-dir``, default ``runs/<workcell>``, as
``workcell serve``), a new dated one with no NAME. Each campaign is a flow run of its
own under the floor's. Running it again with the same NAME resumes the floor after a
stop or a kill (the interrupted campaign's step first); a floor that ran to its end
keeps its name. While it runs, another terminal adds a campaign (``workcell floor-join
SPEC.json``) or stops one (``workcell floor-cancel NAME --by ID --reason WHY``), each
finding the running floor by itself (``--floor`` when several run); a joined campaign
gets its bar here when it starts.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from protocols.campaign.engine import DAY_S, summarize
from protocols.campaign.floor import CampaignSpec, FloorParams, FloorResult
from workcell.store import STORE_FILE, Store


def run_floor_cli(
    floors_dir: Path,
    name: str,
    specs: list[CampaignSpec],
    params: FloorParams,
    config: Path | None,
    out: Console,
    err: Console,
) -> int:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline
    from flows.ephemeral import ServerStartError, prefect_api  # upward, lazily
    from flows.floor import floor_flow, folder_listeners, granted_in_record, progress_listeners

    chosen: list[Path] = []

    def where(folder: Path) -> None:
        chosen.append(folder)
        out.print(
            f"floor {folder.name} ({folder}): {len(specs)} campaigns under "
            f"{params.scheduler.policy.value} ({', '.join(s.name for s in specs)}), each a "
            "flow run of its own"
        )

    bars = Progress(
        TextColumn("[bold]{task.fields[campaign]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=out,
    )
    tasks: dict[str, TaskID] = {}

    def show(campaign: str, percent: float, text: str) -> None:
        if campaign not in tasks:
            tasks[campaign] = bars.add_task("", total=100, campaign=campaign)
        bars.update(tasks[campaign], completed=percent, description=text)

    progress_listeners.append(show)
    folder_listeners.append(where)
    try:
        with prefect_api(out.print), bars:
            state: Any = asyncio.run(
                floor_flow(  # type: ignore[arg-type]
                    name=name,
                    campaigns=specs,
                    floors_dir=str(floors_dir),
                    params=params,
                    config=str(config) if config else None,
                    return_state=True,
                )
            )
            if not state.is_completed():
                err.print(f"[bold red]error:[/] the floor ended {state.name}: {state.message}")
                return 1
            result: FloorResult = asyncio.run(state.aresult())
    except (ServerStartError, ValueError) as e:
        err.print(f"[bold red]error:[/] {e}")
        return 1
    finally:
        progress_listeners.remove(show)
        folder_listeners.remove(where)
    folder = chosen[-1]
    table = Table(title=f"floor {folder.name}")
    for col in ("campaign", "outcome", "scheduled grants"):
        table.add_column(col)
    for s in result.specs:  # those that joined while it ran too
        path = folder / s.name / STORE_FILE
        if s.name in result.cancelled:
            table.add_row(s.name, f"cancelled by {result.cancelled[s.name]}", "-")
            continue
        if not path.exists():
            table.add_row(s.name, "not admitted (incubator slots)", "0")
            continue
        store = Store(path)
        try:
            outcome = summarize(store, s.params).outcome
            table.add_row(s.name, outcome, str(store.count_events("scheduled")))
        finally:
            store.close()
    out.print(table)
    solve = max(result.solve_s, default=0.0)
    recorded = granted_in_record(folder)  # a resumed floor: the runs before it too
    before = f" ({recorded} in all, with the runs it resumed)" if recorded != result.grants else ""
    out.print(
        f"{result.grants} grants{before}, {result.plans} plans (slowest {solve:.3f} s, "
        f"{result.fallbacks} fallbacks, {result.stops.get('wall-time safety net', 0)} "
        f"stopped by the wall-time safety net), day {result.end_s / DAY_S:.2f}; "
        f"record: {folder / 'floor.sqlite'}"
    )
    return 0
