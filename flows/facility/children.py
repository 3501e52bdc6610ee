"""Child processes that end when their parent ends, even if the parent is SIGKILLed.

On Linux a child asks the kernel for a signal when its parent dies
(``PR_SET_PDEATHSIG``). Set in the child between fork and exec (``preexec_fn``),
after any change of user, so it survives into the program started.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child process: be sent ``sig`` when the parent dies (Linux; else nothing)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    parent = os.getppid()
    libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request landed
        os.kill(os.getpid(), sig)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
