"""What Stash executes: the raw-plugin entry for hooks and tasks.

The hook path (this module and what it imports at the top) is standard library only and does
no network I/O: a Stash hook blocks the user's "Save" until the process exits. It records the
event in the store, makes sure a worker runs, prints its result and exits. Tasks import the
rest of the package lazily.

The hook's budget is three bare interpreter starts (bench/bench_hook.py), and json
and sqlite3 alone take two. So the hook path imports none of pathlib (~6 ms on a 2-core
machine), typing (~5 ms), dataclasses (~12 ms) or the records: paths are strings here, types
are checked only under TYPE_CHECKING, and a store at the current schema is written by
`store.recording` with sqlite3 alone. `store.db.Store` is imported only when the store must be
created, migrated or repaired. tests/test_hook_imports.py keeps it so.
"""

from __future__ import annotations

import os
import sys
import time

from stash2plex.engine.worker_lock import ensure_worker
from stash2plex.errors import HookError, StoreError, StoreLockedError, StoreUnreadableError
from stash2plex.plugin import deps, protocol
from stash2plex.plugin.hook_events import HookEvent, parse_hook
from stash2plex.store import recording, spool
from stash2plex.store.schema import DB_FILENAME

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the import alone costs the hook ~5 ms
if TYPE_CHECKING:
    from typing import IO, Any

    StrPath = str | os.PathLike[str]

DATA_DIR_ENV = "STASH2PLEX_DATA_DIR"
# A hook waits this long for another process's write lock, then spools the event instead:
# the user's Save must not wait on the store.
HOOK_BUSY_SECONDS = 0.5
#: `args.mode` of a `runPluginOperation` call from the Plex page (plugin/operations.py).
OPERATION_MODE = "operation"
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def resolve_data_dir(plugin_dir: StrPath | None) -> str:
    """`STASH2PLEX_DATA_DIR` if set, else `<plugin dir>/data` (survives plugin updates).
    Raises StoreError when there is none, or it is no path this system can open."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return _usable(override, DATA_DIR_ENV)
    if not plugin_dir:
        raise StoreError(
            "no data directory: Stash did not pass PluginDir and STASH2PLEX_DATA_DIR is not set"
        )
    return os.path.join(_usable(os.fspath(plugin_dir), "PluginDir"), "data")


def _usable(path: str, source: str) -> str:
    """`path` if the file system can take it: no NUL, and text this system can encode."""
    try:
        if "\x00" not in path:
            os.fsencode(path)
            return path
    except UnicodeError:
        pass
    raise StoreError(f"{source} {path!r} is not a path this system can open")


def worker_python_path(plugin_dir: StrPath | None) -> list[str]:
    """What the worker needs on sys.path: this package and plugin-local dependencies
    (`<plugin dir>/data/deps`, the folders PythonDepManager installed into)."""
    return [PACKAGE_ROOT, *deps.dependency_paths(plugin_dir)]


def main(
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    entry_dir: StrPath | None = None,
) -> int:
    log = protocol.StashLog(stderr)
    try:
        plugin_input = protocol.read_input(stdin)
    except protocol.PluginInputError as exc:
        log.error(f"Stash2Plex: {exc}")
        protocol.write_result(error=str(exc), stream=stdout)
        return 1
    connection = plugin_input.get("server_connection") or {}
    args: dict[str, Any] = plugin_input.get("args") or {}
    plugin_dir = connection.get("PluginDir") or entry_dir
    try:
        data_dir = resolve_data_dir(plugin_dir)
        if "hookContext" in args:
            output = run_hook(
                args["hookContext"],
                connection,
                data_dir,
                os.fspath(plugin_dir) if plugin_dir else None,
                log,
            )
            protocol.write_result(output=output, stream=stdout)
            return 0
    except (HookError, StoreError) as exc:
        log.error(f"Stash2Plex: {exc}")
        protocol.write_result(error=str(exc), stream=stdout)
        return 1
    # Operations and tasks: their imports dwarf pathlib's.
    from pathlib import Path

    from stash2plex.plugin.install import ensure_dependencies

    data_path = Path(data_dir)
    plugin_path = Path(plugin_dir) if plugin_dir else None
    if args.get("mode") == OPERATION_MODE:
        # The Plex page in Stash: answered from the store, without the task path's imports.
        from stash2plex.plugin.operations import run_operation

        return run_operation(
            args,
            connection,
            data_path,
            log=log,
            stdout=stdout,
            wake_worker=lambda: wake_worker(data_path, plugin_path),
            ensure_dependencies=lambda: ensure_dependencies(plugin_path, log),
        )
    # Tasks need plexapi & co.: install them on the first task run (never in a hook).
    problem = ensure_dependencies(plugin_path, log)
    if problem is not None:
        log.error(f"Stash2Plex: {problem}")
        protocol.write_result(error=problem, stream=stdout)
        return 1
    from stash2plex.plugin.tasks import run_task  # the task path may import the full dependencies

    return run_task(args, connection, data_path, plugin_path, log=log, stdout=stdout)


def run_hook(
    hook_context: Any,
    connection: dict[str, Any],
    data_dir: str,
    plugin_dir: str | None,
    log: protocol.StashLog,
) -> str:
    """Record one hook event and make sure a worker will handle it. No network I/O.

    If the store is locked past the hook's budget, the event goes to the spool (the worker
    merges it); an unreadable store is moved aside and a fresh one used. Raises HookError
    (bad input) or StoreError (the event could not be recorded at all).
    """
    event = parse_hook(hook_context)
    if event.action == "ignored":
        return f"{event.trigger} ignored"
    try:
        note = _hold_note(_record(event, connection, data_dir, log))
    except StoreLockedError:
        try:
            spool.append(data_dir, _spool_entry(event, connection))
        except OSError as exc:
            raise StoreError(
                f"could not record {event.trigger} for {event.object_id}: the store is locked "
                f"by another process and the spool could not be written ({exc.strerror})"
            ) from None
        note = " (the store was busy; it is queued as soon as it is free)"
        log.warning(f"Stash2Plex: the store is busy; {event.trigger} {event.object_id} spooled")
    message = _describe(event) + note
    if not deps.dependencies_present(plugin_dir):
        # A worker could not import plexapi; the job waits for the first task run.
        log.warning(f"Stash2Plex: {deps.MISSING_HINT}")
        return f"{message}; {deps.MISSING_HINT}"
    try:
        ensure_worker(data_dir, python_path=worker_python_path(plugin_dir))
    except OSError as exc:
        log.error(f"Stash2Plex: could not start the background worker ({exc}); {message}")
        return f"{message}; the background worker could not start ({exc.strerror or exc})"
    return message


def wake_worker(data_dir: StrPath, plugin_dir: StrPath | None) -> str | None:
    """Start a detached worker when work is outstanding and no drain holds the lock (a task
    stopped with Stash's Stop button, a killed worker, a Plex page action that queued a scene),
    or when the scheduled reconcile is due (`store.db.RECONCILE_DUE_KEY`).

    Returns a hint when no worker can run yet (dependencies not installed), else None. Raises
    StoreError only when the store cannot be read.
    """
    from stash2plex.store.db import RECONCILE_DUE_KEY, Store, reconcile_overdue

    if not os.path.exists(os.path.join(data_dir, DB_FILENAME)):
        return None
    with Store.open(data_dir, busy_timeout=HOOK_BUSY_SECONDS) as store:
        # A scheduled reconcile that is due counts as work: an idle plugin has no worker.
        outstanding = store.has_work() or reconcile_overdue(
            store.get_value(RECONCILE_DUE_KEY), time.time()
        )
    if not (outstanding or spool.pending(data_dir)):
        return None
    if not deps.dependencies_present(plugin_dir):
        return deps.MISSING_HINT
    ensure_worker(data_dir, python_path=worker_python_path(plugin_dir))
    return None


def _record(
    event: HookEvent, connection: dict[str, Any], data_dir: str, log: protocol.StashLog
) -> tuple[str, str] | None:
    """Record the event; returns the pause holding the queue (kind, message), if any.

    With sqlite3 alone when the store is at the current schema; else through `Store`, which
    creates or migrates it, or moves a damaged one aside and records the event in a fresh one.
    """
    try:
        pause = recording.record_event(
            data_dir,
            event.action,
            event.object_id,
            source=event.trigger,
            entity_kind=event.entity_kind,
            connection=connection or None,
            busy_timeout=HOOK_BUSY_SECONDS,
            now=time.time(),
        )
    except recording.NeedsStore:
        from stash2plex.store.db import quarantine

        try:
            return _record_with_store(event, connection, data_dir, log)
        except _Unreadable as damaged:
            path = os.path.join(data_dir, DB_FILENAME)
            log.error(f"Stash2Plex: {quarantine(path, damaged.problem, damaged.inode)}")
            return _record_with_store(event, connection, data_dir, log)
    return (str(pause.get("kind")), str(pause.get("message"))) if pause else None


class _Unreadable(Exception):
    """The store turned out damaged while recording: which file, and why."""

    def __init__(self, problem: str, inode: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.inode = inode


def _record_with_store(
    event: HookEvent, connection: dict[str, Any], data_dir: str, log: protocol.StashLog
) -> tuple[str, str] | None:
    from stash2plex.store.db import Store

    with Store.open(data_dir, busy_timeout=HOOK_BUSY_SECONDS) as store:
        if store.recovered_from:
            log.error(f"Stash2Plex: {store.recovered_from}")
        try:
            pause = store.record_hook(
                event.action,
                event.object_id,
                source=event.trigger,
                entity_kind=event.entity_kind,
                connection=connection or None,
            ).pause
        except StoreUnreadableError as exc:
            raise _Unreadable(str(exc), store.inode) from None
    return (pause.kind, pause.message) if pause else None


def _hold_note(pause: tuple[str, str] | None) -> str:
    """What the user should know when the queue is held by something only they can fix."""
    if pause is None or pause[0] not in ("not_configured", "disabled", "plex_auth", "config"):
        return ""
    return f"; it waits: {pause[1]}"


def _spool_entry(event: HookEvent, connection: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": event.action,
        "id": event.object_id,
        "source": event.trigger,
        "entity_kind": event.entity_kind,
        "connection": connection or None,
    }


def _describe(event: HookEvent) -> str:
    if event.action == "scene_dirty":
        return f"scene {event.object_id} queued for Plex"
    if event.action == "scene_deleted":
        return f"scene {event.object_id} forgotten"
    if event.action == "entity_deleted":
        return f"{event.entity_kind} {event.object_id} deleted; its scenes will be re-synced"
    return f"{event.entity_kind} {event.object_id} changed; its scenes will be re-synced"


if __name__ == "__main__":  # pragma: no cover - Stash runs stash2plex_plugin.py
    sys.exit(main())
