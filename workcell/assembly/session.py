"""A workcell session on a run folder: open it, resume it, and run steps in it.

``open_session`` builds the workcell from its config with the run folder's store.
If the store holds a checkpoint (a run was here before), the workcell is put back
into that state instead of being loaded afresh: a restarted campaign, or the next
flow run from the Prefect UI, continues where the last one stopped.

``Session.step`` wraps one unit of work (a protocol, a wait). It holds the locks
of the workcell's devices, so two runs on one workcell, in one process or two,
never drive an instrument at once. Under the locks it first checks that the
store's checkpoint is the one this session last wrote; if another run has moved
the workcell on since, the session rebuilds its workcell from that checkpoint
before it starts, so no run works from a stale picture of the deck.

A session refuses a run folder whose anchor (``workcell.head``) says it held a
record that is no longer there, cut short or replaced; each step's end anchors
the record's head again.

In a dry-run a step is one store transaction ending with a new checkpoint: a
process killed mid-step leaves the store and the checkpoint exactly as they were
before the step, and the step is simply done again on resume. On hardware the
records of a step are written as they happen (a step done in the world cannot be
undone), and a step found started but not finished on resume is a deviation for
the operator.

A device shared with other workcells (``shared_devices`` in the config) is also
held for the whole step through a guard under its facility-wide name: the Prefect
flows pass one backed by a Prefect global concurrency limit, so workcells on other
computers take turns too; without one, file locks serve the workcells of this
computer. Each use is recorded (``shared_device_used``, wall-clock start and end).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

from workcell.assembly.build import build_workcell
from workcell.assembly.checkpoint import restore, snapshot
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.workcell import Workcell
from workcell.batch.integrity import refuse_damaged
from workcell.locks import devices_locked
from workcell.store import store_path

SharedGuard = Callable[[list[str]], AbstractAsyncContextManager[object]]
SHARED_LOCKS = "facility-shared"  # the lock folder of the file-lock guard


def local_shared_guard(names: list[str]) -> AbstractAsyncContextManager[object]:
    """Shared devices guarded by file locks: enough for workcells on one computer."""
    return devices_locked(SHARED_LOCKS, names)


class Session:
    """One process's handle on a workcell and its run folder."""

    def __init__(
        self,
        config: WorkcellConfig,
        run_dir: Path | str | None,
        shared_guard: SharedGuard = local_shared_guard,
    ) -> None:
        self.config = config
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.shared_guard = shared_guard
        self._wc: Workcell | None = None
        self._seq = 0
        self.reloads = 0  # how often another run had moved the workcell on

    @property
    def wc(self) -> Workcell:
        if self._wc is None:
            raise RuntimeError("the session is not open")
        return self._wc

    async def open(self) -> None:
        async with devices_locked(self.config.name, list(self.config.devices)):
            await self._load()

    async def _load(self) -> None:
        path = store_path(self.run_dir)
        if self.run_dir is not None:
            refuse_damaged(Path(path))  # a record its anchor remembers must still be there
        wc = build_workcell(self.config, path)
        self._wc = wc
        saved = wc.store.checkpoint()
        await wc.setup(load_reservoirs=saved is None)
        if saved is not None:
            restore(wc, saved)
            self._seq = wc.store.checkpoint_seq()
            unfinished = _unfinished_steps(wc)
            if unfinished and wc.world is None:
                wc.event(
                    "deviation",
                    "workcell",
                    message=f"resumed after an interruption during {unfinished}: "
                    "check these vessels",
                )
        else:
            self._seq = wc.store.save_checkpoint(snapshot(wc))
            wc.store.anchor("workcell set up")

    async def close(self) -> None:
        if self._wc is None:
            return
        wc, self._wc = self._wc, None
        try:
            await wc.stop()
        finally:
            wc.store.close()

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[Workcell]:
        """One unit of work: device locks held, then recorded and checkpointed as a whole."""
        shared = sorted(set(self.config.shared_devices.values()))
        async with (
            devices_locked(self.config.name, list(self.config.devices)),
            self.shared_guard(shared) if shared else contextlib.nullcontext(),
        ):
            began = datetime.now(UTC)
            if self.wc.store.checkpoint_seq() != self._seq:
                await self.close()
                await self._load()
                self.reloads += 1
            wc = self.wc
            # a dry-run step lands whole or not at all; on hardware, records land as they happen
            atomic = wc.store.transaction() if wc.world is not None else contextlib.nullcontext()
            with atomic:
                wc.event("step_started", "workcell", step=name)
                yield wc
                if shared:
                    wc.event(
                        "shared_device_used",
                        "workcell",
                        step=name,
                        devices=shared,
                        workcell=self.config.name,
                        wall_start=began.isoformat(),
                        wall_end=datetime.now(UTC).isoformat(),
                    )
                wc.event("step_finished", "workcell", step=name)
                self._seq = wc.store.save_checkpoint(snapshot(wc))
                wc.store.anchor(f"step end: {name}")  # once committed


@contextlib.asynccontextmanager
async def open_session(
    config: WorkcellConfig,
    run_dir: Path | str | None,
    shared_guard: SharedGuard = local_shared_guard,
) -> AsyncIterator[Session]:
    session = Session(config, run_dir, shared_guard)
    try:
        await session.open()
        yield session
    finally:
        await session.close()


def _unfinished_steps(wc: Workcell) -> list[str]:
    started = [str(e.data.get("step")) for e in wc.store.events("step_started")]
    done = {str(e.data.get("step")) for e in wc.store.events("step_finished")}
    return [s for s in started if s not in done]
