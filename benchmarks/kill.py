"""Kill campaigns: SIGKILL the controller at every device-action boundary, resume, judge.

The machinery ``benchmarks/faults.py`` and ``tests/test_faults.py`` share. A
*template* is a run folder prepared once (a culture grown to where the unit
operation starts, or a campaign run up to its first passage), with its lab
stopped. Each kill point copies it, starts the lab on the copy (detached: it
outlives the controller, as a real lab does), runs the controller with
``WORKCELL_CRASH_AT=N:phase`` so it SIGKILLs itself at its N-th device action
(``intent``: committed, not sent; ``reply``: done by the device, not recorded),
lets the lab's clock run on for the outage, runs the controller again to resume,
and judges the outcome from the lab's own physical log (``benchmarks/judge.py``)
against an uninterrupted run from the same template.

Controllers and labs are forked from this process (everything is imported once),
so a kill point costs the work it repeats, not a Python start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import signal
import sqlite3
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks import judge
from devices.lab import LabLink
from protocols.campaign.engine import (
    CampaignEngine,
    CampaignParams,
    Kind,
    auto_approve,
    decide,
    view,
)
from protocols.dry_run import prepare_cultures
from protocols.recovery.finish import finish_interrupted
from protocols.registry import PROTOCOLS
from simulators.lab.process import read_address
from simulators.lab.server import CRASH_ENV as LAB_CRASH_ENV
from simulators.lab.server import SPEC_FILE, LabServer
from simulators.lab.spec import LabSpec
from simulators.lab.store import read_log
from workcell.assembly.config import DEFAULT_CONFIG, WorkcellConfig, load_config
from workcell.assembly.lab import LAB_FOLDER
from workcell.assembly.session import open_session
from workcell.errors import DeviceError, WorkcellError
from workcell.journal import CRASH_ENV
from workcell.lifeline import die_with_parent
from workcell.operator import Answer, Hold
from workcell.store import STORE_FILE, Store

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OUTAGE_S = 120.0  # the simulated time a crashed controller is down before it is restarted
STEP = "operation"  # the label of the unit operation's step


def bench_config(folder: Path, name: str = "kill-bench") -> Path:
    """The embedded workcell, one imaging field per well, a fixed start."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["name"] = name
    data["clock"]["start"] = START.isoformat()
    data["devices"]["imager"]["fields_per_well"] = 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "workcell.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


COLUMN_PLATE = "plate_3"  # the embedded workcell's 24-well plate


@contextlib.contextmanager
def column_bench(channels: int = 8) -> Iterator[None]:
    """While open, templates, references and work of the unit operations on plates work
    on the 24-well ``COLUMN_PLATE`` (a passage's children go to the usual 6-well plates),
    on a workcell whose liquid handler moves ``channels`` channels as a group (8: a plate
    column at a time, ``protocols/recovery/columns.py``; 1: well by well)."""
    global bench_config
    plain, operations = bench_config, dict(OPERATIONS)

    def grouped(folder: Path, name: str = "kill-bench") -> Path:
        path = plain(folder, name)
        data: dict[str, Any] = yaml.safe_load(path.read_text())
        data["devices"]["star"]["pipetting_channels"] = channels
        path.write_text(yaml.safe_dump(data))
        return path

    bench_config = grouped
    for op in ("media_exchange", "harvest", "passaging"):
        days, after, params = OPERATIONS[op]
        params = {**params, **({"plate": COLUMN_PLATE} if "plate" in params else {})}
        if "plates" in params:
            params["plates"] = [COLUMN_PLATE]
        OPERATIONS[op] = (days, after, params)
    try:
        yield
    finally:
        bench_config = plain
        OPERATIONS.update(operations)


def clinical_config(folder: Path, name: str = "kill-clinical") -> Path:
    """The clinical workcell (vessels from a hotel), one imaging field per well, a fixed start."""
    source = Path(__file__).resolve().parent.parent / "configs" / "clinical.yaml"
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(source.read_text()))
    data["name"] = name
    data.setdefault("clock", {})["start"] = START.isoformat()
    data["devices"]["imager"]["fields_per_well"] = 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "workcell.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


OPERATIONS: dict[str, tuple[float, list[str], dict[str, Any]]] = {
    # operation: (days grown before it, plates it stores after, its parameters)
    "seeding": (
        0.0,
        ["plate_1"],
        {"suspension": {"volume_mL": 5, "viable_cells_per_mL": 5e5}, "plates": ["plate_1"]},
    ),
    "media_exchange": (2.5, [], {"plates": ["plate_1"]}),
    "passaging": (
        7.0,
        [],
        {
            "plate": "plate_1",
            "destination_plates": ["plate_6", "plate_7"],
            "max_child_vessels": 6,
        },
    ),
    # two plates: each is an enzyme batch of its own, so a kill may fall between them
    "harvest": (7.0, [], {"plates": ["plate_1", "plate_2"]}),
}


async def _auto(hold: Hold) -> Answer:
    return Answer(operator="auto-approve (kill campaign)", comment=f"auto-approved {hold.kind}")


# --- processes ---------------------------------------------------------------------------


def _fork(fn: Callable[..., int | None], *args: Any) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn(*args) or 0
        except BaseException:  # noqa: BLE001 - a child reports and exits, never returns
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _wait(pid: int, timeout_s: float = 600.0) -> int:
    """Exit code of a child (negative: the signal that killed it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"child {pid} ran past {timeout_s:.0f} s")
        time.sleep(0.005)


def _lab_child(lab_dir: Path, crash_at: int | None, harness: int) -> int:
    os.setsid()
    die_with_parent(harness)  # outlives the controllers, not the harness
    if crash_at is not None:
        os.environ[LAB_CRASH_ENV] = str(crash_at)
    else:
        os.environ.pop(LAB_CRASH_ENV, None)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    LabServer(lab_dir).serve()
    return 0


@dataclass
class Lab:
    """A detached lab on a run folder's ``lab/`` (started by this harness, not the controller)."""

    folder: Path
    crash_at: int | None = None
    pid: int = 0

    def start(self) -> Lab:
        self.pid = _fork(_lab_child, self.folder, self.crash_at, os.getpid())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            addr = read_address(self.folder)
            if addr is not None and addr.pid == self.pid:
                return self
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                raise RuntimeError(f"the lab in {self.folder} did not start")
            time.sleep(0.005)
        raise RuntimeError(f"the lab in {self.folder} did not listen")

    def link(self) -> LabLink:
        addr = read_address(self.folder)
        assert addr is not None
        return LabLink(addr.host, addr.port)

    def advance(self, seconds: float) -> None:
        """The controller is down: the lab's time goes on (enzyme acts, cells wait)."""
        link = self.link()
        try:
            assert link.clock is not None
            link.clock.advance(seconds)
        finally:
            link.close()

    def alive(self) -> bool:
        done, _ = os.waitpid(self.pid, os.WNOHANG)
        return not done

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(TimeoutError, ChildProcessError):
            _wait(self.pid, 20)


# --- the controller ------------------------------------------------------------------------


def _controller(
    cfg_path: Path,
    run_dir: Path,
    work: Callable[[WorkcellConfig, Path], Any],
    crash: str | None,
) -> int:
    os.environ["WORKCELL_CPU_WORKERS"] = "0"
    os.environ.pop(CRASH_ENV, None)
    if crash:
        os.environ[CRASH_ENV] = crash
    try:
        asyncio.run(work(load_config(cfg_path), run_dir))
    except (DeviceError, WorkcellError) as err:
        print(f"held: {err}", flush=True)
        return 3
    return 0


def operation_work(op: str) -> Callable[[WorkcellConfig, Path], Any]:
    """Run unit operation ``op`` as one step (or finish it, if it was interrupted)."""
    _, store_after, params_data = OPERATIONS[op]

    async def work(cfg: WorkcellConfig, run_dir: Path) -> None:
        entry = PROTOCOLS[op]
        params = entry.params.model_validate(params_data)
        async with open_session(cfg, run_dir) as s:
            await finish_interrupted(s, _auto)
            if any(st.label == STEP for st in s.wc.journal.steps()):
                return
            data = {
                "operation": op,
                "params": params.model_dump(mode="json"),
                "store_after": store_after,
                "actor": "bench",
            }
            async with s.step(STEP, owner="flow", data=data) as wc:
                wc.operator = _auto
                await entry.run(wc, params)
                for plate in store_after:
                    if not wc.in_slot(plate):
                        await wc.store_plate(plate)

    return work


class _Enough(Exception):
    """The campaign segment has run its steps."""


def campaign_work(
    params: CampaignParams, steps_after: int
) -> Callable[[WorkcellConfig, Path], Any]:
    """Run the campaign until ``steps_after`` steps have finished (counting from the store)."""

    async def work(cfg: WorkcellConfig, run_dir: Path) -> None:
        async with open_session(cfg, run_dir) as s:

            async def run_step(label: str, fn: Callable[[], Any]) -> object:
                result = await fn()
                if len(s.wc.store.events("step_finished")) >= steps_after:
                    raise _Enough
                return result

            with contextlib.suppress(_Enough):
                await CampaignEngine(s, params, auto_approve(), run_step=run_step).run()

    return work


# --- templates ---------------------------------------------------------------------------


def _stop_labs_in(run_dir: Path) -> None:
    addr = read_address(run_dir / LAB_FOLDER)
    if addr is not None:
        for _ in range(200):
            try:
                os.kill(addr.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


def operation_template(folder: Path, op: str) -> tuple[Path, Path]:
    """A run folder with the culture ``op`` starts from; returns (config, run folder)."""
    cfg_path = bench_config(folder)
    run_dir = folder / "template"
    days, _, params = OPERATIONS[op]
    plates = params.get("plates") or [params["plate"]]

    async def prelude(cfg: WorkcellConfig, run: Path) -> None:
        async with open_session(cfg, run) as s, s.step("prelude", owner="bench") as wc:
            if days > 0:
                await prepare_cultures(wc, plates, days)

    pid = _fork(_controller, cfg_path, run_dir, prelude, None)
    if _wait(pid) != 0:
        raise RuntimeError(f"the prelude of {op} failed")
    _stop_labs_in(run_dir)
    return cfg_path, run_dir


def campaign_template(
    folder: Path, params: CampaignParams, clinical: bool = False
) -> tuple[Path, Path]:
    """A campaign run up to the step before its first passage (``clinical``: on the clinical
    workcell, its vessels drawn from the hotel as the capacity plan says)."""
    cfg_path = clinical_config(folder) if clinical else bench_config(folder)
    run_dir = folder / "template"

    async def until_passage(cfg: WorkcellConfig, run: Path) -> None:
        async with open_session(cfg, run) as s:
            deck = {
                x.name: s.wc.plate(x.name).num_items
                for x in cfg.deck.sites()
                if x.labware == params.vessel_labware
            }
            engine: CampaignEngine | None = None

            async def run_step(label: str, fn: Callable[[], Any]) -> object:
                result = await fn()
                plan = engine.plan if engine is not None else None
                d = decide(view(s.wc.store, s.wc.clock.now()), params, deck, plan)
                if any(a.kind is Kind.PASSAGE for a in d.actions):
                    raise _Enough
                return result

            engine = CampaignEngine(s, params, auto_approve(), run_step=run_step)
            with contextlib.suppress(_Enough):
                await engine.run()

    pid = _fork(_controller, cfg_path, run_dir, until_passage, None)
    if _wait(pid, 1800) != 0:
        raise RuntimeError("the campaign template failed")
    _stop_labs_in(run_dir)
    return cfg_path, run_dir


# --- one run, and its judgement ------------------------------------------------------------


@dataclass
class Outcome:
    """What the lab's log (and the store, for vessels and the record) say of one run."""

    label: str
    log: list[dict[str, Any]]
    exposure_s: dict[str, float]
    enzyme_waits: list[tuple[float, float]]
    enzyme_spread: dict[str, float]
    out_s: dict[str, float]
    vessels: dict[str, str]
    cells: float
    lab_cells: dict[str, float]  # viable cells in every well the lab knows
    verified: bool
    interruptions: list[dict[str, Any]]
    held: int
    over_exposed: list[str] = field(default_factory=list)  # named by an over-exposure deviation
    over_exposure_held: bool = False  # the operator was asked about it
    exit_codes: list[int] = field(default_factory=list)
    intents: int = 0
    resumed_at_t: float | None = None
    hotel: list[str] = field(default_factory=list)  # where the lab's hotel and the record differ


def hotel_mismatches(
    lab_hotel: dict[str, Any], spec_stock: dict[str, int], store: Store
) -> list[str]:
    """The vessel hotel judged from the lab: its stock and the vessels out of it against the
    record's draws, returns and discards, and every vessel drawn once."""
    drawn = [e.data["plate"] for e in store.events("vessel_drawn")]
    returned = [e.data["plate"] for e in store.events("vessel_returned")]
    discarded = [e.data["plate"] for e in store.events("vessel_discarded")]
    labware = {e.data["plate"]: e.data["labware"] for e in store.events("vessel_drawn")}
    out = []
    if len(set(drawn)) != len(drawn):
        out.append("a vessel drawn twice in the record")
    held = set(drawn) - set(returned) - set(discarded)
    if set(lab_hotel.get("drawn", {})) != held:
        out.append(
            f"vessels out of the hotel: lab {sorted(lab_hotel.get('drawn', {}))}, "
            f"record {sorted(held)}"
        )
    for name, start in spec_stock.items():
        expected = start - sum(labware[p] == name for p in drawn)
        expected += sum(labware.get(p) == name for p in returned)
        got = lab_hotel.get("stock", {}).get(name)
        if got != expected:
            out.append(f"hotel stock of {name}: lab {got}, record {expected}")
    return out


def journal_intents(run_dir: Path) -> list[dict[str, Any]]:
    """Every device-action intent in a run folder's journal, in order."""
    store = Store(run_dir / STORE_FILE)
    try:
        return [r for r in store.journal() if r["kind"] == "intent"]
    finally:
        store.close()


def _journal_intents(store_file: Path, since: int) -> int:
    db = sqlite3.connect(f"file:{store_file}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = db.execute(
            "SELECT COUNT(*) FROM journal WHERE kind = 'intent' AND id > ?", (since,)
        ).fetchone()
    finally:
        db.close()
    return int(n)


def _last_journal(store_file: Path) -> int:
    db = sqlite3.connect(f"file:{store_file}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()
    finally:
        db.close()
    return int(n)


def examine(
    run_dir: Path,
    since_seq: int,
    since_journal: int,
    label: str,
    output: Callable[[Store], list[str]],
) -> Outcome:
    """Judge a finished run from its lab's log (after the template's last entry)."""
    log = read_log(run_dir / LAB_FOLDER, since_seq)
    store = Store(run_dir / STORE_FILE)
    try:
        vessels = {v.id: v.state for v in store.vessels()}
        targets = output(store)
        interruptions = [e.data for e in store.events("deviation") if e.data.get("interruption")]
        held = len(store.events("step_held"))
        over_exposed = sorted(
            {
                v
                for e in store.events("deviation")
                if e.data.get("over_exposure")
                for v in e.data.get("vessels", [])
            }
        )
        over_exposure_held = any(
            e.data.get("action") == "over_exposure" for e in store.events("operator_decision")
        )
        verified = store.record.verify().ok
    finally:
        store.close()
    spec = LabSpec.model_validate_json((run_dir / LAB_FOLDER / SPEC_FILE).read_text())
    lab = Lab(run_dir / LAB_FOLDER).start()
    try:
        link = lab.link()
        try:
            hotel: list[str] = []
            if spec.hotel is not None:
                store = Store(run_dir / STORE_FILE)
                try:
                    hotel = hotel_mismatches(
                        link.call("lab", "hotel.state"), spec.hotel.stock, store
                    )
                finally:
                    store.close()
            lab_cells = {v: link.vessel(v).viable for v in link.vessels()}
            cells = sum(lab_cells.get(v, 0.0) for v in targets)
            cells += sum(
                link.liquid(t).viable for t in targets if t not in lab_cells and "_well_" not in t
            )
        finally:
            link.close()
    finally:
        lab.stop()
    return Outcome(
        label=label,
        log=log,
        exposure_s=judge.enzyme_exposure(log),
        enzyme_waits=judge.enzyme_waits(log),
        enzyme_spread=judge.enzyme_spread(log),
        out_s=judge.out_of_incubator(log),
        vessels=vessels,
        cells=cells,
        lab_cells=lab_cells,
        verified=verified,
        interruptions=interruptions,
        held=held,
        over_exposed=over_exposed,
        over_exposure_held=over_exposure_held,
        intents=_journal_intents(run_dir / STORE_FILE, since_journal),
        hotel=hotel,
    )


def _last_seq(run_dir: Path) -> int:
    log = read_log(run_dir / LAB_FOLDER)
    return log[-1]["seq"] if log else 0


def run_point(
    template: Path,
    where: Path,
    cfg_path: Path,
    work: Callable[[WorkcellConfig, Path], Any],
    output: Callable[[Store], list[str]],
    crash: str | None = None,
    outage_s: float = OUTAGE_S,
    lab_crash_at: int | None = None,
) -> Outcome:
    """Copy the template, run (killed at ``crash``, then resumed), and judge."""
    if where.exists():
        shutil.rmtree(where)
    shutil.copytree(template, where)
    for stale in ("lab.json", "lab.lock"):
        (where / LAB_FOLDER / stale).unlink(missing_ok=True)
    since_seq = _last_seq(where)
    since_journal = _last_journal(where / STORE_FILE)
    codes = []
    lab = Lab(where / LAB_FOLDER, crash_at=lab_crash_at).start()
    resumed_at = None
    try:
        codes.append(_wait(_fork(_controller, cfg_path, where, work, crash)))
        if codes[-1] != 0:  # killed (or held): the outage, then the controller comes back
            if not lab.alive():  # the lab itself died: restart it from its disk state
                lab = Lab(where / LAB_FOLDER).start()
            lab.advance(outage_s)
            link = lab.link()
            resumed_at = link.clock.elapsed() if link.clock else None
            link.close()
            codes.append(_wait(_fork(_controller, cfg_path, where, work, None)))
    finally:
        lab.stop()
    out = examine(where, since_seq, since_journal, crash or "reference", output)
    out.exit_codes = codes
    out.resumed_at_t = resumed_at
    return out


def output_of(op: str) -> Callable[[Store], list[str]]:
    """Where an operation's cells end up: the vessels (or pool) to count in the lab."""

    def out(store: Store) -> list[str]:
        if op == "harvest":
            return ["pool_tube"]
        if op == "passaging":
            return [v.id for v in store.vessels() if v.parents]
        return [v.id for v in store.vessels(state="active")]

    return out


def campaign_output(store: Store) -> list[str]:
    return [v.id for v in store.vessels(state="active")] + ["harvest_pool"]


def lost_vessels(got: Outcome, ref: Outcome) -> list[str]:
    """Vessels lost: by the record, or by the lab.

    * a vessel both runs had from the start (or both made) left in another state;
    * cells the lab has in a well the record does not know (seeded, never recorded);
    * a vessel the record has in culture that the lab has (almost) no cells in.

    A passage whose count came out a little different may make one child more or
    less than the reference: that child is not lost.
    """
    lost = {v for v, state in ref.vessels.items() if v in got.vessels and got.vessels[v] != state}
    lost |= {v for v in ref.vessels if v not in got.vessels and ref.lab_cells.get(v, 0) == 0}
    typical = max(got.lab_cells.values(), default=0.0)
    lost |= {v for v, n in got.lab_cells.items() if n > 0.01 * typical and v not in got.vessels}
    lost |= {
        v
        for v, state in got.vessels.items()
        if state == "active" and got.lab_cells.get(v, 0.0) < 1e-3 * typical
    }
    missing = [v for v in ref.vessels if v not in got.vessels]
    if missing and len(missing) > 2:  # more than a count's rounding: vessels went missing
        lost |= set(missing)
    return sorted(lost)


def operation_reference(folder: Path, op: str) -> dict[str, Any]:
    """What a kill test of ``op`` compares against: its template (the culture it starts
    from), one run of it without a kill, and the journal intents that run added (the
    points to kill at). Keys: folder, cfg, template, ref, intents."""
    cfg, template = operation_template(folder / "tpl", op)
    ref = run_point(template, folder / "ref", cfg, operation_work(op), output_of(op))
    intents = journal_intents(folder / "ref")[len(journal_intents(template)) :]
    return {"folder": folder, "cfg": cfg, "template": template, "ref": ref, "intents": intents}
