"""The store against a real SQLite file: coalescing, leases, routing states, schema."""

import os
import sqlite3
import stat

import pytest

from stash2plex.records import ListedItem
from stash2plex.store.db import SCHEMA_VERSION, Store, StoreError


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    with Store.open(tmp_path, clock=clock) as opened:
        yield opened


def test_new_store_is_private_wal_and_versioned(tmp_path, store):
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    Store.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "stash2plex.db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this"):
        Store.open(tmp_path)


def test_enqueue_coalesces_a_burst_into_one_job(store):
    assert store.enqueue([7], "hook") == 1
    for _ in range(49):
        store.enqueue([7], "hook")
    jobs = store.jobs()
    assert [j.scene_id for j in jobs] == [7]
    assert jobs[0].state == "pending"


def test_claim_leases_due_jobs_once(store, clock):
    store.enqueue([1, 2, 3], "task")
    first = store.claim_due("w1", 2, lease_seconds=60)
    second = store.claim_due("w2", 10, lease_seconds=60)
    assert [j.scene_id for j in first] == [1, 2]
    assert [j.scene_id for j in second] == [3]
    assert store.claim_due("w3", 10, lease_seconds=60) == []


def test_expired_lease_becomes_due_again(store, clock):
    store.enqueue([5], "hook")
    [_job] = store.claim_due("killed-worker", 1, lease_seconds=60)
    clock.now += 59
    assert store.claim_due("w2", 1, lease_seconds=60) == []
    clock.now += 2
    [again] = store.claim_due("w2", 1, lease_seconds=60)
    assert again.scene_id == 5


def test_edit_during_sync_makes_the_job_due_again(store):
    store.enqueue([9], "hook")
    [job] = store.claim_due("w", 1, 60)
    store.enqueue([9], "hook")  # the user saved again while we were syncing
    store.complete(job)
    assert store.job(9).state == "pending"
    [again] = store.claim_due("w", 1, 60)
    store.complete(again)
    assert store.job(9).state == "done"
    assert store.outstanding_jobs() == 0


def test_done_job_is_requeued_fresh(store):
    store.enqueue([4], "hook")
    [job] = store.claim_due("w", 1, 60)
    store.complete(job)
    assert store.enqueue([4], "hook") == 1
    assert store.job(4).state == "pending"


def test_retry_waiting_job_keeps_its_backoff_on_new_edit(store, clock):
    store.enqueue([3], "hook")
    [job] = store.claim_due("w", 1, 60)
    store.defer(job, reason="retry", due_at=clock.now + 100, attempts=1, error="500")
    store.enqueue([3], "hook")
    waiting = store.job(3)
    assert (waiting.state, waiting.reason, waiting.due_at, waiting.attempts) == (
        "waiting",
        "retry",
        clock.now + 100,
        1,
    )


def test_not_in_plex_job_is_rechecked_on_new_edit(store, clock):
    store.enqueue([3], "hook")
    [job] = store.claim_due("w", 1, 60)
    store.defer(job, reason="not_in_plex", due_at=clock.now + 600, attempts=0)
    store.enqueue([3], "hook")
    job = store.job(3)
    assert (job.state, job.due_at) == ("pending", clock.now)


def test_dead_letter_records_class_message_attempts_and_time(store, clock):
    store.enqueue([11], "hook")
    [job] = store.claim_due("w", 1, 60)
    clock.now = 5_000.0
    store.dead_letter(job, error_class="permanent", message="bad data", attempts=1)
    [letter] = store.dead_letters()
    assert letter["scene_id"] == 11
    assert (letter["error_class"], letter["message"], letter["attempts"]) == (
        "permanent",
        "bad data",
        1,
    )
    assert letter["failed_at"] == 5_000.0
    assert store.job(11) is None


def test_job_counts_split_waiting_by_reason(store, clock):
    store.enqueue([1, 2, 3], "task")
    jobs = store.claim_due("w", 3, 60)
    store.defer(jobs[0], reason="not_in_plex", due_at=clock.now + 1, attempts=0)
    store.defer(jobs[1], reason="retry", due_at=clock.now + 1, attempts=1)
    assert store.job_counts() == {"waiting:not_in_plex": 1, "waiting:retry": 1, "leased": 1}


def test_index_lookup_by_path_and_basename(store):
    store.replace_index(
        1,
        [
            ListedItem(10, 1, (("/plex/a/x.mp4", 5),), ("Coll",)),
            ListedItem(11, 1, (("/plex/b/x.mp4", 6), ("/plex/b/x2.mp4", 9))),
        ],
    )
    assert [e.rating_key for e in store.index_by_path("/plex/a/x.mp4")] == [10]
    assert sorted(e.rating_key for e in store.index_by_basename("x.mp4")) == [10, 11]
    assert [e.rating_key for e in store.index_by_path("/plex/b/x2.mp4")] == [11]
    assert store.listed_collections(10) == ["Coll"]
    assert store.indexed_rating_keys(1) == {10, 11}
    store.add_to_index([ListedItem(12, 1, (("/plex/c/y.mp4", 7),))])
    assert store.indexed_rating_keys(1) == {10, 11, 12}
    store.replace_index(1, [ListedItem(12, 1, (("/plex/c/y.mp4", 7),))])
    assert store.index_by_basename("x.mp4") == []
    assert store.listed_collections(10) is None


def test_link_keeps_fingerprints_and_what_it_owns(store):
    store.save_link(3, 30, 1, "/plex/a.mp4", {"title": "ab"}, {"collection": ["Studio"]})
    link = store.link(3)
    assert (link.rating_key, link.fingerprints, link.owned) == (
        30,
        {"title": "ab"},
        {"collection": ["Studio"]},
    )


def test_a_version_1_store_migrates_and_keeps_its_data(tmp_path):
    from stash2plex.store.db import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "stash2plex.db")
    conn.executescript(MIGRATIONS[0] + "PRAGMA user_version=1;")
    conn.execute(
        "INSERT INTO links (scene_id, rating_key, section_id, plex_path, fingerprints, synced_at)"
        " VALUES (1, 2, 3, '/p', '{\"title\": \"x\"}', 0)"
    )
    conn.commit()
    conn.close()
    with Store.open(tmp_path) as store:
        link = store.link(1)
        assert (link.rating_key, link.fingerprints, link.owned) == (2, {"title": "x"}, {})
        assert store.index_size() == 0
