"""The protocols the CLI and the flows can run, by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from protocols import harvest, media_exchange, passaging, seeding
from workcell.assembly.workcell import Workcell


@dataclass(frozen=True)
class ProtocolEntry:
    name: str
    params: type[BaseModel]
    run: Callable[[Workcell, Any], Awaitable[BaseModel]]
    summary: str

    def plates(self, params: BaseModel) -> list[str]:
        """The plates holding the cultures this protocol works on (not the empty ones)."""
        if isinstance(params, passaging.PassagingParams):
            return [params.plate]
        return list(getattr(params, "plates", []))


PROTOCOLS: dict[str, ProtocolEntry] = {
    "seeding": ProtocolEntry(
        "seeding", seeding.SeedingParams, seeding.run, "seed vessels from a cell suspension"
    ),
    "media_exchange": ProtocolEntry(
        "media_exchange",
        media_exchange.MediaExchangeParams,
        media_exchange.run,
        "replace spent medium with fresh medium",
    ),
    "passaging": ProtocolEntry(
        "passaging",
        passaging.PassagingParams,
        passaging.run,
        "image, and above the confluence threshold detach, count and reseed",
    ),
    "harvest": ProtocolEntry(
        "harvest",
        harvest.HarvestParams,
        harvest.run,
        "detach and pool a batch, count it and report the dose",
    ),
}
