"""Vessel logistics of a plate-based line: unit operations in batches that fit the deck.

With vessels from a hotel (``Workcell.inventory``) a campaign step covers more
vessels than the deck holds at once: ten working positions, a 200 mL medium
trough, a waste trough, a pool. Each function here cuts its work into batches
that fit the working positions and the reservoirs, and between batches calls
``between`` (the campaign's housekeeping: top-ups, waste, tips, each recorded)
so a step over a hundred vessels needs no more than the deck has. Vessels are
drawn from the hotel for seeding, unused ones go back, and emptied ones are
discarded, each recorded by the workcell.

Each batch is a journal scope of its own (``Journal.scope``): a unit operation run
once per batch within one campaign step keeps its units and decisions per batch,
so a step interrupted in its third batch is resumed there. Vessels are drawn once
(their names kept before the first is drawn), and put back or discarded only while
the model still holds them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from protocols import harvest, media_exchange, passaging, seeding
from protocols.campaign.plan import detach_tips, feed_tips, seed_tips
from protocols.detachment import once_event
from protocols.pipetting import DEAD_VOLUME_SHARE, TipSupply, tips_per_transfer
from protocols.recovery.resumable import unit
from workcell.assembly.journaled import culture_wells
from workcell.assembly.workcell import Workcell
from workcell.labware import growth_area_cm2

if TYPE_CHECKING:
    from protocols.campaign.engine import CampaignParams
    from protocols.campaign.plan import CapacityPlan

Between = Callable[[Workcell], Awaitable[None]]
R = TypeVar("R", bound=BaseModel)
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


async def draw_once(wc: Workcell, key: str, labware_name: str, n: int) -> list[str]:
    """``n`` vessels from the hotel, drawn once in this step (or batch): a re-entered
    step draws only those of the names it kept that it had not drawn yet."""
    inv = wc.inventory
    assert inv is not None
    names = list(wc.journal.once(f"{key}:names", lambda: inv.next_names(n)))
    async with unit(wc, key, []) as u:
        if not u.done:
            todo = [x for x in names if x not in inv.in_use]
            if todo:
                wc.draw_vessels(labware_name, len(todo), ACTOR, names=todo)
    return names


async def batch_once(wc: Workcell, model: type[R], run: Callable[[], Awaitable[R]]) -> R:
    """A batch's unit operation, run once per scope: a re-entered step takes the result a
    finished batch kept (its vessels may be gone from the deck since) and runs the rest."""
    found, kept = wc.journal.remembered("result")
    if found:
        return model.model_validate(kept)
    result = await run()
    wc.journal.remember("result", result.model_dump(mode="json"))
    return result


def discard_if_held(wc: Workcell, plate: str) -> None:
    """An emptied vessel to waste, unless the model no longer holds it (done before)."""
    if wc.inventory is not None and plate in wc.inventory.in_use:
        wc.discard_vessel(plate, ACTOR)


def _tips_for(wc: Workcell) -> Callable[[float], int]:
    return tips_per_transfer(TipSupply.of(wc))


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
    tips = seed_tips(wells, per["medium"] / wells, _tips_for(wc))
    size = batch_size(wc, per, tips, positions(wc))
    results = []
    for i, count in enumerate(_sizes(n, size)):
        with wc.journal.scope(f"batch{i + 1}"):
            if i and not wc.journal.remembered("result")[0]:
                await between(wc)
            plates = await draw_once(wc, "draw", p.vessel_labware, count)
            sp = seeding.SeedingParams(
                suspension=p.suspension,
                plates=plates,
                density_cells_per_cm2=p.density_cells_per_cm2,
                medium_mL_per_cm2=p.medium_mL_per_cm2,
            )

            async def seed(i: int = i, sp: seeding.SeedingParams = sp) -> seeding.SeedingResult:
                if i == 0:
                    return await seeding.run(wc, sp, actor=ACTOR)  # loads the vial
                planned = seeding.plan(wc, sp, loaded=True)
                return await seeding.seed(wc, planned, sp, ACTOR)

            results.append(await batch_once(wc, seeding.SeedingResult, seed))
            for plate in plates:
                if not wc.in_slot(plate):
                    await wc.store_plate(plate)
    tube = wc.container(p.suspension.tube)
    left = tube.tracker.get_used_volume()
    once_event(  # once per step, should the step be re-entered after it
        wc,
        "vial_remainder",
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
    size = batch_size(
        wc, per, feed_tips(wells, per["medium"] / wells, _tips_for(wc)), positions(wc)
    )
    out = []
    for i, group in enumerate(_chunks(plates, size)):
        with wc.journal.scope(f"batch{i + 1}"):
            if i and not wc.journal.remembered("result")[0]:
                await between(wc)
            params = media_exchange.MediaExchangeParams(
                plates=group, medium_mL_per_cm2=p.medium_mL_per_cm2
            )

            async def run(
                params: media_exchange.MediaExchangeParams = params,
            ) -> media_exchange.MediaExchangeResult:
                return await media_exchange.run(wc, params, actor=ACTOR)

            out.append(await batch_once(wc, media_exchange.MediaExchangeResult, run))
    return out


async def passage(
    wc: Workcell, plate: str, p: CampaignParams, max_plates: int
) -> passaging.PassagingResult:
    """One vessel split into at most ``max_plates`` new vessels from the hotel.

    Resumable: a re-entered step whose passage was done (its parent may be discarded
    since) takes the result it kept and only finishes putting back and discarding.
    """
    found, kept = wc.journal.remembered("result")
    if found:
        result = passaging.PassagingResult.model_validate(kept)
        children = list(wc.journal.remembered("draw:names")[1] or [])
    else:
        children, result = await _split(wc, plate, p, max_plates)
        wc.journal.remember("result", result.model_dump(mode="json"))
    inv = wc.inventory
    for child in children:
        if inv is not None and child in inv.in_use and not wc.in_incubator(child):
            wc.put_back_vessel(child, ACTOR)
    if result.passaged:
        discard_if_held(wc, plate)
    return result


async def _split(
    wc: Workcell, plate: str, p: CampaignParams, max_plates: int
) -> tuple[list[str], passaging.PassagingResult]:
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
    # kept with the vessels it concerns, so an interruption before any action on them
    # (drawing the children) still names them
    k = int(
        wc.journal.once("children", lambda: k, vessels=lambda _: culture_wells(wc, wc.plate(plate)))
    )
    children = await draw_once(wc, "draw", p.vessel_labware, k)
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
    return children, result


def _wells_of_labware(labware_name: str) -> int:
    from workcell import labware

    return len(labware.make("labware", labware_name, "probe").get_all_items())


def _area_of_labware(wc: Workcell, labware_name: str) -> float:
    from workcell import labware

    plate = labware.make("labware", labware_name, "probe")
    return sum(growth_area_cm2(w) for w in plate.get_all_items())  # type: ignore[arg-type]


def _harvest_groups(wc: Workcell, plates: list[str], p: CampaignParams) -> list[list[str]]:
    """The harvest's batches: as many vessels as the deck's positions, reservoirs and tips take."""
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
    tips = detach_tips(
        wells,
        p.medium_mL_per_cm2 * area * 1000 / wells,
        d.wash_pbs_mL_per_cm2 * area * 1000 / wells,
        enzyme / wells,
        d.neutralise_ratio,
        _tips_for(wc),
    )
    size = batch_size(wc, per, tips, positions(wc))
    return _chunks(plates, size)


async def harvest_all(
    wc: Workcell, plates: list[str], p: CampaignParams, between: Between
) -> harvest.HarvestResult:
    """Every vessel, in batches that fit the deck, pooled batch by batch into the lot."""
    d = p.detach.model_copy(update={"pool_tube": p.harvest_pool})
    # the batches as first cut (a re-entered step's first batches may be gone from the deck)
    groups = list(
        wc.journal.once(
            "groups",
            lambda: _harvest_groups(wc, plates, p),
            vessels=lambda _: [v for x in plates for v in culture_wells(wc, wc.plate(x))],
        )
    )
    result: harvest.HarvestResult | None = None
    for i, group in enumerate(groups):
        with wc.journal.scope(f"batch{i + 1}"):
            if i and not wc.journal.remembered("result")[0]:
                await between(wc)
            params = harvest.HarvestParams(
                plates=group,
                patient_weight_kg=p.patient_weight_kg,
                target_dose_cells_per_kg=p.target_dose_cells_per_kg,
                detach=d,
                part=i + 1,
                parts=len(groups),
            )

            async def run(params: harvest.HarvestParams = params) -> harvest.HarvestResult:
                return await harvest.run(wc, params, actor=ACTOR)

            result = await batch_once(wc, harvest.HarvestResult, run)
            for plate in group:
                discard_if_held(wc, plate)
    assert result is not None
    return result


def total_batches(n: int, size: int) -> int:
    return math.ceil(n / max(1, size))
