"""A campaign joins a running floor, and another is cancelled on it, from outside its
process (``protocols/campaign/inbox.py``); judged from the records and the simulated
labs' own logs, then the floor is run again on its folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks import judge
from protocols.campaign import inbox
from protocols.campaign.audit import audit
from protocols.campaign.engine import DAY_S, CampaignParams, summarize
from protocols.campaign.floor import FLOOR_STORE, CampaignSpec, Floor
from protocols.campaign.inbox import Cancel
from protocols.campaign.scheduler import Plan
from tests.conftest import run
from workcell.assembly.lab import LAB_FOLDER
from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Event, Store

DAYS = 3.0


def _spec(name: str) -> CampaignSpec:
    return CampaignSpec(name=name, params=CampaignParams(max_days=DAYS, max_vessels=12))


def _events(path: Path, kind: str | None = None) -> list[Event]:
    """A campaign's batch record's events, or the floor's own (its folder)."""
    store = Store(path / (FLOOR_STORE if (path / FLOOR_STORE).exists() else STORE_FILE))
    try:
        return store.events(kind)
    finally:
        store.close()


def _lab_times(run_dir: Path) -> list[datetime]:
    """When each physical action of a campaign's simulated lab happened (its own log; not
    the lab's setting up: the incubator starting, the config's reagents loaded)."""
    rows = judge.rows(run_dir / LAB_FOLDER)
    setup = [r for r in rows if r["action"] == "initialise" or r["detail"].get("actor") == "config"]
    assert setup, "the lab's log begins with its setting up"
    times = [datetime.fromisoformat(str(r["time"])) for r in rows if r not in setup]
    assert times, f"{run_dir.name}'s lab did nothing"
    return [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times]


def test_a_campaign_joins_a_running_floor_and_another_is_cancelled(tmp_path: Path) -> None:
    posted: dict[str, str] = {}
    joined_day: list[float] = []

    async def from_outside(plan: Plan, floor: Floor) -> None:
        day = plan.made_at_s / DAY_S
        if not joined_day and day >= 0.3:  # b and c join a running floor; a name taken is refused
            joined_day.append(day)
            posted["b"] = inbox.post(floor.folder, "join", "b", _spec("b"))
            posted["c"] = inbox.post(floor.folder, "join", "c", _spec("c"))
            posted["a"] = inbox.post(floor.folder, "join", "a", _spec("a"))
        elif joined_day and day >= joined_day[0] + 0.5 and "cancel c" not in posted:
            cancel = Cancel(campaign="c", by="o.op", reason="donor consent withdrawn")
            posted["cancel c"] = inbox.post(floor.folder, "cancel", "c", cancel)
            posted["cancel z"] = inbox.post(
                floor.folder, "cancel", "z", Cancel(campaign="z", by="o.op", reason="typo")
            )

    floor = Floor(tmp_path, [_spec("a")])
    floor.on_plan.append(from_outside)
    result = run(floor.run())
    assert result.campaigns == ["a", "b", "c"]

    by_ticket = {str(e.data.get("ticket")): e for e in _events(tmp_path)}
    joined = {k: by_ticket[posted[k]] for k in ("a", "b", "c")}
    assert joined["b"].kind == joined["c"].kind == "campaign_joined"
    assert joined["a"].kind == "join_refused" and "already has a campaign 'a'" in str(
        joined["a"].data["reason"]
    )
    assert by_ticket[posted["cancel z"]].kind == "cancel_refused"
    asked = by_ticket[posted["cancel c"]]
    assert asked.kind == "cancel_requested" and asked.data["by"] == "o.op"

    # b joined at the floor's present and ran to its end; its lab's first action after it
    b_started = _events(tmp_path / "b", "campaign_started")[0].time
    assert b_started >= joined["b"].time
    assert min(_lab_times(tmp_path / "b")) >= joined["b"].time
    done = {str(e.data["campaign"]) for e in _events(tmp_path, "campaign_done")}
    assert done == {"a", "b"}  # c never ends as done: it was cancelled

    # c stopped between steps: its record says who and why, and its lab did nothing after
    (stopped,) = _events(tmp_path / "c", "campaign_cancelled")
    assert stopped.actor == "o.op" and stopped.data["reason"] == "donor consent withdrawn"
    assert (
        timedelta(0) <= stopped.time - asked.time <= timedelta(hours=2)
    )  # at most the step under way
    assert stopped.time > _events(tmp_path / "c", "campaign_started")[0].time  # it had begun
    assert max(_lab_times(tmp_path / "c")) <= stopped.time
    # what the batch summary (the report, the CLI) says of it: cancelled, by whom, why
    store = Store(tmp_path / "c" / STORE_FILE, read_only=True)
    try:
        outcome = summarize(store, _spec("c").params).outcome
    finally:
        store.close()
    assert outcome.startswith("cancelled by o.op (donor consent withdrawn)"), outcome

    # no device used by two campaigns at once, no hard window missed, across all three
    params = {n: _spec(n).params for n in ("a", "b", "c")}
    found = audit({n: tmp_path / n for n in params}, params, floor.params.windows)
    assert found.device_overlaps == 0 and found.hard == 0, found
    # and from the three labs' own logs: the same, with nothing the records do not show
    assert found.world is not None and found.world.labs == 3
    assert found.world.device_overlaps == 0 and found.disagreements == 0, found.disagreeing

    # run again on its folder: the joined campaigns are the floor's own; c stays cancelled
    again = run(Floor(tmp_path, [_spec("a")]).run())
    assert again.campaigns == ["a", "b", "c"] and again.grants == 0
    assert len(_events(tmp_path / "c", "campaign_cancelled")) == 1


def test_a_request_to_a_floor_that_is_not_running_is_withdrawn(tmp_path: Path) -> None:
    ticket = inbox.post(tmp_path, "join", "b", _spec("b"))
    with pytest.raises(WorkcellError, match="no floor is running on .*nothing started"):
        inbox.wait_for_answer(tmp_path, tmp_path / "floor.sqlite", ticket, "join", lambda: False)
    assert inbox.take(tmp_path) == []  # nothing left for a floor started later
    with pytest.raises(ValueError, match="reason"):
        Cancel(campaign="b", by="o.op", reason="")


def test_a_paced_floor_keeps_the_wall_time_its_pace_asks(tmp_path: Path) -> None:
    """At 2 simulated days a minute, a 3-day floor waits about 90 s of wall time in all,
    spread over its decisions (the waits are counted here, not slept)."""
    from protocols.campaign.floor import FloorParams

    waits: list[float] = []

    async def count(seconds: float) -> None:
        waits.append(seconds)

    floor = Floor(tmp_path, [_spec("a")], FloorParams(pace_days_per_min=2.0))
    floor.pause = count
    result = run(floor.run())
    assert len(waits) > 3 and max(waits) < 60
    assert sum(waits) == pytest.approx(60 * result.end_s / DAY_S / 2.0, rel=0.02)
