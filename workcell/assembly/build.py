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
from pylabrobot.resources import Coordinate, Deck, set_tip_tracking, set_volume_tracking
from pylabrobot.storage import Incubator

from devices.cell_counter import CellCounter, CellCounterBackend
from devices.imager import ConfluenceImager
from devices.incubator import CheckedCytomatBackend, IncubatorMonitor
from simulators.chamber import Chamber
from simulators.culture import CultureModel, CultureParameters
from simulators.world import SimWorld
from workcell import labware, ot_labware, plr_geometry
from workcell.actions import ActionLog
from workcell.assembly.config import (
    SIMULATED_DRIVERS,
    CytomatIncubator,
    HamiltonStar,
    IncubatorBase,
    OpentronsOT2,
    SerialCellCounter,
    SimulatedCellCounter,
    SimulatedImager,
    SimulatedIncubator,
    SimulatedLiquidHandler,
    SimulatedOT2,
    SimulatedSerialCellCounter,
    SimulatedSerialIncubator,
    WorkcellConfig,
)
from workcell.assembly.workcell import Workcell
from workcell.clock import Clock, SimClock, WallClock
from workcell.errors import ConfigError
from workcell.store import Store

__all__ = ["Workcell", "build_workcell", "check_buildable"]


def _rng(seed: int, device: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(device.encode())])


def build_deck(config: WorkcellConfig) -> Deck:
    """The deck alone, with its labware and nothing connected (a form reads its names)."""
    return _build_deck(config)


def _build_deck(config: WorkcellConfig) -> Deck:
    if config.deck.type == "OTDeck":
        from pylabrobot.resources.opentrons import OTDeck

        ot = OTDeck()
        for slot in config.deck.slots:
            tubes = {t.position: t.name for t in slot.tubes}
            ot.assign_child_at_slot(ot_labware.make(slot.labware, slot.name, tubes), slot.slot)
        return ot
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


def check_buildable(config: WorkcellConfig) -> None:
    """Everything ``build_workcell`` checks, without touching a device or a port.

    ``workcell check-config`` runs this: a config it passes builds.
    """
    _build_deck(config)
    try:
        CultureParameters(**config.culture.overrides)  # type: ignore[arg-type]
    except Exception as err:
        raise ConfigError(f"culture.overrides: {err}") from None


def build_workcell(config: WorkcellConfig, store_path: str | Path = ":memory:") -> Workcell:
    """Assemble a workcell from its config. Devices are connected by ``Workcell.setup``."""
    plr_geometry.install()
    set_tip_tracking(True)
    set_volume_tracking(True)
    clock: Clock = (
        SimClock(start=config.clock.start) if config.clock.kind == "simulated" else WallClock()
    )
    store = Store(store_path)
    log = ActionLog(sink=store.add_device_action)  # every device action into the record
    deck = _build_deck(config)
    seed = config.culture.seed
    world: SimWorld | None = None
    if any(d.driver in SIMULATED_DRIVERS for d in config.devices.values()):
        try:
            params = CultureParameters(**config.culture.overrides)
        except Exception as err:
            raise ConfigError(f"culture.overrides: {err}") from None
        world = SimWorld(CultureModel(clock.elapsed, params, seed=seed))

    lh: LiquidHandler | None = None
    incubators: dict[str, Incubator] = {}
    monitors: dict[str, IncubatorMonitor] = {}
    counter: CellCounter | None = None
    imager: ConfluenceImager | None = None
    try:
        for name, dev in sorted(config.devices.items()):
            if isinstance(dev, SimulatedLiquidHandler):
                from simulators.liquid_handler import SimulatedSTARBackend

                assert world is not None
                backend = SimulatedSTARBackend(
                    name,
                    world.culture,
                    clock,
                    log,
                    dev.channels,
                    tip_pickup_failure=dev.faults.tip_pickup_failure,
                    rng=_rng(seed, name),
                )
                lh = LiquidHandler(backend, deck)
            elif isinstance(dev, HamiltonStar):
                from pylabrobot.liquid_handling.backends import STARBackend

                lh = LiquidHandler(STARBackend(serial_number=dev.serial_number), deck)
            elif isinstance(dev, SimulatedOT2 | OpentronsOT2):
                lh = LiquidHandler(_ot2_backend(name, dev, config, clock, log, world), deck)
            elif isinstance(dev, IncubatorBase):
                incubators[name] = _incubator(name, dev, clock, log, seed, world)
                monitors[name] = IncubatorMonitor(
                    name,
                    incubators[name].backend,
                    dev.chamber.temperature_C,
                    dev.chamber.co2_percent,
                    dev.alarms,
                )
            elif isinstance(
                dev, SimulatedCellCounter | SimulatedSerialCellCounter | SerialCellCounter
            ):
                counter = CellCounter(name, _counter_backend(name, dev, clock, log, seed, world))
            elif isinstance(dev, SimulatedImager):
                from pylabrobot.plate_reading import Imager

                from simulators.imager import SimulatedImagerBackend

                assert world is not None
                backend = SimulatedImagerBackend(
                    name,
                    world.culture,
                    clock,
                    log,
                    _rng(seed, name),
                    dev.optics,
                    fidelity=dev.fidelity.mode,
                    error=_error_table(dev),
                )
                imager = ConfluenceImager(
                    Imager(name, 0, 0, 0, backend=backend), dev.fields_per_well, dev.estimator
                )
    except BaseException:
        if world is not None:
            world.stop()
        raise
    assert lh is not None and counter is not None and imager is not None  # config checked
    return Workcell(
        config, clock, store, log, deck, lh, incubators, monitors, counter, imager, world
    )


def _ot2_backend(
    name: str,
    dev: SimulatedOT2 | OpentronsOT2,
    config: WorkcellConfig,
    clock: Clock,
    log: ActionLog,
    world: SimWorld | None,
) -> Any:
    """PyLabRobot's OT-2 back end, against a robot's IP or the wire simulator on 127.0.0.1."""
    from devices.ot2 import CheckedOT2Backend

    pipettes: dict[str, str | None] = {"left": dev.pipettes.left, "right": dev.pipettes.right}
    if isinstance(dev, OpentronsOT2):
        return CheckedOT2Backend(name, dev.host, dev.port, pipettes)
    from simulators.ot2_api import DeckLabware, OT2ApiServer, OT2FaultPlan, OT2Robot

    assert world is not None
    f = dev.faults
    robot = OT2Robot(
        name,
        [
            DeckLabware(s.slot, s.name, s.labware, {t.position: t.name for t in s.tubes})
            for s in config.deck.slots
        ],
        dict(dev.pipettes.mounted()),
        world.culture,
        clock,
        log,
        OT2FaultPlan(
            failed_command=f.failed_command,
            dropped_connection=f.dropped_connection,
            slow_answer=f.slow_answer,
            slow_answer_s=f.slow_answer_s,
            seed=zlib.crc32(name.encode()) + config.culture.seed,
        ),
    )
    server = OT2ApiServer(robot).start()
    world.http_simulators.append(server)
    return CheckedOT2Backend(name, str(server.host), int(server.port), pipettes)


def _error_table(dev: SimulatedImager) -> Any:
    """The fast imaging path's error table: the config's, or the shipped measurement."""
    if dev.fidelity.error is not None:
        return dev.fidelity.error
    from simulators.confluence_error import EstimatorError
    from simulators.estimator_error_data import MEASURED

    return EstimatorError.model_validate(MEASURED)


def _counter_backend(
    name: str,
    dev: SimulatedCellCounter | SimulatedSerialCellCounter | SerialCellCounter,
    clock: Clock,
    log: ActionLog,
    seed: int,
    world: SimWorld | None,
) -> CellCounterBackend:
    from devices.cell_counter_serial import SerialCellCounterBackend

    def on_retry(command: str, reason: str) -> None:
        log.record(clock.now(), name, "retry", command=command, reason=reason)

    if isinstance(dev, SerialCellCounter):
        return SerialCellCounterBackend(name, dev.port, on_retry=on_retry)
    from simulators.cell_counter import (
        CellCounterSimulator,
        CounterInstrument,
        SimulatedCellCounterBackend,
    )
    from simulators.serial_port import FaultInjector

    assert world is not None
    instrument = CounterInstrument(
        world.culture, _rng(seed, name), dev.noise.chamber_volume_uL, dev.noise.instrument_cv
    )
    if isinstance(dev, SimulatedCellCounter):
        return SimulatedCellCounterBackend(name, instrument, clock, log)
    sim = CellCounterSimulator(
        name,
        instrument,
        clock if isinstance(clock, SimClock) else None,
        log,
        FaultInjector(dev.faults, seed + 1),
    )
    world.serial_simulators.append(sim)
    return SerialCellCounterBackend(name, sim.start(), on_retry=on_retry)


def _incubator(
    name: str,
    dev: IncubatorBase,
    clock: Clock,
    log: ActionLog,
    seed: int,
    world: SimWorld | None,
) -> Incubator:
    racks = [labware.make("rack", r.type, f"{name}_rack_{i + 1}") for i, r in enumerate(dev.racks)]
    backend: Any
    if isinstance(dev, SimulatedIncubator | SimulatedSerialIncubator):
        assert world is not None
        chamber = Chamber(
            name,
            clock.elapsed,
            _rng(seed, name),
            world.culture,
            setpoint_C=dev.chamber.temperature_C,
            co2_setpoint_percent=dev.chamber.co2_percent,
            humidity_percent=dev.chamber.humidity_percent,
            capacity=sum(r.capacity for r in racks),  # type: ignore[attr-defined]
        )
        world.chambers[name] = chamber
        if isinstance(dev, SimulatedIncubator):
            for f in dev.heater_faults:
                chamber.inject_excursion(f.delta_C, f.hours * 3600, start_s=f.start_day * 86400)
            from simulators.incubator import SimulatedIncubatorBackend

            backend = SimulatedIncubatorBackend(name, chamber, clock, log)
        else:
            from simulators.cytomat import CytomatSimulator
            from simulators.serial_port import FaultInjector

            sim = CytomatSimulator(
                name,
                chamber,
                clock if isinstance(clock, SimClock) else None,
                log,
                FaultInjector(dev.faults, seed),
                model=dev.model,
                rack_sizes=[r.capacity for r in racks],  # type: ignore[attr-defined]
            )
            world.serial_simulators.append(sim)
            backend = CheckedCytomatBackend(dev.model, sim.start(), name)
    else:
        assert isinstance(dev, CytomatIncubator)
        backend = CheckedCytomatBackend(dev.model, dev.port, name)
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
