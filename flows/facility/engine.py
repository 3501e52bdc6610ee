"""A flow run's process under a workcell's worker: Prefect's engine, bound to the worker.

The work pool starts every flow run with ``python -m flows.facility.engine``:
the process first asks the kernel to end it when its worker dies
(``PR_SET_PDEATHSIG``), then runs ``prefect.engine`` as Prefect would. A worker
killed with SIGKILL (or a machine that goes down) thus takes its runs with it,
as a crash does, instead of leaving them driving instruments unsupervised; the
restarted worker finds them dead and brings them back (``flows.facility.worker``).
"""

from __future__ import annotations

import runpy
import signal

from flows.facility.children import die_with_parent

if __name__ == "__main__":
    die_with_parent(signal.SIGKILL)
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
