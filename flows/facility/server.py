"""The facility's Prefect server: ``prefect server start`` on PostgreSQL, on 127.0.0.1.

One server process serves every workcell's workers and the UI. Its database is
PostgreSQL (``PREFECT_API_DATABASE_CONNECTION_URL``); several server replicas
would also need Redis, which one process does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from flows.facility.children import die_with_parent
from workcell.ports import free_port

PREFECT = str(Path(sys.executable).parent / "prefect")


class ServerError(RuntimeError):
    """The Prefect server did not start (the message holds its log's tail)."""


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """Settings for every process of a facility: server, workers, clients."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    }


@dataclass
class PrefectServer:
    """``start()`` runs the server and waits for /api/health; ``stop()`` ends it."""

    db_url: str
    home: Path
    port: int = 0
    ui: bool = False
    host: str = "127.0.0.1"  # where the API listens; clients on this computer use 127.0.0.1
    settings: dict[str, str] = field(default_factory=dict)  # more PREFECT_* for the server
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self) -> dict[str, str]:
        return prefect_env(self.home, self.api_url)

    def start(self, timeout_s: float = 300) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = dict(os.environ) | self.env()
        env |= {
            "PREFECT_API_DATABASE_CONNECTION_URL": self.db_url,
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_UI_ENABLED": "true" if self.ui else "false",
            "PREFECT_UI_API_URL": self.api_url,
        }
        env |= self.settings
        log = open(self.home / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", self.host, "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() ends the server and anything it started
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.home / "server.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise ServerError(f"the Prefect server did not answer on {self.api_url}:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
