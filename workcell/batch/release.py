"""Release of a batch: criteria, QC results, and the two signatures.

Criteria are configurable per product (``ReleaseSpec``); the defaults follow the
ISCT minimal criteria for MSC (Dominici et al., Cytotherapy 2006: CD73, CD90,
CD105 >= 95 % positive; CD45, CD34, CD14 or CD11b, CD79a or CD19, HLA-DR <= 2 %)
and common GMP practice for release (viability >= 70 %, sterility and mycoplasma
negative, endotoxin under a limit, dose >= target, passage <= limit).

QC results (flow cytometry, sterility, mycoplasma, endotoxin) are entered by an
operator or a simulated cytometer as ``qc_result`` events; the rest comes from
the record (harvest count, dose, vessel passages). Each criterion evaluates to
pass, fail or missing; release is blocked while any is fail or missing. It then
needs an operator's signature (performed) and a second person's QA approval
(approved); signatures are events in the chained record, and one person cannot
sign twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workcell.errors import WorkcellError
from workcell.store import Event, Store

POSITIVE_MARKERS = ("CD73", "CD90", "CD105")
NEGATIVE_MARKERS = ("CD45", "CD34", "CD14|CD11b", "CD79a|CD19", "HLA-DR")
MARKERS = ("CD73", "CD90", "CD105", "CD45", "CD34", "CD14", "CD11b", "CD79a", "CD19", "HLA-DR")


class ReleaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    viability_min_percent: float = Field(default=70, ge=0, le=100)
    positive_min_percent: float = Field(default=95, ge=0, le=100)
    negative_max_percent: float = Field(default=2, ge=0, le=100)
    endotoxin_max_EU_per_mL: float = Field(default=0.5, gt=0)
    passage_limit: int = Field(default=5, ge=1)
    target_dose_cells_per_kg: float | None = Field(
        default=None, description="default: the campaign's target"
    )


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    MISSING = "missing"


class Criterion(BaseModel):
    name: str
    requirement: str
    result: str
    status: Status


class QCResult(BaseModel):
    """One QC test result as entered (markers in % positive)."""

    model_config = ConfigDict(extra="forbid")

    test: Literal["flow_cytometry", "sterility", "mycoplasma", "endotoxin"]
    markers_percent: dict[str, float] = Field(default_factory=dict)
    result: Literal["negative", "positive"] | None = None
    value: float | None = Field(default=None, ge=0, description="endotoxin, EU/mL")
    method: str = ""


class Signature(BaseModel):
    name: str = Field(min_length=1)
    meaning: Literal["performed", "reviewed", "approved"]
    time: datetime


def enter_result(store: Store, qc: QCResult, entered_by: str) -> None:
    if qc.test == "flow_cytometry":
        unknown = sorted(set(qc.markers_percent) - set(MARKERS))
        if unknown:
            raise WorkcellError(f"unknown markers {unknown}; known: {', '.join(MARKERS)}")
    elif qc.test == "endotoxin" and qc.value is None:
        raise WorkcellError("an endotoxin result needs its value in EU/mL")
    elif qc.test in ("sterility", "mycoplasma") and qc.result is None:
        raise WorkcellError(f"a {qc.test} result is negative or positive")
    store.add_event(
        Event(
            time=datetime.now(UTC),
            kind="qc_result",
            actor=entered_by,
            data=qc.model_dump(mode="json"),
        )
    )


def _latest(store: Store) -> dict[str, QCResult]:
    out: dict[str, QCResult] = {}
    for e in store.events("qc_result"):
        qc = QCResult.model_validate(e.data)
        if qc.test == "flow_cytometry" and qc.test in out:  # panels add up, latest wins
            merged = {**out[qc.test].markers_percent, **qc.markers_percent}
            qc = qc.model_copy(update={"markers_percent": merged})
        out[qc.test] = qc
    return out


def evaluate(store: Store, spec: ReleaseSpec | None = None) -> list[Criterion]:
    spec = spec or ReleaseSpec()
    qc = _latest(store)
    harvested = store.events("harvested")
    h = harvested[-1].data if harvested else None
    started = store.events("campaign_started")
    target = spec.target_dose_cells_per_kg
    if target is None and started:
        target = started[0].data.get("params", {}).get("target_dose_cells_per_kg")
    out: list[Criterion] = []

    def add(name: str, requirement: str, value: float | str | None, ok: bool | None) -> None:
        status = Status.MISSING if ok is None else (Status.PASS if ok else Status.FAIL)
        shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else value)
        out.append(Criterion(name=name, requirement=requirement, result=str(shown), status=status))

    v = h["viability_percent"] if h else None
    add(
        "viability",
        f">= {spec.viability_min_percent:g} %",
        v,
        None if v is None else v >= spec.viability_min_percent,
    )
    markers = qc["flow_cytometry"].markers_percent if "flow_cytometry" in qc else {}
    for m in POSITIVE_MARKERS:
        x = markers.get(m)
        add(
            f"{m} positive",
            f">= {spec.positive_min_percent:g} %",
            x,
            None if x is None else x >= spec.positive_min_percent,
        )
    for group in NEGATIVE_MARKERS:
        names = group.split("|")
        values = [markers[n] for n in names if n in markers]
        x = min(values) if values else None  # "CD14 or CD11b": either one may be tested
        add(
            f"{' or '.join(names)} positive",
            f"<= {spec.negative_max_percent:g} %",
            x,
            None if x is None else x <= spec.negative_max_percent,
        )
    for test in ("sterility", "mycoplasma"):
        r = qc[test].result if test in qc else None
        add(test, "negative", r, None if r is None else r == "negative")
    e = qc["endotoxin"].value if "endotoxin" in qc else None
    add(
        "endotoxin",
        f"<= {spec.endotoxin_max_EU_per_mL:g} EU/mL",
        e,
        None if e is None else e <= spec.endotoxin_max_EU_per_mL,
    )
    dose = h["dose_cells_per_kg"] if h else None
    add(
        "dose",
        f">= {target:.3g} cells/kg" if target else ">= target (unknown)",
        dose,
        None if dose is None or target is None else dose >= target,
    )
    passages = [x.passage for x in store.vessels() if h and x.id in h.get("vessels", [])]
    p = max(passages) if passages else None
    add(
        "passage",
        f"<= P{spec.passage_limit}",
        None if p is None else f"P{p}",
        None if p is None else p <= spec.passage_limit,
    )
    return out


def signatures(store: Store) -> list[Signature]:
    return [
        Signature(name=e.actor, meaning=e.data["meaning"], time=e.time)
        for e in store.events("signature")
    ]


def sign(
    store: Store,
    name: str,
    meaning: Literal["performed", "reviewed", "approved"],
    spec: ReleaseSpec | None = None,
) -> Signature:
    """Sign the batch. Approval (QA) needs every criterion passed and an operator's signature."""
    name = name.strip()
    if not name:
        raise WorkcellError("a signature needs the signer's name")
    if not store.events("harvested"):
        raise WorkcellError("nothing to sign: the batch has not been harvested")
    existing = signatures(store)
    if any(s.name.casefold() == name.casefold() for s in existing):
        raise WorkcellError(
            f"{name} has already signed this batch; a second signature must be another person's"
        )
    if meaning == "approved":
        open_ = [c for c in evaluate(store, spec) if c.status is not Status.PASS]
        if open_:
            raise WorkcellError(
                "release blocked: " + "; ".join(f"{c.name} {c.status.value}" for c in open_)
            )
        if not any(s.meaning == "performed" for s in existing):
            raise WorkcellError("QA approval needs the operator's 'performed' signature first")
    sig = Signature(name=name, meaning=meaning, time=datetime.now(UTC))
    store.add_event(Event(time=sig.time, kind="signature", actor=name, data={"meaning": meaning}))
    return sig


def released(store: Store) -> bool:
    return any(s.meaning == "approved" for s in signatures(store))


def simulated_qc(store: Store) -> list[QCResult]:
    """What a simulated cytometer and QC lab report for a healthy bone-marrow MSC batch."""
    results = [
        QCResult(
            test="flow_cytometry",
            method="simulated cytometer",
            markers_percent={
                "CD73": 99.1,
                "CD90": 98.7,
                "CD105": 97.4,
                "CD45": 0.4,
                "CD34": 0.6,
                "CD14": 0.3,
                "CD79a": 0.2,
                "HLA-DR": 0.8,
            },
        ),
        QCResult(test="sterility", result="negative", method="simulated BacT/ALERT"),
        QCResult(test="mycoplasma", result="negative", method="simulated qPCR"),
        QCResult(test="endotoxin", value=0.12, method="simulated LAL"),
    ]
    for r in results:
        enter_result(store, r, "QC lab (simulated)")
    return results
