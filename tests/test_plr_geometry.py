"""The memoised PyLabRobot geometry gives exactly PyLabRobot's own coordinates."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pylabrobot.resources as plr
from pylabrobot.resources import Coordinate, Rotation

from workcell import plr_geometry

T = TypeVar("T")


def _plain_and_fast(make: Callable[[], T]) -> tuple[T, T]:
    """``make()`` with PyLabRobot's own geometry, then with the memoised one."""
    plr_geometry.uninstall()
    try:
        plain = make()
        plr_geometry.install()
        fast = make()
    finally:
        plr_geometry.install()
    return plain, fast


def _locations() -> list[Coordinate]:
    deck = plr.STARLetDeck()
    carrier = plr.PLT_CAR_L5AC_A00("carrier")
    carrier[0] = plate = plr.cor_cos_6_wellplate_16800uL_Fb("plate")
    carrier[1] = tilted = plr.thermo_nunc_1_troughplate_90000uL_Fb_omnitray("tray")
    tilted.rotation = Rotation(z=90)
    deck.assign_child_resource(carrier, rails=7)

    def now() -> list[Coordinate]:
        wells = [*plate.get_all_items(), *tilted.get_all_items()]
        return [
            *(w.get_absolute_location(x=x, y="c", z="b") for w in wells for x in ("l", "c", "r")),
            *(w.get_location_wrt(deck, y=y) for w in wells for y in ("f", "c")),
            *(w.get_location_wrt(carrier, x="c", z="t") for w in wells),
        ]

    seen = now() + now()  # twice: the second from the cache
    plate.unassign()  # a move: cached locations must not survive it
    carrier[3] = plate
    seen += now()
    carrier.unassign()  # a move of what holds the plates: the wells move with it
    deck.assign_child_resource(carrier, rails=15)
    seen += now()
    seen[0].z += 5  # a caller adjusting its coordinate must not change the next answer
    return seen + now()


def test_memoised_geometry_equals_pylabrobots_own() -> None:
    plain, fast = _plain_and_fast(_locations)
    assert fast == plain
    n = len(plain) // 5
    assert plain[:n] != plain[2 * n : 3 * n]  # the plate's move changed the wells' locations
    assert plain[2 * n : 3 * n] != plain[3 * n : 4 * n]  # and so did the carrier's


def _refusals() -> list[str]:
    deck = plr.STARLetDeck()
    carrier = plr.PLT_CAR_L5AC_A00("carrier")
    carrier[0] = plate = plr.cor_cos_6_wellplate_16800uL_Fb("plate")
    deck.assign_child_resource(carrier, rails=7)
    out = []
    for _ in range(2):  # the second after a location was asked for and cached
        well = plate.get_item("A1")
        out.append(str(well.get_location_wrt(deck)))
        plate.unassign()  # off the deck: no longer under it
        try:
            well.get_location_wrt(deck)
            out.append("answered")
        except ValueError as err:
            out.append(str(err))
        carrier[0] = plate
    return out


def test_a_location_relative_to_a_resource_it_left_is_refused_as_pylabrobot_does() -> None:
    plain, fast = _plain_and_fast(_refusals)
    assert fast == plain
    assert "not in the subtree" in plain[1]


def _tree(name: str, *children: str) -> plr.Resource:
    res = plr.Resource(name, size_x=1, size_y=1, size_z=1)
    for child in children:
        res.assign_child_resource(_tree(child), location=Coordinate(0, 0, 0))
    return res


def _conflicts() -> list[str]:
    out = []
    for name, children in [("n", ("x", "a2", "b")), ("a", ()), ("n", ("x", "y"))]:
        root = _tree("root", "b0")
        root.children[0].assign_child_resource(_tree("a", "a1", "a2"), Coordinate(0, 0, 0))
        try:
            root.assign_child_resource(_tree(name, *children), location=Coordinate(0, 0, 0))
            out.append("no conflict")
        except ValueError as err:
            out.append(str(err))
    return out


def test_the_naming_check_refuses_the_same_conflicts_with_the_same_message() -> None:
    plain, fast = _plain_and_fast(_conflicts)
    assert "'a2' already exists" in plain[0] and "'a' already exists" in plain[1]
    assert plain[2] == "no conflict"
    assert fast == plain


def _sizes() -> list[tuple[float, float, float]]:
    deck = plr.STARLetDeck()
    carrier = plr.PLT_CAR_L5AC_A00("carrier")
    carrier[0] = plate = plr.cor_cos_6_wellplate_16800uL_Fb("plate")
    carrier[1] = tray = plr.thermo_nunc_1_troughplate_90000uL_Fb_omnitray("tray")
    deck.assign_child_resource(carrier, rails=7)
    things = [plate, tray, *plate.get_all_items(), *tray.get_all_items()]

    def now() -> list[tuple[float, float, float]]:
        return [
            (r.get_absolute_size_x(), r.get_absolute_size_y(), r.get_absolute_size_z())
            for r in things
        ]

    seen = now() + now()  # twice: the second from the cache
    tray.load_state({"rotation": Rotation(z=90).serialize()})  # a checkpoint's rotation
    seen += now()
    plate.unassign()  # a move onto a rotated site: sizes follow the new parent
    carrier[3] = plate
    carrier.rotate(z=90)
    return seen + now()


def test_memoised_sizes_equal_pylabrobots_own() -> None:
    plain, fast = _plain_and_fast(_sizes)
    assert fast == plain
    n = len(plain) // 4
    assert plain[n : 2 * n] != plain[2 * n : 3 * n]  # the rotation changed the tray's sizes
    assert plain[2 * n : 3 * n] != plain[3 * n :]  # and so did the carrier's


def _existence() -> list[str]:
    from pylabrobot.liquid_handling import LiquidHandler
    from pylabrobot.liquid_handling.backends import LiquidHandlerChatterboxBackend

    deck = plr.STARLetDeck()
    lh = LiquidHandler(backend=LiquidHandlerChatterboxBackend(), deck=deck)
    carrier = plr.PLT_CAR_L5AC_A00("carrier")
    carrier[0] = plate = plr.cor_cos_6_wellplate_16800uL_Fb("plate")
    deck.assign_child_resource(carrier, rails=7)
    twin = plr.cor_cos_6_wellplate_16800uL_Fb("plate")  # the same name, not on the deck
    stranger = plr.cor_cos_6_wellplate_16800uL_Fb("stranger")
    out = []
    for resources in ([plate, plate.get_well("A1")], [twin], [plate, stranger]):
        try:
            lh._assert_resources_exist(resources)
            out.append("on the deck")
        except Exception as err:  # noqa: BLE001 - compared as PyLabRobot raises them
            out.append(f"{type(err).__name__}: {err}")
    return out


def test_the_deck_check_answers_as_pylabrobots_own() -> None:
    plain, fast = _plain_and_fast(_existence)
    assert plain[0] == "on the deck"
    assert plain[1] != "on the deck" and plain[2] != "on the deck"
    assert fast == plain
