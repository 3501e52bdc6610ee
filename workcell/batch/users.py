"""Who may enter results and sign: the user registry.

Each user has a user id (the identity: short, lowercase ASCII, compared exactly),
a display name (what a signature shows: Unicode-normalised, one space between
words, no control or invisible characters, at most 80 characters, unique), roles
(operator, analyst, reviewer, QA), and an ed25519 key pair of their own. The
secret never leaves the signer: the registry keeps a scrypt verifier of it and the
private key encrypted (AES-GCM) with a key derived from it, so signing needs both
the user id and the secret, and a verifier needs only the public key.

The registry is a JSON file (``WORKCELL_USERS``, default
``~/.config/msc-workcell/users.json``) written whole and atomically. Its first
user is a QA user who endorses themself; every later user is endorsed (signed)
by a QA user who authenticated to add (or later deactivate) them, each
endorsement leading back to the first user's key, so an account slipped into the
file by hand, or a role granted by editing it, fails ``problems()``. A user who
lost their secret is deactivated (``set_active``), a secret is changed with
``change_secret`` (the key, and so every signature made, stays). Keeping the
file where only account administration can write it, pinning the first user's
key, locking accounts after failed attempts and ageing secrets are the
deployment's job (docs/part11.md).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workcell.errors import WorkcellError

Role = Literal["operator", "analyst", "reviewer", "qa"]
ROLES: tuple[Role, ...] = ("operator", "analyst", "reviewer", "qa")
USER_ID = re.compile(r"[a-z][a-z0-9._-]{1,31}")
NAME_MAX = 80
SECRET_MIN = 10
SCRYPT_N = 2**17  # OWASP's minimum for scrypt (r=8, p=1): ~0.3 s and 128 MiB per try
ENV = "WORKCELL_USERS"
# control, format (zero-width, bidi), surrogate, private-use, unassigned, line/paragraph
_REFUSED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def default_path() -> Path:
    env = os.environ.get(ENV)
    return Path(env) if env else Path.home() / ".config" / "msc-workcell" / "users.json"


def check_user_id(text: str) -> str:
    """A user id as given, or an error: ids are compared exactly, never normalised."""
    if not isinstance(text, str) or not USER_ID.fullmatch(text):
        raise WorkcellError(
            f"{text!r} is not a user id: 2-32 characters, lowercase ASCII letters, digits, "
            "'.', '_' or '-', starting with a letter"
        )
    return text


def normalise_name(text: str) -> str:
    """A display name in one spelling: NFKC, single spaces, nothing invisible."""
    name = unicodedata.normalize("NFKC", text)
    bad = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in _REFUSED})
    if bad:
        raise WorkcellError(
            f"a name may not hold control or invisible characters ({', '.join(bad)})"
        )
    name = " ".join(name.split())
    if not 1 <= len(name) <= NAME_MAX:
        raise WorkcellError(f"a name has 1 to {NAME_MAX} characters (got {len(name)})")
    return name


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _secret(secret: str) -> bytes:
    return unicodedata.normalize("NFKC", secret).encode()


class Kdf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["scrypt"] = "scrypt"
    n: int = Field(ge=2**14)
    r: int = Field(default=8, ge=8)
    p: int = Field(default=1, ge=1)
    salt: str

    def derive(self, secret: str) -> bytes:
        """64 bytes: the first half verifies the secret, the second unlocks the key."""
        kdf = Scrypt(salt=_unb64(self.salt), length=64, n=self.n, r=self.r, p=self.p)
        return kdf.derive(_secret(secret))


class User(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    roles: list[Role]
    active: bool = True
    public_key: str = Field(description="ed25519 public key, raw, base64")
    kdf: Kdf
    verifier: str
    wrapped_key: str = Field(description="nonce + AES-GCM of the ed25519 private key")
    added_by: str
    added_utc: datetime
    endorsed_by: str = Field(description="the QA user who last signed this identity")
    endorsement: str = Field(description="endorsed_by's ed25519 signature over the identity")

    def identity(self) -> bytes:
        """What an endorsement signs: who this is, what they may do, their key."""
        fields = {
            "id": self.id,
            "name": self.name,
            "roles": sorted(self.roles),
            "active": self.active,
            "public_key": self.public_key,
            "added_by": self.added_by,
            "added_utc": self.added_utc.isoformat(),
            "endorsed_by": self.endorsed_by,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def verify(self, payload: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(_unb64(self.public_key)).verify(signature, payload)
        except (InvalidSignature, ValueError):
            return False
        return True


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[User] = []


class Unlocked:
    """A user who gave the right secret: their key can sign, for this call only."""

    def __init__(self, user: User, key: Ed25519PrivateKey) -> None:
        self.user = user
        self._key = key

    def sign(self, payload: bytes) -> str:
        return _b64(self._key.sign(payload))


class UserRegistry:
    """The users of a facility, in one JSON file."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()

    def _load(self) -> _File:
        if not self.path.exists():
            return _File()
        try:
            return _File.model_validate_json(self.path.read_text(encoding="utf-8"))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise WorkcellError(
                f"the user registry {self.path} is not valid: {where}: {first['msg']}"
            ) from e
        except (OSError, ValueError) as e:
            raise WorkcellError(f"the user registry {self.path} cannot be read: {e}") from e

    def users(self) -> list[User]:
        return self._load().users

    def get(self, user_id: str) -> User | None:
        return next((u for u in self.users() if u.id == user_id), None)

    def authenticate(self, user_id: str, secret: str) -> Unlocked:
        """The user unlocked by their secret, or an error that does not say which was wrong."""
        check_user_id(user_id)
        user = self.get(user_id)
        refused = WorkcellError(f"unknown user or wrong secret for {user_id!r}")
        if user is None:
            raise refused
        derived = user.kdf.derive(secret)
        if not hmac.compare_digest(derived[:32], _unb64(user.verifier)):
            raise refused
        if not user.active:
            raise WorkcellError(f"user {user_id!r} is deactivated")
        wrapped = _unb64(user.wrapped_key)
        try:
            raw = AESGCM(derived[32:]).decrypt(wrapped[:12], wrapped[12:], user.id.encode())
        except InvalidTag as e:
            raise WorkcellError(f"the key of {user_id!r} in {self.path} is damaged") from e
        key = Ed25519PrivateKey.from_private_bytes(raw)
        public = key.public_key().public_bytes_raw()
        if _b64(public) != user.public_key:
            raise WorkcellError(f"the key of {user_id!r} in {self.path} does not match")
        return Unlocked(user, key)

    def add(
        self,
        user_id: str,
        name: str,
        roles: list[Role],
        secret: str,
        by: Unlocked | None,
        kdf_n: int = SCRYPT_N,
    ) -> User:
        """A new user, endorsed by an authenticated QA user (the first user endorses
        themself and must be QA)."""
        check_user_id(user_id)
        name = normalise_name(name)
        roles = sorted(set(roles))  # type: ignore[assignment]
        if not roles or any(r not in ROLES for r in roles):
            raise WorkcellError(f"roles are one or more of {', '.join(ROLES)}")
        if len(secret) < SECRET_MIN:
            raise WorkcellError(f"a secret has at least {SECRET_MIN} characters")
        data = self._load()
        if any(u.id == user_id for u in data.users):
            raise WorkcellError(f"user id {user_id!r} is taken (ids are never reused)")
        if any(u.name.casefold() == name.casefold() for u in data.users):
            raise WorkcellError(f"another user is already shown as {name!r}: names must differ")
        if data.users:
            if by is None:
                raise WorkcellError("adding a user needs a QA user's id and secret")
            if "qa" not in by.user.roles or self.get(by.user.id) is None:
                raise WorkcellError(f"{by.user.id!r} is not a QA user of this registry")
        elif "qa" not in roles:
            raise WorkcellError("the first user of a registry is a QA user (they add the others)")
        key = Ed25519PrivateKey.generate()
        kdf = Kdf(n=kdf_n, salt=_b64(os.urandom(16)))
        derived = kdf.derive(secret)
        nonce = os.urandom(12)
        wrapped = nonce + AESGCM(derived[32:]).encrypt(
            nonce, key.private_bytes_raw(), user_id.encode()
        )
        user = User(
            id=user_id,
            name=name,
            roles=roles,
            public_key=_b64(key.public_key().public_bytes_raw()),
            kdf=kdf,
            verifier=_b64(derived[:32]),
            wrapped_key=_b64(wrapped),
            added_by=by.user.id if by is not None else user_id,
            added_utc=datetime.now(UTC).replace(microsecond=0),
            endorsed_by=by.user.id if by is not None else user_id,
            endorsement="",
        )
        signer = by if by is not None else Unlocked(user, key)
        user.endorsement = signer.sign(user.identity())
        data.users.append(user)
        self._save(data)
        return user

    def _save(self, data: _File) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _qa(self, by: Unlocked) -> None:
        current = self.get(by.user.id)
        if current is None or "qa" not in current.roles or not current.active:
            raise WorkcellError(f"{by.user.id!r} is not an active QA user of this registry")

    def set_active(self, user_id: str, active: bool, by: Unlocked) -> User:
        """Deactivate (a lost secret, a person who left) or reactivate a user; a QA user
        signs the change. Signatures made before stay valid."""
        self._qa(by)
        data = self._load()
        user = next((u for u in data.users if u.id == user_id), None)
        if user is None:
            raise WorkcellError(f"no user {user_id!r} in {self.path}")
        user.active = active
        user.endorsed_by = by.user.id
        user.endorsement = by.sign(user.identity())
        self._save(data)
        return user

    def change_secret(self, user_id: str, old: str, new: str, kdf_n: int = SCRYPT_N) -> None:
        """A new secret for the same key (signatures made before stay valid)."""
        unlocked = self.authenticate(user_id, old)
        if len(new) < SECRET_MIN:
            raise WorkcellError(f"a secret has at least {SECRET_MIN} characters")
        data = self._load()
        user = next(u for u in data.users if u.id == user_id)
        kdf = Kdf(n=kdf_n, salt=_b64(os.urandom(16)))
        derived = kdf.derive(new)
        nonce = os.urandom(12)
        raw = unlocked._key.private_bytes_raw()
        user.kdf = kdf
        user.verifier = _b64(derived[:32])
        user.wrapped_key = _b64(nonce + AESGCM(derived[32:]).encrypt(nonce, raw, user.id.encode()))
        self._save(data)

    def problems(self) -> list[str]:
        """Users whose endorsement does not hold: added by hand, or edited since. Every
        endorsement leads, QA user by QA user, back to the registry's first user."""
        users = self.users()
        by_id = {u.id: u for u in users}
        root = users[0].id if users else None  # the trust anchor: the first user's key

        def trusted(uid: str, seen: frozenset[str]) -> bool:
            u = by_id.get(uid)
            if u is None or uid in seen or "qa" not in u.roles:
                return False
            if uid == root:
                return True
            e = by_id.get(u.endorsed_by)
            return (
                e is not None
                and trusted(e.id, seen | {uid})
                and e.verify(u.identity(), _unb64(u.endorsement))
            )

        out = []
        for u in users:
            endorser = by_id.get(u.endorsed_by)
            if endorser is None or not trusted(endorser.id, frozenset()):
                out.append(f"user {u.id!r} was not endorsed by a QA user of the registry")
            elif not endorser.verify(u.identity(), _unb64(u.endorsement)):
                out.append(f"user {u.id!r} was changed after {u.endorsed_by!r} endorsed it")
        return out
