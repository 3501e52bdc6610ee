"""Judging a run from the simulated lab's own physical log, not from the controller's record.

The lab writes every physical action (``simulators/lab/store.py``): each dispense
with its target, volume, the containers the tip drew from, and the enzyme share
left in the target; each plate move; each count. From that alone:

* ``additions``: per vessel and reagent source, the dispenses (time, volume);
* ``enzyme_exposure``: per vessel, seconds from its first enzyme to the first
  dispense of liquid without enzyme (the neutralising medium), or to the moment it
  was emptied if it never got any;
* ``out_of_incubator``: per plate, the longest stretch between leaving an incubator
  slot and going back into one;
* ``double_additions``: (vessel, source) pairs that got more than a reference run
  gave them (more than a pipette's tolerance), i.e. a reagent added twice.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from simulators.lab.store import read_log

REAGENTS = ("medium", "pbs", "enzyme", "cell_suspension", "pool_tube", "harvest_pool")


def rows(lab_dir: Path) -> list[dict[str, Any]]:
    return read_log(lab_dir)


def additions(log: list[dict[str, Any]], since_t: float = 0.0) -> dict[tuple[str, str], float]:
    """Volume (uL) each vessel got from each source container after ``since_t``.

    A resuspension stroke (a well's own liquid back into it) is not an addition.
    """
    out: dict[tuple[str, str], float] = defaultdict(float)
    for r in log:
        if r["action"] != "dispense" or r["t"] < since_t:
            continue
        d = r["detail"]
        target = d["target"]
        if "_well_" not in target:
            continue
        sources = [s for s in d.get("sources", []) if s != target]
        if not sources:
            continue
        for s in sources:
            out[(target, s)] += float(d["volume_uL"]) / len(sources)
    return dict(out)


def episodes(log: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """How many separate additions of each source each vessel got.

    Dispenses of one source into a vessel with nothing else happening to the vessel
    in between (the parts of one planned volume, however interrupted) are one
    addition; a second addition of the same source is a separate episode.
    """
    last: dict[str, str | None] = {}
    out: dict[tuple[str, str], int] = defaultdict(int)
    for r in log:
        d = r["detail"]
        if r["action"] == "dispense" and "_well_" in d["target"]:
            v = d["target"]
            sources = [s for s in d.get("sources", []) if s != v]
            if not sources:
                last[v] = None  # a resuspension stroke
                continue
            key = "+".join(sorted(sources))
            if last.get(v) != key:
                for s in sources:
                    out[(v, s)] += 1
            last[v] = key
        elif r["action"] == "aspirate" and "_well_" in d["source"]:
            last[d["source"]] = None
    return dict(out)


def double_additions(
    got_log: list[dict[str, Any]],
    ref_log: list[dict[str, Any]],
    fixed: tuple[str, ...] = ("medium", "pbs", "enzyme"),
    tol: float = 0.02,
) -> list[tuple[str, str, str]]:
    """(vessel, source, why) where a run added a reagent more than the reference did.

    More separate additions than the reference is a double addition; for a reagent
    whose volume does not depend on a count (``fixed``), so is more volume. A vessel
    the reference did not have (a passage's count gave one child more) may get each
    source once.
    """
    found: dict[tuple[str, str], str] = {}
    got_n, ref_n = episodes(got_log), episodes(ref_log)
    for key, n in sorted(got_n.items()):
        allowed = ref_n.get(key, 1)
        if n > allowed:
            found[key] = f"{n} additions, reference {ref_n.get(key, 0)}"
    got_v, ref_v = additions(got_log), additions(ref_log)
    for key, vol in sorted(got_v.items()):
        if key not in ref_v:
            continue
        ref = ref_v[key]
        if key[1] in fixed and vol > ref * (1 + tol) + 1.0 and key not in found:
            found[key] = f"{vol:.0f} uL, reference {ref:.0f} uL"
    return [(v, s, why) for (v, s), why in sorted(found.items())]


def enzyme_exposure(log: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds each vessel spent in enzyme before its neutralising medium went in.

    From the vessel's first dispense of enzyme to the first later dispense into it of
    liquid without enzyme from another container; a vessel never neutralised is
    exposed until the last entry of the log (``inf`` would hide how long).
    """
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    last_t = log[-1]["t"] if log else 0.0
    for r in log:
        if r["action"] != "dispense":
            continue
        d = r["detail"]
        v = d["target"]
        if "_well_" not in v:
            continue
        if float(d.get("enzyme", 0.0)) > 0.5 and v not in start:
            start[v] = r["t"]
        elif (
            v in start
            and v not in end
            and float(d.get("enzyme", 0.0)) == 0.0
            and [s for s in d.get("sources", []) if s != v]
        ):
            end[v] = r["t"]
    return {v: end.get(v, last_t) - t0 for v, t0 in start.items()}


def enzyme_waits(log: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each detachment batch's (last enzyme dispense, first neutralising dispense) times.

    The campaign's enzyme window (``protocols/campaign/windows.py``) runs from the last
    vessel's enzyme to the start of the neutralisation: no sooner than the enzyme's set
    time, no later than that plus its overrun. A batch never neutralised ends at the
    last entry of the log.
    """
    out: list[tuple[float, float]] = []
    last_enzyme: float | None = None
    in_enzyme: set[str] = set()
    for r in log:
        if r["action"] != "dispense" or "_well_" not in r["detail"]["target"]:
            continue
        d = r["detail"]
        v = d["target"]
        if float(d.get("enzyme", 0.0)) > 0.5:
            last_enzyme = r["t"]
            in_enzyme.add(v)
        elif (
            last_enzyme is not None
            and v in in_enzyme
            and float(d.get("enzyme", 0.0)) == 0.0
            and [x for x in d.get("sources", []) if x != v]
        ):
            out.append((last_enzyme, r["t"]))
            last_enzyme = None
            in_enzyme = set()
    if last_enzyme is not None and log:
        out.append((last_enzyme, log[-1]["t"]))
    return out


def enzyme_spread(log: list[dict[str, Any]]) -> dict[str, float]:
    """Per vessel, how long (s) it was in enzyme before the last vessel of its batch got
    its enzyme: in an uninterrupted run, what the window (counted from the last vessel)
    adds to the vessel's own exposure."""
    first: dict[str, float] = {}
    out: dict[str, float] = {}
    batch: list[str] = []
    last: float | None = None
    for r in log:
        if r["action"] != "dispense" or "_well_" not in r["detail"]["target"]:
            continue
        d = r["detail"]
        v = d["target"]
        if float(d.get("enzyme", 0.0)) > 0.5:
            first.setdefault(v, r["t"])
            if v not in batch:
                batch.append(v)
            last = r["t"]
        elif (
            last is not None
            and v in batch
            and float(d.get("enzyme", 0.0)) == 0.0
            and [x for x in d.get("sources", []) if x != v]
        ):
            out.update({b: last - first[b] for b in batch})
            batch, last = [], None
    if last is not None:
        out.update({b: last - first[b] for b in batch})
    return out


def out_of_incubator(log: list[dict[str, Any]]) -> dict[str, float]:
    """Per plate, the longest time (s) between leaving an incubator slot and re-entering one."""
    left: dict[str, float] = {}
    longest: dict[str, float] = defaultdict(float)
    for r in log:
        d = r["detail"]
        if r["action"] == "fetch_plate":
            left[d["plate"]] = r["t"]
        elif r["action"] == "take_in_plate" and d["plate"] in left:
            longest[d["plate"]] = max(longest[d["plate"]], r["t"] - left.pop(d["plate"]))
    return dict(longest)


def cells(lab_truth: dict[str, Any]) -> float:
    return float(sum(lab_truth.values()))
