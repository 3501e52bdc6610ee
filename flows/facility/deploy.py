"""A workcell's work pool and its deployments, named for the people who run them.

Each workcell has a work pool of its own, named after the workcell; its
deployments (``seed @ workcell-a``, ``passage @ workcell-a``, ...,
``campaign @ workcell-a``) are bound to that pool, so a run started from any of
them is picked up by that workcell's worker and by no other. The pool's job
template starts each flow run as a direct child of the worker
(``python -m flows.facility.engine``), so the runs end with their worker and a
restarted worker can tell which of its runs died (``flows.facility.worker``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.types.entrypoint import EntrypointType
from prefect.workers.process import ProcessWorker

from flows.campaign import campaign
from flows.floor import floor_flow
from flows.floor_requests import cancel_on_floor, join_floor
from flows.forms import describe_deployment, form_schema, plumbing
from flows.operations import OPERATION_FLOWS
from flows.release import release
from flows.steps import RUNS_DIR
from workcell.assembly.config import WorkcellConfig

ENGINE_COMMAND = f"{sys.executable} -m flows.facility.engine"
CAMPAIGN = "campaign"
RELEASE = "release"  # the batch release, started by a harvested campaign
FLOOR = "floor"  # several campaigns on this workcell under the scheduler (a dry-run)
JOIN_FLOOR = "join floor"  # a campaign joins the running floor
CANCEL_ON_FLOOR = "cancel on floor"  # a campaign on the running floor stops


def pool_name(cfg: WorkcellConfig) -> str:
    return cfg.name


def deployment_name(operation: str, cfg: WorkcellConfig) -> str:
    """What the UI lists in large type: the operation, then the workcell."""
    return f"{operation} @ {cfg.name}"


def flows_by_operation() -> dict[str, Flow[..., Any]]:
    return {
        **OPERATION_FLOWS,
        CAMPAIGN: campaign,
        RELEASE: release,
        FLOOR: floor_flow,
        JOIN_FLOOR: join_floor,
        CANCEL_ON_FLOOR: cancel_on_floor,
    }


def job_template() -> dict[str, Any]:
    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = ENGINE_COMMAND
    return template


async def ensure_pool(client: PrefectClient, cfg: WorkcellConfig) -> str:
    """Create the workcell's process work pool (or bring its job template up to date)."""
    name = pool_name(cfg)
    template = job_template()
    description = f"flow runs of workcell {cfg.name}; served by `workcell worker` next to it"
    try:
        await client.read_work_pool(name)
    except ObjectNotFound:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name, type="process", base_job_template=template, description=description
            )
        )
    else:
        await client.update_work_pool(
            name, WorkPoolUpdate(base_job_template=template, description=description)
        )
    return name


async def register(
    client: PrefectClient, cfg: WorkcellConfig, config_path: Path, run_dir: Path | None
) -> dict[str, Any]:
    """The pool and one deployment per flow; returns deployment name -> id."""
    pool = await ensure_pool(client, cfg)
    folder = (run_dir or RUNS_DIR / cfg.name).resolve()
    ids = {}
    for operation, f in flows_by_operation().items():
        defaults = plumbing(operation, str(config_path), folder)
        dep = await f.ato_deployment(
            name=deployment_name(operation, cfg),
            parameters=defaults,
            tags=["msc-workcell", cfg.name],
            work_pool_name=pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=describe_deployment(f, cfg, defaults),
        )
        assert isinstance(dep, RunnerDeployment)
        dep._parameter_openapi_schema = form_schema(f, cfg)  # this workcell's run form
        ids[dep.name] = await dep.aapply(work_pool_name=pool)
    return ids
