"""Plex -> Stash against both emulators: plays, resume points, ratings, whose plays count, the
worker's timer, the notification stream and the command line."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from click.testing import CliRunner

from stash2plex.cli import main
from stash2plex.engine.context import build_context
from stash2plex.engine.worker import Worker
from stash2plex.errors import PermanentError, SyncError
from stash2plex.pull import decisions
from stash2plex.pull.pull import WATERMARKS_KEY, PullReport, run_pull
from stash2plex.pull.stream import PlexAlertStream

from .conftest import wait_until
from .sandbox import PLEX_TOKEN, sandbox

PULLS = {"pull_plays": True, "pull_resume": True}
T0 = 1_700_000_000  # 2023-11-14, a fixed play time


def history(box, scene) -> list[int]:
    return sorted(decisions.epoch(t) for t in box.library.scenes[scene.id].play_history)


def pull(box, **kwargs):
    with box.store() as store:
        return run_pull(build_context(store), **kwargs)


def history_reads(box) -> int:
    return box.plex.log.count("GET /status/sessions/history/all")


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, settings=PULLS) as opened:
        opened.drain()  # every matchable scene linked to its Plex item
        yield opened


def test_two_plays_arrive_once_with_their_times_and_counts_only_go_up(box):
    scene = box.find(lambda s: True)
    key = box.rating_key(scene)
    box.plex.play(key, T0)
    box.plex.play(key, T0 + 3600)
    stranger = box.plex.add_item(box.section_id, "/plex/media/not-in-stash/x.mkv")
    box.plex.play(stranger, T0 + 60)
    hooks_before = box.stash.hook_count()

    first = pull(box)

    assert history(box, scene) == [T0, T0 + 3600]
    assert (first.plays_added, first.scenes_played, first.stash_writes) == (2, 1, 1)
    assert (first.unlinked_plays, first.unlinked_items) == (1, 1)
    assert first.summary().startswith("2 plays added to 1 scene (3 Plex plays seen), ")
    assert "; 1 play of 1 Plex item not counted: that item is not synced with a scene" in (
        first.summary()
    )
    assert box.stash.hook_count() == hooks_before  # Stash fires no hook for plays
    assert box.stash.count("SceneAddPlay") == 1

    second = pull(box)
    third = pull(box)
    assert second.plays_added == third.plays_added == 0
    assert second.summary().startswith("0 plays added to 0 scenes (")
    # Said only when some play was not counted, in words: never "0 of 0 items".
    nothing = PullReport(seconds=0.5).summary()
    assert nothing == (
        "0 plays added to 0 scenes (0 Plex plays seen), 0 resume points, "
        "0 ratings to Stash, 0 ratings to Plex, 0.5 s"
    )
    assert box.stash.count("SceneAddPlay") == 1
    assert history(box, scene) == [T0, T0 + 3600]

    # A play recorded in Stash itself stays: pulls only ever add.
    box.stash.update_scene(scene.id, play_history=[*scene.play_history, "2024-01-01T00:00:00Z"])
    assert pull(box).plays_added == 0
    assert len(box.library.scenes[scene.id].play_history) == 3


def test_a_play_of_an_item_synced_later_still_arrives(box):
    scene = box.find(lambda s: True)
    key = box.rating_key(scene)
    box.plex.play(key, T0)
    with box.store() as store:
        link = store.link(scene.id)
        store.drop_link(scene.id)
    assert pull(box).unlinked_plays == 1
    box.plex.play(box.rating_key(box.find(lambda s: s.id != scene.id)), T0 + 8 * 86400)
    pull(box)  # the watermark is now more than the look-back past the first play
    with box.store() as store:
        store.save_link(scene.id, link.rating_key, link.section_id, link.plex_path, {})

    report = pull(box)

    assert history(box, scene) == [T0]
    assert report.plays_added == 1


def test_plays_of_an_item_synced_later_arrive_after_stash_failed_to_take_them(box):
    scene = box.find(lambda s: not s.play_history)
    key = box.rating_key(scene)
    box.plex.play(key, T0)
    with box.store() as store:
        link = store.link(scene.id)
        store.drop_link(scene.id)
    pull(box)
    box.plex.play(box.rating_key(box.find(lambda s: s.id != scene.id)), T0 + 8 * 86400)
    pull(box)  # the watermark is now more than the look-back past the first play
    with box.store() as store:
        store.save_link(scene.id, link.rating_key, link.section_id, link.plex_path, {})
    box.stash.hold("SceneAddPlay").set()  # Stash answers the next play write 503, unwritten

    with pytest.raises(SyncError):
        pull(box)
    assert history(box, scene) == []

    assert pull(box).plays_added == 1
    assert history(box, scene) == [T0]


def test_plays_of_a_scene_merged_away_reach_the_scene_that_kept_its_file(box):
    kept, gone = [
        s
        for s in box.library.scenes.values()
        if s.files and s.in_plex and len(s.files) == 1 and not s.play_history
    ][:2]
    gone_key = box.rating_key(gone)
    box.stash.merge_scenes(kept.id, [gone.id])  # Stash fires no hook for a merge
    box.plex.play(gone_key, T0)  # still watched in Plex under its old item

    first = pull(box)

    assert (first.plays_added, first.unlinked_plays) == (0, 1)  # its scene no longer counts
    # More than the look-back later, other plays move the watermark past that play.
    box.plex.play(box.rating_key(kept), T0 + 8 * 86400)
    pull(box)
    box.drain()  # Sync All: the item now belongs to the scene that kept its file

    report = pull(box)

    assert report.plays_added == 1
    assert history(box, kept) == [T0, T0 + 8 * 86400]
    assert pull(box).plays_added == 0


def test_a_play_reported_days_late_still_arrives(box):
    scene = box.find(lambda s: not s.play_history)
    key = box.rating_key(scene)
    box.plex.play(key, T0 + 5 * 86400)
    pull(box)
    box.plex.play(key, T0)  # a phone that played offline syncs five days later

    assert pull(box).plays_added == 1
    assert history(box, scene) == [T0, T0 + 5 * 86400]


def test_a_scene_held_as_several_items_resumes_where_it_was_watched_last(box):
    scene = box.find(lambda s: len({box.rating_key(s, i) for i in range(len(s.files))}) > 1)
    first, second = box.rating_key(scene, 0), box.rating_key(scene, 1)
    now = [float(T0)]
    box.plex.library.clock = lambda: now[0]  # Plex's clock, one step per stop

    def stop(key: int, offset_ms: int) -> None:
        now[0] += 60
        box.plex.stop_at(key, offset_ms)

    stop(second, 300_000)
    pull(box)
    assert box.library.scenes[scene.id].resume_time == 300.0
    stop(first, 150_000)  # the other file, watched later: its point, though smaller
    pull(box)
    assert box.library.scenes[scene.id].resume_time == 150.0
    stop(first, 170_000)
    pull(box)
    assert box.library.scenes[scene.id].resume_time == 170.0
    # Pulled again (both items still in progress): the same answer, nothing written.
    writes = box.stash.count("SceneSaveActivity")
    assert pull(box).resume_points == 0
    assert box.stash.count("SceneSaveActivity") == writes


def test_the_worker_pulls_within_one_poll_interval_on_its_own_clock(box):
    box.settings(pull_interval_minutes=5)
    clock = FakeClock(2_000_000_000.0)
    scene = box.find(lambda s: True)
    key = box.rating_key(scene)

    def drain_at(seconds: float) -> None:
        clock.now = 2_000_000_000.0 + seconds
        Worker(box.data_dir, clock=clock, sleep=clock.sleep).run(until_idle=True)

    drain_at(0)  # first round: the catch-up poll runs at once
    reads = history_reads(box)
    box.plex.play(key, T0)
    box.plex.play(key, T0 + 60)
    drain_at(120)
    assert history_reads(box) == reads and history(box, scene) == []  # not due yet
    drain_at(300)
    assert history(box, scene) == [T0, T0 + 60]
    assert history_reads(box) == reads + 1


def test_a_partial_view_sets_the_resume_point_and_only_plex_changes_move_it(box):
    scene = box.find(lambda s: True)
    key = box.rating_key(scene)
    box.plex.stop_at(key, 125_500)

    assert pull(box).resume_points == 1
    assert box.library.scenes[scene.id].resume_time == 125.5

    box.stash.update_scene(scene.id, resume_time=30.0)  # the user moved on in Stash
    assert pull(box).resume_points == 0
    assert box.library.scenes[scene.id].resume_time == 30.0

    box.plex.stop_at(key, 200_000)
    pull(box)
    assert box.library.scenes[scene.id].resume_time == 200.0

    box.plex.play(key)  # watched to the end in Plex: the point is reset there, and here
    report = pull(box)
    assert report.resume_points == 1 and report.plays_added == 1
    assert box.library.scenes[scene.id].resume_time == 0.0
    assert pull(box).resume_points == 0


def test_only_the_chosen_accounts_plays_count(box):
    scene = box.find(lambda s: True)
    key = box.rating_key(scene)
    guest = box.plex.add_account("Guest Viewer")
    box.plex.play(key, T0, account_id=guest)
    box.plex.play(key, T0 + 10)

    assert pull(box).plays_added == 1  # the token owner's only
    assert history(box, scene) == [T0 + 10]
    box.settings(pull_account="guest viewer")
    report = pull(box, since=T0 - 1)
    assert report.account == "Guest Viewer" and report.plays_added == 1
    assert history(box, scene) == [T0, T0 + 10]
    box.settings(pull_account="nobody")
    with pytest.raises(PermanentError, match="Guest Viewer"):
        pull(box)


def test_a_switch_of_account_reads_the_new_selections_older_plays_once(box):
    scene = box.find(lambda s: not s.play_history)
    other = box.find(lambda s: s.id != scene.id and not s.play_history)
    partner = box.plex.add_account("Partner")
    box.plex.play(box.rating_key(scene), T0, account_id=partner)  # long before the watermark
    box.plex.play(box.rating_key(other), T0 + 30 * 86400)
    assert pull(box).plays_added == 1  # the token owner's

    box.settings(pull_account="*")
    assert pull(box).plays_added == 1
    assert history(box, scene) == [T0]
    box.settings(pull_account="Partner")  # its plays are in Stash already
    assert pull(box).plays_added == 0
    box.settings(pull_account="")
    reads = history_reads(box)
    assert pull(box).plays_added == 0
    assert history(box, scene) == [T0] and history(box, other) == [T0 + 30 * 86400]
    assert history_reads(box) == reads + 1


def test_plays_watermarks_stored_before_an_upgrade_belong_to_the_current_selection(box):
    scene = box.find(lambda s: not s.play_history)
    box.plex.play(box.rating_key(scene), T0, account_id=box.plex.add_account("Partner"))
    box.plex.play(box.rating_key(scene), T0 + 1)
    with box.store() as store:  # as an older version left them: per library only
        store.put_value(WATERMARKS_KEY, {"plays": {str(box.section_id): T0 + 30 * 86400}})

    assert pull(box).plays_added == 0  # the owner's play is older than the look-back
    box.settings(pull_account="*")
    assert pull(box).plays_added == 2
    assert history(box, scene) == [T0, T0 + 1]


def test_nothing_is_pulled_while_the_settings_are_off(tmp_path):
    with sandbox(tmp_path, settings={}) as box:
        box.drain()
        scene = box.find(lambda s: True)
        box.plex.play(box.rating_key(scene), T0)
        report = pull(box)
        assert "switch on" in report.note and history(box, scene) == []
        assert history_reads(box) == 0


def test_ratings_come_back_and_go_out_without_a_loop(tmp_path):
    with sandbox(tmp_path, settings={"sync_rating_both_ways": True}) as box:
        box.drain()
        scene = box.find(lambda s: True)
        key = box.rating_key(scene)
        # A scene whose two files Plex holds apart has two items; all show its rating.
        keys = {box.rating_key(scene, i) for i in range(len(scene.files))}
        box.plex.rate(key, 8.0)
        writes = box.writes()

        report = pull(box)

        assert report.ratings_to_stash == 1 and box.library.scenes[scene.id].rating100 == 80
        assert [box.plex.item(k).user_rating for k in keys] == [8.0] * len(keys)
        assert box.writes() == writes + len(keys) - 1  # the scene's other items, once
        [hook] = [h for h in box.stash.hooks if h["id"] == scene.id]
        assert hook["type"] == "Scene.Update.Post" and hook["inputFields"] == ["id", "rating100"]
        # The hook queues the scene; its sync must find nothing to read or write.
        writes, item_reads = box.writes(), box.plex.log.count("GET /library/metadata/{ids}")
        assert box.drain(scene.id).unchanged == 1
        assert box.writes() == writes
        assert box.plex.log.count("GET /library/metadata/{ids}") == item_reads

        # A later change in Stash (as the UI saves it) goes to Plex once, to each item.
        set_rating_in_stash(box, scene.id, 60)
        box.drain(scene.id)
        assert [box.plex.item(k).user_rating for k in keys] == [6.0] * len(keys)
        assert box.writes() == writes + len(keys)
        stash_writes = box.stash.count("SceneSetRating")
        again = pull(box)
        assert (again.ratings_to_stash, again.ratings_to_plex, again.stash_writes) == (0, 0, 0)
        assert box.stash.count("SceneSetRating") == stash_writes
        assert box.writes() == writes + len(keys)
        assert box.drain(scene.id).synced == 0


def set_rating_in_stash(box, scene_id: int, rating100: int) -> None:
    query = "mutation($input: SceneUpdateInput!) { sceneUpdate(input: $input) { id } }"
    body = {"query": query, "variables": {"input": {"id": str(scene_id), "rating100": rating100}}}
    response = requests.post(f"{box.stash.url}/graphql", json=body, timeout=10)
    assert response.status_code == 200 and "errors" not in response.json()
    box.queue(scene_id)  # what the Scene.Update.Post hook records


def test_the_stream_pulls_at_once_when_plex_reports_playback(box, caplog):
    caplog.set_level(logging.DEBUG)
    scene = box.find(lambda s: True)
    key = box.rating_key(scene)
    with PlexAlertStream(box.data_dir) as stream:
        wait_until(stream.connected.is_set, message="the websocket to connect")
        wait_until(lambda: stream.pulls >= 1, message="the catch-up pull on connecting")
        end = box.plex.library.items[key].duration_ms
        box.plex.library.progress(key, end, "stopped")  # a player reached the end, twice
        box.plex.library.progress(key, end, "stopped")
        wait_until(lambda: len(history(box, scene)) == 2, message="two plays in Stash")
        box.plex.stop_at(key, 42_000)
        wait_until(
            lambda: box.library.scenes[scene.id].resume_time == 42.0, message="the resume point"
        )
    assert stream.notifications >= 3
    assert PLEX_TOKEN not in caplog.text


def test_the_stream_skips_plex_reporting_our_own_writes_but_not_the_users(tmp_path):
    both = {**PULLS, "sync_rating_both_ways": True}
    with sandbox(tmp_path, settings=both) as box:
        ours = box.find(lambda s: True)
        theirs = box.find(lambda s: s.id != ours.id)
        with PlexAlertStream(box.data_dir) as stream:
            wait_until(stream.connected.is_set, message="the websocket to connect")
            wait_until(lambda: stream.pulls >= 1, message="the catch-up pull on connecting")
            pulls, reads = stream.pulls, history_reads(box)
            notified = stream.notifications

            box.stash.update_scene(ours.id, title="Renamed in Stash")
            box.drain(ours.id)  # our edit: Plex reports the item changed

            wait_until(lambda: stream.skipped >= 1, message="the stream to skip our own write")
            assert stream.notifications > notified
            assert (stream.pulls, history_reads(box)) == (pulls, reads)

            # A rating given in Plex to an item Stash2Plex did not write: a pull at once.
            box.plex.rate(box.rating_key(theirs), 7.0)
            wait_until(lambda: stream.pulls == pulls + 1, message="the pull for a user's rating")
            assert history_reads(box) > reads and stream.skipped == 1


def test_pull_command_reads_from_a_date(box, monkeypatch):
    scene = box.find(lambda s: True)
    box.plex.play(box.rating_key(scene), T0)
    monkeypatch.setenv("STASH2PLEX_STASH_URL", box.stash.url)
    result = CliRunner().invoke(
        main, ["--data-dir", str(box.data_dir), "--json", "pull", "--since", "2023-11-01"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["plays_added"] == 1
    assert PLEX_TOKEN not in result.output


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
