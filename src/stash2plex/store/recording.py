"""What a Stash hook writes to the store, once, for the hook and for `store.db.Store`.

A hook event queues a scene, forgets a deleted one or remembers a changed or deleted performer,
studio, tag or group; it also keeps the freshest Stash connection and nudges the worker. Those
statements live here only: `Store.record_hook`, `Store.enqueue` and the spool merge run them
inside their transactions, and `record_event` runs them for the hook process with sqlite3 alone.

Why a lean path: a Stash hook blocks the user's Save until its process exits, and the budget is
three bare interpreter starts. `Store` needs pathlib, typing, dataclasses and the records, about
25 ms of imports on a 2-core machine, more than the hook's whole share; so when the store is
already at the current schema a hook writes through `record_event`, importing only json, os and
sqlite3. Creating, migrating or repairing a store stays `Store.open`'s job (`NeedsStore`).
"""

from __future__ import annotations

import json
import os
import sqlite3

from stash2plex.errors import (
    MAX_ATTEMPTS,
    UNSETTLED_WRITE,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreUnreadableError,
)
from stash2plex.store.schema import (
    DB_FILENAME,
    HOLDS_KEY,
    SCHEMA_VERSION,
    SERVER_CONNECTION_KEY,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the import alone costs the hook ~5 ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from stash2plex.vocabulary import HookAction

# The fields of the stored holds (`records.Holds`, `BreakerState`, `Pause`; a test keeps these
# equal): holds with any other field are left to `store.holds`, which reads them as none.
HOLDS_FIELDS = frozenset({"breaker", "pause", "ramp_started_at", "nudged_at"})
BREAKER_FIELDS = frozenset(
    {
        "state",
        "opened_at",
        "probes",
        "next_probe_at",
        "failures",
        "trial",
        "reason",
        "trials_failed",
    }
)
BREAKER_STATES = ("closed", "open", "half_open")
PAUSE_FIELDS = frozenset(
    {"kind", "message", "since", "next_check_at", "checks", "setting", "source"}
)
PAUSE_REQUIRED = frozenset({"kind", "message", "since", "next_check_at"})

#: What a hook can ask of the store (`plugin.hook_events`); spooled events are checked against it.
HOOK_ACTIONS = ("scene_dirty", "scene_deleted", "entity_changed", "entity_deleted")
#: Waits that a new save may settle at once, so a saved scene waiting for one is due now.
_SETTLED_BY_A_SAVE = "('not_in_plex', 'ambiguous', 'conflict')"

# A job says "scene X is dirty": one row per scene, coalescing (see `Store.enqueue`). A job
# that stays waiting keeps its updated_at, the time it last moved: a drain counts what it
# tried by that (`Store.waiting_counts`), not what was merely queued again. A forced
# sync still to be done stays forced ('force' is engine.worker.FORCE_SOURCE) whatever queues
# the scene again before it runs: a plain sync or a hook must not quietly undo it.
_UPSERT_JOB = f"""
    INSERT INTO jobs (scene_id, state, attempts, due_at, generation, source,
                      enqueued_at, updated_at)
    VALUES (?, 'pending', 0, ?, 0, ?, ?, ?)
    ON CONFLICT(scene_id) DO UPDATE SET
        generation = jobs.generation + 1,
        source = CASE WHEN jobs.state != 'done' AND jobs.source = 'force'
                      THEN jobs.source ELSE excluded.source END,
        updated_at = CASE
            WHEN jobs.state = 'waiting' AND jobs.reason NOT IN {_SETTLED_BY_A_SAVE}
                THEN jobs.updated_at
            ELSE excluded.updated_at END,
        attempts = CASE WHEN jobs.state = 'done' THEN 0 ELSE jobs.attempts END,
        enqueued_at = CASE WHEN jobs.state = 'done'
                           THEN excluded.enqueued_at ELSE jobs.enqueued_at END,
        due_at = CASE
            WHEN jobs.state = 'done' THEN excluded.due_at
            WHEN jobs.state = 'waiting' AND jobs.reason IN {_SETTLED_BY_A_SAVE}
                THEN excluded.due_at
            ELSE jobs.due_at END,
        state = CASE
            WHEN jobs.state = 'leased' THEN 'leased'
            WHEN jobs.state = 'waiting' AND jobs.reason IN {_SETTLED_BY_A_SAVE} THEN 'pending'
            WHEN jobs.state = 'waiting' THEN 'waiting'
            ELSE 'pending' END,
        reason = CASE
            WHEN jobs.state IN ('leased', 'pending') THEN jobs.reason
            WHEN jobs.state = 'waiting' AND jobs.reason NOT IN {_SETTLED_BY_A_SAVE}
                THEN jobs.reason
            ELSE NULL END
"""


class NeedsStore(Exception):
    """The lean path cannot write: the store is absent, at another schema version, damaged or
    failing in a way `Store.open` explains (it creates, migrates or moves aside the file)."""


def record_event(
    data_dir: str | os.PathLike[str],
    action: HookAction,
    object_id: int,
    *,
    source: str,
    entity_kind: str | None,
    connection: dict[str, Any] | None,
    busy_timeout: float,
    now: float,
) -> dict[str, Any] | None:
    """Record one hook event in the store of `data_dir`, in one transaction, with sqlite3 alone.

    Returns the stored pause (a dict with at least `kind` and `message`) or None when the queue
    is not paused. Raises StoreLockedError when another process holds the write lock past
    `busy_timeout` seconds, and NeedsStore for everything `Store.open` must handle instead.
    """
    path = os.path.join(data_dir, DB_FILENAME)
    if not os.path.isfile(path):
        raise NeedsStore(path)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error:
        raise NeedsStore(path) from None
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            raise NeedsStore(path)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            holds = nudge(conn, now)
            if holds is None:
                raise NeedsStore(path)  # absent or unreadable holds: Store rewrites them whole
            if connection:
                put_value(conn, SERVER_CONNECTION_KEY, connection, now)
            record_action(conn, action, object_id, source, entity_kind, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        error = store_error(exc, path)
        if isinstance(error, StoreLockedError):
            raise error from None
        raise NeedsStore(path) from None
    finally:
        conn.close()
    pause = holds.get("pause")
    return pause if isinstance(pause, dict) else None


def record_action(
    conn: sqlite3.Connection,
    action: HookAction,
    object_id: int,
    source: str,
    entity_kind: str | None,
    now: float,
) -> None:
    """Write what one hook event asks (inside the caller's write transaction)."""
    if action == "scene_dirty":
        upsert_jobs(conn, [object_id], source, now)
    elif action == "scene_deleted":
        for table in ("jobs", "links", "link_entities", "entity_backfill", "dead_letters"):
            conn.execute(f"DELETE FROM {table} WHERE scene_id = ?", (object_id,))
    elif action in ("entity_changed", "entity_deleted"):
        # A deleted entity: Stash can no longer list the scenes that showed it, so the worker
        # expands it from our own records (`link_entities`).
        table = "entity_changes" if action == "entity_changed" else "entity_deletions"
        conn.execute(
            f"INSERT INTO {table} (kind, entity_id, recorded_at) VALUES (?, ?, ?) "
            "ON CONFLICT(kind, entity_id) DO UPDATE SET recorded_at = excluded.recorded_at",
            (entity_kind or "", int(object_id), now),
        )


def upsert_jobs(
    conn: sqlite3.Connection,
    scene_ids: list[int],
    source: str,
    now: float,
    *,
    retry_now: bool = False,
) -> int:
    """Mark scenes dirty (see `Store.enqueue` for the rules); returns how many were not already
    outstanding. Inside the caller's write transaction."""
    ids = list(dict.fromkeys(int(scene_id) for scene_id in scene_ids))
    new = 0
    for chunk in chunks(ids):
        marks = placeholders(chunk)
        outstanding = conn.execute(
            f"SELECT COUNT(*) FROM jobs WHERE state != 'done' AND scene_id IN ({marks})",
            chunk,
        ).fetchone()[0]
        new += len(chunk) - int(outstanding)
        conn.execute(f"DELETE FROM dead_letters WHERE scene_id IN ({marks})", chunk)
        if retry_now:
            waiting = conn.execute(
                "SELECT scene_id, detail FROM jobs WHERE state = 'waiting' AND reason = 'retry' "
                f"AND due_at > ? AND scene_id IN ({marks})",
                (now, *chunk),
            ).fetchall()
            conn.executemany(
                "UPDATE jobs SET due_at = ? WHERE scene_id = ?",
                [(now, scene_id) for scene_id, detail in waiting if not unsettled(detail)],
            )
    conn.executemany(_UPSERT_JOB, [(scene_id, now, source, now, now) for scene_id in ids])
    return new


def unsettled(detail: str | None) -> bool:
    """Whether a job's stored `detail` (JSON) marks its last failure as a write that timed out."""
    return bool(_detail(detail).get(UNSETTLED_WRITE))


def max_attempts(detail: str | None) -> int | None:
    """The tries a job waiting for a retry gets before the dead letters, as its stored `detail`
    (JSON) recorded them (errors.MAX_ATTEMPTS), or None."""
    value = _detail(detail).get(MAX_ATTEMPTS)
    return value if isinstance(value, int) else None


def _detail(detail: str | None) -> dict[str, object]:
    try:
        parsed = json.loads(str(detail)) if detail else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def put_value(conn: sqlite3.Connection, key: str, value: Any, now: float) -> None:
    """Store a JSON value under `key` in the kv table."""
    conn.execute(
        "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, json.dumps(value), now),
    )


def nudge(conn: sqlite3.Connection, now: float) -> dict[str, Any] | None:
    """Ask the worker to re-read the settings before its next batch: the holds are marked
    nudged at `now` and a pause's next check is brought forward to `now`.

    Works on the stored JSON (`store.holds.holds_to_json`: sorted keys, default separators), so
    the text written is the one `Store` would write. Returns the holds as stored, or None when
    they are absent or not as `store.holds` reads them (then nothing is written: the caller
    rewrites them whole).
    """
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (HOLDS_KEY,)).fetchone()
    try:
        holds = json.loads(row[0]) if row else None
    except ValueError:
        return None
    if not isinstance(holds, dict) or not _readable(holds):
        return None
    pause = holds.get("pause")
    if pause is not None and pause["next_check_at"] > now:
        pause["next_check_at"] = now
    holds["nudged_at"] = now
    conn.execute(
        "UPDATE kv SET value = ?, updated_at = ? WHERE key = ?",
        (json.dumps(holds, sort_keys=True), now, HOLDS_KEY),
    )
    return holds


def _readable(holds: dict[str, Any]) -> bool:
    """Whether `store.holds.holds_from_json` reads these holds as they are (anything it would
    read as no holds, or only in part, is left for `Store` to rewrite whole)."""
    if not holds.keys() <= HOLDS_FIELDS:
        return False
    breaker, pause = holds.get("breaker"), holds.get("pause")
    if not isinstance(breaker, dict) or not breaker.keys() <= BREAKER_FIELDS:
        return False
    failures = breaker.get("failures") or []
    if breaker.get("state", "closed") not in BREAKER_STATES or not isinstance(failures, list):
        return False
    if not all(
        isinstance(failure, list)
        and len(failure) == 2
        and all(isinstance(part, int | float) and not isinstance(part, bool) for part in failure)
        for failure in failures
    ):
        return False
    if pause is not None and not (
        isinstance(pause, dict)
        and PAUSE_REQUIRED <= pause.keys() <= PAUSE_FIELDS
        and isinstance(pause["next_check_at"], int | float)
    ):
        return False
    return isinstance(holds.get("nudged_at") or 0.0, int | float)


def placeholders(values: list[Any]) -> str:
    """`?,?,?` for an SQL `IN (...)` of `values`."""
    return ",".join("?" * len(values))


def chunks(values: list[int], size: int = 500) -> Iterator[list[int]]:
    """SQLite limits the number of bound parameters; large id lists go in chunks."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def store_error(exc: BaseException, path: str | os.PathLike[str]) -> StoreError:
    """Translate sqlite3's (and the file system's) errors into messages people can act on."""
    text = str(exc).lower()
    if (isinstance(exc, OSError) and exc.errno == 28) or "disk is full" in text:
        return StoreFullError(
            f"the disk holding {os.path.dirname(path)} is full: free some space; saved scenes "
            "are recorded again when Stash next fires a hook or you run 'Sync All Scenes'"
        )
    if "locked" in text or "busy" in text:
        return StoreLockedError(
            f"the store {os.fspath(path)} is locked by another process (a backup, a database "
            "browser, a stuck Stash2Plex process?); close it and try again"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreUnreadableError(f"it is damaged ({exc})")
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        return StoreError(
            f"the store {os.fspath(path)} cannot be written: check that the data directory is "
            "writable by the user Stash runs as, or set STASH2PLEX_DATA_DIR. Scenes saved "
            "meanwhile are not recorded: once it is writable, run the task 'Sync Recent Scenes' "
            "(or `stash2plex sync --recent`)"
        )
    if "unable to open" in text:
        return StoreError(
            f"cannot open the store {os.fspath(path)}: check that the data directory exists and "
            "is writable, or set STASH2PLEX_DATA_DIR"
        )
    return StoreError(f"the store {os.fspath(path)} failed: {exc}")
