"""The job lifecycle as data: what happens to a job after one sync attempt. Pure.

`route` maps (job, outcome or classified error, breaker, attempts, now, policy, settings) to a
`Decision`: done, retry at a time, wait with a reason (until a time, or until a hold lifts), or
dead-letter with a reason; plus any change to the holds (breaker transition, pause) and
whether the rest of the batch must stop. The worker applies a decision, its hold changes and
its event in one store transaction, so a kill never leaves half of one.

| outcome / error class          | decision                                                    |
|--------------------------------|-------------------------------------------------------------|
| synced / unchanged / no file   | done                                                        |
| transient from Plex            | retry with backoff (attempts + 1), dead letter at the limit;|
|                                | opens the breaker when failures look like a sick server    |
|                                | (then: wait `plex_down`, attempt not counted, stop)         |
| transient (Stash, internal)    | retry with backoff (attempts + 1), dead letter at the limit |
| server down (Plex)             | wait `plex_down` until the breaker closes; stop             |
|   ... where it never answered  | wait `settings`; pause naming plex_url; stop                |
| server down (Stash)            | wait `stash_down` until Stash answers; pause; stop          |
| auth (Plex / Stash)            | wait `auth`; pause naming the credential; stop              |
| config / not configured        | wait `settings`; pause naming the setting; stop             |
| not in Plex                    | wait `not_in_plex`, re-checked on a timer (or done/skipped  |
|                                | with `skip_not_found`)                                      |
| ambiguous / conflict           | wait with candidates / scenes, re-checked on a timer        |
| permanent                      | dead letter at once                                         |
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from stash2plex import errors
from stash2plex.engine import breaker as breakers
from stash2plex.engine import pauses
from stash2plex.engine.backoff import RetryPolicy, retry_delay
from stash2plex.records import Action, BreakerState, Decision, Event, Job, Pause, PauseKind
from stash2plex.vocabulary import SyncStatus, WaitReason


@dataclass(frozen=True)
class RoutePolicy:
    """Timers of the waiting states (seconds) and the retry backoff."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    not_in_plex_recheck: float = 60.0
    ambiguous_recheck: float = 3600.0
    conflict_recheck: float = 3600.0


@dataclass(frozen=True)
class RouteSettings:
    """What the user's settings say about routing; `sources`: where each value came from."""

    max_attempts: int = 5
    skip_not_found: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)
    # Seconds a write that timed out may still take to land in Plex (twice plex_timeout):
    # its retry waits that long, so a newer write of the scene never lands before it.
    unsettled_write_seconds: float = 0.0
    # Whether Plex has ever answered at the plex_url in use. Where it never did, "not
    # reachable" is most likely a mistyped address: a setting to check, not an outage.
    plex_answered: bool = True


Result = SyncStatus | errors.SyncError

# The wait reason of the job whose failure set each pause.
PAUSE_WAITS: dict[PauseKind, WaitReason] = {
    "stash_down": "stash_down",
    "plex_auth": "auth",
    "stash_auth": "auth",
    "config": "settings",
    "not_configured": "settings",
    "disabled": "settings",
}


def route(
    job: Job,
    result: Result,
    *,
    breaker: BreakerState,
    now: float,
    policy: RoutePolicy,
    settings: RouteSettings,
    rng: random.Random | None = None,
) -> Decision:
    """Decide a job's next state from one attempt's result (a sync status or an error)."""
    if not isinstance(result, errors.SyncError):
        state, _ = breakers.record_success(breaker, now)
        back = None
        if breaker.trial and breaker.trials_failed:  # its passing probes were not announced
            back = Event("info", "recovered", "Plex takes writes again; the queue goes on")
        return Decision(
            "done",
            0,
            status=result,
            breaker=state if state != breaker else None,
            event=back,
        )
    error = result
    if not settings.plex_answered and pauses.never_reached(error):
        error = pauses.address_to_check(error)
    kind = error.error_class
    pause = pauses.pause_for(error, now, dict(settings.sources))
    if pause is not None:
        reason = PAUSE_WAITS[pause.kind]
        paused = Event("error", "pause", f"queue paused: {error.message}")
        return _failed("wait", job.attempts, error, reason=reason, pause=pause, event=paused)
    if kind == errors.SERVER_DOWN:
        state, change = breakers.record_server_down(breaker, now, error.message)
        outage = _outage_event(change, error.message, breaker)
        return _failed("wait", job.attempts, error, "plex_down", breaker=state, event=outage)
    if kind == errors.TRANSIENT:
        return _transient(job, error, breaker, now, policy, settings, rng)
    if kind == errors.NOT_IN_PLEX:
        if settings.skip_not_found:
            event = Event("info", "not_in_plex", f"scene {job.scene_id} dropped: {error.message}")
            return Decision("done", 0, status="skipped", event=event)
        due = now + policy.not_in_plex_recheck
        return _failed("wait", job.attempts, error, "not_in_plex", due_at=due, stop=False)
    if kind == errors.AMBIGUOUS:
        due = now + policy.ambiguous_recheck
        return _failed("wait", job.attempts, error, "ambiguous", due_at=due, stop=False)
    if kind == errors.CONFLICT:
        due = now + policy.conflict_recheck
        return _failed("wait", job.attempts, error, "conflict", due_at=due, stop=False)
    return _dead_letter(job, error, job.attempts + 1)


def _failed(
    action: Action,
    attempts: int,
    error: errors.SyncError,
    reason: WaitReason | None = None,
    *,
    due_at: float | None = None,
    breaker: BreakerState | None = None,
    pause: Pause | None = None,
    stop: bool = True,
    event: Event | None = None,
) -> Decision:
    """A decision after a failure, carrying the error for the job's record."""
    return Decision(
        action,
        attempts,
        reason=reason,
        due_at=due_at,
        error_class=error.error_class,
        message=error.message,
        detail=error.detail,
        breaker=breaker,
        pause=pause,
        stop=stop,
        event=event,
    )


def _transient(
    job: Job,
    error: errors.SyncError,
    breaker: BreakerState,
    now: float,
    policy: RoutePolicy,
    settings: RouteSettings,
    rng: random.Random | None,
) -> Decision:
    state = breaker
    if error.server == "plex" and not isinstance(error, errors.InternalError):
        if not breaker.is_closed:
            # Scenes in flight when the breaker opened fail the same way: they wait for Plex
            # with the rest, attempts untouched.
            return _failed("wait", job.attempts, error, "plex_down")
        if not error.shared:  # a failure several scenes share counts once
            state, change = breakers.record_failure(breaker, now, job.scene_id, error.message)
        else:
            change = None
        if change is not None:
            # Plex fails for everyone: this is an outage. The job waits for the breaker and
            # its attempt is not counted (nor, in the store, those of the streak before it).
            event = _outage_event(change, error.message, breaker)
            return _failed("wait", job.attempts, error, "plex_down", breaker=state, event=event)
    attempts = job.attempts + 1
    if attempts >= settings.max_attempts:
        decision = _dead_letter(job, error, attempts)
    else:
        due = now + retry_delay(attempts, policy.retry, rng)
        if (error.detail or {}).get(errors.UNSETTLED_WRITE):
            due = max(due, now + settings.unsettled_write_seconds)
        decision = _failed("retry", attempts, error, "retry", due_at=due, stop=False)
        detail = {**(error.detail or {}), errors.MAX_ATTEMPTS: settings.max_attempts}
        decision = replace(decision, detail=detail)
    if state != breaker:
        decision = _with_breaker(decision, state)
    return decision


def _dead_letter(job: Job, error: errors.SyncError, attempts: int) -> Decision:
    event = Event("error", "dead_letter", f"scene {job.scene_id}: {error.message}")
    return _failed("dead_letter", attempts, error, stop=False, event=event)


def _with_breaker(decision: Decision, state: BreakerState) -> Decision:
    return replace(decision, breaker=state)


def _outage_event(
    change: breakers.Transition | None, message: str, before: BreakerState
) -> Event | None:
    """ "Plex is down" when the breaker opens on a new outage. A failure on trial (a probe had
    passed) resumes the outage already told: the first such failure says that the probe's
    "back online" was not the whole truth, later ones nothing (they would be logged at every
    probe while Plex reads fine but fails writes, as with a full disk)."""
    if change is None or change.old != breakers.CLOSED:
        return None
    if not before.trial:
        return breakers.outage_event(message)
    if before.trials_failed:
        return None
    again = breakers.probe_delay(0, 1)
    return Event(
        "warning",
        "outage",
        f"Plex answers again but still fails: {message}; jobs wait, and the next try is in "
        f"{again:g} s, then less and less often",
    )
