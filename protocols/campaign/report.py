"""The batch report: one self-contained HTML file a reviewer can open anywhere.

Everything in it comes from the run folder's store: the batch summary, growth
curves and cumulative population doublings per vessel, the confluence timeline,
the lineage, every deviation and fault, the release criteria and signatures, and
whether the chained record verifies. Figures are matplotlib PNGs embedded as data
URIs, so the file needs nothing beside it.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from protocols.campaign.engine import (  # noqa: E402
    DAY_S,
    CampaignParams,
    imaged_cells,
    summarize,
    summary_rows,
)
from workcell.batch.lineage import plate_groups, population_doublings  # noqa: E402
from workcell.batch.release import ReleaseSpec, release_state  # noqa: E402
from workcell.batch.users import UserRegistry  # noqa: E402
from workcell.store import STORE_FILE, Store  # noqa: E402

FAULT_KINDS = ("deviation", "alarm", "protocol_fault", "fault", "retry")


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _days(t: datetime, t0: datetime) -> float:
    return (t - t0).total_seconds() / DAY_S


def figures(store: Store, params: CampaignParams) -> dict[str, str]:
    vessels = store.vessels()
    if not vessels:
        return {}
    t0 = min(v.created_at for v in vessels)
    area = {v.id: v.area_cm2 for v in vessels}
    plate_of = {v.id: v.plate for v in vessels}
    seeded = {m.vessel_id: m for m in store.measurements(kind="seeded_cells") if m.vessel_id}
    conf: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for m in store.measurements(kind="confluence"):
        if m.vessel_id in area:
            conf[m.vessel_id].append((_days(m.time, t0), m.value))
    plates = sorted({v.plate for v in vessels}, key=lambda p: (len(p), p))
    colour = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(plates)}
    out: dict[str, str] = {}

    pds = population_doublings(store)
    fig, ax = plt.subplots(figsize=(8, 4))
    for v in vessels:
        put_in = seeded[v.id].value if v.id in seeded else 0.0
        pts = [(_days(seeded[v.id].time, t0), put_in)] if v.id in seeded else []
        pts += [
            (d, imaged_cells(c, area[v.id], pds[v.id].at_seeding, put_in)[0]) for d, c in conf[v.id]
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), color=colour[v.plate], lw=0.8, alpha=0.8)
    for p in plates:
        ax.plot([], [], color=colour[p], label=p)
    ax.set(
        yscale="log",
        xlabel="day",
        ylabel="viable cells per vessel (from images)",
        title="Growth per vessel",
    )
    ax.legend(fontsize=7, ncol=2)
    out["growth"] = _png(fig)

    detached: dict[str, datetime] = {}
    for e in store.record.entries("vessel"):
        if e.kind == "vessel_state" and e.vessel_id:
            detached[e.vessel_id] = e.process_time
    fig, ax = plt.subplots(figsize=(8, 4))
    for v in vessels:
        vpd = pds[v.id]
        pts = [(_days(v.created_at, t0), vpd.at_seeding)]
        if vpd.at_end is not None and v.id in detached:
            pts.append((_days(detached[v.id], t0), vpd.at_end))
        ax.plot(*zip(*pts, strict=True), marker="o", ms=3, color=colour[v.plate], lw=0.8)
    ax.set(
        xlabel="day",
        ylabel="cumulative population doublings",
        title="Cumulative population doublings (from counts)",
    )
    out["pd"] = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for p in plates:
        by_day: dict[float, list[float]] = defaultdict(list)
        for vid, pts in conf.items():
            if plate_of[vid] == p:
                for d, c in pts:
                    by_day[round(d, 1)].append(c)
        if by_day:
            days = sorted(by_day)
            ax.plot(
                days,
                [100 * sum(by_day[d]) / len(by_day[d]) for d in days],
                marker=".",
                color=colour[p],
                label=p,
            )
    ax.axhline(params.confluence_threshold_percent, ls="--", color="grey", lw=0.8)
    ax.set(
        xlabel="day",
        ylabel="mean confluence, %",
        title="Confluence timeline (imager)",
        ylim=(0, 100),
    )
    ax.legend(fontsize=7, ncol=2)
    out["confluence"] = _png(fig)

    groups = plate_groups(store)
    widest = max(sum(1 for g in groups if g.passage == p) for p in {g.passage for g in groups})
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.75 * widest)))
    rows: dict[int, int] = defaultdict(int)
    where: dict[str, tuple[float, float]] = {}
    for g in groups:
        where[g.key] = (float(g.passage), float(-rows[g.passage]))
        rows[g.passage] += 1
    for g in groups:
        for parent in g.parents:
            (x0, y0), (x1, y1) = where[parent], where[g.key]
            ax.plot([x0, x1], [y0, y1], color="grey", lw=0.8)
    for g in groups:
        gx, gy = where[g.key]
        ax.annotate(
            f"{g.plate}\nP{g.passage} {len(g.vessels)}v {g.state}",
            (gx, gy),
            ha="center",
            va="center",
            fontsize=7,
            bbox={"boxstyle": "round", "fc": colour[g.plate], "alpha": 0.35},
        )
    ax.set(xlabel="passage", yticks=[], title="Lineage: plates by passage")
    xs = [p[0] for p in where.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(p[1] for p in where.values()) - 0.8, 0.8)
    out["lineage"] = _png(fig)
    return out


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><tr>{h}</tr>{body}</table>'


# campaign parameters retired since a run folder may have been written: a report of an
# older run reads past them (the confluence calibration now comes from the culture model)
RETIRED_PARAMS = ("cells_per_cm2_at_confluence",)


def render(
    store: Store, spec: ReleaseSpec | None = None, registry: UserRegistry | None = None
) -> str:
    started = store.events("campaign_started")
    stored = dict(started[0].data["params"]) if started else {}
    for name in RETIRED_PARAMS:
        stored.pop(name, None)
    params = CampaignParams.model_validate(stored)
    s = summarize(store, params)
    state = release_state(store, registry, spec)
    check = state.integrity
    figs = figures(store, params)
    criteria = state.criteria
    sigs = state.signatures
    faults = [e for e in store.events() if e.kind in FAULT_KINDS]
    lot = next((e.data.get("lot") for e in store.events("seeded") if e.data.get("lot")), "-")
    rows = [["lot", str(lot)], *([k, v] for k, v in summary_rows(s))]
    verified = (
        f'<p class="ok">Record verified: {check.entries} entries, head {check.head_hash}</p>'
        if check.ok
        else '<p class="bad">Record does NOT verify: '
        + html.escape("; ".join(check.problems))
        + "</p>"
    )
    status = "RELEASED" if state.released else f"NOT RELEASED ({state.reason})"
    img = "".join(
        f'<figure><img class="figure" alt="{k}" src="{v}"><figcaption>{k}</figcaption></figure>'
        for k, v in figs.items()
    )
    groups = plate_groups(store)
    lineage_rows = [
        [
            g.plate,
            f"P{g.passage}",
            str(len(g.vessels)),
            f"{g.cells_seeded:,.0f}",
            ", ".join(x.split("/")[0] for x in g.parents) or "vial",
            f"{g.pd_start:.2f}",
            "-" if g.pd_end is None else f"{g.pd_end:.2f}",
            g.state,
        ]
        for g in groups
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Batch report {html.escape(str(lot))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; }}
.ok {{ color: #064; font-weight: bold; }} .bad {{ color: #a00; font-weight: bold; }}
.pass {{ color: #064; }} .fail, .missing {{ color: #a00; }}
img.figure {{ max-width: 100%; }}
</style></head>
<body data-figures="{len(figs)}">
<h1>MSC batch report: {html.escape(str(lot))}</h1>
<p>Status: <b>{html.escape(status)}</b></p>
{verified}
<h2>Batch summary</h2>
{_table(["", ""], rows)}
<h2>Figures</h2>
{img}
<h2>Lineage</h2>
{
        _table(
            [
                "plate",
                "passage",
                "vessels",
                "cells seeded",
                "from",
                "PD at seeding",
                "PD at end",
                "state",
            ],
            lineage_rows,
        )
    }
<h2>Deviations and faults ({len(faults)})</h2>
{
        _table(
            ["process time", "kind", "actor", "vessel", "what"],
            [
                [
                    e.time.isoformat(timespec="seconds"),
                    e.kind,
                    e.actor,
                    e.vessel_id or "",
                    str(e.data.get("message") or e.data),
                ]
                for e in faults
            ],
        )
    }
<h2>Release criteria</h2>
{
        _table(
            ["criterion", "requirement", "result", "status"],
            [[c.name, c.requirement, c.result, c.status.value] for c in criteria],
            "release",
        )
    }
<h2>Signatures</h2>
{
        _table(
            ["name", "user id", "role", "meaning", "time (UTC)", "signed record head"],
            [
                [
                    x.statement.name,
                    x.user_id,
                    x.statement.role,
                    x.meaning,
                    x.statement.utc.isoformat(timespec="seconds"),
                    f"{x.statement.entries}:{x.statement.head_hash}",
                ]
                for x in sigs
            ],
        )
    }
<script>
window.addEventListener("load", () => {{
  const imgs = Array.from(document.querySelectorAll("img.figure"));
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-figures-rendered", String(ok));
}});
</script>
</body></html>
"""


def write_report(
    run_dir: Path,
    output: Path,
    spec: ReleaseSpec | None = None,
    registry: UserRegistry | None = None,
) -> Path:
    store = Store(run_dir / STORE_FILE, read_only=True)
    try:
        output.write_text(render(store, spec, registry))
    finally:
        store.close()
    return output
