"""The serial driver of the cell counter (protocol: docs/instruments/cell-counter.md).

pyserial on a port (``/dev/ttyUSB0`` on hardware, a pseudo-terminal in a dry-run),
one command line at a time. A bad line (no answer within the timeout, a reply whose
checksum fails, a dropped port) is retried at most ``attempts`` times; before a
command that changes the instrument's state is repeated, ``STATUS?`` tells whether
it already happened, so nothing is done twice. Every failure ends as a
``DeviceError`` naming the counter and the command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import serial
from pydantic import BaseModel

from devices.cell_counter import CellCounterBackend, CountResult
from workcell.errors import DeviceError

BUSY_WAIT_S = 0.2


class _LineFault(Exception):
    """No valid reply: nothing, a garbled line, or a broken port."""


class _Refused(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"ERR {code} {text}")
        self.code = code


class CounterStatus(BaseModel):
    state: str
    sample: str | None
    seq: int | None


def _checksum(body: str) -> str:
    value = 0
    for byte in body.encode():
        value ^= byte
    return f"{value:02X}"


def parse_reply(raw: bytes) -> str:
    """The body of a reply line, if its checksum holds; raises _LineFault otherwise."""
    try:
        line = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise _LineFault(f"garbled reply {raw!r}") from None
    body, star, check = line.rpartition("*")
    if not star or _checksum(body) != check:
        raise _LineFault(f"garbled reply {line!r}" if line else "no answer")
    if body.startswith("ERR "):
        _, code, *text = body.split()
        raise _Refused(code, " ".join(text))
    return body


def parse_result(body: str) -> CountResult:
    words = body.split()
    if len(words) != 7 or words[0] != "RESULT":
        raise _LineFault(f"malformed result {body!r}")
    fields = dict(w.split("=", 1) for w in words[3:])
    return CountResult(
        sample=words[2],
        total_per_mL=float(fields["TOTAL"]),
        viable_per_mL=float(fields["VIABLE"]),
        viability_percent=float(fields["VIAB"]),
        mean_diameter_um=float(fields["DIAM"]),
    )


class SerialCellCounterBackend(CellCounterBackend):
    def __init__(
        self,
        device: str,
        port: str,
        attempts: int = 3,
        timeout_s: float = 1.0,
        baudrate: int = 9600,
        on_retry: Callable[[str, str], None] | None = None,
    ) -> None:
        self.device = device
        self.on_retry = on_retry  # e.g. into the batch record: every fault seen is recorded
        self.port = port
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.baudrate = baudrate
        self.retries = 0
        self.confirmed_by_status = 0
        self._ser: serial.Serial | None = None

    # --- the line ---------------------------------------------------------------------

    async def setup(self) -> None:
        await self._open()
        await self._query("ID?")

    async def stop(self) -> None:
        if self._ser is not None:
            ser, self._ser = self._ser, None
            await asyncio.to_thread(ser.close)

    async def _open(self) -> None:
        def open_port() -> serial.Serial:
            return serial.Serial(
                self.port, self.baudrate, timeout=self.timeout_s, write_timeout=self.timeout_s
            )

        try:
            self._ser = await asyncio.to_thread(open_port)
        except (serial.SerialException, OSError) as err:
            raise DeviceError(self.device, "open", f"cannot open {self.port}: {err}") from err

    async def _exchange(self, command: str) -> str:
        if self._ser is None:
            try:
                await self._open()
            except DeviceError as err:
                raise _LineFault(str(err)) from err
        ser = self._ser
        assert ser is not None

        def talk() -> bytes:
            ser.reset_input_buffer()
            ser.write(command.encode("ascii") + b"\r\n")
            return bytes(ser.readline())

        try:
            raw = await asyncio.to_thread(talk)
        except (serial.SerialException, OSError) as err:
            await self.stop()
            raise _LineFault(f"port failed: {err}") from err
        return parse_reply(raw)

    async def _query(self, command: str) -> str:
        """A command that changes nothing: repeat it until it gets a valid reply."""
        return await self._send(command, done=None)

    async def _send(self, command: str, done: Callable[[CounterStatus], bool] | None) -> str:
        """Send until a valid reply; before repeating an action, ask whether it happened."""
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                self.retries += 1
                if self.on_retry is not None:
                    self.on_retry(command, last)
                if done is not None:
                    try:
                        status = await self.status()
                    except DeviceError as err:
                        raise DeviceError(
                            self.device,
                            command,
                            f"{last}; could not ask whether it happened: {err.reason}",
                        ) from err
                    if done(status):
                        self.confirmed_by_status += 1
                        return ""
            try:
                return await self._exchange(command)
            except _LineFault as err:
                last = str(err)
            except _Refused as err:
                if err.code != "01":
                    raise DeviceError(self.device, command, f"refused: {err}") from None
                last = "busy"
                await asyncio.sleep(BUSY_WAIT_S)
        raise DeviceError(
            self.device, command, f"no valid reply after {self.attempts} attempts ({last})"
        )

    @staticmethod
    def _parse_status(body: str) -> CounterStatus:
        words = body.split()
        if len(words) != 4 or words[0] != "STATUS":
            raise _LineFault(f"malformed status {body!r}")
        return CounterStatus(
            state=words[1],
            sample=None if words[2] == "-" else words[2],
            seq=None if words[3] == "-" else int(words[3]),
        )

    async def status(self) -> CounterStatus:
        return self._parse_status(await self._query("STATUS?"))

    # --- the count ---------------------------------------------------------------------

    async def count(self, sample: str, volume_uL: float) -> CountResult:
        if (await self.status()).state != "IDLE":  # a cassette left by an aborted run
            await self._send("EJECT", done=lambda s: s.state == "IDLE")
        await self._send(
            f"LOAD {sample} {volume_uL:g}",
            done=lambda s: s.state in ("LOADED", "COUNTED") and s.sample == sample,
        )
        await self._send("COUNT", done=lambda s: s.state == "COUNTED")
        try:
            result = parse_result(await self._query("RESULT?"))
        except _LineFault as err:
            raise DeviceError(self.device, "RESULT?", str(err)) from None
        await self._send("EJECT", done=lambda s: s.state == "IDLE")
        return result
