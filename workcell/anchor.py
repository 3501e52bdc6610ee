"""The record's head, anchored outside the store.

A hash chain shows that no entry was edited in place, but not that entries were
removed from the end, that the whole record was deleted, or that the store was
swapped for an older copy: a chain of 0 entries is perfectly consistent. So at
every commit point that matters (a step's end, a QC result, a signature, the
harvest) the head of the record -- how many entries and the hash of the last one
-- is appended to ``workcell.head`` beside the store, and the flows publish it as a
Prefect artifact (a copy on another machine). ``verify`` then asks, for every
anchor, that the record still has that many entries and that the anchored entry
still has that hash: a truncated, emptied, rewritten or deleted record no longer
matches what was anchored before.

Whoever can replace the store *and* the head file beside it with an older pair
(a replay) is caught only by an anchor they cannot reach: the Prefect artifact,
or a head a reviewer copied (``workcell record verify --anchor N:HASH``).

The file is JSON lines, appended and fsync'd: one line per anchor, never rewritten.
"""

from __future__ import annotations

import fcntl
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workcell.errors import WorkcellError

HEAD_SUFFIX = ".head"  # workcell.db -> workcell.head, beside it
HEAD_FILE = "workcell.head"  # the anchors of a run folder's store (workcell.db)
_HASH = re.compile(r"[0-9a-f]{64}")


class Anchor(BaseModel):
    """The record's head at one commit point."""

    model_config = ConfigDict(extra="forbid")

    entries: int = Field(ge=0, description="entries in the record")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="hash of the last entry")
    utc: datetime
    reason: str = ""


def head_file(store_file: Path | str) -> Path:
    """Where the anchors of a store live: beside it, named after it (``workcell.head``),
    so two stores in one folder never share one."""
    return Path(store_file).with_suffix(HEAD_SUFFIX)


def append(path: Path, entries: int, hash_: str, reason: str) -> Anchor:
    """Append one anchor and make it durable before returning.

    Writers (a campaign, a CLI signing, a store closed elsewhere) take the file's
    lock, so none sees another's line half written; a line a crash left unfinished
    is cut first.
    """
    anchor = Anchor(entries=entries, hash=hash_, utc=datetime.now(UTC), reason=reason[:500])
    line = (anchor.model_dump_json() + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line
            start = max(0, size - TAIL_BYTES)
            tail = os.pread(fd, size - start, start)
            cut = tail.rfind(b"\n")
            os.ftruncate(fd, start + cut + 1 if cut >= 0 else start)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return anchor


TAIL_BYTES = 8192  # more than one anchor line (reasons are kept short)


def _tail(path: Path) -> tuple[int, bytes]:
    """(offset, bytes) of the end of a file: enough for its last anchor line."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        f.seek(start)
        return start, f.read()


def last(path: Path) -> Anchor | None:
    """The newest anchor, reading only the end of the file."""
    if not path.is_file():
        return None
    start, data = _tail(path)
    lines = data.decode("utf-8", errors="replace").split("\n")
    if start:
        lines = lines[1:]  # the first may be cut
    complete = lines[:-1]  # the text after the last newline is unfinished or empty
    for line in reversed(complete):
        if line.strip():
            try:
                return Anchor.model_validate_json(line)
            except ValidationError as e:
                raise WorkcellError(f"the last anchor in {path} does not parse") from e
    return read(path)[-1] if start and path.stat().st_size > TAIL_BYTES else None


def read(path: Path) -> list[Anchor]:
    """Every anchor in a head file, oldest first; a line that does not parse is an error,
    except a last line cut short by a crash while it was written (it ends in no newline)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(Anchor.model_validate_json(line))
        except ValidationError as e:
            if n == len(lines):  # no newline after it: the write was interrupted
                break
            raise WorkcellError(f"{path} line {n} is not an anchor: {e.errors()[0]['msg']}") from e
    return out


def parse(text: str, reason: str = "given on the command line") -> Anchor:
    """An anchor written as ``ENTRIES:HASH`` (as the report and the artifact show it)."""
    entries, _, hash_ = text.strip().partition(":")
    if not entries.isdigit() or not _HASH.fullmatch(hash_):
        raise WorkcellError(f"{text!r} is not an anchor: expected ENTRIES:HASH (64 hex digits)")
    return Anchor(entries=int(entries), hash=hash_, utc=datetime.now(UTC), reason=reason)
