"""One run per device at a time, across processes.

Each device of a workcell has a lock file; a step holds an exclusive ``flock`` on
the files of the devices it drives. The kernel releases a lock when its process
dies, so a killed run never leaves a device locked (unlike a lease that has to
expire). Locks are taken in name order, so two runs cannot deadlock.

A run that waits leaves a marker file; a run that releases a lock while someone
waits steps back for a moment before it takes the lock again, so a campaign that
runs step after step does not starve a flow run started from the UI.

The lock folder is ``$WORKCELL_LOCK_DIR`` or the system temp folder, with one
sub-folder per workcell name: every process that drives the same workcell uses
the same files. Workcell and device names become file names only through
``safe_name``: a name that is not a plain word (``../x``, a '/', 300 characters)
maps to a slug and a hash of it, never to a path outside the lock folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

POLL_S = 0.02
STEP_BACK_S = 5 * POLL_S


SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")


def safe_name(name: str) -> str:
    """``name`` if it is a plain file name; otherwise a slug of it and a hash of the whole."""
    if SAFE.fullmatch(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_-")[:40] or "name"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def lock_dir(workcell: str) -> Path:
    base = Path(os.environ.get("WORKCELL_LOCK_DIR", Path(tempfile.gettempdir()) / "msc-workcell"))
    path = base / safe_name(workcell)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def others_waiting(folder: Path) -> bool:
    """Whether another live process waits for these locks (asked after every step: a
    listing of the folder, not a glob, which costs ten times as much)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            name, _, pid = entry.name.partition(".")
            if name == "waiting" and pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                return True
    return False


@contextlib.asynccontextmanager
async def devices_locked(
    workcell: str, devices: list[str], timeout_s: float = 3600.0
) -> AsyncIterator[float]:
    """Hold every device's lock; yields the seconds spent waiting for them."""
    folder = lock_dir(workcell)
    marker = folder / f"waiting.{os.getpid()}"
    handles: list[IO[str]] = []
    start = time.monotonic()
    try:
        for device in sorted(set(devices)):
            fh: IO[str] = open(folder / f"{safe_name(device)}.lock", "a+")  # noqa: SIM115 - held across awaits
            handles.append(fh)
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    marker.touch()
                    if time.monotonic() - start > timeout_s:
                        raise TimeoutError(
                            f"device {device!r} of {workcell!r} stayed busy for {timeout_s:.0f} s"
                        ) from None
                    await asyncio.sleep(POLL_S)
        marker.unlink(missing_ok=True)
        yield time.monotonic() - start
    finally:
        marker.unlink(missing_ok=True)
        for fh in handles:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
    if others_waiting(folder):
        await asyncio.sleep(STEP_BACK_S)
