"""An upgrade from a store of version 4, whose links do not record what each scene showed.

A deletion of a performer in Stash is expanded from those records, so after the upgrade the
worker reads the linked scenes from Stash in the background and records them, writing nothing
to Plex; a scene whose Stash state no longer matches what was pushed (a performer deleted
before its records were read) is queued for an ordinary sync.
"""

from __future__ import annotations

import sqlite3

from stash2plex.clients.http import BUSY_RETRY_DELAYS
from stash2plex.engine.context import build_context
from stash2plex.engine.worker import Worker
from stash2plex.store.db import (
    CREATED_AT_KEY,
    DB_FILENAME,
    MIGRATIONS,
    SERVER_CONNECTION_KEY,
    Store,
)
from stash2plex.sync.backfill import EntityBackfill

from .sandbox import sandbox

V4_LINK_COLUMNS = "scene_id, rating_key, section_id, plex_path, fingerprints, synced_at, owned"


def downgrade_to_version_4(data_dir) -> None:
    """Replace the store with one of version 4 holding the same links (a scene's primary item
    only, as version 4 had one link per scene), the Stash connection and when the store was
    created (the scheduled reconcile counts from it)."""
    with Store.open(data_dir) as store:
        kept = {key: store.get_value(key) for key in (SERVER_CONNECTION_KEY, CREATED_AT_KEY)}
        rows = store._conn.execute(
            f"SELECT {V4_LINK_COLUMNS} FROM links WHERE position = 0"
        ).fetchall()
    for name in (DB_FILENAME, DB_FILENAME + "-wal", DB_FILENAME + "-shm"):
        (data_dir / name).unlink(missing_ok=True)
    conn = sqlite3.connect(data_dir / DB_FILENAME)
    conn.executescript("".join(MIGRATIONS[:4]) + "PRAGMA user_version=4;")
    conn.executemany(f"INSERT INTO links ({V4_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    with Store.open(data_dir) as store:  # migrates to the current version
        for key, value in kept.items():
            store.put_value(key, value)


def test_after_an_upgrade_deletions_reach_scenes_synced_by_the_old_version(tmp_path):
    with sandbox(tmp_path, scenes=40, seed=11) as box:
        box.drain()
        library = box.library
        linked = [s for s in library.scenes.values() if s.files and s.in_plex]
        counts: dict[int, int] = {}
        for scene in linked:
            for performer in scene.performer_ids:
                counts[performer] = counts.get(performer, 0) + 1
        early, late = sorted(counts, key=lambda p: (-counts[p], p))[:2]
        early_name, late_name = (library.performers[p].name for p in (early, late))
        downgrade_to_version_4(box.data_dir)
        with box.store() as store:
            waiting = store.entity_backfill(1000)
            assert set(waiting) == {s.id for s in linked}
            assert store.scenes_showing("performer", late) == []

        # Deleted before the worker had a chance to read anything: no record can find them.
        showed_early = [s for s in linked if early in s.performer_ids]
        box.stash.delete_entity("performer", early)
        with box.store() as store:
            store.record_entity_deletion("performer", early)
        box.plex.log.clear()
        Worker(box.data_dir).run(until_idle=True)

        written = {int(r.query.get("id", 0)) for r in box.plex.log.writes()}
        items = {box.rating_key(s, i) for s in showed_early for i in range(len(s.files))}
        # Only the scenes that showed it were written: the reading itself writes nothing.
        assert {box.rating_key(s) for s in showed_early} <= written <= items
        for scene in showed_early:
            assert early_name not in [a.name for a in box.item(scene).actors]
        with box.store() as store:
            assert store.entity_backfill(1000) == []
            showing_late = store.scenes_showing("performer", late)
        assert showing_late == sorted(s.id for s in linked if late in s.performer_ids)

        # Deleted after: the records read in the background find its scenes.
        box.stash.delete_entity("performer", late)
        with box.store() as store:
            store.record_entity_deletion("performer", late)
        Worker(box.data_dir).run(until_idle=True)
        for scene in linked:
            for index in range(len(scene.files)):
                item = box.plex.item(box.rating_key(scene, index))
                assert late_name not in [a.name for a in item.actors]


def test_a_read_that_fails_records_nothing_and_is_tried_again_after_a_pause(tmp_path):
    with sandbox(tmp_path, scenes=12, seed=5) as box:
        box.drain()
        downgrade_to_version_4(box.data_dir)
        now = [1000.0]
        backfill = EntityBackfill(lambda: now[0])
        with box.store() as store:
            context = build_context(store)
            waiting = store.entity_backfill(1000)
            assert waiting and store.has_work() and not store.has_work(backfill=False)
            # Refused on each try (one refusal alone is asked again after a pause).
            box.stash.graphql_error("database is locked", count=len(BUSY_RETRY_DELAYS) + 1)
            assert backfill.tick(store, context.stash, context.config) == 0
            assert backfill.failing() and store.entity_backfill(1000) == waiting
            assert backfill.next_due_at(store) == 1000.0 + EntityBackfill.RETRY_SECONDS

            now[0] += EntityBackfill.RETRY_SECONDS - 1
            requests = box.stash.count()
            assert backfill.tick(store, context.stash, context.config) == 0
            assert box.stash.count() == requests  # still pausing: Stash not asked

            now[0] += 1
            assert backfill.tick(store, context.stash, context.config) == len(waiting)
            assert not backfill.failing() and backfill.next_due_at(store) is None
            assert not store.has_work()  # nothing changed in Stash: nothing queued
