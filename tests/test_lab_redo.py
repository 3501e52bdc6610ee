"""A lab restarted from its snapshot and redo log is exactly the lab that was killed.

The lab saves a snapshot of its whole state only now and then; in between it logs
each request it carried out (``simulators/lab/store.py``). A lab opened on the same
folder replays the log onto the snapshot; this checks that the replayed state is
the live one, field for field (cells, liquids, random generators, the clock, the
incubator's slots), after requests that grow cells, count, image and move plates.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from benchmarks.kill import bench_config
from simulators.lab.process import write_spec
from simulators.lab.server import SPEC_FILE, LabServer
from simulators.lab.store import LAB_DB, LabStore
from workcell.assembly.config import load_config
from workcell.assembly.lab import lab_spec

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    (
        "operator.load",
        {
            "container": "cell_suspension",
            "liquid": {"volume_uL": 20_000.0, "viable": 4e6, "dead": 2e5, "nutrient": 1.0},
            "actor": "test",
        },
    ),
    ("star.pick_up_tip", {"device": "star", "channel": 0, "spot": "tips_1000_1_A1"}),
    (
        "star.aspirate",
        {"device": "star", "channel": 0, "source": "cell_suspension", "volume_uL": 900.0},
    ),
    (
        "star.dispense",
        {"device": "star", "channel": 0, "target": "plate_1_well_A1", "volume_uL": 900.0},
    ),
    ("star.drop_tip", {"device": "star", "channel": 0, "to": "tips_1000_1_A1"}),
    ("counter.count", {"device": "counter", "sample": "cell_suspension", "volume_uL": 20.0}),
    ("arm.move", {"plate": "plate_1", "to": "incubator:incubator"}),
    ("incubator.take_in", {"device": "incubator", "plate": "plate_1", "slot": 1}),
    ("clock.advance", {"seconds": 86_400.0}),
    ("truth.vessel", {"name": "plate_1_well_A1"}),  # a read: it brings the cells up to now
    ("clock.advance", {"seconds": 3_600.0}),
    ("incubator.fetch", {"device": "incubator", "plate": "plate_1", "slot": 1}),
    ("arm.move", {"plate": "plate_1", "to": "deck"}),
    ("imager.measure", {"device": "imager", "wells": ["plate_1_well_A1"], "fields": 3}),
    ("counter.count", {"device": "counter", "sample": "nowhere", "volume_uL": 20.0}),  # refused
]


def test_a_lab_replayed_from_its_redo_log_is_the_lab_that_ran(tmp_path: Path) -> None:
    spec = lab_spec(load_config(bench_config(tmp_path)))
    assert spec is not None
    folder = tmp_path / "lab"
    write_spec(folder, spec)
    live = LabServer(folder)
    replies = [live.handle({"op": op, "args": args}) for op, args in REQUESTS]
    assert [r["ok"] for r, _ in replies] == [True] * (len(REQUESTS) - 1) + [False]
    assert live.lab.culture.vessels["plate_1_well_A1"].attached > 0
    # nothing but the first snapshot and the redo log is on disk (no clean stop)
    assert len(LabStore(folder / LAB_DB).redo()) == len(REQUESTS)

    # what a lab killed here starts from, in a folder of its own (both go on below)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(folder / SPEC_FILE, copy / SPEC_FILE)
    with sqlite3.connect(folder / LAB_DB) as src, sqlite3.connect(copy / LAB_DB) as dst:
        src.backup(dst)
    restarted = LabServer(copy)
    assert restarted.lab.to_state() == live.lab.to_state()
    assert restarted.lab.log_seq == live.lab.log_seq
    # and it goes on the same: one more day, then the same count
    more = [("clock.advance", {"seconds": 86_400.0}), *REQUESTS[5:6]]
    for op, args in more:
        a, _ = live.handle({"op": op, "args": args})
        b, _ = restarted.handle({"op": op, "args": args})
        assert a == b
    # the restart snapshotted: its redo log holds only what came after
    assert len(LabStore(copy / LAB_DB).redo()) == len(more)
