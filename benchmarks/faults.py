"""Kill campaign: SIGKILL the controller at every device-action boundary, resume, judge.

    .venv/bin/python benchmarks/faults.py                      # everything (long: an hour or more)
    .venv/bin/python benchmarks/faults.py --only passaging --every 5
    .venv/bin/python benchmarks/faults.py --only campaign --phases reply

Scenarios, each from a template run folder prepared once (``benchmarks/kill.py``):

* each unit operation (seeding, media exchange, passaging, harvest), and a
  campaign segment around its first passage (the passage step and the two steps
  after it): the controller SIGKILLs itself at its N-th device action, for every
  N, at the ``reply`` phase (the device did it, the controller did not record it)
  and the ``intent`` phase (recorded as intended, not sent); the lab, which
  outlives it, runs on for a two-minute outage; the controller is started again
  and finishes;
* ``feed_columns``, ``harvest_columns``, ``passaging_columns``: the operation on a
  24-well plate with a liquid handler whose channels work as a group of eight: a
  plate column (four wells, a tip each) per command where the operation takes a tip
  per well (``protocols/recovery/columns.py``);
* a long outage (30 min) at every action of the passage's enzyme stage: the
  enzyme's window closes while the controller is down;
* the lab itself SIGKILLed in the middle of an action, at points spread over the
  passage: the controller must stop with a clear device error, hold, and finish
  once the lab is back;
* ``clinical``: a campaign segment around the first passage on the clinical
  workcell (``configs/clinical.yaml``, a 70 kg dose, vessels drawn from a hotel):
  the passage draws its children, puts unused ones back and discards the emptied
  parent, each an action of the hotel the lab keeps on disk. Besides the judgement
  above, the hotel is judged from the lab: its stock and the vessels out of it
  must agree with the record's draws, returns and discards.

Every run is judged from the lab's own physical log against an uninterrupted run
from the same template: reagent additions per vessel (a reagent added twice is a
double addition), the enzyme's time from the last vessel's enzyme to the start of
its neutralisation against its window (its set time plus the overrun
``protocols/campaign/windows.py`` allows: 8 min; an outage longer than what is left
of it makes an over-exposure no controller can prevent, which must then be a
deviation naming the vessels, put to the operator) and, when the window closed,
the time from the controller's return to neutralisation against the stated
recovery time (5 min), time out of the incubator, vessels lost, viable
cells against the uninterrupted run, whether the batch record verifies, and
whether the interruption is a deviation naming the vessels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("WORKCELL_CPU_WORKERS", "0")  # children are forked: no pools here
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import judge  # noqa: E402
from benchmarks.kill import (
    OUTAGE_S,
    Outcome,
    campaign_output,
    campaign_template,
    campaign_work,
    column_bench,
    journal_intents,  # noqa: E402
    lost_vessels,
    operation_template,
    operation_work,
    output_of,
    run_point,
)
from protocols.campaign.engine import CampaignParams  # noqa: E402
from protocols.detachment import DetachParams, enzyme_window_min  # noqa: E402
from protocols.recovery.declarations import WINDOWS  # noqa: E402
from workcell.store import STORE_FILE, Store  # noqa: E402

OPERATIONS = ("seeding", "media_exchange", "passaging", "harvest")
# scenario: the unit operation on a 24-well plate, a plate column per command
COLUMN_SCENARIOS = {
    "feed_columns": "media_exchange",
    "harvest_columns": "harvest",
    "passaging_columns": "passaging",
}
LONG_OUTAGE_S = 1800.0
SEGMENT_STEPS = 3  # the campaign's passage step and the two after it
CLINICAL_PARAMS = Path(__file__).resolve().parent.parent / "examples" / "campaign-70kg.json"


ENZYME_WINDOW_S = enzyme_window_min(DetachParams()) * 60


def judge_point(got: Outcome, ref: Outcome, outage_s: float) -> dict[str, Any]:
    doubles = judge.double_additions(got.log, ref.log)
    # the enzyme's window: from the last vessel's enzyme to the neutralisation's start
    over = max([0.0, *(end - last - ENZYME_WINDOW_S for last, end in got.enzyme_waits)])
    # and per vessel: its exposure against what the window allows it in the uninterrupted
    # run: the window, plus what the vessel has there on top of its batch's wait (its
    # wait for the rest of its batch to get their enzyme, and, since the window ends
    # where the neutralisation starts, its place in the neutralisation's order), so that
    # vessels kept in enzyme through an outage while the rest got theirs count
    ref_wait = max([0.0, *(end - last for last, end in ref.enzyme_waits)])
    vessel_over = {
        v: t - max(0.0, ref.exposure_s[v] - ref_wait) - ENZYME_WINDOW_S
        for v, t in got.exposure_s.items()
        if v in ref.exposure_s
    }
    over = max([over, *vessel_over.values()])
    unrecorded = sorted(v for v, t in vessel_over.items() if t > 0 and v not in got.over_exposed)
    # after a closed window: from the controller's return to the neutralisation's start
    # (the lab's log), against the stated recovery time
    delay = 0.0
    if got.resumed_at_t is not None and over > 0:
        for last, end in got.enzyme_waits:
            if end - last > ENZYME_WINDOW_S:
                delay = max(delay, end - max(got.resumed_at_t, last))
    named = any(i.get("vessels") for i in got.interruptions)
    return {
        "label": got.label,
        "codes": got.exit_codes,
        "doubles": [list(d) for d in doubles],
        "over_exposure_s": over,
        "recovery_delay_s": delay,
        "exposure_max_s": max(got.exposure_s.values(), default=0.0),
        "enzyme_wait_max_s": max([0.0, *(end - last for last, end in got.enzyme_waits)]),
        "out_max_s": max(got.out_s.values(), default=0.0),
        "out_ref_s": max(ref.out_s.values(), default=0.0),
        "lost": lost_vessels(got, ref),
        "cells_ratio": got.cells / ref.cells if ref.cells else float("nan"),
        "verified": got.verified,
        "deviation": bool(got.interruptions) or got.exit_codes == [0],
        "names_vessels": named,
        "held": got.held,
        "over_exposed": got.over_exposed,
        "over_exposed_unrecorded": unrecorded,
        "over_exposure_held": got.over_exposure_held,
        "outage_s": outage_s,
        "hotel": got.hotel,
    }


def scenario(
    name: str,
    template: Path,
    cfg: Path,
    work: Any,
    output: Any,
    tmp: Path,
    points: list[str],
    outage_s: float = OUTAGE_S,
    lab_kills: list[int] | None = None,
    ref: Outcome | None = None,
) -> tuple[Outcome, list[dict[str, Any]]]:
    ref = ref or run_point(template, tmp / f"{name}-ref", cfg, work, output)
    rows = []
    for point in points:
        got = run_point(
            template, tmp / f"{name}-k", cfg, work, output, crash=point, outage_s=outage_s
        )
        rows.append(judge_point(got, ref, outage_s))
        _report_bad(name, rows[-1])
    for n in lab_kills or []:
        got = run_point(
            template, tmp / f"{name}-k", cfg, work, output, outage_s=outage_s, lab_crash_at=n
        )
        got.label = f"lab killed at request {n}"
        row = judge_point(got, ref, outage_s)
        row["lab_kill"] = True
        rows.append(row)
        _report_bad(name, row)
    return ref, rows


def _bad(r: dict[str, Any]) -> list[str]:
    # an outage can outlast what is left of the enzyme's window: the over-exposure is then
    # the outage's, and is acceptable only recorded (a deviation naming the vessels), put
    # to the operator, and cut short within the stated recovery time (checked below)
    window_ok = r["over_exposure_s"] <= 0 or (
        len(r["codes"]) > 1
        and bool(r["over_exposed"])
        and not r["over_exposed_unrecorded"]
        and r["over_exposure_held"]
    )
    problems = []
    if r["doubles"]:
        problems.append(f"double additions {r['doubles']}")
    if r["lost"]:
        problems.append(f"lost {r['lost']}")
    if r.get("hotel"):
        problems.append(f"hotel: {'; '.join(r['hotel'])}")
    if not r["verified"]:
        problems.append("record does not verify")
    if not window_ok:
        problems.append(f"over-exposure {r['over_exposure_s']:.0f} s, not recorded and held")
    if r["recovery_delay_s"] > WINDOWS.recovery_max_min * 60:
        problems.append(f"recovery took {r['recovery_delay_s']:.0f} s")
    if r["codes"][-1] != 0:
        problems.append(f"did not finish (exit codes {r['codes']})")
    if len(r["codes"]) > 1 and not r["deviation"]:
        problems.append("no deviation for the interruption")
    if r.get("lab_kill") and (r["codes"][0] != 3 or not r["held"]):
        problems.append(f"the lost lab was not a held step (exit codes {r['codes']})")
    return problems


def _report_bad(name: str, r: dict[str, Any]) -> None:
    problems = _bad(r)
    if problems:
        print(f"  ! {name} {r['label']}: {'; '.join(problems)}", flush=True)


def table_row(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["cells_ratio"] for r in rows if r["cells_ratio"] == r["cells_ratio"]]
    return {
        "scenario": name,
        "kill_points": len(rows),
        "double_additions": sum(len(r["doubles"]) for r in rows),
        "worst_over_exposure_s": max([0.0, *(r["over_exposure_s"] for r in rows)]),
        "over_exposed_points": sum(r["over_exposure_s"] > 0 for r in rows),
        "over_exposures_recorded": sum(
            r["over_exposure_s"] > 0 and bool(r["over_exposed"]) and r["over_exposure_held"]
            for r in rows
        ),
        "worst_recovery_delay_s": max([0.0, *(r["recovery_delay_s"] for r in rows)]),
        "worst_out_of_incubator_s": max([0.0, *(r["out_max_s"] for r in rows)]),
        "out_of_incubator_ref_s": rows[0]["out_ref_s"] if rows else 0.0,
        "vessels_lost": sum(len(r["lost"]) for r in rows),
        "cells_min": min(ratios, default=float("nan")),
        "cells_median": statistics.median(ratios) if ratios else float("nan"),
        "verified": sum(r["verified"] for r in rows),
        "deviation_naming_vessels": sum(r["names_vessels"] for r in rows),
        "finished": sum(r["codes"][-1] == 0 for r in rows),
        "hotel_agrees": sum(not r.get("hotel") for r in rows),
        "bad": sum(bool(_bad(r)) for r in rows),
    }


def _points(n: int, phases: list[str], every: int) -> list[str]:
    return [f"{i}:{p}" for i in range(1, n + 1, every) for p in phases]


def _enzyme_points(ref_dir: Path, template: Path) -> list[int]:
    """The action numbers (counted from the template's end, as the controller counts them
    for ``WORKCELL_CRASH_AT``) of the passage's enzyme stage and incubation."""
    intents = journal_intents(ref_dir)[len(journal_intents(template)) :]
    return [
        i + 1
        for i, r in enumerate(intents)
        if str(r["data"].get("unit") or "").startswith(("enzyme:", "incubate_"))
    ]


def _campaign_scenario(
    name: str,
    label: str,
    params: CampaignParams,
    clinical: bool,
    tmp: Path,
    phases: list[str],
    every: int,
) -> list[dict[str, Any]]:
    """Kill a campaign segment around its first passage: the step and the two after it."""
    cfg, template = campaign_template(tmp / name, params, clinical=clinical)
    finished = len(Store(template / STORE_FILE).events("step_finished"))
    work = campaign_work(params, finished + SEGMENT_STEPS)
    ref = run_point(template, tmp / f"{name}-ref", cfg, work, campaign_output)
    print(f"{label}: {ref.intents} device actions", flush=True)
    _, rows = scenario(
        name,
        template,
        cfg,
        work,
        campaign_output,
        tmp,
        _points(ref.intents, phases, every),
        ref=ref,
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--only",
        default="seeding,media_exchange,passaging,harvest,feed_columns,harvest_columns,"
        "passaging_columns,campaign,long,lab,clinical",
    )
    ap.add_argument("--phases", default="reply,intent")
    ap.add_argument("--every", type=int, default=1, help="every N-th action only")
    ap.add_argument("--json", type=Path, help="also write every kill point's judgement here")
    args = ap.parse_args()
    only = args.only.split(",")
    phases = args.phases.split(",")
    results: dict[str, list[dict[str, Any]]] = {}
    table = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kill-campaign-") as tmp_name:
        tmp = Path(tmp_name)
        refs: dict[str, tuple[Outcome, Path, Path]] = {}
        for op in OPERATIONS:
            if op not in only and not (op == "passaging" and ({"long", "lab"} & set(only))):
                continue
            cfg, template = operation_template(tmp / op, op)
            ref = run_point(template, tmp / f"{op}-ref", cfg, operation_work(op), output_of(op))
            refs[op] = (ref, cfg, template)
            if op not in only:
                continue
            print(f"{op}: {ref.intents} device actions, {len(phases)} kill points each", flush=True)
            _, rows = scenario(
                op,
                template,
                cfg,
                operation_work(op),
                output_of(op),
                tmp,
                _points(ref.intents, phases, args.every),
                ref=ref,
            )
            results[op] = rows
            table.append(table_row(op, rows))
        for name, op in COLUMN_SCENARIOS.items():
            if name not in only:
                continue
            with column_bench():  # the 24-well plate, a column at a time on 8 channels
                cfg, template = operation_template(tmp / name, op)
                work = operation_work(op)
            out = output_of(op)
            ref = run_point(template, tmp / f"{name}-ref", cfg, work, out)
            print(f"{name}: {ref.intents} device actions", flush=True)
            points = _points(ref.intents, phases, args.every)
            _, rows = scenario(name, template, cfg, work, out, tmp, points, ref=ref)
            results[name] = rows
            table.append(table_row(f"{op}, 24-well columns on 8 channels", rows))
        for name, label, params, clinical in (
            ("campaign", "campaign around a passage", CampaignParams(), False),
            (
                "clinical",
                "clinical campaign around a passage (hotel)",
                CampaignParams.model_validate_json(CLINICAL_PARAMS.read_text()),
                True,
            ),
        ):
            if name in only:
                results[name] = _campaign_scenario(
                    name, label, params, clinical, tmp, phases, args.every
                )
                table.append(table_row(label, results[name]))
        if "long" in only:
            ref, cfg, template = refs["passaging"]
            points = [f"{n}:reply" for n in _enzyme_points(tmp / "passaging-ref", template)]
            print(f"long outage: {len(points)} kill points in the enzyme stage", flush=True)
            _, rows = scenario(
                "long",
                template,
                cfg,
                operation_work("passaging"),
                output_of("passaging"),
                tmp,
                points,
                outage_s=LONG_OUTAGE_S,
                ref=ref,
            )
            results["long"] = rows
            table.append(table_row("passaging, 30 min outage in the enzyme stage", rows))
        if "lab" in only:
            ref, cfg, template = refs["passaging"]
            kills = [max(2, round(ref.intents * f)) for f in (0.1, 0.3, 0.45, 0.6, 0.9)]
            print(f"lab killed mid-action at requests {kills}", flush=True)
            _, rows = scenario(
                "lab",
                template,
                cfg,
                operation_work("passaging"),
                output_of("passaging"),
                tmp,
                [],
                lab_kills=kills,
                ref=ref,
            )
            results["lab"] = rows
            table.append(table_row("passaging, the lab killed mid-action", rows))
    head = (
        "scenario",
        "kill points",
        "double additions",
        "worst enzyme over-exposure s",
        "over-exposed (recorded, held)",
        "worst recovery s",
        "worst out of incubator s (uninterrupted)",
        "vessels lost",
        "cells vs uninterrupted (min, median)",
        "record verified",
        "deviation naming vessels",
        "finished",
        "hotel (lab = record)",
    )
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for t in table:
        print(
            f"| {t['scenario']} | {t['kill_points']} | {t['double_additions']} | "
            f"{t['worst_over_exposure_s']:.0f} | {t['over_exposed_points']} "
            f"({t['over_exposures_recorded']}) | {t['worst_recovery_delay_s']:.0f} | "
            f"{t['worst_out_of_incubator_s']:.0f} ({t['out_of_incubator_ref_s']:.0f}) | "
            f"{t['vessels_lost']} | {t['cells_min']:.3f}, {t['cells_median']:.3f} | "
            f"{t['verified']}/{t['kill_points']} | {t['deviation_naming_vessels']}/"
            f"{t['kill_points']} | {t['finished']}/{t['kill_points']} | "
            f"{t['hotel_agrees']}/{t['kill_points']} |"
        )
    bad = sum(t["bad"] for t in table)
    points = sum(t["kill_points"] for t in table)
    print(
        f"\n{points} kill points in {time.perf_counter() - t0:.0f} s; "
        f"{'all clean' if not bad else f'{bad} with a problem (listed above)'}"
    )
    if args.json:
        args.json.write_text(json.dumps({"table": table, "points": results}, indent=1))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
