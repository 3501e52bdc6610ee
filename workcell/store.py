"""The store: SQLite, the source of truth for vessels, measurements and events.

A file in the run folder (``:memory:`` in tests). Campaign decisions are made from
what is here and the clock alone, so a restarted run can resume where it stopped.
Every write is its own transaction: a fault mid-protocol leaves what was recorded
so far intact and consistent.

The tables here (vessels, their lineage and later changes, measurements, events)
derive from the batch record: each write adds its row and its record entry in one
transaction, rows are only ever added (triggers refuse UPDATE and DELETE, as on the
record; a vessel's new state or place is a row in ``vessel_changes``), and
``derived_mismatches`` rebuilds every row from the record to find any that differs.
After each commit that matters the record's head is anchored beside the store
(``workcell.anchor``). ``Store(path, read_only=True)`` opens an archived run
without writing a byte, even in a folder nobody may write to.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from workcell import anchor
from workcell.errors import WorkcellError
from workcell.record import DATA_JSON, GENESIS, BatchRecord, Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS vessels (
    id TEXT PRIMARY KEY,
    labware TEXT NOT NULL,
    plate TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL,
    passage INTEGER NOT NULL CHECK (passage >= 0),
    area_cm2 REAL NOT NULL CHECK (area_cm2 > 0),
    created_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active'
);
CREATE TABLE IF NOT EXISTS lineage (
    child_id TEXT NOT NULL REFERENCES vessels(id),
    parent_id TEXT NOT NULL REFERENCES vessels(id),
    PRIMARY KEY (child_id, parent_id)
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vessel_id TEXT REFERENCES vessels(id),
    kind TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    time TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    vessel_id TEXT,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vessel_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vessel_id TEXT NOT NULL REFERENCES vessels(id),
    state TEXT,
    location TEXT,
    CHECK ((state IS NULL) <> (location IS NULL))
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint_parts (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id INTEGER,
    kind TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    ref INTEGER,
    time TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_step ON journal(step_id, kind);
CREATE INDEX IF NOT EXISTS measurements_vessel ON measurements(vessel_id, kind, time);
CREATE INDEX IF NOT EXISTS events_vessel ON events(vessel_id, time);
CREATE INDEX IF NOT EXISTS vessel_changes_vessel ON vessel_changes(vessel_id, id);
CREATE VIEW IF NOT EXISTS vessels_now AS
SELECT v.id, v.labware, v.plate, v.passage, v.area_cm2, v.created_at,
    COALESCE((SELECT c.location FROM vessel_changes c WHERE c.vessel_id = v.id
              AND c.location IS NOT NULL ORDER BY c.id DESC LIMIT 1), v.location) AS location,
    COALESCE((SELECT c.state FROM vessel_changes c WHERE c.vessel_id = v.id
              AND c.state IS NOT NULL ORDER BY c.id DESC LIMIT 1), v.state) AS state
FROM vessels v;
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, vessel_id, time);
CREATE INDEX IF NOT EXISTS measurements_kind ON measurements(kind, vessel_id, time);
"""

# the tables that derive from the record: rows are added, never changed or removed
DERIVED = ("vessels", "lineage", "vessel_changes", "measurements", "events")
DERIVED_TRIGGERS = "".join(
    f"""
CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t}
BEGIN SELECT RAISE(ABORT, '{t} derive from the batch record: rows are only added'); END;
CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t}
BEGIN SELECT RAISE(ABORT, '{t} derive from the batch record: rows are only added'); END;"""
    for t in DERIVED
)
_JOURNAL_KEYS = ("journal", "step", "key", "ref")


def _with_journal_keys(
    text: str, data: dict[str, Any], row_id: int, step_id: int | None, key: str, ref: int | None
) -> str:
    """The JSON of a journal row's record entry, ``{**data, "journal": row_id, "step":
    step_id, "key": key, "ref": ref}``, from ``text``, the JSON of ``data``: an action's
    intent (a kilobyte of floats) is encoded once, not again with the row's keys."""
    if any(k in data for k in _JOURNAL_KEYS):  # the row's keys replace the data's own
        return DATA_JSON.encode(
            {**data, "journal": row_id, "step": step_id, "key": key, "ref": ref}
        )
    more = (
        f'"journal": {int(row_id)}, "step": {"null" if step_id is None else int(step_id)}, '
        f'"key": {DATA_JSON.encode(key)}, "ref": {"null" if ref is None else int(ref)}'
    )
    return "{" + more + "}" if text == "{}" else f"{text[:-1]}, {more}}}"


# events after which the record's head is anchored outside the store
ANCHOR_EVENTS = frozenset({"harvested", "qc_result", "signature", "campaign_finished"})


class VesselRecord(BaseModel):
    """One culture vessel (a well, a flask) and where it came from.

    ``parents`` are the vessels whose cells were pooled to seed this one (empty for
    a vessel seeded from a vial or a suspension).
    """

    id: str
    labware: str
    plate: str = ""
    location: str
    passage: int = Field(ge=0)
    parents: list[str] = Field(default_factory=list)
    area_cm2: float = Field(gt=0)
    created_at: datetime
    state: str = "active"


class Measurement(BaseModel):
    vessel_id: str | None
    kind: str
    value: float
    unit: str
    time: datetime
    source: str


class Event(BaseModel):
    time: datetime
    kind: str
    actor: str
    vessel_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


STORE_FILE = "workcell.db"  # the store's file in a run folder


def store_path(run_dir: Path | str | None, new: bool = False) -> str:
    """The store of a run folder (created if need be), or ``:memory:`` without one.

    ``new``: the caller starts a new record (a dry-run, the growth demo) and must not
    write into a folder that already holds one (a campaign's batch record).
    """
    if run_dir is None:
        return ":memory:"
    folder = Path(run_dir)
    if folder.exists() and not folder.is_dir():
        raise WorkcellError(f"run folder {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WorkcellError(f"cannot make run folder {folder}: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WorkcellError(f"run folder {folder} is not writable")
    path = folder / STORE_FILE
    if new and path.exists():
        raise WorkcellError(
            f"run folder {folder} already holds a batch record ({path}); "
            "a dry-run starts a new record: give it a new folder"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise WorkcellError(f"the batch record {path} is not writable")
    return str(path)


# Observers of every event and measurement this process writes (the Prefect flows
# narrate the lab work from them in the run's log). An observer only reads.
Observer = Callable[["Event | Measurement"], None]
_observers: list[Observer] = []


@contextlib.contextmanager
def observed(observer: Observer) -> Iterator[None]:
    """Call ``observer`` with each event and measurement written while inside."""
    _observers.append(observer)
    try:
        yield
    finally:
        _observers.remove(observer)


def _notify(item: Event | Measurement) -> None:
    for observer in list(_observers):
        observer(item)


# another process's step may hold the write lock for the whole of its step
BUSY_TIMEOUT_S = 120.0


class Store:
    """Vessels, measurements and events of one run.

    ``durable``: every commit waits until it is on the disk (SQLite
    ``synchronous=FULL``), so a power cut loses no journal entry: what a workcell
    with real instruments needs. A dry-run's store (every device simulated) uses
    ``OFF``, as the simulated lab's own file does: a commit is in the operating
    system's hands at once, so it survives the process being killed, which is all a
    simulated lab can suffer, and nothing waits for the disk (``NORMAL`` still did,
    at every WAL checkpoint: a quarter of a journal row's cost). A power cut may
    lose or damage a dry-run's last writes, as it may the simulated lab's; the
    dry-run is run again.
    """

    def __init__(
        self, path: str | Path = ":memory:", read_only: bool = False, durable: bool = True
    ) -> None:
        self.path = str(path)
        self.read_only = read_only
        self._depth = 0
        self._reading = False  # inside ``snapshot()``
        self._pending_anchor: list[str] = []
        self._wrote = False  # this connection committed something (close anchors it)
        self._head_file: Path | None = None
        self._memo: dict[str, tuple[Any, Any]] = {}  # name: (version, value)
        if read_only:
            self._db = _connect_read_only(Path(self.path))
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        self._db.row_factory = sqlite3.Row
        try:
            if not read_only:
                self._db.execute("PRAGMA foreign_keys = ON")
                if self.path != ":memory:":
                    self._db.execute("PRAGMA journal_mode = WAL")
                    self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")
                self._db.executescript(SCHEMA + DERIVED_TRIGGERS)
            self.record = BatchRecord(self._db, create=not read_only)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise WorkcellError(f"{self.path} is not a usable workcell store: {err}") from None
        head = self.head_file
        if not read_only and head is not None and not head.exists() and not self.record.head()[0]:
            # a new record: anchored empty, so a store with entries and no anchor file
            # means the file was removed, while a crash before the first step is fine
            anchor.append(head, 0, GENESIS, "store created")

    def close(self) -> None:
        """Close, anchoring first whatever this connection wrote since the last anchor (a
        dry-run, a tool that wrote without a session): no store is left with an
        unanchored tail, and a process that only looked writes nothing."""
        if self._wrote and self.head_file is not None and not self._depth:
            try:
                last = self._last_anchor()
                if self.record.head()[0] > (last.entries if last else 0):
                    self.anchor("store closed")
            except (sqlite3.Error, WorkcellError):
                pass  # a damaged store is verify's to report, not close's
        self._db.close()

    def _last_anchor(self) -> anchor.Anchor | None:
        return anchor.last(self.head_file) if self.head_file is not None else None

    @property
    def head_file(self) -> Path | None:
        """The anchors of this store (None for a store in memory)."""
        if self._head_file is None and self.path != ":memory:":
            self._head_file = anchor.head_file(self.path)
        return self._head_file

    def anchor(self, reason: str) -> None:
        """Anchor the record's head beside the store once what is written is committed."""
        self._pending_anchor.append(reason)
        if not self._depth:
            self._write_anchor()

    def _write_anchor(self) -> None:
        reasons, self._pending_anchor = self._pending_anchor, []
        path = self.head_file
        if path is None or self.read_only or not reasons:
            return
        entries, hash_ = self.record.head()
        last = self._last_anchor()
        if last is not None and (
            last.entries > entries or self.record.hash_at(last.entries) != last.hash
        ):
            return  # the record no longer holds what was anchored: never bless that
        if entries and (last is None or last.entries != entries):
            anchor.append(path, entries, hash_, "; ".join(dict.fromkeys(reasons)))

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """A write: its own transaction, or part of the enclosing ``transaction()``."""
        if self.read_only:
            raise WorkcellError(f"the store {self.path} is open read-only")
        if self._reading:
            raise WorkcellError(f"a write to {self.path} inside a read snapshot")
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            yield
            self._db.commit()
            self._wrote = True
        except BaseException:
            self._db.rollback()
            self._pending_anchor.clear()
            raise
        finally:
            self._depth = 0
        self._write_anchor()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that all see one state of the file (a read transaction: in WAL mode its
        first read fixes what the rest see). Why: the release and ``workcell verify``
        compare the record with the tables it wrote, in several reads; another process
        (a signature from the command line, a flow run) may commit between two of them,
        and a check that read the record before and the tables after would report a row
        no entry wrote. Inside ``transaction()`` nothing more is begun (a rollback here
        would undo its writes): once it has written, its view is fixed already; before
        its first write, reads there are not isolated."""
        if self._reading or self._depth or self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        self._reading = True  # a write now would end the snapshot: ``_tx`` refuses it
        try:
            yield
        finally:
            self._reading = False
            self._db.rollback()

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Group writes: all of them land together, or (on a crash) none of them."""
        return self._tx()

    # --- checkpoints of the simulated world ---------------------------------------

    def save_checkpoint(
        self,
        data: dict[str, Any],
        changed: Collection[str] | None = None,
        base_seq: int = 0,
    ) -> int:
        """Replace the checkpoint; returns its sequence number (one more than the last).

        Each of ``data["resources"]`` is a row of its own (``checkpoint_parts``): with
        ``changed``, only those rows are written and the others are kept as they are,
        which holds only while the store's checkpoint is still ``base_seq`` (the one
        the caller's states were saved as); otherwise every row is written.
        """
        resources: dict[str, Any] = data.get("resources", {})
        header = {k: v for k, v in data.items() if k != "resources"} | {"parts": list(resources)}
        with self._tx():
            seq = self.checkpoint_seq()
            if changed is None or not base_seq or seq != base_seq:
                self._db.execute("DELETE FROM checkpoint_parts")
                changed = resources.keys()
            else:
                self._db.execute(
                    "DELETE FROM checkpoint_parts WHERE name NOT IN"
                    " (SELECT value FROM json_each(?))",
                    (json.dumps(list(resources)),),
                )
            self._db.executemany(
                "INSERT OR REPLACE INTO checkpoint_parts (name, data) VALUES (?, ?)",
                [(n, json.dumps(resources[n])) for n in changed if n in resources],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO checkpoint (id, seq, data) VALUES (1, ?, ?)",
                (seq + 1, json.dumps(header)),
            )
        return seq + 1

    def checkpoint_seq(self) -> int:
        """Which checkpoint the store holds (0: none); another process may have moved it on."""
        row = self._db.execute("SELECT seq FROM checkpoint WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def checkpoint(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM checkpoint WHERE id = 1").fetchone()
        if row is None:
            return None
        data: dict[str, Any] = json.loads(row[0])
        names = data.pop("parts", None)
        if names is not None:  # the resources in rows of their own, in the order saved
            rows = dict(self._db.execute("SELECT name, data FROM checkpoint_parts").fetchall())
            data["resources"] = {n: json.loads(rows[n]) for n in names}
        return data

    # --- vessels ------------------------------------------------------------------

    def add_vessel(self, v: VesselRecord) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO vessels (id, labware, plate, location, passage, area_cm2,"
                " created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    v.id,
                    v.labware,
                    v.plate,
                    v.location,
                    v.passage,
                    v.area_cm2,
                    v.created_at.isoformat(),
                    v.state,
                ),
            )
            self._db.executemany(
                "INSERT INTO lineage (child_id, parent_id) VALUES (?, ?)",
                [(v.id, p) for p in v.parents],
            )
            self.record.append(
                "vessel",
                "vessel_created",
                "workcell",
                v.created_at,
                v.id,
                v.model_dump(mode="json", exclude={"id"}),
            )

    def _record(self, row: sqlite3.Row) -> VesselRecord:
        parents = self._db.execute(
            "SELECT parent_id FROM lineage WHERE child_id = ? ORDER BY parent_id", (row["id"],)
        ).fetchall()
        return VesselRecord.model_validate({**dict(row), "parents": [p[0] for p in parents]})

    def vessel(self, vessel_id: str) -> VesselRecord | None:
        row = self._db.execute("SELECT * FROM vessels_now WHERE id = ?", (vessel_id,)).fetchone()
        return self._record(row) if row else None

    def children(self, vessel_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT child_id FROM lineage WHERE parent_id = ? ORDER BY child_id", (vessel_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def _known(self, vessel_ids: list[str]) -> list[str]:
        """The ids that are vessels (a plate's empty wells are not), in the order given."""
        marks = ", ".join("?" for _ in vessel_ids)
        rows = self._db.execute(f"SELECT id FROM vessels WHERE id IN ({marks})", vessel_ids)
        known = {r[0] for r in rows}
        return [v for v in vessel_ids if v in known]

    def set_state(self, vessel_ids: list[str], state: str, time: datetime) -> None:
        """A new state for vessels: a row in ``vessel_changes`` and an entry each."""
        with self._tx():
            ids = self._known(vessel_ids)
            self._db.executemany(
                "INSERT INTO vessel_changes (vessel_id, state) VALUES (?, ?)",
                [(v, state) for v in ids],
            )
            for v in ids:
                self.record.append("vessel", "vessel_state", "workcell", time, v, {"state": state})

    def vessels(self, state: str | None = None, plate: str | None = None) -> list[VesselRecord]:
        """Every vessel, or those in ``state`` and on ``plate``, oldest first (the plate is
        matched first, so only its vessels' states are looked up)."""
        where = [(c, v) for c, v in (("plate", plate), ("state", state)) if v is not None]
        sql = "SELECT * FROM vessels_now"
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
        args = tuple(v for _, v in where)
        rows = self._db.execute(sql + " ORDER BY created_at, id", args).fetchall()
        # each vessel's parents as one JSON array: a pooled vessel has dozens, and a row
        # per parent costs three times as much (sorted here as ORDER BY parent_id would)
        lineage_sql = "SELECT child_id, json_group_array(parent_id) FROM lineage"
        lineage_args: tuple[str, ...] = ()
        if where:
            among, lineage_args = self._among("child_id", [r["id"] for r in rows])
            lineage_sql += f" WHERE {among}"
        parents = {
            child: sorted(json.loads(of))
            for child, of in self._db.execute(lineage_sql + " GROUP BY child_id", lineage_args)
        }
        return [
            VesselRecord.model_validate({**dict(r), "parents": parents.get(r["id"], [])})
            for r in rows
        ]

    def version(
        self,
        tables: tuple[str, ...] = (),
        events: tuple[str, ...] = (),
        measurements: tuple[str, ...] = (),
    ) -> tuple[int, ...]:
        """Row counts of whole tables and of some kinds of events and measurements: as
        rows are only ever added, what is derived from those rows alone is the same
        while these are (``memo``)."""
        parts = [f"(SELECT COUNT(*) FROM {t})" for t in tables]
        args: list[str] = []
        if events:
            parts.append(
                f"(SELECT COUNT(*) FROM events WHERE kind IN ({', '.join('?' * len(events))}))"
            )
            args += events
        if measurements:
            parts.append(
                "(SELECT COUNT(*) FROM measurements"
                f" WHERE kind IN ({', '.join('?' * len(measurements))}))"
            )
            args += measurements
        return tuple(
            int(n) for n in self._db.execute(f"SELECT {', '.join(parts)}", args).fetchone()
        )

    def memo(self, name: str, version: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, or its value kept from the last call at the same ``version``.

        Not inside a transaction: rows it may roll back could be counted in ``version``."""
        if self._depth:
            return compute()
        kept = self._memo.get(name)
        if kept is not None and kept[0] == version:
            return kept[1]
        value = compute()
        self._memo[name] = (version, value)
        return value

    def plates_and_passages(self) -> list[tuple[str, int]]:
        """(plate, passage) of every vessel: what a campaign decision needs, cheaply."""
        rows = self._db.execute("SELECT plate, passage FROM vessels").fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def first_event_time(self, kind: str) -> datetime | None:
        """The time of the first event of ``kind`` written (None: there is none yet)."""
        row = self._db.execute(
            "SELECT time FROM events WHERE kind = ? ORDER BY id LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def latest_event_time(self) -> datetime | None:
        """The latest time any event carries (None: no events): times compared as times,
        without reading every event's data."""
        rows = self._db.execute("SELECT DISTINCT time FROM events").fetchall()
        return max((datetime.fromisoformat(r[0]) for r in rows), default=None)

    def count_events(self, kind: str) -> int:
        """How many events of ``kind`` were written (without reading them)."""
        row = self._db.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    @staticmethod
    def _among(column: str, values: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
        """SQL restricting ``column`` to ``values`` (None: any value but NULL), and its
        argument: the list as one JSON parameter, however long."""
        if values is None:
            return f"{column} IS NOT NULL", ()
        return f"{column} IN (SELECT value FROM json_each(?))", (json.dumps(list(values)),)

    def last_event_times(
        self, kind: str, vessels: Collection[str] | None = None
    ) -> dict[str, datetime]:
        """Per vessel (of ``vessels``, or any), the time of its latest event of ``kind`` (one
        query, not every event)."""
        where, args = self._among("vessel_id", vessels)
        rows = self._db.execute(
            f"SELECT vessel_id, MAX(time) FROM events WHERE kind = ? AND {where}"
            " GROUP BY vessel_id",
            (kind, *args),
        ).fetchall()
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows}

    def last_values(
        self, kind: str, vessels: Collection[str] | None = None
    ) -> dict[str, tuple[datetime, float]]:
        """Per vessel (of ``vessels``, or any), (time, value) of its latest measurement of
        ``kind``, in one query.

        SQLite takes the bare column ``value`` from the row holding ``MAX(time)``.
        """
        where, args = self._among("vessel_id", vessels)
        rows = self._db.execute(
            "SELECT vessel_id, MAX(time), value FROM measurements"
            f" WHERE kind = ? AND {where} GROUP BY vessel_id",
            (kind, *args),
        ).fetchall()
        return {r[0]: (datetime.fromisoformat(r[1]), float(r[2])) for r in rows}

    def values_by_vessel(self, kind: str) -> dict[str, float]:
        """Per vessel, the value of its latest measurement of ``kind`` (the last in time
        order, as ``measurements`` lists them), without building a record per row."""
        rows = self._db.execute(
            "SELECT vessel_id, value FROM measurements WHERE kind = ? AND vessel_id IS NOT NULL"
            " ORDER BY time, id",
            (kind,),
        ).fetchall()
        return {r[0]: float(r[1]) for r in rows}

    def last_value(self, kind: str) -> float | None:
        """The value of the latest measurement of ``kind`` (of any vessel or none)."""
        row = self._db.execute(
            "SELECT value FROM measurements WHERE kind = ? ORDER BY time DESC, id DESC LIMIT 1",
            (kind,),
        ).fetchone()
        return None if row is None else float(row[0])

    def move_vessels(self, vessel_ids: list[str], location: str, time: datetime) -> None:
        """Vessels (of those given) now at ``location``: a row and an entry each."""
        with self._tx():
            ids = self._known(vessel_ids)
            self._db.executemany(
                "INSERT INTO vessel_changes (vessel_id, location) VALUES (?, ?)",
                [(v, location) for v in ids],
            )
            for v in ids:
                self.record.append(
                    "vessel", "vessel_moved", "workcell", time, v, {"location": location}
                )

    # --- measurements and events -----------------------------------------------------

    def add_measurement(self, m: Measurement) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO measurements (vessel_id, kind, value, unit, time, source)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (m.vessel_id, m.kind, m.value, m.unit, m.time.isoformat(), m.source),
            )
            self.record.append(
                "measurement",
                m.kind,
                m.source,
                m.time,
                m.vessel_id,
                {"value": m.value, "unit": m.unit},
            )
        _notify(m)

    def measurements(
        self, vessel_id: str | None = None, kind: str | None = None
    ) -> list[Measurement]:
        sql, args = "SELECT vessel_id, kind, value, unit, time, source FROM measurements", []
        where = []
        if vessel_id is not None:
            where.append("vessel_id = ?")
            args.append(vessel_id)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql + " ORDER BY time, id", args).fetchall()
        return [Measurement.model_validate(dict(r)) for r in rows]

    def add_event(self, e: Event) -> None:
        with self._tx():
            self._insert_event(e)
            if e.kind in ANCHOR_EVENTS:
                self.anchor(e.kind)
        _notify(e)

    def add_device_action(
        self, time: datetime, device: str, action: str, detail: dict[str, Any]
    ) -> None:
        """A device action, into the batch record only (the action log keeps the rest)."""
        with self._tx():
            self.record.append("device", action, device, time, None, detail)

    # --- the action journal (workcell/journal.py) ------------------------------------------

    def add_journal(
        self,
        step_id: int | None,
        kind: str,
        key: str,
        time: datetime,
        data: dict[str, Any],
        ref: int | None = None,
        record: tuple[str, str, str, str | None] | None = None,
    ) -> int:
        """One journal row, and its batch-record entry, in its own transaction.

        ``record`` is (type, kind, actor, vessel) of the entry; by default a
        ``journal`` entry of ``kind``. Returns the row's id.
        """
        text = DATA_JSON.encode(data)
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO journal (step_id, kind, key, ref, time, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (step_id, kind, key, ref, time.isoformat(), text),
            )
            row_id = int(cur.lastrowid or 0)
            type_, rkind, actor, vessel = record or ("journal", kind, "workcell", None)
            self.record.append(
                type_,
                rkind,
                actor,
                time,
                vessel,
                data_json=_with_journal_keys(text, data, row_id, step_id, key, ref),
            )
        return row_id

    def journal(
        self, step_id: int | None = None, since: int = 0, kinds: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Journal rows (of one step, or all after ``since``), oldest first."""
        sql = "SELECT id, step_id, kind, key, ref, time, data FROM journal WHERE id > ?"
        args: list[Any] = [since]
        if step_id is not None:
            sql += " AND step_id = ?"
            args.append(step_id)
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            args.extend(kinds)
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            {
                "id": r[0],
                "step_id": r[1],
                "kind": r[2],
                "key": r[3],
                "ref": r[4],
                "time": datetime.fromisoformat(r[5]),
                "data": json.loads(r[6]),
            }
            for r in rows
        ]

    def journal_has(self, step_id: int, kind: str) -> bool:
        """Whether a step's journal has a row of ``kind``, without reading its rows."""
        row = self._db.execute(
            "SELECT 1 FROM journal WHERE step_id = ? AND kind = ? LIMIT 1", (step_id, kind)
        ).fetchone()
        return row is not None

    def last_journal_id(self) -> int:
        row = self._db.execute("SELECT MAX(id) FROM journal").fetchone()
        return int(row[0] or 0)

    def add_event_id(self, e: Event) -> int:
        """``add_event`` that returns the event's id (a step's id is its start event's)."""
        with self._tx():
            return self._insert_event(e)

    def _insert_event(self, e: Event) -> int:
        """The event's row and its record entry (in the caller's transaction); its id."""
        text = DATA_JSON.encode(e.data)  # once, for the row and the entry
        cur = self._db.execute(
            "INSERT INTO events (time, kind, actor, vessel_id, data) VALUES (?, ?, ?, ?, ?)",
            (e.time.isoformat(), e.kind, e.actor, e.vessel_id, text),
        )
        self.record.append("event", e.kind, e.actor, e.time, e.vessel_id, data_json=text)
        return int(cur.lastrowid or 0)

    def events_with_ids(self, kind: str) -> list[tuple[int, Event]]:
        rows = self._db.execute(
            "SELECT id, time, kind, actor, vessel_id, data FROM events WHERE kind = ? ORDER BY id",
            (kind,),
        ).fetchall()
        return [
            (
                int(r["id"]),
                Event(
                    time=r["time"],
                    kind=r["kind"],
                    actor=r["actor"],
                    vessel_id=r["vessel_id"],
                    data=json.loads(r["data"]),
                ),
            )
            for r in rows
        ]

    def events(self, kind: str | tuple[str, ...] | None = None) -> list[Event]:
        """Events in the order they were written; of one kind, or of any of several."""
        sql, args = "SELECT time, kind, actor, vessel_id, data FROM events", tuple[str, ...]()
        if isinstance(kind, str):
            sql, args = sql + " WHERE kind = ?", (kind,)
        elif kind is not None:
            sql, args = sql + f" WHERE kind IN ({', '.join('?' * len(kind))})", kind
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            Event(
                time=r["time"],
                kind=r["kind"],
                actor=r["actor"],
                vessel_id=r["vessel_id"],
                data=json.loads(r["data"]),
            )
            for r in rows
        ]

    # --- checks ------------------------------------------------------------------------

    def sqlite_check(self, quick: bool = False) -> list[str]:
        """SQLite's own check of the file's pages and indexes: ``["ok"]`` when sound."""
        pragma = "quick_check" if quick else "integrity_check"
        return [str(r[0]) for r in self._db.execute(f"PRAGMA {pragma}")]

    def unreadable_tables(self) -> list[str]:
        """Where a damaged file is: each table (and its indexes) that cannot be read through."""
        out = []
        try:
            names = sorted(self.tables())
        except sqlite3.DatabaseError:
            return ["the schema (sqlite_master)"]
        for name in names:
            try:
                self._db.execute(f'SELECT * FROM "{name}"').fetchall()
                for (index,) in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (name,)
                ).fetchall():
                    self._db.execute(f'SELECT count(*) FROM "{name}" INDEXED BY "{index}"')
            except sqlite3.DatabaseError:
                out.append(name)
        return out

    def tables(self) -> set[str]:
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(r[0]) for r in rows}

    # --- the derived tables, rebuilt from the record ---------------------------------

    def derived_mismatches(self) -> list[str]:
        """Every derived table compared row by row with what the record says it holds.

        Returns one line per table that differs, naming the first row and the record
        entry that disagree (empty: every row is the record's).
        """
        expected: dict[str, list[tuple[tuple[Any, ...], int]]] = {t: [] for t in DERIVED}
        problems = []
        for e in self.record.entries():
            try:
                for table, row in _rows_of(e):
                    expected[table].append((row, e.seq))
            except (TypeError, ValueError, KeyError) as x:
                problems.append(f"record entry {e.seq} ({e.kind}) has malformed data: {x}")
        for table in DERIVED:
            got = []
            for r in self._db.execute(
                f"SELECT rowid, {', '.join(COLUMNS[table])} FROM {table} ORDER BY rowid"
            ):
                try:
                    got.append((int(r[0]), _canonical(table, tuple(r[1:]))))
                except (TypeError, ValueError) as x:
                    got.append((int(r[0]), ("malformed", str(x))))
            want = expected[table]
            for i in range(max(len(got), len(want))):
                if i >= len(got):
                    row, seq = want[i]
                    problems.append(f"{table}: record entry {seq} has no row (rows were removed)")
                    break
                rowid, have = got[i]
                if i >= len(want):
                    problems.append(f"{table}: row {rowid} was not written by any record entry")
                    break
                if have != want[i][0]:
                    problems.append(
                        f"{table}: row {rowid} differs from record entry {want[i][1]}: "
                        + _diff(table, have, want[i][0])
                    )
                    break
        return problems


COLUMNS: dict[str, tuple[str, ...]] = {
    "vessels": ("id", "labware", "plate", "location", "passage", "area_cm2", "created_at", "state"),
    "lineage": ("child_id", "parent_id"),
    "vessel_changes": ("vessel_id", "state", "location"),
    "measurements": ("vessel_id", "kind", "value", "unit", "time", "source"),
    "events": ("time", "kind", "actor", "vessel_id", "data"),
}


def _json(text: str) -> str:
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def _canonical(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as compared: times as instants, JSON in one spelling, numbers as floats."""
    if table == "vessels":
        created = datetime.fromisoformat(row[6]).isoformat()
        return (*row[:4], int(row[4]), float(row[5]), created, row[7])
    if table == "measurements":
        return (row[0], row[1], float(row[2]), row[3], datetime.fromisoformat(row[4]), row[5])
    if table == "events":
        return (datetime.fromisoformat(row[0]), *row[1:4], _json(row[4]))
    return row


def _rows_of(e: Entry) -> list[tuple[str, tuple[Any, ...]]]:
    """The derived rows one record entry wrote."""
    d = e.data
    if e.type == "vessel" and e.kind == "vessel_created":
        v = (
            e.vessel_id,
            d.get("labware"),
            d.get("plate", ""),
            d.get("location"),
            d.get("passage"),
            d.get("area_cm2"),
            d.get("created_at"),
            d.get("state"),
        )
        rows = [("vessels", _canonical("vessels", v))]
        return rows + [("lineage", (e.vessel_id, p)) for p in d.get("parents", [])]
    if e.type == "vessel" and e.kind == "vessel_state":
        return [("vessel_changes", (e.vessel_id, d.get("state"), None))]
    if e.type == "vessel" and e.kind == "vessel_moved":
        return [("vessel_changes", (e.vessel_id, None, d.get("location")))]
    if e.type == "measurement":
        m = (
            e.vessel_id,
            e.kind,
            d.get("value"),
            d.get("unit"),
            e.process_time.isoformat(),
            e.actor,
        )
        return [("measurements", _canonical("measurements", m))]
    if e.type == "event":
        ev = (e.process_time.isoformat(), e.kind, e.actor, e.vessel_id, json.dumps(d))
        return [("events", _canonical("events", ev))]
    return []


def _diff(table: str, have: tuple[Any, ...], want: tuple[Any, ...]) -> str:
    """Which columns (and, for JSON data, which keys) differ: table's value vs the record's."""
    if len(have) != len(want):
        return f"the row cannot be read ({_clip(str(have))})"
    out = []
    for column, a, b in zip(COLUMNS[table], have, want, strict=True):
        if a == b:
            continue
        if column == "data":
            da, db = json.loads(a), json.loads(b)
            keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
            out += [f"data.{k} {_clip(repr(da.get(k)))} vs {_clip(repr(db.get(k)))}" for k in keys]
        else:
            out.append(f"{column} {_clip(repr(a))} vs {_clip(repr(b))}")
    return "; ".join(out) + " (table vs record)"


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Open a store without writing anything, even beside it.

    With no write-ahead log pending (a run folder whose last writer closed), the
    file is opened ``immutable``: SQLite then creates no ``-shm``/``-wal`` files and
    needs no write access to the folder (an archive). With a log pending (a writer
    is live, or crashed) the log must be read: ``mode=ro``.
    """
    if not path.is_file():
        raise WorkcellError(f"no store at {path}")
    wal = path.with_name(path.name + "-wal")
    uri = path.resolve().as_uri()
    if wal.exists() and wal.stat().st_size > 0:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as e:
            db.close()
            raise WorkcellError(
                f"{path} has a write-ahead log that was never merged and its folder is "
                f"read-only ({e}): verify a copy of the run folder"
            ) from e
        return db
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
