"""The batch record: append-only, hash-chained, in the run's SQLite store.

Every write the store takes (a vessel created or moved, a measurement, an event
such as a decision, a deviation, a fault or a signature) and, through the action
log, every device action becomes an entry here in the same transaction, so an
entry exists before the action it records is reported done. Each entry holds the
UTC time it was written, the process time (the workcell's clock, simulated in a
dry-run), the actor, the vessel, its data, and the SHA-256 of the previous entry;
its own hash covers all of that. A head row holds the count and the last hash.

Triggers refuse UPDATE and DELETE on the entries; someone who drops them and
edits, deletes, reorders or truncates the file is caught by ``verify``, which
names the first entry that does not match. (Whoever can rewrite every hash and
the head can forge a consistent chain: for that, anchor the head hash outside the
file, as the batch report and the Prefect summary artifact do.)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

GENESIS = "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    seq INTEGER PRIMARY KEY,
    utc TEXT NOT NULL,
    process_time TEXT NOT NULL,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    vessel_id TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS record_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS record_no_update BEFORE UPDATE ON record
BEGIN SELECT RAISE(ABORT, 'the batch record is append-only'); END;
CREATE TRIGGER IF NOT EXISTS record_no_delete BEFORE DELETE ON record
BEGIN SELECT RAISE(ABORT, 'the batch record is append-only'); END;
"""

FIELDS = ("seq", "utc", "process_time", "type", "kind", "actor", "vessel_id", "data", "prev_hash")


class Entry(BaseModel):
    seq: int
    utc: datetime
    process_time: datetime
    type: str  # vessel | measurement | event | device
    kind: str
    actor: str
    vessel_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class Verification(BaseModel):
    ok: bool
    entries: int
    head_hash: str
    first_bad: int | None = None
    problem: str = ""


def entry_hash(row: dict[str, Any]) -> str:
    canonical = json.dumps([row[f] for f in FIELDS], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class BatchRecord:
    """Appends and verifies entries on the store's connection (inside its transactions)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    def _head(self) -> tuple[int, str]:
        row = self._db.execute("SELECT seq, hash FROM record_head WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def append(
        self,
        type_: str,
        kind: str,
        actor: str,
        process_time: datetime,
        vessel_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str:
        """Add an entry; the caller's transaction commits it. Returns its hash."""
        seq, prev = self._head()
        row = {
            "seq": seq + 1,
            "utc": datetime.now(UTC).isoformat(),
            "process_time": process_time.isoformat(),
            "type": type_,
            "kind": kind,
            "actor": actor,
            "vessel_id": vessel_id,
            "data": json.dumps(data or {}, sort_keys=True, default=str),
            "prev_hash": prev,
        }
        h = entry_hash(row)
        self._db.execute(
            f"INSERT INTO record ({', '.join(FIELDS)}, hash) VALUES "
            f"({', '.join('?' for _ in FIELDS)}, ?)",
            (*(row[f] for f in FIELDS), h),
        )
        self._db.execute(
            "INSERT OR REPLACE INTO record_head (id, seq, hash) VALUES (1, ?, ?)", (seq + 1, h)
        )
        return h

    def entries(self, type_: str | None = None) -> list[Entry]:
        sql, args = "SELECT * FROM record", tuple[str, ...]()
        if type_ is not None:
            sql, args = sql + " WHERE type = ?", (type_,)
        rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [Entry.model_validate({**dict(r), "data": json.loads(r["data"])}) for r in rows]

    def verify(self) -> Verification:
        """Walk the chain from the first entry; stop at the first that does not match."""
        head_seq, head_hash = self._head()
        prev, expected = GENESIS, 1
        cur = self._db.execute(f"SELECT {', '.join(FIELDS)}, hash FROM record ORDER BY rowid")
        cur.row_factory = sqlite3.Row
        for r in cur:
            row = dict(r)

            def bad(problem: str, seq: int = row["seq"]) -> Verification:
                return Verification(
                    ok=False, entries=head_seq, head_hash=head_hash, first_bad=seq, problem=problem
                )

            if row["seq"] != expected:
                return bad(
                    f"entry {expected} is missing or out of order (found entry {row['seq']})",
                    expected,
                )
            if row["prev_hash"] != prev:
                return bad(f"entry {row['seq']} does not follow entry {row['seq'] - 1}")
            if entry_hash(row) != row["hash"]:
                return bad(f"entry {row['seq']} ({row['kind']}) was changed after it was written")
            prev, expected = row["hash"], expected + 1
        if expected - 1 != head_seq or prev != head_hash:
            return Verification(
                ok=False,
                entries=head_seq,
                head_hash=head_hash,
                first_bad=expected,
                problem=f"the record ends after entry {expected - 1} but its head says "
                f"{head_seq} entries: entries were removed from the end",
            )
        return Verification(ok=True, entries=head_seq, head_hash=head_hash)
