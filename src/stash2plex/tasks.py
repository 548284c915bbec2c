"""Stash tasks: the Tasks page buttons, dispatched by `args.mode`, each ending in one report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

from . import operations, protocol
from .context import build_context, connect_stash
from .errors import SyncError
from .store import Store


def run_task(
    args: dict[str, Any],
    connection: dict[str, Any],
    data_dir: Path,
    plugin_dir: Path | None,
    *,
    log: protocol.StashLog,
    stdout: IO[str] | None = None,
) -> int:
    del plugin_dir  # used once dependencies are installed per plugin
    mode = str(args.get("mode") or "")
    handler = TASKS.get(mode)
    if handler is None:
        message = f"unknown task mode {mode!r}; expected one of: {', '.join(sorted(TASKS))}"
        log.error(f"Stash2Plex: {message}")
        protocol.write_result(error=message, stream=stdout)
        return 1
    try:
        output = handler(args, connection, data_dir, log)
    except SyncError as exc:
        log.error(f"Stash2Plex: {exc.message}")
        protocol.write_result(error=exc.message, stream=stdout)
        return 1
    protocol.write_result(output=output, stream=stdout)
    return 0


def _progress(log: protocol.StashLog):
    def report(done: int, total: int) -> None:
        log.progress(done / total if total else 1.0)

    return report


def _drain_report(data_dir: Path, log: protocol.StashLog) -> dict[str, Any]:
    started = time.monotonic()
    report = operations.process_queue(data_dir, progress=_progress(log))
    with Store.open(data_dir) as store:
        status = operations.queue_status(store, data_dir)
    result: dict[str, Any] = {
        "seconds": round(time.monotonic() - started, 1),
        "queue": status.counts,
        "dead_letters": status.dead_letters,
    }
    if report is None:
        with Store.open(data_dir) as store:
            blocked = store.get_value("worker_blocked")
        if blocked:
            result["blocked"] = blocked["reason"]
            log.error(f"Stash2Plex: the queue is not draining: {blocked['reason']}")
        else:
            result["note"] = "the background worker drained the queue"
    else:
        result.update(
            synced=report.synced,
            unchanged=report.unchanged,
            skipped=report.skipped,
            waiting=report.deferred,
            dead_lettered=report.dead_lettered,
        )
        for error in report.errors:
            log.error(f"Stash2Plex: {error}")
        if report.errors:
            result["errors"] = report.errors
    log.info(f"Stash2Plex: {_summary_line(result)}")
    return result


def _summary_line(result: dict[str, Any]) -> str:
    keys = ("synced", "unchanged", "skipped", "waiting", "dead_lettered")
    parts = [f"{key.replace('_', ' ')} {result[key]}" for key in keys if key in result]
    return ", ".join([*parts, f"{result['seconds']} s"])


def sync_all(
    args: dict[str, Any], connection: dict[str, Any], data_dir: Path, log: protocol.StashLog
) -> dict[str, Any]:
    with Store.open(data_dir) as store:
        stash = connect_stash(store, connection)
        queued = operations.queue_all_scenes(store, stash)
    log.info(f"Stash2Plex: queued {queued} scenes")
    return {"queued": queued, **_drain_report(data_dir, log)}


def process_queue(
    args: dict[str, Any], connection: dict[str, Any], data_dir: Path, log: protocol.StashLog
) -> dict[str, Any]:
    with Store.open(data_dir) as store:
        store.put_value("server_connection", connection)
    return _drain_report(data_dir, log)


def preview(
    args: dict[str, Any], connection: dict[str, Any], data_dir: Path, log: protocol.StashLog
) -> dict[str, Any]:
    scene_id = _int_arg(args, "scene_id", None)
    count = _int_arg(args, "count", 10)
    with Store.open(data_dir) as store:
        context = build_context(store, connection)
        previews = operations.preview(context, scene_id=scene_id, count=count)
    for item in previews:
        log.info(
            f"Stash2Plex preview: scene {item.scene_id}: {item.status}"
            + (f" ({item.note})" if item.note else "")
        )
        for change in item.changes:
            log.info(f"    {change.field}: {change.plex!r} -> {change.stash!r}")
    return {"previewed": len(previews), "scenes": [item.as_dict() for item in previews]}


def _int_arg(args: dict[str, Any], key: str, default: Any) -> Any:
    """Task args arrive as strings from defaultArgs and as numbers from the API."""
    value = args.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SyncError(f"task argument {key}={value!r} must be a whole number") from None


TASKS = {
    "sync_all": sync_all,
    "process_queue": process_queue,
    "preview": preview,
}
