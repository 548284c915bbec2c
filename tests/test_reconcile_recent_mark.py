"""Sync Recent Scenes never silences itself: the mark it keeps (where the last run stopped)
never moves past our own clock's now, whatever `since` was given or however far Stash's clock
runs ahead, and a mark found in the future is ignored with a warning. Our clock is injected;
the Stash emulator stamps edits with its own."""

from __future__ import annotations

import time
from pathlib import Path

from stash2plex.engine.context import build_context
from stash2plex.reconcile.recent import WATERMARK_KEY, RecentReport, queue_recent

from .sandbox import Sandbox, sandbox

YEAR = 365 * 86400.0


def run(box: Sandbox, clock, since: float | None = None) -> RecentReport:
    with box.store() as store:
        return queue_recent(store, build_context(store).stash, since=since, clock=clock)


def mark(box: Sandbox) -> dict:
    with box.store() as store:
        return store.get_value(WATERMARK_KEY)


def test_a_time_to_come_never_becomes_the_mark(tmp_path: Path) -> None:
    now = time.time()
    with sandbox(tmp_path, scenes=20, seed=3) as box:
        first = run(box, lambda: now, since=now + 75 * YEAR)  # a fresh data directory

        assert first.queued == 0
        assert mark(box)["at"] <= now
        scene = box.find(lambda s: True)
        box.stash.update_scene(scene.id, title="Edited after the odd run")
        assert run(box, lambda: now + 5).scene_ids == [scene.id]


def test_a_mark_found_in_the_future_is_ignored_with_a_warning(tmp_path: Path) -> None:
    with sandbox(tmp_path, scenes=20, seed=4) as box:
        box.drain()  # the last push to Plex: where the run starts instead
        with box.store() as store:  # as an older version stored it
            store.put_value(WATERMARK_KEY, {"at": int(time.time() + 75 * YEAR), "ids": []})
        scene = box.find(lambda s: True)
        box.stash.update_scene(scene.id, title="Edited while the mark was wrong")
        now = time.time()

        report = run(box, lambda: now)

        assert report.scene_ids == [scene.id]
        assert "in the future" in report.summary() and "ignored" in report.summary()
        assert not report.first_run
        assert mark(box)["at"] <= now
        again = run(box, lambda: now + 1)
        assert again.queued == 0 and not again.note


def test_stash_ahead_of_our_clock_loses_no_edit(tmp_path: Path) -> None:
    ahead = 3600.0
    with sandbox(tmp_path, scenes=20, seed=5, stash_clock=lambda: time.time() + ahead) as box:
        box.drain()
        first, second = [s for s in box.library.scenes.values() if s.files][:2]
        box.stash.update_scene(first.id, title="Stamped an hour ahead")
        now = time.time()

        assert run(box, lambda: now).scene_ids == [first.id]
        assert mark(box)["at"] <= now  # not Stash's hour ahead

        box.stash.update_scene(second.id, title="Edited next")
        later = run(box, lambda: now + 60).scene_ids
        assert second.id in later  # taken (the first again too: never skipped)
        assert mark(box)["at"] <= now + 60


def test_sync_recent_and_sync_all_try_a_retry_at_once(tmp_path: Path) -> None:
    """Both tasks are a person asking for the scenes: one waiting for its retry backoff is
    due at once (its failed tries kept), where a hook would leave it to the backoff."""
    from stash2plex.operations.queue import queue_all_scenes

    from .seeding import wait

    with sandbox(tmp_path, scenes=20, seed=5) as box:
        first, second = list(box.library.scenes)[:2]
        with box.store() as store:
            store.enqueue([first, second], "hook")
            later = store.clock() + 600
            for scene_id in (first, second):
                wait(store, store.job(scene_id), reason="retry", due_at=later, attempts=2)
        time.sleep(1.1)  # Stash stamps whole seconds: the edit falls after `since`
        since = time.time()
        box.stash.update_scene(first, title="Edited while Plex failed it")

        assert run(box, time.time, since=since).scene_ids == [first]
        with box.store() as store:
            assert store.job(first).due_at <= store.clock() < store.job(second).due_at
            queue_all_scenes(store, build_context(store).stash)
            assert store.job(second).due_at <= store.clock()
            assert store.job(second).attempts == store.job(first).attempts == 2
