"""The memoised PyLabRobot geometry gives exactly PyLabRobot's own coordinates."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import pylabrobot.resources as plr
import pytest
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


def _incubator_names() -> tuple[list[str], int]:
    """Trays into and out of a 90-site tree (counted: large enough), lids onto trays,
    the root renamed, conflicts of a tray's and a well's name; each answer in turn."""
    root = _tree("incubator", *(f"rack_{r}" for r in range(3)))
    sites = []
    for rack in root.children:
        for s in range(30):
            site = _tree(f"{rack.name}_site_{s}")
            rack.assign_child_resource(site, location=Coordinate(0, 0, 0))
            sites.append(site)
    out: list[str] = []
    counted = 0

    def put(site: int, res: plr.Resource) -> None:
        nonlocal counted
        try:
            sites[site].assign_child_resource(res, location=Coordinate(0, 0, 0))
            out.append(f"{res.name}: in")
        except ValueError as err:
            out.append(str(err))
        counted = max(counted, len(plr_geometry._tree_names))

    trays = [plr.cor_cos_6_wellplate_16800uL_Fb(f"p{i}") for i in range(3)]
    put(0, trays[0])
    put(1, trays[1])
    put(2, plr.cor_cos_6_wellplate_16800uL_Fb("p0"))  # a second p0: refused
    trays[0].unassign()  # out of the tree: its names are free again
    put(3, plr.cor_cos_6_wellplate_16800uL_Fb("p0"))
    sites[3].children[0].unassign()
    trays[1].unassign()  # a move from site 1 to site 4
    put(4, trays[1])
    put(5, _tree("x", "y", "p1_well_A1"))  # a child named as a well of p1: refused, by that name
    trays[1].assign_child_resource(_tree("lid_1"), location=Coordinate(0, 0, 0))  # a lid on
    put(6, _tree("lid_1"))  # refused: the lid under p1 holds the name
    put(12, _tree("z"))  # (a refusal forgets the counts: counted again here)
    root.name = "incubator_2"  # only a root may be renamed
    put(7, _tree("incubator"))
    put(8, _tree("incubator_2"))
    put(9, trays[0])
    put(9, trays[2])  # a site holds one tray: PyLabRobot's own refusal, not the names'
    put(10, trays[2])
    put(11, plr.cor_cos_6_wellplate_16800uL_Fb("p2"))
    big = _tree("rack_big", *(f"big_site_{s}" for s in range(70)))  # counted as a root
    root.assign_child_resource(big, location=Coordinate(0, 0, 0))
    big.children[0].assign_child_resource(_tree("p9"), location=Coordinate(0, 0, 0))
    big.unassign()  # a root again, holding p9 now
    try:
        big.children[1].assign_child_resource(_tree("p9"), location=Coordinate(0, 0, 0))
        out.append("p9: in")
    except ValueError as err:
        out.append(str(err))
    return out, counted


def test_the_counted_names_of_a_large_tree_answer_as_pylabrobots_own() -> None:
    (plain, _), (fast, counted) = _plain_and_fast(_incubator_names)
    assert fast == plain
    assert counted >= 1  # the fast run kept the tree's names counted between the checks
    assert plain[:4] == [
        "p0: in",
        "p1: in",
        "Resource with name 'p0' already exists in the tree.",
        "p0: in",
    ]
    assert plain[5] == "Resource with name 'p1_well_A1' already exists in the tree."
    assert plain[6] == "Resource with name 'lid_1' already exists in the tree."
    assert plain[8] == "incubator: in" and "'incubator_2' already exists" in plain[9]
    assert plain[-2] == "Resource with name 'p2' already exists in the tree."
    assert plain[-1] == "Resource with name 'p9' already exists in the tree."


def test_a_commands_debug_line_is_formatted_only_when_it_is_printed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pylabrobot.liquid_handling import LiquidHandler
    from pylabrobot.liquid_handling.backends import LiquidHandlerChatterboxBackend

    lh = LiquidHandler(backend=LiquidHandlerChatterboxBackend(), deck=plr.STARLetDeck())
    plate = plr.cor_cos_6_wellplate_16800uL_Fb("plate")
    formatted: list[str] = []

    class Volumes:
        def __str__(self) -> str:
            formatted.append("volumes")
            return "[10.0]"

    plr_geometry.install()
    with caplog.at_level(logging.INFO, logger="pylabrobot"):
        lh._log_command("aspirate", vols=Volumes(), resources=[plate])
    assert formatted == [] and not caplog.records
    with caplog.at_level(logging.DEBUG, logger="pylabrobot"):
        lh._log_command("aspirate", vols=Volumes(), resources=[plate])
    assert formatted == ["volumes"]
    assert [r.getMessage() for r in caplog.records] == [
        "aspirate(vols=[10.0], resources=['plate'])"
    ]
