"""Each unit operation exported for the OT-2 runs in opentrons.simulate with the
same volumes as the PyLabRobot dry-run of the same parameters.

opentrons lives in its own environment (.venv-opentrons, made by `make test`); the
exported file is simulated there as a subprocess, as the Opentrons App would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from protocols.dry_run import load_params
from protocols.export.opentrons import export
from tests.conftest import run
from workcell import ot_labware
from workcell.assembly.config import load_config, parse_config

ROOT = Path(__file__).parents[1]
LINE = re.compile(r"^(Aspirating|Dispensing) ([\d.]+) uL (?:from|into) (\w+) of ([\w-]+) on slot")


def _opentrons_python() -> str:
    path = os.environ.get("WORKCELL_OPENTRONS_PYTHON", str(ROOT / ".venv-opentrons/bin/python"))
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no opentrons environment at {path}: `make test` builds it")
        pytest.skip(f"no opentrons environment at {path}; `make test` builds it")
    return str(Path(path).absolute())


def _simulate(python: str, protocol_file: Path, tmp_path: Path) -> dict[str, float]:
    env = {**os.environ, "OT_API_CONFIG_DIR": str(tmp_path / "ot-config")}
    proc = subprocess.run(
        [python, "-m", "opentrons.simulate", str(protocol_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    volumes: dict[str, float] = defaultdict(float)
    for line in proc.stdout.splitlines():
        m = LINE.match(line.strip())
        if m:
            verb = "aspirate" if m.group(1) == "Aspirating" else "dispense"
            volumes[f"{verb} {m.group(3)} of {m.group(4)}"] += float(m.group(2))
    return dict(volumes)


PIPETTE_LINE = re.compile(r"^(p\w+) = protocol\.load_instrument\('(\w+)'")
VOLUME_CALL = re.compile(r"^(p\w+)\.(?:aspirate|dispense)\(([\d.]+),|^(p\w+)\.mix\(\d+, ([\d.]+),")
CASES = {
    "seeding": None,
    "media_exchange": None,
    "passaging": None,
    "harvest": None,
    "media_exchange-24": {"plates": ["plate_3"]},
    "passaging-24": {
        "plate": "plate_3",
        "destination_plates": ["plate_6"],
        "confluence_threshold_percent": 10,
    },
}


def _check_pipette_ranges(text: str) -> set[str]:
    """Every volume in the file lies in the range of the pipette that moves it."""
    pipettes = {}
    for line in text.splitlines():
        if m := PIPETTE_LINE.match(line.strip()):
            pipettes[m.group(1)] = ot_labware.pipette_range_uL(m.group(2))
    used = set()
    for line in text.splitlines():
        m = VOLUME_CALL.match(line.strip())
        if not m:
            continue
        var, vol = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        low, high = pipettes[var]
        assert low <= float(vol) <= high, f"{line.strip()}: outside {low}-{high} uL"
        used.add(var)
    return used


def _reads_as_steps(text: str) -> None:
    """What the Opentrons App shows: commented steps, declared liquids, pauses with slots."""
    assert "protocol.comment(" in text
    assert "protocol.define_liquid(" in text and ".load_liquid(liquid=" in text
    for line in text.splitlines():
        if "protocol.pause(" in line and "incubator" in line:
            assert re.search(r"slot \d+", line), line


@pytest.mark.parametrize("case", list(CASES))
def test_exported_protocol_simulates_with_equal_volumes(case: str, tmp_path: Path) -> None:
    python = _opentrons_python()
    protocol = case.split("-")[0]
    params = load_params(protocol, ROOT / "examples" / f"{protocol}.json")
    if CASES[case]:
        params = params.model_validate({**params.model_dump(), **CASES[case]})
    result = run(export(load_config(), protocol, params))
    path = tmp_path / f"{protocol}.py"
    path.write_text(result.text)
    simulated = _simulate(python, path, tmp_path)
    assert simulated.keys() == result.volumes_uL.keys()
    for key, volume in result.volumes_uL.items():
        assert simulated[key] == pytest.approx(volume, abs=0.05), key
    assert sum(v for k, v in simulated.items() if k.startswith("aspirate")) > 1_000
    _check_pipette_ranges(result.text)
    _reads_as_steps(result.text)
    if protocol == "seeding":  # 59 uL of suspension per 6-well: not through a P1000
        assert result.pipettes == {"left": "p300_single_gen2", "right": "p1000_single_gen2"}


def test_deck_names_with_dashes_export_a_file_that_parses_and_simulates(
    sim_data: dict[str, Any], tmp_path: Path
) -> None:
    python = _opentrons_python()
    for carrier in sim_data["deck"]["carriers"]:
        for site in carrier["sites"]:
            site["name"] = site["name"].replace("_", "-")
    cfg = parse_config(sim_data)
    params = load_params("seeding", ROOT / "examples" / "seeding.json")
    params = params.model_validate(
        {
            **params.model_dump(),
            "plates": ["plate-1"],
            "medium_reservoir": "medium",
            "suspension": {**params.suspension.model_dump(), "tube": "cell-suspension"},
        }
    )
    result = run(export(cfg, "seeding", params))
    assert "label='plate-1'" in result.text
    path = tmp_path / "dashes.py"
    path.write_text(result.text)
    simulated = _simulate(python, path, tmp_path)
    assert simulated.keys() == result.volumes_uL.keys()


def test_a_volume_no_configured_pipette_covers_is_refused(sim_data: dict[str, Any]) -> None:
    sim_data["opentrons"] = {"pipettes": {"right": "p1000_single_gen2"}}
    # (an OT-2 workcell exports for the pipettes on its own mounts)
    params = load_params("seeding", ROOT / "examples" / "seeding.json")
    from workcell.errors import WorkcellError

    with pytest.raises(WorkcellError, match="no OT-2 pipette of this config covers 59.15"):
        run(export(parse_config(sim_data), "seeding", params))


def test_export_refuses_a_layout_beyond_the_ot2_deck(tmp_path: Path) -> None:
    params = load_params("seeding", ROOT / "examples" / "seeding.json")
    big = params.model_copy(
        update={
            "plates": [f"plate_{i}" for i in (1, 2, 4, 5, 6, 7, 8, 9, 10)],
            "suspension": params.suspension.model_copy(update={"volume_mL": 20}),
        }
    )
    from workcell.errors import WorkcellError

    with pytest.raises(WorkcellError, match="more than the OT-2's 11 deck slots"):
        run(export(load_config(), "seeding", big))


def test_export_cli_writes_a_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from workcell.cli.app import app

    out = tmp_path / "seed.py"
    params = tmp_path / "p.json"
    params.write_text(
        json.dumps(
            {"suspension": {"volume_mL": 5, "viable_cells_per_mL": 5e5}, "plates": ["plate_1"]}
        )
    )
    res = CliRunner().invoke(
        app, ["export-opentrons", "seeding", "-p", str(params), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert 'requirements = {"robotType": "OT-2", "apiLevel": "2.20"}' in text
    assert "corning_6_wellplate_16.8ml_flat" in text and "def run(protocol):" in text


def test_export_from_the_ot2_config_simulates_with_equal_volumes(tmp_path: Path) -> None:
    """The OT-2 config's own trace (from the wire simulator) exports and simulates too."""
    python = _opentrons_python()
    params = load_params("seeding", ROOT / "examples" / "seeding.json")
    result = run(export(load_config(ROOT / "configs" / "ot2.yaml"), "seeding", params))
    path = tmp_path / "seeding.py"
    path.write_text(result.text)
    simulated = _simulate(python, path, tmp_path)
    assert simulated.keys() == result.volumes_uL.keys()
    for key, volume in result.volumes_uL.items():
        assert simulated[key] == pytest.approx(volume, abs=0.05), key
