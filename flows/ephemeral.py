"""A temporary Prefect server for one command, started in the open.

With no ``PREFECT_API_URL`` Prefect starts a temporary server (SQLite in
``PREFECT_HOME``) the first time a flow runs, and gives up after
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (Prefect's default, 90 s, was
too short on a busy 2-core machine: the first start migrates a new database). Here
the command starts it itself, before the campaign, with a generous default wait it
prints, so the user sees what is being waited for and for how long, and how long
it took.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from workcell.ports import HOST, free_port, port_taken

TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_S = 600


def startup_timeout_s() -> int:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = int(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a whole number of seconds") from None
    if value < 1:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} must be at least 1 second")
    return value


class ServerStartError(RuntimeError):
    """The temporary server did not answer in time (the message says what to do)."""


@contextlib.contextmanager
def prefect_api(
    say: Callable[[str], None], meanwhile: Callable[[], object] | None = None
) -> Iterator[str]:
    """The Prefect API to use: PREFECT_API_URL if set, else a temporary server started here.

    ``meanwhile``: work to do while a temporary server starts (a second or two of
    imports, while the server process spends seconds on its own); done at once if none
    is started."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        say(f"Prefect API: {url}")
        if meanwhile is not None:
            meanwhile()
        yield url
        return
    timeout = startup_timeout_s()
    os.environ[TIMEOUT_ENV] = str(timeout)  # Prefect reads it too
    t0 = time.monotonic()
    server = TemporaryServer()
    try:
        server.launch()  # first: Prefect's own import here (1-2 s) overlaps the server's start
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        say(
            f"waiting for a temporary Prefect server (SQLite in {PREFECT_HOME.value()}) to "
            f"answer on 127.0.0.1, up to {timeout} s ({TIMEOUT_ENV})"
        )
        if meanwhile is not None:
            meanwhile()
        server.wait(timeout)
    except BaseException:  # not answering, or the user's Ctrl-C while it starts
        server.stop()
        raise
    first_answer(server.api_url, timeout)
    say(f"Prefect server ready after {time.monotonic() - t0:.1f} s at {server.api_url}")
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            os.environ["PREFECT_API_URL"] = server.api_url  # for any child process
            try:
                yield server.api_url
            finally:
                os.environ.pop("PREFECT_API_URL", None)
    finally:
        server.stop()


class TemporaryServer:
    """Prefect's temporary API server, as Prefect starts one (``SubprocessASGIServer``:
    uvicorn on ``prefect.server.api.server:create_app``, no UI, the ephemeral server's
    services), but through ``workcell.lifeline``, so a SIGKILLed campaign leaves no
    server behind, and without importing Prefect's server package here: that import
    is 2-3 s of a 2-core machine's CPU, which the server process spends again itself.
    """

    current: TemporaryServer | None = None  # the one this process runs (the benchmark's CPU)

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def _launch(self) -> subprocess.Popen[bytes]:
        self.port = free_port()
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        if "prefect.settings" in sys.modules:  # settings made here, not only in files
            from prefect.settings import get_current_settings

            env.update(get_current_settings().to_environment_variables(exclude_unset=True))
        # else the server reads the same environment and profile this process would: no
        # setting can have been made here without importing Prefect (1-2 s), not needed yet
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None, "Prefect is not installed"
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workcell.lifeline",
                str(os.getpid()),
                "uvicorn",
                "--app-dir",
                str(Path(spec.origin).parent.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
        )

    def launch(self) -> None:
        """Start the server's process (``wait`` for its answer)."""
        self.process = self._launch()
        TemporaryServer.current = self

    def wait(self, timeout_s: float) -> None:
        """Wait until the server's health check answers (``ServerStartError`` if it does
        not within ``timeout_s``, or if the process ends)."""
        import httpx

        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        retries = START_RETRIES
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code == STARTUP_FAILURE and retries and port_taken(self.port):
                    retries -= 1  # taken between free_port and its bind: another port
                    self.process = self._launch()
                elif code is not None:
                    raise ServerStartError(
                        f"the temporary Prefect server ended (exit code {code}) before it "
                        "answered: its error is printed above (`prefect server start` shows "
                        "it too); or set PREFECT_API_URL to a Prefect server of your own"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                        return
                time.sleep(0.1)
        raise ServerStartError(
            f"the temporary Prefect server did not answer within {timeout_s:g} s: raise "
            f"{TIMEOUT_ENV}, or start `prefect server start` and set PREFECT_API_URL"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if TemporaryServer.current is self:
            TemporaryServer.current = None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# uvicorn's exit code when it could not start: if its port was taken between ``free_port``
# and its bind, it is started again on another port (as Prefect does), a few times
STARTUP_FAILURE = 3
START_RETRIES = 3


def first_answer(api_url: str, timeout_s: float) -> None:
    """One API request before the server is called ready: the first one a fresh server
    answers takes it about 0.4 s (its routes and database set up on first use), which
    is its start, not the campaign's first step. A failure here is left to the run."""
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.get(f"{api_url}/admin/version", timeout=timeout_s)
