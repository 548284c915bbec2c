"""The job lifecycle as a table: one row per error class x hold x attempt count, each with the
decision `route` must take; plus the breaker, pause and check transitions it relies on. Pure:
injected time, no I/O."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from stash2plex import errors
from stash2plex.engine import breaker as b
from stash2plex.engine import holds as h
from stash2plex.engine import pauses
from stash2plex.engine.backoff import RetryPolicy
from stash2plex.engine.routing import RoutePolicy, RouteSettings, route
from stash2plex.records import BreakerState, Holds, Job, Pause
from stash2plex.vocabulary import ERROR_CLASSES

NOW = 1_000.0
POLICY = RoutePolicy(retry=RetryPolicy(base_seconds=10, cap_seconds=900, max_attempts=5))
SETTINGS = RouteSettings(max_attempts=5, sources={"plex_token": "Stash plugin settings"})


class MaxRandom(random.Random):
    def uniform(self, a, b):
        return b


def job(attempts: int = 0, scene_id: int = 7) -> Job:
    return Job(scene_id, "leased", None, attempts, NOW, 0, "test", NOW, None, None, None)


CLOSED = BreakerState()
# Four failures of three scenes in the last minute: one more from Plex opens the breaker.
NEAR_THRESHOLD = BreakerState(failures=((NOW - 5, 1), (NOW - 4, 2), (NOW - 3, 3), (NOW - 2, 1)))
TRIAL = BreakerState(probes=2, trial=True)
OPEN_BREAKER = BreakerState(state="open", opened_at=NOW - 1, next_probe_at=NOW + 1)

PLEX_500 = errors.TransientError("Plex failed the request (HTTP 500)", server="plex", status=500)
STASH_500 = errors.TransientError("Stash failed the request (HTTP 500)", server="stash")
INTERNAL = errors.InternalError("unexpected KeyError: 'x'")
PLEX_DOWN = errors.ServerDownError("Plex is not reachable", server="plex")
STASH_DOWN = errors.StashDownError("Stash is not reachable at http://127.0.0.1:9999")
PLEX_401 = errors.AuthError("Plex rejected the token (401)", server="plex", status=401)
STASH_401 = errors.AuthError("Stash rejected the API key (401)", server="stash", status=401)
CONFIG = errors.ConfigError("Plex has no library named Films", setting="plex_library")
NOT_CONFIGURED = errors.NotConfiguredError("Stash2Plex is not configured: set plex_url")
NOT_IN_PLEX = errors.NotInPlexError("the scene's file is not in Plex yet")
AMBIGUOUS = errors.AmbiguousMatchError("2 Plex items could be this scene")
CONFLICT = errors.ConflictError("scenes 3 and 4 are one Plex item", detail={"scene_ids": [3, 4]})
PERMANENT = errors.PermanentError("Plex rejected the request (HTTP 400)", server="plex")

# error, breaker, attempts -> action, reason, attempts after, due in (None: parked), stop,
# breaker phase after (None: unchanged), pause kind set
TABLE = [
    # transient from Plex: retry with backoff until the limit ...
    (PLEX_500, CLOSED, 0, "retry", "retry", 1, 10.0, False, None, None),
    (PLEX_500, CLOSED, 3, "retry", "retry", 4, 80.0, False, None, None),
    (PLEX_500, CLOSED, 4, "dead_letter", None, 5, None, False, None, None),
    # ... unless failures of several scenes say Plex itself is sick: an outage, no attempt
    (PLEX_500, NEAR_THRESHOLD, 0, "wait", "plex_down", 0, None, True, "open", None),
    (PLEX_500, NEAR_THRESHOLD, 4, "wait", "plex_down", 4, None, True, "open", None),
    # after a probe closed the breaker, the first failure reopens it
    (PLEX_500, TRIAL, 0, "wait", "plex_down", 0, None, True, "open", None),
    # a scene in flight when the breaker opened waits for Plex with the rest
    (PLEX_500, OPEN_BREAKER, 2, "wait", "plex_down", 2, None, True, "open", None),
    # transient from Stash, or a bug of ours: attempts, never the breaker
    (STASH_500, NEAR_THRESHOLD, 0, "retry", "retry", 1, 10.0, False, None, None),
    (STASH_500, CLOSED, 4, "dead_letter", None, 5, None, False, None, None),
    (INTERNAL, NEAR_THRESHOLD, 1, "retry", "retry", 2, 20.0, False, None, None),
    (INTERNAL, CLOSED, 4, "dead_letter", None, 5, None, False, None, None),
    # server down: Plex opens the breaker, Stash pauses; attempts untouched
    (PLEX_DOWN, CLOSED, 0, "wait", "plex_down", 0, None, True, "open", None),
    (PLEX_DOWN, CLOSED, 4, "wait", "plex_down", 4, None, True, "open", None),
    (STASH_DOWN, CLOSED, 2, "wait", "stash_down", 2, None, True, None, "stash_down"),
    # credentials and settings: a pause naming what to fix
    (PLEX_401, CLOSED, 0, "wait", "auth", 0, None, True, None, "plex_auth"),
    (STASH_401, CLOSED, 3, "wait", "auth", 3, None, True, None, "stash_auth"),
    (CONFIG, CLOSED, 0, "wait", "settings", 0, None, True, None, "config"),
    (NOT_CONFIGURED, CLOSED, 0, "wait", "settings", 0, None, True, None, "not_configured"),
    # matching states: timers, never the dead-letter queue
    (NOT_IN_PLEX, CLOSED, 0, "wait", "not_in_plex", 0, 60.0, False, None, None),
    (NOT_IN_PLEX, NEAR_THRESHOLD, 4, "wait", "not_in_plex", 4, 60.0, False, None, None),
    (AMBIGUOUS, CLOSED, 0, "wait", "ambiguous", 0, 3600.0, False, None, None),
    (CONFLICT, CLOSED, 2, "wait", "conflict", 2, 3600.0, False, None, None),
    # bad data: dead letter at once
    (PERMANENT, CLOSED, 0, "dead_letter", None, 1, None, False, None, None),
    (PERMANENT, NEAR_THRESHOLD, 3, "dead_letter", None, 4, None, False, None, None),
]


@pytest.mark.parametrize(
    "error, breaker, attempts, action, reason, attempts_after, due_in, stop, phase, pause",
    TABLE,
)
def test_routing_table(
    error, breaker, attempts, action, reason, attempts_after, due_in, stop, phase, pause
):
    decision = route(
        job(attempts),
        error,
        breaker=breaker,
        now=NOW,
        policy=POLICY,
        settings=SETTINGS,
        rng=MaxRandom(),
    )
    assert (decision.action, decision.reason, decision.attempts) == (action, reason, attempts_after)
    assert decision.stop is stop
    if action == "wait" and due_in is None:
        assert decision.due_at is None  # parked until its hold lifts
    elif due_in is not None:
        assert decision.due_at == NOW + due_in
    assert (decision.breaker or breaker).state == (phase or "closed")
    assert (decision.pause.kind if decision.pause else None) == pause
    if action != "done":
        assert decision.error_class == error.error_class and decision.message == error.message
    if action == "dead_letter":
        assert decision.event is not None and decision.event.kind == "dead_letter"


def test_every_error_class_has_a_row():
    assert {row[0].error_class for row in TABLE} == set(ERROR_CLASSES)


@pytest.mark.parametrize("status", ["synced", "unchanged", "skipped"])
def test_success_is_done_and_ends_a_failure_streak(status):
    decision = route(
        job(3), status, breaker=NEAR_THRESHOLD, now=NOW, policy=POLICY, settings=SETTINGS
    )
    assert (decision.action, decision.status, decision.attempts) == ("done", status, 0)
    assert decision.breaker == BreakerState()


def test_skip_not_found_drops_the_scene():
    settings = RouteSettings(skip_not_found=True)
    decision = route(job(), NOT_IN_PLEX, breaker=CLOSED, now=NOW, policy=POLICY, settings=settings)
    assert (decision.action, decision.status) == ("done", "skipped")


def test_max_attempts_comes_from_the_settings():
    settings = RouteSettings(max_attempts=2)
    decision = route(job(1), PLEX_500, breaker=CLOSED, now=NOW, policy=POLICY, settings=settings)
    assert (decision.action, decision.attempts) == ("dead_letter", 2)


def test_a_write_that_timed_out_is_retried_only_after_it_could_have_landed():
    # Plex finishes a request its client gave up on: a retry (with the scene's newest values)
    # sent before that would be overwritten by the older write.
    unsettled = errors.TransientError(
        "Plex did not answer a write within 30 s", server="plex", detail={"unsettled_write": True}
    )
    settings = RouteSettings(unsettled_write_seconds=60.0)
    decision = route(job(), unsettled, breaker=CLOSED, now=NOW, policy=POLICY, settings=settings)
    assert (decision.action, decision.due_at) == ("retry", NOW + 60.0)
    other = route(job(), PLEX_500, breaker=CLOSED, now=NOW, policy=POLICY, settings=settings)
    assert other.due_at is not None and other.due_at <= NOW + 10.0  # their backoff, unchanged


def test_a_pause_names_the_setting_and_where_it_came_from():
    decision = route(job(), PLEX_401, breaker=CLOSED, now=NOW, policy=POLICY, settings=SETTINGS)
    assert decision.pause.setting == "plex_token"
    assert decision.pause.source == "Stash plugin settings"
    assert decision.pause.next_check_at == NOW + pauses.CHECK_BASE_SECONDS


REFUSED = errors.ServerDownError(
    "Plex is not reachable at http://plex:32401: connection refused (nothing listens on "
    "port 32401; is Plex running, and is 32401 its port?)",
    server="plex",
)
# A port where another service accepts the connection and never answers, or hangs up.
SILENT = errors.TransientError("Plex did not answer within 30 s (read timeout)", server="plex")


@pytest.mark.parametrize("breaker", [CLOSED, NEAR_THRESHOLD])
@pytest.mark.parametrize("refused", [REFUSED, SILENT])
def test_plex_never_reached_at_its_address_is_a_setting_to_check_not_an_outage(breaker, refused):
    settings = RouteSettings(plex_answered=False, sources={"plex_url": "Stash plugin settings"})
    decision = route(job(), refused, breaker=breaker, now=NOW, policy=POLICY, settings=settings)
    assert (decision.action, decision.reason, decision.attempts) == ("wait", "settings", 0)
    assert decision.breaker is None and decision.stop
    assert (decision.pause.kind, decision.pause.setting) == ("config", "plex_url")
    assert decision.pause.source == "Stash plugin settings"
    assert decision.pause.message.startswith(refused.message)
    assert "never reached Plex with these settings: check plex_url" in decision.pause.message
    # Once Plex has answered there, the same failure is Plex's (an outage, or a retry);
    # Stash's is never Plex's.
    answered = route(job(), refused, breaker=breaker, now=NOW, policy=POLICY, settings=SETTINGS)
    assert answered.pause is None and answered.reason in ("plex_down", "retry")
    stash = route(job(), STASH_DOWN, breaker=breaker, now=NOW, policy=POLICY, settings=settings)
    assert stash.pause.kind == "stash_down"


@pytest.mark.parametrize("error", [PLEX_500, PLEX_DOWN])
def test_plex_is_down_is_said_when_an_outage_starts_not_when_a_trial_resumes_it(error):
    opened = route(job(), error, breaker=NEAR_THRESHOLD, now=NOW, policy=POLICY, settings=SETTINGS)
    assert opened.event is not None and opened.event.message.startswith("Plex is down")
    # The first failure after a passing probe says so once; later ones are not said again.
    resumed = route(job(), error, breaker=TRIAL, now=NOW, policy=POLICY, settings=SETTINGS)
    assert resumed.breaker.state == "open"
    assert resumed.event.message.startswith("Plex answers again but still fails")
    again = replace(TRIAL, trials_failed=1)
    quiet = route(job(), error, breaker=again, now=NOW, policy=POLICY, settings=SETTINGS)
    assert quiet.breaker.state == "open" and quiet.event is None


# ---------------------------------------------------------------------------- the breaker
def test_one_bad_item_failing_again_and_again_is_no_outage():
    state = CLOSED
    for second in range(10):
        state, change = b.record_failure(state, NOW + second, scene_id=7)
        assert change is None and state.is_closed


def test_failures_older_than_the_window_do_not_count():
    state = BreakerState(failures=tuple((NOW - 100 + i, i) for i in range(4)))
    state, change = b.record_failure(state, NOW, scene_id=9)
    assert change is None and state.failures == ((NOW, 9),)


def test_the_breaker_opens_probes_with_backoff_and_closes_on_trial():
    state, change = b.record_server_down(CLOSED, NOW)
    assert (state.state, state.opened_at, state.next_probe_at) == ("open", NOW, NOW + 2)
    assert change == b.Transition("closed", "open", NOW)
    assert not b.probe_due(state, NOW + 1.9) and b.probe_due(state, NOW + 2)
    delays, now = [], NOW + 2
    for _ in range(6):
        state, _ = b.start_probe(state, now)
        assert state.state == "half_open"
        state, _ = b.probe_failed(state, now)
        delays.append(state.next_probe_at - now)
        now = state.next_probe_at
    assert delays == [4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    state, change = b.probe_succeeded(state, now)
    assert state.is_closed and state.trial and change.new == "closed"
    # A failure on trial reopens at once; the next trial is further off (see below).
    reopened, change = b.record_failure(state, now + 1, scene_id=3)
    assert change.new == "open" and reopened.next_probe_at == now + 1 + 20.0
    # A success on trial ends it.
    closed, _ = b.record_success(state, now + 1)
    assert closed == BreakerState()


def test_plex_reading_fine_but_failing_writes_gets_ever_rarer_trials_and_one_word_each_way():
    # Every probe passes (it only reads) and the one scene tried after it fails (a full disk).
    holds = Holds(breaker=b.record_server_down(CLOSED, NOW)[0])
    delays, said, now = [], [], NOW + 2
    for _ in range(8):
        holds, events = h.after_check(holds, h.CheckResult(probed=True), now, {})
        said += [e.message for e in events]
        decision = route(
            job(), PLEX_500, breaker=holds.breaker, now=now, policy=POLICY, settings=SETTINGS
        )
        said += [decision.event.message] if decision.event else []
        holds = replace(holds, breaker=decision.breaker)
        delays.append(holds.breaker.next_probe_at - now)
        now = holds.breaker.next_probe_at
    assert delays == [20.0, 40.0, 80.0, 120.0, 120.0, 120.0, 120.0, 120.0]
    assert said[0] == "Plex is back online after 2 s"  # each said once, not at every probe
    assert said[1].startswith("Plex answers again but still fails") and len(said) == 2
    holds, events = h.after_check(holds, h.CheckResult(probed=True), now, {})
    assert events == []
    done = route(job(), "synced", breaker=holds.breaker, now=now, policy=POLICY, settings=SETTINGS)
    assert done.breaker == BreakerState()
    assert done.event.message == "Plex takes writes again; the queue goes on"


# ---------------------------------------------------------------------------- checks
def paused(kind, **changes) -> Holds:
    pause = Pause(kind=kind, message="why", since=NOW - 50, next_check_at=NOW, **changes)
    return Holds(pause=pause)


OPEN = Holds(breaker=BreakerState(state="open", opened_at=NOW - 42, next_probe_at=NOW))


def test_a_passing_probe_ends_the_outage_and_says_how_long():
    after, events = h.after_check(OPEN, h.CheckResult(probed=True), NOW, {})
    assert after.breaker.is_closed and after.breaker.trial
    assert [e.message for e in events] == ["Plex is back online after 42 s"]


def test_a_plex_url_changed_to_one_plex_never_answered_at_is_named_at_each_check():
    # During an outage the user sets another address, where Plex never answered: the outage
    # of the old one ends, and the queue holds naming the setting; another wrong address later
    # is named anew.
    first = errors.ServerDownError("Plex is not reachable at http://plex:1: refused", server="plex")
    result = h.CheckResult(probed=True, plex_error=first, plex_answered=False)
    after, events = h.after_check(OPEN, result, NOW, {"plex_url": "Stash plugin settings"})
    assert after.breaker == BreakerState()
    assert (after.pause.kind, after.pause.setting) == ("config", "plex_url")
    assert after.pause.message.startswith(first.message)
    assert [e.message for e in events] == [f"queue paused: {after.pause.message}"]
    second = errors.TransientError("Plex at http://plex:2 did not answer (timeout)", server="plex")
    result = h.CheckResult(probed=True, plex_error=second, plex_answered=False)
    later, events = h.after_check(after, result, NOW + 5, {})
    assert later.pause.message.startswith(second.message) and later.pause.since == NOW
    assert later.pause.checks == 1 and len(events) == 1


def test_the_address_set_back_to_where_plex_answered_while_it_is_down_is_an_outage():
    held = paused("config", setting="plex_url")
    result = h.CheckResult(probed=True, plex_error=PLEX_DOWN, plex_answered=True)
    after, events = h.after_check(held, result, NOW, {})
    assert after.pause is None and after.breaker.state == "open"
    assert [e.message for e in events] == ["Plex is down: Plex is not reachable; jobs wait for it"]
    # A pause about another setting stays while Plex is down.
    library = paused("config", setting="plex_library")
    kept, _ = h.after_check(library, result, NOW, {})
    assert kept.pause.kind == "config" and kept.breaker.is_closed


def test_a_failing_probe_backs_off():
    down = errors.ServerDownError("refused", server="plex")
    after, events = h.after_check(OPEN, h.CheckResult(probed=True, plex_error=down), NOW, {})
    assert after.breaker.state == "open" and after.breaker.next_probe_at == NOW + 4
    assert events == []


def test_plex_answering_401_ends_the_outage_and_pauses_on_the_token():
    result = h.CheckResult(probed=True, plex_error=PLEX_401)
    after, _ = h.after_check(OPEN, result, NOW, {"plex_token": "environment STASH2PLEX_PLEX_TOKEN"})
    assert after.breaker.is_closed
    assert after.pause.kind == "plex_auth"
    assert after.pause.source == "environment STASH2PLEX_PLEX_TOKEN"


@pytest.mark.parametrize("kind", ["disabled", "not_configured", "stash_down", "stash_auth"])
def test_readable_enabled_settings_lift_settings_pauses(kind):
    after, events = h.after_check(paused(kind), h.CheckResult(), NOW, {})
    assert after.pause is None and events[0].kind == "resumed"


@pytest.mark.parametrize("kind", ["plex_auth", "config"])
def test_plex_pauses_need_a_passing_probe(kind):
    holds = paused(kind, setting="plex_library")
    assert h.needs_plex_probe(holds)
    after, _ = h.after_check(holds, h.CheckResult(probed=True), NOW, {})
    assert after.pause is None
    still, _ = h.after_check(holds, h.CheckResult(probed=True, plex_error=CONFIG), NOW, {})
    assert still.pause.kind == "config" and still.pause.checks == 1
    assert still.pause.since == NOW - 50 and still.pause.next_check_at == NOW + 10


def test_switched_off_pauses_even_while_plex_is_down_and_delays_the_probe():
    after, _ = h.after_check(OPEN, h.CheckResult(enabled=False), NOW, {"enabled": "Stash"})
    assert after.pause.kind == "disabled" and after.pause.source == "Stash"
    assert after.breaker.state == "open" and after.breaker.next_probe_at == NOW + 2


def test_unreadable_settings_keep_checking_with_backoff():
    result = h.CheckResult(settings_error=STASH_DOWN)
    after, _ = h.after_check(paused("stash_down"), result, NOW, {})
    assert after.pause.kind == "stash_down" and after.pause.next_check_at == NOW + 10


def test_check_delays_back_off_and_cap():
    assert [pauses.check_delay(n) for n in range(6)] == [5, 10, 20, 40, 60, 60]


def _every_subclass(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _every_subclass(direct))]


@pytest.mark.parametrize("error_type", _every_subclass(errors.SyncError), ids=lambda t: t.__name__)
def test_every_failure_can_be_shared_by_the_scenes_that_met_it(error_type):
    """One failure of a request made for several scenes reaches each of them: the copies keep
    class, message and fields, are marked shared, and carry none of the first attempt's writes."""
    needs = {"setting": "plex_library"} if issubclass(error_type, errors.ConfigError) else {}
    first = error_type("Plex has no library named 'Moviez'", server="plex", status=404, **needs)
    first.unsettled.append(object())

    copy = first.shared_copy()

    assert type(copy) is error_type and copy.message == first.message and copy.status == 404
    assert copy.shared and not first.shared and copy.unsettled == [] and first.unsettled
    assert str(copy) == str(first)
    if needs:
        assert copy.setting == "plex_library"
