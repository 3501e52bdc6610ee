"""Cumulative population doublings of every vessel, from the record alone.

PD is what a lab can measure: for each detachment (a passage or the harvest),
``PD = log2(viable cells recovered / cells seeded)`` over the vessels pooled
together, added to the PD the cells had when they were seeded (the vial's PD for
the first vessels, the mean of the parents' for children). The culture model's
own PD is not used: a report must stand on counts, as it does on hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workcell.store import Store


@dataclass
class VesselPD:
    at_seeding: float
    at_end: float | None  # None while the vessel is still in culture (or never counted)


def population_doublings(store: Store) -> dict[str, VesselPD]:
    seeded: dict[str, float] = {}
    vial_pd: dict[str, float] = {}
    for e in store.events("seeded"):
        if e.vessel_id:
            seeded[e.vessel_id] = float(e.data.get("cells", 0.0))
            vial_pd[e.vessel_id] = float(e.data.get("population_doublings", 0.0))
    volumes = {m.time: m.value for m in store.measurements(kind="pool_volume")}
    increments: dict[str, float] = {}
    pending: dict[str, list[str]] = {}
    for e in store.events():
        if e.kind == "pooled":
            pending.setdefault(e.data["pool"], []).extend(e.data["vessels"])
        elif e.kind == "counted" and e.data.get("pool") in pending:
            group = pending.pop(e.data["pool"])
            recovered = float(e.data["viable_per_mL"]) * volumes.get(e.time, 0.0) / 1000.0
            put_in = sum(seeded.get(v, 0.0) for v in group)
            if recovered > 0 and put_in > 0:
                for v in group:
                    increments[v] = math.log2(recovered / put_in)
    out: dict[str, VesselPD] = {}
    for record in sorted(store.vessels(), key=lambda r: r.created_at):
        parents = [out[p] for p in record.parents if p in out]
        ends = [p.at_end for p in parents if p.at_end is not None]
        start = sum(ends) / len(ends) if ends else vial_pd.get(record.id, 0.0)
        inc = increments.get(record.id)
        out[record.id] = VesselPD(at_seeding=start, at_end=None if inc is None else start + inc)
    return out
