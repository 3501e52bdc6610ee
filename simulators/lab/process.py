"""Start, find and stop lab processes.

A lab lives in a folder (its spec, its ``lab.db``, its address in ``lab.json``, its
output in ``lab.log``). ``ensure_lab`` finds the lab serving a folder or starts one,
under a file lock so two controllers opening one run folder at once start one lab.
A lab started for a controller (``parent_pid``) ends once that controller is gone
and nobody else is connected; a detached one (``parent_pid=None``) runs until it is
stopped, which is what the kill campaigns need: the lab outlives the controller.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from simulators.lab.server import ADDRESS_FILE, SPEC_FILE
from simulators.lab.spec import LabSpec
from simulators.lab.store import LAB_DB

LOG_FILE = "lab.log"
START_TIMEOUT_S = 60.0


class LabStartError(RuntimeError):
    """The lab could not be started or reached; the message says why."""


@dataclass(frozen=True)
class LabAddress:
    host: str
    port: int
    pid: int
    spec: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (dead, not yet reaped by its parent) is not a lab
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def read_address(folder: Path) -> LabAddress | None:
    try:
        data = json.loads((folder / ADDRESS_FILE).read_text())
        return LabAddress(str(data["host"]), int(data["port"]), int(data["pid"]), str(data["spec"]))
    except (OSError, ValueError, KeyError):
        return None


def running(folder: Path) -> LabAddress | None:
    """The address of the lab serving ``folder``, if one is alive and accepts connections."""
    addr = read_address(folder)
    if addr is None or not _alive(addr.pid):
        return None
    try:
        with socket.create_connection((addr.host, addr.port), timeout=2):
            pass
    except OSError:
        return None
    return addr


@dataclass
class LabProcess:
    """A lab this process started."""

    proc: subprocess.Popen[bytes]
    folder: Path
    address: LabAddress

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the lab dies mid-whatever, as a power cut would take it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def write_spec(folder: Path, spec: LabSpec) -> None:
    """Give a lab folder its spec; a folder that already holds another lab is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SPEC_FILE
    if path.exists():
        old = LabSpec.model_validate_json(path.read_text())
        if old.fingerprint() == spec.fingerprint():
            return
        if (folder / LAB_DB).exists():
            raise LabStartError(
                f"the lab in {folder} simulates another workcell ({old.name!r}, "
                f"{old.fingerprint()}); this config describes {spec.name!r} "
                f"({spec.fingerprint()}): use another run folder"
            )
    path.write_text(spec.model_dump_json(indent=1))


def start_lab(folder: Path, spec: LabSpec, parent_pid: int | None, port: int = 0) -> LabProcess:
    """Start a lab process on ``folder`` and wait until it listens."""
    write_spec(folder, spec)
    with contextlib.suppress(OSError):
        (folder / ADDRESS_FILE).unlink()
    cmd = [sys.executable, "-m", "simulators.lab", "--state-dir", str(folder), "--port", str(port)]
    if parent_pid is not None:
        cmd += ["--parent-pid", str(parent_pid)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    with open(folder / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # a Ctrl-C to the controller does not cut a lab request; the lab's own
            # watchdog (--parent-pid) ends it once its controller is gone and no other
            # controller is connected (not the kernel's PDEATHSIG: a second controller
            # may still be using it)
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        addr = read_address(folder)
        if addr is not None and addr.pid == proc.pid:
            return LabProcess(proc, folder, addr)
        if proc.poll() is not None:
            tail = (folder / LOG_FILE).read_text(errors="replace")[-2000:]
            raise LabStartError(f"the lab in {folder} did not start:\n{tail}")
        time.sleep(0.02)
    proc.kill()
    raise LabStartError(f"the lab in {folder} did not listen within {START_TIMEOUT_S:.0f} s")


def ensure_lab(
    folder: Path, spec: LabSpec, parent_pid: int | None = None
) -> tuple[LabAddress, LabProcess | None]:
    """The lab serving ``folder`` (started if none is); the process is ours if we started it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lab.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            addr = running(folder)
            if addr is not None:
                if addr.spec != spec.fingerprint():
                    write_spec(folder, spec)  # raises: another workcell's lab
                return addr, None
            proc = start_lab(folder, spec, parent_pid)
            return proc.address, proc
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
