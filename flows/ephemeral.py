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
import os
import time
from collections.abc import Callable, Iterator

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
def prefect_api(say: Callable[[str], None]) -> Iterator[str]:
    """The Prefect API to use: PREFECT_API_URL if set, else a temporary server started here."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        say(f"Prefect API: {url}")
        yield url
        return
    timeout = startup_timeout_s()
    os.environ[TIMEOUT_ENV] = str(timeout)  # Prefect reads it too
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    server_dies_with_us()
    say(
        f"waiting for a temporary Prefect server (SQLite in {PREFECT_HOME.value()}) to answer "
        f"on 127.0.0.1, up to {timeout} s ({TIMEOUT_ENV})"
    )
    t0 = time.monotonic()
    server = SubprocessASGIServer()
    try:
        server.start(timeout=timeout)
    except RuntimeError as e:
        server.stop()
        raise ServerStartError(
            f"the temporary Prefect server did not answer within {timeout} s "
            f"(raise {TIMEOUT_ENV}, or start `prefect server start` and set PREFECT_API_URL): "
            f"{str(e)[:300]}"
        ) from None
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


def first_answer(api_url: str, timeout_s: float) -> None:
    """One API request before the server is called ready: the first one a fresh server
    answers takes it about 0.4 s (its routes and database set up on first use), which
    is its start, not the campaign's first step. A failure here is left to the run."""
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.get(f"{api_url}/admin/version", timeout=timeout_s)


def server_dies_with_us() -> None:
    """Prefect's temporary server, started from this process, ends when this process does.

    Prefect starts it as ``python -m uvicorn ...``; it is started instead through
    ``workcell.lifeline``, which runs the same module in a process that watches this
    one, so a SIGKILLed campaign leaves no server behind.
    """
    import subprocess

    from prefect.server.api import server as prefect_server

    cls = prefect_server.SubprocessASGIServer
    original = cls._run_uvicorn_command
    if getattr(original, "_workcell_lifeline", False):
        return
    parent = os.getpid()

    def run(self: object) -> object:
        real = subprocess.Popen

        def popen(args: list[str], *a: object, **kw: object) -> object:
            if list(args[1:3]) == ["-m", "uvicorn"]:
                args = [args[0], "-m", "workcell.lifeline", str(parent), *args[2:]]
            return real(args, *a, **kw)  # type: ignore[call-overload]

        setattr(subprocess, "Popen", popen)  # noqa: B010 - for this one call
        try:
            return original(self)  # type: ignore[arg-type]
        finally:
            setattr(subprocess, "Popen", real)  # noqa: B010

    setattr(run, "_workcell_lifeline", True)  # noqa: B010
    setattr(cls, "_run_uvicorn_command", run)  # noqa: B010
