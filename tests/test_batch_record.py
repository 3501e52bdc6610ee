"""The batch record: chained, append-only, anchored; every attack caught, located, and
blocking release; QC results validated; signatures with identity; the report."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from protocols.campaign.engine import CampaignEngine, CampaignParams, auto_approve
from tests.campaign_helpers import quick_config
from tests.conftest import run
from workcell import anchor
from workcell.assembly.config import load_config
from workcell.assembly.session import open_session
from workcell.batch.release import (
    Stage,
    Status,
    enter_results,
    enter_results_as,
    evaluate,
    parse_results,
    release_state,
    sign,
    simulated_qc,
)
from workcell.batch.users import UserRegistry, normalise_name
from workcell.cli.app import app
from workcell.errors import WorkcellError
from workcell.record import GENESIS, entry_hash
from workcell.store import STORE_FILE, Event, Store

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECRETS = {
    "qa.lead": "lead secret 1",
    "o.operator": "operator secret 1",
    "q.assurance": "assurance secret 1",
    "a.analyst": "analyst secret 1",
    "dual": "dual role secret 1",
}
FAST_KDF = 2**14  # the registry keeps each user's cost; tests need not pay 0.3 s a try


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dry-run campaign to harvest (copied by each test that changes it)."""
    folder = tmp_path_factory.mktemp("batch")
    cfg = load_config(quick_config(folder))

    async def go() -> None:
        async with open_session(cfg, folder / "run") as s:
            await CampaignEngine(s, CampaignParams(), auto_approve()).run()

    run(go())
    return folder / "run"


@pytest.fixture(scope="module")
def registry_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.json"
    reg = UserRegistry(path)
    reg.add("qa.lead", "Q. Lead", ["qa"], SECRETS["qa.lead"], None, FAST_KDF)
    lead = reg.authenticate("qa.lead", SECRETS["qa.lead"])
    for uid, name, roles in [
        ("o.operator", "O. Operator", ["operator"]),
        ("q.assurance", "Q. Assurance", ["qa"]),
        ("a.analyst", "A. Analyst", ["analyst"]),
        ("dual", "D. Dual", ["operator", "qa"]),
    ]:
        reg.add(uid, name, roles, SECRETS[uid], lead, FAST_KDF)  # type: ignore[arg-type]
    return path


@pytest.fixture
def registry(registry_file: Path, tmp_path: Path) -> UserRegistry:
    copy = tmp_path / "users.json"
    shutil.copy(registry_file, copy)
    return UserRegistry(copy)


@pytest.fixture
def batch(campaign_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(campaign_run, copy)
    return copy


@pytest.fixture
def ready(batch: Path, registry: UserRegistry) -> Path:
    """A batch one QA approval away from release: QC in, the operator has signed."""
    store = Store(batch / STORE_FILE)
    try:
        simulated_qc(store)
        sign(store, registry, "o.operator", SECRETS["o.operator"], "performed")
    finally:
        store.close()
    return batch


def _verify(run_dir: Path, registry: UserRegistry, *extra: str) -> tuple[int, str]:
    res = runner.invoke(
        app, ["record", "verify", str(run_dir), "--users", str(registry.path), *extra]
    )
    return res.exit_code, res.output


def _sql(run_dir: Path, *sql: str) -> None:
    """Edit the store as an attacker would: triggers dropped first."""
    db = sqlite3.connect(run_dir / STORE_FILE)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    for statement in sql:
        db.execute(statement)
    db.commit()
    db.close()


def _forge_chain(run_dir: Path) -> None:
    """Recompute every hash, the head row and the anchors: a chain consistent in itself."""
    db = sqlite3.connect(run_dir / STORE_FILE)
    db.row_factory = sqlite3.Row
    prev, hashes = GENESIS, {}
    rows = db.execute("SELECT * FROM record ORDER BY seq").fetchall()
    for r in rows:
        row = {**dict(r), "prev_hash": prev}
        h = entry_hash(row)
        db.execute("UPDATE record SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, r["seq"]))
        prev, hashes[r["seq"]] = h, h
    db.execute("UPDATE record_head SET seq = ?, hash = ?", (len(rows), prev))
    db.commit()
    db.close()
    head = anchor.head_file(run_dir / STORE_FILE)
    lines = [
        a.model_copy(update={"hash": hashes[a.entries]}).model_dump_json()
        for a in anchor.read(head)
        if a.entries in hashes
    ]
    head.write_text("\n".join(lines) + "\n")


def _blocks_release(run_dir: Path, registry: UserRegistry) -> None:
    """However the record was damaged, QA cannot approve and status says not released."""
    res = runner.invoke(app, ["release", "status", str(run_dir), "--users", str(registry.path)])
    assert "RELEASED" not in res.output.replace("NOT RELEASED", ""), res.output
    assert res.exit_code != 0 or "blocked" in res.output, res.output
    if (run_dir / STORE_FILE).is_file() and (run_dir / STORE_FILE).stat().st_size:
        with pytest.raises((WorkcellError, sqlite3.DatabaseError)):
            store = Store(run_dir / STORE_FILE)
            try:
                sign(store, registry, "q.assurance", SECRETS["q.assurance"], "approved")
            finally:
                store.close()


def test_every_kind_of_entry_is_chained_and_anchored(batch: Path, registry: UserRegistry) -> None:
    store = Store(batch / STORE_FILE, read_only=True)
    try:
        entries = store.record.entries()
        kinds = {(e.type, e.kind) for e in entries}
        assert {
            ("device", "aspirate"),
            ("measurement", "confluence"),
            ("event", "decision"),
            ("event", "operator_decision"),
            ("vessel", "vessel_created"),
            ("vessel", "vessel_state"),
        } <= kinds
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
        assert store.derived_mismatches() == []
    finally:
        store.close()
    anchors = anchor.read(batch / anchor.HEAD_FILE)
    assert anchors[-1].entries == len(entries) and anchors[-1].hash == entries[-1].hash
    assert any("harvest" in a.reason for a in anchors)
    code, out = _verify(batch, registry)
    assert code == 0 and f"record intact: {len(entries)} entries" in out


def test_the_store_refuses_to_edit_or_delete_entries_and_derived_rows(batch: Path) -> None:
    db = sqlite3.connect(batch / STORE_FILE)
    for sql in (
        "UPDATE record SET actor = 'someone' WHERE seq = 5",
        "DELETE FROM record WHERE seq = 5",
        "UPDATE events SET data = '{}' WHERE kind = 'harvested'",
        "DELETE FROM events WHERE kind = 'harvested'",
        "UPDATE vessels SET passage = 1",
        "DELETE FROM measurements",
        "UPDATE vessel_changes SET state = 'active'",
        "DELETE FROM lineage",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only|only added"):
            db.execute(sql)
    db.close()


def _truncate_consistently(run_dir: Path) -> None:
    _sql(
        run_dir,
        "DELETE FROM record WHERE seq > (SELECT MAX(seq) - 3 FROM record)",
        "UPDATE record_head SET seq = (SELECT MAX(seq) FROM record), "
        "hash = (SELECT hash FROM record WHERE seq = (SELECT MAX(seq) FROM record))",
    )


def _free_pages(data: bytes, page: int) -> set[int]:
    """The pages on SQLite's freelist (their content is not the record's)."""
    free, trunk = set(), int.from_bytes(data[32:36], "big")
    while trunk:
        at = (trunk - 1) * page
        count = int.from_bytes(data[at + 4 : at + 8], "big")
        free.add(trunk)
        free |= {
            int.from_bytes(data[at + 8 + 4 * i : at + 12 + 4 * i], "big") for i in range(count)
        }
        trunk = int.from_bytes(data[at : at + 4], "big")
    return free


def _garbage(run_dir: Path) -> None:
    """8 KiB of random bytes over two pages in use in the middle of the file."""
    path = run_dir / STORE_FILE
    data = path.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    free = _free_pages(data, page)
    n = len(data) // page // 2 + 1  # pages count from 1
    while n in free or n + 1 in free:
        n += 1
    with path.open("r+b") as f:
        f.seek((n - 1) * page)
        f.write(os.urandom(2 * page))


def _edit_signed_entry(run_dir: Path) -> None:
    """The first seeding event rewritten, the chain and the anchors beside it forged."""
    _sql(
        run_dir,
        "UPDATE record SET data = replace(data, '0', '1') WHERE seq = "
        "(SELECT min(seq) FROM record WHERE kind = 'seeded' AND type = 'event')",
    )
    _forge_chain(run_dir)


def _edit_signed_device_action(run_dir: Path) -> None:
    """A device action (in the record only, no derived row) rewritten, the chain forged:
    only the signature, which signed the old head, can tell."""
    _sql(run_dir, "UPDATE record SET data = replace(data, '0', '1') WHERE seq = 40")
    _forge_chain(run_dir)


def _edit_signature(run_dir: Path) -> None:
    _sql(
        run_dir,
        "UPDATE record SET data = replace(data, '\"performed\"', '\"approved\"') "
        "WHERE kind = 'signature'",
    )
    _forge_chain(run_dir)


def _rename_signer(run_dir: Path) -> None:
    """The two-person trick: the signature's name and actor made to look like another's."""
    _sql(
        run_dir,
        "UPDATE record SET actor = 'o.operator ', "
        "data = replace(data, 'O. Operator', 'O.  Operator\u200b') WHERE kind = 'signature'",
    )
    _forge_chain(run_dir)


TAMPERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "edit entry": (
        lambda d: _sql(d, "UPDATE record SET data = replace(data, '0', '1') WHERE seq = 40"),
        "at entry 40: entry 40",
    ),
    "drop entry": (lambda d: _sql(d, "DELETE FROM record WHERE seq = 41"), "entry 41 is missing"),
    "truncate chain": (_truncate_consistently, "entries were removed"),
    "truncate file": (lambda d: (d / STORE_FILE).write_bytes(b""), "empty (0 bytes)"),
    "drop tables": (
        lambda d: _sql(d, "DROP TABLE record", "DROP TABLE record_head"),
        "table record, record_head is gone",
    ),
    "delete all": (
        lambda d: _sql(d, "DELETE FROM record", "DELETE FROM record_head"),
        "the record is empty",
    ),
    "delete store": (lambda d: (d / STORE_FILE).unlink(), "no store in"),
    "garbage mid-file": (_garbage, ""),
    "edit derived table": (
        lambda d: _sql(
            d,
            "UPDATE events SET data = json_set(data, '$.viability_percent', 99.9) "
            "WHERE kind = 'harvested'",
        ),
        "events: row",
    ),
    "edit signed entry": (_edit_signed_entry, "data.lot 'BM-MSC-DEMO-01' vs 'BM-MSC-DEMO-11'"),
    "edit signed device action": (
        _edit_signed_device_action,
        "the record up to it was rewritten after the signature",
    ),
    "edit signature": (_edit_signature, "does not match its statement"),
    "signer name trick": (_rename_signer, "the entry names 'o.operator '"),
}


@pytest.mark.parametrize("how", list(TAMPERS), ids=list(TAMPERS))
def test_tampering_is_caught_located_and_blocks_release(
    ready: Path, registry: UserRegistry, how: str
) -> None:
    code, out = _verify(ready, registry)
    assert code == 0, out  # intact before
    tamper, says = TAMPERS[how]
    tamper(ready)
    code, out = _verify(ready, registry)
    assert code == 1, out
    assert "record NOT intact" in out and says in out, out
    if how == "garbage mid-file":
        assert "integrity check" in out or "cannot be" in out or "malformed" in out, out
    _blocks_release(ready, registry)


def test_an_old_store_put_back_with_its_old_anchor_is_caught_by_an_outside_anchor(
    batch: Path, registry: UserRegistry, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(batch, old)
    store = Store(batch / STORE_FILE)
    try:
        simulated_qc(store)
        sign(store, registry, "o.operator", SECRETS["o.operator"], "performed")
    finally:
        store.close()
    later = anchor.read(batch / anchor.HEAD_FILE)[-1]
    for name in (STORE_FILE, anchor.HEAD_FILE):  # the replay: an older pair, consistent
        shutil.copy(old / name, batch / name)
    code, out = _verify(batch, registry)
    assert code == 0, out  # the run folder alone cannot tell: that is what outside anchors are for
    code, out = _verify(batch, registry, "--anchor", f"{later.entries}:{later.hash}")
    assert code == 1 and f"says the record had {later.entries} entries" in out, out
    assert "older copy of the store was put back" in out
    res = runner.invoke(app, ["record", "verify", str(batch), "--anchor", "12:nothex"])
    assert res.exit_code == 2 and "not an anchor" in res.output


def test_a_campaign_refuses_a_run_folder_whose_record_is_gone(
    campaign_run: Path, tmp_path: Path
) -> None:
    cfg = load_config(quick_config(tmp_path))

    async def resume(folder: Path) -> None:
        async with open_session(cfg, folder):
            pass

    for damage in ("empty", "missing", "truncated"):
        folder = tmp_path / damage
        shutil.copytree(campaign_run, folder)
        if damage == "empty":
            (folder / STORE_FILE).write_bytes(b"")
        elif damage == "missing":
            (folder / STORE_FILE).unlink()
        else:
            _truncate_consistently(folder)
        with pytest.raises(WorkcellError, match="refusing to start|is missing or empty"):
            run(resume(folder))
        assert not (folder / STORE_FILE).exists() or damage != "missing"  # nothing re-created


def test_verify_reads_an_archive_nobody_may_write(campaign_run: Path, registry_file: Path) -> None:
    """A read-only run folder (as another user, if we are root: root ignores permissions)."""
    archive = Path(tempfile.mkdtemp(prefix="archive-"))
    try:
        os.chmod(archive, 0o755)
        shutil.copytree(campaign_run, archive / "run")
        shutil.copy(registry_file, archive / "users.json")
        before = sorted(p.name for p in (archive / "run").iterdir())
        for p in [*(archive / "run").iterdir(), archive / "users.json"]:
            p.chmod(0o444)
        (archive / "run").chmod(0o555)
        cmd = [sys.executable, "-m", "workcell.cli", "record", "verify", str(archive / "run")]
        cmd += ["--users", str(archive / "users.json")]
        as_nobody = os.getuid() == 0 and shutil.which("setpriv")
        if as_nobody:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]), HOME="/tmp")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd="/")
        assert proc.returncode == 0, proc.stderr
        assert "record intact" in proc.stdout and "Traceback" not in proc.stderr
        assert sorted(p.name for p in (archive / "run").iterdir()) == before  # nothing written
    finally:
        (archive / "run").chmod(0o755)
        shutil.rmtree(archive)


def test_qa_approval_needs_two_people_in_their_roles_and_a_verified_record(
    batch: Path, registry: UserRegistry
) -> None:
    store = Store(batch / STORE_FILE)
    try:
        simulated_qc(store)
        with pytest.raises(WorkcellError, match="unknown user or wrong secret"):
            sign(store, registry, "o.operator", "not my secret", "performed")
        with pytest.raises(WorkcellError, match="needs the qa role"):
            sign(store, registry, "o.operator", SECRETS["o.operator"], "approved")
        with pytest.raises(WorkcellError, match="not a user id"):
            sign(store, registry, "o.operator\u200b", SECRETS["o.operator"], "performed")
        with pytest.raises(WorkcellError, match="'performed' signature first"):
            sign(store, registry, "q.assurance", SECRETS["q.assurance"], "approved")
        sign(store, registry, "dual", SECRETS["dual"], "performed")
        with pytest.raises(WorkcellError, match="already signed"):  # one user in two roles
            sign(store, registry, "dual", SECRETS["dual"], "approved")
        with pytest.raises(WorkcellError, match="unknown user or wrong secret"):
            sign(store, registry, "q.assurance", SECRETS["dual"], "approved")
        assert release_state(store, registry).stage is Stage.WAITING_SIGNATURES
    finally:
        store.close()
    unverified = batch.parent / "unverified"
    shutil.copytree(batch, unverified)
    _sql(unverified, "UPDATE record SET data = replace(data, '0', '1') WHERE seq = 40")
    store = Store(unverified / STORE_FILE)
    try:
        with pytest.raises(WorkcellError, match="does not verify"):
            sign(store, registry, "q.assurance", SECRETS["q.assurance"], "approved")
    finally:
        store.close()
    store = Store(batch / STORE_FILE)
    try:
        sig = sign(store, registry, "q.assurance", SECRETS["q.assurance"], "approved")
        state = release_state(store, registry)
        assert state.released and state.integrity.ok, state.reason
        assert [(s.user_id, s.meaning) for s in state.signatures] == [
            ("dual", "performed"),
            ("q.assurance", "approved"),
        ]
        assert sig.statement.entries == sig.seq - 1 and sig.statement.name == "Q. Assurance"
    finally:
        store.close()
    assert release_state(Store(batch / STORE_FILE, read_only=True), None).stage is Stage.BLOCKED


def test_names_and_ids_are_one_spelling_and_users_are_endorsed(registry: UserRegistry) -> None:
    assert normalise_name("  O.\u00a0 Operator ") == "O. Operator"
    lead = registry.authenticate("qa.lead", SECRETS["qa.lead"])
    for uid, name, match in [
        ("o.operator\u200b", "Other", "not a user id"),
        ("O.Operator", "Other", "not a user id"),
        ("x" * 40, "Other", "not a user id"),
        ("o.operator", "Someone Else", "is taken"),
        ("o.operator2", "O.  Operator", "already shown as"),
        ("o.operator3", "o. operator", "already shown as"),
        ("o.operator4", "O. Oper\u200bator", "invisible"),
        ("o.operator5", "O. Operator\nQA approved", "invisible"),
        ("o.operator6", "A" * 81, "1 to 80"),
    ]:
        with pytest.raises(WorkcellError, match=match):
            registry.add(uid, name, ["operator"], "some secret 1", lead, 2**14)
    op = registry.authenticate("o.operator", SECRETS["o.operator"])
    with pytest.raises(WorkcellError, match="not a QA user"):
        registry.add("n.new", "N. New", ["qa"], "some secret 1", op, 2**14)
    assert registry.problems() == []
    registry.change_secret("o.operator", SECRETS["o.operator"], "a new secret 2", 2**14)
    with pytest.raises(WorkcellError, match="wrong secret"):
        registry.authenticate("o.operator", SECRETS["o.operator"])
    assert (
        registry.authenticate("o.operator", "a new secret 2").user.public_key == op.user.public_key
    )
    registry.set_active("o.operator", False, lead)
    with pytest.raises(WorkcellError, match="deactivated"):
        registry.authenticate("o.operator", "a new secret 2")
    assert registry.problems() == []
    data = json.loads(registry.path.read_text())
    forged = dict(data["users"][2], id="x.forged", name="X", endorsed_by="x.other")
    data["users"].append(forged)  # an account added by hand, "endorsed" by nobody real
    registry.path.write_text(json.dumps(data))
    assert registry.problems() == ["user 'x.forged' was not endorsed by a QA user of the registry"]
    data["users"].pop()
    data["users"][1]["roles"] = ["operator", "qa"]  # a role granted by editing the file
    registry.path.write_text(json.dumps(data))
    assert registry.problems() == ["user 'o.operator' was changed after 'qa.lead' endorsed it"]


def test_qc_results_are_validated_and_entered_whole(batch: Path, registry: UserRegistry) -> None:
    good = {"test": "endotoxin", "value": 0.1}
    for bad, says in [
        ({"test": "flow_cytometry", "markers_percent": {"CD90": 1000}}, "less than or equal"),
        ({"test": "flow_cytometry", "markers_percent": {"HLA-DR": -100}}, "greater than"),
        ({"test": "flow_cytometry", "markers_percent": {"CD73": float("nan")}}, "finite"),
        ({"test": "endotoxin", "value": float("inf")}, "finite"),
        ({"test": "endotoxin", "value": -1}, "greater than"),
        ({"test": "flow_cytometry", "markers_percent": {"CD999": 5}}, "unknown markers"),
        ({"test": "sterility"}, "negative or positive"),
        ({"test": "sterility", "result": "negative", "value": 3}, "negative or positive only"),
    ]:
        with pytest.raises(WorkcellError, match=f"nothing entered: item 2 .*{says}"):
            parse_results([good, bad])
    store = Store(batch / STORE_FILE)
    try:
        before = store.record.head()
        harvest = store.events("harvested")[-1].time
        early = parse_results(
            [good, {"test": "sterility", "result": "negative", "reported_at": harvest.isoformat()}]
        )
        with pytest.raises(WorkcellError, match="item 2 \\(sterility\\) reported 0.0 days"):
            enter_results_as(store, registry, "a.analyst", SECRETS["a.analyst"], early)
        with pytest.raises(WorkcellError, match="may not enter QC"):
            enter_results_as(store, registry, "o.operator", SECRETS["o.operator"], early[:1])
        assert store.record.head() == before  # nothing of the file went in
        status = {c.name: c.status for c in evaluate(store)}
        assert status["endotoxin"] is Status.MISSING
        assert release_state(store, registry).stage is Stage.WAITING_QC
        late = parse_results(
            {"test": "sterility", "result": "positive", "reported_at": _days(harvest, 15)}
        )
        enter_results(store, late, "a.analyst", "test", False)
        state = release_state(store, registry)
        assert state.stage is Stage.BLOCKED and "sterility fail" in state.reason
    finally:
        store.close()
    qc = batch.parent / "qc.json"
    qc.write_text('[{"test": "endotoxin", "value": 0.1}, {"test": "endotoxin", "value": NaN}]')
    res = runner.invoke(
        app,
        ["release", "enter", str(batch), str(qc), "--user", "a.analyst"]
        + ["--users", str(registry.path)],
        input=SECRETS["a.analyst"] + "\n",
    )
    assert res.exit_code == 2 and "item 2 (endotoxin): value: Input should be a finite" in (
        res.output
    )
    qc.write_text(json.dumps([good, {"test": "mycoplasma", "result": "negative"}]))
    res = runner.invoke(
        app,
        ["release", "enter", str(batch), str(qc), "--user", "a.analyst"]
        + ["--users", str(registry.path)],
        input=SECRETS["a.analyst"] + "\n",
    )
    assert res.exit_code == 0, res.output
    store = Store(batch / STORE_FILE, read_only=True)
    try:
        (entry,) = [e for e in store.events("qc_result") if e.data["test"] == "endotoxin"]
        assert entry.actor == "a.analyst" and entry.data["entry"]["authenticated"] is True
    finally:
        store.close()


def test_cli_signs_with_a_secret_and_errors_are_one_line(
    ready: Path, registry: UserRegistry
) -> None:
    users = ["--users", str(registry.path)]
    res = runner.invoke(
        app,
        ["release", "sign", str(ready), "--user", "q.assurance", "--meaning", "approved", *users],
        input="wrong secret\n",
    )
    assert res.exit_code == 2 and "unknown user or wrong secret" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(
        app,
        ["release", "sign", str(ready), "--user", "q.assurance", "--meaning", "approved", *users],
        input=SECRETS["q.assurance"] + "\n",
    )
    assert res.exit_code == 0, res.output
    assert "RELEASED" in res.output.replace("NOT RELEASED", "")
    res = runner.invoke(app, ["release", "status", str(ready / "nope"), *users])
    assert res.exit_code == 2 and "no batch record" in res.output


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
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium not installed (CI installs it)",
)
def test_report_renders_in_headless_chromium_with_its_figures(
    ready: Path, registry: UserRegistry, tmp_path: Path
) -> None:
    assert CHROMIUM is not None, "CI must have chromium (.ci/run installs it)"
    store = Store(ready / STORE_FILE)
    try:
        sign(store, registry, "q.assurance", SECRETS["q.assurance"], "approved")
        head = store.record.head()[1]
    finally:
        store.close()
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(ready), "-o", str(out), "--users", str(registry.path)])
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
        "q.assurance",
        "sterility",
    ):
        assert section in dom


def test_enter_results_refuses_before_harvest(tmp_path: Path) -> None:
    store = Store(tmp_path / STORE_FILE)
    try:
        with pytest.raises(WorkcellError, match="harvested batch"):
            enter_results(store, parse_results({"test": "endotoxin", "value": 0.1}), "x", "t", True)
    finally:
        store.close()


def _days(t: datetime, days: float) -> str:
    return (t + timedelta(days=days)).isoformat()


def test_a_crash_before_the_first_anchor_or_mid_anchor_is_not_damage(tmp_path: Path) -> None:
    """A new store is anchored empty; entries written before a crash, or an anchor line cut
    short, do not stop the next session; a store whose anchor file was removed does."""
    from workcell.batch.integrity import refuse_damaged

    path = tmp_path / STORE_FILE
    store = Store(path)
    store.add_event(Event(time=datetime.now(UTC), kind="noted", actor="t"))
    store._db.close()  # killed: no anchor since the one of the empty store
    head = path.with_suffix(".head")
    assert [a.entries for a in anchor.read(head)] == [0]
    refuse_damaged(path)
    with head.open("a") as f:
        f.write('{"entries": 1, "ha')  # killed while writing an anchor
    refuse_damaged(path)
    store = Store(path)
    store.anchor("step end")  # the torn line is cut, the new one follows
    store.close()
    assert [a.entries for a in anchor.read(head)] == [0, 1]
    head.unlink()
    with pytest.raises(WorkcellError, match="no anchor beside it"):
        refuse_damaged(path)


def test_a_signature_written_while_the_release_verifies_is_not_a_tampered_row(
    ready: Path, registry: UserRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (the command line's ``release sign``) commits between two of the
    release's reads: verification reads one snapshot, and the release judges the entries
    it verified (a fresh clone's browser test saw "row 49 was not written by any record
    entry" from this race)."""
    from workcell.record import BatchRecord

    checker = Store(ready / STORE_FILE)
    other = Store(ready / STORE_FILE)
    entries = BatchRecord.entries
    writes = {"left": 2}

    def entries_then_a_write(self: BatchRecord, type_: str | None = None) -> list[Any]:
        got = entries(self, type_)
        if self is checker.record and writes["left"]:
            writes["left"] -= 1  # the other process signs between this read and the next
            other.add_event(
                Event(time=datetime.now(UTC), kind="note", actor="o.operator", data={"n": 1})
            )
        return got

    monkeypatch.setattr(BatchRecord, "entries", entries_then_a_write)
    try:
        state = release_state(checker, registry)
        assert state.integrity.ok, state.integrity.problems
        assert writes["left"] == 0  # both writes happened while it verified
        assert state.integrity.entries == checker.record.head()[0]  # it judged them all
        monkeypatch.setattr(BatchRecord, "entries", entries)
        assert release_state(checker, registry).integrity.ok
    finally:
        checker.close()
        other.close()
