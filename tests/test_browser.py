"""The operator's path in a real browser: the Prefect UI, Debian's Chromium, our deployments.

A Prefect server (with its UI) and ``workcell serve`` of a simulated workcell run on
127.0.0.1; Playwright drives Chromium through what an operator does:

1. a seed run from the deployment's form (dropdowns, units), first with a density
   out of range, which the server refuses before a run exists;
2. a passage with an unknown plate typed as JSON, refused before a run exists;
3. a campaign to its harvest hold: the Resume form says what is decided and why,
   with the vessels; the operator approves; the run's artifacts hold the decision,
   who made it, and the batch summary;
4. the harvest's release (its own flow run), suspended for QC results: an analyst's
   Resume form with a box per marker; a missing user id and a percentage over 100
   refused before the run resumes, an unknown user refused by the flow (which waits
   again, saying so); the results entered, the signatures given on the command
   line, the release Completed saying who signed.

Screenshots go to the test's output folder (``WORKCELL_SCREENSHOTS`` to choose
one); README's pictures are these.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.prefect_helpers import BIN, Served, prefect_and_workcell
from workcell.batch.users import UserRegistry
from workcell.store import STORE_FILE, Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (CI installs it)"
)
WORKCELL = "ui-workcell"
SECRETS = {"q.lead": "lead secret 1", "a.analyst": "analyst secret 1", "o.op": "op secret 12"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("prefect-ui")
    registry = UserRegistry(home / "users.json")  # who enters QC results and signs
    registry.add("q.lead", "Q. Lead", ["qa"], SECRETS["q.lead"], None, 2**14)
    lead = registry.authenticate("q.lead", SECRETS["q.lead"])
    for uid, name, role in [("a.analyst", "A. Analyst", "analyst"), ("o.op", "O. Op", "operator")]:
        registry.add(uid, name, [role], SECRETS[uid], lead, 2**14)  # type: ignore[list-item]
    env = {"WORKCELL_USERS": str(registry.path)}
    with prefect_and_workcell(home, WORKCELL, extra_env=env) as s:
        yield s


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("WORKCELL_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "CI must have chromium (.ci/run installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(90_000)  # a busy 2-core machine: the UI answers slowly
        pg.set_default_navigation_timeout(120_000)
        try:
            yield pg
        finally:
            browser.close()


def field(pg: Any, label: str) -> Any:
    """The innermost form field whose label starts with ``label``."""
    title = pg.locator(".schema-form-property__label", has_text=re.compile("^" + re.escape(label)))
    return pg.locator(".schema-form-property").filter(has=title).last


def pick(pg: Any, label: str, option: str) -> None:
    """Choose ``option`` in a dropdown field (the control opens with the arrow key)."""
    field(pg, label).locator("button.p-select-button__control").focus()
    pg.keyboard.press("ArrowDown")
    pg.locator(".p-select-option", has_text=re.compile(f"^{re.escape(option)}$")).click()
    pg.keyboard.press("Escape")


def open_form(pg: Any, served: Served, operation: str) -> None:
    deployment = served.deployment_id(f"{operation} @ {WORKCELL}")
    pg.goto(f"{served.ui}/deployments/deployment/{deployment}/run")
    pg.wait_for_selector(".schema-form-property__label")


def page_errors(pg: Any) -> str:
    """What the UI shows as an error right now (toasts, field errors), for a failure message."""
    found = pg.locator(".p-toast, [role=alert], .p-message--error, .schema-form-property__errors")
    return " | ".join(t.strip() for t in found.all_inner_texts() if t.strip()) or "(no error shown)"


def server_errors(served: Served) -> str:
    """The Prefect server's log lines that say something went wrong (the last few)."""
    log = (served.home / "server.log").read_text(errors="replace").splitlines()
    return "\n".join([ln for ln in log if "rror" in ln or "locked" in ln][-8:])


def submit_and_open_run(pg: Any, served: Served) -> str:
    """Submit the form; the UI goes to the deployment's runs; open the new run. Its id.

    The Prefect server's SQLite can answer "database is locked" on a busy machine, and
    the form then stays open with a toast: submit again while no run exists. A run
    created without the page moving on is opened all the same."""
    before = {r["id"] for r in served.flow_runs()}
    seen = []
    for _ in range(3):
        pg.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + 45
        while not (new := [r["id"] for r in served.flow_runs() if r["id"] not in before]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if new:
            break
        seen.append(page_errors(pg))
        pg.screenshot(path=served.home / f"submit-{len(seen)}.png")
    else:
        raise AssertionError(
            f"the form created no run; the page said: {seen}; the server:\n" + server_errors(served)
        )
    (run_id,) = new
    pg.goto(f"{served.ui}/runs/flow-run/{run_id}")
    return str(run_id)


def show_tab(pg: Any, name: str) -> None:
    pg.locator(".p-tabs, [role=tablist]").first.get_by_text(name, exact=True).click()


def submit_resume(modal: Any) -> None:
    """Submit a valid Resume form: the modal closes once the run resumes. The Prefect
    server's SQLite can answer "database is locked" on a busy machine: submit again."""
    for _ in range(3):
        modal.get_by_role("button", name="Submit").click()
        try:
            modal.wait_for(state="hidden", timeout=30_000)
            return
        except Exception:  # noqa: BLE001 - still open: the resume did not go through
            continue
    raise AssertionError("the Resume form did not go through")


def test_operator_path_in_the_prefect_ui(served: Served, page: Any, shots: Path) -> None:
    pg = page
    t_start = time.monotonic()
    served.deployment_id(f"campaign @ {WORKCELL}")  # `workcell serve` has registered them all
    pg.goto(f"{served.ui}/deployments")
    pg.get_by_text(f"campaign @ {WORKCELL}").wait_for()
    pg.screenshot(path=shots / "01-deployments.png")

    # 1. seed from the form: first a density out of range, refused before any run exists
    open_form(pg, served, "seed")
    field(pg, "Volume (mL)").locator("input").fill("5")
    field(pg, "Viable cells (cells/mL)").locator("input").fill("500000")
    pick(pg, "Plates", "plate_1")
    field(pg, "Volume (mL)").scroll_into_view_if_needed()
    pg.screenshot(path=shots / "02-seed-form.png")
    density = field(pg, "Density (cells/cm²)")
    assert "(from 100 to 10,000)" in density.inner_text()  # the range is on the form
    density.locator("input").fill("50000")
    pg.get_by_role("button", name="Submit").click()
    pg.get_by_text(re.compile("50000 is greater than the maximum of 10000")).first.wait_for()
    assert served.flow_runs() == []
    pg.screenshot(path=shots / "03-out-of-range.png")
    density.locator("input").fill("3000")
    seed_id = submit_and_open_run(pg, served)
    run = served.wait_state(seed_id, {"Completed"})
    start = datetime.fromisoformat(run["start_time"].replace("Z", "+00:00"))
    created = datetime.fromisoformat(run["created"].replace("Z", "+00:00"))
    print(f"seed: submit to start {(start - created).total_seconds():.1f} s")
    assert run["state"]["message"].startswith("Seeded 6 vessels on plate_1")
    pg.reload()
    show_tab(pg, "Details")
    # the state message, whole (a log line that quotes it may be on the page as well)
    pg.get_by_text(run["state"]["message"], exact=True).wait_for()

    # 2. an unknown plate, typed as JSON: refused before a run exists
    open_form(pg, served, "passage")
    pg.get_by_text("Parameters", exact=True).first.locator("xpath=..").locator("button").click()
    pg.locator(".p-overflow-menu-item", has_text="Use JSON input").click()
    pg.locator(".p-code-input textarea").first.fill(
        '{"params": {"plate": "plate_99", "destination_plates": ["plate_2"]}}'
    )
    pg.get_by_role("button", name="Submit").click()
    pg.get_by_text(re.compile("'plate_99' is not one of")).wait_for()
    pg.screenshot(path=shots / "03b-unknown-plate.png")
    assert [r["id"] for r in served.flow_runs()] == [seed_id]

    # 3. a campaign to its harvest hold (a small target: the hold comes on day 1)
    open_form(pg, served, "campaign")
    field(pg, "Patient weight (kg)").locator("input").fill("1")
    field(pg, "Target dose (cells/kg)").locator("input").fill("10000")
    field(pg, "Batch").locator("input, textarea").first.fill("batch-ui")
    campaign_id = submit_and_open_run(pg, served)
    served.wait_state(campaign_id, {"Suspended"})  # its process ends while we decide
    pg.reload()
    pg.get_by_role("button", name="Resume").click()
    modal = pg.locator(".p-modal, [role=dialog]").first
    modal.get_by_text("Harvest the batch now?").wait_for()
    text = modal.inner_text()
    assert "Why:" in text and "estimated now" in text and "harvest at ≥" in text
    assert text.count("plate_1") >= 6  # the vessel table
    pg.screenshot(path=shots / "04-hold.png")
    modal.get_by_role("heading", name="Vessels in culture").evaluate("e => e.scrollIntoView()")
    pg.screenshot(path=shots / "04b-hold-vessels.png")
    field(pg, "Your name").locator("input, textarea").first.fill("J. Doe")
    field(pg, "Comment").locator("input, textarea").first.fill("counts and images fine")
    submit_resume(modal)
    run = served.wait_state(campaign_id, {"Completed"})
    assert "approved by J. Doe" in run["state"]["message"]
    pg.reload()
    show_tab(pg, "Artifacts")
    pg.get_by_text("decision-1", exact=True).wait_for()
    pg.get_by_text("approved by J. Doe: harvest plate_1").wait_for()
    pg.screenshot(path=shots / "05-artifacts.png")
    found = served.api("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [campaign_id]}}})
    (summary,) = [a for a in found if a["key"] == "batch-summary-batch-ui"]
    pg.goto(f"{served.ui}/artifacts/artifact/{summary['id']}")
    pg.get_by_role("heading", name="Batch summary").wait_for()
    body = pg.locator("body").inner_text()
    assert "harvested" in body and "J. Doe" in body and "counts and images fine" in body
    pg.screenshot(path=shots / "06-batch-summary.png", full_page=True)

    # the world agrees: the campaign's own run folder holds the decision and the harvest
    store = Store(served.run_dir / "campaigns" / "batch-ui" / STORE_FILE)
    try:
        (answer,) = store.events("operator_decision")
        assert answer.actor == "J. Doe" and answer.data["decision"] == "approve"
        assert store.events("harvested") and store.record.verify().ok
    finally:
        store.close()
    print(f"browser path: {time.monotonic() - t_start:.0f} s; screenshots in {shots}")


def _suspended_at(served: Served, run_id: str, key: str) -> None:
    deadline = time.monotonic() + 300  # a busy 2-core machine: as wait_state
    while True:
        state = served.api(f"/flow_runs/{run_id}")["state"]
        if state["name"] == "Suspended" and state["state_details"]["pause_key"] == key:
            return
        assert state["type"] not in ("COMPLETED", "FAILED", "CRASHED"), state
        assert time.monotonic() < deadline, f"not suspended at {key}: {state['name']}"
        time.sleep(0.5)


def _qc_results(folder: Path) -> list[Any]:
    store = Store(folder / STORE_FILE, read_only=True)
    try:
        return store.events("qc_result")
    finally:
        store.close()


def test_release_waits_for_qc_results_from_its_form(served: Served, page: Any, shots: Path) -> None:
    """The harvest above started its release; an analyst answers its Resume form."""
    pg = page
    t_start = time.monotonic()
    batch = served.run_dir / "campaigns" / "batch-ui"
    assert (batch / STORE_FILE).is_file(), "needs the harvest of the operator path test above"
    (run,) = [
        r
        for r in served.flow_runs()
        if Path(r["parameters"].get("run_dir") or "/-") == batch.resolve()
    ]
    run_id = str(run["id"])
    _suspended_at(served, run_id, "qc-1")
    pg.goto(f"{served.ui}/runs/flow-run/{run_id}")
    pg.get_by_text(re.compile("waiting for QC results .qc-1.: missing flow cytometry")).wait_for()
    pg.screenshot(path=shots / "07-release-suspended.png")

    def open_resume() -> Any:
        pg.reload()
        pg.get_by_role("button", name="Resume").click()
        modal = pg.locator(".p-modal, [role=dialog]").first
        modal.get_by_text("QC results for batch batch-ui").wait_for()
        return modal

    # refused before the run resumes: no user id, then a percentage over 100
    pg.set_viewport_size({"width": 1280, "height": 1300})  # a long form squeezes the text above
    modal = open_resume()
    assert "Still missing: flow cytometry (CD73" in modal.inner_text()
    pg.screenshot(path=shots / "08-release-form.png")
    field(pg, "CD90").locator("input").fill("1000")
    modal.get_by_role("button", name="Submit").click()
    pg.get_by_text("'analyst' is a required property").wait_for()
    field(pg, "Your user id").locator("textarea, input").first.fill("a.analyst")
    modal.get_by_role("button", name="Submit").click()
    pg.get_by_text(re.compile("1000 is greater than the maximum of 100")).first.wait_for()
    assert served.api(f"/flow_runs/{run_id}")["state"]["name"] == "Suspended"

    # an unknown user: the flow enters nothing and asks again, saying why
    field(pg, "Your user id").locator("textarea, input").first.fill("x.nobody")
    field(pg, "CD90").locator("input").fill("98.5")
    submit_resume(modal)
    _suspended_at(served, run_id, "qc-2")
    assert _qc_results(batch) == []
    modal = open_resume()
    modal.get_by_text(re.compile("Your last entry was refused.*'x.nobody' is not")).first.wait_for()

    # the lab's results, as an analyst types them
    field(pg, "Your user id").locator("textarea, input").first.fill("a.analyst")
    markers = {"CD73": 99, "CD90": 98.5, "CD105": 97, "CD45": 0.5, "CD34": 0.4}
    for name, value in (markers | {"CD14": 0.3, "CD19": 0.2, "HLA-DR": 1.1}).items():
        field(pg, name).locator("input").fill(str(value))
    pick(pg, "Sterility", "negative")
    pick(pg, "Mycoplasma", "negative")
    field(pg, "Endotoxin").locator("input").fill("0.1")
    submit_resume(modal)
    _suspended_at(served, run_id, "sign-1")
    entered = _qc_results(batch)
    assert {e.data["test"] for e in entered} == {
        "flow_cytometry",
        "sterility",
        "mycoplasma",
        "endotoxin",
    }
    assert {(e.actor, e.data["entry"]["channel"]) for e in entered} == {("a.analyst", "prefect-ui")}
    (flow,) = [e for e in entered if e.data["test"] == "flow_cytometry"]
    assert (
        flow.data["markers_percent"]["CD90"] == 98.5 and "CD11b" not in flow.data["markers_percent"]
    )

    # signatures on the command line (the secret never goes through Prefect)
    env = served.env | {"WORKCELL_USERS": str(served.home / "users.json")}
    for user, meaning in [("o.op", "performed"), ("q.lead", "approved")]:
        proc = subprocess.run(
            [
                str(BIN / "workcell"),
                "release",
                "sign",
                str(batch),
                "-u",
                user,
                "--meaning",
                meaning,
            ],
            input=SECRETS[user] + "\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    done = served.wait_state(run_id, {"Completed"})
    message = done["state"]["message"]
    assert message == (
        "batch batch-ui released: every criterion passed; performed by o.op, approved by q.lead"
    )
    logs = served.api("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}})
    said = [str(x["message"]) for x in logs]
    assert sum("'x.nobody' is not an active" in m for m in said) == 1  # replays are quiet
    assert sum(m.startswith("waiting for QC results (qc-1)") for m in said) == 1
    pg.set_viewport_size({"width": 1280, "height": 900})
    pg.reload()
    show_tab(pg, "Logs")
    pg.get_by_text(message).first.wait_for()
    pg.screenshot(path=shots / "09-release-completed.png")
    print(f"release in the browser: {time.monotonic() - t_start:.0f} s")
