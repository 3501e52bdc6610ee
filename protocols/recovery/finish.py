"""Finishing the steps a session found interrupted, before any new work.

A step is re-entered (``Session.step(..., resume=step)``) and its work done again by
the same code, which skips what the journal says is done and finishes the rest as
each unit operation declares (``declarations.py``). Who owns a step decides how it
is re-entered: the campaign re-runs its decided action; a flow's step is re-run
from the operation and parameters it recorded. Then the culture plates go back
into the incubator, and a plate that was out past its window is a deviation
naming its vessels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from workcell.assembly.session import Session
from workcell.assembly.workcell import Workcell
from workcell.journal import StepInfo
from workcell.operator import Ask

StepHandler = Callable[[StepInfo], Awaitable[None]]


async def finish_interrupted(
    session: Session, ask: Ask | None = None, owners: dict[str, StepHandler] | None = None
) -> list[StepInfo]:
    """Finish every interrupted step, oldest first; returns them."""
    finished = []
    for step in list(session.interrupted):
        handler = (owners or {}).get(step.owner)
        if handler is not None:
            await handler(step)
        else:
            await _rerun(session, step, ask)
        finished.append(step)
    return finished


async def _rerun(session: Session, step: StepInfo, ask: Ask | None) -> None:
    from protocols.registry import PROTOCOLS

    operation = step.data.get("operation")
    async with session.step(step.label, resume=step) as wc:
        wc.operator = ask
        if operation in PROTOCOLS:
            entry = PROTOCOLS[operation]
            params = entry.params.model_validate(step.data.get("params") or {})
            await entry.run(wc, params)
        for plate in step.data.get("store_after", []):
            if not wc.in_slot(plate):
                await wc.store_plate(plate)
        await return_plates(wc)


async def return_plates(wc: Workcell) -> list[str]:
    """Culture plates found out of the incubator go back; past the window, a deviation."""
    back = []
    active = {v.plate for v in wc.store.vessels(state="active")}
    for plate in sorted(active):
        try:
            out = not wc.in_slot(plate)
        except Exception:  # noqa: BLE001 - a plate the config no longer has: not ours to move
            continue
        if not out:
            continue
        from protocols.campaign.windows import WindowParams  # windows imports the engine

        window = WindowParams().max_out_of_incubator_min
        minutes = _minutes_out(wc, plate)
        vessels = [v.id for v in wc.store.vessels(state="active", plate=plate)]
        await wc.store_plate(plate)
        wc.journal.recovery(
            f"returned {plate} to the incubator",
            f"found out of the incubator after the interruption ({minutes:.0f} min out)",
            vessels,
        )
        if minutes > window:
            wc.event(
                "deviation",
                "workcell",
                message=f"{plate} was out of the incubator {minutes:.0f} min (window "
                f"{window:g} min) after an interruption",
                vessels=vessels,
            )
        back.append(plate)
    return back


def _minutes_out(wc: Workcell, plate: str) -> float:
    """Minutes since the plate last left an incubator slot (from the record of its moves)."""
    left = None
    for e in wc.store.events("plate_moved"):
        if e.data.get("plate") != plate:
            continue
        location = str(e.data.get("location", ""))
        in_slot = (
            any(
                location.startswith(f"{name}:") and not location.endswith("transfer_station")
                for name in wc.incubators
            )
            and "loading_tray" not in location
        )
        left = None if in_slot else (left or e.time)
    if left is None:
        return 0.0
    return (wc.clock.now() - left).total_seconds() / 60
