"""Deployments of every flow, served to the Prefect API for the UI to run.

``workcell serve --config FILE`` calls ``serve_workcell``: one deployment per flow,
named for the operation and the workcell (``seed @ sim-workcell``, ...,
``campaign @ sim-workcell``, ``release @ sim-workcell``), each with the config and
the run folder as default parameters, so an operator in the UI fills in only the
protocol's form. The serving process runs the flow runs itself, on this machine,
next to the instruments. A facility of several workcells uses ``workcell worker`` instead
(``flows.facility``): a work pool per workcell, and runs that survive a restart.
"""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.facility.deploy import deployment_name, flows_by_operation
from flows.steps import resolve


def deployments(config: str | None, run_dir: str | None) -> list[RunnerDeployment]:
    cfg, folder = resolve(config, run_dir)
    defaults = {
        "config": str(Path(config).resolve()) if config else None,
        "run_dir": str(folder.resolve()),
    }
    out = []
    for operation, f in flows_by_operation().items():
        dep = f.to_deployment(
            name=deployment_name(operation, cfg),
            parameters=defaults,
            tags=["msc-workcell", cfg.name],
        )
        assert isinstance(dep, RunnerDeployment)  # called outside an event loop: not awaitable
        out.append(dep)
    return out


def serve_workcell(config: str | None, run_dir: str | None, limit: int | None = None) -> None:
    """Serve until interrupted; ``limit`` caps flow runs at once (devices lock anyway)."""
    serve(*deployments(config, run_dir), limit=limit, print_starting_message=True)
