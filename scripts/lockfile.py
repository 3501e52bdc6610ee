"""The lock files a site validates, and the offline check that they match their inputs.

``requirements.lock`` pins every package of the main environment (the
dependencies and the ``test`` extra of ``pyproject.toml``) with its SHA-256
hashes; ``requirements-opentrons.lock`` does the same for the separate Opentrons
environment (``requirements-opentrons.in``). ``make lock`` writes both with
``uv pip compile --generate-hashes`` and then stamps each with a digest of its
inputs; ``make venv`` installs with ``pip install --require-hashes``.

The check needs no network: the stamp must equal the digest of the inputs as they
are now (someone edited ``pyproject.toml`` without ``make lock``), every direct
requirement must be pinned at a version its specifier allows (someone edited the
lock by hand), and every pin must carry a hash.

    python scripts/lockfile.py stamp requirements.lock pyproject.toml
    python scripts/lockfile.py check requirements.lock pyproject.toml
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare venv before the install: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef,assignment]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef,assignment]

STAMP = "# inputs-sha256: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def requirements(inputs: Path) -> list[str]:
    """The direct requirements: pyproject's dependencies and test extra, or a .in file."""
    if inputs.suffix == ".toml":
        project = tomllib.loads(inputs.read_text())["project"]
        reqs = list(project["dependencies"]) + list(
            project.get("optional-dependencies", {}).get("test", [])
        )
        reqs.append(f"python{project.get('requires-python', '')}")
        return reqs
    return [
        line.split("#")[0].strip()
        for line in inputs.read_text().splitlines()
        if line.split("#")[0].strip()
    ]


def digest(inputs: Path) -> str:
    """Order- and spacing-independent digest of the direct requirements."""
    norm = sorted(re.sub(r"\s+", "", r).lower() for r in requirements(inputs))
    return hashlib.sha256("\n".join(norm).encode()).hexdigest()


@dataclass
class Pin:
    version: str
    hashes: int


def pins(lock: Path) -> dict[str, list[Pin]]:
    """Each pinned package (a universal lock may pin one twice under markers)."""
    out: dict[str, list[Pin]] = {}
    current: Pin | None = None
    for line in lock.read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = Pin(m.group(2), 0)
            out.setdefault(canonicalize_name(m.group(1)), []).append(current)
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current.hashes += 1
        elif not line.startswith(" "):
            current = None
    return out


def stamp(lock: Path, inputs: Path) -> None:
    text = "\n".join(x for x in lock.read_text().splitlines() if not x.startswith(STAMP))
    lock.write_text(f"{STAMP}{digest(inputs)} ({inputs.name})\n{text}\n")


def problems(lock: Path, inputs: Path) -> list[str]:
    """Why the lock does not match its inputs (empty: it matches)."""
    if not lock.is_file():
        return [f"{lock} is missing: run `make lock`"]
    out = []
    stamped = next(
        (x[len(STAMP) :].split()[0] for x in lock.read_text().splitlines() if x.startswith(STAMP)),
        None,
    )
    if stamped != digest(inputs):
        out.append(f"{lock} was made from other requirements than {inputs}: run `make lock`")
    locked = pins(lock)
    for text in requirements(inputs):
        req = Requirement(text) if not text.startswith("python") else None
        if req is None:
            continue
        got = locked.get(canonicalize_name(req.name))
        if not got:
            out.append(f"{req.name} is required by {inputs} but not pinned in {lock}")
            continue
        for pin in got:
            if not req.specifier.contains(pin.version, prereleases=True):
                out.append(f"{req.name}=={pin.version} in {lock} is outside {req.specifier}")
    for name, got in locked.items():
        if any(p.hashes == 0 for p in got):
            out.append(f"{name} is pinned in {lock} without a hash")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("stamp", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    lock, inputs = Path(argv[1]), Path(argv[2])
    if argv[0] == "stamp":
        stamp(lock, inputs)
        return 0
    found = problems(lock, inputs)
    for p in found:
        print(f"lock check: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
