"""The rules of Plex -> Stash and their schedules, as pure functions with injected time."""

from __future__ import annotations

import pytest

from stash2plex.errors import TransientError
from stash2plex.pull import decisions as d
from stash2plex.pull.stream import pull_now, reconnect_delay, wants_pull
from stash2plex.pull.timer import RETRY_AFTER_FAILURE_SECONDS, PullTimer, next_pull_at
from stash2plex.settings.config import build_config
from stash2plex.store.db import Store
from stash2plex.sync.metadata import desired_item


def test_new_plays_is_a_multiset_difference_at_second_resolution():
    stash = [d.rfc3339(1_700_000_000).replace("Z", "+00:00"), "2023-11-15T08:13:20+10:00"]
    # 1_700_000_000 is held twice in Stash (the second entry is the same moment in +10:00).
    assert d.new_plays([1_700_000_000, 1_700_000_000, 1_700_003_600], stash) == [1_700_003_600]
    assert d.new_plays([1_700_000_000] * 3, stash) == [1_700_000_000]
    assert d.new_plays([], stash) == []
    assert d.new_plays([5, 3], []) == [3, 5]


def test_resume_point_moves_only_when_plex_changed_since_the_last_pull():
    assert d.resume_change(125_000, None) == 125.0
    assert d.resume_change(0, None) is None  # first contact: nothing to say
    assert d.resume_change(125_000, 125_000) is None  # unchanged: Stash's own stays
    assert d.resume_change(200_500, 125_000) == 200.5
    assert d.resume_change(0, 125_000) == 0.0  # reset in Plex (watched to the end)


@pytest.mark.parametrize("rating100", [None, 1, 10, 45, 60, 75, 80, 99, 100])
def test_pushed_rating_fingerprint_matches_the_sync_layers(rating100):
    config = build_config({"sync_rating": True})
    desired = desired_item({"id": "1", "rating100": rating100, "files": []}, config)
    from stash2plex.sync.metadata import fingerprint

    assert desired.fingerprints()["rating"] == fingerprint(d.plex_rating(rating100))
    if rating100 is not None and rating100 % 10 == 0:
        assert d.stash_rating(d.plex_rating(rating100)) == rating100


def test_rating_scale_conversion():
    assert d.stash_rating(8.0) == 80
    assert d.stash_rating(7.5) == 75
    assert d.stash_rating(0.0) is None and d.stash_rating(None) is None
    assert d.plex_rating(60) == 6.0 and d.plex_rating(None) is None


def test_the_later_change_wins_and_agreement_writes_nothing():
    state = d.RatingState(agreed=80, plex_rated_at=1000)
    # Agreement is checked first: nothing to write, whatever the times say.
    assert d.decide_rating(8.0, 5000, 80, 9000, state) == d.AGREE
    # Only Plex moved since the last decision: Plex wins, even if Stash's scene was edited later.
    assert d.decide_rating(9.0, 2000, 80, 9000, state) == d.TO_STASH
    # Only Stash moved: Stash wins.
    assert d.decide_rating(8.0, 1000, 60, 1500, state) == d.TO_PLEX
    # Both moved: the later change wins; a tie goes to Stash.
    assert d.decide_rating(9.0, 3000, 60, 2000, state) == d.TO_STASH
    assert d.decide_rating(9.0, 2000, 60, 3000, state) == d.TO_PLEX
    assert d.decide_rating(9.0, 3000, 60, 3000, state) == d.TO_PLEX
    # First contact: an unrated side never clears a rated one.
    assert d.decide_rating(8.0, 100, None, 9000, None) == d.TO_STASH
    assert d.decide_rating(None, None, 70, 100, None) == d.TO_PLEX
    assert d.decide_rating(8.0, 100, 70, 200, None) == d.TO_PLEX
    # A rating cleared in Plex (no time) after agreement: Stash follows unless it moved too.
    assert d.decide_rating(None, None, 80, 9000, state) == d.TO_STASH
    assert d.decide_rating(None, None, 60, 9000, state) == d.TO_PLEX


def test_the_poll_is_due_at_start_then_every_interval_and_sooner_after_a_failure():
    assert next_pull_at(None, False, 900) == float("-inf")
    assert next_pull_at(1000.0, False, 900) == 1900.0
    assert next_pull_at(1000.0, True, 900) == 1000.0 + RETRY_AFTER_FAILURE_SECONDS
    assert next_pull_at(1000.0, True, 30) == 1030.0  # a short interval stays short


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeContext:
    def __init__(self, **settings):
        self.config = build_config({"pull_plays": True, **settings})


def test_pull_timer_runs_once_per_interval_on_the_injected_clock(tmp_path):
    clock = FakeClock(10_000.0)
    runs: list[float] = []

    def run(context, clock):
        runs.append(clock())
        from stash2plex.pull.pull import PullReport

        return PullReport()

    with Store.open(tmp_path, clock=clock) as store:
        timer = PullTimer(store, clock, run)
        context = FakeContext(pull_interval_minutes=5)
        assert timer.tick(context) is True  # never pulled: due at once
        assert timer.tick(context) is False
        clock.now += 299
        assert timer.tick(context) is False
        assert timer.next_due_at(context) == 10_300.0
        clock.now += 1
        assert timer.tick(context) is True
        assert runs == [10_000.0, 10_300.0]
        assert timer.next_due_at(FakeContext(pull_plays=False)) is None
        assert timer.tick(FakeContext(pull_plays=False)) is False


def test_a_failed_pull_is_an_event_and_retried_after_a_minute(tmp_path):
    clock = FakeClock(50_000.0)

    def failing(context, clock):
        raise TransientError("Plex did not answer in time (read timeout)")

    with Store.open(tmp_path, clock=clock) as store:
        timer = PullTimer(store, clock, failing)
        context = FakeContext(pull_interval_minutes=15)
        assert timer.tick(context) is True
        assert timer.next_due_at(context) == 50_000.0 + RETRY_AFTER_FAILURE_SECONDS
        [event] = [e for e in store.recent_events() if e["kind"] == "pull"]
        assert "read timeout" in event["message"] and event["level"] == "warning"


def test_stream_notifications_that_mean_a_pull():
    stopped = {"type": "playing", "PlaySessionStateNotification": [{"state": "stopped"}]}
    playing = {"type": "playing", "PlaySessionStateNotification": [{"state": "playing"}]}
    timeline = {"type": "timeline", "TimelineEntry": [{"type": 1, "state": 5, "itemID": "7"}]}
    scan = {"type": "activity", "ActivityNotification": [{"event": "started"}]}
    assert wants_pull(stopped, ratings=False)
    assert not wants_pull(playing, ratings=True)
    assert wants_pull(timeline, ratings=True) and not wants_pull(timeline, ratings=False)
    assert not wants_pull(scan, ratings=True)


def test_stream_debounce_and_reconnect_backoff():
    assert not pull_now(None, None, 100.0)
    assert not pull_now(100.0, 101.0, 102.0, debounce=2.0, max_delay=10.0)
    assert pull_now(100.0, 101.0, 103.0, debounce=2.0, max_delay=10.0)
    # A steady stream of signals: pulled at the latest max_delay after the first.
    assert pull_now(100.0, 109.9, 110.0, debounce=2.0, max_delay=10.0)
    assert [reconnect_delay(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 8.0, 60.0]
