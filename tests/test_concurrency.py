"""With several scenes written to Plex at once, order still holds where it matters: two edits
of one scene reach Plex in the order they were made, and the last one wins; two scenes of one
Plex item never write at the same time."""

from __future__ import annotations

import threading

import pytest

from stash2plex.engine.worker import BATCH_SIZE, Worker
from stash2plex.sandbox.verify import expected_items, item_problems
from stash2plex.sync import settle
from stash2plex.sync.syncer import UNFETCHED, SceneSyncer

from .conftest import wait_until
from .sandbox import SteppedClock, sandbox

EDIT = "PUT /library/sections/{id}/all"


def test_two_edits_of_one_scene_reach_plex_in_order(tmp_path):
    with sandbox(tmp_path, scenes=30, seed=12) as box:
        box.drain()
        scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex][:12]
        target = scenes[5]
        key = box.rating_key(target)
        box.plex.faults.latency(0.3, route=r"^PUT ")
        before = len(box.plex.log.entries)
        for scene in scenes:
            box.stash.update_scene(scene.id, title=f"First {scene.id}")
        box.queue(*[s.id for s in scenes])
        worker = Worker(box.data_dir)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()

        def writing_target() -> bool:  # the first edit of the target is on its way to Plex
            return any(
                r.route == EDIT and r.query.get("id") == str(key)
                for r in box.plex.log.entries[before:]
            )

        wait_until(writing_target, message="the first edit in flight")
        box.stash.update_scene(target.id, title="Second")
        box.queue(target.id)

        def drained() -> bool:
            with box.store() as store:
                return store.outstanding_jobs() == 0

        wait_until(drained, timeout=60, message="the queue drained")
        worker.request_stop()
        thread.join(10)

        titles = [
            r.query.get("title.value")
            for r in box.plex.log.entries[before:]
            if r.route == EDIT and r.query.get("id") == str(key)
        ]
        assert titles == [f"First {target.id}", "Second"]
        assert box.item(target).title == "Second"
        assert box.plex.max_in_flight > 1, "the scenes were not written concurrently"


def test_unchanged_scenes_sync_on_the_worker_thread_until_plex_is_written_again(
    tmp_path, monkeypatch
):
    """Threads help only while scenes wait on Plex: an unchanged re-sync runs on the worker's
    own thread after its first batch, and the first scene that writes to Plex sends the rest of
    its batch, and the next batch, to the pool again."""
    with sandbox(tmp_path, scenes=180, seed=5) as box:
        box.drain()
        synced_on: dict[int, str] = {}
        original = SceneSyncer.sync

        def noting_thread(self, scene_id, scene=UNFETCHED):
            synced_on[scene_id] = threading.current_thread().name
            return original(self, scene_id, scene)

        monkeypatch.setattr(SceneSyncer, "sync", noting_thread)
        ids = sorted(box.library.scenes)
        third_batch = ids[2 * BATCH_SIZE : 3 * BATCH_SIZE]
        edited = [i for i in third_batch if box.library.scenes[i].files][:10]
        for scene_id in edited:
            box.stash.update_scene(scene_id, title=f"Edited {scene_id}")
        requests_before = len(box.plex.log.entries)

        box.drain(*ids)  # one worker: batches of BATCH_SIZE in scene id order

        def threads(batch: list[int]) -> set[str]:
            return {"pool" if synced_on[i].startswith("sync") else synced_on[i] for i in batch}

        assert threads(ids[:BATCH_SIZE]) == {"pool"}  # a fresh worker starts wide
        assert threads(ids[BATCH_SIZE : 2 * BATCH_SIZE]) == {"MainThread"}  # it sent Plex nothing
        first_edit = edited[0]
        assert threads([i for i in third_batch if i <= first_edit]) == {"MainThread"}
        assert threads(edited[1:]) == {"pool"}  # widened at the first write
        assert threads(ids[3 * BATCH_SIZE :]) == {"pool"}  # the third batch wrote to Plex
        titles = {box.item(box.library.scenes[i]).title for i in edited}
        assert titles == {f"Edited {i}" for i in edited}
        assert len(box.plex.log.entries) > requests_before


def to_retry(box, clock: SteppedClock, scene) -> None:
    """Move the injected clock to the scene's retry (at least twice plex_timeout away)."""
    job = box.job(scene.id)
    if job is not None:
        clock.offset += max(0.0, job.due_at - clock())


def _studio_change(box, scene, n: int) -> dict:
    others = [studio for studio in sorted(box.library.studios) if studio != scene.studio_id]
    return {"studio_id": others[n]}


def _performers_then_none(box, scene, n: int) -> dict:
    return {"performer_ids": [sorted(box.library.performers)[:2], []][n]}


def _studio_then_none(box, scene, n: int) -> dict:
    return {"studio_id": [_studio_change(box, scene, 0)["studio_id"], None][n]}


# What changes twice, as (the request that carries it, the change: first, then second).
LATE_WRITES = {
    "title": ("^PUT ", lambda box, scene, n: {"title": ("First", "Second")[n]}),
    "cover": ("^POST ", lambda box, scene, n: {"cover_version": scene.cover_version + n + 1}),
    # The studio's collection follows it: the late list puts the older studio's back.
    "studio and its collection": ("^PUT ", _studio_change),
    # An emptied list is removed by naming what Plex holds: the late names too.
    "studio, then none": ("^PUT ", _studio_then_none),
    "performers, then none": ("^PUT ", _performers_then_none),
}


@pytest.mark.parametrize("what", list(LATE_WRITES))
@pytest.mark.parametrize("preserve", [False, True])
def test_an_older_write_that_plex_applies_late_is_written_over_again(tmp_path, what, preserve):
    """A Plex slower than twice `plex_timeout` still applies a write we gave up on after our
    retry wrote the newer value; the item's check, `check_after` later, writes it again. With
    preserve_plex_edits the older value is still ours, not an edit made in Plex."""
    route, change = LATE_WRITES[what]
    with sandbox(tmp_path, scenes=30, seed=4) as box:
        box.drain()
        # The user's settings: Plex is far slower than that timeout.
        box.settings(plex_timeout=1, preserve_plex_edits=preserve)
        clock = SteppedClock()
        scene = next(
            s
            for s in box.library.scenes.values()
            if s.files and s.in_plex and s.studio_id and s.cover_version is not None
        )
        box.plex.faults.latency(4, route=route)
        box.stash.update_scene(scene.id, **change(box, scene, 0))
        box.queue(scene.id)
        Worker(box.data_dir, clock=clock).run(until_idle=True)  # the write times out
        box.plex.faults.latency(0, route=route)
        box.stash.update_scene(scene.id, **change(box, scene, 1))
        box.queue(scene.id)
        to_retry(box, clock, scene)
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        wait_until(lambda: box.plex.in_flight == 0, message="the older write landing")
        assert problems(box, scene), "the older write did not land after the newer one"

        clock.offset += settle.check_after(1)
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        assert problems(box, scene) == []
        with box.store() as store:
            assert store.next_unsettled_check() is None
            assert any(
                e["kind"] == "late_write" and "the scene is synced again" in e["message"]
                for e in store.recent_events()
            )


def problems(box, scene) -> list[str]:
    """How the scene's Plex item differs from what Stash says it should show."""
    expected = expected_items(box.library, {}, pushed=[scene.id])
    wanted = next(item for item in expected.values() if scene.id in item.scene_ids)
    return item_problems(wanted, box.item(scene), None)


def test_a_timed_out_edit_that_could_not_hide_a_newer_one_costs_no_check(tmp_path):
    with sandbox(tmp_path, scenes=12, seed=4) as box:
        box.drain()
        box.settings(plex_timeout=1)
        clock = SteppedClock()
        scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
        box.plex.faults.latency(2, route=r"^PUT ")
        box.stash.update_scene(scene.id, title="Only")
        box.queue(scene.id)
        Worker(box.data_dir, clock=clock).run(until_idle=True)  # times out, lands later
        box.plex.faults.latency(0, route=r"^PUT ")
        to_retry(box, clock, scene)
        Worker(box.data_dir, clock=clock).run(until_idle=True)  # the retry: the same title
        wait_until(lambda: box.plex.in_flight == 0, message="Plex finished the first edit")
        requests = len(box.plex.log.entries)

        clock.offset += settle.check_after(1)
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        assert box.item(scene).title == "Only"
        assert len(box.plex.log.entries) == requests  # nothing to read: no write could harm
        with box.store() as store:
            assert store.next_unsettled_check() is None


def test_a_write_that_timed_out_with_no_newer_push_since_is_not_checked(tmp_path):
    """Every try timed out and the scene went to the dead letters: its last write carried
    Stash's newest value, so landing late hides nothing (no false warning, no request)."""
    with sandbox(tmp_path, scenes=12, seed=4) as box:
        box.drain()
        box.settings(plex_timeout=1, max_retries=2)
        clock = SteppedClock()
        scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
        box.plex.faults.latency(3, route=r"^PUT ")
        box.stash.update_scene(scene.id, title="Newest")
        box.queue(scene.id)
        while box.job(scene.id) is not None:
            Worker(box.data_dir, clock=clock).run(until_idle=True)
            to_retry(box, clock, scene)
        box.plex.faults.latency(0, route=r"^PUT ")
        wait_until(lambda: box.plex.in_flight == 0, message="the writes landing")
        requests = len(box.plex.log.entries)

        clock.offset += settle.check_after(1)
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        assert len(box.plex.log.entries) == requests
        with box.store() as store:
            assert store.next_unsettled_check() is None
            assert [d["scene_id"] for d in store.dead_letters()] == [scene.id]
            assert not any(e["kind"] == "late_write" for e in store.recent_events())


def test_a_check_that_cannot_read_plex_is_given_up_after_its_tries_with_a_word(tmp_path):
    with sandbox(tmp_path, scenes=12, seed=4) as box:
        box.drain()
        box.settings(plex_timeout=1)
        clock = SteppedClock()
        scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
        box.plex.faults.latency(3, route=r"^PUT ")
        box.stash.update_scene(scene.id, title="First")
        box.queue(scene.id)
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        box.plex.faults.latency(0, route=r"^PUT ")
        box.stash.update_scene(scene.id, title="Second")
        box.queue(scene.id)
        to_retry(box, clock, scene)
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        wait_until(lambda: box.plex.in_flight == 0, message="the older write landing")
        box.plex.faults.fail(500, route=r"^GET /library/metadata/")

        for _ in range(settle.MAX_CHECK_TRIES):
            with box.store() as store:
                assert store.next_unsettled_check() is not None
            clock.offset += settle.check_after(1)
            Worker(box.data_dir, clock=clock).run(until_idle=True)

        with box.store() as store:
            assert store.next_unsettled_check() is None
            words = [e["message"] for e in store.recent_events() if e["kind"] == "late_write"]
        assert len(words) == 1 and "could not be read back" in words[0]
        assert "Reconcile" in words[0]


def test_a_newest_value_whose_writes_all_timed_out_is_no_older_write(tmp_path):
    """A timed out, B was pushed, then every write of C timed out (dead letter) and landed:
    C is newer than the last push, so the check finds nothing to write again."""
    with sandbox(tmp_path, scenes=12, seed=4) as box:
        box.drain()
        box.settings(plex_timeout=1, max_retries=2)
        clock = SteppedClock()
        scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
        for title, latency in (("A", 4), ("B", 0), ("C", 3)):
            box.plex.faults.latency(latency, route=r"^PUT ")
            box.stash.update_scene(scene.id, title=title)
            box.queue(scene.id)
            to_retry(box, clock, scene)
            while box.job(scene.id) is not None and box.job(scene.id).state != "done":
                Worker(box.data_dir, clock=clock).run(until_idle=True)
                to_retry(box, clock, scene)
        box.plex.faults.latency(0, route=r"^PUT ")
        wait_until(lambda: box.plex.in_flight == 0, message="the writes landing")
        assert box.item(scene).title == "C"
        writes = box.writes()

        clock.offset += settle.check_after(1)
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        assert box.writes() == writes and box.item(scene).title == "C"
        with box.store() as store:
            assert store.next_unsettled_check() is None
            assert [d["scene_id"] for d in store.dead_letters()] == [scene.id]
            assert not any(e["kind"] == "late_write" for e in store.recent_events())
