"""``workcell worker``: run one workcell's flow runs, and bring back those whose process died.

The worker registers the workcell's pool, deployments and shared-device limits,
then polls its pool (Prefect's process worker). Before it starts, and every
``RECONCILE_S`` while it runs, it looks for runs of its pool that Prefect still
shows as running, pending or paused in their process although that process is
gone (the worker or the machine died, or someone killed it):

* each is marked **Crashed** with a message naming the dead process;
* a campaign run is then put back as **AwaitingRetry** (scheduled now): the worker
  picks it up again, the flow starts from the top and the campaign continues from
  its run folder's store (every step is checkpointed; a dry-run step cut short is
  undone whole, and on hardware a step found started but not finished is a
  deviation for the operator). A campaign that crashed by itself (Prefect marked it)
  is brought back the same way, at most ``MAX_RESUMES`` times;
* a unit operation (seed, feed, passage, harvest) stays Crashed: whether its step
  landed is for the operator to check in the record before running it again.

The worker decides "gone" from the process id Prefect recorded for the run
(``infrastructure_pid``) on this computer, so it needs no heartbeat timeout and
raises no false alarm for a run that is merely slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings
from prefect.states import AwaitingRetry, Cancelled, Crashed
from prefect.workers.process import ProcessWorker

from flows.campaign import campaign
from flows.facility.children import alive
from flows.facility.deploy import register
from flows.facility.shared import ensure_limits
from workcell.assembly.config import WorkcellConfig

RECONCILE_S = 15.0
POLL_S = 2.0  # how often the worker asks for runs to start (Prefect's default: 10 s)
PENDING_GRACE_S = 120.0  # a run may sit in Pending this long while its process starts
MAX_RESUMES = 3
Say = Callable[[str], None]


def _engine_alive(pid: int) -> bool:
    """The run's process is alive and is still a flow run (not a reused pid)."""
    if not alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # not Linux, or not ours to read: trust the pid
    return b"engine" in cmdline or b"prefect" in cmdline


def _pid(run: FlowRun) -> int | None:
    raw = run.infrastructure_pid or ""
    raw = raw.rsplit(":", 1)[-1]  # some workers write host:pid
    return int(raw) if raw.isdigit() else None


async def _pool_runs(client: PrefectClient, pool: str, types: list[StateType]) -> list[FlowRun]:
    return await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types))
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        limit=200,
    )


async def _is_campaign(client: PrefectClient, run: FlowRun) -> bool:
    flow = await client.read_flow(run.flow_id)
    return flow.name == campaign.name


async def reconcile(client: PrefectClient, pool: str, say: Say) -> list[FlowRun]:
    """Mark the pool's runs whose process died Crashed; resume the campaigns among them."""
    now = datetime.now(UTC)
    resumed = []
    active = await _pool_runs(
        client, pool, [StateType.RUNNING, StateType.PENDING, StateType.PAUSED, StateType.CANCELLING]
    )
    for run in active:
        state = run.state
        assert state is not None
        if state.type is StateType.PAUSED and state.state_details.pause_reschedule:
            continue  # suspended: no process is meant to be there
        pid = _pid(run)
        if pid is not None and _engine_alive(pid):
            continue
        if pid is None:
            since = state.timestamp or now
            if now - since < timedelta(seconds=PENDING_GRACE_S):
                continue  # still starting
        what = f"process {pid}" if pid else "its process (never reported)"
        if state.type is StateType.CANCELLING:
            await client.set_flow_run_state(
                run.id, Cancelled(message=f"{what} is gone; cancelled"), force=True
            )
            continue
        await client.set_flow_run_state(
            run.id,
            Crashed(
                message=f"{what} on {socket.gethostname()} died while {state.name}; "
                "found by the workcell's worker"
            ),
            force=True,
        )
        say(f"flow run {run.name} ({run.id}): {what} died while {state.name}: marked Crashed")
    crashed = await _pool_runs(client, pool, [StateType.CRASHED])
    for run in crashed:
        if not await _is_campaign(client, run):
            continue
        if run.run_count > MAX_RESUMES:
            say(f"campaign run {run.name} crashed {run.run_count} times: left for the operator")
            continue
        await client.set_flow_run_state(
            run.id,
            AwaitingRetry(
                scheduled_time=datetime.now(UTC),
                message="resumed by the workcell's worker: the campaign continues from its store",
            ),
            force=True,
        )
        say(f"campaign run {run.name} ({run.id}): resumed from its store")
        resumed.append(run)
    return resumed


async def serve(
    cfg: WorkcellConfig,
    config_path: Path,
    run_dir: Path | None,
    say: Say,
    limit: int | None = None,
) -> None:
    """Register the workcell, then run its pool's flow runs until stopped."""
    async with get_client() as client:
        deployments = await register(client, cfg, config_path, run_dir)
        limits = await ensure_limits(client, cfg)
        say(f"work pool {cfg.name!r}: " + ", ".join(sorted(deployments)))
        if limits:
            say("shared devices (global concurrency limits): " + ", ".join(limits))
        await reconcile(client, cfg.name, say)

    async def watch() -> None:
        async with get_client() as client:
            while True:
                await asyncio.sleep(RECONCILE_S)
                with contextlib.suppress(Exception):  # the server may be restarting
                    await reconcile(client, cfg.name, say)

    name = f"{cfg.name}@{socket.gethostname()}"
    say(f"worker {name} polling work pool {cfg.name!r}")
    watcher = asyncio.create_task(watch())
    # runs start a few seconds after Submit: poll every POLL_S unless told otherwise
    poll = float(os.environ.get("PREFECT_WORKER_QUERY_SECONDS") or POLL_S)
    try:
        with temporary_settings({PREFECT_WORKER_QUERY_SECONDS: poll}):
            async with ProcessWorker(work_pool_name=cfg.name, name=name, limit=limit) as worker:
                await worker.start(with_healthcheck=False)
    finally:
        watcher.cancel()
