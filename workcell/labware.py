"""Labware by name, from PyLabRobot's own definitions.

A config names labware and carriers by their PyLabRobot factory name (for example
``cor_cos_6_wellplate_16800uL_Fb``); nothing here types a dimension by hand. The
growth area of a culture well is derived from the PyLabRobot well geometry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import pylabrobot.resources as plr
from pylabrobot.resources import Carrier, Container, Deck, Plate, Resource, TipRack
from pylabrobot.resources.well import CrossSectionType, Well
from pylabrobot.storage.cytomat import racks as cytomat_racks

DECKS: dict[str, Callable[..., Deck]] = {
    "STARLetDeck": plr.STARLetDeck,
    "STARDeck": plr.STARDeck,
}


def _factory(namespace: Any, name: str) -> Callable[[str], Resource] | None:
    obj = getattr(namespace, name, None)
    if name.startswith("_") or not callable(obj) or isinstance(obj, type):
        return None
    return obj  # type: ignore[no-any-return]


@cache
def _probe(kind: str, name: str) -> type[Resource] | None:
    """Build one throw-away instance to check what a factory makes; None if unknown."""
    namespace = cytomat_racks if kind == "rack" else plr
    factory = _factory(namespace, name)
    if factory is None:
        return None
    try:
        res = factory("probe")
    except Exception:  # noqa: BLE001 - a factory that cannot build is not labware
        return None
    return type(res) if isinstance(res, Resource) else None


def known(kind: str, name: str) -> bool:
    """Whether ``name`` is a PyLabRobot factory of ``kind`` (labware, carrier or rack)."""
    cls = _probe(kind, name)
    if cls is None:
        return False
    if kind in ("carrier", "rack"):
        return issubclass(cls, Carrier)
    return issubclass(cls, (Container, Plate, TipRack)) and not issubclass(cls, Carrier)


def is_plate(name: str) -> bool:
    """Whether ``name`` is a PyLabRobot plate definition (a culture vessel's labware)."""
    cls = _probe("labware", name)
    return cls is not None and issubclass(cls, Plate)


def make(kind: str, factory_name: str, resource_name: str) -> Resource:
    """Instantiate a PyLabRobot resource; ``known`` must have been checked by the config."""
    namespace = cytomat_racks if kind == "rack" else plr
    factory = _factory(namespace, factory_name)
    if factory is None:
        raise KeyError(f"unknown {kind} {factory_name!r}")
    return factory(resource_name)


def growth_area_cm2(well: Well) -> float:
    """Culture surface of a flat-bottomed well, from its PyLabRobot footprint."""
    if well.cross_section_type == CrossSectionType.CIRCLE:
        area_mm2 = math.pi * (well.get_size_x() / 2) ** 2
    else:
        area_mm2 = well.get_size_x() * well.get_size_y()
    return area_mm2 / 100.0


def rails_width(carrier: Resource) -> int:
    """How many deck rails (22.5 mm each) a Hamilton carrier occupies."""
    return max(1, round(carrier.get_size_x() / 22.5))
