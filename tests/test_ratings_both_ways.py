"""Ratings both ways, as users meet them: one rule for which side wins (the side that changed
since the last decision; else the later change; an unrated side never clears a rated one on
first contact), whichever runs first, the sync or the pull; every Plex item of a scene shows
the scene's rating; a rating cleared in Plex reaches Stash; our own writes never echo."""

from __future__ import annotations

import math

import pytest

from stash2plex.clients.http import BUSY_RETRY_DELAYS
from stash2plex.engine.context import build_context
from stash2plex.pull import decisions
from stash2plex.pull.pull import RATING_RECHECK_ITEMS, run_pull
from stash2plex.sandbox.library import VideoFile, generate_library
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until
from .sandbox import freshly_scanned, sandbox
from .test_pull import set_rating_in_stash
from .test_situations import AGENT, agent_fill, described, done, hook_and_wait, key_of

BOTH = {"pull_plays": True, "pull_resume": True, "sync_rating_both_ways": True}
LONG_AGO = 1_600_000_000  # 2020-09-13
T0 = 1_700_000_000  # 2023-11-14, a fixed play time
EMPTY = freshly_scanned(cover_version=None, rating100=None)


@pytest.fixture
def library():
    return generate_library(60, seed=3)


@pytest.fixture
def servers(library):
    with running_sandbox(library, plex_token=PLEX_TOKEN, settings=BOTH) as (plex, stash, section):
        yield plex, stash, section
        assert plex.log.unknown() == [], "the Plex emulator saw requests to unknown routes"


def hooks_run_as_stash_runs_them(stash, runner, connection) -> list:
    """From now on every hook the emulated Stash fires runs the plugin, inside the request."""
    runs: list = []

    def run(hook: dict) -> None:
        runs.append(
            runner.run_hook(
                hook["type"],
                hook["id"],
                connection,
                input=hook["input"],
                input_fields=hook.get("inputFields"),
            )
        )

    stash.on_hook = run
    return runs


def idle(plugin_dir) -> bool:
    with Store.open(plugin_dir / "data") as store:
        return store.outstanding_jobs() == 0


def generation(plugin_dir, scene_id: int) -> int:
    with Store.open(plugin_dir / "data") as store:
        job = store.job(scene_id)
        return -1 if job is None else job.generation


def rate_at(plex, key: int, rating: float | None, when: int) -> None:
    """A rating given in Plex at `when` (epoch s, Plex's clock): its `lastRatedAt`."""
    clock = plex.library.clock
    plex.library.clock = lambda: float(when)
    try:
        plex.rate(key, rating)
    finally:
        plex.library.clock = clock


# ---------------------------------------------------------------------- end to end
def test_a_rating_pulled_into_a_scene_left_alone_leaves_the_agents_metadata(
    library, plex, stash, runner, connection, plugin_dir
):
    [fresh] = described(library)
    stash.update_scene(fresh.id, **EMPTY)  # just scanned: nothing of its own yet
    key = agent_fill(plex, library, fresh, AGENT)
    hook_and_wait(runner, connection, plugin_dir, "Scene.Create.Post", fresh.id)
    before = plex.item(key)
    assert (before.title, before.locked) == (AGENT.title, frozenset())
    plex.rate(key, 8.0)
    runs = hooks_run_as_stash_runs_them(stash, runner, connection)
    queued = generation(plugin_dir, fresh.id)
    writes = len(plex.log.writes())

    pulled = runner.run_task("Pull Plays from Plex", connection)

    assert pulled.returncode == 0 and pulled.output["ratings_to_stash"] == 1
    assert library.scenes[fresh.id].rating100 == 80
    # Our own sceneUpdate fired Scene.Update.Post; the plugin queued the scene and its sync
    # ran: the item is still the agent's, nothing locked, not one Plex write.
    assert [h["type"] for h in stash.hooks] == ["Scene.Update.Post"]
    assert [r.returncode for r in runs] == [0]
    wait_until(
        lambda: generation(plugin_dir, fresh.id) > queued and done(plugin_dir, fresh.id),
        message="the hook's job to be synced",
    )
    after = plex.item(key)
    assert (after.title, after.summary, after.studio) == (AGENT.title, AGENT.summary, AGENT.studio)
    assert after.locked == frozenset() and after.user_rating == 8.0
    assert len(plex.log.writes()) == writes


@pytest.mark.slow
@pytest.mark.parametrize("linked_before", [False, True], ids=["new-install", "switched-on-later"])
def test_first_contact_keeps_plex_ratings_and_the_later_change_wins(
    linked_before, library, plex, stash, runner, connection, plugin_dir
):
    plex_only, stash_older, stash_newer, stash_only = described(library, 4)
    keys = {
        s.id: key_of(plex, library, s) for s in (plex_only, stash_older, stash_newer, stash_only)
    }
    if linked_before:  # synced for months with ratings off, then switched on
        stash.plugin_settings.pop("sync_rating_both_ways")
        assert runner.run_task("Sync All Scenes", connection).returncode == 0
        wait_until(lambda: idle(plugin_dir), message="the first sync")
        stash.plugin_settings["sync_rating_both_ways"] = True
    # Rated in Plex only: Plex's stays and comes to Stash.
    stash.update_scene(plex_only.id, rating100=None)
    plex.rate(keys[plex_only.id], 7.0)
    # Rated on both sides, Plex's later: Plex wins.
    stash.update_scene(stash_older.id, rating100=40, updated_at="2020-01-01T00:00:00Z")
    plex.rate(keys[stash_older.id], 9.0)
    # Rated on both sides, Stash's later: Stash wins.
    stash.update_scene(stash_newer.id, rating100=50)
    rate_at(plex, keys[stash_newer.id], 3.0, LONG_AGO)
    # Rated in Stash only: Stash's goes to Plex.
    stash.update_scene(stash_only.id, rating100=60)
    plex.rate(keys[stash_only.id], None)
    hooks_run_as_stash_runs_them(stash, runner, connection)

    run = runner.run_task("Sync All Scenes", connection)

    assert run.returncode == 0 and run.error is None, run.stderr
    wait_until(lambda: idle(plugin_dir), message="the sync and the hooks it caused")
    shown = [plex.item(keys[s.id]).user_rating for s in (plex_only, stash_older, stash_newer)]
    assert [*shown, plex.item(keys[stash_only.id]).user_rating] == [7.0, 9.0, 5.0, 6.0]
    ratings = [
        library.scenes[s.id].rating100 for s in (plex_only, stash_older, stash_newer, stash_only)
    ]
    assert ratings == [70, 90, 50, 60]
    # Decided once: the next pull and Sync All write nothing anywhere.
    writes, stash_writes = len(plex.log.writes()), stash.count("SceneSetRating")
    pulled = runner.run_task("Pull Plays from Plex", connection)
    assert (pulled.output["ratings_to_stash"], pulled.output["ratings_to_plex"]) == (0, 0)
    assert runner.run_task("Sync All Scenes", connection).returncode == 0
    wait_until(lambda: idle(plugin_dir), message="the second sync")
    assert (len(plex.log.writes()), stash.count("SceneSetRating")) == (writes, stash_writes)


# ---------------------------------------------------------------------- in-process
def pull(box, **kwargs):
    with box.store() as store:
        return run_pull(build_context(store), **kwargs)


def item_reads(box) -> int:
    return box.plex.log.count("GET /library/metadata/{ids}")


def two_item_scene(box):
    scene = box.find(
        lambda s: (
            len({box.rating_key(s, i) for i in range(len(s.files))}) == 2
            and not box.library.scenes[s.id].play_history
        )
    )
    return scene, box.rating_key(scene, 0), box.rating_key(scene, 1)


def test_a_rating_cleared_in_plex_is_cleared_in_stash_within_bounded_reads(tmp_path):
    with sandbox(tmp_path, settings={"sync_rating_both_ways": True}) as box:
        box.drain()  # first contact: Stash's ratings went to Plex
        scene = box.find(lambda s: len(s.files) == 1 and box.library.scenes[s.id].rating100)
        key = box.rating_key(scene)
        with box.store() as store:
            rated_items = len(store.rating_recheck(0, 100_000))
        assert 0 < rated_items <= RATING_RECHECK_ITEMS
        box.plex.rate(key, None)  # cleared in Plex: no time, no "rated since" listing
        reads = item_reads(box)

        report = pull(box)

        assert box.library.scenes[scene.id].rating100 is None
        assert report.ratings_to_stash == 1 and report.stash_writes == 1
        # The re-check read every rated item again, 100 per request, nothing more.
        assert item_reads(box) - reads == math.ceil(rated_items / 100)
        again = pull(box)
        assert (again.ratings_to_stash, again.ratings_to_plex, again.stash_writes) == (0, 0, 0)
        writes = box.writes()
        assert box.drain(scene.id).synced == 0 and box.writes() == writes


def test_the_recheck_reads_a_bounded_window_per_pull_and_comes_round(tmp_path):
    with sandbox(tmp_path, scenes=10, settings={"sync_rating_both_ways": True}) as box:
        box.drain()
        with box.store() as store:
            real = len(store.rating_recheck(0, 100_000))
            # Scenes of a larger library whose agreed rating is set (their items are gone
            # from this Plex, which answers for the ones it has).
            for scene_id in range(100_000, 100_000 + RATING_RECHECK_ITEMS + 250):
                store.save_link(scene_id, scene_id, box.section_id, f"/gone/{scene_id}.mp4", {})
                store.save_rating_agreed(scene_id, 50, None)
        total = real + RATING_RECHECK_ITEMS + 250
        reads = []
        for _ in range(3):
            before = item_reads(box)
            pull(box)
            reads.append(item_reads(box) - before)
        per_pull = RATING_RECHECK_ITEMS // 100
        assert reads[0] == per_pull and reads[2] == per_pull
        assert reads[1] == math.ceil((total - RATING_RECHECK_ITEMS) / 100)


def test_every_item_of_a_scene_shows_its_rating_and_a_stale_item_never_wins(tmp_path):
    with sandbox(tmp_path, settings={"sync_rating_both_ways": True}) as box:
        box.drain()
        scene, first, second = two_item_scene(box)
        rated = lambda: [box.plex.item(k).user_rating for k in (first, second)]  # noqa: E731
        t0 = int(box.plex.library.clock())

        rate_at(box.plex, first, 8.0, t0 + 10)
        assert pull(box).ratings_to_stash == 1
        assert (box.library.scenes[scene.id].rating100, rated()) == (80, [8.0, 8.0])

        # Both items re-rated before the next pull: the later one wins, on both.
        rate_at(box.plex, second, 5.0, t0 + 20)
        rate_at(box.plex, first, 9.0, t0 + 30)
        pull(box)
        assert (box.library.scenes[scene.id].rating100, rated()) == (90, [9.0, 9.0])

        # Plex refuses the write that brings the other item in line: the pull stops before
        # Stash is written; that item still shows the old decision and must never win.
        rate_at(box.plex, first, 3.0, t0 + 40)
        box.plex.faults.fail(500, count=len(BUSY_RETRY_DELAYS) + 1, route=r"PUT /:/rate")
        with pytest.raises(Exception, match="500"):
            pull(box)
        assert (box.library.scenes[scene.id].rating100, rated()) == (90, [3.0, 9.0])
        writes = box.writes()
        assert box.drain(scene.id).synced == 0 and box.writes() == writes  # nothing new in Stash
        pull(box)
        assert (box.library.scenes[scene.id].rating100, rated()) == (30, [3.0, 3.0])
        for _ in range(2):
            quiet = pull(box)
            assert (quiet.ratings_to_stash, quiet.ratings_to_plex, quiet.stash_writes) == (0, 0, 0)
        assert box.drain(scene.id).synced == 0
        assert (box.library.scenes[scene.id].rating100, rated()) == (30, [3.0, 3.0])


def test_a_stash_change_reaches_every_item_unless_plex_changed_later(tmp_path):
    with sandbox(tmp_path, settings={"sync_rating_both_ways": True}) as box:
        box.drain()
        scene, first, second = two_item_scene(box)
        box.stash.update_scene(scene.id, rating100=60)
        box.drain(scene.id)
        assert [box.plex.item(k).user_rating for k in (first, second)] == [6.0, 6.0]
        # Plex rated after Stash's last change, both before the sync: Plex's wins.
        box.stash.update_scene(scene.id, rating100=20, updated_at="2021-01-01T00:00:00Z")
        box.plex.rate(second, 7.0)
        box.drain(scene.id)
        assert box.library.scenes[scene.id].rating100 == 70
        assert [box.plex.item(k).user_rating for k in (first, second)] == [7.0, 7.0]


def test_an_item_shared_by_two_scenes_gives_its_rating_and_plays_to_neither(tmp_path):
    with sandbox(tmp_path, settings=BOTH) as box:
        scene = box.find(lambda s: len(s.files) == 1 and not s.play_history)
        other = box.find(lambda s: s.id != scene.id and len(s.files) == 1 and not s.play_history)
        own_files = list(other.files)
        folder = "/data/stash/Features/Duo"
        parts = [
            VideoFile(9100 + i, f"{folder}/Duo - part{i}.mp4", 200_000 + i, 60.0) for i in (1, 2)
        ]
        box.plex.delete_item(box.rating_key(scene))
        box.stash.update_scene(scene.id, files=parts)
        stacked = box.plex.add_item(
            box.section_id,
            [box.library.plex_path(f.path) for f in parts],
            sizes=[f.size for f in parts],
            stacked=True,
            title="Duo",
        )
        box.drain()  # the stacked item is the scene's
        assert box.job(scene.id).state == "done"
        # Part 2 turns out to be the other scene's (moved in Stash, no hook): a conflict.
        box.stash.update_scene(scene.id, files=parts[:1])
        box.stash.update_scene(other.id, files=[*own_files, parts[1]])
        box.drain(other.id)
        assert (box.job(other.id).state, box.job(other.id).reason) == ("waiting", "conflict")
        rating = box.library.scenes[scene.id].rating100
        box.plex.rate(stacked, 1.0)
        box.plex.play(stacked, T0)

        report = pull(box)

        assert (report.unlinked_plays, report.ratings_to_stash, report.stash_writes) == (1, 0, 0)
        for shared in (scene, other):
            assert box.library.scenes[shared.id].play_history == []
        assert box.library.scenes[scene.id].rating100 == rating
        # Resolved in Stash: part 2 is the scene's again. The play arrives where it belongs.
        box.stash.update_scene(other.id, files=own_files)
        box.stash.update_scene(scene.id, files=parts)
        box.drain(scene.id, other.id)
        assert box.job(other.id).state == "done"
        assert pull(box).plays_added == 1
        assert [decisions.epoch(t) for t in box.library.scenes[scene.id].play_history] == [T0]
        assert box.library.scenes[other.id].play_history == []


def test_both_sides_changed_in_the_same_second_end_agreeing_with_stash(tmp_path):
    with sandbox(tmp_path, settings=BOTH) as box:
        box.drain()
        scene = box.find(lambda s: len(s.files) == 1)
        key = box.rating_key(scene)
        box.plex.rate(key, 8.0)
        pull(box)
        box.drain(scene.id)
        # Rated in Plex and in Stash before either side synced: a tie at Plex's one-second
        # resolution, which Stash wins, whichever runs first.
        now = int(box.plex.library.clock())
        rate_at(box.plex, key, 9.0, now)
        set_rating_in_stash(box, scene.id, 30)

        pull(box)
        box.drain(scene.id)

        assert (box.plex.item(key).user_rating, box.library.scenes[scene.id].rating100) == (3.0, 30)
        writes, stash_writes = box.writes(), box.stash.count("SceneSetRating")
        quiet = pull(box)
        assert (quiet.ratings_to_stash, quiet.ratings_to_plex) == (0, 0)
        assert box.drain(scene.id).synced == 0
        assert (box.writes(), box.stash.count("SceneSetRating")) == (writes, stash_writes)
