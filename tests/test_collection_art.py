"""Richer Plex: collections that show their studio's (or group's) image and text, touched only
when Stash2Plex created them and only when something changed; labels from chosen tags."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import pytest

from stash2plex.engine.context import build_context
from stash2plex.engine.worker import Worker
from stash2plex.errors import StoreError, TransientError
from stash2plex.names import name_key
from stash2plex.sandbox import images
from stash2plex.sandbox.library import Tag
from stash2plex.sync.collection_art import LISTING_TRUST_SECONDS, CollectionArt, CollectionLookups

from .sandbox import sandbox


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path) as opened:
        yield opened


def studio_scene(box, **where):
    def fits(scene):
        studio = box.library.studios.get(scene.studio_id or 0)
        return studio is not None and all(getattr(studio, k) == v for k, v in where.items())

    return box.find(fits)


def collection(box, title):
    return next(c for c in box.plex.collections(box.section_id) if c.title == title)


def test_a_studio_collection_shows_the_studios_image_and_details(box):
    scene = studio_scene(box, parent_id=None)  # parent networks have details
    studio = box.library.studios[scene.studio_id]

    box.drain(scene.id)

    shown = collection(box, studio.name)
    assert shown.poster_sha1 == hashlib.sha1(images.studio_image(studio.id)).hexdigest()
    assert shown.summary == studio.details
    assert "summary" in shown.locked

    # Every other scene of the studio: no request for the collection at all.
    writes = box.writes()
    box.drain()
    collection_writes = [
        r for r in box.plex.log.writes()[writes:] if r.query.get("id") == str(shown.rating_key)
    ]
    assert collection_writes == []

    # A new image in Stash: downloaded and uploaded once; new details: one edit.
    box.stash.update_studio(studio.id, new_image=True, details="Now with a new logo.")
    box.stash.rename("studio", studio.id, studio.name)  # Stash's Studio.Update.Post
    writes = box.writes()
    box.drain(scene.id)
    shown = collection(box, studio.name)
    assert shown.poster_sha1 == hashlib.sha1(images.studio_image(studio.id, 2)).hexdigest()
    assert shown.summary == "Now with a new logo."
    assert box.writes() == writes + 2
    # Same bytes again under a new URL (the studio saved without a new image): no upload.
    box.stash.update_studio(studio.id, details="Now with a new logo.")
    writes = box.writes()
    box.drain(scene.id)
    assert box.writes() == writes


def test_a_collection_deleted_in_plex_is_made_again_for_all_its_scenes(box):
    def studio_mates(scene):
        return [
            s
            for s in box.library.scenes.values()
            if s.studio_id == scene.studio_id and s.id != scene.id and s.files and s.in_plex
        ]

    scene = box.find(lambda s: s.studio_id is not None and bool(studio_mates(s)))
    studio, others = box.library.studios[scene.studio_id], studio_mates(scene)
    box.drain()
    box.plex.library.delete_collection(collection(box, studio.name).rating_key)  # by the user
    # Then the studio changes in Stash: its collection's poster and summary are due again.
    box.stash.update_studio(studio.id, new_image=True, details="A new chapter.")

    report = box.drain(scene.id)

    assert box.job(scene.id).state == "done"
    assert (report.dead_lettered, report.deferred, report.errors) == (0, 0, [])
    remade = collection(box, studio.name)
    assert remade.summary == "A new chapter."
    assert remade.poster_sha1 == hashlib.sha1(images.studio_image(studio.id, 2)).hexdigest()
    assert box.rating_key(scene) in remade.children
    # Its other scenes were queued and drained too: the collection holds them all again.
    assert sorted(remade.children) == sorted(
        {box.rating_key(s, i) for s in [scene, *others] for i in range(len(s.files))}
    )
    with box.store() as store:
        [event] = [e for e in store.recent_events() if e["kind"] == "collection"]
    assert f"'{studio.name}' was deleted in Plex" in event["message"]
    writes = box.writes()
    box.drain()
    assert box.writes() == writes


def test_a_studio_without_an_image_gets_no_placeholder_poster(box):
    scene = studio_scene(box, parent_id=None)
    studio = box.library.studios[scene.studio_id]
    studio.has_image = False
    box.drain(scene.id)
    shown = collection(box, studio.name)
    assert shown.poster_sha1 is None and shown.summary == studio.details


def test_a_collection_the_user_made_is_never_touched(box):
    scene = studio_scene(box, parent_id=None)
    studio = box.library.studios[scene.studio_id]
    other = box.find(lambda s: s.studio_id != scene.studio_id)
    # The user made a collection with the studio's name in Plex before Stash2Plex ran.
    box.plex.library.create_collection(
        {
            "sectionId": str(box.section_id),
            "title": studio.name,
            "smart": "0",
            "uri": f"server://{box.plex.machine_identifier}/com.plexapp.plugins.library"
            f"/library/metadata/{box.rating_key(other)}",
        }
    )

    box.drain(scene.id)

    shown = collection(box, studio.name)
    assert shown.summary == "" and shown.poster_sha1 is None
    assert box.rating_key(scene) in shown.children  # items still join it, as before


def test_group_collections_show_the_front_image_and_synopsis(tmp_path):
    with sandbox(tmp_path, settings={"collection_groups": True}) as box:
        scene = box.find(
            lambda s: any(
                box.library.groups[g].has_front_image and box.library.groups[g].synopsis
                for g in s.group_ids
            )
        )
        group = next(
            box.library.groups[g]
            for g in scene.group_ids
            if box.library.groups[g].has_front_image and box.library.groups[g].synopsis
        )
        box.drain(scene.id)
        shown = collection(box, group.name)
        assert shown.poster_sha1 == hashlib.sha1(images.group_front_image(group.id)).hexdigest()
        assert shown.summary == group.synopsis


def test_labels_mirror_the_chosen_tags_and_keep_the_users(tmp_path):
    with sandbox(tmp_path, settings={"label_tags": "Mood, Interview"}) as box:
        tags = box.library.tags
        mood = {t.id for t in tags.values() if t.name == "Mood"}
        children = {t.id for t in tags.values() if set(t.parent_ids) & mood}
        scene = box.find(lambda s: bool(set(s.tag_ids) & children))
        chosen = children | {t.id for t in tags.values() if t.name == "Interview"}
        wanted = [tags[t].name for t in scene.tag_ids if t in chosen]
        box.drain(scene.id)
        key = box.rating_key(scene)
        assert box.plex.item(key).labels == wanted
        assert "label" in box.plex.item(key).locked

        # The user adds a label in Plex; a tag change in Stash replaces only ours.
        box.plex.library.apply_edit(
            box.section_id,
            [("id", str(key)), ("type", "1")]
            + [(f"label[{i}].tag.tag", name) for i, name in enumerate([*wanted, "Kids OK"])],
        )
        kept = [t for t in scene.tag_ids if t not in children]
        box.stash.update_scene(scene.id, tag_ids=kept)
        box.drain(scene.id)
        still_ours = [tags[t].name for t in kept if tags[t].name == "Interview"]
        assert sorted(box.plex.item(key).labels) == sorted(["Kids OK", *still_ours])

        writes = box.writes()
        box.drain(scene.id)
        assert box.writes() == writes


def test_no_labels_unless_asked(box):
    scene = box.find(lambda s: bool(s.tag_ids))
    box.drain(scene.id)
    assert box.item(scene).labels == []


def test_a_label_tag_renamed_in_stash_leaves_the_labels_and_says_so(tmp_path):
    with sandbox(tmp_path, settings={"label_tags": "Private"}) as box:
        tags = box.library.tags
        private = Tag(max(tags) + 1, "Private")
        tags[private.id] = private
        scene = box.find(lambda s: True)
        box.stash.update_scene(scene.id, tag_ids=[*scene.tag_ids, private.id])
        box.drain(scene.id)
        key = box.rating_key(scene)
        assert box.plex.item(key).labels == ["Private"]

        box.stash.rename("tag", private.id, "Privé")  # label_tags now names no tag
        box.drain(scene.id)

        # Labels may limit what shared users see: left as they were, and said once.
        assert box.plex.item(key).labels == ["Private"]
        with box.store() as store:
            events = [e for e in store.recent_events() if e["kind"] == "labels"]
        assert len(events) == 1 and "'Private'" in events[0]["message"]
        box.drain(scene.id)
        with box.store() as store:
            assert len([e for e in store.recent_events() if e["kind"] == "labels"]) == 1

        box.settings(label_tags="Privé")  # the setting follows the rename: labels follow
        box.drain(scene.id)
        assert box.plex.item(key).labels == ["Privé"]


def test_a_renamed_studio_leaves_no_empty_collection_but_a_users_items_keep_one(box):
    scene = box.find(lambda s: s.studio_id is not None)
    studio = box.library.studios[scene.studio_id]
    old = studio.name
    box.drain()
    assert box.rating_key(scene) in collection(box, old).children

    box.stash.rename("studio", studio.id, "Renamed Studio")
    box.drain()

    titles = [c.title for c in box.plex.collections(box.section_id)]
    assert old not in titles and "Renamed Studio" in titles
    renamed = collection(box, "Renamed Studio")
    assert renamed.poster_sha1 == hashlib.sha1(images.studio_image(studio.id)).hexdigest()
    assert box.rating_key(scene) in renamed.children

    # Renamed back after the user put an item of their own into the collection: kept.
    other = box.find(lambda s: s.studio_id != studio.id)
    box.plex.library.collection_add_items(
        renamed.rating_key,
        f"server://{box.plex.machine_identifier}/com.plexapp.plugins.library"
        f"/library/metadata/{box.rating_key(other)}",
    )
    box.stash.rename("studio", studio.id, old)
    box.drain()
    assert [box.rating_key(other)] == collection(box, "Renamed Studio").children
    assert box.rating_key(scene) in collection(box, old).children
    writes = box.writes()
    box.drain()
    assert box.writes() == writes


COLLECTIONS_ROUTE = "GET /library/sections/{id}/collections"


def studios_shown(box):
    """The studios of the scenes a sync pushes to Plex."""
    ids = {s.studio_id for s in box.library.scenes.values() if s.files and s.in_plex}
    return [box.library.studios[i] for i in sorted(ids - {None})]


def test_a_first_sync_finds_all_the_collections_it_made_in_one_listing(tmp_path):
    with sandbox(tmp_path, scenes=120) as box:
        studios = studios_shown(box)
        assert len(studios) > 5  # the sample library holds enough studios to count requests

        box.drain()

        # One listing tells the user's collections from ours, one finds those the edits made:
        # not a lookup per new collection.
        assert box.plex.log.count(COLLECTIONS_ROUTE) == 2
        for studio in studios:
            shown = collection(box, studio.name)
            assert shown.summary == (studio.details or "")
            if studio.has_image:
                expected = hashlib.sha1(images.studio_image(studio.id)).hexdigest()
                assert shown.poster_sha1 == expected
        writes = box.writes()
        box.drain()
        assert box.writes() == writes  # all recorded: nothing written again


def recorded_before_its_edit(box, studio):
    """The record a first sync makes before the edit that makes the collection (ours)."""
    with box.store() as store:
        store.save_plex_collection(box.section_id, studio.name, ours=True)


def test_a_scene_whose_new_collection_plex_fails_to_list_waits_as_a_failed_scene(box):
    """The scene that made a collection finishes with the collection's settle: when Plex fails
    the listing that finds it, the scene waits for a retry with a try counted (never synced
    again at once, in a loop), and its retry gives the collection its art."""
    scene = studio_scene(box, parent_id=None)
    studio = box.library.studios[scene.studio_id]
    recorded_before_its_edit(box, studio)
    box.plex.faults.fail(500, route=r"^GET /library/sections/\{id\}/collections$")

    box.drain(scene.id)

    job = box.job(scene.id)
    assert (job.state, job.reason, job.attempts) == ("waiting", "retry", 1)
    assert job.due_at > time.time() and "500" in job.last_error
    assert box.plex.log.count(COLLECTIONS_ROUTE) <= 3  # Plex's quick re-asks, not a loop
    box.plex.faults.clear()
    with box.store() as store:
        store.enqueue([scene.id], "cli", retry_now=True)
    Worker(box.data_dir).run(until_idle=True)
    assert box.job(scene.id).state == "done"
    shown = collection(box, studio.name)
    assert shown.summary == studio.details
    assert shown.poster_sha1 == hashlib.sha1(images.studio_image(studio.id)).hexdigest()


def test_a_worker_killed_before_its_collections_got_their_art_leaves_them_to_the_next(
    box, tmp_path
):
    scene = studio_scene(box, parent_id=None)
    studio = box.library.studios[scene.studio_id]
    killed = tmp_path / "killed.py"
    killed.write_text(
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from stash2plex.engine.worker import Worker\n"
        "from stash2plex.sync.syncer import SceneSyncer\n"
        "def die(self, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "SceneSyncer.settle_collections = die  # killed between the edits and the settle\n"
        "Worker(Path(sys.argv[1])).run(until_idle=True)\n"
    )
    box.queue(scene.id)
    ran = subprocess.run([sys.executable, str(killed), str(box.data_dir)], timeout=120)
    assert ran.returncode == -signal.SIGKILL
    assert box.item(scene).title == scene.title.strip()  # the edit made the collection
    assert box.job(scene.id).state != "done"

    Worker(box.data_dir).run(until_idle=True)

    assert box.job(scene.id).state == "done"
    shown = collection(box, studio.name)
    assert shown.summary == studio.details
    assert shown.poster_sha1 == hashlib.sha1(images.studio_image(studio.id)).hexdigest()


def test_a_librarys_listing_is_read_again_only_after_its_trust_window():
    now = [1000.0]
    lookups = CollectionLookups(clock=lambda: now[0])
    reads = []

    def read():
        reads.append(now[0])
        return {"Studio Ａ": 7}  # a fullwidth letter: looked up in NFKC/case-folded form

    assert lookups.listing(1, read) == lookups.listing(1, read) == {name_key("Studio Ａ"): 7}
    now[0] += LISTING_TRUST_SECONDS - 1
    lookups.listing(1, read)
    assert reads == [1000.0]
    lookups.listing(2, read)  # another library: its own listing
    now[0] += 1
    lookups.listing(1, read)
    lookups.forget(2)
    lookups.listing(2, read)
    later = 1000.0 + LISTING_TRUST_SECONDS
    assert reads == [1000.0, later - 1, later, later]


def test_with_plex_down_the_settle_asks_nothing_and_fails_what_it_awaited(box):
    scene = studio_scene(box, parent_id=None)
    studio = box.library.studios[scene.studio_id]
    recorded_before_its_edit(box, studio)
    with box.store() as store:
        context = build_context(store)
        art = CollectionArt(store, context.stash, context.plex, context.config, CollectionLookups())
        requests = box.plex.log.count()
        assert art.ensure(box.section_id, context.stash.find_scene(scene.id)) == []
        assert art.awaited == [(box.section_id, studio.name)]

        failed = art.settle(ask_plex=False)

        assert box.plex.log.count() == requests  # a Plex that is down is not asked
        assert list(failed) == [(box.section_id, studio.name)]
        assert isinstance(failed[(box.section_id, studio.name)], TransientError)


def test_one_failed_settle_is_one_failure_for_the_breaker_however_many_scenes_it_fails(tmp_path):
    with sandbox(tmp_path, scenes=60) as box:
        studios = studios_shown(box)
        for studio in studios:
            recorded_before_its_edit(box, studio)
        box.plex.faults.fail(500, route=r"^GET /library/sections/\{id\}/collections$")

        box.drain()

        with box.store() as store:
            holds, outages = store.holds(), store.outages()
            waiting = store.waiting_counts()
        assert holds.breaker.is_closed and outages == []  # one failed listing: no outage
        assert waiting.get("retry", 0) >= len(studios) > 5  # each scene that made one retries
        assert box.plex.log.count(COLLECTIONS_ROUTE) <= 3  # with Plex's quick re-asks


def test_a_settle_that_raises_gives_its_scenes_back_instead_of_stranding_them(box, monkeypatch):
    from stash2plex.sync.syncer import SceneSyncer

    scene = studio_scene(box, parent_id=None)
    studio = box.library.studios[scene.studio_id]
    settle = SceneSyncer.settle_collections
    raised = []

    def busy_once(self, **kwargs):
        if not raised:
            raised.append(True)
            raise StoreError("the store is busy (database is locked)")
        return settle(self, **kwargs)

    monkeypatch.setattr(SceneSyncer, "settle_collections", busy_once)

    box.drain(scene.id)

    assert raised and box.job(scene.id).state == "done"  # given back, synced again
    assert collection(box, studio.name).summary == studio.details
