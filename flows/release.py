"""The release of a batch as its own Prefect flow, which waits for late QC results.

Sterility takes 14 days to read, mycoplasma culture up to 28: a release cannot
be a step at the end of the campaign. The campaign's harvest starts this flow
(from its deployment); the flow decides from the run folder's store alone, every
time it runs:

- the record does not verify, a criterion failed, or there is no harvest: the
  flow ends Failed, saying why (the batch is blocked);
- QC results are missing: the flow *suspends* (``suspend_flow_run``: no process
  is held, the run waits in the Prefect database for days) with a form for the
  results (``QCForm``: the analyst's user id, one number box per marker with its
  range, sterility and mycoplasma as dropdowns, endotoxin, when reported) under a
  description of what is missing. An analyst fills the form in the Prefect UI, or
  enters them with ``workcell release enter`` (which resumes the flow). Out-of-range
  values and a missing user id are refused by the UI before the run resumes; what
  only the record can judge (an unknown user, a result dated before the harvest)
  is refused by the flow, which enters nothing and waits again with the refusal
  at the top of its next form;
- every criterion passed but signatures are missing: it suspends again, asking
  for the operator's and QA's signatures (``workcell release sign``, which
  resumes it; a signature needs the signer's secret, which never goes through
  Prefect);
- released: it completes, saying who signed, with the verdict as an artifact.

A run started by hand on a wrong or empty run folder ends Failed with one line.

On resume Prefect runs the flow again from the top. Each wait has a key
(``qc-1``, ``qc-2``, ..., ``sign-1``, ...): a wait already answered returns its
answer at once, so a re-run walks the same waits to the first unanswered one.
A form's results carry their wait's key into the record, so they are entered once.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from pydantic import ConfigDict, Field, ValidationError, WithJsonSchema

from flows.artifacts import key
from flows.resume import resume_suspended
from flows.steps import publish_head
from workcell.batch.integrity import refuse_damaged
from workcell.batch.release import (
    QCResult,
    ReleaseSpec,
    ReleaseState,
    Stage,
    enter_results,
    entered_refs,
    release_state,
)
from workcell.batch.users import UserRegistry
from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Store

FLOW_NAME = "batch-release"
DAY_S = 86400
# what the command line's resume puts in a waiting form (it entered or signed already)
FROM_CLI = "(workcell release)"


SPEC = ReleaseSpec()


def _percent(needs: str) -> dict[str, Any]:
    """An optional % field's schema: a plain number box with its range and what the
    release needs (not a number-or-null toggle); left empty, it is not reported."""
    return {
        "type": "number",
        "minimum": 0,
        "maximum": 100,
        "description": f"% positive, 0 to 100; the release needs {needs}",
    }


# (the Resume form's description is squeezed out of a short window by a long form: each
# field says what it needs)
Positive = Annotated[
    float | None,
    Field(ge=0, le=100, allow_inf_nan=False),
    WithJsonSchema(_percent(f"≥ {SPEC.positive_min_percent:g}")),
]
Negative = Annotated[
    float | None,
    Field(ge=0, le=100, allow_inf_nan=False),
    WithJsonSchema(_percent(f"≤ {SPEC.negative_max_percent:g}")),
]
EU = Annotated[
    float | None,
    Field(ge=0, allow_inf_nan=False),
    WithJsonSchema(
        {
            "type": "number",
            "minimum": 0,
            "description": f"EU/mL, from 0; the release needs ≤ {SPEC.endotoxin_max_EU_per_mL:g}",
        }
    ),
]
When = Annotated[datetime | None, WithJsonSchema({"type": "string", "format": "date-time"})]
WaitDays = Annotated[float, Field(gt=0, le=365)]


# form field -> marker name in the release criteria
MARKER_FIELDS = {
    "cd73": "CD73",
    "cd90": "CD90",
    "cd105": "CD105",
    "cd45": "CD45",
    "cd34": "CD34",
    "cd14": "CD14",
    "cd11b": "CD11b",
    "cd79a": "CD79a",
    "cd19": "CD19",
    "hla_dr": "HLA-DR",
}
Pending = Literal["not reported", "negative", "positive"]


def _form_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    """The UI and the server ask for the analyst's id (the model's own default "" stands
    for a resume without the form: the command line entered the results); an empty
    field sends nothing, so no field shows a null default (a number box refuses it).
    The wait's note (what is missing, a refusal) heads the first field: Prefect squeezes
    the form's description out of a window shorter than this long form."""
    schema["required"] = ["analyst"]
    for prop in schema["properties"].values():
        if prop.get("default", 0) in (None, ""):
            prop.pop("default")
    note = getattr(cls, "note", "")
    if note:
        analyst = schema["properties"]["analyst"]
        analyst["description"] = f"{note}\n\n{analyst['description']}"


class QCForm(RunInput):
    """The Resume form of a release waiting for QC results: one field per result, each
    with its unit and range, entered whole or not at all."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_form_schema)
    note: ClassVar[str] = ""  # set per wait: what is missing, why the last entry was refused

    analyst: str = Field(
        default="",
        min_length=1,
        max_length=64,
        title="Your user id",
        description="Your user id, as in the user registry (an analyst or QA user); the "
        "results are recorded under it.",
    )
    cd73: Positive = Field(default=None, title="CD73")
    cd90: Positive = Field(default=None, title="CD90")
    cd105: Positive = Field(default=None, title="CD105")
    cd45: Negative = Field(default=None, title="CD45")
    cd34: Negative = Field(default=None, title="CD34")
    cd14: Negative = Field(default=None, title="CD14")
    cd11b: Negative = Field(default=None, title="CD11b")
    cd79a: Negative = Field(default=None, title="CD79a")
    cd19: Negative = Field(default=None, title="CD19")
    hla_dr: Negative = Field(default=None, title="HLA-DR")
    sterility: Pending = Field(default="not reported", title="Sterility")
    mycoplasma: Pending = Field(default="not reported", title="Mycoplasma")
    endotoxin: EU = Field(default=None, title="Endotoxin")
    reported_at: When = Field(
        default=None,
        title="Reported at",
        description="when the lab reported these results (UTC); empty: now",
    )
    method: str = Field(
        default="", max_length=200, title="Method", description="optional: kit, instrument"
    )

    def results(self) -> list[QCResult]:
        """The form's results as the release records them (validated again, whole)."""
        common: dict[str, Any] = {"reported_at": self.reported_at, "method": self.method}
        markers = {
            name: value
            for f, name in MARKER_FIELDS.items()
            if (value := getattr(self, f)) is not None
        }
        items: list[dict[str, Any]] = []
        if markers:
            items.append({"test": "flow_cytometry", "markers_percent": markers})
        for test in ("sterility", "mycoplasma"):
            if (result := getattr(self, test)) != "not reported":
                items.append({"test": test, "result": result})
        if self.endotoxin is not None:
            items.append({"test": "endotoxin", "value": self.endotoxin})
        return [QCResult.model_validate(item | common) for item in items]


class SignatureWait(RunInput):
    """The Resume form of a release waiting for signatures: nothing to fill; signatures
    need the signer's secret, which never goes through Prefect."""

    model_config = ConfigDict(extra="forbid")


def _state(folder: Path, registry: UserRegistry) -> tuple[ReleaseState, datetime | None]:
    """The release's state and the harvest's time, from the store alone."""
    store = Store(folder / STORE_FILE, read_only=True)
    try:
        harvested = store.events("harvested")
        return release_state(store, registry), (harvested[-1].time if harvested else None)
    finally:
        store.close()


def _missing(state: ReleaseState) -> str:
    """What the release still waits for, in the lab's words."""
    missing = [c.name for c in state.criteria if c.status.value == "missing"]
    markers = [m.removesuffix(" positive") for m in missing if m.endswith(" positive")]
    rest = [m for m in missing if not m.endswith(" positive")]
    parts = ([f"flow cytometry ({', '.join(markers)})"] if markers else []) + rest
    return ", ".join(parts) or "nothing"


def _enter_form(folder: Path, registry: UserRegistry, form: QCForm, ref: str) -> str:
    """Enter a form's results once; returns what happened, for the log and the next form
    (a refusal starts with "refused")."""
    if form.analyst in ("", FROM_CLI):
        return "resumed from the command line: checking the record again"
    try:
        results = form.results()
    except ValidationError as e:
        return "refused, nothing entered: " + _one_line(e)
    if not results:
        return f"refused: the form from {form.analyst!r} held no results"
    user = registry.get(form.analyst)
    if user is None or not user.active or not {"analyst", "qa"} & set(user.roles):
        return (
            f"refused, nothing entered: {form.analyst!r} is not an active analyst or QA "
            "user in the user registry"
        )
    path = folder / STORE_FILE
    refuse_damaged(path)
    store = Store(path)
    try:
        if ref in entered_refs(store):
            return f"form {ref} was entered before"
        # the UI is not where identity is proven: its login is the deployment's (docs/part11.md)
        enter_results(store, results, user.id, "prefect-ui", False, ref=ref)
    except WorkcellError as e:
        return f"refused: {e}"
    finally:
        store.close()
    return f"entered {', '.join(r.test for r in results)} from the form as {user.id}"


def _one_line(e: ValidationError) -> str:
    """A pydantic error as one line naming the field, without its URL and input."""
    return "; ".join(
        f"{'.'.join(str(x) for x in err['loc']) or 'form'}: {err['msg']}" for err in e.errors()
    )


def _qc_description(folder: Path, state: ReleaseState, harvest: datetime | None, last: str) -> str:
    """The markdown above the QC form: what is missing, by when, and how else to enter it."""
    spec = SPEC
    lines = [f"## QC results for batch {folder.name}", ""]
    if last.startswith("refused"):
        lines += [f"**Your last entry was {last}**", ""]
    lines += [f"**Still missing:** {_missing(state)}.", ""]
    if harvest is not None:
        readable = harvest + timedelta(days=spec.sterility_incubation_days)
        lines += [
            f"Harvested {harvest:%Y-%m-%d %H:%M} UTC; sterility can be read from "
            f"{readable:%Y-%m-%d %H:%M} UTC ({spec.sterility_incubation_days:g} days' "
            "incubation). Results reported before the harvest are refused.",
            "",
        ]
    lines += [
        "Fill in what the lab reported and leave the rest empty: this form can be "
        "submitted again as more results come in. Everything in one submission is "
        "entered together or not at all.",
        "",
        f"From the command line: `workcell release enter {folder} RESULTS.json --user YOUR_ID`.",
        "",
        _criteria_table(state),
    ]
    return "\n".join(lines)


def _criteria_table(state: ReleaseState) -> str:
    rows = "\n".join(
        f"| {c.name} | {c.requirement} | {c.result} | {c.status.value} |" for c in state.criteria
    )
    return f"| criterion | requirement | result | status |\n|---|---|---|---|\n{rows}"


def _sign_description(folder: Path, state: ReleaseState) -> str:
    """The markdown of the signature wait's Resume form: who signs, and where."""
    signed = "".join(
        f"- signed {s.meaning} by {s.statement.name} ({s.user_id})\n" for s in state.signatures
    )
    meanings = {s.meaning for s in state.signatures}
    todo = [
        who
        for meaning, who in (
            ("performed", "performed (an operator)"),
            ("approved", "approved (QA, another person)"),
        )
        if meaning not in meanings
    ]
    return (
        f"## Signatures for batch {folder.name}\n\nEvery criterion passed. Still to sign: "
        f"{', then '.join(todo)}.\n\n{signed}\nA signature needs your secret, which never "
        "goes through this page: sign on the command line, which resumes this run:\n\n"
        f"`workcell release sign {folder} --user YOUR_ID --meaning performed` (operator), "
        "then `--meaning approved` (QA).\n\nSubmitting this form only checks the record again."
    )


async def _announce(folder: Path, state: ReleaseState) -> None:
    signed = "\n".join(
        f"- {s.statement.name} ({s.user_id}) {s.meaning} {s.statement.utc:%Y-%m-%d %H:%M} UTC"
        for s in state.signatures
    )
    how = {
        Stage.WAITING_QC: "Enter the results in this run's form (Resume), or "
        f"`workcell release enter {folder} RESULTS.json --user YOUR_ID`.",
        Stage.WAITING_SIGNATURES: "Sign with "
        f"`workcell release sign {folder} --user YOUR_ID --meaning performed` (operator), "
        "then `--meaning approved` (QA, another person).",
    }.get(state.stage, "")
    await acreate_markdown_artifact(
        key=f"release-{key(folder.name)[:40]}",
        description=f"release of {folder}",
        markdown=f"# Release of {folder.name}: {state.stage.value}\n\n{state.reason}\n\n"
        f"{how}\n\n{_criteria_table(state)}\n\n"
        f"{signed or 'No signatures yet.'}\n\n{state.integrity.line()}",
    )


async def _answered(wait: str) -> bool:
    """Whether this run waited at ``wait`` before: Prefect runs a resumed flow again
    from the top, and a wait already answered is replayed, not announced again."""
    return await aread_flow_run_input(f"suspended-{wait}-schema") is not None  # type: ignore[misc]


def _batch_folder(run_dir: str) -> Path:
    """The batch's run folder, or one line saying what is wrong with the one given."""
    if not run_dir.strip():
        raise WorkcellError(
            "no batch run folder given: name the harvested campaign's run folder "
            "(.../campaigns/BATCH)"
        )
    folder = Path(run_dir).expanduser()
    if not folder.is_absolute():
        raise WorkcellError(f"batch run folder {run_dir!r}: give the full path")
    if not folder.is_dir():
        raise WorkcellError(f"no run folder {folder}")
    if not (folder / STORE_FILE).is_file():
        raise WorkcellError(f"no batch record in {folder} (expected {folder / STORE_FILE})")
    return folder


@flow(name=FLOW_NAME)
async def release(
    run_dir: str,
    config: str | None = None,
    users: str = "",
    qc_wait_days: WaitDays = 60,
    signature_wait_days: WaitDays = 30,
) -> State[Any]:
    """Wait for the QC results and the signatures a batch needs; release it or say why not.

    The release reads the run folder's store alone; ``config`` is accepted (and not
    needed) so a workcell's deployments share one set of defaults. Bad input and a
    blocked batch end the run Failed with one line (no traceback): it is an answer.
    """
    log = get_run_logger()
    try:
        folder = _batch_folder(run_dir)
        registry = UserRegistry(users.strip() or None)
        refuse_damaged(folder / STORE_FILE)
    except WorkcellError as e:
        log.error("release not started: %s", e)
        return Failed(message=f"release not started: {e}")
    run_id = flow_run.id
    last = ""
    for i in itertools.count(1):
        state, harvest = _state(folder, registry)
        if state.stage is not Stage.WAITING_QC:
            break
        if not await _answered(f"qc-{i}"):
            await _announce(folder, state)
            log.warning(
                "waiting for QC results (%s): missing %s; enter them in this run's Resume "
                "form or with `workcell release enter`",
                f"qc-{i}",
                _missing(state),
            )
        form_type = QCForm.with_initial_data(
            description=_qc_description(folder, state, harvest, last)
        )
        refused = f"**Your last entry was {last}**\n\n" if last.startswith("refused") else ""
        form_type.note = f"{refused}**Still missing:** {_missing(state)}."
        try:
            form = await asuspend_flow_run(
                wait_for_input=form_type, key=f"qc-{i}", timeout=int(qc_wait_days * DAY_S)
            )
        except ValidationError as e:  # what the form's schema let through and the model not
            last = "refused, nothing entered: " + _one_line(e)
        else:
            last = _enter_form(folder, registry, form, f"{run_id}/qc-{i}")
        if not await _answered(f"qc-{i + 1}"):  # the first time past this wait
            (log.warning if last.startswith("refused") else log.info)("%s", last)
            await publish_head(folder)
    for i in itertools.count(1):
        state, _ = _state(folder, registry)
        if state.stage is not Stage.WAITING_SIGNATURES:
            break
        if not await _answered(f"sign-{i}"):
            await _announce(folder, state)
            log.warning(
                "every criterion passed; waiting for signatures (%s): %s",
                f"sign-{i}",
                state.reason,
            )
        await asuspend_flow_run(
            wait_for_input=SignatureWait.with_initial_data(
                description=_sign_description(folder, state)
            ),
            key=f"sign-{i}",
            timeout=int(signature_wait_days * DAY_S),
        )
    await _announce(folder, state)
    await publish_head(folder)
    if state.stage is Stage.BLOCKED:
        log.error("release of %s blocked: %s", folder.name, state.reason)
        return Failed(message=f"batch {folder.name} not released: {state.reason}")
    signers = ", ".join(f"{s.meaning} by {s.user_id}" for s in state.signatures)
    message = f"batch {folder.name} released: every criterion passed; {signers}"
    log.info("%s", message)
    return Completed(message=message, data=state.stage.value)


def resume_waiting(run_dir: Path) -> list[UUID]:
    """Resume every release flow run suspended on ``run_dir`` (after a CLI entry or
    signature); each decides again from the store. A resume Prefect refuses raises
    ``ResumeRefused`` with its reason, so the CLI never reports a run it did not resume."""
    return asyncio.run(_resume_waiting(Path(run_dir).resolve()))


async def _resume_waiting(target: Path) -> list[UUID]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    resumed = []
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Suspended"]))
            ),
        )
        for fr in runs:
            params: dict[str, Any] = fr.parameters or {}
            if params.get("run_dir") and Path(str(params["run_dir"])).resolve() == target:
                details = fr.state.state_details if fr.state else None
                run_input: dict[str, Any] | None = None
                if details and details.run_input_keyset:  # a form waits: answer it as the CLI
                    qc = (details.pause_key or "").startswith("qc-")
                    run_input = {"analyst": FROM_CLI} if qc else {}
                await resume_suspended(client, fr.id, run_input)
                resumed.append(fr.id)
    return resumed
