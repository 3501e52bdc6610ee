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
from datetime import datetime

from rich.tree import Tree

from workcell.store import Store


@dataclass
class VesselPD:
    at_seeding: float
    at_end: float | None  # None while the vessel is still in culture (or never counted)


def population_doublings(store: Store) -> dict[str, VesselPD]:
    """Every vessel's PD (kept while the rows it derives from are the same: a campaign
    asks at every decision, and most decisions follow no seeding, pooling or count)."""
    version = store.version(
        tables=("vessels", "lineage"),
        events=("seeded", "pooled", "counted"),
        measurements=("pool_volume",),
    )
    kept = store.memo("population_doublings", version, lambda: _population_doublings(store))
    return {v: VesselPD(p.at_seeding, p.at_end) for v, p in kept.items()}


def _population_doublings(store: Store) -> dict[str, VesselPD]:
    seeded: dict[str, float] = {}
    vial_pd: dict[str, float] = {}
    for e in store.events("seeded"):
        if e.vessel_id:
            seeded[e.vessel_id] = float(e.data.get("cells", 0.0))
            vial_pd[e.vessel_id] = float(e.data.get("population_doublings", 0.0))
    volumes = {m.time: m.value for m in store.measurements(kind="pool_volume")}
    increments: dict[str, float] = {}
    pending: dict[str, list[str]] = {}
    for e in store.events(("pooled", "counted")):  # in order: a pool's count follows it
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


@dataclass
class PlateGroup:
    """The vessels one seeding put on one plate: the unit a lineage diagram shows."""

    key: str  # plate/Ppassage
    plate: str
    vessels: list[str]
    passage: int
    created: datetime
    state: str
    parents: list[str]  # keys of the parent groups
    pd_start: float
    pd_end: float | None
    cells_seeded: float


def plate_groups(store: Store) -> list[PlateGroup]:
    pd = population_doublings(store)
    seeded = {m.vessel_id: m.value for m in store.measurements(kind="seeded_cells") if m.vessel_id}
    groups: dict[str, PlateGroup] = {}
    group_of: dict[str, str] = {}
    for v in sorted(store.vessels(), key=lambda r: r.created_at):
        key = f"{v.plate}/P{v.passage}"  # a plate is seeded once per passage level
        g = groups.get(key)
        if g is None:
            g = groups[key] = PlateGroup(
                key=key,
                plate=v.plate,
                vessels=[],
                passage=v.passage,
                created=v.created_at,
                state=v.state,
                parents=[],
                pd_start=pd[v.id].at_seeding,
                pd_end=None,
                cells_seeded=0.0,
            )
        g.vessels.append(v.id)
        group_of[v.id] = key
        g.cells_seeded += seeded.get(v.id, 0.0)
        for p in v.parents:
            if group_of.get(p) and group_of[p] not in g.parents:
                g.parents.append(group_of[p])
        ends = [pd[x].at_end for x in g.vessels if pd[x].at_end is not None]
        g.pd_end = sum(ends) / len(ends) if ends else None  # type: ignore[arg-type]
        if v.state != "active":
            g.state = v.state
    return list(groups.values())


def lineage_tree(store: Store) -> Tree:
    """The tree from the vial through every passage to the harvest, one node per plate."""
    seeded = store.events("seeded")
    lot = next((e.data.get("lot") for e in seeded if e.data.get("lot")), None)
    groups = plate_groups(store)
    t0 = groups[0].created if groups else None
    root = Tree(f"[bold]vial[/] {lot or '(lot not recorded)'}")
    nodes: dict[str, Tree] = {}
    for g in groups:
        day = (g.created - t0).total_seconds() / 86400 if t0 else 0.0
        pd_end = "-" if g.pd_end is None else f"{g.pd_end:.2f}"
        label = (
            f"[bold]{g.plate}[/] P{g.passage}, {len(g.vessels)} vessels, "
            f"{g.cells_seeded:,.0f} cells seeded day {day:.1f}, "
            f"PD {g.pd_start:.2f} -> {pd_end}, {g.state}"
        )
        parent = nodes.get(g.parents[0]) if g.parents else None
        nodes[g.key] = (parent or root).add(label)
    harvested = store.events("harvested")
    if harvested:
        h = harvested[-1].data
        root.add(
            f"[bold green]harvest[/] {h['viable_cells']:.3g} viable cells, "
            f"{h['viability_percent']:.1f} % viable, {h['dose_cells_per_kg']:.3g} cells/kg"
        )
    return root
