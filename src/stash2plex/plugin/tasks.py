"""Stash tasks: the Tasks page buttons, dispatched by `args.mode`, each ending in one report."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stash2plex.engine.context import (
    Context,
    build_context,
    connect_stash,
    load_config,
    plex_url_answered,
)
from stash2plex.engine.worker_lock import ensure_worker
from stash2plex.errors import StoreError, SyncError, redact
from stash2plex.operations import queue as operations
from stash2plex.operations.present import field_words
from stash2plex.plugin import protocol
from stash2plex.plugin.entry import wake_worker, worker_python_path
from stash2plex.pseudonyms import obfuscate_paths
from stash2plex.settings.config import unsaid_warnings
from stash2plex.settings.sources import with_source
from stash2plex.store.db import Store
from stash2plex.words import agree, plural

# A task waits this long for another process's write lock before saying the store is busy.
TASK_BUSY_SECONDS = 5.0


@dataclass(frozen=True)
class Task:
    """What every task gets: its arguments (`args` of Stash's plugin input), Stash's server
    connection, the plugin's data directory, Stash's log, and how to start a detached worker."""

    args: dict[str, Any]
    connection: dict[str, Any]
    data_dir: Path
    log: protocol.StashLog
    start_worker: Callable[[], Any]
    warned: set[str] = field(default_factory=set)  # settings warnings said in Stash's log

    def context(self, store: Store) -> Context:
        """The settings and clients (`build_context`); a value the settings refused (its
        default used instead) is said once in Stash's log, as the settings reference promises
        ("the next task report names the key and the accepted values")."""
        context = build_context(store, self.connection)
        for warning in unsaid_warnings(context.config, self.warned):
            self.log.warning(f"Stash2Plex: {warning}")
        return context


@dataclass
class TaskResult:
    """A task's output, and its error when the task could not do its job or a person must
    act (Stash then shows a failed job with that one sentence)."""

    output: dict[str, Any]
    error: str | None = None


def run_task(
    args: dict[str, Any],
    connection: dict[str, Any],
    data_dir: Path,
    plugin_dir: Path | None,
    *,
    log: protocol.StashLog,
    stdout: IO[str] | None = None,
) -> int:
    """Run the task `args.mode` and print its one result; returns the exit code (1 when the
    result carries an error). Never lets a traceback reach Stash: an unexpected failure is
    reported in one sentence (the traceback goes to the debug log)."""
    try:
        scrub = _configure_output(connection, data_dir, log)
        # Whatever this task is, work left without a worker (a task stopped with Stash's Stop
        # button, a worker killed) gets one now: every wake-up has an owner.
        wake_worker(data_dir, plugin_dir)
    except StoreError as exc:
        protocol.write_result(error=str(exc), stream=stdout)
        return 1
    mode = str(args.get("mode") or "")
    log.debug(f"Stash2Plex: task {mode!r} with data directory {data_dir}")
    handler = TASKS.get(mode)
    if handler is None:
        message = f"unknown task mode {mode!r}; expected one of: {', '.join(sorted(TASKS))}"
        protocol.write_result(error=message, stream=stdout)
        return 1
    bridge = _LogBridge(log)
    logging.getLogger("stash2plex").addHandler(bridge)
    try:
        result = handler(Task(args, connection, data_dir, log, _starter(data_dir, plugin_dir)))
    except SyncError as exc:
        # A setting's problem names where its value came from, as every command says it.
        protocol.write_result(error=scrub(with_source(exc, {})), stream=stdout)
        return 1
    except StoreError as exc:
        protocol.write_result(error=scrub(str(exc)), stream=stdout)
        return 1
    except Exception as exc:  # a bug of ours: one sentence for Stash, details at debug level
        log.debug(scrub(traceback.format_exc()))
        message = (
            f"the task {mode!r} failed unexpectedly ({type(exc).__name__}: {exc}); switch on "
            "debug_logging and run it again to see where"
        )
        protocol.write_result(error=scrub(message), stream=stdout)
        return 1
    finally:
        logging.getLogger("stash2plex").removeHandler(bridge)
    if not isinstance(result, TaskResult):
        result = TaskResult(result)
    output = json.loads(scrub(json.dumps(result.output, default=str)))
    error = scrub(result.error) if result.error else None
    protocol.write_result(output=output, error=error, stream=stdout)
    return 1 if error else 0


class _LogBridge(logging.Handler):
    """The worker's log lines, when a task drains in its own process, go to Stash's log at
    debug level only: the task's own summary says what happened, once (a mass failure must not
    become one line per scene)."""

    def __init__(self, log: protocol.StashLog) -> None:
        super().__init__(logging.DEBUG)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.debug(f"Stash2Plex worker: {record.getMessage()}")
        except Exception:
            self.handleError(record)


def _configure_output(
    connection: dict[str, Any], data_dir: Path, log: protocol.StashLog
) -> Callable[[str], str]:
    """Apply `debug_logging` and `obfuscate_paths` to everything this task prints.

    Secrets are always scrubbed. The settings are read from Stash; if Stash cannot be reached
    the task still runs with the defaults and its own error says why.
    """
    secrets: tuple[str, ...] = tuple(
        s for s in [(connection.get("SessionCookie") or {}).get("Value")] if s
    )
    hide_paths = False
    try:
        with Store.open(data_dir, busy_timeout=TASK_BUSY_SECONDS) as store:
            stash = connect_stash(store, connection)
            config, _ = load_config(stash)
        secrets += config.secrets() + stash.connection.secrets()
        hide_paths = config.obfuscate_paths
        log.debug_enabled = config.debug_logging
    except SyncError:
        pass  # the task meets the same problem and reports it in its result

    def scrub(text: str) -> str:
        text = redact(text, secrets)
        return obfuscate_paths(text) if hide_paths else text

    log.set_scrubber(scrub)
    return scrub


def _progress(log: protocol.StashLog):
    def report(done: int, total: int) -> None:
        log.progress(done / total if total else 1.0)

    return report


def _starter(data_dir: Path, plugin_dir: Path | None) -> Callable[[], Any]:
    """Start a detached worker (with the plugin's dependencies on its path) unless one runs:
    tasks only follow drains, so Stash's Stop button never stops the work itself."""
    return lambda: ensure_worker(data_dir, python_path=worker_python_path(plugin_dir))


def _drain_report(
    task: Task, since: float | None = None, judge: Callable[..., Any] | None = None
) -> TaskResult:
    """Follow the detached worker's drain and judge the result (`judge(store, since,
    report)`, by default `drain_verdict`)."""
    from stash2plex.operations.outcome import drain_verdict
    from stash2plex.operations.recent import settings_checked

    started = time.monotonic()
    started_at = time.time() if since is None else since
    report = operations.process_queue(
        task.data_dir,
        progress=_progress(task.log),
        start_worker=task.start_worker,
        since=started_at,
    )
    with Store.open(task.data_dir) as store:
        status = operations.queue_status(store, task.data_dir)
        held = operations.hold_message(store.holds())
        verdict = (judge or drain_verdict)(store, started_at, report)
        verdict = settings_checked(lambda: task.context(store), task.data_dir, report, verdict)
    result: dict[str, Any] = {
        "seconds": round(time.monotonic() - started, 1),
        "queue": status.counts,
        "dead_letters": status.dead_letters,
    }
    result.update(
        synced=report.synced,
        unchanged=report.unchanged,
        skipped=report.skipped,
        waiting=report.deferred,
        dead_lettered=report.dead_lettered,
    )
    if held:
        result["blocked"] = held
    for note in verdict.notes:
        task.log.warning(f"Stash2Plex: {note}")
    task.log.info(f"Stash2Plex: {_summary_line(result)}")
    return TaskResult(result, verdict.error)


def _summary_line(result: dict[str, Any]) -> str:
    keys = ("synced", "unchanged", "skipped", "dead_lettered")
    parts = [f"{key.replace('_', '-')} {result[key]}" for key in keys if key in result]
    # "waiting" counts this run's scenes; the queue may hold others from before.
    left = sum(n for state, n in result["queue"].items() if state != "done")
    waits = [f"waiting {result['waiting']}"] if "waiting" in result else []
    queue = f"{plural(left, 'scene')} not synced in the queue"
    return ", ".join([*parts, *waits, queue, f"{result['seconds']} s"])


def sync_all(task: Task) -> dict[str, Any] | TaskResult:
    force = _bool_arg(task.args, "force")
    since = time.time()  # a running worker may finish scenes before the drain is followed
    with Store.open(task.data_dir) as store:
        stash = connect_stash(store, task.connection)
        queued = operations.queue_all_scenes(store, stash, force=force)
    task.log.info(
        f"Stash2Plex: queued {plural(queued, 'scene')}"
        + (" to rewrite in Plex from Stash" if force else "")
    )
    down = _plex_down(task.data_dir, task.connection)
    if down is not None:
        # Say it now rather than after the worker has found out; the scenes stay queued and
        # the worker (started here) syncs them once its health probe finds Plex back.
        task.start_worker()
        from stash2plex.operations.outcome import scenes

        with Store.open(task.data_dir) as store:
            waiting = sum(n for state, n in store.job_counts().items() if state != "done")
        verb = agree(waiting, "waits and syncs by itself", "wait and sync by themselves")
        error = f"{down}. {scenes(waiting)} {verb} when Plex is back."
        return TaskResult({"queued": queued, "plex": "down", "waiting": waiting}, error)
    drained = _drain_report(task, since)
    return TaskResult({"queued": queued, **drained.output}, drained.error)


def _plex_down(data_dir: Path, connection: dict[str, Any]) -> str | None:
    """Why Plex does not answer at all (down, refused, timed out), from one health probe;
    None when it answers, or when a setting or credential is the problem (the drain's verdict
    names the setting and where its value came from)."""
    import socket
    from urllib.parse import urlsplit

    from stash2plex import errors

    try:
        with Store.open(data_dir) as store:
            context = build_context(store, connection)
            answered_before = plex_url_answered(context)
    except SyncError:
        return None
    # First only a TCP connection: a Plex that accepts one costs no request (a Sync All of an
    # unchanged library is decided from the store without asking Plex anything).
    parts = urlsplit(context.config.plex_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection(
            (parts.hostname or "", port), timeout=min(5.0, context.config.plex_timeout)
        ):
            return None
    except OSError:
        pass
    health = context.plex.health()  # the words for why it is down, with the URL tried
    if health.ok or health.error_class not in (errors.SERVER_DOWN, errors.TRANSIENT):
        return None
    if not answered_before:
        return None  # never reached with these settings: the drain names plex_url
    return health.detail


def process_queue(task: Task) -> dict[str, Any] | TaskResult:
    with Store.open(task.data_dir) as store:
        store.put_value("server_connection", task.connection)
    return _drain_report(task)


def preview(task: Task) -> dict[str, Any] | TaskResult:
    scene_id = _int_arg(task.args, "scene_id", None)
    count = _int_arg(task.args, "count", 10)
    with Store.open(task.data_dir) as store:
        context = task.context(store)
        previews = operations.preview(context, scene_id=scene_id, count=count)
    for item in previews:
        task.log.info(
            f"Stash2Plex preview: scene {item.scene_id}: {item.status}"
            + (f" ({item.note})" if item.note else "")
        )
        for change in item.changes:
            task.log.info(f'    {field_words(change.field)}: "{change.plex}" → "{change.stash}"')
        for change in item.kept:
            task.log.info(
                f'    {field_words(change.field)} (kept): "{change.plex}" stays; '
                f'Stash has "{change.stash}"'
            )
    from stash2plex.operations.outcome import preview_verdict

    output = {"previewed": len(previews), "scenes": [item.as_dict() for item in previews]}
    if scene_id is not None and previews and previews[0].status == "not in Stash":
        return TaskResult(output, f"Stash has no scene {scene_id}: nothing to preview")
    verdict = preview_verdict(previews)
    for note in verdict.notes:
        task.log.info(f"Stash2Plex preview: {note}")
    return TaskResult(output, verdict.error) if verdict.error else output


def _int_arg(args: dict[str, Any], key: str, default: Any) -> Any:
    """Task args arrive as strings from defaultArgs and as numbers from the API."""
    value = args.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SyncError(f"task argument {key}={value!r} must be a whole number") from None


def _bool_arg(args: dict[str, Any], key: str) -> bool:
    """A flag from defaultArgs ("true") or the API (true)."""
    value = args.get(key)
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


def waiting_scenes(task: Task) -> dict[str, Any] | TaskResult:
    """Show Waiting Scenes: every outstanding job and dead letter, one line each (at most
    `limit` lines in the log; the output has them all)."""
    from stash2plex.operations.inspect import OUTSTANDING, jobs_summary, list_jobs, row_line

    limit = _int_arg(task.args, "limit", 200)
    now = time.time()
    with Store.open(task.data_dir) as store:
        rows = list_jobs(store, states=(*OUTSTANDING, "dead_letter"), now=now)
        held = operations.hold_message(store.holds())
    # The summary comes first: how many, by reason, before the held warning and the rows.
    summary = (
        f"{plural(len(rows), 'scene')} not synced yet: {jobs_summary(rows)}"
        if rows
        else "every scene is synced: nothing waits"
    )
    task.log.info(f"Stash2Plex: {summary}")
    if held:
        task.log.warning(f"Stash2Plex: the queue is held: {held}")
    for row in rows[:limit]:
        task.log.info(f"Stash2Plex: {row_line(row, now)}")
    if len(rows) > limit:
        task.log.info(f"Stash2Plex: … and {len(rows) - limit} more (see the task's output)")
    return {"summary": summary, "count": len(rows), "held": held, "scenes": rows}


def queue_status(task: Task) -> dict[str, Any] | TaskResult:
    with Store.open(task.data_dir) as store:
        store.put_value("server_connection", task.connection)
        status = operations.status_report(store, task.data_dir)
    from stash2plex.operations.present import WAIT_WORDS

    waiting = (
        ", ".join(
            f"{n} {WAIT_WORDS.get(reason, reason)}" for reason, n in status["waiting"].items()
        )
        or "none"
    )
    dead = ", ".join(f"{n} {cls}" for cls, n in status["dead_letters"].items()) or "none"
    task.log.info(
        f"Stash2Plex queue: {status['pending']} pending, {status['in_progress']} in progress, "
        f"waiting: {waiting}; dead letters: {dead}; circuit breaker {status['breaker']}"
    )
    if status["paused"]:
        task.log.warning(f"Stash2Plex: the queue is held: {status['paused']}")
    return status


def clear_queue(task: Task) -> dict[str, Any] | TaskResult:
    with Store.open(task.data_dir) as store:
        cleared = operations.clear_pending(store)
    task.log.info(
        f"Stash2Plex: cleared {plural(cleared, 'pending job')} (jobs in progress were left alone)"
    )
    return {"cleared": cleared}


def clear_dlq(task: Task) -> dict[str, Any] | TaskResult:
    with Store.open(task.data_dir) as store:
        cleared = operations.clear_dead_letters(store)
    task.log.info(f"Stash2Plex: removed {plural(cleared, 'dead letter')}")
    return {"cleared": cleared}


def purge_dlq(task: Task) -> dict[str, Any] | TaskResult:
    days = _int_arg(task.args, "days", 30)
    with Store.open(task.data_dir) as store:
        purged = operations.purge_dead_letters(store, days)
    task.log.info(
        f"Stash2Plex: purged {plural(purged, 'dead letter')} older than {plural(days, 'day')}"
    )
    return {"purged": purged, "days": days}


def retry_dlq(task: Task) -> dict[str, Any] | TaskResult:
    error_class = str(task.args.get("error_class") or "") or None
    since = time.time()
    with Store.open(task.data_dir) as store:
        store.put_value("server_connection", task.connection)
        queued = operations.retry_dead_letters(store, error_class)
    task.log.info(f"Stash2Plex: re-queued {plural(queued, 'scene')} from the dead-letter queue")
    result: dict[str, Any] = {"requeued": queued}
    if not queued:
        return result
    drained = _drain_report(task, since)
    result["drain"] = drained.output
    return TaskResult(result, drained.error)


def recover_outage(task: Task) -> dict[str, Any] | TaskResult:
    extra = tuple(c.strip() for c in str(task.args.get("include_classes") or "").split(",") if c)
    since = time.time()
    with Store.open(task.data_dir) as store:
        context = task.context(store)
        report = operations.recover_outage_jobs(context, ("transient", *extra))
    result = report.as_dict()
    skipped = ", ".join(f"{n} {why}" for why, n in result["skipped"].items()) or "none"
    task.log.info(
        f"Stash2Plex: recovered {plural(result['recovered'], 'job')}, skipped {skipped}, "
        f"failed {len(result['failed'])} ({report.health})"
    )
    if report.recovered:
        drained = _drain_report(task, since)
        result["drain"] = drained.output
        return TaskResult(result, drained.error)
    if report.window is None and not report.health.startswith("no completed"):
        return TaskResult(result, f"nothing was recovered: {report.health}")
    return result


def health_check(task: Task) -> dict[str, Any] | TaskResult:
    with Store.open(task.data_dir) as store:
        report = operations.health_report(task.context(store), task.data_dir)
    from stash2plex.operations.outcome import EXIT_OK, health_verdict

    verdict = health_verdict(report)
    task.log.info(f"Stash2Plex: {verdict.notes[0]}")
    return TaskResult(report, verdict.error) if verdict.exit_code != EXIT_OK else report


def outage_summary(task: Task) -> dict[str, Any] | TaskResult:
    with Store.open(task.data_dir) as store:
        report = operations.outage_report(store)
    from stash2plex.operations.present import duration, outage_summary, when

    task.log.info(f"Stash2Plex: {outage_summary(report)}")
    for outage in report["recent"]:
        ended = (
            "ongoing" if outage["ongoing"] else f"ended {when(outage['ended_at'], report['now'])}"
        )
        task.log.info(
            f"Stash2Plex: outage from {when(outage['started_at'], report['now'])}, {ended}, "
            f"lasted {duration(outage['duration_s'])}, "
            f"{plural(outage['jobs_affected'], 'job')} held"
        )
    last = report["recent"][-1] if report["recent"] else None
    if last is not None and last.get("reconciled"):
        from stash2plex.reconcile.run import outage_summary as reconciled_text

        task.log.info(f"Stash2Plex: the last outage: {reconciled_text(last['reconciled'])}")
    return report


def diagnose(task: Task) -> dict[str, Any] | TaskResult:
    from stash2plex.operations.diagnose import as_dicts
    from stash2plex.operations.diagnose import diagnose as run_diagnose

    with Store.open(task.data_dir) as store:
        checks = run_diagnose(store, task.connection)
    for check in checks:
        if check.ok:
            task.log.info(f"Stash2Plex diagnose: OK   {check.name}: {check.detail}")
        else:
            task.log.warning(f"Stash2Plex diagnose: FIX  {check.name}: {check.detail}. {check.fix}")
    blocking = [c for c in checks if not c.ok]
    task.log.info(f"Stash2Plex diagnose: {plural(len(blocking), 'problem')} found")
    output = {"problems": len(blocking), "checks": as_dicts(checks)}
    if not blocking:
        return output
    first = blocking[0]
    more = (
        f" (and {plural(len(blocking) - 1, 'more problem')}, listed in the log)"
        if len(blocking) > 1
        else ""
    )
    return TaskResult(output, f"{first.name}: {first.detail}. {first.fix}{more}")


def pull_from_plex(task: Task) -> dict[str, Any] | TaskResult:
    """Plays, resume points and ratings recorded in Plex since the last pull, into Stash."""
    from stash2plex.pull.pull import run_pull

    since = _int_arg(task.args, "since", None)
    with Store.open(task.data_dir) as store:
        report = run_pull(task.context(store), since=since, progress=task.log.progress)
    if report.busy:
        return TaskResult(
            report.as_dict(), "another pull from Plex is running; try again when it is done"
        )
    else:
        task.log.info(f"Stash2Plex: pulled from Plex: {report.summary()}")
    return report.as_dict()


def sync_recent(task: Task) -> dict[str, Any] | TaskResult:
    """Queue the scenes Stash changed since the last run (or `since`: a duration or a date)
    and drain them."""
    from stash2plex.operations.recent import plex_verdict, recent_verdict
    from stash2plex.reconcile.recent import parse_since, queue_recent

    queued_at = time.time()
    with Store.open(task.data_dir) as store:
        stash = connect_stash(store, task.connection)
        since = parse_since(str(task.args.get("since") or ""), store.clock())
        report = queue_recent(store, stash, since=since)
        if not report.queued:
            # Nothing to drain; one probe still says so when Plex refuses us (a wrong token).
            verdict = plex_verdict(task.context(store), task.data_dir)
    task.log.info(f"Stash2Plex: {report.summary()}")
    if not report.queued:
        return TaskResult(report.as_dict(), verdict.error)
    drained = _drain_report(
        task,
        queued_at,
        judge=lambda store, started, drain: recent_verdict(
            store,
            started,
            drain,
            report.scene_ids,
            probe=lambda: plex_verdict(task.context(store), task.data_dir),
        ),
    )
    return TaskResult({**report.as_dict(), **drained.output}, drained.error)


def reconcile(task: Task) -> dict[str, Any] | TaskResult:
    """Compare every scene with Plex and report the differences; with `fix`, repair them
    through the queue and drain. Finding differences is the task's job, not a failure."""
    from stash2plex.reconcile.run import run_reconcile

    fix = _bool_arg(task.args, "fix")
    with Store.open(task.data_dir) as store:
        context = task.context(store)
        report = run_reconcile(context, fix=fix, trigger="task", progress=task.log.progress)
    if report.state == "busy":
        return TaskResult(report.as_dict(), report.summary())
    _log_reconcile(report.as_dict(), task.log)
    result = report.as_dict()
    if not (fix and report.queued):
        return result
    drained = _drain_report(task)
    result["drain"] = drained.output
    return TaskResult(result, drained.error)


def reconcile_report(task: Task) -> dict[str, Any] | TaskResult:
    """The last reconcile run (scheduled, after an outage, from a task or the command line)
    and its report; one that failed, or whose process was stopped, says so."""
    from stash2plex.reconcile.run import last_run

    with Store.open(task.data_dir) as store:
        last = last_run(store)
    if last is None:
        task.log.info("Stash2Plex: no reconcile has run yet (task Reconcile with Plex)")
        return {"ran": False}
    _log_reconcile(last["report"], task.log, last)
    return {"ran": True, **last}


def _log_reconcile(
    report: dict[str, Any], log: protocol.StashLog, run: dict[str, Any] | None = None
) -> None:
    """Log a reconcile report: the summary, then each class with its samples and repair."""
    from stash2plex.reconcile.classify import ACTION_TEXT
    from stash2plex.reconcile.run import KIND_WORDS

    when = ""
    if run is not None:
        when = (
            f" ({run.get('state')}; started {run.get('started_text')} by {run.get('trigger_text')})"
        )
    log.info(f"Stash2Plex reconcile{when}: {report.get('summary', '')}")
    all_samples = report.get("samples") or {}
    # Every class with scenes, in sync and without a file too: the lines add up to the total.
    for kind, count in (report.get("results") or {}).items():
        samples = all_samples.get(kind) or []
        if not count:
            continue
        action = ACTION_TEXT.get(samples[0].get("action", ""), "") if samples else ""
        fix = f"; repair: {action}" if action else ""
        log.info(
            f"    {KIND_WORDS.get(kind, kind.replace('_', ' '))}: {plural(count, 'scene')}{fix}"
        )
        for sample in samples:
            log.info(f"        scene {sample['scene_id']}: {sample['detail']}")
    for note in report.get("notes") or []:
        log.warning(f"Stash2Plex reconcile: {note}")


TASKS = {
    "sync_all": sync_all,
    "process_queue": process_queue,
    "preview": preview,
    "queue_status": queue_status,
    "waiting": waiting_scenes,
    "clear_queue": clear_queue,
    "clear_dlq": clear_dlq,
    "purge_dlq": purge_dlq,
    "retry_dlq": retry_dlq,
    "recover_outage_jobs": recover_outage,
    "health_check": health_check,
    "outage_summary": outage_summary,
    "diagnose": diagnose,
    "pull": pull_from_plex,
    "sync_recent": sync_recent,
    "reconcile": reconcile,
    "reconcile_report": reconcile_report,
}
