"""A Thermo/Heraeus Cytomat answering its serial protocol on a pseudo-terminal.

PyLabRobot's ``CytomatBackend``, unchanged, drives it: it sends
``<type>:<command> <params>\\r\\n`` telegrams (``\\r`` alone for a C2C_425) and
reads the reply. This simulator answers the telegrams PyLabRobot's client sends,
the way PyLabRobot parses them:

==========================  ==================================================
telegram                    reply
==========================  ==================================================
``ll:in``                   ``ok HH`` (initialise; sets the ready bit)
``ll:gp 002`` / ``001``     ``ok HH`` (automatic gate open / closed)
``ll:sp 002`` / ``001``     ``ok HH`` (shovel extended / retracted)
``ll:vi`` ``ll:va``         ``ok HH`` shakers initialised / started / stopped
``ll:vd``                   (the reply is the shaker state, two bits)
``se:pb 2N FFFF``           ``ok 00``: shaker N+1 frequency FFFF (0-2000 /min)
``ch:bs``                   ``bs HH``: overview register (transfer station
                            occupied, device door open, gate open, handler
                            occupied, error, warning, ready, busy; MSB first)
``ch:be`` / ``ch:bw``       ``be HH`` / ``bw HH``: error / warning register
``rs:be``                   ``ok 00`` (reset error register)
``ch:ba``                   ``ba HH``: action register: the target (3 bits) and
                            the action (5 bits) of the last movement
``ch:sw``                   ``sw PFQ``: swap station position and load status
``ch:ts``                   ``ts N``: sensor register, 15 bits in base 12:
                            shovel retracted/extended/occupied, gate opened/
                            closed, transfer station occupied, inner door,
                            handler towards stacker/gate, as they are
``ch:it`` ``ch:ic``         ``it +037.0 +036.9``: nominal and actual temperature,
``ch:ih`` ``ch:io``         CO2, humidity, O2
``mv:ts LOC``               transfer station -> storage location, ``ok HH``
``mv:st LOC``               storage -> transfer station
``mv:sw LOC`` ``mv:ws LOC``  storage -> wait position (on the handler) and back
``mv:wt`` ``mv:tw``         wait position -> transfer station and back
``mv:wh`` ``mv:hw``         wait position -> exposed (outside) and back
``mv:sh LOC`` ``mv:hs LOC``  storage -> exposed and back
``mv:sn LOC LOC``           scan barcodes of a range of locations
anything else               ``er 02`` (command unknown)
==========================  ==================================================

A storage location ``LOC`` is ``NNN`` (the absolute slot) or, on a C2C_425,
``RR SS`` (rack and site, from 0), as PyLabRobot's client writes it. Errors use
the Cytomat codes PyLabRobot maps to exceptions: ``er 04`` a malformed parameter,
``er 05`` an unknown location, ``er 21`` the handler already holds a plate,
``er 22`` the handler (or the slot it should load from) is empty, ``er 31`` /
``er 32`` the transfer station is empty / occupied. A plate put into a slot that
already holds one is not a telegram error: the move is accepted, the handler
cannot unload, and the error register reads ``03`` (MTP not unloaded from the
handler shovel), as PyLabRobot reads it after the move; the plate is left on the
transfer station. An action completes at once in wall time; a plate move takes
simulated time on the clock.
"""

from __future__ import annotations

from simulators.chamber import Chamber
from simulators.serial_port import FaultInjector, PtySimulator
from workcell.actions import ActionLog
from workcell.clock import SimClock

PLATE_MOVE_S = 35.0
SENSOR_BITS = 15


def _to_base12(n: int) -> str:
    digits = "0123456789AB"
    out = ""
    while True:
        n, r = divmod(n, 12)
        out = digits[r] + out
        if n == 0:
            return out


# action register: target (3 bits) and action (5 bits), PyLabRobot's ActionType/ActionRegister
INIT, WAIT, STACKER, STATION = 0x01, 0x02, 0x03, 0x04
RETRACT, EXTEND, CLOSE_GATE, OPEN_GATE, STATION_POS_1, TURNTABLE_INIT = (
    0x0A,
    0x07,
    0x0C,
    0x0E,
    0x10,
    0x1B,
)
MAX_SHAKER_PER_MIN = 2000


class CytomatSimulator(PtySimulator):
    def __init__(
        self,
        name: str,
        chamber: Chamber,
        clock: SimClock | None = None,
        log: ActionLog | None = None,
        faults: FaultInjector | None = None,
        model: str = "C6000",
        rack_sizes: list[int] | None = None,
    ) -> None:
        super().__init__(name, faults)
        self.chamber = chamber
        self.clock = clock
        self.log = log
        self.model = model
        self.rack_sizes = rack_sizes or [chamber.capacity]
        self.initialised = False
        self.gate_open = False
        self.shovel_extended = False
        self.handler: str | None = None  # a plate on the handler (wait position)
        self.exposed = False  # the handler is outside the device with its plate
        self.error_register = "00"
        self.action = (INIT, TURNTABLE_INIT)
        self.shaker_frequency = [0, 0]
        self.shaking = False
        self.barcodes: dict[int, str] = {}

    # --- registers -------------------------------------------------------------------

    def _overview(self) -> str:
        c = self.chamber
        bits = [
            c.transfer_station is not None,
            c.door_open,
            self.gate_open,
            self.handler is not None,
            self.error_register != "00",
            False,
            self.initialised,
            False,  # busy: actions complete at once
        ]
        return f"{int(''.join('1' if b else '0' for b in bits), 2):02X}"

    def _sensors(self) -> str:
        c = self.chamber
        on = {
            0: self.initialised,
            1: self.initialised,
            2: not self.shovel_extended,
            3: self.shovel_extended,
            4: self.handler is not None,
            5: self.gate_open,
            6: not self.gate_open,
            7: c.transfer_station is not None,
            8: True,  # the transfer station turns to position 1
            10: c.door_open,
            12: self.action[0] in (INIT, STACKER),
            13: self.action[0] in (WAIT, STATION),
        }
        bits = "".join("1" if on.get(i) else "0" for i in range(SENSOR_BITS))
        return _to_base12(int(bits, 2))

    def _action_register(self) -> str:
        target, action = self.action
        return f"{(target << 5) | action:02X}"

    def error_reply(self, command: str) -> str:
        return "er 01"  # device busy, command not accepted

    # --- locations ---------------------------------------------------------------------

    def _location(self, text: str) -> int | str:
        """The slot a location names; 'er 04' (malformed) or 'er 05' (no such location)."""
        parts = text.split()
        if self.model == "C2C_425":
            if len(parts) != 2 or not all(len(p) == 2 and p.isdigit() for p in parts):
                return "er 04"
            rack, site = int(parts[0]), int(parts[1])
            if rack >= len(self.rack_sizes) or site >= self.rack_sizes[rack]:
                return "er 05"
            return sum(self.rack_sizes[:rack]) + site + 1
        if len(parts) != 1 or len(parts[0]) != 3 or not parts[0].isdigit():
            return "er 04"
        slot = int(parts[0])
        return slot if 1 <= slot <= self.chamber.capacity else "er 05"

    def _move(self, what: str, slot: int | None) -> None:
        if self.clock is not None:
            self.clock.advance(PLATE_MOVE_S)
        if self.log is not None and self.clock is not None:
            self.log.record(self.clock.now(), self.name, what, slot=slot)

    # --- telegrams ---------------------------------------------------------------------

    def handle(self, line: str) -> str:
        head, _, params = line.partition(" ")
        kind, _, cmd = head.partition(":")
        params = params.strip()
        if kind == "ch":
            return self._check(cmd)
        if kind == "rs" and cmd == "be":
            self.error_register = "00"
            return "ok 00"
        if kind == "ll":
            return self._low_level(cmd, params)
        if kind == "se" and cmd == "pb":
            return self._shaker_frequency(params)
        if kind == "mv":
            return self._handle_move(cmd, params)
        return "er 02"

    def _check(self, cmd: str) -> str:
        c = self.chamber
        replies = {
            "bs": lambda: f"bs {self._overview()}",
            "be": lambda: f"be {self.error_register}",
            "bw": lambda: "bw 00",
            "ba": lambda: f"ba {self._action_register()}",
            "sw": lambda: f"sw 1{1 if c.transfer_station else 0}{1 if self.handler else 0}",
            "ts": lambda: f"ts {self._sensors()}",
            "it": lambda: f"it +{c.setpoint_C:05.1f} +{c.temperature():05.1f}",
            "ic": lambda: f"ic +{c.co2_setpoint_percent:05.1f} +{c.co2():05.1f}",
            "ih": lambda: f"ih +{c.humidity_percent:05.1f} +{c.humidity_percent:05.1f}",
            "io": lambda: "io +021.0 +020.9",
        }
        reply = replies.get(cmd)
        return reply() if reply else "er 02"

    def _low_level(self, cmd: str, params: str) -> str:
        if cmd == "in":
            self.initialised = True
            self.shovel_extended = False
            self.action = (WAIT, TURNTABLE_INIT)
            return f"ok {self._overview()}"
        if cmd in ("gp", "sp"):
            if params not in ("001", "002"):
                return "er 04"
            opening = params == "002"
            if cmd == "gp":
                self.gate_open = opening
                self.action = (WAIT, OPEN_GATE if opening else CLOSE_GATE)
            else:
                self.shovel_extended = opening
                self.action = (WAIT, EXTEND if opening else RETRACT)
            return f"ok {self._overview()}"
        if cmd in ("vi", "va", "vd"):
            if params:
                return "er 04"
            if cmd == "vi":
                self.shaking = False
            else:
                self.shaking = cmd == "va"
            state = 3 if self.shaking else 0
            return f"ok {state:02X}"
        return "er 02"

    def _shaker_frequency(self, params: str) -> str:
        parts = params.split()
        if (
            len(parts) != 2
            or parts[0] not in ("20", "21")
            or len(parts[1]) != 4
            or not parts[1].isdigit()
            or int(parts[1]) > MAX_SHAKER_PER_MIN
        ):
            return "er 04"
        self.shaker_frequency[int(parts[0][1])] = int(parts[1])
        return "ok 00"

    def _handle_move(self, cmd: str, params: str) -> str:
        c = self.chamber
        if cmd == "sn":
            parts = params.split()
            half = len(parts) // 2
            if len(parts) not in (2, 4):
                return "er 04"
            first = self._location(" ".join(parts[:half]))
            last = self._location(" ".join(parts[half:]))
            for loc in (first, last):
                if isinstance(loc, str):
                    return loc
            assert isinstance(first, int) and isinstance(last, int)
            for s in range(first, last + 1):
                self.barcodes[s] = c.slots.get(s, "")
            return f"ok {self._overview()}"
        needs_location = cmd in ("ts", "st", "sw", "ws", "sh", "hs")
        if cmd not in (*("ts", "st", "sw", "ws", "sh", "hs"), "wt", "tw", "wh", "hw"):
            return "er 02"
        slot: int | None = None
        if needs_location:
            loc = self._location(params)
            if isinstance(loc, str):
                return loc
            slot = loc
        elif params:
            return "er 04"
        refusal = self._refusal(cmd, slot)
        if refusal:
            return refusal
        return self._do_move(cmd, slot)

    def _refusal(self, cmd: str, slot: int | None) -> str | None:
        c = self.chamber
        if cmd in ("ts", "tw") and c.transfer_station is None:
            return "er 31"
        if cmd in ("st", "wt") and c.transfer_station is not None:
            return "er 32"
        if cmd in ("st", "sw", "sh"):
            if self.handler is not None:
                return "er 21"
            if slot not in c.slots:
                return "er 22"
        if cmd in ("ws", "wt", "wh", "hw", "hs") and self.handler is None:
            return "er 22"
        if cmd in ("ts", "tw") and self.handler is not None:
            return "er 21"
        if cmd == "hw" and not self.exposed:
            return "er 11"  # incorrect handler (start) position
        if cmd in ("wh", "ws", "wt") and self.exposed:
            return "er 11"
        return None

    def _do_move(self, cmd: str, slot: int | None) -> str:
        c = self.chamber
        if cmd == "ts":
            assert slot is not None
            if slot in c.slots:  # the handler cannot unload into an occupied slot
                self.error_register = "03"
                self.action = (STACKER, RETRACT)
                self._move("take_in_failed", slot)
                return f"ok {self._overview()}"
            c.store(slot)
            self.action = (STACKER, RETRACT)
            self._move("take_in_plate", slot)
        elif cmd == "st":
            assert slot is not None
            c.retrieve(slot)
            self.action = (STATION, STATION_POS_1)
            self._move("fetch_plate", slot)
        elif cmd in ("sw", "sh"):  # storage -> handler (and out, for sh)
            assert slot is not None
            self.handler = c.slots.pop(slot)
            self.exposed = cmd == "sh"
            self.action = (WAIT, RETRACT)
            self._move("storage_to_exposed" if self.exposed else "storage_to_wait", slot)
        elif cmd in ("ws", "hs"):  # handler -> storage
            assert slot is not None and self.handler is not None
            if slot in c.slots:
                self.error_register = "03"
                return f"ok {self._overview()}"
            c.slots[slot] = self.handler
            self.handler, self.exposed = None, False
            self.action = (STACKER, RETRACT)
            self._move("wait_to_storage", slot)
        elif cmd == "wt":  # handler -> transfer station
            assert self.handler is not None
            plate, self.handler = self.handler, None
            c.slots[0] = plate  # through a slot so the chamber moves its wells to room air
            c.retrieve(0)
            self.action = (STATION, STATION_POS_1)
            self._move("wait_to_transfer", None)
        elif cmd == "tw":  # transfer station -> handler
            c.store(0)
            self.handler = c.slots.pop(0)
            self.action = (WAIT, RETRACT)
            self._move("transfer_to_wait", None)
        elif cmd in ("wh", "hw"):
            self.exposed = cmd == "wh"
            self.action = (WAIT, EXTEND if self.exposed else RETRACT)
            self._move("wait_to_exposed" if self.exposed else "exposed_to_wait", None)
        return f"ok {self._overview()}"
