from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from workcell.store import Event, Measurement, Store, VesselRecord

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _vessel(vid: str, parents: list[str] | None = None, passage: int = 1) -> VesselRecord:
    return VesselRecord(
        id=vid,
        labware="cor_cos_6_wellplate_16800uL_Fb",
        location="deck:p1",
        passage=passage,
        parents=parents or [],
        area_cm2=9.86,
        created_at=NOW,
    )


def test_vessels_lineage_measurements_events_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "workcell.db"
    store = Store(path)
    store.add_vessel(_vessel("p1_A1", passage=1))
    store.add_vessel(_vessel("p1_B1", passage=1))
    store.add_vessel(_vessel("p2_A1", parents=["p1_A1", "p1_B1"], passage=2))
    store.add_measurement(
        Measurement(
            vessel_id="p1_A1",
            kind="confluence",
            value=0.8,
            unit="fraction",
            time=NOW,
            source="imager",
        )
    )
    store.add_event(
        Event(time=NOW, kind="seeded", actor="test", vessel_id="p1_A1", data={"cells": 1.5e4})
    )
    store.move_vessels(["p1_A1"], "incubator:rack-1", NOW)
    store.close()

    again = Store(path)
    child = again.vessel("p2_A1")
    assert child is not None and child.parents == ["p1_A1", "p1_B1"] and child.passage == 2
    assert again.children("p1_B1") == ["p2_A1"]
    assert again.vessel("p1_A1").location == "incubator:rack-1"  # type: ignore[union-attr]
    assert [m.value for m in again.measurements("p1_A1", "confluence")] == [0.8]
    assert again.events("seeded")[0].data == {"cells": 1.5e4}
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_vessels_of_a_plate_and_a_state() -> None:
    """The imager and the recovery ask for one plate's active vessels: the same vessels,
    in the same order and with their parents, as filtering all of them."""
    store = Store()
    for vid, plate, parents in [
        ("a_A1", "a", []),
        ("a_B1", "a", []),
        ("b_A1", "b", []),
        ("a_C1", "a", ["a_A1", "b_A1"]),
    ]:
        store.add_vessel(_vessel(vid, parents=parents).model_copy(update={"plate": plate}))
    store.set_state(["a_B1"], "harvested", NOW)
    every = store.vessels()
    for state in (None, "active", "harvested"):
        for plate in (None, "a", "b", "c"):
            want = [
                v
                for v in every
                if (state is None or v.state == state) and (plate is None or v.plate == plate)
            ]
            assert store.vessels(state=state, plate=plate) == want
    assert [v.id for v in store.vessels(state="active", plate="a")] == ["a_A1", "a_C1"]
    assert store.vessels(plate="a")[-1].parents == ["a_A1", "b_A1"]


def test_store_refuses_unknown_parent_and_duplicates() -> None:
    store = Store()
    with pytest.raises(sqlite3.IntegrityError):
        store.add_vessel(_vessel("orphan", parents=["nobody"]))
    store.add_vessel(_vessel("a"))
    with pytest.raises(sqlite3.IntegrityError):
        store.add_vessel(_vessel("a"))
    assert [v.id for v in store.vessels()] == ["a"]  # the failed insert left nothing behind


def test_latest_event_time_compares_times_not_the_order_written() -> None:
    from datetime import timedelta, timezone

    store = Store()
    assert store.latest_event_time() is None and store.count_events("seeded") == 0
    later = NOW + timedelta(hours=5, microseconds=250)
    for t in (NOW, later.astimezone(timezone(timedelta(hours=-3))), NOW + timedelta(hours=1)):
        store.add_event(Event(time=t, kind="seeded", actor="test", data={}))
    store.add_event(Event(time=NOW, kind="fed", actor="test", data={}))
    assert store.latest_event_time() == max(e.time for e in store.events()) == later
    assert store.count_events("seeded") == 3 and store.count_events("fed") == 1


def test_a_hardware_store_waits_for_the_disk_and_a_dry_runs_does_not(tmp_path: Path) -> None:
    for durable, expected in ((True, 2), (False, 0)):  # FULL, OFF
        store = Store(tmp_path / f"{durable}.db", durable=durable)
        try:
            assert store._db.execute("PRAGMA synchronous").fetchone()[0] == expected
            assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            store.close()


def test_a_journal_rows_record_entry_holds_its_data_and_keys() -> None:
    """A journal row's data is encoded once and the row's keys added to that text: the
    entry must be exactly the JSON of the data with the row's keys (each key once, the
    row's replacing the data's own), the row must keep the data, and the chain verify."""
    store = Store()
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    cases: list[tuple[int | None, dict[str, Any], int | None]] = [
        (None, {}, None),
        (3, {"ops": [{"channel": 0, "volume_uL": 150.25}], "when": t, "note": 'a "b" é'}, None),
        (3, {"key": "theirs", "ref": 9, "x": [1, None]}, 2),
        (4, {"nested": {"journal": 1}}, 7),
    ]
    for step, data, ref in cases:
        row = store.add_journal(step, "intent", "star.aspirate", t, data, ref)
        keys = {"journal": row, "step": step, "key": "star.aspirate", "ref": ref}
        assert _last_entry_text(store) == json.dumps({**data, **keys}, default=str)
        assert store.record.entries("journal")[-1].data == json.loads(
            json.dumps({**data, **keys}, default=str)
        )
        assert store.journal()[-1]["data"] == json.loads(json.dumps(data, default=str))
    store.add_event(Event(time=t, kind="fed", actor="a", vessel_id=None, data={"z": 1, "a": t}))
    assert _last_entry_text(store) == json.dumps({"z": 1, "a": t}, default=str)
    assert store.record.verify().ok


def _last_entry_text(store: Store) -> str:
    (text,) = store._db.execute("SELECT data FROM record ORDER BY seq DESC LIMIT 1").fetchone()
    return str(text)
