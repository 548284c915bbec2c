"""Put jobs into given states through the store's own API (a routing Decision, as the worker
applies it), for tests that need a queue to look at."""

from __future__ import annotations

from typing import Any

from stash2plex.records import Decision, Job
from stash2plex.store.db import Store


def wait(
    store: Store,
    job: Job,
    *,
    reason: str,
    due_at: float,
    attempts: int = 0,
    error: str | None = None,
    error_class: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    store.apply(
        job,
        Decision(
            "wait",
            attempts,
            reason=reason,  # type: ignore[arg-type]
            due_at=due_at,
            message=error,
            error_class=error_class,  # type: ignore[arg-type]
            detail=detail,
        ),
    )


def done(store: Store, job: Job) -> None:
    store.apply(job, Decision("done", 0, status="synced"))


def dead(store: Store, job: Job, *, error_class: str, message: str, attempts: int) -> None:
    store.apply(
        job,
        Decision("dead_letter", attempts, error_class=error_class, message=message),  # type: ignore[arg-type]
    )
