"""The ``Workcell``: everything a protocol drives, behind one object.

Devices (PyLabRobot's ``LiquidHandler`` and ``Incubator``, our ``CellCounter`` and
``ConfluenceImager``), the deck, the clock, the store, its action journal and the
action log. In a dry-run ``lab`` is the link to the simulated lab process (the
cells, the chambers, the simulated devices and the clock live there) and ``arm``
its plate mover; on hardware both are ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.resources import Container, Deck, Plate, Resource, ResourceHolder, TipRack
from pylabrobot.resources.errors import ResourceNotFoundError
from pylabrobot.storage import Incubator

from devices.cell_counter import CellCounter
from devices.imager import ConfluenceImager
from devices.incubator import IncubatorMonitor
from devices.lab import LabLink
from workcell.actions import ActionLog
from workcell.assembly.config import Reagent, WorkcellConfig
from workcell.assembly.inventory import VesselInventory
from workcell.assembly.journaled import act, act_now, culture_wells
from workcell.clock import Clock
from workcell.errors import DeviceError, DeviceRefused, WorkcellError
from workcell.journal import Journal
from workcell.labware import growth_area_cm2
from workcell.operator import Ask
from workcell.store import Event, Store

if TYPE_CHECKING:
    from simulators.culture import Liquid
    from workcell.assembly.lab import LabHandle

OPERATOR_CARRY_S = 30.0  # an operator carries a plate between the deck and the incubator


def reagent_liquid(reagent: Reagent) -> Liquid:
    """What a reservoir of ``reagent`` holds, for the culture model (volume set on load)."""
    from simulators.culture import Liquid

    if reagent is Reagent.MEDIUM:
        return Liquid(nutrient=1.0, serum=1.0)
    if reagent is Reagent.ENZYME:
        return Liquid(enzyme=1.0)
    return Liquid()


class PlateMover(Protocol):
    name: str

    async def move(self, plate: str, to: str, by: str = "arm") -> None: ...


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
        lab: LabHandle | None = None,
        arm: PlateMover | None = None,
        owns_lab: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.log = log
        self.deck = deck
        self.liquid_handler = liquid_handler
        self.lh_name = next(n for n, d in config.devices.items() if d.kind == "liquid_handler")
        self.incubators = incubators
        self.monitors = monitors
        self.cell_counter = cell_counter
        self.imager = imager
        self.lab_handle = lab
        self.arm = arm
        self._owns_lab = owns_lab
        self.journal = Journal(store, clock.now)
        self.operator: Ask | None = None  # who answers a hold point (set by who runs the work)
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
        self.reagents: dict[str, Reagent] = {
            s.name: s.contents.reagent for s in config.deck.sites() if s.contents is not None
        }
        self._set_up = False
        self._home: dict[str, ResourceHolder] = {}  # each plate's deck site, from the config
        for site in config.deck.sites():
            res = self.resource(site.name)
            if isinstance(res, Plate) and isinstance(res.parent, ResourceHolder):
                self._home[site.name] = res.parent

    @property
    def lab(self) -> LabLink | None:
        """The link to the simulated lab of a dry-run; None on hardware."""
        return self.lab_handle.link if self.lab_handle is not None else None

    @property
    def simulated(self) -> bool:
        """A dry-run: the devices (and the operator's hands) are the simulated lab's."""
        return self.lab_handle is not None

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

        A workcell resumed on a run folder passes ``load_reservoirs=False``: its
        reservoirs hold what its checkpoint and journal say, not what they held at
        the start.
        """
        if self._set_up:
            return
        await _connect(self.lh_name, self.liquid_handler.setup())
        for name, inc in self.incubators.items():
            await _connect(name, inc.setup())
        await _connect(self.cell_counter.name, self.cell_counter.setup())
        await _connect(self.imager.name, self.imager.setup())
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
            if self._owns_lab and self.lab_handle is not None:
                self.lab_handle.close()
                self.lab_handle = None

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
        """An operator fills a container: the volume tracker and (in a dry-run) the lab know."""
        c = self.container(container)
        free = c.tracker.get_free_volume()
        if volume_uL > free + 1e-6:
            raise WorkcellError(
                f"cannot load {volume_uL / 1000:.2f} mL into {container!r}: "
                f"only {free / 1000:.2f} mL free"
            )
        c.tracker.add_liquid(volume_uL)
        c.tracker.commit()
        content = {**asdict(liquid), "volume_uL": volume_uL}
        lab = self.lab

        def do() -> None:
            if lab is not None:
                lab.call(
                    "operator", "operator.load", container=container, liquid=content, actor=actor
                )

        act_now(
            self,
            "operator",
            "load",
            {
                "container": container,
                "volume_uL": volume_uL,
                "actor": actor,
                "effects": {"volume": {container: c.tracker.get_used_volume()}},
            },
            do,
        )
        self.event(
            "load", actor, container=container, volume_uL=volume_uL, viable_cells=liquid.viable
        )

    def empty(self, container: str, actor: str) -> dict[str, float]:
        """An operator empties a container (waste, a tube's surplus); returns what went."""
        c = self.container(container)
        volume = c.tracker.get_used_volume()
        c.tracker.remove_liquid(volume)
        c.tracker.commit()
        lab = self.lab

        def do() -> dict[str, Any]:
            if lab is None:
                return {"viable": 0.0, "dead": 0.0}
            gone = lab.call("operator", "operator.empty", container=container, actor=actor)
            return {"viable": gone["viable"], "dead": gone["dead"]}

        gone = act_now(
            self,
            "operator",
            "empty",
            {
                "container": container,
                "volume_uL": volume,
                "actor": actor,
                "effects": {"volume": {container: 0.0}},
            },
            do,
        )
        self.event(
            "emptied",
            actor,
            container=container,
            volume_uL=volume,
            viable_cells=gone["viable"],
            dead_cells=gone["dead"],
        )
        return {"volume_uL": volume, "viable": gone["viable"], "dead": gone["dead"]}

    def collect(self, container: str, into: str, actor: str) -> dict[str, float]:
        """An operator pours a container (a counted pool) into an off-deck one (a bag)."""
        c = self.container(container)
        volume = c.tracker.get_used_volume()
        c.tracker.remove_liquid(volume)
        c.tracker.commit()
        lab = self.lab

        def do() -> dict[str, Any]:
            if lab is None:
                return {"viable": 0.0, "dead": 0.0}
            gone = lab.call(
                "operator", "operator.collect", container=container, into=into, actor=actor
            )
            return {"viable": gone["viable"], "dead": gone["dead"]}

        gone = act_now(
            self,
            "operator",
            "collect",
            {
                "container": container,
                "into": into,
                "volume_uL": volume,
                "actor": actor,
                "effects": {"volume": {container: 0.0}},
            },
            do,
        )
        return {"volume_uL": volume, "viable": gone["viable"], "dead": gone["dead"]}

    def replace_tips(self, rack: TipRack, actor: str) -> int:
        """An operator refills a tip rack's empty spots with fresh tips."""
        spots = [s for s in rack.get_all_items() if not s.tracker.has_tip]
        if not spots:
            return 0
        lab = self.lab

        def do() -> None:
            if lab is not None:  # the simulated robots find the new rack
                lab.call("operator", "operator.replace_tips", rack=rack.name, actor=actor)
            for spot in spots:
                spot.tracker.add_tip(spot.make_tip(), commit=True)

        act_now(
            self,
            "operator",
            "replace_tips",
            {
                "rack": rack.name,
                "tips": len(spots),
                "effects": {"tip": {s.name: True for s in spots}},
            },
            do,
        )
        self.event("tips_replaced", actor, rack=rack.name, tips=len(spots))
        return len(spots)

    # --- vessels from the hotel -------------------------------------------------------

    def _inventory(self) -> VesselInventory:
        if self.inventory is None:
            raise WorkcellError("this workcell has no vessel inventory (config: inventory)")
        return self.inventory

    def draw_vessels(
        self, labware_name: str, n: int, actor: str, names: list[str] | None = None
    ) -> list[str]:
        """Take ``n`` empty vessels of ``labware_name`` from the hotel onto working positions.

        Each vessel is one action (a stacker hands out one plate at a time): journaled,
        and in a dry-run carried out by the lab, which keeps the hotel's stock and the
        drawn vessels as physical state. A refusal puts the model's vessel back.
        """
        inv = self._inventory()
        inv.check_draw(labware_name, n)
        wanted = names if names is not None else inv.next_names(n)
        names = []
        lab = self.lab
        for name in wanted:
            (plate,) = inv.draw(labware_name, 1, [name])
            position = plate.parent.name if plate.parent else ""
            wells = [
                {"name": w.name, "area_cm2": growth_area_cm2(w), "max_volume_uL": w.max_volume}
                for w in plate.get_all_items()
            ]

            def do(plate_name: str = plate.name, wells: list[dict[str, Any]] = wells) -> None:
                if lab is not None:
                    lab.call(
                        inv.hotel,
                        "hotel.draw",
                        labware=labware_name,
                        plate=plate_name,
                        wells=wells,
                        actor=actor,
                    )

            try:
                act_now(
                    self,
                    inv.hotel,
                    "draw_vessel",
                    {
                        "plate": plate.name,
                        "labware": labware_name,
                        "position": position,
                        "actor": actor,
                        "effects": {
                            "drawn": {plate.name: {"labware": labware_name, "position": position}}
                        },
                    },
                    do,
                )
            except DeviceRefused:
                inv.put_back(plate)
                raise
            self.event(
                "vessel_drawn",
                actor,
                plate=plate.name,
                labware=labware_name,
                hotel=inv.hotel,
                position=position,
                hotel_stock=inv.stock[labware_name],
            )
            names.append(plate.name)
        return names

    def put_back_vessel(self, plate_name: str, actor: str) -> None:
        """An unused, empty vessel from a working position back into the hotel."""
        inv = self._inventory()
        plate = self.plate(plate_name)
        if any(w.tracker.get_used_volume() > 0 for w in plate.get_all_items()):
            raise WorkcellError(f"vessel {plate_name!r} is not empty; it cannot go back")
        labware_name = inv.in_use[plate_name]
        lab = self.lab

        def do() -> None:
            if lab is not None:
                lab.call(inv.hotel, "hotel.put_back", plate=plate_name, actor=actor)

        act_now(
            self,
            inv.hotel,
            "return_vessel",
            {
                "plate": plate_name,
                "labware": labware_name,
                "actor": actor,
                "effects": {"returned": [plate_name]},
            },
            do,
        )
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
        volume = sum(w.tracker.get_used_volume() for w in plate.get_all_items())
        lab = self.lab

        def do() -> dict[str, Any]:
            if lab is None:  # on hardware nobody counts what went to waste
                return {"viable_cells": 0.0, "dead_cells": 0.0}
            gone = lab.call("operator", "hotel.discard", plate=plate_name, actor=actor)
            return {"viable_cells": gone["viable"], "dead_cells": gone["dead"]}

        gone = act_now(
            self,
            "operator",
            "discard_vessel",
            {
                "plate": plate_name,
                "volume_uL": volume,
                "actor": actor,
                "vessels": [w.name for w in plate.get_all_items()],
                "effects": {"discarded": [plate_name]},
            },
            do,
        )
        inv.discard(plate)
        self._home.pop(plate_name, None)
        self.event(
            "vessel_discarded",
            actor,
            plate=plate_name,
            volume_uL=volume,
            viable_cells=gone["viable_cells"],
            dead_cells=gone["dead_cells"],
        )

    def record_hotel_events(self, actions: list[Any]) -> None:
        """After a restart: the record's account of vessels drawn, returned and discarded.

        A hotel action the controller was killed in (done by the hotel, its event not
        yet written) is found done by the journal's replay or by reconciliation; its
        event is written now, marked as recorded after the restart, so every vessel
        out of the hotel is in the record.
        """
        kinds = {
            "draw_vessel": "vessel_drawn",
            "return_vessel": "vessel_returned",
            "discard_vessel": "vessel_discarded",
        }
        seen: dict[str, set[str]] = {}
        for a in actions:
            kind = kinds.get(a.action)
            if kind is None or a.outcome != "done":
                continue
            if kind not in seen:
                seen[kind] = {str(e.data.get("plate")) for e in self.store.events(kind)}
            plate = str(a.data.get("plate"))
            if plate in seen[kind]:
                continue
            seen[kind].add(plate)
            data: dict[str, Any] = {"plate": plate, "recorded_after_restart": True}
            inv = self.inventory
            labware_name = a.data.get("labware")
            if kind == "vessel_drawn":
                data |= {"labware": labware_name, "position": a.data.get("position", "")}
            if kind == "vessel_discarded":
                data |= {"volume_uL": a.data.get("volume_uL", 0.0)}
            if inv is not None and kind != "vessel_discarded":
                data |= {"hotel": inv.hotel, "hotel_stock": inv.stock.get(labware_name or "", 0)}
            self.event(kind, str(a.data.get("actor", "workcell")), **data)

    # --- plates between deck and incubators -------------------------------------------

    def _incubator_of(self, plate: Plate) -> Incubator | None:
        for inc in self.incubators.values():
            if plate.get_root() is inc:
                return inc
        return None

    async def _arm(self, plate: Plate, incubator: str, to: str, effect: str) -> None:
        """A plate carried between the deck and ``incubator``'s transfer station: by the arm
        (part of the incubator's move), or at an OT-2 without one by the operator, a step
        of its own that takes the operator's time."""
        by_hand = self.plate_transfer == "operator"
        arm = self.arm
        if arm is None and not by_hand:
            return  # no mover configured: the plate is placed by hand (the model follows)

        async def send() -> None:
            if arm is not None:
                await arm.move(plate.name, to, "operator" if by_hand else "arm")
            else:  # a person on a real workcell: the time it takes
                await self.clock.sleep(OPERATOR_CARRY_S)

        await act(
            self,
            "operator" if by_hand else (arm.name if arm else "arm"),
            "carry_plate" if by_hand else "move_plate",
            {
                "plate": plate.name,
                "to": to,
                "incubator": incubator,
                "vessels": culture_wells(self, plate),
                "effects": {"plate": {plate.name: effect}},
            },
            send,
            [{"plate": plate.name, "to": to}],
        )

    async def store_plate(self, plate_name: str, incubator: str | None = None) -> None:
        """Move a plate from the deck (or a transfer station) into an incubator."""
        plate = self.plate(plate_name)
        inc = self.incubators[incubator] if incubator else self.incubator
        holder = self._incubator_of(plate)
        if holder is not None and plate.parent is not holder.loading_tray:
            raise WorkcellError(f"plate {plate_name!r} is already in incubator {holder.name!r}")
        on_position = self.inventory is not None and self.inventory.is_position(plate.parent)
        if holder is None and isinstance(plate.parent, ResourceHolder) and not on_position:
            self._home[plate_name] = plate.parent
        if holder is not None and holder is not inc:
            raise WorkcellError(f"plate {plate_name!r} is on the transfer station of {holder.name}")
        if plate.parent is not inc.loading_tray:
            await self._arm(
                plate, inc.name, f"incubator:{inc.name}", f"{inc.name}/{inc.loading_tray.name}"
            )
            plate.unassign()
            inc.loading_tray.assign_child_resource(plate)
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
        await self._arm(plate, inc.name, "deck", f"deck/{home.name}")
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

    def in_slot(self, plate_name: str) -> bool:
        """In an incubator's slot (not on its transfer station): where a culture lives."""
        return self.in_incubator(plate_name) and not self.on_transfer_station(plate_name)

    def on_transfer_station(self, plate_name: str) -> bool:
        plate = self.plate(plate_name)
        inc = self._incubator_of(plate)
        return inc is not None and plate.parent is inc.loading_tray

    def _moved(self, plate: Plate, location: str) -> None:
        with self.store.transaction():  # the wells' new place and the move: both or neither
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


async def _connect(device: str, setup: Awaitable[object]) -> None:
    """Connect one device; whatever its driver raises becomes a DeviceError naming it."""
    try:
        await setup
    except DeviceError:
        raise
    except Exception as err:  # noqa: BLE001 - a USB library missing, a port absent, ...
        raise DeviceError(device, "connect", f"{type(err).__name__}: {err}") from err
