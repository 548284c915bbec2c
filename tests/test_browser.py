"""The Plex page and the scene panel in a real browser (Debian's Chromium, headless, driven by
Playwright), in both hosts:

- inside "Stash": a harness page that provides `window.PluginApi` as Stash does (ui/harness),
  served by the Stash emulator, whose /graphql runs the plugin through the plugin runner for
  `runPluginOperation`;
- on `stash2plex serve`: its dashboard, against the sandbox.

Both must show the store's counts, Retry on a dead letter must re-queue it, and the scene
badge must go from "waiting" to "in sync" once Plex is back and the scene synced. With
`--screenshots DIR` the pages are saved as PNG (docs/images holds the ones the docs show).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store
from stash2plex.store.holds import PARKED

from .conftest import PLEX_TOKEN, REPO, wait_until
from .sandbox import Sandbox, sandbox
from .seeding import dead, done, wait
from .serving import RunningService, start_service, stop_service

CHROMIUM = Path("/usr/bin/chromium")
HARNESS = REPO / "ui" / "harness" / "dist"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.slow


def unavailable(message: str) -> None:
    """Skip locally; under CI the browser tests must run, so fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def harness() -> Path:
    """The harness bundle (built by .ci/run; built here if npm and ui/node_modules exist)."""
    if not (HARNESS / "harness.js").is_file():
        npm = shutil.which("npm")
        if npm and (REPO / "ui" / "node_modules").is_dir():
            subprocess.run([npm, "run", "build:harness"], cwd=REPO / "ui", check=True)
        else:
            unavailable(
                "the browser-test harness is not built: cd ui && npm ci && npm run build:harness"
            )
    return HARNESS


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not CHROMIUM.is_file():
        unavailable("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # A fresh profile for every run: launch_persistent_context owns --user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(str(error)))

    def console(message) -> None:
        # Browsers ask every site for /favicon.ico; neither Stash stand-in has one.
        if message.type == "error" and "favicon" not in str(message.location.get("url")):
            problems.append(f"{message.text} ({message.location.get('url')})")

    tab.on("console", console)
    tab.problems = problems
    yield tab
    tab.close()


def screenshot(request: pytest.FixtureRequest, page, name: str) -> None:
    folder = request.config.getoption("--screenshots")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def seed(data_dir: Path, dead_scene: int) -> None:
    """A queue that stays put while the page is read: waiting jobs due later, done jobs and
    dead letters (nothing pending, so no worker changes it under the test)."""
    with Store.open(data_dir) as store:
        store.enqueue([101, 102, 103, 104, 105, 106, dead_scene], source="test")
        jobs = {job.scene_id: job for job in store.jobs()}
        now = store.clock()
        for scene_id in (101, 102):
            wait(
                store,
                jobs[scene_id],
                reason="not_in_plex",
                due_at=now + 3600,
                attempts=0,
                error="the scene's file is not in Plex yet",
                detail={"paths": [f"/media/{scene_id}.mp4"]},
            )
        wait(
            store,
            jobs[103],
            reason="ambiguous",
            due_at=now + 3600,
            attempts=0,
            error="2 Plex items could be this scene; not guessing",
            detail={"candidates": [{"rating_key": 9001, "path": "/a/x.mp4"}]},
        )
        # Parked: no timer, it waits for a change (due_at is store.holds.PARKED, ~1e18).
        wait(store, jobs[106], reason="conflict", due_at=PARKED, attempts=0, error="shared")
        done(store, jobs[104])
        done(store, jobs[105])
        dead(
            store,
            jobs[dead_scene],
            error_class="permanent",
            message="Plex refused (400)",
            attempts=1,
        )
        store.record_outage(now - 7200, now - 6600, 4)


def shown_counts(page) -> dict[str, int]:
    names = ("pending", "in-progress", "waiting", "done", "dead-letters")
    return {name: int(page.get_by_test_id(f"count-{name}").inner_text()) for name in names}


def store_counts(data_dir: Path) -> dict[str, int]:
    with Store.open(data_dir) as store:
        counts = store.job_counts()
        letters = len(store.dead_letters())
    return {
        "pending": counts.get("pending", 0),
        "in-progress": counts.get("leased", 0),
        "waiting": sum(n for k, n in counts.items() if k.startswith("waiting:")),
        "done": counts.get("done", 0),
        "dead-letters": letters,
    }


def retry_first_dead_letter(page, data_dir: Path, scene_id: int) -> None:
    row = page.locator(f'[data-testid="dead-letter-row"][data-scene="{scene_id}"]')
    row.get_by_test_id("retry-letter").click()
    page.get_by_test_id("confirm-yes").click()
    page.get_by_test_id("dead-letter-note").filter(has_text="Re-queued 1 scene").wait_for()
    with Store.open(data_dir) as store:
        assert [d for d in store.dead_letters() if d["scene_id"] == scene_id] == []
        job = store.job(scene_id)
        assert job is not None and job.source == "retry dead letters"


# ------------------------------------------------------------------------ inside Stash
@pytest.fixture
def stash_site(plugin_dir: Path, harness: Path, tmp_path: Path):
    library = generate_library(30, seed=9)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _section):
        cwd = tmp_path / "stash-cwd"
        cwd.mkdir()
        stash.attach_plugin(PluginRunner(plugin_dir, cwd=cwd))
        stash.serve_ui(harness)
        yield library, plex, stash


def in_plex(library) -> list[int]:
    return sorted(s.id for s in library.scenes.values() if s.files and s.in_plex and s.title)


def test_the_stash_page_shows_the_stores_counts_and_retry_requeues(
    stash_site, plugin_dir: Path, page, request
):
    library, _plex, stash = stash_site
    data_dir = plugin_dir / "data"
    dead_scene = in_plex(library)[0]
    seed(data_dir, dead_scene)

    page.goto(f"{stash.url}/")
    page.get_by_test_id("stash2plex-nav").click()  # the navigation bar links the page
    page.get_by_test_id("count-pending").wait_for()
    page.get_by_test_id("outage-timeline").wait_for()
    assert page.get_by_test_id("stash2plex-page").get_attribute("data-host") == "stash"
    assert shown_counts(page) == store_counts(data_dir)
    reasons = page.get_by_test_id("waiting-reasons").inner_text()
    assert "not in Plex yet: 2" in reasons and "ambiguous match: 1" in reasons
    assert page.get_by_test_id("reconcile-none").is_visible()
    # the waiting table loads through its own view, after the counts
    page.locator('[data-testid="waiting-row"]').nth(3).wait_for()
    assert page.locator('[data-testid="waiting-row"]').count() == 4
    parked = page.locator('[data-testid="waiting-row"][data-scene="106"]')
    assert "when something changes" in parked.inner_text()
    assert "Invalid Date" not in page.inner_text("body")
    # Availability says which window each row covers.
    assert page.get_by_test_id("window-label").first.inner_text().startswith("last 24 hours")
    assert "began watching" in page.get_by_test_id("availability-note").inner_text()
    screenshot(request, page, "stash-plex-page")

    retry_first_dead_letter(page, data_dir, dead_scene)
    assert page.problems == []


def test_the_task_buttons_say_what_became_of_the_task(stash_site, plugin_dir: Path, page):
    _library, plex, stash = stash_site
    page.goto(f"{stash.url}/")
    page.get_by_test_id("stash2plex-nav").click()
    tasks = page.get_by_test_id("section-tasks")
    tasks.get_by_role("button", name="Health Check").click()
    note = page.get_by_test_id("task-note")
    page.wait_for_selector('[data-testid="task-note"][data-state="finished"]', timeout=60_000)
    assert note.inner_text().startswith('"Health Check" finished')

    plex.faults.refuse_connections()
    tasks.get_by_role("button", name="Health Check").click()
    page.wait_for_selector('[data-testid="task-note"][data-state="failed"]', timeout=60_000)
    text = note.inner_text()
    assert text.startswith('"Health Check" failed: ') and "not reachable" in text, text
    assert page.problems == []


def test_the_scene_badge_goes_from_waiting_to_in_sync(stash_site, plugin_dir: Path, page, request):
    library, plex, stash = stash_site
    scene_id = in_plex(library)[1]
    page.goto(f"{stash.url}/scenes/{scene_id}")
    badge = page.get_by_test_id("stash2plex-badge")
    badge.wait_for()
    assert badge.get_attribute("data-state") == "not_linked"

    # Plex goes down before the user first asks for a sync: Stash2Plex has never reached it,
    # so this looks like a wrong address (a setting to check), not an outage.
    plex.faults.refuse_connections()
    page.get_by_test_id("sync-now").click()
    page.wait_for_selector('[data-testid="stash2plex-badge"][data-state="waiting"]', timeout=60_000)
    assert badge.inner_text() == "Waiting: settings needed"
    screenshot(request, page, "stash-scene-waiting")

    plex.faults.accept_connections()  # the pause's next check finds Plex answering
    page.wait_for_selector('[data-testid="stash2plex-badge"][data-state="in_sync"]', timeout=90_000)
    assert badge.inner_text() == "In sync"
    with Store.open(plugin_dir / "data") as store:
        assert store.link(scene_id) is not None and store.job(scene_id).state == "done"
    page.get_by_test_id("preview").click()
    preview = page.get_by_test_id("scene-preview")
    preview.wait_for(timeout=60_000)
    assert preview.get_attribute("data-status") == "unchanged"  # just synced: nothing to do
    screenshot(request, page, "stash-scene-in-sync")
    assert page.problems == []


# ------------------------------------------------------------------------ stash2plex serve
@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Sandbox, RunningService]]:
    with sandbox(tmp_path, scenes=30, seed=9) as box:
        seed(box.data_dir, in_plex(box.library)[0])
        running = start_service(box.data_dir, box.stash.url)
        try:
            yield box, running
        finally:
            stop_service(running)


def test_the_dashboard_shows_the_stores_counts_and_retry_requeues(served, page, request):
    from stash2plex.engine.context import build_context
    from stash2plex.reconcile.run import run_reconcile

    box, service = served

    def outage_reconciled() -> bool:
        with Store.open(box.data_dir) as store:
            return not store.reconciliation().outages_to_reconcile()

    # The service's worker reconciles the seeded outage on its own: that run comes first.
    wait_until(outage_reconciled, timeout=60, message="the reconcile after the seeded outage")
    with Store.open(box.data_dir) as store:
        reconciled = run_reconcile(build_context(store), trigger="command")
    page.goto(service.url)
    page.get_by_test_id("count-pending").wait_for()
    page.get_by_test_id("outage-timeline").wait_for()
    assert page.get_by_test_id("stash2plex-page").get_attribute("data-host") == "dashboard"
    assert shown_counts(page) == store_counts(box.data_dir)
    last = page.get_by_test_id("reconcile-last").inner_text()
    assert "(command)" in last and reconciled.summary() in last
    assert page.get_by_test_id("outage-timeline").get_attribute("data-outages") == "1"
    page.locator('[data-testid="waiting-row"][data-scene="106"]').wait_for()
    parked = page.locator('[data-testid="waiting-row"][data-scene="106"]').inner_text()
    assert "when something changes" in parked and "Invalid Date" not in page.inner_text("body")
    screenshot(request, page, "dashboard")

    dead_scene = in_plex(box.library)[0]
    retry_first_dead_letter(page, box.data_dir, dead_scene)

    def synced() -> bool:
        with Store.open(box.data_dir) as store:
            return store.job(dead_scene).state == "done"

    wait_until(synced, timeout=60, message="the service's worker to sync the retried scene")
    # No CSP violation or script error: the bundle runs from the service's origin alone.
    assert page.problems == []
