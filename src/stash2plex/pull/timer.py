"""When the worker runs the catch-up pull: every `pull_interval_minutes`, on its own timers.

`next_pull_at` is the whole schedule, a pure function of what the store remembers; the worker
calls `PullTimer.tick` on every round and sleeps no longer than `PullTimer.next_due_at`.
A failed pull is tried again sooner (Plex or Stash may be back by then), but never in a loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from stash2plex.engine.context import Context
from stash2plex.errors import SyncError, redact
from stash2plex.pull.pull import TIMER_KEY
from stash2plex.store.db import Store

log = logging.getLogger("stash2plex.pull")

RETRY_AFTER_FAILURE_SECONDS = 60.0


def next_pull_at(last_attempt_at: float | None, failed: bool, interval_seconds: float) -> float:
    """When the next pull is due (epoch seconds); `-inf` when none ran yet (due at once)."""
    if last_attempt_at is None:
        return float("-inf")
    wait = min(interval_seconds, RETRY_AFTER_FAILURE_SECONDS) if failed else interval_seconds
    return last_attempt_at + wait


class PullTimer:
    """The pull's place on the worker's timers. `run` is the pull (injected for tests)."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        run: Callable[..., Any] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        if run is None:
            from stash2plex.pull.pull import run_pull

            run = run_pull
        self.run = run

    def _state(self) -> dict[str, Any]:
        return self.store.get_value(TIMER_KEY) or {}

    def next_due_at(self, context: Context | None) -> float | None:
        """When the worker must wake for the next pull; None when pulling is off."""
        if context is None or not context.config.pulls:
            return None
        state = self._state()
        return next_pull_at(
            state.get("last_attempt_at"),
            bool(state.get("failed")),
            context.config.pull_interval_minutes * 60.0,
        )

    def tick(self, context: Context | None) -> bool:
        """Run the pull if it is due. Never raises: a failure is an event and a sooner retry.
        Returns True when a pull ran."""
        due = self.next_due_at(context)
        if context is None or due is None or self.clock() < due:
            return False
        started = self.clock()
        # The pull records its own start too; this covers a pull that fails before it.
        self.store.put_value(TIMER_KEY, {"last_attempt_at": started, "failed": False})
        try:
            report = self.run(context, clock=self.clock)
        except SyncError as exc:
            message = redact(exc.message, context.config.secrets())
            self.store.put_value(TIMER_KEY, {"last_attempt_at": started, "failed": True})
            self.store.add_event("warning", "pull", f"pull from Plex failed: {message}")
            log.warning("pull from Plex failed: %s", message)
            return True
        if getattr(report, "busy", False):
            return True
        summary = report.summary() if hasattr(report, "summary") else str(report)
        wrote = getattr(report, "stash_writes", 0) or getattr(report, "ratings_to_plex", 0)
        if wrote:
            self.store.add_event("info", "pull", f"pulled from Plex: {summary}")
        log.info("pulled from Plex: %s", summary)
        return True
