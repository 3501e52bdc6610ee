"""A PostgreSQL cluster for the facility's Prefect server, on 127.0.0.1.

Uses Debian's ``postgresql`` package (``apt-get install postgresql``): its
programs live in ``/usr/lib/postgresql/<version>/bin``, not on ``PATH``. The
cluster is made with ``initdb`` in a folder of its own and run in the foreground
as a child of the caller (``postgres -D ...``), so it ends with the caller.
PostgreSQL refuses to run as root: under root (as in CI) the cluster's folder
belongs to the ``postgres`` user the package creates and the server runs as it.

It listens on 127.0.0.1 only, with ``trust`` authentication for local TCP: fit
for tests, benchmarks and a workcell computer that nobody else logs into. A site
with the database on another host sets a password (``--auth``) and TLS and gives
Prefect ``PREFECT_API_DATABASE_CONNECTION_URL`` with it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.facility.children import die_with_parent
from workcell.ports import free_port

DB = "prefect"
DB_USER = "prefect"
SERVICE_USER = "postgres"


class PostgresError(RuntimeError):
    """PostgreSQL is missing or did not start (the message says what to do)."""


def pg_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else the newest in Debian's version folders."""
    found = shutil.which(name)
    if found:
        return found
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / name).is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PostgresError(
            f"PostgreSQL's {name} not found: install Debian's package "
            "(apt-get install postgresql) or put its bin folder on PATH"
        )
    return str(versions[-1] / name)


def _as_service_user() -> dict[str, Any]:
    """Popen arguments that run a program as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresError(
            "running as root, and PostgreSQL refuses root: the 'postgres' user that "
            "Debian's postgresql package creates is missing"
        ) from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


@dataclass
class PostgresCluster:
    """One cluster: ``start()`` makes it if new and runs it; ``stop()`` ends it."""

    folder: Path | None = None  # None: a throw-away folder, removed by stop()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _throwaway: bool = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Prefect (``PREFECT_API_DATABASE_CONNECTION_URL``)."""
        return f"postgresql+asyncpg://{DB_USER}@127.0.0.1:{self.port}/{DB}"

    @property
    def data(self) -> Path:
        assert self.folder is not None
        return self.folder / "data"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=300, **_as_service_user()
        )
        if done.returncode != 0:
            raise PostgresError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-800:]}")

    def _own(self, path: Path) -> None:
        user = _as_service_user()
        if user:
            os.chown(path, user["user"], user["group"])

    def start(self, timeout_s: float = 120) -> PostgresCluster:
        if self.folder is None:
            # system temp (world-traversable): the postgres user must reach the folder
            self.folder = Path(tempfile.mkdtemp(prefix="msc-postgres-"))
            self._throwaway = True
        self.folder.mkdir(parents=True, exist_ok=True)
        self._own(self.folder)
        if not (self.data / "PG_VERSION").is_file():
            self._run(
                pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                DB_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
        self.port = self.port or free_port()
        log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                pg_bin("postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off" if self._throwaway else "fsync=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads started yet that matter
            **_as_service_user(),
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            ready = subprocess.run(
                [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / "postgres.log").read_text(errors="replace")[-1500:]
                self.stop()
                raise PostgresError(f"PostgreSQL did not start on port {self.port}:\n{tail}")
            time.sleep(0.2)
        self._create_db()
        return self

    def _create_db(self) -> None:
        exists = subprocess.run(
            [
                pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                DB_USER,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{DB}'",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if exists.stdout.strip() != "1":
            self._run(
                pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, DB
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._throwaway and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
