"""One Prefect flow per unit operation, parameters taken from the protocol's model.

The Prefect UI renders a form from each flow's signature, so ``params`` is the
protocol's own pydantic model (titles with units, descriptions, ranges) and the
deployment adds this workcell's plates, wells and reservoirs as dropdowns
(``flows.forms``). Each flow opens the workcell on its run folder, so seeding
from the UI today and passaging from it next week act on the same plates; on a
dry-run workcell ``incubate`` lets the simulated culture grow in between.

A run ends Completed with what it did as its state message ("Seeded 6 vessels on
plate_1 ..."), or Failed with the refusal or fault as one line; its log narrates
the lab work, and its artifacts are the result, the vessel table and the runs
that worked on the same run folder.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows.artifacts import key, publish_result, publish_vessels, runs_markdown
from flows.narrate import narrating, run_logger_say
from flows.placement import open_run
from flows.steps import as_task, flow_run_id, one_line, prefect_hold, resolve
from protocols import harvest, incubation, media_exchange, passaging, seeding
from protocols.campaign import housekeeping
from protocols.recovery.finish import finish_interrupted
from workcell.assembly.session import Session
from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


def _chores(wc: Workcell) -> None:
    """In a dry-run the simulated operator tops up and empties between runs.

    On hardware nothing is done behind the operator's back: a protocol that would
    run a reservoir dry refuses and says which one.
    """
    if wc.simulated:
        housekeeping.do(wc, housekeeping.due(wc), housekeeping.SIMULATED_OPERATOR)


def _operation_name(run: Callable[..., object]) -> str:
    """The registry name of a protocol's ``run`` (``protocols.seeding.run`` -> ``seeding``)."""
    import sys

    return str(sys.modules[run.__module__].NAME)


async def _run_in_step(
    session: Session,
    label: str,
    run: Callable[[Workcell, P, str], Awaitable[R]],
    params: P,
    store_after: Sequence[str] = (),
) -> R:
    """The protocol as one workcell step, run as one Prefect task.

    The step records the operation and its parameters, so that if it is
    interrupted, whoever opens the run folder next finishes it the same way.
    """

    async def work() -> R:
        data = {
            "operation": _operation_name(run),
            "params": params.model_dump(mode="json"),
            "store_after": list(store_after),
            "actor": "prefect",
        }
        async with session.step(label, owner="flow", data=data) as wc:
            wc.operator = prefect_hold(24 * 3600)
            _chores(wc)
            result = await run(wc, params, "prefect")
            for plate in store_after:
                if not wc.in_slot(plate):
                    await wc.store_plate(plate)
            return result

    return cast(R, await as_task(label, work, session.run_dir))


async def _operation(
    title: str,
    config: str | None,
    run_dir: str | None,
    run: Callable[[Workcell, P, str], Awaitable[R]],
    steps: list[tuple[str, P]],
    store_after: Sequence[str] = (),
    many: bool = False,
) -> State[Any]:
    """Open the workcell on its run folder, run each (label, params) as one step and
    task, publish the result, the vessel table and the runs on this folder; end
    Completed with what was done, or Failed with the refusal as one line."""
    t0 = time.perf_counter()
    logger = get_run_logger()
    try:
        cfg, folder = resolve(config, run_dir)
        results = []
        with narrating(run_logger_say()):
            async with open_run(cfg, folder) as s:
                logger.info("workcell %s, run folder %s", cfg.name, folder)
                # an interrupted step (this flow's or another run's) is finished first, at
                # the flow's level (a hold in it can pause the run for the operator)
                await finish_interrupted(s, prefect_hold(24 * 3600))
                for label, params in steps:
                    results.append(await _run_in_step(s, label, run, params, store_after))
                await publish_vessels(s.wc.store, str(folder))
                runs = runs_markdown(s.wc.store, flow_run_id())
                simulated = bool(getattr(s.wc.clock, "simulated", False))
    except WorkcellError as err:
        line = one_line(err)
        logger.error(line)
        return Failed(message=line)
    result: Any = results if many else results[0]
    head = await publish_result(
        title, result, simulated, time.perf_counter() - t0, str(folder.resolve())
    )
    if runs:
        await acreate_markdown_artifact(
            markdown=runs, key=f"runs-{key(folder.name)}", description="runs on this run folder"
        )
    logger.info(head)
    return Completed(message=head, data=result)


@flow(name="seed")
async def seed(
    params: seeding.SeedingParams, config: str | None = None, run_dir: str | None = None
) -> seeding.SeedingResult:
    """Seed plates from a counted suspension and put them in the incubator."""
    label = f"seed {', '.join(params.plates)}"
    return await _operation(  # type: ignore[return-value]
        "Seeding", config, run_dir, seeding.run, [(label, params)], store_after=params.plates
    )


@flow(name="feed")
async def feed(
    params: media_exchange.MediaExchangeParams,
    config: str | None = None,
    run_dir: str | None = None,
) -> list[media_exchange.MediaExchangeResult]:
    """Media exchange, one task per plate (the plate leaves the incubator once)."""
    steps = [(f"feed {p}", params.model_copy(update={"plates": [p]})) for p in params.plates]
    return await _operation(  # type: ignore[return-value]
        "Feeding", config, run_dir, media_exchange.run, steps, many=True
    )


@flow(name="passage")
async def passage(
    params: passaging.PassagingParams, config: str | None = None, run_dir: str | None = None
) -> passaging.PassagingResult:
    """Image a plate; if confluent, detach, count and seed the children it implies."""
    return await _operation(  # type: ignore[return-value]
        "Passage", config, run_dir, passaging.run, [(f"passage {params.plate}", params)]
    )


@flow(name="harvest")
async def harvest_flow(
    params: harvest.HarvestParams, config: str | None = None, run_dir: str | None = None
) -> harvest.HarvestResult:
    """Detach the batch, pool, count and report the dose."""
    return await _operation(  # type: ignore[return-value]
        "Harvest", config, run_dir, harvest.run, [("harvest", params)]
    )


@flow(name="incubate")
async def incubate(
    params: incubation.IncubationParams = incubation.IncubationParams(),  # noqa: B008
    config: str | None = None,
    run_dir: str | None = None,
) -> incubation.IncubationResult:
    """Dry-run only: let the simulated culture grow for some hours, then image it."""
    label = f"incubate {params.hours:g} h"
    return await _operation(  # type: ignore[return-value]
        "Incubation", config, run_dir, incubation.run, [(label, params)]
    )


OPERATION_FLOWS: dict[str, Flow[..., Any]] = {
    "seed": seed,
    "feed": feed,
    "incubate": incubate,
    "passage": passage,
    "harvest": harvest_flow,
}
