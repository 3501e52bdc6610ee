"""The release of a batch as its own Prefect flow, which waits for late QC results.

Sterility takes 14 days to read, mycoplasma culture up to 28: a release cannot
be a step at the end of the campaign. The campaign's harvest starts this flow
(from its deployment); the flow decides from the run folder's store alone, every
time it runs:

- the record does not verify, a criterion failed, or there is no harvest: the
  flow ends Failed, saying why (the batch is blocked);
- QC results are missing: the flow *suspends* (``suspend_flow_run``: no process
  is held, the run waits in the Prefect database for days) with a form for the
  results. An analyst fills the form in the Prefect UI, or enters them with
  ``workcell release enter`` (which resumes the flow);
- every criterion passed but signatures are missing: it suspends again, asking
  for the operator's and QA's signatures (``workcell release sign``, which
  resumes it; a signature needs the signer's secret, which never goes through
  Prefect);
- released: it completes, with the verdict as an artifact.

On resume Prefect runs the flow again from the top. Each wait has a key
(``qc-1``, ``qc-2``, ..., ``sign-1``, ...): a wait already answered returns its
answer at once, so a re-run walks the same waits to the first unanswered one.
A form's results carry their wait's key into the record, so they are entered once.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.flow_runs import asuspend_flow_run
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from flows.artifacts import key
from flows.steps import publish_head
from workcell.batch.integrity import refuse_damaged
from workcell.batch.release import QCResult, ReleaseState, Stage, enter_results, release_state
from workcell.batch.users import UserRegistry
from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Store

FLOW_NAME = "batch-release"
DAY_S = 86400


class QCForm(BaseModel):
    """The form the Prefect UI shows while the release waits for QC results."""

    model_config = ConfigDict(extra="forbid")

    analyst: str = Field(default="", description="your user id in the user registry")
    results: list[QCResult] = Field(
        default_factory=list,
        description="one or more results: flow_cytometry (markers in %), sterility or "
        "mycoplasma (negative/positive), endotoxin (value in EU/mL); reported_at in UTC",
    )


def _state(folder: Path, registry: UserRegistry) -> ReleaseState:
    store = Store(folder / STORE_FILE, read_only=True)
    try:
        return release_state(store, registry)
    finally:
        store.close()


def _enter_form(folder: Path, registry: UserRegistry, form: QCForm, ref: str) -> str:
    """Enter a form's results once; returns what happened, for the log."""
    if not form.results:
        return "resumed without results in the form"
    user = registry.get(form.analyst)
    if user is None or not user.active or not {"analyst", "qa"} & set(user.roles):
        return f"form refused: {form.analyst!r} is not an active analyst or QA user"
    path = folder / STORE_FILE
    refuse_damaged(path)
    store = Store(path)
    try:
        from workcell.batch.release import entered_refs

        if ref in entered_refs(store):
            return f"form {ref} was entered before"
        # the UI is not where identity is proven: its login is the deployment's (docs/part11.md)
        enter_results(store, form.results, user.id, "prefect-ui", False, ref=ref)
    except WorkcellError as e:
        return f"form refused: {e}"
    finally:
        store.close()
    return f"entered {len(form.results)} results from the form as {user.id}"


async def _announce(folder: Path, state: ReleaseState) -> None:
    rows = "\n".join(
        f"| {c.name} | {c.requirement} | {c.result} | {c.status.value} |" for c in state.criteria
    )
    signed = "\n".join(
        f"- {s.statement.name} ({s.user_id}) {s.meaning} {s.statement.utc:%Y-%m-%d %H:%M} UTC"
        for s in state.signatures
    )
    how = {
        Stage.WAITING_QC: "Enter the results in this run's form (Resume), or "
        f"`workcell release enter {folder} RESULTS.json --user YOUR_ID`.",
        Stage.WAITING_SIGNATURES: "Sign with "
        f"`workcell release sign {folder} --user YOUR_ID --meaning performed` (operator), "
        "then `--meaning approved` (QA, another person).",
    }.get(state.stage, "")
    await acreate_markdown_artifact(
        key=f"release-{key(folder.name)[:40]}",
        description=f"release of {folder}",
        markdown=f"# Release of {folder.name}: {state.stage.value}\n\n{state.reason}\n\n"
        f"{how}\n\n| criterion | requirement | result | status |\n|---|---|---|---|\n{rows}\n\n"
        f"{signed or 'No signatures yet.'}\n\n{state.integrity.line()}",
    )


@flow(name=FLOW_NAME)
async def release(
    run_dir: str,
    config: str | None = None,
    users: str | None = None,
    qc_wait_days: float = 60,
    signature_wait_days: float = 30,
) -> str:
    """Wait for the QC results and the signatures a batch needs; release it or say why not.

    The release reads the run folder's store alone; ``config`` is accepted (and not
    needed) so a workcell's deployments share one set of defaults.
    """
    log = get_run_logger()
    folder = Path(run_dir)
    registry = UserRegistry(users)
    refuse_damaged(folder / STORE_FILE)
    run_id = flow_run.id
    for i in itertools.count(1):
        state = _state(folder, registry)
        if state.stage is not Stage.WAITING_QC:
            break
        await _announce(folder, state)
        log.warning("waiting for QC results (%s): %s", f"qc-{i}", state.reason)
        form = await asuspend_flow_run(
            wait_for_input=QCForm, key=f"qc-{i}", timeout=int(qc_wait_days * DAY_S)
        )
        log.info("%s", _enter_form(folder, registry, form, f"{run_id}/qc-{i}"))
        await publish_head(folder)
    for i in itertools.count(1):
        state = _state(folder, registry)
        if state.stage is not Stage.WAITING_SIGNATURES:
            break
        await _announce(folder, state)
        log.warning("waiting for signatures (%s): %s", f"sign-{i}", state.reason)
        await asuspend_flow_run(key=f"sign-{i}", timeout=int(signature_wait_days * DAY_S))
    await _announce(folder, state)
    await publish_head(folder)
    if state.stage is Stage.BLOCKED:
        raise WorkcellError(f"release of {folder} blocked: {state.reason}")
    log.info("released: %s", state.reason)
    return state.stage.value


def resume_waiting(run_dir: Path) -> list[UUID]:
    """Resume every release flow run suspended on ``run_dir`` (after a CLI entry or
    signature); each decides again from the store."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    target = Path(run_dir).resolve()
    resumed = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Suspended"]))
            ),
        )
        for fr in runs:
            params: dict[str, Any] = fr.parameters or {}
            if params.get("run_dir") and Path(str(params["run_dir"])).resolve() == target:
                keyset = fr.state.state_details.run_input_keyset if fr.state else None
                run_input: dict[str, Any] | None = {} if keyset else None
                client.resume_flow_run(fr.id, run_input=run_input)
                resumed.append(fr.id)
    return resumed
