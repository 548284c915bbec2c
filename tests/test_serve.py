"""`stash2plex serve`: auth, CSRF and host checks of its HTTP side (in process), and the real
service against the sandbox (metrics that move during a sync, a clean SIGTERM)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from stash2plex.engine.worker_lock import worker_running
from stash2plex.service.app import create_app
from stash2plex.service.metrics import ServiceMetrics, plex_route
from stash2plex.service.process import ServeError, check_bind, is_loopback
from stash2plex.store.db import Store

from .conftest import wait_until
from .sandbox import Sandbox, sandbox
from .seeding import dead
from .serving import RunningService, start_service, stop_service

TOKEN = "s3rve-token-0123456789abcdef"
CSRF = "csrf-token-for-tests"
SERVE = (sys.executable, "-m", "stash2plex")


def client(data_dir: Path, *, token: str | None = None, base_url: str = "http://127.0.0.1"):
    app = create_app(
        data_dir, metrics=ServiceMetrics(data_dir), token=token, csrf_token=CSRF, loopback_only=True
    )
    return TestClient(app, base_url=base_url)


def seeded(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    with Store.open(data_dir) as store:
        store.enqueue([1, 2, 3], source="test")
        job = store.job(3)
        dead(store, job, error_class="permanent", message="bad data", attempts=1)
    return data_dir


def test_without_a_token_non_loopback_binds_are_refused() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.10")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ServeError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ServeError, match="at least 16 characters"):
        check_bind("0.0.0.0", "short")


def test_the_command_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    result = subprocess.run(
        [*SERVE, "--data-dir", str(tmp_path), "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr
    assert not (tmp_path / "stash2plex.db").exists()  # refused before touching anything


def test_with_a_token_requests_without_it_get_401(tmp_path: Path) -> None:
    http = client(seeded(tmp_path), token=TOKEN)
    for path in ("/api/views/overview", "/metrics"):
        denied = http.get(path)
        assert denied.status_code == 401, path
        assert denied.headers["www-authenticate"].startswith("Bearer")
        assert (
            http.get(path, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code
            == 401
        )
        assert http.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    action = http.post("/api/actions/sync_scene", json={"scene_id": 1})
    assert action.status_code == 401
    # The page shell and its bundle hold no data: the page asks for the token itself.
    page = http.get("/")
    assert page.status_code == 200 and '"tokenRequired": true' in page.text
    assert http.get("/static/stash2plex-ui.js").status_code == 200


def test_views_answer_like_the_plugin_and_say_what_is_wrong(tmp_path: Path) -> None:
    data_dir = seeded(tmp_path)
    http = client(data_dir)
    overview = http.get("/api/views/overview").json()
    with Store.open(data_dir) as store:
        assert overview["queue"]["pending"] == store.job_counts()["pending"] == 2
    assert overview["dead_letters"]["total"] == 1
    scene = http.get("/api/views/scene", params={"scene_id": 3}).json()
    assert scene["state"] == "failed"
    unknown = http.get("/api/views/nope")
    assert unknown.status_code == 400 and "unknown view" in unknown.json()["error"]


def test_state_changes_need_post_json_and_the_csrf_token(tmp_path: Path) -> None:
    data_dir = seeded(tmp_path)
    http = client(data_dir)
    good = {"X-CSRF-Token": CSRF}
    assert http.get("/api/actions/retry_dead_letters").status_code == 405
    missing = http.post("/api/actions/retry_dead_letters", json={})
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["error"]
    forged = http.post(
        "/api/actions/retry_dead_letters", json={}, headers={**good, "Origin": "http://evil.test"}
    )
    assert forged.status_code == 403 and "cross-origin" in forged.json()["error"]
    form = http.post(
        "/api/actions/retry_dead_letters",
        content=b"ids=1",
        headers={**good, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 403
    with Store.open(data_dir) as store:
        assert len(store.dead_letters()) == 1  # nothing above changed anything
    done = http.post(
        "/api/actions/retry_dead_letters",
        json={},
        headers={**good, "Origin": "http://127.0.0.1"},
    )
    assert done.status_code == 200 and done.json() == {"requeued": 1, "removed": 1}
    with Store.open(data_dir) as store:
        assert store.dead_letters() == [] and store.job(3).state == "pending"
    # The page carries the CSRF token for the bundle; a cross-site page cannot read it.
    assert CSRF in http.get("/").text


def test_on_loopback_only_loopback_host_names_are_served(tmp_path: Path) -> None:
    http = client(seeded(tmp_path), base_url="http://rebound.example")
    assert http.get("/").status_code == 400  # a DNS-rebinding page cannot read the page


def test_the_page_forbids_foreign_scripts_and_framing(tmp_path: Path) -> None:
    page = client(seeded(tmp_path)).get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert '<script src="/static/stash2plex-ui.js' in page.text


def test_metrics_parse_and_hold_the_store(tmp_path: Path) -> None:
    text = client(seeded(tmp_path)).get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    jobs = {s.labels["state"]: s.value for s in families["stash2plex_jobs"].samples}
    assert jobs["pending"] == 2
    letters = families["stash2plex_dead_letters"].samples
    assert [(s.labels["error_class"], s.value) for s in letters] == [("permanent", 1.0)]
    breaker = {s.labels["state"]: s.value for s in families["stash2plex_breaker_state"].samples}
    assert breaker == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    assert "stash2plex_syncs" in families and "stash2plex_plex_request_duration_seconds" in families
    assert families["stash2plex_reconcile_items"].samples == []  # no reconcile yet


def test_plex_routes_are_bounded_labels() -> None:
    assert plex_route("/library/metadata/123/posters?url=x") == "/library/metadata/{id}/posters"
    assert plex_route("/library/sections/2/all?type=1") == "/library/sections/{id}/all"
    assert plex_route("/") == "/"


# ------------------------------------------------------------------------ the real service
@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    with sandbox(tmp_path, scenes=30, seed=9) as opened:
        yield opened


@pytest.fixture
def service(box: Sandbox) -> Iterator[RunningService]:
    running = start_service(box.data_dir, box.stash.url)
    try:
        yield running
    finally:
        stop_service(running)


def matchable(box: Sandbox) -> list[int]:
    return sorted(s.id for s in box.library.scenes.values() if s.files and s.in_plex)


def test_metrics_counters_move_during_a_sync(box: Sandbox, service: RunningService) -> None:
    assert service.synced() == 0
    wait_until(lambda: worker_running(box.data_dir), message="the service to take the lock")
    scenes = matchable(box)[:8]
    box.queue(*scenes)

    def all_done() -> bool:
        with box.store() as store:
            return all(store.job(s).state == "done" for s in scenes)

    wait_until(all_done, timeout=60, message="the service's worker to sync the scenes")
    wait_until(lambda: service.synced() == len(scenes), message="syncs_total to count them")
    samples = service.metrics()
    latency = [
        s for s in samples["stash2plex_plex_request_duration_seconds"] if s.name.endswith("_count")
    ]
    routes = {s.labels["route"] for s in latency if s.value > 0}
    assert "/library/metadata/{id}" in routes or "/library/sections/{id}/all" in routes
    assert all("{id}" in r or not re.search(r"/\d", r) for r in routes)
    jobs = {s.labels["state"]: s.value for s in samples["stash2plex_jobs"]}
    assert jobs["done"] == len(scenes)


def test_sigterm_finishes_the_job_in_hand_and_exits_cleanly(box: Sandbox, service: RunningService):
    wait_until(lambda: worker_running(box.data_dir), message="the service to take the lock")
    box.plex.faults.latency(0.25)  # each sync takes a second or so
    scenes = matchable(box)
    box.queue(*scenes)

    def done_count() -> int:
        with box.store() as store:
            return store.job_counts().get("done", 0)

    wait_until(lambda: done_count() >= 2, timeout=60, message="a few syncs")
    service.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = service.proc.wait(timeout=30)
    out = service.proc.stdout.read() if service.proc.stdout else ""
    assert code == 0 and "stopped" in out
    assert time.monotonic() - started < 15
    with box.store() as store:
        counts = store.job_counts()
    assert counts.get("leased", 0) == 0  # the job in hand finished; unstarted ones went back
    assert counts.get("pending", 0) > 0  # it stopped rather than draining everything
    assert not worker_running(box.data_dir)


def test_actions_refuse_odd_values_huge_bodies_and_deep_nesting_in_one_sentence(
    tmp_path: Path,
) -> None:
    data_dir = seeded(tmp_path)
    http = client(data_dir)
    with Store.open(data_dir) as store:
        before = (store.job_counts(), len(store.dead_letters()))
    good = {"X-CSRF-Token": CSRF, "Content-Type": "application/json"}
    for body in (
        b'{"scene_id": 99999999999999999999999}',
        b'{"scene_id": 1e400}',
        b'{"scene_id": true}',
        b'{"scene_id": 3.7}',
        b'{"scene_id": 0}',
    ):
        answer = http.post("/api/actions/sync_scene", content=body, headers=good)
        assert answer.status_code == 400, body
        assert "scene_id" in answer.json()["error"] and "whole number" in answer.json()["error"]
    letters = http.post(
        "/api/actions/retry_dead_letters", content=b'{"ids": [1e400]}', headers=good
    )
    assert letters.status_code == 400 and "whole numbers" in letters.json()["error"]
    deep = http.post("/api/actions/sync_scene", content=b"[" * 50_000, headers=good)
    assert deep.status_code == 400 and "JSON object" in deep.json()["error"]
    huge = http.post(
        "/api/actions/sync_scene", content=b'{"scene_id": "' + b"1" * 200_000 + b'"}', headers=good
    )
    assert huge.status_code == 413 and "KiB" in huge.json()["error"]
    view = http.get("/api/views/scene", params={"scene_id": "9" * 30})
    assert view.status_code == 400 and "whole number" in view.json()["error"]
    with Store.open(data_dir) as store:
        assert (store.job_counts(), len(store.dead_letters())) == before  # nothing changed


def test_api_errors_are_json_sentences_never_html_or_tracebacks(tmp_path: Path, caplog) -> None:
    data_dir = seeded(tmp_path)
    http = client(data_dir)
    good = {"X-CSRF-Token": CSRF}
    cases = [
        (http.get("/api/nothing"), 404, "the API is GET /api/views/<name>"),
        (http.get("/api/actions/retry_dead_letters"), 405, "actions are POST"),
        (http.get("/api/views/scene"), 400, "needs scene_id"),
        (http.get("/api/views/scene", params={"scene_id": "x"}), 400, "whole number"),
        (http.get("/api/views/scene", params={"scene_id": str(2**70)}), 400, "whole number"),
        (http.post("/api/actions/nope", json={}, headers=good), 404, "unknown action"),
        (
            http.post(
                "/api/actions/sync_scene",
                content=b"{",
                headers=good | {"Content-Type": "application/json"},
            ),
            400,
            "JSON object",
        ),
        (http.post("/api/actions/sync_scene", json=[1], headers=good), 400, "JSON object"),
        (
            http.post("/api/actions/sync_scene", json={"scene_id": 3.7}, headers=good),
            400,
            "scene id",
        ),
        (
            http.post("/api/actions/sync_scene", json={"scene_id": True}, headers=good),
            400,
            "scene id",
        ),
        (
            http.post("/api/actions/sync_scene", json={"scene_id": 2**70}, headers=good),
            400,
            "scene id",
        ),
        (
            http.post("/api/actions/retry_dead_letters", json={"ids": ["a"]}, headers=good),
            400,
            "whole numbers",
        ),
        (
            http.post("/api/actions/preview_scene", json={"scene_id": 1}, headers=good),
            503,
            "cannot reach Stash and Plex",
        ),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json"), response.text
        assert words in response.json()["error"], response.json()
    assert "Traceback" not in caplog.text


def test_an_unknown_scene_to_preview_is_a_404_sentence(box: Sandbox) -> None:
    from stash2plex.engine.context import build_context
    from stash2plex.settings.sources import LocalSettings

    local = LocalSettings(values={"stash_url": box.stash.url})
    app = create_app(
        box.data_dir,
        metrics=ServiceMetrics(box.data_dir),
        csrf_token=CSRF,
        context_factory=lambda store: build_context(store, local=local),
    )
    http = TestClient(app, base_url="http://127.0.0.1")
    answer = http.post(
        "/api/actions/preview_scene", json={"scene_id": 99999}, headers={"X-CSRF-Token": CSRF}
    )
    assert answer.status_code == 404
    assert answer.json() == {"error": "Stash has no scene 99999: nothing to preview"}


def test_sync_now_and_retry_make_the_worker_read_the_settings_again(tmp_path: Path) -> None:
    data_dir = seeded(tmp_path)
    http = client(data_dir)
    good = {"X-CSRF-Token": CSRF}
    for name, params in (("sync_scene", {"scene_id": 1}), ("retry_dead_letters", {})):
        with Store.open(data_dir) as store:
            before = store.holds().nudged_at
        time.sleep(0.01)
        assert http.post(f"/api/actions/{name}", json=params, headers=good).status_code == 200
        with Store.open(data_dir) as store:
            assert store.holds().nudged_at > before, name
