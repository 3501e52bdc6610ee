"""The lab process: load the lab from its folder, serve the lab link, save after every request.

Run as ``python -m simulators.lab --state-dir DIR`` (``workcell lab`` starts it from a
workcell config; dry-runs, tests and the demo start it for the user). It listens on
127.0.0.1 (a free port, written with its pid to ``lab.json`` in the folder), serves
each connection on its own thread, and carries out one request at a time under one
lock, also shared with the serial devices on their pseudo-terminals. After each
request (and each serial command) it saves its state and the physical log rows of
what happened, before it replies: a reply means the action happened and is on disk
(``simulators/lab/store.py``: the request in a redo log, the whole state in a
snapshot now and then; a restarted lab replays the redo log onto the snapshot).

Started with ``--parent-pid``, the lab ends once that process is gone and no
controller is connected any more; started without it (detached), it runs until
it is told to stop (SIGTERM, SIGINT) or killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.lab.spec import LabSpec
from simulators.lab.store import LAB_DB, SNAPSHOT_EVERY, LabStore, read_log
from simulators.lab.world import Lab, Refusal
from workcell.lifeline import die_with_parent
from workcell.wire import HOST, LinkError, recv_frame, send_frame

SPEC_FILE = "spec.json"
ADDRESS_FILE = "lab.json"
# WORKCELL_LAB_CRASH_AT=N: the lab SIGKILLs itself in the middle of its N-th request (the
# action carried out, not yet saved), as a power cut would take it (kill campaigns)
CRASH_ENV = "WORKCELL_LAB_CRASH_AT"


class LabServer:
    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = folder
        self.spec = LabSpec.model_validate_json((folder / SPEC_FILE).read_text())
        self.store = LabStore(folder / LAB_DB)
        start_text = self.store.meta("start")
        if start_text is None:
            start = self.spec.start or datetime.now(UTC).replace(microsecond=0)
            self.store.set_meta("start", start.isoformat())
        else:
            start = datetime.fromisoformat(start_text)
        self.lock = threading.RLock()
        self.lab = Lab(self.spec, start)
        self.lab.make_serial(self.lock, self.persist, self.settle)
        self.replayable = self.lab.clock.kind == "simulated"  # a wall clock cannot be replayed
        self._since_snapshot = 0  # requests in the redo log
        # the cells are brought up to the clock after every saved request (``settle``):
        # once the reply is sent, while the controller works, or else before the next
        # request. A snapshot is saved before that, so a loaded one is due it too.
        self._settle_due = False
        saved = self.store.state()
        if saved is not None:
            self.lab.load_state(saved)
            self._settle_due = True
            self._replay()
        self.persist()
        self.connections = 0
        self.requests = 0
        self.ot2_servers: dict[str, Any] = {}
        crash = os.environ.get(CRASH_ENV, "")
        self.crash_at = int(crash) if crash.isdigit() else None
        self._port = port
        self._server: socketserver.ThreadingTCPServer | None = None

    def persist(self, op: str | None = None, args_json: str | None = None) -> None:
        """Save what the last request (``op`` with ``args_json``) or command did, and the
        new log rows (called with the lock held): the request into the redo log, or a
        snapshot of the whole state every ``SNAPSHOT_EVERY`` requests and after anything
        that is not a replayable request."""
        rows = self.lab.take_rows()
        if op is not None and args_json is not None and self._since_snapshot < SNAPSHOT_EVERY:
            self.store.save_request(op, args_json, rows)
            self._since_snapshot += 1
        else:
            self.store.save(self.lab.to_state(), rows)
            self._since_snapshot = 0
        self._settle_due = True

    def settle(self) -> None:
        """Bring every culture up to the lab's clock, if a saved request left that due.

        The socket handler calls this after sending a reply, so the cells grow while
        the controller does its own work (on another core) instead of at the start of
        the next request that touches a vessel, which the controller would wait for.
        It is due after every saved request whether or not the next one comes, so the
        model's steps (``CultureModel.sync``) are a function of the requests alone: a
        lab replayed from its redo log steps them the same (``_replay``).
        """
        with self.lock:
            if self._settle_due:
                self.lab.culture.sync()
                self._settle_due = False

    def _replay(self) -> None:
        """Carry out again the requests logged after the snapshot: the state they left.

        Their physical log rows are on disk already (saved with each request)."""
        for op, args in self.store.redo():
            self.settle()
            with contextlib.suppress(Exception):  # a refusal or fault then is one again now
                self.lab.handle(op, args)
            self._settle_due = True
        self.lab.rows = []
        logged = self.store.last_log_seq()
        if self.lab.log_seq != logged:  # not what it did before: say so, never reuse a seq
            print(
                f"lab: replaying the redo log reached log row {self.lab.log_seq}, "
                f"the log holds {logged}",
                file=sys.stderr,
                flush=True,
            )
            self.lab.log_seq = max(self.lab.log_seq, logged)

    def handle(self, header: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        op = str(header.get("op", ""))
        args = header.get("args") or {}
        if op == "truth.log":  # the physical log as the lab's own file has it
            with self.lock:
                rows = read_log(self.store.path, int(args.get("since", 0)))
            return {"ok": True, "result": rows, "t": self.lab.clock.elapsed()}, []
        if op == "lab.stop_if_idle":  # the controller that started the lab is done with it
            idle = self.connections <= 1
            if idle:
                threading.Timer(0.05, self.stop).start()
            return {"ok": True, "result": {"stopping": idle}, "t": self.lab.clock.elapsed()}, []
        with self.lock:
            self.requests += 1
            # the request as it came, for the redo log (before anything can change its args)
            args_json = json.dumps(args, separators=(",", ":")) if self.replayable else None
            try:
                self.settle()  # if not done since the last request (its reply just went out)
                result, blobs = self.lab.handle(op, args)
                reply: dict[str, Any] = {"ok": True, "result": result}
            except Refusal as err:
                reply, blobs = {"ok": False, "error": {"kind": err.kind, "message": str(err)}}, []
            except TypeError as err:
                reply = {"ok": False, "error": {"kind": "bad_request", "message": f"{op}: {err}"}}
                blobs = []
            except Exception as err:  # noqa: BLE001 - a fault in the simulation, reported as one
                traceback.print_exc()
                reply = {"ok": False, "error": {"kind": "fault", "message": f"{op}: {err}"}}
                blobs = []
            if self.crash_at is not None and self.requests == self.crash_at:
                os.kill(os.getpid(), signal.SIGKILL)
            self.persist(op, args_json)
            reply["t"] = self.lab.clock.elapsed()
        return reply, blobs

    def serve(self) -> None:
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server.lock:
                    server.connections += 1
                try:
                    while True:
                        try:
                            header, _ = recv_frame(sock)
                        except (LinkError, OSError, ValueError):
                            return
                        reply, blobs = server.handle(header)
                        try:
                            send_frame(sock, reply, blobs)
                        except OSError:
                            return  # the controller is gone; the action is done and saved
                        try:
                            server.settle()
                        except Exception:  # noqa: BLE001 - the next request reports it
                            traceback.print_exc()
                finally:
                    with server.lock:
                        server.connections -= 1

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        for sim in self.lab.serial.values():
            sim.start()
        from simulators.ot2_api import OT2ApiServer

        for name, robot in self.lab.ot2.items():  # the robot server's API, at the wire
            self.ot2_servers[name] = OT2ApiServer(robot).start()
            self.lab.http_ports[name] = int(self.ot2_servers[name].port)
        self._server = Server((HOST, self._port), Handler)
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        address = {"host": host, "port": port, "pid": os.getpid(), "spec": self.spec.fingerprint()}
        tmp = self.folder / f"{ADDRESS_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(address))
        tmp.replace(self.folder / ADDRESS_FILE)
        print(f"lab {self.spec.name!r} listening on {host}:{port} (pid {os.getpid()})", flush=True)
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        """End cleanly: finish the request in hand, then close."""
        with self.lock:
            for sim in self.lab.serial.values():
                with contextlib.suppress(Exception):
                    sim.stop()
            address = self.folder / ADDRESS_FILE
            with contextlib.suppress(OSError, ValueError):
                if json.loads(address.read_text()).get("pid") == os.getpid():
                    address.unlink()
            with contextlib.suppress(Exception):  # a clean stop leaves a snapshot, no redo log
                self.persist()
            self.store.close()
            os._exit(0)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m simulators.lab", description=__doc__)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--parent-pid", type=int, default=None)
    args = ap.parse_args(argv)
    server = LabServer(args.state_dir, args.port)

    def stop(*_: object) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.parent_pid is not None:
        die_with_parent(
            args.parent_pid, may_exit=lambda: server.connections == 0, on_exit=server.stop
        )
    try:
        server.serve()
    except OSError as err:
        print(f"lab: cannot serve: {err}", file=sys.stderr)
        sys.exit(2)
