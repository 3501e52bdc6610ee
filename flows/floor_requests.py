"""Asking a running floor, from the UI or the command line: a campaign joins, or one stops.

The floor (``flows/floor.py``) is one long-lived flow run deciding who goes next; a
campaign started after it, or a cancellation, is a request in its inbox
(``protocols/campaign/inbox.py``) that it takes between two decisions. These flows
post one and wait for the floor's answer in the floor's own record:

* ``join-floor`` (the ``join floor @ <workcell>`` deployment): the campaign starts at the
  floor's present (or its own later start day) as a flow run of its own under the
  floor's (``<campaign> on <floor>``), and a resumed floor runs it too. Completed with
  the day it joined; Failed, saying why, for a name the floor already has or when no
  floor runs (the request is then withdrawn: nothing starts later).
* ``cancel-on-floor`` (``cancel on floor @ <workcell>``): the campaign stops before its
  next step (a step under way ends first: cells in enzyme are never left), its child
  run ends Cancelled, and both records say who and why.

Which floor: the one named on the form (its folder's name under ``<runs>/floors/``),
or, with no name, the one floor running there (``flows.floor.the_running_floor``);
none running, or several and no name, is refused in one line.

Who: "by" is what the person typed: Prefect OSS has no user accounts, so nothing here
authenticates it. What is known is recorded next to it in both records (``via``): the
cancel's own flow run (name and id) and that it came from the deployment, or, from
the command line, the OS account and host that ran ``workcell floor-cancel``.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed
from pydantic import BaseModel

from flows.floor import FLOORS, floor_running, the_running_floor
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
    line. Raises ``WorkcellError`` saying why when it is refused or cannot be asked.
    ``run_dir`` is the floor's own folder (``the_running_floor`` finds it)."""
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
    floor = f"the floor {folder.name}"
    if kind == "join":
        return (
            f"{campaign} joined {floor} at day {answer.data['at_day']:.2f}: "
            f"its run is '{campaign} on {folder.name}'"
        )
    return (
        f"{campaign} is cancelled on {floor} by {answer.data['by']}: it stops before its next step"
    )


async def _flow_answer(
    floors_dir: str,
    floor: str,
    kind: Literal["join", "cancel"],
    campaign: str,
    item: BaseModel,
    refused: str,
) -> str:
    """The flow run's end: Completed with the floor's answer, or Failed saying why."""
    try:
        folder = the_running_floor(floors_dir, floor)
        line = await ask_floor(str(folder), kind, campaign, item)
    except WorkcellError as e:
        get_run_logger().error(f"{campaign} {refused}: {e}")
        return Failed(message=f"{campaign} {refused}: {e}")  # type: ignore[return-value]
    return Completed(message=line, data=line)  # type: ignore[return-value]


def _join_run_name() -> str:
    from prefect.runtime import flow_run

    spec = flow_run.parameters.get("campaign")
    name = spec.name if isinstance(spec, CampaignSpec) else dict(spec or {}).get("name", "?")
    floor = str(flow_run.parameters.get("floor") or "").strip()
    return f"{name} joins the floor{f' {floor}' if floor else ''}"


DEFAULT_FLOORS = str(Path("runs") / FLOORS)


@flow(name="join-floor", flow_run_name=_join_run_name)
async def join_floor(
    campaign: CampaignSpec = DEFAULT_JOINER,
    floor: str = "",
    floors_dir: str = DEFAULT_FLOORS,
) -> str:
    """Add a campaign to the floor that is running: it starts at the floor's present, a
    flow run of its own under the floor's."""
    return await _flow_answer(floors_dir, floor, "join", campaign.name, campaign, "not joined")


def _cancel_run_name() -> str:
    from prefect.runtime import flow_run

    c = flow_run.parameters.get("cancel")
    name = c.campaign if isinstance(c, Cancel) else dict(c or {}).get("campaign", "?")
    floor = str(flow_run.parameters.get("floor") or "").strip()
    return f"cancel {name} on the floor{f' {floor}' if floor else ''}"


def via_deployment() -> str:
    """Where a cancel came from, as Prefect knows it (this flow run, and its deployment)."""
    from prefect.runtime import deployment, flow_run

    origin = f"deployment {deployment.name!r}" if deployment.id else "a flow run with no deployment"
    return f"{origin}, flow run {flow_run.name!r} (id {flow_run.id}); 'by' not authenticated"


def via_command_line() -> str:
    """Where a cancel came from on the command line: the OS account and host running it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return (
        f"command line (workcell floor-cancel), OS user {user} on {socket.gethostname()}, "
        f"pid {os.getpid()}; 'by' not authenticated"
    )


@flow(name="cancel-on-floor", flow_run_name=_cancel_run_name)
async def cancel_on_floor(cancel: Cancel, floor: str = "", floors_dir: str = DEFAULT_FLOORS) -> str:
    """Stop a campaign on the floor that is running, before its next step; the batch
    record says who (as typed: not authenticated) and why, and which flow run asked."""
    cancel = cancel.model_copy(update={"via": via_deployment()})
    return await _flow_answer(floors_dir, floor, "cancel", cancel.campaign, cancel, "not cancelled")
