"""The workcell config: one YAML file, validated by pydantic, loaded by one function.

It names each device with its driver and connection (``simulated`` or a real
port), the deck layout by PyLabRobot carrier and labware names, what the
reservoirs are loaded with, and the culture model for dry-runs. Every error names
the field it is about, so a lab user can fix the file without reading code.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.confluence import EstimatorParams
from devices.incubator import AlarmLimits
from simulators.brightfield import FieldOptics
from simulators.confluence_error import EstimatorError
from simulators.serial_port import FaultRates
from workcell import labware, ot_labware
from workcell.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).parents[1] / "data" / "sim.yaml"
# Names that become file names (device lock files), Prefect deployment names and
# Python identifiers in exports: letters, digits, '_' and '-', at most 64 characters.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
MAX_CONFIG_BYTES = 1_000_000


class Strict(BaseModel):
    """Base for config models: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Reagent(StrEnum):
    """What a reservoir holds; the culture model knows fresh medium feeds cells."""

    MEDIUM = "medium"
    PBS = "pbs"
    ENZYME = "enzyme"


class Contents(Strict):
    reagent: Reagent
    volume_mL: float = Field(gt=0, le=1000)


CytomatModel = Literal["C6000", "C6002", "C2C_425", "C2C_450_SHAKE", "C5C"]


class SiteConfig(Strict):
    """One piece of labware on one carrier site."""

    site: int = Field(ge=0, le=100, description="carrier site index, 0 at the front")
    name: str = Field(pattern=NAME_PATTERN)
    labware: str = Field(max_length=200, description="PyLabRobot labware factory name")
    contents: Contents | None = None

    @field_validator("labware")
    @classmethod
    def _labware_known(cls, v: str) -> str:
        if not labware.known("labware", v):
            raise ValueError(f"unknown labware {v!r}: not a PyLabRobot labware definition")
        return v

    @model_validator(mode="after")
    def _contents_fit(self) -> SiteConfig:
        if self.contents is None:
            return self
        from pylabrobot.resources import Container, Plate

        res = labware.make("labware", self.labware, "probe")
        if isinstance(res, Plate) or not isinstance(res, Container):
            raise ValueError(
                f"{self.name!r} is a {type(res).__name__} ({self.labware}); only a reservoir "
                "or a tube can be loaded with a reagent"
            )
        if self.contents.volume_mL * 1000 > res.max_volume + 1e-6:
            raise ValueError(
                f"{self.name!r} ({self.labware}) holds {res.max_volume / 1000:.1f} mL; "
                f"{self.contents.volume_mL:g} mL cannot be loaded into it"
            )
        return self


class CarrierConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    type: str = Field(max_length=200, description="PyLabRobot carrier factory name")
    rails: int = Field(ge=1, le=55)
    sites: list[SiteConfig] = Field(default_factory=list)

    @field_validator("type")
    @classmethod
    def _carrier_known(cls, v: str) -> str:
        if not labware.known("carrier", v):
            raise ValueError(f"unknown carrier {v!r}: not a PyLabRobot carrier definition")
        return v

    @model_validator(mode="after")
    def _sites_fit(self) -> CarrierConfig:
        n_sites = len(labware.make("carrier", self.type, "probe").sites)
        seen: dict[int, str] = {}
        for s in self.sites:
            if s.site >= n_sites:
                raise ValueError(
                    f"carrier {self.name!r} ({self.type}) has sites 0-{n_sites - 1}; "
                    f"{s.name!r} is on site {s.site}"
                )
            if s.site in seen:
                raise ValueError(
                    f"two resources on one deck spot: {seen[s.site]!r} and {s.name!r} "
                    f"are both on carrier {self.name!r} site {s.site}"
                )
            seen[s.site] = s.name
        return self


class TubeConfig(Strict):
    """A tube in an Opentrons tube rack, named for the protocols (``cell_suspension``)."""

    position: str = Field(pattern=r"^[A-H][0-9]{1,2}$", description="rack position, e.g. A1")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    contents: Contents | None = None

    @property
    def labware(self) -> str:
        return "tube"


class SlotConfig(Strict):
    """One piece of Opentrons labware in one OT-2 deck slot (1-11; 12 is the fixed trash)."""

    slot: int = Field(ge=1, le=11)
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    labware: str = Field(description="Opentrons load name (opentrons-shared-data)")
    contents: Contents | None = None
    tubes: list[TubeConfig] = Field(default_factory=list)

    @field_validator("labware")
    @classmethod
    def _labware_known(cls, v: str) -> str:
        if ot_labware.kind(v) is None:
            raise ValueError(
                f"unknown labware {v!r}: not an Opentrons plate, single-well reservoir, "
                "tip rack or tube rack definition"
            )
        return v

    @model_validator(mode="after")
    def _parts_fit(self) -> SlotConfig:
        kind = ot_labware.kind(self.labware)
        if self.tubes and kind != "tube_rack":
            raise ValueError(f"slot {self.slot} ({self.labware}) is not a tube rack; no tubes")
        if self.contents is not None and kind != "reservoir":
            raise ValueError(f"slot {self.slot} ({self.labware}): only reservoirs have contents")
        d = ot_labware.definition(self.labware)
        assert d is not None
        seen: set[str] = set()
        for t in self.tubes:
            if t.position not in d["wells"]:
                raise ValueError(f"tube {t.name!r}: {self.labware} has no position {t.position}")
            if t.position in seen:
                raise ValueError(f"two tubes in position {t.position} of {self.name!r}")
            seen.add(t.position)
        return self


class DeckConfig(Strict):
    """A STAR deck of carriers on rails, or the OT-2 deck of numbered slots."""

    type: Literal["STARLetDeck", "STARDeck", "OTDeck"] = "STARLetDeck"
    carriers: list[CarrierConfig] = Field(default_factory=list)
    slots: list[SlotConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_overlap(self) -> DeckConfig:
        if self.type == "OTDeck":
            return self._ot_slots_fit()
        if self.slots:
            raise ValueError(f"a {self.type} has carriers on rails, not numbered slots")
        max_rail = 30 if self.type == "STARLetDeck" else 55
        spans: list[tuple[int, int, str]] = []
        names: dict[str, str] = {}
        for c in self.carriers:
            width = labware.rails_width(labware.make("carrier", c.type, "probe"))
            first, last = c.rails, c.rails + width - 1
            if last > max_rail:
                raise ValueError(
                    f"carrier {c.name!r} needs rails {first}-{last}; {self.type} has 1-{max_rail}"
                )
            for f, la, other in spans:
                if first <= la and f <= last:
                    raise ValueError(
                        f"two resources on one deck spot: carrier {c.name!r} (rails {first}-{last})"
                        f" overlaps carrier {other!r} (rails {f}-{la})"
                    )
            spans.append((first, last, c.name))
            for n in [c.name, *(s.name for s in c.sites)]:
                if n in names:
                    raise ValueError(f"resource name {n!r} is used twice on the deck")
                names[n] = c.name
        return self

    def _ot_slots_fit(self) -> DeckConfig:
        if self.carriers:
            raise ValueError("an OTDeck has numbered slots, not carriers")
        slots: dict[int, str] = {}
        names: set[str] = set()
        for s in self.slots:
            if s.slot in slots:
                raise ValueError(
                    f"two resources on one deck spot: {slots[s.slot]!r} and {s.name!r} "
                    f"are both in slot {s.slot}"
                )
            slots[s.slot] = s.name
            for n in [s.name, *(t.name for t in s.tubes)]:
                if n in names:
                    raise ValueError(f"resource name {n!r} is used twice on the deck")
                names.add(n)
        return self

    def sites(self) -> list[SiteConfig | SlotConfig | TubeConfig]:
        """Every named resource the config places: carrier sites, or OT-2 slots and tubes."""
        out: list[SiteConfig | SlotConfig | TubeConfig] = []
        if self.type == "OTDeck":
            for slot in self.slots:
                out += [slot, *slot.tubes]
            return out
        out += [s for c in self.carriers for s in c.sites]
        return out

    def holders(self) -> list[str]:
        """Names of what holds labware (carriers), which no device may share."""
        return [c.name for c in self.carriers]


# --- devices ------------------------------------------------------------------


class LiquidHandlerFaults(Strict):
    """Faults of the simulated liquid handler, per tip pick-up."""

    tip_pickup_failure: float = Field(default=0.0, ge=0, le=0.5)


class SimulatedLiquidHandler(Strict):
    """PyLabRobot's STAR command generator without hardware, coupled to the culture model."""

    kind: Literal["liquid_handler"]
    driver: Literal["simulated"]
    channels: int = Field(default=8, ge=1, le=16)
    pipetting_channels: int = Field(
        default=1,
        ge=1,
        le=16,
        description="how many channels move one transfer together into a container wide "
        "enough for them (an OmniTray, a trough): 1 moves every transfer on channel 0",
    )
    faults: LiquidHandlerFaults = Field(default_factory=LiquidHandlerFaults)

    @model_validator(mode="after")
    def _channels_exist(self) -> SimulatedLiquidHandler:
        if self.pipetting_channels > self.channels:
            raise ValueError(
                f"pipetting_channels is {self.pipetting_channels}, but the liquid handler has "
                f"{self.channels} channels"
            )
        return self


class HamiltonStar(Strict):
    """A real Hamilton STAR/STARlet over USB through PyLabRobot's STARBackend."""

    kind: Literal["liquid_handler"]
    driver: Literal["hamilton-star"]
    serial_number: str | None = Field(default=None, min_length=1, max_length=64)
    pipetting_channels: int = Field(
        default=1,
        ge=1,
        le=16,
        description="how many channels move one transfer together into a container wide "
        "enough for them: 1 moves every transfer on channel 0",
    )


OT2Pipette = Literal["p20_single_gen2", "p300_single_gen2", "p1000_single_gen2"]


class OT2Pipettes(Strict):
    """The pipettes on the OT-2's two mounts (single-channel GEN2), or none."""

    left: OT2Pipette | None = None
    right: OT2Pipette | None = None

    @model_validator(mode="after")
    def _one_at_least(self) -> OT2Pipettes:
        if self.left is None and self.right is None:
            raise ValueError("an OT-2 needs a pipette on the left or the right mount")
        return self

    def mounted(self) -> list[tuple[str, str]]:
        """(mount, pipette) in PyLabRobot's channel order: left first."""
        return [(m, p) for m, p in (("left", self.left), ("right", self.right)) if p is not None]


class OT2FaultRates(Strict):
    """Faults of the simulated OT-2's HTTP API, per run command (drills and tests)."""

    failed_command: float = Field(default=0.0, ge=0, le=0.5)
    dropped_connection: float = Field(default=0.0, ge=0, le=0.5)
    slow_answer: float = Field(default=0.0, ge=0, le=1)
    slow_answer_s: float = Field(default=1.0, ge=0, le=60)


class OT2Base(Strict):
    kind: Literal["liquid_handler"]
    pipettes: OT2Pipettes
    plate_transfer: Literal["operator", "arm"] = Field(
        default="operator",
        description="who carries plates between the deck and the incubator (the OT-2 has no "
        "gripper)",
    )


class SimulatedOT2(OT2Base):
    """The OT-2's HTTP API simulated at the wire on 127.0.0.1, driven by PyLabRobot's back end."""

    driver: Literal["simulated-ot2"]
    faults: OT2FaultRates = Field(default_factory=OT2FaultRates)


class OpentronsOT2(OT2Base):
    """A real OT-2 on the network, through PyLabRobot's OpentronsOT2Backend (robot-server API)."""

    driver: Literal["opentrons-ot2"]
    host: str = Field(min_length=1, description="the robot's IP address or host name")
    port: int = Field(default=31950, ge=1, le=65535)


class RackConfig(Strict):
    type: str = Field(
        default="cytomat_rack_23mm_21", max_length=200, description="PyLabRobot Cytomat rack"
    )

    @field_validator("type")
    @classmethod
    def _rack_known(cls, v: str) -> str:
        if not labware.known("rack", v):
            raise ValueError(f"unknown incubator rack {v!r}")
        return v


class ChamberConfig(Strict):
    """Set points of the incubator chamber."""

    temperature_C: float = Field(default=37.0, ge=20, le=45)
    co2_percent: float = Field(default=5.0, ge=0, le=20)
    humidity_percent: float = Field(default=95.0, ge=0, le=100)


class IncubatorBase(Strict):
    kind: Literal["incubator"]
    racks: list[RackConfig] = Field(
        default_factory=lambda: [RackConfig()], min_length=1, max_length=20
    )
    chamber: ChamberConfig = Field(default_factory=ChamberConfig)
    alarms: AlarmLimits = Field(default_factory=AlarmLimits)


class HeaterFault(Strict):
    """A scheduled heater fault of a simulated chamber (fault campaigns, alarm drills)."""

    start_day: float = Field(ge=0)
    hours: float = Field(gt=0, le=240)
    delta_C: float = Field(ge=-20, le=10)


class SimulatedIncubator(IncubatorBase):
    """In-process simulated incubator: fast dry-runs."""

    driver: Literal["simulated"]
    heater_faults: list[HeaterFault] = Field(default_factory=list, max_length=100)


class SimulatedSerialIncubator(IncubatorBase):
    """A simulated Cytomat on a pseudo-terminal, driven by PyLabRobot's real Cytomat driver."""

    driver: Literal["simulated-serial"]
    model: CytomatModel = "C6000"
    faults: FaultRates = Field(default_factory=FaultRates)


class CytomatIncubator(IncubatorBase):
    """A Thermo/Heraeus Cytomat on a serial port, through PyLabRobot's CytomatBackend."""

    driver: Literal["cytomat"]
    port: str = Field(min_length=1, max_length=256)
    model: CytomatModel = "C6000"


class CounterNoise(Strict):
    """How a simulated counter scatters: counting statistics plus instrument CV."""

    chamber_volume_uL: float = Field(default=2.0, gt=0, le=10)
    instrument_cv: float = Field(default=0.03, ge=0, le=0.5)


class SimulatedCellCounter(Strict):
    """In-process simulated counter: fast dry-runs."""

    kind: Literal["cell_counter"]
    driver: Literal["simulated"]
    noise: CounterNoise = Field(default_factory=CounterNoise)


class SimulatedSerialCellCounter(Strict):
    """The counter simulator on a pseudo-terminal, driven by the real serial driver."""

    kind: Literal["cell_counter"]
    driver: Literal["simulated-serial"]
    noise: CounterNoise = Field(default_factory=CounterNoise)
    faults: FaultRates = Field(default_factory=FaultRates)


class SerialCellCounter(Strict):
    """A counter speaking docs/instruments/cell-counter.md on a serial port."""

    kind: Literal["cell_counter"]
    driver: Literal["serial"]
    port: str = Field(min_length=1, max_length=256)


class ImagingFidelity(Strict):
    """How a simulated imager arrives at confluence, chosen per run.

    ``rendered`` draws brightfield fields from the culture model and measures them
    with the real estimator (what checks the estimator; ~20 ms a field). ``fast``
    skips the pixels: each field's estimate is the true confluence plus an error
    drawn from the estimator's error measured on rendered fields
    (``simulators/confluence_error.py``).
    """

    mode: Literal["rendered", "fast"] = "rendered"
    error: EstimatorError | None = Field(
        default=None,
        description="the fast path's error table (default: the one measured with the "
        "default optics and estimator, simulators/estimator_error_data.py)",
    )


class SimulatedImager(Strict):
    """Renders brightfield fields from the culture model; the real estimator measures them."""

    kind: Literal["imager"]
    driver: Literal["simulated"]
    fields_per_well: int = Field(default=4, ge=1, le=64)
    optics: FieldOptics = Field(default_factory=FieldOptics)
    estimator: EstimatorParams = Field(default_factory=EstimatorParams)
    fidelity: ImagingFidelity = Field(default_factory=ImagingFidelity)

    @model_validator(mode="after")
    def _fast_path_measured(self) -> SimulatedImager:
        custom = self.optics != FieldOptics() or self.estimator != EstimatorParams()
        if self.fidelity.mode == "fast" and self.fidelity.error is None and custom:
            raise ValueError(
                "fidelity: the fast path's shipped error table was measured with the default "
                "optics and estimator; measure one for these (python -m "
                "simulators.confluence_error) and give it as fidelity.error"
            )
        return self


class CytationImager(Strict):
    """An Agilent BioTek Cytation over USB (FTDI) with its camera, through PyLabRobot's
    ``CytationBackend``; the same confluence estimator measures its brightfield fields."""

    kind: Literal["imager"]
    driver: Literal["cytation"]
    device_id: str | None = Field(default=None, description="FTDI serial of the reader")
    camera_serial_number: str | None = Field(default=None, description="the camera's serial")
    fields_per_well: int = Field(default=4, ge=1, le=64)
    estimator: EstimatorParams = Field(default_factory=EstimatorParams)


LiquidHandlerConfig = Annotated[
    SimulatedLiquidHandler | HamiltonStar | SimulatedOT2 | OpentronsOT2,
    Field(discriminator="driver"),
]
IncubatorConfig = Annotated[
    SimulatedIncubator | SimulatedSerialIncubator | CytomatIncubator, Field(discriminator="driver")
]
CellCounterConfig = Annotated[
    SimulatedCellCounter | SimulatedSerialCellCounter | SerialCellCounter,
    Field(discriminator="driver"),
]
ImagerConfig = Annotated[SimulatedImager | CytationImager, Field(discriminator="driver")]
DeviceConfig = Annotated[
    LiquidHandlerConfig | IncubatorConfig | CellCounterConfig | ImagerConfig,
    Field(discriminator="kind"),
]

REQUIRED_KINDS = ("liquid_handler", "incubator", "cell_counter", "imager")
SIMULATED_DRIVERS = ("simulated", "simulated-serial", "simulated-ot2")


class CultureConfig(Strict):
    """Which culture model a dry-run uses, and its seed for reproducible noise."""

    model: Literal["bm-msc"] = "bm-msc"
    seed: int = 42
    overrides: dict[str, float] = Field(
        default_factory=dict, description="culture parameters to change, by name"
    )

    @field_validator("overrides")
    @classmethod
    def _known_parameters(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            return v
        # the culture model is imported only to check overrides (a hardware config has none)
        from simulators.culture import CultureParameters

        try:
            CultureParameters(**v)  # type: ignore[arg-type]
        except ValidationError as err:
            raise ValueError(
                "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
            ) from None
        return v


def _export_pipettes() -> OT2Pipettes:
    return OT2Pipettes(left="p300_single_gen2", right="p1000_single_gen2")


class OpentronsConfig(Strict):
    """The OT-2 a protocol of a STAR workcell is exported for: its pipettes by mount.
    (An OT-2 workcell exports for its own liquid handler's pipettes.)"""

    pipettes: OT2Pipettes = Field(
        default_factory=_export_pipettes,
        description="mount -> pipette; each tip's work goes to the one whose range covers it",
    )


class ClockConfig(Strict):
    kind: Literal["simulated", "wall"] = "simulated"
    start: datetime | None = Field(
        default=None, description="simulated start time, with its time zone (e.g. ...Z)"
    )

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.utcoffset() is None:
            raise ValueError(
                f"{v.isoformat()} has no time zone; write it as UTC, e.g. {v.isoformat()}Z"
            )
        return v


class HotelConfig(Strict):
    """Empty culture vessels waiting in a plate hotel or stacker (a BenchCel, a Cytomat hotel).

    ``stock`` counts the empty vessels loaded, per PyLabRobot labware definition
    (a 6-well plate, a single-well SBS plate such as the Nunc OmniTray,
    ``thermo_nunc_1_troughplate_90000uL_Fb_omnitray``, ...). Vessels drawn from it
    are created as that labware; an operator refills it (a housekeeping chore).
    """

    name: str = Field(default="hotel", pattern=NAME_PATTERN)
    stock: dict[str, int] = Field(min_length=1, description="empty vessels per labware")

    @field_validator("stock")
    @classmethod
    def _plates(cls, v: dict[str, int]) -> dict[str, int]:
        for name, count in v.items():
            if len(name) > 200 or not labware.is_plate(name):
                raise ValueError(f"{name!r} is not a PyLabRobot plate definition")
            if not 0 <= count <= 100_000:
                raise ValueError(f"{name!r}: {count} vessels is not a count between 0 and 100000")
        return v


class WorkingPosition(Strict):
    """An empty carrier site on the deck where a vessel sits while it is worked on."""

    carrier: str = Field(pattern=NAME_PATTERN)
    site: int = Field(ge=0, le=100)


class SuppliesConfig(Strict):
    """Consumables on hand for a campaign, beyond what sits on the deck.

    The housekeeping chores refill the deck's troughs and replace its tip racks from
    this stock. Left empty, a consumable is restocked without limit (an operator
    brings more); given, the capacity plan refuses a dose that needs more.
    """

    medium_L: float | None = Field(default=None, gt=0, le=10_000, description="medium on hand")
    pbs_L: float | None = Field(default=None, gt=0, le=10_000, description="PBS on hand")
    enzyme_L: float | None = Field(default=None, gt=0, le=10_000, description="enzyme on hand")
    tips: int | None = Field(default=None, ge=0, le=10_000_000, description="tips on hand")


class InventoryConfig(Strict):
    """Culture vessels as inventory, not deck sites.

    Vessels are drawn empty from the hotel, live in the incubators between
    operations (capacity: the incubators' racks) and visit the deck's working
    positions for each operation. ``supplies``: the consumables a campaign may use.
    """

    hotel: HotelConfig
    working_positions: list[WorkingPosition] = Field(min_length=1)
    supplies: SuppliesConfig = Field(default_factory=SuppliesConfig)


class WorkcellConfig(Strict):
    """A whole workcell: devices, deck, clock and (for dry-runs) the culture model."""

    name: str = Field(default="workcell", pattern=NAME_PATTERN)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    culture: CultureConfig = Field(default_factory=CultureConfig)
    devices: dict[str, DeviceConfig]
    deck: DeckConfig = Field(default_factory=DeckConfig)
    shared_devices: dict[str, str] = Field(
        default_factory=dict,
        description="devices this workcell shares with others in the facility: device name "
        "-> the facility-wide name every sharing workcell gives it (one user at a time)",
    )
    opentrons: OpentronsConfig = Field(default_factory=OpentronsConfig)
    inventory: InventoryConfig | None = Field(
        default=None, description="culture vessels from a hotel, kept in the incubators"
    )

    @model_validator(mode="after")
    def _working_positions_free(self) -> WorkcellConfig:
        if self.inventory is None:
            return self
        carriers = {c.name: c for c in self.deck.carriers}
        seen: set[tuple[str, int]] = set()
        for i, pos in enumerate(self.inventory.working_positions):
            where = f"inventory.working_positions.{i}"
            carrier = carriers.get(pos.carrier)
            if carrier is None:
                raise ValueError(f"{where}: no carrier {pos.carrier!r} on the deck")
            n_sites = len(labware.make("carrier", carrier.type, "probe").sites)
            if pos.site >= n_sites:
                raise ValueError(
                    f"{where}: carrier {pos.carrier!r} has sites 0-{n_sites - 1}, not {pos.site}"
                )
            taken = [s.name for s in carrier.sites if s.site == pos.site]
            if taken:
                raise ValueError(
                    f"{where}: carrier {pos.carrier!r} site {pos.site} holds {taken[0]!r}; "
                    "a working position must be an empty site"
                )
            if (pos.carrier, pos.site) in seen:
                raise ValueError(f"{where}: {pos.carrier!r} site {pos.site} is listed twice")
            seen.add((pos.carrier, pos.site))
        return self

    @model_validator(mode="after")
    def _devices_consistent(self) -> WorkcellConfig:
        for name in self.devices:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(
                    f"devices: {name[:80]!r} is not a device name: use letters, digits, '_' "
                    "and '-', starting with a letter or digit, at most 64 characters"
                )
        for device, shared in self.shared_devices.items():
            if device not in self.devices:
                raise ValueError(f"shared_devices.{device}: no such device in devices")
            if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]{0,63}", shared):
                raise ValueError(
                    f"shared_devices.{device}: {shared[:80]!r} must be lowercase letters, "
                    "digits, '-' or '_', at most 64 characters"
                )
        for kind in REQUIRED_KINDS:
            names = [n for n, d in self.devices.items() if d.kind == kind]
            if not names:
                raise ValueError(f"devices: no {kind} configured; a workcell needs one")
            if len(names) > 1 and kind != "incubator":
                raise ValueError(f"devices: {len(names)} devices of kind {kind}: {names}")
        ports: dict[str, str] = {}
        for name, dev in self.devices.items():
            port = getattr(dev, "port", None)
            if port is None:
                continue
            if port in ports:
                raise ValueError(
                    f"devices.{name}.port: two devices on one port: {ports[port]!r} and "
                    f"{name!r} both use {port}"
                )
            ports[port] = name
        deck_names = {s.name for s in self.deck.sites()} | set(self.deck.holders())
        for name in self.devices:
            if name in deck_names:
                raise ValueError(f"devices.{name}: the name is also used on the deck")
        self._deck_fits_liquid_handler()
        return self

    def _deck_fits_liquid_handler(self) -> None:
        name, lh = next((n, d) for n, d in self.devices.items() if d.kind == "liquid_handler")
        is_ot2 = isinstance(lh, OT2Base)
        if is_ot2 != (self.deck.type == "OTDeck"):
            raise ValueError(
                f"devices.{name}: a {lh.driver} liquid handler cannot use a {self.deck.type}"
            )
        if not is_ot2:
            return
        assert isinstance(lh, OT2Base)
        tips = {
            ot_labware.tip_volume_uL(s.labware)
            for s in self.deck.slots
            if ot_labware.kind(s.labware) == "tip_rack"
        }
        for mount, pipette in lh.pipettes.mounted():
            if not tips & set(ot_labware.TIP_VOLUMES[pipette]):
                fits = "/".join(f"{v:g}" for v in ot_labware.TIP_VOLUMES[pipette])
                raise ValueError(
                    f"devices.{name}.pipettes.{mount}: no tip rack on the deck for the "
                    f"{pipette} (it takes {fits} uL tips)"
                )

    @property
    def simulated(self) -> bool:
        """True when every device is a simulator, i.e. this is a dry-run workcell."""
        return all(d.driver in SIMULATED_DRIVERS for d in self.devices.values())


_KINDS = set(REQUIRED_KINDS)
_DRIVERS = {
    "simulated",
    "simulated-serial",
    "simulated-ot2",
    "hamilton-star",
    "opentrons-ot2",
    "cytomat",
    "serial",
    "cytation",
}


def _location(loc: tuple[int | str, ...]) -> str:
    """A dotted field path, without the union tags pydantic inserts for devices."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "devices":
        rest = parts[2:]
        if rest and rest[0] in _KINDS:
            rest = rest[1:]
        if rest and rest[0] in _DRIVERS:
            rest = rest[1:]
        parts = parts[:2] + rest
    return ".".join(str(p) for p in parts)


def _format(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        where = _location(e["loc"]) or "(top level)"
        lines.append(f"  {where[:120]}: {msg[:500]}")
    return f"invalid workcell config {source}:\n" + "\n".join(lines)


def parse_config(data: Any, source: str = "<data>") -> WorkcellConfig:
    """Validate already-parsed YAML/JSON data; raises ConfigError naming each bad field."""
    try:
        return WorkcellConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error, not a silent win."""


class _DuplicateKey(Exception):
    pass


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        try:
            hash(key)
        except TypeError:
            continue  # the safe loader reports unhashable keys itself
        if key in seen:
            raise _DuplicateKey(
                f"the key {str(key)[:80]!r} is given twice (lines {seen[key] + 1} and "
                f"{key_node.start_mark.line + 1}); each key once, please"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping,  # type: ignore[arg-type]
)


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file as data, every way it can be unreadable as one ConfigError line."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{what} {path} is larger than {MAX_CONFIG_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {err.start}: {err.reason})"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise ConfigError(
            f"{what} {path} is not valid YAML: {' '.join(str(err).split())}"
        ) from None
    except _DuplicateKey as err:
        raise ConfigError(f"{what} {path}: {err}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply") from None


def load_config(path: str | Path | None = None) -> WorkcellConfig:
    """The one config loader: a YAML file, or the embedded simulated workcell."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    return parse_config(read_yaml(path, "workcell config"), str(path))
