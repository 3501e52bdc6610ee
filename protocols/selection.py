"""Which culture vessels a protocol works on: wells of deck plates that the store knows."""

from __future__ import annotations

from dataclasses import dataclass

from pylabrobot.resources import Plate
from pylabrobot.resources.well import Well

from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError
from workcell.labware import growth_area_cm2
from workcell.store import VesselRecord


@dataclass(frozen=True)
class Target:
    plate: str
    well: Well
    record: VesselRecord

    @property
    def vessel(self) -> str:
        return self.well.name

    @property
    def area_cm2(self) -> float:
        return growth_area_cm2(self.well)


def well_of(plate: Plate, ident: str) -> Well | None:
    try:
        item = plate.get_item(ident)
    except (IndexError, KeyError, ValueError):
        return None
    return item if isinstance(item, Well) else None


def active_vessels(
    wc: Workcell, plates: list[str], wells: list[str], problems: list[str]
) -> list[Target]:
    """The active culture vessels on ``plates`` (all of them, or ``wells`` of each).

    Unknown plates and wells, and wells the store has no active vessel for, become
    lines in ``problems``. With ``wells`` empty, a plate's empty wells are skipped.
    """
    targets: list[Target] = []
    seen_plates: set[str] = set()
    for plate_name in plates:
        if plate_name in seen_plates:
            problems.append(f"plate {plate_name!r} is named more than once")
            continue
        seen_plates.add(plate_name)
        try:
            plate = wc.plate(plate_name)
        except WorkcellError as err:
            problems.append(str(err))
            continue
        idents = wells or [w.get_identifier() for w in plate.get_all_items()]
        found = 0
        for ident in idents:
            well = well_of(plate, ident)
            if well is None:
                problems.append(f"plate {plate_name!r} has no well {ident!r}")
                continue
            if any(t.well is well for t in targets):
                problems.append(f"well {ident!r} of plate {plate_name!r} is named more than once")
                continue
            record = wc.store.vessel(well.name)
            if record is None or record.state != "active":
                if wells:
                    state = "not in the store" if record is None else f"{record.state}"
                    problems.append(f"vessel {well.name} is {state}, not an active culture")
                continue
            targets.append(Target(plate_name, well, record))
            found += 1
        if not wells and found == 0:
            problems.append(f"plate {plate_name!r} holds no active culture vessel")
    return targets


def targets_named(wc: Workcell, vessels: list[str]) -> list[Target]:
    """The targets of a plan kept in the journal, by vessel name (a resumed step's)."""
    out = []
    for v in vessels:
        well = wc.resource(v)
        record = wc.store.vessel(v)
        if not isinstance(well, Well) or record is None:
            raise WorkcellError(f"vessel {v} of the interrupted step is not in the workcell")
        out.append(Target(record.plate, well, record))
    return out
