"""Deployments of every flow, served to the Prefect API for the UI to run.

``workcell serve --config FILE`` calls ``serve_workcell``: one deployment per flow,
named for the operation and the workcell (``seed @ sim-workcell``, ..., ``campaign @
sim-workcell``, ``release @ sim-workcell``, and ``floor @ sim-workcell``: several
campaigns under the scheduler, ``flows/floor.py``). The plumbing is fixed by the deployment and
kept off the form (``flows.forms.plumbing``): the config file, the run folder of the
unit operations (``runs/<workcell name>`` unless ``--run-dir``), and the folder under
which each campaign gets a run folder of its own (``<run folder>/campaigns``; a campaign
told to adopt vessels with no batch named takes over the unit operations' run folder).
The form is the protocol's pydantic model with this workcell's plates, wells and
reservoirs as dropdowns (``flows.forms.form_schema``).

The serving process runs the flow runs itself, on this machine, next to the
instruments, and asks the API for new runs every ``POLL_S`` seconds (Prefect's
default is 10 s), so a run starts a few seconds after Submit. A facility of several
workcells uses ``workcell worker`` instead (``flows.facility``): a work pool per
workcell, and runs that survive a restart.
"""

from __future__ import annotations

import os

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.facility.deploy import deployment_name, flows_by_operation
from flows.forms import describe_deployment, form_schema, plumbing
from flows.steps import resolve

POLL_S = 2.0
POLL_ENV = "PREFECT_RUNNER_POLL_FREQUENCY"


def deployments(config: str | None, run_dir: str | None) -> list[RunnerDeployment]:
    cfg, folder = resolve(config, run_dir)
    out = []
    for operation, f in flows_by_operation().items():
        defaults = plumbing(operation, config, folder)
        dep = f.to_deployment(
            name=deployment_name(operation, cfg),
            parameters=defaults,
            tags=["msc-workcell", cfg.name],
            description=describe_deployment(f, cfg, defaults),
        )
        assert isinstance(dep, RunnerDeployment)  # called outside an event loop: not awaitable
        dep._parameter_openapi_schema = form_schema(f, cfg)
        out.append(dep)
    return out


def serve_workcell(config: str | None, run_dir: str | None, limit: int | None = None) -> None:
    """Serve until interrupted; ``limit`` caps flow runs at once (devices lock anyway)."""
    poll = float(os.environ.get(POLL_ENV) or POLL_S)
    serve(
        *deployments(config, run_dir),
        limit=limit,
        # Prefect pauses every deployment on the way out, through the API; with the API
        # gone first (a server stopped before its workcell) that call retries for long.
        # Nothing here runs on a schedule, and a run asked for while the workcell is down
        # should wait for it, not find it paused. (Its shutdown can still wait on the
        # gone API elsewhere: a second SIGTERM ends it at once.)
        pause_on_shutdown=False,
        print_starting_message=True,
        query_seconds=poll,
    )
