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
names the first entry that does not match. Whoever can rewrite every hash and the
head can forge a consistent chain, or delete it whole: ``check_anchors`` compares
the chain with heads anchored outside the store (``workcell.anchor``), and the
full check of a run folder (``workcell.batch.integrity``) adds SQLite's own
integrity check, the derived tables and the signatures.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from workcell.anchor import Anchor

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
_PREV, _KIND = FIELDS.index("prev_hash"), FIELDS.index("kind")


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


# json.dumps(values, separators=(",", ":"), sort_keys=True), without a new encoder per
# entry: verifying a 70 kg campaign's record hashes some 57,000 entries
_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
# json.dumps(data, default=str): an entry's data, keys in the order written (the hash
# covers the stored text); one encoder for all, shared with the store's own tables
DATA_JSON = json.JSONEncoder(default=str)
_INSERT = (
    f"INSERT INTO record ({', '.join(FIELDS)}, hash) VALUES ({', '.join('?' * len(FIELDS))}, ?)"
)
_SET_HEAD = "INSERT OR REPLACE INTO record_head (id, seq, hash) VALUES (1, ?, ?)"


def _values_hash(values: list[Any] | tuple[Any, ...]) -> str:
    """The hash of an entry's ``FIELDS`` values, in that order."""
    return hashlib.sha256(_CANONICAL.encode(list(values)).encode()).hexdigest()


def entry_hash(row: dict[str, Any]) -> str:
    return _values_hash([row[f] for f in FIELDS])


class BatchRecord:
    """Appends and verifies entries on the store's connection (inside its transactions)."""

    def __init__(self, db: sqlite3.Connection, create: bool = True) -> None:
        self._db = db
        if create:
            db.executescript(SCHEMA)

    def head(self) -> tuple[int, str]:
        """(entries, hash of the last entry) as the head row says."""
        return self._head()

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of entry ``seq`` (None if there is no such entry; entry 0 is
        the empty record's head, ``GENESIS``)."""
        if seq == 0:
            return GENESIS
        row = self._db.execute("SELECT hash FROM record WHERE seq = ?", (seq,)).fetchone()
        return str(row[0]) if row else None

    def record_id(self) -> str:
        """The record's identity: the hash of its first entry (signatures name it)."""
        return self.hash_at(1) or GENESIS

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
        data_json: str | None = None,
    ) -> str:
        """Add an entry; the caller's transaction commits it. Returns its hash.

        ``data_json``: the data already encoded by ``DATA_JSON`` (the store encodes an
        event's or a journal row's data once, for its own table and the entry)."""
        seq, prev = self._head()
        values = (  # FIELDS, in order
            seq + 1,
            datetime.now(UTC).isoformat(),
            process_time.isoformat(),
            type_,
            kind,
            actor,
            vessel_id,
            DATA_JSON.encode(data or {}) if data_json is None else data_json,
            prev,
        )
        h = _values_hash(values)
        self._db.execute(_INSERT, (*values, h))
        self._db.execute(_SET_HEAD, (seq + 1, h))
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
        cur.row_factory = None  # plain tuples: FIELDS in order, then the stored hash

        def bad(problem: str, seq: int) -> Verification:
            return Verification(
                ok=False, entries=head_seq, head_hash=head_hash, first_bad=seq, problem=problem
            )

        for r in cur:
            seq, stored = r[0], r[-1]
            if seq != expected:
                return bad(
                    f"entry {expected} is missing or out of order (found entry {seq})", expected
                )
            if r[_PREV] != prev:
                return bad(f"entry {seq} does not follow entry {seq - 1}", seq)
            if _values_hash(r[:-1]) != stored:
                return bad(f"entry {seq} ({r[_KIND]}) was changed after it was written", seq)
            prev, expected = stored, expected + 1
        if expected == 1:
            return Verification(
                ok=False,
                entries=0,
                head_hash=head_hash,
                first_bad=1,
                problem="the record is empty: it holds no entry"
                + (f" but its head says {head_seq}" if head_seq else ""),
            )
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


def check_anchors(record: BatchRecord, anchors: list[Anchor], source: str) -> list[Verification]:
    """Every anchor the record no longer matches: fewer entries, or a different entry there.

    Entries written after the last anchor are fine (a step in progress); an anchor
    whose entry count went down from the one before it means the anchors were edited.
    """
    entries, head_hash = record.head()
    bad: list[Verification] = []
    last = 0
    for n, a in enumerate(anchors, start=1):
        when = f"anchor {n} in {source} ({a.reason or 'no reason'}, {a.utc:%Y-%m-%d %H:%M:%S} UTC)"
        if a.entries < last:
            problem = f"{when} has {a.entries} entries, fewer than the anchor before it: edited"
            bad.append(
                Verification(
                    ok=False,
                    entries=entries,
                    head_hash=head_hash,
                    first_bad=a.entries + 1,
                    problem=problem,
                )
            )
        last = max(last, a.entries)
        stored = record.hash_at(a.entries) if a.entries else GENESIS
        if stored is None:
            bad.append(
                Verification(
                    ok=False,
                    entries=entries,
                    head_hash=head_hash,
                    first_bad=a.entries,
                    problem=f"{when} says the record had {a.entries} entries; it has {entries}: "
                    "entries were removed, or an older copy of the store was put back",
                )
            )
        elif stored != a.hash:
            bad.append(
                Verification(
                    ok=False,
                    entries=entries,
                    head_hash=head_hash,
                    first_bad=a.entries,
                    problem=f"entry {a.entries} is not the one {when} saw: "
                    "the record up to it was rewritten",
                )
            )
    return bad
