"""Release of a batch: criteria, QC results, and the two signatures.

Criteria are configurable per product (``ReleaseSpec``); the defaults follow the
ISCT minimal criteria for MSC (Dominici et al., Cytotherapy 2006: CD73, CD90,
CD105 >= 95 % positive; CD45, CD34, CD14 or CD11b, CD79a or CD19, HLA-DR <= 2 %)
and common GMP practice for release (viability >= 70 %, sterility and mycoplasma
negative, endotoxin under a limit, dose >= target, passage <= limit).

QC results (flow cytometry, sterility, mycoplasma, endotoxin) are entered by an
analyst (or a simulated QC lab) as ``qc_result`` events, a file of them whole or
not at all, every number finite and in range; the rest comes from the record
(harvest count, dose, vessel passages). Each criterion evaluates to pass, fail or
missing. Every decision starts from a verified record (``release_state`` runs the
full check of ``workcell.batch.integrity``): a record that does not verify blocks
the release whatever its signatures say. Release then needs an operator's
signature (performed) and a QA approval (approved) by two different user ids,
each proven by the signer's secret and signed with their own key
(``workcell.batch.signatures``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workcell.batch.integrity import Integrity, verify_store
from workcell.batch.signatures import MEANING_ROLE, Meaning, Signature, read_signatures, sign_record
from workcell.batch.users import UserRegistry
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
    sterility_incubation_days: float = Field(
        default=14, ge=0, description="a sterility test incubates this long (USP <71>: 14 d)"
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
    from_qc: bool = False  # a QC lab's result (may arrive late), not the record's own


Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]


class QCResult(BaseModel):
    """One QC test result as reported (markers in % positive, endotoxin in EU/mL).

    Every number is finite: percentages 0-100, the endotoxin value non-negative.
    ``reported_at`` is when the lab reported it (default: when it is entered); a
    sterility result counts only after the spec's incubation time from the harvest.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    test: Literal["flow_cytometry", "sterility", "mycoplasma", "endotoxin"]
    markers_percent: dict[str, Percent] = Field(default_factory=dict)
    result: Literal["negative", "positive"] | None = None
    value: float | None = Field(default=None, ge=0, description="endotoxin, EU/mL")
    method: str = Field(default="", max_length=200)
    reported_at: datetime | None = Field(
        default=None, description="when the lab reported the result (UTC); default: now"
    )

    @model_validator(mode="after")
    def _fields_of_its_test(self) -> QCResult:
        if self.test == "flow_cytometry":
            unknown = sorted(set(self.markers_percent) - set(MARKERS))
            if unknown:
                raise ValueError(f"unknown markers {unknown}; known: {', '.join(MARKERS)}")
            if not self.markers_percent:
                raise ValueError("a flow cytometry result has at least one marker")
            if self.result is not None or self.value is not None:
                raise ValueError("a flow cytometry result has markers only")
        elif self.test == "endotoxin":
            if self.value is None:
                raise ValueError("an endotoxin result needs its value in EU/mL")
            if self.markers_percent or self.result is not None:
                raise ValueError("an endotoxin result has a value only")
        else:
            if self.result is None:
                raise ValueError(f"a {self.test} result is negative or positive")
            if self.markers_percent or self.value is not None:
                raise ValueError(f"a {self.test} result is negative or positive only")
        if self.reported_at is not None and self.reported_at.tzinfo is None:
            raise ValueError("reported_at needs a time zone (e.g. 2026-02-01T09:00:00Z)")
        return self


def parse_results(data: object) -> list[QCResult]:
    """QC results from JSON data (one result or a list): all valid, or an error naming
    every item that is not."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise WorkcellError("no QC results given")
    out, problems = [], []
    for i, item in enumerate(items, start=1):
        test = item.get("test", "?") if isinstance(item, dict) else "?"
        try:
            out.append(QCResult.model_validate(item))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            problems.append(f"item {i} ({test}): {where + ': ' if where else ''}{first['msg']}")
    if problems:
        raise WorkcellError("nothing entered: " + "; ".join(problems))
    return out


def enter_results(
    store: Store,
    results: list[QCResult],
    entered_by: str,
    channel: str,
    authenticated: bool,
    spec: ReleaseSpec | None = None,
    ref: str | None = None,
) -> None:
    """Enter QC results all together (one transaction) or none, after checking each
    against the batch: harvested, reported after the harvest, sterility incubated."""
    spec = spec or ReleaseSpec()
    harvested = store.events("harvested")
    if not harvested:
        raise WorkcellError("nothing entered: QC results belong to a harvested batch")
    sampled = harvested[-1].time
    now = datetime.now(UTC)
    problems = []
    for i, qc in enumerate(results, start=1):
        at = qc.reported_at or now
        if at < sampled:
            problems.append(
                f"item {i} ({qc.test}) reported at {at:%Y-%m-%d %H:%M}, before the harvest "
                f"({sampled:%Y-%m-%d %H:%M})"
            )
        days = (at - sampled).total_seconds() / 86400
        if qc.test == "sterility" and days < spec.sterility_incubation_days:
            problems.append(
                f"item {i} (sterility) reported {days:.1f} days after the harvest; the "
                f"test incubates {spec.sterility_incubation_days:g} days"
            )
    if problems:
        raise WorkcellError("nothing entered: " + "; ".join(problems))
    entry = {"channel": channel, "authenticated": authenticated, "ref": ref}
    with store.transaction():
        for qc in results:
            at = qc.reported_at or now
            data = qc.model_dump(mode="json") | {"reported_at": at.isoformat(), "entry": entry}
            store.add_event(Event(time=at, kind="qc_result", actor=entered_by, data=data))


def enter_results_as(
    store: Store,
    registry: UserRegistry,
    user_id: str,
    secret: str,
    results: list[QCResult],
    spec: ReleaseSpec | None = None,
) -> None:
    """An analyst (or QA) enters results under their own id, proven by their secret."""
    user = registry.authenticate(user_id, secret).user
    if not {"analyst", "qa"} & set(user.roles):
        raise WorkcellError(f"{user_id!r} may not enter QC results (roles: analyst, qa)")
    enter_results(store, results, user_id, "cli", True, spec)


def entered_refs(store: Store) -> set[str]:
    """References of entries already made (a form's input is entered once)."""
    return {
        str(e.data["entry"]["ref"])
        for e in store.events("qc_result")
        if isinstance(e.data.get("entry"), dict) and e.data["entry"].get("ref")
    }


def _latest(store: Store) -> dict[str, QCResult]:
    out: dict[str, QCResult] = {}
    for e in store.events("qc_result"):
        qc = QCResult.model_validate({k: v for k, v in e.data.items() if k != "entry"})
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

    def add(
        name: str,
        requirement: str,
        value: float | str | None,
        ok: bool | None,
        from_qc: bool = True,
    ) -> None:
        status = Status.MISSING if ok is None else (Status.PASS if ok else Status.FAIL)
        shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else value)
        out.append(
            Criterion(
                name=name,
                requirement=requirement,
                result=str(shown),
                status=status,
                from_qc=from_qc,
            )
        )

    v = h["viability_percent"] if h else None
    add(
        "viability",
        f">= {spec.viability_min_percent:g} %",
        v,
        None if v is None else v >= spec.viability_min_percent,
        from_qc=False,
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
        from_qc=False,
    )
    passages = [x.passage for x in store.vessels() if h and x.id in h.get("vessels", [])]
    p = max(passages) if passages else None
    add(
        "passage",
        f"<= P{spec.passage_limit}",
        None if p is None else f"P{p}",
        None if p is None else p <= spec.passage_limit,
        from_qc=False,
    )
    return out


class Stage(StrEnum):
    BLOCKED = "blocked"  # the record does not verify, a criterion failed, or no harvest
    WAITING_QC = "waiting for QC results"
    WAITING_SIGNATURES = "waiting for signatures"
    RELEASED = "released"


class ReleaseState(BaseModel):
    """Everything a release decision stands on, from a verified record."""

    integrity: Integrity
    criteria: list[Criterion]
    signatures: list[Signature]
    stage: Stage
    reason: str

    @property
    def released(self) -> bool:
        return self.stage is Stage.RELEASED


def release_state(
    store: Store, registry: UserRegistry | None, spec: ReleaseSpec | None = None
) -> ReleaseState:
    """Verify the record first (chain, anchors, derived tables, signatures), then judge
    what was verified: the criteria and signatures are read in a snapshot holding the
    same entries (another process writing meanwhile, e.g. a signature from the command
    line, means verifying again)."""
    for _ in range(20):
        integrity = verify_store(store, registry)
        with store.snapshot():
            if integrity.ok and store.record.head()[0] != integrity.entries:
                continue  # written between the two: verify what will be judged
            criteria = evaluate(store, spec)
            sigs, _ = read_signatures(store)
        break
    else:
        raise WorkcellError(
            f"the record of {store.path} kept changing while it was verified: try again when "
            "nothing writes to it"
        )

    def state(stage: Stage, reason: str) -> ReleaseState:
        return ReleaseState(
            integrity=integrity, criteria=criteria, signatures=sigs, stage=stage, reason=reason
        )

    if not integrity.ok:
        return state(Stage.BLOCKED, "the record does not verify: " + "; ".join(integrity.problems))
    if not store.events("harvested"):
        return state(Stage.BLOCKED, "the batch has not been harvested")
    failed = [c for c in criteria if c.status is Status.FAIL]
    if failed:
        return state(Stage.BLOCKED, "; ".join(f"{c.name} fail ({c.result})" for c in failed))
    missing = [c for c in criteria if c.status is Status.MISSING]
    not_qc = [c for c in missing if not c.from_qc]
    if not_qc:
        return state(Stage.BLOCKED, "; ".join(f"{c.name} missing" for c in not_qc))
    if missing:
        return state(Stage.WAITING_QC, "; ".join(f"{c.name} missing" for c in missing))
    meanings = {s.meaning for s in sigs}
    if {"performed", "approved"} <= meanings:
        return state(Stage.RELEASED, "every criterion passed; performed and approved")
    needed = [m for m in ("performed", "approved") if m not in meanings]
    return state(Stage.WAITING_SIGNATURES, "needs " + " then ".join(needed))


def sign(
    store: Store,
    registry: UserRegistry,
    user_id: str,
    secret: str,
    meaning: Meaning,
    spec: ReleaseSpec | None = None,
) -> Signature:
    """Sign the batch under a user id proven by its secret.

    Every signature needs a verified record and a harvest, the role its meaning
    calls for (performed: operator, reviewed: reviewer, approved: QA), and a user
    who has not signed this batch yet. QA's approval also needs every criterion
    passed and an operator's 'performed' signature by someone else.
    """
    if meaning not in MEANING_ROLE:
        raise WorkcellError(f"a signature means one of {', '.join(MEANING_ROLE)}")
    signer = registry.authenticate(user_id, secret)
    role = MEANING_ROLE[meaning]
    if role not in signer.user.roles:
        raise WorkcellError(f"{user_id!r} cannot sign {meaning!r}: that needs the {role} role")
    now = release_state(store, registry, spec)
    if not now.integrity.ok:
        raise WorkcellError("signature refused: " + now.reason)
    if not store.events("harvested"):
        raise WorkcellError("nothing to sign: the batch has not been harvested")
    if any(s.user_id == user_id for s in now.signatures):
        raise WorkcellError(
            f"{user_id!r} has already signed this batch; a second signature must be "
            "another person's"
        )
    if meaning == "approved":
        open_ = [c for c in now.criteria if c.status is not Status.PASS]
        if open_:
            raise WorkcellError(
                "release blocked: " + "; ".join(f"{c.name} {c.status.value}" for c in open_)
            )
        if not any(s.meaning == "performed" for s in now.signatures):
            raise WorkcellError("QA approval needs the operator's 'performed' signature first")
    return sign_record(store, signer, meaning)


def released(store: Store, registry: UserRegistry | None, spec: ReleaseSpec | None = None) -> bool:
    return release_state(store, registry, spec).released


SIMULATED_LAB = "qc-lab.simulated"  # the actor of simulated QC results


def simulated_qc(store: Store, spec: ReleaseSpec | None = None) -> list[QCResult]:
    """What a simulated cytometer and QC lab report for a healthy bone-marrow MSC batch,
    each on the day it would come back after the harvest (sterility after incubation)."""
    spec = spec or ReleaseSpec()
    harvested = store.events("harvested")
    if not harvested:
        raise WorkcellError("nothing entered: QC results belong to a harvested batch")
    t0 = harvested[-1].time
    day = timedelta(days=1)
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
            reported_at=t0 + day,
        ),
        QCResult(
            test="sterility",
            result="negative",
            method="simulated BacT/ALERT",
            reported_at=t0 + spec.sterility_incubation_days * day,
        ),
        QCResult(
            test="mycoplasma", result="negative", method="simulated qPCR", reported_at=t0 + day
        ),
        QCResult(test="endotoxin", value=0.12, method="simulated LAL", reported_at=t0 + day),
    ]
    enter_results(store, results, SIMULATED_LAB, "simulation", False, spec)
    return results
