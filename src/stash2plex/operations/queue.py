"""One function per user-facing operation, shared by Stash tasks, the CLI and the demo.

Operations return data (dataclasses and dicts); callers decide how to show it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash2plex import errors
from stash2plex.clients.stash import StashClient
from stash2plex.engine import pauses
from stash2plex.engine.context import Context, plex_url_answered, remember_plex_server
from stash2plex.engine.handover import request_handover
from stash2plex.engine.holds import checked_now
from stash2plex.engine.outage_metrics import Outage, outage_metrics
from stash2plex.engine.worker import FORCE_SOURCE, DrainReport, Worker, WorkerBusyError
from stash2plex.engine.worker_lock import ensure_worker, worker_running
from stash2plex.records import Holds
from stash2plex.settings.sources import describe_source, load_local_settings
from stash2plex.store.db import Store
from stash2plex.store.reconcile import outage_reconciled
from stash2plex.sync.syncer import PlexIndex, SceneSyncer

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class QueueStatus:
    counts: dict[str, int]
    dead_letters: int
    worker_running: bool
    linked_scenes: int
    recent_events: list[dict[str, Any]]

    @property
    def outstanding(self) -> int:
        return sum(n for state, n in self.counts.items() if state != "done")

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "outstanding": self.outstanding,
            "dead_letters": self.dead_letters,
            "worker_running": self.worker_running,
            "linked_scenes": self.linked_scenes,
            "recent_events": self.recent_events,
        }


def queue_status(store: Store, data_dir: Path) -> QueueStatus:
    return QueueStatus(
        counts=store.job_counts(),
        dead_letters=len(store.dead_letters()),
        worker_running=worker_running(data_dir),
        linked_scenes=store.link_count(),
        recent_events=store.recent_events(5),
    )


def queue_all_scenes(store: Store, stash: StashClient, *, force: bool = False) -> int:
    """Mark every Stash scene dirty, a page of ids at a time (one transaction per page, so
    100,000 scenes queue in seconds and never sit in memory). Unchanged scenes then cost no
    Plex write; with `force` every synced field and image is rewritten (Force Sync All).
    Returns how many scenes were queued."""
    queued = 0
    for page in stash.scene_id_pages():
        store.enqueue(page, source=FORCE_SOURCE if force else "sync_all", retry_now=True)
        queued += len(page)
    return queued


# A follower waits this long for a started worker to show up before starting one again, and
# gives up (saying so) after the second try.
WORKER_START_SECONDS = 15.0
FOLLOW_POLL_SECONDS = 0.5
# A follower waits this long after a hold's check fell due for the worker to make it (a probe
# takes up to plex_timeout); past that it reports the hold as it stands rather than follow on.
CHECK_WAIT_SECONDS = 90.0


def check_holds_now(store: Store) -> None:
    """Have the worker look at what holds the queue now (`engine.holds.checked_now`)."""
    store.change_holds(lambda holds: (checked_now(holds, store.clock()), []))


def take_over_drain(
    data_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """A running worker given other settings than this process's hands the queue over (see
    `engine.handover`). Called before a command queues scenes, so that worker cannot sync them
    with its settings first, and again before the drain. A command calls it once its own
    settings proved usable (`cli.context`): one that cannot use them must not stop a worker
    that can."""
    kept = request_handover(
        data_dir, load_local_settings(data_dir).fingerprint(), clock=clock, sleep=sleep
    )
    if kept:
        log.warning(kept)


@contextlib.contextmanager
def drain_taken_over(data_dir: Path) -> Iterator[None]:
    """`take_over_drain`, then the command's queueing: when that fails (Stash stops answering
    midway, Ctrl-C, SIGTERM) the queue is not left without a worker. One is started with this
    process's settings, which proved usable before the takeover (`cli.context`)."""
    try:
        take_over_drain(data_dir)  # inside: stopped while it waits, the worker may be gone
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the failure being raised says what matters
            with Store.open(data_dir) as store:
                waiting = store.outstanding_jobs()
            if waiting and ensure_worker(data_dir):
                log.info("the queue was handed to a worker started with this command's settings")
        raise


def process_queue(
    data_dir: Path,
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    start_worker: Callable[[], Any] | None = None,
    worker_factory: Callable[[Path], Worker] | None = None,
    since: float | None = None,
) -> DrainReport:
    """Drain until nothing is due or a hold stops the drain, and report what was done.

    With `start_worker` (Stash tasks, the CLI), the drain runs in a detached worker and this
    process only follows it in the store: pressing Stop (a SIGKILL of the task) then stops the
    watching, never the work, and a save made meanwhile is never left without a worker. Without
    it (tests, the demo), the drain runs here. The report counts what finished since `since`
    (epoch seconds; default: the call; pass the time just before queueing, since a running
    worker may finish a job before this is called), the dead letters with their reasons, what
    waits, and what holds the queue.
    """
    started = clock() if since is None else since
    if start_worker is not None:  # the drain must run with this process's settings
        take_over_drain(data_dir, clock=clock, sleep=sleep)
    with Store.open(data_dir, clock=clock) as store:
        check_holds_now(store)  # a fixed setting, or Plex back, lifts a hold right away
        total = max(1, store.due_now())
    if start_worker is None:
        worker = (worker_factory or (lambda d: Worker(d, clock=clock, sleep=sleep)))(data_dir)
        with contextlib.suppress(WorkerBusyError):  # another worker drains: follow it
            worker.run(
                until_idle=True,
                progress=(
                    (lambda report: progress(report.processed, max(total, report.processed)))
                    if progress
                    else None
                ),
            )
    else:
        start_worker()
    problem = _follow(data_dir, total, progress, clock, sleep, start_worker)
    return _drain_summary(data_dir, started, clock, problem)


def _follow(
    data_dir: Path,
    total: int,
    progress: Progress | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    start_worker: Callable[[], Any] | None,
) -> str | None:
    """Watch the store until nothing is due or a hold stops the worker, after the worker has
    looked at the hold since we made its check due (until then the hold may be one a fixed
    setting or Plex being back has already ended). Returns a problem, if any."""
    missing_since: float | None = None
    restarted = False
    with Store.open(data_dir, clock=clock) as store:
        while True:
            due = store.due_now()
            if progress:
                progress(max(0, total - due), total)
            holds = store.holds()
            check_at = holds.next_check_at() or 0.0
            checking = holds.held and check_at <= clock() < check_at + CHECK_WAIT_SECONDS
            if not checking and (due == 0 or holds.held):
                return None
            if worker_running(data_dir):
                missing_since = None
            elif start_worker is None:
                return None  # the in-process drain ended; nothing else drains here
            else:
                missing_since = clock() if missing_since is None else missing_since
                if clock() - missing_since >= WORKER_START_SECONDS:
                    if restarted:
                        return (
                            "the background worker did not start; its output is in worker.out "
                            f"in {data_dir}"
                        )
                    start_worker()
                    restarted, missing_since = True, None
            sleep(FOLLOW_POLL_SECONDS)


def _drain_summary(
    data_dir: Path, started: float, clock: Callable[[], float], problem: str | None
) -> DrainReport:
    with Store.open(data_dir, clock=clock) as store:
        summary = store.drain_summary(started)
        held = hold_message(store.holds())
    report = DrainReport(
        synced=summary["synced"],
        unchanged=summary["unchanged"],
        skipped=summary["skipped"],
        deferred=sum(summary["waiting"].values()),
        dead_lettered=summary["dead_lettered"],
        errors=[*summary["dead_letter_reasons"], *[m for m in (held, problem) if m]],
    )
    return report


@dataclass(frozen=True)
class FieldChange:
    field: str
    plex: str
    stash: str


@dataclass(frozen=True)
class ScenePreview:
    scene_id: int
    # "would change" | "unchanged" | "edited in Plex" | "left alone" | "not in Plex"
    # | "ambiguous" | "conflict" | "settings" | "no file" | "not in Stash" | "error"
    status: str
    rating_key: int | None = None
    changes: tuple[FieldChange, ...] = ()
    note: str = ""
    # Fields where Plex differs from Stash but a sync leaves Plex as it is (edited in Plex).
    kept: tuple[FieldChange, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "status": self.status,
            "rating_key": self.rating_key,
            "changes": [c.__dict__ for c in self.changes],
            "kept": [c.__dict__ for c in self.kept],
            "note": self.note,
        }


def preview(
    context: Context,
    *,
    scene_id: int | None = None,
    count: int = 10,
    scene_ids: list[int] | None = None,
    force: bool = False,
) -> list[ScenePreview]:
    """What a sync would change in Plex, field by field. Reads Stash and Plex; writes nothing.

    Stash is compared with Plex as it is (each item's detail, one read per scene): a field
    edited in Plex shows as kept (a sync leaves it, unless `force`, which rewrites it; with
    `preserve_plex_edits` even a forced sync leaves it), and a value Plex already shows is
    no change, whatever was recorded before. `scene_id` or `scene_ids` choose scenes; else the
    first `count` scenes.
    """
    syncer = SceneSyncer(context.store, context.stash, context.plex, context.config, force=force)
    wanted = [scene_id] if scene_id is not None else scene_ids
    if wanted is not None:
        results = []
        for one in wanted:
            scene = context.stash.find_scene(one)
            if scene is None:
                results.append(ScenePreview(one, "not in Stash", note="no such scene in Stash"))
            else:
                results.append(_preview_scene(syncer, scene))
        return results
    _, scenes = context.stash.find_scenes(per_page=count)
    return [_preview_scene(syncer, scene) for scene in scenes]


_PREVIEW_STATUS = {
    errors.NOT_IN_PLEX: "not in Plex",
    errors.AMBIGUOUS: "ambiguous",
    errors.CONFLICT: "conflict",
    errors.CONFIG: "settings",
    errors.AUTH: "settings",
}


def _preview_scene(syncer: SceneSyncer, scene: dict[str, Any]) -> ScenePreview:
    scene_id = int(scene["id"])
    files = scene.get("files") or []
    if not files:
        return ScenePreview(scene_id, "no file", note="the scene has no video file")
    try:
        tree = syncer.tag_tree(scene)
        matches = syncer.resolve(scene)
        plans = [
            syncer.plan(scene, match, tree=tree, position=position)
            for position, match in enumerate(matches)
        ]
        currents = [
            plan.current or (None if plan.left_alone else syncer.plex.item_detail(match.rating_key))
            for plan, match in zip(plans, matches, strict=True)
        ]
    except errors.SyncError as exc:
        status = _PREVIEW_STATUS.get(exc.error_class, "error")
        return ScenePreview(scene_id, status, note=exc.message)
    if all(plan.left_alone for plan in plans):
        return ScenePreview(
            scene_id,
            "left alone",
            matches[0].rating_key,
            note="the scene has no metadata of its own yet; its Plex item stays as it is "
            "(setting sync_empty_scenes)",
        )
    changes: list[FieldChange] = []
    kept: list[FieldChange] = []
    preserved: list[str] = []
    edited: list[str] = []
    rating_notes: list[str] = []
    for plan, current in zip(plans, currents, strict=True):
        # A scene whose files Plex holds as several items: name the item for all but the first.
        suffix = f" (Plex item {plan.match.rating_key})" if plan.position else ""
        if current is None:
            continue
        writes, keeps = _compare_with_plex(plan, current)
        if syncer.config.sync_rating_both_ways:
            # Both ways the rating is decided by the rule, not pushed: said, not listed.
            for change in [c for c in writes + keeps if c.field == "rating"]:
                (writes if change in writes else keeps).remove(change)
                rating_notes.append(
                    f"rating: Plex {change.plex or 'unrated'}{suffix}, Stash "
                    f"{change.stash or 'unrated'}; ratings go both ways, the later change wins"
                )
        changes += [FieldChange(c.field + suffix, c.plex, c.stash) for c in writes]
        kept += [FieldChange(c.field + suffix, c.plex, c.stash) for c in keeps]
        preserved += [c.field + suffix for c in keeps if c.field in plan.preserved]
        edited += [c.field + suffix for c in keeps if c.field not in plan.preserved]
    notes = list(dict.fromkeys(rating_notes))
    if preserved:
        notes.append(f"left alone, edited in Plex: {', '.join(preserved)} (preserve_plex_edits)")
    if edited:
        notes.append(
            f"edited in Plex: {', '.join(edited)}; a sync leaves them, Force Sync All rewrites "
            "them from Stash"
        )
    status = "would change" if changes else ("edited in Plex" if kept else "unchanged")
    return ScenePreview(
        scene_id, status, matches[0].rating_key, tuple(changes), "; ".join(notes), tuple(kept)
    )


def _compare_with_plex(plan: Any, current: Any) -> tuple[list[FieldChange], list[FieldChange]]:
    """(fields a sync would write, fields where Plex differs but a sync leaves it), comparing
    what Stash says with what the Plex item shows now."""
    desired = plan.desired
    pairs: list[tuple[str, str, str]] = []
    for key, value in desired.fields.items():
        pairs.append((key, current.fields.get(key, ""), value))
    lists = {
        "genre": desired.genres,
        "actor": None if desired.actors is None else [a.name for a in desired.actors],
        "collection": None if desired.collections is None else plan.owned.get("collection_all"),
        "label": None if desired.labels is None else plan.owned.get("label_all", desired.labels),
    }
    for key, wanted in lists.items():
        if wanted is None:
            continue
        before = list(current.tags.get(key, []))
        if sorted(before) != sorted(wanted):
            pairs.append((key, ", ".join(before), ", ".join(wanted)))
    if desired.sync_rating:
        rating = "" if desired.rating is None else f"{desired.rating:g}"
        now = "" if current.user_rating is None else f"{current.user_rating:g}"
        pairs.append(("rating", now, rating))
    changes: list[FieldChange] = []
    kept: list[FieldChange] = []
    for key, plex_value, stash_value in pairs:
        if plex_value == stash_value:
            continue
        change = FieldChange(key, plex_value, stash_value)
        (changes if key in plan.changes else kept).append(change)
    for kind in plan.images:
        changes.append(
            FieldChange(kind, "(current image)", "the Stash cover, if its content changed")
        )
    return changes, kept


# ---------------------------------------------------------------------- queue management
def status_report(store: Store, data_dir: Path) -> dict[str, Any]:
    """Everything "View Queue Status" shows (reads only; never takes the worker lock)."""
    counts = store.job_counts()
    waiting = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("waiting:")}
    outages = store.outages()
    holds = store.holds()
    running = worker_running(data_dir)
    # Jobs leased by a worker that is gone are due again as soon as a worker starts.
    leased = counts.get("leased", 0)
    return {
        "pending": counts.get("pending", 0) + (0 if running else leased),
        "in_progress": leased if running else 0,
        "waiting": waiting,
        "done": counts.get("done", 0),
        "dead_letters": store.dead_letter_counts(),
        "breaker": holds.breaker.state,
        "breaker_since": holds.breaker.opened_at if not holds.breaker.is_closed else None,
        "paused": hold_message(holds),
        "worker_running": running,
        # Its reconcile as an object (the row keeps it as JSON text).
        "last_outage": {**outages[-1], "reconciled": outage_reconciled(outages[-1])}
        if outages
        else None,
        "last_sync_at": store.last_synced_at(),
        "linked_scenes": store.link_count(),
    }


def hold_message(holds: Holds) -> str | None:
    """One sentence saying what holds the queue, what to fix and where its value came from
    (Stash's plugin settings, an environment variable, a file), or None."""
    pause = holds.pause
    if pause is not None:
        where = describe_source(pause.setting, pause.source)
        return f"{pause.message}; {where}" if where else pause.message
    if not holds.breaker.is_closed:
        reason = holds.breaker.reason
        down = reason if reason.startswith("Plex") else f"Plex is down: {reason}"
        return (down if reason else "Plex is down") + "; jobs wait and sync when it is back"
    return None


def variable_gone_note(
    holds: Holds, environ: Mapping[str, str], worker_running: bool
) -> str | None:
    """When the setting that holds the queue came from an environment variable that `environ`
    (this shell's) does not set: the worker that found the problem was started elsewhere (a
    shell with the variable), and may still run with it. None otherwise."""
    pause = holds.pause
    if pause is None or not (pause.source or "").startswith("environment "):
        return None
    variable = pause.source.split(" ", 1)[1].strip()
    if not variable or variable in environ:
        return None
    runs = " and still runs" if worker_running else ""
    return (
        f"{variable} is not set here, but the worker that found this was started with it{runs}: "
        "`stash2plex queue process` drains with this shell's settings"
    )


def clear_pending(store: Store) -> int:
    return store.clear_pending()


def clear_dead_letters(store: Store) -> int:
    return store.delete_dead_letters()


def purge_dead_letters(store: Store, days: float) -> int:
    if days < 0:
        raise errors.PermanentError("days must be 0 or more")
    return store.delete_dead_letters(older_than=store.clock() - days * 86400)


def retry_dead_letters(store: Store, error_class: str | None = None) -> int:
    """Queue dead-lettered scenes again (all, or one error class) and remove those letters,
    in one transaction. Returns how many scenes were queued."""
    letters = store.dead_letters(error_class)
    return len(store.redrive([letter["id"] for letter in letters], "retry dead letters"))


@dataclass
class RecoveryReport:
    window: tuple[float, float] | None
    recovered: list[int]
    skipped: dict[str, list[int]]
    failed: dict[int, str]
    health: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": list(self.window) if self.window else None,
            "recovered": len(self.recovered),
            "skipped": {reason: len(ids) for reason, ids in self.skipped.items()},
            "failed": {str(k): v for k, v in self.failed.items()},
            "health": self.health,
        }


def recover_outage_jobs(
    context: Context, classes: tuple[str, ...] = (errors.TRANSIENT,)
) -> RecoveryReport:
    """Re-queue dead letters that failed during the last completed outage.

    Only after a health check passes; skips scenes deleted from Stash (their letters are
    removed); recovered letters leave the dead-letter queue in the same transaction that queues
    their scenes, so running it twice, or a kill in the middle, is harmless.
    """
    store = context.store
    health = context.plex.health()
    completed = [o for o in store.outages() if o["ended_at"] is not None]
    if not health.ok:
        return RecoveryReport(None, [], {}, {}, f"Plex is not healthy: {health.detail}")
    if not completed:
        return RecoveryReport(None, [], {}, {}, "no completed outage recorded")
    last = completed[-1]
    window = (float(last["started_at"]), float(last["ended_at"]))
    letters = [
        letter
        for error_class in classes
        for letter in store.dead_letters(error_class)
        if window[0] <= letter["failed_at"] <= window[1]
    ]
    report = RecoveryReport(window, [], {}, {}, health.detail)
    redrive: list[int] = []
    handled: list[int] = []
    for letter in letters:
        scene_id = letter["scene_id"]
        try:
            scene = context.stash.find_scene(scene_id)
        except errors.SyncError as exc:
            report.failed[scene_id] = exc.message
            continue
        if scene is None:
            report.skipped.setdefault("deleted in Stash", []).append(scene_id)
            handled.append(letter["id"])
            continue
        report.recovered.append(scene_id)
        redrive.append(letter["id"])
    # One transaction: a kill leaves every scene either still dead-lettered or queued.
    store.redrive(redrive, "recover outage jobs")
    store.delete_dead_letters(ids=handled)
    return report


def health_report(context: Context, data_dir: Path) -> dict[str, Any]:
    health = PlexIndex(context.store, context.plex, context.config).health()
    if health.ok:  # the probe connected: Plex said who it is
        remember_plex_server(context, ask_claimed=True)
        if context.store.holds().held:  # held by an earlier check: a running worker looks now
            check_holds_now(context.store)
    status = status_report(context.store, data_dir)
    error, detail = health.error, health.detail
    if error is not None and pauses.never_reached(error) and not plex_url_answered(context):
        error = pauses.address_to_check(error)  # never reached with these settings
        detail = error.message
    # Plex's HTTP status when it answered with an error (a running Plex failing); a proxy's
    # gateway error is Plex not answering.
    plex_status = None if isinstance(error, errors.GatewayError) else getattr(error, "status", None)
    setting = getattr(error, "setting", "") or (
        "plex_token" if health.error_class == errors.AUTH else ""
    )
    where = describe_source(setting, context.sources.get(setting, ""))
    if where:  # e.g. the token came from STASH2PLEX_PLEX_TOKEN, not from Stash
        detail = f"{detail}; {where}"
    return {
        "healthy": health.ok,
        "latency_ms": round(health.latency_ms, 1),
        "detail": detail,
        "problem": None if error is None else error.error_class,
        "status": plex_status,
        # Plex took the request but did not answer in time: running, but slow.
        "slow": bool((getattr(error, "detail", None) or {}).get(errors.ANSWER_LATE)),
        "breaker": status["breaker"],
        "paused": status["paused"],
        "queue": {k: status[k] for k in ("pending", "in_progress", "waiting", "dead_letters")},
    }


def outage_report(store: Store, limit: int = 10) -> dict[str, Any]:
    outages = store.outages()
    now = store.clock()
    metrics = outage_metrics(
        [Outage(o["started_at"], o["ended_at"], o["jobs_affected"]) for o in outages],
        now,
        observed_since=store.watched_since(),
    )
    return {
        "outages": metrics.outages,
        "completed": metrics.completed,
        "total_downtime_s": round(metrics.total_downtime, 1),
        "mttr_s": None if metrics.mttr is None else round(metrics.mttr, 1),
        "mtbf_s": None if metrics.mtbf is None else round(metrics.mtbf, 1),
        "availability_pct": None
        if metrics.availability is None
        else round(metrics.availability, 3),
        # The window the availability covers: from when this store began watching Plex.
        "watched_since": store.watched_since(),
        "now": now,
        "recent": [
            {
                "started_at": o["started_at"],
                "ended_at": o["ended_at"],
                "duration_s": round((o["ended_at"] or now) - o["started_at"], 1),
                "jobs_affected": o["jobs_affected"],
                "ongoing": o["ended_at"] is None,
                "reconciled": outage_reconciled(o),
            }
            for o in outages[-limit:]
        ],
    }
