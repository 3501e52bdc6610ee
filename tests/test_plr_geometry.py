"""The memoised PyLabRobot geometry gives exactly PyLabRobot's own coordinates."""

from __future__ import annotations

import pylabrobot.resources as plr
from pylabrobot.resources import Coordinate, Rotation

from workcell import plr_geometry


def _locations() -> list[Coordinate]:
    deck = plr.STARLetDeck()
    carrier = plr.PLT_CAR_L5AC_A00("carrier")
    carrier[0] = plate = plr.cor_cos_6_wellplate_16800uL_Fb("plate")
    carrier[1] = tilted = plr.thermo_nunc_1_troughplate_90000uL_Fb_omnitray("tray")
    tilted.rotation = Rotation(z=90)
    deck.assign_child_resource(carrier, rails=7)

    def now() -> list[Coordinate]:
        wells = [*plate.get_all_items(), *tilted.get_all_items()]
        return [w.get_absolute_location(x=x, y="c", z="b") for w in wells for x in ("l", "c", "r")]

    seen = now() + now()  # twice: the second from the cache
    plate.unassign()  # a move: cached locations must not survive it
    carrier[3] = plate
    seen += now()
    seen[0].z += 5  # a caller adjusting its coordinate must not change the next answer
    return seen + now()


def test_memoised_geometry_equals_pylabrobots_own() -> None:
    plr_geometry.uninstall()
    try:
        plain = _locations()
        plr_geometry.install()
        fast = _locations()
    finally:
        plr_geometry.install()
    assert fast == plain
    n = len(plain) // 4
    assert plain[:n] != plain[2 * n : 3 * n]  # the move changed the wells' locations
