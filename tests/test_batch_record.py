"""The batch record: chained, append-only, tamper caught; release; signatures; report."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from protocols.campaign.engine import CampaignEngine, CampaignParams, auto_approve
from tests.campaign_helpers import quick_config
from tests.conftest import run
from workcell.assembly.config import load_config
from workcell.assembly.session import open_session
from workcell.batch.release import (
    QCResult,
    Status,
    enter_result,
    evaluate,
    released,
    sign,
    simulated_qc,
)
from workcell.cli.app import app
from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Store

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dry-run campaign to harvest (its record is copied by each test that edits it)."""
    folder = tmp_path_factory.mktemp("batch")
    cfg = load_config(quick_config(folder))

    async def go() -> None:
        async with open_session(cfg, folder / "run") as s:
            await CampaignEngine(s, CampaignParams(), auto_approve()).run()

    run(go())
    return folder / "run"


@pytest.fixture
def batch(campaign_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(campaign_run, copy)
    return copy


def _verify(run_dir: Path) -> tuple[int, str]:
    res = runner.invoke(app, ["record", "verify", str(run_dir)])
    return res.exit_code, res.output


def _tamper(run_dir: Path, *sql: str) -> None:
    db = sqlite3.connect(run_dir / STORE_FILE)
    db.execute("DROP TRIGGER record_no_update")
    db.execute("DROP TRIGGER record_no_delete")
    for statement in sql:
        db.execute(statement)
    db.commit()
    db.close()


def test_every_kind_of_entry_is_chained_and_the_record_verifies(batch: Path) -> None:
    store = Store(batch / STORE_FILE)
    try:
        entries = store.record.entries()
        kinds = {(e.type, e.kind) for e in entries}
        assert {
            ("device", "aspirate"),
            ("measurement", "confluence"),
            ("event", "decision"),
            ("event", "operator_decision"),
            ("vessel", "vessel_created"),
        } <= kinds
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
        decision = next(e for e in entries if e.kind == "decision" and "passage" in str(e.data))
        assert decision.actor and decision.process_time and decision.utc
    finally:
        store.close()
    code, out = _verify(batch)
    assert code == 0 and "record intact" in out


def test_the_store_refuses_to_edit_or_delete_an_entry(batch: Path) -> None:
    db = sqlite3.connect(batch / STORE_FILE)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE record SET actor = 'someone' WHERE seq = 5")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM record WHERE seq = 5")
    db.close()


@pytest.mark.parametrize(
    ("sql", "first_bad", "says"),
    [
        (["UPDATE record SET data = replace(data, '0', '1') WHERE seq = 40"], 40, "changed"),
        (["DELETE FROM record WHERE seq = 41"], 41, "missing"),
        (
            [  # swap the contents of entries 50 and 51, keeping their numbers
                "UPDATE record SET seq = -50 WHERE seq = 50",
                "UPDATE record SET seq = 50 WHERE seq = 51",
                "UPDATE record SET seq = 51 WHERE seq = -50",
            ],
            50,
            "",
        ),
        (["DELETE FROM record WHERE seq > (SELECT MAX(seq) - 3 FROM record)"], None, "end"),
    ],
    ids=["edit", "delete", "reorder", "truncate"],
)
def test_tampering_is_caught_and_located(
    batch: Path, sql: list[str], first_bad: int | None, says: str
) -> None:
    store = Store(batch / STORE_FILE)
    total = store.record.verify().entries
    store.close()
    _tamper(batch, *sql)
    code, out = _verify(batch)
    assert code == 1, out
    where = first_bad if first_bad is not None else total - 2
    assert f"at entry {where}" in out and says in out


def test_release_needs_every_result_and_two_different_people(tmp_path: Path, batch: Path) -> None:
    store = Store(batch / STORE_FILE)
    try:
        enter_result(
            store,
            QCResult(
                test="flow_cytometry",
                markers_percent={
                    "CD73": 99,
                    "CD90": 98,
                    "CD105": 97,
                    "CD45": 0.5,
                    "CD34": 0.5,
                    "CD11b": 0.4,
                    "CD19": 0.3,
                    "HLA-DR": 1.0,
                },
            ),
            "A. Analyst",
        )
        enter_result(store, QCResult(test="mycoplasma", result="negative"), "A. Analyst")
        enter_result(store, QCResult(test="endotoxin", value=0.2), "A. Analyst")
        status = {c.name: c.status for c in evaluate(store)}
        assert status["sterility"] is Status.MISSING
        assert [n for n, s in status.items() if s is not Status.PASS] == ["sterility"]
        sign(store, "O. Operator", "performed")
        with pytest.raises(WorkcellError, match="sterility missing"):
            sign(store, "Q. Assurance", "approved")
        assert not released(store)
        enter_result(store, QCResult(test="sterility", result="positive"), "A. Analyst")
        with pytest.raises(WorkcellError, match="sterility fail"):
            sign(store, "Q. Assurance", "approved")
        enter_result(store, QCResult(test="sterility", result="negative"), "A. Analyst")
        with pytest.raises(WorkcellError, match="already signed"):
            sign(store, "o. operator ", "approved")
        sign(store, "Q. Assurance", "approved")
        assert released(store)
        kinds = [e.kind for e in store.record.entries("event")]
        assert kinds.count("signature") == 2 and store.record.verify().ok
    finally:
        store.close()


def test_lineage_prints_the_tree_with_population_doublings(batch: Path) -> None:
    res = runner.invoke(app, ["lineage", str(batch)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("vial BM-MSC-DEMO-01")
    assert "plate_1 P1" in res.output and "PD 4.00 ->" in res.output
    children = [x for x in lines if " P2," in x]
    assert children and all(x.startswith("│   ") for x in children)  # under plate_1
    assert "harvest" in lines[-1]


@pytest.mark.skipif(
    CHROMIUM is None and not __import__("os").environ.get("CI"),
    reason="chromium not installed (CI installs it)",
)
def test_report_renders_in_headless_chromium_with_its_figures(batch: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI must have chromium (.ci/run installs it)"
    store = Store(batch / STORE_FILE)
    try:
        simulated_qc(store)
        sign(store, "O. Operator", "performed")
        sign(store, "Q. Assurance", "approved")
        head = store.record.verify().head_hash
    finally:
        store.close()
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(batch), "-o", str(out)])
    assert res.exit_code == 0, res.output
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-figures="4"' in dom and 'data-figures-rendered="4"' in dom
    assert "RELEASED" in dom and "NOT RELEASED" not in dom
    assert "Record verified" in dom and head in dom
    for section in (
        "Batch summary",
        "Lineage",
        "Deviations and faults",
        "Release criteria",
        "Signatures",
        "Q. Assurance",
        "sterility",
    ):
        assert section in dom
