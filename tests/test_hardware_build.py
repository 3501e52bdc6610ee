"""A workcell with every device on a hardware driver builds no simulator and starts no lab."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

HARDWARE = {
    "star": {"kind": "liquid_handler", "driver": "hamilton-star"},
    "incubator": {"kind": "incubator", "driver": "cytomat", "port": "/dev/ttyUSB-cytomat-absent"},
    "counter": {"kind": "cell_counter", "driver": "serial", "port": "/dev/ttyUSB-counter-absent"},
    "imager": {"kind": "imager", "driver": "cytation"},
}

CHECK = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from workcell.assembly.build import build_workcell
    from workcell.assembly.config import load_config
    from workcell.errors import DeviceError

    wc = build_workcell(load_config(sys.argv[1]))
    error = None
    try:
        asyncio.run(wc.setup())
    except DeviceError as err:
        error = str(err)
    children = [
        p for p in os.listdir("/proc") if p.isdigit()
        and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())
    ]
    print(json.dumps({
        "lab": wc.lab is not None,
        "arm": wc.arm is not None,
        "simulators": sorted(m for m in sys.modules if m.split(".")[0] == "simulators"),
        "children": children,
        "clock": type(wc.clock).__name__,
        "error": error,
    }))
    """
)


def test_every_device_on_hardware_builds_no_simulator(
    tmp_path: Path, sim_data: dict[str, Any]
) -> None:
    sim_data["devices"] = HARDWARE
    sim_data["clock"] = {"kind": "wall"}
    cfg = tmp_path / "hardware.yaml"
    cfg.write_text(yaml.safe_dump(sim_data))
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["lab"] is False and got["arm"] is False
    # no simulator is imported, let alone made: only the parameter models the config reads
    assert set(got["simulators"]) <= {
        "simulators",
        "simulators.brightfield",  # FieldOptics, the simulated imager's optics (a model)
        "simulators.confluence_error",  # EstimatorError, the fast imaging path's table (a model)
        "simulators.serial_port",  # FaultRates, a simulated line's faults (a model)
    }
    assert got["children"] == []  # no lab process, no image workers
    assert got["clock"] == "WallClock"
    # offline, connecting fails, and says which device and why
    assert got["error"] is not None and got["error"].startswith("star: command 'connect' failed")
