"""The run form of each deployment, written for the people who fill it in.

Prefect draws a deployment's Run form from its parameter schema, which it makes
from the flow's signature and the protocols' pydantic models (titles with units,
descriptions, bounds). ``form_schema`` then makes that schema this workcell's:

* every field that takes a name of some kind (``workcell.assembly.choices``) gets
  the names the config has as an ``enum``: the UI shows a dropdown, and the
  server refuses an unknown plate when the run is created, before it exists;
* the plumbing (the config file, the run folder) is taken off the form: the
  deployment fixes it in its parameters, so the server still passes it to the run;
* the flow's own parameters get a title and a description (Prefect gives them
  the Python name and drops the description);
* a model field filled by a ``default_factory`` gets that default in the schema
  (pydantic leaves it out), so an item added to a list on the form (a campaign on
  the floor's form) starts filled in, not with its vial's volume and count blank.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.utilities.callables import ParameterSchema, parameter_schema
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from workcell.assembly.choices import MARK, Choice, choices
from workcell.assembly.config import WorkcellConfig
from workcell.ot_labware import same_product

# fixed by the deployment, never on the form
PLUMBING = ("config", "run_dir", "campaigns_dir", "operations_dir", "floors_dir")
# the release works on one batch's run folder: the operator names it on the form
ON_FORM = {"batch-release": ("run_dir",)}

# title and description of the flows' own (non-model) parameters
FLOW_FIELDS: dict[str, tuple[str, str]] = {
    "batch": (
        "Batch",
        "name of this campaign's run folder; empty: a new folder named after today and this "
        "flow run. A batch name already used resumes that campaign.",
    ),
    "adopt_vessels": (
        "Adopt vessels instead of seeding the vial",
        "a campaign refuses a run folder holding vessels it did not seed; tick to take them "
        "over (recorded in the batch record). With no batch named, it adopts the plates "
        "seeded from the unit operations' forms, in their run folder",
    ),
    "auto_approve_dry_run": (
        "Auto-approve hold points (dry-run only)",
        "approve every hold point without asking; refused on a workcell with real devices",
    ),
    "operator_timeout_s": (
        "Wait for an operator decision (s)",
        "a hold point left unanswered this long fails the run; the campaign resumes from its "
        "run folder when started again",
    ),
    "run_dir": (
        "Batch run folder",
        "full path of the harvested campaign's run folder (the campaign deployment's "
        "campaigns folder/BATCH); a harvest starts its release by itself",
    ),
    "users": (
        "User registry",
        "the registry file of the people who sign; empty: $WORKCELL_USERS, else "
        "~/.config/msc-workcell/users.json",
    ),
    "qc_wait_days": ("Wait for QC results (days)", "the release fails if none come in this time"),
    "signature_wait_days": (
        "Wait for signatures (days)",
        "the release fails if the batch is not signed in this time",
    ),
    "release_deployment": (
        "Release deployment",
        "started after a harvest; empty: this workcell's release deployment",
    ),
    "days_per_run": ("Campaign days per flow run", "a longer campaign continues in a new run"),
    "hand_over_wait_h": (
        "Hand over at waits longer than (h)",
        "a longer wall-clock wait ends this run and schedules the next",
    ),
    "campaigns": (
        "Campaigns",
        "the campaigns on this floor, each with a run folder of its own under the floor's "
        "folder; the same names again resume them. Add item: another campaign",
    ),
}
# join and cancel name the floor they ask the same way
RUNNING_FLOOR = (
    "Floor name",
    "the running floor's name (its folder under floors/; its run is 'floor NAME: "
    "...'); empty: the one floor running, refused when several run",
)
# a flow's own title for a parameter another flow names the same
FLOW_FIELDS_OF: dict[str, dict[str, tuple[str, str]]] = {
    "workcell-floor": {
        "name": (
            "Floor name",
            "the floor's run folder under this workcell's floors/ (letters, digits, - _ .); "
            "empty: a new folder named after the date and time (UTC) and this flow run. The "
            "name of a floor that was stopped or killed resumes it; one that ran to its end "
            "is refused",
        ),
        "params": (
            "Floor settings",
            "the scheduler's policy and budget, how late each kind of work may be, and the "
            "incubator slots; the defaults suit a dry-run",
        ),
    },
    "join-floor": {
        "campaign": (
            "Campaign that joins",
            "one campaign, filled in as on the floor's form, with a name the floor does not "
            "have yet (its run folder); it starts at the floor's present, or at its start "
            "day if that is later",
        ),
        "floor": RUNNING_FLOOR,
    },
    "cancel-on-floor": {
        "floor": RUNNING_FLOOR,
    },
}


def _title(schema: dict[str, Any], definitions: dict[str, Any]) -> tuple[str, str] | None:
    """Title and description of a model-typed parameter, from the model itself."""
    ref = schema.get("$ref") or next(
        (s["$ref"] for s in schema.get("anyOf", []) if "$ref" in s), None
    )
    if not ref:
        return None
    model = definitions.get(ref.rsplit("/", 1)[-1], {})
    return model.get("title", ""), model.get("description", "")


def _choose(node: Any, names: dict[Choice, list[str]]) -> None:
    """Replace every ``MARK`` in a schema (recursively) by the names it stands for."""
    if isinstance(node, list):
        for x in node:
            _choose(x, names)
        return
    if not isinstance(node, dict):
        return
    kind = node.pop(MARK, None)
    if kind is not None:
        allowed = names[Choice(kind)]
        default = node.get("default")
        if (
            kind == Choice.PLATE_LABWARE
            and isinstance(default, str)
            and default not in allowed
            and any(same_product(default, a) for a in allowed)
        ):
            allowed = [default, *allowed]  # another catalogue's name for the same plate
        if node.get("type") == "array":
            node["items"] = {**node.get("items", {}), "enum": allowed}
            node["uniqueItems"] = True
        else:
            node["enum"] = allowed
            node.pop("pattern", None)
    for value in node.values():
        _choose(value, names)


def _number(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) >= 1000 else f"{x:g}"


def _bounds(node: Any) -> None:
    """Write each number field's range into its description: the form shows no bounds."""
    if isinstance(node, list):
        for x in node:
            _bounds(x)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") in ("number", "integer"):
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum")
        above = "above " if "exclusiveMinimum" in node else ""
        parts = []
        if low is not None:
            parts.append(f"{above or 'from '}{_number(low)}")
        if high is not None:
            parts.append(f"{'to' if low is not None else 'at most'} {_number(high)}")
        if parts:
            text = " ".join(parts)
            node["description"] = f"{node.get('description', '').rstrip('.')} ({text})".lstrip()
    for value in node.values():
        _bounds(value)


def _without_nulls(value: Any) -> Any:
    """A default with its None fields left out: the form leaves them empty, the model's
    None applies (a field shown as a number box would refuse a null)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _models(flow: Flow[..., Any]) -> dict[str, type[BaseModel]]:
    """Every pydantic model the flow's parameters use, by name (the schema's definitions)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ in found:
                return
            found[tp.__name__] = tp
            for f in tp.model_fields.values():
                visit(f.annotation)
        for arg in typing.get_args(tp):
            visit(arg)

    for tp in typing.get_type_hints(flow.fn).values():
        visit(tp)
    return found


def _factory_defaults(flow: Flow[..., Any], definitions: dict[str, Any]) -> None:
    """Give each model field filled by a ``default_factory`` its default in the schema."""
    for name, model in _models(flow).items():
        props = definitions.get(name, {}).get("properties", {})
        for field_name, f in model.model_fields.items():
            prop = props.get(f.alias or field_name)
            if prop is None or "default" in prop or f.default_factory is None:
                continue
            try:
                value = f.default_factory()  # type: ignore[call-arg]
            except TypeError:  # a factory of the other fields: no default of its own
                continue
            prop["default"] = _without_nulls(to_jsonable_python(value))


def form_schema(flow: Flow[..., Any], cfg: WorkcellConfig) -> ParameterSchema:
    """The flow's parameter schema as this workcell's Run form shows it."""
    raw = copy.deepcopy(parameter_schema(flow).model_dump())
    hidden = [n for n in PLUMBING if n not in ON_FORM.get(flow.name, ())]
    for name in hidden:
        raw["properties"].pop(name, None)
    raw["required"] = [r for r in raw.get("required", []) if r not in hidden]
    definitions = raw.get("definitions", {})
    _factory_defaults(flow, definitions)
    own = FLOW_FIELDS_OF.get(flow.name, {})
    for name, prop in raw["properties"].items():
        if "default" in prop:
            prop["default"] = _without_nulls(prop["default"])
        titled = own.get(name) or FLOW_FIELDS.get(name) or _title(prop, definitions)
        if titled:
            prop["title"], description = titled
            if description:
                prop["description"] = description
    _choose(raw, choices(cfg))
    _bounds(raw)
    return ParameterSchema.model_validate(raw)


def plumbing(operation: str, config: str | None, folder: Path) -> dict[str, Any]:
    """The parameters a deployment fixes, off the form: the config file and the run folder
    of the unit operations; for the campaign, the folder of its batches (one run folder
    each) and the unit operations' folder it may adopt."""
    where = folder.resolve()
    fixed: dict[str, Any] = {"config": str(Path(config).resolve()) if config else None}
    if operation == "campaign":
        return {**fixed, "campaigns_dir": str(where / "campaigns"), "operations_dir": str(where)}
    if operation == "release":
        return fixed  # the batch's own run folder is named on the form, or by the harvest
    if operation == "floor":  # floors/<name>: several campaigns, each in a folder under it
        return {**fixed, "floors_dir": str(where / "floors")}
    if operation in ("join floor", "cancel on floor"):  # asks a floor running under floors/
        return {"floors_dir": str(where / "floors")}
    return {**fixed, "run_dir": str(where)}


def describe_deployment(flow: Flow[..., Any], cfg: WorkcellConfig, defaults: dict[str, Any]) -> str:
    """The deployment's description: what the flow does, and where it works."""
    doc = (flow.description or flow.name).strip().splitlines()[0]
    if "campaigns_dir" in defaults:
        return (
            f"{doc} (workcell {cfg.name}; each campaign in a run folder of its own under "
            f"{defaults['campaigns_dir']})"
        )
    if "floors_dir" in defaults:
        return (
            f"{doc} (workcell {cfg.name}; each floor in a folder of its own under "
            f"{defaults['floors_dir']})"
        )
    if "run_dir" not in defaults:
        return f"{doc} (workcell {cfg.name}; the batch's run folder is named on the form)"
    return f"{doc} (workcell {cfg.name}, run folder {defaults['run_dir']})"
