"""Opentrons labware by load name, as PyLabRobot resources, from Opentrons' own definitions.

An OT-2 config names its labware by Opentrons load name (``corning_6_wellplate_16.8ml_flat``,
``nest_1_reservoir_195ml``, ``opentrons_96_tiprack_1000ul``). PyLabRobot 0.2.2 only
converts Opentrons tip and tube racks, and downloads their definitions from the web at
run time; here every definition comes from ``opentrons-shared-data`` (installed), so a
workcell builds offline. The geometry (well centres, bottoms, diameters) is Opentrons',
unchanged: the simulated OT-2 resolves coordinates against the same definitions, so a
frame or offset error on the way through PyLabRobot shows up as a tip in no well.

Names follow PyLabRobot's own conventions, so a vessel has one name on every robot:
wells ``<plate>_well_<A1>``, tip spots ``<rack>_tipspot_<A1>``; a single-well reservoir is
one container named as the slot; a tube is named as the config names it.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from pylabrobot.resources import (
    Coordinate,
    Plate,
    Resource,
    ResourceHolder,
    Tip,
    TipRack,
    TipSpot,
    Trough,
    Tube,
    TubeRack,
)
from pylabrobot.resources.well import CrossSectionType, Well, WellBottomType

# The PyLabRobot definition of the same physical product, where there is one: a campaign
# that asks for Corning 6-well plates finds them on either robot's deck.
PLR_TWIN = {
    "corning_6_wellplate_16.8ml_flat": "cor_cos_6_wellplate_16800uL_Fb",
    "corning_24_wellplate_3.4ml_flat": "cor_cos_24_wellplate_3470uL_Fb",
}
KINDS = {"wellPlate": "plate", "reservoir": "reservoir", "tipRack": "tip_rack"}
TUBE_CATEGORIES = ("tubeRack",)


@cache
def definition(load_name: str) -> dict[str, Any] | None:
    """Opentrons' labware definition (version 1), or None if Opentrons has no such labware."""
    from opentrons_shared_data.labware import load_definition

    try:
        return dict(load_definition(load_name, 1))
    except Exception:  # noqa: BLE001 - unknown load names raise various errors
        return None


def kind(load_name: str) -> str | None:
    """'plate', 'reservoir', 'tip_rack', 'tube_rack' or None (unknown or unsupported)."""
    d = definition(load_name)
    if d is None:
        return None
    category = d["metadata"]["displayCategory"]
    if category in TUBE_CATEGORIES:
        return "tube_rack"
    if category == "reservoir" and len(d["wells"]) != 1:
        return None  # multi-well reservoirs: not modelled yet
    return KINDS.get(category)


def same_product(a: str, b: str) -> bool:
    """Whether two labware names (PyLabRobot or Opentrons) describe the same product."""
    return PLR_TWIN.get(a, a) == PLR_TWIN.get(b, b)


def well_name(labware: str, well: str) -> str:
    return f"{labware}_well_{well}"


def tip_spot_name(rack: str, well: str) -> str:
    return f"{rack}_tipspot_{well}"


def container_name(labware: str, load_name: str, well: str, tubes: dict[str, str]) -> str | None:
    """The name of the container at ``well`` of a slot's labware (None: no container there)."""
    k = kind(load_name)
    if k == "plate":
        return well_name(labware, well)
    if k == "reservoir":
        return labware
    if k == "tube_rack":
        return tubes.get(well)
    return None


def tip_volume_uL(load_name: str) -> float:
    """What one tip of an Opentrons tip rack holds."""
    d = definition(load_name)
    assert d is not None
    return float(next(iter(d["wells"].values()))["totalLiquidVolume"])


def _ordered(d: dict[str, Any]) -> list[str]:
    return [w for column in d["ordering"] for w in column]


def _corner(w: dict[str, Any], size_x: float, size_y: float) -> Coordinate:
    return Coordinate(x=w["x"] - size_x / 2, y=w["y"] - size_y / 2, z=w["z"])


def _well_size(w: dict[str, Any]) -> tuple[float, float, CrossSectionType]:
    if w["shape"] == "circular":
        return w["diameter"], w["diameter"], CrossSectionType.CIRCLE
    return w["xDimension"], w["yDimension"], CrossSectionType.RECTANGLE


def make(load_name: str, name: str, tubes: dict[str, str] | None = None) -> Resource:
    """A PyLabRobot resource for an Opentrons load name; ``tubes``: rack position -> tube name."""
    d = definition(load_name)
    k = kind(load_name)
    if d is None or k is None:
        raise KeyError(f"unknown or unsupported Opentrons labware {load_name!r}")
    dims = d["dimensions"]
    size = dims["xDimension"], dims["yDimension"], dims["zDimension"]
    if k == "reservoir":
        w = next(iter(d["wells"].values()))
        # one container over the labware's footprint; its cavity bottom is the well bottom
        return Trough(
            name,
            *size,
            max_volume=w["totalLiquidVolume"],
            material_z_thickness=w["z"],
            model=load_name,
        )
    if k == "tip_rack":
        params = d["parameters"]
        spots: dict[str, TipSpot] = {}
        for ident in _ordered(d):
            w = d["wells"][ident]
            side = round(w["diameter"] / math.sqrt(2), 3)

            def make_tip(name: str, w: dict[str, Any] = w) -> Tip:
                return Tip(
                    has_filter="filter" in load_name,
                    total_tip_length=params["tipLength"],
                    maximal_volume=w["totalLiquidVolume"],
                    fitting_depth=params["tipOverlap"],
                    name=name,
                )

            spot = TipSpot(f"tipspot_{ident}", side, side, make_tip=make_tip)  # rack name prefixed
            spot.location = _corner(w, side, side)
            spots[ident] = spot
        return TipRack(name, *size, ordered_items=spots, model=load_name)
    if k == "plate":
        wells: dict[str, Well] = {}
        for ident in _ordered(d):
            w = d["wells"][ident]
            sx, sy, cross = _well_size(w)
            well = Well(
                f"well_{ident}",  # PyLabRobot prefixes the plate's name
                sx,
                sy,
                w["depth"],
                material_z_thickness=0,
                bottom_type=WellBottomType.FLAT,
                max_volume=w["totalLiquidVolume"],
                cross_section_type=cross,
                model=load_name,
            )
            well.location = _corner(w, sx, sy)
            wells[ident] = well
        return Plate(name, *size, ordered_items=wells, model=load_name)
    # tube rack: holders at every position, a tube in each position the config names
    holders: dict[str, ResourceHolder] = {}
    for ident in _ordered(d):
        w = d["wells"][ident]
        sx, sy, _ = _well_size(w)
        holder = ResourceHolder(ident, sx, sy, w["depth"])  # named <rack>_<A1>
        holder.location = _corner(w, sx, sy)
        holders[ident] = holder
    rack = TubeRack(name, *size, ordered_items=holders, model=load_name)
    for ident, tube_name in (tubes or {}).items():
        w = d["wells"][ident]
        sx, sy, _ = _well_size(w)
        tube = Tube(
            tube_name, sx, sy, w["depth"], max_volume=w["totalLiquidVolume"], material_z_thickness=0
        )
        holders[ident].assign_child_resource(tube, location=Coordinate.zero())
    return rack


# --- pipettes ---------------------------------------------------------------------

# Which tips each single-channel GEN2 pipette takes, by the tip's volume (the rule
# PyLabRobot's OT-2 back end applies when it picks the pipette for a tip).
TIP_VOLUMES: dict[str, tuple[float, ...]] = {
    "p20_single_gen2": (10.0, 20.0),
    "p300_single_gen2": (200.0, 300.0),
    "p1000_single_gen2": (1000.0,),
}


@cache
def pipette_range_uL(pipette: str) -> tuple[float, float]:
    """(min, max) volume of an Opentrons pipette, from Opentrons' pipette definitions."""
    from opentrons_shared_data.pipette import load_data
    from opentrons_shared_data.pipette import pipette_load_name_conversions as names

    m = names.convert_pipette_name(pipette)  # type: ignore[arg-type]
    d = load_data.load_definition(m.pipette_type, m.pipette_channels, m.pipette_version, m.oem_type)
    props = next(iter(d.liquid_properties.values()))
    return float(props.min_volume), float(props.max_volume)
