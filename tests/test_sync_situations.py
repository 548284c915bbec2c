"""The situations users meet, at the syncer, with an injected clock where time matters: a
renamed file nobody linked, a conflict a merge settles, a scene losing a file, and what
Preview and Diagnose say about them."""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest

from stash2plex import errors
from stash2plex.engine.context import build_context
from stash2plex.operations.diagnose import diagnose
from stash2plex.operations.queue import preview
from stash2plex.sync.syncer import FULL_RELIST_SECONDS, SceneSyncer

from .sandbox import freshly_scanned, sandbox


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=40, seed=11) as opened:
        yield opened


def single(box, count: int = 1):
    found = [
        s
        for s in box.library.scenes.values()
        if len(s.files) == 1 and s.in_plex and s.title and s.performer_ids
    ]
    return found[:count]


def syncer_for(box, store, clock):
    context = build_context(store)
    return SceneSyncer(store, context.stash, context.plex, context.config, clock)


def test_an_unlinked_renamed_item_is_found_by_a_full_listing_at_most_every_ten_minutes(box):
    first, scene = single(box, 2)
    old = scene.files[0].path
    new = old.replace(".", " (renamed).", 1) if "." in old else old + " renamed"
    box.stash.move_file(old, new)  # Stash saw the rename; Plex has not scanned it yet
    clock = Clock()
    with box.store() as store:
        syncer = syncer_for(box, store, clock)
        syncer.sync(first.id)  # builds the index
        with pytest.raises(errors.NotInPlexError):
            syncer.sync(scene.id)
        key = box.plex.move_file(box.library.plex_path(old), box.library.plex_path(new))
        listings = box.plex.log.count("GET /library/sections/{id}/all")
        clock.now += FULL_RELIST_SECONDS / 2
        with pytest.raises(errors.NotInPlexError):
            syncer.sync(scene.id)  # an incremental refresh sees no new item
        assert box.plex.log.count("GET /library/sections/{id}/all") == listings + 1
        clock.now += FULL_RELIST_SECONDS / 2
        outcome = syncer.sync(scene.id)
    assert (outcome.status, outcome.rating_key) == ("synced", key)
    assert box.plex.item(key).title == scene.title.strip()


def test_a_conflict_is_settled_by_merging_the_scenes_in_stash(box):
    first, second = single(box, 2)
    for scene in (first, second):
        box.plex.delete_item(box.rating_key(scene))
    stacked = box.plex.add_item(
        box.section_id,
        [box.library.plex_path(first.files[0].path), box.library.plex_path(second.files[0].path)],
        sizes=[first.files[0].size, second.files[0].size],
        stacked=True,
    )
    clock = Clock()
    with box.store() as store:
        syncer = syncer_for(box, store, clock)
        for scene in (first, second):
            with pytest.raises(errors.ConflictError) as raised:
                syncer.sync(scene.id)
            assert raised.value.detail["scene_ids"] == sorted([first.id, second.id])
            assert raised.value.detail["rating_key"] == stacked
        assert box.plex.item(stacked).edit_count == 0
        box.stash.merge_scenes(first.id, [second.id])
        assert syncer.sync(first.id).status == "synced"
        assert syncer.sync(second.id).status == "deleted"
        assert [link.rating_key for link in store.links(first.id)] == [stacked]
    assert box.plex.item(stacked).title == first.title.strip()


def test_a_scene_that_loses_a_file_drops_that_items_link(box):
    scene = next(s for s in box.library.scenes.values() if len(s.files) == 2 and s.in_plex)
    clock = Clock()
    with box.store() as store:
        syncer = syncer_for(box, store, clock)
        outcome = syncer.sync(scene.id)
        assert outcome.rating_keys == (box.rating_key(scene, 0), box.rating_key(scene, 1))
        for index in (0, 1):
            assert (
                box.plex.item(box.rating_key(scene, index)).title == (scene.title or "").strip()
                or not scene.title
            )
        box.stash.update_scene(scene.id, files=scene.files[:1])
        syncer.sync(scene.id)
        assert [link.rating_key for link in store.links(scene.id)] == [box.rating_key(scene)]


def test_a_deleted_second_item_is_matched_afresh_without_losing_the_first(box):
    scene = next(s for s in box.library.scenes.values() if len(s.files) == 2 and s.in_plex)
    with box.store() as store:
        syncer = syncer_for(box, store, Clock())
        syncer.sync(scene.id)
        box.plex.delete_item(box.rating_key(scene, 1))
        box.stash.update_scene(scene.id, title="Again")
        outcome = syncer.sync(scene.id)  # the 404 drops that item and re-lists
        assert outcome.rating_keys == (box.rating_key(scene),)
    assert box.plex.item(box.rating_key(scene)).title == "Again"


def test_preview_says_a_fresh_scene_is_left_alone_and_diagnose_finds_conflicts_unsynced(box):
    fresh, first, second = single(box, 3)
    box.stash.update_scene(
        fresh.id, title=None, details=None, date=None, studio_id=None, performer_ids=[], tag_ids=[]
    )
    for scene in (first, second):
        box.plex.delete_item(box.rating_key(scene))
    box.plex.add_item(
        box.section_id,
        [box.library.plex_path(first.files[0].path), box.library.plex_path(second.files[0].path)],
        sizes=[first.files[0].size, second.files[0].size],
        stacked=True,
    )
    with box.store() as store:
        context = build_context(store)
        [shown] = preview(context, scene_id=fresh.id)
        assert shown.status == "left alone" and "sync_empty_scenes" in shown.note
        [shown] = preview(context, scene_id=first.id)
        assert shown.status == "conflict" and str(second.id) in shown.note
        checks = {check.name: check for check in diagnose(store, box.stash.server_connection())}
    assert not checks["conflicts"].ok
    assert f"{min(first.id, second.id)}, {max(first.id, second.id)}" in checks["conflicts"].detail


def test_diagnose_suggests_no_rule_when_only_the_unicode_form_differs(box):
    scene = next(s for s in single(box, 10) if s.id <= 25)
    nfc = "/data/stash/Ünïcode Földer/Café – Ωmega.mp4"
    box.plex.delete_item(box.rating_key(scene))
    box.stash.update_scene(scene.id, files=[dataclasses.replace(scene.files[0], path=nfc)])
    nfd = unicodedata.normalize("NFD", box.library.plex_path(nfc))
    box.plex.add_item(box.section_id, nfd, sizes=scene.files[0].size)
    with box.store() as store:
        checks = {check.name: check for check in diagnose(store, box.stash.server_connection())}
    assert checks["path mapping"].ok, checks["path mapping"]
    assert "path_map to" not in checks["path mapping"].fix


def test_a_scan_request_on_a_windows_plex_names_the_folder_in_its_spelling(tmp_path):
    from stash2plex.settings.config import build_config
    from stash2plex.store.db import Store
    from stash2plex.sync.syncer import PlexIndex

    class RecordingPlex:
        def __init__(self):
            self.scans = []

        def scan_path(self, section_id, path):
            self.scans.append((section_id, path))

    config = build_config({"plex_url": "http://plex:32400", "plex_token": "t"})
    plex = RecordingPlex()
    with Store.open(tmp_path) as store:
        store.put_value(
            "plex_sections",
            {
                "wanted": [],
                "url": config.plex_url,
                "sections": [
                    {"id": 1, "title": "Windows", "locations": ["m:/"]},
                    {"id": 2, "title": "Elsewhere", "locations": ["D:\\Other"]},
                ],
            },
        )
        scanned = PlexIndex(store, plex, config).request_scan(["M:\\Studio A\\x.mp4"])
    assert plex.scans == [(1, "M:\\Studio A")]
    assert scanned == ["Windows: M:\\Studio A"]


def twins(box, a, b, name="clip01.mp4", size=777_777):
    """a's and b's only files become same-named, same-sized files in two camera folders;
    neither is in Plex. Returns their Stash files."""
    files = []
    for scene, folder in ((a, "Cam A"), (b, "Cam B")):
        box.plex.delete_item(box.rating_key(scene))
        file = dataclasses.replace(scene.files[0], path=f"/data/stash/{folder}/{name}", size=size)
        box.stash.update_scene(scene.id, files=[file])
        files.append(file)
    return files


def test_a_same_named_file_waits_for_its_own_item_and_then_syncs_onto_it(box):
    a, b = single(box, 2)
    file_a, file_b = twins(box, a, b)
    key_a = box.plex.add_item(box.section_id, box.library.plex_path(file_a.path), sizes=777_777)
    clock = Clock()
    with box.store() as store:
        syncer = syncer_for(box, store, clock)
        with pytest.raises(errors.NotInPlexError):
            syncer.sync(b.id)  # A's clip01.mp4 is exactly A's: never B's by name and size
        assert syncer.sync(a.id).rating_key == key_a
        key_b = box.plex.add_item(box.section_id, box.library.plex_path(file_b.path), sizes=777_777)
        clock.now += 60  # the index may be refreshed again
        assert syncer.sync(b.id).rating_key == key_b
        assert syncer.sync(a.id).status == "unchanged"  # no conflict either way
        assert [link.rating_key for link in store.links(b.id)] == [key_b]
    assert box.plex.item(key_a).title == a.title.strip()
    assert box.plex.item(key_b).title == b.title.strip()


def test_a_match_by_name_gives_way_to_the_exact_path_once_plex_has_it(box):
    moved, waiting_one, missing = single(box, 3)
    items = {}
    for scene, name in ((moved, "clip07.mp4"), (waiting_one, "clip08.mp4")):
        box.plex.delete_item(box.rating_key(scene))
        file = dataclasses.replace(scene.files[0], path=f"/data/stash/Cam C/{name}", size=555)
        box.stash.update_scene(scene.id, files=[file])
        # Only an old copy under another folder is in Plex: no Stash scene's file.
        old = box.plex.add_item(box.section_id, f"/plex/media/Old Copies/{name}", sizes=555)
        items[scene.id] = (old, box.library.plex_path(file.path))
    box.plex.delete_item(box.rating_key(missing))
    clock = Clock()
    with box.store() as store:
        syncer = syncer_for(box, store, clock)
        for scene in (moved, waiting_one):
            assert syncer.sync(scene.id).rating_key == items[scene.id][0]  # by name and size
        exact = {moved.id: box.plex.add_item(box.section_id, items[moved.id][1], sizes=555)}
        clock.now += 60
        # Saved again: a match by name stands only after the index was brought up to date.
        assert syncer.sync(moved.id).rating_keys == (exact[moved.id],)
        # Not saved: the index refresh that another scene's miss causes queues it again.
        exact[waiting_one.id] = box.plex.add_item(
            box.section_id, items[waiting_one.id][1], sizes=555
        )
        assert store.job(waiting_one.id) is None
        clock.now += 60
        with pytest.raises(errors.NotInPlexError):
            syncer.sync(missing.id)
        job = store.job(waiting_one.id)
        assert (job.state, job.source) == ("pending", "a Plex file of the same name appeared")
        assert syncer.sync(waiting_one.id).rating_keys == (exact[waiting_one.id],)
        for scene in (moved, waiting_one):
            assert [link.rating_key for link in store.links(scene.id)] == [exact[scene.id]]
            assert box.plex.item(exact[scene.id]).title == scene.title.strip()


def test_a_conflict_names_the_file_each_scene_holds(box):
    first, second = single(box, 2)
    paths = []
    for scene, part in ((first, 1), (second, 2)):
        box.plex.delete_item(box.rating_key(scene))
        path = f"/data/stash/Features/Night Ferry - part{part}.mp4"
        box.stash.update_scene(scene.id, files=[dataclasses.replace(scene.files[0], path=path)])
        paths.append(box.library.plex_path(path))
    stacked = box.plex.add_item(
        box.section_id, paths, sizes=[first.files[0].size, second.files[0].size], stacked=True
    )
    with box.store() as store, pytest.raises(errors.ConflictError) as raised:
        syncer_for(box, store, Clock()).sync(first.id)
    message = raised.value.message
    assert f"scene {first.id}: {paths[0]}" in message
    assert f"scene {second.id}: {paths[1]}" in message
    assert raised.value.detail["files"] == {str(first.id): [paths[0]], str(second.id): [paths[1]]}
    assert box.plex.item(stacked).edit_count == 0


def test_a_same_named_file_elsewhere_is_no_conflict_and_its_stale_link_goes(box):
    """A link an older version made by name onto another scene's exact file is dropped when
    that scene syncs; a same-named file elsewhere makes no conflict, in Diagnose either."""
    a, b, stacked_scene = single(box, 3)
    file_a, _ = twins(box, a, b)
    key_a = box.plex.add_item(box.section_id, box.library.plex_path(file_a.path), sizes=777_777)
    # A scene of two parts Plex stacked, one of them named like b's file, of its size.
    box.plex.delete_item(box.rating_key(stacked_scene))
    parts = [
        dataclasses.replace(stacked_scene.files[0], id=9001, path="/data/stash/Two/clip01.mp4"),
        dataclasses.replace(stacked_scene.files[0], id=9002, path="/data/stash/Two/clip02.mp4"),
    ]
    parts[0].size = 777_777
    box.stash.update_scene(stacked_scene.id, files=parts)
    stacked = box.plex.add_item(
        box.section_id,
        [box.library.plex_path(p.path) for p in parts],
        sizes=[p.size for p in parts],
        stacked=True,
    )
    with box.store() as store:
        syncer = syncer_for(box, store, Clock())
        syncer.sync(a.id)
        store.save_link(b.id, key_a, box.section_id, box.library.plex_path(file_a.path), {})
        box.stash.update_scene(a.id, title="Camera A, take 2")
        assert syncer.sync(a.id).status == "synced"
        assert store.links(b.id) == []
        assert syncer.sync(stacked_scene.id).rating_key == stacked
        checks = {check.name: check for check in diagnose(store, box.stash.server_connection())}
    assert checks["conflicts"].ok, checks["conflicts"]
    assert box.plex.item(key_a).title == "Camera A, take 2"


def test_the_oracle_holds_to_the_documented_rules(box):
    """sandbox/verify.py after real drains: parent-studio collections, a tag filter typed in
    another Unicode form, and a scene that lost all its metadata after a push (pushed on:
    the file name as title, every field emptied and locked) are right, not reported."""
    from stash2plex.sandbox.library import Tag
    from stash2plex.sandbox.verify import SYNCED, expected_items, library_problems

    library = box.library
    child = next(s for s in library.studios.values() if s.parent_id)
    tag = Tag(max(library.tags) + 1, unicodedata.normalize("NFD", "Café Scène"))
    library.tags[tag.id] = tag
    described, cleared = single(box, 2)
    box.stash.update_scene(described.id, studio_id=child.id, tag_ids=[*described.tag_ids, tag.id])
    settings = {
        "collection_parent_studio": True,
        "tag_exclude": unicodedata.normalize("NFC", "café scène"),
    }
    box.settings(**settings)
    box.drain()
    assert library_problems(box.plex, library, settings) == {}
    parent = library.studios[child.parent_id].name
    assert parent in box.item(described).collections
    assert tag.name not in box.item(described).genres

    pushed = set(library.scenes)
    box.stash.update_scene(cleared.id, **freshly_scanned())
    box.drain(cleared.id)
    expected = expected_items(library, settings, pushed)[cleared.files[0].path]
    assert expected.state == SYNCED
    assert box.item(cleared).title == expected.fields["title"]
    assert library_problems(box.plex, library, settings, pushed=pushed) == {}
