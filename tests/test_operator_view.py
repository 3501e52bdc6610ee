"""What an operator sees, without a server: forms, narrated logs, hold context, artifacts.

The browser test (``test_browser.py``) drives the same through the Prefect UI;
these check each piece from the workcell's own records, quickly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.schema_tools.validation import validate

from flows.artifacts import cells, result_markdown, vessel_rows
from flows.campaign import campaign_folder, final_state
from flows.forms import form_schema
from flows.holds import describe
from flows.narrate import narrating
from flows.operations import OPERATION_FLOWS
from flows.serve import deployments
from flows.steps import one_line
from protocols import incubation, passaging, seeding
from protocols.campaign.adoption import check_run_folder
from protocols.campaign.engine import (
    Action,
    CampaignEngine,
    CampaignParams,
    Kind,
    OperatorDecision,
)
from tests.conftest import run
from workcell.assembly.build import Workcell
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.session import open_session
from workcell.errors import ProtocolRefused, WorkcellError

SEEDING = seeding.SeedingParams(
    suspension=seeding.Suspension(volume_mL=5, viable_cells_per_mL=5e5),
    plates=["plate_1"],
)


def _errors(values: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What the Prefect server says of these parameters (its own validation)."""
    return [e.message for e in validate(values, schema, raise_on_error=False)]


def test_forms_show_units_choices_from_the_config_and_no_plumbing(tmp_path: Path) -> None:
    deps = {d.flow_name: d for d in deployments(None, str(tmp_path / "run"))}
    assert set(deps) == {
        "seed",
        "feed",
        "incubate",
        "passage",
        "harvest",
        "expansion-campaign",
        "batch-release",
        "workcell-floor",
        "join-floor",
        "cancel-on-floor",
    }
    # a campaign joins, or one stops on, a floor running under the same floors/ folder:
    # the one running, or the one named on the form
    for asking in ("join-floor", "cancel-on-floor"):
        assert deps[asking].parameters == {
            "floors_dir": deps["workcell-floor"].parameters["floors_dir"]
        }
        asked_for = deps[asking]._parameter_openapi_schema.model_dump()["properties"]["floor"]
        assert asked_for["title"] == "Floor name" and asked_for["default"] == ""
    join = deps["join-floor"]._parameter_openapi_schema.model_dump()
    joiner = {k: p["default"] for k, p in join["properties"].items() if "default" in p}
    assert set(joiner) == {"campaign", "floor"} and not _errors(joiner, join)
    # titled for people, not the model's class name (the UI showed "CampaignSpec")
    assert join["properties"]["campaign"]["title"] == "Campaign that joins"
    assert "a name the floor does not have yet" in join["properties"]["campaign"]["description"]
    cancel = deps["cancel-on-floor"]._parameter_openapi_schema.model_dump()
    said = _errors({"cancel": {"campaign": "a", "by": "o.op", "reason": ""}}, cancel)
    assert said == ["'' is too short"], said
    asked = cancel["definitions"]["Cancel"]["properties"]
    assert [asked[k]["title"] for k in ("campaign", "by", "reason")] == [
        "Campaign to stop",
        "Your user id",
        "Reason",
    ]
    assert "via" not in asked  # where a cancel came from is the flow's to say, not the form's
    floor = deps["workcell-floor"]._parameter_openapi_schema.model_dump()
    assert {"config", "run_dir", "floors_dir"}.isdisjoint(floor["properties"])  # the deployment's
    assert deps["workcell-floor"].parameters["floors_dir"] == str(
        (tmp_path / "run" / "floors").resolve()
    )
    shown = {k: p["default"] for k, p in floor["properties"].items() if "default" in p}
    assert not _errors(shown, floor)
    spec = floor["definitions"]["CampaignSpec"]["properties"]
    assert all(f.get("title") and f.get("description") for f in spec.values())
    release = deps["batch-release"]._parameter_openapi_schema.model_dump()
    assert "run_dir" in release["required"]  # the batch's own folder, named on the form
    assert release["properties"]["run_dir"]["title"] == "Batch run folder"
    assert "run_dir" not in deps["batch-release"].parameters
    seed = deps["seed"]._parameter_openapi_schema.model_dump()
    assert set(seed["properties"]) == {"params"}  # config and run folder are the deployment's
    assert deps["seed"].parameters["run_dir"] == str((tmp_path / "run").resolve())
    defs = seed["definitions"]
    plates = defs["SeedingParams"]["properties"]["plates"]
    assert plates["items"]["enum"][:2] == ["plate_1", "plate_2"]
    assert "A1" in defs["SeedingParams"]["properties"]["wells"]["items"]["enum"]
    assert defs["SeedingParams"]["properties"]["density_cells_per_cm2"]["title"] == (
        "Density (cells/cm²)"
    )
    assert defs["Suspension"]["properties"]["volume_mL"]["title"] == "Volume (mL)"
    assert defs["SeedingParams"]["properties"]["medium_reservoir"]["enum"] == ["medium"]
    for model in defs.values():  # every field is written for people
        for name, field in model["properties"].items():
            assert field.get("title") and field.get("description") or "$ref" in field, name
    good = {"params": SEEDING.model_dump(mode="json")}
    assert not _errors(good, seed)
    unknown = {"params": {**good["params"], "plates": ["plate_99"]}}
    assert any("plate_99" in e for e in _errors(unknown, seed))
    too_dense = {"params": {**good["params"], "density_cells_per_cm2": 50000}}
    assert any("50000" in e for e in _errors(too_dense, seed))

    camp = deps["expansion-campaign"]._parameter_openapi_schema.model_dump()
    assert {"config", "run_dir", "campaigns_dir"}.isdisjoint(camp["properties"])
    assert camp["properties"]["params"]["title"] == "Expansion campaign"
    assert camp["properties"]["params"]["default"]["target_dose_cells_per_kg"] == 2e6
    shown = {k: p["default"] for k, p in camp["properties"].items() if "default" in p}
    assert not _errors(shown, camp)  # the defaults as the form shows them are valid
    passage = deps["passage"]._parameter_openapi_schema.model_dump()
    cap = passage["definitions"]["PassagingParams"]["properties"]["max_child_vessels"]
    assert cap["type"] == "integer" and "default" not in cap and "anyOf" not in cap


def test_choices_follow_the_config(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][0]["name"] = "flask_plate"
    cfg = WorkcellConfig.model_validate(sim_data)
    schema = form_schema(OPERATION_FLOWS["passage"], cfg).model_dump()
    enum = schema["definitions"]["PassagingParams"]["properties"]["plate"]["enum"]
    assert "flask_plate" in enum and "plate_1" not in enum


def test_logs_narrate_the_lab_work(wc: Workcell) -> None:
    lines: list[tuple[int, str]] = []
    with narrating(lambda level, text: lines.append((level, text))):
        run(seeding.run(wc, SEEDING))
        run(wc.store_plate("plate_1"))
        run(incubation.run(wc, incubation.IncubationParams(hours=48)))
        result = run(
            passaging.run(
                wc, passaging.PassagingParams(plate="plate_1", destination_plates=["plate_2"])
            )
        )
    text = [t for _, t in lines]
    assert any(t.startswith("operator loaded 5.0 mL into cell_suspension") for t in text)
    assert "seeding: seeded 6 vessels" in text
    assert any(t.startswith("plate_1 into the incubator") for t in text)
    (imaged,) = [t for t in text if t.startswith("imaged plate_1")]  # one line per plate
    assert "mean confluence" in imaged
    assert any(t.startswith("plate_1: not passaged (mean confluence") for t in text)
    assert not result.passaged and result.decision.startswith("no passage:")
    assert all(level == logging.INFO for level, _ in lines)


def test_incubate_grows_the_culture_and_refuses_a_real_clock(wc: Workcell) -> None:
    run(seeding.run(wc, SEEDING))
    run(wc.store_plate("plate_1"))
    day2 = run(incubation.run(wc, incubation.IncubationParams(hours=48)))
    day6 = run(incubation.run(wc, incubation.IncubationParams(hours=96)))
    assert (day6.finished - day2.started).total_seconds() == pytest.approx(
        144 * 3600, abs=900
    )  # + imaging
    mean2 = sum(day2.confluence_percent.values()) / 6
    mean6 = sum(day6.confluence_percent.values()) / 6
    assert mean6 > mean2 + 10  # the imager sees the culture grow
    wc.clock.simulated = False  # type: ignore[misc]
    with pytest.raises(ProtocolRefused, match="time is real"):
        run(incubation.run(wc, incubation.IncubationParams(hours=1)))


def test_a_campaign_refuses_vessels_it_did_not_seed_unless_adopting(wc: Workcell) -> None:
    run(seeding.run(wc, SEEDING))
    with pytest.raises(WorkcellError, match="6 vessels .* that this campaign did not seed"):
        check_run_folder(wc, adopt=False, by="test")
    assert check_run_folder(wc, adopt=True, by="J. Doe") and wc.store.events("vessels_adopted")
    (e,) = wc.store.events("vessels_adopted")
    assert e.actor == "J. Doe" and len(e.data["vessels"]) == 6
    wc.event("campaign_started", "campaign", params={})
    assert check_run_folder(wc, adopt=False, by="test") == []  # its own folder: resumes


def test_hold_description_says_what_is_decided_and_why(wc: Workcell) -> None:
    run(seeding.run(wc, SEEDING))
    wc.event("campaign_started", "campaign", params={})
    run(wc.store_plate("plate_1"))
    run(incubation.run(wc, incubation.IncubationParams(hours=72)))
    action = Action(
        kind=Kind.HARVEST,
        plates=["plate_1"],
        reason="estimated 2.1e5 cells >= target",
        needs_operator=True,
    )
    md = describe(action, wc.store, wc.clock.now(), CampaignParams(patient_weight_kg=1))
    assert md.startswith("## Harvest the batch now?")
    assert "**Why:** estimated 2.1e5 cells >= target" in md
    assert "target **2e6** (dose × weight), harvest at ≥ 2.6e6 (× 1.3)" in md
    assert md.count("| plate_1 | ") == 6 and "Day **3.0** (process time)" in md


def test_refusals_read_as_one_line_and_results_for_people(wc: Workcell) -> None:
    err = ProtocolRefused("seeding", ["no resource 'plate_99'", "12 tips needed, 0 left"])
    assert one_line(err) == (
        "seeding refused before any device moved: no resource 'plate_99'; 12 tips needed, 0 left"
    )
    result = run(seeding.run(wc, SEEDING))
    head, md = result_markdown("Seeding", result, True, 2.5, "/runs/x")
    assert head == "Seeded 6 vessels on plate_1: 1.77e5 viable cells in all."
    assert "**Process time** (simulated clock)" in md and "**Wall time**" in md
    first = result.vessels[0]
    assert f"| {first.area_cm2:.2f} | {first.cells:,.0f} |" in md  # rounded, units above
    assert "| area (cm²) |" in md and "| suspension (mL) |" in md
    rows = vessel_rows(wc.store)
    assert rows[0]["seeded cells"] == cells(result.vessels[0].cells)
    assert rows[0]["from"] == "vial"


def test_each_campaign_has_its_own_folder_unless_adopting(
    sim_config: WorkcellConfig, tmp_path: Path
) -> None:
    cfg = sim_config
    root, ops = str(tmp_path / "campaigns"), str(tmp_path / "ops")
    first = campaign_folder(cfg, None, root, "")
    assert first.parent == tmp_path / "campaigns" and first.name.startswith("campaign-")
    assert campaign_folder(cfg, None, root, "batch-7") == tmp_path / "campaigns" / "batch-7"
    assert campaign_folder(cfg, None, root, "", adopt=True, operations_dir=ops) == Path(ops)
    assert campaign_folder(cfg, str(tmp_path / "x"), root, "batch-7") == tmp_path / "x"


def test_an_abort_ends_cancelled_with_who_and_why(
    sim_config: WorkcellConfig, tmp_path: Path
) -> None:
    async def abort(action: Action) -> OperatorDecision:
        return OperatorDecision(operator="J. Doe", decision="abort", comment="contaminated")

    async def go() -> Any:
        async with open_session(sim_config, tmp_path / "run") as s:
            params = CampaignParams(patient_weight_kg=1, target_dose_cells_per_kg=1e4)
            summary = await CampaignEngine(s, params, abort).run()
            return summary, s.wc.store.events("operator_decision")

    summary, decisions = run(go())
    state = final_state(summary, decisions[-1])
    assert state.is_cancelled() and summary.outcome.startswith("stopped")
    assert state.message == (
        "harvest aborted by J. Doe (contaminated); hold reason: " + decisions[-1].data["reason"]
    )
    approved = decisions[-1].model_copy(
        update={"data": {**decisions[-1].data, "decision": "approve"}}
    )
    done = summary.model_copy(update={"outcome": "harvested: the images estimate ..."})
    assert final_state(done, approved).is_completed()
    assert "harvest approved by J. Doe" in (final_state(done, approved).message or "")
    assert final_state(summary, approved).is_failed()  # a stop, confirmed: no harvest
