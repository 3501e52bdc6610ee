"""The one device factory: a validated config in, a ready ``Workcell`` out.

Swapping a simulator for hardware is a change of ``driver`` in the config; the
protocols see the same front ends either way (PyLabRobot's ``LiquidHandler`` and
``Incubator``, our ``CellCounter`` and ``ConfluenceImager``).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.resources import (
    Container,
    Coordinate,
    Deck,
    Plate,
    Resource,
    ResourceHolder,
    TipRack,
    set_tip_tracking,
    set_volume_tracking,
)
from pylabrobot.resources.errors import ResourceNotFoundError
from pylabrobot.storage import Incubator

from devices.cell_counter import CellCounter
from devices.imager import ConfluenceImager
from simulators.culture import CultureModel, CultureParameters, Liquid
from workcell import labware
from workcell.actions import ActionLog
from workcell.clock import Clock, SimClock, WallClock
from workcell.config import (
    CytomatIncubator,
    HamiltonStar,
    Reagent,
    SimulatedCellCounter,
    SimulatedImager,
    SimulatedIncubator,
    SimulatedLiquidHandler,
    WorkcellConfig,
)
from workcell.errors import ConfigError, WorkcellError
from workcell.store import Event, Store

NUTRIENT = {Reagent.MEDIUM: 1.0, Reagent.PBS: 0.0, Reagent.ENZYME: 0.0}


class Workcell:
    """Everything a protocol drives: devices, deck, clock, store and action log.

    In a dry-run ``culture`` is the culture model the simulators act on; on
    hardware it is ``None``.
    """

    def __init__(
        self,
        config: WorkcellConfig,
        clock: Clock,
        store: Store,
        log: ActionLog,
        deck: Deck,
        liquid_handler: LiquidHandler,
        incubators: dict[str, Incubator],
        cell_counter: CellCounter,
        imager: ConfluenceImager,
        culture: CultureModel | None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.log = log
        self.deck = deck
        self.liquid_handler = liquid_handler
        self.incubators = incubators
        self.cell_counter = cell_counter
        self.imager = imager
        self.culture = culture
        self.reagents: dict[str, Reagent] = {
            s.name: s.contents.reagent for s in config.deck.sites() if s.contents is not None
        }
        self._set_up = False
        self._home: dict[str, ResourceHolder] = {}

    @property
    def incubator(self) -> Incubator:
        if len(self.incubators) != 1:
            raise WorkcellError(
                f"this workcell has {len(self.incubators)} incubators "
                f"({', '.join(self.incubators)}); name the one to use"
            )
        return next(iter(self.incubators.values()))

    def resource(self, name: str) -> Resource:
        """A resource on the deck or in an incubator, with an error that says what exists."""
        for root in (self.deck, *self.incubators.values()):
            try:
                return root.get_resource(name)
            except ResourceNotFoundError:
                continue
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

    def tip_racks(self) -> list[TipRack]:
        """The tip racks the config placed on the deck, in config order."""
        racks = (self.deck.get_resource(s.name) for s in self.config.deck.sites())
        return [r for r in racks if isinstance(r, TipRack)]

    def event(self, kind: str, actor: str, vessel_id: str | None = None, **data: Any) -> None:
        """Record an event in the store at the workcell's current time."""
        self.store.add_event(
            Event(time=self.clock.now(), kind=kind, actor=actor, vessel_id=vessel_id, data=data)
        )

    # --- life cycle ------------------------------------------------------------------

    async def setup(self) -> None:
        """Connect to every device and load the reservoirs the config says are filled."""
        if self._set_up:
            return
        await self.liquid_handler.setup()
        for inc in self.incubators.values():
            await inc.setup()
        await self.cell_counter.setup()
        await self.imager.setup()
        self._set_up = True
        for site in self.config.deck.sites():
            if site.contents is not None:
                self.load(
                    site.name,
                    site.contents.volume_mL * 1000.0,
                    Liquid(nutrient=NUTRIENT[site.contents.reagent]),
                    actor="config",
                )

    async def stop(self) -> None:
        if not self._set_up:
            return
        await self.liquid_handler.stop()
        for inc in self.incubators.values():
            await inc.stop()
        await self.cell_counter.stop()
        await self.imager.stop()
        self._set_up = False

    async def __aenter__(self) -> Workcell:
        await self.setup()
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
            "load",
            actor,
            container=container,
            volume_uL=volume_uL,
            viable_cells=liquid.viable,
        )

    def _holder_of(self, plate: Plate) -> tuple[Incubator | None, str]:
        for inc in self.incubators.values():
            if plate.get_root() is inc or plate.parent is inc.loading_tray:
                return inc, plate.parent.name if plate.parent else ""
        return None, plate.parent.name if plate.parent else ""

    async def store_plate(self, plate_name: str, incubator: str | None = None) -> None:
        """Move a plate from the deck (or a transfer station) into an incubator."""
        plate = self.plate(plate_name)
        inc = self.incubators[incubator] if incubator else self.incubator
        held_by, _ = self._holder_of(plate)
        if held_by is not None and plate.parent is not held_by.loading_tray:
            raise WorkcellError(f"plate {plate_name!r} is already in incubator {held_by.name!r}")
        if plate.parent is not None and plate.parent is not inc.loading_tray:
            self._home[plate_name] = plate.parent  # type: ignore[assignment]
        plate.unassign()
        inc.loading_tray.assign_child_resource(plate)
        await inc.take_in_plate("smallest")
        self._moved(plate, f"{inc.name}:{plate.parent.name if plate.parent else ''}")

    async def fetch_plate(self, plate_name: str, to_deck: bool = True) -> Plate:
        """Bring a plate out of its incubator: to its deck site, or left on the transfer station."""
        plate = self.plate(plate_name)
        inc, _ = self._holder_of(plate)
        if inc is None:
            raise WorkcellError(f"plate {plate_name!r} is not in an incubator")
        if plate.parent is not inc.loading_tray:
            await inc.fetch_plate_to_loading_tray(plate_name)
        if to_deck:
            home = self._home.get(plate_name)
            if home is None or home.resource is not None:
                raise WorkcellError(f"plate {plate_name!r} has no free deck site to return to")
            plate.unassign()
            home.assign_child_resource(plate)
            self._moved(plate, f"deck:{plate_name}")
        else:
            self._moved(plate, f"{inc.name}:transfer_station")
        return plate

    def _moved(self, plate: Plate, location: str) -> None:
        wells = [w.name for w in plate.get_all_items()]
        self.store.move_vessels(wells, location)
        self.event("plate_moved", "workcell", plate=plate.name, location=location)


def _rng(seed: int, device: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(device.encode())])


def _build_deck(config: WorkcellConfig) -> Deck:
    deck = labware.DECKS[config.deck.type]()
    for c in config.deck.carriers:
        carrier = labware.make("carrier", c.type, c.name)
        for s in c.sites:
            carrier[s.site] = labware.make("labware", s.labware, s.name)
        try:
            deck.assign_child_resource(carrier, rails=c.rails)
        except ValueError as err:
            raise ConfigError(f"deck.carriers {c.name!r}: {err}") from None
    return deck


def build_workcell(config: WorkcellConfig, store_path: str | Path = ":memory:") -> Workcell:
    """Assemble a workcell from its config. Devices are connected by ``Workcell.setup``."""
    set_tip_tracking(True)
    set_volume_tracking(True)
    clock: Clock = (
        SimClock(start=config.clock.start) if config.clock.kind == "simulated" else WallClock()
    )
    log = ActionLog()
    store = Store(store_path)
    deck = _build_deck(config)
    any_simulated = any(d.driver == "simulated" for d in config.devices.values())
    culture: CultureModel | None = None
    if any_simulated:
        try:
            params = CultureParameters(**config.culture.overrides)
        except Exception as err:
            raise ConfigError(f"culture.overrides: {err}") from None
        culture = CultureModel(clock.elapsed, params, seed=config.culture.seed)
    seed = config.culture.seed

    lh: LiquidHandler | None = None
    incubators: dict[str, Incubator] = {}
    counter: CellCounter | None = None
    imager: ConfluenceImager | None = None
    for name, dev in sorted(config.devices.items()):
        if isinstance(dev, SimulatedLiquidHandler):
            from simulators.liquid_handler import SimulatedSTARBackend

            assert culture is not None
            lh = LiquidHandler(SimulatedSTARBackend(name, culture, clock, log, dev.channels), deck)
        elif isinstance(dev, HamiltonStar):
            from pylabrobot.liquid_handling.backends import STARBackend

            lh = LiquidHandler(STARBackend(serial_number=dev.serial_number), deck)
        elif isinstance(dev, SimulatedIncubator | CytomatIncubator):
            incubators[name] = _incubator(name, dev, clock, log, seed)
        elif isinstance(dev, SimulatedCellCounter):
            from simulators.cell_counter import SimulatedCellCounterBackend

            assert culture is not None
            counter = CellCounter(
                name,
                SimulatedCellCounterBackend(
                    name,
                    culture,
                    clock,
                    log,
                    _rng(seed, name),
                    dev.noise.chamber_volume_uL,
                    dev.noise.instrument_cv,
                ),
            )
        elif isinstance(dev, SimulatedImager):
            from simulators.imager import SimulatedImagerBackend

            assert culture is not None
            imager = ConfluenceImager(
                name,
                SimulatedImagerBackend(
                    name, culture, clock, log, _rng(seed, name), dev.noise_points
                ),
            )
    assert lh is not None and counter is not None and imager is not None  # config checked
    return Workcell(config, clock, store, log, deck, lh, incubators, counter, imager, culture)


def _incubator(
    name: str, dev: SimulatedIncubator | CytomatIncubator, clock: Clock, log: ActionLog, seed: int
) -> Incubator:
    backend: Any
    if isinstance(dev, SimulatedIncubator):
        from simulators.incubator import SimulatedIncubatorBackend

        backend = SimulatedIncubatorBackend(
            name,
            clock,
            log,
            _rng(seed, name),
            dev.chamber.temperature_C,
            dev.chamber.co2_percent,
            dev.chamber.humidity_percent,
        )
    else:
        from pylabrobot.storage.cytomat import CytomatBackend

        backend = CytomatBackend(model=dev.model, port=dev.port)
    racks = [labware.make("rack", r.type, f"{name}_rack_{i + 1}") for i, r in enumerate(dev.racks)]
    # The incubator is not part of the deck model: plates reach it through its
    # transfer station, so its outer size and tray position are not used here.
    return Incubator(
        backend=backend,
        name=name,
        size_x=0,
        size_y=0,
        size_z=0,
        racks=racks,  # type: ignore[arg-type]
        loading_tray_location=Coordinate(0, 0, 0),
    )
