"""Every synced field and its semantics, end to end: the real worker, the Stash client and
plexapi's transport over HTTP against the emulators."""

from __future__ import annotations

import pytest

from stash2plex.sync.metadata import plex_date

from .sandbox import cover_sha1, sandbox

TEXT_LOCKS = {"title", "summary", "studio", "originallyAvailableAt"}


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path) as opened:
        yield opened


def described(scene) -> bool:
    return bool(
        scene.title
        and scene.details
        and scene.studio_id
        and scene.date
        and scene.performer_ids
        and len(scene.tag_ids) >= 3
        and scene.cover_version
    )


def test_first_sync_writes_every_field_locked_in_one_edit(box):
    scene = box.find(described)
    report = box.drain(scene.id)

    assert report.synced == 1
    item = box.item(scene)
    library = box.library
    assert item.title == scene.title.strip()
    assert item.summary == scene.details.strip()
    assert item.studio == library.studios[scene.studio_id].name
    assert item.originally_available_at == plex_date(scene.date)
    assert item.genres == [library.tags[t].name for t in scene.tag_ids]
    assert [a.name for a in item.actors] == [
        library.performers[p].name for p in scene.performer_ids
    ]
    assert item.collections == [library.studios[scene.studio_id].name]
    assert item.poster_sha1 == cover_sha1(scene)
    assert item.art_sha1 == cover_sha1(scene)
    assert TEXT_LOCKS | {"genre", "actor", "collection"} <= set(item.locked)
    assert item.edit_count == 1
    key = box.rating_key(scene)
    item_writes = [
        r for r in box.plex.log.writes() if f"/{key}/" in r.path or r.query.get("id") == str(key)
    ]
    assert [r.route for r in item_writes] == [
        "PUT /library/sections/{id}/all",
        "POST /library/metadata/{id}/posters",
        "POST /library/metadata/{id}/arts",
    ]
    # The rest made the studio's collection look like the studio: summary and poster, once.
    [collection] = box.plex.collections(box.section_id)
    others = [r.route for r in box.plex.log.writes() if r not in item_writes]
    assert others == ["PUT /library/sections/{id}/all", "POST /library/metadata/{id}/posters"]
    assert collection.summary and collection.poster_sha1


def test_unchanged_resync_sends_no_write_at_all(box):
    box.drain()
    writes = box.writes()
    before = len(box.plex.log.entries)

    report = box.drain()

    assert report.synced == 0 and report.unchanged > 0
    assert box.writes() == writes
    # Not even reads per item: an unchanged re-sync is decided from the store. A Sync All
    # reads Plex's libraries once (with the connection that takes: who answers, whether it
    # is claimed), whatever the number of scenes.
    asked = [entry.route for entry in box.plex.log.entries[before:]]
    assert set(asked) <= {"GET /", "GET /identity", "GET /library/sections"}, asked
    assert asked.count("GET /library/sections") == 1, asked


def test_a_removed_tag_disappears_and_an_emptied_list_is_cleared(box):
    scene = box.find(described)
    box.drain(scene.id)
    removed, kept = scene.tag_ids[0], list(scene.tag_ids[1:])
    box.stash.update_scene(scene.id, tag_ids=kept)
    box.drain(scene.id)
    names = box.item(scene).genres
    assert box.library.tags[removed].name not in names
    assert names == [box.library.tags[t].name for t in kept]

    box.stash.update_scene(scene.id, tag_ids=[], performer_ids=[])
    box.drain(scene.id)
    assert box.item(scene).genres == []
    assert box.item(scene).actors == []


def test_a_changed_cover_uploads_once(box):
    scene = box.find(described)
    box.drain(scene.id)
    box.plex.log.clear()

    box.stash.update_scene(scene.id, cover_version=scene.cover_version + 1)
    box.drain(scene.id)
    box.drain(scene.id)

    routes = box.plex.log.route_counts()
    assert routes["POST /library/metadata/{id}/posters"] == 1
    assert routes["POST /library/metadata/{id}/arts"] == 1
    assert box.item(scene).poster_sha1 == cover_sha1(box.library.scenes[scene.id])


def test_a_title_edit_does_not_re_upload_the_same_cover(box):
    scene = box.find(described)
    box.drain(scene.id)
    box.plex.log.clear()
    box.stash.update_scene(scene.id, title="Renamed")
    box.drain(scene.id)
    routes = box.plex.log.route_counts()
    assert routes["PUT /library/sections/{id}/all"] == 1
    assert routes["POST /library/metadata/{id}/posters"] == 0


def test_stash_placeholder_cover_is_never_uploaded(box):
    scene = box.find(lambda s: s.cover_version is None)
    box.drain(scene.id)
    assert box.item(scene).poster_sha1 is None
    posters = box.plex.log.entries
    key = box.rating_key(scene)
    assert not [r for r in posters if r.path == f"/library/metadata/{key}/posters"]


@pytest.mark.parametrize(
    "stash_date, expected", [("2019", "2019-01-01"), ("2019-07", "2019-07-01")]
)
def test_partial_dates_sync(box, stash_date, expected):
    scene = box.find(lambda s: True)
    box.stash.update_scene(scene.id, date=stash_date)
    box.drain(scene.id)
    assert box.item(scene).originally_available_at == expected


def test_untitled_scene_shows_its_file_name(box):
    scene = box.find(lambda s: not s.title)
    box.drain(scene.id)
    stem = scene.files[0].path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    assert box.item(scene).title == stem


def test_summary_keeps_line_breaks_and_typography(box):
    scene = box.find(lambda s: True)
    details = "“First” paragraph — with a dash…\n\n\tSecond paragraph.\x07"
    box.stash.update_scene(scene.id, details=details)
    box.drain(scene.id)
    assert box.item(scene).summary == "“First” paragraph — with a dash…\n\n\tSecond paragraph."


def test_a_two_file_scene_matches_through_its_second_file(box):
    scene = box.find(lambda s: len(s.files) == 2)
    box.plex.delete_item(box.rating_key(scene, 0))
    box.drain(scene.id)
    assert box.plex.item(box.rating_key(scene, 1)).title == (scene.title or "").strip() or (
        not scene.title
    )
    with box.store() as store:
        assert store.link(scene.id).rating_key == box.rating_key(scene, 1)


def test_duplicate_basenames_in_different_folders_do_not_cross_match(box):
    by_name: dict[str, list] = {}
    for scene in box.library.scenes.values():
        if scene.files and scene.in_plex and len(scene.files) == 1:
            by_name.setdefault(scene.files[0].path.rsplit("/", 1)[-1], []).append(scene)
    pair = next(scenes for scenes in by_name.values() if len(scenes) >= 2)
    box.drain(*(s.id for s in pair))
    with box.store() as store:
        for scene in pair:
            assert store.link(scene.id).rating_key == box.rating_key(scene)
    titles = [box.item(s).title for s in pair]
    assert len(set(titles)) == len(titles) or not all(s.title for s in pair)


def test_an_ambiguous_match_waits_listing_its_candidates(box):
    box.settings(path_map=None)  # without the mapping only the basename can match
    scene = box.find(lambda s: len(s.files) == 1)
    name = scene.files[0].path.rsplit("/", 1)[-1]
    box.plex.delete_item(box.rating_key(scene))
    first = box.plex.add_item(box.section_id, f"/elsewhere/a/{name}", sizes=scene.files[0].size)
    second = box.plex.add_item(box.section_id, f"/elsewhere/b/{name}", sizes=scene.files[0].size)

    box.drain(scene.id)

    job = box.job(scene.id)
    assert (job.state, job.reason) == ("waiting", "ambiguous")
    assert sorted(c["rating_key"] for c in job.detail["candidates"]) == sorted([first, second])
    assert box.plex.item(first).edit_count == 0 and box.plex.item(second).edit_count == 0


def test_a_deleted_plex_item_is_detected_and_rematched(box):
    scene = box.find(described)
    box.drain(scene.id)
    old_key = box.rating_key(scene)
    path = box.library.plex_path(scene.files[0].path)
    box.plex.delete_item(old_key)
    new_key = box.plex.add_item(box.section_id, path, sizes=scene.files[0].size)

    box.stash.update_scene(scene.id, title="After the re-add")
    box.drain(scene.id)

    assert box.plex.item(new_key).title == "After the re-add"
    with box.store() as store:
        assert store.link(scene.id).rating_key == new_key
