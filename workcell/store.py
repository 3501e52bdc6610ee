"""The store: SQLite, the source of truth for vessels, measurements and events.

A file in the run folder (``:memory:`` in tests). Campaign decisions are made from
what is here and the clock alone, so a restarted run can resume where it stopped.
Every write is its own transaction: a fault mid-protocol leaves what was recorded
so far intact and consistent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from workcell.errors import WorkcellError
from workcell.record import BatchRecord

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
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_vessel ON measurements(vessel_id, kind, time);
CREATE INDEX IF NOT EXISTS events_vessel ON events(vessel_id, time);
"""


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
    """Vessels, measurements and events of one run."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        self._depth = 0
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(SCHEMA)
            self.record = BatchRecord(self._db)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise WorkcellError(f"{self.path} is not a usable workcell store: {err}") from None

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """A write: its own transaction, or part of the enclosing ``transaction()``."""
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
        except BaseException:
            self._db.rollback()
            raise
        finally:
            self._depth = 0

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Group writes: all of them land together, or (on a crash) none of them."""
        return self._tx()

    # --- checkpoints of the simulated world ---------------------------------------

    def save_checkpoint(self, data: dict[str, Any]) -> int:
        """Replace the checkpoint; returns its sequence number (one more than the last)."""
        with self._tx():
            seq = self.checkpoint_seq() + 1
            self._db.execute(
                "INSERT OR REPLACE INTO checkpoint (id, seq, data) VALUES (1, ?, ?)",
                (seq, json.dumps(data)),
            )
        return seq

    def checkpoint_seq(self) -> int:
        """Which checkpoint the store holds (0: none); another process may have moved it on."""
        row = self._db.execute("SELECT seq FROM checkpoint WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def checkpoint(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM checkpoint WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else None

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
        row = self._db.execute("SELECT * FROM vessels WHERE id = ?", (vessel_id,)).fetchone()
        return self._record(row) if row else None

    def children(self, vessel_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT child_id FROM lineage WHERE parent_id = ? ORDER BY child_id", (vessel_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def set_state(self, vessel_ids: list[str], state: str, time: datetime) -> None:
        with self._tx():
            self._db.executemany(
                "UPDATE vessels SET state = ? WHERE id = ?", [(state, v) for v in vessel_ids]
            )
            for v in vessel_ids:
                self.record.append("vessel", "vessel_state", "workcell", time, v, {"state": state})

    def vessels(self, state: str | None = None) -> list[VesselRecord]:
        sql, args = "SELECT * FROM vessels", tuple[str, ...]()
        if state is not None:
            sql, args = sql + " WHERE state = ?", (state,)
        rows = self._db.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [self._record(r) for r in rows]

    def move_vessels(self, vessel_ids: list[str], location: str, time: datetime) -> None:
        with self._tx():
            self._db.executemany(
                "UPDATE vessels SET location = ? WHERE id = ?", [(location, v) for v in vessel_ids]
            )
            for v in vessel_ids:
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
            self._db.execute(
                "INSERT INTO events (time, kind, actor, vessel_id, data) VALUES (?, ?, ?, ?, ?)",
                (e.time.isoformat(), e.kind, e.actor, e.vessel_id, json.dumps(e.data, default=str)),
            )
            self.record.append("event", e.kind, e.actor, e.time, e.vessel_id, e.data)
        _notify(e)

    def add_device_action(
        self, time: datetime, device: str, action: str, detail: dict[str, Any]
    ) -> None:
        """A device action, into the batch record only (the action log keeps the rest)."""
        with self._tx():
            self.record.append("device", action, device, time, None, detail)

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
