"""What Stash executes: the raw-plugin entry for hooks and tasks.

The hook path (this module and what it imports at the top) is standard library only and does
no network I/O: a Stash hook blocks the user's "Save" until the process exits. It records the
event in the store, makes sure a worker runs, prints its result and exits. Tasks import the
rest of the package lazily.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

from stash2plex.engine.worker_lock import ensure_worker
from stash2plex.plugin import deps, protocol
from stash2plex.plugin.hook_events import (
    ENTITY_CHANGED,
    SCENE_DELETED,
    SCENE_DIRTY,
    HookError,
    parse_hook,
)
from stash2plex.store.db import Store, StoreError

DATA_DIR_ENV = "STASH2PLEX_DATA_DIR"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_dir(plugin_dir: str | os.PathLike[str] | None) -> Path:
    """`STASH2PLEX_DATA_DIR` if set, else `<plugin dir>/data` (survives plugin updates)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    if not plugin_dir:
        raise StoreError(
            "no data directory: Stash did not pass PluginDir and STASH2PLEX_DATA_DIR is not set"
        )
    return Path(plugin_dir) / "data"


def worker_python_path(plugin_dir: Path | None) -> list[str]:
    """What the worker needs on sys.path: this package and plugin-local dependencies."""
    paths = [str(PACKAGE_ROOT)]
    if plugin_dir is not None and (plugin_dir / deps.DEPS_DIRNAME).is_dir():
        paths.append(str(plugin_dir / deps.DEPS_DIRNAME))
    if plugin_dir is not None:
        paths += deps.recorded_paths(plugin_dir)  # folders PythonDepManager installed into
    return paths


def main(
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    entry_dir: Path | None = None,
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
                args["hookContext"], connection, data_dir, Path(plugin_dir) if plugin_dir else None
            )
            protocol.write_result(output=output, stream=stdout)
            return 0
    except (HookError, StoreError) as exc:
        log.error(f"Stash2Plex: {exc}")
        protocol.write_result(error=str(exc), stream=stdout)
        return 1
    # Tasks need plexapi & co.: install them on the first task run (never in a hook).
    problem = deps.ensure_dependencies(Path(plugin_dir) if plugin_dir else None, log)
    if problem is not None:
        log.error(f"Stash2Plex: {problem}")
        protocol.write_result(error=problem, stream=stdout)
        return 1
    from stash2plex.plugin.tasks import run_task  # the task path may import the full dependencies

    return run_task(
        args, connection, data_dir, Path(plugin_dir) if plugin_dir else None, log=log, stdout=stdout
    )


def run_hook(
    hook_context: Any, connection: dict[str, Any], data_dir: Path, plugin_dir: Path | None
) -> str:
    """Record one hook event and make sure a worker will handle it. No network I/O."""
    event = parse_hook(hook_context)
    with Store.open(data_dir) as store:
        if connection:
            # The worker reads settings from Stash through the freshest connection we saw.
            store.put_value("server_connection", connection)
        store.nudge_auth_pause()
        if event.action == SCENE_DIRTY:
            store.enqueue([event.object_id], source=event.trigger)
            message = f"scene {event.object_id} queued for Plex"
        elif event.action == SCENE_DELETED:
            store.forget_scene(event.object_id)
            return f"scene {event.object_id} forgotten"
        elif event.action == ENTITY_CHANGED:
            store.record_entity_change(event.entity_kind or "", event.object_id)
            message = f"{event.entity_kind} {event.object_id} changed; its scenes will be re-synced"
        else:
            return f"{event.trigger} ignored"
    if not deps.dependencies_present(plugin_dir):
        # A worker could not import plexapi; the job waits for the first task run.
        return f"{message}; {deps.MISSING_HINT}"
    ensure_worker(data_dir, python_path=worker_python_path(plugin_dir))
    return message


if __name__ == "__main__":  # pragma: no cover - Stash runs stash2plex_plugin.py
    sys.exit(main())
