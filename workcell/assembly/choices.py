"""The names an operator may pick on a workcell: plates, wells, reservoirs by role.

A protocol's parameter model says *what kind* of name a field takes (a plate, a
well, the medium reservoir) with ``choice(Choice.PLATE)`` in its JSON schema; the
workcell's config says *which* names exist. ``choices(config)`` reads them from
the deck (each site's PyLabRobot labware, built once, nothing connected), so a
form built for this workcell can offer a dropdown and a server can refuse an
unknown plate before a run exists. The protocols' own plans still check every
name, for runs that do not come through a form.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import WithJsonSchema
from pylabrobot.resources import Container, Plate, TipRack, Tube

from workcell.assembly.build import build_deck
from workcell.assembly.config import WorkcellConfig

MARK = "x-workcell-choice"  # the JSON-schema key a field's kind of name is written under


class Choice(StrEnum):
    PLATE = "plate"  # a culture plate on the deck
    WELL = "well"  # a well identifier (A1) found on the deck's plates
    PLATE_LABWARE = "plate_labware"  # a PyLabRobot plate definition the deck uses
    MEDIUM = "medium"  # a reservoir the config loads with medium
    PBS = "pbs"
    ENZYME = "enzyme"
    WASTE = "waste"  # a trough with no reagent
    POOL = "pool"  # a tube or trough with no reagent (cells are pooled into it)
    TUBE = "tube"  # a tube with no reagent (a suspension is loaded into it)


def choice(kind: Choice) -> dict[str, Any]:
    """``json_schema_extra`` of a field that takes a name of this kind."""
    return {MARK: kind.value}


def _well_order(ident: str) -> tuple[int, str, int]:
    m = re.fullmatch(r"([A-Za-z]+)(\d+)", ident)
    return (0, m.group(1), int(m.group(2))) if m else (1, ident, 0)


def choices(config: WorkcellConfig) -> dict[Choice, list[str]]:
    """Every kind of name and the names of that kind this workcell's deck has."""
    out: dict[Choice, list[str]] = {c: [] for c in Choice}
    wells: set[str] = set()
    deck = build_deck(config)
    for site in config.deck.sites():
        res = deck.get_resource(site.name)
        contents = getattr(site, "contents", None)
        reagent = contents.reagent if contents is not None else None
        if isinstance(res, Plate) and len(res.children) > 1:
            out[Choice.PLATE].append(site.name)
            if site.labware not in out[Choice.PLATE_LABWARE]:
                out[Choice.PLATE_LABWARE].append(site.labware)
            wells.update(w.get_identifier() for w in res.get_all_items())
        elif isinstance(res, TipRack) or not isinstance(res, Container | Plate):
            continue
        elif reagent is not None:
            out[Choice(reagent.value)].append(site.name)
        else:
            out[Choice.POOL].append(site.name)
            if isinstance(res, Tube):
                out[Choice.TUBE].append(site.name)
            else:
                out[Choice.WASTE].append(site.name)
    out[Choice.WELL] = sorted(wells, key=_well_order)
    return out


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional_int(minimum: int, maximum: int) -> Any:
    """An ``int | None`` field shown on a form as a plain number box: leave it empty for None.

    A form renders ``anyOf [integer, null]`` as a type picker ("Property is type None");
    this shows the integer with its bounds and no default, so an untouched field is
    not sent and the model's None applies. Use with ``Field(json_schema_extra=EMPTY_IS_NONE)``.
    """
    return WithJsonSchema({"type": "integer", "minimum": minimum, "maximum": maximum})


def optional_text(max_length: int) -> Any:
    """An ``str | None`` field shown as a plain text box: leave it empty for None."""
    return WithJsonSchema({"type": "string", "minLength": 1, "maxLength": max_length})


EMPTY_IS_NONE = _drop_default
