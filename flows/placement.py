"""Where a flow run runs: on its own workcell, and nowhere else.

A flow run picked up by a worker carries its work pool's name, and every workcell
has a pool of its own named after it (``flows.facility.deploy``). ``open_run``
refuses a run whose pool is another workcell's (someone pointed ``passage @
workcell-a`` at workcell B's config), records which flow run, deployment, pool
and process opened the run folder (``flow_run_opened``, so the record says who
touched which workcell), and guards the workcell's shared devices with Prefect
global concurrency limits when the run comes from a worker (file locks on this
computer otherwise: a run started from the command line).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from prefect.context import FlowRunContext

from flows.facility.shared import prefect_shared_guard
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.session import Session, local_shared_guard, open_session
from workcell.errors import WorkcellError


def current_pool() -> str | None:
    ctx = FlowRunContext.get()
    return ctx.flow_run.work_pool_name if ctx and ctx.flow_run else None


def check_placement(cfg: WorkcellConfig) -> str | None:
    """The run's work pool, after checking it is this workcell's."""
    pool = current_pool()
    if pool is not None and pool != cfg.name:
        raise WorkcellError(
            f"this flow run came from work pool {pool!r} but its config is workcell "
            f"{cfg.name!r}: a run acts only on the workcell of its pool"
        )
    return pool


@contextlib.asynccontextmanager
async def open_run(cfg: WorkcellConfig, folder: Path) -> AsyncIterator[Session]:
    pool = check_placement(cfg)
    guard = prefect_shared_guard if pool is not None else local_shared_guard
    async with open_session(cfg, folder, shared_guard=guard) as session:
        ctx = FlowRunContext.get()
        if ctx is not None and ctx.flow_run is not None:
            fr = ctx.flow_run
            session.wc.event(
                "flow_run_opened",
                "prefect",
                flow_run=str(fr.id),
                name=fr.name,
                flow=ctx.flow.name if ctx.flow else "",
                deployment=str(fr.deployment_id) if fr.deployment_id else None,
                work_pool=pool,
                workcell=cfg.name,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
        yield session
