"""A lab restarted from its snapshot and redo log is exactly the lab that was killed.

The lab saves a snapshot of its whole state only now and then; in between it logs
each request it carried out (``simulators/lab/store.py``). A lab opened on the same
folder replays the log onto the snapshot; this checks that the replayed state is
the live one, field for field (cells, liquids, random generators, the clock, the
incubator's slots), after requests that grow cells, count, image and move plates.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.kill import bench_config
from simulators.lab.process import write_spec
from simulators.lab.server import ADDRESS_FILE, SPEC_FILE, LabServer
from simulators.lab.store import LAB_DB, LabStore
from workcell.assembly.config import load_config
from workcell.assembly.lab import lab_spec
from workcell.wire import LinkClient, LinkRefused

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


def _copy_lab(folder: Path, copy: Path) -> Path:
    """The lab's folder as a lab killed now would leave it: its spec and its file."""
    copy.mkdir()
    shutil.copy(folder / SPEC_FILE, copy / SPEC_FILE)
    with sqlite3.connect(folder / LAB_DB) as src, sqlite3.connect(copy / LAB_DB) as dst:
        src.backup(dst)
    return copy


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
    copy = _copy_lab(folder, tmp_path / "copy")
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


def _serve(folder: Path) -> tuple[LabServer, threading.Thread]:
    """A lab serving its socket from a thread of this process (so its state can be read)."""
    server = LabServer(folder)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while server._server is None or not (folder / ADDRESS_FILE).exists():
        assert time.monotonic() < deadline, "the lab did not listen"
        time.sleep(0.01)
    return server, thread


def _unserve(server: LabServer, thread: threading.Thread) -> None:
    assert server._server is not None
    server._server.shutdown()
    server._server.server_close()
    thread.join(timeout=10)
    for sim in server.lab.serial.values():
        sim.stop()
    for api in server.ot2_servers.values():
        api.stop()


def test_the_lab_grows_its_cells_after_replying_and_the_same_as_before_a_request(
    tmp_path: Path,
) -> None:
    """After a reply the lab brings its cells up to its clock before any other request
    comes (the controller does not wait for it at the next one), and ends in the very
    state of a lab that does it at the next request, and of one replayed from its log."""
    spec = lab_spec(load_config(bench_config(tmp_path)))
    assert spec is not None
    served_folder, direct_folder = tmp_path / "served", tmp_path / "direct"
    write_spec(served_folder, spec)
    write_spec(direct_folder, spec)
    server, thread = _serve(served_folder)
    direct = LabServer(direct_folder)
    address = json.loads((served_folder / ADDRESS_FILE).read_text())
    client = LinkClient(address["host"], address["port"])
    try:
        settled_idle = 0
        for op, args in REQUESTS:
            with contextlib.suppress(LinkRefused):
                client.request(op, **args)
            direct.handle({"op": op, "args": args})
            if op == "clock.advance":
                # no request follows yet: the lab steps its cells on its own
                deadline = time.monotonic() + 10
                while server._settle_due:
                    assert time.monotonic() < deadline, "the lab never settled while idle"
                    time.sleep(0.005)
                culture = server.lab.culture
                assert culture._t == pytest.approx(culture._now_s())
                # the lab driven directly has not: it does so at its next request
                assert direct.lab.culture._t < culture._t
                settled_idle += 1
        assert settled_idle == 2
        assert server.lab.culture.vessels["plate_1_well_A1"].attached > 0
    finally:
        client.close()
        _unserve(server, thread)
    server.settle()
    direct.settle()
    assert server.lab.to_state() == direct.lab.to_state()
    # a lab restarted on the served lab's file (snapshot and redo log) is that lab too
    restarted = LabServer(_copy_lab(served_folder, tmp_path / "copy"))
    restarted.settle()
    assert restarted.lab.to_state() == server.lab.to_state()
