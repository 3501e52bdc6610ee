"""A whole facility on this computer, for tests, benchmarks and trying it out.

``local_facility`` runs a throw-away PostgreSQL cluster and a Prefect server on it;
``write_workcell_config`` writes a simulated workcell's config under a name;
``start_worker`` runs ``workcell worker`` for it as a child process. Everything
started here ends when the caller leaves the ``with`` block, or dies.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows.facility.children import die_with_parent
from flows.facility.postgres import PostgresCluster
from flows.facility.server import PrefectServer
from workcell.assembly.config import DEFAULT_CONFIG

WORKCELL = str(Path(sys.executable).parent / "workcell")
# Server settings for simulated workcells, whose steps take a second, not minutes: a
# step waiting for a shared device asks again within a second (Prefect caps its
# advice at 30 s), and a dead holder's expired lease is taken back within 2 s of
# expiring (Prefect looks every 15 s).
QUICK = {
    "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
}


@dataclass
class Facility:
    pg: PostgresCluster
    server: PrefectServer


@contextlib.contextmanager
def local_facility(home: Path, settings: dict[str, str] | None = None) -> Iterator[Facility]:
    """PostgreSQL (throw-away) and a Prefect server on it."""
    server = PrefectServer(
        "", home / "prefect-home", settings=QUICK if settings is None else settings
    )
    with PostgresCluster() as pg:
        server.db_url = pg.url
        with server:
            yield Facility(pg, server)


def write_workcell_config(
    folder: Path,
    name: str,
    shared: dict[str, str] | None = None,
    start: str | None = None,
    fields_per_well: int = 1,
) -> Path:
    """The embedded simulated workcell under another name, with shared devices."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["name"] = name
    data["devices"]["imager"]["fields_per_well"] = fields_per_well
    if start:
        data["clock"]["start"] = start
    if shared:
        data["shared_devices"] = shared
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def worker_env(server: PrefectServer, lock_dir: Path, poll_s: float = 1.0) -> dict[str, str]:
    return (
        dict(os.environ)
        | server.env()
        | {
            "PREFECT_WORKER_QUERY_SECONDS": str(poll_s),
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "WORKCELL_LOCK_DIR": str(lock_dir),
            "WORKCELL_CPU_WORKERS": os.environ.get("WORKCELL_CPU_WORKERS", "0"),  # in-process
        }
    )


def start_worker(
    config: Path, run_dir: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``workcell worker`` as a child (its flow runs are its children in turn)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [WORKCELL, "worker", "--config", str(config), "--run-dir", str(run_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
