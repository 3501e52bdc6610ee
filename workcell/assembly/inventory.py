"""Culture vessels as inventory: drawn from a hotel, kept in the incubators, worked on the deck.

On a plate-based line the culture vessels do not live on the liquid handler's
deck. Empty vessels wait in a hotel or stacker; a vessel drawn from it is created
as its PyLabRobot labware (a 6-well plate, a Nunc OmniTray, ...) on a free working
position of the deck, seeded there, and stored in an incubator slot. For each
later operation it comes back to a free working position and returns to a slot
after; an emptied vessel (passaged, harvested) is discarded, freeing its slot.

Every draw, return and discard is an event in the store (who, which vessel, the
hotel's stock after it), so the record accounts for every vessel, and an action
in the journal (``hotel``'s draw and return, the operator's discard), which a
dry-run's lab carries out: the lab keeps the hotel's stock and the drawn vessels
as physical state on disk. The state here is the controller's model of it (stock
left, vessels in use, the next name): part of the workcell's checkpoint, with the
journal's draws, returns and discards replayed on top after a restart.
"""

from __future__ import annotations

from typing import Any

from pylabrobot.resources import Deck, Plate, ResourceHolder

from workcell import labware
from workcell.assembly.config import InventoryConfig
from workcell.errors import WorkcellError


class VesselInventory:
    """The hotel's stock, the vessels drawn from it, and the deck's working positions."""

    def __init__(self, config: InventoryConfig, deck: Deck) -> None:
        self.config = config
        self.hotel = config.hotel.name
        self.stock: dict[str, int] = dict(config.hotel.stock)
        self.in_use: dict[str, str] = {}  # vessel (plate) name -> labware
        self.drawn = 0  # vessels drawn so far: names follow it
        self.positions: list[ResourceHolder] = []
        for pos in config.working_positions:
            carrier = deck.get_resource(pos.carrier)
            holder = carrier.sites[pos.site]  # type: ignore[attr-defined]
            self.positions.append(holder)

    def free_positions(self) -> list[ResourceHolder]:
        return [h for h in self.positions if h.resource is None]

    def is_position(self, holder: object) -> bool:
        return any(holder is h for h in self.positions)

    def next_names(self, n: int) -> list[str]:
        return [f"v{self.drawn + i + 1:04d}" for i in range(n)]

    def check_draw(self, labware_name: str, n: int) -> None:
        """Refuse a draw of ``n`` the hotel or the deck cannot serve, before any is drawn."""
        left = self.stock.get(labware_name)
        if left is None:
            raise WorkcellError(
                f"the hotel {self.hotel!r} holds no {labware_name!r}; it holds "
                + ", ".join(self.stock)
            )
        free = self.free_positions()
        if n > left:
            raise WorkcellError(f"the hotel has {left} empty {labware_name}, {n} needed")
        if n > len(free):
            raise WorkcellError(f"{n} working positions needed, {len(free)} free on the deck")

    def draw(self, labware_name: str, n: int, names: list[str] | None = None) -> list[Plate]:
        """Take ``n`` empty vessels from the hotel onto free working positions (named
        ``names`` if given: the names a resumed step decided before)."""
        self.check_draw(labware_name, n)
        left = self.stock[labware_name]
        free = self.free_positions()
        plates = []
        names = names if names is not None else self.next_names(n)
        for name, holder in zip(names, free, strict=False):
            plate = labware.make("labware", labware_name, name)
            assert isinstance(plate, Plate)
            holder.assign_child_resource(plate)
            self.in_use[name] = labware_name
            plates.append(plate)
            if name.startswith("v") and name[1:].isdigit():
                self.drawn = max(self.drawn, int(name[1:]))
        self.stock[labware_name] = left - n
        return plates

    def put_back(self, plate: Plate) -> None:
        """An unused (never filled) vessel goes back into the hotel."""
        labware_name = self.in_use.pop(plate.name)
        plate.unassign()
        self.stock[labware_name] += 1

    def discard(self, plate: Plate) -> None:
        """An emptied vessel leaves the workcell (biohazard waste)."""
        self.in_use.pop(plate.name)
        plate.unassign()

    def position_for(self, plate_name: str) -> ResourceHolder:
        free = self.free_positions()
        if not free:
            raise WorkcellError(
                f"no free working position on the deck for {plate_name!r} "
                f"({len(self.positions)} positions, all occupied)"
            )
        return free[0]

    # --- a restarted controller's model ----------------------------------------------

    def adopt(self, name: str, labware_name: str, holder: ResourceHolder | None) -> Plate:
        """A vessel the journal says was drawn: into the model (on ``holder``), counted."""
        if name in self.in_use:
            raise WorkcellError(f"vessel {name!r} is already drawn")
        plate = labware.make("labware", labware_name, name)
        assert isinstance(plate, Plate)
        if holder is not None:
            holder.assign_child_resource(plate)
        self.in_use[name] = labware_name
        self.stock[labware_name] = self.stock.get(labware_name, 0) - 1
        if name.startswith("v") and name[1:].isdigit():
            self.drawn = max(self.drawn, int(name[1:]))
        return plate

    # --- checkpoint --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"stock": dict(self.stock), "in_use": dict(self.in_use), "drawn": self.drawn}

    def restore(self, state: dict[str, Any]) -> dict[str, Plate]:
        """Put the counts back and re-create the vessels in use (unplaced): name -> plate."""
        self.stock = dict(state["stock"])
        self.in_use = dict(state["in_use"])
        self.drawn = int(state["drawn"])
        plates = {}
        for name, labware_name in self.in_use.items():
            plate = labware.make("labware", labware_name, name)
            assert isinstance(plate, Plate)
            plates[name] = plate
        return plates
