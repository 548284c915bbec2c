"""The circuit breaker in front of Plex: pure transitions over `records.BreakerState`.

It opens in two ways:
- at once, on an unambiguous sign that Plex is down (connection refused, 503 maintenance);
- by behaviour, when consecutive failures of *different* scenes (5xx, timeouts, dropped
  connections) pile up within a short window. A server that fails every request is down,
  whatever the status code; one bad item failing repeatedly is not.

While open, the worker probes Plex's health on a timer with backoff (2 s, 4 s, 8 s, then every
10 s: a probe costs two small requests, and an outage is recorded as ending at the first passing
one, so a long gap would overstate it). The first passing probe closes the breaker (the outage
ends then) on trial: if the next job fails the same way, it reopens at once, the probe backoff
continues, and the outage is resumed rather than counted again. A probe only reads, so while
Plex reads fine but fails writes (its disk full, its database read-only) every probe passes and
the job after it fails: such failed trials space the next ones out (20 s, 40 s, 80 s, then
every 2 minutes), and only the first passing probe of an outage is announced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stash2plex.records import BreakerPhase, BreakerState, Event

CLOSED: BreakerPhase = "closed"
OPEN: BreakerPhase = "open"
HALF_OPEN: BreakerPhase = "half_open"

FAILURE_WINDOW_SECONDS = 60.0
FAILURE_THRESHOLD = 5  # consecutive failures within the window...
DISTINCT_SCENES = 3  # ...of at least this many scenes
PROBE_BASE_SECONDS = 2.0
PROBE_CAP_SECONDS = 10.0
TRIAL_CAP_SECONDS = 120.0


@dataclass(frozen=True)
class Transition:
    """A change of phase worth recording: closed -> open starts an outage, -> closed ends it."""

    old: BreakerPhase
    new: BreakerPhase
    at: float


def outage_event(message: str) -> Event:
    """What is said when an outage starts (`message`: the failure that opened the breaker)."""
    return Event("error", "outage", f"Plex is down: {message}; jobs wait for it")


def probe_delay(probes_failed: int, trials_failed: int = 0) -> float:
    """Seconds before the next probe: 2, 4, 8, then 10 (capped); after failed trials 20, 40,
    80 ... up to TRIAL_CAP_SECONDS."""
    if trials_failed:
        return min(TRIAL_CAP_SECONDS, PROBE_CAP_SECONDS * 2 ** min(trials_failed, 10))
    return min(PROBE_CAP_SECONDS, PROBE_BASE_SECONDS * 2 ** max(0, probes_failed))


def _open(state: BreakerState, now: float, reason: str) -> tuple[BreakerState, Transition]:
    # A failure on trial means the passing probe was not the whole truth (Plex reads fine but
    # fails writes): the probe backoff goes on, and the store resumes the same outage.
    probes = state.probes + 1 if state.trial else 0
    trials_failed = state.trials_failed + 1 if state.trial else 0
    opened = BreakerState(
        state=OPEN,
        opened_at=now,
        probes=probes,
        next_probe_at=now + probe_delay(probes, trials_failed),
        failures=(),
        trial=False,
        reason=reason,
        trials_failed=trials_failed,
    )
    return opened, Transition(state.state, OPEN, now)


def record_server_down(
    state: BreakerState, now: float, reason: str = ""
) -> tuple[BreakerState, Transition | None]:
    """Plex refused the connection or is in maintenance: open now (no-op if already open)."""
    if state.state == CLOSED:
        return _open(state, now, reason)
    if state.state == HALF_OPEN:
        return probe_failed(state, now)
    return state, None


def record_failure(
    state: BreakerState, now: float, scene_id: int, reason: str = ""
) -> tuple[BreakerState, Transition | None]:
    """A job failed with a server-side symptom (5xx, timeout, dropped connection).

    Opens the breaker when the failure is the first after a probe closed it, or when the
    consecutive failures within the window reach the threshold across enough scenes.
    """
    if state.state != CLOSED:
        return state, None
    if state.trial:
        return _open(state, now, reason)
    recent = tuple(f for f in state.failures if now - f[0] <= FAILURE_WINDOW_SECONDS)
    failures = (*recent, (now, scene_id))
    if len(failures) >= FAILURE_THRESHOLD and len({f[1] for f in failures}) >= DISTINCT_SCENES:
        return _open(state, now, reason)
    return replace(state, failures=failures), None


def record_success(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    """A job went through: the failure streak and any trial end."""
    del now
    if state.state == CLOSED and not state.failures and not state.trial and not state.probes:
        return state, None
    if state.state == CLOSED:
        return BreakerState(), None
    return state, None


def start_probe(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    """Open -> half-open while a health probe runs."""
    if state.state == OPEN:
        return replace(state, state=HALF_OPEN), Transition(OPEN, HALF_OPEN, now)
    return state, None


def probe_failed(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    """The probe failed: open again, the next probe later."""
    probes = state.probes + 1
    delay = probe_delay(probes, state.trials_failed)
    reopened = replace(state, state=OPEN, probes=probes, next_probe_at=now + delay)
    return reopened, (Transition(state.state, OPEN, now) if state.state != OPEN else None)


def probe_succeeded(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    """Plex serves again: close (the outage ends now), on trial until a job succeeds."""
    if state.state == CLOSED:
        return state, None
    closed = BreakerState(
        state=CLOSED, probes=state.probes, trial=True, trials_failed=state.trials_failed
    )
    return closed, Transition(state.state, CLOSED, now)


def probe_due(state: BreakerState, now: float) -> bool:
    """True when the breaker is not closed and its next probe time has come."""
    return state.state != CLOSED and (state.next_probe_at is None or now >= state.next_probe_at)
