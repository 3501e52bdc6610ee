"""CPU-heavy image work off the event loop, on every core of the machine.

Rendering a simulated brightfield field and measuring confluence on an image are
pure functions of their inputs and take ~5-15 ms each; a campaign images
thousands of fields. They run in a process pool (one worker per core, started
with ``spawn`` so no event-loop or Prefect thread state is forked), so a dry-run
uses the second core of a 2-core CI machine. ``WORKCELL_CPU_WORKERS=0`` (or a
one-core machine) runs them inline, for debugging and profiling. A worker ends
when the process that started it dies, even by SIGKILL (``workcell/lifeline.py``).

Results do not depend on which worker ran them: every random draw is seeded by
the caller, in a fixed order, before the work is handed out.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from workcell.lifeline import worker_initializer

T = TypeVar("T")
_pool: ProcessPoolExecutor | None = None
_pool_pid: int | None = None


def workers() -> int:
    configured = os.environ.get("WORKCELL_CPU_WORKERS")
    if configured is not None:
        return max(0, int(configured))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pool() -> ProcessPoolExecutor | None:
    global _pool, _pool_pid
    n = workers()
    if n <= 1:
        return None
    if _pool is None or _pool_pid != os.getpid():
        _pool = _start(n)
        _pool_pid = os.getpid()
    return _pool


def _ready() -> int:
    return os.getpid()


def _start(n: int) -> ProcessPoolExecutor:
    """Start all ``n`` workers now, without them re-running the caller's script.

    ``spawn`` workers normally import the parent's ``__main__`` file again, which
    breaks a user's protocol script that lacks an ``if __name__ == "__main__"``
    guard. The workers only need this package, so the main module's file and
    spec are hidden while they start.
    """
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        executor = ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_initializer,  # a worker ends when this process dies
            initargs=(os.getpid(),),
        )
        for f in [executor.submit(_ready) for _ in range(n)]:
            f.result()
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)
    return executor


async def run_cpu(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a worker process (or inline without a pool)."""
    p = pool()
    if p is None:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(p, fn, *args)


def map_cpu(fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T]:
    """``[fn(*args) for args in calls]`` on the workers, in order (blocking; for the lab)."""
    p = pool()
    if p is None or len(calls) < 2:
        return [fn(*args) for args in calls]
    return list(p.map(fn, *zip(*calls, strict=True)))


def worker_pids() -> list[int]:
    """The pool's worker processes (benchmarks add their memory to the total)."""
    if _pool is None:
        return []
    return [p.pid for p in getattr(_pool, "_processes", {}).values() if p.pid]
