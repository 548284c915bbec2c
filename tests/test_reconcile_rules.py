"""The reconcile's pure rules: what counts as drift, how a scene is classified, when the worker
reconciles (proven on an injected clock), and what `--since` means."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from stash2plex.clients.plex import PlexItem
from stash2plex.errors import PermanentError, TransientError
from stash2plex.reconcile import classify as kinds
from stash2plex.reconcile.recent import parse_since, stash_epoch
from stash2plex.reconcile.run import ReconcileReport
from stash2plex.reconcile.timer import (
    BUSY_RETRY_SECONDS,
    RETRY_AFTER_FAILURE_SECONDS,
    ReconcileTimer,
    next_reconcile_at,
)
from stash2plex.records import Job, Link
from stash2plex.settings.config import build_config
from stash2plex.store.db import CREATED_AT_KEY, Store
from stash2plex.sync.drift import Drift, item_drift, synced_keys
from stash2plex.sync.matching import Match, MatchResult
from stash2plex.sync.metadata import desired_item, fingerprint

DAY = 86400.0

SCENE: dict[str, Any] = {
    "id": "7",
    "title": "Harbour Lights",
    "details": "Two lines.\nOf details.",
    "date": "2021-05",
    "rating100": 60,
    "files": [{"path": "/data/a.mp4", "basename": "a.mp4", "size": 10}],
    "paths": {"screenshot": "http://stash/scene/7/screenshot?t=1"},
    "studio": {"id": "3", "name": "Blue Hour Live"},
    "performers": [{"id": "1", "name": "Zoë Núñez", "image_path": ""}],
    "tags": [{"id": "1", "name": "Rain"}, {"id": "2", "name": "Night"}, {"id": "3", "name": "Fog"}],
    "groups": [],
}


def pushed_link(scene: dict[str, Any] = SCENE, **settings: Any) -> Link:
    """The link a sync of `scene` records (fingerprints and owned lists)."""
    desired = desired_item(scene, build_config(settings))
    prints = {**desired.fingerprints(), "poster_url": fingerprint(scene["paths"]["screenshot"])}
    prints["art_url"] = prints["poster_url"]
    owned = {
        "genre": list(desired.genres or ()),
        "actor": [a.name for a in desired.actors or ()],
        "collection": list(desired.collections or ()),
        "collection_all": list(desired.collections or ()),
    }
    return Link(7, 101, 1, "/plex/a.mp4", prints, 0.0, owned)


def plex_item(**changes: Any) -> PlexItem:
    """The item exactly as the sync left it, with `changes`."""
    fields = {
        "title": "Harbour Lights",
        "summary": "Two lines.\nOf details.",
        "studio": "Blue Hour Live",
        "originallyAvailableAt": "2021-05-01",
        "titleSort": "Harbour Lights",
    }
    tags = {
        "genre": ["Rain", "Night", "Fog"],
        "actor": ["Zoë Núñez"],
        "collection": ["Blue Hour Live"],
    }
    locked = {"title", "summary", "studio", "originallyAvailableAt", "genre", "actor"}
    locked.add("collection")
    for key, value in changes.pop("fields", {}).items():
        fields[key] = value
    for key, value in changes.pop("tags", {}).items():
        tags[key] = value
    locked -= set(changes.pop("unlocked", ()))
    return PlexItem(
        101, 1, fields, tags, frozenset(locked), changes.pop("user_rating", None), (), 1_700_000_000
    )


KEYS = synced_keys(build_config({}))


def test_an_item_as_pushed_has_no_drift_whatever_the_tag_order():
    assert item_drift(plex_item(), pushed_link(), KEYS) == []
    reordered = plex_item(tags={"genre": ["Fog", "Rain", "Night"]})
    assert item_drift(reordered, pushed_link(), KEYS) == []


def test_each_change_in_plex_is_drift_naming_the_field_and_what_plex_shows():
    edited = plex_item(fields={"title": "Edited in Plex"})
    assert item_drift(edited, pushed_link(), KEYS) == [Drift("title", "Edited in Plex")]
    refreshed = plex_item(fields={"summary": "An agent's text"}, unlocked=["summary"])
    assert item_drift(refreshed, pushed_link(), KEYS) == [Drift("summary", "An agent's text")]
    degenred = plex_item(tags={"genre": ["Rain", "Night"]})
    assert item_drift(degenred, pushed_link(), KEYS) == [
        Drift("genre", "Rain, Night", "", "missing in Plex: Fog")
    ]
    # Still ours, but an agent refresh would replace it: that is drift too.
    unlocked = plex_item(unlocked=["studio"])
    assert item_drift(unlocked, pushed_link(), KEYS) == [
        Drift("studio", "Blue Hour Live", "unlocked")
    ]


def test_collections_and_labels_compare_only_ours():
    user_added = plex_item(tags={"collection": ["Blue Hour Live", "My favourites"]})
    assert item_drift(user_added, pushed_link(), KEYS) == []
    ours_removed = plex_item(tags={"collection": ["My favourites"]})
    assert item_drift(ours_removed, pushed_link(), KEYS) == [
        Drift("collection", "My favourites", "", "missing in Plex: Blue Hour Live")
    ]


def test_fields_not_synced_now_and_ratings_both_ways_are_not_drift():
    edited = plex_item(fields={"title": "Mine"}, user_rating=9.0)
    assert item_drift(edited, pushed_link(), synced_keys(build_config({"skip_title": True}))) == []
    one_way = synced_keys(build_config({"sync_rating": True}))
    link = pushed_link(sync_rating=True)
    assert item_drift(plex_item(user_rating=6.0), link, one_way) == []
    assert Drift("rating", "9") in item_drift(plex_item(user_rating=9.0), link, one_way)
    both = synced_keys(build_config({"sync_rating_both_ways": True}))
    assert "rating" not in both  # a rating changed in Plex is the pull's news, not drift


def result(*keys: int, ambiguous: bool = False) -> MatchResult:
    from stash2plex.records import IndexEntry

    if ambiguous:
        candidates = [IndexEntry(k, 1, f"/p/{k}/a.mp4", 10) for k in (201, 202)]
        return MatchResult([], candidates, ["/plex/a.mp4"])
    return MatchResult([Match(k, 1, f"/plex/{k}.mp4", "mapped_path") for k in keys], [], [])


def classify(**kwargs: Any) -> list[kinds.Finding]:
    options: dict[str, Any] = {"gone": set(), "drift": {}, "job": None, "config": build_config({})}
    options.update(kwargs)
    scene = options.pop("scene", SCENE)
    match = options.pop("result")
    links = options.pop("links")
    return kinds.classify(scene, match, links, **options)


def test_a_scene_as_pushed_is_in_sync_and_each_difference_has_its_class_and_repair():
    link = pushed_link()
    assert classify(result=result(101), links=[link]) == []
    [never] = classify(result=result(101), links=[])
    assert (never.kind, never.action) == (kinds.NEVER_SYNCED, kinds.QUEUE)
    renamed = {**SCENE, "title": "New", "paths": {"screenshot": "http://stash/scene/7/s?t=2"}}
    [stale] = classify(scene=renamed, result=result(101), links=[link])
    # The cover's address changed with the edit (it carries the update time): whether the
    # picture did is unknown without a download, so only the title is named.
    assert (stale.kind, stale.fields, stale.action) == (kinds.STALE, ("title",), "queue")
    assert stale.detail == "changed in Stash since the last push: title"
    touched = {**SCENE, "paths": {"screenshot": "http://stash/scene/7/s?t=2"}}
    [maybe] = classify(scene=touched, result=result(101), links=[link])
    assert maybe.fields == ("cover_url",) and "its cover may differ" in maybe.detail
    [drifted] = classify(result=result(101), links=[link], drift={101: [Drift("title", "X")]})
    assert (drifted.kind, drifted.fields, drifted.action) == (kinds.DRIFTED, ("title",), "rewrite")
    assert "Plex shows 'X', Stash 'Harbour Lights'" in drifted.detail
    kept = classify(
        result=result(101),
        links=[link],
        drift={101: [Drift("title", "X")]},
        config=build_config({"preserve_plex_edits": True}),
    )
    assert (kept[0].kind, kept[0].action) == (kinds.KEPT, kinds.KEEP)
    [lists] = classify(
        result=result(101),
        links=[link],
        drift={101: [Drift("genre", "Rain, Night", "", "missing in Plex: Fog")]},
    )
    assert lists.detail == "genre: missing in Plex: Fog"
    [broken] = classify(result=result(305), links=[link], gone={101})
    assert broken.kind == kinds.LINK_BROKEN and broken.action == kinds.RELINK
    assert broken.detail == "Plex item 101 is gone; its file is now Plex item 305"
    # A scene of two files, in two items, both gone (a library removed and added again).
    second = Link(7, 102, 1, "/plex/b.mp4", {}, 0.0, {})
    [both] = classify(result=result(305, 306), links=[link, second], gone={101, 102})
    assert both.detail == (
        "Plex items 101 and 102 are gone; its files are now Plex items 305 and 306"
    )
    [merged] = classify(result=result(101, 102), links=[link])
    assert merged.kind == kinds.STALE and merged.fields == ("items",)


def test_scenes_plex_cannot_take_say_why_and_what_a_repair_does():
    [missing] = classify(result=result(), links=[])
    assert (missing.kind, missing.action) == (kinds.NOT_IN_PLEX, kinds.QUEUE)
    waiting = Job(7, "waiting", "not_in_plex", 0, 0.0, 0, None, 0.0, None, None, None)
    assert classify(result=result(), links=[], job=waiting)[0].action == kinds.WAITING
    partial = build_config({"skip_not_found": True})
    assert classify(result=result(), links=[], config=partial)[0].action == kinds.NOTHING
    [ambiguous] = classify(result=result(ambiguous=True), links=[])
    assert ambiguous.kind == kinds.AMBIGUOUS and ambiguous.action == kinds.NEEDS_YOU
    assert "2 Plex items could be this scene" in ambiguous.detail


def test_a_scene_without_metadata_of_its_own_left_alone_is_in_sync():
    bare = {**SCENE, "title": None, "details": None, "date": None, "studio": None}
    bare = {**bare, "performers": [], "tags": []}
    left_alone = Link(7, 101, 1, "/plex/a.mp4", {}, 0.0, {})
    assert classify(scene=bare, result=result(101), links=[left_alone]) == []


def test_the_schedule_counts_from_the_last_run_of_anyone_and_retries_sooner():
    assert next_reconcile_at(None, None, None, 1000.0) is None  # off
    assert next_reconcile_at(DAY, None, None, 1000.0) == 1000.0 + DAY  # not at install
    assert next_reconcile_at(DAY, 5000.0, "done", 1000.0) == 5000.0 + DAY
    assert next_reconcile_at(3600.0, 5000.0, "failed", 0.0) == 5000.0 + RETRY_AFTER_FAILURE_SECONDS
    assert next_reconcile_at(600.0, 5000.0, "interrupted", 0.0) == 5600.0  # short stays short
    assert next_reconcile_at(DAY, 5000.0, "running", 0.0) == 5000.0 + RETRY_AFTER_FAILURE_SECONDS


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeContext:
    def __init__(self, store: Store, **settings: Any) -> None:
        self.store = store
        self.config = build_config(settings)


def test_the_timer_reconciles_once_per_interval_only_when_the_queue_is_idle(tmp_path: Path):
    clock = FakeClock(1_000_000.0)
    runs: list[tuple[float, str, bool]] = []
    with Store.open(tmp_path, clock=clock) as store:

        def run(context: Any, *, fix: bool, trigger: str, clock: Any, should_stop: Any):
            runs.append((clock(), trigger, fix))
            tables = store.reconciliation()
            run_id = tables.start_run(trigger, fix)
            tables.finish_run(run_id, "done", {}, {})
            return ReconcileReport(trigger, fix, clock(), state="done")

        timer = ReconcileTimer(lambda: store, clock, run=run, after_outage=lambda *a, **k: {})
        context = FakeContext(store, reconcile_interval="hourly")
        assert store.get_value(CREATED_AT_KEY) == 1_000_000.0
        assert timer.next_due_at(context) == 1_003_600.0  # one interval after install
        assert timer.tick(context) is False
        clock.now = 1_003_600.0
        store.enqueue([5], source="test")
        assert timer.tick(context) is False  # live work first
        store.clear_pending()
        assert timer.tick(context) is True
        assert runs == [(1_003_600.0, "schedule", True)]  # it repairs what it finds
        clock.now += 3599
        assert timer.tick(context) is False
        clock.now += 1
        assert timer.tick(context) is True and len(runs) == 2
        assert timer.next_due_at(FakeContext(store, reconcile_interval="off")) is None
        assert timer.tick(FakeContext(store, reconcile_interval="off")) is False


def test_a_failed_or_busy_scheduled_reconcile_is_retried_later_not_in_a_loop(tmp_path: Path):
    clock = FakeClock(2_000_000.0)
    with Store.open(tmp_path, clock=clock) as store:
        calls: list[float] = []

        def failing(context: Any, **kwargs: Any):
            calls.append(clock())
            run_id = store.reconciliation().start_run("schedule", True)
            store.reconciliation().finish_run(run_id, "failed", {}, {})
            raise TransientError("Plex did not answer in time (read timeout)", server="plex")

        timer = ReconcileTimer(lambda: store, clock, run=failing, after_outage=lambda *a, **k: {})
        context = FakeContext(store, reconcile_interval="daily")
        clock.now += DAY
        assert timer.tick(context) is True
        assert timer.tick(context) is False
        assert timer.next_due_at(context) == clock.now + RETRY_AFTER_FAILURE_SECONDS
        [event] = [e for e in store.recent_events() if e["kind"] == "reconcile"]
        assert "read timeout" in event["message"] and event["level"] == "warning"

        def busy(context: Any, **kwargs: Any):
            calls.append(clock())
            return ReconcileReport("schedule", True, clock(), state="busy")

        timer.run = busy
        clock.now += RETRY_AFTER_FAILURE_SECONDS
        assert timer.tick(context) is False
        assert timer.tick(context) is False  # the lock holder is left alone for a while
        assert timer.next_due_at(context) == clock.now + BUSY_RETRY_SECONDS
        assert len(calls) == 2


def test_an_ended_outage_is_reconciled_once_at_the_next_round(tmp_path: Path):
    clock = FakeClock(3_000_000.0)
    with Store.open(tmp_path, clock=clock) as store:
        done: list[int] = []

        def after_outage(context: Any, outage: dict, *, clock: Any) -> dict:
            done.append(outage["id"])
            summary = {"changed_in_stash": 2, "already_queued": 1, "failed_jobs_requeued": 1}
            summary["queued"] = 3
            store.reconciliation().mark_outage_reconciled(outage["id"], summary)
            return summary

        timer = ReconcileTimer(
            lambda: store, clock, run=lambda *a, **k: None, after_outage=after_outage
        )
        context = FakeContext(store, reconcile_interval="off")  # whatever the interval says
        store.record_outage(clock.now - 600, clock.now - 60, 4)
        assert timer.next_due_at(context) == clock.now
        assert timer.tick(context) is True
        assert timer.tick(context) is False and done == [1]
        assert timer.next_due_at(context) is None
        [event] = [e for e in store.recent_events() if e["kind"] == "reconcile"]
        assert "2 scenes changed in Stash during it" in event["message"]


def test_since_takes_durations_local_dates_and_last():
    now = 1_750_000_000.0
    assert parse_since("90m", now) == now - 5400
    assert parse_since("2d", now) == now - 2 * DAY
    assert parse_since(" 1w ", now) == now - 7 * DAY
    assert parse_since("last", now) is None and parse_since("", now) is None
    assert parse_since("2025-06-01", now) == datetime(2025, 6, 1).timestamp()
    assert parse_since("2025-06-01T18:30", now) == datetime(2025, 6, 1, 18, 30).timestamp()
    assert parse_since("2025-06-01T18:30:00+10:00", now) == stash_epoch("2025-06-01T08:30:00Z")
    with pytest.raises(PermanentError, match="a duration"):
        parse_since("yesterday", now)


def test_read_ahead_keeps_order_raises_the_fetchers_error_and_stops_with_the_caller():
    from stash2plex.reconcile.run import read_ahead

    assert list(read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise TransientError("Stash did not answer in time", server="stash")

    got = []
    with pytest.raises(TransientError, match="did not answer"):
        for value in read_ahead(failing()):
            got.append(value)
    assert got == [1]

    fetched: list[int] = []
    closed: list[bool] = []

    def endless():
        try:
            for n in range(1000):
                fetched.append(n)
                yield n
        finally:
            closed.append(True)

    for value in read_ahead(endless()):
        if value == 2:
            break
    assert closed == [True] and len(fetched) <= 5  # at most a page or two ahead
