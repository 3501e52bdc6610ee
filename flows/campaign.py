"""The expansion campaign as a Prefect flow.

The flow is a thin shell around ``protocols.campaign.engine.CampaignEngine``: each step
the engine decides becomes one Prefect task; progress goes to a progress
artifact (and to any listener in this process, such as the CLI's progress bar);
the vessel table and the batch summary become table and markdown artifacts.

At a hold point (before harvest, on any deviation) the flow pauses for an
``OperatorDecision`` through Prefect's run input: the Prefect UI shows the form,
and the answer (who, decision, comment) is recorded in the store. A dry-run skips
the pause only when started with ``auto_approve``, and the record says so.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)
from prefect.flow_runs import apause_flow_run

from flows.steps import as_task, publish_vessels, resolve
from protocols.campaign.engine import (
    Action,
    Ask,
    CampaignEngine,
    CampaignParams,
    CampaignSummary,
    OperatorDecision,
    auto_approve,
    summary_rows,
)
from workcell.assembly.session import open_session
from workcell.errors import WorkcellError

# Listeners in this process (the CLI's progress bar): called with (percent, text).
progress_listeners: list[Callable[[float, str], None]] = []
POLL_S = 2  # how often a paused run looks for the operator's answer


def prefect_operator(timeout_s: int) -> Ask:
    async def ask(action: Action) -> OperatorDecision:
        get_run_logger().warning(
            "waiting for an operator decision on %r: %s", action.label, action.reason
        )
        answer = await apause_flow_run(
            wait_for_input=OperatorDecision,
            timeout=timeout_s,
            poll_interval=POLL_S,
            key=f"decide-{action.kind.value}-{uuid4().hex[:8]}",
        )
        if answer is None:
            raise WorkcellError(f"no operator decision on {action.label!r} within {timeout_s} s")
        return OperatorDecision.model_validate(answer.model_dump())

    return ask


@flow(name="expansion-campaign")
async def campaign(
    params: CampaignParams | None = None,
    config: str | None = None,
    run_dir: str | None = None,
    auto_approve_dry_run: bool = False,
    operator_timeout_s: int = 24 * 3600,
) -> CampaignSummary:
    """From a thawed vial to the target dose; resumes from the run folder if it was stopped."""
    params = params or CampaignParams()
    cfg, folder = resolve(config, run_dir)
    if auto_approve_dry_run and not cfg.simulated:
        raise WorkcellError("auto-approval is for dry-runs; this workcell drives real devices")
    ask = auto_approve() if auto_approve_dry_run else prefect_operator(operator_timeout_s)
    progress_id: UUID = await acreate_progress_artifact(
        progress=0.0, description=f"expansion campaign in {folder}"
    )

    async def progress(percent: float, text: str) -> None:
        await aupdate_progress_artifact(progress_id, percent, description=text)
        for listener in progress_listeners:
            listener(percent, text)

    async with open_session(cfg, folder) as session:
        engine = CampaignEngine(session, params, ask, run_step=as_task, progress=progress)
        summary = await engine.run()
        await aupdate_progress_artifact(progress_id, 100.0, description=summary.outcome)
        for listener in progress_listeners:
            listener(100.0, summary.outcome)
        await publish_vessels(session.wc.store, str(folder))
        check = session.wc.store.record.verify()
        record = f"\n\nBatch record: {check.entries} entries, head hash `{check.head_hash}`" + (
            "" if check.ok else f" - DOES NOT VERIFY: {check.problem}"
        )
        await acreate_markdown_artifact(
            markdown=summary_markdown(summary) + record,
            key="batch-summary",
            description="batch summary",
        )
    return summary


def summary_markdown(s: CampaignSummary) -> str:
    rows = summary_rows(s)
    return "# Batch summary\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
