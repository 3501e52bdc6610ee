"""Child processes end when their parent dies: no orphans after a SIGKILL.

A controller killed with SIGKILL runs no clean-up code, so anything it started (the
image workers of ``workcell/compute.py``, the simulated lab, a Prefect server)
must notice on its own. Two mechanisms, both used:

* ``die_with_parent()``, called at the start of a Python child: a daemon thread
  watches the parent's pid and ends the process (``os._exit``) once the parent is
  gone (the child is re-parented, so ``os.getppid()`` changes). Portable, and
  independent of which of the parent's threads started the child.
* ``lifeline_preexec()``, passed as ``preexec_fn`` to ``subprocess.Popen`` for a
  child that is not our Python code: on Linux it asks the kernel
  (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill the child when the thread that
  forked it exits, which survives ``exec``. Use it only from a thread that lives as
  long as the process (the main thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
POLL_S = 0.25


def parent_alive(parent_pid: int) -> bool:
    if os.getppid() != parent_pid:
        return False
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(
    parent_pid: int | None = None,
    may_exit: Callable[[], bool] | None = None,
    on_exit: Callable[[], None] | None = None,
) -> threading.Thread:
    """Watch the parent; once it is gone (and ``may_exit()`` agrees), run ``on_exit`` and exit.

    ``may_exit`` lets a server that others still use (a lab with connected
    controllers) outlive its parent until they are done.
    """
    parent = os.getppid() if parent_pid is None else parent_pid

    def watch() -> None:
        while True:
            time.sleep(POLL_S)
            if parent_alive(parent):
                continue
            if may_exit is not None and not may_exit():
                continue
            if on_exit is not None:
                with contextlib.suppress(Exception):
                    on_exit()
            os._exit(0)

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread


def lifeline_preexec() -> None:
    """``preexec_fn``: the kernel kills this child when its parent (thread) dies; Linux only."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def worker_initializer(parent_pid: int) -> None:
    """``ProcessPoolExecutor(initializer=...)``: a pool worker exits when its parent dies."""
    die_with_parent(parent_pid)


def launch(argv: list[str]) -> None:
    """``python -m workcell.lifeline PARENT_PID MODULE ARGS...``: run ``python -m MODULE ARGS``
    in this process, which ends when PARENT_PID does (a server started for a parent that
    may be SIGKILLed, such as Prefect's temporary API server)."""
    import runpy

    parent, module, *rest = argv
    die_with_parent(int(parent))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    launch(sys.argv[1:])
