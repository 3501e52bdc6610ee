"""Resume a suspended flow run with its form's answer, once Prefect can take it.

Prefect suspends a run that waits for input in two writes: the Suspended state
first, the form's schema (what the Resume form is drawn from, and what the answer
is checked against) just after. A resume that comes between the two is rejected
with "Run input schema not found." and the run stays Suspended. ``resume_flow_run``
returns that rejection; it does not raise it. A caller that takes the return for
done (the CLI saying "resumed", a script waiting for Completed) would wait for ever
on a run nobody resumed. The UI cannot meet this: it reads the schema before it
draws the form.

``resume_suspended`` retries that one rejection until the schema is there, and
raises every other rejection with the server's reason.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.responses import SetStateStatus

from workcell.errors import WorkcellError

SCHEMA_PENDING = "Run input schema not found."
POLL_S = 0.2


class ResumeRefused(WorkcellError):
    """Prefect refused to resume the run; the message carries the server's reason."""


async def resume_suspended(
    client: PrefectClient,
    run_id: UUID,
    run_input: dict[str, Any] | None,
    timeout_s: float = 30.0,
) -> None:
    """Resume ``run_id`` with ``run_input``; raise ``ResumeRefused`` if Prefect will not.

    The schema is written within milliseconds
    of the state, so ``timeout_s`` only bounds a server that never writes it.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = await client.resume_flow_run(run_id, run_input=run_input)
        if result.status == SetStateStatus.ACCEPT:
            return
        reason = getattr(result.details, "reason", None) or result.status.value
        if reason != SCHEMA_PENDING or time.monotonic() >= deadline:
            raise ResumeRefused(f"Prefect did not resume flow run {run_id}: {reason}")
        await asyncio.sleep(POLL_S)
