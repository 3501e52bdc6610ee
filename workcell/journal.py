"""The action journal: what the controller was about to do, and what it knows it did.

Before the controller sends an action to a device it commits an *intent* (device,
action, vessels, reagent, volumes, the step and unit of work it belongs to, and
the effect the action will have on the controller's model of the deck); after the
device replies it commits a *completion*. Each is its own transaction and its own
entry in the batch record. A step is no longer one transaction that hides a
half-done step: after a crash, every completed action is on disk, and an intent
without a completion is an action whose outcome is unknown until someone asks the
device (``workcell/assembly/reconcile.py``).

Steps are re-entrant. A step's units of work (``unit``: "enzyme into
plate_1_well_A1") are marked done when they finish, and its decisions and plans
(``remember``) are kept, so a step re-entered after a crash skips what is done,
reuses what it decided, and finishes the rest; ``protocols/recovery`` says, per
unit operation, how the half-done units are finished and which time windows hold.

``WORKCELL_CRASH_AT="N:intent"`` (or ``N:reply``) makes this process SIGKILL itself
after committing its N-th intent (or after the device's reply to it, before the
completion is committed): the kill campaigns use it to kill the controller at an
exact device-action boundary.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workcell.store import Event, Store

CRASH_ENV = "WORKCELL_CRASH_AT"

_unit: ContextVar[str | None] = ContextVar("journal_unit", default=None)
_purpose: ContextVar[str | None] = ContextVar("journal_tip_purpose", default=None)
# a part of a step that runs a unit operation more than once (a campaign step's batches
# of vessels from a hotel): its units and kept values are its own
_scope: ContextVar[str | None] = ContextVar("journal_scope", default=None)


@dataclass
class StepInfo:
    """A step of work on the workcell, from its ``step_started`` event."""

    id: int
    label: str
    owner: str
    data: dict[str, Any]
    time: datetime
    finished: bool = False


@dataclass
class ActionRecord:
    """One device action: its intent, and what became of it."""

    id: int
    step_id: int | None
    device: str
    action: str
    time: datetime
    data: dict[str, Any]
    outcome: str | None = None  # done | failed | None (unknown: no completion yet)
    how: str = ""  # for a reconciled action: how its outcome was established
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str | None:
        return self.data.get("unit")

    @property
    def done(self) -> bool:
        return self.outcome == "done"

    @property
    def effects(self) -> dict[str, Any]:
        """What the action did to the model: a done action's intended effects, unless its
        completion (or reconciliation) says what was done instead (some channels of a
        group failed); a failed action's written-off effects; an unknown one's nothing."""
        if self.outcome == "done":
            return dict(self.detail.get("effects", self.data.get("effects", {})))
        if self.outcome == "failed":
            return dict(self.detail.get("effects", {}))
        return {}

    @property
    def failed_channels(self) -> list[int]:
        """Channels of a done action that did not do their part (a partial outcome)."""
        return [int(ch) for ch in self.detail.get("failed_channels", [])]


class Journal:
    """The journal of one store, at the workcell's clock."""

    def __init__(self, store: Store, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now
        self.step_id: int | None = None
        self.resumed = False  # the current step was re-entered after an interruption
        self.entered_after = 0  # re-entered: the step's last journal row before the re-entry
        self.intents = 0  # intents committed by this process (for WORKCELL_CRASH_AT)
        self._crash = _parse_crash(os.environ.get(CRASH_ENV, ""))
        self._cache: list[dict[str, Any]] | None = None  # rows of the current step
        self._done: set[str] = set()  # the current step's done unit keys (from the rows)
        self._label: str | None = None  # the current step's label, when this process started it
        self._actions: tuple[tuple[int | None, int], list[ActionRecord]] | None = None

    # --- steps ---------------------------------------------------------------------

    def start_step(self, label: str, owner: str = "", data: dict[str, Any] | None = None) -> int:
        e = Event(
            time=self.now(),
            kind="step_started",
            actor="workcell",
            data={"step": label, "owner": owner, **({"data": data} if data else {})},
        )
        self.step_id = self.store.add_event_id(e)
        self._cache = []
        self._done = set()
        self._label = label
        self.resumed = False
        return self.step_id

    def enter(self, step_id: int) -> None:
        """Re-enter an interrupted step: its done units and kept decisions apply."""
        self.step_id = step_id
        self._label = None
        self._cache = self.store.journal(step_id=step_id)
        self._done = {r["key"] for r in self._cache if r["kind"] == "unit"}
        self.resumed = True
        self.entered_after = self._cache[-1]["id"] if self._cache else 0

    def finish_step(self) -> None:
        if self.step_id is None:
            return
        label = self._label if self._label is not None else self._label_of(self.step_id)
        self.store.add_event(
            Event(
                time=self.now(),
                kind="step_finished",
                actor="workcell",
                data={"step": label, "step_id": self.step_id},
            )
        )
        self.step_id = None
        self._label = None
        self._cache = None
        self.resumed = False

    def _label_of(self, step_id: int) -> str:
        return next((s.label for s in self.steps() if s.id == step_id), "")

    def leave(self) -> None:
        """Leave a step unfinished (it failed or is held): it stays interrupted."""
        self.step_id = None
        self._label = None
        self._cache = None
        self.resumed = False

    def steps(self) -> list[StepInfo]:
        finished: set[int] = set()
        for e in self.store.events("step_finished"):
            sid = e.data.get("step_id")
            if isinstance(sid, int):
                finished.add(sid)
        out = []
        for sid, e in self.store.events_with_ids("step_started"):
            out.append(
                StepInfo(
                    id=sid,
                    label=str(e.data.get("step", "")),
                    owner=str(e.data.get("owner", "")),
                    data=dict(e.data.get("data") or {}),
                    time=e.time,
                    finished=sid in finished,
                )
            )
        return out

    def unfinished(self) -> list[StepInfo]:
        """Steps started and never finished, oldest first: interrupted work."""
        return [s for s in self.steps() if not s.finished]

    # --- rows of the current step ----------------------------------------------------

    def _add(
        self,
        kind: str,
        key: str,
        data: dict[str, Any],
        ref: int | None = None,
        record: tuple[str, str, str, str | None] | None = None,
        step_id: int | None = None,
    ) -> int:
        time = self.now()
        step = self.step_id if step_id is None else step_id
        row_id = self.store.add_journal(step, kind, key, time, data, ref, record)
        if self._cache is not None and step == self.step_id:
            if kind == "unit":
                self._done.add(key)
            self._cache.append(
                {
                    "id": row_id,
                    "step_id": step,
                    "kind": kind,
                    "key": key,
                    "ref": ref,
                    "time": time,
                    "data": data,
                }
            )
        return row_id

    def rows(self, step_id: int | None = None) -> list[dict[str, Any]]:
        if step_id is None or step_id == self.step_id:
            if self._cache is not None:
                return self._cache
            if self.step_id is None:
                return []
            step_id = self.step_id
        return self.store.journal(step_id=step_id)

    # --- units of work and decisions kept ------------------------------------------------

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """A part of the step (a batch) whose unit keys and kept values are its own, so a
        unit operation run once per batch in one step is resumed batch by batch."""
        token = _scope.set(name)
        try:
            yield
        finally:
            _scope.reset(token)

    @staticmethod
    def scoped(key: str) -> str:
        """``key`` as stored in the current scope (``key@scope``)."""
        scope = _scope.get()
        return key if scope is None else f"{key}@{scope}"

    def done(self, key: str) -> bool:
        """Whether the unit ``key`` of the current step is done."""
        if self._cache is None:  # no step in hand: nothing of it is done
            return False
        return self.scoped(key) in self._done

    @contextlib.contextmanager
    def unit(self, key: str, vessels: list[str] | None = None) -> Iterator[None]:
        """A unit of work: its device actions carry its key; done when the block ends."""
        token = self.enter_unit(key)
        try:
            yield
        finally:
            self.exit_unit(token)
        self.mark_done(key, vessels or [])

    def enter_unit(self, key: str) -> Token[str | None]:
        return _unit.set(self.scoped(key))

    def exit_unit(self, token: Token[str | None]) -> None:
        _unit.reset(token)

    def mark_done(self, key: str, vessels: list[str]) -> None:
        self._add("unit", self.scoped(key), {"vessels": vessels})

    def remembered(self, key: str) -> tuple[bool, Any]:
        key = self.scoped(key)
        for r in reversed(self.rows()):
            if r["kind"] == "memo" and r["key"] == key:
                return True, r["data"].get("value")
        return False, None

    def remember(self, key: str, value: Any, vessels: list[str] | None = None) -> Any:
        """Keep ``value`` for this step; ``vessels`` it concerns are named with it (so an
        interruption before any action on them still names them)."""
        data = {"value": value, **({"vessels": vessels} if vessels else {})}
        self._add("memo", self.scoped(key), data)
        return value

    def once(
        self,
        key: str,
        compute: Callable[[], Any],
        vessels: Callable[[Any], list[str]] | None = None,
    ) -> Any:
        """``compute()`` the first time in this step; the kept value when the step is re-entered.

        ``vessels`` says which vessels the value concerns (a plan's), to name them."""
        found, value = self.remembered(key)
        if found:
            return value
        value = compute()
        return self.remember(key, value, vessels(value) if vessels else None)

    @contextlib.contextmanager
    def tip_purpose(self, purpose: str) -> Iterator[None]:
        token = _purpose.set(purpose)
        try:
            yield
        finally:
            _purpose.reset(token)

    @staticmethod
    def current_unit() -> str | None:
        return _unit.get()

    @staticmethod
    def current_purpose() -> str | None:
        return _purpose.get()

    # --- device actions ---------------------------------------------------------------

    def intent(
        self, device: str, action: str, data: dict[str, Any], vessel: str | None = None
    ) -> int:
        data = {"device": device, "action": action, "unit": _unit.get(), **data}
        if _purpose.get() is not None:
            data.setdefault("purpose", _purpose.get())
        row = self._add(
            "intent", f"{device}.{action}", data, record=("journal", "intent", device, vessel)
        )
        self.intents += 1
        self.crash_point("intent")
        return row

    def complete(
        self,
        intent_id: int,
        device: str,
        action: str,
        detail: dict[str, Any],
        outcome: str = "done",
        vessel: str | None = None,
    ) -> int:
        """The device replied: the action is done (or failed, doing nothing)."""
        return self._add(
            "completion",
            f"{device}.{action}",
            {"outcome": outcome, **detail},
            ref=intent_id,
            record=("device", action if outcome == "done" else f"{action}_failed", device, vessel),
        )

    def reconciled(
        self, intent_id: int, done: bool, how: str, step_id: int | None = None, **data: Any
    ) -> int:
        """An unknown outcome, established by asking the device (filed with its step)."""
        return self._add(
            "reconciled",
            "reconciled",
            {"outcome": "done" if done else "not_done", "how": how, **data},
            ref=intent_id,
            step_id=step_id,
        )

    def actions(self, step_id: int | None = None) -> list[ActionRecord]:
        """The device actions of a step, each with its outcome (None: unknown)."""
        rows = self.rows(step_id)
        if step_id is None or step_id == self.step_id:
            key = (self.step_id, len(rows))  # rows only grow within a step
            if self._actions is None or self._actions[0] != key:
                self._actions = (key, actions_of(rows))
            return self._actions[1]
        return actions_of(rows)

    def crash_point(self, phase: str) -> None:
        if self._crash is not None and self._crash == (self.intents, phase):
            os.kill(os.getpid(), signal.SIGKILL)

    # --- recovery entries ---------------------------------------------------------------

    def recovery(
        self, what: str, why: str, vessels: list[str], step_id: int | None = None, **data: Any
    ) -> None:
        """A recovery decision, in the journal and as a ``recovery`` event naming the vessels."""
        payload = {"what": what, "why": why, "vessels": vessels, **data}
        self._add("recovery", what, payload, step_id=step_id)
        self.store.add_event(
            Event(
                time=self.now(),
                kind="recovery",
                actor="workcell",
                vessel_id=vessels[0] if len(vessels) == 1 else None,
                data=payload,
            )
        )


def actions_of(rows: list[dict[str, Any]]) -> list[ActionRecord]:
    out: dict[int, ActionRecord] = {}
    for r in rows:
        if r["kind"] == "intent":
            d = r["data"]
            out[r["id"]] = ActionRecord(
                id=r["id"],
                step_id=r["step_id"],
                device=str(d.get("device", "")),
                action=str(d.get("action", "")),
                time=r["time"],
                data=d,
            )
        elif r["kind"] == "completion" and r["ref"] in out:
            a = out[r["ref"]]
            a.outcome = str(r["data"].get("outcome", "done"))
            a.detail = r["data"]
        elif r["kind"] == "reconciled" and r["ref"] in out:
            a = out[r["ref"]]
            if a.outcome is None:
                a.outcome = "done" if r["data"]["outcome"] == "done" else "failed"
                a.how = str(r["data"].get("how", ""))
                a.detail = r["data"]  # a partial outcome's effects and channels
    return list(out.values())


def _parse_crash(text: str) -> tuple[int, str] | None:
    if not text:
        return None
    n, _, phase = text.partition(":")
    if phase not in ("intent", "reply") or not n.isdigit():
        raise ValueError(f"{CRASH_ENV}={text!r}: expected N:intent or N:reply")
    return int(n), phase
