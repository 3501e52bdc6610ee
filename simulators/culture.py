"""Culture model v1: bone-marrow MSC growing on tissue-culture plastic.

Per vessel the model holds adherent viable cells, the medium (with floating viable
and dead cells and what is left of its nutrients) and the growth area. It moves
through simulated time in steps of at most half an hour:

* **attachment**: seeded cells attach with a plating efficiency over a few hours;
  those that do not attach die in suspension (anoikis);
* **lag** after seeding: growth ramps up as ``1 - exp(-age / tau_lag)``;
* **contact inhibition**: generalised logistic growth, ``1 - (N/K)^theta``, toward a
  confluent density ``K``; MSC keep growing fast until close to confluence;
* **senescence**: the doubling time lengthens with cumulative population
  doublings (PD), ``Td = Td0 / (1 - (PD / PD_max)^2)``, so growth stops near
  ``PD_max``;
* **medium exhaustion**: cells consume the medium; below a threshold growth slows,
  and when it is nearly spent viable cells die, so viability falls until a feed;
* **detachment**: a detachment enzyme (TrypLE, trypsin) lifts adherent cells with
  a half-time of minutes at 37 C (much slower at room temperature) and kills a
  small share of cells per minute of exposure; it is active above a quarter of
  its working strength, so diluting it with 2-3 volumes of medium stops it.
  Lifted cells re-attach (or die) over hours if they are left in the vessel;
* **drying**: a monolayer left under less than ``min_wet_uL_per_cm2`` of liquid
  dies within the hour, which is why aspiration leaves a residual;
* **temperature**: each vessel sits in an environment (an incubator chamber, or
  the deck at room temperature) that gives its temperature over time. Growth is
  full at 37-39 C, falls linearly to nothing at 30 C (a plate on the deck does not
  grow) and above 39 C cells are heat-stressed and die. A vessel with no
  environment is taken to be at 37 C, which is what the unit tests of the biology
  use.

Default parameters are for bone-marrow MSC in alpha-MEM/DMEM with serum or
platelet lysate, chosen inside the ranges these sources report:

* doubling time about 30-48 h at early passages, longer at later ones, and
  replicative senescence after roughly 30-50 PD: Bruder, Jaiswal & Haynesworth,
  J Cell Biochem 64:278-294 (1997); Banfi et al., Exp Hematol 28:707-715 (2000);
  Wagner et al., PLoS ONE 3:e2213 (2008);
* seeding at 1,000-5,000 cells/cm2 and about 2-5 x 10^4 cells/cm2 at confluence:
  Sotiropoulou et al., Stem Cells 24:462-471 (2006); Colter et al., PNAS
  97:3213-3218 (2000).

The medium uptake rate is set so that 0.2 mL/cm2 of medium over a confluent
monolayer is spent in about five days, which is why MSC cultures are fed twice a
week. The model is deterministic: biological variation between vessels comes from
a generator seeded with the config seed and the vessel name.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

HOUR = 3600.0
MAX_STEP_S = 1800.0
OPTIMUM_C = 37.0
NO_GROWTH_C = 30.0
HEAT_STRESS_C = 39.0

Environment = Callable[[float], float]
"""Temperature (C) a vessel experiences at a simulated time (s)."""


def enzyme_activity(enzyme_share: float) -> float:
    """Activity of a detachment enzyme diluted to ``enzyme_share`` of its working strength."""
    return max(0.0, (enzyme_share - 0.25) / 0.75)


def temperature_growth_factor(temperature_C: float) -> float:
    """Share of the optimal growth rate at a temperature (see module docstring)."""
    if temperature_C <= NO_GROWTH_C:
        return 0.0
    if temperature_C < OPTIMUM_C:
        return (temperature_C - NO_GROWTH_C) / (OPTIMUM_C - NO_GROWTH_C)
    if temperature_C <= HEAT_STRESS_C:
        return 1.0
    return max(0.0, 1.0 - (temperature_C - HEAT_STRESS_C) / 2.0)


class CultureParameters(BaseModel):
    """Biology of one cell type; the defaults are bone-marrow MSC (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    doubling_time_h: float = Field(default=36.0, gt=5, le=500, description="Td at PD 0")
    pd_max: float = Field(default=40.0, gt=1, le=100, description="PD where growth stops")
    confluent_density_per_cm2: float = Field(default=3.0e4, gt=1e3, le=2e5)
    lag_tau_h: float = Field(default=16.0, ge=0, le=200)
    plating_efficiency: float = Field(default=0.85, gt=0, le=1)
    attach_tau_h: float = Field(default=1.5, gt=0, le=48)
    death_rate_per_h: float = Field(default=0.0008, ge=0, le=1)
    medium_uptake_uL_per_cell_h: float = Field(
        default=5.0e-5, ge=0, le=1e-2, description="fresh-medium equivalents used per cell"
    )
    nutrient_growth_threshold: float = Field(default=0.3, gt=0, le=1)
    nutrient_death_threshold: float = Field(default=0.1, gt=0, le=1)
    starvation_death_rate_per_h: float = Field(default=0.03, ge=0, le=1)
    contact_inhibition_shape: float = Field(
        default=3.0, ge=1, le=10, description="theta of the generalised logistic 1-(N/K)^theta"
    )
    vessel_variation_cv: float = Field(default=0.05, ge=0, le=0.5)
    detach_half_time_min: float = Field(
        default=1.5, gt=0, le=60, description="enzyme at 37 C: half the cells round up and lift"
    )
    enzyme_damage_per_min: float = Field(
        default=0.004, ge=0, le=1, description="share of cells killed per minute of enzyme"
    )
    min_wet_uL_per_cm2: float = Field(
        default=5.0, ge=0, le=100, description="less liquid than this and the monolayer dries"
    )
    drying_death_rate_per_h: float = Field(default=3.0, ge=0, le=100)
    heat_death_rate_per_h_per_C: float = Field(default=0.02, ge=0, le=1)
    pipetting_cell_loss: float = Field(
        default=0.01, ge=0, le=0.2, description="fraction of cells left in a tip per dispense"
    )

    def doubling_time_at(self, pd: float) -> float:
        """Doubling time in hours at cumulative population doublings ``pd``."""
        slowdown = 1.0 - (pd / self.pd_max) ** 2
        return math.inf if slowdown <= 0 else self.doubling_time_h / slowdown


@dataclass
class Liquid:
    """A volume of liquid and the cells suspended in it.

    ``nutrient`` is the concentration of medium nutrients relative to fresh
    medium (1.0 fresh, 0.0 for PBS or spent medium); ``enzyme`` the share of the
    volume that is detachment enzyme (TrypLE/trypsin) solution; ``pd`` the mean
    cumulative population doublings of the cells in it.
    """

    volume_uL: float = 0.0
    viable: float = 0.0
    dead: float = 0.0
    nutrient: float = 0.0
    pd: float = 0.0
    enzyme: float = 0.0

    @property
    def cells(self) -> float:
        return self.viable + self.dead

    def take(self, volume_uL: float) -> Liquid:
        """Remove ``volume_uL`` of well-mixed liquid and return it."""
        if volume_uL <= 0 or self.volume_uL <= 0:
            return Liquid(
                volume_uL=max(volume_uL, 0.0),
                nutrient=self.nutrient,
                pd=self.pd,
                enzyme=self.enzyme,
            )
        f = min(1.0, volume_uL / self.volume_uL)
        part = Liquid(
            volume_uL=min(volume_uL, self.volume_uL),
            viable=self.viable * f,
            dead=self.dead * f,
            nutrient=self.nutrient,
            pd=self.pd,
            enzyme=self.enzyme,
        )
        self.volume_uL -= part.volume_uL
        self.viable -= part.viable
        self.dead -= part.dead
        return part

    def add(self, other: Liquid) -> None:
        """Mix ``other`` in: volumes add, nutrients by volume, PD by cell number."""
        volume = self.volume_uL + other.volume_uL
        if volume > 0:
            self.nutrient = (
                self.nutrient * self.volume_uL + other.nutrient * other.volume_uL
            ) / volume
            self.enzyme = (self.enzyme * self.volume_uL + other.enzyme * other.volume_uL) / volume
        cells = self.viable + other.viable
        if cells > 0:
            self.pd = (self.pd * self.viable + other.pd * other.viable) / cells
        self.volume_uL = volume
        self.viable = cells
        self.dead += other.dead


@dataclass
class Vessel:
    """A culture surface (one well) and the medium over it."""

    name: str
    area_cm2: float
    medium: Liquid = field(default_factory=Liquid)
    attached: float = 0.0
    pd: float = 0.0
    growth_factor: float = 1.0
    seeded_at_s: float | None = None
    environment: Environment | None = None
    environment_name: str | None = None


@dataclass(frozen=True)
class VesselState:
    """A read-only snapshot of a vessel, in the units a lab reports."""

    name: str
    area_cm2: float
    attached_viable: float
    floating_viable: float
    dead: float
    medium_volume_uL: float
    nutrient: float
    confluence: float
    population_doublings: float

    @property
    def viable(self) -> float:
        return self.attached_viable + self.floating_viable

    @property
    def viability(self) -> float:
        total = self.viable + self.dead
        return self.viable / total if total > 0 else 0.0


class CultureModel:
    """Ground truth of every container's cells in a dry-run, advanced by the clock.

    Containers are named as their PyLabRobot resources. ``now_s`` is a callable
    returning simulated seconds; every public call first brings the model up to
    that time, so the model never needs to be told that time has passed.
    """

    def __init__(
        self,
        now_s: Callable[[], float],
        params: CultureParameters | None = None,
        seed: int = 42,
    ) -> None:
        self.params = params or CultureParameters()
        self.seed = seed
        self._now_s = now_s
        self._t = now_s()
        self.vessels: dict[str, Vessel] = {}
        self.containers: dict[str, Liquid] = {}

    # --- time -------------------------------------------------------------------

    def sync(self) -> None:
        """Advance every vessel to the clock's current time."""
        target = self._now_s()
        while self._t < target:
            dt = min(MAX_STEP_S, target - self._t)
            for v in self.vessels.values():
                self._step(v, dt)
            self._t += dt

    def _step(self, v: Vessel, dt_s: float) -> None:
        m = v.medium
        if v.attached <= 0 and m.viable <= 0:
            return  # an emptied vessel (passaged, harvested): nothing left to change
        p = self.params
        h = dt_s / HOUR
        capacity = p.confluent_density_per_cm2 * v.area_cm2
        covered = min(1.0, v.attached / capacity)
        # room for attaching and dividing cells: MSC spread freely until close to confluence
        room = 1.0 - covered**p.contact_inhibition_shape

        temperature = OPTIMUM_C if v.environment is None else v.environment(self._t)
        activity = enzyme_activity(m.enzyme)
        if activity > 0:
            self._digest(v, h, activity, temperature)

        # attachment of floating viable cells, and anoikis of the rest
        if m.viable > 0 and activity == 0:
            settle = 1.0 - math.exp(-h / p.attach_tau_h)
            settling = m.viable * settle
            attaching = settling * p.plating_efficiency * room
            if attaching > 0:
                v.pd = (v.pd * v.attached + m.pd * attaching) / (v.attached + attaching)
            v.attached += attaching
            m.viable -= settling
            m.dead += settling - attaching

        if v.attached <= 0:
            return
        # nutrients: consumption by viable cells, in fresh-medium equivalents
        if m.volume_uL > 0:
            used = p.medium_uptake_uL_per_cell_h * v.attached * h
            m.nutrient = max(0.0, m.nutrient - used / m.volume_uL)
        else:
            m.nutrient = 0.0
        nutrient_factor = min(1.0, m.nutrient / p.nutrient_growth_threshold)

        age_h = 0.0 if v.seeded_at_s is None else (self._t - v.seeded_at_s) / HOUR
        lag = 1.0 if p.lag_tau_h == 0 else 1.0 - math.exp(-age_h / p.lag_tau_h)
        td = p.doubling_time_at(v.pd)
        r = 0.0 if math.isinf(td) else math.log(2) / td * v.growth_factor
        r *= lag * nutrient_factor * room * temperature_growth_factor(temperature)

        death = p.death_rate_per_h
        if m.volume_uL < p.min_wet_uL_per_cm2 * v.area_cm2:
            death += p.drying_death_rate_per_h
        if temperature > HEAT_STRESS_C:
            death += p.heat_death_rate_per_h_per_C * (temperature - HEAT_STRESS_C)
        if m.nutrient < p.nutrient_death_threshold:
            death += p.starvation_death_rate_per_h * (1 - m.nutrient / p.nutrient_death_threshold)

        born = v.attached * (math.exp(r * h) - 1.0)
        died = v.attached * (1.0 - math.exp(-death * h))
        v.pd += r * h / math.log(2)
        v.attached = min(capacity, v.attached + born - died)
        m.dead += died

    def _digest(self, v: Vessel, h: float, activity: float, temperature: float) -> None:
        """Enzyme at work: cells lift off into the liquid, and some are killed."""
        p = self.params
        speed = activity * min(1.0, max(0.1, (temperature - 20.0) / (OPTIMUM_C - 20.0)))
        minutes = h * 60.0
        lift = 1.0 - math.exp(-math.log(2) / p.detach_half_time_min * speed * minutes)
        kill = 1.0 - math.exp(-p.enzyme_damage_per_min * speed * minutes)
        m = v.medium
        lifted = v.attached * lift
        if lifted > 0:
            m.pd = (m.pd * m.viable + v.pd * lifted) / (m.viable + lifted)
        v.attached -= lifted
        m.viable += lifted
        killed_attached, killed_floating = v.attached * kill, m.viable * kill
        v.attached -= killed_attached
        m.viable -= killed_floating
        m.dead += killed_attached + killed_floating

    # --- vessels and containers ---------------------------------------------------

    def register_vessel(
        self,
        name: str,
        area_cm2: float,
        environment: Environment | None = None,
        environment_name: str | None = None,
    ) -> Vessel:
        """Make a culture surface known; its biological variation is fixed by seed and name."""
        if name in self.vessels:
            return self.vessels[name]
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        factor = float(np.exp(rng.normal(0.0, self.params.vessel_variation_cv)))
        self.sync()
        v = Vessel(
            name=name,
            area_cm2=area_cm2,
            growth_factor=factor,
            environment=environment,
            environment_name=environment_name,
        )
        self.vessels[name] = v
        return v

    def place(
        self, vessels: list[str], environment: Environment | None, name: str | None = None
    ) -> None:
        """Move vessels into an environment (a chamber's temperature, or the deck's).

        ``name`` identifies the environment in a checkpoint ("deck", "chamber:<name>").
        """
        self.sync()
        for vessel in vessels:
            if vessel in self.vessels:
                self.vessels[vessel].environment = environment
                self.vessels[vessel].environment_name = name

    def load(self, container: str, liquid: Liquid) -> None:
        """Put liquid into a container by hand (the operator loading a tube or trough)."""
        self.sync()
        self._liquid_of(container).add(liquid)

    def _liquid_of(self, container: str) -> Liquid:
        if container in self.vessels:
            return self.vessels[container].medium
        return self.containers.setdefault(container, Liquid())

    def withdraw(self, container: str, volume_uL: float) -> Liquid:
        """Liquid handler aspirates from ``container``: the cells leave with the liquid."""
        self.sync()
        return self._liquid_of(container).take(volume_uL)

    def deliver(self, container: str, liquid: Liquid) -> None:
        """Liquid handler dispenses into ``container``; a first delivery of cells seeds it."""
        self.sync()
        if container in self.vessels:
            v = self.vessels[container]
            if liquid.viable > 0 and v.attached == 0 and v.medium.viable == 0:
                v.seeded_at_s = self._t
        self._liquid_of(container).add(liquid)

    # --- what instruments and reports see ----------------------------------------

    def state(self, vessel: str) -> VesselState:
        self.sync()
        v = self.vessels[vessel]
        capacity = self.params.confluent_density_per_cm2 * v.area_cm2
        return VesselState(
            name=v.name,
            area_cm2=v.area_cm2,
            attached_viable=v.attached,
            floating_viable=v.medium.viable,
            dead=v.medium.dead,
            medium_volume_uL=v.medium.volume_uL,
            nutrient=v.medium.nutrient,
            confluence=min(1.0, v.attached / capacity),
            population_doublings=v.pd,
        )

    def liquid(self, container: str) -> Liquid:
        """A copy of what a non-vessel container holds now."""
        self.sync()
        src = self._liquid_of(container)
        return Liquid(src.volume_uL, src.viable, src.dead, src.nutrient, src.pd, src.enzyme)
