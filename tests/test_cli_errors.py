"""Every command of the CLI, walked with bad input: one message, exit 2 or 1, no traceback.

The walk discovers the commands from the CLI itself; a command without a bad-input
case here fails the test, so a new command cannot ship without its error paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from workcell.assembly.config import DEFAULT_CONFIG
from workcell.cli.app import app
from workcell.store import STORE_FILE, Store

runner = CliRunner()
ENV = {"worker": {"PREFECT_API_URL": "http://127.0.0.1:9/api"}}
SEEDING = {"suspension": {"volume_mL": 5, "viable_cells_per_mL": 500000}, "plates": ["plate_1"]}


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> set[str]:
    out: set[str] = set()
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out |= _commands(cmd, (*prefix, name))
        else:
            out.add(" ".join((*prefix, name)))
    return out


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bad inputs on disk: files that are not what they claim to be."""
    d = tmp_path_factory.mktemp("bad")
    files = {
        "latin1_config": d / "latin1.yaml",
        "duplicate_keys": d / "dup.yaml",
        "slash_device": d / "slash.yaml",
        "a_file": d / "not-a-folder",
        "garbage_run": d / "garbage-run",
        "campaign_run": d / "campaign-run",
        "latin1_params": d / "latin1.json",
        "dup_wells": d / "dup-wells.json",
        "huge_lot": d / "huge-lot.json",
        "good_params": d / "good.json",
        "qc": d / "qc.json",
    }
    text = DEFAULT_CONFIG.read_text()
    files["latin1_config"].write_bytes(("# caf\xe9\n" + text).encode("latin-1"))
    files["duplicate_keys"].write_text(text.replace("name: sim-workcell", "name: a\nname: b"))
    data = yaml.safe_load(text)
    data["devices"]["star/../x"] = data["devices"].pop("star")
    files["slash_device"].write_text(yaml.safe_dump(data))
    files["a_file"].write_text("I am a file")
    files["garbage_run"].mkdir()
    (files["garbage_run"] / STORE_FILE).write_bytes(b"this is not sqlite" * 100)
    files["campaign_run"].mkdir()
    store = Store(files["campaign_run"] / STORE_FILE)
    store.record.append("event", "campaign_started", "campaign", store_time(), None, {})
    store.close()
    files["latin1_params"].write_bytes('{"plates": ["caf\xe9"]}'.encode("latin-1"))
    files["dup_wells"].write_text(json.dumps({**SEEDING, "wells": ["A1", "A1"]}))
    files["huge_lot"].write_text(
        json.dumps({**SEEDING, "suspension": {**SEEDING["suspension"], "lot": "L" * 100_000}})
    )
    files["good_params"].write_text(json.dumps(SEEDING))
    files["qc"].write_text("{}")
    return files


def store_time() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)


def _cases(b: dict[str, Path], tmp: Path) -> dict[str, list[list[str]]]:
    """For each command, the bad inputs it must refuse cleanly."""
    g, p, run = str(b["garbage_run"]), str(b["good_params"]), str(b["a_file"])
    missing_out = str(tmp / "no-such-folder" / "out")
    users = str(tmp / "users.json")
    return {
        "check-config": [
            ["--config", str(b["latin1_config"])],
            ["--config", str(b["duplicate_keys"])],
            ["--config", str(b["slash_device"])],
            ["--config", str(tmp)],  # a folder
        ],
        "dry-run": [
            ["seeding", "-p", p, "--config", str(b["latin1_config"])],
            ["seeding", "-p", str(b["latin1_params"])],
            ["seeding", "-p", str(b["dup_wells"])],
            ["seeding", "-p", str(b["huge_lot"])],
            ["seeding", "-p", p, "--run-dir", run],
            ["seeding", "-p", p, "--run-dir", str(b["campaign_run"])],
        ],
        "export-opentrons": [
            ["seeding", "-p", p, "-o", missing_out + ".py"],
            ["seeding", "-p", p, "-o", str(tmp)],
            ["seeding", "-p", str(b["dup_wells"]), "-o", str(tmp / "x.py")],
        ],
        "grow": [
            ["--days", "1", "--run-dir", run],
            ["--days", "1", "--run-dir", str(b["campaign_run"])],
            ["--config", str(b["duplicate_keys"])],
        ],
        "campaign": [
            ["--auto-approve", "--without-prefect", "--run-dir", run],
            ["--auto-approve", "--without-prefect", "-p", str(b["latin1_params"])],
            ["--config", str(b["latin1_config"]), "--auto-approve"],
        ],
        "plan": [
            ["--config", str(b["latin1_config"])],
            [
                "--config",
                str(DEFAULT_CONFIG.parent / "clinical.yaml"),
                "-p",
                str(b["latin1_params"]),
            ],
            ["--config", str(DEFAULT_CONFIG)],  # no vessel inventory: nothing to plan
        ],
        "demo": [["--run-dir", run], ["--small", "--run-dir", run]],
        "serve": [["--config", str(b["latin1_config"])]],
        "record verify": [[g], [run]],
        "lineage": [[g]],
        "release status": [[g]],
        "release enter": [[g, str(b["qc"]), "--user", "a.lab"]],
        "release simulate-qc": [[g]],
        "release sign": [
            [g, "--user", "o.op", "--meaning", "performed"],
            [g, "--user", "o.op", "--meaning", "liked"],
        ],
        "users add": [
            ["J Doe", "--name", "J. Doe", "--role", "qa", "--users", users],
            ["j.doe", "--name", "J. Doe", "--role", "boss", "--users", users],
        ],
        "users disable": [["nobody", "--by", "q.lead", "--users", users]],
        "users passwd": [["nobody", "--users", users]],
        "users list": [["--users", str(b["latin1_params"])], ["--users", run]],
        "report": [[g, "-o", str(tmp / "r.html")], [g, "-o", missing_out + ".html"]],
        "worker": [["--config", str(b["latin1_config"])]],  # without and with PREFECT_API_URL
        "facility up": [["--dir", run]],
        "lab": [["--config", str(b["latin1_config"])], ["--state-dir", run]],
        "floor": [
            ["f", "--policy", "nope", "--run-dir", str(tmp)],
            ["f", "--specs", str(b["latin1_params"]), "--run-dir", str(tmp)],
            ["f", "--specs", str(b["good_params"]), "--run-dir", str(tmp)],  # not a list
            ["f", "--config", str(b["latin1_config"]), "--run-dir", str(tmp)],
            ["--run-dir", run],  # a file, not a folder
            ["../f", "--run-dir", str(tmp)],  # a floor name is one folder, not a path
            ["  ", "--run-dir", str(tmp)],
        ],
        "floor-join": [
            [str(b["latin1_params"]), "--run-dir", str(tmp)],
            [str(b["good_params"]), "--run-dir", str(tmp)],  # not a campaign
            [missing_out + ".json", "--run-dir", str(tmp)],
            [str(b["good_params"]), "--floor", "a/b", "--run-dir", str(tmp)],
        ],
        "floor-cancel": [
            ["c0", "--by", "o.op", "--reason", "no floor runs there", "--run-dir", str(tmp)],
            ["c 0", "--by", "o.op", "--reason", "not a name", "--run-dir", str(tmp)],
            ["c0", "--by", "o.op", "--reason", "", "--run-dir", str(tmp)],
            ["c0", "--by", "o.op", "--reason", "why", "--floor", "..", "--run-dir", str(tmp)],
        ],
    }


def _record_entries(folder: Path) -> int:
    store = Store(folder / STORE_FILE)
    try:
        return int(store._db.execute("SELECT COUNT(*) FROM record").fetchone()[0])
    finally:
        store.close()


def test_every_command_refuses_bad_input_with_one_message(
    bad: dict[str, Path], tmp_path: Path
) -> None:
    cases = _cases(bad, tmp_path)
    commands = _commands(typer.main.get_command(app))
    assert commands <= cases.keys(), f"commands without bad-input cases: {commands - cases.keys()}"
    before = _record_entries(bad["campaign_run"])
    for command, argument_lists in cases.items():
        if command not in commands:
            continue
        for args in argument_lists:
            res = runner.invoke(app, [*command.split(), *args], env=ENV.get(command))
            where = f"workcell {command} {' '.join(a[:60] for a in args)}"
            assert res.exception is None or isinstance(res.exception, SystemExit), (
                f"{where}: {type(res.exception).__name__}: {res.exception}"
            )
            assert res.exit_code in (1, 2), f"{where}: exit {res.exit_code}\n{res.output}"
            assert "Traceback" not in res.output, where
            first = res.output.strip().splitlines()[0] if res.output.strip() else ""
            verdict = command == "record verify" and first == "record NOT intact"
            assert first.startswith("error") or verdict, f"{where}: {res.output[:500]}"
            assert len(res.output) < 5000, f"{where}: {len(res.output)} characters"
    # the dry-run and the growth demo did not write into the campaign's batch record
    assert _record_entries(bad["campaign_run"]) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    params = tmp_path / "p.json"
    params.write_text(json.dumps(SEEDING))
    res = runner.invoke(app, ["dry-run", "seeding", "-p", str(params), "--run-dir", str(folder)])
    assert res.exit_code == 2 and "not writable" in res.output


def test_the_installed_command_prints_no_traceback(bad: dict[str, Path]) -> None:
    """The real process (not the test runner): a bad config and a malformed store."""
    proc = subprocess.run(
        [sys.executable, "-m", "workcell.cli", "record", "verify", str(bad["garbage_run"])],
        capture_output=True,
        text=True,
        timeout=120,
    )  # verify's verdict on a damaged store: exit 1, every problem named, no traceback
    assert proc.returncode == 1 and proc.stderr.startswith("record NOT intact"), proc.stderr
    assert "Traceback" not in proc.stderr and "cannot be read" in proc.stderr, proc.stderr
    for args in (
        ["check-config", "--config", str(bad["latin1_config"])],
        ["lineage", str(bad["garbage_run"])],
        ["dry-run", "seeding", "-p", str(bad["good_params"]), "--run-dir", str(bad["a_file"])],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "workcell.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:"), proc.stderr
