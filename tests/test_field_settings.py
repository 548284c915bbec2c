"""The field settings end to end: each toggle, filter and option changes what reaches Plex."""

from __future__ import annotations

import time

import pytest
from plexapi.server import PlexServer

from stash2plex.engine.worker import Worker

from .sandbox import PLEX_TOKEN, SteppedClock, sandbox


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=40, seed=13) as opened:
        yield opened


def rich_scene(box):
    return box.find(
        lambda s: bool(
            s.title
            and s.details
            and s.studio_id
            and s.date
            and s.performer_ids
            and len(s.tag_ids) >= 2
            and s.cover_version
        )
    )


FIELD_OF = {
    "skip_title": lambda item: item.title,
    "skip_summary": lambda item: item.summary,
    "skip_date": lambda item: item.originally_available_at,
    "skip_studio": lambda item: item.studio,
    "skip_performers": lambda item: [a.name for a in item.actors],
    "skip_tags": lambda item: item.genres,
    "skip_collections": lambda item: item.collections,
    "skip_poster": lambda item: item.poster_sha1,
    "skip_art": lambda item: item.art_sha1,
}


@pytest.mark.parametrize("toggle", sorted(FIELD_OF))
def test_each_skip_setting_leaves_its_field_alone(box, toggle):
    scene = rich_scene(box)
    before = box.item(scene)
    box.settings(**{toggle: True})
    box.drain(scene.id)
    after = box.item(scene)
    for name, read in FIELD_OF.items():
        if name == toggle:
            assert read(after) == read(before), f"{toggle} still wrote its field"
        else:
            assert read(after) != read(before), f"{name} did not sync while {toggle} was set"


def test_preserve_plex_edits_keeps_a_field_edited_in_plex_and_reports_it(box):
    box.settings(preserve_plex_edits=True)
    scene = rich_scene(box)
    box.drain(scene.id)
    PlexServer(box.plex.url, PLEX_TOKEN).fetchItem(box.rating_key(scene)).editTitle("Mine")
    box.stash.update_scene(scene.id, title="From Stash", details="New details")
    box.drain(scene.id)
    item = box.item(scene)
    assert (item.title, item.summary) == ("Mine", "New details")
    with box.store() as store:
        events = [e["message"] for e in store.recent_events(20) if e["kind"] == "preserved"]
    assert any("title" in message for message in events)

    box.settings(preserve_plex_edits=None)  # off again: Stash wins
    box.stash.update_scene(scene.id, title="Stash wins")
    box.drain(scene.id)
    assert box.item(scene).title == "Stash wins"


def test_collections_keep_the_users_and_follow_a_studio_change(box):
    scene = rich_scene(box)
    box.drain(scene.id)
    PlexServer(box.plex.url, PLEX_TOKEN).fetchItem(box.rating_key(scene)).addCollection("Mine")
    old_studio = box.library.studios[scene.studio_id].name
    other = next(s for s in box.library.studios.values() if s.name != old_studio)
    box.stash.update_scene(scene.id, studio_id=other.id)
    box.drain(scene.id)
    assert sorted(box.item(scene).collections) == sorted(["Mine", other.name])


def test_parent_studio_and_group_collections_are_optional(box):
    scene = box.find(
        lambda s: bool(s.studio_id and box.library.studios[s.studio_id].parent_id and s.group_ids)
    )
    box.settings(collection_parent_studio=True, collection_groups=True)
    box.drain(scene.id)
    studio = box.library.studios[scene.studio_id]
    expected = {
        studio.name,
        box.library.studios[studio.parent_id].name,
        *(box.library.groups[g].name for g in scene.group_ids),
    }
    assert set(box.item(scene).collections) == expected


def test_rating_syncs_only_when_asked(box):
    scene = rich_scene(box)
    box.stash.update_scene(scene.id, rating100=73)
    box.drain(scene.id)
    assert box.plex.log.count("PUT /:/rate") == 0
    box.settings(sync_rating=True)
    box.drain(scene.id)
    assert box.item(scene).user_rating == 7.3
    box.stash.update_scene(scene.id, rating100=None)
    box.drain(scene.id)
    assert box.item(scene).user_rating is None


def test_performer_photos_only_when_asked_and_never_the_placeholder(box):
    scene = box.find(lambda s: len(s.performer_ids) >= 1)
    box.drain(scene.id)
    assert all(not a.thumb for a in box.item(scene).actors)
    box.settings(sync_performer_photos=True)
    box.drain(scene.id)
    for actor, pid in zip(box.item(scene).actors, scene.performer_ids, strict=True):
        performer = box.library.performers[pid]
        if performer.has_image:
            assert f"/performer/{pid}/image" in actor.thumb
        else:
            assert actor.thumb in ("", None)


def test_tag_filters_cover_child_tags_and_exclusion_wins(box):
    library = box.library
    scene = box.find(lambda s: any(library.tags[t].parent_ids for t in s.tag_ids))
    child = next(library.tags[t] for t in scene.tag_ids if library.tags[t].parent_ids)
    parent = library.tags[child.parent_ids[0]]
    box.settings(tag_include=parent.name.upper())
    box.drain(scene.id)
    genres = box.item(scene).genres
    assert child.name in genres
    assert all(
        name == parent.name
        or any(
            library.tags[t].name == name and parent.id in _ancestors(library, t)
            for t in scene.tag_ids
        )
        for name in genres
    )
    box.settings(tag_exclude=parent.name)
    box.drain(scene.id)
    assert child.name not in box.item(scene).genres


def _ancestors(library, tag_id, seen=None):
    seen = set() if seen is None else seen
    for parent in library.tags[tag_id].parent_ids:
        if parent not in seen:
            seen.add(parent)
            _ancestors(library, parent, seen)
    return seen


def test_skip_not_found_drops_instead_of_waiting(box):
    scene = box.find(lambda s: len(s.files) == 1)
    box.plex.delete_item(box.rating_key(scene))
    box.drain(scene.id)
    job = box.job(scene.id)
    assert (job.state, job.reason) == ("waiting", "not_in_plex")
    assert box.library.plex_path(scene.files[0].path) in job.last_error
    box.settings(skip_not_found=True)
    box.queue(scene.id)
    Worker(box.data_dir).run(until_idle=True)
    assert box.job(scene.id).state == "done"


@pytest.mark.parametrize("trigger_scan", [True, False])
def test_a_new_scene_waits_for_plex_then_syncs_by_itself(box, trigger_scan):
    clock = SteppedClock()
    box.plex.scan_delay = 0.2
    scene = box.find(lambda s: len(s.files) == 1 and bool(s.title))
    plex_path = box.library.plex_path(scene.files[0].path)
    box.plex.delete_item(box.rating_key(scene))
    box.plex.add_scannable_file(box.section_id, plex_path, size=scene.files[0].size)
    box.settings(trigger_plex_scan=trigger_scan or None)
    box.queue(scene.id)

    Worker(box.data_dir, clock=clock).run(until_idle=True)
    job = box.job(scene.id)
    assert job.reason == "not_in_plex"
    folder = plex_path.rsplit("/", 1)[0]
    time.sleep(0.3)  # the emulated scan takes 0.2 s
    box.plex.run_due_scans()
    if trigger_scan:
        assert box.plex.find_by_file(plex_path) is not None
    else:
        assert box.plex.find_by_file(plex_path) is None  # nobody asked Plex to scan
        PlexServer(box.plex.url, PLEX_TOKEN).library.sectionByID(box.section_id).update(folder)
        time.sleep(0.3)
        box.plex.run_due_scans()
    clock.offset = job.due_at - time.time() + 1  # the re-check timer fires
    report = Worker(box.data_dir, clock=clock).run(until_idle=True)

    assert report.synced == 1
    assert box.plex.item(box.plex.find_by_file(plex_path)).title == scene.title.strip()
    scans = [r for r in box.plex.log.entries if r.route.endswith("/refresh")]
    assert any(r.query.get("path") == folder for r in scans)


def test_renames_resync_every_scene_that_shows_them(box):
    box.drain()
    library = box.library
    performer_id = next(
        iter(p for s in library.scenes.values() if s.files and s.in_plex for p in s.performer_ids)
    )
    showing = [
        s
        for s in library.scenes.values()
        if s.files and s.in_plex and performer_id in s.performer_ids
    ]
    box.stash.rename("performer", performer_id, "Renamed Performer")
    writes = box.writes()
    with box.store() as store:
        store.record_entity_change("performer", performer_id)
    Worker(box.data_dir).run(until_idle=True)
    for scene in showing:
        assert "Renamed Performer" in [a.name for a in box.item(scene).actors]
    # One edit per Plex item: a scene whose two files Plex holds apart has two.
    assert box.writes() - writes == sum(len(scene.files) for scene in showing)
