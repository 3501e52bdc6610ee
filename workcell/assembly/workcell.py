"""The ``Workcell``: everything a protocol drives, behind one object.

Devices (PyLabRobot's ``LiquidHandler`` and ``Incubator``, our ``CellCounter`` and
``ConfluenceImager``), the deck, the clock, the store and the action log. In a
dry-run ``world`` holds what is simulated beyond the devices (the cells, the
incubator chambers, the serial simulators); on hardware it is ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.resources import Container, Deck, Plate, Resource, ResourceHolder, TipRack
from pylabrobot.resources.errors import ResourceNotFoundError
from pylabrobot.storage import Incubator

from devices.cell_counter import CellCounter
from devices.imager import ConfluenceImager
from devices.incubator import IncubatorMonitor
from simulators.chamber import DECK, room_temperature
from simulators.culture import CultureModel, Liquid
from simulators.world import SimWorld
from workcell.actions import ActionLog
from workcell.assembly.config import Reagent, WorkcellConfig
from workcell.assembly.inventory import VesselInventory
from workcell.clock import Clock
from workcell.errors import WorkcellError
from workcell.store import Event, Store

OPERATOR_CARRY_S = 30.0  # an operator carries a plate between the deck and the incubator


def reagent_liquid(reagent: Reagent) -> Liquid:
    """What a reservoir of ``reagent`` holds, for the culture model (volume set on load)."""
    if reagent is Reagent.MEDIUM:
        return Liquid(nutrient=1.0, serum=1.0)
    if reagent is Reagent.ENZYME:
        return Liquid(enzyme=1.0)
    return Liquid()


class Workcell:
    def __init__(
        self,
        config: WorkcellConfig,
        clock: Clock,
        store: Store,
        log: ActionLog,
        deck: Deck,
        liquid_handler: LiquidHandler,
        incubators: dict[str, Incubator],
        monitors: dict[str, IncubatorMonitor],
        cell_counter: CellCounter,
        imager: ConfluenceImager,
        world: SimWorld | None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.log = log
        self.deck = deck
        self.liquid_handler = liquid_handler
        self.incubators = incubators
        self.monitors = monitors
        self.cell_counter = cell_counter
        self.imager = imager
        self.world = world
        self.reagents: dict[str, Reagent] = {
            s.name: s.contents.reagent for s in config.deck.sites() if s.contents is not None
        }
        self._set_up = False
        self._home: dict[str, ResourceHolder] = {}
        lh = next(d for d in config.devices.values() if d.kind == "liquid_handler")
        # who carries plates between the deck and an incubator: a STAR's arm (or the
        # lab's), or, at an OT-2 without one, the operator
        self.plate_transfer: str = getattr(lh, "plate_transfer", "arm")
        # Set by a scheduler that shares the devices between campaigns (see
        # ``devices_free_for``); None: this workcell runs one thing at a time.
        self.devices_free_hook: Callable[[float, str], Awaitable[None]] | None = None
        self._found: dict[str, Resource] = {}
        self.inventory = (
            VesselInventory(config.inventory, deck) if config.inventory is not None else None
        )

    @property
    def culture(self) -> CultureModel | None:
        """The culture model of a dry-run; None on hardware."""
        return self.world.culture if self.world is not None else None

    @property
    def incubator(self) -> Incubator:
        if len(self.incubators) != 1:
            raise WorkcellError(
                f"this workcell has {len(self.incubators)} incubators "
                f"({', '.join(self.incubators)}); name the one to use"
            )
        return next(iter(self.incubators.values()))

    # --- resources -------------------------------------------------------------------

    def resource(self, name: str) -> Resource:
        """A resource on the deck or in an incubator, with an error that says what exists.

        Found resources are remembered by name while they stay in the workcell: a
        search walks every site of every rack, and protocols ask thousands of times.
        """
        roots = (self.deck, *self.incubators.values())
        known = self._found.get(name)
        if known is not None and known.name == name and any(known.get_root() is r for r in roots):
            return known
        for root in roots:
            try:
                found = root.get_resource(name)
            except ResourceNotFoundError:
                continue
            self._found[name] = found
            return found
        known = sorted(s.name for s in self.config.deck.sites())
        raise WorkcellError(f"no resource {name!r} in the workcell; deck has: {', '.join(known)}")

    def plate(self, name: str) -> Plate:
        res = self.resource(name)
        if not isinstance(res, Plate):
            raise WorkcellError(f"{name!r} is a {type(res).__name__}, not a plate")
        return res

    def container(self, name: str) -> Container:
        res = self.resource(name)
        if not isinstance(res, Container):
            raise WorkcellError(f"{name!r} is a {type(res).__name__}, not a container")
        return res

    def culture_plates(self) -> list[str]:
        """Every culture plate the workcell holds now: the config's and those drawn."""
        fixed = [
            s.name for s in self.config.deck.sites() if isinstance(self.resource(s.name), Plate)
        ]
        return fixed + (list(self.inventory.in_use) if self.inventory else [])

    def incubator_slots(self) -> int:
        """Plate slots in all incubators, from their racks."""
        return sum(
            len(rack.sites)  # type: ignore[attr-defined]
            for inc in self.incubators.values()
            for rack in inc._racks
        )

    def tip_racks(self) -> list[TipRack]:
        """The tip racks the config placed on the deck, in config order."""
        return [
            rack
            for s in self.config.deck.sites()
            if isinstance(rack := self.resource(s.name), TipRack)
        ]

    def event(self, kind: str, actor: str, vessel_id: str | None = None, **data: Any) -> None:
        """Record an event in the store at the workcell's current time."""
        self.store.add_event(
            Event(time=self.clock.now(), kind=kind, actor=actor, vessel_id=vessel_id, data=data)
        )

    # --- life cycle ------------------------------------------------------------------

    async def setup(self, load_reservoirs: bool = True) -> None:
        """Connect to every device; load the reservoirs the config says are filled.

        A workcell resumed from a checkpoint passes ``load_reservoirs=False``: its
        reservoirs hold what the checkpoint says, not what they held at the start.
        """
        if self._set_up:
            return
        await self.liquid_handler.setup()
        for inc in self.incubators.values():
            await inc.setup()
        await self.cell_counter.setup()
        await self.imager.setup()
        self._set_up = True
        for site in self.config.deck.sites():
            if site.contents is not None and load_reservoirs:
                self.load(
                    site.name,
                    site.contents.volume_mL * 1000.0,
                    reagent_liquid(site.contents.reagent),
                    actor="config",
                )

    async def stop(self) -> None:
        try:
            if self._set_up:
                await self.liquid_handler.stop()
                for inc in self.incubators.values():
                    await inc.stop()
                await self.cell_counter.stop()
                await self.imager.stop()
        finally:
            self._set_up = False
            if self.world is not None:
                self.world.stop()

    async def __aenter__(self) -> Workcell:
        try:
            await self.setup()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what an operator does by hand -----------------------------------------------

    def load(self, container: str, volume_uL: float, liquid: Liquid, actor: str) -> None:
        """An operator fills a container: the volume tracker and (in a dry-run) the model know."""
        c = self.container(container)
        free = c.tracker.get_free_volume()
        if volume_uL > free + 1e-6:
            raise WorkcellError(
                f"cannot load {volume_uL / 1000:.2f} mL into {container!r}: "
                f"only {free / 1000:.2f} mL free"
            )
        c.tracker.add_liquid(volume_uL)
        c.tracker.commit()
        if self.culture is not None:
            liquid.volume_uL = volume_uL
            self.culture.load(container, liquid)
        self.event(
            "load", actor, container=container, volume_uL=volume_uL, viable_cells=liquid.viable
        )

    def register_vessel(self, well: Container, area_cm2: float) -> None:
        """A culture surface enters the dry-run's culture model, on the deck."""
        if self.culture is not None:
            self.culture.register_vessel(well.name, area_cm2, room_temperature, DECK)

    # --- plates between deck and incubators -------------------------------------------

    # --- vessels from the hotel -------------------------------------------------------

    def _inventory(self) -> VesselInventory:
        if self.inventory is None:
            raise WorkcellError("this workcell has no vessel inventory (config: inventory)")
        return self.inventory

    def draw_vessels(self, labware_name: str, n: int, actor: str) -> list[str]:
        """Take ``n`` empty vessels of ``labware_name`` from the hotel onto working positions."""
        inv = self._inventory()
        plates = inv.draw(labware_name, n)
        for plate in plates:
            self.event(
                "vessel_drawn",
                actor,
                plate=plate.name,
                labware=labware_name,
                hotel=inv.hotel,
                position=plate.parent.name if plate.parent else "",
                hotel_stock=inv.stock[labware_name],
            )
        return [p.name for p in plates]

    def put_back_vessel(self, plate_name: str, actor: str) -> None:
        """An unused, empty vessel from a working position back into the hotel."""
        inv = self._inventory()
        plate = self.plate(plate_name)
        if any(w.tracker.get_used_volume() > 0 for w in plate.get_all_items()):
            raise WorkcellError(f"vessel {plate_name!r} is not empty; it cannot go back")
        labware_name = inv.in_use[plate_name]
        inv.put_back(plate)
        self.event(
            "vessel_returned",
            actor,
            plate=plate_name,
            hotel=inv.hotel,
            hotel_stock=inv.stock[labware_name],
        )

    def discard_vessel(self, plate_name: str, actor: str) -> None:
        """An emptied vessel (passaged, harvested) leaves the deck for waste; its cells too."""
        inv = self._inventory()
        plate = self.plate(plate_name)
        if self._incubator_of(plate) is not None:
            raise WorkcellError(f"vessel {plate_name!r} is in an incubator; fetch it first")
        viable = dead = volume = 0.0
        for well in plate.get_all_items():
            volume += well.tracker.get_used_volume()
            if self.culture is not None and well.name in self.culture.vessels:
                self.culture.sync()  # what is left in it now, then it leaves the model
                gone = self.culture.vessels.pop(well.name)
                viable += gone.attached + gone.medium.viable
                dead += gone.medium.dead
        inv.discard(plate)
        self._home.pop(plate_name, None)
        self.event(
            "vessel_discarded",
            actor,
            plate=plate_name,
            volume_uL=volume,
            viable_cells=viable,
            dead_cells=dead,
        )

    def _incubator_of(self, plate: Plate) -> Incubator | None:
        for inc in self.incubators.values():
            if plate.get_root() is inc:
                return inc
        return None

    async def store_plate(self, plate_name: str, incubator: str | None = None) -> None:
        """Move a plate from the deck (or a transfer station) into an incubator."""
        plate = self.plate(plate_name)
        inc = self.incubators[incubator] if incubator else self.incubator
        holder = self._incubator_of(plate)
        if holder is not None and plate.parent is not holder.loading_tray:
            raise WorkcellError(f"plate {plate_name!r} is already in incubator {holder.name!r}")
        on_position = self.inventory is not None and self.inventory.is_position(plate.parent)
        if holder is None and plate.parent is not None and not on_position:
            self._home[plate_name] = plate.parent  # type: ignore[assignment]
        if holder is not None and holder is not inc:
            raise WorkcellError(f"plate {plate_name!r} is on the transfer station of {holder.name}")
        if plate.parent is not inc.loading_tray:
            await self._carry(plate_name, f"deck:{plate.parent.name if plate.parent else ''}", inc)
            plate.unassign()
            inc.loading_tray.assign_child_resource(plate)
            chamber = self.world.chambers.get(inc.name) if self.world else None
            if chamber is not None:  # the arm puts the plate on the station
                chamber.arrive_at_transfer_station(plate_name, _wells(plate))
        await inc.take_in_plate("smallest")
        self._moved(plate, f"{inc.name}:{plate.parent.name if plate.parent else ''}")

    async def fetch_plate(self, plate_name: str, to_deck: bool = True) -> Plate:
        """Bring a plate out of its incubator: to its deck site, or left on the transfer station."""
        plate = self.plate(plate_name)
        inc = self._incubator_of(plate)
        if inc is None:
            raise WorkcellError(f"plate {plate_name!r} is not in an incubator")
        if plate.parent is not inc.loading_tray:
            await inc.fetch_plate_to_loading_tray(plate_name)
        if not to_deck:
            self._moved(plate, f"{inc.name}:transfer_station")
            return plate
        home = self._home.get(plate_name)
        if (home is None or home.resource is not None) and self.inventory is not None:
            home = self.inventory.position_for(plate_name)
        if home is None or home.resource is not None:
            raise WorkcellError(f"plate {plate_name!r} has no free deck site to return to")
        chamber = self.world.chambers.get(inc.name) if self.world else None
        await self._carry(plate_name, f"deck:{home.name}", inc, to_deck=True)
        if chamber is not None:  # the arm takes the plate off the station
            chamber.leave_transfer_station()
        plate.unassign()
        home.assign_child_resource(plate)
        self._moved(plate, f"deck:{home.name}")
        return plate

    @contextlib.asynccontextmanager
    async def plates_on_deck(self, plate_names: list[str]) -> AsyncIterator[list[Plate]]:
        """Have plates on the deck for a protocol; those that came from an incubator go back.

        On a fault the plates stay where they are, so an operator finds them where the
        record says they are.
        """
        fetched = []
        plates = []
        for name in plate_names:
            plate = self.plate(name)
            if self._incubator_of(plate) is not None:
                fetched.append((name, self._incubator_of(plate)))
                plate = await self.fetch_plate(name)
            plates.append(plate)
        yield plates
        for name, inc in fetched:
            await self.store_plate(name, inc.name if inc else None)

    def in_incubator(self, plate_name: str) -> bool:
        return self._incubator_of(self.plate(plate_name)) is not None

    async def _carry(
        self, plate: str, deck_site: str, inc: Incubator, to_deck: bool = False
    ) -> None:
        """A plate carried between a deck site and the incubator's transfer station.

        By an arm this is part of the incubator's own move; by the operator it is a
        step of its own, in the action log, that takes the operator's time.
        """
        if self.plate_transfer != "operator":
            return
        station = f"{inc.name}:transfer_station"
        src, dst = (station, deck_site) if to_deck else (deck_site, station)
        self.log.record(self.clock.now(), "operator", "carry_plate", plate=plate, src=src, to=dst)
        await self.clock.sleep(OPERATOR_CARRY_S)

    def _moved(self, plate: Plate, location: str) -> None:
        if self.world is not None:  # the simulated robots see the plate come and go
            self.world.plate_moved(plate.name, on_deck=location.startswith("deck:"))
        self.store.move_vessels(_wells(plate), location, self.clock.now())
        self.event("plate_moved", "workcell", plate=plate.name, location=location)

    async def devices_free_for(self, seconds: float, why: str) -> None:
        """The protocol needs no device for ``seconds`` (an enzyme incubates, say).

        Alone on the workcell this just waits. Under a scheduler the devices may go to
        another campaign meanwhile; the hook returns when this one has them back, which
        the scheduler plans to be within the step's time window.
        """
        if self.devices_free_hook is None:
            await self.clock.sleep(seconds)
        else:
            await self.devices_free_hook(seconds, why)

    # --- monitoring -----------------------------------------------------------------------

    async def check_incubators(self) -> list[str]:
        """Read every incubator's climate and door; alarms go to the store as events."""
        messages = []
        for name, monitor in self.monitors.items():
            for alarm in await monitor.check(self.clock.elapsed()):
                self.event(
                    "alarm", name, alarm=alarm.kind, message=alarm.message, value=alarm.value
                )
                messages.append(alarm.message)
        return messages


def _wells(plate: Plate) -> list[str]:
    return [w.name for w in plate.get_all_items()]
