"""One Prefect flow per unit operation, parameters taken from the protocol's model.

The Prefect UI renders a form from each flow's signature, so ``params`` is the
protocol's own pydantic model (ranges, units in the names, descriptions) and the
refusals the protocol makes before anything moves reach the operator as the
flow run's error. Each flow opens the workcell on its run folder, so seeding from
the UI today and passaging from it next week act on the same plates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from prefect import Flow, flow, get_run_logger
from pydantic import BaseModel

from flows.placement import open_run
from flows.steps import as_task, publish_result, publish_vessels, resolve
from protocols import harvest, media_exchange, passaging, seeding
from protocols.campaign import housekeeping
from workcell.assembly.session import Session
from workcell.assembly.workcell import Workcell

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


def _chores(wc: Workcell) -> None:
    """In a dry-run the simulated operator tops up and empties between runs.

    On hardware nothing is done behind the operator's back: a protocol that would
    run a reservoir dry refuses and says which one.
    """
    if wc.world is not None:
        housekeeping.do(wc, housekeeping.due(wc), housekeeping.SIMULATED_OPERATOR)


async def _run_in_step(
    session: Session,
    label: str,
    run: Callable[[Workcell, P, str], Awaitable[R]],
    params: P,
    store_after: Sequence[str] = (),
) -> R:
    """The protocol as one checkpointed workcell step, run as one Prefect task."""

    async def work() -> R:
        async with session.step(label) as wc:
            _chores(wc)
            result = await run(wc, params, "prefect")
            for plate in store_after:
                if not wc.in_incubator(plate):
                    await wc.store_plate(plate)
            return result

    return cast(R, await as_task(label, work, session.run_dir))


async def _operation(
    config: str | None,
    run_dir: str | None,
    run: Callable[[Workcell, P, str], Awaitable[R]],
    steps: list[tuple[str, P]],
    store_after: Sequence[str] = (),
) -> list[R]:
    """Open the workcell on its run folder, run each (label, params) as one step and
    task, and publish each result and the vessel table as artifacts."""
    cfg, folder = resolve(config, run_dir)
    results = []
    async with open_run(cfg, folder) as s:
        for label, params in steps:
            result = await _run_in_step(s, label, run, params, store_after)
            await publish_result(label, result)
            results.append(result)
        await publish_vessels(s.wc.store, str(folder))
    return results


@flow(name="seed")
async def seed(
    params: seeding.SeedingParams, config: str | None = None, run_dir: str | None = None
) -> seeding.SeedingResult:
    """Seed plates from a counted suspension and put them in the incubator."""
    label = f"seed {', '.join(params.plates)}"
    (result,) = await _operation(
        config, run_dir, seeding.run, [(label, params)], store_after=params.plates
    )
    return result


@flow(name="feed")
async def feed(
    params: media_exchange.MediaExchangeParams,
    config: str | None = None,
    run_dir: str | None = None,
) -> list[media_exchange.MediaExchangeResult]:
    """Media exchange, one task per plate (the plate leaves the incubator once)."""
    steps = [(f"feed {p}", params.model_copy(update={"plates": [p]})) for p in params.plates]
    return await _operation(config, run_dir, media_exchange.run, steps)


@flow(name="passage")
async def passage(
    params: passaging.PassagingParams, config: str | None = None, run_dir: str | None = None
) -> passaging.PassagingResult:
    """Image a plate; if confluent, detach, count and seed the children it implies."""
    (result,) = await _operation(
        config, run_dir, passaging.run, [(f"passage {params.plate}", params)]
    )
    get_run_logger().info("%s", result.decision)
    return result


@flow(name="harvest")
async def harvest_flow(
    params: harvest.HarvestParams, config: str | None = None, run_dir: str | None = None
) -> harvest.HarvestResult:
    """Detach the batch, pool, count and report the dose."""
    (result,) = await _operation(config, run_dir, harvest.run, [("harvest", params)])
    return result


OPERATION_FLOWS: dict[str, Flow[..., Any]] = {
    "seed": seed,
    "feed": feed,
    "passage": passage,
    "harvest": harvest_flow,
}
