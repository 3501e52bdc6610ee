"""Recovery of a group of channels: an 8-channel action settled channel by channel.

An aspirate or dispense of eight channels whose outcome is unknown is settled by the
liquid each tip holds, as a STAR reports it; a pick-up of eight in which two channels
failed completes with the tips that did go on. Each action here is a real one of the
simulated lab through the real journal; an unknown outcome is made by writing its
intent again without a completion (the controller stopped before it heard the reply),
and the device's answers are a double saying what a STAR would after such a stop.
"""

from __future__ import annotations

from typing import Any

import pytest
from pylabrobot.liquid_handling.errors import ChannelizedError
from pylabrobot.resources import TipSpot

from protocols.recovery.resumable import done_into, tip_owner
from tests.conftest import run
from workcell.assembly.build import Workcell
from workcell.assembly.checkpoint import _set_head, replay
from workcell.assembly.journaled import journal_liquid_handler
from workcell.assembly.reconcile import reconcile
from workcell.journal import ActionRecord, actions_of

CHANNELS = list(range(8))
PART_UL = 100.0


def _column(wc: Workcell) -> list[TipSpot]:
    rack = wc.tip_racks()[0]
    return [rack.get_item(f"{row}1") for row in "ABCDEFGH"]


async def _aspirated(wc: Workcell) -> None:
    """Eight tips on, and 100 uL in each from the medium trough: one action of 8 ops."""
    lh = wc.liquid_handler
    await lh.pick_up_tips(_column(wc), use_channels=CHANNELS)
    await lh.aspirate([wc.container("medium")] * 8, vols=[PART_UL] * 8, use_channels=CHANNELS)


def _unknown_again(wc: Workcell, action: str) -> tuple[ActionRecord, int]:
    """The last ``action`` written again as an intent without a completion; (it, row before)."""
    (last,) = [a for a in wc.journal.actions() if a.action == action][-1:]
    assert len(last.data["ops"]) == 8
    before = wc.store.last_journal_id()
    data = {k: v for k, v in last.data.items() if k not in ("device", "action", "unit")}
    wc.journal.intent(last.device, action, data)
    (unknown,) = [a for a in wc.journal.actions() if a.outcome is None]
    return unknown, before


def _star_answers(wc: Workcell, monkeypatch: pytest.MonkeyPatch, in_tip: dict[int, float]) -> None:
    """The STAR's tip sensors and tip volumes after the stop (a tip on every channel)."""
    backend = wc.liquid_handler.backend

    async def presence() -> list[bool]:
        return [True] * 8

    async def volume(channel: int) -> float:
        return in_tip[channel]

    monkeypatch.setattr(backend, "request_tip_presence", presence)
    monkeypatch.setattr(backend, "request_volume_in_tip", volume)


def _model_before(wc: Workcell, container: str, volume: float, tips: dict[int, float]) -> None:
    """The model as a restart rebuilds it: the unknown action not applied."""
    wc.container(container).tracker.set_volume(volume)
    for ch, v in tips.items():
        _set_head(wc, ch, {"tip": True, "volume": v})


def _heads(wc: Workcell) -> dict[int, float | None]:
    head = wc.liquid_handler.head
    return {
        ch: head[ch].get_tip().tracker.get_used_volume() if head[ch].has_tip else None
        for ch in CHANNELS
    }


def _reconciled_row(wc: Workcell, intent: int) -> dict[str, Any]:
    (row,) = [r for r in wc.store.journal() if r["kind"] == "reconciled" and r["ref"] == intent]
    return dict(row["data"])


@pytest.mark.parametrize("done", [True, False])
def test_an_aspirate_of_eight_all_done_or_none_done(
    wc: Workcell, monkeypatch: pytest.MonkeyPatch, done: bool
) -> None:
    wc.journal.start_step("eight")
    run(_aspirated(wc))
    after = wc.container("medium").tracker.get_used_volume()
    a, _ = _unknown_again(wc, "aspirate")
    _model_before(wc, "medium", after + 8 * PART_UL, dict.fromkeys(CHANNELS, 0.0))
    _star_answers(wc, monkeypatch, dict.fromkeys(CHANNELS, PART_UL if done else 0.0))
    found = run(reconcile(wc, [a]))
    assert [x.id for x in found] == ([a.id] if done else [])
    expected = after if done else after + 8 * PART_UL
    assert wc.container("medium").tracker.get_used_volume() == pytest.approx(expected)
    assert _heads(wc) == dict.fromkeys(CHANNELS, PART_UL if done else 0.0)
    row = _reconciled_row(wc, a.id)
    assert row["outcome"] == ("done" if done else "not_done")
    assert "failed_channels" not in row and "effects" not in row  # the intent's effects, or none


@pytest.mark.parametrize("action", ["aspirate", "dispense"])
def test_an_action_of_eight_done_on_some_channels_applies_only_theirs(
    wc: Workcell, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Channels 0-4 did their part, 5-7 did not: the container moved by five parts, the
    five heads as journaled, the other three as the STAR reports them; a restart's
    replay of the reconciled row gives the same model."""
    wc.journal.start_step("eight")
    run(_aspirated(wc))
    where = "medium"
    if action == "dispense":
        where = "waste"
        run(
            wc.liquid_handler.dispense(
                [wc.container(where)] * 8, vols=[PART_UL] * 8, use_channels=CHANNELS
            )
        )
    after = wc.container(where).tracker.get_used_volume()
    a, before_row = _unknown_again(wc, action)
    full, empty = (PART_UL, 0.0) if action == "aspirate" else (0.0, PART_UL)
    before = after + 8 * PART_UL if action == "aspirate" else after - 8 * PART_UL
    _model_before(wc, where, before, dict.fromkeys(CHANNELS, empty))
    in_tip = {ch: full if ch <= 4 else empty for ch in CHANNELS}
    _star_answers(wc, monkeypatch, in_tip)

    (found,) = run(reconcile(wc, [a]))
    # the container: the journaled 'after' less the three parts not moved
    expected = after + 3 * PART_UL if action == "aspirate" else after - 3 * PART_UL
    assert wc.container(where).tracker.get_used_volume() == pytest.approx(expected)
    assert _heads(wc) == in_tip
    row = _reconciled_row(wc, a.id)
    assert row["outcome"] == "done"
    assert row["done_channels"] == [0, 1, 2, 3, 4] and row["failed_channels"] == [5, 6, 7]
    assert set(row["effects"]["head"]) == {"0", "1", "2", "3", "4"}
    (note,) = [r for r in wc.store.journal() if r["kind"] == "recovery"]
    assert "done on channels 0, 1, 2, 3, 4, not done on channels 5, 6, 7" in note["data"]["what"]

    # after a restart: the same model from the row before the action and the journal
    live = (wc.container(where).tracker.get_used_volume(), _heads(wc))
    _model_before(wc, where, before, dict.fromkeys(CHANNELS, empty))
    (replayed,) = replay(wc, before_row)
    assert replayed.failed_channels == [5, 6, 7]
    # the not-done channels' heads are the STAR's word (check_channels), as replay leaves them
    assert (wc.container(where).tracker.get_used_volume(), _heads(wc)) == live
    if action == "dispense":  # a resumed addition counts only the parts that went in:
        monkeypatch.setattr(wc.journal, "resumed", True)  # 8 of the first dispense, 5 of this
        assert done_into(wc, None, where) == (pytest.approx(13 * PART_UL), 2)


def test_a_pick_up_of_eight_with_two_failed_keeps_the_six_and_writes_off_all(
    wc: Workcell,
) -> None:
    """A STAR picks up six of eight tips (channels 3 and 5 find none): the completion
    names them, the model has six tips and eight spots written off, as PyLabRobot's
    live state (with the caller writing off the tried spots) and as a restart replays."""
    backend = wc.liquid_handler.backend
    inner = backend.pick_up_tips.__wrapped__  # the lab's pick-up, under the journal
    keep = {n: getattr(backend, n) for n in ("drop_tips", "aspirate", "dispense")}

    async def two_fail(ops: list[Any], use_channels: list[int], **kw: Any) -> None:
        ok = [(op, ch) for op, ch in zip(ops, use_channels, strict=True) if ch not in (3, 5)]
        await inner([op for op, _ in ok], [ch for _, ch in ok], **kw)
        raise ChannelizedError({3: RuntimeError("no tip"), 5: RuntimeError("no tip")})

    backend.pick_up_tips = two_fail
    journal_liquid_handler(wc, wc.lh_name)  # journals the double's pick-up
    for name, f in keep.items():
        setattr(backend, name, f)

    wc.journal.start_step("eight")
    before_row = wc.store.last_journal_id()
    spots = _column(wc)
    with wc.journal.tip_purpose("feed"), pytest.raises(ChannelizedError):
        run(wc.liquid_handler.pick_up_tips(spots, use_channels=CHANNELS))
    for spot in spots:  # as with_fresh_tips does: a tip tried is not trusted again
        if spot.tracker.has_tip:
            spot.tracker.remove_tip(commit=True)
    loaded = [0, 1, 2, 4, 6, 7]
    assert [ch for ch in CHANNELS if wc.liquid_handler.head[ch].has_tip] == loaded

    (a,) = actions_of(wc.store.journal(since=before_row))
    assert a.outcome == "done" and a.failed_channels == [3, 5]
    assert a.detail["done_channels"] == loaded
    assert a.effects == {
        "tip": {s.name: False for s in spots},
        "head": {str(ch): {"tip": True, "volume": 0.0} for ch in loaded},
    }
    live = (_heads(wc), [s.tracker.has_tip for s in spots])

    # a restart: the model before the pick-up, then the journal
    for ch in loaded:
        _set_head(wc, ch, {"tip": None})
    for spot in spots:
        spot.tracker.add_tip(spot.make_tip(), commit=True)
    replay(wc, before_row)
    assert (_heads(wc), [s.tracker.has_tip for s in spots]) == live

    # whose tips: the loaded channels' purpose; the failed ones hold none
    wc.journal.resumed = True
    assert tip_owner(wc, 0)[0] == "feed" and tip_owner(wc, 7)[0] == "feed"
    assert tip_owner(wc, 3) == (None, None, 0.0)
