"""Asking a running floor, from the UI or the command line: a campaign joins, or one stops.

The floor (``flows/floor.py``) is one long-lived flow run deciding who goes next; a
campaign started after it, or a cancellation, is a request in its inbox
(``protocols/campaign/inbox.py``) that it takes between two decisions. These flows
post one and wait for the floor's answer in the floor's own record:

* ``join-floor`` (the ``join floor @ <workcell>`` deployment): the campaign starts at the
  floor's present (or its own later start day) as a flow run of its own under the
  floor's (``<campaign> on <folder>``), and a resumed floor runs it too. Completed with
  the day it joined; Failed, saying why, for a name the floor already has or when no
  floor runs on the folder (the request is then withdrawn: nothing starts later).
* ``cancel-on-floor`` (``cancel on floor @ <workcell>``): the campaign stops before its
  next step (a step under way ends first: cells in enzyme are never left), its child
  run ends Cancelled, and both records say who and why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed
from pydantic import BaseModel

from flows.floor import floor_running
from protocols.campaign import inbox
from protocols.campaign.engine import CampaignParams
from protocols.campaign.floor import FLOOR_STORE, CampaignSpec
from protocols.campaign.inbox import Cancel
from workcell.errors import WorkcellError

DEFAULT_JOINER = CampaignSpec(name="c", params=CampaignParams(max_days=8, max_vessels=12))


async def ask_floor(
    run_dir: str, kind: Literal["join", "cancel"], campaign: str, item: BaseModel
) -> str:
    """Post ``item`` to the floor on ``run_dir`` and wait for its answer; the answer's
    line. Raises ``WorkcellError`` saying why when it is refused or cannot be asked."""
    folder = Path(run_dir).resolve()
    if not (folder / FLOOR_STORE).exists() or not floor_running(folder):
        raise WorkcellError(
            f"no floor is running on {folder}: "
            + (
                "start one (floor @ <workcell>, or `workcell floor FOLDER`) with this "
                "campaign in its list"
                if kind == "join"
                else f"nothing to cancel ({campaign} has ended, or never ran there)"
            )
        )
    ticket = inbox.post(folder, kind, campaign, item)
    answer = await asyncio.to_thread(
        inbox.wait_for_answer,
        folder,
        folder / FLOOR_STORE,
        ticket,
        kind,
        lambda: floor_running(folder),
    )
    if answer.kind in ("join_refused", "cancel_refused"):
        raise WorkcellError(str(answer.data.get("reason", "refused")))
    # as the floor's run is named: "the floor" for the deployments' folder, else its name
    floor = "the floor" if folder.name == "floor" else f"the floor {folder.name}"
    if kind == "join":
        return (
            f"{campaign} joined {floor} at day {answer.data['at_day']:.2f}: "
            f"its run is '{campaign} on {folder.name}'"
        )
    return (
        f"{campaign} is cancelled on {floor} by {answer.data['by']}: it stops before its next step"
    )


async def _flow_answer(
    run_dir: str, kind: Literal["join", "cancel"], campaign: str, item: BaseModel, refused: str
) -> str:
    """The flow run's end: Completed with the floor's answer, or Failed saying why."""
    try:
        line = await ask_floor(run_dir, kind, campaign, item)
    except WorkcellError as e:
        get_run_logger().error(f"{campaign} {refused}: {e}")
        return Failed(message=f"{campaign} {refused}: {e}")  # type: ignore[return-value]
    return Completed(message=line, data=line)  # type: ignore[return-value]


def _join_run_name() -> str:
    from prefect.runtime import flow_run

    spec = flow_run.parameters.get("campaign")
    name = spec.name if isinstance(spec, CampaignSpec) else dict(spec or {}).get("name", "?")
    return f"{name} joins the floor"


@flow(name="join-floor", flow_run_name=_join_run_name)
async def join_floor(
    campaign: CampaignSpec = DEFAULT_JOINER,
    run_dir: str = "runs/floor",
) -> str:
    """Add a campaign to the floor that is running: it starts at the floor's present, a
    flow run of its own under the floor's."""
    return await _flow_answer(run_dir, "join", campaign.name, campaign, "not joined")


def _cancel_run_name() -> str:
    from prefect.runtime import flow_run

    c = flow_run.parameters.get("cancel")
    name = c.campaign if isinstance(c, Cancel) else dict(c or {}).get("campaign", "?")
    return f"cancel {name} on the floor"


@flow(name="cancel-on-floor", flow_run_name=_cancel_run_name)
async def cancel_on_floor(cancel: Cancel, run_dir: str = "runs/floor") -> str:
    """Stop a campaign on the floor that is running, before its next step; the batch
    record says who and why."""
    return await _flow_answer(run_dir, "cancel", cancel.campaign, cancel, "not cancelled")
