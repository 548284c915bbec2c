"""With several scenes written to Plex at once, order still holds where it matters: two edits
of one scene reach Plex in the order they were made, and the last one wins; two scenes of one
Plex item never write at the same time."""

from __future__ import annotations

import threading
import time

import pytest

from stash2plex.engine.worker import BATCH_SIZE, Worker
from stash2plex.errors import ConfigError, SyncError, TransientError
from stash2plex.single_flight import SingleFlight
from stash2plex.sync.syncer import UNFETCHED, SceneSyncer

from .conftest import wait_until
from .sandbox import sandbox

EDIT = "PUT /library/sections/{id}/all"


@pytest.mark.parametrize("batch_read_fails", [False, True], ids=["batch read", "batch read fails"])
def test_two_edits_of_one_scene_reach_plex_in_order(tmp_path, batch_read_fails):
    # With the batch read failing (Stash busy), the second edit's batch has no scenes from
    # Stash: the scene is read on its own, never taken from an earlier batch's read.
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
        if batch_read_fails:  # answered 503 once released
            threading.Timer(0.3, box.stash.hold("FindScenesByIds").set).start()
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


def edits_to_a_slow_plex(box, count: int, *, seconds: float, **settings):
    """Sync the library, set `settings`, edit `count` scenes in Stash and start a worker
    while Plex takes `seconds` per write. Returns the scenes, the edits Plex had before, the
    worker and its thread."""
    box.drain()
    box.settings(**settings)
    scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex][:count]
    for scene in scenes:
        box.stash.update_scene(scene.id, title=f"Slow {scene.id}")
    box.plex.faults.latency(seconds, route=r"^PUT ")
    box.plex.max_in_flight = 0
    edits_before = box.plex.log.count(route=EDIT)
    worker = Worker(box.data_dir)
    thread = threading.Thread(target=worker.run, daemon=True)
    box.queue(*[s.id for s in scenes])
    thread.start()
    return scenes, edits_before, worker, thread


def test_requests_plex_is_still_running_after_they_timed_out_count_against_the_concurrency(
    tmp_path,
):
    # The user allows two requests at once and waits 1 s for an answer; Plex takes 1.8 s per
    # write. A write we gave up on is still running there: the next may not join it (for up
    # to one more plex_timeout, as long as a timed-out write is given to land).
    with sandbox(tmp_path, scenes=20, seed=12) as box:
        _, edits_before, worker, thread = edits_to_a_slow_plex(
            box, 6, seconds=1.8, plex_max_concurrency=2, plex_timeout=1
        )

        wait_until(
            lambda: box.plex.log.count(route=EDIT) - edits_before >= 6,
            timeout=60,
            message="six edits to reach Plex",
        )
        worker.request_stop()
        thread.join(30)
        wait_until(lambda: box.plex.in_flight == 0, message="Plex finishing the writes")

        assert box.plex.max_in_flight == 2


def test_a_stop_does_not_wait_for_a_slot_a_timed_out_request_still_holds(tmp_path):
    # plex_timeout 5 s and a Plex taking 20 s per write: the slot of the edit given up on is
    # kept 5 s more. A stop meanwhile (Docker allows ten seconds) gives the waiting scene back.
    with sandbox(tmp_path, scenes=20, seed=12) as box:
        scenes, edits_before, worker, thread = edits_to_a_slow_plex(
            box, 2, seconds=20, plex_max_concurrency=1, plex_timeout=5
        )

        def first_given_up() -> bool:
            with box.store() as store:
                return any(store.job(s.id).state == "waiting" for s in scenes)

        wait_until(first_given_up, timeout=30, message="the first edit to time out")
        time.sleep(1)  # the second scene now waits for the slot
        stopped_at = time.monotonic()
        worker.request_stop()
        thread.join(30)
        took = time.monotonic() - stopped_at
        sent = box.plex.log.count(route=EDIT) - edits_before + box.plex.in_flight

        assert not thread.is_alive() and took < 3, took
        with box.store() as store:
            waiting = [store.job(s.id) for s in scenes if store.job(s.id).state != "waiting"]
        assert [(job.state, job.attempts) for job in waiting] == [("pending", 0)]
        assert sent == 1  # the first edit, still running at Plex; nothing after it


def test_sync_threads_starting_together_ask_plex_once_for_what_they_share(tmp_path):
    with sandbox(tmp_path, scenes=60) as box:
        # Each thread waits for Plex at its first request, so all of them reach it at once.
        box.plex.faults.latency(0.2, route=r"^GET ")

        box.drain()

        assert box.plex.max_in_flight > 1, "the scenes were not synced concurrently"
        assert box.plex.log.count("GET /") == 1  # who serves at the URL
        assert box.plex.log.count("GET /library/sections") == 1  # its libraries
        # The library's first listing (one page of 60 items), not one per thread.
        assert box.plex.log.count("GET /library/sections/{id}/all") == 1


@pytest.mark.parametrize(
    "failure",
    [
        TransientError("Plex did not answer in time", server="plex"),
        # A failure whose class takes a required keyword of its own (the library named is not
        # in Plex): the waiters get it as it is, not an error about copying it.
        ConfigError("Plex has no library named 'Moviez'", setting="plex_library"),
    ],
    ids=["timeout", "wrong library"],
)
def test_threads_that_waited_for_a_failed_request_share_its_failure_not_ask_in_turn(failure):
    """Behind a Plex that hangs, four threads asking one after another would wait four
    timeouts: those that waited get the first one's failure; a later call asks again."""
    flight = SingleFlight()
    asking, answer, asked = threading.Event(), threading.Event(), []

    def hangs() -> str:
        asked.append(threading.current_thread().name)
        asking.set()
        answer.wait(10)
        raise failure

    said: list[tuple[type, str, bool]] = []

    def ask() -> None:
        try:
            flight.run(lambda: None, hangs)
        except SyncError as exc:
            said.append((type(exc), exc.message, exc.shared))

    threads = [threading.Thread(target=ask, name=f"sync-{n}") for n in range(4)]
    threads[0].start()
    asking.wait(10)
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.3)  # the others now wait for the first one's answer
    answer.set()
    for thread in threads:
        thread.join(10)

    assert asked == ["sync-0"]
    assert (
        sorted(said, key=lambda one: one[2])
        == [(type(failure), failure.message, False)] + [(type(failure), failure.message, True)] * 3
    )
    assert flight.run(lambda: None, lambda: "answered") == "answered"


def test_the_threads_sharing_a_failed_request_count_it_once_for_the_breaker(tmp_path):
    """Eight sync threads start together and wait for one GET /: Plex fails it (a 500 and its
    quick re-asks). That is one failure for the circuit breaker, not eight: no outage."""
    with sandbox(tmp_path, scenes=40, settings={"plex_max_concurrency": 8}) as box:
        box.plex.faults.latency(0.2, route=r"^GET /$")  # the others queue up behind it
        box.plex.faults.fail(500, count=3, route=r"^GET /$")

        box.drain()

        with box.store() as store:
            assert store.holds().breaker.is_closed and store.outages() == []


def test_a_stop_ends_the_wait_for_the_request_rate_and_sends_nothing_more(tmp_path):
    # Plex "too busy" under bulk edits: the user allows one request every two seconds. With
    # four scenes at once, each holding a slot while it waits its turn, a stop used to wait
    # for every turn (8 s here, 30 s at 16 at once) and send each of them.
    settings = {"plex_max_concurrency": 4, "plex_max_requests_per_second": 0.5}
    with sandbox(tmp_path, scenes=20, seed=4, settings=settings) as box:
        box.queue()
        worker = Worker(box.data_dir)
        thread = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
        thread.start()
        wait_until(lambda: box.plex.log.count(route=EDIT) >= 2, timeout=30, message="edits")
        sent = len(box.plex.log.entries)
        stopped_at = time.monotonic()

        worker.request_stop()
        thread.join(30)

        took = time.monotonic() - stopped_at
        assert not thread.is_alive() and took < 1.5, took
        assert len(box.plex.log.entries) - sent <= 1  # at most the one sent at the stop
        with box.store() as store:
            states = store.job_counts()
            dead = store.dead_letters()
        assert set(states) <= {"pending", "done"} and dead == []  # the rest given back
        box.settings(plex_max_requests_per_second=0)
        box.drain()
        with box.store() as store:
            assert store.outstanding_jobs() == 0 and store.dead_letters() == []
