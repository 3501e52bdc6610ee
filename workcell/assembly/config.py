"""The workcell config: one YAML file, validated by pydantic, loaded by one function.

It names each device with its driver and connection (``simulated`` or a real
port), the deck layout by PyLabRobot carrier and labware names, what the
reservoirs are loaded with, and the culture model for dry-runs. Every error names
the field it is about, so a lab user can fix the file without reading code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.confluence import EstimatorParams
from devices.incubator import AlarmLimits
from simulators.brightfield import FieldOptics
from simulators.serial_port import FaultRates
from workcell import labware
from workcell.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).parents[1] / "data" / "sim.yaml"


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

    site: int = Field(ge=0, description="carrier site index, 0 at the front")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    labware: str = Field(description="PyLabRobot labware factory name")
    contents: Contents | None = None

    @field_validator("labware")
    @classmethod
    def _labware_known(cls, v: str) -> str:
        if not labware.known("labware", v):
            raise ValueError(f"unknown labware {v!r}: not a PyLabRobot labware definition")
        return v


class CarrierConfig(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    type: str = Field(description="PyLabRobot carrier factory name")
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


class DeckConfig(Strict):
    type: Literal["STARLetDeck", "STARDeck"] = "STARLetDeck"
    carriers: list[CarrierConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_overlap(self) -> DeckConfig:
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

    def sites(self) -> list[SiteConfig]:
        return [s for c in self.carriers for s in c.sites]


# --- devices ------------------------------------------------------------------


class LiquidHandlerFaults(Strict):
    """Faults of the simulated liquid handler, per tip pick-up."""

    tip_pickup_failure: float = Field(default=0.0, ge=0, le=0.5)


class SimulatedLiquidHandler(Strict):
    """PyLabRobot's STAR command generator without hardware, coupled to the culture model."""

    kind: Literal["liquid_handler"]
    driver: Literal["simulated"]
    channels: int = Field(default=8, ge=1, le=16)
    faults: LiquidHandlerFaults = Field(default_factory=LiquidHandlerFaults)


class HamiltonStar(Strict):
    """A real Hamilton STAR/STARlet over USB through PyLabRobot's STARBackend."""

    kind: Literal["liquid_handler"]
    driver: Literal["hamilton-star"]
    serial_number: str | None = None


class RackConfig(Strict):
    type: str = Field(default="cytomat_rack_23mm_21", description="PyLabRobot Cytomat rack")

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
    racks: list[RackConfig] = Field(default_factory=lambda: [RackConfig()], min_length=1)
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
    heater_faults: list[HeaterFault] = Field(default_factory=list)


class SimulatedSerialIncubator(IncubatorBase):
    """A simulated Cytomat on a pseudo-terminal, driven by PyLabRobot's real Cytomat driver."""

    driver: Literal["simulated-serial"]
    model: CytomatModel = "C6000"
    faults: FaultRates = Field(default_factory=FaultRates)


class CytomatIncubator(IncubatorBase):
    """A Thermo/Heraeus Cytomat on a serial port, through PyLabRobot's CytomatBackend."""

    driver: Literal["cytomat"]
    port: str = Field(min_length=1)
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
    port: str = Field(min_length=1)


class SimulatedImager(Strict):
    """Renders brightfield fields from the culture model; the real estimator measures them."""

    kind: Literal["imager"]
    driver: Literal["simulated"]
    fields_per_well: int = Field(default=4, ge=1, le=64)
    optics: FieldOptics = Field(default_factory=FieldOptics)
    estimator: EstimatorParams = Field(default_factory=EstimatorParams)


LiquidHandlerConfig = Annotated[
    SimulatedLiquidHandler | HamiltonStar, Field(discriminator="driver")
]
IncubatorConfig = Annotated[
    SimulatedIncubator | SimulatedSerialIncubator | CytomatIncubator, Field(discriminator="driver")
]
CellCounterConfig = Annotated[
    SimulatedCellCounter | SimulatedSerialCellCounter | SerialCellCounter,
    Field(discriminator="driver"),
]
ImagerConfig = Annotated[SimulatedImager, Field(discriminator="driver")]
DeviceConfig = Annotated[
    LiquidHandlerConfig | IncubatorConfig | CellCounterConfig | ImagerConfig,
    Field(discriminator="kind"),
]

REQUIRED_KINDS = ("liquid_handler", "incubator", "cell_counter", "imager")
SIMULATED_DRIVERS = ("simulated", "simulated-serial")


class CultureConfig(Strict):
    """Which culture model a dry-run uses, and its seed for reproducible noise."""

    model: Literal["bm-msc"] = "bm-msc"
    seed: int = 42
    overrides: dict[str, float] = Field(
        default_factory=dict, description="culture parameters to change, by name"
    )


class ClockConfig(Strict):
    kind: Literal["simulated", "wall"] = "simulated"
    start: datetime | None = Field(default=None, description="simulated start time (UTC)")


class WorkcellConfig(Strict):
    """A whole workcell: devices, deck, clock and (for dry-runs) the culture model."""

    name: str = Field(default="workcell", min_length=1)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    culture: CultureConfig = Field(default_factory=CultureConfig)
    devices: dict[str, DeviceConfig]
    deck: DeckConfig = Field(default_factory=DeckConfig)

    @model_validator(mode="after")
    def _devices_consistent(self) -> WorkcellConfig:
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
        deck_names = {s.name for s in self.deck.sites()} | {c.name for c in self.deck.carriers}
        for name in self.devices:
            if name in deck_names:
                raise ValueError(f"devices.{name}: the name is also used on the deck")
        return self

    @property
    def simulated(self) -> bool:
        """True when every device is a simulator, i.e. this is a dry-run workcell."""
        return all(d.driver in SIMULATED_DRIVERS for d in self.devices.values())


_KINDS = set(REQUIRED_KINDS)
_DRIVERS = {"simulated", "simulated-serial", "hamilton-star", "cytomat", "serial"}


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
        lines.append(f"  {_location(e['loc']) or '(top level)'}: {msg}")
    return f"invalid workcell config {source}:\n" + "\n".join(lines)


def parse_config(data: Any, source: str = "<data>") -> WorkcellConfig:
    """Validate already-parsed YAML/JSON data; raises ConfigError naming each bad field."""
    try:
        return WorkcellConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None


def load_config(path: str | Path | None = None) -> WorkcellConfig:
    """The one config loader: a YAML file, or the embedded simulated workcell."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read workcell config {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"workcell config {path} is not valid YAML: {err}") from None
    return parse_config(data, str(path))
