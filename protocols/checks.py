"""Checks every protocol's plan makes before anything moves: names, roles, duplicates.

A plan names each container it will use and the *role* it plays (the medium a
cell sees, the waste spent medium goes to, the tube the cells are pooled in).
``check_roles`` holds those against the config: a reagent role needs a reservoir
the config loads with that reagent (enzyme in the ``medium`` trough is refused),
and nothing is ever discarded or pooled into a reagent reservoir or a culture
well. ``distinct`` refuses a plate or a well named twice, which would otherwise
pass the plan and fail only after the robot had moved.

The parameter types here (``DeckName``, ``DeckNames``, ``WellNames``, ``Text``) put the
same limits on every protocol's pydantic model, so the Prefect form and the CLI
refuse a 300-character plate name or a duplicated well before a plan is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field
from pylabrobot.resources import Plate, TipRack
from pylabrobot.resources.well import Well

from workcell.assembly.config import Reagent
from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError

NAME_PATTERN = r"^[A-Za-z0-9_\-]+$"
MAX_NAME = 64
MAX_TEXT = 200

DeckName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN, description="deck resource"),
]
WellName = Annotated[
    str, Field(min_length=2, max_length=4, pattern=r"^[A-Za-z]{1,2}[0-9]{1,2}$", description="well")
]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


def _twice(values: list[str], key: str = "") -> list[str]:
    seen: set[str] = set()
    twice = []
    for v in values:
        k = v.upper() if key == "upper" else v
        if k in seen:
            twice.append(v)
        seen.add(k)
    if twice:
        raise ValueError(f"named more than once: {', '.join(dict.fromkeys(twice))}")
    return values


def _no_duplicate_wells(values: list[str]) -> list[str]:
    return _twice(values, "upper")


DeckNames = Annotated[list[DeckName], AfterValidator(_twice)]
WellNames = Annotated[list[WellName], AfterValidator(_no_duplicate_wells)]


class Role(StrEnum):
    """What a protocol uses a container for."""

    MEDIUM = "medium"
    PBS = "pbs"
    ENZYME = "enzyme"
    WASTE = "waste"
    POOL = "pool"
    SUSPENSION = "suspension"


REAGENT_OF = {Role.MEDIUM: Reagent.MEDIUM, Role.PBS: Reagent.PBS, Role.ENZYME: Reagent.ENZYME}
ROLE_TEXT = {
    Role.MEDIUM: "the medium reservoir",
    Role.PBS: "the PBS reservoir",
    Role.ENZYME: "the enzyme reservoir",
    Role.WASTE: "the waste",
    Role.POOL: "the pool tube",
    Role.SUSPENSION: "the cell suspension tube",
}


def check_roles(wc: Workcell, uses: Iterable[tuple[str, Role]], problems: list[str]) -> None:
    """Refuse a container whose configured contents do not fit the role it is used for."""
    roles: dict[str, set[Role]] = {}
    sites = {s.name for s in wc.config.deck.sites()}
    for name, role in uses:
        roles.setdefault(name, set()).add(role)
    for name, used_as in roles.items():
        if len(used_as) > 1:
            problems.append(
                f"{name!r} is used as {' and '.join(sorted(ROLE_TEXT[r] for r in used_as))}; "
                "each role needs a container of its own"
            )
        try:
            res = wc.resource(name)
        except WorkcellError as err:
            problems.append(str(err))
            continue
        if name not in sites or isinstance(res, Plate | TipRack | Well):
            problems.append(
                f"{name!r} is not a reservoir or tube on the deck; "
                f"it cannot be {', '.join(sorted(ROLE_TEXT[r] for r in used_as))}"
            )
            continue
        loaded = wc.reagents.get(name)
        for role in used_as:
            wanted = REAGENT_OF.get(role)
            if wanted is not None and loaded is not wanted:
                what = f"is loaded with {loaded.value}" if loaded else "has no reagent configured"
                problems.append(
                    f"{name!r} {what}; {ROLE_TEXT[role]} must be a reservoir the config "
                    f"loads with {wanted.value}"
                )
            elif wanted is None and loaded is not None:
                problems.append(
                    f"{name!r} holds {loaded.value}, a reagent; it cannot be {ROLE_TEXT[role]}"
                )


def distinct(names: Iterable[str], what: str, problems: list[str]) -> None:
    """Refuse a name given twice (plates, wells, vessels)."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            problems.append(f"{what} {n!r} is named more than once")
        seen.add(n)


def check_empty(wc: Workcell, name: str, what: str, problems: list[str]) -> None:
    """A pool tube must start empty: cells of another origin must not join this pool."""
    try:
        used = wc.container(name).tracker.get_used_volume()
    except WorkcellError:
        return  # reported by the role check
    if used > 0:
        problems.append(
            f"{what} {name!r} still holds {used / 1000:.2f} mL from before; empty it first "
            "so no cells of another origin join this pool"
        )
