"""When the worker reconciles: every `reconcile_interval`, and after each Plex outage.

`next_reconcile_at` is the whole schedule, a pure function of the interval and the last run
the store recorded (by anyone: the schedule, a task, the command line). The worker calls
`ReconcileTimer.tick` on every round and sleeps no longer than `ReconcileTimer.next_due_at`.

- The first scheduled run comes one interval after the store was created, not at once: a
  fresh install's first "Sync All Scenes" is not slowed by a reconcile finding every scene
  not synced yet.
- A scheduled run waits for an idle queue: live edits go first; it repairs what it finds
  (as "Reconcile and Repair"), through the same queue.
- A run that failed, or was interrupted, is tried again sooner, never in a loop.
- An outage that ended is reconciled at the next round, whatever the interval says
  (`run.reconcile_outage`): cheap, it reads only the scenes Stash changed during it.
- The plugin's worker exits when idle, so the due time is kept in the store: every task and
  hook that finds it passed starts a worker (`plugin.entry.wake_worker`), which reconciles at
  its first idle round. `stash2plex serve` runs the worker all the time: it wakes for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from stash2plex.engine.context import Context
from stash2plex.errors import SyncError, redact
from stash2plex.store.db import CREATED_AT_KEY, RECONCILE_DUE_KEY, Store

log = logging.getLogger("stash2plex.reconcile")

INTERVALS: dict[str, float | None] = {
    "off": None,
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 7 * 86400.0,
}
RETRY_AFTER_FAILURE_SECONDS = 900.0
# Another reconcile holds the lock (a task): look again after this long.
BUSY_RETRY_SECONDS = 60.0
# Runs that count for the schedule: whole-library reconciles, whoever started them.
FULL_TRIGGERS = ("schedule", "task", "command")
# Outages that ended longer ago than this are not reconciled any more (a worker that did not
# run for weeks: the next scheduled reconcile covers everything anyway).
OUTAGE_LOOKBACK_SECONDS = 7 * 86400.0


def next_reconcile_at(
    interval_seconds: float | None,
    last_started_at: float | None,
    last_state: str | None,
    created_at: float | None,
) -> float | None:
    """When the next scheduled reconcile is due (epoch seconds); None when switched off.

    `last_*`: the newest whole-library run (any trigger); `created_at`: when the store was
    created (the first run comes one interval later).
    """
    if interval_seconds is None:
        return None
    if last_started_at is None:
        return (created_at if created_at is not None else float("-inf")) + interval_seconds
    if last_state in ("failed", "interrupted", "running"):
        # "running" here means a run that never recorded its end (a killed worker).
        return last_started_at + min(interval_seconds, RETRY_AFTER_FAILURE_SECONDS)
    return last_started_at + interval_seconds


class ReconcileTimer:
    """The reconcile's place on the worker's timers.

    `store`: returns the worker's current store (it may reopen it); `run` and `after_outage`
    are the reconcile and the outage reconcile (injected for tests); `should_stop`: the
    worker was asked to stop (a run in progress ends, recorded as interrupted).
    """

    def __init__(
        self,
        store: Callable[[], Store],
        clock: Callable[[], float] = time.time,
        *,
        run: Callable[..., Any] | None = None,
        after_outage: Callable[..., Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        if run is None or after_outage is None:
            from stash2plex.reconcile.run import reconcile_outage, run_reconcile

            run = run or run_reconcile
            after_outage = after_outage or reconcile_outage
        self.run = run
        self.after_outage = after_outage
        self.should_stop = should_stop or (lambda: False)
        self._busy_until = float("-inf")
        self._remembered: float | str | None = "unknown"
        self._outages_retry_at = float("-inf")

    def next_due_at(self, context: Context | None) -> float | None:
        """When the worker must wake for the next reconcile; None when none is scheduled."""
        if context is None:
            return None
        store = self.store()
        tables = store.reconciliation()
        if tables.outages_to_reconcile(since=self.clock() - OUTAGE_LOOKBACK_SECONDS):
            return max(self.clock(), self._outages_retry_at)
        interval = INTERVALS.get(context.config.reconcile_interval)
        last = tables.last_started(FULL_TRIGGERS)
        due = next_reconcile_at(
            interval,
            None if last is None else float(last["started_at"]),
            None if last is None else str(last["state"]),
            store.get_value(CREATED_AT_KEY),
        )
        due = None if due is None else max(due, self._busy_until)
        if due != self._remembered:
            # For starters of a worker that read no settings (tasks, hooks): see
            # `store.db.RECONCILE_DUE_KEY`.
            store.put_value(RECONCILE_DUE_KEY, due)
            self._remembered = due
        return due

    def tick(self, context: Context | None) -> bool:
        """Reconcile what is due (outages first). Never raises: a failure is an event and a
        sooner retry. Returns True when something ran."""
        if context is None:
            return False
        store = self.store()
        ran = self._outages(context, store)
        due = self.next_due_at(context)
        if due is None or self.clock() < due or store.due_now() > 0:
            return ran
        from stash2plex.reconcile.run import with_store

        try:
            report = self.run(
                with_store(context, store),
                fix=True,
                trigger="schedule",
                clock=self.clock,
                should_stop=self.should_stop,
            )
        except SyncError as exc:
            self.next_due_at(context)  # the sooner retry, for whoever starts the next worker
            message = redact(exc.message, context.config.secrets())
            store.add_event("warning", "reconcile", f"scheduled reconcile failed: {message}")
            log.warning("scheduled reconcile failed: %s", message)
            return True
        if getattr(report, "state", "") == "busy":
            self._busy_until = self.clock() + BUSY_RETRY_SECONDS
            self.next_due_at(context)
            return ran
        self.next_due_at(context)  # the next one, kept for whoever starts the next worker
        summary = report.summary() if hasattr(report, "summary") else str(report)
        store.add_event("info", "reconcile", f"scheduled reconcile: {summary}")
        log.info("scheduled reconcile: %s", summary)
        return True

    def _outages(self, context: Context, store: Store) -> bool:
        from stash2plex.reconcile.run import outage_summary, with_store

        if self.clock() < self._outages_retry_at:
            return False
        outages = store.reconciliation().outages_to_reconcile(
            since=self.clock() - OUTAGE_LOOKBACK_SECONDS
        )
        for outage in outages:
            try:
                summary = self.after_outage(with_store(context, store), outage, clock=self.clock)
            except SyncError as exc:
                message = redact(exc.message, context.config.secrets())
                log.warning("reconcile after the outage failed (tried again): %s", message)
                self._outages_retry_at = self.clock() + BUSY_RETRY_SECONDS
                return True
            text = f"Plex outage over: {outage_summary(summary)}"
            store.add_event("info", "reconcile", text)
            log.info(text)
        return bool(outages)
