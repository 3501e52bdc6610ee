"""Asking the operator at a hold point, once per step, and quarantining vessels meanwhile."""

from __future__ import annotations

from workcell.assembly.workcell import Workcell
from workcell.errors import HeldForOperator
from workcell.operator import AbortedByOperator, Answer, Hold


async def hold(wc: Workcell, key: str, kind: str, reason: str, vessels: list[str]) -> Answer:
    """The operator's answer to hold ``key`` of this step: asked once, kept in the journal.

    Without an operator to ask (``wc.operator`` unset) the run stops with
    ``HeldForOperator``; the step stays interrupted and asks again when resumed.
    An answer of ``abort`` raises ``AbortedByOperator`` after it is recorded.
    """
    memo = f"hold:{key}"
    found, value = wc.journal.remembered(memo)
    if found:
        answer = Answer.model_validate(value)
    else:
        if wc.operator is None:
            raise HeldForOperator(f"{reason} (vessels: {', '.join(vessels) or 'none'})")
        answer = await wc.operator(Hold(kind=kind, reason=reason, vessels=vessels))
        with wc.store.transaction():
            wc.journal.remember(memo, answer.model_dump())
            wc.event(
                "operator_decision",
                answer.operator,
                action=kind,
                reason=reason,
                decision=answer.decision,
                comment=answer.comment,
                vessels=vessels,
            )
    if answer.decision == "abort":
        raise AbortedByOperator(f"{answer.operator} stopped the work at a hold: {reason}")
    return answer


def quarantine(wc: Workcell, vessels: list[str], why: str) -> None:
    """Set vessels apart (state ``quarantined``) until an operator decides; recorded once."""
    if not vessels or wc.journal.done(f"quarantine:{','.join(vessels)}"):
        return
    with wc.store.transaction():
        wc.store.set_state(vessels, "quarantined", wc.clock.now())
        wc.journal.recovery("quarantined", why, vessels)
        wc.journal.mark_done(f"quarantine:{','.join(vessels)}", vessels)
