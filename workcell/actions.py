"""The log of device actions a workcell performed, in order.

Every back end reports each physical action here (a tip pick-up, an aspirate, a
plate moved). Dry-run reports are drawn from it, and tests use it to prove that a
refused protocol moved nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Action(BaseModel):
    time: datetime
    device: str
    action: str
    detail: dict[str, Any] = Field(default_factory=dict)


class ActionLog:
    def __init__(self) -> None:
        self.actions: list[Action] = []

    def record(self, time: datetime, device: str, action: str, **detail: Any) -> None:
        self.actions.append(Action(time=time, device=device, action=action, detail=detail))

    def __len__(self) -> int:
        return len(self.actions)

    def of(self, action: str) -> list[Action]:
        return [a for a in self.actions if a.action == action]
