"""Plex shows exactly what Stash says, in the situations users meet: each one end to end.

Every test sets the situation up in the emulated Stash and Plex, then goes the user's way:
Stash fires the hook (or the user runs a task), the plugin runs as Stash runs it, a detached
worker (or the task) syncs, and the emulated Plex is checked field by field.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from plexapi.server import PlexServer

from stash2plex.cli import main as cli_main
from stash2plex.engine.context import build_context
from stash2plex.pull.decisions import epoch
from stash2plex.sandbox.library import Studio, Tag, generate_library
from stash2plex.sandbox.plex_model import ActorState, AgentMetadata
from stash2plex.sandbox.session import SECTION_TITLE, running_sandbox
from stash2plex.store.db import Store
from stash2plex.sync.metadata import plex_date
from stash2plex.sync.syncer import PlexIndex

from .conftest import PLEX_TOKEN, wait_until
from .sandbox import freshly_scanned

AGENT = AgentMetadata(
    title="The Long Harbour",
    summary="A ferry captain's last winter on the fjord.",
    studio="Gaumont",
    originally_available_at="1998-04-02",
    tagline="Some journeys never end.",
    genres=("Drama", "Mystery", "Romance"),
    actors=tuple(
        ActorState(name, "Herself", None)
        for name in ("Jane Marlow", "Tomasz Kral", "Amélie Roux", "Kenji Mori")
    ),
    directors=("Olaf Berg",),
    guid="plex://movie/5d7768265af944001f1f6977",
)


@pytest.fixture
def library():
    return generate_library(60, seed=3)


@pytest.fixture
def servers(library):
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, section_id):
        yield plex, stash, section_id
        assert plex.log.unknown() == [], "the Plex emulator saw requests to unknown routes"


# ---------------------------------------------------------------------- helpers
def described(library, count: int = 1, exclude: set[int] | None = None):
    """Single-file scenes in Plex with every field filled and a distinct title."""
    found = []
    for scene in library.scenes.values():
        if (
            len(scene.files) == 1
            and scene.in_plex
            and scene.title
            and scene.details
            and scene.studio_id
            and scene.date
            and scene.performer_ids
            and len(scene.tag_ids) >= 2
            and scene.id not in (exclude or set())
            and scene.title not in {s.title for s in found}
        ):
            found.append(scene)
            if len(found) == count:
                return found
    raise AssertionError("the generated library has too few fully described scenes")


def key_of(plex, library, scene, file_index: int = 0) -> int:
    key = plex.find_by_file(library.plex_path(scene.files[file_index].path))
    assert key is not None, f"scene {scene.id} is not in Plex"
    return key


def agent_fill(plex, library, scene, agent: AgentMetadata) -> int:
    """The scene's Plex item as a metadata agent filled it at the scan (same file)."""
    old = key_of(plex, library, scene)
    section = plex.item(old).section_id
    plex.delete_item(old)
    return plex.add_item(
        section, library.plex_path(scene.files[0].path), sizes=scene.files[0].size, agent=agent
    )


def job(plugin_dir: Path, scene_id: int):
    with Store.open(plugin_dir / "data") as store:
        return store.job(scene_id)


def done(plugin_dir: Path, *scene_ids: int) -> bool:
    """Every one of the scenes' jobs is done (the worker may idle on, as shipped)."""
    jobs = [job(plugin_dir, scene_id) for scene_id in scene_ids]
    return all(j is not None and j.state == "done" for j in jobs)


def change_settings(stash, **values) -> None:
    """Save plugin settings in Stash (None removes a key), as the user does in its UI; a
    running worker re-reads them when the next hook nudges it."""
    for name, value in values.items():
        if value is None:
            stash.plugin_settings.pop(name, None)
        else:
            stash.plugin_settings[name] = value


def waiting(plugin_dir: Path, reason: str, *scene_ids: int) -> bool:
    jobs = [job(plugin_dir, scene_id) for scene_id in scene_ids]
    return all(j is not None and (j.state, j.reason) == ("waiting", reason) for j in jobs)


def hook_and_wait(runner, connection, plugin_dir, trigger: str, *scene_ids: int) -> None:
    for scene_id in scene_ids:
        run = runner.run_hook(trigger, scene_id, connection)
        assert run.returncode == 0 and run.error is None, run.stderr
    wait_until(lambda: done(plugin_dir, *scene_ids), message=f"scenes {scene_ids} to sync")


def names(library, pool: str, ids) -> list[str]:
    return [getattr(library, pool)[i].name for i in ids]


# ---------------------------------------------------------------------- 1
# Every field a sync writes, an emptied one too (issue 9's "never lock what we did not fill" is
# about a scene with no metadata of its own, which is not written at all; see test 9).
SYNCED_LOCKS = {
    "title",
    "summary",
    "studio",
    "originallyAvailableAt",
    "genre",
    "actor",
    "collection",
}


def refresh_in_plex(plex, rating_key: int) -> None:
    """What Plex Web's "Refresh Metadata" sends (`PUT /library/metadata/{key}/refresh`)."""
    PlexServer(plex.url, PLEX_TOKEN).fetchItem(rating_key).refresh()


def test_01_an_empty_list_in_stash_clears_what_an_agent_put_in_plex_for_good(
    library, plex, stash, runner, connection, plugin_dir
):
    no_one, no_performers = described(library, 2)
    stash.update_scene(no_one.id, performer_ids=[], tag_ids=[], studio_id=None, details=None)
    stash.update_scene(no_performers.id, performer_ids=[], date=None)
    # Four actors: more than a listing shows, so the item must be read to name them all.
    four = agent_fill(plex, library, no_one, AGENT)
    # Two actors: the listing shows them all, no read needed.
    two = agent_fill(
        plex, library, no_performers, dataclasses.replace(AGENT, actors=AGENT.actors[:2])
    )

    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", no_one.id, no_performers.id)

    def check() -> None:
        item = plex.item(four)
        assert (item.actors, item.genres, item.studio, item.summary) == ([], [], "", "")
        assert item.title == no_one.title.strip()
        assert item.originally_available_at == plex_date(no_one.date)
        item = plex.item(two)
        assert (item.actors, item.originally_available_at) == ([], None)
        assert item.genres == names(library, "tags", no_performers.tag_ids)
        assert item.summary == no_performers.details.strip()
        for key in (four, two):
            # Emptied is what Stash says: locked like a filled field, so an agent cannot refill.
            assert plex.item(key).locked >= SYNCED_LOCKS
        assert plex.item(four).tagline == AGENT.tagline  # not ours: never written nor locked

    check()
    for key in (four, two):
        refresh_in_plex(plex, key)  # the agent runs again; only unlocked fields are its own
    check()
    edits = [plex.item(key).edit_count for key in (four, two)]
    run = runner.run_task("Sync All Scenes", connection)
    assert run.returncode == 0 and run.error is None, run.stderr
    # Nothing came back, so nothing needs writing.
    assert [plex.item(key).edit_count for key in (four, two)] == edits
    check()


# ---------------------------------------------------------------------- 2
def test_02_deleting_a_performer_tag_or_studio_in_stash_updates_plex(
    library, plex, stash, runner, connection, plugin_dir
):
    run = runner.run_task("Sync All Scenes", connection)
    assert run.returncode == 0 and run.error is None, run.stderr
    [scene] = described(library)
    performer, tag, studio = scene.performer_ids[0], scene.tag_ids[0], scene.studio_id
    performer_name = library.performers[performer].name
    tag_name = library.tags[tag].name
    studio_name = library.studios[studio].name
    showing = [
        s
        for s in library.scenes.values()
        if s.files and s.in_plex and (performer in s.performer_ids or s.studio_id == studio)
    ]
    assert performer_name in [a.name for a in plex.item(key_of(plex, library, scene)).actors]

    for kind, entity_id, trigger in (
        ("performer", performer, "Performer.Destroy.Post"),
        ("tag", tag, "Tag.Destroy.Post"),
        ("studio", studio, "Studio.Destroy.Post"),
    ):
        stash.delete_entity(kind, entity_id)  # Stash itself can no longer say who showed it
        run = runner.run_hook(trigger, entity_id, connection, input={"id": str(entity_id)})
        assert run.returncode == 0 and run.error is None, run.stderr
        assert "deleted" in run.output

    def resynced() -> bool:
        # The worker expands a deletion into jobs (in one transaction) before syncing them.
        with Store.open(plugin_dir / "data") as store:
            expanded = store.entity_deletions() == []
        return expanded and done(plugin_dir, *(s.id for s in showing))

    wait_until(resynced, message="the re-sync")
    for other in showing:
        for index in range(len(other.files)):
            item = plex.item(key_of(plex, library, other, index))
            assert performer_name not in [a.name for a in item.actors]
            assert item.studio != studio_name
            assert studio_name not in item.collections
    item = plex.item(key_of(plex, library, scene))
    assert tag_name not in item.genres
    assert item.genres == names(library, "tags", scene.tag_ids)
    assert (item.studio, item.collections) == ("", [])
    assert {"studio", "collection"} <= item.locked  # emptied for good: a refresh keeps it so


# ---------------------------------------------------------------------- 3
def test_03_after_a_merge_every_plex_item_shows_the_kept_scene(
    library, plex, stash, runner, connection, plugin_dir
):
    kept, merged = described(library, 2)
    kept_key, merged_key = key_of(plex, library, kept), key_of(plex, library, merged)
    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", kept.id, merged.id)
    assert plex.item(merged_key).title == merged.title.strip()
    with Store.open(plugin_dir / "data") as store:  # a listing that shows the pushed collections
        context = build_context(store)
        PlexIndex(store, context.plex, context.config).refresh(force=True, full=True)

    stash.merge_scenes(kept.id, [merged.id])  # Stash fires no hook for a merge
    run = runner.run_task("Sync All Scenes", connection)

    assert run.returncode == 0 and run.error is None, run.stderr
    for key in (kept_key, merged_key):
        item = plex.item(key)
        assert item.title == kept.title.strip()
        assert item.studio == library.studios[kept.studio_id].name
        assert item.originally_available_at == plex_date(kept.date)
        assert [a.name for a in item.actors] == names(library, "performers", kept.performer_ids)
        assert item.genres == names(library, "tags", kept.tag_ids)
        assert library.studios[merged.studio_id].name not in item.collections or (
            merged.studio_id == kept.studio_id
        )
    with Store.open(plugin_dir / "data") as store:
        assert store.links(merged.id) == []  # the merged-away scene's link is dropped
        assert [link.rating_key for link in store.links(kept.id)] == [kept_key, merged_key]


# ---------------------------------------------------------------------- 4
def test_04_two_scenes_plex_stacked_into_one_item_wait_as_a_conflict(
    library, plex, stash, runner, connection, plugin_dir, section_id
):
    first, second = described(library, 2)
    folder = "/data/stash/Features/Night Ferry"
    for scene, part in ((first, 1), (second, 2)):
        plex.delete_item(key_of(plex, library, scene))
        path = f"{folder}/Night Ferry - part{part}.mp4"
        stash.update_scene(scene.id, files=[dataclasses.replace(scene.files[0], path=path)])
    stacked = plex.add_item(
        section_id,
        [library.plex_path(first.files[0].path), library.plex_path(second.files[0].path)],
        sizes=[first.files[0].size, second.files[0].size],
        stacked=True,
        title="Night Ferry",
    )

    for scene in (first, second):
        runner.run_hook("Scene.Update.Post", scene.id, connection)
    wait_until(lambda: waiting(plugin_dir, "conflict", first.id, second.id), message="both to wait")

    item = plex.item(stacked)
    assert (item.edit_count, item.locked, item.title) == (0, frozenset(), "Night Ferry")
    for scene in (first, second):
        conflict = job(plugin_dir, scene.id)
        assert conflict.last_error_class == "conflict"
        assert conflict.detail["scene_ids"] == sorted([first.id, second.id])
    status = runner.run_task("View Queue Status", connection)
    assert status.output["waiting"] == {"conflict": 2}
    preview = runner.run_task("Preview Sync", connection, args={"scene_id": first.id})
    [shown] = preview.output["scenes"]
    assert shown["status"] == "conflict"
    assert str(first.id) in shown["note"] and str(second.id) in shown["note"]
    diagnose = runner.run_task("Diagnose", connection)
    [check] = [c for c in diagnose.output["checks"] if c["name"] == "conflicts"]
    assert not check["ok"]
    assert f"{min(first.id, second.id)}, {max(first.id, second.id)}" in check["detail"]
    assert plex.item(stacked).edit_count == 0


# ---------------------------------------------------------------------- 5
def test_05_a_renamed_file_that_keeps_its_plex_item_is_found_again(
    library, plex, stash, runner, connection, plugin_dir
):
    [scene] = described(library)
    key = key_of(plex, library, scene)
    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", scene.id)
    old = scene.files[0].path
    new = posixpath.join(posixpath.dirname(old), "Renamed " + posixpath.basename(old))

    stash.move_file(old, new)
    assert plex.move_file(library.plex_path(old), library.plex_path(new)) == key
    stash.update_scene(scene.id, title="After the rename")
    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", scene.id)

    assert plex.item(key).title == "After the rename"
    with Store.open(plugin_dir / "data") as store:
        assert store.link(scene.id).plex_path == library.plex_path(new)


# The renames that end with a file on another scene's old name: two files swap names, three
# rotate, or one moves aside and the other takes its name (a "shift"). Plex keeps every item's
# ratingKey and gives it the new path, so the index's old paths point each scene at the item
# the other scene was linked to.
RENAMES = {
    "swap": (("a", "a.tmp"), ("b", "a"), ("a.tmp", "b")),
    "rotate": (("a", "a.tmp"), ("b", "a"), ("c", "b"), ("a.tmp", "c")),
    "shift": (("b", "b.new"), ("a", "b")),
}


@pytest.mark.parametrize("renames", sorted(RENAMES))
def test_05_files_renamed_onto_each_others_names_keep_each_scene_on_its_own_item(
    library, plex, stash, runner, connection, plugin_dir, renames
):
    scenes = dict(zip("abc", described(library, 3), strict=True))
    keys = {name: key_of(plex, library, scene) for name, scene in scenes.items()}
    paths = {name: scene.files[0].path for name, scene in scenes.items()}
    paths.update({f"{name}.tmp": path + ".tmp" for name, path in list(paths.items())})
    paths.update({f"{name}.new": path + ".new.mp4" for name, path in list(paths.items())})
    change_settings(stash, pull_plays=True)
    run = runner.run_task("Sync All Scenes", connection)
    assert run.returncode == 0 and run.error is None, run.stderr
    assert plex.item(keys["a"]).title == scenes["a"].title.strip()

    for old, new in RENAMES[renames]:  # renamed on disk, found by both scans
        assert stash.move_file(paths[old], paths[new]) in {s.id for s in scenes.values()}
        assert plex.move_file(library.plex_path(paths[old]), library.plex_path(paths[new]))
    for name, scene in scenes.items():
        stash.update_scene(scene.id, title=f"Scene {name} after the renames")
    run = runner.run_task("Sync All Scenes", connection)

    assert run.returncode == 0 and run.error is None, run.stderr
    for name, scene in scenes.items():
        item = plex.item(keys[name])  # the item holding the scene's file, whatever its name
        assert item.files == [library.plex_path(library.scenes[scene.id].files[0].path)]
        assert item.title == f"Scene {name} after the renames"
        assert item.studio == library.studios[scene.studio_id].name
        assert [a.name for a in item.actors] == names(library, "performers", scene.performer_ids)
    with Store.open(plugin_dir / "data") as store:
        assert {n: [k.rating_key for k in store.links(s.id)] for n, s in scenes.items()} == {
            name: [keys[name]] for name in scenes
        }

    plex.log.clear()
    again = runner.run_task("Sync All Scenes", connection)
    assert again.returncode == 0 and again.error is None, again.stderr
    assert plex.log.writes() == []
    for name in scenes:
        assert plex.item(keys[name]).title == f"Scene {name} after the renames"

    # A play of each item is pulled to the scene whose file it holds.
    played = {name: 1_700_000_000 + 3600 * index for index, name in enumerate(scenes)}
    for name, viewed_at in played.items():
        plex.play(keys[name], viewed_at)
    pulled = runner.run_task("Pull Plays from Plex", connection)
    assert pulled.returncode == 0 and pulled.error is None, pulled.stderr
    for name, scene in scenes.items():
        history = {epoch(t) for t in library.scenes[scene.id].play_history}
        assert history & set(played.values()) == {played[name]}


# ---------------------------------------------------------------------- 6
def test_06_a_path_plex_spells_in_nfd_matches_stash_in_nfc(
    library, plex, stash, runner, connection, plugin_dir, section_id
):
    scene = next(s for s in described(library, 6) if s.id <= 25)  # in Diagnose's sample
    nfc = "/data/stash/Ünïcode Földer/Café – Ωmega.mp4"
    assert unicodedata.is_normalized("NFC", nfc)
    plex.delete_item(key_of(plex, library, scene))
    stash.update_scene(scene.id, files=[dataclasses.replace(scene.files[0], path=nfc)])
    nfd = unicodedata.normalize("NFD", library.plex_path(nfc))
    key = plex.add_item(section_id, nfd, sizes=scene.files[0].size)

    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", scene.id)

    assert plex.item(key).title == scene.title.strip()
    diagnose = runner.run_task("Diagnose", connection)
    [check] = [c for c in diagnose.output["checks"] if c["name"] == "path mapping"]
    assert check["ok"], check
    assert "path_map to" not in json.dumps(diagnose.output)


# ---------------------------------------------------------------------- 7
def test_07_windows_paths_compare_without_case_and_with_either_slash(
    library, plex, stash, runner, connection, plugin_dir, section_id
):
    """Same-size files with the same name in two folders: only the exact path can tell them
    apart, so every rule has to apply and every comparison has to hold."""
    scenes = described(library, 4)
    layout = [
        # Stash on Windows, Plex on Linux; the rule typed in another case with forward slashes.
        ("C:\\Media\\Cam A\\clip01.mp4", "/media/plex/Cam A/clip01.mp4"),
        ("C:\\Media\\Cam B\\clip01.mp4", "/media/plex/Cam B/clip01.mp4"),
        # Stash on Linux, Plex on Windows; a drive-root target written m:/ .
        ("/data/win/Cam A/clip02.mp4", "M:\\Cam A\\clip02.mp4"),
        ("/data/win/Cam B/clip02.mp4", "M:\\Cam B\\clip02.mp4"),
    ]
    stash.plugin_settings["path_map"] = (
        f"C:/MEDIA => /media/plex; /data/win => m:/; {library.path_map}"
    )
    keys = []
    for scene, (stash_path, plex_path) in zip(scenes, layout, strict=True):
        plex.delete_item(key_of(plex, library, scene))
        file = dataclasses.replace(scene.files[0], path=stash_path, size=1_234_567_890)
        stash.update_scene(scene.id, files=[file])
        keys.append(plex.add_item(section_id, plex_path, sizes=file.size))

    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", *(s.id for s in scenes))

    for scene, key in zip(scenes, keys, strict=True):
        assert plex.item(key).title == scene.title.strip()


# ---------------------------------------------------------------------- 8
def test_08_tag_filters_cover_descendants_at_any_depth_and_through_any_parent(
    library, plex, stash, runner, connection, plugin_dir
):
    tags = library.tags
    chain = []
    for name in ("Root Tag", "Level 1", "Level 2", "Level 3", "Leaf Tag"):
        tag = Tag(max(tags) + 1, name, [chain[-1].id] if chain else [])
        tags[tag.id] = tag
        chain.append(tag)
    other_parent = Tag(max(tags) + 1, "Second Parent")
    tags[other_parent.id] = other_parent
    chain[-1].parent_ids.append(other_parent.id)
    loose = next(t for t in tags.values() if not t.parent_ids and t not in (*chain, other_parent))
    [scene] = described(library)
    stash.update_scene(scene.id, tag_ids=[chain[-1].id, loose.id])
    key = key_of(plex, library, scene)

    def genres_with(**settings) -> list[str]:
        change_settings(stash, **{"tag_include": None, "tag_exclude": None, **settings})
        stash.update_scene(scene.id)  # a save in Stash
        hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", scene.id)
        return plex.item(key).genres

    assert genres_with(tag_exclude="Root Tag") == [loose.name]
    assert genres_with(tag_include="root tag") == ["Leaf Tag"]
    assert genres_with(tag_exclude="Second Parent") == [loose.name]
    assert genres_with(tag_include="Level 2", tag_exclude=loose.name) == ["Leaf Tag"]


@pytest.mark.parametrize(
    ("setting", "before", "after"),
    [("tag_exclude", ["Loose"], ["Leaf Tag", "Loose"]), ("tag_include", ["Leaf Tag"], [])],
)
def test_08_a_tag_taken_from_under_a_filtered_parent_on_the_parents_page_resyncs_its_scenes(
    library, plex, stash, runner, connection, plugin_dir, setting, before, after
):
    tags = library.tags
    chain = []
    for name in ("Root Tag", "Level 1", "Leaf Tag", "Loose"):
        tag = Tag(max(tags) + 1, name, [chain[-1].id] if chain and name != "Loose" else [])
        tags[tag.id] = tag
        chain.append(tag)
    root, level_1, leaf, loose = chain
    [scene] = described(library)
    stash.update_scene(scene.id, tag_ids=[leaf.id, loose.id])
    key = key_of(plex, library, scene)
    change_settings(stash, **{setting: "Root Tag"})
    run = runner.run_task("Sync All Scenes", connection)
    assert run.returncode == 0 and run.error is None, run.stderr
    assert plex.item(key).genres == before

    # On Root's page the user removes Level 1 from Root's children: Stash fires the hook for
    # Root alone and no longer lists the scene under Root.
    stash.drop_child("tag", root.id, level_1.id)
    run = runner.run_hook(
        "Tag.Update.Post",
        root.id,
        connection,
        input={"id": str(root.id), "child_ids": []},
        input_fields=["id", "child_ids"],
    )
    assert run.returncode == 0 and run.error is None, run.stderr

    wait_until(lambda: plex.item(key).genres == after, message="the scene to be re-synced")
    wait_until(lambda: done(plugin_dir, scene.id), message="its job to finish")
    assert plex.item(key).genres == after


def test_08_a_studio_taken_from_under_its_parent_on_the_parents_page_resyncs_its_scenes(
    library, plex, stash, runner, connection, plugin_dir
):
    parent = Studio(max(library.studios) + 1, "Parent Network")
    child = Studio(parent.id + 1, "Child Label", parent_id=parent.id)
    library.studios.update({parent.id: parent, child.id: child})
    [scene] = described(library)
    stash.update_scene(scene.id, studio_id=child.id)
    key = key_of(plex, library, scene)
    change_settings(stash, collection_parent_studio=True)
    run = runner.run_task("Sync All Scenes", connection)
    assert run.returncode == 0 and run.error is None, run.stderr
    assert plex.item(key).collections == ["Child Label", "Parent Network"]

    stash.drop_child("studio", parent.id, child.id)  # edited on the parent's page
    run = runner.run_hook(
        "Studio.Update.Post",
        parent.id,
        connection,
        input={"id": str(parent.id)},
        input_fields=["id"],
    )
    assert run.returncode == 0 and run.error is None, run.stderr

    wait_until(
        lambda: plex.item(key).collections == ["Child Label"], message="the scene to be re-synced"
    )
    wait_until(lambda: done(plugin_dir, scene.id), message="its job to finish")


# ---------------------------------------------------------------------- 9
def test_09_a_freshly_scanned_scene_leaves_agent_metadata_alone_and_locks_nothing(
    library, plex, stash, runner, connection, plugin_dir
):
    fresh, other = described(library, 2)
    empty = freshly_scanned(cover_version=None)
    stash.update_scene(fresh.id, **empty)
    key = agent_fill(plex, library, fresh, AGENT)
    before = plex.item(key)

    hook_and_wait(runner, connection, plugin_dir, "Scene.Create.Post", fresh.id)

    after = plex.item(key)
    assert after == before  # not one field, lock or edit
    assert after.locked == frozenset() and after.title == AGENT.title

    # Identify then finds a title and one performer: now the scene has metadata of its own.
    performer = other.performer_ids[0]
    stash.update_scene(fresh.id, title="Found by Identify", performer_ids=[performer])
    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", fresh.id)
    item = plex.item(key)
    assert item.title == "Found by Identify"
    assert (item.summary, item.studio, item.originally_available_at) == ("", "", None)
    assert item.genres == [] and item.collections == []
    assert [a.name for a in item.actors] == [library.performers[performer].name]
    # Now the scene is ours: what Stash leaves empty is emptied and locked, like the rest.
    assert item.locked == SYNCED_LOCKS
    refresh_in_plex(plex, key)
    assert plex.item(key).summary == "" and plex.item(key).studio == ""

    # With sync_empty_scenes on, an empty scene is pushed after all: Plex then shows exactly
    # Stash (the title from the file name, nothing else), locked.
    stash.update_scene(other.id, **empty)
    other_key = agent_fill(plex, library, other, AGENT)
    change_settings(stash, sync_empty_scenes=True)
    hook_and_wait(runner, connection, plugin_dir, "Scene.Create.Post", other.id)
    item = plex.item(other_key)
    stem = posixpath.splitext(posixpath.basename(other.files[0].path))[0]
    assert (item.title, item.summary, item.studio, item.actors, item.genres) == (
        stem,
        "",
        "",
        [],
        [],
    )
    assert item.locked == SYNCED_LOCKS


# ---------------------------------------------------------------------- 10
def test_10_a_tv_library_is_reported_with_the_usable_ones_and_never_written(
    library, plex, stash, runner, connection, plugin_dir, monkeypatch
):
    plex.add_section("Stash Series", ["/plex/series"], "show")
    stash.plugin_settings["plex_library"] = "Stash Series"
    [scene] = described(library)

    run = runner.run_hook("Scene.Update.Post", scene.id, connection)
    assert run.returncode == 0 and run.error is None
    wait_until(lambda: waiting(plugin_dir, "settings", scene.id), message="a settings wait")

    message = job(plugin_dir, scene.id).last_error
    assert "'Stash Series' is a TV Shows library" in message
    assert SECTION_TITLE in message and "plex_library" in message
    sync = runner.run_task("Sync All Scenes", connection)
    reported = [*sync.output.get("errors", []), sync.output.get("blocked") or ""]
    assert any("'Stash Series' is a TV Shows library" in e for e in reported), sync.output
    # A failed job in Stash: the result's error says it (Stash logs it as the task's error).
    assert sync.returncode == 1 and "TV Shows library" in sync.error
    assert sync.output["dead_letters"] == 0
    diagnose = runner.run_task("Diagnose", connection)
    [check] = [c for c in diagnose.output["checks"] if c["name"] == "libraries"]
    assert not check["ok"] and "TV Shows library" in check["detail"]
    assert SECTION_TITLE in check["detail"]
    assert plex.log.writes() == []

    monkeypatch.setenv("STASH2PLEX_STASH_URL", stash.url)
    cli = CliRunner()
    data_dir = str(plugin_dir / "data")
    result = cli.invoke(cli_main, ["--data-dir", data_dir, "--json", "diagnose"])
    assert result.exit_code == 2  # a setting to change: a configuration error
    [check] = [c for c in json.loads(result.output) if c["name"] == "libraries"]
    assert "TV Shows library" in check["detail"]
    result = cli.invoke(cli_main, ["--data-dir", data_dir, "sync", "--all"])
    # A setting to fix: the README's exit code for a configuration error.
    assert result.exit_code == 2 and "TV Shows library" in result.output
    assert plex.log.writes() == []


# ---------------------------------------------------------------------- name twins
def test_a_same_named_file_in_another_folder_never_takes_another_scenes_item(
    library, plex, stash, runner, connection, plugin_dir, section_id
):
    """Two cameras' clip01.mp4, one size: A's is in Plex, B's not scanned yet. B's file is
    not A's file: B waits for its own, A's item shows A, and no conflict is claimed."""
    a, b = described(library, 2)
    for scene in (a, b):
        plex.delete_item(key_of(plex, library, scene))
    file_a = dataclasses.replace(a.files[0], path="/data/stash/Cam A/clip01.mp4", size=777_777)
    file_b = dataclasses.replace(b.files[0], path="/data/stash/Cam B/clip01.mp4", size=777_777)
    stash.update_scene(a.id, files=[file_a])
    stash.update_scene(b.id, files=[file_b])
    key_a = plex.add_item(section_id, library.plex_path(file_a.path), sizes=file_a.size)

    runner.run_hook("Scene.Update.Post", b.id, connection)
    wait_until(lambda: waiting(plugin_dir, "not_in_plex", b.id), message="b to wait for Plex")
    assert plex.item(key_a).edit_count == 0
    assert library.plex_path(file_b.path) in job(plugin_dir, b.id).last_error

    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", a.id)
    assert plex.item(key_a).title == a.title.strip()
    with Store.open(plugin_dir / "data") as store:
        assert store.scenes_by_rating_key([key_a]) == {key_a: [a.id]}
        assert store.links(b.id) == []
    assert waiting(plugin_dir, "not_in_plex", b.id)


# ---------------------------------------------------------------------- two libraries
def test_one_file_in_two_libraries_waits_naming_both_until_plex_library_chooses(
    library, plex, stash, runner, connection, plugin_dir
):
    [scene] = described(library)
    path = library.plex_path(scene.files[0].path)
    first = key_of(plex, library, scene)
    other = plex.add_section("All Videos", [posixpath.dirname(path)])  # overlapping folders
    second = plex.add_item(other, path, sizes=scene.files[0].size)
    change_settings(stash, plex_library=None)  # every Movies library

    runner.run_hook("Scene.Update.Post", scene.id, connection)
    wait_until(lambda: waiting(plugin_dir, "ambiguous", scene.id), message="an ambiguous wait")

    waited = job(plugin_dir, scene.id)
    assert f"'{SECTION_TITLE}'" in waited.last_error and "'All Videos'" in waited.last_error
    assert "set Plex libraries (plex_library) to the one" in waited.last_error
    assert [(c["rating_key"], c["library"]) for c in waited.detail["candidates"]] == [
        (first, SECTION_TITLE),
        (second, "All Videos"),
    ]
    shown = runner.run_task("Show Waiting Scenes", connection)
    assert "All Videos" in json.dumps(shown.output)
    assert plex.log.writes() == []

    change_settings(stash, plex_library="All Videos")
    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", scene.id)
    assert plex.item(second).title == scene.title.strip()
    assert plex.item(first).edit_count == 0


# ---------------------------------------------------------------------- names in two forms
def test_tag_filters_and_label_tags_match_names_in_any_unicode_form_and_case(
    library, plex, stash, runner, connection, plugin_dir
):
    tags = library.tags
    excluded = Tag(max(tags) + 1, unicodedata.normalize("NFD", "Café Scène"))
    tags[excluded.id] = excluded
    labelled = Tag(max(tags) + 1, unicodedata.normalize("NFC", "Privé"))
    tags[labelled.id] = labelled
    child = Tag(max(tags) + 1, "Sous-catégorie", [labelled.id])
    tags[child.id] = child
    [scene] = described(library)
    before = list(scene.tag_ids)
    stash.update_scene(scene.id, tag_ids=[*before, excluded.id, labelled.id, child.id])
    change_settings(
        stash,
        tag_exclude=unicodedata.normalize("NFC", "café scène"),
        label_tags=unicodedata.normalize("NFD", "PRIVÉ"),
    )
    key = key_of(plex, library, scene)

    hook_and_wait(runner, connection, plugin_dir, "Scene.Update.Post", scene.id)

    item = plex.item(key)
    assert excluded.name not in item.genres
    assert item.genres == names(library, "tags", [*before, labelled.id, child.id])
    assert item.labels == [labelled.name, child.name]
