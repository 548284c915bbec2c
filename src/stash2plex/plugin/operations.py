"""The plugin's "operation" mode: what the Plex page in Stash asks through `runPluginOperation`.

Stash runs the plugin with only the caller's args (no task, no defaultArgs) and returns the
stdout JSON's `output` as the mutation's result, or its `error` as a GraphQL error
(docs/stash-plugin-protocol.md 1.5). Args:

- ``{"mode": "operation", "view": <name>, ...params}``: one view of operations/views.py, read
  from the store with no network I/O and no third-party import, so it answers in milliseconds;
- ``{"mode": "operation", "action": <name>, ...params}``: one action of operations/actions.py.
  Store actions return at once and make sure a worker picks the change up (as a hook does);
  `preview_scene` reads Stash and Plex (dependencies installed on first use, as for tasks).

Nothing is logged on success: the page asks every few seconds and Stash would fill its log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from stash2plex.operations import actions, views
from stash2plex.plugin import protocol
from stash2plex.store.db import Store, StoreError

#: The args that select the mode, the view or the action; everything else is a parameter.
CONTROL_KEYS = ("mode", "view", "action")


def run_operation(
    args: dict[str, Any],
    connection: dict[str, Any],
    data_dir: Path,
    *,
    log: protocol.StashLog,
    stdout: IO[str] | None = None,
    wake_worker: Callable[[], str | None],
    ensure_dependencies: Callable[[], str | None],
) -> int:
    """Answer one operation; prints the single result Stash reads. Returns the exit code.

    `wake_worker` starts a detached worker if none runs (returns a hint when it cannot);
    `ensure_dependencies` installs what `preview_scene` needs (returns a problem or None).
    """
    params = {k: v for k, v in args.items() if k not in CONTROL_KEYS}
    try:
        output = _answer(args, params, connection, data_dir, wake_worker, ensure_dependencies)
    except (views.ViewError, actions.ActionError, StoreError) as exc:
        return _fail(str(exc), log, stdout)
    except _Failure as exc:
        return _fail(exc.message, log, stdout)
    protocol.write_result(output=output, stream=stdout)
    return 0


class _Failure(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _answer(
    args: dict[str, Any],
    params: dict[str, Any],
    connection: dict[str, Any],
    data_dir: Path,
    wake_worker: Callable[[], str | None],
    ensure_dependencies: Callable[[], str | None],
) -> dict[str, Any]:
    view, action = args.get("view"), args.get("action")
    if bool(view) == bool(action):
        raise _Failure('an operation names either a "view" or an "action"')
    if view:
        with Store.open(data_dir) as store:
            return views.answer(str(view), store, data_dir, params)
    chosen = actions.lookup(str(action))
    if chosen.needs_context:
        return _with_context(chosen, params, connection, data_dir, ensure_dependencies)
    with Store.open(data_dir) as store:
        if connection:
            store.put_value("server_connection", connection)
        result = chosen.run(store, params)
    if chosen.wakes_worker:
        hint = wake_worker()
        if hint:
            result["note"] = hint
    return result


def _with_context(
    chosen: actions.Action,
    params: dict[str, Any],
    connection: dict[str, Any],
    data_dir: Path,
    ensure_dependencies: Callable[[], str | None],
) -> dict[str, Any]:
    problem = ensure_dependencies()
    if problem is not None:
        raise _Failure(problem)
    from stash2plex.engine.context import build_context
    from stash2plex.errors import SyncError, redact

    cookie = (connection.get("SessionCookie") or {}).get("Value")
    try:
        with Store.open(data_dir) as store:
            context = build_context(store, connection)
            result = chosen.run(context, params)
    except SyncError as exc:
        raise _Failure(redact(exc.message, (cookie,) if cookie else ())) from None
    secrets = context.config.secrets() + context.stash.connection.secrets()
    text = redact(json.dumps(result, ensure_ascii=False), (*secrets, *([cookie] if cookie else [])))
    return dict(json.loads(text))


def _fail(message: str, log: protocol.StashLog, stdout: IO[str] | None) -> int:
    log.error(f"Stash2Plex operation: {message}")
    protocol.write_result(error=message, stream=stdout)
    return 1
