"""Capacity planning: will the dose fit this workcell, before the first cell moves?

From the vial, the seeding density, the growth model's expectation and the target,
the plan works out how many growth phases (passages) the dose needs, how much
surface (and so how many vessels) each phase needs, and from that the incubator
slots at the peak, the empty vessels drawn from the hotel, litres of medium, PBS
and enzyme, tips, and days. A plan that does not fit names each thing that runs
out (slots, vessels, passages, days; medium, PBS, enzyme and tips when the config's
``inventory.supplies`` says what is on hand) and how far the campaign would get.

The growth expectation is the culture model's own: one vessel of the model
(``simulators.culture.CultureModel`` with the workcell's culture parameters, its
variation between vessels switched off) is seeded at the planned density, fed on
the campaign's schedule and grown until it reaches the confluence threshold. So
the plan follows any recalibration of the model. What the model does not give,
the share of counted cells a passage recovers (detachment, pooling, the tube's
dead volume), is the campaign parameter ``expected_recovery``, an assumption the
record compares with each passage's count.

Phases are planned backwards from the harvest: the last phase needs the surface
that, at the threshold confluence, holds the target times the harvest margin (as
the campaign's image estimate counts it); each earlier phase needs the surface
whose cells seed the next, times ``plan_safety``. The fewest phases the vial can
reach are used; the vial's cells beyond what the first phase needs are recorded as
unused when it is seeded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from simulators.culture import CultureModel, CultureParameters, Liquid

DAY_S = 86400.0

# Tips one tip group takes for a transfer of so many uL: 1 on a single channel; a group
# of channels takes a tip per channel it uses (``protocols.pipetting.tips_per_transfer``).
TipsFor = Callable[[float], int]


def one_tip(volume_uL: float) -> int:
    return 1


def seed_tips(wells: int, medium_uL: float, tips_for: TipsFor = one_tip) -> int:
    """Tips one vessel's seeding takes: one per well for the cells (one channel), and the
    medium's tip group for the vessel (``medium_uL`` per well)."""
    return wells + tips_for(medium_uL)


def feed_tips(wells: int, medium_uL: float, tips_for: TipsFor = one_tip) -> int:
    """Tips one vessel's media exchange takes: per well a group for the spent medium out
    and one for the fresh medium in (``medium_uL`` each)."""
    return 2 * wells * tips_for(medium_uL)


def detach_tips(
    wells: int,
    medium_uL: float = 0.0,
    pbs_uL: float = 0.0,
    enzyme_uL: float = 0.0,
    neutralise_ratio: float = 0.0,
    tips_for: TipsFor = one_tip,
) -> int:
    """Tips one vessel's detachment takes (``protocols.detachment``'s tip groups): per well
    a group for the spent medium and one for the PBS out; per vessel one each for PBS
    in, enzyme, neutralising medium, and mixing and pooling (volumes per well)."""
    neutralise = enzyme_uL * neutralise_ratio
    return (
        wells * (tips_for(medium_uL) + tips_for(pbs_uL))
        + tips_for(pbs_uL)
        + tips_for(enzyme_uL)
        + tips_for(neutralise)
        + tips_for(enzyme_uL + neutralise)
    )


class Phase(BaseModel):
    """One growth phase: vessels seeded at one passage number and grown to a split or harvest."""

    model_config = ConfigDict(extra="forbid")

    passage: int
    vessels: int
    area_cm2: float
    cells_seeded: float
    days: float
    cells_at_end: float = Field(description="at the threshold confluence, as the model expects")
    feeds: int


class Shortfall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    what: str = Field(
        description="slots | vessels | passages | days | medium | pbs | enzyme | tips"
    )
    needed: float
    available: float
    message: str


class CapacityPlan(BaseModel):
    """What the campaign needs, against what the workcell has."""

    model_config = ConfigDict(extra="forbid")

    target_cells: float
    vial_cells: float
    vial_cells_used: float
    vial_cells_unused: float
    vessel_labware: str
    vessel_area_cm2: float
    phases: list[Phase]
    days: float
    vessels: int
    hotel_stock: int
    peak_slots: int
    incubator_slots: int
    medium_L: float
    pbs_L: float
    enzyme_L: float
    tips: int
    expected_recovery: float
    shortfalls: list[Shortfall]
    reachable_cells: float = Field(description="harvest the plan expects within the limits")

    @property
    def fits(self) -> bool:
        return not self.shortfalls

    def final_passage(self) -> int:
        return self.phases[-1].passage

    def vessels_at(self, passage: int) -> int | None:
        return next((p.vessels for p in self.phases if p.passage == passage), None)


@lru_cache(maxsize=64)
def expected_growth(
    params_json: str,
    density_cells_per_cm2: float,
    pd: float,
    medium_mL_per_cm2: float,
    feed_every_days: float,
    threshold: float,
    max_days: float,
) -> tuple[float, float]:
    """(days, viable cells per cm2) for a vessel of the model to reach ``threshold`` confluence."""
    params = CultureParameters.model_validate_json(params_json)
    t = [0.0]
    model = CultureModel(lambda: t[0], params, seed=0)
    v = model.register_vessel("plan", 1.0)
    v.growth_factor = 1.0  # the expectation: no vessel-to-vessel variation
    volume = medium_mL_per_cm2 * 1000.0
    model.deliver(
        "plan", Liquid(volume_uL=volume, viable=density_cells_per_cm2, nutrient=1.0, pd=pd)
    )
    step = 3 * 3600.0
    next_feed = feed_every_days * DAY_S
    while t[0] < max_days * DAY_S:
        t[0] += step
        state = model.state("plan")
        if state.confluence >= threshold:
            return t[0] / DAY_S, state.attached_viable
        if t[0] >= next_feed:  # a feed: spent medium out, fresh in
            v.medium.nutrient = 1.0
            v.medium.volume_uL = volume
            next_feed += feed_every_days * DAY_S
    state = model.state("plan")
    return math.inf, state.attached_viable


def make_plan(
    *,
    culture: CultureParameters,
    vial_cells: float,
    vial_passage: int,
    vial_pd: float,
    target_cells: float,
    harvest_margin: float,
    calibration: Callable[[float], float],
    density_cells_per_cm2: float,
    medium_mL_per_cm2: float,
    feed_every_days: float,
    threshold: float,
    passage_limit: int,
    max_days: float,
    expected_recovery: float,
    plan_safety: float,
    vessel_labware: str,
    vessel_area_cm2: float,
    wells_per_vessel: int,
    hotel_stock: int,
    incubator_slots: int,
    wash_pbs_mL_per_cm2: float,
    enzyme_mL_per_cm2: float,
    neutralise_ratio: float,
    supplies: dict[str, float | None] | None = None,
    tips_for: TipsFor = one_tip,
) -> CapacityPlan:
    """The capacity plan (see module docstring); ``shortfalls`` empty when it fits."""

    def growth(pd: float) -> tuple[float, float]:
        return expected_growth(
            culture.model_dump_json(),
            density_cells_per_cm2,
            round(pd, 1),
            medium_mL_per_cm2,
            feed_every_days,
            threshold,
            max_days,
        )

    days_per_phase, cells_per_cm2 = growth(vial_pd)
    fold = cells_per_cm2 * expected_recovery / density_cells_per_cm2  # area growth per split
    pd_per_phase = math.log2(max(cells_per_cm2 / density_cells_per_cm2, 1.0))

    def final_area_for(phases: int) -> float:
        """The last phase's surface: the target x margin, as the image estimate counts it
        (its calibration at the cells' PD then, from the culture model)."""
        calib = calibration(vial_pd + (phases - 1) * pd_per_phase)
        return target_cells * harvest_margin / (calib * threshold)

    max_phases = max(1, passage_limit - vial_passage + 1)
    first_area_max = vial_cells / density_cells_per_cm2
    n = 1
    while first_area_max * fold ** (n - 1) < final_area_for(n) and n < max_phases and fold > 1:
        n += 1
    final_area = final_area_for(n)
    calibration_cells_per_cm2 = calibration(vial_pd + (n - 1) * pd_per_phase)
    areas = [final_area]
    for _ in range(n - 1):
        areas.insert(0, areas[0] / fold * plan_safety)
    areas = [min(a, first_area_max * fold**k) for k, a in enumerate(areas)]
    phases = []
    pd = vial_pd
    for k, area in enumerate(areas):
        days_k, per_cm2 = growth(pd)  # later phases start older: the model's senescence
        vessels = max(1, math.ceil(area / vessel_area_cm2 - 1e-9))
        if k == 0:  # no more first vessels than the vial can seed at the density
            vessels = min(vessels, max(1, int(first_area_max // vessel_area_cm2)))
        planned = vessels * vessel_area_cm2 if k < n - 1 else area
        feeds = int(days_k // feed_every_days) if math.isfinite(days_k) else 0
        phases.append(
            Phase(
                passage=vial_passage + k,
                vessels=vessels,
                area_cm2=planned,
                cells_seeded=planned * density_cells_per_cm2,
                days=days_k,
                cells_at_end=planned * per_cm2,
                feeds=feeds,
            )
        )
        pd += math.log2(max(per_cm2 / density_cells_per_cm2, 1.0))
    used = min(vial_cells, phases[0].cells_seeded)
    days = sum(p.days for p in phases)
    vessels = sum(p.vessels for p in phases)
    peak = max(
        [p.vessels for p in phases]
        + [a.vessels + b.vessels for a, b in zip(phases, phases[1:], strict=False)]
    )
    medium = pbs = enzyme = 0.0
    tips = 0
    for p in phases:
        area = p.vessels * vessel_area_cm2
        medium += area * medium_mL_per_cm2 * (1 + p.feeds)
        medium += area * enzyme_mL_per_cm2 * neutralise_ratio
        pbs += area * wash_pbs_mL_per_cm2
        enzyme += area * enzyme_mL_per_cm2
        well_area = vessel_area_cm2 / wells_per_vessel
        medium_uL = medium_mL_per_cm2 * well_area * 1000
        per_vessel = seed_tips(wells_per_vessel, medium_uL, tips_for)
        per_vessel += feed_tips(wells_per_vessel, medium_uL, tips_for) * p.feeds
        per_vessel += detach_tips(
            wells_per_vessel,
            medium_uL,
            wash_pbs_mL_per_cm2 * well_area * 1000,
            enzyme_mL_per_cm2 * well_area * 1000,
            neutralise_ratio,
            tips_for,
        )
        tips += per_vessel * p.vessels
    reach_area = first_area_max * fold ** (n - 1)
    reachable = min(final_area, reach_area) * calibration_cells_per_cm2 * threshold / harvest_margin
    shortfalls: list[Shortfall] = []

    def short(what: str, needed: float, available: float, message: str) -> None:
        shortfalls.append(Shortfall(what=what, needed=needed, available=available, message=message))

    if reach_area < final_area * (1 - 1e-9):
        short(
            "passages",
            math.ceil(math.log(final_area / first_area_max, fold)) + 1 if fold > 1 else math.inf,
            max_phases,
            f"the dose needs more growth phases than the passage limit {passage_limit} allows "
            f"from P{vial_passage}: {n} phases reach {reachable:.3g} of {target_cells:.3g} cells",
        )
    if days > max_days:
        short("days", days, max_days, f"{days:.1f} days expected, the campaign allows {max_days:g}")
    if vessels > hotel_stock:
        short(
            "vessels",
            vessels,
            hotel_stock,
            f"{vessels} empty {vessel_labware} needed, the hotel holds {hotel_stock}",
        )
    if peak > incubator_slots:
        short(
            "slots",
            peak,
            incubator_slots,
            f"{peak} incubator slots needed at the peak, the incubators hold {incubator_slots}",
        )
        reachable = min(reachable, reachable * incubator_slots / peak)
    final_vessels = phases[-1].vessels
    if vessels > hotel_stock and final_vessels > 0:  # the last phase gets what is left
        left = max(0, hotel_stock - (vessels - final_vessels))
        reachable = min(reachable, reachable * left / final_vessels)
    on_hand = supplies or {}
    for what, label, needed in (
        ("medium", "medium", medium / 1000),
        ("pbs", "PBS", pbs / 1000),
        ("enzyme", "enzyme", enzyme / 1000),
    ):
        have = on_hand.get(f"{what}_L")
        if have is not None and needed > have:
            short(what, needed, have, f"{needed:.2f} L of {label} needed, {have:g} L on hand")
    have_tips = on_hand.get("tips")
    if have_tips is not None and tips > have_tips:
        short("tips", tips, have_tips, f"{tips} tips needed, {have_tips:g} on hand")
    return CapacityPlan(
        target_cells=target_cells,
        vial_cells=vial_cells,
        vial_cells_used=used,
        vial_cells_unused=max(0.0, vial_cells - used),
        vessel_labware=vessel_labware,
        vessel_area_cm2=vessel_area_cm2,
        phases=phases,
        days=days,
        vessels=vessels,
        hotel_stock=hotel_stock,
        peak_slots=peak,
        incubator_slots=incubator_slots,
        medium_L=medium / 1000,
        pbs_L=pbs / 1000,
        enzyme_L=enzyme / 1000,
        tips=tips,
        expected_recovery=expected_recovery,
        shortfalls=shortfalls,
        reachable_cells=reachable,
    )


def plan_rows(plan: CapacityPlan) -> list[tuple[str, str]]:
    """The plan as (label, value) rows: one wording for the CLI, the UI and the record."""
    rows = [
        ("target", f"{plan.target_cells:.3g} viable cells"),
        (
            "vial",
            f"{plan.vial_cells:.3g} cells: {plan.vial_cells_used:.3g} seeded, "
            f"{plan.vial_cells_unused:.3g} unused",
        ),
    ]
    for p in plan.phases:
        rows.append(
            (
                f"P{p.passage}",
                f"{p.vessels} x {plan.vessel_labware} ({p.area_cm2:,.0f} cm2), "
                f"{p.cells_seeded:.3g} cells seeded, ~{p.days:.1f} days, {p.feeds} feeds, "
                f"~{p.cells_at_end:.3g} cells at the split",
            )
        )
    rows += [
        ("days", f"{plan.days:.1f}"),
        ("passages", str(len(plan.phases) - 1)),
        ("vessels from the hotel", f"{plan.vessels} of {plan.hotel_stock}"),
        ("incubator slots at peak", f"{plan.peak_slots} of {plan.incubator_slots}"),
        ("medium", f"{plan.medium_L:.2f} L"),
        ("PBS", f"{plan.pbs_L:.2f} L"),
        ("enzyme", f"{plan.enzyme_L:.2f} L"),
        ("tips", str(plan.tips)),
        ("expected recovery per passage", f"{100 * plan.expected_recovery:.0f} %"),
        ("fits", "yes" if plan.fits else "NO"),
    ]
    rows += [(f"runs out: {s.what}", s.message) for s in plan.shortfalls]
    if not plan.fits:
        rows.append(("reachable", f"~{plan.reachable_cells:.3g} cells"))
    return rows
