"""A running floor's inbox: campaigns that join it and cancellations, from other processes.

The floor (``floor.py``) runs every campaign in one process and decides who goes next,
so a campaign started later (from the UI's ``join floor`` form or ``workcell floor-join``)
or a cancellation cannot call into it: it is a file in ``<floor>/inbox/``, which the
floor takes between two of its decisions. Why files: the floor may be killed at any
moment and resumed later; a request written whole (a temporary name, then a rename) is
either there or not, and the floor claims one by renaming it into ``taken/``, which
only one process can do, so a client that gives up (the floor ended before taking it)
withdraws its file by the same rename and nothing is started behind its back. What
became of each request is an event in the floor's own record (``campaign_joined``,
``join_refused``, ``cancel_requested``, ``cancel_refused``); ``wait_for_answer`` reads
it there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from workcell.errors import WorkcellError
from workcell.store import Event, Store

INBOX = "inbox"
CAMPAIGN_NAME = r"^[A-Za-z0-9_-]+$"  # a run folder's name: letters, digits, - and _
ANSWERS = {
    "join": ("campaign_joined", "join_refused"),
    "cancel": ("cancel_requested", "cancel_refused"),
}
ANSWER_KINDS = tuple(k for pair in ANSWERS.values() for k in pair)  # the floor's answers


class Cancel(BaseModel):
    """Stop a campaign on a running floor before its next step (a step under way ends
    first: cells in enzyme are never abandoned)."""

    model_config = ConfigDict(extra="forbid", title="Cancellation")

    campaign: str = Field(
        min_length=1,
        pattern=CAMPAIGN_NAME,
        title="Campaign to stop",
        description="its name on the floor (its run is 'NAME on <floor name>')",
    )
    by: str = Field(
        min_length=1,
        title="Your user id",
        description="who cancels it: written in its batch record and the floor's",
    )
    reason: str = Field(
        min_length=3,
        title="Reason",
        description="why it stops, for the batch record (3 characters at least)",
    )
    # where the request came from as the software knows it (the cancel's flow run and
    # deployment, or the command line's OS user): set by whoever posts it, never on the
    # form; "by" is as typed, not authenticated
    via: SkipJsonSchema[str] = ""


class Posted(BaseModel):
    """One request as the floor takes it: what kind, its content, and its file's name."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["join", "cancel"]
    data: dict[str, Any]
    ticket: str


def post(folder: Path, kind: Literal["join", "cancel"], campaign: str, item: BaseModel) -> str:
    """Write a request about ``campaign`` whole into the floor's inbox; its ticket (the
    file's name, which orders the requests)."""
    box = folder / INBOX
    box.mkdir(parents=True, exist_ok=True)
    ticket = f"{time.time_ns():020d}-{kind}-{campaign}.json"
    tmp = box / f".{ticket}.tmp"
    tmp.write_text(json.dumps({"kind": kind, "data": item.model_dump(mode="json")}))
    os.replace(tmp, box / ticket)
    return ticket


def take(folder: Path) -> list[Posted | tuple[str, str]]:
    """Claim every request waiting in the inbox, oldest first: each a ``Posted``, or
    ``(ticket, why)`` for a file that is not a request (it is kept in ``refused/``)."""
    box = folder / INBOX
    if not box.is_dir():
        return []
    out: list[Posted | tuple[str, str]] = []
    for path in sorted(box.glob("*.json")):
        taken = box / "taken" / path.name
        taken.parent.mkdir(exist_ok=True)
        try:
            os.rename(path, taken)  # the claim: a client withdrawing loses (or wins) here
        except FileNotFoundError:
            continue
        out.append(_read(box, path.name))
    return out


def unanswered(folder: Path, answered: set[str]) -> list[Posted | tuple[str, str]]:
    """Requests the floor claimed but did not answer (it was killed in between): a
    resumed floor takes them again, first."""
    box = folder / INBOX / "taken"
    if not box.is_dir():
        return []
    return [
        _read(folder / INBOX, p.name) for p in sorted(box.glob("*.json")) if p.name not in answered
    ]


def _read(box: Path, ticket: str) -> Posted | tuple[str, str]:
    taken = box / "taken" / ticket
    try:
        raw = json.loads(taken.read_text())
        return Posted(kind=raw["kind"], data=raw["data"], ticket=ticket)
    except (ValueError, KeyError, TypeError) as e:
        (box / "refused").mkdir(exist_ok=True)
        os.replace(taken, box / "refused" / ticket)
        return (ticket, f"not a request: {e}")


def withdraw(folder: Path, ticket: str) -> bool:
    """Take back a request the floor has not claimed; False when it already has."""
    box = folder / INBOX
    (box / "withdrawn").mkdir(exist_ok=True)
    try:
        os.rename(box / ticket, box / "withdrawn" / ticket)
        return True
    except FileNotFoundError:
        return False


def wait_for_answer(
    folder: Path,
    store_file: Path,
    ticket: str,
    kind: Literal["join", "cancel"],
    running: Callable[[], bool],
    timeout_s: float = 120.0,
    poll_s: float = 0.3,
) -> Event:
    """The floor's answer to ``ticket``, from the floor's own record: its accepting or
    refusing event. Raises ``WorkcellError`` when the floor is not running (the request is
    withdrawn, so nothing starts later behind the caller's back) or does not answer."""
    yes, no = ANSWERS[kind]
    deadline = time.monotonic() + timeout_s
    claimed_at: float | None = None
    while True:
        if store_file.exists():
            store = Store(store_file, read_only=True)  # the floor's: only looked at
            try:
                found = [e for e in store.events((yes, no)) if e.data.get("ticket") == ticket]
            finally:
                store.close()
            if found:
                return found[-1]
        if claimed_at is None and (not running() or time.monotonic() > deadline):
            if withdraw(folder, ticket):
                why = "no floor is running" if not running() else "the floor did not answer"
                raise WorkcellError(
                    f"{why} on {folder}: the request was withdrawn, nothing started "
                    "(start the floor with this campaign in its list, or try again while "
                    "it runs)"
                )
            claimed_at = time.monotonic()  # claimed just now: its answer is on its way
        if claimed_at is not None and time.monotonic() > claimed_at + 30:
            raise WorkcellError(
                f"the floor on {folder} took the request ({ticket}) but has not answered: "
                "it answers when it runs again on that folder"
            )
        time.sleep(poll_s)
