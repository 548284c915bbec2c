"""The circuit breaker: a small pure state machine (closed, open, half-open) with an injected
clock. Its state is a plain dict so the store can keep it; a corrupt state reads as closed.

Only "server down" failures trip it (connection refused, 503 maintenance, timeouts of the
health probe). A scene that is simply not in Plex yet says nothing about Plex's health.
While open, the worker probes Plex's health on a timer with backoff (5 s, 10 s, 20 s, capped
at 60 s); a passing probe closes the breaker and the queue drains again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

FAILURE_THRESHOLD = 1  # a refused connection is unambiguous: one is enough
PROBE_BASE_SECONDS = 5.0
PROBE_CAP_SECONDS = 60.0


@dataclass(frozen=True)
class BreakerState:
    state: str = CLOSED
    failures: int = 0
    opened_at: float | None = None
    probes: int = 0  # failed probes since opening: drives the probe backoff
    next_probe_at: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> BreakerState:
        """Read a stored state; anything unreadable means closed (never block on bad data)."""
        try:
            state = cls(**data)
        except (TypeError, ValueError):
            return cls()
        if state.state not in (CLOSED, OPEN, HALF_OPEN):
            return cls()
        return state

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_closed(self) -> bool:
        return self.state == CLOSED


@dataclass(frozen=True)
class Transition:
    """A state change worth logging and recording (an outage starts or ends)."""

    old: str
    new: str
    at: float


def probe_delay(probes_failed: int) -> float:
    """5 s, 10 s, 20 s, 40 s, then 60 s between health probes while Plex is down."""
    return min(PROBE_CAP_SECONDS, PROBE_BASE_SECONDS * 2 ** max(0, probes_failed))


def record_server_down(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    failures = state.failures + 1
    if state.state == CLOSED and failures >= FAILURE_THRESHOLD:
        opened = BreakerState(OPEN, failures, now, 0, now + probe_delay(0))
        return opened, Transition(CLOSED, OPEN, now)
    if state.state == HALF_OPEN:
        reopened = replace(
            state, state=OPEN, failures=failures, next_probe_at=now + probe_delay(state.probes)
        )
        return reopened, Transition(HALF_OPEN, OPEN, now)
    return replace(state, failures=failures), None


def record_success(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    if state.state == CLOSED:
        return (state if state.failures == 0 else BreakerState()), None
    return BreakerState(), Transition(state.state, CLOSED, now)


def probe_due(state: BreakerState, now: float) -> bool:
    return state.state != CLOSED and (state.next_probe_at is None or now >= state.next_probe_at)


def start_probe(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    """Open -> half-open while a health probe runs."""
    if state.state == OPEN:
        return replace(state, state=HALF_OPEN), Transition(OPEN, HALF_OPEN, now)
    return state, None


def probe_failed(state: BreakerState, now: float) -> tuple[BreakerState, Transition | None]:
    probes = state.probes + 1
    reopened = replace(state, state=OPEN, probes=probes, next_probe_at=now + probe_delay(probes))
    return reopened, (Transition(HALF_OPEN, OPEN, now) if state.state == HALF_OPEN else None)
