"""The `workcell` command line as a user meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from workcell.cli.app import app
from workcell.store import STORE_FILE, Store

runner = CliRunner()
SIM = str(Path(__file__).parents[1] / "configs" / "sim.yaml")
GOOD = {
    "suspension": {"volume_mL": 5, "viable_cells_per_mL": 500000},
    "plates": ["plate_1"],
}


def _write(tmp_path: Path, data: dict[str, Any], name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_console_script_is_declared() -> None:
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("workcell") == "workcell.cli.app:app"


def test_dry_run_seeding_prints_what_was_done(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "dry-run",
            "seeding",
            "--config",
            SIM,
            "--params",
            str(_write(tmp_path, GOOD)),
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 0, res.output
    for text in (
        "star: aspirate",
        "medium",
        "cell_suspension",
        "plate_1_well_B3",
        "tips used: 7",
        "s simulated",
    ):
        assert text in res.output
    assert len(Store(tmp_path / "run" / "workcell.db").vessels()) == 6


def test_volume_over_capacity_exits_non_zero_naming_vessel_and_volume(tmp_path: Path) -> None:
    params = _write(tmp_path, {**GOOD, "medium_mL_per_cm2": 1.9})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workcell.cli",
            "dry-run",
            "seeding",
            "--config",
            SIM,
            "--params",
            str(params),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "refused before any device moved" in proc.stderr
    assert "plate_1_well_A1 holds 16.80 mL; seeding would put 18.73 mL in it" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_parameters_name_the_field(tmp_path: Path) -> None:
    params = _write(tmp_path, {**GOOD, "density_cells_per_cm2": 50000})
    res = runner.invoke(app, ["dry-run", "seeding", "--params", str(params)])
    assert res.exit_code == 2
    assert "density_cells_per_cm2: Input should be less than or equal to 10000" in res.output


def test_unknown_protocol_and_unreadable_params(tmp_path: Path) -> None:
    res = runner.invoke(app, ["dry-run", "cloning", "--params", str(_write(tmp_path, GOOD))])
    assert res.exit_code == 2 and "unknown protocol 'cloning'" in res.output
    res = runner.invoke(app, ["dry-run", "seeding", "--params", str(tmp_path / "nope.json")])
    assert res.exit_code == 2 and "cannot read parameters" in res.output
    (tmp_path / "bad.json").write_text("{not json")
    res = runner.invoke(app, ["dry-run", "seeding", "--params", str(tmp_path / "bad.json")])
    assert res.exit_code == 2 and "not valid JSON" in res.output


def test_bad_config_is_reported_by_field(tmp_path: Path) -> None:
    data = yaml.safe_load(Path(SIM).read_text())
    data["devices"]["incubator"] = {"kind": "incubator", "driver": "cytomat"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["check-config", "--config", str(cfg)])
    assert res.exit_code == 2 and "devices.incubator.port: Field required" in res.output
    res = runner.invoke(
        app, ["dry-run", "seeding", "--config", str(cfg), "--params", str(_write(tmp_path, GOOD))]
    )
    assert res.exit_code == 2 and "devices.incubator.port" in res.output


def test_dry_run_refuses_a_hardware_config(tmp_path: Path) -> None:
    data = yaml.safe_load(Path(SIM).read_text())
    data["devices"]["incubator"] = {
        "kind": "incubator",
        "driver": "cytomat",
        "port": "/dev/ttyUSB7",
    }
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(yaml.safe_dump(data))
    res = runner.invoke(
        app, ["dry-run", "seeding", "--config", str(cfg), "--params", str(_write(tmp_path, GOOD))]
    )
    assert res.exit_code == 2 and "needs every device simulated" in res.output


def test_demo_prints_the_growth_table() -> None:
    res = runner.invoke(app, ["grow", "--days", "3"])
    assert res.exit_code == 0, res.output
    assert "confluence (imager)" in res.output
    assert "plate_1_well_A1" in res.output
    assert "3 simulated days" in res.output


def test_floor_shows_each_campaigns_progress_and_its_record(tmp_path: Path) -> None:
    """`workcell floor` on a temporary Prefect server: a bar per campaign while it runs,
    then the outcome; judged also from the campaign's own batch record on disk."""
    proc = subprocess.run(
        [sys.executable, "-m", "workcell.cli", "floor", "f", "--run-dir", str(tmp_path)]
        + ["--campaigns", "1", "--days", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "c0: finished" in proc.stdout and "100%" in proc.stdout
    store = Store(tmp_path / "floors" / "f" / "c0" / STORE_FILE)
    try:
        assert store.events("scheduled") and store.events("campaign_finished")
        assert store.record.verify().ok
    finally:
        store.close()
