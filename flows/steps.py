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

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import FailedRun
from prefect.states import Failed, State

from flows.artifacts import key as artifact_key
from workcell import anchor
from workcell.anchor import Anchor
from workcell.assembly.config import WorkcellConfig, load_config
from workcell.errors import HeldForOperator, ProtocolRefused, WorkcellError
from workcell.operator import Answer, Ask, Hold
from workcell.store import STORE_FILE

RUNS_DIR = Path("runs")

# Prefect imports FastAPI's encoder inside a process's first flow run, where it serializes
# the run's parameters (``Flow.serialize_parameters``): about 0.12 s of a 2-core machine
# between the call and the flow's first line. Imported with the flows instead, it is
# paid where they are imported: ``workcell demo`` and ``workcell campaign`` import them
# while the temporary Prefect server starts, so it no longer adds to the campaign.
with contextlib.suppress(ImportError):  # a Prefect without FastAPI imports nothing there
    import fastapi.encoders  # noqa: F401


class StepFailed(WorkcellError):
    """A step's task ended Failed on a workcell error; the message is its one line."""


def one_line(err: BaseException) -> str:
    """An error as one line a person reads (a refusal lists its problems with '; ')."""
    if isinstance(err, ProtocolRefused):
        return f"{err.protocol} refused before any device moved: " + "; ".join(err.problems)
    return " ".join(str(err).split()) or type(err).__name__


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="{label}")
async def workcell_step(label: str, work: Callable[[], Awaitable[object]]) -> object:
    """One step as a task run named ``label`` (a template, not a copy of the task per
    step: copying it is a tenth of a step's Prefect cost, and a label is never parsed
    as a template itself)."""
    try:
        return await work()
    except WorkcellError as err:
        line = one_line(err)
        get_run_logger().error(line)
        return Failed(message=line)


async def as_task(
    label: str,
    work: Callable[[], Awaitable[object]],
    folder: Path | None = None,
    heads: HeadPublisher | None = None,
) -> object:
    """Run ``work`` as one Prefect task named after the step; then publish the record's
    head that the step anchored (``folder``: the run folder, every step; ``heads``: at
    most as often as it allows)."""
    state: State[Any] = await workcell_step(label, work, return_state=True)  # type: ignore[misc]
    try:
        result = await state.aresult()
    except FailedRun:  # the step's own one-line Failed state, not an exception
        raise StepFailed(state.message or f"{label} failed") from None
    if folder is not None:
        await publish_head(folder)
    if heads is not None:
        await heads.step_ended()
    return result


class HeadPublisher:
    """The run's record head published as its artifact at most every ``every_s`` wall
    seconds, and whenever ``flush`` is called: before a hold (a run may wait there for
    days), at a hand-over and at the end, failed or not.

    A dry-run finishes several steps a second and each artifact is a write on the
    Prefect server, which shares the machine; on hardware a step takes minutes, so
    every step's head is still published. The anchor file beside the store keeps
    every step's head either way.

    After a step the head goes out in the background (the next step does not wait
    for the server's answer: 30 ms on a 2-core machine); ``flush`` waits for it. A
    publication that failed raises at the next step's end or at ``flush``, as it
    would have raised at once.
    """

    def __init__(self, folder: Path, every_s: float = 2.0) -> None:
        self.folder = folder
        self.every_s = every_s
        self._last = -every_s  # monotonic seconds of the last publication
        self._pending = False
        self._sending: asyncio.Task[None] | None = None

    def _idle(self) -> bool:
        """No publication in flight (a finished one's error, if any, raised here)."""
        sending = self._sending
        if sending is None:
            return True
        if not sending.done():
            return False
        self._sending = None
        sending.result()
        return True

    async def step_ended(self) -> None:
        self._pending = True
        if time.monotonic() - self._last >= self.every_s and self._idle():
            self._pending = False
            self._last = time.monotonic()
            self._sending = asyncio.create_task(publish_head(self.folder))

    async def flush(self, always: bool = False) -> None:
        """Publish the newest head now, if a step ended since the last publication (after
        the one in flight, if any, is done)."""
        sending, self._sending = self._sending, None
        if sending is not None:
            await sending
        if not (self._pending or always):
            return
        self._pending = False
        self._last = time.monotonic()
        await publish_head(self.folder)


def resolve(config: str | None, run_dir: str | None) -> tuple[WorkcellConfig, Path]:
    """The workcell config (embedded simulated one by default) and the run folder."""
    cfg = load_config(config)
    return cfg, Path(run_dir) if run_dir else RUNS_DIR / cfg.name


def flow_run_id() -> str | None:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def head_artifact_key(folder: Path) -> str:
    """The key of a run folder's head artifact: its name and a digest of its full path."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:10]
    return f"record-head-{artifact_key(Path(folder).name)[:40]}-{digest}"


async def publish_head(folder: Path) -> None:
    """The newest anchor of the run's record as a table artifact: a copy of the head kept
    by the Prefect server, out of reach of whoever can write the run folder."""
    path = anchor.head_file(Path(folder) / STORE_FILE)
    anchors = anchor.read(path) if path.is_file() else []
    if not anchors:
        return
    last = anchors[-1]
    await acreate_table_artifact(
        table=[
            {
                "entries": last.entries,
                "hash": last.hash,
                "utc": last.utc.isoformat(),
                "reason": last.reason,
            }
        ],
        key=head_artifact_key(folder),
        description=f"batch record head of {folder}: verify with "
        f"`workcell record verify {folder} --anchor {last.entries}:{last.hash}`",
    )


def read_head_artifact(folder: Path) -> tuple[str, list[Anchor]]:
    """Every version of the run's head artifact on the Prefect server in PREFECT_API_URL."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = head_artifact_key(folder)
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    anchors = []
    for a in sorted(found, key=lambda a: a.created or datetime.min):
        rows: Any = json.loads(a.data) if isinstance(a.data, str) else a.data
        for row in rows or []:
            anchors.append(
                Anchor(
                    entries=int(row["entries"]),
                    hash=str(row["hash"]),
                    utc=datetime.fromisoformat(row["utc"]),
                    reason=str(row.get("reason", "")),
                )
            )
    if not anchors:
        raise WorkcellError(f"no head artifact {key} on the Prefect server")
    return f"Prefect artifact {key}", anchors


def prefect_hold(timeout_s: int) -> Ask:
    """A protocol's hold point as a paused flow run: the Prefect UI shows the operator form."""

    async def ask(hold: Hold) -> Answer:
        from uuid import uuid4

        from prefect import get_run_logger
        from prefect.context import TaskRunContext
        from prefect.flow_runs import apause_flow_run

        if TaskRunContext.get() is not None:  # Prefect pauses a flow run, never a task
            raise HeldForOperator(
                f"{hold.reason} (vessels: {', '.join(hold.vessels) or 'none'}); the step stays "
                "held: start the run again to answer at its start, or from the command line"
            )
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
