"""The floor as an operator meets it, without a server: its Run form, its refusals, and
the plan as the UI shows it (``test_floor_flow.py`` runs it under a Prefect server)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.schema_tools.validation import validate

from flows.floor import floor_folder, floor_lock
from flows.serve import deployments
from protocols.campaign.gantt import plan_markdown
from protocols.campaign.scheduler import Plan, Policy, Slot
from workcell.errors import WorkcellError


def _errors(values: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    return [e.message for e in validate(values, schema, raise_on_error=False)]


def test_the_floor_form_starts_filled_in_and_points_at_a_bad_field(tmp_path: Path) -> None:
    (dep,) = [d for d in deployments(None, str(tmp_path)) if d.flow_name == "workcell-floor"]
    form = dep._parameter_openapi_schema.model_dump()
    campaigns, settings = form["properties"]["campaigns"], form["properties"]["params"]
    assert campaigns["title"] == "Campaigns" and "run folder" in campaigns["description"]
    assert settings["title"] == "Floor settings" and settings["description"]
    assert [c["name"] for c in campaigns["default"]] == ["a", "b"]
    # an item added on the form starts from the campaign's defaults: its vial is filled in
    spec = form["definitions"]["CampaignSpec"]["properties"]
    added = {"name": "c2", "params": spec["params"]["default"]}
    assert added["params"]["suspension"]["volume_mL"] == 5.0
    assert not _errors({"campaigns": [*campaigns["default"], added]}, form)
    floor = form["definitions"]["FloorParams"]["properties"]
    assert floor["scheduler"]["default"]["policy"] == "cpsat"
    # a bad value is named, not buried in "not valid under any of the given schemas"
    said = _errors({"campaigns": [{**added, "start_day": -1}]}, form)
    assert said == ["-1 is less than the minimum of 0"], said


def test_a_second_floor_on_a_running_folder_is_refused_saying_who_runs_it(
    tmp_path: Path,
) -> None:
    refused = pytest.raises(WorkcellError, match=r"already running \(flow run 'first', pid \d+")
    with floor_lock(tmp_path, "flow run 'first'"), refused, floor_lock(tmp_path, "second"):
        pass
    with floor_lock(tmp_path, "flow run 'third'"):  # free again once the first ended
        assert "third" in (tmp_path / "floor.lock").read_text()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(WorkcellError, match="run folder .*a-file/floor cannot be used"):
        floor_folder(str(tmp_path / "a-file" / "floor"))


def _slot(campaign: str, label: str, start_h: float, **kw: Any) -> Slot:
    return Slot(
        request=f"{campaign}-{label}",
        campaign=campaign,
        label=f"{campaign}: {label}",
        segment=0,
        devices=kw.pop("devices", ["star"]),
        start_s=start_h * 3600,
        end_s=start_h * 3600 + 1200,
        **kw,
    )


def test_the_plan_fits_the_page_and_says_each_thing_once() -> None:
    day = 86400.0
    plan = Plan(
        policy=Policy.CPSAT,
        made_at_s=day,
        method="cp-sat optimal",
        slots=[
            _slot(
                "c0",
                "feed plate_1",
                24.5,
                due_s=day,
                closes_s=day + 12 * 3600,
                hard=True,
                positions=2,
            ),
            _slot("c1", "image plate_1", 36, devices=["imager"], forecast=True),
        ],
    )
    text = plan_markdown(plan, ["imager", "star"], start=datetime(2026, 1, 5, 8, tzinfo=UTC))
    chart = text.split("```")[1].strip().splitlines()
    assert max(len(line) for line in chart) <= 84  # the UI's page shows it unscrolled
    assert chart[1].startswith("imager    |") and chart[2].startswith("star      |")
    assert chart[2][11 + 1] == "A" and chart[1][11 + 36] == "b"  # 20 min a character
    # the deck row: the feed's two plates hold two working positions while it runs
    assert chart[3].startswith("deck      |") and chart[3][11 + 1] == "2"
    assert set(chart[3][11:-1]) == {".", "2"}
    assert "since the floor's start (2026-01-05 08:00 UTC)" in text
    assert "| d1 00:30 | d1 00:50 | c0 | feed plate_1 | star | d1 00:00 | d1 12:00 (hard) |" in text
    assert "| c1 | image plate_1 (forecast) | d1 12:00 |" in text  # the next action
    assert "c0: feed" not in text  # the campaign has its own column


def test_join_and_cancel_ask_the_running_floor_and_say_its_answer(tmp_path: Path) -> None:
    """What ``join floor`` and ``workcell floor-join`` run, against a floor running in this
    process (its lock held as ``flows/floor.py`` holds it); then with no floor running."""
    import asyncio

    from flows.floor_requests import ask_floor
    from protocols.campaign.engine import CampaignParams
    from protocols.campaign.floor import CampaignSpec, Floor
    from protocols.campaign.inbox import Cancel
    from tests.conftest import run

    def spec(name: str) -> CampaignSpec:
        return CampaignSpec(name=name, params=CampaignParams(max_days=2.2, max_vessels=12))

    floor = Floor(tmp_path, [spec("a")])
    said: list[str] = []

    async def main() -> None:
        going = asyncio.create_task(floor.run())
        said.append(await ask_floor(str(tmp_path), "join", "b", spec("b")))
        with pytest.raises(WorkcellError, match="already has a campaign 'b'"):
            await ask_floor(str(tmp_path), "join", "b", spec("b"))
        stop = Cancel(campaign="b", by="o.op", reason="wrong donor")
        said.append(await ask_floor(str(tmp_path), "cancel", "b", stop))
        await going

    with floor_lock(tmp_path, "the test's floor"):
        run(main())
    assert said[0].startswith("b joined the floor") and "its run is 'b on" in said[0]
    assert said[1].endswith("by o.op: it stops before its next step")
    assert floor.cancelled["b"].reason == "wrong donor"
    # the floor has ended: a request is refused before it is posted
    with pytest.raises(WorkcellError, match="no floor is running on"):
        run(ask_floor(str(tmp_path), "join", "c", spec("c")))
    assert not list((tmp_path / "inbox").glob("*.json"))
