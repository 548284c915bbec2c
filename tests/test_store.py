"""The store against a real SQLite file: coalescing, leases, routing states, schema."""

import os
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from stash2plex.records import BreakerState, Decision, Holds, ListedItem, Pause
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


def done(attempts: int = 0) -> Decision:
    return Decision("done", attempts, status="synced")


def waiting(reason, due_at, attempts=0) -> Decision:
    return Decision("wait", attempts, reason=reason, due_at=due_at, message="why")


def test_claim_leases_due_jobs_once(store, clock):
    store.enqueue([1, 2, 3], "task")
    first = store.claim_due("w1", 2)
    second = store.claim_due("w1", 10)
    assert [j.scene_id for j in first] == [1, 2]
    assert [j.scene_id for j in second] == [3]
    assert store.claim_due("w1", 10) == []


def test_taking_the_lock_voids_every_other_owners_lease_at_once(store, clock):
    store.enqueue([5, 6], "hook")
    [killed, _] = store.claim_due("killed-worker", 2)
    store.apply(killed, waiting("retry", clock.now + 50, attempts=1))
    store.claim_due("killed-worker", 5)  # 5 is due again later; 6 stays leased
    assert store.take_ownership("next-worker") == 1
    [again] = store.claim_due("next-worker", 5)
    assert again.scene_id == 6  # no lease timer to wait for
    assert store.take_ownership("next-worker") == 0  # its own leases stay


def test_edit_during_sync_makes_the_job_due_again(store):
    store.enqueue([9], "hook")
    [job] = store.claim_due("w", 1)
    store.enqueue([9], "hook")  # the user saved again while we were syncing
    store.apply(job, done())
    assert store.job(9).state == "pending"
    [again] = store.claim_due("w", 1)
    store.apply(again, done())
    assert store.job(9).state == "done"
    assert store.outstanding_jobs() == 0


def test_an_edit_during_a_failed_attempt_gets_a_try_instead_of_a_dead_letter(store):
    store.enqueue([9], "hook")
    [job] = store.claim_due("w", 1)
    store.enqueue([9], "hook")
    store.apply(job, Decision("dead_letter", 1, error_class="permanent", message="bad"))
    assert store.dead_letters() == [] and store.job(9).state == "pending"


def test_done_job_is_requeued_fresh(store):
    store.enqueue([4], "hook")
    [job] = store.claim_due("w", 1)
    store.apply(job, done())
    assert store.enqueue([4], "hook") == 1
    assert store.job(4).state == "pending"


def test_retry_waiting_job_keeps_its_backoff_on_new_edit(store, clock):
    store.enqueue([3], "hook")
    [job] = store.claim_due("w", 1)
    store.apply(job, waiting("retry", clock.now + 100, attempts=1))
    store.enqueue([3], "hook")
    job = store.job(3)
    assert (job.state, job.reason, job.due_at, job.attempts) == (
        "waiting",
        "retry",
        clock.now + 100,
        1,
    )


def test_a_person_asking_for_a_scene_makes_its_retry_due_now(store, clock):
    """Sync, Sync All, Sync Recent and Sync now ask for the scenes: a retry waiting for its
    backoff is due at once, with its failed attempts kept (the dead-letter limit still
    counts them). A job due earlier keeps its time, and a scene of another wait is as a
    hook leaves it."""
    store.enqueue([3, 4, 5], "hook")
    three, four, five = store.claim_due("w", 3)
    store.apply(three, waiting("retry", clock.now + 100, attempts=2))
    store.apply(four, waiting("plex_down", clock.now + 100))
    store.apply(five, waiting("retry", clock.now + 100, attempts=1))
    clock.now += 10
    store.enqueue([3, 4], "cli", retry_now=True)
    retried, held, untouched = store.job(3), store.job(4), store.job(5)
    assert (retried.state, retried.reason, retried.due_at, retried.attempts) == (
        "waiting",
        "retry",
        clock.now,
        2,
    )
    assert (held.reason, held.due_at) == ("plex_down", clock.now + 90)
    assert untouched.due_at == clock.now + 90
    assert [job.scene_id for job in store.claim_due("w", 5)] == [3]
    assert store.next_retry() == (5, clock.now + 90, "why", False, 1, None)


def test_a_forced_sync_still_to_run_stays_forced_when_the_scene_is_queued_again(store):
    from stash2plex.engine.worker import FORCE_SOURCE

    store.enqueue([3], FORCE_SOURCE)
    store.enqueue([3], "cli")  # a plain sync, or a hook, before the forced one ran
    assert store.job(3).source == FORCE_SOURCE
    [job] = store.claim_due("w", 1)
    store.apply(job, done())
    store.enqueue([3], "cli")  # once done, a new plain sync is plain
    assert store.job(3).source == "cli"


def test_a_retry_after_a_write_that_timed_out_waits_however_soon_it_is_asked_for(store, clock):
    """That write may still land: the retry waits until it cannot (routing's
    unsettled_write_seconds), or Plex could apply the older write after the newer one."""
    from stash2plex.errors import UNSETTLED_WRITE

    store.enqueue([3], "hook")
    [job] = store.claim_due("w", 1)
    timed_out = replace(
        waiting("retry", clock.now + 60, attempts=1), detail={UNSETTLED_WRITE: True}
    )
    store.apply(job, timed_out)
    store.enqueue([3], "cli", retry_now=True)
    assert store.job(3).due_at == clock.now + 60
    # Said so: a sync asking for it again cannot bring it forward, and did not try it.
    from stash2plex.operations.outcome import waits_sentence

    retry = store.next_retry()
    assert retry is not None and retry.unsettled
    said = waits_sentence("No scene reached Plex: 1 scene waits", {"retry": 1}, retry, clock.now)
    assert "may still land until then, so syncing again cannot bring it forward" in said
    assert "at once" not in said
    clock.now += 5
    store.enqueue([3], "cli", retry_now=True)
    assert store.waiting_counts(since=clock.now) == {}  # queued again, not tried since


@pytest.mark.parametrize("reason", ["not_in_plex", "ambiguous", "conflict"])
def test_matching_waits_are_rechecked_on_new_edit(store, clock, reason):
    store.enqueue([3], "hook")
    [job] = store.claim_due("w", 1)
    store.apply(job, waiting(reason, clock.now + 600))
    store.enqueue([3], "hook")
    job = store.job(3)
    assert (job.state, job.due_at) == ("pending", clock.now)


def test_dead_letter_records_class_message_attempts_and_time(store, clock):
    store.enqueue([11], "hook")
    [job] = store.claim_due("w", 1)
    clock.now = 5_000.0
    store.apply(job, Decision("dead_letter", 1, error_class="permanent", message="bad data"))
    [letter] = store.dead_letters()
    assert letter["scene_id"] == 11
    assert (letter["error_class"], letter["message"], letter["attempts"]) == (
        "permanent",
        "bad data",
        1,
    )
    assert letter["failed_at"] == 5_000.0
    assert store.job(11) is None


def test_a_scene_is_queued_or_dead_lettered_never_both(store):
    store.enqueue([11, 12], "hook")
    for job in store.claim_due("w", 2):
        store.apply(job, Decision("dead_letter", 5, error_class="transient", message="502"))
    store.enqueue([11], "hook")  # saving the scene again is a redrive
    assert [d["scene_id"] for d in store.dead_letters()] == [12]
    [letter] = store.dead_letters()
    assert store.redrive([letter["id"]], "retry") == [12]
    assert store.dead_letters() == []
    assert {j.scene_id for j in store.jobs("pending")} == {11, 12}


def test_job_counts_split_waiting_by_reason(store, clock):
    store.enqueue([1, 2, 3], "task")
    jobs = store.claim_due("w", 3)
    store.apply(jobs[0], waiting("not_in_plex", clock.now + 1))
    store.apply(jobs[1], waiting("retry", clock.now + 1, attempts=1))
    assert store.job_counts() == {"waiting:not_in_plex": 1, "waiting:retry": 1, "leased": 1}


def test_the_breaker_opening_and_closing_records_one_outage_and_releases_parked_jobs(store, clock):
    store.enqueue(list(range(1, 401)), "sync all")
    [job] = store.claim_due("w", 1)
    opened = BreakerState(state="open", opened_at=clock.now, next_probe_at=clock.now + 2)
    store.apply(job, Decision("wait", 0, reason="plex_down", breaker=opened, stop=True))
    assert store.job(job.scene_id).due_at >= 1e18  # parked: no timer, the breaker owns it
    assert store.next_due_at() == clock.now
    clock.now += 6
    store.change_holds(lambda h: (replace(h, breaker=BreakerState(trial=True)), []))
    [outage] = store.outages()
    assert (outage["started_at"], outage["ended_at"]) == (1_000.0, 1_006.0)
    assert outage["jobs_affected"] == 400
    assert store.job(job.scene_id).state == "pending"
    assert store.holds().ramp_started_at == 1_006.0


def test_an_outage_opened_by_a_failure_streak_gives_the_streak_its_attempts_back(store, clock):
    store.enqueue([1, 2, 3], "task")
    jobs = store.claim_due("w", 3)
    for job in jobs[:2]:
        store.apply(job, waiting("retry", clock.now + 10, attempts=1))
    opened = BreakerState(state="open", opened_at=clock.now)
    streak = BreakerState(failures=((clock.now, 1), (clock.now, 2)))
    store.change_holds(lambda h: (replace(h, breaker=streak), []))
    store.apply(jobs[2], Decision("wait", 0, reason="plex_down", breaker=opened))
    for scene_id in (1, 2):
        job = store.job(scene_id)
        assert (job.reason, job.attempts) == ("plex_down", 0)


def test_lifting_a_pause_releases_what_waits_behind_it(store, clock):
    store.enqueue([1], "task")
    [job] = store.claim_due("w", 1)
    pause = Pause(kind="plex_auth", message="401", since=clock.now, next_check_at=clock.now + 5)
    store.apply(job, Decision("wait", 0, reason="auth", pause=pause))
    clock.now += 1
    store.nudge()
    assert store.holds().pause.next_check_at == clock.now
    store.change_holds(lambda h: (replace(h, pause=None), []))
    assert store.job(1).state == "pending"
    # Plex refused the token for a while: the backlog goes back gently, as after an outage.
    assert store.holds().ramp_started_at == clock.now


def test_unreadable_holds_read_as_none(store):
    store.put_value("holds", {"breaker": {"state": "weird"}, "pause": {"nonsense": 1}})
    assert store.holds() == Holds()


def test_index_lookup_by_path_and_basename(store):
    store.replace_index(  # two pages, as a paged listing arrives
        1,
        [
            [ListedItem(10, 1, (("/plex/a/x.mp4", 5),), ("Coll",))],
            [ListedItem(11, 1, (("/plex/b/x.mp4", 6), ("/plex/b/x2.mp4", 9)))],
        ],
    )
    assert [e.rating_key for e in store.index_by_path("/plex/a/x.mp4")] == [10]
    assert sorted(e.rating_key for e in store.index_by_basename("x.mp4")) == [10, 11]
    assert [e.rating_key for e in store.index_by_path("/plex/b/x2.mp4")] == [11]
    assert store.listed(10)[0] == ["Coll"]
    assert store.indexed_rating_keys(1) == {10, 11}
    store.add_to_index([ListedItem(12, 1, (("/plex/c/y.mp4", 7),))])
    assert store.indexed_rating_keys(1) == {10, 11, 12}
    store.replace_index(1, [[ListedItem(12, 1, (("/plex/c/y.mp4", 7),))]])
    assert store.index_by_basename("x.mp4") == []
    assert store.listed(10) is None


def test_link_keeps_fingerprints_and_what_it_owns(store):
    store.save_link(3, 30, 1, "/plex/a.mp4", {"title": "ab"}, {"collection": ["Studio"]})
    link = store.link(3)
    assert (link.rating_key, link.fingerprints, link.owned) == (
        30,
        {"title": "ab"},
        {"collection": ["Studio"]},
    )


def test_an_unchanged_sync_writes_nothing_to_the_store(store, clock):
    store.save_link(3, 30, 1, "/plex/a.mp4", {"title": "ab"}, {"collection": ["Studio"]})
    store.save_scene_entities(3, {"studio": [7], "tag": [1, 2]})
    first = store.link(3).synced_at
    version = store.data_version()
    clock.now += 60
    writer = Store.open(store.path.parent, clock=clock)  # another connection sees commits
    try:
        changes = writer._conn.total_changes
        writer.save_link(
            3, 30, 1, "/plex/a.mp4", {"title": "ab"}, {"collection": ["Studio"]}, wrote=False
        )
        writer.save_scene_entities(3, {"tag": [2, 1], "studio": [7]})
        assert writer._conn.total_changes == changes  # nothing written
        writer.save_link(3, 30, 1, "/plex/a.mp4", {"title": "ab"}, {"collection": ["Studio"]})
    finally:
        writer.close()
    assert store.data_version() != version
    assert store.link(3).synced_at == first + 60  # a write to Plex moves it
    assert store.scenes_showing("tag", 2) == [3]


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


def test_a_version_2_store_migrates_links_and_rebuilds_the_index(tmp_path):
    from stash2plex.store.db import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "stash2plex.db")
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version=2;")
    conn.execute(
        "INSERT INTO links (scene_id, rating_key, section_id, plex_path, fingerprints, synced_at,"
        ' owned) VALUES (1, 2, 3, \'/p\', \'{"title": "x"}\', 0, \'{"genre": ["a"]}\')'
    )
    conn.execute(
        "INSERT INTO plex_index (rating_key, section_id, path, basename, size)"
        " VALUES (2, 3, '/p', 'p', 1)"
    )
    conn.execute("INSERT INTO kv (key, value, updated_at) VALUES ('plex_index_refreshed_at', 5, 0)")
    conn.commit()
    conn.close()
    with Store.open(tmp_path) as store:
        [link] = store.links(1)
        assert (link.rating_key, link.fingerprints, link.owned, link.position) == (
            2,
            {"title": "x"},
            {"genre": ["a"]},
            0,
        )
        # The index is a cache: emptied, so the next sync lists Plex again with its keys.
        assert store.index_size() == 0 and store.index_by_path("/p") == []
        assert store.get_value("plex_index_refreshed_at") is None


def test_a_scene_links_to_several_items_and_an_item_knows_its_scenes(store):
    store.save_link(1, 10, 1, "/a.mp4", {"title": "x"}, position=0)
    store.save_link(1, 11, 1, "/b.mp4", {"title": "x"}, position=1)
    store.save_link(2, 11, 1, "/b.mp4", {}, position=0)
    assert [link.rating_key for link in store.links(1)] == [10, 11]
    assert store.link(1).rating_key == 10
    assert [link.scene_id for link in store.links_to_item(11)] == [1, 2]
    assert store.link_count() == 2
    store.drop_link(1, 11)
    assert [link.rating_key for link in store.links(1)] == [10]
    store.drop_link(1)
    assert store.links(1) == [] and store.link(2) is not None


def test_index_keys_compare_unicode_forms_and_windows_paths_without_case(store):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "/plex/Földer/Café.mp4")
    store.replace_index(
        1,
        [
            [
                ListedItem(5, 1, ((nfd, 10),)),
                ListedItem(6, 1, (("M:\\Studio A\\Clip.MP4", 20),)),
            ]
        ],
    )
    assert [e.rating_key for e in store.index_by_path("/plex/Földer/Café.mp4")] == [5]
    assert [e.rating_key for e in store.index_by_path("m:/studio a/clip.mp4")] == [6]
    assert store.index_by_path("/plex/földer/café.mp4") == []  # POSIX paths keep their case
    assert [e.rating_key for e in store.index_by_basename("CAFÉ.mp4")] == [5]
    assert store.index_by_path("m:/studio a/clip.mp4")[0].path == "M:\\Studio A\\Clip.MP4"


def test_listed_tags_and_item_files_come_from_the_listing(store):
    store.replace_index(
        1,
        [[ListedItem(5, 1, (("/a.mp4", 1), ("/b.mp4", 2)), ("C",), ("Drama",), ("X", "Y", "Z"))]],
    )
    assert store.listed(5)[1] == {"genre": ["Drama"], "actor": ["X", "Y", "Z"]}
    assert store.listed(6) is None
    assert store.item_files(5) == [("/a.mp4", 1), ("/b.mp4", 2)]
    assert store.multi_part_items() == [5]


def test_a_deleted_entity_queues_the_scenes_that_showed_it_from_our_records(store):
    store.save_scene_entities(1, {"performer": [7], "tag": [3, 30]})
    store.save_scene_entities(2, {"performer": [7, 8]})
    store.save_scene_entities(3, {"performer": [8]})
    assert store.scenes_showing("performer", 7) == [1, 2]
    store.record_entity_deletion("performer", 7)
    store.record_entity_deletion("tag", 30)  # an ancestor of scene 1's tag
    assert [(kind, entity_id) for kind, entity_id, _ in store.entity_deletions()] == [
        ("performer", 7),
        ("tag", 30),
    ]

    assert store.expand_entity_deletions() == [("performer", 7, 2), ("tag", 30, 1)]

    assert {job.scene_id for job in store.jobs("pending")} == {1, 2}
    assert store.job(1).source == "tag 30 deleted"
    assert store.entity_deletions() == [] and store.scenes_showing("performer", 7) == []
    store.forget_scene(2)
    assert store.scenes_showing("performer", 8) == [3]


def test_the_entity_deleted_hook_is_recorded_like_the_others(store):
    assert not store.has_work()
    store.record_hook("entity_deleted", 9, source="Studio.Destroy.Post", entity_kind="studio")
    assert [(k, i) for k, i, _ in store.entity_deletions()] == [("studio", 9)]
    assert store.has_work()  # a worker must run to expand it


def test_a_version_4_store_queues_its_linked_scenes_for_their_entities(tmp_path):
    from stash2plex.store.db import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "stash2plex.db")
    conn.executescript("".join(MIGRATIONS[:4]) + "PRAGMA user_version=4;")
    for scene_id in (3, 1, 2):
        conn.execute(
            "INSERT INTO links (scene_id, rating_key, section_id, plex_path, fingerprints,"
            " synced_at) VALUES (?, ?, 1, '/p', '{}', 0)",
            (scene_id, 10 + scene_id),
        )
    conn.commit()
    conn.close()
    with Store.open(tmp_path) as store:
        assert store.entity_backfill(10) == [1, 2, 3]
        assert store.has_work()
        store.save_scene_entities(2, {"performer": [7]})  # a sync records them as it goes
        store.record_entity_backfill({1: {"tag": [4]}}, [3], "test", done=[1, 3])
        assert store.entity_backfill(10) == []
        assert store.scenes_showing("tag", 4) == [1]
        assert store.scenes_showing("performer", 7) == [2]
        assert store.job(3).state == "pending" and store.job(1) is None


def test_queueing_nudges_the_worker_in_the_same_transaction(store, clock):
    # A worker woken by the new jobs must read the settings first: the person who queued them
    # (Sync All after switching a setting on) may just have changed one.
    clock.now += 30
    store.enqueue([1, 2], source="sync_all")
    assert store.holds().nudged_at == clock.now


def test_a_store_this_user_may_not_read_is_a_permission_to_fix_not_damage(tmp_path, monkeypatch):
    """Moving such a store aside would replace a sound queue with an empty one."""
    with Store.open(tmp_path) as store:
        store.enqueue([1], "before")
    store_file = tmp_path / "stash2plex.db"
    if os.geteuid() == 0:  # root reads any file: what the kernel answers anyone else
        real_open = Path.open

        def denied(self, *args, **kwargs):
            if self == store_file:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", denied)
    else:
        store_file.chmod(0)

    with pytest.raises(StoreError, match="cannot be read by this user"):
        Store.open(tmp_path)

    monkeypatch.undo()
    store_file.chmod(0o600)
    assert not list(tmp_path.glob("stash2plex.db.unreadable-*"))
    with Store.open(tmp_path) as store:
        assert [job.scene_id for job in store.jobs()] == [1]


def test_scenes_with_a_collection_are_found_whatever_its_title_holds(store):
    titles = ["50% off", "a_b", 'Say "when"', "back\\slash", "北極星映像"]
    for scene_id, title in enumerate(titles, start=1):
        store.save_link(scene_id, 10 + scene_id, 1, "/p", {}, {"collection": [title]})
    for scene_id, title in enumerate(titles, start=1):
        assert store.scenes_with_collection(1, title) == [scene_id]
    assert store.scenes_with_collection(1, "50 off") == []
    assert store.scenes_with_collection(2, "50% off") == []  # another library


def _mid_checkpoint(data_dir: Path) -> sqlite3.Connection:
    """The store as a checkpoint in another process leaves it for a moment: the WAL holds
    pages past the end of the database file, and page 1 (with the grown page count) has
    already been copied into the file, ahead of the pages that extend it (SQLite checkpoints
    in page order). Returns the writer's connection, which keeps the WAL from being folded
    in; close it when done."""
    path = data_dir / "stash2plex.db"
    with Store.open(data_dir) as store:
        store.put_value("before", "kept")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the pages stay in the WAL
    writer.execute("BEGIN")
    for n in range(400):
        writer.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, 0)", (f"k{n}", f'"{n:0900}"')
        )
    writer.execute("COMMIT")
    wal = Path(f"{path}-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    frames = range(32, len(wal), 24 + page_size)
    page_one = [at for at in frames if int.from_bytes(wal[at : at + 4], "big") == 1][-1]
    with path.open("r+b") as handle:  # the checkpoint's first write
        handle.write(wal[page_one + 24 : page_one + 24 + page_size])
    return writer


def test_a_store_caught_mid_checkpoint_is_sound_not_truncated(tmp_path):
    # Every hook opens the store while the worker may be checkpointing: the header alone then
    # reads as a truncated file. Moving it aside would lose the queue and every link.
    writer = _mid_checkpoint(tmp_path)
    try:
        path = tmp_path / "stash2plex.db"
        header = path.read_bytes()[:100]
        pages = int.from_bytes(header[28:32], "big") * int.from_bytes(header[16:18], "big")
        assert path.stat().st_size < pages  # what the header check saw
        with Store.open(tmp_path) as store:
            assert store.recovered_from is None
            assert store.get_value("before") == "kept" and store.get_value("k399") == f"{399:0900}"
        assert not list(tmp_path.glob("stash2plex.db.unreadable-*"))
    finally:
        writer.close()
