"""The lab link's wire: length-prefixed JSON frames, with raw byte blobs, over TCP on 127.0.0.1.

The simulated lab (``simulators/lab``) is its own process; the controller's device
back ends (``devices/lab*.py``) talk to it through this wire, as a driver talks to
an instrument through its cable. One frame is a 4-byte big-endian length, that many
bytes of JSON (the header), then the blobs the header's ``blobs`` list announces
(sizes in bytes), raw: an image is 128 KiB of pixels, not a JSON array.

A request is ``{"op": name, "args": {...}}``; a reply is ``{"ok": true, "t": lab
seconds, "result": ...}`` or ``{"ok": false, "t": ..., "error": {"kind", "message"}}``.
Every reply carries the lab's clock (``t``), so the controller knows the lab's time
after every action without asking for it.

``LinkClient`` is deliberately synchronous and holds one connection under a lock:
the controller drives one device at a time, a request takes well under a
millisecond, and a blocking call is the same from sync and async code (the
operator's ``load`` is sync). Lost connections are never retried in flight: an
action whose reply was lost has an unknown outcome, which is the journal's and the
reconciliation's business, not the wire's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I")
MAX_HEADER = 64 * 1024 * 1024
HOST = "127.0.0.1"


class LinkError(Exception):
    """The connection to the lab failed: not connected, closed, or reset mid-request."""


class LinkRefused(Exception):
    """The lab carried out the request's checks and refused it (a device refusal or fault)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise LinkError("the connection was closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send_frame(
    sock: socket.socket, header: dict[str, Any], blobs: list[bytes] | None = None
) -> None:
    blobs = blobs or []
    if blobs:
        header = {**header, "blobs": [len(b) for b in blobs]}
    body = json.dumps(header, separators=(",", ":"), default=str).encode()
    sock.sendall(b"".join([HEADER.pack(len(body)), body, *blobs]))


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], list[bytes]]:
    (n,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if n > MAX_HEADER:
        raise LinkError(f"frame header of {n} bytes is too large")
    header = json.loads(_recv_exact(sock, n))
    blobs = [_recv_exact(sock, size) for size in header.pop("blobs", [])]
    return header, blobs


class LinkClient:
    """One connection to the lab; ``request`` sends an op and returns its result and blobs."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float = 120.0,
        on_time: Callable[[float], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.on_time = on_time
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.requests = 0

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as err:
            raise LinkError(f"cannot connect to the lab at {self.host}:{self.port}: {err}") from err
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect(self) -> None:
        with self._lock:
            if self._sock is None:
                self._sock = self._connect()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.close()
                finally:
                    self._sock = None

    def request(self, op: str, **args: Any) -> tuple[Any, list[bytes]]:
        """Send one request and wait for its reply; raises LinkError or LinkRefused."""
        with self._lock:
            if self._sock is None:
                self._sock = self._connect()
            sock = self._sock
            try:
                send_frame(sock, {"op": op, "args": args})
                reply, blobs = recv_frame(sock)
            except (OSError, LinkError, ValueError) as err:
                self._sock = None
                with contextlib.suppress(OSError):
                    sock.close()
                raise LinkError(f"{op}: the lab stopped answering ({err})") from err
            self.requests += 1
        if self.on_time is not None and "t" in reply:
            self.on_time(float(reply["t"]))
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise LinkRefused(str(error.get("kind", "fault")), str(error.get("message", reply)))
        return reply.get("result"), blobs

    def call(self, op: str, **args: Any) -> Any:
        """``request`` without blobs."""
        return self.request(op, **args)[0]
