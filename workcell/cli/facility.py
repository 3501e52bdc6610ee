"""``workcell worker`` and ``workcell facility``: several workcells on one Prefect server.

``workcell facility up --dir FOLDER`` runs PostgreSQL and a Prefect server on it
(both on 127.0.0.1) in the foreground until Ctrl-C, and prints the
``PREFECT_API_URL`` to give every worker. ``workcell worker --config FILE`` runs
next to one workcell: it registers the workcell's work pool and deployments
(``passage @ workcell-a``) and runs their flow runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workcell.assembly.config import load_config
from workcell.errors import WorkcellError

out = Console()
err = Console(stderr=True, soft_wrap=True)
facility_app = typer.Typer(
    no_args_is_help=True, help="A facility's Prefect server on PostgreSQL (127.0.0.1)."
)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


def worker(
    config: Annotated[Path, typer.Option("--config", "-c", help="the workcell's config YAML")],
    run_dir: Annotated[
        Path | None, typer.Option(help="the workcell's run folder (default: runs/<name>)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="most flow runs at once (devices take turns anyway)", min=1)
    ] = None,
) -> None:
    """Run this workcell's flow runs from the Prefect server in PREFECT_API_URL."""
    if not os.environ.get("PREFECT_API_URL"):
        raise _fail(
            "set PREFECT_API_URL to the facility's Prefect server "
            "(`workcell facility up` prints it)"
        )
    try:
        cfg = load_config(config)
    except WorkcellError as e:
        raise _fail(str(e)) from None
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.facility.worker import serve

    try:
        asyncio.run(serve(cfg, config, run_dir, lambda m: out.print(m, highlight=False), limit))
    except KeyboardInterrupt:
        out.print("worker stopped")


@facility_app.command("up")
def facility_up(
    folder: Annotated[
        Path, typer.Option("--dir", help="keeps the database and Prefect's home between starts")
    ],
    port: Annotated[int, typer.Option(help="the Prefect API and UI port")] = 4200,
    db_port: Annotated[int, typer.Option(help="PostgreSQL's port (0: any free one)")] = 0,
    ui: Annotated[bool, typer.Option(help="serve the Prefect UI")] = True,
    host: Annotated[
        str, typer.Option(help="where the API and UI listen (0.0.0.0: for other computers)")
    ] = "127.0.0.1",
) -> None:
    """Run PostgreSQL and the Prefect server until Ctrl-C; print PREFECT_API_URL."""
    from flows.facility.postgres import PostgresCluster, PostgresError
    from flows.facility.server import PrefectServer, ServerError

    folder = folder.resolve()
    pg = PostgresCluster(folder / "postgres", port=db_port)
    try:
        pg.start()
        out.print(f"PostgreSQL on 127.0.0.1:{pg.port} (data in {pg.data})")
        server = PrefectServer(pg.url, folder / "prefect-home", port=port, ui=ui, host=host).start()
    except (PostgresError, ServerError) as e:
        pg.stop()
        raise _fail(str(e)) from None
    out.print(f"Prefect server on PostgreSQL: {server.api_url} (UI: http://127.0.0.1:{port})")
    out.print(f"for each workcell:  PREFECT_API_URL={server.api_url} workcell worker --config ...")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C, or a service manager's stop
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if server.proc is None or server.proc.poll() is not None:
                err.print("the Prefect server stopped; see its log in " + str(server.home))
                break
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        pg.stop()
        out.print("facility stopped")
