"""The run's log tells the lab work: plate fetched, fed, imaged 63 %, counted, seeded.

Every event and measurement a protocol writes to the store passes through
``narrating()`` (``workcell.store.observed``), which turns the ones a person
follows into one INFO line each in the Prefect run's log (WARNING for a
deviation or an alarm). Confluence images of one plate become one line when the
plate is done. Bookkeeping (step started, checkpoints, single tips) stays out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from workcell.store import Event, Measurement, observed

Say = Callable[[int, str], None]


def _plate_of(vessel: str) -> str:
    return vessel.split("_well_", 1)[0]


def _well_of(vessel: str) -> str:
    return vessel.split("_well_", 1)[-1]


def _cells(x: float) -> str:
    return f"{x:.2g}" if x < 1e4 else f"{x:.2e}".replace("e+0", "e").replace("e+", "e")


def _moved(d: dict[str, Any]) -> str:
    where = str(d.get("location", ""))
    plate = d.get("plate", "?")
    if where.startswith("deck:"):
        return f"{plate} on the deck ({where[5:]})"
    if where.endswith(":transfer_station"):
        return f"{plate} out on the incubator's transfer station"
    return f"{plate} into the incubator ({where})"


def event_line(e: Event) -> tuple[int, str] | None:
    """The line a person reads for an event, with its log level; None to stay quiet."""
    d = e.data
    k = e.kind
    info = logging.INFO
    if k == "plate_moved":
        return info, _moved(d)
    if k == "load" and e.actor == "config":
        return None  # the reservoirs the config fills at start-up
    if k == "load":
        cells = d.get("viable_cells") or 0
        extra = f" ({_cells(cells)} viable cells)" if cells else ""
        return info, f"{e.actor} loaded {d['volume_uL'] / 1000:.1f} mL into {d['container']}{extra}"
    if k == "protocol_started":
        return info, f"{d.get('protocol')}: plan checked, starting"
    if k == "protocol_finished":
        protocol = d.get("protocol")
        if "children" in d:
            kids = d["children"] or []
            plates = sorted({_plate_of(c) for c in kids})
            return info, f"{protocol}: seeded {len(kids)} child vessels on {', '.join(plates)}"
        if protocol == "incubation":
            return info, f"incubated {d.get('hours', 0):g} h (simulated), imaged the plates"
        verb = {"seeding": "seeded", "media_exchange": "fed"}.get(str(protocol), "done:")
        return info, f"{protocol}: {verb} {d.get('vessels', 0)} vessels"
    if k == "decision" and "passage" in d:
        mean = sum(d["confluence_percent"].values()) / max(1, len(d["confluence_percent"]))
        done = "confluent, passaging" if d["passage"] else "not passaged"
        return info, f"{d['plate']}: {done} (mean confluence {mean:.0f} %)"
    if k == "decision":
        where = ", ".join(d.get("plates") or [])
        why = f": {d['reason']}" if d.get("reason") else ""
        return info, f"campaign: {d.get('action')} {where}{why}".replace(" :", ":")
    if k == "enzyme_incubated":
        return info, f"enzyme on {', '.join(d['plates'])}: {d['minutes']:g} min at 37 °C"
    if k == "pooled":
        return info, f"pooled {len(d['vessels'])} vessels of {d['plate']} into {d['pool']}"
    if k == "counted":
        return info, (
            f"counted {d['sample']}: {_cells(d['viable_per_mL'])} viable cells/mL, "
            f"{d['viability_percent']:.0f} % viable"
        )
    if k == "harvested":
        return info, (
            f"harvested {len(d['vessels'])} vessels: {_cells(d['viable_cells'])} viable cells, "
            f"{d['viability_percent']:.0f} % viable; {d.get('decision', '')}"
        )
    if k == "surplus":
        return info, f"{_cells(d['viable_cells'])} viable cells left in {d['pool']} (surplus)"
    if k in ("deviation", "alarm"):
        return logging.WARNING, f"{k}: {d.get('message', '')}"
    if k == "operator_decision":
        note = f": {d['comment']}" if d.get("comment") else ""
        return info, f"{e.actor} decided {d['decision']} on {d['action']}{note}"
    if k in ("campaign_started", "campaign_finished", "vessels_adopted"):
        return info, k.replace("_", " ") + (f": {d['outcome']}" if "outcome" in d else "")
    if k in ("tips_replaced", "topped_up", "emptied"):
        return info, f"{e.actor}: {k.replace('_', ' ')} {d.get('rack') or d.get('container', '')}"
    if k == "step_started" and str(d.get("step", "")).startswith("wait"):
        return info, f"incubating: {d['step']}"
    return None


class Narrator:
    """Collects one plate's confluence images into one line; says everything else at once."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.imaged: dict[str, list[tuple[str, float]]] = {}

    def __call__(self, item: Event | Measurement) -> None:
        if isinstance(item, Measurement):
            if item.kind == "confluence" and item.vessel_id:
                v = item.vessel_id
                self.imaged.setdefault(_plate_of(v), []).append((_well_of(v), 100 * item.value))
            return
        if item.kind == "decision" and "passage" in item.data:
            self.imaged.pop(str(item.data.get("plate")), None)  # the decision says it
        self.flush()
        line = event_line(item)
        if line is not None:
            self.say(*line)

    def flush(self) -> None:
        for plate, values in self.imaged.items():
            mean = sum(v for _, v in values) / len(values)
            each = ", ".join(f"{w} {v:.0f}" for w, v in values[:24])
            self.say(logging.INFO, f"imaged {plate}: mean confluence {mean:.0f} % ({each})")
        self.imaged.clear()


@contextlib.contextmanager
def narrating(say: Say) -> Iterator[Narrator]:
    """Narrate what this process writes to any store while inside."""
    narrator = Narrator(say)
    with observed(narrator):
        try:
            yield narrator
        finally:
            narrator.flush()


def run_logger_say() -> Say:
    """Say it in the current Prefect run's log (the task's, inside a task)."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    fallback = logging.getLogger("workcell.lab")

    def say(level: int, text: str) -> None:
        try:
            get_run_logger().log(level, text)
        except MissingContextError:
            fallback.log(level, text)

    return say
