"""The protocols the CLI and the flows can run, by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from protocols import seeding
from workcell.assembly import Workcell


@dataclass(frozen=True)
class ProtocolEntry:
    name: str
    params: type[BaseModel]
    run: Callable[[Workcell, Any], Awaitable[BaseModel]]
    summary: str


PROTOCOLS: dict[str, ProtocolEntry] = {
    "seeding": ProtocolEntry(
        "seeding", seeding.SeedingParams, seeding.run, "seed vessels from a cell suspension"
    ),
}
