"""The simulated lab: every simulated device, the labware, the cells and the clock, as one world.

``Lab`` answers the lab link's requests (``handle``), one at a time: the liquid
handler's channels, the incubators and their chambers, the robot arm that carries
plates between the deck and an incubator's transfer station, the cell counter,
the imager, the simulated operator (loading a tube, emptying a trough), the clock,
and, for dry-run reports and tests only, the truth (a vessel's cells) and a few
admin levers (open an incubator's door, a heater fault).

Every physical action goes into ``rows``, the lab's own log, which the lab store
writes with the new state after each request: the lab's account of what happened
to each vessel, independent of the controller's record. A request either happens
whole or (if the lab process dies before it is saved) not at all.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from devices.cell_counter import CountResult
from simulators.cell_counter import COUNT_S, CellCounterSimulator, CounterInstrument, CounterRefusal
from simulators.chamber import DECK, Chamber, room_temperature
from simulators.culture import CultureModel, CultureParameters, Environment, Liquid
from simulators.cytomat import CytomatSimulator
from simulators.imager import FIXED_EXPOSURE_MS, FIXED_FOCUS_MM, ImagerSimulator
from simulators.incubator import IncubatorSimulator
from simulators.lab.spec import LabSpec, WellSpec
from simulators.liquid_handler import (
    Aspirate,
    Dispense,
    DropTip,
    PickUp,
    Refusal,
    StarSimulator,
)
from simulators.serial_port import FaultInjector, PtySimulator
from workcell.clock import Clock, SimClock, WallClock

ARM_MOVE_S = 0.0  # the arm's move is folded into the incubator's transfer times
OPERATOR_CARRY_S = 30.0  # an operator carries a plate between the deck and the incubator

__all__ = ["Lab", "Refusal"]


def _rng(seed: int, device: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(device.encode())])


class LabClock:
    """The lab's time: simulated (advanced on request) or the wall clock."""

    def __init__(self, kind: str, start: datetime, elapsed: float = 0.0) -> None:
        self.kind = kind
        self.sim = SimClock(start)
        self.sim.resume(start, elapsed)

    def elapsed(self) -> float:
        if self.kind == "wall":
            return max(0.0, (datetime.now(UTC) - self.sim.start()).total_seconds())
        return self.sim.elapsed()

    def now(self) -> datetime:
        return self.sim.start() + timedelta(seconds=self.elapsed())

    def advance(self, seconds: float) -> None:
        """A device action or a wait takes ``seconds``; a wall clock moves by itself."""
        if self.kind == "simulated":
            self.sim.advance(seconds)


class _PhysicalLog:
    """What the serial simulators call ``log.record(time, device, action, **detail)`` on."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def record(self, time: datetime, device: str, action: str, **detail: Any) -> None:
        self.lab.log(device, action, **detail)


class _TouchingCulture:
    """The culture model as a robot that reaches wells on its own (the OT-2) sees it: a
    well becomes a vessel the first time liquid comes into it or out of it."""

    def __init__(self, lab: Lab) -> None:
        self._lab = lab

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lab.culture, name)

    def withdraw(self, container: str, volume_uL: float) -> Liquid:
        self._lab.touch(container)
        return self._lab.culture.withdraw(container, volume_uL)

    def deliver(self, container: str, liquid: Liquid) -> None:
        self._lab.touch(container)
        self._lab.culture.deliver(container, liquid)


class Lab:
    def __init__(self, spec: LabSpec, start: datetime) -> None:
        self.spec = spec
        self.clock = LabClock(spec.clock, start)
        try:
            params = CultureParameters(**spec.culture_overrides)
        except Exception as err:
            raise ValueError(f"culture overrides: {err}") from None
        self.culture = CultureModel(self.clock.elapsed, params, seed=spec.seed)
        self.rows: list[dict[str, Any]] = []
        self.log_seq = 0
        self.http_ports: dict[str, int] = {}  # devices served over HTTP (an OT-2's API)
        self.wells: dict[str, WellSpec] = {}
        self.plate_of: dict[str, str] = {}
        self.plate_wells: dict[str, list[str]] = {}
        for p in spec.plates:
            self.plate_wells[p.name] = [w.name for w in p.wells]
            for w in p.wells:
                self.wells[w.name] = w
                self.plate_of[w.name] = p.name
        self.containers = {c.name: c for c in spec.containers}
        # the hotel's empty vessels, and those drawn from it (now the lab's plates)
        self.hotel_stock: dict[str, int] = dict(spec.hotel.stock) if spec.hotel else {}
        self.drawn: dict[str, dict[str, Any]] = {}  # plate -> {"labware", "wells": [WellSpec]}

        self.chambers: dict[str, Chamber] = {}
        self.incubators: dict[str, IncubatorSimulator] = {}
        self.serial: dict[str, PtySimulator] = {}
        for inc in spec.incubators:
            chamber = Chamber(
                inc.name,
                self.clock.elapsed,
                _rng(spec.seed, inc.name),
                self.culture,
                setpoint_C=inc.setpoint_C,
                co2_setpoint_percent=inc.co2_percent,
                humidity_percent=inc.humidity_percent,
                capacity=inc.capacity,
            )
            for f in inc.heater_faults:
                chamber.inject_excursion(f.delta_C, f.duration_s, start_s=f.start_s)
            self.chambers[inc.name] = chamber
            self.incubators[inc.name] = IncubatorSimulator(
                inc.name, chamber, self.clock.advance, self.log
            )
        self.star = (
            StarSimulator(
                spec.star.name,
                self.culture,
                self.clock.advance,
                self.log,
                self.touch,
                spec.star.channels,
                spec.star.tip_pickup_failure,
                _rng(spec.seed, spec.star.name),
            )
            if spec.star
            else None
        )
        self.counter = (
            CounterInstrument(
                self.culture,
                spec.seed,
                spec.counter.name,
                spec.counter.chamber_volume_uL,
                spec.counter.instrument_cv,
            )
            if spec.counter
            else None
        )
        self.ot2: dict[str, Any] = {}
        if spec.ot2 is not None:
            from simulators.ot2_api import DeckLabware, OT2FaultPlan, OT2Robot

            o = spec.ot2
            robot_clock: Clock = self.clock.sim if self.clock.kind == "simulated" else WallClock()
            self.ot2[o.name] = OT2Robot(
                o.name,
                [DeckLabware(x.slot, x.name, x.load_name, dict(x.tubes)) for x in o.labware],
                dict(o.pipettes),
                _TouchingCulture(self),  # type: ignore[arg-type]
                robot_clock,
                _PhysicalLog(self),  # type: ignore[arg-type]
                OT2FaultPlan(
                    failed_command=o.failed_command,
                    dropped_connection=o.dropped_connection,
                    slow_answer=o.slow_answer,
                    slow_answer_s=o.slow_answer_s,
                    seed=zlib.crc32(o.name.encode()) + spec.seed,
                ),
            )
        self.imager = (
            ImagerSimulator(
                spec.imager.name,
                self.culture,
                self.clock.advance,
                self.log,
                spec.seed,
                self.clock.elapsed,
                spec.imager.optics,
                spec.imager.error,
            )
            if spec.imager
            else None
        )

    # --- serial devices on pseudo-terminals --------------------------------------------

    def make_serial(
        self,
        lock: Any,
        after_command: Callable[[], None],
        before_command: Callable[[], None],
    ) -> None:
        """The simulators of serial devices (not started): they share the lab's lock, the
        lab saves its state after each of their commands (``after_command``) and readies
        itself before each (``before_command``), as for a request on the lab link."""
        clock = self.clock.sim if self.clock.kind == "simulated" else None
        log = _PhysicalLog(self)
        for inc in self.spec.incubators:
            if inc.serial:
                self.serial[inc.name] = CytomatSimulator(
                    inc.name,
                    self.chambers[inc.name],
                    clock,
                    log,  # type: ignore[arg-type]
                    FaultInjector(inc.faults, self.spec.seed),
                    model=inc.model,
                    rack_sizes=inc.rack_sizes or None,
                )
        if self.spec.counter is not None and self.spec.counter.serial:
            assert self.counter is not None
            self.serial[self.spec.counter.name] = CellCounterSimulator(
                self.spec.counter.name,
                self.counter,
                clock,
                log,  # type: ignore[arg-type]
                FaultInjector(self.spec.counter.faults, self.spec.seed + 1),
            )
        for sim in self.serial.values():
            sim._lock = lock
            sim.after_command = after_command
            sim.before_command = before_command
        for robot in self.ot2.values():  # its HTTP requests, one at a time with the rest
            robot.lock = lock
            handle = robot.handle

            def saved(method: str, path: str, body: Any, handle: Any = handle) -> Any:
                with lock:
                    before_command()
                    out = handle(method, path, body)
                    after_command()
                return out

            robot.handle = saved

    # --- the physical log -----------------------------------------------------------------

    def log(self, device: str, action: str, **detail: Any) -> None:
        self.log_seq += 1
        self.rows.append(
            {
                "seq": self.log_seq,
                "t": self.clock.elapsed(),
                "time": self.clock.now().isoformat(),
                "device": device,
                "action": action,
                "detail": detail,
            }
        )

    def take_rows(self) -> list[dict[str, Any]]:
        """The rows logged since the last call, each with ``end_t``: when its action ended.

        A request's actions run one after the other on the lab's clock, so an action ends
        where the next row of the same request begins, and the last one where the lab's
        clock stands once the request is done (a wait is a request of its own, with no
        row). A judge needs the end to tell a device's use from its idle time.
        """
        rows, self.rows = self.rows, []
        now = self.clock.elapsed()
        for i, row in enumerate(rows):
            row["end_t"] = max(row["t"], rows[i + 1]["t"] if i + 1 < len(rows) else now)
        return rows

    # --- places ---------------------------------------------------------------------------

    def _environment(self, name: str | None) -> Environment | None:
        if name is None:
            return None
        if name == DECK:
            return room_temperature
        chamber = self.chambers.get(name.removeprefix("chamber:"))
        return chamber.temperature_at if chamber else None

    def where(self, plate: str) -> str:
        """``deck``, ``station:<incubator>`` or ``slot:<incubator>:<n>``."""
        for name, c in self.chambers.items():
            if c.transfer_station == plate:
                return f"station:{name}"
            slot = c.slot_of(plate)
            if slot is not None:
                return f"slot:{name}:{slot}"
        return "deck"

    def touch(self, container: str) -> None:
        """A plate's well becomes a culture vessel the first time anything touches it."""
        if container in self.culture.vessels or container not in self.wells:
            return
        w = self.wells[container]
        place = self.where(self.plate_of[container])
        if place.startswith("slot:"):
            chamber = self.chambers[place.split(":")[1]]
            self.culture.register_vessel(
                container, w.area_cm2, chamber.temperature_at, chamber.env_name
            )
        else:
            self.culture.register_vessel(container, w.area_cm2, room_temperature, DECK)

    def _known(self, container: str) -> None:
        if container not in self.wells and container not in self.containers:
            raise Refusal("unknown", f"the lab has no container {container!r}")

    # --- requests -------------------------------------------------------------------------

    def handle(self, op: str, args: dict[str, Any]) -> tuple[Any, list[bytes]]:
        fn = getattr(self, "op_" + op.replace(".", "_"), None)
        if fn is None:
            raise Refusal("unknown_op", f"the lab has no request {op!r}")
        out = fn(**args)
        if isinstance(out, tuple):
            return out
        return out, []

    def op_hello(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "fingerprint": self.spec.fingerprint(),
            "clock": self.spec.clock,
            "start": self.clock.sim.start().isoformat(),
            "elapsed": self.clock.elapsed(),
            "ports": {**{n: s.port for n, s in self.serial.items()}, **self.http_ports},
        }

    def op_clock_now(self) -> dict[str, Any]:
        return {"elapsed": self.clock.elapsed()}

    def op_clock_advance(self, seconds: float) -> dict[str, Any]:
        if seconds < 0:
            raise Refusal("bad_wait", f"cannot advance the clock by {seconds} s")
        if self.clock.kind == "wall":
            raise Refusal("wall_clock", "the lab runs on the wall clock: time moves by itself")
        self.clock.advance(seconds)
        return {"elapsed": self.clock.elapsed()}

    # liquid handler
    def _star(self, device: str) -> StarSimulator:
        if self.star is None or self.star.name != device:
            raise Refusal("unknown_device", f"the lab simulates no liquid handler {device!r}")
        return self.star

    def op_star_pick_up_tip(self, device: str, channel: int, spot: str) -> dict[str, Any]:
        return self._star(device).pick_up_tip(channel, spot)

    def op_star_drop_tip(self, device: str, channel: int, to: str) -> dict[str, Any]:
        return self._star(device).drop_tip(channel, to)

    def op_star_aspirate(
        self,
        device: str,
        channel: int,
        source: str,
        volume_uL: float,
        flow: float | None = None,
        offset_mm: list[float] | None = None,
    ) -> dict[str, Any]:
        self._known(source)
        return self._star(device).aspirate(channel, source, volume_uL, flow, offset_mm)

    def op_star_dispense(
        self,
        device: str,
        channel: int,
        target: str,
        volume_uL: float,
        flow: float | None = None,
        offset_mm: list[float] | None = None,
    ) -> dict[str, Any]:
        self._known(target)
        return self._star(device).dispense(channel, target, volume_uL, flow, offset_mm)

    # one action of several channels, one request: ``ops`` holds each channel's arguments
    # of the single-channel request (less the device); the reply, one result per op
    def op_star_pick_up_tip_batch(
        self, device: str, ops: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Channels that got no tip are in the reply, not a refusal: the others hold theirs."""
        return self._star(device).pick_up_tip_batch([PickUp(**op) for op in ops])

    def op_star_drop_tip_batch(
        self, device: str, ops: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return self._star(device).drop_tip_batch([DropTip(**op) for op in ops])

    def op_star_aspirate_batch(
        self, device: str, ops: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        batch = [Aspirate(**op) for op in ops]
        for a in batch:
            self._known(a.source)
        return self._star(device).aspirate_batch(batch)

    def op_star_dispense_batch(
        self, device: str, ops: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        batch = [Dispense(**op) for op in ops]
        for d in batch:
            self._known(d.target)
        return self._star(device).dispense_batch(batch)

    def op_star_tip_presence(self, device: str) -> list[bool]:
        return self._star(device).tip_presence()

    def op_star_volume_in_tip(self, device: str, channel: int) -> float:
        return self._star(device).volume_in_tip(channel)

    def op_star_probe_volumes(self, device: str, containers: list[str]) -> list[float]:
        star = self._star(device)
        for c in containers:
            self._known(c)
        return [star.probe_volume(c) for c in containers]

    # incubators
    def _incubator(self, device: str) -> IncubatorSimulator:
        if device not in self.incubators or device in self.serial:
            raise Refusal("unknown_device", f"the lab has no link incubator {device!r}")
        return self.incubators[device]

    def op_incubator_initialise(self, device: str) -> dict[str, Any]:
        return self._incubator(device).initialise()

    def op_incubator_gate(self, device: str, open: bool) -> dict[str, Any]:  # noqa: A002
        return self._incubator(device).gate(open)

    def op_incubator_fetch(self, device: str, plate: str, slot: int) -> dict[str, Any]:
        return self._incubator(device).fetch(plate, slot)

    def op_incubator_take_in(self, device: str, plate: str, slot: int) -> dict[str, Any]:
        return self._incubator(device).take_in(plate, slot)

    def op_incubator_climate(self, device: str) -> dict[str, Any]:
        return self._incubator(device).climate()

    def op_incubator_set_temperature(self, device: str, temperature_C: float) -> dict[str, Any]:
        return self._incubator(device).set_temperature(temperature_C)

    # the robot arm between the deck and the incubators' transfer stations
    def op_arm_move(self, plate: str, to: str, by: str = "arm") -> dict[str, Any]:
        if plate not in self.plate_wells:
            raise Refusal("unknown", f"the lab has no plate {plate!r}")
        here = self.where(plate)
        if to == "deck":
            if not here.startswith("station:"):
                raise Refusal("not_on_station", f"plate {plate!r} is not on a transfer station")
            self.chambers[here.split(":")[1]].leave_transfer_station()
        elif to.startswith("incubator:"):
            name = to.split(":", 1)[1]
            if name not in self.chambers:
                raise Refusal("unknown_device", f"the lab has no incubator {name!r}")
            if here != "deck":
                raise Refusal("not_on_deck", f"plate {plate!r} is at {here}, not on the deck")
            if self.chambers[name].transfer_station is not None:
                raise Refusal("station_occupied", f"{name}: the transfer station is occupied")
            self.chambers[name].arrive_at_transfer_station(plate, self.plate_wells[plate])
        else:
            raise Refusal("bad_place", f"the arm cannot take a plate to {to!r}")
        if by == "operator":  # at an OT-2 without an arm, a person carries it
            self.log("operator", "carry_plate", plate=plate, source=here, to=to)
            self.clock.advance(OPERATOR_CARRY_S)
        else:
            self.log("arm", "move_plate", plate=plate, source=here, to=to)
            self.clock.advance(ARM_MOVE_S)
        for robot in self.ot2.values():  # a robot sees a plate come onto or leave its deck
            robot.plate_moved(plate, on_deck=to == "deck")
        return {"from": here}

    def op_plates_where(self, plates: list[str]) -> dict[str, str]:
        """Where plates are: what a plate-presence check of deck, stations and slots finds."""
        return {p: self.where(p) for p in plates}

    # cell counter (link driver)
    def op_counter_count(self, device: str, sample: str, volume_uL: float) -> dict[str, Any]:
        if self.counter is None or self.spec.counter is None or self.spec.counter.name != device:
            raise Refusal("unknown_device", f"the lab has no link counter {device!r}")
        inst = self.counter
        self._known(sample)
        try:
            inst.load(sample, volume_uL)
            inst.count()
            result = inst.result
            assert result is not None
        except CounterRefusal as err:
            inst.eject()
            raise Refusal("counter", str(err)) from err
        inst.eject()
        self.log(device, "count", **result.model_dump())
        self.clock.advance(COUNT_S)
        return result.model_dump()

    # imager
    def op_imager_capture(
        self, device: str, wells: list[str]
    ) -> tuple[dict[str, Any], list[bytes]]:
        if self.imager is None or self.imager.name != device:
            raise Refusal("unknown_device", f"the lab has no imager {device!r}")
        images, covered = self.imager.capture(wells)
        shapes = [list(im.shape) for im in images]
        result = {
            "shapes": shapes,
            "dtype": "uint16",
            "covered": covered,
            "exposure_ms": FIXED_EXPOSURE_MS,
            "focal_height_mm": FIXED_FOCUS_MM,
        }
        return result, [np.ascontiguousarray(im).tobytes() for im in images]

    def op_imager_measure(self, device: str, wells: list[str], fields: int) -> dict[str, Any]:
        """The fast imaging path: per well, each field's confluence estimate, no pixels."""
        if self.imager is None or self.imager.name != device:
            raise Refusal("unknown_device", f"the lab has no imager {device!r}")
        if fields < 1:
            raise Refusal("bad_request", f"{device}: {fields} fields per well")
        return self.imager.measure(wells, fields)

    # the hotel of empty vessels
    def _hotel(self) -> str:
        if self.spec.hotel is None:
            raise Refusal("unknown_device", "the lab has no vessel hotel")
        return self.spec.hotel.name

    def _add_plate(self, plate: str, wells: list[WellSpec]) -> None:
        self.plate_wells[plate] = [w.name for w in wells]
        for w in wells:
            self.wells[w.name] = w
            self.plate_of[w.name] = plate

    def _drop_plate(self, plate: str) -> None:
        for w in self.plate_wells.pop(plate, []):
            self.wells.pop(w, None)
            self.plate_of.pop(w, None)
        self.drawn.pop(plate, None)

    def op_hotel_draw(
        self, labware: str, plate: str, wells: list[dict[str, Any]], actor: str
    ) -> dict[str, Any]:
        """An empty vessel of ``labware`` out of the hotel onto the deck, as ``plate``."""
        hotel = self._hotel()
        left = self.hotel_stock.get(labware)
        if left is None:
            raise Refusal("unknown", f"the hotel {hotel!r} holds no {labware!r}")
        if plate in self.plate_wells or plate in self.containers:
            raise Refusal("exists", f"the lab already has a plate {plate!r}")
        if left < 1:
            raise Refusal("hotel_empty", f"the hotel {hotel!r} has no empty {labware!r} left")
        specs = [WellSpec.model_validate(w) for w in wells]
        if not specs or any(w.name in self.wells or w.name in self.containers for w in specs):
            raise Refusal("exists", f"the wells of {plate!r} are not new to the lab")
        self._add_plate(plate, specs)
        self.drawn[plate] = {"labware": labware, "wells": [w.model_dump() for w in specs]}
        self.hotel_stock[labware] = left - 1
        self.log(hotel, "draw_vessel", plate=plate, labware=labware, actor=actor, stock=left - 1)
        return {"stock": left - 1}

    def _drawn_on_deck(self, plate: str) -> None:
        if plate not in self.drawn:
            raise Refusal("unknown", f"{plate!r} is not a vessel drawn from the hotel")
        here = self.where(plate)
        if here != "deck":
            raise Refusal("not_on_deck", f"vessel {plate!r} is at {here}, not on the deck")

    def op_hotel_put_back(self, plate: str, actor: str) -> dict[str, Any]:
        """An unused, empty vessel back into the hotel."""
        hotel = self._hotel()
        self._drawn_on_deck(plate)
        for w in self.plate_wells[plate]:
            if w in self.culture.vessels or self.culture.liquid_of(w).volume_uL > 0:
                raise Refusal("not_empty", f"vessel {plate!r} has been used; it cannot go back")
        labware = self.drawn[plate]["labware"]
        for w in self.plate_wells[plate]:
            self.culture.containers.pop(w, None)
        self._drop_plate(plate)
        self.hotel_stock[labware] += 1
        stock = self.hotel_stock[labware]
        self.log(hotel, "return_vessel", plate=plate, labware=labware, actor=actor, stock=stock)
        return {"stock": stock}

    def op_hotel_discard(self, plate: str, actor: str) -> dict[str, Any]:
        """An emptied vessel from the deck into biohazard waste, with whatever it still holds."""
        self._hotel()
        self._drawn_on_deck(plate)
        self.culture.sync()
        viable = dead = volume = 0.0
        for w in self.plate_wells[plate]:
            volume += self.culture.liquid_of(w).volume_uL
            gone = self.culture.vessels.pop(w, None)
            if gone is not None:
                viable += gone.attached + gone.medium.viable
                dead += gone.medium.dead
            self.culture.containers.pop(w, None)
        self._drop_plate(plate)
        self.log(
            "operator",
            "discard_vessel",
            plate=plate,
            actor=actor,
            volume_uL=volume,
            viable_cells=viable,
            dead_cells=dead,
        )
        return {"volume_uL": volume, "viable": viable, "dead": dead}

    def op_hotel_state(self) -> dict[str, Any]:
        """The hotel's stock and the vessels drawn from it that still exist."""
        return {
            "stock": dict(self.hotel_stock),
            "drawn": {p: d["labware"] for p, d in self.drawn.items()},
        }

    # the simulated operator's hands
    def op_operator_load(self, container: str, liquid: dict[str, Any], actor: str) -> dict:
        self._known(container)
        self.touch(container)
        self.culture.load(container, Liquid(**liquid))
        self.log("operator", "load", container=container, actor=actor, **liquid)
        return {}

    def op_operator_empty(self, container: str, actor: str) -> dict[str, Any]:
        self._known(container)
        self.touch(container)
        gone = self.culture.withdraw(container, self.culture.liquid_of(container).volume_uL)
        self.log(
            "operator",
            "empty",
            container=container,
            actor=actor,
            volume_uL=gone.volume_uL,
            viable_cells=gone.viable,
            dead_cells=gone.dead,
        )
        return {"volume_uL": gone.volume_uL, "viable": gone.viable, "dead": gone.dead}

    def op_operator_collect(self, container: str, into: str, actor: str) -> dict[str, Any]:
        """A container poured into an off-deck one (a harvest bag), which the lab keeps."""
        self._known(container)
        self.touch(container)
        if into in self.wells or into in self.plate_wells:
            raise Refusal("bad_place", f"{into!r} is a culture vessel, not an off-deck container")
        gone = self.culture.withdraw(container, self.culture.liquid_of(container).volume_uL)
        self.culture.load(into, gone)
        self.log(
            "operator",
            "collect",
            container=container,
            into=into,
            actor=actor,
            volume_uL=gone.volume_uL,
            viable_cells=gone.viable,
            dead_cells=gone.dead,
        )
        return {"volume_uL": gone.volume_uL, "viable": gone.viable, "dead": gone.dead}

    def op_operator_replace_tips(self, rack: str, actor: str) -> dict[str, Any]:
        for robot in self.ot2.values():
            robot.tips_replaced(rack)
        self.log("operator", "replace_tips", rack=rack, actor=actor)
        return {}

    # --- truth and levers: for dry-run reports, tests and benchmarks ---------------------------

    def op_truth_vessel(self, name: str) -> dict[str, Any]:
        if name not in self.culture.vessels:
            raise Refusal("unknown", f"{name!r} holds no culture in the lab")
        s = self.culture.state(name)
        return {**asdict(s), "viable": s.viable, "viability": s.viability}

    def op_truth_vessels(self) -> list[str]:
        return list(self.culture.vessels)

    def op_truth_liquid(self, name: str) -> dict[str, Any]:
        self._known(name)
        self.touch(name)
        return asdict(self.culture.liquid(name))

    def op_truth_chamber(self, name: str) -> dict[str, Any]:
        c = self.chambers[name]
        return {
            "temperature_C": c.temperature(),
            "co2_percent": c.co2(),
            "door_open": c.door_open,
            "slots": {str(k): v for k, v in c.slots.items()},
            "transfer_station": c.transfer_station,
        }

    def op_truth_star(self) -> dict[str, Any]:
        assert self.star is not None
        return {"cells_discarded": self.star.cells_discarded, "tips": self.star.tip_presence()}

    def op_truth_serial(self, name: str) -> dict[str, Any]:
        sim = self.serial[name]
        inst = getattr(sim, "instrument", None)
        return {
            "port": sim.port,
            "running": sim.running,
            "commands": list(sim.commands),
            "injected": {str(k): v for k, v in sim.faults.injected.items()},
            "seq": inst.seq if inst is not None else None,
        }

    def op_truth_ot2(self, name: str) -> dict[str, Any]:
        robot = self.ot2[name]
        return {
            "commands_run": dict(robot.commands_run),
            "cells_discarded_in_tips": robot.cells_discarded_in_tips,
            "pipettes": {m: p.tip_uL is not None for m, p in robot.pipettes.items()},
        }

    def op_admin_ot2_fault(
        self, name: str, fault: str, command: str | None = None, slow_answer_s: float | None = None
    ) -> dict[str, Any]:
        from simulators.ot2_api import OT2Fault

        robot = self.ot2[name]
        if slow_answer_s is not None:
            robot.faults.slow_answer_s = slow_answer_s
        robot.faults.queue(OT2Fault(fault), command)
        return {}

    def op_admin_door(self, incubator: str, open: bool) -> dict[str, Any]:  # noqa: A002
        self.chambers[incubator].set_door(open)
        self.log(incubator, "device_door", open=open)
        return {}

    def op_admin_heater_fault(self, incubator: str, delta_C: float, seconds: float) -> dict:
        self.chambers[incubator].inject_excursion(delta_C, seconds)
        self.log(incubator, "heater_fault", delta_C=delta_C, seconds=seconds)
        return {}

    def op_admin_fault_queue(self, device: str, faults: list[str | None]) -> dict[str, Any]:
        from simulators.serial_port import Fault

        self.serial[device].faults.queue(*(None if f is None else Fault(f) for f in faults))
        return {}

    # --- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        counter = None
        if self.counter is not None:
            c = self.counter
            counter = {
                "sample_name": c.sample_name,
                "sample": asdict(c.sample) if c.sample is not None else None,
                "result": c.result.model_dump() if c.result is not None else None,
                "seq": c.seq,
                "counts_of_sample": c.counts_of_sample,
                "loads": dict(c.loads),
            }
        serial: dict[str, Any] = {}
        for name, sim in self.serial.items():
            extra = {}
            if isinstance(sim, CytomatSimulator):
                extra = {
                    "initialised": sim.initialised,
                    "gate_open": sim.gate_open,
                    "error_register": sim.error_register,
                    "barcodes": {str(k): v for k, v in sim.barcodes.items()},
                }
            serial[name] = {"faults_rng": sim.faults.rng.bit_generator.state, **extra}
        return {
            "clock": {"start": self.clock.sim.start().isoformat(), "elapsed": self.clock.elapsed()},
            "log_seq": self.log_seq,
            "culture": self.culture.to_state(),
            "chambers": {n: c.to_state() for n, c in self.chambers.items()},
            "incubators": {n: i.to_state() for n, i in self.incubators.items()},
            "star": self.star.to_state() if self.star else None,
            "counter": counter,
            "imager": self.imager.to_state() if self.imager else None,
            "serial": serial,
            "ot2": {n: _ot2_state(r) for n, r in self.ot2.items()},
            "hotel": {"stock": dict(self.hotel_stock), "drawn": self.drawn},
        }

    def load_state(self, st: dict[str, Any]) -> None:
        start = datetime.fromisoformat(st["clock"]["start"])
        self.clock.sim.resume(start, float(st["clock"]["elapsed"]))
        self.log_seq = int(st["log_seq"])
        hotel = st.get("hotel")
        if hotel is not None:  # the drawn vessels are plates before anything refers to them
            self.hotel_stock = dict(hotel["stock"])
            self.drawn = dict(hotel["drawn"])
            for plate, d in self.drawn.items():
                self._add_plate(plate, [WellSpec.model_validate(w) for w in d["wells"]])
        for name, cst in st["chambers"].items():
            self.chambers[name].load_state(cst)
        for name, ist in st["incubators"].items():
            self.incubators[name].load_state(ist)
        self.culture.load_state(st["culture"], self._environment)
        if self.star is not None and st["star"] is not None:
            self.star.load_state(st["star"])
        if self.imager is not None and st["imager"] is not None:
            self.imager.load_state(st["imager"])
        if self.counter is not None and st["counter"] is not None:
            c, cs = self.counter, st["counter"]
            c.sample_name = cs["sample_name"]
            c.sample = Liquid(**cs["sample"]) if cs["sample"] is not None else None
            c.result = CountResult(**cs["result"]) if cs["result"] is not None else None
            c.seq = int(cs["seq"])
            c.counts_of_sample = int(cs.get("counts_of_sample", 0))
            c.loads = {k: int(n) for k, n in cs.get("loads", {}).items()}
        for name, ost in st.get("ot2", {}).items():
            if name in self.ot2:
                _load_ot2(self.ot2[name], ost)
        for name, sst in st["serial"].items():
            sim = self.serial.get(name)
            if sim is None:
                continue
            sim.faults.rng.bit_generator.state = sst["faults_rng"]
            if isinstance(sim, CytomatSimulator):
                sim.initialised = sst["initialised"]
                sim.gate_open = sst["gate_open"]
                sim.error_register = sst["error_register"]
                sim.barcodes = {int(k): v for k, v in sst["barcodes"].items()}


def _ot2_state(robot: Any) -> dict[str, Any]:
    """What the simulated OT-2 physically is: its pipettes' tips and liquid, its deck.

    Its runs are not kept: a robot server that restarts has no run, and a controller
    that reconnects starts a new one (as PyLabRobot's back end does at set-up).
    """
    return {
        "pipettes": {
            m: {
                "id": p.id,
                "tip_uL": p.tip_uL,
                "tip_from": p.tip_from,
                "liquid": dict(vars(p.liquid)),
                "position": list(p.position) if p.position is not None else None,
                "at_trash": p.at_trash,
            }
            for m, p in robot.pipettes.items()
        },
        "deck": {
            str(slot): {"on_deck": lw.on_deck, "tips_taken": sorted(lw.tips_taken)}
            for slot, lw in robot.deck.items()
        },
        "cells_discarded_in_tips": robot.cells_discarded_in_tips,
        "commands_run": dict(robot.commands_run),
        "faults_rng": robot.faults.rng.bit_generator.state,
    }


def _load_ot2(robot: Any, st: dict[str, Any]) -> None:
    from collections import Counter

    for m, ps in st["pipettes"].items():
        p = robot.pipettes[m]
        p.id = ps["id"]
        p.tip_uL = ps["tip_uL"]
        p.tip_from = ps["tip_from"]
        p.liquid = Liquid(**ps["liquid"])
        p.position = tuple(ps["position"]) if ps["position"] is not None else None
        p.at_trash = ps["at_trash"]
    for slot, ds in st["deck"].items():
        lw = robot.deck[int(slot)]
        lw.on_deck = ds["on_deck"]
        lw.tips_taken = set(ds["tips_taken"])
    robot.cells_discarded_in_tips = st["cells_discarded_in_tips"]
    robot.commands_run = Counter(st["commands_run"])
    robot.faults.rng.bit_generator.state = st["faults_rng"]
