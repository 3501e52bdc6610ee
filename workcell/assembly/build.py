"""The one device factory: a validated config in, a ready ``Workcell`` out.

Swapping a simulator for hardware is a change of ``driver`` in the config; the
protocols see the same front ends either way (PyLabRobot's ``LiquidHandler``,
``Incubator`` and ``Imager``, our ``CellCounter`` and ``ConfluenceImager``). A
simulated device is simulated by the lab process (``simulators/lab``): the
workcell reaches its serial devices on their pseudo-terminals and the others over
the lab link, and the lab's clock is the workcell's clock. A config with every
device on a hardware driver builds no lab and imports no simulator.

Every device action goes through the workcell's action journal
(``workcell/assembly/journaled.py``), whichever the driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.resources import Coordinate, Deck, set_tip_tracking, set_volume_tracking
from pylabrobot.storage import Incubator

from devices.cell_counter import CellCounter, CellCounterBackend
from devices.imager import ConfluenceImager
from devices.incubator import CheckedCytomatBackend, IncubatorMonitor
from workcell import labware, ot_labware, plr_geometry
from workcell.actions import ActionLog
from workcell.assembly.config import (
    CytationImager,
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
from workcell.assembly.journaled import journal_devices
from workcell.assembly.lab import LabHandle, needs_lab, open_lab
from workcell.assembly.workcell import Workcell
from workcell.clock import Clock, SimClock, WallClock
from workcell.errors import ConfigError
from workcell.store import Store

__all__ = ["Workcell", "build_workcell", "check_buildable"]


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
    from simulators.culture import CultureParameters  # the culture model's bounds only

    try:
        CultureParameters(**config.culture.overrides)  # type: ignore[arg-type]
    except Exception as err:
        raise ConfigError(f"culture.overrides: {err}") from None


def build_workcell(
    config: WorkcellConfig,
    store_path: str | Path = ":memory:",
    lab: LabHandle | None = None,
) -> Workcell:
    """Assemble a workcell from its config. Devices are connected by ``Workcell.setup``.

    ``lab``: the simulated lab to use (a session passes its run folder's lab); without
    it a config with simulated devices gets a lab of its own in a temporary folder,
    stopped with the workcell.
    """
    plr_geometry.install()
    set_tip_tracking(True)
    set_volume_tracking(True)
    owns_lab = False
    if lab is None and needs_lab(config):
        lab = open_lab(config)
        owns_lab = True
    try:
        return _assemble(config, store_path, lab, owns_lab)
    except BaseException:
        if owns_lab and lab is not None:
            lab.close()
        raise


def _assemble(
    config: WorkcellConfig, store_path: str | Path, lab: LabHandle | None, owns_lab: bool
) -> Workcell:
    link = lab.link if lab is not None else None
    clock: Clock
    if link is not None:
        assert link.clock is not None
        clock = link.clock  # the lab owns time
    elif config.clock.kind == "simulated":
        clock = SimClock(start=config.clock.start)
    else:
        clock = WallClock()
    store = Store(store_path, durable=not config.simulated)
    log = ActionLog(sink=store.add_device_action)  # a driver's notes (retries) into the record
    deck = _build_deck(config)

    lh: LiquidHandler | None = None
    incubators: dict[str, Incubator] = {}
    monitors: dict[str, IncubatorMonitor] = {}
    counter: CellCounter | None = None
    imager: ConfluenceImager | None = None
    for name, dev in sorted(config.devices.items()):
        if isinstance(dev, SimulatedLiquidHandler):
            from devices.lab_star import LabSTARBackend

            assert link is not None
            lh = LiquidHandler(LabSTARBackend(name, link, dev.channels), deck)
        elif isinstance(dev, HamiltonStar):
            from pylabrobot.liquid_handling.backends import STARBackend

            lh = LiquidHandler(STARBackend(serial_number=dev.serial_number), deck)
        elif isinstance(dev, SimulatedOT2 | OpentronsOT2):
            lh = LiquidHandler(_ot2_backend(name, dev, lab), deck)
        elif isinstance(dev, IncubatorBase):
            incubators[name] = _incubator(name, dev, lab)
            monitors[name] = IncubatorMonitor(
                name,
                incubators[name].backend,
                dev.chamber.temperature_C,
                dev.chamber.co2_percent,
                dev.alarms,
            )
        elif isinstance(dev, SimulatedCellCounter | SimulatedSerialCellCounter | SerialCellCounter):
            counter = CellCounter(name, _counter_backend(name, dev, clock, log, lab))
        elif isinstance(dev, SimulatedImager | CytationImager):
            from pylabrobot.plate_reading import Imager

            backend: Any
            if isinstance(dev, SimulatedImager):
                from devices.lab_imager import LabImagerBackend

                assert link is not None
                backend = LabImagerBackend(name, link, dev.fidelity.mode)
            else:
                from devices.cytation import CheckedCytationBackend

                backend = CheckedCytationBackend(name, dev.device_id, dev.camera_serial_number)
            imager = ConfluenceImager(
                Imager(name, 0, 0, 0, backend=backend), dev.fields_per_well, dev.estimator
            )
    assert lh is not None and counter is not None and imager is not None  # config checked
    arm = None
    if link is not None:
        from devices.lab import LabArm

        arm = LabArm(link)
    wc = Workcell(
        config,
        clock,
        store,
        log,
        deck,
        lh,
        incubators,
        monitors,
        counter,
        imager,
        lab,
        arm,
        owns_lab,
    )
    journal_devices(wc)
    return wc


def _ot2_backend(name: str, dev: SimulatedOT2 | OpentronsOT2, lab: LabHandle | None) -> Any:
    """PyLabRobot's OT-2 back end, against a robot's IP, or the simulated lab's OT-2 API on
    127.0.0.1 (the robot server's HTTP API, simulated at the wire in the lab process)."""
    from devices.ot2 import CheckedOT2Backend

    pipettes: dict[str, str | None] = {"left": dev.pipettes.left, "right": dev.pipettes.right}
    if isinstance(dev, OpentronsOT2):
        return CheckedOT2Backend(name, dev.host, dev.port, pipettes)
    assert lab is not None
    return CheckedOT2Backend(name, "127.0.0.1", int(lab.link.ports[name]), pipettes)


def _counter_backend(
    name: str,
    dev: SimulatedCellCounter | SimulatedSerialCellCounter | SerialCellCounter,
    clock: Clock,
    log: ActionLog,
    lab: LabHandle | None,
) -> CellCounterBackend:
    from devices.cell_counter_serial import SerialCellCounterBackend

    def on_retry(command: str, reason: str) -> None:
        log.record(clock.now(), name, "retry", command=command, reason=reason)

    if isinstance(dev, SerialCellCounter):
        return SerialCellCounterBackend(name, dev.port, on_retry=on_retry)
    assert lab is not None
    if isinstance(dev, SimulatedCellCounter):
        from devices.lab_counter import LabCellCounterBackend

        return LabCellCounterBackend(name, lab.link)
    return SerialCellCounterBackend(name, lab.link.ports[name], on_retry=on_retry)


def _incubator(name: str, dev: IncubatorBase, lab: LabHandle | None) -> Incubator:
    racks = [labware.make("rack", r.type, f"{name}_rack_{i + 1}") for i, r in enumerate(dev.racks)]
    backend: Any
    if isinstance(dev, SimulatedIncubator):
        from devices.lab_incubator import LabIncubatorBackend

        assert lab is not None
        backend = LabIncubatorBackend(name, lab.link)
    elif isinstance(dev, SimulatedSerialIncubator):
        assert lab is not None
        backend = CheckedCytomatBackend(dev.model, lab.link.ports[name], name)
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
