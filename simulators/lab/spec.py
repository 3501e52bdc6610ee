"""What a simulated lab holds: its devices, its labware and its biology, as data.

The controller's config (``workcell/assembly/config.py``) says which devices are
simulated; ``workcell.assembly.lab.lab_spec`` turns it into this spec, which the lab
keeps in its state folder. The lab needs no PyLabRobot deck: it knows each plate's
wells (name, growth area, capacity) and each other container by name, because a
physical lab is made of things, not of the controller's model of them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.brightfield import FieldOptics
from simulators.confluence_error import EstimatorError
from simulators.serial_port import FaultRates


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WellSpec(Strict):
    name: str
    area_cm2: float = Field(gt=0)
    max_volume_uL: float = Field(gt=0)


class PlateSpec(Strict):
    name: str
    wells: list[WellSpec]


class ContainerSpec(Strict):
    name: str
    max_volume_uL: float = Field(gt=0)


class StarSpec(Strict):
    name: str
    channels: int = Field(ge=1, le=16)
    tip_pickup_failure: float = Field(default=0.0, ge=0, le=0.5)


class HeaterFaultSpec(Strict):
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    delta_C: float


class IncubatorSpec(Strict):
    name: str
    serial: bool = False  # a Cytomat answering on a pseudo-terminal, else the lab link
    model: str = "C6000"
    faults: FaultRates = Field(default_factory=FaultRates)
    capacity: int = Field(ge=1)
    rack_sizes: list[int] = Field(default_factory=list)  # sites per rack (C2C addresses)
    setpoint_C: float = 37.0
    co2_percent: float = 5.0
    humidity_percent: float = 95.0
    heater_faults: list[HeaterFaultSpec] = Field(default_factory=list)


class CounterSpec(Strict):
    name: str
    serial: bool = False
    chamber_volume_uL: float = 2.0
    instrument_cv: float = 0.03
    faults: FaultRates = Field(default_factory=FaultRates)


class ImagerSpec(Strict):
    """The simulated imager. ``error``: the fast path's estimator error table (None: the
    shipped one); whether a plate is rendered or measured fast is the controller's
    choice per request (its config's ``fidelity.mode``)."""

    name: str
    optics: FieldOptics = Field(default_factory=FieldOptics)
    error: EstimatorError | None = None


class HotelSpec(Strict):
    """An empty-vessel hotel or stacker: the empty vessels it was loaded with, per labware.

    The vessels drawn from it become the lab's plates (their wells named by the
    controller, who draws them as PyLabRobot labware); the stock left and the vessels
    out are the lab's physical state, kept on disk with the rest.
    """

    name: str
    stock: dict[str, int]


class OT2LabwareSpec(Strict):
    slot: int = Field(ge=1, le=12)
    name: str
    load_name: str
    tubes: dict[str, str] = Field(default_factory=dict)


class OT2Spec(Strict):
    """An OT-2 whose robot server's HTTP API the lab serves on 127.0.0.1."""

    name: str
    labware: list[OT2LabwareSpec]
    pipettes: dict[str, str]  # mount -> pipette name
    failed_command: float = 0.0
    dropped_connection: float = 0.0
    slow_answer: float = 0.0
    slow_answer_s: float = 1.0


class LabSpec(Strict):
    """One simulated lab: the devices it simulates, the labware in it, the cells."""

    name: str
    clock: Literal["simulated", "wall"] = "simulated"
    start: datetime | None = None
    seed: int = 42
    culture_overrides: dict[str, float] = Field(default_factory=dict)
    star: StarSpec | None = None
    ot2: OT2Spec | None = None
    incubators: list[IncubatorSpec] = Field(default_factory=list)
    counter: CounterSpec | None = None
    imager: ImagerSpec | None = None
    plates: list[PlateSpec] = Field(default_factory=list)
    hotel: HotelSpec | None = None
    containers: list[ContainerSpec] = Field(default_factory=list)

    def fingerprint(self) -> str:
        """Identifies the lab a config describes: a running lab must match it."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    def devices(self) -> list[str]:
        names = [self.star.name] if self.star else []
        names += [self.ot2.name] if self.ot2 else []
        names += [i.name for i in self.incubators]
        names += [self.counter.name] if self.counter else []
        names += [self.imager.name] if self.imager else []
        return names
