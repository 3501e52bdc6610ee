"""The floor judged a second time, from the simulated labs' own logs, beside the records.

Why this exists: ``audit.py`` judges the floor from the campaigns' batch records, the
controller's account of what it did. The project's rule is to judge outcomes from the
world. In a dry-run each campaign has its own simulated lab on the floor's one
timeline (each lab's clock starts at the floor's start and is moved to each grant),
and each lab logs every physical action with when it began and ended
(``simulators/lab/account.py`` reads one log). Merged on that timeline, the labs'
logs give the same figures again, from what physically happened:

* device uses by two campaigns at once (a device's actions less than ``RUN_GAP_S``
  apart are one use, as in the record's audit) and each device's busy time;
* the deck's working positions: plates on a deck with live cells at once (the peak),
  and how often a plate came onto a full deck;
* the incubator's plate mover: its moves and the transfer-station stays of two
  campaigns at once;
* each plate's enzyme batches (last enzyme to the neutraliser, the protocol's window,
  against its maximum) and the longest any of its wells was in enzyme;
* each plate's time out of the incubator while it held cells.

``compare`` sets these beside the record's figures. A disagreement is a defect, in the
record (it says something the world did not do) or in the floor (the world did
something the record and the plan do not show); each is named.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from simulators.lab import account
from simulators.lab.store import LAB_DB, read_log
from workcell.assembly.lab import LAB_FOLDER

if TYPE_CHECKING:
    from protocols.campaign.audit import Audit

RUN_GAP_S = 120.0  # a device's actions further apart than this are separate uses
MOVER = ("incubator", "arm")  # the devices that move plates between incubator and deck
SHARED = ("star", "imager", "counter")
ENZYME_TOL_MIN = 1.0  # record and world may place a window's ends a few liquid moves apart
OUT_TOL_MIN = 1.0  # the record counts out of the incubator from the fetch's reply, the
# world from its start (one plate move, 35 s on the simulated incubator)
NAMED = 5  # disagreements and overlaps named, at most

Spans = list[tuple[float, float, str]]  # (from, to, campaign) in seconds on the floor


class WorldAudit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labs: int = Field(description="campaigns whose simulated lab's log was read")
    device_overlaps: int
    device_busy_s: dict[str, float]
    deck_peak: int = Field(description="most plates with live cells on the decks at once")
    deck_overfull: int = Field(description="times a plate came onto a full deck")
    mover_overlaps: int
    enzyme_window_min: dict[str, list[float]] = Field(
        description="per campaign/plate, each batch's last enzyme to its neutraliser"
    )
    enzyme_longest_well_min: dict[str, float] = Field(
        description="per campaign/plate, the longest any of its wells was in enzyme"
    )
    enzyme_over: int = Field(description="batches whose window passed its maximum")
    out_of_incubator_min: dict[str, float] = Field(
        description="per campaign/plate, the longest stretch out that ended back in a slot"
    )
    out_not_back_min: dict[str, float] = Field(
        description="per campaign/plate, out of the incubator until its cells were taken"
    )
    out_over: int = Field(description="stretches out of the incubator past their maximum")
    overlaps: list[str] = Field(description="the first overlaps found, named")


def lab_logs(run_dirs: dict[str, Path]) -> dict[str, list[account.Row]]:
    """Each campaign's simulated lab's log (campaigns without a lab left out)."""
    return {
        name: read_log(folder / LAB_FOLDER)
        for name, folder in run_dirs.items()
        if (folder / LAB_FOLDER / LAB_DB).exists()
    }


def world_audit(
    run_dirs: dict[str, Path] | None = None,
    *,
    logs: dict[str, list[account.Row]] | None = None,
    shared: tuple[str, ...] = SHARED,
    deck_positions: int | None = None,
    enzyme_max_min: dict[str, float] | None = None,
    out_max_min: float | None = None,
) -> WorldAudit:
    """Judge the floor from its labs' logs (read from ``run_dirs``, or given as ``logs``);
    ``enzyme_max_min`` per campaign, the longest its enzyme may act."""
    if logs is None:
        logs = lab_logs(run_dirs or {})
    firsts = [account.began(rows[0]) for rows in logs.values() if rows]
    t0 = min(firsts) if firsts else datetime.min

    def s(t: datetime) -> float:
        return (t - t0).total_seconds()

    uses: dict[str, Spans] = {}
    mover: Spans = []
    deck: Spans = []
    windows: dict[str, list[float]] = {}
    longest: dict[str, float] = {}
    back: dict[str, float] = {}
    not_back: dict[str, float] = {}
    enzyme_over = out_over = 0
    for name, rows in logs.items():
        acts = account.actions(rows)
        for dev in shared:
            mine = [(s(x.start), s(x.end)) for x in acts if x.what == dev]
            uses.setdefault(dev, []).extend((a, b, name) for a, b in runs(mine))
        mover += [(s(x.start), s(x.end), name) for x in acts if x.what in MOVER]
        places = account.plate_places(rows)
        stays = [x for x in places if x.note == account.STATION and x.seconds > 0]
        mover += [(s(x.start), s(x.end), name) for x in stays]
        live = account.live_cells(rows)
        for p in places:
            if p.note != account.DECK:
                continue
            for c in live:
                if c.what == p.what and c.start < p.end and p.start < c.end:
                    deck.append((s(max(c.start, p.start)), s(min(c.end, p.end)), name))
        for b in account.enzyme(rows):
            key = f"{name}/{b.plate}"
            windows.setdefault(key, []).append(b.window_s / 60)
            longest[key] = max(longest.get(key, 0.0), b.longest_well_s / 60)
            limit = (enzyme_max_min or {}).get(name)
            if limit is not None and b.window_s > limit * 60 + 1:
                enzyme_over += 1
        for o in account.out_of_incubator(rows):
            key = f"{name}/{o.what}"
            into = back if o.note == "back" else not_back
            into[key] = max(into.get(key, 0.0), o.seconds / 60)
            if out_max_min is not None and o.seconds > out_max_min * 60 + 1:
                out_over += 1
    named: list[str] = []
    device_overlaps = 0
    for dev, spans in sorted(uses.items()):
        device_overlaps += overlaps(spans, dev, named)
    busy = {dev: sum(b - a for a, b, _ in spans) for dev, spans in uses.items() if spans}
    peak, overfull = deck_load(deck, deck_positions)
    return WorldAudit(
        labs=len(logs),
        device_overlaps=device_overlaps,
        device_busy_s=busy,
        deck_peak=peak,
        deck_overfull=overfull,
        mover_overlaps=overlaps(mover, "plate mover", named),
        enzyme_window_min=windows,
        enzyme_longest_well_min=longest,
        enzyme_over=enzyme_over,
        out_of_incubator_min=back,
        out_not_back_min=not_back,
        out_over=out_over,
        overlaps=named[:NAMED],
    )


def runs(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A device's actions, joined into uses where less than ``RUN_GAP_S`` apart."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a - out[-1][1] <= RUN_GAP_S:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlaps(spans: Spans, what: str = "", named: list[str] | None = None) -> int:
    """Uses that begin while another campaign's use of the same resource is under way
    (each found is added to ``named``, if given). A campaign's uses that overlap or touch
    are one use: a plate's stay on the transfer station and the move that takes it off
    are one use of the mover, however each account places the stay's end."""
    n = 0
    reach: list[tuple[float, str]] = []
    for a, b, c in _joined(spans):
        other = next((o for end, o in reach if end > a + 1e-6 and o != c), None)
        if other is not None:
            n += 1
            if named is not None:
                day = f"day {a / 86400:.3f} ({a:.0f} s)"
                named.append(f"{what}: {c} at {day} while {other} used it")
        reach = [(end, o) for end, o in reach if end > a] + [(b, c)]
    return n


def _joined(spans: Spans) -> Spans:
    """Each campaign's spans, those that overlap or touch joined, in order."""
    out: Spans = []
    last: dict[str, int] = {}  # campaign -> index of its latest span in out
    for a, b, c in sorted(spans):
        i = last.get(c)
        if i is not None and a <= out[i][1]:
            out[i] = (out[i][0], max(out[i][1], b), c)
        else:
            last[c] = len(out)
            out.append((a, b, c))
    return out


def deck_load(stays: Spans, capacity: int | None) -> tuple[int, int]:
    """The most plates on the deck at once, and how often one came onto a full deck."""
    kept = [(a, b) for a, b, _ in stays if b > a]
    points = sorted([(a, 1) for a, _ in kept] + [(b, -1) for _, b in kept])
    load = peak = over = 0
    for _, step in points:  # (at one time, plates leave before others arrive: -1 sorts first)
        load += step
        peak = max(peak, load)
        if step > 0 and capacity is not None and load > capacity:
            over += 1
    return peak, over


def compare(record: Audit, world: WorldAudit) -> list[str]:
    """Where the record's figures and the world's differ, each named."""
    out: list[str] = []
    for what, r, w in (
        ("device overlaps", record.device_overlaps, world.device_overlaps),
        ("deck peak", record.deck_peak, world.deck_peak),
        ("deck overfull", record.deck_overfull, world.deck_overfull),
        ("mover overlaps", record.mover_overlaps, world.mover_overlaps),
    ):
        if r != w:
            out.append(f"{what}: record {r}, world {w}")
    for key in sorted(set(record.enzyme_plate_min) | set(world.enzyme_window_min)):
        r_min, w_min = record.enzyme_plate_min.get(key, []), world.enzyme_window_min.get(key, [])
        if len(r_min) != len(w_min):
            out.append(f"enzyme {key}: record {len(r_min)} batches, world {len(w_min)}")
            continue
        for i, (a, b) in enumerate(zip(r_min, w_min, strict=True)):
            if abs(a - b) > ENZYME_TOL_MIN:
                out.append(f"enzyme {key} batch {i + 1}: record {a:.2f} min, world {b:.2f} min")
    for key in sorted(set(record.out_of_incubator_min) | set(world.out_of_incubator_min)):
        r_out = record.out_of_incubator_min.get(key)
        w_out = world.out_of_incubator_min.get(key)
        if r_out is None or w_out is None or abs(r_out - w_out) > OUT_TOL_MIN:
            out.append(f"out of incubator {key}: record {_min(r_out)}, world {_min(w_out)}")
    return out


def _min(x: float | None) -> str:
    return "none" if x is None else f"{x:.2f} min"
