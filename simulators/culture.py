"""Culture model v2: bone-marrow MSC growing on tissue-culture plastic.

Per vessel the model holds adherent viable cells, the medium (with floating viable
and dead cells and what is left of its nutrients) and the growth area. It moves
through simulated time in steps of at most half an hour:

* **attachment**: seeded cells attach with a plating efficiency over a few hours
  at 37 C (not at room temperature: cells resuspended on the deck stay afloat);
  those that do not attach die in suspension (anoikis);
* **lag** after seeding: growth ramps up as ``1 - exp(-age / lag)``. The lag is
  longer the sparser the seeding (about 5 days at 1.5-3 cells/cm2, under a day at
  confluent densities) and longer for older cells (as the square root of their
  doubling time); it is fixed once the seeding is over;
* **contact inhibition**: generalised logistic growth, ``1 - (N/K)^theta``, toward a
  confluent density ``K``; MSC keep growing fast until close to confluence;
* **cell size and confluent density**: cells are slender spindles when young and
  become broad, flattened cells as they approach senescence. ``K`` is one cell per
  cell footprint, so it falls as the cells grow larger. The imager draws the same
  cells (``VesselState.cell_length_um`` / ``cell_width_um``), so a confluent field
  holds ``K`` cells per cm2 at every passage;
* **senescence**: the doubling time lengthens with the cells' cumulative
  divisions, ``Td = Td0 / (1 - (PD / PD_max)^n)``, and stops at ``PD_max``. PD here
  counts divisions; a lab counts less (log2 of cells recovered over cells seeded:
  plating losses and deaths are not divisions), so ``PD_max`` is set so that the
  *counted* doublings at senescence land on the published figure;
* **medium use and quiescence**: cells use the medium's nutrients (glucose first),
  dividing cells at the full rate and quiescent (contact-inhibited or starved)
  cells at a fraction of it. Below a threshold growth slows; when the medium is
  spent the cells sit quiescent for days before they start to die, so viability
  falls only when a culture is left unfed far too long;
* **detachment**: a detachment enzyme (TrypLE, trypsin) rounds cells up and lifts
  them: the share lifted follows a Weibull curve in enzyme-minutes at 37 C (slow
  at first, then most cells within 3-5 minutes; much slower at room temperature),
  and it kills a small share of cells per minute of exposure. Serum-containing
  medium neutralises the enzyme (``serum_inhibition`` volumes of enzyme per volume
  of medium), so 2-3 volumes of medium stop it. Lifted cells left in a warm
  vessel re-attach (or die) over hours;
* **drying**: a monolayer left under less than ``min_wet_uL_per_cm2`` of liquid
  dies within the hour, which is why aspiration leaves a residual;
* **temperature**: each vessel sits in an environment (an incubator chamber, or
  the deck at room temperature) that gives its temperature over time. Growth is
  full at 37-39 C, falls linearly to nothing at 30 C (a plate on the deck does not
  grow) and above 39 C cells are heat-stressed and die. A vessel with no
  environment is taken to be at 37 C, which is what the unit tests of the biology
  use;
* **donors**: cells carry the donor they came from. ``CultureParameters`` hold the
  reference (median) donor; a named donor's doubling time and replicative
  lifespan are drawn from the published spreads with a generator seeded by the
  donor id alone, so a donor is the same donor in every run and two donors
  differ as real donors do.

Every parameter's source is in its field description, by the keys of
``REFERENCES``; where a value was calibrated (chosen so that a published figure
comes out right) the description names that figure. ``benchmarks/fidelity.py``
runs the standard experiments and prints each figure beside its published range.
Biological variation between vessels of one donor comes from a generator seeded
with the config seed and the vessel name.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

HOUR = 3600.0
MAX_STEP_S = 1800.0
OPTIMUM_C = 37.0
NO_GROWTH_C = 30.0
HEAT_STRESS_C = 39.0
UM2_PER_CM2 = 1e8
SEEDING_WINDOW_S = 3600.0  # deliveries of cells this soon after the first are one seeding
MAX_LAG_H = 400.0
# fewer expected cells than this in a dried vessel are none: counted dead, so the vessel
# is not stepped again (emptied wells decay toward zero forever, and stepping them was
# most of the simulated lab's time in a long campaign)
NO_CELLS = 1e-6
LN2 = math.log(2)

REFERENCES: dict[str, str] = {
    "Bruder 1997": "Bruder SP, Jaiswal N, Haynesworth SE. Growth kinetics, self-renewal, and "
    "the osteogenic potential of purified human mesenchymal stem cells during extensive "
    "subcultivation and following cryopreservation. J Cell Biochem 64:278-294 (1997). "
    "Abstract: 38 +/- 4 population doublings; lag, log and plateau phase at every passage; "
    "cells end 'very broad and flattened'.",
    "Bonab 2006": "Bonab MM, Alimoghaddam K, Talebian F, Ghaffari SH, Ghavamzadeh A, "
    "Nikbin B. Aging of mesenchymal stem cell in vitro. BMC Cell Biol 7:14 (2006). "
    "Abstract: PD per passage fell from 7.7 to 1.2 by the 10th passage; mean 118 days "
    "of culture, mean 9 passages.",
    "Banfi 2000": "Banfi A et al. Proliferation kinetics and differentiation potential of ex "
    "vivo expanded human bone marrow stromal cells. Exp Hematol 28:707-715 (2000).",
    "Wagner 2008": "Wagner W et al. Replicative senescence of mesenchymal stem cells: a "
    "continuous and organized process. PLoS ONE 3:e2213 (2008).",
    "Colter 2000": "Colter DC, Class R, DiGirolamo CM, Prockop DJ. Rapid expansion of "
    "recycling stem cells in cultures of plastic-adherent cells from human bone marrow. "
    "PNAS 97:3213-3218 (2000). Abstract: at 1.5-3 cells/cm2 a lag phase of about 5 days.",
    "Sotiropoulou 2006": "Sotiropoulou PA et al. Characterization of the optimal culture "
    "conditions for clinical scale production of human mesenchymal stem cells. Stem Cells "
    "24:462-471 (2006).",
    "Yazdizade": "Yazdizade A et al. Plating density affects growth characteristics of "
    "mesenchymal stem cells. Cell Journal (Yakhteh). Abstract: a higher seeding density "
    "gives a shorter lag (over 1 day vs 4 days).",
    "Baranyi 1994": "Baranyi J, Roberts TA. A dynamic approach to predicting bacterial growth "
    "in food. Int J Food Microbiol 23:277-294 (1994): the lag as a multiple of the "
    "doubling time.",
    "Schop 2009": "Schop D et al. Growth, metabolism, and growth inhibitors of mesenchymal "
    "stem cells. Tissue Eng Part A 15:1877-1886 (2009), doi:10.1089/ten.tea.2008.0345. "
    "Abstract: human MSC qGlc = 9.2 pmol/cell/day.",
    "Nuschke 2016": "Nuschke A et al. Mesenchymal stem cells/multipotent stromal cells (MSCs) "
    "are glycolytic and thus glucose is a limiting factor of in vitro models of MSC "
    "starvation. Stem Cell Res Ther (2016), doi:10.1186/s13287-016-0436-7. Fig. 1: "
    "confluent MSC left in deprived medium showed no response for about 96 h.",
    "Sekiya 2002": "Sekiya I et al. Expansion of human adult stem cells from bone marrow "
    "stroma. Stem Cells 20:530-541 (2002): cells harvested with 0.25 % trypsin/1 mM EDTA, "
    "5 min at 37 C.",
    "DiGirolamo 1999": "DiGirolamo CM et al. Propagation and senescence of human marrow "
    "stromal cells in culture. Br J Haematol 107:275-281 (1999), "
    "doi:10.1046/j.1365-2141.1999.01715.x: donors differ widely in replicative potential.",
    "Whitfield 2013": "Whitfield MJ, Lee WCJ, Van Vliet KJ. Onset of heterogeneity in "
    "culture-expanded bone marrow stromal cells. Stem Cell Res 11:1365-1377 (2013): cells "
    "spread larger with population doublings.",
}

Environment = Callable[[float], float]
"""Temperature (C) a vessel experiences at a simulated time (s)."""


def enzyme_activity(
    enzyme_share: float, serum_share: float = 0.0, inhibition: float = 0.5
) -> float:
    """Free detachment enzyme, as a share of its working strength.

    ``enzyme_share`` of the volume is enzyme solution and ``serum_share`` is
    serum-containing medium, of which each volume neutralises ``inhibition``
    volumes of enzyme.
    """
    return max(0.0, enzyme_share - inhibition * serum_share)


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
    """Biology of one cell type; the defaults are the reference bone-marrow MSC donor.

    Sources are keys of ``REFERENCES``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- growth and senescence
    doubling_time_h: float = Field(
        default=30.0,
        gt=5,
        le=500,
        description="Td of young cells (PD 0); about 35 h measured at P1 with the lag. "
        "30-48 h early: Bruder 1997, Banfi 2000, Wagner 2008; 30 h gives 7.3 PD in a "
        "13-day first passage (Bonab 2006: 7.7)",
    )
    pd_max: float = Field(
        default=55.0,
        gt=1,
        le=100,
        description="divisions at which division stops. Calibrated: the doublings a lab "
        "counts at senescence land on 38 +/- 4 (Bruder 1997); the rest are lost to "
        "plating, death and harvest, about 0.6 PD a passage",
    )
    senescence_shape: float = Field(
        default=1.0,
        ge=0.5,
        le=4,
        description="n of Td0 / (1 - (PD/PD_max)^n). 1: growth slows from the first "
        "passage on, PD per passage falls steadily from 7.7 to 1.2 (Bonab 2006)",
    )
    # --- cell size and confluent density
    young_cell_length_um: float = Field(
        default=125.0,
        gt=10,
        le=500,
        description="spindle length at PD 0; with the width, one cell per footprint gives "
        "4.6e4 cells/cm2 at confluence, inside 2-5e4 (Colter 2000, Sotiropoulou 2006)",
    )
    young_cell_width_um: float = Field(
        default=22.0, gt=2, le=200, description="spindle width at PD 0: see the length"
    )
    senescent_cell_length_um: float = Field(
        default=150.0,
        gt=10,
        le=500,
        description="broad, flattened cells at PD_max (Bruder 1997; Whitfield 2013): about "
        "5x the young footprint, so about 9e3 cells/cm2 at confluence",
    )
    senescent_cell_width_um: float = Field(
        default=90.0, gt=2, le=300, description="flattened cell width at PD_max: see the length"
    )
    enlargement_shape: float = Field(
        default=2.0,
        ge=0.5,
        le=4,
        description="cells enlarge as (PD/PD_max)^k: little in the first passages, most "
        "near senescence (Wagner 2008)",
    )
    contact_inhibition_shape: float = Field(
        default=3.0,
        ge=1,
        le=10,
        description="theta of 1-(N/K)^theta: MSC grow fast until close to confluence. "
        "Calibrated: 80 % confluence at P3 from 3,500 cells/cm2 in 4-8 days",
    )
    # --- seeding
    plating_efficiency: float = Field(
        default=0.85,
        gt=0,
        le=1,
        description="share of seeded viable cells that attach. Calibrated with PD_max on "
        "the counted doublings (Bruder 1997)",
    )
    attach_tau_h: float = Field(
        default=1.5,
        gt=0,
        le=48,
        description="MSC attach within hours of plating at 37 C, and (as growth) not below "
        "30 C; no source: kept from model v1",
    )
    lag_tau_h: float = Field(
        default=16.0,
        ge=0,
        le=200,
        description="lag at the reference density and PD 0. Calibrated: 80 % confluence at "
        "P3 from 3,500 cells/cm2 in 4-8 days",
    )
    lag_reference_density_per_cm2: float = Field(
        default=3500.0, gt=1, le=1e5, description="the density lag_tau_h is given at"
    )
    lag_density_exponent: float = Field(
        default=0.34,
        ge=0,
        le=1,
        description="lag ~ density^-a: 16 h at 3,500 cells/cm2 and about 5 days, read "
        "off the growth curve, at 1.5-3 cells/cm2 (Colter 2000); denser plating, shorter "
        "lag (Yazdizade)",
    )
    lag_doubling_exponent: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="lag ~ Td(PD)^b: older cells take longer to start (Bruder 1997); "
        "b = 1 is a lag of a fixed number of doubling times (Baranyi 1994). Calibrated: "
        "1.2 PD in the 10th passage (Bonab 2006)",
    )
    # --- death, medium, quiescence
    death_rate_per_h: float = Field(
        default=0.0008,
        ge=0,
        le=1,
        description="background death, about 2 % a day: fed cultures stay > 95 % viable",
    )
    medium_uptake_uL_per_cell_h: float = Field(
        default=7.0e-5,
        ge=0,
        le=1e-2,
        description="fresh-medium equivalents a dividing cell uses: 9.2 pmol glucose per "
        "cell and day (Schop 2009) of a 5.5 mM glucose medium",
    )
    quiescent_uptake_share: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="uptake of a quiescent cell relative to a dividing one. Calibrated: "
        "feeding 0.1 mL/cm2 every 3 days keeps a confluent well",
    )
    nutrient_growth_threshold: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="growth slows below this share of fresh medium (about 1.6 mM glucose); "
        "no source: kept from model v1",
    )
    nutrient_death_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="below this the medium is spent and cells go quiescent; no source: "
        "kept from model v1",
    )
    starvation_quiescence_h: float = Field(
        default=96.0,
        ge=0,
        le=500,
        description="spent medium: days of quiescence before cells die; deprived "
        "confluent MSC showed no response for about 96 h (Nuschke 2016)",
    )
    starvation_death_rate_per_h: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="death after the quiescent days: most cells within 2-3 days, as "
        "deprived MSC detached by the end of 144 h (Nuschke 2016)",
    )
    # --- detachment
    detach_time_min: float = Field(
        default=1.5,
        gt=0,
        le=60,
        description="Weibull scale, in minutes of full-strength enzyme at 37 C; with the "
        "shape, > 90 % of cells lift in 3-5 min (Sekiya 2002: 5 min at 37 C)",
    )
    detach_shape: float = Field(
        default=2.0,
        ge=1,
        le=5,
        description="Weibull shape: cells round up before they lift, so few are off in the "
        "first minute and most by 3 (Sekiya 2002: 5 min)",
    )
    enzyme_damage_per_min: float = Field(
        default=0.004,
        ge=0,
        le=1,
        description="share of cells killed per minute of full-strength enzyme at 37 C: "
        "2 % in a 5-minute harvest; no source: kept from model v1",
    )
    serum_inhibition: float = Field(
        default=0.5,
        ge=0,
        le=5,
        description="volumes of enzyme one volume of serum medium neutralises: 2-3 volumes "
        "of medium stop the enzyme, as protocols have it",
    )
    # --- handling
    min_wet_uL_per_cm2: float = Field(
        default=5.0,
        ge=0,
        le=100,
        description="less liquid than this and the monolayer dries; no source: kept from model v1",
    )
    drying_death_rate_per_h: float = Field(
        default=3.0, ge=0, le=100, description="a dry monolayer dies within the hour; no source"
    )
    heat_death_rate_per_h_per_C: float = Field(
        default=0.02, ge=0, le=1, description="above 39 C; no source: kept from model v1"
    )
    pipetting_cell_loss: float = Field(
        default=0.01,
        ge=0,
        le=0.2,
        description="fraction of cells left in a tip per dispense; no source: kept from model v1",
    )
    # --- variation
    vessel_variation_cv: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="growth-rate spread between vessels of one donor; no source: kept from "
        "model v1",
    )
    donor_doubling_time_cv: float = Field(
        default=0.12,
        ge=0,
        le=1,
        description="log-normal spread of Td0 between donors: the middle 95 % of donors "
        "span a factor of 1.6, as the published 30-48 h (Bruder 1997, Banfi 2000, "
        "Wagner 2008)",
    )
    donor_pd_max_sd: float = Field(
        default=4.0,
        ge=0,
        le=20,
        description="spread of the replicative lifespan between donors: +/- 4 PD "
        "(Bruder 1997; DiGirolamo 1999)",
    )

    def doubling_time_at(self, pd: float) -> float:
        """Doubling time in hours at cumulative population doublings ``pd``."""
        slowdown = 1.0 - (max(pd, 0.0) / self.pd_max) ** self.senescence_shape
        return math.inf if slowdown <= 0 else self.doubling_time_h / slowdown

    def cell_shape_um(self, pd: float) -> tuple[float, float]:
        """Length and width (um) of a cell after ``pd`` divisions."""
        age = min(1.0, max(0.0, pd / self.pd_max)) ** self.enlargement_shape
        return (
            self.young_cell_length_um
            + (self.senescent_cell_length_um - self.young_cell_length_um) * age,
            self.young_cell_width_um
            + (self.senescent_cell_width_um - self.young_cell_width_um) * age,
        )

    def cell_area_um2(self, pd: float) -> float:
        """Footprint of a cell (an ellipse) after ``pd`` divisions."""
        length, width = self.cell_shape_um(pd)
        return math.pi / 4 * length * width

    def confluent_density_at(self, pd: float) -> float:
        """Cells per cm2 at 100 % confluence: one cell per footprint."""
        age = pd / self.pd_max
        age = 0.0 if age <= 0 else 1.0 if age >= 1 else age**self.enlargement_shape
        length = (
            self.young_cell_length_um
            + (self.senescent_cell_length_um - self.young_cell_length_um) * age
        )
        width = (
            self.young_cell_width_um
            + (self.senescent_cell_width_um - self.young_cell_width_um) * age
        )
        return UM2_PER_CM2 / (math.pi / 4 * length * width)

    def lag_h(self, seeded_per_cm2: float, pd: float) -> float:
        """Lag after seeding at ``seeded_per_cm2`` with cells at ``pd`` (module docstring)."""
        if self.lag_tau_h == 0:
            return 0.0
        density = max(seeded_per_cm2, 1.0)
        older = self.doubling_time_at(pd) / self.doubling_time_h
        if math.isinf(older):
            return MAX_LAG_H
        lag = (
            self.lag_tau_h
            * (self.lag_reference_density_per_cm2 / density) ** self.lag_density_exponent
            * older**self.lag_doubling_exponent
        )
        return min(MAX_LAG_H, lag)

    def for_donor(self, donor: str | None) -> CultureParameters:
        """A donor's parameters: Td0 and PD_max drawn from the published spreads.

        ``None`` is the reference donor (these parameters). The draw is seeded by the
        donor id alone: the same donor is the same in every run and workcell.
        """
        if donor is None:
            return self
        return _donor(self, donor)


@lru_cache(maxsize=256)
def _donor(base: CultureParameters, donor: str) -> CultureParameters:
    rng = np.random.default_rng([0xD0, zlib.crc32(donor.encode())])
    td = base.doubling_time_h * float(np.exp(rng.normal(0.0, base.donor_doubling_time_cv)))
    pd_max = base.pd_max + float(rng.normal(0.0, base.donor_pd_max_sd))
    return base.model_copy(
        update={
            "doubling_time_h": min(500.0, max(6.0, td)),
            "pd_max": min(100.0, max(2.0, pd_max)),
        }
    )


def _majority(
    cells_a: float, donor_a: str | None, cells_b: float, donor_b: str | None
) -> str | None:
    """The donor of a mix of two cell populations: the one with more cells."""
    if cells_b > cells_a:
        return donor_b
    return donor_a if cells_a > 0 else donor_b


@dataclass
class Liquid:
    """A volume of liquid and the cells suspended in it.

    ``nutrient`` is the concentration of medium nutrients relative to fresh
    medium (1.0 fresh, 0.0 for PBS or spent medium); ``enzyme`` the share of the
    volume that is detachment enzyme (TrypLE/trypsin) solution; ``serum`` the share
    that is serum-containing medium, fresh or spent (its protease inhibitors
    neutralise the enzyme); ``pd`` the mean cumulative population doublings of the
    cells in it and ``donor`` the donor they came from (``None``: the reference donor).
    """

    volume_uL: float = 0.0
    viable: float = 0.0
    dead: float = 0.0
    nutrient: float = 0.0
    pd: float = 0.0
    enzyme: float = 0.0
    serum: float = 0.0
    donor: str | None = None

    @property
    def cells(self) -> float:
        return self.viable + self.dead

    def take(self, volume_uL: float) -> Liquid:
        """Remove ``volume_uL`` of well-mixed liquid and return it."""
        if volume_uL <= 0 or self.volume_uL <= 0:
            return replace(self, volume_uL=max(volume_uL, 0.0), viable=0.0, dead=0.0)
        f = min(1.0, volume_uL / self.volume_uL)
        part = replace(
            self,
            volume_uL=min(volume_uL, self.volume_uL),
            viable=self.viable * f,
            dead=self.dead * f,
        )
        self.volume_uL -= part.volume_uL
        self.viable -= part.viable
        self.dead -= part.dead
        return part

    def add(self, other: Liquid) -> None:
        """Mix ``other`` in: volumes add, solutes by volume, PD by cell number."""
        volume = self.volume_uL + other.volume_uL
        if volume > 0:
            a, b = self.volume_uL / volume, other.volume_uL / volume
            self.nutrient = self.nutrient * a + other.nutrient * b
            self.enzyme = self.enzyme * a + other.enzyme * b
            self.serum = self.serum * a + other.serum * b
        cells = self.viable + other.viable
        if cells > 0:
            self.pd = (self.pd * self.viable + other.pd * other.viable) / cells
        self.donor = _majority(
            self.viable or self.dead, self.donor, other.viable or other.dead, other.donor
        )
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
    donor: str | None = None
    seeded_per_cm2: float = 0.0
    lag_h: float | None = None  # set once the seeding is over
    starved_h: float = 0.0
    enzyme_min: float = 0.0


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
    cell_length_um: float
    cell_width_um: float
    confluent_density_per_cm2: float
    donor: str | None

    @property
    def viable(self) -> float:
        return self.attached_viable + self.floating_viable

    @property
    def viability(self) -> float:
        total = self.viable + self.dead
        return self.viable / total if total > 0 else 0.0


def _lag_over(lag_h: float, age_h: float) -> bool:
    """Whether the growth ramp after seeding, 1 - exp(-age/lag), has reached 1.0: no lag,
    or 40 lag times past (exp(-40) is below a float's resolution next to 1)."""
    return lag_h <= 0 or age_h > 40 * lag_h


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
        self._donors: dict[str | None, CultureParameters] = {}

    def donor_params(self, donor: str | None) -> CultureParameters:
        """The parameters of a donor's cells (the reference donor's for ``None``)."""
        return self._donors.get(donor) or self._donor_params(donor)

    def _donor_params(self, donor: str | None) -> CultureParameters:
        self._donors[donor] = self.params.for_donor(donor)
        return self._donors[donor]

    # --- time -------------------------------------------------------------------

    def sync(self) -> None:
        """Advance every vessel to the clock's current time.

        The steps are the same for every vessel (from the model's time to now, at most
        ``MAX_STEP_S`` each), so the model's results depend only on when it is asked,
        never on which vessel is asked about. Within one step an environment's
        temperature is the same for every vessel in it (asked once: a chamber answers
        the same for the same time), and a vessel with no cells left (passaged,
        harvested) is not stepped: nothing in it changes.
        """
        target = self._now_s()
        vessels = self.vessels
        while self._t < target:
            dt = min(MAX_STEP_S, target - self._t)
            temperatures: dict[Environment, float] = {}
            for v in vessels.values():
                if v.attached <= 0 and v.medium.viable <= 0:
                    continue  # an emptied vessel: nothing left to change
                env = v.environment
                if env is None:
                    temperature = OPTIMUM_C
                else:
                    known = temperatures.get(env)
                    if known is None:
                        known = temperatures[env] = env(self._t)
                    temperature = known
                self._step(v, dt, temperature)
            self._t += dt

    def _step(self, v: Vessel, dt_s: float, temperature: float) -> None:
        """One step of ``dt_s`` for a vessel with cells, at ``temperature`` (C).

        Called for every vessel at every request that touches one, so written for
        speed (values read once into locals); the arithmetic is the same, in the same
        order, as stepping each quantity in turn.
        """
        m = v.medium
        p = self._donors.get(v.donor) or self._donor_params(v.donor)
        h = dt_s / HOUR
        attached = v.attached
        capacity = p.confluent_density_at(v.pd) * v.area_cm2
        covered = min(1.0, attached / capacity)
        # room for attaching and dividing cells: MSC spread freely until close to confluence
        room = 1.0 - covered**p.contact_inhibition_shape

        activity = enzyme_activity(m.enzyme, m.serum, p.serum_inhibition) if m.enzyme else 0.0
        if activity > 0:
            self._digest(v, p, h, activity, temperature)
            attached = v.attached
        else:
            v.enzyme_min = 0.0

        # attachment of floating viable cells, and anoikis of the rest; both need a
        # warm plate (cells in a tube or on the deck at room temperature wait)
        warm = 1.0 if temperature == OPTIMUM_C else temperature_growth_factor(temperature)
        viable = m.viable
        if viable > 0 and activity == 0 and warm > 0:
            settle = 1.0 - math.exp(-h * warm / p.attach_tau_h)
            settling = viable * settle
            attaching = settling * p.plating_efficiency * room
            if attaching > 0:
                v.pd = (v.pd * attached + m.pd * attaching) / (attached + attaching)
                v.donor = _majority(attached, v.donor, attaching, m.donor)
            attached += attaching
            v.attached = attached
            m.viable = viable - settling
            m.dead += settling - attaching

        if attached <= 0:
            return
        td = p.doubling_time_at(v.pd)
        dividing = min(1.0, m.nutrient / p.nutrient_growth_threshold) * room
        if temperature != OPTIMUM_C:
            dividing *= temperature_growth_factor(temperature)
        seeded = v.seeded_at_s
        if seeded is not None:
            lag_h = v.lag_h  # a fixed lag long over: the factor is 1.0 (no multiplication)
            if lag_h is None or not _lag_over(lag_h, (self._t - seeded) / HOUR):
                dividing *= self._lag(v, p)
        r = 0.0 if math.isinf(td) else LN2 / td * v.growth_factor * dividing

        # nutrients, in fresh-medium equivalents: dividing cells at the full rate,
        # quiescent ones at a share of it
        volume = m.volume_uL
        if volume > 0:
            share = p.quiescent_uptake_share
            per_cell = p.medium_uptake_uL_per_cell_h * (share + (1.0 - share) * dividing)
            nutrient = max(0.0, m.nutrient - per_cell * attached * h / volume)
        else:
            nutrient = 0.0
        m.nutrient = nutrient

        death = p.death_rate_per_h
        if volume < p.min_wet_uL_per_cm2 * v.area_cm2:
            death += p.drying_death_rate_per_h
        if temperature > HEAT_STRESS_C:
            death += p.heat_death_rate_per_h_per_C * (temperature - HEAT_STRESS_C)
        if nutrient < p.nutrient_death_threshold:
            v.starved_h += h  # quiescent first, dying only after days without nutrients
            if v.starved_h > p.starvation_quiescence_h:
                spent = 1.0 - nutrient / p.nutrient_death_threshold
                death += p.starvation_death_rate_per_h * spent
        else:
            v.starved_h = 0.0

        born = attached * (math.exp(r * h) - 1.0)
        died = attached * (1.0 - math.exp(-death * h))
        v.pd += r * h / LN2
        v.attached = attached = min(max(capacity, attached), attached + born - died)
        m.dead += died
        if (
            attached < NO_CELLS
            and volume < p.min_wet_uL_per_cm2 * v.area_cm2
            and m.viable < NO_CELLS
        ):
            # a dried vessel's last fraction of a cell: dead, and never stepped again
            m.dead += attached + m.viable
            v.attached = m.viable = 0.0

    def _lag(self, v: Vessel, p: CultureParameters) -> float:
        """Growth ramping up after seeding; the lag is fixed once the seeding is over."""
        assert v.seeded_at_s is not None
        age_h = (self._t - v.seeded_at_s) / HOUR
        lag_h = v.lag_h
        if lag_h is None:
            lag_h = p.lag_h(v.seeded_per_cm2, v.pd)
            if age_h * HOUR > SEEDING_WINDOW_S:
                v.lag_h = lag_h
        if _lag_over(lag_h, age_h):
            return 1.0
        return 1.0 - math.exp(-age_h / lag_h)

    def _digest(
        self, v: Vessel, p: CultureParameters, h: float, activity: float, temperature: float
    ) -> None:
        """Enzyme at work: cells lift off into the liquid, and some are killed."""
        speed = activity * min(1.0, max(0.1, (temperature - 20.0) / (OPTIMUM_C - 20.0)))
        dose = speed * h * 60.0  # enzyme-minutes at full strength and 37 C
        before, after = v.enzyme_min, v.enzyme_min + dose
        v.enzyme_min = after
        k, scale = p.detach_shape, p.detach_time_min
        lift = 1.0 - math.exp(-((after / scale) ** k - (before / scale) ** k))
        kill = 1.0 - math.exp(-p.enzyme_damage_per_min * dose)
        m = v.medium
        lifted = v.attached * lift
        if lifted > 0:
            m.pd = (m.pd * m.viable + v.pd * lifted) / (m.viable + lifted)
            m.donor = _majority(m.viable, m.donor, lifted, v.donor)
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
        self._sync_for(container)
        self._liquid_of(container).add(liquid)

    def _sync_for(self, container: str) -> None:
        """Bring the vessels up to now before touching a vessel; tubes and troughs have no
        biology, so pipetting from a reservoir does not step every vessel (a speed-up)."""
        if container in self.vessels:
            self.sync()

    def _liquid_of(self, container: str) -> Liquid:
        if container in self.vessels:
            return self.vessels[container].medium
        return self.containers.setdefault(container, Liquid())

    def withdraw(self, container: str, volume_uL: float) -> Liquid:
        """Liquid handler aspirates from ``container``: the cells leave with the liquid."""
        self._sync_for(container)
        return self._liquid_of(container).take(volume_uL)

    def deliver(self, container: str, liquid: Liquid) -> None:
        """Liquid handler dispenses into ``container``; a first delivery of cells seeds it.

        Deliveries of cells within the hour after the first are the same seeding: their
        density sets the lag.
        """
        self._sync_for(container)
        if container in self.vessels:
            v = self.vessels[container]
            if liquid.viable > 0:
                if v.attached == 0 and v.medium.viable == 0:
                    v.seeded_at_s, v.seeded_per_cm2, v.lag_h = self._t, 0.0, None
                if v.seeded_at_s is not None and self._t - v.seeded_at_s <= SEEDING_WINDOW_S:
                    v.seeded_per_cm2 += liquid.viable / v.area_cm2
        self._liquid_of(container).add(liquid)

    # --- what instruments and reports see ----------------------------------------

    def state(self, vessel: str) -> VesselState:
        self.sync()
        v = self.vessels[vessel]
        p = self.donor_params(v.donor)
        density = p.confluent_density_at(v.pd)
        length, width = p.cell_shape_um(v.pd)
        return VesselState(
            name=v.name,
            area_cm2=v.area_cm2,
            attached_viable=v.attached,
            floating_viable=v.medium.viable,
            dead=v.medium.dead,
            medium_volume_uL=v.medium.volume_uL,
            nutrient=v.medium.nutrient,
            confluence=min(1.0, v.attached / (density * v.area_cm2)),
            population_doublings=v.pd,
            cell_length_um=length,
            cell_width_um=width,
            confluent_density_per_cm2=density,
            donor=v.donor,
        )

    def liquid_of(self, container: str) -> Liquid:
        """What a container or vessel holds now (the model's own object: do not change it)."""
        self.sync()
        return self._liquid_of(container)

    def liquid(self, container: str) -> Liquid:
        """A copy of what a non-vessel container holds now."""
        self._sync_for(container)
        return replace(self._liquid_of(container))

    # --- persistence (the simulated lab keeps its state on disk) ---------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here, as JSON-able data.

        Not synced first: the model advances lazily from ``_t``, so the vessels as they
        are at ``_t`` are the exact state.
        """
        vessels = {}
        for n, v in self.vessels.items():
            st = dict(vars(v))  # plain fields; faster than dataclasses.asdict, called per action
            del st["environment"]
            st["medium"] = dict(vars(v.medium))
            vessels[n] = st
        return {
            "t": self._t,
            "seed": self.seed,
            "vessels": vessels,
            "containers": {n: dict(vars(liq)) for n, liq in self.containers.items()},
        }

    def load_state(
        self, state: dict[str, Any], environment_of: Callable[[str | None], Environment | None]
    ) -> None:
        """Continue from ``to_state`` data; ``environment_of`` maps an environment's name
        (``Vessel.environment_name``) back to its temperature function."""
        self._t = float(state["t"])
        self.seed = int(state["seed"])
        self.vessels = {}
        for name, st in state["vessels"].items():
            data = dict(st)
            data["medium"] = Liquid(**data["medium"])
            v = Vessel(**data)
            v.environment = environment_of(v.environment_name)
            self.vessels[name] = v
        self.containers = {n: Liquid(**liq) for n, liq in state["containers"].items()}
