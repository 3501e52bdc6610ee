"""A STAR's channels as a group: how a transfer is split, what fits where, which tips.

The behaviour on the simulated workcell (a tray's medium on several channels, killed
and resumed, judged from the lab's log) is in ``tests/test_hotel_kill.py`` and the
clinical campaign's tests; these are the rules those runs rest on, and a group's tips
gathered from a deck whose rack columns are broken up, judged from the lab's log.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pylabrobot.resources import (
    hamilton_1_trough_60mL_Vb,
    hamilton_1_trough_200mL_Vb,
    hamilton_96_tiprack_1000uL,
)

from protocols.pipettes import channel_pipette
from protocols.pipetting import (
    MIN_VOLUME_UL,
    SingleChannelGroup,
    TipSupply,
    channels_fit,
    parts_across,
    tips_for,
    with_fresh_tips,
)
from tests.conftest import run
from tests.test_capacity_plan import _clinical
from tests.test_columns import _commands
from workcell import labware
from workcell.assembly.config import parse_config
from workcell.assembly.session import open_session

VOLUMES = [0.0, 19.0, 20.0, 150.0, 999.0, 1000.0, 1000.5, 2500.0, 5030.0, 8000.0, 19110.0, 47000.0]


@pytest.mark.parametrize("volume", VOLUMES)
def test_one_channel_splits_as_before(volume: float) -> None:
    """The fewest equal parts no larger than a tip takes, as the single channel always did."""
    n, split = parts_across(volume, 1000.0, 1)
    rounds = math.ceil(volume / 1000.0 - 1e-9)
    assert n == 1 and split == ([volume / rounds] * rounds if volume > 0 else [])


@pytest.mark.parametrize("channels", [2, 3, 7, 8])
@pytest.mark.parametrize("volume", VOLUMES[1:])
def test_a_group_moves_the_volume_in_the_fewest_rounds(volume: float, channels: int) -> None:
    n, split = parts_across(volume, 1000.0, channels)
    assert 1 <= n <= channels
    assert sum(split) * n == pytest.approx(volume)
    assert all(p <= 1000.0 + 1e-9 for p in split)
    assert len(split) == max(1, -(-volume // (channels * 1000.0)))  # ceil: the fewest rounds
    if n > 1:
        assert split[0] >= MIN_VOLUME_UL  # no channel is given a part too small to pipette


def test_channels_fit_what_pylabrobot_spreads_them_over() -> None:
    tray = labware.make("labware", "thermo_nunc_1_troughplate_90000uL_Fb_omnitray", "t")
    six = labware.make("labware", "cor_cos_6_wellplate_16800uL_Fb", "s")
    tube = labware.make("labware", "cor_falcon_tube_50mL_Vb", "f")
    assert channels_fit(tray.get_item(0), 8) == 8
    assert channels_fit(hamilton_1_trough_200mL_Vb("m"), 8) == 8
    assert channels_fit(hamilton_1_trough_60mL_Vb("e"), 8) == 8
    assert channels_fit(six.get_item(0), 8) == 3
    assert channels_fit(tube, 8) == 3
    assert channels_fit(tray.get_item(0), 1) == 1


def test_a_group_takes_its_tips_from_one_column() -> None:
    rack = hamilton_96_tiprack_1000uL("tips")
    spots = rack.get_all_items()
    for spot in spots[:3] + spots[9:10]:  # A1-C1 and B2 already used
        spot.tracker.remove_tip(commit=True)
    pipette = channel_pipette([rack], 8)
    supply = TipSupply([rack], [pipette])
    group = supply.next_group(pipette, 8)
    assert [s.name for s in group] == [
        f"tips_tipspot_{r}3" for r in "ABCDEFGH"
    ]  # first full column
    assert [s.name for s in supply.next_group(pipette, 5)] == [
        f"tips_tipspot_{r}1" for r in "DEFGH"
    ]
    assert supply.next(pipette).name == "tips_tipspot_D1"  # a single tip: the first left


def test_tips_per_group() -> None:
    rack = hamilton_96_tiprack_1000uL("tips")
    eight = channel_pipette([rack], 8)
    assert tips_for(eight, [19110.0]) == 7  # 3 rounds of 7 x 910 uL
    assert tips_for(eight, [150.0, 800.0]) == 1
    assert tips_for(eight, SingleChannelGroup([200.0, 5000.0])) == 1  # a cell suspension
    assert tips_for(channel_pipette([rack]), [19110.0]) == 1


def test_a_group_gathers_its_tips_from_broken_columns_and_moves_together(tmp_path: Path) -> None:
    """Every rack column left with one tip (groups of seven before): a group of eight
    picks a tip from each of eight columns, channels 0-7 in order, and then moves a
    transfer on all eight at once; the deck's last tips make a smaller group; an empty
    deck is refused as before. Judged from the simulated lab's log and its STAR."""

    async def go() -> dict[str, Any]:
        async with open_session(parse_config(_clinical()), tmp_path / "run") as s:
            assert s.lab is not None
            wc, link = s.wc, s.lab.link
            lh, tips = wc.liquid_handler, TipSupply.of(wc)
            columns = sum(len(r.get_all_items()) // r.num_items_y for r in tips.racks)
            for _ in range(columns):
                assert len(await with_fresh_tips(lh, tips, [7000.0], 7)) == 7
                await lh.discard_tips(use_channels=list(range(7)))
            since = link.log()[-1]["seq"]
            group = await with_fresh_tips(lh, tips, [8000.0], 8)
            held = link.star()["tips"]
            medium = wc.container("medium")
            await lh.aspirate([medium] * 8, vols=[900.0] * 8, use_channels=group)
            await lh.dispense([medium] * 8, vols=[900.0] * 8, use_channels=group)
            log = link.log(since)
            await lh.discard_tips(use_channels=group)
            sizes = []
            while tips.available():
                got = await with_fresh_tips(lh, tips, [8000.0], 8)
                sizes.append(len(got))
                await lh.discard_tips(use_channels=got)
            try:
                await with_fresh_tips(lh, tips, [8000.0], 8)
                empty = "no refusal"
            except RuntimeError as err:
                empty = str(err)
            return {
                "columns": columns,
                "group": group,
                "held": held,
                "log": log,
                "sizes": sizes,
                "empty": empty,
            }

    out = run(go())
    picks = _commands(out["log"], "pick_up_tip")
    assert out["group"] == list(range(8)) and out["held"] == [True] * 8
    assert len(picks) == 8  # one tip from each of eight columns, one pick-up each
    spots = [r["detail"]["tip_spot"] for cmd in picks for r in cmd]
    assert [r["detail"]["channel"] for cmd in picks for r in cmd] == list(range(8))
    rows_columns = [(s.split("_tipspot")[0], s.rsplit("_", 1)[1]) for s in spots]
    assert len({(rack, rc[1:]) for rack, rc in rows_columns}) == 8  # eight columns
    assert {rc[0] for _, rc in rows_columns} == {"H"}  # the tip each column had left
    (asp,) = _commands(out["log"], "aspirate")
    (disp,) = _commands(out["log"], "dispense")
    assert (
        sorted(r["detail"]["channel"] for r in asp)
        == list(range(8))
        == sorted(r["detail"]["channel"] for r in disp)
    )
    left = out["columns"] - 8
    assert out["sizes"] == [8] * (left // 8) + ([left % 8] if left % 8 else [])
    assert "no tips left on the deck" in out["empty"]
