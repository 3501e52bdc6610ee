"""Electronic signatures on a batch record: who, what it means, when, and what was signed.

A signature is a statement -- the record it signs (its first entry's hash, the
entry count and the hash of the last entry at that moment), the signer's user id,
printed name and role, the meaning (performed, reviewed, approved) and the UTC
time -- signed with the signer's own ed25519 key, which only their secret unlocks
(``workcell.batch.users``). The statement and its signature become an entry of the
record itself. So a signature cannot be moved to another batch, its meaning or
signer cannot be edited, and the record it signed cannot be rewritten afterwards,
without ``check_signatures`` saying so.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from workcell.batch.users import Role, Unlocked, UserRegistry
from workcell.store import Event, Store

Meaning = Literal["performed", "reviewed", "approved"]
MEANING_ROLE: dict[str, Role] = {"performed": "operator", "reviewed": "reviewer", "approved": "qa"}
KIND = "signature"  # the event kind of a signature in the record


class Statement(BaseModel):
    """What a signer signs (and what a signature shows: 21 CFR 11.50)."""

    model_config = ConfigDict(extra="forbid")

    record_id: str  # hash of the record's first entry
    entries: int  # the record's head when signed ...
    head_hash: str  # ... and the hash of its last entry then
    user_id: str
    name: str
    role: Role
    meaning: Meaning
    utc: datetime
    public_key: str

    def payload(self) -> bytes:
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


class Signature(BaseModel):
    statement: Statement
    signature: str
    seq: int  # the record entry that holds it

    @property
    def user_id(self) -> str:
        return self.statement.user_id

    @property
    def meaning(self) -> Meaning:
        return self.statement.meaning


def sign_record(store: Store, signer: Unlocked, meaning: Meaning) -> Signature:
    """Append ``signer``'s signature of the record as it stands (the caller checks rules)."""
    entries, head_hash = store.record.head()
    user = signer.user
    statement = Statement(
        record_id=store.record.record_id(),
        entries=entries,
        head_hash=head_hash,
        user_id=user.id,
        name=user.name,
        role=MEANING_ROLE[meaning],
        meaning=meaning,
        utc=datetime.now(UTC),
        public_key=user.public_key,
    )
    signature = signer.sign(statement.payload())
    data = {**statement.model_dump(mode="json"), "signature": signature}
    store.add_event(Event(time=statement.utc, kind=KIND, actor=user.id, data=data))
    return Signature(statement=statement, signature=signature, seq=store.record.head()[0])


def read_signatures(store: Store) -> tuple[list[Signature], list[str]]:
    """The signatures in the record, and a problem for each entry that is not one."""
    out, problems = [], []
    for e in store.record.entries("event"):
        if e.kind != KIND:
            continue
        data = dict(e.data)
        signature = data.pop("signature", None)
        try:
            statement = Statement.model_validate(data)
        except ValidationError as x:
            problems.append(f"signature at entry {e.seq} is malformed: {x.errors()[0]['msg']}")
            continue
        if not isinstance(signature, str):
            problems.append(f"signature at entry {e.seq} carries no signature")
            continue
        if e.actor != statement.user_id:
            problems.append(
                f"signature at entry {e.seq}: the entry names {e.actor!r} but "
                f"{statement.user_id!r} signed"
            )
        out.append(Signature(statement=statement, signature=signature, seq=e.seq))
    return out, problems


def _verify(public_key: str, payload: bytes, signature: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def check_signatures(store: Store, registry: UserRegistry | None) -> list[str]:
    """Every signature: signed by its key, the key its signer's, and what it signed unchanged."""
    signatures, problems = read_signatures(store)
    if not signatures:
        return problems
    users = {u.id: u for u in registry.users()} if registry is not None else {}
    if registry is None:
        problems.append("signatures not checked: no user registry to check signers against")
    else:
        problems += [f"user registry {registry.path}: {p}" for p in registry.problems()]
    record_id = store.record.record_id()
    for s in signatures:
        st = s.statement
        who = f"signature at entry {s.seq} ({st.user_id}, {st.meaning})"
        user = users.get(st.user_id)
        if registry is not None and user is None:
            problems.append(f"{who}: {st.user_id!r} is not in the user registry {registry.path}")
        elif user is not None and user.public_key != st.public_key:
            problems.append(f"{who}: not made with {st.user_id!r}'s key in the user registry")
        if not _verify(st.public_key, st.payload(), s.signature):
            problems.append(f"{who}: the signature does not match its statement (edited)")
        if st.record_id != record_id:
            problems.append(f"{who}: it signed another batch record ({st.record_id[:12]}...)")
        elif st.entries >= s.seq:
            problems.append(f"{who}: it claims to sign entry {st.entries}, after itself")
        elif store.record.hash_at(st.entries) != st.head_hash:
            problems.append(
                f"{who}: entry {st.entries} is not the one signed: the record up to it "
                "was rewritten after the signature"
            )
    return problems
