"""Hold points that carry their context: what is decided, why, with the numbers.

At a hold the campaign pauses for an operator's answer through Prefect's run
input. The Resume form Prefect shows is ``HoldAnswer`` (name, approve or abort,
comment) under a markdown description written from the store at that moment:
the question, the reason with its numbers, what approve and abort each do, the
campaign's figures against its target and a table of the vessels in culture.

Once answered, the decision, its author and comment become a markdown artifact
of the run (``decision-N``) and a line in its log; the store records it as
``operator_decision`` (the campaign engine writes that).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from prefect.artifacts import acreate_markdown_artifact
from prefect.input import RunInput
from pydantic import Field

from flows.artifacts import cells, table, vessel_rows, when
from protocols.campaign.engine import (
    DAY_S,
    Action,
    CampaignParams,
    Kind,
    OperatorDecision,
    estimated_cells,
    view,
)
from workcell.store import Store

QUESTION = {
    Kind.HARVEST: "Harvest the batch now?",
    Kind.STOP: "Stop the campaign?",
    Kind.REPLENISH: "Replenish the deck?",
}
APPROVE = {
    Kind.HARVEST: "detaches every vessel in culture, pools and counts them, and reports "
    "the dose: the campaign ends with the harvest",
    Kind.STOP: "ends the campaign here, without a harvest",
    Kind.REPLENISH: "confirms you have done the chores listed; the campaign goes on",
}


class HoldAnswer(RunInput):
    """The operator's answer at a hold point."""

    operator: str = Field(
        min_length=1,
        max_length=64,
        title="Your name",
        description="who decides; recorded with the decision in the batch record",
    )
    decision: Literal["approve", "abort"] = Field(
        default="approve",
        title="Decision",
        description="approve: do what the hold proposes; abort: end the campaign here",
    )
    comment: str = Field(default="", max_length=2000, title="Comment", description="why (recorded)")


def describe(action: Action, store: Store, now: datetime, params: CampaignParams) -> str:
    """The markdown the Resume form shows above its fields."""
    v = view(store, now)
    day = v.now_s / DAY_S
    question = QUESTION.get(action.kind, f"{action.kind.value}?")
    plates = ", ".join(action.plates) or "-"
    viability = "-" if v.last_viability is None else f"{v.last_viability:.0f} %"
    lines = [
        f"## {question}",
        "",
        f"**Why:** {action.reason or '-'}" + (" — **a deviation**" if action.deviation else ""),
        "",
        f"Day **{day:.1f}** (process time) · plates **{plates}** · "
        f"**{sum(len(p.vessels) for p in v.plates)}** vessels in culture · "
        f"estimated now **{cells(estimated_cells(v, params))}** cells (from the images) · "
        f"target **{cells(params.target_cells)}** (dose × weight), harvest at ≥ "
        f"{cells(params.target_cells * params.harvest_margin)} "
        f"(× {params.harvest_margin:g}) · last pool viability {viability}",
        "",
        f"**Approve** {APPROVE.get(action.kind, 'carries out the action')}. "
        "**Abort** ends the campaign now: the vessels stay in culture, the run ends "
        "Cancelled, and the decision is recorded.",
        "",
        "### Vessels in culture",
        "",
    ]
    rows = [r for r in vessel_rows(store) if r["state"] == "active"]
    cols = ["plate", "well", "passage", "confluence (%)", "est. cells from confluence"]
    lines.append(
        table(
            ["plate", "well", "passage", "confluence %", "est. cells"],
            [[str(r[c] if r[c] is not None else "-") for c in cols] for r in rows],
        )
        if rows
        else "none"
    )
    return "\n".join(lines)


def form(action: Action, store: Store, now: datetime, params: CampaignParams) -> type[HoldAnswer]:
    """The run-input model for this hold: ``HoldAnswer`` with the hold's description."""
    return HoldAnswer.with_initial_data(description=describe(action, store, now, params))


async def publish_decision(action: Action, answer: OperatorDecision, n: int, day: float) -> None:
    """The decision, its author and comment as an artifact of the run."""
    md = "\n".join(
        [
            f"# Decision at hold {n}: {QUESTION.get(action.kind, action.kind.value)}",
            "",
            table(
                ["", ""],
                [
                    ["decision", f"**{answer.decision}**"],
                    ["by", answer.operator],
                    ["comment", answer.comment or "-"],
                    ["hold reason", action.reason or "-"],
                    ["deviation", "yes" if action.deviation else "no"],
                    ["campaign day (process time)", f"{day:.1f}"],
                    ["answered (wall time, UTC)", when(datetime.now(UTC))],
                ],
            ),
        ]
    )
    await acreate_markdown_artifact(
        markdown=md,
        key=f"decision-{n}",
        description=f"{'approved' if answer.decision == 'approve' else 'aborted'} by "
        f"{answer.operator}: {action.label}",
    )
