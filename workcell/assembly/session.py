"""A workcell session on a run folder: open it, reconcile it, and run steps in it.

``open_session`` connects to the run folder's simulated lab (``<run>/lab``, started
if none is serving it; none on hardware) and builds the workcell with the run
folder's store. The controller's model of the deck is the last step's snapshot
plus the effects of every journalled action known to be done since; actions whose
outcome is unknown (the controller died between intent and completion) are
settled by asking the devices (``reconcile.py``). Steps found started and never
finished are ``interrupted``: each is recorded as a deviation naming the vessels it
touched, and must be finished (re-entered: ``step(..., resume=...)``) before new
work starts, by the protocol's declared recovery (``protocols/recovery``).

``Session.locked`` holds the locks of the workcell's devices, so two runs on one
workcell, in one process or two, never drive an instrument at once; under the
locks it picks up anything another run did meanwhile and asks the lab for the
time, so decisions taken under the locks are taken from the state the locks
protect. ``Session.step`` is one unit of work under the locks: its records land
as they happen (there is no step transaction to roll back), and it ends with a
new snapshot of the model. A step that fails stays interrupted.

A session refuses a run folder whose anchor (``workcell.head``) says it held a
record that is no longer there, cut short or replaced; each step's end anchors
the record's head again.

A device shared with other workcells (``shared_devices`` in the config) is also
held while the locks are, through a guard under its facility-wide name: the
Prefect flows pass one backed by a Prefect global concurrency limit, so workcells
on other computers take turns too; without one, file locks serve the workcells of
this computer. Each step's use is recorded (``shared_device_used``, wall-clock
start and end).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workcell.assembly.build import build_workcell
from workcell.assembly.checkpoint import Kept, replay, restore, save
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.lab import LAB_FOLDER, LabHandle, open_lab
from workcell.assembly.reconcile import reconcile
from workcell.assembly.workcell import Workcell
from workcell.batch.integrity import refuse_damaged
from workcell.errors import ProtocolRefused, WorkcellError
from workcell.journal import StepInfo
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
        self.lab: LabHandle | None = None
        self._wc: Workcell | None = None
        self._seq = 0
        self._mark = 0  # the last journal row this session knows of
        self._held = 0  # nesting of ``locked``
        self._kept = Kept()  # the model's states as last checkpointed
        self.interrupted: list[StepInfo] = []
        self.reloads = 0  # how often another run had moved the workcell on

    @property
    def wc(self) -> Workcell:
        if self._wc is None:
            raise RuntimeError("the session is not open")
        return self._wc

    async def open(self) -> None:
        folder = None if self.run_dir is None else self.run_dir / LAB_FOLDER
        self.lab = open_lab(self.config, folder)
        try:
            async with self.locked(reload=False):
                await self._load()
        except BaseException:
            await self.close()
            raise

    async def _load(self) -> None:
        path = store_path(self.run_dir)
        if self.run_dir is not None:
            refuse_damaged(Path(path))  # a record its anchor remembers must still be there
        wc = build_workcell(self.config, path, lab=self.lab)
        self._wc = wc
        self._kept = Kept()  # a workcell built again checkpoints whole first
        saved = wc.store.checkpoint()
        fresh = saved is None and wc.store.last_journal_id() == 0
        await wc.setup(load_reservoirs=fresh)
        if wc.lab is not None and wc.lab.clock is not None:
            wc.lab.clock.sync()
        if saved is not None:
            restore(wc, saved)
        actions = replay(wc, saved["journal"] if saved is not None else 0)
        unknown = [a for a in actions if a.outcome is None]
        if unknown:
            await reconcile(wc, unknown)
        wc.record_hotel_events(actions)  # vessels the hotel handed out while we were down
        self.interrupted = wc.journal.unfinished()
        for step in self.interrupted:
            self._record_interruption(wc, step)
        if saved is None or unknown:
            self._seq = save(wc, self._kept)
            wc.store.anchor("workcell set up")
        else:
            self._seq = wc.store.checkpoint_seq()
        self._mark = wc.store.last_journal_id()

    def _record_interruption(self, wc: Workcell, step: StepInfo) -> None:
        """A deviation naming the vessels an interrupted step was working on (once per crash)."""
        rows = wc.store.journal(step_id=step.id)
        last = rows[-1]["id"] if rows else 0
        for e in wc.store.events("deviation"):
            if e.data.get("step_id") == step.id and e.data.get("at") == last:
                return
        vessels = _vessels_of(wc, step.id, rows)
        doing = [r for r in rows if r["kind"] == "intent"]
        what = (
            f"last action {doing[-1]['data'].get('device')} {doing[-1]['data'].get('action')}"
            if doing
            else "before any device action"
        )
        wc.event(
            "deviation",
            "workcell",
            message=f"step {step.label!r} was interrupted ({what}); it is finished by its "
            f"declared recovery; vessels: {', '.join(vessels) or 'none touched'}",
            step_id=step.id,
            at=last,
            vessels=vessels,
            interruption=True,
        )

    async def reopen(self) -> None:
        """Rebuild the workcell and reconcile again (after a device fault was fixed)."""
        await self._close_workcell()
        await self._load()

    async def _close_workcell(self) -> None:
        if self._wc is None:
            return
        wc, self._wc = self._wc, None
        try:
            await wc.stop()
        finally:
            wc.store.close()

    async def close(self) -> None:
        try:
            await self._close_workcell()
        finally:
            if self.lab is not None:
                lab, self.lab = self.lab, None
                lab.close()

    @contextlib.asynccontextmanager
    async def locked(self, reload: bool = True) -> AsyncIterator[None]:
        """Hold the device locks; pick up what other runs did; ask the lab for the time."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        shared = sorted(set(self.config.shared_devices.values()))
        async with (
            devices_locked(self.config.name, list(self.config.devices)),
            self.shared_guard(shared) if shared else contextlib.nullcontext(),
        ):
            self._held = 1
            try:
                if reload and self._wc is not None:
                    store = self.wc.store
                    if store.checkpoint_seq() != self._seq or store.last_journal_id() != self._mark:
                        await self.reopen()
                        self.reloads += 1
                    elif self.wc.lab is not None and self.wc.lab.clock is not None:
                        self.wc.lab.clock.sync()
                yield
            finally:
                self._held = 0
                if self._wc is not None:
                    self._mark = self._wc.store.last_journal_id()

    @contextlib.asynccontextmanager
    async def step(
        self,
        name: str,
        owner: str = "",
        data: dict[str, Any] | None = None,
        resume: StepInfo | None = None,
    ) -> AsyncIterator[Workcell]:
        """One unit of work under the device locks; ``resume`` re-enters an interrupted step."""
        async with self.locked():
            wc = self.wc
            began = datetime.now(UTC)
            if resume is None and self.interrupted:
                pending = ", ".join(repr(s.label) for s in self.interrupted)
                raise WorkcellError(
                    f"step {pending} was interrupted and is not finished; finish it first "
                    "(its recovery runs when the campaign or flow is resumed)"
                )
            if resume is not None:
                wc.journal.enter(resume.id)
                wc.event("step_resumed", "workcell", step=resume.label, step_id=resume.id)
            else:
                wc.journal.start_step(name, owner, data)
            try:
                yield wc
            except BaseException as err:
                sid = wc.journal.step_id
                if isinstance(err, ProtocolRefused) and sid is not None and not _moved(wc, sid):
                    # refused before any device moved: nothing is half-done, nothing to
                    # finish later (a run after it must not re-run a refused plan)
                    wc.journal.finish_step()
                    raise
                if isinstance(err, Exception) and sid is not None:
                    vessels = _vessels_of(wc, sid)
                    wc.event(
                        "step_held",
                        "workcell",
                        step=name if resume is None else resume.label,
                        step_id=sid,
                        error=f"{type(err).__name__}: {err}",
                        vessels=vessels,
                        message="the step stopped before it finished and is held for the "
                        f"operator; it is finished when the run resumes; vessels: "
                        f"{', '.join(vessels) or 'none touched'}",
                    )
                wc.journal.leave()
                self.interrupted = wc.journal.unfinished()
                raise
            shared = sorted(set(self.config.shared_devices.values()))
            if shared:
                wc.event(
                    "shared_device_used",
                    "workcell",
                    step=name if resume is None else resume.label,
                    devices=shared,
                    workcell=self.config.name,
                    wall_start=began.isoformat(),
                    wall_end=datetime.now(UTC).isoformat(),
                )
            sid = wc.journal.step_id
            wc.journal.finish_step()
            self.interrupted = [s for s in self.interrupted if resume is None or s.id != resume.id]
            if self._needs_checkpoint(wc, sid):
                self._seq = save(wc, self._kept)  # the resources the step changed
            wc.store.anchor(f"step end: {name if resume is None else resume.label}")

    def _needs_checkpoint(self, wc: Workcell, step_id: int | None) -> bool:
        """Whether the step's end needs a checkpoint: the model changes only through device
        actions (each journaled with its effect), so a step that sent none (a wait) leaves
        the last checkpoint true, as long as it is this session's and still the store's."""
        if step_id is None or self._kept.seq == 0 or wc.store.checkpoint_seq() != self._kept.seq:
            return True
        return wc.store.journal_has(step_id, "intent")


def _moved(wc: Workcell, step_id: int) -> bool:
    """Whether a step sent any device action (an intent other than an operator's chore,
    which is done and recorded at once)."""
    return any(
        r["data"].get("device") != "operator"
        for r in wc.store.journal(step_id=step_id, kinds=("intent",))
    )


def _vessels_of(wc: Workcell, step_id: int, rows: list[dict[str, Any]] | None = None) -> list[str]:
    """The vessels a step's journal names (its actions' and its units')."""
    vessels: list[str] = []
    for r in rows if rows is not None else wc.store.journal(step_id=step_id):
        for v in r["data"].get("vessels") or []:
            if v not in vessels:
                vessels.append(v)
    return vessels


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
