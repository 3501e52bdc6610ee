"""A STAR's channels as a group: how a transfer is split, what fits where, which tips.

The behaviour on the simulated workcell (a tray's medium on several channels, killed
and resumed, judged from the lab's log) is in ``tests/test_hotel_kill.py`` and the
clinical campaign's tests; these are the rules those runs rest on.
"""

from __future__ import annotations

import math

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
)
from workcell import labware

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
