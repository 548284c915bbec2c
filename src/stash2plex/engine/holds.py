"""What a probe or settings check does to the holds. Pure.

While the queue is held, the worker checks on a timer: it re-reads the settings and, when Plex
is what holds the queue (breaker open, token rejected, a Plex setting wrong), probes Plex with
them. `after_check` turns what the check found into the next holds and the events to record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from stash2plex import errors
from stash2plex.engine import breaker as breakers
from stash2plex.engine import pauses
from stash2plex.records import Event, Holds, Pause

# Pauses that end as soon as the settings can be read and say "enabled".
SETTINGS_PAUSES = ("disabled", "not_configured", "stash_down", "stash_auth")
# Pauses that end only when Plex serves with the current settings.
PLEX_PAUSES = ("plex_auth", "config")


@dataclass(frozen=True)
class CheckResult:
    """What one check found.

    `settings_error`: the settings (or Stash) could not be read. `enabled`: the `enabled`
    setting. `probed`: Plex was probed; then `plex_error` is None when it serves, else why not.
    `plex_answered`: Plex has ever answered with the settings probed.
    """

    settings_error: errors.SyncError | None = None
    enabled: bool = True
    probed: bool = False
    plex_error: errors.SyncError | None = None
    plex_answered: bool = True  # Plex has answered with the settings probed (now or before)


def checked_now(holds: Holds, now: float) -> Holds:
    """A person asked for the queue (a command, a task, a health check that found Plex
    serving): the breaker's probe and the pause's check are due `now`, not at their backed-off
    times, since what held the queue may just have been fixed. (A hook only makes the pause's
    check due: a bulk import must not probe a Plex that is down once per save.)"""
    breaker = holds.breaker
    if not breaker.is_closed:
        breaker = replace(breaker, next_probe_at=min(breaker.next_probe_at or now, now))
    pause = None if holds.pause is None else pauses.nudged(holds.pause, now)
    return replace(holds, breaker=breaker, pause=pause, nudged_at=now)


def needs_plex_probe(holds: Holds) -> bool:
    """True when only a probe of Plex can lift what holds the queue."""
    pause = holds.pause
    return not holds.breaker.is_closed or (pause is not None and pause.kind in PLEX_PAUSES)


def after_check(
    holds: Holds, result: CheckResult, now: float, sources: Mapping[str, str]
) -> tuple[Holds, list[Event]]:
    """The holds after a check, and the events worth recording."""
    breaker, pause = holds.breaker, holds.pause
    events: list[Event] = []
    if result.settings_error is not None:
        found = pauses.pause_for(result.settings_error, now, dict(sources)) or Pause(
            kind="stash_down",
            message=result.settings_error.message,
            since=now,
            next_check_at=now,
        )
        pause = _still_paused(pause, found, now, events)
        return replace(holds, breaker=_not_probed(breaker, now), pause=pause), events
    if not result.enabled:
        found = pauses.disabled_pause(now, sources.get("enabled", ""))
        pause = _still_paused(pause, found, now, events)
        return replace(holds, breaker=_not_probed(breaker, now), pause=pause), events
    if pause is not None and pause.kind in SETTINGS_PAUSES:
        events.append(Event("info", "resumed", f"resumed: {_resolved(pause)}"))
        pause = None
    if not result.probed:
        return replace(holds, pause=pause), events
    error = result.plex_error
    if error is None:
        breaker = _recovered(breaker, now, events)
        if pause is not None:
            events.append(Event("info", "resumed", f"resumed: {_resolved(pause)}"))
            pause = None
        return replace(holds, breaker=breaker, pause=pause), events
    if not result.plex_answered and pauses.never_reached(error):
        # Never reached with these settings (changed since, or a typo): a setting to check,
        # named anew at each check; an outage of the settings before ends here.
        address = pauses.pause_for(pauses.address_to_check(error), now, dict(sources))
        assert address is not None  # a ConfigError is always a pause
        breaker = breakers.BreakerState() if not breaker.is_closed else breaker
        pause = _still_paused(pause, address, now, events)
        return replace(holds, breaker=breaker, pause=pause), events
    if pause is not None and pauses.about_reaching_plex(pause) and pauses.never_reached(error):
        # The settings are the ones Plex answered with before, and it is down now: an outage.
        breaker, _ = breakers.record_server_down(breaker, now, error.message)
        events.append(breakers.outage_event(error.message))
        return replace(holds, breaker=breaker, pause=None), events
    found_pause = pauses.pause_for(error, now, dict(sources))
    if found_pause is not None:
        # Plex answered (a 401, a certificate it presented): it is up, but a setting is wrong.
        breaker = _recovered(breaker, now, events)
        pause = _still_paused(pause, found_pause, now, events)
    elif not breaker.is_closed:
        breaker, _ = breakers.probe_failed(breaker, now)
    elif pause is not None:
        pause = pauses.check_failed(pause, now)
    return replace(holds, breaker=breaker, pause=pause), events


def plex_down_found(holds: Holds, error: errors.SyncError, now: float) -> tuple[Holds, list[Event]]:
    """Plex, which answered before with these settings, was found down outside a scene's sync
    (a person's Sync reading its libraries): an outage, told and probed as one."""
    breaker, change = breakers.record_server_down(holds.breaker, now, error.message)
    events = [breakers.outage_event(error.message)] if change is not None else []
    return replace(holds, breaker=breaker), events


def _still_paused(current: Pause | None, found: Pause, now: float, events: list[Event]) -> Pause:
    if current is None or current.kind != found.kind or current.message != found.message:
        events.append(Event("error", "pause", f"queue paused: {found.message}"))
    if current is None:
        return found
    return pauses.check_failed(current, now, found)


def _not_probed(state: breakers.BreakerState, now: float) -> breakers.BreakerState:
    """Plex could not be probed (settings unreadable, switched off): try again later."""
    if state.is_closed:
        return state
    return replace(state, next_probe_at=now + breakers.probe_delay(state.probes))


def _recovered(
    state: breakers.BreakerState, now: float, events: list[Event]
) -> breakers.BreakerState:
    if state.is_closed:
        return state
    closed, _ = breakers.probe_succeeded(state, now)
    if not state.trials_failed:  # later passing probes of the same outage were not the truth
        down_for = now - (state.opened_at or now)
        events.append(Event("info", "recovered", f"Plex is back online after {duration(down_for)}"))
    return closed


def _resolved(pause: Pause) -> str:
    return {
        "disabled": "Stash2Plex is switched on again",
        "not_configured": "the required settings are set",
        "stash_down": "Stash answers again",
        "stash_auth": "Stash accepts the credentials again",
        "plex_auth": "Plex accepts the token again",
        "config": f"the setting {pause.setting or 'in question'} works now",
    }[pause.kind]


def duration(seconds: float) -> str:
    """A short human duration: '42 s', '3 min 5 s', '2 h 10 min'."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
