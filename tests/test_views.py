"""The views of the Plex page and the dashboard (pure store reads) and its actions, on a real
store with an injected clock."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from stash2plex.engine.context import PLEX_SERVER_KEY
from stash2plex.engine.ramp import RecoveryRamp
from stash2plex.operations import actions, views
from stash2plex.records import BreakerState, Pause
from stash2plex.store.db import Store

from .seeding import dead, done, wait

DAY = 86400.0


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    with Store.open(tmp_path / "data", clock=clock) as opened:
        yield opened


def seed_queue(store: Store) -> None:
    """Pending 1-4; 5 and 6 not in Plex; 7 ambiguous; 8 retrying; 9 done; 10 dead-lettered."""
    store.enqueue(list(range(1, 11)), source="test")
    jobs = {job.scene_id: job for job in store.jobs()}
    now = store.clock()
    for scene_id in (5, 6):
        wait(
            store,
            jobs[scene_id],
            reason="not_in_plex",
            due_at=now + 60,
            attempts=0,
            error="the scene's file is not in Plex yet",
            error_class="not_in_plex",
            detail={"paths": [f"/media/{scene_id}.mp4"], "scan_requested": True},
        )
    wait(
        store,
        jobs[7],
        reason="ambiguous",
        due_at=now + 3600,
        attempts=0,
        error="2 Plex items could be this scene",
        error_class="ambiguous",
        detail={
            "candidates": [
                {"rating_key": 70, "path": "/a/x.mp4"},
                {"rating_key": 71, "path": "/b/x.mp4"},
            ]
        },
    )
    wait(store, jobs[8], reason="retry", due_at=now + 30, attempts=2, error="HTTP 500")
    done(store, jobs[9])
    dead(store, jobs[10], error_class="permanent", message="Plex refused (400)", attempts=1)


def test_overview_counts_equal_the_stores_by_state_and_reason(store: Store, tmp_path: Path):
    seed_queue(store)
    data = views.answer("overview", store, tmp_path / "data", {})
    queue = data["queue"]
    assert queue == {
        "pending": 4,
        "in_progress": 0,
        "waiting": {"ambiguous": 1, "not_in_plex": 2, "retry": 1},
        "waiting_total": 4,
        "done": 1,
        "outstanding": 8,
    }
    counts = store.job_counts()
    assert queue["pending"] == counts["pending"] and queue["done"] == counts["done"]
    assert data["dead_letters"] == {"total": 1, "by_class": {"permanent": 1}}
    assert data["breaker"]["state"] == "closed" and data["breaker"]["since"] is None
    assert data["reconcile"] == {"ran": False, "message": "no reconcile yet"}
    assert data["worker_running"] is False


def test_breaker_open_since_and_next_probe(store: Store, clock: Clock, tmp_path: Path):
    opened = BreakerState("open", opened_at=clock.now - 120, next_probe_at=clock.now + 5)
    pause = Pause(
        "auth", "Plex rejected the token (401)", clock.now, clock.now + 30, 0, "plex_token"
    )
    store.change_holds(lambda holds: (replace(holds, breaker=opened, pause=pause), []))
    data = views.overview(store, tmp_path / "data", {})
    assert data["breaker"] == {
        "state": "open",
        "since": clock.now - 120,
        "open_seconds": 120.0,
        "failed_probes": 0,
        "next_probe_at": clock.now + 5,
    }
    assert data["paused"] == "Plex rejected the token (401)"
    assert data["pause_setting"] == "plex_token"


def test_recovery_ramp_progress_and_rate(store: Store, clock: Clock, tmp_path: Path):
    store.change_holds(lambda holds: (replace(holds, ramp_started_at=clock.now - 30), []))
    ramp = views.overview(store, tmp_path / "data", {})["ramp"]
    expected = RecoveryRamp(clock.now - 30)
    assert ramp["active"] is True
    assert ramp["progress"] == round(30 / expected.ramp_seconds, 3)
    assert ramp["rate_per_second"] == round(expected.rate(clock.now), 2)
    clock.now += expected.ramp_seconds
    assert views.overview(store, tmp_path / "data", {})["ramp"]["active"] is False


def test_outage_windows_clip_outages_and_report_availability(store: Store, clock: Clock, tmp_path):
    now = clock.now
    store.add_event("info", "worker_started", "started")  # watching since 40 days ago
    store._conn.execute("UPDATE events SET at = ?", (now - 40 * DAY,))
    # 10 days ago: 1 h; 2 days ago: 30 min; straddling the 24 h edge: 2 h, 1 h inside.
    for start, length in ((now - 10 * DAY, 3600), (now - 2 * DAY, 1800), (now - DAY - 3600, 7200)):
        store.record_outage(start, start + length, 3)
    data = views.outages(store, tmp_path / "data", {})
    day, week, month = (data["windows"][k] for k in ("24h", "7d", "30d"))
    assert day["outages"] == 1 and day["downtime_s"] == 3600
    assert day["availability_pct"] == round(100 * (1 - 3600 / DAY), 3)
    assert week["outages"] == 2 and week["downtime_s"] == 1800 + 7200
    assert month["outages"] == 3 and month["downtime_s"] == 3600 + 1800 + 7200
    assert month["mttr_s"] == round((3600 + 1800 + 7200) / 3, 1)
    assert [o["ongoing"] for o in data["timeline"]["outages"]] == [False, False, False]
    assert data["timeline"]["since"] == now - 30 * DAY


def test_an_ongoing_outage_counts_up_to_now_and_nothing_watched_is_unknown(
    store: Store, clock: Clock, tmp_path: Path
):
    empty = views.outages(store, tmp_path / "data", {})
    assert empty["windows"]["24h"]["availability_pct"] is None
    opened = BreakerState("open", opened_at=clock.now - 600, next_probe_at=clock.now + 5)
    store.change_holds(lambda holds: (replace(holds, breaker=opened), []))
    data = views.outages(store, tmp_path / "data", {})
    assert data["windows"]["24h"]["downtime_s"] == 600
    assert data["windows"]["24h"]["availability_pct"] == 0.0  # watched only while down
    assert data["timeline"]["outages"][0]["ongoing"] is True


def test_waiting_scenes_carry_reason_error_paths_and_candidates(store: Store, tmp_path: Path):
    seed_queue(store)
    data = views.waiting(store, tmp_path / "data", {})
    by_scene = {row["scene_id"]: row for row in data["scenes"]}
    assert data["total"] == 4 and set(by_scene) == {5, 6, 7, 8}
    assert by_scene[5]["reason"] == "not_in_plex"
    assert by_scene[5]["paths"] == ["/media/5.mp4"] and by_scene[5]["scan_requested"] is True
    assert [c["rating_key"] for c in by_scene[7]["candidates"]] == [70, 71]
    assert by_scene[8]["attempts"] == 2 and by_scene[8]["error"] == "HTTP 500"
    assert len(views.waiting(store, tmp_path / "data", {"limit": "1"})["scenes"]) == 1


def test_dead_letters_newest_first(store: Store, clock: Clock, tmp_path: Path):
    store.enqueue([1, 2], source="test")
    first, second = store.jobs()
    dead(store, first, error_class="permanent", message="old", attempts=1)
    clock.now += 10
    dead(store, second, error_class="transient", message="new", attempts=5)
    data = views.dead_letters(store, tmp_path / "data", {})
    assert [d["message"] for d in data["letters"]] == ["new", "old"]
    assert data["by_class"] == {"permanent": 1, "transient": 1}


def test_scene_states_for_the_badge(store: Store, clock: Clock, tmp_path: Path):
    def state(scene_id: int) -> dict:
        return views.scene(store, tmp_path / "data", {"scene_id": scene_id})

    assert state(1)["state"] == "not_linked"
    store.enqueue([1], source="test")
    assert state(1)["state"] == "queued"
    (job,) = store.claim_due("me", 1)
    assert state(1)["state"] == "syncing"
    wait(store, job, reason="plex_down", due_at=clock.now + 1e6, attempts=0, error="refused")
    waiting = state(1)
    assert (waiting["state"], waiting["reason"], waiting["error"]) == (
        "waiting",
        "plex_down",
        "refused",
    )
    store.save_link(1, 501, 3, "/media/1.mp4", {})
    store.put_value(PLEX_SERVER_KEY, {"url": "http://plex:32400", "machine_identifier": "abc"})
    done(store, store.job(1))
    synced = state(1)
    assert synced["state"] == "in_sync" and synced["rating_key"] == 501
    assert synced["plex_url"] == (
        "http://plex:32400/web/index.html#!/server/abc/details?key=%2Flibrary%2Fmetadata%2F501"
    )
    clock.now += 5
    store.enqueue([1], source="test")
    dead(store, store.job(1), error_class="permanent", message="bad data", attempts=1)
    failed = state(1)
    assert failed["state"] == "failed" and failed["error"] == "bad data"
    with pytest.raises(views.ViewError, match="scene_id"):
        views.scene(store, tmp_path / "data", {})


def test_unknown_view_and_bad_parameters_say_what_is_wrong(store: Store, tmp_path: Path):
    with pytest.raises(views.ViewError, match="unknown view 'nope'; expected one of"):
        views.answer("nope", store, tmp_path, {})
    with pytest.raises(views.ViewError, match="limit='x' must be a whole number"):
        views.answer("waiting", store, tmp_path, {"limit": "x"})


def test_retry_by_letter_id_requeues_only_that_scene(store: Store, tmp_path: Path):
    store.enqueue([1, 2], source="test")
    for job in store.jobs():
        dead(store, job, error_class="permanent", message="bad", attempts=1)
    first = store.dead_letters()[0]
    result = actions.retry_dead_letters(store, {"ids": [first["id"]]})
    assert result == {"requeued": 1, "removed": 1}
    assert store.job(first["scene_id"]).state == "pending"
    assert store.job(first["scene_id"]).source == actions.RETRY_SOURCE
    assert [d["scene_id"] for d in store.dead_letters()] == [2]


def test_purge_needs_ids_or_days_and_never_empties_by_accident(store: Store, clock: Clock):
    store.enqueue([1, 2], source="test")
    jobs = store.jobs()
    dead(store, jobs[0], error_class="permanent", message="old", attempts=1)
    clock.now += 40 * DAY
    dead(store, jobs[1], error_class="permanent", message="new", attempts=1)
    with pytest.raises(actions.ActionError, match=r"ids .* or days"):
        actions.purge_dead_letters(store, {})
    assert actions.purge_dead_letters(store, {"days": 30}) == {"purged": 1}
    assert [d["message"] for d in store.dead_letters()] == ["new"]
    assert actions.purge_dead_letters(store, {"ids": [store.dead_letters()[0]["id"]]}) == {
        "purged": 1
    }


def test_sync_now_makes_a_waiting_scene_due_at_once(store: Store, clock: Clock):
    store.enqueue([4], source="test")
    wait(store, store.job(4), reason="not_in_plex", due_at=clock.now + 60, attempts=0)
    assert actions.sync_scene(store, {"scene_id": "4"}) == {"queued": 4, "new": False}
    job = store.job(4)
    assert (job.state, job.due_at) == ("pending", clock.now)
    store.enqueue([5], source="test")  # a retry is not left to its backoff either
    wait(store, store.job(5), reason="retry", due_at=clock.now + 600, attempts=3)
    actions.sync_scene(store, {"scene_id": 5})
    job = store.job(5)
    assert (job.reason, job.due_at, job.attempts) == ("retry", clock.now, 3)
    with pytest.raises(actions.ActionError, match="scene_id='x'"):
        actions.sync_scene(store, {"scene_id": "x"})
    with pytest.raises(actions.ActionError, match="unknown action"):
        actions.lookup("drop_everything")


def test_the_operation_path_imports_no_third_party_package() -> None:
    code = (
        "import sys; import stash2plex.plugin.operations, stash2plex.operations.views, "
        "stash2plex.operations.actions; "
        "bad = [m for m in ('plexapi', 'requests', 'click', 'rich', 'starlette') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_health_check_lets_the_badge_link_the_item_in_plex_web(tmp_path: Path):
    from stash2plex.engine.context import build_context
    from stash2plex.operations.queue import health_report

    from .sandbox import sandbox

    with sandbox(tmp_path, scenes=5) as box, box.store() as store:
        assert views.plex_web_url(store, 7) is None  # nothing known about Plex yet
        report = health_report(build_context(store), box.data_dir)
        assert report["healthy"] is True
        machine = box.plex.library.machine_identifier
        assert views.plex_web_url(store, 7) == (
            f"{box.plex.url}/web/index.html#!/server/{machine}/details"
            "?key=%2Flibrary%2Fmetadata%2F7"
        )
        # Claimed (signed in to a Plex account): through app.plex.tv, which opens the item
        # from any browser, whatever address only Stash's machine knows Plex by.
        box.plex.library.claimed = True
        health_report(build_context(store), box.data_dir)
        assert views.plex_web_url(store, 7) == (
            f"https://app.plex.tv/desktop/#!/server/{machine}/details?key=%2Flibrary%2Fmetadata%2F7"
        )


def test_open_in_plex_writes_the_address_as_a_browser_does(store: Store):
    # `HTTP://NAS.Local:32400/` typed on a phone: the link opens all the same, in lower case.
    store.put_value(PLEX_SERVER_KEY, {"url": "HTTP://NAS.Local:32400/", "machine_identifier": "m"})
    assert views.plex_web_url(store, 7) == (
        "http://nas.local:32400/web/index.html#!/server/m/details?key=%2Flibrary%2Fmetadata%2F7"
    )


def test_the_worker_asks_plex_if_claimed_once_and_a_silent_plex_keeps_the_answer(
    tmp_path: Path,
):
    """Every hook makes the worker read its settings afresh (a new context): whether Plex is
    claimed is still asked once an hour at most. A later health check that gets no answer
    from `GET /identity` keeps what Plex said before, so the link does not fall back."""
    import threading
    import time

    from stash2plex.engine.context import build_context
    from stash2plex.engine.worker import CLAIMED_ASK_SECONDS, Worker
    from stash2plex.operations.queue import health_report

    from .conftest import wait_until
    from .sandbox import sandbox

    with sandbox(tmp_path, scenes=12, seed=3) as box:
        box.plex.library.claimed = True
        scenes = [s.id for s in box.library.scenes.values() if s.files and s.in_plex][:5]
        later = [0.0]
        worker = Worker(box.data_dir, clock=lambda: time.time() + later[0])
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()

        def saved(scene_id: int) -> None:  # as a hook queues it: it nudges the worker
            with box.store() as store:
                store.enqueue([scene_id], "hook")
            wait_until(lambda: box.job(scene_id).state == "done", timeout=30)

        try:
            for scene_id in scenes[:4]:
                saved(scene_id)
            assert box.plex.log.count("GET /identity") == 1
            later[0] = CLAIMED_ASK_SECONDS  # an hour on: asked again (it may have been claimed)
            saved(scenes[4])
            assert box.plex.log.count("GET /identity") == 2
        finally:
            worker.request_stop()
            thread.join(30)
        with box.store() as store:
            assert views.plex_web_url(store, 7).startswith("https://app.plex.tv/desktop/#!/")
            box.plex.faults.fail(500, route="GET /identity")
            assert health_report(build_context(store), box.data_dir)["healthy"] is True
            assert views.plex_web_url(store, 7).startswith("https://app.plex.tv/desktop/#!/")
