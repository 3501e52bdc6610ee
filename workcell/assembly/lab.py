"""The simulated lab a config needs: its spec, and the process serving it.

A config whose devices are (partly) simulated needs a lab process
(``simulators/lab``). ``lab_spec`` says what it simulates: the simulated devices,
the deck's plates (each well's growth area from PyLabRobot's geometry) and
containers, the empty-vessel hotel's stock, the culture model and the clock.
``open_lab`` finds the lab serving a folder (a run folder's ``lab/``) or starts one
there, tied to this process: it ends when this process is gone and no other
controller is connected. Without a folder the lab lives in a temporary one, for a
throw-away dry-run.

A config with every device on a hardware driver has no lab spec, and nothing here
is started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pylabrobot.resources import Container, Plate, TipRack, TubeRack

from devices.lab import LabLink
from workcell import labware, ot_labware
from workcell.assembly.config import (
    SIMULATED_DRIVERS,
    IncubatorBase,
    SimulatedCellCounter,
    SimulatedImager,
    SimulatedIncubator,
    SimulatedLiquidHandler,
    SimulatedOT2,
    SimulatedSerialCellCounter,
    SimulatedSerialIncubator,
    WorkcellConfig,
)
from workcell.errors import ConfigError, DeviceError
from workcell.labware import growth_area_cm2

if TYPE_CHECKING:  # the simulators are imported only for a config that simulates something
    from simulators.lab.process import LabAddress, LabProcess
    from simulators.lab.spec import LabSpec

LAB_FOLDER = "lab"  # a run folder's lab lives here


def needs_lab(config: WorkcellConfig) -> bool:
    return any(d.driver in SIMULATED_DRIVERS for d in config.devices.values())


def _rack_sizes(dev: IncubatorBase, name: str) -> list[int]:
    racks = [labware.make("rack", r.type, f"{name}_rack_{i + 1}") for i, r in enumerate(dev.racks)]
    return [r.capacity for r in racks]  # type: ignore[attr-defined]


def lab_spec(config: WorkcellConfig) -> LabSpec | None:
    """What the lab of this config simulates; None when every device is hardware."""
    if not needs_lab(config):
        return None
    from simulators.lab.spec import (
        ContainerSpec,
        CounterSpec,
        HeaterFaultSpec,
        HotelSpec,
        ImagerSpec,
        IncubatorSpec,
        LabSpec,
        OT2LabwareSpec,
        OT2Spec,
        PlateSpec,
        StarSpec,
        WellSpec,
    )
    from simulators.serial_port import FaultRates

    spec = LabSpec(
        name=config.name,
        clock=config.clock.kind,
        start=config.clock.start,
        seed=config.culture.seed,
        culture_overrides=config.culture.overrides,
    )
    for name, dev in sorted(config.devices.items()):
        heaters = dev.heater_faults if isinstance(dev, SimulatedIncubator) else []
        if isinstance(dev, SimulatedLiquidHandler):
            spec.star = StarSpec(
                name=name, channels=dev.channels, tip_pickup_failure=dev.faults.tip_pickup_failure
            )
        elif isinstance(dev, SimulatedIncubator | SimulatedSerialIncubator):
            spec.incubators.append(
                IncubatorSpec(
                    name=name,
                    serial=isinstance(dev, SimulatedSerialIncubator),
                    model=dev.model if isinstance(dev, SimulatedSerialIncubator) else "C6000",
                    faults=dev.faults
                    if isinstance(dev, SimulatedSerialIncubator)
                    else FaultRates(),
                    capacity=sum(_rack_sizes(dev, name)),
                    rack_sizes=_rack_sizes(dev, name),
                    setpoint_C=dev.chamber.temperature_C,
                    co2_percent=dev.chamber.co2_percent,
                    humidity_percent=dev.chamber.humidity_percent,
                    heater_faults=[
                        HeaterFaultSpec(
                            start_s=f.start_day * 86400,
                            duration_s=f.hours * 3600,
                            delta_C=f.delta_C,
                        )
                        for f in heaters
                    ],
                )
            )
        elif isinstance(dev, SimulatedCellCounter | SimulatedSerialCellCounter):
            spec.counter = CounterSpec(
                name=name,
                serial=isinstance(dev, SimulatedSerialCellCounter),
                chamber_volume_uL=dev.noise.chamber_volume_uL,
                instrument_cv=dev.noise.instrument_cv,
                faults=dev.faults if isinstance(dev, SimulatedSerialCellCounter) else FaultRates(),
            )
        elif isinstance(dev, SimulatedImager):
            spec.imager = ImagerSpec(name=name, optics=dev.optics, error=dev.fidelity.error)
        elif isinstance(dev, SimulatedOT2):
            f = dev.faults
            spec.ot2 = OT2Spec(
                name=name,
                labware=[
                    OT2LabwareSpec(
                        slot=s.slot,
                        name=s.name,
                        load_name=s.labware,
                        tubes={t.position: t.name for t in s.tubes},
                    )
                    for s in config.deck.slots
                ],
                pipettes=dict(dev.pipettes.mounted()),
                failed_command=f.failed_command,
                dropped_connection=f.dropped_connection,
                slow_answer=f.slow_answer,
                slow_answer_s=f.slow_answer_s,
            )
    if config.inventory is not None:  # empty vessels in a hotel: physical stock of the lab
        hotel = config.inventory.hotel
        spec.hotel = HotelSpec(name=hotel.name, stock=dict(hotel.stock))
    for res in _deck_resources(config):
        if isinstance(res, Plate):
            wells = [
                WellSpec(name=w.name, area_cm2=growth_area_cm2(w), max_volume_uL=w.max_volume)
                for w in res.get_all_items()
            ]
            spec.plates.append(PlateSpec(name=res.name, wells=wells))
        elif isinstance(res, TubeRack):
            for tube in res.get_all_children():
                if isinstance(tube, Container):
                    spec.containers.append(
                        ContainerSpec(name=tube.name, max_volume_uL=tube.max_volume)
                    )
        elif isinstance(res, Container) and not isinstance(res, TipRack):
            spec.containers.append(ContainerSpec(name=res.name, max_volume_uL=res.max_volume))
    try:
        from simulators.culture import CultureParameters

        CultureParameters(**config.culture.overrides)
    except Exception as err:
        raise ConfigError(f"culture.overrides: {err}") from None
    return spec


def _deck_resources(config: WorkcellConfig) -> list[object]:
    """The labware the deck holds, as PyLabRobot resources (an OT-2's from Opentrons')."""
    if config.deck.type == "OTDeck":
        return [
            ot_labware.make(s.labware, s.name, {t.position: t.name for t in s.tubes})
            for s in config.deck.slots
        ]
    return [labware.make("labware", s.labware, s.name) for s in config.deck.sites()]


@dataclass
class LabHandle:
    """This controller's link to a lab, and the lab process if this controller started it."""

    link: LabLink
    folder: Path
    process: LabProcess | None = None
    temporary: bool = False

    def close(self) -> None:
        """Close the link; a lab we started stops if nobody else is connected."""
        with contextlib.suppress(DeviceError):
            if self.process is not None:
                self.link.call("lab", "lab.stop_if_idle")
        self.link.close()
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.process.proc.wait(timeout=5)
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


def open_lab(config: WorkcellConfig, folder: Path | None = None) -> LabHandle | None:
    """The lab of ``config`` serving ``folder`` (started, tied to this process, if none is)."""
    spec = lab_spec(config)
    if spec is None:
        return None
    from simulators.lab.process import LabStartError, ensure_lab

    temporary = folder is None
    where = Path(tempfile.mkdtemp(prefix="msc-lab-")) if folder is None else folder
    for attempt in range(ATTACH_ATTEMPTS):
        address: LabAddress | None = None
        process: LabProcess | None = None
        try:
            address, process = ensure_lab(where, spec, parent_pid=os.getpid())
            link = LabLink(address.host, address.port)
        except DeviceError as err:
            # a lab found running may be ending (its controller gone, nobody connected):
            # wait for it to go and start a new one on the same physical state
            found = address is not None and process is None
            if found and attempt + 1 < ATTACH_ATTEMPTS and _ends(address.pid):  # type: ignore[union-attr]
                continue
            if temporary:
                shutil.rmtree(where, ignore_errors=True)
            raise DeviceError("lab", "start", str(err)) from None
        except LabStartError as err:
            if temporary:
                shutil.rmtree(where, ignore_errors=True)
            raise DeviceError("lab", "start", str(err)) from None
        return LabHandle(link, where, process, temporary)
    raise AssertionError("unreachable")


ATTACH_ATTEMPTS = 3


def _ends(pid: int, timeout_s: float = 15.0) -> bool:
    """Whether process ``pid`` is gone within ``timeout_s`` (a lab on its way out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.1)
    return False


def connect_lab(folder: Path) -> LabLink:
    """A link to the lab already serving ``folder`` (e.g. one started by ``workcell lab``)."""
    from simulators.lab.process import running

    address = running(folder)
    if address is None:
        raise DeviceError("lab", "connect", f"no lab is serving {folder}")
    return LabLink(address.host, address.port)
