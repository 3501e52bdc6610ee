"""A device simulator that answers on a pseudo-terminal, with faults on demand.

The simulator owns the master side of an ``os.openpty()`` pair and serves it from
a thread; the driver under test opens the slave side by its path (``port``) with
pyserial, exactly as it opens ``/dev/ttyUSB0`` on hardware. So the real driver code
runs unchanged against the simulator.

Faults are injected at this boundary, per command, by a :class:`FaultInjector`:

* ``no_answer``: the command is carried out but its reply is lost;
* ``garbled``: the command is carried out and its reply is corrupted on the line;
* ``error``: the device refuses the command with an error code, doing nothing;
* ``disconnect``: the line goes dead (the cable is pulled), for good.

"Carried out, reply lost" is the hard case for a driver: it must check the
device's state before it repeats an action, or the action is done twice.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Fault(StrEnum):
    NO_ANSWER = "no_answer"
    GARBLED = "garbled"
    ERROR = "error"
    DISCONNECT = "disconnect"


class FaultRates(BaseModel):
    """Probability of each fault per command (config or test fixture)."""

    model_config = ConfigDict(extra="forbid")

    no_answer: float = Field(default=0.0, ge=0, le=1)
    garbled: float = Field(default=0.0, ge=0, le=1)
    error: float = Field(default=0.0, ge=0, le=1)
    disconnect: float = Field(default=0.0, ge=0, le=1)


class FaultInjector:
    """Decides the fault, if any, for each command: queued ones first, then at random."""

    def __init__(self, rates: FaultRates | None = None, seed: int = 0) -> None:
        self.rates = rates or FaultRates()
        self.rng = np.random.default_rng(seed)
        self.queued: deque[Fault | None] = deque()
        self.injected: Counter[Fault] = Counter()

    def queue(self, *faults: Fault | None) -> None:
        """Force the next commands' faults (None: that command goes through cleanly)."""
        self.queued.extend(faults)

    def next(self, command: str) -> Fault | None:
        if self.queued:
            fault = self.queued.popleft()
        else:
            fault = None
            draw = self.rng.random()
            for f in Fault:
                p = getattr(self.rates, f.value)
                if draw < p:
                    fault = f
                    break
                draw -= p
        if fault is not None:
            self.injected[fault] += 1
        return fault


def garble(reply: bytes, rng: np.random.Generator) -> bytes:
    """Corrupt a reply as line noise does: flipped bits in a few bytes."""
    data = bytearray(reply.rstrip(b"\r\n") or b"?")
    for i in rng.choice(len(data), size=max(1, len(data) // 4), replace=False):
        data[i] ^= 1 << int(rng.integers(0, 7))
    return bytes(data) + reply[len(reply.rstrip(b"\r\n")) :]


class PtySimulator(ABC):
    """Serve a line-based serial protocol on a pseudo-terminal from a thread."""

    reply_terminator = b"\r\n"

    def __init__(
        self,
        name: str,
        faults: FaultInjector | None = None,
        lock: Any = None,
        after_command: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.faults = faults or FaultInjector()
        self.commands: list[str] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # a lab shares one lock among all its devices, and saves its state after each
        # command (``after_command``), so a line command is as durable as any other action;
        # ``before_command`` lets it bring its cells up to its clock first (the lab's settle)
        self._lock = lock if lock is not None else threading.Lock()
        self.after_command = after_command
        self.before_command: Callable[[], None] | None = None
        self.port = ""

    @property
    def running(self) -> bool:
        return self._master is not None

    @abstractmethod
    def handle(self, line: str) -> str:
        """Carry out one command line and return its reply (without terminator)."""

    @abstractmethod
    def error_reply(self, command: str) -> str:
        """The reply with which the device refuses a command (for injected errors)."""

    def start(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-pty", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close()

    def _close(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def __enter__(self) -> PtySimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set() and self._master is not None:
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 1024)
            except OSError:
                return
            buffer += chunk
            while True:
                cut = min(
                    (i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1
                )
                if cut < 0:
                    break
                raw, buffer = buffer[:cut], buffer[cut + 1 :]
                line = raw.decode("utf-8", errors="replace").strip()
                if line and not self._answer(line):
                    return

    def _answer(self, line: str) -> bool:
        """Handle one line; False once the line went dead."""
        with self._lock:
            if self.before_command is not None:
                self.before_command()
            self.commands.append(line)
            fault = self.faults.next(line)
            if fault is Fault.DISCONNECT:
                self._close()
                return False
            reply = self.error_reply(line) if fault is Fault.ERROR else self.handle(line)
            if self.after_command is not None:
                self.after_command()
        data = reply.encode() + self.reply_terminator
        if fault is Fault.NO_ANSWER:
            return True
        if fault is Fault.GARBLED:
            data = garble(data, self.faults.rng)
        try:
            assert self._master is not None
            os.write(self._master, data)
        except OSError:
            return False
        return True
