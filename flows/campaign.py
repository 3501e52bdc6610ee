"""The expansion campaign as a Prefect flow.

The flow is a thin shell around ``protocols.campaign.engine.CampaignEngine``: each step
the engine decides becomes one Prefect task; progress goes to a progress
artifact (and to any listener in this process, such as the CLI's progress bar);
the vessel table and the batch summary become table and markdown artifacts.

At a hold point (before harvest, on any deviation) the flow asks for an
``OperatorDecision`` through Prefect's run input: the Prefect UI shows the form,
and the answer (who, decision, comment) is recorded in the store. A dry-run skips
the hold only when started with ``auto_approve``, and the record says so.

A run from a deployment (a worker runs it) never holds its process through a long
wait: at a hold it *suspends* (the process ends; Resume in the UI, with the form,
starts it again from the top and the engine continues from the store, where it
meets the same hold and takes the answer); at a wait longer than
``hand_over_wait_h`` of wall time, or once it has covered ``days_per_run``
campaign days, it *hands over*: it schedules a new run of its deployment, with the
same parameters, for when the wait ends, and ends. So no process lives through a
multi-week campaign, and Prefect's per-run memory stays bounded. A run started
from the command line (no deployment) pauses in its process and never hands over.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID, uuid4

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.states import Scheduled
from pydantic import Field

from flows.placement import open_run
from flows.steps import as_task, publish_vessels, resolve
from protocols.campaign.engine import (
    DAY_S,
    Action,
    Ask,
    CampaignEngine,
    CampaignParams,
    CampaignSummary,
    HandOver,
    OperatorDecision,
    auto_approve,
    summary_rows,
)
from protocols.campaign.plan import CapacityPlan, plan_rows
from workcell.clock import SimClock
from workcell.errors import WorkcellError

# Listeners in this process (the CLI's progress bar): called with (percent, text).
progress_listeners: list[Callable[[float, str], None]] = []
POLL_S = 2  # how often a paused run looks for the operator's answer


def prefect_operator(timeout_s: int, suspend: bool) -> Ask:
    async def ask(action: Action) -> OperatorDecision:
        get_run_logger().warning(
            "waiting for an operator decision on %r: %s", action.label, action.reason
        )
        key = action.hold_key or f"decide-{action.kind.value}-{uuid4().hex[:8]}"
        if suspend:  # the process ends here; on Resume the flow starts again from the top
            answer = await asuspend_flow_run(
                wait_for_input=OperatorDecision, timeout=timeout_s, key=key
            )
        else:
            answer = await apause_flow_run(
                wait_for_input=OperatorDecision, timeout=timeout_s, poll_interval=POLL_S, key=key
            )
        if answer is None:
            raise WorkcellError(f"no operator decision on {action.label!r} within {timeout_s} s")
        return OperatorDecision.model_validate(answer.model_dump())

    return ask


def _hand_over_rule(days_per_run: float, wait_h: float, simulated: bool) -> HandOver:
    def rule(ran_s: float, wait_s: float) -> bool:
        if ran_s >= days_per_run * DAY_S:
            return True
        return not simulated and wait_s > wait_h * 3600  # a simulated wait costs no wall time

    return rule


async def _continue_later(session_clock: object, started: datetime, wake_at_s: float) -> str:
    """Schedule the next run of this deployment for when the campaign wakes."""
    ctx = FlowRunContext.get()
    assert ctx is not None and ctx.flow_run is not None
    fr = ctx.flow_run
    deployment = fr.deployment_id
    assert deployment is not None
    when = datetime.now(UTC)
    if not isinstance(session_clock, SimClock):
        when = max(when, started + timedelta(seconds=wake_at_s) - timedelta(minutes=1))
    async with get_client() as client:
        nxt = await client.create_flow_run_from_deployment(
            deployment,
            parameters=dict(fr.parameters),
            state=Scheduled(scheduled_time=when),
            idempotency_key=f"continues-{fr.id}",
            tags=["campaign-continued"],
        )
    get_run_logger().info("continues in flow run %s at %s", nxt.name, when.isoformat())
    return f"continues in flow run {nxt.name} at {when.isoformat(timespec='seconds')}"


@flow(name="expansion-campaign")
async def campaign(
    params: CampaignParams | None = None,
    config: str | None = None,
    run_dir: str | None = None,
    auto_approve_dry_run: bool = False,
    operator_timeout_s: int = 7 * 24 * 3600,
    days_per_run: Annotated[
        float, Field(ge=0.5, le=120, description="campaign days one flow run covers")
    ] = 7.0,
    hand_over_wait_h: Annotated[
        float, Field(ge=0.1, le=240, description="a longer wall-clock wait ends the run")
    ] = 1.0,
) -> CampaignSummary:
    """From a thawed vial to the target dose; resumes from the run folder if it was stopped."""
    params = params or CampaignParams()
    cfg, folder = resolve(config, run_dir)
    if auto_approve_dry_run and not cfg.simulated:
        raise WorkcellError("auto-approval is for dry-runs; this workcell drives real devices")
    ctx = FlowRunContext.get()
    deployed = bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)
    ask = (
        auto_approve()
        if auto_approve_dry_run
        else prefect_operator(operator_timeout_s, suspend=deployed)
    )
    progress_id: UUID = await acreate_progress_artifact(
        progress=0.0, description=f"expansion campaign in {folder}"
    )

    async def progress(percent: float, text: str) -> None:
        await aupdate_progress_artifact(progress_id, percent, description=text)
        for listener in progress_listeners:
            listener(percent, text)

    async with open_run(cfg, folder) as session:
        engine = CampaignEngine(session, params, ask, run_step=as_task, progress=progress)
        plan = engine.prepare()  # refuses, before any device moves, a dose that cannot fit
        if plan is not None:
            await acreate_markdown_artifact(
                markdown=plan_markdown(plan),
                key="capacity-plan",
                description="capacity plan, made before seeding",
            )
        rule = _hand_over_rule(days_per_run, hand_over_wait_h, cfg.clock.kind == "simulated")
        summary = await engine.run(hand_over=rule if deployed else None)
        if engine.handed_over_at_s is not None:
            started = session.wc.store.events("campaign_started")[0].time
            note = await _continue_later(session.wc.clock, started, engine.handed_over_at_s)
            await aupdate_progress_artifact(progress_id, 100.0, description=note)
            return summary.model_copy(update={"outcome": f"unfinished: {note}"})
        against = (
            ""
            if plan is None
            else f" on day {summary.days:.1f} of ~{plan.days:.0f} planned, "
            f"{summary.vessels} of {plan.vessels} planned vessels"
        )
        await aupdate_progress_artifact(progress_id, 100.0, description=summary.outcome + against)
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


def plan_markdown(plan: CapacityPlan) -> str:
    rows = plan_rows(plan)
    return "# Capacity plan\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def summary_markdown(s: CampaignSummary) -> str:
    rows = summary_rows(s)
    return "# Batch summary\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
