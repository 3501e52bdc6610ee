"""Were the time windows kept? Judged from the batch records, not the scheduler's account.

Each campaign's record holds what the simulated lab did and when: the vessels fed
(``fed`` events), the images (confluence measurements), the enzyme put on and the
plates back out of the incubator for neutralisation (``enzyme_added``,
``enzyme_incubated``), the plates moved (``plate_moved``), and every device action.
From these alone the audit measures every window of ``windows.py`` and checks that
no device was used by two campaigns at once (a device's use runs from each action's
intent, committed as it was sent, to its completion, the device's reply; actions
less than ``RUN_GAP_S`` apart are one use, and the uses' total is its busy time).

The enzyme window is measured from an enzyme batch's last plate's enzyme (the
plates then go into the incubator) to the event that starts neutralisation. Each
plate is an enzyme batch of its own (``protocols/detachment.py``), so this is each
plate's own window; ``enzyme_first_plate_max_min`` (from a batch's first plate's
enzyme) is reported apart and equals it, unless a batch holds several plates
(as the detachment did before it went plate by plate).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from protocols.campaign.engine import DAY_S, CampaignParams
from protocols.campaign.windows import HOUR_S, WindowParams
from workcell.store import STORE_FILE, Store

RUN_GAP_S = 120.0  # device actions further apart than this are separate uses


class Violation(BaseModel):
    campaign: str
    window: str
    at: datetime
    by_s: float = Field(description="how far past the window's close")
    hard: bool


class Audit(BaseModel):
    campaigns: int
    violations: list[Violation]
    soft_lateness_h: float
    enzyme_waits_min: list[float]
    enzyme_first_plate_max_min: float
    feeds: int
    images: int
    device_overlaps: int
    device_busy_s: dict[str, float]

    @property
    def hard(self) -> int:
        return sum(1 for v in self.violations if v.hard)


def audit(
    run_dirs: dict[str, Path],
    params: dict[str, CampaignParams],
    w: WindowParams,
    shared: tuple[str, ...] = ("star", "imager", "counter"),
) -> Audit:
    out: list[Violation] = []
    soft = 0.0
    waits: list[float] = []
    first_plate = 0.0
    feeds = images = 0
    uses: dict[str, list[tuple[float, float, str]]] = {}
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
            for e in events:
                if e.kind == "enzyme_added":
                    added.append(e.time)
                elif e.kind == "enzyme_incubated" and added:
                    wait = (e.time - added[-1]).total_seconds()
                    first = (e.time - added[0]).total_seconds()
                    waits.append(wait / 60)
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
            for dev, ts in times.items():
                ts.sort()
                a, b = ts[0]
                for ta, tb in ts[1:]:
                    if ta - b > RUN_GAP_S:
                        uses.setdefault(dev, []).append((a, b, name))
                        a = ta
                    b = max(b, tb)
                uses.setdefault(dev, []).append((a, b, name))
        finally:
            store.close()
    overlaps = 0
    busy: dict[str, float] = {}
    for dev, spans in uses.items():
        spans.sort()
        busy[dev] = sum(b - a for a, b, _ in spans)
        reach: list[tuple[float, str]] = []  # (end, campaign) of the spans begun so far
        for a, b, c in spans:
            if any(end > a and other != c for end, other in reach):
                overlaps += 1
            reach = [(end, other) for end, other in reach if end > a] + [(b, c)]
    return Audit(
        campaigns=len(run_dirs),
        violations=out,
        soft_lateness_h=soft,
        enzyme_waits_min=waits,
        enzyme_first_plate_max_min=first_plate,
        feeds=feeds,
        images=images,
        device_overlaps=overlaps,
        device_busy_s=busy,
    )
