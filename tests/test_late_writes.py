"""Writes that timed out and that a slow Plex applies late (sync.settle): the item is read
back later and an older value that landed after a newer one is written again. The real worker
against the emulators; the user's `plex_timeout` is 1 s and Plex far slower; the check is
reached with the injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from stash2plex.engine.worker import Worker
from stash2plex.sandbox.verify import expected_items, item_problems
from stash2plex.sync import settle

from .conftest import wait_until
from .sandbox import SteppedClock, sandbox

PUT = r"^PUT "


@contextmanager
def slow_plex(tmp_path, scenes: int = 12, **settings) -> Iterator[tuple]:
    """A synced sandbox whose user set `plex_timeout` to 1 s (and `settings`), the worker's
    injected clock, and a scene in Plex with a studio and a cover."""
    with sandbox(tmp_path, scenes=scenes, seed=4) as box:
        box.drain()
        box.settings(plex_timeout=1, **settings)
        scene = next(
            s
            for s in box.library.scenes.values()
            if s.files and s.in_plex and s.studio_id and s.cover_version is not None
        )
        yield box, SteppedClock(), scene


def drain(box, clock: SteppedClock) -> None:
    Worker(box.data_dir, clock=clock).run(until_idle=True)


def to_retry(box, clock: SteppedClock, scene) -> None:
    """Move the injected clock to the scene's retry (at least twice plex_timeout away)."""
    job = box.job(scene.id)
    if job is not None:
        clock.offset += max(0.0, job.due_at - clock())


def save(box, clock, scene, latency: float, route: str = PUT, **change) -> None:
    """Save `change` in Stash and drain once while Plex takes `latency` s per request on
    `route` (a write that times out waits for its retry)."""
    box.plex.faults.latency(latency, route=route)
    box.stash.update_scene(scene.id, **change)
    box.queue(scene.id)
    to_retry(box, clock, scene)
    drain(box, clock)


def save_until_settled(box, clock, scene, latency: float, **change) -> None:
    """`save`, then drain at each retry until the job is done or dead-lettered."""
    save(box, clock, scene, latency, **change)
    while (job := box.job(scene.id)) is not None and job.state != "done":
        to_retry(box, clock, scene)
        drain(box, clock)


def landed(box) -> None:
    box.plex.faults.latency(0, route=PUT)
    wait_until(lambda: box.plex.in_flight == 0, message="Plex finishing the writes")


def at_check(box, clock) -> None:
    clock.offset += settle.check_after(1)
    drain(box, clock)


def problems(box, scene) -> list[str]:
    """How the scene's Plex item differs from what Stash says it should show."""
    expected = expected_items(box.library, {}, pushed=[scene.id])
    wanted = next(item for item in expected.values() if scene.id in item.scene_ids)
    return item_problems(wanted, box.item(scene), None)


def late_write_events(box) -> list[str]:
    with box.store() as store:
        return [e["message"] for e in store.recent_events() if e["kind"] == "late_write"]


def _studio_change(box, scene, n: int) -> dict:
    others = [studio for studio in sorted(box.library.studios) if studio != scene.studio_id]
    return {"studio_id": others[n]}


def _performers_then_none(box, scene, n: int) -> dict:
    return {"performer_ids": [sorted(box.library.performers)[:2], []][n]}


def _studio_then_none(box, scene, n: int) -> dict:
    return {"studio_id": [_studio_change(box, scene, 0)["studio_id"], None][n]}


# What changes twice, as (the request that carries it, the change: first, then second).
LATE_WRITES = {
    "title": (PUT, lambda box, scene, n: {"title": ("First", "Second")[n]}),
    "cover": ("^POST ", lambda box, scene, n: {"cover_version": scene.cover_version + n + 1}),
    # The studio's collection follows it: the late list puts the older studio's back.
    "studio and its collection": (PUT, _studio_change),
    # An emptied list is removed by naming what Plex holds: the late names too.
    "studio, then none": (PUT, _studio_then_none),
    "performers, then none": (PUT, _performers_then_none),
}


@pytest.mark.parametrize("what", list(LATE_WRITES))
@pytest.mark.parametrize("preserve", [False, True])
def test_an_older_write_that_plex_applies_late_is_written_over_again(tmp_path, what, preserve):
    """A Plex slower than twice `plex_timeout` still applies a write we gave up on after our
    retry wrote the newer value; the item's check, `check_after` later, writes it again. With
    preserve_plex_edits the older value is still ours, not an edit made in Plex."""
    route, change = LATE_WRITES[what]
    with slow_plex(tmp_path, scenes=30, preserve_plex_edits=preserve) as (box, clock, scene):
        save(box, clock, scene, 4, route, **change(box, scene, 0))  # the write times out
        save(box, clock, scene, 0, route, **change(box, scene, 1))
        wait_until(lambda: box.plex.in_flight == 0, message="the older write landing")
        assert problems(box, scene), "the older write did not land after the newer one"

        at_check(box, clock)

        assert problems(box, scene) == []
        with box.store() as store:
            assert store.next_unsettled_check() is None
        assert any("the scene is synced again" in words for words in late_write_events(box))


def test_a_timed_out_edit_that_could_not_hide_a_newer_one_costs_no_check(tmp_path):
    with slow_plex(tmp_path) as (box, clock, scene):
        save(box, clock, scene, 2, title="Only")  # times out, lands later
        save_until_settled(box, clock, scene, 0)  # the retry: the same title
        landed(box)
        requests = len(box.plex.log.entries)

        at_check(box, clock)

        assert box.item(scene).title == "Only"
        assert len(box.plex.log.entries) == requests  # nothing to read: no write could harm
        with box.store() as store:
            assert store.next_unsettled_check() is None


def test_a_write_that_timed_out_with_no_newer_push_since_is_not_checked(tmp_path):
    """Every try timed out and the scene went to the dead letters: its last write carried
    Stash's newest value, so landing late hides nothing (no false warning, no request)."""
    with slow_plex(tmp_path, max_retries=2) as (box, clock, scene):
        save_until_settled(box, clock, scene, 3, title="Newest")
        landed(box)
        requests = len(box.plex.log.entries)

        at_check(box, clock)

        assert len(box.plex.log.entries) == requests
        with box.store() as store:
            assert store.next_unsettled_check() is None
            assert [d["scene_id"] for d in store.dead_letters()] == [scene.id]
        assert late_write_events(box) == []


def test_a_newest_value_whose_writes_all_timed_out_is_no_older_write(tmp_path):
    """A timed out, B was pushed, then every write of C timed out (dead letter) and landed:
    C is newer than the last push, so the check finds nothing to write again."""
    with slow_plex(tmp_path, max_retries=2) as (box, clock, scene):
        for title, latency in (("A", 4), ("B", 0), ("C", 3)):
            save_until_settled(box, clock, scene, latency, title=title)
        landed(box)
        assert box.item(scene).title == "C"
        writes = box.writes()

        at_check(box, clock)

        assert box.writes() == writes and box.item(scene).title == "C"
        with box.store() as store:
            assert store.next_unsettled_check() is None
            assert [d["scene_id"] for d in store.dead_letters()] == [scene.id]
        assert late_write_events(box) == []


def test_a_check_that_cannot_read_plex_is_given_up_after_its_tries_with_a_word(tmp_path):
    with slow_plex(tmp_path) as (box, clock, scene):
        save(box, clock, scene, 3, title="First")
        save(box, clock, scene, 0, title="Second")
        landed(box)
        box.plex.faults.fail(500, route=r"^GET /library/metadata/")

        for _ in range(settle.MAX_CHECK_TRIES):
            with box.store() as store:
                assert store.next_unsettled_check() is not None
            at_check(box, clock)

        with box.store() as store:
            assert store.next_unsettled_check() is None
        words = late_write_events(box)
        assert len(words) == 1 and "could not be read back" in words[0]
        assert "Reconcile" in words[0]
