"""Artifacts a lab can work from: units, rounding, real and process time, per-vessel cells.

Every flow run ends with a markdown artifact of what its operation did (in words
first, then the numbers with their units), the vessel table of its run folder
(where each vessel is, its passage, seeded cells, last confluence and the cells
that confluence means), and the Prefect runs that worked on the same run folder,
linked, so a campaign and the operations run by hand on its batch find each other.

Times are labelled: *process time* is the workcell's clock (simulated in a
dry-run: a week passes in seconds), *wall time* is the time the run really took.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from pydantic import BaseModel

from protocols import harvest, incubation, media_exchange, passaging, seeding
from protocols.campaign.engine import imaged_cells
from workcell.batch import lineage
from workcell.store import Store


def key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "artifact"


def cells(x: float | None) -> str:
    """A cell number as people write it: 29,600 or 4.12e5."""
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) < 1e5 else f"{x:.3g}".replace("e+0", "e").replace("e+", "e")


def mL(uL: float) -> str:
    return f"{uL / 1000:.2f}"


def when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def times(started: datetime, finished: datetime, simulated: bool, wall_s: float | None) -> str:
    clock = "simulated clock" if simulated else "the workcell's clock"
    lines = [
        f"- **Process time** ({clock}): {when(started)} → {when(finished)} UTC, "
        f"{_duration((finished - started).total_seconds())}",
    ]
    if wall_s is not None:
        lines.append(f"- **Wall time** (this run really took): {wall_s:.1f} s")
    return "\n".join(lines)


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _well(vessel: str) -> str:
    return vessel.split("_well_", 1)[-1]


def _by_plate(vessels: list[str]) -> str:
    plates: dict[str, list[str]] = {}
    for v in vessels:
        plates.setdefault(v.split("_well_", 1)[0], []).append(_well(v))
    return "; ".join(f"{p}: {', '.join(ws)}" for p, ws in plates.items())


def _reagents(used: dict[str, float]) -> str:
    return ", ".join(f"{name} {mL(v)} mL" for name, v in used.items() if v > 0) or "none"


def _seeding(r: seeding.SeedingResult) -> tuple[str, str]:
    n = len(r.vessels)
    total = sum(v.cells for v in r.vessels)
    plates = ", ".join(dict.fromkeys(v.plate for v in r.vessels))
    head = f"Seeded {n} vessels on {plates}: {cells(total)} viable cells in all."
    rows = [
        [
            v.vessel,
            v.well,
            f"{v.area_cm2:.2f}",
            cells(v.cells),
            cells(v.cells_delivered),
            mL(v.suspension_uL),
            mL(v.medium_uL),
        ]
        for v in r.vessels
    ]
    body = table(
        [
            "vessel",
            "well",
            "area (cm²)",
            "cells planned",
            "cells delivered (dry-run)",
            "suspension (mL)",
            "medium (mL)",
        ],
        rows,
    )
    body += f"\n\nReagents: {_reagents(r.reagents_uL)}; tips: {r.tips_used}."
    return head, body


def _feeding(rs: list[media_exchange.MediaExchangeResult]) -> tuple[str, str]:
    vessels = [v for r in rs for v in r.vessels]
    head = f"Fed {len(vessels)} vessels: spent medium out, fresh medium in."
    rows = [[v.vessel, v.plate, mL(v.remove_uL), mL(v.add_uL)] for v in vessels]
    body = table(["vessel", "plate", "removed (mL)", "added (mL)"], rows)
    used: dict[str, float] = {}
    for r in rs:
        for name, v in r.reagents_uL.items():
            used[name] = used.get(name, 0.0) + v
    body += f"\n\nReagents: {_reagents(used)}; tips: {sum(r.tips_used for r in rs)}."
    return head, body


def _passaging(r: passaging.PassagingResult) -> tuple[str, str]:
    mean = sum(r.confluence_percent.values()) / max(1, len(r.confluence_percent))
    if r.passaged:
        head = (
            f"Passaged {r.plate} (mean confluence {mean:.0f} %) into {len(r.children)} "
            "child vessels."
        )
    else:
        head = f"Not passaged: {r.decision}. The plate went back to the incubator."
    body = "Confluence as imaged:\n\n" + table(
        ["vessel", "confluence (%)"],
        [[v, f"{c:.0f}"] for v, c in r.confluence_percent.items()],
    )
    if r.count is not None:
        body += (
            f"\n\nCount of the pool: {cells(r.count.viable_per_mL)} viable cells/mL, "
            f"{r.count.viability_percent:.0f} % viable; {cells(r.cells_available)} viable "
            f"cells available."
        )
    if r.children:
        body += f"\n\nChildren: {_by_plate(r.children)}."
    if r.surplus_cells:
        body += f"\n\nLeft in the pool (surplus): {cells(r.surplus_cells)} viable cells."
    if r.reagents_uL:
        body += f"\n\nReagents: {_reagents(r.reagents_uL)}; tips: {r.tips_used}."
    return head, body


def _harvest(r: harvest.HarvestResult) -> tuple[str, str]:
    verdict = "reaches" if r.dose_reached else "is BELOW"
    head = (
        f"Harvested {len(r.vessels)} vessels: {cells(r.total_viable_cells)} viable cells, "
        f"{r.viability_percent:.0f} % viable; the dose {verdict} the target."
    )
    body = table(
        ["", ""],
        [
            ["viable cells", cells(r.total_viable_cells)],
            ["viability (%)", f"{r.viability_percent:.1f}"],
            ["dose (cells/kg)", cells(r.dose_cells_per_kg)],
            ["target dose (cells/kg)", cells(r.target_dose_cells_per_kg)],
            ["pool volume (mL)", f"{r.pool_volume_mL:.1f}"],
            ["count (viable cells/mL)", cells(r.count.viable_per_mL)],
        ],
    )
    body += f"\n\nVessels: {_by_plate(r.vessels)}."
    return head, body


def _incubation(r: incubation.IncubationResult) -> tuple[str, str]:
    values = list(r.confluence_percent.values())
    mean = sum(values) / max(1, len(values))
    head = f"Incubated {r.hours:g} h (simulated); mean confluence now {mean:.0f} %."
    body = table(
        ["vessel", "confluence (%)"], [[v, f"{c:.0f}"] for v, c in r.confluence_percent.items()]
    )
    if r.alarms:
        body += "\n\nAlarms: " + "; ".join(r.alarms)
    return head, body


def result_markdown(
    title: str, result: Any, simulated: bool, wall_s: float | None, folder: str
) -> tuple[str, str]:
    """(one-line summary, markdown) of a unit operation's result."""
    if isinstance(result, seeding.SeedingResult):
        head, body = _seeding(result)
    elif isinstance(result, list) and all(
        isinstance(r, media_exchange.MediaExchangeResult) for r in result
    ):
        head, body = _feeding(result)
        result = result[0] if result else None
    elif isinstance(result, passaging.PassagingResult):
        head, body = _passaging(result)
    elif isinstance(result, harvest.HarvestResult):
        head, body = _harvest(result)
    elif isinstance(result, incubation.IncubationResult):
        head, body = _incubation(result)
    else:
        head, body = title, f"```\n{result}\n```"
    when_md = ""
    if isinstance(result, BaseModel) and hasattr(result, "started"):
        when_md = times(result.started, result.finished, simulated, wall_s)  # type: ignore[attr-defined]
    md = f"# {title}\n\n**{head}**\n\n{when_md}\n- **Run folder:** `{folder}`\n\n{body}\n"
    return head, md


async def publish_result(
    title: str, result: Any, simulated: bool, wall_s: float | None, folder: str
) -> str:
    """The operation's result as a markdown artifact; returns its one-line summary."""
    head, md = result_markdown(title, result, simulated, wall_s, folder)
    await acreate_markdown_artifact(markdown=md, key=key(title), description=head)
    return head


def vessel_rows(store: Store) -> list[dict[str, Any]]:
    """One row per vessel, with its units in the column names.

    The cells a confluence means are the campaign's own estimate
    (``protocols.campaign.engine.imaged_cells``: the culture model's confluent
    density at the vessel's PD, the PD followed from seeding to the image).
    """
    last_conf = store.last_values("confluence")
    seeded = {m.vessel_id: m.value for m in store.measurements(kind="seeded_cells")}
    vessels = store.vessels()
    pd = lineage.population_doublings(store) if vessels else {}
    rows = []
    for v in vessels:
        conf = last_conf.get(v.id)
        parents = sorted({p.split("_well_", 1)[0] for p in v.parents})
        estimate = None
        if conf is not None:
            at_seeding = pd[v.id].at_seeding if v.id in pd else 0.0
            estimate, _ = imaged_cells(
                conf[1], v.area_cm2, at_seeding or 0.0, seeded.get(v.id, 0.0)
            )
        rows.append(
            {
                "vessel": v.id,
                "plate": v.plate,
                "well": _well(v.id),
                "passage": v.passage,
                "state": v.state,
                "where": v.location,
                "from": f"{', '.join(parents)} ({len(v.parents)} vessels)" if parents else "vial",
                "seeded cells": cells(seeded.get(v.id)),
                "confluence (%)": round(100 * conf[1]) if conf else None,
                "est. cells from confluence": cells(estimate) if conf else "-",
                "imaged (process time)": when(conf[0]) if conf else "-",
            }
        )
    return rows


async def publish_vessels(store: Store, folder: str) -> None:
    rows = vessel_rows(store)
    active = [r for r in rows if r["state"] == "active"]
    await acreate_table_artifact(
        table=rows,
        key=f"vessels-{key(Path(folder).name)}",
        description=f"{len(rows)} vessels ({len(active)} in culture) in run folder {folder}; "
        "est. cells = confluence × the confluent density at the cells' PD × area",
    )


def ui_link(flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI (absolute when the UI address is known)."""
    from prefect.settings import PREFECT_UI_URL

    base = (PREFECT_UI_URL.value() or "").rstrip("/")
    return f"{base}/runs/flow-run/{flow_run_id}"


def runs_markdown(store: Store, this_run: str | None) -> str:
    """The Prefect flow runs that opened this run folder, newest last, linked."""
    rows = []
    for e in store.events("flow_run_opened"):
        d = e.data
        name = f"[{d.get('name')}]({ui_link(str(d.get('flow_run')))})"
        mark = " (this run)" if str(d.get("flow_run")) == this_run else ""
        rows.append([str(d.get("flow", "")), name + mark, when(e.time)])
    if not rows:
        return ""
    return "## Runs on this batch\n\n" + table(
        ["operation", "flow run", "opened (process time)"], rows
    )
