"""Every device action through the journal: intent first, then the action, then its completion.

``journal_devices`` wraps the action methods of each device's back end, whichever
it is (a real STAR, PyLabRobot's Cytomat driver, the serial counter, the simulated
lab's back ends), so a hardware workcell and a dry-run write the same journal. The
intent holds the device, the action, the vessels, the reagent, the volumes, the
step and unit of work, and the effect the action has on the controller's model of
the deck (the volume a container will hold, the tip spot emptied, where a plate
will be), which is what a restart replays once it knows the action happened.

The completion is also the action's entry in the batch record (type ``device``)
and in the in-memory action log that dry-run reports and the Opentrons export
read. A refusal by the device (``DeviceRefused``) completes the intent as failed;
any other error leaves it without a completion: its outcome is unknown.

A group of channels may fail in part: PyLabRobot's ``ChannelizedError`` names the
channels that failed while the others did their part (a real STAR's pick-up with a
missing tip on one channel). A pick-up completes as done with what is known: every
tip tried written off, the tips on the channels that hold one, the failed channels
named (``failed_channels``) and the effects the model takes (``effects``), which a
restart replays instead of the intent's. A partial aspirate or dispense is left
unknown: the error does not say what a failed channel's tip holds (a clot, a
liquid-level error part way), so reconciliation asks each channel's tip volume.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pylabrobot.liquid_handling.errors import ChannelizedError
from pylabrobot.resources import Container, Plate, Well

from workcell.errors import DeviceRefused

if TYPE_CHECKING:
    from workcell.assembly.workcell import Workcell


def _vessel(res: Any) -> str | None:
    return res.name if isinstance(res, Well) else None


def culture_wells(wc: Workcell, plate: Plate) -> list[str]:
    """The wells of a plate that are culture vessels in the store."""
    return [w.name for w in plate.get_all_items() if wc.store.vessel(w.name) is not None]


def vessels_among(wc: Workcell, wells: list[str]) -> list[str]:
    """The culture vessels among ``wells`` (each once, in order): an image's intent names
    them, so its recovery entry after a crash does too."""
    return [w for w in dict.fromkeys(wells) if wc.store.vessel(w) is not None]


async def act(
    wc: Workcell,
    device: str,
    action: str,
    data: dict[str, Any],
    send: Callable[[], Awaitable[Any]],
    details: list[dict[str, Any]],
    vessel: str | None = None,
    failed_effects: dict[str, Any] | None = None,
    result_detail: Callable[[Any], dict[str, Any]] | None = None,
    partial_effects: Callable[[list[int]], dict[str, Any]] | None = None,
) -> Any:
    """Intent, action, completion; ``details`` go to the action log (one per physical op).

    ``partial_effects`` (given for pick-ups): the model's effects when the channels
    passed to it failed and the others did their part; without it a partial failure
    (``ChannelizedError``) leaves the outcome unknown, for reconciliation to settle.
    """
    journal = wc.journal
    intent = journal.intent(device, action, data, vessel)
    try:
        result = await send()
    except ChannelizedError as err:
        channels = [int(d["channel"]) for d in details]
        failed = sorted({int(ch) for ch in err.errors} & set(channels))
        if partial_effects is None or not failed:
            raise  # unknown: what each channel did is for the device to tell
        journal.crash_point("reply")
        if len(failed) == len(channels):  # nothing done: as a refusal
            _refused(wc, intent, device, action, err, failed_effects, details, vessel)
            raise
        done = [ch for ch in channels if ch not in failed]
        journal.complete(
            intent,
            device,
            action,
            {
                "error": str(err),
                "done_channels": done,
                "failed_channels": failed,
                "effects": partial_effects(failed),
                "ops": details,
            },
            vessel=vessel,
        )
        for d in details:
            ok = int(d["channel"]) in done
            wc.log.append(wc.clock.now(), device, action if ok else f"{action}_failed", **d)
        raise
    except DeviceRefused as err:
        journal.crash_point("reply")
        _refused(wc, intent, device, action, err, failed_effects, details, vessel)
        raise
    journal.crash_point("reply")
    extra = result_detail(result) if result_detail is not None else {}
    lab = getattr(wc.liquid_handler.backend, "last_results", None) if device == wc.lh_name else None
    if lab and len(lab) == len(details):
        details = [{**d, **(r or {})} for d, r in zip(details, lab, strict=True)]
    journal.complete(
        intent,
        device,
        action,
        {**extra, "ops": details} if len(details) != 1 else {**extra, **details[0]},
        vessel=vessel,
    )
    for d in details:
        wc.log.append(wc.clock.now(), device, action, **{**d, **extra})
    return result


def _refused(
    wc: Workcell,
    intent: int,
    device: str,
    action: str,
    err: Exception,
    failed_effects: dict[str, Any] | None,
    details: list[dict[str, Any]],
    vessel: str | None,
) -> None:
    """The completion of an action the device refused: failed, with its written-off effects."""
    wc.journal.complete(
        intent,
        device,
        action,
        {"error": str(err), "effects": failed_effects or {}},
        outcome="failed",
        vessel=vessel,
    )
    for d in details:
        wc.log.append(wc.clock.now(), device, f"{action}_failed", **d)


def _wrap(backend: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = getattr(backend, name)
    wrapped = functools.wraps(original)(make(original))
    # PyLabRobot checks each call's arguments against the back end method's signature;
    # given here once, it is not worked out again through ``__wrapped__`` on every call
    wrapped.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    setattr(backend, name, wrapped)


def journal_liquid_handler(wc: Workcell, device: str) -> None:
    backend = wc.liquid_handler.backend
    lh = wc.liquid_handler
    tip_source: dict[int, str] = {}

    def head(ch: int) -> dict[str, Any]:
        h = lh.head[ch]
        if not h.has_tip:
            return {"tip": None, "volume": 0.0}
        return {"tip": True, "volume": h.get_tip().tracker.get_used_volume()}

    def pick(original: Any) -> Any:
        async def pick_up_tips(ops: list[Any], use_channels: list[int], **kw: Any) -> Any:
            spots = [op.resource.name for op in ops]
            details = [
                {"channel": ch, "tip_spot": s} for ch, s in zip(use_channels, spots, strict=True)
            ]
            for ch in use_channels:
                tip_source.pop(ch, None)
            data = {
                "channels": use_channels,
                "tip_spots": spots,
                "effects": {
                    "tip": {s: False for s in spots},
                    "head": {str(ch): {"tip": True, "volume": 0.0} for ch in use_channels},
                },
            }
            return await act(
                wc,
                device,
                "pick_up_tip",
                data,
                lambda: original(ops, use_channels, **kw),
                details,
                failed_effects={"tip": {s: False for s in spots}},  # a failed tip is written off
                partial_effects=lambda failed: {
                    "tip": {s: False for s in spots},  # tried: written off either way
                    "head": {
                        str(ch): {"tip": True, "volume": 0.0}
                        for ch in use_channels
                        if ch not in failed
                    },
                },
            )

        return pick_up_tips

    def drop(original: Any) -> Any:
        async def drop_tips(ops: list[Any], use_channels: list[int], **kw: Any) -> Any:
            targets = [op.resource.name for op in ops]
            details = [
                {"channel": ch, "to": t} for ch, t in zip(use_channels, targets, strict=True)
            ]
            returned = {
                op.resource.name: True
                for op in ops
                if hasattr(op.resource, "tracker") and hasattr(op.resource.tracker, "has_tip")
            }
            data = {
                "channels": use_channels,
                "to": targets,
                "tip_volume_uL": [head(ch)["volume"] for ch in use_channels],
                "effects": {
                    "tip": returned,
                    "head": {str(ch): {"tip": None, "volume": 0.0} for ch in use_channels},
                },
            }
            for ch in use_channels:
                tip_source.pop(ch, None)
            return await act(
                wc, device, "drop_tip", data, lambda: original(ops, use_channels, **kw), details
            )

        return drop_tips

    def liquid(action: str) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            async def move_liquid(ops: list[Any], use_channels: list[int], **kw: Any) -> Any:
                details = []
                volumes: dict[str, float] = {}
                vessel = None
                reagents = []
                for op, ch in zip(ops, use_channels, strict=True):
                    res: Container = op.resource
                    d: dict[str, Any] = {
                        "channel": ch,
                        "volume_uL": op.volume,
                        "flow_uL_per_s": op.flow_rate,
                        "offset_mm": [op.offset.x, op.offset.y, op.offset.z],
                    }
                    if action == "aspirate":
                        d["source"] = res.name
                        if op.mix is not None:  # strokes in the source before it draws
                            d["mix"] = {
                                "cycles": op.mix.repetitions,
                                "volume_uL": op.mix.volume,
                                "flow_uL_per_s": op.mix.flow_rate,
                            }
                        tip_source[ch] = res.name
                        reagent = wc.reagents.get(res.name)
                    else:
                        d["target"] = res.name
                        src = tip_source.get(ch, "")
                        d["from"] = src
                        reagent = wc.reagents.get(src)
                    reagents.append(None if reagent is None else str(reagent))
                    volumes[res.name] = res.tracker.get_used_volume()  # after the action
                    vessel = vessel or _vessel(res)
                    details.append(d)
                data = {
                    "ops": details,
                    "reagent": reagents[0] if len(set(reagents)) == 1 else reagents,
                    "vessels": [op.resource.name for op in ops if isinstance(op.resource, Well)],
                    "effects": {
                        "volume": volumes,
                        "head": {
                            str(ch): {
                                "tip": True,
                                "volume": head(ch)["volume"],
                                "source": tip_source.get(ch),
                            }
                            for ch in use_channels
                        },
                    },
                }
                return await act(
                    wc,
                    device,
                    action,
                    data,
                    lambda: original(ops, use_channels, **kw),
                    details,
                    vessel=vessel,
                )

            return move_liquid

        return make

    _wrap(backend, "pick_up_tips", pick)
    _wrap(backend, "drop_tips", drop)
    _wrap(backend, "aspirate", liquid("aspirate"))
    _wrap(backend, "dispense", liquid("dispense"))


def journal_incubator(wc: Workcell, name: str) -> None:
    inc = wc.incubators[name]
    backend = inc.backend

    def slot(site: Any) -> int | None:
        try:
            from devices.lab_incubator import slot_number

            return slot_number(inc._racks, site)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a rack layout we cannot number: name the site
            return None

    def fetch(original: Any) -> Any:
        async def fetch_plate_to_loading_tray(plate: Plate, **kw: Any) -> Any:
            site = plate.parent
            detail = {"plate": plate.name, "slot": slot(site)}
            data = {
                **detail,
                "site": site.name if site else None,
                "vessels": culture_wells(wc, plate),
                "effects": {"plate": {plate.name: f"{name}/{inc.loading_tray.name}"}},
            }
            return await act(wc, name, "fetch_plate", data, lambda: original(plate, **kw), [detail])

        return fetch_plate_to_loading_tray

    def take(original: Any) -> Any:
        async def take_in_plate(plate: Plate, site: Any, **kw: Any) -> Any:
            detail = {"plate": plate.name, "slot": slot(site)}
            data = {
                **detail,
                "site": site.name,
                "vessels": culture_wells(wc, plate),
                "effects": {"plate": {plate.name: f"{name}/{site.name}"}},
            }
            return await act(
                wc, name, "take_in_plate", data, lambda: original(plate, site, **kw), [detail]
            )

        return take_in_plate

    _wrap(backend, "fetch_plate_to_loading_tray", fetch)
    _wrap(backend, "take_in_plate", take)


def journal_counter(wc: Workcell) -> None:
    counter = wc.cell_counter
    backend = counter.backend
    name = counter.name

    def make(original: Any) -> Any:
        async def count(sample: str, volume_uL: float) -> Any:
            c = wc.container(sample) if _has(wc, sample) else None
            effects = {"volume": {sample: c.tracker.get_used_volume()}} if c is not None else {}
            data = {"sample": sample, "volume_uL": volume_uL, "effects": effects}
            return await act(
                wc,
                name,
                "count",
                data,
                lambda: original(sample, volume_uL),
                [{"sample": sample, "volume_uL": volume_uL}],
                result_detail=lambda r: r.model_dump(),
            )

        return count

    _wrap(backend, "count", make)


def journal_imager(wc: Workcell) -> None:
    imager = wc.imager.imager
    backend = imager.backend
    name = imager.name

    def capture(original: Any) -> Any:
        async def capture_one(*args: Any, **kw: Any) -> Any:
            plate = kw.get("plate")
            row, column = kw.get("row"), kw.get("column")
            well = plate.get_well((row, column)).name if plate is not None else f"{row},{column}"
            return await act(
                wc,
                name,
                "capture",
                {"wells": [well], "vessels": vessels_among(wc, [well])},
                lambda: original(*args, **kw),
                [{"well": well}],
                vessel=well,
            )

        return capture_one

    def capture_wells(original: Any) -> Any:
        async def capture_many(plate: Plate, fields: list[Well]) -> Any:
            wells = [w.name for w in fields]
            return await act(
                wc,
                name,
                "capture",
                {"plate": plate.name, "wells": wells, "vessels": vessels_among(wc, wells)},
                lambda: original(plate, fields),
                [{"well": w} for w in wells],
            )

        return capture_many

    def measure_confluence(original: Any) -> Any:
        async def measure(plate: Plate, wells: list[Well], fields: int) -> Any:
            names = [w.name for w in wells]
            return await act(
                wc,
                name,
                "capture",
                {
                    "plate": plate.name,
                    "wells": names,
                    "vessels": vessels_among(wc, names),
                    "fields": fields,
                    "fast": True,
                },
                lambda: original(plate, wells, fields),
                [{"well": w, "fields": fields, "fast": True} for w in names],
            )

        return measure

    _wrap(backend, "capture", capture)
    if hasattr(backend, "capture_wells"):
        _wrap(backend, "capture_wells", capture_wells)
    if hasattr(backend, "measure_confluence"):
        _wrap(backend, "measure_confluence", measure_confluence)


def _has(wc: Workcell, name: str) -> bool:
    try:
        wc.container(name)
    except Exception:  # noqa: BLE001
        return False
    return True


def journal_devices(wc: Workcell) -> None:
    """Route every device action of ``wc`` through its journal."""
    journal_liquid_handler(wc, wc.lh_name)
    for name in wc.incubators:
        journal_incubator(wc, name)
    journal_counter(wc)
    journal_imager(wc)


def act_now(
    wc: Workcell,
    device: str,
    action: str,
    data: dict[str, Any],
    do: Callable[[], dict[str, Any] | None],
    vessel: str | None = None,
) -> dict[str, Any]:
    """``act`` for what is done at once, by hand: the operator loading or emptying a container."""
    journal = wc.journal
    intent = journal.intent(device, action, data, vessel)
    result = do() or {}
    journal.crash_point("reply")
    detail = {k: v for k, v in data.items() if k != "effects"} | result
    journal.complete(intent, device, action, detail, vessel=vessel)
    wc.log.append(wc.clock.now(), device, action, **detail)
    return result
