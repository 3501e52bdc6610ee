"""The operator's path in a real browser: the Prefect UI, Debian's Chromium, our deployments.

A Prefect server (with its UI) and ``workcell serve`` of a simulated workcell run on
127.0.0.1; Playwright drives Chromium through what an operator does:

1. a seed run from the deployment's form (dropdowns, units), first with a density
   out of range, which the server refuses before a run exists;
2. a passage with an unknown plate typed as JSON, refused before a run exists;
3. a campaign to its harvest hold: the Resume form says what is decided and why,
   with the vessels; the operator approves; the run's artifacts hold the decision,
   who made it, and the batch summary.

Screenshots go to the test's output folder (``WORKCELL_SCREENSHOTS`` to choose
one); README's pictures are these.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.prefect_helpers import Served, prefect_and_workcell
from workcell.store import STORE_FILE, Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (CI installs it)"
)
WORKCELL = "ui-workcell"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with prefect_and_workcell(tmp_path_factory.mktemp("prefect-ui"), WORKCELL) as s:
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


def submit_and_open_run(pg: Any, served: Served) -> str:
    """Submit the form; the UI goes to the deployment's runs; open the new run. Its id."""
    before = {r["id"] for r in served.flow_runs()}
    pg.get_by_role("button", name="Submit").click()
    pg.wait_for_url(re.compile(r"tab=Runs"))
    deadline = time.monotonic() + 30
    while not (new := [r["id"] for r in served.flow_runs() if r["id"] not in before]):
        assert time.monotonic() < deadline, "the form created no run"
        time.sleep(0.3)
    (run_id,) = new
    pg.goto(f"{served.ui}/runs/flow-run/{run_id}")
    return str(run_id)


def show_tab(pg: Any, name: str) -> None:
    pg.locator(".p-tabs, [role=tablist]").first.get_by_text(name, exact=True).click()


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
    pg.get_by_text("Seeded 6 vessels on plate_1").wait_for()  # the state message

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
    modal.get_by_role("button", name="Submit").click()
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
