"""What a simulated lab says happened in it, read from its own log alone.

Why this exists: the project judges a run from the world, not from the controller's
account of itself. A lab's log (``store.read_log``) is the world's account: every
physical action, with when it began and ended on the lab's clock. This module turns
one lab's log into the facts a judge needs, without reading the controller's store:

* ``actions``: each device action as a ``Span`` of time;
* ``plate_places``: each plate's stays on the deck, on an incubator's transfer station
  and in an incubator slot, from the arm's (or an operator's) moves and the incubator's
  fetches and take-ins. A plate leaves a place when the move that takes it begins and
  is in its new place when that move ends; a plate the lab was given (or drew) is on
  the deck until something moves it;
* ``live_cells``: when each plate's wells hold live cells: a well from the first
  dispense that brings cells into it until it has been emptied after its enzyme (its
  cells detached and taken out), emptied by the operator, or its plate discarded;
* ``enzyme``: each plate's enzyme batches: from the last dispense of enzyme into it
  (its end) to the first dispense into one of its wells of liquid without enzyme from
  elsewhere (the neutraliser; its start), the window the protocol declares; and the
  longest any of its wells was in enzyme (its first enzyme to its own neutraliser);
* ``out_of_incubator``: each plate's stretches out of an incubator slot while it held
  cells, from the fetch that takes it out beginning to the take-in that puts it back
  ending (or to its cells' end, if it never went back).

The serial Cytomat's log names slots, not plates: its plates' moves are known here from
the arm's only. A dry-run floor's labs use the link incubator, whose log names the plate.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

DECK = "deck"
STATION = "station"
SLOT = "slot"
EMPTY_UL = 5.0  # a well holding less than this after its enzyme has had its cells taken
CELLS = 1.0  # a dispense bringing at least this many viable cells seeds a well

Row = dict[str, Any]


class Span(BaseModel):
    """Something that lasted: a device action, a plate's stay, an exposure."""

    model_config = ConfigDict(extra="forbid")

    what: str  # a device, or a plate
    start: datetime
    end: datetime
    note: str = ""

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class EnzymeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plate: str
    last_enzyme: datetime
    neutralised: datetime | None  # None: never neutralised in the log
    window_s: float  # last enzyme -> neutraliser (to the log's end if none came)
    longest_well_s: float  # the longest any of its wells was in enzyme


def began(row: Row) -> datetime:
    return datetime.fromisoformat(str(row["time"]))


def ended(row: Row) -> datetime:
    end = row.get("end_t")
    return began(row) + timedelta(seconds=float(row["t"] if end is None else end) - float(row["t"]))


def actions(rows: list[Row], devices: tuple[str, ...] | None = None) -> list[Span]:
    """Each action of a device (all, or those named), begin to end."""
    return [
        Span(what=str(r["device"]), start=began(r), end=ended(r), note=str(r["action"]))
        for r in rows
        if devices is None or r["device"] in devices
    ]


def _move(r: Row) -> tuple[str, str, str] | None:
    """(plate, where it was, where it goes) if the row moves a plate ('' for out of the
    lab: discarded, or put back in the hotel)."""
    d, a = r["detail"], r["action"]
    if a in ("move_plate", "carry_plate"):
        was = DECK if d["source"] == "deck" else STATION
        return str(d["plate"]), was, DECK if d["to"] == "deck" else STATION
    if a == "fetch_plate" and "plate" in d:
        return str(d["plate"]), SLOT, STATION
    if a == "take_in_plate" and "plate" in d:
        return str(d["plate"]), STATION, SLOT
    if a in ("discard_vessel", "return_vessel"):
        return str(d["plate"]), DECK, ""
    return None


def plate_places(rows: list[Row]) -> list[Span]:
    """Each plate's stays (``Span.what`` the plate, ``note`` the place: deck, station or
    slot). A plate first seen moving was where that move took it from since the log's
    start (the lab's own plates are on its deck), one whose wells were reached but which
    never moved was on the deck throughout, and one drawn from the hotel is on the deck
    from then. In transit (a move under way) a plate is in no place."""
    if not rows:
        return []
    start, last = began(rows[0]), max(ended(r) for r in rows)
    at: dict[str, tuple[str, datetime]] = {}
    out: list[Span] = []
    moved: set[str] = set()
    for r in rows:
        if r["action"] == "draw_vessel":
            moved.add(str(r["detail"]["plate"]))
            at[str(r["detail"]["plate"])] = (DECK, ended(r))
            continue
        move = _move(r)
        if move is None:
            continue
        plate, was, to = move
        moved.add(plate)
        place, since = at.pop(plate, (was, start))
        out.append(Span(what=plate, start=since, end=began(r), note=place))
        if to:
            at[plate] = (to, ended(r))
    out += [Span(what=p, start=s, end=last, note=place) for p, (place, s) in at.items()]
    handled = {_plate(w) for w in _wells(rows)} - moved  # never moved: on its deck throughout
    out += [Span(what=p, start=start, end=last, note=DECK) for p in sorted(handled)]
    return sorted(out, key=lambda s: (s.start, s.what))


def _wells(rows: list[Row]) -> set[str]:
    """The plates' wells the liquid handler reached."""
    found = {str(r["detail"].get(k, "")) for r in rows for k in ("target", "source")}
    return {w for w in found if "_well_" in w}


def _plate(well: str) -> str:
    return well.split("_well_", 1)[0]


def live_cells(rows: list[Row]) -> list[Span]:
    """Per plate, the stretches when at least one of its wells held live cells."""
    volume: dict[str, float] = {}
    live: set[str] = set()
    enzymed: set[str] = set()
    changes: list[tuple[datetime, str, bool]] = []  # (time, well, live)
    for r in rows:
        d, a = r["detail"], r["action"]
        if a == "dispense" and "_well_" in str(d["target"]):
            w = str(d["target"])
            volume[w] = float(d.get("volume_after_uL", volume.get(w, 0.0)))
            if float(d.get("enzyme", 0.0)) > 0.5:
                enzymed.add(w)
            if float(d.get("cells", 0.0)) >= CELLS and w not in live and d.get("sources") != [w]:
                live.add(w)
                enzymed.discard(w)
                changes.append((began(r), w, True))
        elif a == "aspirate" and "_well_" in str(d["source"]):
            w = str(d["source"])
            volume[w] = max(0.0, volume.get(w, 0.0) - float(d["volume_uL"]))
            if w in live and w in enzymed and volume[w] < EMPTY_UL:
                live.discard(w)
                enzymed.discard(w)
                changes.append((ended(r), w, False))
        elif a == "empty" and str(d.get("container", "")) in live:
            live.discard(str(d["container"]))
            changes.append((ended(r), str(d["container"]), False))
        elif a == "discard_vessel":
            for w in [w for w in live if _plate(w) == str(d["plate"])]:
                live.discard(w)
                changes.append((ended(r), w, False))
    wells: dict[str, set[str]] = {}
    since: dict[str, datetime] = {}
    out: list[Span] = []
    for t, w, on in changes:
        p = _plate(w)
        held = wells.setdefault(p, set())
        (held.add if on else held.discard)(w)
        if held and p not in since:
            since[p] = t
        elif not held and p in since:
            out.append(Span(what=p, start=since.pop(p), end=t, note="live cells"))
    last = max((ended(r) for r in rows), default=None)
    out += [Span(what=p, start=s, end=last, note="live cells") for p, s in since.items() if last]
    return out


def enzyme(rows: list[Row]) -> list[EnzymeBatch]:
    """Each plate's enzyme batches: last enzyme -> neutraliser, and its longest well."""
    first: dict[str, dict[str, datetime]] = {}  # plate -> well -> its first enzyme
    last: dict[str, datetime] = {}
    out: list[EnzymeBatch] = []
    for r in rows:
        d = r["detail"]
        if r["action"] != "dispense" or "_well_" not in str(d["target"]):
            continue
        w = str(d["target"])
        p = _plate(w)
        if float(d.get("enzyme", 0.0)) > 0.5:
            first.setdefault(p, {}).setdefault(w, began(r))
            last[p] = ended(r)
        elif (
            p in last
            and w in first[p]
            and float(d.get("enzyme", 0.0)) == 0.0
            and [s for s in d.get("sources", []) if s != w]
        ):
            t = began(r)
            out.append(_batch(p, first.pop(p), last.pop(p), t, rows, r))
    end = max((ended(r) for r in rows), default=None)
    for p, t in last.items():
        assert end is not None
        out.append(_batch(p, first[p], t, None, rows, None, end))
    return out


def _batch(
    plate: str,
    wells: dict[str, datetime],
    last: datetime,
    neutralised: datetime | None,
    rows: list[Row],
    at: Row | None,
    end: datetime | None = None,
) -> EnzymeBatch:
    """A plate's batch, its wells' exposures each to its own neutraliser (after ``at``)."""
    stop = neutralised or end
    assert stop is not None
    own: dict[str, datetime] = {}
    if at is not None:
        for r in rows[rows.index(at) :]:
            d = r["detail"]
            w = str(d.get("target", ""))
            fresh = [s for s in d.get("sources", []) if s != w]
            if r["action"] == "dispense" and w in wells and w not in own and fresh:
                own[w] = began(r)
            if len(own) == len(wells):
                break
    longest = max((own.get(w, stop) - t).total_seconds() for w, t in wells.items())
    return EnzymeBatch(
        plate=plate,
        last_enzyme=last,
        neutralised=neutralised,
        window_s=(stop - last).total_seconds(),
        longest_well_s=longest,
    )


def out_of_incubator(rows: list[Row]) -> list[Span]:
    """Each plate's stretches out of an incubator slot while it held live cells: from the
    fetch that takes it out beginning to the take-in that puts it back ending (``note``
    "back"), or to its cells' end (harvested, passaged) or the log's end if it never
    went back ("not back")."""
    left: dict[str, datetime] = {}
    out: list[Span] = []
    for r in rows:
        d = r["detail"]
        if r["action"] == "fetch_plate" and "plate" in d:
            left[str(d["plate"])] = began(r)
        elif r["action"] == "take_in_plate" and str(d.get("plate")) in left:
            p = str(d["plate"])
            out.append(Span(what=p, start=left.pop(p), end=ended(r), note="back"))
    live = live_cells(rows)
    for p, s in left.items():
        ends = [x.end for x in live if x.what == p and x.start <= s < x.end]
        if ends:
            out.append(Span(what=p, start=s, end=ends[0], note="not back"))
    return out
