"""A Thermo/Heraeus Cytomat answering its serial protocol on a pseudo-terminal.

PyLabRobot's ``CytomatBackend``, unchanged, drives it: it sends
``<type>:<command> <params>\\r\\n`` telegrams and reads the reply. This simulator
answers the subset a culture workcell uses, the way PyLabRobot parses it:

======================  =====================================================
telegram                reply
======================  =====================================================
``ll:in``               ``ok 00`` (initialise; sets the ready bit)
``ll:gp 002`` / ``001`` ``ok 00`` (automatic gate open / closed)
``ch:bs``               ``bs HH``: overview register (transfer station
                        occupied, device door open, gate open, handler
                        occupied, error, warning, ready, busy; MSB first)
``ch:be`` / ``ch:bw``   ``be HH`` / ``bw HH``: error / warning register
``rs:be``               ``ok 00`` (reset error register)
``ch:ba``               ``ba HH``: action register (handler idle at wait)
``ch:sw``               ``sw PFQ``: swap station position and load status
``ch:ts``               ``ts N``: sensor register
``ch:it`` ``ch:ic``     ``it +037.0 +036.9``: nominal and actual temperature,
``ch:ih`` ``ch:io``     CO2, humidity, O2
``mv:ts NNN``           transfer station -> slot NNN, ``ok HH``
``mv:st NNN``           slot NNN -> transfer station, ``ok HH``
``mv:sn AAA BBB``       scan barcodes of slots AAA-BBB, ``ok HH``
anything else           ``er 02`` (command unknown)
======================  =====================================================

Refusals use the Cytomat error codes PyLabRobot maps to exceptions:
``er 05`` unknown location, ``er 22`` handler empty (no plate in that slot),
``er 31`` transfer station empty, ``er 32`` transfer station occupied. An action
completes at once in wall time; the plate move takes simulated time on the clock.
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


class CytomatSimulator(PtySimulator):
    def __init__(
        self,
        name: str,
        chamber: Chamber,
        clock: SimClock | None = None,
        log: ActionLog | None = None,
        faults: FaultInjector | None = None,
    ) -> None:
        super().__init__(name, faults)
        self.chamber = chamber
        self.clock = clock
        self.log = log
        self.initialised = False
        self.gate_open = False
        self.error_register = "00"
        self.barcodes: dict[int, str] = {}

    def _overview(self) -> str:
        c = self.chamber
        bits = [
            c.transfer_station is not None,
            c.door_open,
            self.gate_open,
            False,  # handler occupied: actions complete at once
            self.error_register != "00",
            False,
            self.initialised,
            False,  # busy
        ]
        return f"{int(''.join('1' if b else '0' for b in bits), 2):02X}"

    def _sensors(self) -> str:
        c = self.chamber
        on = {2, 6, 8, 12}  # shovel retracted, gate closed, station pos 1, handler at stacker
        if c.transfer_station is not None:
            on.add(7)
        bits = "".join("1" if i in on else "0" for i in range(SENSOR_BITS))
        return _to_base12(int(bits, 2))

    def error_reply(self, command: str) -> str:
        return "er 01"  # device busy, command not accepted

    def _slot(self, text: str) -> int | None:
        if len(text) != 3 or not text.isdigit():
            return None
        slot = int(text)
        return slot if 1 <= slot <= self.chamber.capacity else None

    def _move(self, what: str, slot: int) -> None:
        if self.clock is not None:
            self.clock.advance(PLATE_MOVE_S)
        if self.log is not None and self.clock is not None:
            self.log.record(self.clock.now(), self.name, what, slot=slot)

    def handle(self, line: str) -> str:
        head, _, params = line.partition(" ")
        kind, _, cmd = head.partition(":")
        params = params.strip()
        c = self.chamber
        if kind == "ch":
            if cmd == "bs":
                return f"bs {self._overview()}"
            if cmd == "be":
                return f"be {self.error_register}"
            if cmd == "bw":
                return "bw 00"
            if cmd == "ba":
                return "ba 4A"
            if cmd == "sw":
                return f"sw 1{1 if c.transfer_station else 0}0"
            if cmd == "ts":
                return f"ts {self._sensors()}"
            if cmd == "it":
                return f"it +{c.setpoint_C:05.1f} +{c.temperature():05.1f}"
            if cmd == "ic":
                return f"ic +{c.co2_setpoint_percent:05.1f} +{c.co2():05.1f}"
            if cmd == "ih":
                return f"ih +{c.humidity_percent:05.1f} +{c.humidity_percent:05.1f}"
            if cmd == "io":
                return "io +021.0 +020.9"
        if kind == "rs" and cmd == "be":
            self.error_register = "00"
            return "ok 00"
        if kind == "ll":
            if cmd == "in":
                self.initialised = True
                return "ok 00"
            if cmd == "gp" and params in ("001", "002"):
                self.gate_open = params == "002"
                return "ok 00"
        if kind == "mv":
            return self._handle_move(cmd, params)
        return "er 02"

    def _handle_move(self, cmd: str, params: str) -> str:
        c = self.chamber
        if cmd == "sn":
            parts = params.split()
            if len(parts) != 2 or any(self._slot(p) is None for p in parts):
                return "er 05"
            for s in range(int(parts[0]), int(parts[1]) + 1):
                self.barcodes[s] = c.slots.get(s, "")
            return f"ok {self._overview()}"
        slot = self._slot(params)
        if cmd not in ("ts", "st"):
            return "er 02"
        if slot is None:
            return "er 05"
        if cmd == "ts":
            if c.transfer_station is None:
                return "er 31"
            if slot in c.slots:
                return "er 21"
            c.store(slot)
            self._move("take_in_plate", slot)
        else:
            if slot not in c.slots:
                return "er 22"
            if c.transfer_station is not None:
                return "er 32"
            c.retrieve(slot)
            self._move("fetch_plate", slot)
        return f"ok {self._overview()}"
