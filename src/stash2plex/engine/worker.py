"""The one engine that drains the queue: leases due jobs, syncs them, routes failures by class.

It owns every timer as a real wait (retries, re-checks, health probes while Plex is down, the
gentle ramp after a recovery), so nothing depends on some other process happening to run.
Started detached by a hook, it exits after the queue has been empty for an idle period; before
exiting it releases the lock and looks once more for jobs, so a hook that saw the lock held
just before cannot be left without a worker.

Two holds stop the drain: the circuit breaker (Plex unreachable or in maintenance) and the
auth pause (Plex rejected the token). Both are lifted only by a health probe that proves Plex
is serving with the current settings.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stash2plex import errors
from stash2plex.engine import breaker
from stash2plex.engine.backoff import RetryPolicy, retry_delay
from stash2plex.engine.context import Context, build_context
from stash2plex.engine.ramp import RecoveryRamp
from stash2plex.engine.worker_lock import open_lock_file, try_lock, unlock
from stash2plex.pseudonyms import obfuscate_paths
from stash2plex.records import Job
from stash2plex.store.db import Store
from stash2plex.sync.syncer import SceneSyncer

log = logging.getLogger("stash2plex.engine.worker")

# A killed worker's jobs become due again after this (STASH2PLEX_LEASE_SECONDS overrides it).
LEASE_SECONDS = float(os.environ.get("STASH2PLEX_LEASE_SECONDS", "300"))
BATCH_SIZE = 20
POLL_SECONDS = 0.2
IDLE_EXIT_SECONDS = 30.0
# How often a scene Plex has not scanned yet is looked for again (the index is refreshed at
# most this often too). STASH2PLEX_RECHECK_SECONDS overrides it, for tests and impatient users.
NOT_IN_PLEX_RECHECK_SECONDS = float(os.environ.get("STASH2PLEX_RECHECK_SECONDS", "60"))
AMBIGUOUS_RECHECK_SECONDS = 3600.0
STASH_DOWN_RECHECK_SECONDS = 10.0
CONTEXT_RETRY_SECONDS = 30.0
# Waiting jobs parked behind a hold are released when the hold lifts, not by their due time.
PARKED_SECONDS = 365 * 86400.0
HOUSEKEEPING_SECONDS = 3600.0
DONE_JOB_RETENTION_SECONDS = 7 * 86400.0
EVENT_RETENTION_SECONDS = 30 * 86400.0

BLOCKED_KEY = "worker_blocked"
BREAKER_KEY = "breaker"
PAUSE_KEY = "auth_pause"  # the store's nudge_auth_pause knows this key too
RAMP_KEY = "recovery_started_at"
PLEX_DOWN = "plex_down"


@dataclass
class DrainReport:
    synced: int = 0
    unchanged: int = 0
    skipped: int = 0
    deferred: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.synced + self.unchanged + self.skipped + self.deferred + self.dead_lettered


class Worker:
    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        context_factory: Callable[[Store], Context] = build_context,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        idle_exit_seconds: float = IDLE_EXIT_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        ramp_seconds: float | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.sleep = sleep
        self.context_factory = context_factory
        self.policy = policy or RetryPolicy()
        self._explicit_policy = policy is not None
        self.rng = rng or random.Random()
        self.idle_exit_seconds = idle_exit_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.store = Store.open(self.data_dir, clock=clock)
        self._context: Context | None = None
        self._blocked = True  # clear any stale "blocked" left by a previous worker
        self._context_failed_at: float | None = None
        self._housekept_at = float("-inf")
        self._ramp_seconds = ramp_seconds
        self._ramp = self._restore_ramp()

    # ------------------------------------------------------------------ running
    def run(
        self,
        lock_fd: int | None = None,
        *,
        until_idle: bool = False,
        progress: Callable[[DrainReport], None] | None = None,
    ) -> DrainReport:
        """Drain while holding the worker lock.

        `until_idle`: return as soon as nothing is due or a hold stops the drain (the
        foreground "Process Queue" task); otherwise keep running until the queue has been
        empty for `idle_exit_seconds`.
        """
        fd = lock_fd if lock_fd is not None else open_lock_file(self.data_dir)
        if lock_fd is None and not try_lock(fd):
            os.close(fd)
            raise RuntimeError("another Stash2Plex worker is already draining the queue")
        report = DrainReport()
        idle_since: float | None = None
        self._event("info", "worker_started", f"worker {self.owner} started")
        try:
            while True:
                self._housekeeping()
                processed = self._step(report, progress)
                if processed:
                    idle_since = None
                    continue
                if until_idle:
                    return report
                if self.store.outstanding_jobs():
                    idle_since = None
                else:
                    idle_since = idle_since if idle_since is not None else self.clock()
                    if self.clock() - idle_since >= self.idle_exit_seconds:
                        # Release, then look once more: a hook that saw the lock held
                        # relies on us to find its job.
                        unlock(fd)
                        if not self.store.outstanding_jobs() or not try_lock(fd):
                            return report
                        idle_since = None
                        continue
                self._wait_for_work()
        finally:
            os.close(fd)
            self.store.close()

    def _step(self, report: DrainReport, progress: Callable[[DrainReport], None] | None) -> int:
        """One round: lift holds if a probe passes, then drain what is due."""
        if self._held():
            if self._probe_due():
                self._probe()
            if self._held():
                return 0
        if self._context is None and not self._ensure_context(report):
            return 0
        if not self._context.config.enabled:
            # Switched off in the settings: keep every job, re-read the settings later.
            self._set_blocked("Stash2Plex is switched off (setting `enabled`)")
            self._context, self._context_failed_at = None, self.clock()
            return 0
        try:
            self._expand_entity_changes(self._context)
        except errors.SyncError as exc:
            self._event("warning", "entity_changed", f"could not expand changes: {exc.message}")
        jobs = self.store.claim_due(self.owner, BATCH_SIZE, LEASE_SECONDS)
        for index, job in enumerate(jobs):
            self._pace()
            stop = self._process(job, report)
            if progress:
                progress(report)
            if stop:
                for rest in jobs[index + 1 :]:
                    self.store.release(rest)
                return index + 1
        return len(jobs)

    def _wait_for_work(self) -> None:
        """Sleep until the next job or probe is due, waking early when another process commits."""
        version = self.store.data_version()
        now = self.clock()
        if self._held():
            deadline = self._next_probe_at()
        elif self._context is None and self._context_failed_at is not None:
            deadline = self._context_failed_at + CONTEXT_RETRY_SECONDS
        else:
            next_due = self.store.next_due_at()
            deadline = now + self.idle_exit_seconds if next_due is None else next_due
        deadline = max(deadline, now + self.poll_seconds)
        while self.clock() < deadline:
            self.sleep(min(self.poll_seconds, max(0.0, deadline - self.clock())))
            if self.store.data_version() != version:
                return

    def _ensure_context(self, report: DrainReport) -> bool:
        now = self.clock()
        if (
            self._context_failed_at is not None
            and now - self._context_failed_at < CONTEXT_RETRY_SECONDS
        ):
            return False
        try:
            self._context = self.context_factory(self.store)
        except errors.SyncError as exc:
            self._context_failed_at = now
            self._event("error", "config", exc.message)
            self._set_blocked(exc.message)
            report.errors.append(exc.message)
            return False
        self._context_failed_at = None
        self._set_blocked(None)
        logging.getLogger("stash2plex").setLevel(
            logging.DEBUG if self._context.config.debug_logging else logging.INFO
        )
        for warning in self._context.config.warnings:
            self._event("warning", "config", warning)
        return True

    def _syncer(self, context: Context) -> SceneSyncer:
        syncer = SceneSyncer(self.store, context.stash, context.plex, context.config, self.clock)
        syncer.index.refresh_min_seconds = min(30.0, NOT_IN_PLEX_RECHECK_SECONDS)
        return syncer

    def _expand_entity_changes(self, context: Context) -> None:
        """Turn performer/studio/tag/group changes into jobs for the scenes that show them."""
        filters = {
            "performer": lambda ids: {"performers": {"value": ids, "modifier": "INCLUDES"}},
            "studio": lambda ids: {"studios": {"value": ids, "modifier": "INCLUDES", "depth": -1}},
            "tag": lambda ids: {"tags": {"value": ids, "modifier": "INCLUDES", "depth": -1}},
            "group": lambda ids: {"groups": {"value": ids, "modifier": "INCLUDES"}},
        }
        for kind, entity_id, recorded_at in self.store.entity_changes():
            build = filters.get(kind)
            scene_ids = context.stash.scene_ids(build([str(entity_id)])) if build else []
            self.store.expand_entity_change(kind, entity_id, recorded_at, scene_ids)
            if scene_ids:
                self._event(
                    "info",
                    "entity_changed",
                    f"{kind} {entity_id} changed: {len(scene_ids)} scenes queued",
                )

    # ------------------------------------------------------------------ holds and probes
    def _breaker(self) -> breaker.BreakerState:
        return breaker.BreakerState.from_dict(self.store.get_value(BREAKER_KEY))

    def _save_breaker(self, state: breaker.BreakerState, change: breaker.Transition | None) -> None:
        self.store.put_value(BREAKER_KEY, state.as_dict())
        if change is not None:
            self._event("info", "breaker", f"circuit breaker {change.old} -> {change.new}")

    def _paused(self) -> dict | None:
        return self.store.get_value(PAUSE_KEY)

    def _held(self) -> bool:
        return not self._breaker().is_closed or self._paused() is not None

    def _next_probe_at(self) -> float:
        state = self._breaker()
        if not state.is_closed:
            return state.next_probe_at or self.clock()
        pause = self._paused() or {}
        return float(pause.get("next_probe_at", self.clock()))

    def _probe_due(self) -> bool:
        return self.clock() >= self._next_probe_at()

    def _probe(self) -> None:
        """Check that Plex really serves with the current settings, and lift holds if so."""
        now = self.clock()
        breaker_open = not self._breaker().is_closed
        if breaker_open:
            self._save_breaker(*breaker.start_probe(self._breaker(), now))
        self._context = None  # re-read settings: a fixed token or URL takes effect now
        try:
            context = self.context_factory(self.store)
            health = context.plex.health()
        except errors.SyncError as exc:
            context, health = None, None
            detail = exc.message
        else:
            detail = health.detail
        now = self.clock()
        if context is not None and health is not None and health.ok:
            self._context = context
            self._recovered(now)
            return
        if "401" in detail or self._paused() is not None:
            pause = {
                "reason": detail,
                "setting": "plex_token",
                "next_probe_at": now + CONTEXT_RETRY_SECONDS,
            }
            self.store.put_value(PAUSE_KEY, pause)
        if breaker_open:
            self._save_breaker(*breaker.probe_failed(self._breaker(), now))
        self._set_blocked(f"Plex is not serving yet: {detail}")

    def _recovered(self, now: float) -> None:
        state = self._breaker()
        if not state.is_closed:
            closed, change = breaker.record_success(state, now)
            self._save_breaker(closed, change)
            waiting = self.store.make_due(PLEX_DOWN)
            outage = self.store.end_outage(now, jobs_affected=waiting)
            duration = now - (outage or {}).get("started_at", state.opened_at or now)
            self._event(
                "info",
                "recovered",
                f"Plex is back online after {_duration(duration)}; {waiting} jobs waiting",
            )
            self._ramp = RecoveryRamp(now, **self._ramp_options())
            self.store.put_value(RAMP_KEY, now)
        if self._paused() is not None:
            self.store.delete_value(PAUSE_KEY)
            resumed = self.store.make_due("auth")
            self._event("info", "auth", f"Plex accepts the token again; {resumed} jobs resumed")
        self._set_blocked(None)

    def _plex_down(self, message: str) -> None:
        state, change = breaker.record_server_down(self._breaker(), self.clock())
        self._save_breaker(state, change)
        if change is not None and change.new == breaker.OPEN and change.old == breaker.CLOSED:
            self.store.start_outage(change.at)
            self._event("error", "outage", f"Plex is down: {message}; jobs wait for it")
        self._context = None

    # ------------------------------------------------------------------ recovery ramp
    def _ramp_options(self) -> dict:
        return {} if self._ramp_seconds is None else {"ramp_seconds": self._ramp_seconds}

    def _restore_ramp(self) -> RecoveryRamp | None:
        started = self.store.get_value(RAMP_KEY)
        if started is None:
            return None
        ramp = RecoveryRamp(float(started), **self._ramp_options())
        return None if ramp.finished(self.clock()) else ramp

    def _pace(self) -> None:
        """After a recovery, start each job only when the ramp's token bucket allows."""
        if self._ramp is None:
            return
        now = self.clock()
        if self._ramp.finished(now):
            self._ramp = None
            self.store.delete_value(RAMP_KEY)
            return
        wait = self._ramp.wait_time(now)
        if wait > 0:
            self.sleep(wait)
        self._ramp.take(self.clock())

    # ------------------------------------------------------------------ one job
    def _process(self, job: Job, report: DrainReport) -> bool:
        """Sync one job and route the result. Returns True when the drain must pause."""
        assert self._context is not None
        try:
            outcome = self._syncer(self._context).sync(job.scene_id)
        except errors.SyncError as exc:
            if self._ramp is not None:
                self._ramp.record(self.clock(), ok=False)
            return self._route_failure(job, exc, report)
        except Exception as exc:  # an unexpected bug must not spin: count it as an attempt
            log.exception("unexpected error syncing scene %s", job.scene_id)
            failure = errors.TransientError(f"unexpected {type(exc).__name__}: {exc}")
            return self._route_failure(job, failure, report)
        if self._ramp is not None:
            self._ramp.record(self.clock(), ok=True)
        self.store.complete(job)
        if outcome.preserved:
            self._event(
                "info",
                "preserved",
                f"scene {job.scene_id}: left {', '.join(outcome.preserved)} alone "
                "(edited in Plex; preserve_plex_edits is on)",
            )
        if outcome.status == "synced":
            report.synced += 1
        elif outcome.status == "unchanged":
            report.unchanged += 1
        else:
            report.skipped += 1
            if outcome.status == "no_file":
                self._event(
                    "info", "skipped", f"scene {job.scene_id} has no video file; nothing to sync"
                )
        return False

    def _route_failure(self, job: Job, exc: errors.SyncError, report: DrainReport) -> bool:
        now = self.clock()
        secrets = self._context.config.secrets() if self._context else ()
        message = errors.redact(exc.message, secrets)
        kind = exc.error_class
        defer = {"attempts": job.attempts, "error": message, "error_class": kind}
        if kind == errors.TRANSIENT:
            attempts = job.attempts + 1
            if attempts >= self._max_attempts():
                self._dead_letter(job, kind, message, attempts, report)
                return False
            delay = retry_delay(attempts, self.policy, self.rng)
            self.store.defer(
                job, reason="retry", due_at=now + delay, **{**defer, "attempts": attempts}
            )
        elif isinstance(exc, errors.StashDownError):
            self.store.defer(
                job, reason="stash_down", due_at=now + STASH_DOWN_RECHECK_SECONDS, **defer
            )
            self._context = None
            self._set_blocked(message)
            report.deferred += 1
            return True
        elif kind == errors.SERVER_DOWN:
            self.store.defer(job, reason=PLEX_DOWN, due_at=now + PARKED_SECONDS, **defer)
            self._plex_down(message)
            self._set_blocked(message)
            report.deferred += 1
            return True
        elif kind == errors.NOT_IN_PLEX:
            return self._not_in_plex(job, exc, message, report)
        elif kind == errors.AMBIGUOUS:
            self.store.defer(
                job,
                reason="ambiguous",
                due_at=now + AMBIGUOUS_RECHECK_SECONDS,
                detail=exc.detail,
                **defer,
            )
        elif kind == errors.AUTH:
            self.store.defer(job, reason="auth", due_at=now + PARKED_SECONDS, **defer)
            self.store.put_value(
                PAUSE_KEY,
                {
                    "reason": message,
                    "setting": "plex_token",
                    "next_probe_at": now + CONTEXT_RETRY_SECONDS,
                },
            )
            self._event("error", "auth", f"queue paused: {message}")
            self._context = None
            self._set_blocked(message)
            report.deferred += 1
            return True
        else:
            self._dead_letter(job, kind, message, job.attempts + 1, report)
            return False
        report.deferred += 1
        return False

    def _max_attempts(self) -> int:
        """The `max_retries` setting, unless the worker was built with an explicit policy."""
        if self._explicit_policy or self._context is None:
            return self.policy.max_attempts
        return self._context.config.max_retries

    def _not_in_plex(
        self, job: Job, exc: errors.SyncError, message: str, report: DrainReport
    ) -> bool:
        config = self._context.config if self._context else None
        if config is not None and config.skip_not_found:
            self.store.complete(job)
            self._event("info", "not_in_plex", f"scene {job.scene_id} dropped: {message}")
            report.skipped += 1
            return False
        detail = dict(exc.detail or {})
        detail["scan_requested"] = (job.detail or {}).get("scan_requested", False)
        if config is not None and config.trigger_plex_scan and not detail["scan_requested"]:
            detail["scan_requested"] = True
            self._request_scan(job, detail.get("paths") or [])
        self.store.defer(
            job,
            reason="not_in_plex",
            due_at=self.clock() + NOT_IN_PLEX_RECHECK_SECONDS,
            attempts=job.attempts,
            error=message,
            error_class=exc.error_class,
            detail=detail,
        )
        report.deferred += 1
        return False

    def _request_scan(self, job: Job, paths: list[str]) -> None:
        assert self._context is not None
        try:
            scanned = self._syncer(self._context).index.request_scan(paths)
        except errors.SyncError as exc:
            self._event("warning", "scan", f"could not ask Plex to scan: {exc.message}")
            return
        if scanned:
            self._event(
                "info", "scan", f"scene {job.scene_id}: asked Plex to scan {'; '.join(scanned)}"
            )

    def _dead_letter(
        self, job: Job, kind: str, message: str, attempts: int, report: DrainReport
    ) -> None:
        self.store.dead_letter(job, error_class=kind, message=message, attempts=attempts)
        self._event("error", "dead_letter", f"scene {job.scene_id}: {message}")
        report.dead_lettered += 1

    # ------------------------------------------------------------------ bookkeeping
    def _housekeeping(self) -> None:
        """Bound what grows: finished jobs and old events (dead letters: see retention)."""
        now = self.clock()
        # Dead-letter retention is a setting: wait until the settings have been read.
        if self._context is None or now - self._housekept_at < HOUSEKEEPING_SECONDS:
            return
        self._housekept_at = now
        self.store.prune_done_jobs(now - DONE_JOB_RETENTION_SECONDS)
        self.store.prune_events(now - EVENT_RETENTION_SECONDS)
        days = self._context.config.dlq_retention_days
        self.store.delete_dead_letters(older_than=now - days * 86400)

    def _set_blocked(self, reason: str | None) -> None:
        """Tell tasks following this worker why it cannot make progress (or that it can)."""
        if reason is None:
            if self._blocked:
                self.store.delete_value(BLOCKED_KEY)
        else:
            self.store.put_value(BLOCKED_KEY, {"reason": reason, "at": self.clock()})
        self._blocked = reason is not None

    def _event(self, level: str, kind: str, message: str) -> None:
        getattr(log, "warning" if level == "warning" else level, log.info)(message)
        self.store.add_event(level, kind, message)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def configure_worker_logging(
    data_dir: Path,
    secrets: Callable[[], tuple[str, ...]],
    hide_paths: Callable[[], bool] = lambda: False,
) -> None:
    """Log to a rotating file in the data directory, scrubbing secrets (and, when asked, file
    paths) from every record."""
    from logging.handlers import RotatingFileHandler

    handler = RotatingFileHandler(
        data_dir / "worker.log", maxBytes=2_000_000, backupCount=2, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    class _Scrub(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            text = errors.redact(record.getMessage(), secrets())
            record.msg = obfuscate_paths(text) if hide_paths() else text
            record.args = ()
            return True

    handler.addFilter(_Scrub())
    root = logging.getLogger("stash2plex")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
