"""The log of device actions a workcell performed, in order.

Every device action the journal completes is appended here (a tip pick-up, an
aspirate, a plate moved); a driver's own notes (a retried serial line) are
recorded here too and go to the batch record through ``sink``. Dry-run reports
and the Opentrons export are drawn from it, and tests use it to prove that a
refused protocol moved nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Action(BaseModel):
    time: datetime
    device: str
    action: str
    detail: dict[str, Any] = Field(default_factory=dict)


Sink = Callable[[datetime, str, str, dict[str, Any]], None]


class ActionLog:
    """In memory for reports and tests; each action also goes to ``sink`` (the batch record)."""

    def __init__(self, sink: Sink | None = None) -> None:
        self.actions: list[Action] = []
        self.sink = sink

    def record(self, time: datetime, device: str, action: str, **detail: Any) -> None:
        self.actions.append(Action(time=time, device=device, action=action, detail=detail))
        if self.sink is not None:
            self.sink(time, device, action, detail)

    def append(self, time: datetime, device: str, action: str, **detail: Any) -> None:
        """An action the journal already wrote to the record: the in-memory log only."""
        self.actions.append(Action(time=time, device=device, action=action, detail=detail))

    def __len__(self) -> int:
        return len(self.actions)

    def of(self, action: str) -> list[Action]:
        return [a for a in self.actions if a.action == action]
