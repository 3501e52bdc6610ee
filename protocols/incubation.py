"""Incubate: let the simulated culture grow for a while, then image it.

On the bench, cells grow in the incubator by themselves; nobody runs anything.
A dry-run workcell has a simulated clock that moves only when something waits, so
without this operation a plate seeded from the UI would stay at 0 % confluence
and a passage would never be due. ``run`` waits the given hours of simulated time
(watching the incubators as the campaign does while it waits), then images the
plates, so every unit operation can be tried from the UI on a dry-run workcell.

On a workcell with a real clock it refuses: the time passes by itself there.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from protocols.imaging import image_plates
from workcell.assembly.choices import Choice, choice
from workcell.assembly.workcell import Workcell
from workcell.errors import ProtocolRefused

NAME = "incubation"


class IncubationParams(BaseModel):
    """How long the plates stay in the incubator, and which to image after."""

    model_config = ConfigDict(extra="forbid", title="Incubate (dry-run)")

    hours: float = Field(
        default=72.0,
        ge=0.5,
        le=21 * 24,
        title="Time (h)",
        description="simulated hours in the incubator; the culture model grows the cells",
    )
    plates: list[str] = Field(
        default_factory=list,
        title="Plates to image afterwards",
        description="empty: every plate with vessels in culture",
        json_schema_extra=choice(Choice.PLATE),
    )
    check_every_min: float = Field(
        default=60,
        ge=1,
        le=1440,
        title="Incubator check every (min)",
        description="temperature, CO₂ and door are read this often while waiting",
    )


class IncubationResult(BaseModel):
    hours: float
    confluence_percent: dict[str, float] = Field(description="per vessel, after the wait")
    alarms: list[str]
    started: datetime
    finished: datetime


def plan(wc: Workcell, params: IncubationParams) -> list[str]:
    """The plates to image; refused on a real clock or for a plate with no culture."""
    problems: list[str] = []
    if not getattr(wc.clock, "simulated", False):
        problems.append(
            "incubate moves a simulated clock; on this workcell time is real and the cells "
            "grow by themselves: image or passage them when they are due"
        )
    in_culture = list(dict.fromkeys(v.plate for v in wc.store.vessels(state="active")))
    plates = params.plates or in_culture
    for p in plates:
        if p not in in_culture:
            problems.append(f"plate {p!r} has no vessel in culture to image")
    if not plates:
        problems.append("no vessel is in culture: seed a plate first")
    if problems:
        raise ProtocolRefused(NAME, problems)
    return plates


async def run(wc: Workcell, params: IncubationParams, actor: str = NAME) -> IncubationResult:
    plates = plan(wc, params)
    started = wc.clock.now()
    wc.event("protocol_started", actor, protocol=NAME, params=params.model_dump(mode="json"))
    alarms: list[str] = []
    left = params.hours * 3600
    while left > 0:
        step = min(left, params.check_every_min * 60)
        await wc.clock.sleep(step)
        left -= step
        alarms += await wc.check_incubators()
    imaged = await image_plates(wc, plates)
    wc.event("protocol_finished", actor, protocol=NAME, vessels=len(imaged), hours=params.hours)
    return IncubationResult(
        hours=params.hours,
        confluence_percent={v: 100 * c for v, c in imaged.items()},
        alarms=alarms,
        started=started,
        finished=wc.clock.now(),
    )
