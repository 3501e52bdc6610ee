"""How a workcell step becomes a Prefect task, and the artifacts the UI shows.

A task is a meaningful step (one plate's feed, one passage, a wait until the next
decision), never a single aspirate, so orchestration stays a small share of the
run. Tasks get the live workcell session through a closure, so their results are
neither cached nor persisted: the store in the run folder is the record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from workcell import anchor
from workcell.anchor import Anchor
from workcell.assembly.config import WorkcellConfig, load_config
from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Store

RUNS_DIR = Path("runs")


@task(cache_policy=NO_CACHE, persist_result=False)
async def workcell_step(work: Callable[[], Awaitable[object]]) -> object:
    return await work()


async def as_task(
    label: str, work: Callable[[], Awaitable[object]], folder: Path | None = None
) -> object:
    """Run ``work`` as one Prefect task named after the step; then publish the record's
    head that the step anchored (``folder``: the run folder)."""
    result = await workcell_step.with_options(task_run_name=label)(work)
    if folder is not None:
        await publish_head(folder)
    return result


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


def head_artifact_key(folder: Path) -> str:
    """The key of a run folder's head artifact: its name and a digest of its full path."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:10]
    return f"record-head-{_key(Path(folder).name)[:40]}-{digest}"


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
