"""Were the time windows kept? Judged from the batch records, not the scheduler's account.

Each campaign's record holds what the simulated lab did and when: the vessels fed
(``fed`` events), the images (confluence measurements), the enzyme put on and the
plates back out of the incubator for neutralisation (``enzyme_added``,
``enzyme_incubated``), the plates moved (``plate_moved``), and every device action.
From these alone the audit measures every window of ``windows.py`` and checks that
no device was used by two campaigns at once (a device's use runs from each action's
intent, committed as it was sent, to its completion, the device's reply; actions
less than ``RUN_GAP_S`` apart are one use, and the uses' total is its busy time).

Two shared resources are judged the same way, from what happened:

* the deck's working positions: a culture plate holds one while it is on the deck
  with live cells (from its first vessel's creation there, or its move onto the
  deck, to its move into the incubator, or until its last vessel is passaged,
  harvested or discarded); ``deck_peak`` is the most plates of all campaigns on the
  deck at once, ``deck_overfull`` how many times a plate came onto a full deck;
* the incubator's plate mover: each plate move (the incubator's fetch and take-in,
  the arm's move between deck and incubator, intent to reply) and each stay of a
  plate on the incubator's transfer station (where the imager reads it) is a use;
  ``mover_overlaps`` counts uses by two campaigns at once.

The enzyme window is measured from an enzyme batch's last plate's enzyme (the
plates then go into the incubator) to the event that starts neutralisation. Each
plate is an enzyme batch of its own (``protocols/detachment.py``), so this is each
plate's own window; ``enzyme_first_plate_max_min`` (from a batch's first plate's
enzyme) is reported apart and equals it, unless a batch holds several plates
(as the detachment did before it went plate by plate).

In a dry-run the same floor is judged a second time from the simulated labs' own logs
(``world_audit.py``): the result carries the world's figures (``world``) beside the
record's, and how many of them disagree (``disagreements``, the first few named in
``disagreeing``). A disagreement is a defect in the record or in the floor.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from protocols.campaign import world_audit as world_judge
from protocols.campaign.engine import DAY_S, CampaignParams
from protocols.campaign.windows import HOUR_S, WindowParams
from protocols.campaign.world_audit import (
    MOVER,
    NAMED,
    SHARED,
    WorldAudit,
    compare,
    deck_load,
    world_audit,
)
from workcell.store import STORE_FILE, Store

TRANSFER = "transfer_station"


class Violation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign: str
    window: str
    at: datetime
    by_s: float = Field(description="how far past the window's close")
    hard: bool


class Audit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaigns: int
    violations: list[Violation]
    soft_lateness_h: float
    enzyme_waits_min: list[float]
    enzyme_first_plate_max_min: float
    feeds: int
    images: int
    device_overlaps: int
    device_busy_s: dict[str, float]
    deck_peak: int = Field(default=0, description="most culture plates on the deck at once")
    deck_overfull: int = Field(
        default=0, description="times a plate came onto the deck with every position taken"
    )
    mover_overlaps: int = Field(
        default=0, description="plate moves (or transfer-station stays) of two campaigns at once"
    )
    enzyme_plate_min: dict[str, list[float]] = Field(
        default_factory=dict, description="per campaign/plate, each enzyme batch's wait"
    )
    out_of_incubator_min: dict[str, float] = Field(
        default_factory=dict,
        description="per campaign/plate, the longest stretch out that ended back in a slot",
    )
    world: WorldAudit | None = Field(
        default=None, description="the same judged from the simulated labs' logs (dry-runs)"
    )
    disagreements: int = Field(default=0, description="figures where record and world differ")
    disagreeing: list[str] = Field(default_factory=list, description="the first few, named")

    @property
    def hard(self) -> int:
        return sum(1 for v in self.violations if v.hard)


def audit(
    run_dirs: dict[str, Path],
    params: dict[str, CampaignParams],
    w: WindowParams,
    shared: tuple[str, ...] = SHARED,
    deck_positions: int | None = None,
) -> Audit:
    """Judge the campaigns' records: every window, device overlaps, the deck's working
    positions (against ``deck_positions``, if given) and the plate mover."""
    out: list[Violation] = []
    soft = 0.0
    waits: list[float] = []
    first_plate = 0.0
    feeds = images = 0
    uses: dict[str, list[tuple[float, float, str]]] = {}
    on_deck: list[tuple[float, float, str]] = []  # (from, to, campaign) per plate's stay
    mover: list[tuple[float, float, str]] = []
    by_plate: dict[str, list[float]] = {}
    out_by_plate: dict[str, float] = {}
    origin: datetime | None = None
    for name, folder in run_dirs.items():
        if not (folder / STORE_FILE).exists():
            continue
        store = Store(folder / STORE_FILE)
        try:
            p = params[name]
            events = store.events()
            if origin is None and events:
                origin = events[0].time
            # feeds: every vessel, from its creation or last feed to the next feed
            last: dict[str, datetime] = {v.id: v.created_at for v in store.vessels()}
            for e in store.events("fed"):
                if e.vessel_id is None:
                    continue
                feeds += 1
                gap = (e.time - last[e.vessel_id]).total_seconds()
                late = gap - p.feed_every_days * DAY_S
                soft += max(0.0, late) / HOUR_S
                if late > w.feed_late_h * HOUR_S + 1:
                    out.append(
                        Violation(
                            campaign=name,
                            window=f"feed {e.vessel_id}",
                            at=e.time,
                            by_s=late - w.feed_late_h * HOUR_S,
                            hard="feed" in w.hard,
                        )
                    )
                last[e.vessel_id] = e.time
            # images: daily per vessel while it is in culture
            seen: dict[str, datetime] = {v.id: v.created_at for v in store.vessels()}
            for m in store.measurements(kind="confluence"):
                if m.vessel_id is None or m.vessel_id not in seen:
                    continue
                images += 1
                late = (m.time - seen[m.vessel_id]).total_seconds() - p.image_every_days * DAY_S
                soft += max(0.0, late) / HOUR_S
                if late > w.image_late_h * HOUR_S + 1:
                    out.append(
                        Violation(
                            campaign=name,
                            window=f"image {m.vessel_id}",
                            at=m.time,
                            by_s=late - w.image_late_h * HOUR_S,
                            hard="image" in w.hard,
                        )
                    )
                seen[m.vessel_id] = m.time
            # enzyme: last plate's enzyme on -> neutralisation starts
            added: list[datetime] = []
            plate = ""
            for e in events:
                if e.kind == "enzyme_added":
                    added.append(e.time)
                    plate = str(e.data.get("plate", ""))
                elif e.kind == "enzyme_incubated" and added:
                    wait = (e.time - added[-1]).total_seconds()
                    first = (e.time - added[0]).total_seconds()
                    waits.append(wait / 60)
                    by_plate.setdefault(f"{name}/{plate}", []).append(wait / 60)
                    first_plate = max(first_plate, first / 60)
                    limit = (p.detach.enzyme_time_min + w.enzyme_over_min) * 60
                    if wait > limit + 1:
                        out.append(
                            Violation(
                                campaign=name,
                                window="enzyme",
                                at=e.time,
                                by_s=wait - limit,
                                hard="enzyme" in w.hard,
                            )
                        )
                    added = []
            # out of the incubator: from leaving it to going back
            out_since: dict[str, datetime] = {}
            for e in store.events("plate_moved"):
                plate, loc = str(e.data["plate"]), str(e.data["location"])
                inside = ":" in loc and not loc.startswith("deck:") and "transfer" not in loc
                if not inside and plate not in out_since:
                    out_since[plate] = e.time
                elif inside and plate in out_since:
                    spent = (e.time - out_since.pop(plate)).total_seconds()
                    key = f"{name}/{plate}"
                    out_by_plate[key] = max(out_by_plate.get(key, 0.0), spent / 60)
                    limit = w.max_out_of_incubator_min * 60
                    if spent > limit + 1:
                        out.append(
                            Violation(
                                campaign=name,
                                window=f"out of incubator {plate}",
                                at=e.time,
                                by_s=spent - limit,
                                hard="out_of_incubator" in w.hard,
                            )
                        )
            # device uses, from the device actions in the record: each from its intent
            # (committed as the action was sent) to its completion (the device's reply)
            t0 = origin or datetime.min
            sent = {r["id"]: r["time"] for r in store.journal(kinds=("intent",))}
            times: dict[str, list[tuple[float, float]]] = {}
            for entry in store.record.entries("device"):
                if entry.actor in shared:
                    began = sent.get(entry.data.get("ref"), entry.process_time)
                    times.setdefault(entry.actor, []).append(
                        ((began - t0).total_seconds(), (entry.process_time - t0).total_seconds())
                    )
            on_deck += _deck_stays(store, t0, name)
            mover += _mover_uses(store, t0, name, sent)
            for dev, ts in times.items():
                uses.setdefault(dev, []).extend((a, b, name) for a, b in world_judge.runs(ts))
        finally:
            store.close()
    busy = {dev: sum(b - a for a, b, _ in spans) for dev, spans in uses.items()}
    overlaps = sum(world_judge.overlaps(spans) for spans in uses.values())
    peak, overfull = deck_load(on_deck, deck_positions)
    found = Audit(
        campaigns=len(run_dirs),
        violations=out,
        soft_lateness_h=soft,
        enzyme_waits_min=waits,
        enzyme_first_plate_max_min=first_plate,
        feeds=feeds,
        images=images,
        device_overlaps=overlaps,
        device_busy_s=busy,
        deck_peak=peak,
        deck_overfull=overfull,
        mover_overlaps=world_judge.overlaps(mover),
        enzyme_plate_min=by_plate,
        out_of_incubator_min=out_by_plate,
    )
    enzyme_max = {n: p.detach.enzyme_time_min + w.enzyme_over_min for n, p in params.items()}
    world = world_audit(
        run_dirs,
        shared=shared,
        deck_positions=deck_positions,
        enzyme_max_min=enzyme_max,
        out_max_min=w.max_out_of_incubator_min,
    )
    if world.labs == 0:  # no simulated lab (a hardware floor): the record alone
        return found
    differ = compare(found, world)
    return found.model_copy(
        update={"world": world, "disagreements": len(differ), "disagreeing": differ[:NAMED]}
    )


def _deck_stays(store: Store, t0: datetime, campaign: str) -> list[tuple[float, float, str]]:
    """Each culture plate's stays on the deck with live cells, from the record: where its
    vessels were created and moved (``plate_moved``) and when they stopped being live."""
    changes: list[tuple[datetime, int, str, str, str]] = []  # (time, order, plate, what, arg)
    plate_of: dict[str, str] = {}
    for e in store.record.entries("vessel"):
        if e.kind == "vessel_created" and e.vessel_id:
            plate = str(e.data.get("plate", ""))
            plate_of[e.vessel_id] = plate
            changes.append((e.process_time, 0, plate, "live", e.vessel_id))
            changes.append((e.process_time, 1, plate, "at", str(e.data.get("location", ""))))
        elif e.kind == "vessel_state" and e.vessel_id in plate_of and e.data["state"] != "active":
            changes.append((e.process_time, 2, plate_of[e.vessel_id], "gone", e.vessel_id))
    for ev in store.events("plate_moved"):
        changes.append((ev.time, 1, str(ev.data["plate"]), "at", str(ev.data["location"])))
    changes.sort(key=lambda c: (c[0], c[1]))
    live: dict[str, set[str]] = {}
    where: dict[str, str] = {}
    since: dict[str, float] = {}
    out: list[tuple[float, float, str]] = []
    for t, _, plate, what, arg in changes:
        if what == "live":
            live.setdefault(plate, set()).add(arg)
        elif what == "gone":
            live.get(plate, set()).discard(arg)
        else:
            where[plate] = arg
        working = bool(live.get(plate)) and where.get(plate, "").startswith("deck:")
        at = (t - t0).total_seconds()
        if working and plate not in since:
            since[plate] = at
        elif not working and plate in since:
            out.append((since.pop(plate), at, campaign))
    end = max((c[0] for c in changes), default=t0)
    out += [(a, (end - t0).total_seconds(), campaign) for a in since.values()]
    return out


def _mover_uses(
    store: Store, t0: datetime, campaign: str, sent: dict[object, datetime]
) -> list[tuple[float, float, str]]:
    """The plate mover's uses: each move (intent to reply) and each transfer-station stay."""
    out: list[tuple[float, float, str]] = []
    for entry in store.record.entries("device"):
        if entry.actor in MOVER:
            began = sent.get(entry.data.get("ref"), entry.process_time)
            out.append(
                ((began - t0).total_seconds(), (entry.process_time - t0).total_seconds(), campaign)
            )
    station: dict[str, float] = {}
    for ev in store.events("plate_moved"):
        plate, at = str(ev.data["plate"]), (ev.time - t0).total_seconds()
        if plate in station:
            out.append((station.pop(plate), at, campaign))
        if str(ev.data["location"]).endswith(TRANSFER):
            station[plate] = at
    return out
