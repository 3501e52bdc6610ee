"""After a crash: ask the devices what became of the actions whose outcome is unknown.

An intent without a completion is an action the controller may or may not have
done. The controller asks what the devices can tell, with the questions a real
workcell's drivers answer (the simulated lab's back ends answer the same ones):

* the liquid handler: which channels hold a tip (``request_tip_presence``), how much
  liquid a tip holds (``request_volume_in_tip``), how much liquid a container holds
  (``probe_liquid_volumes``: capacitive liquid-level detection on a STAR);
* an incubator: whether its transfer station is occupied (the Cytomat's overview
  register), which tells whether a plate move to or from it happened;
* the vessel hotel (a dry-run's lab): which vessels it has handed out, which tells
  whether a draw, a return or a discard happened (on hardware, the operator checks);
* nothing can tell whether a count or an image was taken: those are repeated.

Each answer is a ``reconciled`` journal row (the measurement and the conclusion)
and a ``recovery`` event naming the vessels, and an action found done has its
effect applied to the model. Then the channels are checked against the model: a
tip the model lost is put back in it with the volume the channel reports, so the
step's recovery can finish or discard what the tip holds. What no device can
settle stops the run for the operator (``HeldForOperator``).
"""

from __future__ import annotations

from typing import Any

from workcell.assembly.checkpoint import _set_head, apply_effects
from workcell.assembly.workcell import Workcell
from workcell.errors import DeviceError, HeldForOperator
from workcell.journal import ActionRecord

REPEATABLE = {"capture"}  # nothing to undo and nothing to ask: done again
HOTEL_ACTIONS = {"draw_vessel", "return_vessel", "discard_vessel"}


def _closer_to_after(measured: float, before: float, after: float) -> bool:
    return abs(measured - after) <= abs(measured - before)


async def _probe_volume(wc: Workcell, container: str) -> float:
    backend = wc.liquid_handler.backend
    probe = getattr(backend, "probe_liquid_volumes", None)
    if probe is None:
        raise HeldForOperator(f"the liquid handler cannot probe the liquid in {container}")
    (volume,) = await probe([wc.container(container)])
    return float(volume)


async def _station_occupied(wc: Workcell, incubator: str) -> bool:
    backend = wc.incubators[incubator].backend
    fresh = getattr(backend, "climate", None) is not None  # the lab's driver caches readings
    reg = await (
        backend.get_overview_register(fresh=True) if fresh else backend.get_overview_register()
    )
    return bool(reg.transfer_station_occupied)


def _channels(chs: list[int]) -> str:
    return ", ".join(str(ch) for ch in chs) or "none"


def _partial(done: list[int], failed: list[int], effects: dict[str, Any]) -> dict[str, Any]:
    """What a reconciled row holds when only some channels did their part: the channels
    and the effects the model takes (a restart replays these, not the intent's)."""
    return {"done_channels": done, "failed_channels": failed, "effects": effects}


async def _liquid_outcome(wc: Workcell, a: ActionRecord) -> tuple[bool, str, dict[str, Any]]:
    ops = a.data.get("ops", [])
    if len(ops) != 1:
        return await _channels_outcome(wc, a)
    (op,) = ops
    name = op.get("source") if a.action == "aspirate" else op.get("target")
    assert name is not None
    after = float(a.data["effects"]["volume"][name])
    v = float(op["volume_uL"])
    before = after + v if a.action == "aspirate" else after - v
    measured = await _probe_volume(wc, name)
    done = _closer_to_after(measured, before, after)
    how = (
        f"liquid level of {name}: {measured:.0f} uL (before the action {before:.0f}, "
        f"after it {after:.0f})"
    )
    return done, how, {"container": name, "measured_uL": measured}


async def _channels_outcome(wc: Workcell, a: ActionRecord) -> tuple[bool, str, dict[str, Any]]:
    """A group's aspirate or dispense, channel by channel, from the liquid in each tip.

    One probe of the container cannot tell which channels of a group moved their
    liquid (a real STAR may fail on some); each tip's volume can: after an aspirate
    the tip holds the journaled head volume, before it that less the op's volume (a
    dispense the reverse). The container then takes the journaled 'after' volume
    less what the channels not done did not move; the done channels' heads take
    their effects; the others are left as ``check_channels`` reads them.
    """
    ask = getattr(wc.liquid_handler.backend, "request_volume_in_tip", None)
    if ask is None:
        raise HeldForOperator(
            f"the liquid handler cannot tell the liquid in its tips: whether {a.action} "
            f"(journal entry {a.id}) happened is for the operator to check"
        )
    aspirate = a.action == "aspirate"
    effects = a.data.get("effects", {})
    heads = effects.get("head", {})
    done: list[int] = []
    failed: list[int] = []
    readings: dict[str, float] = {}
    for op in a.data.get("ops", []):
        ch = int(op["channel"])
        after = float(heads[str(ch)]["volume"])
        v = float(op["volume_uL"])
        before = after - v if aspirate else after + v
        measured = float(await ask(ch))
        readings[str(ch)] = measured
        (done if _closer_to_after(measured, before, after) else failed).append(ch)
    how = (
        "liquid in the tips: "
        + ", ".join(f"channel {ch} {v:.0f} uL" for ch, v in readings.items())
        + f"; done on channels {_channels(done)}, not done on {_channels(failed)}"
    )
    measured_data: dict[str, Any] = {"tip_volumes_uL": readings}
    if done and failed:
        volumes = {k: float(v) for k, v in effects.get("volume", {}).items()}
        for op in a.data.get("ops", []):
            if int(op["channel"]) in failed:
                name = op.get("source") if aspirate else op.get("target")
                # not taken out of (aspirate) or not put into (dispense) the container
                volumes[name] += float(op["volume_uL"]) if aspirate else -float(op["volume_uL"])
        partial = {"volume": volumes, "head": {str(ch): heads[str(ch)] for ch in done}}
        measured_data |= _partial(done, failed, partial)
    return bool(done), how, measured_data


async def _tips_outcome(wc: Workcell, a: ActionRecord) -> tuple[bool, str, dict[str, Any]]:
    """A pick-up or drop, from the tip sensor of every channel it named.

    A pick-up is done on the channels that hold a tip, a drop on those that hold
    none. When only some are: every tip spot of a pick-up is written off (a tip tried
    is not trusted again) and the loaded channels hold their tips; a drop's dropped
    channels are empty and their tips back where they went.
    """
    presence = await wc.liquid_handler.backend.request_tip_presence()
    channels = [int(ch) for ch in a.data["channels"]]
    pick = a.action == "pick_up_tip"
    done = [ch for ch in channels if bool(presence[ch]) == pick]
    failed = [ch for ch in channels if ch not in done]
    if len(channels) == 1:
        ch = channels[0]
        has = bool(presence[ch])
        return bool(done), f"tip presence on channel {ch}: {'a tip' if has else 'no tip'}", {}
    with_tip = [ch for ch in channels if presence[ch]]
    how = f"tip presence: a tip on channels {_channels(with_tip)} of {_channels(channels)}"
    if not (done and failed):
        return bool(done), how, {}
    effects = a.data.get("effects", {})
    heads = effects.get("head", {})
    if pick:
        tips = dict(effects.get("tip", {}))
    else:
        to = dict(zip(channels, a.data.get("to", []), strict=False))
        returned = effects.get("tip", {})  # the spots tips went back to
        tips = {to[ch]: True for ch in done if to.get(ch) in returned}
    partial = {"tip": tips, "head": {str(ch): heads[str(ch)] for ch in done if str(ch) in heads}}
    return True, how, _partial(done, failed, partial)


async def _outcome(wc: Workcell, a: ActionRecord) -> tuple[bool, str, dict[str, Any]]:
    """Whether action ``a`` happened, how that was established, and what was measured."""
    lh = wc.liquid_handler.backend
    if a.action in ("aspirate", "dispense"):
        return await _liquid_outcome(wc, a)
    if a.action in ("pick_up_tip", "drop_tip"):
        if not getattr(lh, "tip_sensor", True):
            raise HeldForOperator(
                f"{a.device} cannot sense its tips: whether {a.action} (journal entry {a.id}) "
                "happened is for the operator to check"
            )
        return await _tips_outcome(wc, a)
    if a.action in ("fetch_plate", "take_in_plate"):
        occupied = await _station_occupied(wc, a.device)
        done = occupied if a.action == "fetch_plate" else not occupied
        state = "occupied" if occupied else "empty"
        return done, f"{a.device}'s transfer station is {state}", {}
    if a.action in ("move_plate", "carry_plate"):
        inc = str(a.data["incubator"])
        occupied = await _station_occupied(wc, inc)
        to_station = str(a.data["to"]).startswith("incubator:")
        state = "occupied" if occupied else "empty"
        return occupied == to_station, f"{inc}'s transfer station is {state}", {}
    if a.action == "count":
        sample = str(a.data["sample"])
        after = float(a.data["effects"].get("volume", {}).get(sample, 0.0))
        v = float(a.data["volume_uL"])
        measured = await _probe_volume(wc, sample)
        taken = _closer_to_after(measured, after + v, after)
        how = (
            f"liquid level of {sample}: {measured:.0f} uL; the sample was "
            f"{'drawn' if taken else 'not drawn'}; the count's result is lost and it is repeated"
        )
        # the sample's volume is gone either way the model must follow; the count is not done
        if taken:
            apply_effects(wc, a.data.get("effects", {}))
        return False, how, {"container": sample, "measured_uL": measured}
    if a.action in HOTEL_ACTIONS:
        plate = str(a.data["plate"])
        if wc.lab is None:
            raise HeldForOperator(
                f"whether {a.device} did {a.action} of {plate} (journal entry {a.id}) is for the "
                "operator to check: the hotel's count and the deck's working positions"
            )
        out = wc.lab.call(a.device, "hotel.state")
        out_of_hotel = plate in out["drawn"]
        done = out_of_hotel if a.action == "draw_vessel" else not out_of_hotel
        state = "handed out and not back" if out_of_hotel else "not out of the hotel"
        return done, f"vessel {plate} is {state}", {}
    if a.action in REPEATABLE:
        return False, "an image cannot be recovered: it is taken again", {}
    if a.action in ("load", "empty", "collect", "replace_tips"):
        effects = a.data.get("effects", {})
        vols = effects.get("volume", {})
        if not vols:
            return False, "the operator is asked to check the tip racks", {}
        ((name, after),) = vols.items()
        v = float(a.data.get("volume_uL", 0.0))
        before = float(after) - v if a.action == "load" else v
        measured = await _probe_volume(wc, name)
        done = _closer_to_after(measured, before, float(after))
        return done, f"liquid level of {name}: {measured:.0f} uL", {"measured_uL": measured}
    raise HeldForOperator(
        f"cannot establish whether {a.device} did {a.action} (journal entry {a.id}); "
        "check the device and the vessels, then resume"
    )


async def reconcile(wc: Workcell, unknown: list[ActionRecord]) -> list[ActionRecord]:
    """Settle every unknown outcome by asking the devices; returns those found done."""
    done_ones = []
    for a in unknown:
        vessels = list(a.data.get("vessels") or [])
        if not vessels and a.action in REPEATABLE:  # an image intent written before it named them
            vessels = list(dict.fromkeys(a.data.get("wells") or []))
        try:
            done, how, measured = await _outcome(wc, a)
        except DeviceError as err:
            raise HeldForOperator(
                f"cannot ask {err.device} whether {a.action} (journal entry {a.id}) happened: "
                f"{err.reason}; check it and the vessels {', '.join(vessels) or '(none)'}, then "
                "resume"
            ) from err
        wc.journal.reconciled(a.id, done, how, step_id=a.step_id, **measured)
        a.detail = {"outcome": "done" if done else "not_done", "how": how, **measured}
        if done:
            a.outcome = "done"
            apply_effects(wc, a.effects)  # a partial outcome's own effects, else the intent's
            done_ones.append(a)
        else:
            a.outcome = "failed"
        failed = measured.get("failed_channels")
        what = "done" if done else "not done"
        if done and failed:
            what = (
                f"done on channels {_channels(measured['done_channels'])}, "
                f"not done on channels {_channels(failed)}"
            )
        wc.journal.recovery(
            f"{a.device} {a.action}: {what}",
            f"the controller stopped before it knew; {how}",
            vessels,
            step_id=a.step_id,
            intent=a.id,
            **(
                {"done_channels": measured["done_channels"], "failed_channels": failed}
                if failed
                else {}
            ),
        )
    await check_channels(wc)
    return done_ones


async def check_channels(wc: Workcell) -> None:
    """Make the model's channels agree with the device's tip sensors (and tip volumes)."""
    backend = wc.liquid_handler.backend
    ask = getattr(backend, "request_tip_presence", None)
    if ask is None or not getattr(backend, "tip_sensor", True):
        return
    try:
        presence = await ask()
    except (DeviceError, NotImplementedError):
        return
    for ch, has in enumerate(presence):
        if has is None or ch not in wc.liquid_handler.head:
            continue
        model = wc.liquid_handler.head[ch].has_tip
        if has:
            volume = 0.0
            asked = getattr(backend, "request_volume_in_tip", None)
            if asked is not None:
                try:
                    volume = float(await asked(ch))
                except (DeviceError, NotImplementedError):
                    volume = 0.0
            if (
                not model
                or abs(wc.liquid_handler.head[ch].get_tip().tracker.get_used_volume() - volume)
                > 0.5
            ):
                _set_head(wc, ch, {"tip": True, "volume": volume})
                wc.journal.recovery(
                    f"channel {ch} holds a tip with {volume:.0f} uL",
                    "the tip sensor and the tip's volume, after the controller stopped",
                    [],
                )
        elif model:
            _set_head(wc, ch, {"tip": None})
            wc.journal.recovery(
                f"channel {ch} holds no tip", "the tip sensor, after the controller stopped", []
            )
