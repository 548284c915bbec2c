"""Outage resilience end to end: the real worker against the emulators with injected faults."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from itertools import pairwise

import pytest

from stash2plex.clients.http import BUSY_RETRY_DELAYS
from stash2plex.engine.worker import Worker
from stash2plex.operations import queue as operations

from .conftest import wait_until
from .sandbox import PLEX_TOKEN, SteppedClock, sandbox

BUSY_TRIES = len(BUSY_RETRY_DELAYS) + 1


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=30) as opened:
        yield opened


def matchable(box):
    return [s for s in box.library.scenes.values() if s.files and s.in_plex]


@pytest.mark.slow
def test_an_outage_mid_drain_ends_with_everything_synced_one_outage_and_a_ramp(tmp_path):
    with sandbox(tmp_path, scenes=300, seed=5) as box:
        box.queue()
        writes_at_outage = 60
        worker = Worker(box.data_dir)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while box.writes() < writes_at_outage and time.monotonic() < deadline:
            time.sleep(0.01)
        box.plex.faults.refuse_connections()
        down_at = time.time()
        time.sleep(1.5)
        box.plex.faults.accept_connections()

        def drained() -> bool:
            with box.store() as store:
                return store.outstanding_jobs() == 0

        wait_until(drained, timeout=120, message="the drain to finish by itself")
        worker.request_stop()
        thread.join(10)

        with box.store() as store:
            assert store.dead_letters() == []
            assert store.outstanding_jobs() == 0
            outages = store.outages()
            linked = store.link_count()
        assert linked == len(matchable(box))
        assert len(outages) == 1
        outage = outages[0]
        assert outage["ended_at"] is not None and outage["started_at"] >= down_at - 1
        assert outage["jobs_affected"] > 0
        for scene in matchable(box)[::50]:
            if scene.title:
                assert box.item(scene).title == scene.title.strip()
        # The ramp: right after the recovery, edits are spaced out; at the end they are not.
        # (The items' edits, compared by median: a scene the outage failed in flight may come
        # last, after a pause of its own.)
        edits = [
            r.at
            for r in box.plex.log.entries
            if r.route == "PUT /library/sections/{id}/all"
            and r.query.get("type") == "1"
            and r.at > outage["ended_at"]
        ]
        assert len(edits) > 40
        # Six gaps each: the ramp lets edits through in pairs, so an even count sees the same
        # number of long gaps whichever edit of a pair comes first.
        early = [b - a for a, b in pairwise(edits[:7])]
        late = [b - a for a, b in pairwise(edits[-7:])]
        assert statistics.median(early) > 2 * statistics.median(late), (early, late)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_mistyped_plex_url_is_a_setting_to_check_and_never_an_outage(box):
    clock = SteppedClock()
    scene = next(s for s in matchable(box) if s.title)
    right = box.plex.url
    box.settings(plex_url=f"http://127.0.0.1:{closed_port()}")

    box.queue(scene.id)
    Worker(box.data_dir, clock=clock).run(until_idle=True)

    job = box.job(scene.id)
    assert (job.state, job.reason, job.attempts) == ("waiting", "settings", 0)
    with box.store() as store:
        pause = store.holds().pause
        assert store.outages() == [] and store.holds().breaker.state == "closed"
    assert (pause.kind, pause.setting) == ("config", "plex_url")
    assert "connection refused" in pause.message and "check plex_url" in pause.message
    assert PLEX_TOKEN not in pause.message

    box.settings(plex_url=right)
    clock.offset += 60  # the pause's next check
    assert Worker(box.data_dir, clock=clock).run(until_idle=True).synced == 1
    assert box.item(scene).title == scene.title.strip()

    # Plex has answered at this address now: the same refusal is an outage.
    box.plex.faults.refuse_connections()
    box.stash.update_scene(scene.id, title="After")
    box.queue(scene.id)
    Worker(box.data_dir, clock=clock).run(until_idle=True)
    with box.store() as store:
        assert [o["ended_at"] for o in store.outages()] == [None]
        assert store.holds().pause is None
    assert box.job(scene.id).reason == "plex_down"


def test_every_address_plex_answered_at_counts_not_only_the_last(box):
    # The plugin reaches Plex as 127.0.0.1, a command line elsewhere as localhost: both share
    # the store. Plex down later is an outage for either.
    clock = SteppedClock()
    scene = next(s for s in matchable(box) if s.title)
    by_ip = box.plex.url
    by_name = by_ip.replace("127.0.0.1", "localhost")
    for url, title in ((by_ip, "By address"), (by_name, "By name")):
        box.settings(plex_url=url)
        box.stash.update_scene(scene.id, title=title)
        box.queue(scene.id)
        assert Worker(box.data_dir, clock=clock).run(until_idle=True).synced == 1
    box.settings(plex_url=by_ip)
    box.plex.faults.refuse_connections()
    box.stash.update_scene(scene.id, title="While down")
    box.queue(scene.id)
    Worker(box.data_dir, clock=clock).run(until_idle=True)
    assert box.job(scene.id).reason == "plex_down"
    with box.store() as store:
        assert store.holds().pause is None and len(store.outages()) == 1


def test_a_rejected_token_pauses_with_a_clear_message_and_a_fixed_token_resumes(box):
    scene = next(s for s in matchable(box) if s.title)
    box.plex.token = "rotated-token-123"
    box.queue(scene.id)

    report = Worker(box.data_dir).run(until_idle=True)

    assert report.synced == 0
    job = box.job(scene.id)
    assert (job.state, job.reason, job.attempts) == ("waiting", "auth", 0)
    with box.store() as store:
        pause = store.holds().pause
        assert store.dead_letters() == []
    assert pause.setting == "plex_token" and "plex_token" in pause.message
    assert PLEX_TOKEN not in pause.message

    box.settings(plex_token="rotated-token-123")  # the user fixes the setting in Stash
    result = operations.process_queue(box.data_dir)

    assert result is not None and result.synced == 1
    assert box.item(scene).title == scene.title.strip()
    with box.store() as store:
        assert store.holds().pause is None


def test_maintenance_503_is_an_outage_that_burns_no_attempt(box):
    clock = SteppedClock()
    scene = next(s for s in matchable(box) if s.title)
    box.plex.faults.maintenance(True)
    box.queue(scene.id)

    Worker(box.data_dir, clock=clock).run(until_idle=True)

    job = box.job(scene.id)
    assert (job.state, job.reason, job.attempts) == ("waiting", "plex_down", 0)
    with box.store() as store:
        assert store.holds().breaker.state == "open"
        assert [o["ended_at"] for o in store.outages()] == [None]
    # Still in maintenance at the first probe: stays open, nothing dead-lettered.
    clock.offset += 6
    Worker(box.data_dir, clock=clock).run(until_idle=True)
    assert box.job(scene.id).reason == "plex_down"

    box.plex.faults.maintenance(False)
    clock.offset += 11
    report = Worker(box.data_dir, clock=clock).run(until_idle=True)

    assert report.synced == 1
    with box.store() as store:
        assert store.holds().breaker.state == "closed"
        [outage] = store.outages()
        assert outage["ended_at"] is not None and outage["jobs_affected"] == 1
        assert store.dead_letters() == []
        events = [e["message"] for e in store.recent_events(50)]
    assert any(m.startswith("Plex is back online after") for m in events)


@pytest.mark.parametrize(
    "inject, message",
    [
        (lambda faults: faults.garbage_xml(count=1), "malformed XML"),
        # Refused on each try of the request (a refusal once is asked again at once).
        (lambda faults: faults.fail(520, count=BUSY_TRIES), "non-standard HTTP status"),
        (lambda faults: faults.fail(500, count=BUSY_TRIES), "HTTP 500"),
        (lambda faults: faults.drop_connections(count=1), "closed the connection"),
    ],
)
def test_odd_answers_are_classified_transient_and_retried(box, inject, message):
    clock = SteppedClock()
    scene = next(s for s in matchable(box) if s.title)
    box.drain()  # synced once: Plex has answered at its address
    box.stash.update_scene(scene.id, title="Retitled")
    inject(box.plex.faults)
    box.queue(scene.id)

    Worker(box.data_dir, clock=clock).run(until_idle=True)

    job = box.job(scene.id)
    assert (job.state, job.reason, job.attempts) == ("waiting", "retry", 1)
    assert job.last_error_class == "transient"
    assert message in job.last_error
    clock.offset += 3600
    report = Worker(box.data_dir, clock=clock).run(until_idle=True)
    assert report.synced == 1
    assert box.item(scene).title == "Retitled"


def test_a_permanent_error_dead_letters_at_once_with_its_reason(box):
    scene = next(s for s in matchable(box) if s.title)
    Worker(box.data_dir).run(until_idle=True)
    box.stash.update_scene(scene.id, title="Rejected")
    box.plex.faults.fail(400, count=1, route=r"^PUT ")
    box.queue(scene.id)

    report = Worker(box.data_dir).run(until_idle=True)

    assert report.dead_lettered == 1
    with box.store() as store:
        [letter] = store.dead_letters()
    assert letter["scene_id"] == scene.id and letter["error_class"] == "permanent"
    assert "400" in letter["message"] and letter["attempts"] == 1
    assert letter["failed_at"] > 1_600_000_000  # a real timestamp, comparable in queries


def test_transient_failures_use_up_max_attempts_then_dead_letter(box):
    clock = SteppedClock()
    scene = next(s for s in matchable(box) if s.title)
    Worker(box.data_dir, clock=clock).run(until_idle=True)
    box.stash.update_scene(scene.id, title="Never")
    box.plex.faults.fail(502, route=r"^PUT ")
    box.queue(scene.id)
    for _ in range(10):
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        clock.offset += 3600
    with box.store() as store:
        [letter] = store.dead_letters()
    assert (letter["error_class"], letter["attempts"]) == ("transient", 5)
