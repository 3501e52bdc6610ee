"""The controller's model of the deck between steps, and the journal replayed on top of it.

What a restarted controller cannot rebuild from the config is its *model* of the
world: which plate sits where (deck site, incubator slot), PyLabRobot's tip and
volume trackers, and what the channels hold. A snapshot of that model is written
at the end of every step that sent a device action (a wait sends none, so the last
snapshot stays true); every device action since is in the journal with the
effect it has on the model. Restoring is: the snapshot, then the effects of every
action known to be done after it, in order. Each resource's state is a row of its
own in the store, and a step's checkpoint serializes and writes only the resources
whose state changed (``Kept``). Vessels drawn from the hotel (#14's
inventory) are part of the model: the snapshot holds the hotel's stock and the
vessels drawn, where each is and what its wells hold; the journal's draws, returns
and discards are effects like any other.

With ``WORKCELL_CHECK_CHECKPOINTS=1`` in the environment (the test suite sets it for
every test and the processes they start), every checkpoint is also serialized whole
and compared with what ``Kept`` reused, and a difference stops the run: the check
that the changes PyLabRobot reports are all the changes there are.

Nothing here touches the world itself. The simulated lab keeps its own state on
disk and is never rolled back or restored by the controller: a dry-run and a
hardware workcell have the same crash semantics.
"""

from __future__ import annotations

import os
from typing import Any

from pylabrobot.resources import Plate, Resource, ResourceHolder, TipRack, TipSpot

from workcell.assembly.workcell import Workcell
from workcell.journal import ActionRecord, actions_of

VERSION = 2


def _plate_names(wc: Workcell) -> list[str]:
    """Resources with state: the config's deck sites and the vessels drawn from the hotel."""
    drawn = list(wc.inventory.in_use) if wc.inventory is not None else []
    return [s.name for s in wc.config.deck.sites()] + drawn


def _plate_places(wc: Workcell) -> dict[str, str]:
    places = {}
    for name in _plate_names(wc):
        res = wc.resource(name)
        if isinstance(res, Plate) and res.parent is not None:
            holder = res.parent
            inc = wc._incubator_of(res)
            places[name] = f"{inc.name}/{holder.name}" if inc else f"deck/{holder.name}"
    return places


def _head(wc: Workcell) -> dict[str, Any]:
    out = {}
    for ch, tracker in wc.liquid_handler.head.items():
        if tracker.has_tip:
            out[str(ch)] = {"tip": True, "volume": tracker.get_tip().tracker.get_used_volume()}
    return out


class Kept:
    """Each resource's state as this session last checkpointed it, so a step's checkpoint
    serializes and writes only the resources whose state changed.

    PyLabRobot tells each watched resource's subscribers when it or any part of it
    (a well's volume, a tip spot's tip) changes state; a resource it reported is
    serialized again at the next checkpoint, and the others' states are reused. A step
    typically touches one plate and one tip rack of a deck of twenty resources (three
    racks of 96 tip spots), so a checkpoint no longer serializes the whole deck. What
    is saved is still exactly a whole snapshot: ``WORKCELL_CHECK_CHECKPOINTS`` checks
    that. One ``Kept`` belongs to one built workcell; a workcell built again (reopened)
    starts a new one, whose first checkpoint is serialized and written whole, as is
    any written over another process's checkpoint.
    """

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        self.seq = 0  # the checkpoint these states were saved as (0: none yet)
        self.pending: set[str] = set()  # differing from the last saved, not yet saved
        self.changed: set[str] = set()  # reported changed since last serialized
        self._watched: dict[str, Resource] = {}

    def needs_serializing(self, name: str, resource: Resource) -> bool:
        """Whether ``resource``'s kept state cannot be reused (never serialized, reported
        changed, or another resource by that name); watches it from now on."""
        if self._watched.get(name) is not resource:
            self._watch(name, resource)
            return True
        return name in self.changed or name not in self.states

    def _watch(self, name: str, resource: Resource) -> None:
        def changed(_state: dict[str, Any]) -> None:
            self.changed.add(name)

        for part in [resource, *resource.get_all_children()]:
            part.register_state_update_callback(changed)
        self._watched[name] = resource


def _states(wc: Workcell, names: list[str], kept: Kept | None) -> dict[str, dict[str, Any]]:
    """Each resource's state: serialized, or with ``kept`` reused where unchanged."""
    if kept is None:
        return {n: wc.resource(n).serialize_all_state() for n in names}
    states = {}
    for n in names:
        res = wc.resource(n)
        if kept.needs_serializing(n, res):
            kept.changed.discard(n)
            states[n] = res.serialize_all_state()
        else:
            states[n] = kept.states[n]
    if os.environ.get("WORKCELL_CHECK_CHECKPOINTS"):
        whole = _states(wc, names, None)
        wrong = sorted(n for n in names if whole[n] != states[n])
        if wrong:
            raise RuntimeError(
                "checkpoint self-check: the kept state of " + ", ".join(wrong) + " is not "
                "what the resource holds (a change PyLabRobot did not report)"
            )
    return states


def _differs(before: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    return before is not now and before != now  # a reused state is the same object


def snapshot(wc: Workcell, kept: Kept | None = None) -> dict[str, Any]:
    """The model as a checkpoint; with ``kept``, unchanged resources' states are reused."""
    names = _plate_names(wc)
    states = _states(wc, names, kept)
    if kept is not None:  # written again: the states that differ from the last saved
        kept.pending |= {n for n in names if _differs(kept.states.get(n), states[n])}
        kept.states.update(states)
    data = {
        "version": VERSION,
        "journal": wc.store.last_journal_id(),
        "plates": _plate_places(wc),
        "resources": states,
        "head": _head(wc),
    }
    if wc.inventory is not None:
        data["inventory"] = wc.inventory.state()
    return data


def save(wc: Workcell, kept: Kept) -> int:
    """Checkpoint the model, writing only the resources changed since ``kept`` was last
    saved (every one when the store holds another checkpoint than that); its sequence."""
    data = snapshot(wc, kept)
    seq = wc.store.save_checkpoint(data, changed=kept.pending, base_seq=kept.seq)
    kept.seq = seq
    kept.pending.clear()
    return seq


def restore(wc: Workcell, data: dict[str, Any]) -> None:
    """Put a freshly built workcell (set up, reservoirs not loaded) into a snapshot's model."""
    if data.get("version") != VERSION:
        raise ValueError(f"checkpoint version {data.get('version')} is not {VERSION}")
    drawn = (
        wc.inventory.restore(data["inventory"])
        if wc.inventory is not None and "inventory" in data
        else {}
    )
    for plate_name, place in data["plates"].items():
        _place_plate(wc, plate_name, place, drawn.get(plate_name))
    for name, state in data["resources"].items():
        wc.resource(name).load_all_state(state)
    for ch, h in data.get("head", {}).items():
        _set_head(wc, int(ch), h)


def _place_plate(wc: Workcell, plate_name: str, place: str, plate: Plate | None = None) -> None:
    """Put a plate where the model says it is (``plate``: one not placed yet, a drawn vessel)."""
    where, holder_name = place.split("/", 1)
    if plate is None:
        plate = wc.plate(plate_name)
    holder: Any
    if where == "deck":
        home = wc._home.get(plate_name)
        if home is not None and home.name == holder_name:
            holder = home
        else:  # a working position (a vessel from the hotel)
            holder = wc.deck.get_resource(holder_name)
    else:
        inc = wc.incubators[where]
        holder = (
            inc.loading_tray
            if holder_name == inc.loading_tray.name
            else inc.get_resource(holder_name)
        )
        assert isinstance(holder, ResourceHolder)
    if plate.parent is holder:
        return
    plate.unassign()
    holder.assign_child_resource(plate)


def _any_tip(wc: Workcell) -> Any:
    rack: TipRack = wc.tip_racks()[0]
    return rack.get_item(0).make_tip()


def _set_head(wc: Workcell, ch: int, h: dict[str, Any]) -> None:
    tracker = wc.liquid_handler.head[ch]
    if h.get("tip"):
        if not tracker.has_tip:
            tracker.add_tip(_any_tip(wc), commit=True)
        tip = tracker.get_tip()
        tip.tracker.set_volume(float(h.get("volume", 0.0)))
    elif tracker.has_tip:
        tracker.remove_tip(commit=True)


def apply_effects(wc: Workcell, effects: dict[str, Any]) -> None:
    """Bring the model up to an action's effect: volumes, tip spots, plates, channels."""
    for name, volume in effects.get("volume", {}).items():
        wc.container(name).tracker.set_volume(float(volume))
    for name, has_tip in effects.get("tip", {}).items():
        spot = wc.resource(name)
        if not isinstance(spot, TipSpot):
            continue
        if has_tip and not spot.tracker.has_tip:
            spot.tracker.add_tip(spot.make_tip(), commit=True)
        elif not has_tip and spot.tracker.has_tip:
            spot.tracker.remove_tip(commit=True)
    inv = wc.inventory
    for name, d in effects.get("drawn", {}).items():
        if inv is not None and name not in inv.in_use:
            holder = wc.deck.get_resource(d["position"]) if d.get("position") else None
            assert holder is None or isinstance(holder, ResourceHolder)
            if holder is not None and holder.resource is not None:
                holder = None  # its place is taken in the model: placed by a later effect
            inv.adopt(name, d["labware"], holder)
    for plate, place in effects.get("plate", {}).items():
        _place_plate(wc, plate, place)
    for name in effects.get("returned", []) + effects.get("discarded", []):
        if inv is not None and name in inv.in_use:
            vessel = wc.plate(name)
            if name in effects.get("returned", []):
                inv.put_back(vessel)
            else:
                inv.discard(vessel)
    for ch, h in effects.get("head", {}).items():
        _set_head(wc, int(ch), h)


def replay(wc: Workcell, since: int) -> list[ActionRecord]:
    """Apply the effects of every action done after journal row ``since``; returns them all.

    Actions whose outcome is unknown are not applied: reconciliation asks the devices.
    A refused action's effect is its failed effect (a tip spot written off); an action
    some of whose channels failed has the effect its completion or reconciliation
    recorded (``ActionRecord.effects``), the same as the live model took.
    """
    actions = actions_of(wc.store.journal(since=since))
    for a in actions:
        if a.outcome is not None:
            apply_effects(wc, a.effects)
    return actions
