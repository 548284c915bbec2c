"""The one engine that drains the queue: a thin loop of lease, sync, route, apply.

Each job's result goes through the pure `routing.route`, and the store applies the decision,
its hold changes and its event in one transaction. Holds (the breaker in front of Plex, a
pause waiting for a setting or for Stash) are checked on their own timers by `_check`, which
re-reads the settings and probes Plex; `holds.after_check` decides what that means.

The worker owns every timer as a real wait (retries, re-checks, probes, the gentle ramp after a
recovery), so nothing depends on some other process happening to run. Started detached by a
hook (or handed over by a foreground task that stopped early), it keeps running while work is
outstanding and it can act on it, and exits after an idle period otherwise; before exiting it
releases the lock and looks once more, so a hook that saw the lock held is never left
without a worker.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stash2plex import errors
from stash2plex.clients.plex import ServerIdentity
from stash2plex.engine import holds as hold_checks
from stash2plex.engine import pauses
from stash2plex.engine.context import (
    Context,
    build_context,
    plex_url_answered,
    remember_plex_server,
)
from stash2plex.engine.handover import HANDOVER_KEY, WORKER_SETTINGS_KEY, asked_to_hand_over
from stash2plex.engine.ramp import RecoveryRamp
from stash2plex.engine.routing import RoutePolicy, RouteSettings, route
from stash2plex.engine.sync_width import AnswerTimes, most_scenes_at_once, scenes_at_once
from stash2plex.engine.worker_lock import (
    ensure_worker,
    mark_holder,
    open_lock_file,
    release,
    try_lock,
)
from stash2plex.pseudonyms import obfuscate_data, obfuscate_paths
from stash2plex.pull.timer import PullTimer
from stash2plex.reconcile.timer import ReconcileTimer
from stash2plex.records import Decision, Event, EventLevel, Holds, Job
from stash2plex.settings.sources import load_local_settings
from stash2plex.store import spool
from stash2plex.store.db import PERSON_ASKED_KEY, Store, quarantine
from stash2plex.store.schema import SECTIONS_KEY
from stash2plex.sync import settle
from stash2plex.sync.backfill import EntityBackfill
from stash2plex.sync.collection_art import Awaited, CollectionLookups
from stash2plex.sync.read_ahead import ItemsReadAhead
from stash2plex.sync.syncer import UNFETCHED, SceneSyncer
from stash2plex.vocabulary import SyncStatus
from stash2plex.words import plural

# The machineIdentifier of the Plex server the worker syncs scenes to, and why every scene
# is queued when another answers at plex_url (shown in its job).
SYNCED_SERVER_KEY = "synced_plex_server"
OTHER_SERVER_SOURCE = "another Plex server"

log = logging.getLogger("stash2plex.worker")

BATCH_SIZE = 50
# A drain round claims more batches while it runs, up to about this many scenes.
REFILL_LIMIT = 500
# Items of timed-out writes checked per round (each may read one item from Plex).
UNSETTLED_CHECKS = 20
POLL_SECONDS = 0.2
IDLE_EXIT_SECONDS = 30.0
# A worker held only by missing settings keeps checking them this long before it exits (the
# next hook or task starts a fresh one); switched off, it exits after the idle period.
NOT_CONFIGURED_EXIT_SECONDS = 900.0
# Waiting for Stash to answer, it keeps checking this long; a hook means Stash is back anyway.
STASH_DOWN_EXIT_SECONDS = 3600.0
# Settings are re-read this often while draining, and before the next batch after any hook or
# task (a nudge): a scene saved after `enabled` was switched off is never sent.
SETTINGS_REFRESH_SECONDS = 60.0
STORE_BUSY_RETRY_SECONDS = 5.0
HOUSEKEEPING_SECONDS = 3600.0
DONE_JOB_RETENTION_SECONDS = 7 * 86400.0
EVENT_RETENTION_SECONDS = 30 * 86400.0
# The job source of "Force Sync All" / `stash2plex sync --force`: rewrite Plex from Stash.
FORCE_SOURCE = "force"
# How often a long-running worker asks Plex again whether it is claimed (links into Plex Web).
CLAIMED_ASK_SECONDS = 3600.0


@dataclass(frozen=True)
class _Attempt:
    """One sync attempt: the job, its result (a status or the classified error), the fields
    left alone because they were edited in Plex, and the collections its edits made that wait
    for the batch's settle (the attempt finishes with it)."""

    job: Job
    result: SyncStatus | errors.SyncError
    preserved: tuple[str, ...] = ()
    awaiting: tuple[Awaited, ...] = ()


@dataclass
class _Batch:
    """Claimed jobs and their scenes being read from Stash (see `Worker._prefetch`)."""

    jobs: list[Job]
    reading: futures.Future[dict[int, Any]]

    def scenes(self) -> dict[int, Any]:
        return self.reading.result()


class WorkerBusyError(RuntimeError):
    """Another worker holds the lock and drains the queue."""


@dataclass
class DrainReport:
    """What one drain did, by outcome. `errors`: messages a person should read."""

    synced: int = 0
    unchanged: int = 0
    skipped: int = 0
    deferred: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.synced + self.unchanged + self.skipped + self.deferred + self.dead_lettered

    def count(self, decision: Decision) -> None:
        """Count one decision under its outcome."""
        if decision.action == "dead_letter":
            self.dead_lettered += 1
        elif decision.action != "done":
            self.deferred += 1
        elif decision.status == "synced":
            self.synced += 1
        elif decision.status == "unchanged":
            self.unchanged += 1
        else:
            self.skipped += 1


class Worker:
    """Drains the queue of the store in `data_dir` while holding the worker lock.

    `clock` and `sleep` are injected (seconds); `context_factory` builds the settings and the
    clients from the store.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        context_factory: Callable[[Store], Context] = build_context,
        policy: RoutePolicy | None = None,
        rng: random.Random | None = None,
        idle_exit_seconds: float = IDLE_EXIT_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        keeps_settings: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.sleep = sleep
        self.context_factory = context_factory
        self.policy = policy or RoutePolicy()
        self._explicit_policy = policy is not None
        self.rng = rng or random.Random()
        self.idle_exit_seconds = idle_exit_seconds
        self.poll_seconds = poll_seconds
        # Unique per worker, not per process: a service restarts its worker in one process.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.store = Store.open(self.data_dir, clock=clock)
        self._context: Context | None = None
        self._plex_remembered: Context | None = None  # the context whose Plex was recorded
        self._claimed_asked = ""  # the machine identifier of the Plex last asked if claimed
        self._claimed_again_at = 0.0  # and when it is asked again
        self._settings_read_at = float("-inf")
        self._warned: set[str] = set()  # settings warnings already logged (still standing)
        # What this process was given outside Stash (engine.handover): a command given other
        # settings may ask it to hand the queue over, unless it keeps them (the service).
        self._local_settings = load_local_settings(self.data_dir).fingerprint()
        self._keeps_settings = keeps_settings
        self._housekept_at = float("-inf")
        self._ramp: RecoveryRamp | None = None
        self._stop = threading.Event()
        self._owning = False
        # The sync threads (see `sync_width`), each with its own store connection.
        self._executor: futures.ThreadPoolExecutor | None = None
        # Reads the next batch's scenes from Stash while a batch syncs (see `_read_batch`).
        self._reader: futures.ThreadPoolExecutor | None = None
        self._executor_width = 0
        # The last batch sent Plex nothing and failed nowhere (see `_drain_batch`).
        self._last_batch_local = False
        self._local = threading.local()
        self._thread_stores: list[Store] = []
        self._thread_stores_lock = threading.Lock()
        # Plex items read ahead for the claimed batches' first pushes (shared by the threads).
        self._items_ahead = ItemsReadAhead(clock)
        self._foreign_checked = False  # see `_step`
        self._answer_times = AnswerTimes()  # how fast Plex answers (see `sync_width`)
        self._libraries_read_for: object = None  # see `_reread_libraries_if_asked`
        self._collections = CollectionLookups(clock)
        # Plex -> Stash catch-up pull: its schedule and errors live in stash2plex.pull.timer.
        self._pull_timer = PullTimer(self.store, clock)
        # Scheduled and after-outage reconciles: stash2plex.reconcile.timer.
        self._reconcile_timer = ReconcileTimer(
            lambda: self.store, clock, should_stop=self._stop.is_set
        )
        # Links made before version 5: what their scenes show, read from Stash in the
        # background (stash2plex.sync.backfill).
        self._backfill = EntityBackfill(clock)

    @property
    def context(self) -> Context | None:
        """The settings and clients in use (None until read)."""
        return self._context

    def request_stop(self) -> None:
        """Finish the job in hand (without waiting to ask a busy Plex again), give the rest of
        the batch back, and return from `run`."""
        self._stop.set()
        context = self._context
        if context is not None:
            context.plex.stop_waiting()

    # ------------------------------------------------------------------ running
    def run(
        self,
        lock_fd: int | None = None,
        *,
        until_idle: bool = False,
        progress: Callable[[DrainReport], None] | None = None,
    ) -> DrainReport:
        """Drain while holding the worker lock (`lock_fd`: already locked by a hook).

        `until_idle`: return as soon as nothing is due or a hold stops the drain (a
        foreground task); otherwise keep running until there is nothing it can do for an idle
        period. Raises WorkerBusyError when another worker holds the lock.
        """
        fd = lock_fd if lock_fd is not None else open_lock_file(self.data_dir)
        if lock_fd is None and not try_lock(fd):
            os.close(fd)
            self._close_pool()
            self.store.close()
            raise WorkerBusyError("another Stash2Plex worker is already draining the queue")
        report = DrainReport()
        locked = True
        self._owning = False
        try:
            mark_holder(fd)
            locked = self._loop(fd, report, until_idle, progress)
        finally:
            if locked:
                release(fd)
            os.close(fd)
            self._close_pool()
            self.store.close()
        return report

    def _loop(
        self,
        fd: int,
        report: DrainReport,
        until_idle: bool,
        progress: Callable[[DrainReport], None] | None,
    ) -> bool:
        """The drain loop; returns whether the lock is still held."""
        idle_since: float | None = None
        while not self._stop.is_set():
            try:
                processed = self._step(report, progress)
            except errors.StoreUnreadableError as exc:
                self._reopen_store(str(exc))
                continue
            except errors.StoreError as exc:
                # Busy or full: the job stays leased (ours) and is tried again; never crash.
                log.warning("the store is not usable right now: %s", exc)
                self._wait(self.clock() + STORE_BUSY_RETRY_SECONDS)
                continue
            except Exception:  # a bug of ours must not stop the engine: log it, go on
                log.exception("unexpected error in the worker loop; going on")
                self._context = None
                self._wait(self.clock() + STORE_BUSY_RETRY_SECONDS)
                continue
            if processed:
                idle_since = None
                continue
            if until_idle:
                return True
            exit_after = self._idle_exit_after()
            if exit_after is None:
                idle_since = None
            else:
                now = self.clock()
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= exit_after:
                    # Release, then look once more: a hook that saw the lock held relies on
                    # us to find its job (or to re-read the settings it nudged).
                    release(fd)
                    if not self._should_continue() or not try_lock(fd):
                        self._hand_over_without_own_variable()
                        return False
                    mark_holder(fd)
                    self._owning = False
                    idle_since = None
                    continue
            self._wait(self._next_wake())
        return True

    def _idle_exit_after(self) -> float | None:
        """How long an idle worker may wait before exiting now; None: it must stay."""
        holds = self.store.holds()
        pause = holds.pause
        if pause is not None and pause.kind == "not_configured":
            return NOT_CONFIGURED_EXIT_SECONDS
        if pause is not None and pause.kind == "stash_down":
            return STASH_DOWN_EXIT_SECONDS
        if pauses.needs_a_person(pause) or pauses.set_in_own_environment(pause):
            return self.idle_exit_seconds
        if holds.held or self._work_left():
            return None
        return self.idle_exit_seconds

    def _should_continue(self) -> bool:
        holds = self.store.holds()
        if pauses.set_in_own_environment(holds.pause):
            return False  # the next hook's worker, with Stash's environment, takes over
        if pauses.needs_a_person(holds.pause):
            return holds.nudged_at > self._settings_read_at
        return self._work_left()

    def _hand_over_without_own_variable(self) -> None:
        """Leaving because a value of its own environment holds the queue (a command run once
        with a wrong variable): with scenes still queued, start a worker without that
        variable. It reads the setting where a hook's worker would (Stash, the settings
        file) and checks it at once, so scenes saved meanwhile do not wait for the next save."""
        pause = self.store.holds().pause
        variable = pauses.environment_variable(pause)
        if not pauses.set_in_own_environment(pause) or variable is None:
            return
        if self.store.outstanding_jobs() == 0:
            return
        if ensure_worker(self.data_dir, unset=(variable,)):
            log.info("handed the queue to a worker started without %s", variable)

    def _work_left(self) -> bool:
        # A backfill that cannot read Stash does not keep the worker alive: the next worker
        # (any hook starts one while scenes are left) tries again.
        backfill = not self._backfill.failing()
        return self.store.has_work(backfill=backfill) or spool.pending(self.data_dir)

    def _reopen_store(self, problem: str | None = None) -> None:
        """The store file was damaged (moved aside here if no one else did) or replaced by a
        hook that found it damaged: work on the store now at the path."""
        if problem is not None and not self.store.replaced():
            log.error(quarantine(self.store.path, problem, inode=self.store.inode))
        else:
            log.warning("the store was replaced (it was damaged); going on with the new one")
        self._close_pool()
        self.store.close()
        self.store = Store.open(self.data_dir, clock=self.clock)
        self._owning = False

    def _take_ownership(self) -> None:
        """First thing with the lock: void other owners' leases, look at the holds at once."""
        voided = self.store.take_ownership(self.owner)
        self.store.put_value(
            WORKER_SETTINGS_KEY,
            {"owner": self.owner, "local": self._local_settings, "keeps": self._keeps_settings},
        )
        request = self.store.get_value(HANDOVER_KEY)
        if isinstance(request, dict) and request.get("local") == self._local_settings:
            self.store.delete_value(HANDOVER_KEY)  # answered: it must not stop later workers
        self.store.nudge()  # a fresh worker looks at the settings and holds at once
        self._event("info", "worker_started", f"worker {self.owner} started")
        if voided:
            log.info("%d jobs leased by a stopped worker are due again", voided)
        self._owning = True

    def _step(self, report: DrainReport, progress: Callable[[DrainReport], None] | None) -> int:
        """One round: merge spooled hooks, check holds if due, then drain what is due."""
        if self.store.replaced():
            self._reopen_store()
        if not self._owning:
            self._take_ownership()
        if not self._keeps_settings and asked_to_hand_over(
            self.store.get_value(HANDOVER_KEY), self._local_settings, self.clock()
        ):
            log.info("a command given other settings drains the queue now; handing it over")
            self._stop.set()
            return 0
        self._merge_spool()
        self._housekeeping()
        holds = self.store.holds()
        if holds.held:
            next_check = holds.next_check_at()
            # Held by a value of another process's environment (a command run with a wrong
            # variable): this worker's settings may be right, so it checks once at once.
            foreign = not self._foreign_checked and pauses.set_in_other_environment(holds.pause)
            if foreign or (next_check is not None and next_check <= self.clock()):
                self._foreign_checked = self._foreign_checked or foreign
                holds = self._check(holds)
            if holds.held:
                return 0
        context = self._current_context(holds)
        if context is None:
            return 0
        if self._reread_libraries_if_asked(context):
            # What the read found holds the queue: Plex down waits for the breaker; a setting
            # to fix is met by the scenes too (each waits with its reason), while those that
            # need no request finish.
            holds = self.store.holds()
            if not holds.breaker.is_closed:
                return 0
        self._expand_entity_changes(context)
        self._record_entities(context)
        self._pull_timer.tick(context)
        self._reconcile_timer.tick(context)
        self._check_unsettled(context)
        jobs = self.store.claim_due(self.owner, BATCH_SIZE)
        if not jobs:
            return 0
        handled = self._drain_batch(context, jobs, holds, report, progress)
        if self._plex_remembered is not context and context.plex.identity is not None:
            # Who answered, for links into Plex Web. Whether it is claimed is asked of a server
            # once an hour at most (a context is made anew at every settings read; a server
            # may be claimed later, or not say at first), never of a Plex the breaker has just
            # given up on.
            machine = context.plex.identity.machine_identifier
            due = machine != self._claimed_asked or self.clock() >= self._claimed_again_at
            ask = due and self.store.holds().breaker.is_closed
            remember_plex_server(context, ask_claimed=ask)
            if ask:
                self._claimed_asked = machine
                self._claimed_again_at = self.clock() + CLAIMED_ASK_SECONDS
            self._plex_remembered = context
        return handled

    def _check_server(self, identity: ServerIdentity) -> None:
        """Plex answered (its `GET /`, before any other request): if another server answers
        than the one the worker synced scenes to (Plex installed anew at the same address,
        or plex_url changed to another server), its ratingKeys name other items, so no write
        or pull may use a link. Every scene is queued to sync to it, matched afresh, and the
        request that connected fails (TransientError), its scene tried again soon. (Only the
        worker records the server: a command's health check of another address must not.)"""
        machine = identity.machine_identifier
        known = self.store.get_value(SYNCED_SERVER_KEY)
        if not machine or known == machine:
            return
        self.store.put_value(SYNCED_SERVER_KEY, machine)
        if not known:  # the first time (or links an older version made): this is the one
            return
        queued = self.store.unlink_all(OTHER_SERVER_SOURCE)
        message = (
            f"another Plex server answers at plex_url (machine {machine[:8]}…, not "
            f"{str(known)[:8]}…): its items are not the ones scenes were synced to; "
            f"{plural(len(queued), 'synced scene')} queued to sync to it"
        )
        self._event("warning", "plex_server", message)
        raise errors.TransientError(message, server="plex")

    def _reread_libraries_if_asked(self, context: Context) -> bool:
        """A person asked for scenes (Sync, Sync All, Sync Recent) since Plex's libraries were
        last read: read them again (one request), once per request. An unchanged scene asks
        Plex nothing, so a library removed and added again in Plex (new items, none of our
        metadata) is seen only so, and its scenes are queued (sync.syncer.PlexIndex); and
        what the person is told covers a token Plex now refuses, a library it no longer has
        or Plex down, which hold the queue as a probe's finding would. Returns whether the
        read failed."""
        asked = self.store.get_value(PERSON_ASKED_KEY)
        read = (self.store.get_value(SECTIONS_KEY) or {}).get("read_at")
        if not isinstance(asked, int | float) or asked == self._libraries_read_for:
            return False
        self._libraries_read_for = asked
        if isinstance(read, int | float) and read >= asked:
            return False
        try:
            self._syncer(context).index.sections(refresh=True)
        except errors.SyncError as exc:
            error, answered = exc, plex_url_answered(context)
        else:
            return False
        if answered and error.server == "plex" and error.error_class == errors.SERVER_DOWN:
            # Down, where it answered before: an outage the person is told of, as a scene's
            # sync would have found it.
            self._change_holds(
                lambda current: hold_checks.plex_down_found(current, error, self.clock())
            )
        else:
            self._apply_check(
                hold_checks.CheckResult(probed=True, plex_error=error, plex_answered=answered)
            )
        return True

    def _check_unsettled(self, context: Context) -> None:
        """Check the items of writes that timed out long enough ago (sync.settle): a value an
        older write set late is written again. A check that cannot read Plex waits as long
        again, up to MAX_CHECK_TRIES times (the breaker judges Plex by the scenes' writes)."""
        later = self._settle_check_at(context)
        for unsettled in self.store.unsettled_due(UNSETTLED_CHECKS):
            scene_id = unsettled.scene_id
            try:
                verdict = settle.check(self.store, context.plex, unsettled)
            except errors.SyncError as exc:
                if unsettled.tries + 1 < settle.MAX_CHECK_TRIES:
                    self.store.settle(unsettled, check_at=later, failed=True)
                    log.info("checking scene %s's item in Plex waits: %s", scene_id, exc.message)
                    continue
                self.store.settle(unsettled)
                preserve = context.config.preserve_plex_edits
                words = settle.unchecked_words(scene_id, exc.message, preserve=preserve)
                self._event("warning", "late_write", words)
                continue
            if verdict.wait:
                self.store.settle(unsettled, check_at=later)
                continue
            self.store.settle(unsettled)
            if verdict.stale:
                self._event("warning", "late_write", settle.landed_words(scene_id, verdict.stale))

    def _settle_check_at(self, context: Context) -> float:
        """When a write timing out now (or a check put off now) is checked (sync.settle)."""
        return self.clock() + settle.check_after(context.config.plex_timeout)

    def _drain_batch(
        self,
        context: Context,
        jobs: list[Job],
        holds: Holds,
        report: DrainReport,
        progress: Callable[[DrainReport], None] | None,
    ) -> int:
        """Sync a claimed batch: its scenes read from Stash in one request, up to
        `plex_max_concurrency` scenes at once (one more while Plex answers slowly: see
        `sync_width`), each result routed and applied here, in this thread, one transaction
        each. A decision that stops the drain lets the scenes in flight finish and gives the
        rest back.

        Threads help while scenes wait on Plex. When the last batch sent Plex no request and
        nothing failed (an unchanged re-sync), this one runs on the worker's own thread: such
        scenes only read the store, and threads then contend for the GIL and the store's locks
        (3,000 unchanged scenes: 3.4 s on 4 threads, 2.1 s on one); the next batch's scenes are
        read from Stash meanwhile. The first scene that talks to Plex (or fails) widens the
        rest of the batch to the pool again."""
        requests_before = context.plex.request_count
        scenes = self._prefetch(context, jobs)
        self._read_ahead(context, jobs, scenes)
        slots = max(1, context.config.plex_max_concurrency)

        def wide() -> int:  # with each batch: as fast as Plex answers now
            return scenes_at_once(slots, self._answer_times.typical)

        threads = most_scenes_at_once(slots)  # kept across batches as Plex's speed changes
        # After a probe closed the breaker, one scene tries first (the ramp widens later).
        narrow_while_local = self._last_batch_local and not holds.breaker.trial
        width = 1 if holds.breaker.trial or narrow_while_local else wide()
        pool = self._pool(threads) if width > 1 else None
        queued = list(jobs)
        running: dict[futures.Future[_Attempt], Job] = {}
        # Finished attempts arrive here: `futures.wait` would hook into every running future
        # each time one finishes (a measurable share of the worker's CPU per scene).
        finished: queue.SimpleQueue[futures.Future[_Attempt]] = queue.SimpleQueue()
        handled, stopping, failed, exhausted = 0, False, False, False
        lookahead: _Batch | None = None  # on this thread: the next batch, read meanwhile
        settling: list[_Attempt] = []  # done but for the art of collections they made

        def local() -> bool:  # so far no request to Plex and no failure
            return not failed and context.plex.request_count == requests_before

        def settings_expired() -> bool:  # the rest of the batch waits for them to be read
            return self.clock() - self._settings_read_at >= SETTINGS_REFRESH_SECONDS

        while True:
            # More batches of the same kind (a batch that talks to Plex goes on in the pool,
            # one that does not on this thread), up to REFILL_LIMIT scenes: the outer loop
            # runs its housekeeping every few hundred.
            refill = (
                not (stopping or exhausted or self._stop.is_set())
                and handled < REFILL_LIMIT
                and local() == (pool is None)
            )
            if refill and not queued and self._settings_due(self.store.holds()):
                # Read them before claiming more (a changed rate or concurrency, `enabled`
                # switched off): a round may otherwise run for hundreds of scenes.
                refill = False
            if not queued and refill:
                batch, lookahead = lookahead or self._read_batch(context), None
                if batch is None:
                    exhausted = True
                else:
                    ahead = batch.scenes()
                    self._read_ahead(context, batch.jobs, ahead)
                    # A scene claimed again has this batch's read or none (a failed read: it
                    # reads its own), never the earlier batch's, made before its new edit.
                    for job in batch.jobs:
                        scenes.pop(job.scene_id, None)
                    scenes.update(ahead)
                    queued.extend(batch.jobs)
                    width = wide() if width > 1 else width
            elif pool is None and refill and lookahead is None:
                lookahead = self._read_batch(context)  # read from Stash while this one syncs
            while (
                queued
                and not stopping
                and len(running) < width
                and not self._stop.is_set()
                and not settings_expired()
            ):
                job = queued.pop(0)
                self._pace(holds)
                scene = scenes.get(job.scene_id, UNFETCHED)
                if pool is None:
                    attempt = self._attempt(context, job, scene, self._syncer(context))
                    failed = failed or isinstance(attempt.result, errors.SyncError)
                    if attempt.awaiting:
                        settling.append(attempt)
                    else:
                        holds, stopping = self._finish(context, attempt, holds, report, progress)
                    handled += 1
                    if narrow_while_local and slots > 1 and not local():
                        width, pool = wide(), self._pool(threads)  # this scene talked to Plex
                else:
                    future = pool.submit(self._attempt_in_thread, context, job, scene)
                    running[future] = job
                    future.add_done_callback(finished.put)
            if running:
                done = [finished.get()]
                while not finished.empty():
                    done.append(finished.get())
                for future in done:
                    running.pop(future)
                    attempt = future.result()
                    failed = failed or isinstance(attempt.result, errors.SyncError)
                    handled += 1
                    if attempt.awaiting:
                        settling.append(attempt)
                        continue
                    holds, stop = self._finish(context, attempt, holds, report, progress)
                    stopping = stopping or stop
            elif queued or not refill:
                break  # done, or stopped with jobs left (given back below)
        if settling:
            holds = self._settle(context, settling, holds, report, progress)
        unsynced = queued + (lookahead.jobs if lookahead else [])
        if unsynced:
            self.store.release(unsynced)
        self._last_batch_local = handled > 0 and local()
        return handled

    def _read_ahead(self, context: Context, jobs: list[Job], scenes: dict[int, Any]) -> None:
        """Read ahead the Plex items of the batch's first pushes (`SceneSyncer.read_ahead`),
        but for scenes last held by a conflict: they conflict again without reading their
        item unless the user resolved it (a re-sync of a library with such scenes then
        asks Plex nothing)."""
        conflicted = {job.scene_id for job in jobs if job.last_error_class == errors.CONFLICT}
        self._syncer(context).read_ahead(
            scene for scene_id, scene in scenes.items() if scene_id not in conflicted
        )

    def _settle(
        self,
        context: Context,
        settling: list[_Attempt],
        holds: Holds,
        report: DrainReport,
        progress: Callable[[DrainReport], None] | None,
    ) -> Holds:
        """Finish the attempts whose edits made collections, with the collections' settle: one
        listing finds them all, and a failure to give one its art is its scenes' failure
        (retried, counted, dead-lettered like any other). A worker asked to stop gives them
        back instead: the next one syncs them again (nothing to write but the art)."""
        jobs = [attempt.job for attempt in settling]
        if self._stop.is_set():
            self.store.release(jobs)
            return holds
        try:
            failed = self._syncer(context).settle_collections(ask_plex=holds.breaker.is_closed)
        except Exception:  # the store busy, a bug: the jobs are synced again, not stranded
            self.store.release(jobs)
            raise
        secrets = context.config.secrets() + context.stash.connection.secrets()
        met: set[int] = set()  # failures already routed once (the breaker counts each once)
        for attempt in settling:
            error = next((failed[key] for key in attempt.awaiting if key in failed), None)
            if error is not None:
                error.message = errors.redact(error.message, secrets)
                attempt = replace(
                    attempt, result=error if id(error) not in met else error.shared_copy()
                )
                met.add(id(error))
            holds, _ = self._finish(context, attempt, holds, report, progress)
        return holds

    def _read_batch(self, context: Context) -> _Batch | None:
        """Claim the next batch and start reading its scenes from Stash on the reader thread;
        None when nothing is due."""
        jobs = self.store.claim_due(self.owner, BATCH_SIZE)
        if not jobs:
            return None
        if self._reader is None:
            self._reader = futures.ThreadPoolExecutor(1, thread_name_prefix="stash-read")
        return _Batch(jobs, self._reader.submit(self._prefetch, context, jobs))

    def _prefetch(self, context: Context, jobs: list[Job]) -> dict[int, Any]:
        """The batch's scenes in one Stash request (a failure leaves each job to read its own
        scene, so the failure is routed per job)."""
        try:
            return dict(context.stash.find_scenes_by_ids([job.scene_id for job in jobs]))
        except errors.SyncError:
            return {}

    def _finish(
        self,
        context: Context,
        attempt: _Attempt,
        holds: Holds,
        report: DrainReport,
        progress: Callable[[DrainReport], None] | None,
    ) -> tuple[Holds, bool]:
        """Route one attempt and apply the decision; returns the holds and whether to stop."""
        if isinstance(attempt.result, errors.WorkerStopping):
            self.store.release([attempt.job])  # nothing was sent: the next worker syncs it
            return holds, True
        if attempt.preserved:
            self._event(
                "info",
                "preserved",
                f"scene {attempt.job.scene_id}: left {', '.join(attempt.preserved)} alone "
                "(edited in Plex; preserve_plex_edits is on)",
            )
        decision = self._decide(context, attempt.job, attempt.result, holds)
        result = attempt.result
        unsettled = result.unsettled if isinstance(result, errors.SyncError) else []
        check_at = self._settle_check_at(context) if unsettled else 0.0
        holds = self.store.apply(attempt.job, decision, unsettled, check_at)
        if decision.action == "done" and attempt.job.last_error_class == errors.CONFLICT:
            # Its conflict is settled: the other scenes it named are tried now, not at their
            # retry an hour away (one merged away in Stash is then closed as deleted).
            self.store.wake_conflict_partners(attempt.job.scene_id)
        if self._ramp is not None:
            self._ramp.record(self.clock(), ok=decision.action == "done")
        self._note(attempt.job, decision, report)
        if progress:
            progress(report)
        if decision.stop and decision.pause is not None:
            self._context = None  # a setting or Stash is the problem: read them again
        return holds, decision.stop

    def _decide(
        self, context: Context, job: Job, result: SyncStatus | errors.SyncError, holds: Holds
    ) -> Decision:
        if isinstance(result, errors.NotInPlexError):
            self._maybe_request_scan(context, job, result)
        elif isinstance(result, errors.TransientError) and _repeated_server_failure(
            job, result, self._max_attempts(context)
        ):
            result = self._confirm(context, result)
        decision = route(
            job,
            result,
            breaker=holds.breaker,
            now=self.clock(),
            policy=self.policy,
            settings=RouteSettings(
                max_attempts=self._max_attempts(context),
                skip_not_found=context.config.skip_not_found,
                sources=context.sources,
                unsettled_write_seconds=2 * context.config.plex_timeout,
                # Asked only of a failure (a store read when this process has not reached
                # Plex yet, as in an unchanged re-sync that sends Plex nothing).
                plex_answered=not isinstance(result, errors.SyncError)
                or plex_url_answered(context),
            ),
            rng=self.rng,
        )
        standing = holds.pause
        if (
            decision.pause is not None
            and standing is not None
            and (standing.kind, standing.message) == (decision.pause.kind, decision.pause.message)
        ):
            # The scenes in flight when the pause began fail the same way: said once.
            decision = replace(decision, event=None)
        return _without_paths(decision) if context.config.obfuscate_paths else decision

    def _confirm(self, context: Context, error: errors.SyncError) -> errors.SyncError:
        """A job failed again the same way: ask the server that failed whether it is sick.

        When it fails a health check too, this is an outage (or Stash being down), not the
        job's fault: it waits without burning attempts, however few jobs are queued and
        however slowly they fail. When it is healthy, the failure belongs to this item.
        """
        if error.server == "plex":
            health = context.plex.health()
            if health.ok or (health.error is not None and health.error_class == errors.AUTH):
                return error
            return errors.ServerDownError(
                f"Plex fails every request: {health.detail}", server="plex"
            )
        try:
            context.stash.version()
        except errors.SyncError as exc:
            if exc.error_class in (errors.TRANSIENT, errors.SERVER_DOWN):
                return errors.StashDownError(f"Stash fails every request: {exc.message}")
        return error

    def _attempt_in_thread(self, context: Context, job: Job, scene: Any) -> _Attempt:
        return self._attempt(context, job, scene, self._thread_syncer(context))

    def _attempt(self, context: Context, job: Job, scene: Any, syncer: SceneSyncer) -> _Attempt:
        """Sync one scene and classify the result. Runs on any thread: touches only its own
        syncer (and store connection), never the worker's store."""
        try:
            # Force Sync All: this job rewrites Plex from Stash (the syncer is this thread's).
            syncer.force = job.source == FORCE_SOURCE
            outcome = syncer.sync(job.scene_id, scene)
        except errors.SyncError as exc:
            secrets = context.config.secrets() + context.stash.connection.secrets()
            exc.message = errors.redact(exc.message, secrets)
            return _Attempt(job, exc)
        except Exception as exc:  # a bug of ours must not spin: it counts as an attempt
            log.exception("unexpected error syncing scene %s", job.scene_id)
            return _Attempt(job, errors.InternalError(f"unexpected {type(exc).__name__}: {exc}"))
        if outcome.status == "no_file":
            log.debug("scene %s has no video file; nothing to sync", job.scene_id)
        status: SyncStatus = "skipped"
        if outcome.status in ("synced", "unchanged"):
            status = "synced" if outcome.status == "synced" else "unchanged"
        return _Attempt(job, status, tuple(outcome.preserved), outcome.awaiting)

    def _pool(self, width: int) -> futures.ThreadPoolExecutor:
        if self._executor is None or self._executor_width != width:
            self._close_pool()
            self._executor = futures.ThreadPoolExecutor(width, thread_name_prefix="sync")
            self._executor_width = width
        return self._executor

    def _thread_syncer(self, context: Context) -> SceneSyncer:
        """This thread's syncer, on this thread's own store connection."""
        local = self._local
        if getattr(local, "context", None) is not context:
            if getattr(local, "store", None) is None:
                local.store = Store.open(self.data_dir, clock=self.clock)
                with self._thread_stores_lock:
                    self._thread_stores.append(local.store)
            local.syncer = self._syncer(context, local.store)
            local.context = context
        syncer: SceneSyncer = local.syncer
        return syncer

    def _close_pool(self) -> None:
        """Stop the sync threads and close their store connections."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        with self._thread_stores_lock:
            for store in self._thread_stores:
                store.close()
            self._thread_stores.clear()
        self._local = threading.local()

    def _note(self, job: Job, decision: Decision, report: DrainReport) -> None:
        report.count(decision)
        if decision.event is not None:
            getattr(log, decision.event.level)(decision.event.message)
        if decision.action == "dead_letter" and decision.message:
            report.errors.append(f"scene {job.scene_id}: {decision.message}")
        if decision.pause is not None:
            report.errors.append(decision.pause.message)

    # ------------------------------------------------------------------ settings
    def _current_context(self, holds: Holds) -> Context | None:
        """The context to drain with, re-reading the settings when due or nudged.

        A failure to read them, or `enabled` off, becomes a pause (returns None).
        """
        if self._context is not None and not self._settings_due(holds):
            return self._context
        result = self._read_settings()
        if result.settings_error is None and result.enabled:
            return self._context
        self._apply_check(result)
        return None

    def _settings_due(self, holds: Holds) -> bool:
        """Whether the settings are read again before the next batch: every
        SETTINGS_REFRESH_SECONDS, and after a hook or task nudged the worker."""
        since = self.clock() - self._settings_read_at
        return since >= SETTINGS_REFRESH_SECONDS or holds.nudged_at > self._settings_read_at

    def _read_settings(self) -> hold_checks.CheckResult:
        self._settings_read_at = self.clock()
        try:
            context = self.context_factory(self.store)
        except errors.SyncError as exc:
            self._context = None
            return hold_checks.CheckResult(settings_error=exc)
        if self._context is not None and _same_plex(self._context, context):
            context = replace(context, plex=self._context.plex)  # keep its connection
        context.plex.on_identity = self._check_server
        observers = context.plex.transport.observers  # how fast Plex answers (sync_width)
        if self._answer_times.observe not in observers:
            observers.append(self._answer_times.observe)
        self._context = context
        level = logging.DEBUG if context.config.debug_logging else logging.INFO
        logging.getLogger("stash2plex").setLevel(level)
        # Settings are re-read every minute: say each problem once, not 1,440 times a day.
        for warning in context.config.warnings:
            if warning not in self._warned:
                log.warning(warning)
        self._warned = set(context.config.warnings)
        return hold_checks.CheckResult(enabled=context.config.enabled)

    def _sources(self) -> dict[str, str]:
        return dict(self._context.sources) if self._context is not None else {}

    def _check(self, holds: Holds) -> Holds:
        """Re-read the settings and, if Plex holds the queue, probe it; lift what can be."""
        result = self._read_settings()
        readable = result.settings_error is None and result.enabled
        if readable and self._context is not None and hold_checks.needs_plex_probe(holds):
            result = self._probe(self._context)
        return self._apply_check(result)

    def _apply_check(self, result: hold_checks.CheckResult) -> Holds:
        """Store what a check means for the holds, and log its events."""
        return self._change_holds(
            lambda current: hold_checks.after_check(current, result, self.clock(), self._sources())
        )

    def _change_holds(self, change: Callable[[Holds], tuple[Holds, list[Event]]]) -> Holds:
        """Change the holds in the store, and log the events the change says (the worker log
        is the only place a detached worker can tell a person)."""
        logged: list[Event] = []

        def logging_change(current: Holds) -> tuple[Holds, list[Event]]:
            holds, events = change(current)
            logged[:] = events
            return holds, events

        holds = self.store.change_holds(logging_change)
        for event in logged:
            getattr(log, event.level)(event.message)
        return holds

    def _probe(self, context: Context) -> hold_checks.CheckResult:
        health = self._syncer(context).index.health()
        if not health.ok:
            error = health.error or errors.ServerDownError(health.detail, server="plex")
            answered = plex_url_answered(context)
            return hold_checks.CheckResult(probed=True, plex_error=error, plex_answered=answered)
        return hold_checks.CheckResult(probed=True)

    def _max_attempts(self, context: Context) -> int:
        """The `max_retries` setting, unless the worker was built with an explicit policy."""
        return (
            self.policy.retry.max_attempts if self._explicit_policy else context.config.max_retries
        )

    # ------------------------------------------------------------------ helpers
    def _syncer(self, context: Context, store: Store | None = None) -> SceneSyncer:
        syncer = SceneSyncer(
            store or self.store,
            context.stash,
            context.plex,
            context.config,
            self.clock,
            items_ahead=self._items_ahead,
            collections=self._collections,
        )
        syncer.index.refresh_min_seconds = min(30.0, self.policy.not_in_plex_recheck)
        return syncer

    def _expand_entity_changes(self, context: Context) -> None:
        """Turn performer/studio/tag/group changes into jobs for the scenes that show them."""
        filters = {
            "performer": lambda ids: {"performers": {"value": ids, "modifier": "INCLUDES"}},
            "studio": lambda ids: {"studios": {"value": ids, "modifier": "INCLUDES", "depth": -1}},
            "tag": lambda ids: {"tags": {"value": ids, "modifier": "INCLUDES", "depth": -1}},
            "group": lambda ids: {"groups": {"value": ids, "modifier": "INCLUDES"}},
        }
        # Deleted ones first: Stash cannot list their scenes any more, but our records of what
        # each scene showed when pushed can, without asking Stash.
        for kind, entity_id, count in self.store.expand_entity_deletions():
            if kind == "tag":  # tag filters need the hierarchy without it
                context.stash.forget_tag_hierarchy()
            self._event(
                "info",
                "entity_deleted",
                f"{kind} {entity_id} deleted: {plural(count, 'scene')} queued",
            )
        for kind, entity_id, recorded_at in self.store.entity_changes():
            if kind == "tag":  # its parents may have changed: tag filters need them afresh
                context.stash.forget_tag_hierarchy()
            build = filters.get(kind)
            try:
                listed = context.stash.scene_ids(build([str(entity_id)])) if build else []
            except errors.SyncError as exc:
                log.warning("could not expand the change of %s %s: %s", kind, entity_id, exc)
                return
            # Stash answers after the edit: a child tag or studio taken out from under this one
            # (on this one's page, which fires the hook for this one only) no longer lists its
            # scenes here. Our records of what each scene showed at its last push (ancestor
            # tags, the parent studio) still do.
            scene_ids = sorted({*listed, *self.store.scenes_showing(kind, entity_id)})
            self.store.expand_entity_change(kind, entity_id, recorded_at, scene_ids)
            if scene_ids:
                self._event(
                    "info",
                    "entity_changed",
                    f"{kind} {entity_id} changed: {plural(len(scene_ids), 'scene')} queued",
                )

    def _record_entities(self, context: Context) -> None:
        """One batch of the background reading of what linked scenes show; an event when the
        last batch is done."""
        if not self._backfill.tick(self.store, context.stash, context.config):
            return
        if self.store.entity_backfill(1):
            return
        self._event(
            "info",
            "entities_recorded",
            f"recorded what {self._backfill.recorded} linked scenes show (links made by an "
            f"older version), so deletions in Stash reach them; {self._backfill.queued} "
            "changed in Stash since their last push and were queued",
        )

    def _maybe_request_scan(self, context: Context, job: Job, error: errors.NotInPlexError) -> None:
        """With `trigger_plex_scan`, ask Plex once per job to scan the file's folder."""
        detail = dict(error.detail or {})
        detail["scan_requested"] = bool((job.detail or {}).get("scan_requested"))
        if context.config.trigger_plex_scan and not detail["scan_requested"]:
            detail["scan_requested"] = True
            try:
                scanned = self._syncer(context).index.request_scan(detail.get("paths") or [])
            except errors.SyncError as exc:
                self._event("warning", "scan", f"could not ask Plex to scan: {exc.message}")
            else:
                if scanned:
                    message = f"scene {job.scene_id}: asked Plex to scan {'; '.join(scanned)}"
                    self._event("info", "scan", message)
        error.detail = detail

    def _merge_spool(self) -> None:
        if not spool.pending(self.data_dir):
            return
        entries, files = spool.take(self.data_dir)
        merged = self.store.merge_spool(entries)
        spool.discard(files)
        if merged:
            log.info("recorded %d hook events that waited in the spool", merged)

    def _pace(self, holds: Holds) -> None:
        """After a recovery, start each job only when the ramp's token bucket allows."""
        started = holds.ramp_started_at
        if started is None:
            self._ramp = None
            return
        if self._ramp is None or self._ramp.started_at != started:
            self._ramp = RecoveryRamp(started)
        now = self.clock()
        if self._ramp.finished(now):
            self.store.change_holds(lambda current: (replace(current, ramp_started_at=None), []))
            self._ramp = None
            return
        wait = self._ramp.wait_time(now)
        if wait > 0:
            self.sleep(wait)
        self._ramp.take(self.clock())

    def _next_wake(self) -> float:
        """When the worker has something to do next: a due job, a check, housekeeping."""
        now = self.clock()
        holds = self.store.holds()
        candidates = [now + self.idle_exit_seconds, self._housekept_at + HOUSEKEEPING_SECONDS]
        if holds.held:
            candidates.append(holds.next_check_at() or now)
        else:
            due = self.store.next_due_at()
            if due is not None:
                candidates.append(due)
            unsettled = self.store.next_unsettled_check()
            if unsettled is not None:
                candidates.append(unsettled)
            if self._context is not None:
                candidates.append(self._settings_read_at + SETTINGS_REFRESH_SECONDS)
            pull_due = self._pull_timer.next_due_at(self._context)
            if pull_due is not None:
                candidates.append(pull_due)
            reconcile_due = self._reconcile_timer.next_due_at(self._context)
            if reconcile_due is not None:
                candidates.append(reconcile_due)
            backfill_due = self._backfill.next_due_at(self.store)
            if backfill_due is not None and self._context is not None:
                candidates.append(backfill_due)
        return max(min(candidates), now + self.poll_seconds)

    def _wait(self, deadline: float) -> None:
        """Sleep until `deadline`, waking early when another process commits, replaces the
        store (hooks then write to the new file, whose commits the old one never shows) or on
        stop."""
        version = self.store.data_version()
        while self.clock() < deadline and not self._stop.is_set():
            self.sleep(min(self.poll_seconds, max(0.0, deadline - self.clock())))
            if (
                self.store.data_version() != version
                or spool.pending(self.data_dir)
                or self.store.replaced()
            ):
                return

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

    def _event(self, level: EventLevel, kind: str, message: str) -> None:
        if self._context is not None and self._context.config.obfuscate_paths:
            message = obfuscate_paths(message)  # the events table is shown and shared too
        getattr(log, level)(message)
        self.store.add_event(level, kind, message)


def _repeated_server_failure(job: Job, error: errors.TransientError, max_attempts: int) -> bool:
    """A server-side transient failure (5xx, timeout, dropped connection) of a job that
    already failed before, or that would send it to the dead letters (`max_retries` 1): a
    server that fails every request must hold the job, not dead-letter it."""
    return (
        not isinstance(error, errors.InternalError)
        and error.server is not None
        and (job.attempts >= 1 or job.attempts + 1 >= max_attempts)
    )


def _without_paths(decision: Decision) -> Decision:
    """The decision with file paths replaced by pseudonyms in everything the store keeps of
    it (the job's last error and detail, the dead letter, the pause, the event):
    `obfuscate_paths` covers records, not only logs."""
    return replace(
        decision,
        message=obfuscate_paths(decision.message) if decision.message else decision.message,
        detail=obfuscate_data(decision.detail) if decision.detail else decision.detail,
        event=replace(decision.event, message=obfuscate_paths(decision.event.message))
        if decision.event
        else None,
        pause=replace(decision.pause, message=obfuscate_paths(decision.pause.message))
        if decision.pause
        else None,
    )


def _same_plex(old: Context, new: Context) -> bool:
    """Whether the new settings keep the Plex client (and its connection): the same server,
    token, timeout, TLS check and request limits (the client's request slots, throttle and
    connection pool are made for the limits, so changed ones take a new client)."""
    keys = (
        "plex_url",
        "plex_token",
        "plex_timeout",
        "verify_tls",
        "plex_max_concurrency",
        "plex_max_requests_per_second",
    )
    return all(getattr(old.config, k) == getattr(new.config, k) for k in keys)


def configure_worker_logging(
    data_dir: Path,
    secrets: Callable[[], tuple[str, ...]],
    hide_paths: Callable[[], bool] = lambda: False,
) -> None:
    """Log to a rotating file in the data directory (mode 0600), scrubbing secrets (and, when
    asked, file paths) from every record."""
    from logging.handlers import RotatingFileHandler

    class PrivateRotatingFileHandler(RotatingFileHandler):
        def _open(self):  # type: ignore[no-untyped-def]
            fd = os.open(self.baseFilename, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
            os.chmod(self.baseFilename, 0o600)
            return os.fdopen(fd, "a", encoding=self.encoding)

    handler = PrivateRotatingFileHandler(
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
