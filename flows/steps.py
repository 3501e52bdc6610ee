"""How a workcell step becomes a Prefect task, and how a refusal reads in the UI.

A task is a meaningful step (one plate's feed, one passage, a wait until the next
decision), never a single aspirate, so orchestration stays a small share of the
run. Tasks get the live workcell session through a closure, so their results are
neither cached nor persisted: the store in the run folder is the record.

A step that ends with a ``WorkcellError`` (a plan refused before anything moved,
a device that failed after its retries) ends its task as Failed with the error as
one readable line, and no traceback: the flow then ends the run Failed with the
same line as its state message, which is what the UI shows at the top of the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import FailedRun
from prefect.states import Failed, State

from workcell.assembly.config import WorkcellConfig, load_config
from workcell.errors import ProtocolRefused, WorkcellError

RUNS_DIR = Path("runs")


class StepFailed(WorkcellError):
    """A step's task ended Failed on a workcell error; the message is its one line."""


def one_line(err: BaseException) -> str:
    """An error as one line a person reads (a refusal lists its problems with '; ')."""
    if isinstance(err, ProtocolRefused):
        return f"{err.protocol} refused before any device moved: " + "; ".join(err.problems)
    return " ".join(str(err).split()) or type(err).__name__


@task(cache_policy=NO_CACHE, persist_result=False)
async def workcell_step(work: Callable[[], Awaitable[object]]) -> object:
    try:
        return await work()
    except WorkcellError as err:
        line = one_line(err)
        get_run_logger().error(line)
        return Failed(message=line)


async def as_task(label: str, work: Callable[[], Awaitable[object]]) -> object:
    """Run ``work`` as one Prefect task named after the step."""
    state: State[Any] = await workcell_step.with_options(task_run_name=label)(  # type: ignore[misc]
        work, return_state=True
    )
    try:
        return await state.aresult()
    except FailedRun:  # the step's own one-line Failed state, not an exception
        raise StepFailed(state.message or f"{label} failed") from None


def resolve(config: str | None, run_dir: str | None) -> tuple[WorkcellConfig, Path]:
    """The workcell config (embedded simulated one by default) and the run folder."""
    cfg = load_config(config)
    return cfg, Path(run_dir) if run_dir else RUNS_DIR / cfg.name


def flow_run_id() -> str | None:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
