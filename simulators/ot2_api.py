"""The OT-2 simulated at the wire: the part of the robot server's HTTP API that ``ot_api`` uses.

PyLabRobot drives an OT-2 through ``ot_api`` (package ``opentrons-http-api-client``), which
speaks the robot server's HTTP API on port 31950. This module serves that API on
127.0.0.1 so PyLabRobot's unmodified ``OpentronsOT2Backend`` runs against it as against a
robot on the network:

* ``GET /health``, ``POST /robot/home``, ``GET /pipettes`` (what is mounted);
* ``POST /runs``, ``GET /runs[/{id}]``, ``DELETE /runs/{id}``, ``POST /runs/{id}/actions``;
* ``POST /runs/{id}/labware_definitions`` (PyLabRobot defines its tip racks per run);
* ``POST /runs/{id}/commands`` and ``GET /runs/{id}/commands/{cid}`` for the commands
  ``loadPipette``, ``loadLabware``, ``home``, ``pickUpTip``, ``dropTip``,
  ``moveToCoordinates``, ``aspirateInPlace``, ``dispenseInPlace``,
  ``moveToAddressableAreaForDropTip`` and ``dropTipInPlace``. Other command types are
  refused with 422, as the robot refuses a command it does not know.

It acts on a *physical* deck of its own, built from Opentrons' deck and labware
definitions (not from PyLabRobot's): a ``moveToCoordinates`` puts the tip at a point in
the robot frame, and an aspirate there takes liquid from whatever well, reservoir or
tube the point is in, in the culture model. A point in no container fails the command,
as a crash or an air aspirate would show on a robot. Tips are physical too: a spot
picked once is empty until the operator replaces the rack.

Faults are injected per run command (config rates, or queued by a test): ``fail`` (the
command fails with an error and does nothing), ``drop`` (the connection is dropped before
the robot gets the command: no reply, nothing done) and ``slow`` (done, answered late).

The server runs in a daemon thread (``OT2ApiServer.start``), so it ends with its
parent; a lab process can equally call ``serve_forever`` on its own thread.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from simulators.culture import CultureModel, Liquid
from workcell import ot_labware
from workcell.actions import ActionLog
from workcell.clock import Clock, SimClock

API_VERSION = "8.3.0"  # robot software; PyLabRobot uses the fixed trash from 7.1.0 on
FIRMWARE = "v1.1.0-sim"
TRAVEL_MM_PER_S = 400.0
MOVE_S = 0.5
TIP_PICKUP_S = 5.0
TIP_DROP_S = 3.0
HOME_S = 20.0
LIQUID_S = 0.5
TIP_MATCH_MM = 2.0  # a tip-rack well the run's definition puts within this of a physical one
Z_SLACK_MM = 1.0


class OT2Fault(StrEnum):
    FAIL = "fail"
    DROP = "drop"
    SLOW = "slow"


@dataclass
class OT2FaultPlan:
    """Which run commands fail, drop the connection or answer late: queued, then at random."""

    failed_command: float = 0.0
    dropped_connection: float = 0.0
    slow_answer: float = 0.0
    slow_answer_s: float = 1.0
    seed: int = 0
    queued: deque[tuple[str | None, OT2Fault]] = field(default_factory=deque)
    injected: Counter[OT2Fault] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def queue(self, fault: OT2Fault, command: str | None = None) -> None:
        """Inject ``fault`` into the next command (of type ``command``, if given)."""
        self.queued.append((command, fault))

    def next(self, command: str) -> OT2Fault | None:
        for i, (wanted, fault) in enumerate(self.queued):
            if wanted is None or wanted == command:
                del self.queued[i]
                self.injected[fault] += 1
                return fault
        draw = self.rng.random()
        for fault, p in (
            (OT2Fault.FAIL, self.failed_command),
            (OT2Fault.DROP, self.dropped_connection),
            (OT2Fault.SLOW, self.slow_answer),
        ):
            if draw < p:
                self.injected[fault] += 1
                return fault
            draw -= p
        return None


@dataclass
class DeckLabware:
    """A piece of labware physically in a slot of the simulated OT-2."""

    slot: int
    name: str
    load_name: str
    tubes: dict[str, str] = field(default_factory=dict)  # rack position -> tube name
    on_deck: bool = True
    tips_taken: set[str] = field(default_factory=set)

    @property
    def definition(self) -> dict[str, Any]:
        d = ot_labware.definition(self.load_name)
        assert d is not None
        return d


class CommandFailed(Exception):
    """A run command the robot could not carry out: status 'failed' with this error."""

    def __init__(self, error_type: str, detail: str) -> None:
        super().__init__(detail)
        self.error_type = error_type
        self.detail = detail


@dataclass
class Pipette:
    mount: str
    name: str
    id: str = ""
    tip_uL: float | None = None  # capacity of the tip on it
    tip_from: str = ""
    liquid: Liquid = field(default_factory=Liquid)
    position: tuple[float, float, float] | None = None
    at_trash: bool = False

    @property
    def max_uL(self) -> float:
        return ot_labware.pipette_range_uL(self.name)[1]


def _ot2_deck() -> dict[str, Any]:
    from opentrons_shared_data.deck import load

    return dict(load("ot2_standard", 5))


def _slot_origins() -> dict[int, tuple[float, float, float]]:
    """Each slot's corner in the robot frame, from Opentrons' OT-2 deck definition."""
    cutouts = {c["id"]: c["position"] for c in _ot2_deck()["locations"]["cutouts"]}
    return {n: tuple(cutouts[f"cutout{n}"]) for n in range(1, 13)}  # type: ignore[misc]


def _fixed_trash() -> dict[str, Any]:
    areas = _ot2_deck()["locations"]["addressableAreas"]
    return next(a for a in areas if a["id"] == "fixedTrash")


class OT2Robot:
    """The robot behind the API: pipettes, the physical deck, runs and their commands."""

    def __init__(
        self,
        device: str,
        labware: list[DeckLabware],
        pipettes: dict[str, str],
        culture: CultureModel,
        clock: Clock,
        log: ActionLog,
        faults: OT2FaultPlan | None = None,
    ) -> None:
        self.device = device
        self.deck = {lw.slot: lw for lw in labware}
        self.pipettes = {m: Pipette(m, n) for m, n in pipettes.items()}
        self.culture = culture
        self.clock = clock
        self.log = log
        self.faults = faults or OT2FaultPlan()
        self.origins = _slot_origins()
        trash = _fixed_trash()
        ox, oy, oz = self.origins[12]
        dx, dy, dz = trash["offsetFromCutoutFixture"]
        box = trash["boundingBox"]
        self.trash_at = (
            ox + dx + box["xDimension"] / 2,
            oy + dy + box["yDimension"] / 2,
            oz + dz + box["zDimension"],
        )
        self.runs: dict[str, dict[str, Any]] = {}
        self.current_run: str | None = None
        self.lock = threading.Lock()
        self.cells_discarded_in_tips = 0.0
        self.commands_run: Counter[str] = Counter()

    # --- the world around the robot (operator, arm) ------------------------------------

    def plate_moved(self, name: str, on_deck: bool) -> None:
        for lw in self.deck.values():
            if lw.name == name:
                lw.on_deck = on_deck

    def tips_replaced(self, rack: str) -> None:
        for lw in self.deck.values():
            if lw.name == rack:
                lw.tips_taken.clear()

    # --- time and record -------------------------------------------------------------------

    def _spend(self, seconds: float) -> None:
        if isinstance(self.clock, SimClock):
            self.clock.advance(seconds)

    def _record(self, action: str, **detail: Any) -> None:
        self.log.record(self.clock.now(), self.device, action, **detail)

    # --- geometry --------------------------------------------------------------------------

    def _well_centre(
        self, slot: int, definition: dict[str, Any], well: str
    ) -> tuple[float, float, float]:
        ox, oy, oz = self.origins[slot]
        c = definition["cornerOffsetFromSlot"]
        w = definition["wells"][well]
        return ox + c["x"] + w["x"], oy + c["y"] + w["y"], oz + c["z"] + w["z"]

    def locate(self, x: float, y: float, z: float) -> tuple[DeckLabware, str] | None:
        """The labware and well whose inside holds the point, or None."""
        for lw in self.deck.values():
            if not lw.on_deck:
                continue
            d = lw.definition
            for ident, w in d["wells"].items():
                cx, cy, bottom = self._well_centre(lw.slot, d, ident)
                if not bottom - Z_SLACK_MM <= z <= bottom + w["depth"] + Z_SLACK_MM:
                    continue
                if w["shape"] == "circular":
                    inside = math.hypot(x - cx, y - cy) <= w["diameter"] / 2
                else:
                    inside = (
                        abs(x - cx) <= w["xDimension"] / 2 and abs(y - cy) <= w["yDimension"] / 2
                    )
                if inside:
                    return lw, ident
        return None

    def _container_at(self, pip: Pipette, verb: str) -> tuple[str, str, tuple[float, ...]]:
        if pip.position is None:
            raise CommandFailed(
                "PositionUnknownError", f"{verb}: the {pip.mount} pipette has not moved"
            )
        found = self.locate(*pip.position)
        x, y, z = pip.position
        if found is None:
            raise CommandFailed(
                "NoWellAtLocationError",
                f"{verb} at ({x:.1f}, {y:.1f}, {z:.1f}): the tip is in no well on the deck",
            )
        lw, ident = found
        name = ot_labware.container_name(lw.name, lw.load_name, ident, lw.tubes)
        if name is None:
            raise CommandFailed(
                "NoWellAtLocationError", f"{verb}: {lw.name} {ident} (slot {lw.slot}) holds no tube"
            )
        cx, cy, bottom = self._well_centre(lw.slot, lw.definition, ident)
        return name, f"{lw.name} {ident}", (x - cx, y - cy, z - bottom)

    # --- commands ----------------------------------------------------------------------------

    def _pipette(self, params: dict[str, Any]) -> Pipette:
        for p in self.pipettes.values():
            if p.id and p.id == params.get("pipetteId"):
                return p
        raise CommandFailed(
            "PipetteNotLoadedError", f"no loaded pipette {params.get('pipetteId')!r}"
        )

    def execute(self, run: dict[str, Any], kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Carry out one command; its result, or CommandFailed."""
        handler = getattr(self, f"_cmd_{kind}", None)
        if handler is None:
            raise KeyError(kind)
        self.commands_run[kind] += 1
        return handler(run, params)  # type: ignore[no-any-return]

    def _cmd_home(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        self._spend(HOME_S)
        for p in self.pipettes.values():
            p.position = None
        return {}

    def _cmd_loadPipette(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        mount, name = params.get("mount"), params.get("pipetteName")
        pip = self.pipettes.get(str(mount))
        if pip is None or pip.name != name:
            raise CommandFailed(
                "PipetteNotAttachedError", f"no {name} on the {mount} mount of this robot"
            )
        pip.id = pip.id or uuid.uuid4().hex
        return {"pipetteId": pip.id}

    def _cmd_loadLabware(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        uri = f"{params.get('namespace')}/{params.get('loadName')}/{params.get('version')}"
        definition = run["definitions"].get(uri)
        if definition is None:
            from opentrons_shared_data.labware import load_definition

            try:
                definition = dict(load_definition(str(params.get("loadName")), 1))
            except Exception as err:  # noqa: BLE001
                raise CommandFailed("LabwareDefinitionDoesNotExistError", f"{uri}: {err}") from None
        slot = int(params["location"]["slotName"])
        if slot in {lw["slot"] for lw in run["labware"].values()}:
            raise CommandFailed("LocationIsOccupiedError", f"slot {slot} already holds labware")
        labware_id = params.get("labwareId") or uuid.uuid4().hex
        run["labware"][labware_id] = {"slot": slot, "definition": definition}
        return {"labwareId": labware_id, "definition": definition, "offsetId": None}

    def _cmd_moveToCoordinates(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        pip = self._pipette(params)
        c = params["coordinates"]
        target = (float(c["x"]), float(c["y"]), float(c["z"]))
        distance = 300.0 if pip.position is None else math.dist(pip.position, target)
        pip.position, pip.at_trash = target, False
        self._spend(MOVE_S + distance / TRAVEL_MM_PER_S)
        return {"position": {"x": target[0], "y": target[1], "z": target[2]}}

    def _cmd_pickUpTip(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        pip = self._pipette(params)
        if pip.tip_uL is not None:
            raise CommandFailed("TipAttachedError", f"the {pip.mount} pipette already has a tip")
        loaded = run["labware"].get(params.get("labwareId"))
        if loaded is None:
            raise CommandFailed("LabwareNotLoadedError", f"no labware {params.get('labwareId')!r}")
        well = str(params.get("wellName"))
        if well not in loaded["definition"]["wells"]:
            raise CommandFailed("WellDoesNotExistError", f"no well {well!r} in that tip rack")
        x, y, _ = self._well_centre(loaded["slot"], loaded["definition"], well)
        lw = self.deck.get(loaded["slot"])
        if lw is None or not lw.on_deck or ot_labware.kind(lw.load_name) != "tip_rack":
            raise CommandFailed("TipNotAttachedError", f"no tip rack in slot {loaded['slot']}")
        spot = None
        for ident in lw.definition["wells"]:
            px, py, _ = self._well_centre(lw.slot, lw.definition, ident)
            if math.hypot(px - x, py - y) <= TIP_MATCH_MM:
                spot = ident
                break
        if spot is None:
            raise CommandFailed("TipNotAttachedError", f"({x:.1f}, {y:.1f}) is not over a tip")
        tip_uL = ot_labware.tip_volume_uL(lw.load_name)
        if tip_uL not in ot_labware.TIP_VOLUMES.get(pip.name, ()):
            raise CommandFailed(
                "TipNotAttachedError", f"a {tip_uL:g} uL tip does not fit the {pip.name}"
            )
        self._spend(TIP_PICKUP_S)
        if spot in lw.tips_taken:
            self._record("pick_up_tip_failed", mount=pip.mount, tip_spot=f"{lw.name} {spot}")
            raise CommandFailed(
                "TipNotAttachedError", f"no tip at {spot} of {lw.name} (slot {lw.slot})"
            )
        lw.tips_taken.add(spot)
        pip.tip_uL, pip.tip_from, pip.liquid = tip_uL, f"{lw.name} {spot}", Liquid()
        pip.position = (x, y, self._well_centre(lw.slot, lw.definition, spot)[2])
        self._record(
            "pick_up_tip",
            mount=pip.mount,
            pipette=pip.name,
            tip_spot=ot_labware.tip_spot_name(lw.name, spot),
        )
        return {"tipVolume": tip_uL, "tipLength": lw.definition["parameters"]["tipLength"]}

    def _drop(self, pip: Pipette, where: str) -> None:
        if pip.tip_uL is None:
            raise CommandFailed("TipNotAttachedError", f"the {pip.mount} pipette has no tip")
        self.cells_discarded_in_tips += pip.liquid.cells
        pip.tip_uL, pip.liquid = None, Liquid()
        self._spend(TIP_DROP_S)
        self._record("drop_tip", mount=pip.mount, to=where)

    def _cmd_dropTip(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        pip = self._pipette(params)
        loaded = run["labware"].get(params.get("labwareId"))
        if loaded is None:
            raise CommandFailed("LabwareNotLoadedError", f"no labware {params.get('labwareId')!r}")
        self._drop(pip, f"slot {loaded['slot']} {params.get('wellName')}")
        return {}

    def _cmd_moveToAddressableAreaForDropTip(  # noqa: N802
        self, run: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        pip = self._pipette(params)
        if params.get("addressableAreaName") != "fixedTrash":
            raise CommandFailed("AddressableAreaDoesNotExistError", "only the fixed trash")
        distance = 300.0 if pip.position is None else math.dist(pip.position, self.trash_at)
        pip.position, pip.at_trash = self.trash_at, True
        self._spend(MOVE_S + distance / TRAVEL_MM_PER_S)
        return {"position": dict(zip("xyz", self.trash_at, strict=True))}

    def _cmd_dropTipInPlace(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        pip = self._pipette(params)
        self._drop(pip, "trash" if pip.at_trash else f"in place at {pip.position}")
        return {}

    def _cmd_aspirateInPlace(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        pip = self._pipette(params)
        volume, flow = float(params["volume"]), float(params["flowRate"])
        if pip.tip_uL is None:
            raise CommandFailed(
                "TipNotAttachedError", f"aspirate: the {pip.mount} pipette has no tip"
            )
        room = min(pip.tip_uL, pip.max_uL) - pip.liquid.volume_uL
        if volume > room + 1e-6:
            raise CommandFailed(
                "InvalidAspirateVolumeError",
                f"aspirate {volume:.1f} uL: the {pip.name} with its {pip.tip_uL:g} uL tip has "
                f"room for {room:.1f} uL",
            )
        source, where, _ = self._container_at(pip, "aspirate")
        taken = self.culture.withdraw(source, volume)
        pip.liquid.add(taken)
        self._spend(LIQUID_S + volume / max(flow, 1e-3))
        self._record(
            "aspirate",
            mount=pip.mount,
            pipette=pip.name,
            source=source,
            well=where,
            volume_uL=volume,
            cells=taken.viable,
            flow_uL_per_s=flow,
        )
        return {"volume": volume}

    def _cmd_dispenseInPlace(self, run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        pip = self._pipette(params)
        volume, flow = float(params["volume"]), float(params["flowRate"])
        if pip.tip_uL is None:
            raise CommandFailed(
                "TipNotAttachedError", f"dispense: the {pip.mount} pipette has no tip"
            )
        if volume > pip.liquid.volume_uL + 1e-6:
            raise CommandFailed(
                "InvalidDispenseVolumeError",
                f"dispense {volume:.1f} uL: the tip holds {pip.liquid.volume_uL:.1f} uL",
            )
        target, where, offset = self._container_at(pip, "dispense")
        out = pip.liquid.take(volume)
        loss = self.culture.params.pipetting_cell_loss
        kept = out.viable * loss, out.dead * loss
        out.viable -= kept[0]
        out.dead -= kept[1]
        pip.liquid.viable += kept[0]
        pip.liquid.dead += kept[1]
        self.culture.deliver(target, out)
        self._spend(LIQUID_S + volume / max(flow, 1e-3))
        self._record(
            "dispense",
            mount=pip.mount,
            pipette=pip.name,
            target=target,
            well=where,
            volume_uL=volume,
            cells=out.viable,
            flow_uL_per_s=flow,
            offset_mm=[round(v, 2) for v in offset],
        )
        return {"volume": volume}

    # --- HTTP requests ---------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any] | OT2Fault:
        """Answer one request: (status, JSON), or a fault the server acts out."""
        with self.lock:
            return self._route(method, path.split("?")[0].rstrip("/"), body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any] | OT2Fault:
        if method == "GET" and path == "/health":
            return 200, {
                "name": f"{self.device}-sim",
                "robot_model": "OT-2 Standard",
                "api_version": API_VERSION,
                "fw_version": FIRMWARE,
                "system_version": API_VERSION,
                "links": {},
            }
        if method == "POST" and path == "/robot/home":
            self._cmd_home({}, {})
            self._record("home")
            return 200, {"message": "Homing robot."}
        if method == "GET" and path == "/pipettes":
            out = {}
            for mount in ("left", "right"):
                pip = self.pipettes.get(mount)
                out[mount] = {
                    "model": None if pip is None else pip.name.replace("_gen2", "_v2.1"),
                    "name": None if pip is None else pip.name,
                    "id": None if pip is None else f"SIM{mount.upper()}",
                    "mount_axis": "z" if mount == "left" else "a",
                    "plunger_axis": "b" if mount == "left" else "c",
                }
            return 200, out
        if path == "/runs":
            if method == "POST":
                return 201, {"data": self._new_run()}
            return 200, {"data": [self._run_view(r) for r in self.runs.values()]}
        m = re.fullmatch(r"/runs/([^/]+)(/.*)?", path)
        if m is None:
            return 404, {"errors": [{"title": "Not Found", "detail": f"{method} {path}"}]}
        run = self.runs.get(m.group(1))
        if run is None:
            return 404, {"errors": [{"title": "RunNotFound", "detail": f"no run {m.group(1)}"}]}
        rest = m.group(2) or ""
        if rest == "" and method == "GET":
            return 200, {"data": self._run_view(run)}
        if rest == "" and method == "DELETE":
            del self.runs[run["id"]]
            if self.current_run == run["id"]:
                self.current_run = None
            return 200, {}
        if rest == "/actions" and method == "POST":
            action = ((body or {}).get("data") or {}).get("actionType")
            if action == "stop":
                run["status"] = "stopped"
            return 201, {"data": {"id": uuid.uuid4().hex, "actionType": action}}
        if rest == "/labware_definitions" and method == "POST":
            definition = (body or {}).get("data") or {}
            p = definition.get("parameters", {})
            uri = f"{definition.get('namespace')}/{p.get('loadName')}/{definition.get('version')}"
            run["definitions"][uri] = definition
            return 201, {"data": {"definitionUri": uri}}
        if rest == "/commands" and method == "POST":
            return self._enqueue(run, (body or {}).get("data") or {})
        mc = re.fullmatch(r"/commands/([^/]+)", rest)
        if mc and method == "GET":
            cmd = run["commands"].get(mc.group(1))
            if cmd is None:
                return 404, {"errors": [{"title": "CommandNotFound", "detail": mc.group(1)}]}
            return 200, {"data": cmd}
        return 404, {"errors": [{"title": "Not Found", "detail": f"{method} {path}"}]}

    def _new_run(self) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        self.runs[run_id] = {
            "id": run_id,
            "createdAt": _stamp(),
            "status": "idle",
            "definitions": {},
            "labware": {},
            "commands": {},
        }
        self.current_run = run_id
        return self._run_view(self.runs[run_id])

    def _run_view(self, run: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": run["id"],
            "createdAt": run["createdAt"],
            "status": run["status"],
            "current": run["id"] == self.current_run,
            "labware": [
                {"id": i, "location": {"slotName": str(lw["slot"])}}
                for i, lw in run["labware"].items()
            ],
            "pipettes": [
                {"id": p.id, "pipetteName": p.name, "mount": p.mount}
                for p in self.pipettes.values()
                if p.id
            ],
        }

    def _enqueue(self, run: dict[str, Any], data: dict[str, Any]) -> tuple[int, Any] | OT2Fault:
        kind = str(data.get("commandType"))
        params = data.get("params") or {}
        if not hasattr(self, f"_cmd_{kind}"):
            return 422, {
                "errors": [
                    {
                        "id": "InvalidRequest",
                        "title": "Invalid command",
                        "detail": f"commandType {kind!r} is not simulated (docs/ot2.md)",
                    }
                ]
            }
        if run["status"] == "stopped":
            return 409, {"errors": [{"title": "RunStopped", "detail": "the run was stopped"}]}
        fault = self.faults.next(kind)
        if fault is OT2Fault.DROP:
            self._record("connection_dropped", command=kind)
            return OT2Fault.DROP
        cmd: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "key": uuid.uuid4().hex,
            "commandType": kind,
            "params": params,
            "intent": data.get("intent", "setup"),
            "createdAt": _stamp(),
            "startedAt": _stamp(),
            "result": None,
            "error": None,
        }
        if fault is OT2Fault.FAIL:
            cmd["status"] = "failed"
            cmd["error"] = {
                "errorType": "SimulatedHardwareError",
                "detail": f"{kind} failed (injected fault)",
            }
            self._record("command_failed", command=kind, reason="injected fault")
        else:
            try:
                cmd["result"] = self.execute(run, kind, params)
                cmd["status"] = "succeeded"
            except CommandFailed as err:
                cmd["status"] = "failed"
                cmd["error"] = {"errorType": err.error_type, "detail": err.detail}
                self._record("command_failed", command=kind, reason=err.detail)
        cmd["completedAt"] = _stamp()
        run["commands"][cmd["id"]] = cmd
        if fault is OT2Fault.SLOW:
            self._record("slow_answer", command=kind, seconds=self.faults.slow_answer_s)
            return 201, {"data": cmd, "_delay_s": self.faults.slow_answer_s}
        return 201, {"data": cmd}


def _stamp() -> str:
    return datetime.now(UTC).isoformat()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            self._send(400, {"errors": [{"title": "Bad JSON"}]})
            return
        answer = self.server.robot.handle(method, self.path, body)
        if answer is OT2Fault.DROP:
            self.close_connection = True  # no reply at all: the client sees the line drop
            return
        assert not isinstance(answer, OT2Fault)
        status, payload = answer
        delay = payload.pop("_delay_s", 0.0) if isinstance(payload, dict) else 0.0
        if delay:
            self.server.stopped.wait(delay)  # answered late (wall time), unless shutting down
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], robot: OT2Robot) -> None:
        super().__init__(address, _Handler)
        self.robot = robot
        self.stopped = threading.Event()


class OT2ApiServer:
    """Serves an ``OT2Robot`` over HTTP on ``host`` (127.0.0.1) at ``port`` (0: any free one)."""

    def __init__(self, robot: OT2Robot, host: str = "127.0.0.1", port: int = 0) -> None:
        self.robot = robot
        self.name = robot.device
        self._server = _Server((host, port), robot)
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    def start(self) -> OT2ApiServer:
        """Serve from a daemon thread: the server ends with its parent process."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.name}-http", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.stopped.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
