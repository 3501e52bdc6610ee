"""Vessel logistics of a plate-based line: unit operations in batches that fit the deck.

With vessels from a hotel (``Workcell.inventory``) a campaign step covers more
vessels than the deck holds at once: ten working positions, a 200 mL medium
trough, a waste trough, a pool. Each function here cuts its work into batches
that fit the working positions and the reservoirs, and between batches calls
``between`` (the campaign's housekeeping: top-ups, waste, tips, each recorded)
so a step over a hundred vessels needs no more than the deck has. Vessels are
drawn from the hotel for seeding, unused ones go back, and emptied ones are
discarded, each recorded by the workcell.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from protocols import harvest, media_exchange, passaging, seeding
from protocols.campaign.plan import detach_tips
from protocols.pipetting import DEAD_VOLUME_SHARE
from workcell.assembly.workcell import Workcell
from workcell.labware import growth_area_cm2

if TYPE_CHECKING:
    from protocols.campaign.engine import CampaignParams
    from protocols.campaign.plan import CapacityPlan

Between = Callable[[Workcell], Awaitable[None]]
ACTOR = "campaign"
SPARE = 0.95  # plan batches to 95 % of a reservoir, for residuals and rounding


def _capacity_uL(wc: Workcell, name: str) -> float:
    """What a container offers a batch right after housekeeping: a full reagent, an empty sink."""
    c = wc.container(name)
    site = next((s for s in wc.config.deck.sites() if s.name == name), None)
    if site is not None and site.contents is not None:
        return site.contents.volume_mL * 1000 - DEAD_VOLUME_SHARE * c.max_volume
    return c.max_volume


def batch_size(wc: Workcell, per_vessel_uL: dict[str, float], tips: int, limit: int) -> int:
    """How many vessels one batch may take: positions, every reservoir and sink, tips."""
    n = limit
    for name, need in per_vessel_uL.items():
        if need > 0:
            n = min(n, int(SPARE * _capacity_uL(wc, name) // need))
    racks = wc.tip_racks()
    all_tips = sum(r.num_items for r in racks)
    if tips > 0:
        n = min(n, all_tips // tips)
    return max(1, n)


def _area(wc: Workcell, plate: str) -> float:
    return sum(growth_area_cm2(w) for w in wc.plate(plate).get_all_items())  # type: ignore[arg-type]


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def positions(wc: Workcell) -> int:
    assert wc.inventory is not None
    return len(wc.inventory.positions)


async def seed_from_vial(
    wc: Workcell, p: CampaignParams, plan: CapacityPlan, between: Between
) -> list[seeding.SeedingResult]:
    """The plan's first-phase vessels from the hotel, seeded from the thawed vial."""
    n = plan.phases[0].vessels
    area = plan.vessel_area_cm2
    per = {"medium": p.medium_mL_per_cm2 * area * 1000}
    wells = _wells_of_labware(p.vessel_labware)
    size = batch_size(wc, per, wells + 1, positions(wc))  # a tip per well, one for medium
    results = []
    for i, count in enumerate(_sizes(n, size)):
        if i:
            await between(wc)
        plates = wc.draw_vessels(p.vessel_labware, count, ACTOR)
        sp = seeding.SeedingParams(
            suspension=p.suspension,
            plates=plates,
            density_cells_per_cm2=p.density_cells_per_cm2,
            medium_mL_per_cm2=p.medium_mL_per_cm2,
        )
        if i == 0:
            results.append(await seeding.run(wc, sp, actor=ACTOR))  # loads the vial
        else:
            planned = seeding.plan(wc, sp, loaded=True)
            results.append(await seeding.seed(wc, planned, sp, ACTOR))
        for plate in plates:
            await wc.store_plate(plate)
    tube = wc.container(p.suspension.tube)
    left = tube.tracker.get_used_volume()
    wc.event(
        "vial_remainder",
        ACTOR,
        disposition="unused",
        volume_uL=left,
        viable_cells=left / 1000 * p.suspension.viable_cells_per_mL,
        message="cells of the vial the plan does not need: not seeded (bank or discard)",
    )
    return results


def _sizes(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


async def feed(
    wc: Workcell, plates: list[str], p: CampaignParams, between: Between
) -> list[media_exchange.MediaExchangeResult]:
    area = max(_area(wc, x) for x in plates)
    wells = max(wc.plate(x).num_items for x in plates)
    per = {"medium": p.medium_mL_per_cm2 * area * 1000, "waste": p.medium_mL_per_cm2 * area * 1000}
    size = batch_size(wc, per, 2 * wells, positions(wc))
    out = []
    for i, group in enumerate(_chunks(plates, size)):
        if i:
            await between(wc)
        out.append(
            await media_exchange.run(
                wc,
                media_exchange.MediaExchangeParams(
                    plates=group, medium_mL_per_cm2=p.medium_mL_per_cm2
                ),
                actor=ACTOR,
            )
        )
    return out


async def passage(
    wc: Workcell, plate: str, p: CampaignParams, max_plates: int
) -> passaging.PassagingResult:
    """One vessel split into at most ``max_plates`` new vessels from the hotel."""
    d = p.detach
    area = _area(wc, plate)
    wells = wc.plate(plate).num_items
    child_area = _area_of_labware(wc, p.vessel_labware)
    neutralise = d.enzyme_mL_per_cm2 * area * 1000 * d.neutralise_ratio
    medium_room = SPARE * _capacity_uL(wc, d.medium_reservoir) - neutralise
    fit = int(medium_room // (p.medium_mL_per_cm2 * child_area * 1000))
    free = len(wc.inventory.free_positions()) if wc.inventory else 0
    left = wc.inventory.stock.get(p.vessel_labware, 0) if wc.inventory else 0
    k = max(1, min(max_plates, fit, free - 1, left))
    children = wc.draw_vessels(p.vessel_labware, k, ACTOR)
    result = await passaging.run(
        wc,
        passaging.PassagingParams(
            plate=plate,
            destination_plates=children,
            confluence_threshold_percent=p.confluence_threshold_percent,
            density_cells_per_cm2=p.density_cells_per_cm2,
            medium_mL_per_cm2=p.medium_mL_per_cm2,
            detach=d,
            max_child_vessels=k * max(1, wells),
        ),
        actor=ACTOR,
    )
    for child in children:
        if not wc.in_incubator(child):
            wc.put_back_vessel(child, ACTOR)
    if result.passaged:
        wc.discard_vessel(plate, ACTOR)
    return result


def _wells_of_labware(labware_name: str) -> int:
    from workcell import labware

    return len(labware.make("labware", labware_name, "probe").get_all_items())


def _area_of_labware(wc: Workcell, labware_name: str) -> float:
    from workcell import labware

    plate = labware.make("labware", labware_name, "probe")
    return sum(growth_area_cm2(w) for w in plate.get_all_items())  # type: ignore[arg-type]


async def harvest_all(
    wc: Workcell, plates: list[str], p: CampaignParams, between: Between
) -> harvest.HarvestResult:
    """Every vessel, in batches that fit the deck, pooled batch by batch into the lot."""
    d = p.detach.model_copy(update={"pool_tube": p.harvest_pool})
    area = max(_area(wc, x) for x in plates)
    enzyme = d.enzyme_mL_per_cm2 * area * 1000
    per = {
        d.pbs_reservoir: d.wash_pbs_mL_per_cm2 * area * 1000,
        d.enzyme_reservoir: enzyme,
        d.medium_reservoir: enzyme * d.neutralise_ratio,
        d.waste: (p.medium_mL_per_cm2 + d.wash_pbs_mL_per_cm2) * area * 1000,
        d.pool_tube: enzyme * (1 + d.neutralise_ratio) + d.residual_uL_per_cm2 * area,
    }
    wells = max(wc.plate(x).num_items for x in plates)
    size = batch_size(wc, per, detach_tips(wells), positions(wc))
    groups = _chunks(plates, size)
    result: harvest.HarvestResult | None = None
    for i, group in enumerate(groups):
        if i:
            await between(wc)
        result = await harvest.run(
            wc,
            harvest.HarvestParams(
                plates=group,
                patient_weight_kg=p.patient_weight_kg,
                target_dose_cells_per_kg=p.target_dose_cells_per_kg,
                detach=d,
                part=i + 1,
                parts=len(groups),
            ),
            actor=ACTOR,
        )
        for plate in group:
            wc.discard_vessel(plate, ACTOR)
    assert result is not None
    return result


def total_batches(n: int, size: int) -> int:
    return math.ceil(n / max(1, size))
