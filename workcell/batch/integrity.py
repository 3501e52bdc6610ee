"""Whether a run's batch record can be trusted, checked every way we know.

``verify_run`` opens a run folder's store read-only (an archive on a read-only
share works) and checks, in order, collecting every problem with where it is:

1. the file: present, not empty, and SQLite's own ``PRAGMA integrity_check``
   (garbage written into the middle of the file, a torn page);
2. the chain: every entry's hash and link, the head row, and not empty;
3. the anchors: the head file beside the store and any anchor from elsewhere (the
   Prefect artifact, a reviewer's copy): the record still holds every anchored
   entry, unchanged (``workcell.anchor``);
4. the derived tables: vessels, lineage, vessel changes, measurements and events
   rebuilt from the record and compared row by row (the release reads them);
5. the signatures: each one's ed25519 signature, its signer in the user registry
   with the same key, and the record it signed still there, unchanged.

The release asks for the same check before every decision (``workcell.batch.release``),
and a session refuses to open a run folder whose anchor says there was a record
that is no longer there (``refuse_damaged``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pydantic import BaseModel

from workcell import anchor
from workcell.anchor import Anchor
from workcell.batch.signatures import check_signatures
from workcell.batch.users import UserRegistry
from workcell.errors import WorkcellError
from workcell.record import check_anchors
from workcell.store import STORE_FILE, Store


class Integrity(BaseModel):
    """The outcome of a full check: ok, or every problem found and where."""

    ok: bool
    entries: int = 0
    head_hash: str = ""
    anchored: int = 0  # entries at the newest anchor beside the store
    problems: list[str] = []

    def line(self) -> str:
        if self.ok:
            return (
                f"record intact: {self.entries} entries, head {self.head_hash} "
                f"(anchored at entry {self.anchored})"
            )
        return "record NOT intact: " + "; ".join(self.problems)


def _failed(problem: str) -> Integrity:
    return Integrity(ok=False, problems=[problem])


def verify_store(
    store: Store,
    registry: UserRegistry | None = None,
    external: list[tuple[str, list[Anchor]]] | None = None,
) -> Integrity:
    """Every check on an open store; ``external`` is [(source, anchors)] from elsewhere."""
    problems: list[str] = []
    # The anchors first, then the store in one snapshot: a writer commits before it
    # anchors, so anchors read before the snapshot never claim more than it holds.
    anchored = 0
    sources = list(external or [])
    head = store.head_file
    try:
        if head is not None:
            if head.is_file():
                beside = anchor.read(head)
                anchored = beside[-1].entries if beside else 0
                sources.insert(0, (str(head.name), beside))
                if not beside:
                    problems.append(f"{head.name} beside the store holds no anchor")
            else:
                problems.append(
                    f"no anchor beside the store ({head.name} is missing): "
                    "the record cannot be checked for removed entries"
                )
        with store.snapshot():
            entries, head_hash = _check(store, registry, sources, problems)
    except sqlite3.DatabaseError as e:
        damaged = store.unreadable_tables()
        where = f" (unreadable: {', '.join(damaged)})" if damaged else ""
        problems.append(f"the store cannot be read: {e}{where}")
        return Integrity(ok=False, problems=problems)
    except WorkcellError as e:
        problems.append(str(e))
        return Integrity(ok=False, problems=problems)
    if entries < 0:  # no record to check anything against
        return Integrity(ok=False, problems=problems)
    return Integrity(
        ok=not problems,
        entries=entries,
        head_hash=head_hash,
        anchored=anchored,
        problems=problems,
    )


def _check(
    store: Store,
    registry: UserRegistry | None,
    sources: list[tuple[str, list[Anchor]]],
    problems: list[str],
) -> tuple[int, str]:
    """The store's own checks (inside one snapshot), appending to ``problems``; the
    record's entries and head hash (entries -1: the store holds no record)."""
    rows = store.sqlite_check()
    if rows != ["ok"]:
        problems.append("SQLite integrity check: " + "; ".join(rows[:5]))
    missing = {"record", "record_head"} - store.tables()
    if missing:
        problems.insert(
            0, f"the store holds no batch record: table {', '.join(sorted(missing))} is gone"
        )
        return -1, ""
    chain = store.record.verify()
    if not chain.ok:
        problems.append(f"at entry {chain.first_bad}: {chain.problem}")
    for source, anchors in sources:
        disagree = check_anchors(store.record, anchors, source)
        if disagree:  # the first says where; the rest only how many
            first = disagree[0]
            more = f" (and {len(disagree) - 1} later anchors)" if len(disagree) > 1 else ""
            problems.append(f"at entry {first.first_bad}: {first.problem}{more}")
    if chain.ok:  # rebuilding from a broken chain would only repeat its problem
        problems += store.derived_mismatches()
        problems += check_signatures(store, registry)
    return chain.entries, chain.head_hash


def verify_run(
    run_dir: Path,
    registry: UserRegistry | None = None,
    external: list[tuple[str, list[Anchor]]] | None = None,
) -> Integrity:
    """The full check of a run folder, opened read-only."""
    path = run_dir / STORE_FILE
    if not path.is_file():
        head = anchor.head_file(path)
        said = ""
        if head.is_file():
            try:
                anchors = anchor.read(head)
                said = f" while {head.name} says it held {anchors[-1].entries} entries"
            except (WorkcellError, IndexError, OSError):
                said = f" while {head.name} is there"
        return _failed(f"no store in {run_dir} (expected {path.name}){said}")
    if path.stat().st_size == 0:
        return _failed(f"{path} is empty (0 bytes): the record is gone")
    try:
        store = Store(path, read_only=True)
    except (sqlite3.DatabaseError, WorkcellError) as e:
        return _failed(f"{path} cannot be opened: {e}")
    try:
        return verify_store(store, registry, external)
    finally:
        store.close()


def refuse_damaged(store_file: Path) -> None:
    """Before a session opens a run folder: refuse if its anchor says there was a record
    that is gone, cut short, replaced or unreadable; a new folder passes.

    This is the quick check (the file, the newest anchored entry, SQLite's quick
    check); the full one is ``verify_run``.
    """
    head = anchor.head_file(store_file)
    newest = anchor.last(head)
    exists = store_file.is_file() and store_file.stat().st_size > 0
    if newest is None:
        if exists:
            store = Store(store_file, read_only=True)
            try:
                entries = _entries(store)
            finally:
                store.close()
            if entries:
                raise WorkcellError(
                    f"{store_file} holds {entries} record entries but no anchor beside it "
                    f"({head.name} is missing): restore it, or verify the run first"
                )
        return
    last = newest
    if last.entries == 0 and not exists:
        return  # a store created and never written: nothing was lost
    where = f"{store_file.parent}: {head.name} says the record held {last.entries} entries"
    if not exists:
        raise WorkcellError(f"{where}, but the store is missing or empty: refusing to start")
    try:
        store = Store(store_file, read_only=True)
        try:
            if store.sqlite_check(quick=True) != ["ok"]:
                raise WorkcellError(f"{where}, but the store is damaged (SQLite quick check)")
            bad = check_anchors(store.record, [last], head.name)
        finally:
            store.close()
    except sqlite3.DatabaseError as e:
        raise WorkcellError(f"{where}, but the store cannot be read: {e}") from e
    if bad:
        raise WorkcellError(f"refusing to start on {store_file.parent}: {bad[0].problem}")


def _entries(store: Store) -> int:
    try:
        return store.record.head()[0]
    except sqlite3.OperationalError:  # no record table at all
        return 0
