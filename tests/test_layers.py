"""The house: each folder is one floor and imports run downhill.

The floors, lowest first (``docs/architecture.md`` draws them):

0. ``workcell`` -- the kernel (clock, errors, action log, store, record, locks,
   labware, compute) and ``workcell.batch``
1. ``devices`` -- drivers and front ends
2. ``simulators`` -- the simulated lab (its back ends implement the devices' interfaces)
3. ``workcell.assembly`` -- config, the one factory, the Workcell, sessions
4. ``protocols`` -- unit operations, the campaign, exports
5. ``flows`` -- Prefect
6. ``workcell.cli`` -- the command line, the one room allowed to import upward,
   and only lazily (inside a function), never at module level.

The test reads every module's imports with ``ast`` (no code runs) and fails on an
import from a lower floor to a higher one.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workcell", "devices", "simulators", "protocols", "flows")
ASSEMBLY = 3
CLI = 6
# the entry and the light sub-apps it mounts (typer needs them at import; they too
# reach upward only lazily)
CLI_ENTRY = {"workcell.cli", "workcell.cli.app", "workcell.cli.__main__", "workcell.cli.batch"}


def floor(module: str) -> int | None:
    """The floor of a dotted module name, or None for a module outside the project."""
    parts = module.split(".")
    top, sub = parts[0], parts[1] if len(parts) > 1 else ""
    if top == "workcell":
        return {"assembly": 3, "cli": CLI}.get(sub, 0)
    return {"devices": 1, "simulators": 2, "protocols": 4, "flows": 5}.get(top)


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.Module, package: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in a module."""
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [module] + [f"{module}.{a.name}".lstrip(".") for a in node.names]
        else:
            continue
        for name in names:
            out.append((name, node.lineno, id(node) in top_level))
    return out


def uphill_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            here = floor(module)
            assert here is not None
            is_pkg = path.name == "__init__.py"
            pkg = module if is_pkg else module.rpartition(".")[0]
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for name, line, module_level in _imports(tree, pkg):
                there = floor(name)
                if there is None:
                    continue
                if here == CLI:
                    # The CLI's entry reaches above the assembly (its own command
                    # modules included) only lazily, inside the command that needs it.
                    mounted = name in CLI_ENTRY or (
                        name.rpartition(".")[0] in CLI_ENTRY - {"workcell.cli"}
                    )
                    entry = module in CLI_ENTRY and not mounted
                    if entry and module_level and there > ASSEMBLY:
                        bad.append(
                            f"{path.relative_to(root)}:{line} imports {name} at module level"
                        )
                    continue
                if there <= here:
                    continue
                bad.append(
                    f"{path.relative_to(root)}:{line} imports {name} (floor {there} > {here})"
                )
    return sorted(set(bad))


def test_imports_run_downhill() -> None:
    bad = uphill_imports()
    assert not bad, "imports that run uphill:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("workcell.store", 0),
        ("workcell.batch.release", 0),
        ("devices.imager", 1),
        ("simulators.culture", 2),
        ("workcell.assembly.build", 3),
        ("protocols.campaign.engine", 4),
        ("flows.serve", 5),
        ("workcell.cli.app", CLI),
        ("pylabrobot.liquid_handling", None),
    ],
)
def test_floors(module: str, expected: int | None) -> None:
    assert floor(module) == expected


def test_the_check_catches_uphill_imports(tmp_path: Path) -> None:
    """A kernel module importing a protocol, even inside a function, and the CLI
    importing flows at module level are caught; the CLI's lazy import is not."""
    (tmp_path / "workcell" / "cli").mkdir(parents=True)
    (tmp_path / "workcell" / "clock.py").write_text(
        "def f():\n    from protocols.campaign import engine\n"
    )
    (tmp_path / "workcell" / "cli" / "app.py").write_text(
        "from flows import serve\n\ndef g():\n    from protocols import seeding\n"
    )
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "imager.py").write_text("from .. import simulators\n")
    bad = uphill_imports(tmp_path)
    assert any(b.startswith("workcell/clock.py:2 imports protocols.campaign") for b in bad), bad
    assert any(b.startswith("workcell/cli/app.py:1 imports flows") for b in bad), bad
    assert any(b.startswith("devices/imager.py:1 imports simulators") for b in bad), bad
    assert not any("protocols.seeding" in b or "imports protocols " in b for b in bad), bad


def test_nothing_points_outside_the_project() -> None:
    """The project documents itself: no tracked file refers to the folder beside it."""
    needles = ("../" + "shared", "shared/" + "DESIGN")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for rel in tracked:
        try:
            text = (ROOT / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if any(n in text for n in needles):
            hits.append(rel)
    assert not hits, hits
