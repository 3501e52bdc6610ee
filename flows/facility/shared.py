"""A device shared by several workcells, guarded by a Prefect global concurrency limit.

Each shared device (``shared_devices`` in a workcell's config) is a global
concurrency limit of 1 under its facility-wide name. A step that may use it holds
a slot for the whole step, with ``strict=True`` (a missing limit is an error, not
silently no limit) and a lease: the holder renews it while it lives, and the
server takes the slot back once a crashed holder's lease runs out (60 s, Prefect's
minimum), so a killed run never keeps the device from the other workcells.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prefect.client.orchestration import PrefectClient
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists

from workcell.assembly.config import WorkcellConfig

LEASE_S = 60.0
WAIT_S = 6 * 3600.0  # a step waits this long for a shared device before it fails


async def ensure_limits(client: PrefectClient, cfg: WorkcellConfig) -> list[str]:
    """Create (or set to 1) the limit of each of the workcell's shared devices."""
    names = sorted(set(cfg.shared_devices.values()))
    for name in names:
        try:
            await client.upsert_global_concurrency_limit_by_name(name, limit=1)
        except ObjectAlreadyExists:  # another workcell's worker made it a moment ago
            await client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return names


@contextlib.asynccontextmanager
async def prefect_shared_guard(names: list[str]) -> AsyncIterator[None]:
    """Hold one slot of each shared device's limit (a ``Session`` shared guard)."""
    async with concurrency(
        names, occupy=1, strict=True, lease_duration=LEASE_S, timeout_seconds=WAIT_S
    ):
        yield
