"""The lab's own files: its spec, its state after every request, and its physical log.

One SQLite file (``lab.db``) in the lab's state folder. Each request the lab
carries out ends with one transaction, before the lab replies, that appends the
log rows of what physically happened and either

- a *snapshot*: the whole state, replacing the last one (and emptying the redo
  log), or
- a *redo row*: the request itself (its op and arguments), appended to the redo
  log since the last snapshot.

A simulated lab is deterministic (its random generators are part of its state),
so the last snapshot with the requests after it replayed in order is exactly the
state after the last finished request: a lab killed at any moment restarts in the
state of its last finished action, and nothing a device did is ever rolled back by
the controller (which has its own store). A redo row is a few hundred bytes where a
snapshot is the whole culture (tens of kB mid-campaign), so the lab snapshots only
every ``SNAPSHOT_EVERY`` requests, after a serial or HTTP command (which is not a
link request), on a wall clock (not replayable), and when it stops.

``synchronous=OFF``: a commit is in the operating system's hands at once, so it
survives the lab process being killed (what a simulated lab must survive), without
waiting for the disk. A power cut may lose the lab's last commits: the simulated
lab lives only on the machine that runs it, and only real instruments must survive
that (the controller's store of a hardware workcell commits with ``FULL``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    time TEXT NOT NULL,
    device TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    end_t REAL
);
CREATE TABLE IF NOT EXISTS redo (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, args TEXT NOT NULL);
"""

LAB_DB = "lab.db"
# requests logged between two snapshots of the whole state, at most
SNAPSHOT_EVERY = 2000


class LabStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(log)")}
        if "end_t" not in columns:  # a lab folder from before the rows had their end
            self._db.execute("ALTER TABLE log ADD COLUMN end_t REAL")
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def state(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM state WHERE id = 1").fetchone()
        return None if row is None else json.loads(row[0])

    def redo(self) -> list[tuple[str, dict[str, Any]]]:
        """The requests carried out since the last snapshot, in order (op, args)."""
        rows = self._db.execute("SELECT op, args FROM redo ORDER BY seq").fetchall()
        return [(str(r[0]), json.loads(r[1])) for r in rows]

    def save(self, state: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """A snapshot of the whole state (the redo log emptied), with new log rows."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO state (id, data) VALUES (1, ?)",
                (json.dumps(state, separators=(",", ":")),),
            )
            self._db.execute("DELETE FROM redo")
            self._log(rows)

    def save_request(self, op: str, args_json: str, rows: list[dict[str, Any]]) -> None:
        """A request carried out since the snapshot (its JSON arguments), with new log rows."""
        with self._db:
            self._db.execute("INSERT INTO redo (op, args) VALUES (?, ?)", (op, args_json))
            self._log(rows)

    def _log(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._db.executemany(
                "INSERT INTO log (seq, t, time, device, action, detail, end_t) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r["seq"],
                        r["t"],
                        r["time"],
                        r["device"],
                        r["action"],
                        json.dumps(r["detail"], default=str),
                        r.get("end_t"),
                    )
                    for r in rows
                ],
            )

    def last_log_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM log").fetchone()
        return int(row[0] or 0)


def read_log(path: Path | str, since: int = 0) -> list[dict[str, Any]]:
    """The physical log of a lab folder (or ``lab.db``), read-only: what a judge reads.

    Each row: ``seq``, ``t`` and ``time`` (the lab's clock, in seconds from its start and
    as a date, when the action began), ``device``, ``action``, ``detail`` and ``end_t``
    (when it ended; a row written before the lab kept ends has ``end_t == t``)."""
    p = Path(path)
    if p.is_dir():
        p = p / LAB_DB
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT seq, t, time, device, action, detail, end_t FROM log WHERE seq > ? "
            "ORDER BY seq",
            (since,),
        ).fetchall()
    finally:
        db.close()
    return [
        {
            "seq": r[0],
            "t": r[1],
            "time": r[2],
            "device": r[3],
            "action": r[4],
            "detail": json.loads(r[5]),
            "end_t": r[1] if r[6] is None else r[6],
        }
        for r in rows
    ]
