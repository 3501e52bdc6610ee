"""Eight STAR channels in one action are one lab request: whole in the lab, or not at all.

Judged from the lab: its own log (``truth.log``), its tip sensor and its liquids,
never from the controller's account. A one-channel batch is exactly the old
one-channel request (log rows, state, clock); eight channels into one OmniTray
well log eight rows at one time and move the clock once; a pick-up where some
channels get no tip raises PyLabRobot's ``ChannelizedError`` naming exactly them
while the others hold their tips; a lab killed inside a batch keeps all of it or
none.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.liquid_handling.errors import ChannelizedError
from pylabrobot.resources import set_tip_tracking, set_volume_tracking

from benchmarks.kill import Lab
from devices.lab_star import LabSTARBackend
from simulators.lab.process import write_spec
from simulators.lab.spec import ContainerSpec, LabSpec, PlateSpec, StarSpec, WellSpec
from simulators.lab.world import Lab as World
from simulators.lab.world import Refusal
from simulators.liquid_handler import FLOW_RATE_UL_PER_S, LIQUID_MOVE_S, TIP_DROP_S, TIP_PICKUP_S
from workcell.assembly.build import build_deck
from workcell.assembly.config import DEFAULT_CONFIG, WorkcellConfig, parse_config
from workcell.assembly.lab import lab_spec
from workcell.errors import DeviceError, DeviceRefused, TipPickupError

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
TRAY = "thermo_nunc_1_troughplate_90000uL_Fb_omnitray"
WELL = "plate_1_well_A1"  # the OmniTray's one well
CHANNELS = list(range(8))
VOLUME = 900.0


# --- one channel: the batch is the old request ---------------------------------------------


def _world(failure: float) -> World:
    spec = LabSpec(
        name="one-channel",
        start=START,
        star=StarSpec(name="star", channels=8, tip_pickup_failure=failure),
        plates=[
            PlateSpec(name="p", wells=[WellSpec(name="w", area_cm2=9.6, max_volume_uL=16_800)])
        ],
        containers=[ContainerSpec(name="cells", max_volume_uL=50_000)],
    )
    world = World(spec, START)
    world.handle(
        "operator.load",
        {
            "container": "cells",
            "liquid": {"volume_uL": 20_000.0, "viable": 4e6, "dead": 2e5, "nutrient": 1.0},
            "actor": "test",
        },
    )
    return world


def _single_and_batch(op: str, args: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
    ch = {k: v for k, v in args.items() if k != "device"}
    return (op, args), (f"{op}_batch", {"device": "star", "ops": [ch]})


ONE_CHANNEL: list[tuple[str, dict[str, Any]]] = [
    ("star.pick_up_tip", {"device": "star", "channel": 2, "spot": "t1"}),
    ("star.pick_up_tip", {"device": "star", "channel": 3, "spot": "t2"}),
    ("star.pick_up_tip", {"device": "star", "channel": 2, "spot": "t3"}),  # refused if it holds one
    ("star.aspirate", {"device": "star", "channel": 2, "source": "cells", "volume_uL": 700.0}),
    ("star.aspirate", {"device": "star", "channel": 9, "source": "cells", "volume_uL": 7.0}),
    ("star.aspirate", {"device": "star", "channel": 2, "source": "nowhere", "volume_uL": 7.0}),
    (
        "star.dispense",
        {
            "device": "star",
            "channel": 2,
            "target": "w",
            "volume_uL": 600.0,
            "flow": 100.0,
            "offset_mm": [1.0, 0.0, 2.0],
        },
    ),
    ("clock.advance", {"seconds": 7200.0}),  # the seeded cells grow before the next touch
    ("star.dispense", {"device": "star", "channel": 2, "target": "w", "volume_uL": 100.0}),
    ("star.drop_tip", {"device": "star", "channel": 2, "to": "trash"}),
    ("star.drop_tip", {"device": "star", "channel": 2, "to": "trash"}),  # refused: no tip
]


@pytest.mark.parametrize("failure", [0.0, 0.5])
def test_a_one_channel_batch_is_the_old_one_channel_request(failure: float) -> None:
    """Same rows (every field, the times), the same state (cells, tips, random draws) and
    the same clock after every request, refused ones included; a failed pick-up is a
    refusal alone and a result in the batch."""
    old, new = _world(failure), _world(failure)
    for op, args in ONE_CHANNEL:
        pair = _single_and_batch(op, args) if op.startswith("star.") else ((op, args),) * 2
        outcomes = []
        for world, (name, a) in zip((old, new), pair, strict=True):
            try:
                out: Any = world.handle(name, copy.deepcopy(a))[0]
            except Refusal as err:
                out = ("refused", err.kind, str(err))
            if isinstance(out, list):  # the batch's one result
                (out,) = out
                if "error" in out:  # the one channel got no tip: what the old request refused
                    out = ("refused", out["error"]["kind"], out["error"]["message"])
            outcomes.append(out)
        assert outcomes[0] == outcomes[1], (op, args)
        assert new.take_rows() == old.take_rows(), (op, args)
        assert new.to_state() == old.to_state()
        assert new.clock.elapsed() == old.clock.elapsed()
    assert new.log_seq == old.log_seq > 5


def test_a_batch_is_refused_whole_before_anything_changes() -> None:
    world = _world(0.0)
    world.handle(
        "star.pick_up_tip_batch",
        {"device": "star", "ops": [{"channel": 0, "spot": "a"}, {"channel": 1, "spot": "b"}]},
    )
    world.take_rows()
    before, t = world.to_state(), world.clock.elapsed()
    bad = [
        ("star.pick_up_tip_batch", [{"channel": 2, "spot": "c"}, {"channel": 1, "spot": "d"}]),
        ("star.pick_up_tip_batch", [{"channel": 2, "spot": "c"}, {"channel": 2, "spot": "d"}]),
        ("star.pick_up_tip_batch", [{"channel": 2, "spot": "c"}, {"channel": 8, "spot": "d"}]),
        ("star.pick_up_tip_batch", []),
        (
            "star.aspirate_batch",
            [
                {"channel": 0, "source": "cells", "volume_uL": 10.0},
                {"channel": 2, "source": "cells", "volume_uL": 10.0},
            ],
        ),
        (
            "star.aspirate_batch",
            [
                {"channel": 0, "source": "cells", "volume_uL": 10.0},
                {"channel": 1, "source": "nowhere", "volume_uL": 10.0},
            ],
        ),
        ("star.dispense_batch", [{"channel": 0, "target": "w", "volume_uL": 1.0}] * 2),
        ("star.drop_tip_batch", [{"channel": 0, "to": "x"}, {"channel": 5, "to": "x"}]),
        (  # a mix needs both its cycles and its volume, on every channel
            "star.aspirate_batch",
            [
                {"channel": 0, "source": "cells", "volume_uL": 10.0},
                {"channel": 1, "source": "cells", "volume_uL": 10.0, "mix_cycles": 3},
            ],
        ),
        (
            "star.aspirate_batch",
            [{"channel": 0, "source": "cells", "volume_uL": 10, "mix_cycles": -1, "mix_uL": 5}],
        ),
    ]
    kinds = []
    for op, ops in bad:
        with pytest.raises(Refusal) as err:
            world.handle(op, {"device": "star", "ops": ops})
        kinds.append(err.value.kind)
        assert world.take_rows() == []
        assert world.to_state() == before and world.clock.elapsed() == t
    assert kinds == [
        "tip_present",
        "duplicate_channel",
        "bad_channel",
        "no_channels",
        "no_tip",
        "unknown",
        "duplicate_channel",
        "no_tip",
        "bad_mix",
        "bad_mix",
    ]


def test_an_aspiration_mix_is_its_strokes_then_the_draw_in_one_command() -> None:
    """One aspirate with a mix of 3 strokes leaves the tube and the tip exactly as 3 stroke
    pairs and an aspirate did (each stroke leaves its pipetting loss in the tip); the lab
    logs one mix row and one aspirate row at one time, and its clock moves once: by the
    strokes in place and the draw, without three moves of the channel in between."""
    strokes, stroke_uL, draw_uL = 3, 200.0, 500.0
    one, many = _world(0.0), _world(0.0)
    for world in (one, many):
        world.handle("star.pick_up_tip", {"device": "star", "channel": 0, "spot": "t1"})
        world.take_rows()
    t0 = one.clock.elapsed()
    one.handle(
        "star.aspirate_batch",
        {
            "device": "star",
            "ops": [
                {
                    "channel": 0,
                    "source": "cells",
                    "volume_uL": draw_uL,
                    "mix_cycles": strokes,
                    "mix_uL": stroke_uL,
                    "mix_flow": 250.0,
                }
            ],
        },
    )
    for _ in range(strokes):
        for op, key in (("star.aspirate", "source"), ("star.dispense", "target")):
            many.handle(op, {"device": "star", "channel": 0, key: "cells", "volume_uL": stroke_uL})
    many.handle(
        "star.aspirate", {"device": "star", "channel": 0, "source": "cells", "volume_uL": draw_uL}
    )
    state_one, state_many = one.to_state(), many.to_state()
    for part in ("star", "culture"):
        assert _without_time(state_one[part]) == _without_time(state_many[part])
    assert one.handle("star.volume_in_tip", {"device": "star", "channel": 0})[0] == draw_uL
    rows = one.take_rows()
    assert [r["action"] for r in rows] == ["mix", "aspirate"]
    assert rows[0]["detail"]["cycles"] == strokes and rows[0]["detail"]["volume_uL"] == stroke_uL
    assert rows[0]["detail"]["cells_kept_in_tip"] > 0
    assert rows[0]["t"] == rows[1]["t"] == t0
    mixing = 2 * strokes * stroke_uL / 250.0
    assert one.clock.elapsed() - t0 == pytest.approx(
        mixing + LIQUID_MOVE_S + draw_uL / FLOW_RATE_UL_PER_S
    )
    assert many.clock.elapsed() - t0 > one.clock.elapsed() - t0 + 2 * strokes * LIQUID_MOVE_S - 1e-6


def _without_time(state: Any) -> Any:
    """A state without its clock readings (the mixed aspirate takes less time)."""
    if isinstance(state, dict):
        return {k: _without_time(v) for k, v in state.items() if k not in {"t", "t_s", "time"}}
    if isinstance(state, list):
        return [_without_time(v) for v in state]
    return state


# --- eight channels through PyLabRobot, against a lab process --------------------------------


def _config(failure: float) -> WorkcellConfig:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["clock"]["start"] = START.isoformat()
    data["devices"]["star"]["faults"] = {"tip_pickup_failure": failure}
    carrier = next(c for c in data["deck"]["carriers"] if c["name"] == "plate_carrier")
    carrier["sites"][0]["labware"] = TRAY
    return parse_config(data)


class Bench:
    """A lab process on a folder and PyLabRobot's STAR front end driving it."""

    def __init__(self, folder: Path, failure: float = 0.0) -> None:
        cfg = _config(failure)
        spec = lab_spec(cfg)
        assert spec is not None
        write_spec(folder, spec)
        self.folder = folder
        self.lab = Lab(folder).start()
        self.link = self.lab.link()
        set_tip_tracking(True)
        set_volume_tracking(True)
        self.backend = LabSTARBackend("star", self.link, 8)
        self.lh = LiquidHandler(self.backend, build_deck(cfg))
        asyncio.run(self.lh.setup())
        self.seen = 0

    def restart(self, crash_at: int | None = None) -> None:
        """The lab process again on its folder (killed before, or stopped here)."""
        self.link.close()
        self.lab.stop()
        self.lab = Lab(self.folder, crash_at=crash_at).start()
        self.link = self.backend.link = self.lab.link()

    def rows(self) -> list[dict[str, Any]]:
        """The lab's log rows since the last call, from its own file."""
        rows = self.link.log(since=self.seen)
        if rows:
            self.seen = rows[-1]["seq"]
        return rows

    def close(self) -> None:
        self.link.close()
        self.lab.stop()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path / "lab")
    yield b
    b.close()


def _load_medium(b: Bench, volume_uL: float = 100_000.0) -> Any:
    b.link.call(
        "operator",
        "operator.load",
        container="medium",
        liquid={"volume_uL": volume_uL, "nutrient": 1.0},
        actor="test",
    )
    medium = b.lh.deck.get_resource("medium")
    medium.tracker.set_volume(volume_uL)
    return medium


def _one_action(rows: list[dict[str, Any]], action: str) -> float:
    """All eight channels in one row each, at one time; that time."""
    assert [r["action"] for r in rows] == [action] * 8
    assert [r["detail"]["channel"] for r in rows] == CHANNELS
    (t,) = {r["t"] for r in rows}
    return float(t)


def test_eight_channels_feed_one_omnitray_well_in_one_lab_action_each(bench: Bench) -> None:
    medium = _load_medium(bench)
    well = bench.lh.deck.get_resource(WELL)
    tips = bench.lh.deck.get_resource("tips_1000_1")
    bench.rows()

    async def feed() -> list[list[dict[str, Any]]]:
        out = []
        await bench.lh.pick_up_tips(tips["A1:H1"], use_channels=CHANNELS)
        out.append(bench.rows())
        await bench.lh.aspirate([medium] * 8, vols=[VOLUME] * 8, use_channels=CHANNELS)
        out.append(bench.rows())
        await bench.lh.dispense([well] * 8, vols=[VOLUME] * 8, use_channels=CHANNELS)
        out.append(bench.rows())
        await bench.lh.drop_tips(tips["A1:H1"], use_channels=CHANNELS)
        out.append(bench.rows())
        return out

    t0 = bench.link.clock.elapsed() if bench.link.clock else 0.0
    pick, asp, disp, drop = asyncio.run(feed())
    times = [
        _one_action(pick, "pick_up_tip"),
        _one_action(asp, "aspirate"),
        _one_action(disp, "dispense"),
        _one_action(drop, "drop_tip"),
    ]
    assert times[0] == t0
    assert {r["detail"]["source"] for r in asp} == {"medium"}
    assert {r["detail"]["target"] for r in disp} == {WELL}
    assert sum(r["detail"]["volume_uL"] for r in asp) == 8 * VOLUME
    assert sum(r["detail"]["volume_uL"] for r in disp) == 8 * VOLUME
    assert disp[-1]["detail"]["volume_after_uL"] == pytest.approx(8 * VOLUME)
    assert bench.link.liquid(WELL).volume_uL == pytest.approx(8 * VOLUME)
    assert bench.link.liquid("medium").volume_uL == pytest.approx(100_000.0 - 8 * VOLUME)
    # the clock moved once per action, by its slowest channel (not eight times)
    flows = [r["detail"]["flow_uL_per_s"] or FLOW_RATE_UL_PER_S for r in asp + disp]
    asp_s = LIQUID_MOVE_S + max(VOLUME / f for f in flows[:8])
    disp_s = LIQUID_MOVE_S + max(VOLUME / f for f in flows[8:])
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx(
        [TIP_PICKUP_S, asp_s, disp_s]
    )
    assert bench.link.clock is not None
    assert bench.link.call("lab", "clock.now")["elapsed"] == pytest.approx(times[3] + TIP_DROP_S)
    assert bench.link.star()["tips"] == [False] * 8
    assert len(bench.backend.last_results) == 8  # one per channel, for the journal


def _until_all_fail(b: Bench, spots: dict[int, Any], channels: list[int]) -> Exception:
    """Pick up tips on ``channels`` until none of them gets one (p = 0.5 each); a try that
    got some puts them back. Returns what that try raised."""
    for _ in range(40):
        try:
            asyncio.run(b.lh.pick_up_tips([spots[ch] for ch in channels], use_channels=channels))
        except (TipPickupError, ChannelizedError) as err:
            if not any(b.lh.head[ch].has_tip for ch in channels):
                return err
        held = [ch for ch in channels if b.lh.head[ch].has_tip]
        asyncio.run(b.lh.drop_tips([spots[ch] for ch in held], use_channels=held))
    pytest.fail(f"forty pick-ups on {channels} never all failed")


def test_some_channels_without_a_tip_raise_for_exactly_them(tmp_path: Path) -> None:
    """A lab whose pick-ups fail half the time (drawn per channel from its seeded rng)."""
    b = Bench(tmp_path / "lab", failure=0.5)
    try:
        tips = b.lh.deck.get_resource("tips_1000_1")
        b.rows()
        with pytest.raises(ChannelizedError) as caught:
            asyncio.run(b.lh.pick_up_tips(tips["A1:H1"], use_channels=CHANNELS))
        rows = b.rows()
        failed = [r["detail"]["channel"] for r in rows if r["action"] == "pick_up_tip_failed"]
        got = [r["detail"]["channel"] for r in rows if r["action"] == "pick_up_tip"]
        assert 0 < len(failed) < 8 and sorted(failed + got) == CHANNELS
        assert len({r["t"] for r in rows}) == 1
        assert sorted(caught.value.errors) == failed
        assert all(isinstance(e, TipPickupError) for e in caught.value.errors.values())
        presence = b.link.star()["tips"]
        assert presence == [ch not in failed for ch in CHANNELS]
        assert [b.lh.head[ch].has_tip for ch in CHANNELS] == presence

        # one channel without a tip raises what it always raised; all of several, all named
        column2 = {ch: tips[f"{'ABCDEFGH'[ch]}2"][0] for ch in CHANNELS}
        one = _until_all_fail(b, column2, failed[:1])
        assert type(one) is TipPickupError and one.command == "pick up tip"
        assert len(failed) >= 2
        both = _until_all_fail(b, column2, failed[:2])
        assert isinstance(both, ChannelizedError) and sorted(both.errors) == failed[:2]
        b.rows()
        presence = b.link.star()["tips"]
        free, held = presence.index(False), presence.index(True)
        with pytest.raises(DeviceRefused, match=f"channel {held} already holds a tip"):
            b.link.call(
                "star",
                "star.pick_up_tip_batch",
                device="star",
                ops=[{"channel": free, "spot": "x"}, {"channel": held, "spot": "y"}],
            )
        assert b.rows() == [] and b.link.star()["tips"] == presence
    finally:
        b.close()


def test_a_lab_killed_inside_a_batch_keeps_all_of_it_or_none(bench: Bench) -> None:
    medium = _load_medium(bench)
    well = bench.lh.deck.get_resource(WELL)
    tips = bench.lh.deck.get_resource("tips_1000_1")
    asyncio.run(bench.lh.pick_up_tips(tips["A1:H1"], use_channels=CHANNELS))
    asyncio.run(bench.lh.aspirate([medium] * 8, vols=[VOLUME] * 8, use_channels=CHANNELS))
    bench.rows()
    # the restarted lab's 1st request is the link's hello, its 2nd the dispense: killed there,
    # with the action carried out and not yet saved
    bench.restart(crash_at=2)
    with pytest.raises(DeviceError, match="no answer from the simulated lab"):
        asyncio.run(bench.lh.dispense([well] * 8, vols=[VOLUME] * 8, use_channels=CHANNELS))
    bench.restart()
    assert bench.rows() == []  # none of the batch
    assert bench.link.liquid(WELL).volume_uL == 0.0
    assert [
        bench.link.call("star", "star.volume_in_tip", device="star", channel=ch) for ch in CHANNELS
    ] == [VOLUME] * 8
    asyncio.run(bench.lh.dispense([well] * 8, vols=[VOLUME] * 8, use_channels=CHANNELS))
    bench.restart()  # and a batch that was done is all there after a restart
    assert len({r["t"] for r in bench.rows()}) == 1
    rows = bench.link.log()
    assert [r["detail"]["channel"] for r in rows if r["action"] == "dispense"] == CHANNELS
    assert bench.link.liquid(WELL).volume_uL == pytest.approx(8 * VOLUME)
