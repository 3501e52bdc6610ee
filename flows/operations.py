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

from flows.steps import as_task, publish_result, publish_vessels, resolve
from protocols import harvest, media_exchange, passaging, seeding
from workcell import housekeeping
from workcell.session import Session, open_session
from workcell.workcell import Workcell

SIM_OPERATOR = "operator (simulated)"
P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


def _chores(wc: Workcell) -> None:
    """In a dry-run the simulated operator tops up and empties between runs.

    On hardware nothing is done behind the operator's back: a protocol that would
    run a reservoir dry refuses and says which one.
    """
    if wc.world is not None:
        housekeeping.do(wc, housekeeping.due(wc), SIM_OPERATOR)


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

    return cast(R, await as_task(label, work))


@flow(name="seed")
async def seed(
    params: seeding.SeedingParams, config: str | None = None, run_dir: str | None = None
) -> seeding.SeedingResult:
    """Seed plates from a counted suspension and put them in the incubator."""
    cfg, folder = resolve(config, run_dir)
    async with open_session(cfg, folder) as s:
        label = f"seed {', '.join(params.plates)}"
        result = await _run_in_step(s, label, seeding.run, params, store_after=params.plates)
        await publish_result(label, result)
        await publish_vessels(s.wc.store, str(folder))
    return result


@flow(name="feed")
async def feed(
    params: media_exchange.MediaExchangeParams,
    config: str | None = None,
    run_dir: str | None = None,
) -> list[media_exchange.MediaExchangeResult]:
    """Media exchange, one task per plate (the plate leaves the incubator once)."""
    cfg, folder = resolve(config, run_dir)
    results = []
    async with open_session(cfg, folder) as s:
        for plate in params.plates:
            one = params.model_copy(update={"plates": [plate]})
            results.append(await _run_in_step(s, f"feed {plate}", media_exchange.run, one))
        for r in results:
            await publish_result("media exchange", r)
        await publish_vessels(s.wc.store, str(folder))
    return results


@flow(name="passage")
async def passage(
    params: passaging.PassagingParams, config: str | None = None, run_dir: str | None = None
) -> passaging.PassagingResult:
    """Image a plate; if confluent, detach, count and seed the children it implies."""
    cfg, folder = resolve(config, run_dir)
    async with open_session(cfg, folder) as s:
        result = await _run_in_step(s, f"passage {params.plate}", passaging.run, params)
        get_run_logger().info("%s", result.decision)
        await publish_result(f"passage {params.plate}", result)
        await publish_vessels(s.wc.store, str(folder))
    return result


@flow(name="harvest")
async def harvest_flow(
    params: harvest.HarvestParams, config: str | None = None, run_dir: str | None = None
) -> harvest.HarvestResult:
    """Detach the batch, pool, count and report the dose."""
    cfg, folder = resolve(config, run_dir)
    async with open_session(cfg, folder) as s:
        result = await _run_in_step(s, "harvest", harvest.run, params)
        await publish_result("harvest", result)
        await publish_vessels(s.wc.store, str(folder))
    return result


OPERATION_FLOWS: dict[str, Flow[..., Any]] = {
    "seed": seed,
    "feed": feed,
    "passage": passage,
    "harvest": harvest_flow,
}
