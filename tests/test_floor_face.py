"""The floor as an operator meets it, without a server: its Run form, its refusals, and
the plan as the UI shows it (``test_floor_flow.py`` runs it under a Prefect server)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.schema_tools.validation import validate

from flows.floor import (
    ENDED,
    floor_folder,
    floor_lock,
    named_floor,
    running_floors,
    the_running_floor,
)
from flows.serve import deployments
from protocols.campaign.floor import FLOOR_STORE
from protocols.campaign.gantt import plan_markdown
from protocols.campaign.scheduler import Plan, Policy, Slot
from workcell.errors import WorkcellError
from workcell.store import Event, Store


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
    # the floor's name is the one folder field on the form: empty by default (a new
    # floor); the folder it goes under is the deployment's, off the form
    named = form["properties"]["name"]
    assert named["title"] == "Floor name" and named["default"] == ""
    assert "floors_dir" not in form["properties"] and "run_dir" not in form["properties"]
    assert dep.parameters["floors_dir"] == str((tmp_path / "floors").resolve())
    assert list(form["properties"])[:2] == ["name", "campaigns"]  # the name first
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


def test_floor_names_are_one_folder_and_a_finished_floors_name_is_refused(
    tmp_path: Path,
) -> None:
    """What the floor's form and ``workcell floor NAME`` check before a floor starts;
    judged from the folders on disk."""
    floors = tmp_path / "floors"
    for bad, said in [
        ("../up", "has a path separator"),
        ("a\\b", "has a path separator"),
        ("..", "is not a folder name of its own"),
        (".hidden", "begins with '.'"),
        ("   ", "is empty"),
        ("two words", "letters, digits, - _ and . only (not ' ')"),
        ("x" * 65, "too long"),
    ]:
        with pytest.raises(WorkcellError, match=re.escape(said)) as e:
            named_floor(floors, bad)
        assert "\n" not in str(e.value)
    assert not floors.exists()  # nothing made for a bad name
    assert named_floor(floors, " donor-12.run_1 ") == floors.resolve() / "donor-12.run_1"
    # a floor that ran to its end keeps its name; one stopped or killed resumes under it
    folder = floor_folder(floors / "done")
    store = Store(folder / FLOOR_STORE)
    try:
        store.add_event(Event(time=datetime.now(UTC), kind="floor_started", actor="scheduler"))
        assert named_floor(floors, "done") == folder  # not ended: it resumes
        store.add_event(
            Event(time=datetime.now(UTC), kind=ENDED, actor="scheduler", data={"summary": "2 of 2"})
        )
    finally:
        store.close()
    with pytest.raises(
        WorkcellError,
        match=r"floor name 'done' is taken: that floor ran to its end \(2 of 2; record ",
    ):
        named_floor(floors, "done")


def test_join_and_cancel_find_the_running_floor_or_ask_which(tmp_path: Path) -> None:
    """Floors running (their locks held, as ``flows/floor.py`` holds them) under the
    workcell's floors/: one is found by itself, several need a name."""
    floors = tmp_path / "floors"
    with pytest.raises(WorkcellError, match="no floor is running under .*: start one"):
        the_running_floor(floors)
    for name in ("old", "first", "second"):
        floor_folder(floors / name)
    with floor_lock(floors / "first", "flow run 'floor first: a'"):
        assert the_running_floor(floors) == (floors / "first").resolve()
        assert the_running_floor(floors, "first") == (floors / "first").resolve()
        with pytest.raises(WorkcellError, match=r"no floor 'old' is running .*running: first$"):
            the_running_floor(floors, "old")
        with floor_lock(floors / "second", "flow run 'floor second: b'"):
            assert [p.name for p in running_floors(floors)] == ["first", "second"]
            with pytest.raises(
                WorkcellError,
                match=r"2 floors are running under .* \(first, second\): name the one you mean",
            ):
                the_running_floor(floors)
            assert the_running_floor(floors, "second").name == "second"
        assert the_running_floor(floors).name == "first"  # the second ended
    with pytest.raises(WorkcellError, match="path separator"):
        the_running_floor(floors, "../first")


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

    from flows.floor_requests import ask_floor, via_command_line
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
        stop = Cancel(campaign="b", by="o.op", reason="wrong donor", via=via_command_line())
        said.append(await ask_floor(str(tmp_path), "cancel", "b", stop))
        await going

    with floor_lock(tmp_path, "the test's floor"):
        run(main())
    assert said[0].startswith("b joined the floor") and "its run is 'b on" in said[0]
    assert said[1].endswith("by o.op: it stops before its next step")
    assert floor.cancelled["b"].reason == "wrong donor"
    # "by" is as typed; where it came from is recorded next to it, in the batch record
    b = Store(tmp_path / "b" / "workcell.db")
    try:
        (stopped,) = b.events("campaign_cancelled")
    finally:
        b.close()
    assert stopped.actor == "o.op"
    assert re.match(
        r"command line \(workcell floor-cancel\), OS user \S+ on \S+, pid \d+; 'by' not "
        r"authenticated$",
        stopped.data["via"],
    ), stopped.data
    # the floor has ended: a request is refused before it is posted
    with pytest.raises(WorkcellError, match="no floor is running on"):
        run(ask_floor(str(tmp_path), "join", "c", spec("c")))
    assert not list((tmp_path / "inbox").glob("*.json"))
