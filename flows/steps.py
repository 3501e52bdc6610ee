"""How a workcell step becomes a Prefect task, and the artifacts the UI shows.

A task is a meaningful step (one plate's feed, one passage, a wait until the next
decision), never a single aspirate, so orchestration stays a small share of the
run. Tasks get the live workcell session through a closure, so their results are
neither cached nor persisted: the store in the run folder is the record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from workcell.assembly.config import WorkcellConfig, load_config
from workcell.errors import WorkcellError
from workcell.operator import Answer, Ask, Hold
from workcell.store import Store

RUNS_DIR = Path("runs")


@task(cache_policy=NO_CACHE, persist_result=False)
async def workcell_step(work: Callable[[], Awaitable[object]]) -> object:
    return await work()


async def as_task(label: str, work: Callable[[], Awaitable[object]]) -> object:
    """Run ``work`` as one Prefect task named after the step."""
    return await workcell_step.with_options(task_run_name=label)(work)


def resolve(config: str | None, run_dir: str | None) -> tuple[WorkcellConfig, Path]:
    """The workcell config (embedded simulated one by default) and the run folder."""
    cfg = load_config(config)
    return cfg, Path(run_dir) if run_dir else RUNS_DIR / cfg.name


def _key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


async def publish_vessels(store: Store, run: str) -> None:
    """The vessel table (where each vessel is, its passage, state, last confluence)."""
    last_conf: dict[str, float] = {}
    for m in store.measurements(kind="confluence"):
        if m.vessel_id:
            last_conf[m.vessel_id] = m.value
    rows = [
        {
            "vessel": v.id,
            "plate": v.plate,
            "passage": v.passage,
            "state": v.state,
            "location": v.location,
            "parents": ", ".join(v.parents),
            "confluence_percent": round(100 * last_conf[v.id], 1) if v.id in last_conf else None,
        }
        for v in store.vessels()
    ]
    await acreate_table_artifact(
        table=rows, key=f"vessels-{_key(run)}", description=f"vessels of {run}"
    )


async def publish_result(title: str, result: BaseModel | dict[str, Any] | None) -> None:
    """A markdown artifact with a unit operation's result, field by field."""
    data = result.model_dump(mode="json") if isinstance(result, BaseModel) else (result or {})
    lines = [f"# {title}", "", "| field | value |", "|---|---|"]
    for name, value in data.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        text = str(value)
        lines.append(f"| {name} | {text if len(text) < 200 else text[:197] + '...'} |")
    await acreate_markdown_artifact(markdown="\n".join(lines), description=title)


def prefect_hold(timeout_s: int) -> Ask:
    """A protocol's hold point as a paused flow run: the Prefect UI shows the operator form."""

    async def ask(hold: Hold) -> Answer:
        from uuid import uuid4

        from prefect import get_run_logger
        from prefect.flow_runs import apause_flow_run

        get_run_logger().warning("hold for the operator (%s): %s", hold.kind, hold.reason)
        answer = await apause_flow_run(
            wait_for_input=Answer,
            timeout=timeout_s,
            poll_interval=2,
            key=f"hold-{hold.kind}-{uuid4().hex[:8]}",
        )
        if answer is None:
            raise WorkcellError(f"no operator decision on {hold.kind!r} within {timeout_s} s")
        return Answer.model_validate(answer.model_dump())

    return ask
