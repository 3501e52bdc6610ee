"""The expansion campaign as a Prefect flow.

The flow is a thin shell around ``protocols.campaign.engine.CampaignEngine``: each step
the engine decides becomes one Prefect task; progress goes to a progress
artifact (and to any listener in this process, such as the CLI's progress bar);
the vessel table, the runs on the batch and the batch summary become artifacts.

Each campaign has a run folder of its own: ``<campaigns folder>/<batch>``, the
batch named on the form or, left empty, after the date and the flow run. A folder
holding vessels the campaign did not seed is refused unless the form says to
adopt them (``protocols.campaign.adoption``); adopting with no batch named takes
over the plates the unit operations seeded from the UI, in their run folder.

At a hold point (before harvest, on any deviation) the flow pauses for an
operator's answer through Prefect's run input: the Resume form carries what is
decided and why, with the numbers and the vessels (``flows.holds``); the answer
(who, decision, comment) is recorded in the store and shown as an artifact. A
dry-run skips the pause only when started with ``auto_approve_dry_run``, and the
record says so.

A run from a deployment (a worker runs it) never holds its process through a long
wait: at a hold it *suspends* (the process ends; Resume in the UI, with the form,
starts it again from the top and the engine continues from the store, where it
meets the same hold and takes the answer); at a wait longer than
``hand_over_wait_h`` of wall time, or once it has covered ``days_per_run``
campaign days, it *hands over*: it schedules a new run of its deployment, with the
same parameters and this run's folder, for when the wait ends, and ends. So no
process lives through a multi-week campaign, and Prefect's per-run memory stays
bounded. A run started from the command line (no deployment) pauses in its
process and never hands over.

Each step's end anchors the record's head; the flow publishes it as the run's
``record-head-...`` artifact. After a harvest, a run from a deployment starts the
workcell's release deployment on the run folder (once per batch): the release
waits, suspended, for the QC results and the signatures (``flows.release``).

The run ends Completed when the batch is harvested (the state message says so and
who approved), Cancelled when an operator aborts (with who and why), Failed when
the campaign stops without a harvest or a step is refused (one line, no traceback).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.deployments import arun_deployment
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.states import Cancelled, Completed, Failed, Scheduled, State
from pydantic import Field

from flows import holds
from flows.artifacts import key, publish_vessels, runs_markdown, table
from flows.narrate import narrating, run_logger_say
from flows.placement import open_run
from flows.release import FLOW_NAME as RELEASE_FLOW
from flows.steps import (
    RUNS_DIR,
    HeadPublisher,
    as_task,
    flow_run_id,
    one_line,
    resolve,
)
from protocols.campaign.adoption import check_run_folder
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
    direct,
    summary_rows,
)
from protocols.campaign.plan import CapacityPlan, plan_rows
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.session import Session
from workcell.clock import SimClock
from workcell.errors import HeldForOperator, WorkcellError
from workcell.store import Store

# Listeners in this process (the CLI's progress bar): called with (percent, text).
progress_listeners: list[Callable[[float, str], None]] = []
POLL_S = 2  # how often a paused run looks for the operator's answer
BATCH_PATTERN = r"^$|^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
DEFAULT_PARAMS = CampaignParams()


def campaign_folder(
    cfg: WorkcellConfig,
    run_dir: str | None,
    campaigns_dir: str | None,
    batch: str,
    adopt: bool = False,
    operations_dir: str | None = None,
) -> Path:
    """This campaign's run folder.

    ``run_dir`` if given (the command line); else, when adopting with no batch
    named, the unit operations' run folder (the plates seeded and grown by hand
    from the UI); else one folder per batch under ``campaigns_dir``, named on the
    form or after the date and the flow run.
    """
    if run_dir:
        return Path(run_dir)
    if adopt and not batch:
        return Path(operations_dir) if operations_dir else RUNS_DIR / cfg.name
    root = Path(campaigns_dir) if campaigns_dir else RUNS_DIR / cfg.name / "campaigns"
    if not batch:
        ctx = FlowRunContext.get()
        if ctx is not None and ctx.flow_run is not None:
            fr = ctx.flow_run
            start = fr.created or datetime.now(UTC)  # a resumed run keeps its folder
            batch = f"{start:%Y-%m-%d}-{fr.name}"
        else:
            batch = datetime.now(UTC).strftime("campaign-%Y%m%d-%H%M%S")
    return root / batch


def prefect_operator(
    timeout_s: int, session: Session, params: CampaignParams, suspend: bool = False
) -> Ask:
    async def ask(action: Action) -> OperatorDecision:
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is not None:  # a protocol's hold met inside a step's task
            raise HeldForOperator(
                f"{action.reason}; Prefect pauses a flow run, not a task: the step stays "
                "held for the operator and is finished when the campaign is resumed"
            )
        logger = get_run_logger()
        wc = session.wc
        n = wc.store.count_events("operator_decision") + 1
        day = (wc.clock.now() - _started(wc.store, wc.clock.now())).total_seconds() / DAY_S
        logger.warning(
            "HOLD %d, waiting for an operator decision: %s (%s)",
            n,
            holds.QUESTION.get(action.kind, action.label),
            action.reason,
        )
        form = holds.form(action, wc.store, wc.clock.now(), params)
        key = action.hold_key or f"decide-{action.kind.value}-{uuid4().hex[:8]}"
        if suspend:  # the process ends here; on Resume the flow starts again from the top
            answer = await asuspend_flow_run(wait_for_input=form, timeout=timeout_s, key=key)
        else:
            answer = await apause_flow_run(
                wait_for_input=form, timeout=timeout_s, poll_interval=POLL_S, key=key
            )
        if answer is None:
            raise WorkcellError(f"no operator decision on {action.label!r} within {timeout_s} s")
        decision = OperatorDecision.model_validate(
            answer.model_dump(include={"operator", "decision", "comment"})
        )
        await holds.publish_decision(action, decision, n, day)
        logger.info(
            "hold %d: %s by %s%s",
            n,
            decision.decision,
            decision.operator,
            f": {decision.comment}" if decision.comment else "",
        )
        return decision

    return ask


def _hand_over_rule(days_per_run: float, wait_h: float, simulated: bool) -> HandOver:
    def rule(ran_s: float, wait_s: float) -> bool:
        if ran_s >= days_per_run * DAY_S:
            return True
        return not simulated and wait_s > wait_h * 3600  # a simulated wait costs no wall time

    return rule


async def _continue_later(
    session_clock: object, started: datetime, wake_at_s: float, folder: Path
) -> str:
    """Schedule the next run of this deployment, on this run folder, for when it wakes."""
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
            # the same batch: a batch named after this run must not become a new folder
            parameters={**dict(fr.parameters), "run_dir": str(folder.resolve())},
            state=Scheduled(scheduled_time=when),
            idempotency_key=f"continues-{fr.id}",
            tags=["campaign-continued"],
        )
    get_run_logger().info("continues in flow run %s at %s", nxt.name, when.isoformat())
    return f"continues in flow run {nxt.name} at {when.isoformat(timespec='seconds')}"


def _started(store: Store, now: datetime) -> datetime:
    started = store.events("campaign_started")
    return started[0].time if started else now


# the progress artifact is updated at most this often (wall seconds); the end always
PROGRESS_EVERY_S = 2.0
# the record head's artifact likewise (``flows.steps.HeadPublisher``)
HEAD_EVERY_S = 2.0


@flow(name="expansion-campaign")
async def campaign(
    params: CampaignParams = DEFAULT_PARAMS,
    batch: Annotated[str, Field(max_length=64, pattern=BATCH_PATTERN)] = "",
    adopt_vessels: bool = False,
    auto_approve_dry_run: bool = False,
    operator_timeout_s: Annotated[int, Field(ge=60, le=30 * 86400)] = 7 * 24 * 3600,
    days_per_run: Annotated[float, Field(ge=0.5, le=120)] = 7.0,
    hand_over_wait_h: Annotated[float, Field(ge=0.1, le=240)] = 1.0,
    config: str | None = None,
    run_dir: str | None = None,
    campaigns_dir: str | None = None,
    operations_dir: str | None = None,
    release_deployment: str | None = None,
) -> CampaignSummary:
    """From a thawed vial to the target dose; resumes from its run folder if it was stopped.

    After a harvest, a run from a deployment hands the batch to the release flow's
    deployment (``release_deployment``, default the workcell's ``release``
    deployment), which waits for the QC results and the signatures.
    """
    t0 = time.perf_counter()
    logger = get_run_logger()
    try:
        cfg, _ = resolve(config, None)
        folder = campaign_folder(cfg, run_dir, campaigns_dir, batch, adopt_vessels, operations_dir)
        if auto_approve_dry_run and not cfg.simulated:
            raise WorkcellError("auto-approval is for dry-runs; this workcell drives real devices")
        with narrating(run_logger_say()):
            outcome = await _run(
                cfg,
                folder,
                params,
                adopt_vessels,
                auto_approve_dry_run,
                operator_timeout_s,
                t0,
                _hand_over_rule(days_per_run, hand_over_wait_h, cfg.clock.kind == "simulated"),
                release_deployment,
            )
    except WorkcellError as err:
        line = one_line(err)
        logger.error(line)
        return Failed(message=line)  # type: ignore[return-value]
    return outcome  # type: ignore[return-value]


async def _run(
    cfg: WorkcellConfig,
    folder: Path,
    params: CampaignParams,
    adopt: bool,
    auto: bool,
    timeout_s: int,
    t0: float,
    hand_over: HandOver,
    release_deployment: str | None,
) -> State[Any]:
    logger = get_run_logger()
    progress_id: UUID = await acreate_progress_artifact(
        progress=0.0, description=f"expansion campaign in {folder}"
    )

    shown = [-PROGRESS_EVERY_S]  # when (monotonic s) it was last shown

    async def progress(percent: float, text: str) -> None:
        # the artifact at most every PROGRESS_EVERY_S of wall time (a dry-run's steps come
        # many a second): each update is a write on the Prefect server, sharing the machine
        now = time.monotonic()
        if now - shown[0] >= PROGRESS_EVERY_S:
            shown[0] = now
            await aupdate_progress_artifact(progress_id, percent, description=text)
        for listener in progress_listeners:
            listener(percent, text)

    ctx = FlowRunContext.get()
    deployed = bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)
    heads = HeadPublisher(folder, HEAD_EVERY_S)
    try:
        async with open_run(cfg, folder) as session:
            logger.info("campaign on workcell %s, run folder %s", cfg.name, folder.resolve())
            by = f"flow run {ctx.flow_run.name}" if ctx and ctx.flow_run else "command line"
            check_run_folder(session.wc, adopt, by)
            asked = (
                auto_approve() if auto else prefect_operator(timeout_s, session, params, deployed)
            )

            async def ask(action: Action) -> OperatorDecision:
                await heads.flush()  # the server holds the newest head while a hold waits
                return await asked(action)

            run_step = functools.partial(as_task, heads=heads)
            simulated_clock = session.config.clock.kind == "simulated"
            engine = CampaignEngine(
                session,
                params,
                ask,
                run_step=run_step,
                progress=progress,
                run_wait=direct if simulated_clock else None,  # takes no wall time
            )
            plan = engine.prepare()  # refuses, before any device moves, a dose that cannot fit
            if plan is not None:
                await acreate_markdown_artifact(
                    markdown=plan_markdown(plan),
                    key=f"capacity-plan-{key(folder.name)}",
                    description="capacity plan, made before seeding",
                )
            summary = await engine.run(hand_over=hand_over if deployed else None)
            if engine.handed_over_at_s is not None:
                started = session.wc.store.events("campaign_started")[0].time
                note = await _continue_later(
                    session.wc.clock, started, engine.handed_over_at_s, folder
                )
                await aupdate_progress_artifact(progress_id, 100.0, description=note)
                await heads.flush()
                return Completed(
                    message=f"unfinished: {note}",
                    data=summary.model_copy(update={"outcome": f"unfinished: {note}"}),
                )
            against = (
                ""
                if plan is None
                else f" on day {summary.days:.1f} of ~{plan.days:.0f} planned, "
                f"{summary.vessels} of {plan.vessels} planned vessels"
            )
            await aupdate_progress_artifact(
                progress_id, 100.0, description=summary.outcome + against
            )
            for listener in progress_listeners:
                listener(100.0, summary.outcome)
            store = session.wc.store
            await publish_vessels(store, str(folder))
            simulated = bool(getattr(session.wc.clock, "simulated", False))
            check = store.record.verify()
            record = f"Batch record: {check.entries} entries, head hash `{check.head_hash}`" + (
                "" if check.ok else f" - DOES NOT VERIFY: {check.problem}"
            )
            runs = runs_markdown(store, flow_run_id())
            decisions = store.events("operator_decision")
            await acreate_markdown_artifact(
                markdown="\n\n".join(
                    x
                    for x in (
                        summary_markdown(summary, simulated, time.perf_counter() - t0, folder),
                        decisions_markdown(store),
                        record,
                        runs,
                    )
                    if x
                ),
                key=f"batch-summary-{key(folder.name)}",
                description=f"batch summary: {summary.outcome}",
            )
            batch = store.record.record_id()
        await heads.flush(always=True)
        if summary.outcome.startswith("harvested"):
            await hand_over_to_release(folder, cfg, batch, release_deployment if deployed else "")
        return final_state(summary, decisions[-1] if decisions else None)
    finally:  # the newest head, however the run ends (a failed step's too)
        with contextlib.suppress(Exception):  # never in place of the run's own error
            await heads.flush()


async def hand_over_to_release(
    folder: Path, cfg: WorkcellConfig, batch: str, name: str | None
) -> None:
    """Start the release flow on the harvested batch, once per batch (it runs on,
    suspended, for weeks). ``name`` "" means no deployment to start (a CLI run)."""
    log = get_run_logger()
    if name == "":
        log.info("harvested: release the batch with `workcell release status %s`", folder)
        return
    if name is None:
        from flows.facility.deploy import RELEASE, deployment_name

        name = f"{RELEASE_FLOW}/{deployment_name(RELEASE, cfg)}"
    try:
        run = await arun_deployment(
            name,
            parameters={"run_dir": str(folder.resolve())},
            timeout=0,
            as_subflow=False,
            idempotency_key=f"release-{batch}",
        )
    except Exception as e:  # the harvest stands; the release can be started by hand
        log.error("harvested, but the release flow %s could not be started: %s", name, e)
        return
    log.info("harvested: the release flow %s (run %s) waits for QC results", name, run.id)


def final_state(summary: CampaignSummary, last: Any) -> State[Any]:
    """Completed for a harvest, Cancelled for an abort, Failed for a stop, each with who."""
    who = ""
    if last is not None:
        d = last.data
        note = f" ({d['comment']})" if d.get("comment") else ""
        verb = "approved" if d.get("decision") == "approve" else "aborted"
        who = f"{d.get('action', 'hold')} {verb} by {last.actor}{note}"
    if last is not None and last.data.get("decision") == "abort":
        return Cancelled(message=f"{who}; hold reason: {last.data.get('reason', '-')}")
    message = summary.outcome + (f"; {who}" if who else "")
    if summary.outcome.startswith(("harvested", "unfinished")):
        return Completed(message=message, data=summary)
    return Failed(message=message)


def summary_markdown(s: CampaignSummary, simulated: bool, wall_s: float, folder: Path) -> str:
    rows = [list(r) for r in summary_rows(s)]
    for r in rows:
        if r[0] == "days":
            r[0] = "days (process time, " + ("simulated clock)" if simulated else "workcell clock)")
    rows.append(["wall time of this process (s)", f"{wall_s:.1f}"])
    rows.append(["run folder", f"`{folder.resolve()}`"])
    return "# Batch summary\n\n" + table(["", ""], rows)


def decisions_markdown(store: Store) -> str:
    events = store.events("operator_decision")
    if not events:
        return ""
    t0 = _started(store, events[0].time)
    rows = [
        [
            f"{(e.time - t0).total_seconds() / DAY_S:.1f}",
            str(e.data.get("action", "")),
            f"**{e.data.get('decision', '')}**",
            e.actor,
            str(e.data.get("comment") or "-"),
            str(e.data.get("reason") or "-"),
        ]
        for e in events
    ]
    return "## Operator decisions\n\n" + table(
        ["day", "hold", "decision", "by", "comment", "reason"], rows
    )


def plan_markdown(plan: CapacityPlan) -> str:
    return "# Capacity plan\n\n" + table(["", ""], [list(r) for r in plan_rows(plan)])
