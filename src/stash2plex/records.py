"""Record types shared by the store, the clients, the matching and the engine.

A leaf module: standard library only, so the hook path may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from stash2plex.vocabulary import ErrorClass, SyncStatus, WaitReason


@dataclass(frozen=True)
class Job:
    """One scene's job as stored: "scene X is dirty", with its state and last failure."""

    scene_id: int
    state: str
    reason: str | None
    attempts: int
    due_at: float
    generation: int
    source: str | None
    enqueued_at: float
    last_error: str | None
    last_error_class: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class UnsettledWrite:
    """A write to one Plex item that timed out, which Plex may still apply late: what it would
    make the item show, a print per key (title, genre, poster... see sync.settle), and the
    collections and labels it made ours ("collection"/"label" -> names)."""

    rating_key: int
    shown: dict[str, str]
    ours: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class UnsettledCheck:
    """The writes to one item that timed out, as the store keeps them until checked: how many
    checks could not read Plex, every print per key with when its write timed out (the first
    time, epoch seconds), and every collection or label name they made ours."""

    scene_id: int
    rating_key: int
    tries: int
    shown: dict[str, dict[str, float]]
    ours: dict[str, list[str]]


@dataclass(frozen=True)
class Link:
    """A scene's Plex item and the fingerprints of what we last pushed to it."""

    scene_id: int
    rating_key: int
    section_id: int
    plex_path: str
    fingerprints: dict[str, str]
    synced_at: float
    owned: dict[str, Any]
    position: int = 0  # 0: the scene's primary item; more when Plex holds its files apart


@dataclass(frozen=True)
class ListedItem:
    """One Plex item as a library listing shows it."""

    rating_key: int
    section_id: int
    files: tuple[tuple[str, int | None], ...]
    collections: tuple[str, ...] = ()
    # The genre and actor tags the listing shows (truncated: at most ~2 genres, 3 actors).
    genres: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    # When Plex last changed the item (epoch seconds, Plex's clock; any edit, refresh, lock or
    # image change moves it), and the text fields the listing shows: what reconciliation
    # compares to tell an unchanged item without reading it.
    updated_at: int | None = None
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IndexEntry:
    """One file of one Plex item in the stored library index."""

    rating_key: int
    section_id: int
    path: str
    size: int | None


# ---------------------------------------------------------------------------- holds
BreakerPhase = Literal["closed", "open", "half_open"]
# A pause is a hold a person lifts by fixing something (a setting, a credential) or, for
# "stash_down", one that lifts when Stash answers again. The breaker is the hold for Plex.
PauseKind = Literal["plex_auth", "stash_auth", "config", "not_configured", "disabled", "stash_down"]


@dataclass(frozen=True)
class BreakerState:
    """The circuit breaker in front of Plex (transitions: `engine.breaker`).

    `failures`: recent consecutive failures as (epoch seconds, scene id), oldest first; they
    open the breaker when they look like a sick server rather than a bad item. `probes`:
    failed health probes since opening (drives the probe backoff). `trial`: closed by a probe,
    with no job succeeded since (one more failure reopens at once). `trials_failed`: how
    often in this outage a probe passed and the job after it failed all the same (Plex reads
    fine but fails writes); it spaces the next trials out.
    """

    state: BreakerPhase = "closed"
    opened_at: float | None = None
    probes: int = 0
    next_probe_at: float | None = None
    failures: tuple[tuple[float, int], ...] = ()
    trial: bool = False
    reason: str = ""
    trials_failed: int = 0

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"


@dataclass(frozen=True)
class Pause:
    """Why the queue is held until something outside Plex's health changes.

    `setting` names what to fix and `source` where its value came from (Stash's plugin
    settings, an environment variable, a file). Checks back off: `checks` failed so far,
    the next at `next_check_at` (epoch seconds); a hook or task makes it due at once.
    """

    kind: PauseKind
    message: str
    since: float
    next_check_at: float
    checks: int = 0
    setting: str = ""
    source: str = ""


@dataclass(frozen=True)
class Holds:
    """Everything that stops the drain, as one value the store keeps.

    `ramp_started_at`: when the last recovery began (the drain is paced for a while after).
    `nudged_at`: when a hook or task last asked the worker to re-read the settings.
    """

    breaker: BreakerState = BreakerState()
    pause: Pause | None = None
    ramp_started_at: float | None = None
    nudged_at: float = 0.0

    @property
    def held(self) -> bool:
        return not self.breaker.is_closed or self.pause is not None

    def next_check_at(self) -> float | None:
        """When the next probe or settings check is due (None when nothing holds)."""
        times = []
        if not self.breaker.is_closed:
            times.append(self.breaker.next_probe_at or 0.0)
        if self.pause is not None:
            times.append(self.pause.next_check_at)
        return min(times) if times else None


# ---------------------------------------------------------------------------- decisions
Action = Literal["done", "retry", "wait", "dead_letter"]
EventLevel = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Event:
    """Something a person should see later (the worker has no Stash log)."""

    level: EventLevel
    kind: str
    message: str


@dataclass(frozen=True)
class Decision:
    """What to do with one job. `due_at` None with action "wait": parked until a hold lifts.

    `breaker` is the new breaker state when it changed; `pause` a pause to set; `stop`: nothing
    else in the batch can succeed now. Produced by `engine.routing.route`, applied by the store
    in one transaction.
    """

    action: Action
    attempts: int
    status: SyncStatus | None = None
    reason: WaitReason | None = None
    due_at: float | None = None
    error_class: ErrorClass | None = None
    message: str | None = None
    detail: dict[str, Any] | None = None
    breaker: BreakerState | None = None
    pause: Pause | None = None
    stop: bool = False
    event: Event | None = None


NO_REASON = "no reason recorded"


class Retry(NamedTuple):
    """A job waiting for a retry: its scene, when it is tried again (epoch seconds), its last
    error, whether that was a write that timed out (`unsettled`: it may still land, so the
    retry waits until it cannot, however soon it is asked for), and its tries so far and in
    all."""

    scene_id: int
    due_at: float
    error: str
    unsettled: bool = False
    attempts: int = 0  # failed tries so far
    max_attempts: int | None = None  # the tries it gets before the dead letters, if recorded
