"""Hold points: when the workcell needs a person to decide, and the answer it gets.

A protocol that meets what it must not decide alone (an enzyme window that closed,
an outcome no device can settle) raises a ``Hold``; whoever runs the workcell
answers it: the Prefect UI's operator form, the terminal, or, in a dry-run started
with ``--auto-approve``, an auto-approval that says so in the record. Without
anyone to ask, the run stops with ``HeldForOperator`` and the step waits, unfinished,
for a run that can ask.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workcell.errors import WorkcellError


class Hold(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="what kind of hold: over_exposure, device_fault, ...")
    reason: str
    vessels: list[str] = Field(default_factory=list)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator: str = Field(min_length=1)
    decision: Literal["approve", "abort"] = "approve"
    comment: str = ""


Ask = Callable[[Hold], Awaitable[Answer]]


class AbortedByOperator(WorkcellError):
    """The operator decided to stop at a hold point; the message says where and why."""
