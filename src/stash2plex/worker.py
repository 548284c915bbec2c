"""The one engine that drains the queue: leases due jobs, syncs them, routes failures by class.

It owns the timers (retries, re-checks) as real waits, so nothing depends on some other
process happening to run. Started detached by a hook, it exits after the queue has been empty
for an idle period; before exiting it releases the lock and looks once more for jobs, so a
hook that saw the lock held just before cannot be left without a worker.
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

from . import errors
from .backoff import RetryPolicy, retry_delay
from .context import Context, build_context
from .store import Job, Store
from .sync import SceneSyncer
from .worker_lock import open_lock_file, try_lock, unlock

log = logging.getLogger("stash2plex.worker")

LEASE_SECONDS = 300.0
BATCH_SIZE = 20
POLL_SECONDS = 0.2
IDLE_EXIT_SECONDS = 30.0
# How often a scene Plex has not scanned yet is looked for again (the index is refreshed at
# most this often too). STASH2PLEX_RECHECK_SECONDS overrides it, for tests and impatient users.
NOT_IN_PLEX_RECHECK_SECONDS = float(os.environ.get("STASH2PLEX_RECHECK_SECONDS", "60"))
AMBIGUOUS_RECHECK_SECONDS = 3600.0
SERVER_DOWN_RECHECK_SECONDS = 5.0
CONTEXT_RETRY_SECONDS = 30.0
BLOCKED_KEY = "worker_blocked"


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
    ) -> None:
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.sleep = sleep
        self.context_factory = context_factory
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.idle_exit_seconds = idle_exit_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.store = Store.open(self.data_dir, clock=clock)
        self._context: Context | None = None
        self._blocked = True  # clear any stale "blocked" left by a previous worker
        self._context_failed_at: float | None = None

    # ------------------------------------------------------------------ running
    def run(
        self,
        lock_fd: int | None = None,
        *,
        until_idle: bool = False,
        progress: Callable[[DrainReport], None] | None = None,
    ) -> DrainReport:
        """Drain while holding the worker lock.

        `until_idle`: return as soon as no job is due (the foreground "Process Queue" task);
        otherwise keep running until the queue has been empty for `idle_exit_seconds`.
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
                processed = self._drain_due(report, progress)
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

    def _wait_for_work(self) -> None:
        """Sleep until the next job is due, waking early when another process commits."""
        version = self.store.data_version()
        now = self.clock()
        if self._context is None and self._context_failed_at is not None:
            deadline = self._context_failed_at + CONTEXT_RETRY_SECONDS
        else:
            next_due = self.store.next_due_at()
            deadline = now + self.idle_exit_seconds if next_due is None else next_due
        deadline = max(deadline, now + self.poll_seconds)
        while self.clock() < deadline:
            self.sleep(min(self.poll_seconds, max(0.0, deadline - self.clock())))
            if self.store.data_version() != version:
                return

    def _drain_due(
        self, report: DrainReport, progress: Callable[[DrainReport], None] | None
    ) -> int:
        if self._context is None and not self._ensure_context(report):
            return 0
        try:
            self._expand_entity_changes(self._context)
        except errors.SyncError as exc:
            self._event("warning", "entity_changed", f"could not expand changes: {exc.message}")
        jobs = self.store.claim_due(self.owner, BATCH_SIZE, LEASE_SECONDS)
        for index, job in enumerate(jobs):
            stop = self._process(job, report)
            if progress:
                progress(report)
            if stop:
                for rest in jobs[index + 1 :]:
                    self.store.release(rest)
                return index + 1
        return len(jobs)

    def _ensure_context(self, report: DrainReport) -> bool:
        now = self.clock()
        if (
            self._context_failed_at is not None
            and now - self._context_failed_at < CONTEXT_RETRY_SECONDS
        ):
            return False
        try:
            self._context = self.context_factory(self.store)
            self._context_failed_at = None
            self._set_blocked(None)
            for warning in self._context.config.warnings:
                self._event("warning", "config", warning)
            return True
        except errors.SyncError as exc:
            self._context_failed_at = now
            self._event("error", "config", exc.message)
            self._set_blocked(exc.message)
            report.errors.append(exc.message)
            return False

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

    # ------------------------------------------------------------------ one job
    def _process(self, job: Job, report: DrainReport) -> bool:
        """Sync one job and route the result. Returns True when the drain must pause."""
        assert self._context is not None
        context = self._context
        syncer = self._syncer(context)
        try:
            outcome = syncer.sync(job.scene_id)
        except errors.SyncError as exc:
            return self._route_failure(job, exc, report)
        except Exception as exc:  # an unexpected bug must not spin: count it as an attempt
            log.exception("unexpected error syncing scene %s", job.scene_id)
            failure = errors.TransientError(f"unexpected {type(exc).__name__}: {exc}")
            return self._route_failure(job, failure, report)
        self.store.complete(job)
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
        if kind == errors.TRANSIENT:
            attempts = job.attempts + 1
            if attempts >= self.policy.max_attempts:
                self._dead_letter(job, kind, message, attempts, report)
                return False
            delay = retry_delay(attempts, self.policy, self.rng)
            self.store.defer(
                job,
                reason="retry",
                due_at=now + delay,
                attempts=attempts,
                error=message,
                error_class=kind,
            )
        elif kind == errors.SERVER_DOWN:
            self.store.defer(
                job,
                reason="plex_down",
                due_at=now + SERVER_DOWN_RECHECK_SECONDS,
                attempts=job.attempts,
                error=message,
                error_class=kind,
            )
            self._context = None  # reconnect (and re-read settings) when Plex is back
            self._set_blocked(message)
            report.deferred += 1
            return True
        elif kind == errors.NOT_IN_PLEX:
            config = self._context.config if self._context else None
            if config is not None and config.skip_not_found:
                self.store.complete(job)
                self._event("info", "not_in_plex", f"scene {job.scene_id} dropped: {message}")
                report.skipped += 1
                return False
            detail = dict(exc.detail or {})
            previous = job.detail or {}
            detail["scan_requested"] = previous.get("scan_requested", False)
            if config is not None and config.trigger_plex_scan and not detail["scan_requested"]:
                detail["scan_requested"] = True
                self._request_scan(job, detail.get("paths") or [])
            self.store.defer(
                job,
                reason="not_in_plex",
                due_at=now + NOT_IN_PLEX_RECHECK_SECONDS,
                attempts=job.attempts,
                error=message,
                error_class=kind,
                detail=detail,
            )
        elif kind == errors.AMBIGUOUS:
            self.store.defer(
                job,
                reason="ambiguous",
                due_at=now + AMBIGUOUS_RECHECK_SECONDS,
                attempts=job.attempts,
                error=message,
                error_class=kind,
                detail=exc.detail,
            )
        elif kind == errors.AUTH:
            self.store.defer(
                job,
                reason="auth",
                due_at=now + CONTEXT_RETRY_SECONDS,
                attempts=job.attempts,
                error=message,
                error_class=kind,
            )
            self._event("error", "auth", message)
            self._context = None
            self._context_failed_at = now
            report.deferred += 1
            return True
        else:
            self._dead_letter(job, kind, message, job.attempts + 1, report)
            return False
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


def configure_worker_logging(data_dir: Path, secrets: Callable[[], tuple[str, ...]]) -> None:
    """Log to a rotating file in the data directory, scrubbing secrets from every record."""
    from logging.handlers import RotatingFileHandler

    handler = RotatingFileHandler(
        data_dir / "worker.log", maxBytes=2_000_000, backupCount=2, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    class _Scrub(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = errors.redact(record.getMessage(), secrets())
            record.args = ()
            return True

    handler.addFilter(_Scrub())
    root = logging.getLogger("stash2plex")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
