"""The one transactional store: every table, every migration and every query.

Standard library only: the hook path opens the store to record a job.

Rules kept here so no other module needs to know them:
- WAL mode with a long busy timeout: dozens of hook processes may write at once.
- Read-modify-write steps run inside ``BEGIN IMMEDIATE`` so two processes cannot both claim
  the same job.
- Times are epoch seconds (REAL) taken from the injected clock, so they compare in SQL.
- A job says only "scene X is dirty": it is keyed by scene id and coalesces.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stash2plex.errors import (
    StoreError,
    StoreUnreadableError,
)
from stash2plex.paths import basename_key, path_key
from stash2plex.records import (
    NO_REASON,
    Decision,
    Event,
    EventLevel,
    Holds,
    IndexEntry,
    Job,
    Link,
    ListedItem,
    Retry,
    UnsettledCheck,
    UnsettledWrite,
)
from stash2plex.store import link_json, recording
from stash2plex.store.holds import PARKED, read_holds, write_holds
from stash2plex.store.recording import HOOK_ACTIONS, chunks, placeholders, store_error
from stash2plex.store.schema import (
    DB_FILENAME,
    INDEX_REFRESHED_KEY,
    MIGRATIONS,
    SCHEMA_VERSION,
    SECTIONS_KEY,
    SERVER_CONNECTION_KEY,
)
from stash2plex.vocabulary import WAITING, HookAction

if TYPE_CHECKING:
    from stash2plex.store.reconcile import ReconcileTables

Clock = Callable[[], float]

BUSY_TIMEOUT_SECONDS = 30.0


CREATED_AT_KEY = "created_at"


_OPEN_PATHS: dict[str, int] = {}  # store files this process has open, with a count


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only: it holds a session cookie."""
    if path.exists():
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Blocking exclusive lock on a side file, released by the kernel if we die."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if sys.platform == "win32":  # msvcrt locks a byte range instead
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# When the next scheduled reconcile is due (epoch s), kept by `reconcile.timer`; read by the
# hook, which must start a worker for it even with an empty queue.
RECONCILE_DUE_KEY = "reconcile_due_at"
# When a person last asked for scenes (epoch seconds): the worker then reads Plex's libraries
# again before the drain, since a library removed and added again in Plex is seen by no
# request of an unchanged scene's sync.
PERSON_ASKED_KEY = "person_asked_at"


def reconcile_overdue(due_at: Any, now: float) -> bool:
    """Whether a scheduled reconcile is due at `now`, from the stored `RECONCILE_DUE_KEY`
    (absent or None: none scheduled, or never computed yet)."""
    return isinstance(due_at, int | float) and float(due_at) <= now


class Store:
    """Access to the SQLite database in the data directory.

    One instance per thread; open it with `Store.open(data_dir)`. Every method that writes
    runs in one transaction, so a kill between two calls never leaves half of one change.
    Raises `StoreError` (locked, full, unreadable) with a message a person can act on.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock) -> None:
        self._conn = conn
        self.path = path
        self.clock = clock
        # Set when an unreadable store was moved aside on opening: a message for the user.
        self.recovered_from: str | None = None
        self.inode = _inode(path)

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        clock: Clock = time.time,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> Store:
        """Open (creating and migrating if needed) the store in `data_dir`.

        `busy_timeout`: seconds to wait for another process's write lock (hooks wait briefly
        and fall back to the spool). An unreadable store file is moved aside and a fresh one
        created (`recovered_from` then says where the old one went).
        """
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {directory}: {exc.strerror}. "
                "Check that its parent exists and is writable, or set STASH2PLEX_DATA_DIR."
            ) from None
        path = directory / DB_FILENAME
        recovered = None
        # Closing any descriptor of the file drops every POSIX lock this process holds on it,
        # SQLite's included: read the header only when no connection of ours has it open.
        problem = None if _OPEN_PATHS.get(str(path)) else _unreadable_reason(path)
        if problem is None:
            try:
                return cls._connect(path, clock, busy_timeout)
            except StoreUnreadableError as exc:
                problem = str(exc)
        recovered = quarantine(path, problem)
        store = cls._connect(path, clock, busy_timeout)
        store.recovered_from = recovered
        store.add_event("error", "store", recovered)
        return store

    @classmethod
    def _connect(cls, path: Path, clock: Clock, busy_timeout: float) -> Store:
        try:
            _create_private_file(path)
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise store_error(exc, path) from None
        conn.row_factory = sqlite3.Row
        store = cls(conn, path, clock)
        _OPEN_PATHS[str(path)] = _OPEN_PATHS.get(str(path), 0) + 1
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                store._migrate(path.parent)
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise store_error(exc, path) from None
        except BaseException:
            conn.close()
            raise
        return store

    def _migrate(self, directory: Path) -> None:
        # Schema changes are serialized by a file lock so a burst of first-time hook
        # processes cannot race each other into "table already exists" or a half-made schema.
        with _file_lock(directory / "store.init.lock"):
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store at {self.path} has schema version {version}, newer than this "
                    f"Stash2Plex understands ({SCHEMA_VERSION}); update Stash2Plex"
                )
            if version == SCHEMA_VERSION:
                return
            self._conn.execute("PRAGMA journal_mode=WAL")
            for number in range(version, SCHEMA_VERSION):
                with self.transaction() as conn:
                    for statement in _split_sql(MIGRATIONS[number]):
                        conn.execute(statement)
                    if number == 0:
                        self._put(conn, CREATED_AT_KEY, self.clock())
                    conn.execute(f"PRAGMA user_version={number + 1}")
            if version:
                self._give_back_space()

    def _give_back_space(self) -> None:
        """After an upgrade that rebuilt tables (version 9 frees about a quarter of a large
        store's pages): copy the store into its used pages (VACUUM: about a second at 100,000
        scenes) and fold the write-ahead log back in, so the files on disk shrink instead of
        keeping the free pages and a log the size of the rebuild. Best effort: another
        process reading or writing, or a full disk, leaves the store as it is (it is sound)."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if free * 10 < pages:  # little to gain: not worth rewriting the file
            return
        # Never wait for another process here: the checkpoint would hold the write lock for
        # the whole busy timeout while a reader stays, and every hook would spool meanwhile.
        busy_ms = self._conn.execute("PRAGMA busy_timeout").fetchone()[0]
        self._conn.execute("PRAGMA busy_timeout = 0")
        try:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")

    def replaced(self) -> bool:
        """True when the file at the store's path is no longer the one this store opened (a
        damaged store was moved aside by another process and a fresh one created)."""
        current = _inode(self.path)
        return current is not None and current != self.inode

    def close(self) -> None:
        """Close the connection."""
        key = str(self.path)
        if _OPEN_PATHS.get(key):
            _OPEN_PATHS[key] -= 1
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement.

        Raises StoreLockedError / StoreFullError / StoreError instead of sqlite3's errors.
        """
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from None
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, self.path) from None
            raise

    def rows_written(self) -> int:
        """How many rows this store's connection has inserted, updated or deleted since it was
        opened: unchanged across a stretch of code, nothing was written through this store."""
        return self._conn.total_changes

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (cheap wake-up check)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # ----------------------------------------------------------------- key/value
    def put_value(self, key: str, value: Any) -> None:
        """Store a JSON value (server connection, cached settings, watermarks)."""
        with self.transaction() as conn:
            self._put(conn, key, value)

    def _put(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        recording.put_value(conn, key, value, self.clock())

    def get_value(self, key: str, default: Any = None) -> Any:
        """A stored JSON value, or `default` when absent or unreadable."""
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except ValueError:
            return default

    def delete_value(self, key: str) -> None:
        """Remove a stored value (no-op when absent)."""
        self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))

    # ----------------------------------------------------------------- holds
    def holds(self) -> Holds:
        """What currently stops the drain (breaker, pause), the ramp start and the last nudge."""
        return read_holds(self._conn)

    def change_holds(self, change: Callable[[Holds], tuple[Holds, Sequence[Event]]]) -> Holds:
        """Read, change and store the holds in one transaction; returns the new holds.

        `change` maps the current holds to the new ones and the events to record. The store
        records what the change means: an outage starts or ends with the breaker, and jobs
        parked behind a hold become due when it lifts (see `store.holds`).
        """
        with self.transaction() as conn:
            old = read_holds(conn)
            wanted, events = change(old)
            new = write_holds(conn, old, wanted, self.clock())
            for event in events:
                self._add_event(conn, event)
        return new

    def nudge(self) -> None:
        """A hook or task arrived: ask the worker to re-read the settings, and make a pause's
        next check due now (the user may just have fixed the setting)."""
        with self.transaction() as conn:
            self._nudge(conn)

    def _nudge(self, conn: sqlite3.Connection) -> None:
        now = self.clock()
        if recording.nudge(conn, now) is not None:
            return
        # Absent, or not as the lean nudge can vouch for: read as records and written whole.
        old = read_holds(conn)
        pause = old.pause
        due = pause.next_check_at if pause is not None else None
        if pause is not None and (not isinstance(due, int | float) or due > now):
            pause = replace(pause, next_check_at=now)  # a check due now (unreadable: now too)
        write_holds(conn, old, replace(old, pause=pause, nudged_at=now), now)

    # ----------------------------------------------------------------- hooks
    def record_hook(
        self,
        action: HookAction,
        object_id: int,
        *,
        source: str,
        entity_kind: str | None = None,
        connection: dict[str, Any] | None = None,
    ) -> Holds:
        """Everything a hook records, in one transaction: the freshest Stash connection, a
        nudge for the worker, and the event itself. Returns the holds (for the hook's answer)."""
        with self.transaction() as conn:
            if connection:
                self._put(conn, SERVER_CONNECTION_KEY, connection)
            self._nudge(conn)
            recording.record_action(conn, action, object_id, source, entity_kind, self.clock())
            return read_holds(conn)

    def merge_spool(self, entries: Iterable[dict[str, Any]]) -> int:
        """Record hook events that were spooled while the store was busy (one transaction).

        Malformed entries are skipped; returns how many were recorded.
        """
        recorded = 0
        with self.transaction() as conn:
            for entry in entries:
                try:
                    action = entry["action"]
                    object_id = int(entry["id"])
                    source = str(entry.get("source") or "spool")
                except (KeyError, TypeError, ValueError):
                    continue
                if action not in HOOK_ACTIONS:
                    continue
                if isinstance(entry.get("connection"), dict):
                    self._put(conn, SERVER_CONNECTION_KEY, entry["connection"])
                recording.record_action(
                    conn, action, object_id, source, entry.get("entity_kind"), self.clock()
                )
                recorded += 1
            if recorded:
                self._nudge(conn)
        return recorded

    # ----------------------------------------------------------------- jobs
    def enqueue(self, scene_ids: Iterable[int], source: str, *, retry_now: bool = False) -> int:
        """Mark scenes dirty; returns how many were not already outstanding.

        Coalesces with an existing job. A job being synced right now (leased) gets its
        generation bumped, so it is synced again when it finishes. A job waiting for Plex to
        scan its file, for an ambiguity or a conflict to be settled is made due now: the scene
        may have changed in a way that settles it. A job waiting for a retry keeps its backoff,
        to spare a failing Plex (hooks of a bulk import), unless `retry_now`: a person asked
        for these scenes (Sync, Sync All, Sync Recent, a scene's Sync now) and expects them
        tried now; its failed attempts still count towards the dead letters (a retry after a
        write that timed out still waits until that write can no longer land). A dead letter of
        the scene is replaced by the job (a redrive): a scene is queued, dead-lettered or
        done, never two of these. Nudges the worker in the same transaction: a running worker
        that wakes for these jobs reads the settings first (the person who queued them may
        just have changed one); with `retry_now` it also reads Plex's libraries again
        (PERSON_ASKED_KEY).
        """
        with self.transaction() as conn:
            self._nudge(conn)
            if retry_now:
                self._put(conn, PERSON_ASKED_KEY, self.clock())
            return recording.upsert_jobs(
                conn, list(scene_ids), source, self.clock(), retry_now=retry_now
            )

    def record_entity_change(self, kind: str, entity_id: int) -> None:
        """Remember that a performer/studio/tag/group changed; the worker expands it."""
        with self.transaction() as conn:
            recording.record_action(conn, "entity_changed", entity_id, "", kind, self.clock())

    def entity_changes(self) -> list[tuple[str, int, float]]:
        """Performer/studio/tag/group changes not yet expanded into scene jobs."""
        rows = self._conn.execute(
            "SELECT kind, entity_id, recorded_at FROM entity_changes ORDER BY recorded_at"
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def expand_entity_change(
        self, kind: str, entity_id: int, recorded_at: float, scene_ids: list[int]
    ) -> None:
        """Queue the affected scenes and clear the change in one transaction.

        The change is cleared only if it was not recorded again meanwhile, so a rename made
        while we were asking Stash for the scenes is expanded once more.
        """
        with self.transaction() as conn:
            recording.upsert_jobs(conn, scene_ids, f"{kind} {entity_id} changed", self.clock())
            conn.execute(
                "DELETE FROM entity_changes WHERE kind = ? AND entity_id = ? AND recorded_at = ?",
                (kind, entity_id, recorded_at),
            )

    def forget_scene(self, scene_id: int) -> None:
        """A scene was deleted in Stash: drop its job, its link and its dead letters."""
        with self.transaction() as conn:
            recording.record_action(conn, "scene_deleted", scene_id, "", None, self.clock())

    def take_ownership(self, owner: str) -> int:
        """The worker lock was just taken by `owner`: only the lock holder drains, so every
        other owner's lease is void and those jobs are due at once. Returns how many."""
        now = self.clock()
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = CASE WHEN reason IS NULL THEN 'pending' ELSE 'waiting' "
                "END, due_at = MIN(due_at, ?), lease_until = NULL, lease_owner = NULL "
                "WHERE state = 'leased' AND lease_owner IS NOT ?",
                (now, owner),
            )
        return cursor.rowcount

    def claim_due(self, owner: str, limit: int) -> list[Job]:
        """Lease up to `limit` due jobs to `owner` (the lock holder), oldest due first."""
        now = self.clock()
        with self.transaction() as conn:
            rows = conn.execute(
                """
                SELECT * FROM jobs
                WHERE state IN ('pending', 'waiting') AND due_at <= ?
                ORDER BY due_at, scene_id
                LIMIT ?
                """,
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE jobs SET state = 'leased', lease_until = ?, lease_owner = ?, "
                "updated_at = ? WHERE scene_id = ?",
                [(now, owner, now, row["scene_id"]) for row in rows],
            )
        return [_job(row) for row in rows]

    def apply(
        self,
        job: Job,
        decision: Decision,
        unsettled: Sequence[UnsettledWrite] = (),
        check_at: float = 0.0,
    ) -> Holds:
        """Apply one routing decision for a leased job, its hold changes and its event, and
        remember the attempt's `unsettled` writes (timed out: Plex may still apply them) to be
        checked from `check_at` on (epoch seconds), in one transaction. Returns the holds
        after it.

        If the scene was edited again while it was being synced (its generation moved on), a
        "done" or "dead letter" becomes a new pending job instead: that edit deserves a try.
        """
        now = self.clock()
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT generation FROM jobs WHERE scene_id = ?", (job.scene_id,)
            ).fetchone()
            edited = row is not None and row[0] != job.generation
            if row is None:
                pass  # the scene was deleted (or the queue cleared) meanwhile
            elif decision.action == "done" or (decision.action == "dead_letter" and edited):
                self._finish(conn, job, now, decision.status)
            elif decision.action == "dead_letter":
                conn.execute(
                    "INSERT INTO dead_letters (scene_id, error_class, message, attempts, "
                    "failed_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        job.scene_id,
                        decision.error_class or "permanent",
                        decision.message or "",
                        decision.attempts,
                        now,
                    ),
                )
                conn.execute("DELETE FROM jobs WHERE scene_id = ?", (job.scene_id,))
            else:
                due = decision.due_at if decision.due_at is not None else PARKED
                conn.execute(
                    """
                    UPDATE jobs SET state = 'waiting', reason = ?, due_at = ?, attempts = ?,
                        lease_until = NULL, lease_owner = NULL, last_error = ?,
                        last_error_class = ?, detail = ?, updated_at = ?
                    WHERE scene_id = ?
                    """,
                    (
                        decision.reason,
                        due,
                        decision.attempts,
                        decision.message,
                        decision.error_class,
                        json.dumps(decision.detail) if decision.detail is not None else None,
                        now,
                        job.scene_id,
                    ),
                )
            old = read_holds(conn)
            new = old
            if decision.breaker is not None:
                new = replace(new, breaker=decision.breaker)
            if decision.pause is not None:
                new = replace(new, pause=decision.pause)
            new = write_holds(conn, old, new, now)
            if decision.event is not None:
                self._add_event(conn, decision.event)
            if unsettled:
                _note_unsettled(conn, job.scene_id, unsettled, now, check_at)
        return new

    @staticmethod
    def _finish(conn: sqlite3.Connection, job: Job, now: float, outcome: str | None = None) -> None:
        """Done (recording what the sync did), unless edited meanwhile: then pending again."""
        conn.execute(
            """
            UPDATE jobs SET
                state = CASE WHEN generation = ? THEN 'done' ELSE 'pending' END,
                due_at = CASE WHEN generation = ? THEN due_at ELSE ? END,
                reason = NULL, attempts = 0, lease_until = NULL, lease_owner = NULL,
                last_error = NULL, last_error_class = NULL, detail = NULL, updated_at = ?,
                outcome = ?
            WHERE scene_id = ?
            """,
            (job.generation, job.generation, now, now, outcome, job.scene_id),
        )

    def release(self, jobs: Iterable[Job]) -> None:
        """Give leased jobs back untouched (the batch stopped or the worker is stopping)."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE jobs SET state = CASE WHEN reason IS NULL THEN 'pending' ELSE 'waiting' "
                "END, lease_until = NULL, lease_owner = NULL WHERE scene_id = ? "
                "AND state = 'leased'",
                [(job.scene_id,) for job in jobs],
            )

    def clear_pending(self) -> int:
        """Drop jobs not being worked on (pending or waiting); leased jobs are left alone."""
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM jobs WHERE state IN ('pending', 'waiting')")
        return cursor.rowcount

    def prune_done_jobs(self, older_than: float) -> int:
        """Delete finished jobs last touched before `older_than` (epoch seconds); returns
        how many."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?", (older_than,)
            )
        return cursor.rowcount

    def job(self, scene_id: int) -> Job | None:
        """The job of a scene, or None."""
        row = self._conn.execute("SELECT * FROM jobs WHERE scene_id = ?", (scene_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, state: str | None = None) -> list[Job]:
        """Every job (or those in `state`), by scene id."""
        if state is None:
            rows = self._conn.execute("SELECT * FROM jobs ORDER BY scene_id").fetchall()
        else:
            rows = self._conn.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY scene_id", (state,)
            ).fetchall()
        return [_job(row) for row in rows]

    def job_counts(self) -> dict[str, int]:
        """Counts by state, with waiting jobs split by reason as ``waiting:<reason>``."""
        counts: dict[str, int] = {}
        for row in self._conn.execute(
            "SELECT state, reason, COUNT(*) FROM jobs GROUP BY state, reason"
        ):
            key = row[0] if row[0] != WAITING else f"waiting:{row[1]}"
            counts[key] = counts.get(key, 0) + row[2]
        return counts

    def outstanding_jobs(self) -> int:
        """Jobs not yet done: pending, leased or waiting."""
        return int(
            self._conn.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0]
        )

    def has_work(self, backfill: bool = True) -> bool:
        """True when anything is outstanding: a job, an entity change or deletion to expand,
        a write to Plex to check, or (with `backfill`) linked scenes whose entities are still
        to be read."""
        sql = (
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state != 'done') "
            "OR EXISTS (SELECT 1 FROM entity_changes) "
            "OR EXISTS (SELECT 1 FROM entity_deletions) "
            "OR EXISTS (SELECT 1 FROM unsettled_writes)"
        )
        if backfill:
            sql += " OR EXISTS (SELECT 1 FROM entity_backfill)"
        return bool(self._conn.execute(sql).fetchone()[0])

    def due_now(self) -> int:
        """Jobs a drain would work on now: pending, leased, or waiting with their time come."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'leased') "
            "OR (state = 'waiting' AND due_at <= ?)",
            (self.clock(),),
        ).fetchone()
        return int(row[0])

    def drain_summary(self, since: float) -> dict[str, Any]:
        """What the drains since `since` (epoch seconds) did: finished jobs by outcome, dead
        letters with their reasons, and what waits now by reason of the jobs queued or tried
        since (not those left waiting from before, untouched).

        Shape: ``{"synced", "unchanged", "skipped", "dead_lettered", "waiting": {reason: n},
        "dead_letter_reasons": [str]}``.
        """
        outcomes = dict(
            self._conn.execute(
                "SELECT COALESCE(outcome, 'synced'), COUNT(*) FROM jobs "
                "WHERE state = 'done' AND updated_at >= ? GROUP BY 1",
                (since,),
            ).fetchall()
        )
        letters = self._conn.execute(
            "SELECT message, COUNT(*) FROM dead_letters WHERE failed_at >= ? GROUP BY message "
            "ORDER BY COUNT(*) DESC",
            (since,),
        ).fetchall()
        return {
            "synced": int(outcomes.get("synced", 0)),
            "unchanged": int(outcomes.get("unchanged", 0)),
            "skipped": int(outcomes.get("skipped", 0)),
            "dead_lettered": sum(int(n) for _, n in letters),
            "waiting": self.waiting_counts(since),
            "dead_letter_reasons": [
                f"{message} ({n} scenes)" if n > 1 else message for message, n in letters
            ],
        }

    def next_due_at(self) -> float | None:
        """When the earliest waiting or pending job becomes due (parked jobs excluded)."""
        row = self._conn.execute(
            "SELECT MIN(due_at) FROM jobs WHERE state IN ('pending', 'waiting') AND due_at < ?",
            (PARKED,),
        ).fetchone()
        return row[0]

    def waiting_counts(self, since: float = 0.0) -> dict[str, int]:
        """Waiting jobs by reason, of those queued or tried since `since` (epoch seconds)."""
        rows = self._conn.execute(
            "SELECT reason, COUNT(*) FROM jobs WHERE state = 'waiting' AND updated_at >= ? "
            "GROUP BY reason",
            (since,),
        ).fetchall()
        return {str(reason): int(n) for reason, n in rows}

    def next_retry(self, since: float = 0.0) -> Retry | None:
        """The job waiting for a retry that is tried first, of those tried since `since`
        (epoch seconds); None when none waits."""
        row = self._conn.execute(
            "SELECT scene_id, due_at, last_error, detail, attempts FROM jobs "
            "WHERE state = 'waiting' AND reason = 'retry' AND updated_at >= ? "
            "ORDER BY due_at, scene_id LIMIT 1",
            (since,),
        ).fetchone()
        if row is None:
            return None
        return Retry(
            int(row[0]),
            float(row[1]),
            str(row[2] or NO_REASON),
            recording.unsettled(row[3]),
            int(row[4]),
            recording.max_attempts(row[3]),
        )

    # ----------------------------------------------------------------- dead letters
    def dead_letters(self, error_class: str | None = None) -> list[dict[str, Any]]:
        """Dead letters (all, or of one error class), oldest first, as dicts of their columns."""
        if error_class is None:
            rows = self._conn.execute("SELECT * FROM dead_letters ORDER BY failed_at, id")
        else:
            rows = self._conn.execute(
                "SELECT * FROM dead_letters WHERE error_class = ? ORDER BY failed_at, id",
                (error_class,),
            )
        return [dict(row) for row in rows]

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters per error class."""
        rows = self._conn.execute(
            "SELECT error_class, COUNT(*) FROM dead_letters GROUP BY error_class"
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def delete_dead_letters(
        self, ids: list[int] | None = None, older_than: float | None = None
    ) -> int:
        """Delete dead letters: the given ids, those older than a time, or (neither) all."""
        with self.transaction() as conn:
            if ids is not None:
                cursor = conn.executemany(
                    "DELETE FROM dead_letters WHERE id = ?", [(i,) for i in ids]
                )
            elif older_than is not None:
                cursor = conn.execute("DELETE FROM dead_letters WHERE failed_at < ?", (older_than,))
            else:
                cursor = conn.execute("DELETE FROM dead_letters")
        return cursor.rowcount

    def redrive(self, letter_ids: Iterable[int], source: str) -> list[int]:
        """Queue the scenes of these dead letters again and remove the letters, in one
        transaction. Returns the scene ids queued (sorted)."""
        ids = list(letter_ids)
        with self.transaction() as conn:
            scene_ids = sorted(
                {
                    row[0]
                    for chunk in chunks(ids)
                    for row in conn.execute(
                        f"SELECT scene_id FROM dead_letters WHERE id IN ({placeholders(chunk)})",
                        chunk,
                    )
                }
            )
            recording.upsert_jobs(conn, scene_ids, source, self.clock())
        return scene_ids

    # ----------------------------------------------------------------- outages
    def outages(self) -> list[dict[str, Any]]:
        """Recorded outages, oldest first (the breaker's transitions record them)."""
        return [
            dict(row) for row in self._conn.execute("SELECT * FROM outages ORDER BY started_at")
        ]

    def record_outage(self, started_at: float, ended_at: float, jobs_affected: int) -> None:
        """Add a completed outage to the history (imported history, planted test history)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO outages (started_at, ended_at, jobs_affected) VALUES (?, ?, ?)",
                (started_at, ended_at, jobs_affected),
            )

    # ----------------------------------------------------------------- links
    def link(self, scene_id: int) -> Link | None:
        """The scene's primary link (its first file's Plex item), if any."""
        links = self.links(scene_id)
        return links[0] if links else None

    def links(self, scene_id: int) -> list[Link]:
        """Every Plex item the scene is linked to, the primary first."""
        rows = self._conn.execute(
            "SELECT * FROM links WHERE scene_id = ? ORDER BY position, rating_key", (scene_id,)
        ).fetchall()
        return [_link(row) for row in rows]

    def links_to_item(self, rating_key: int) -> list[Link]:
        """Every scene linked to one Plex item (more than one only while a conflict waits)."""
        rows = self._conn.execute(
            "SELECT * FROM links WHERE rating_key = ? ORDER BY scene_id", (rating_key,)
        ).fetchall()
        return [_link(row) for row in rows]

    def save_link(
        self,
        scene_id: int,
        rating_key: int,
        section_id: int,
        plex_path: str,
        fingerprints: dict[str, str],
        owned: dict[str, Any] | None = None,
        position: int = 0,
        *,
        wrote: bool = True,
    ) -> None:
        """Record one of the scene's Plex items and the fingerprints of what we pushed to it.

        `position` orders a scene's items (0: the primary). `wrote` False: nothing was written
        to Plex, so a link already recorded exactly so is left as it is (no write, and its
        `synced_at` keeps saying when Plex was last written)."""
        prints = link_json.encode(fingerprints)
        owned_text = link_json.encode(owned or {})
        if not wrote:
            row = self._conn.execute(
                "SELECT section_id, plex_path, fingerprints, owned, position FROM links "
                "WHERE scene_id = ? AND rating_key = ?",
                (scene_id, rating_key),
            ).fetchone()
            if row is not None and _same_link(
                row, (section_id, plex_path, prints, owned_text, position)
            ):
                return
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO links (scene_id, rating_key, section_id, plex_path, fingerprints,
                                   synced_at, owned, position)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(scene_id, rating_key) DO UPDATE SET
                    section_id = excluded.section_id, plex_path = excluded.plex_path,
                    fingerprints = excluded.fingerprints, synced_at = excluded.synced_at,
                    owned = excluded.owned, position = excluded.position
                """,
                (
                    scene_id,
                    rating_key,
                    section_id,
                    plex_path,
                    prints,
                    self.clock(),
                    owned_text,
                    position,
                ),
            )

    def drop_link(self, scene_id: int, rating_key: int | None = None) -> None:
        """Forget one of the scene's links, or (no `rating_key`) all of them."""
        if rating_key is None:
            self._conn.execute("DELETE FROM links WHERE scene_id = ?", (scene_id,))
        else:
            self._conn.execute(
                "DELETE FROM links WHERE scene_id = ? AND rating_key = ?", (scene_id, rating_key)
            )

    def unlink_gone_sections(self, section_ids: Iterable[int], source: str) -> list[int]:
        """Plex has only these library sections now: every scene linked into another (a
        library deleted in Plex, often added again at once under a new id) loses those links
        and is queued as `source`; our collections of the gone sections are forgotten.
        Returns the queued scene ids, sorted."""
        present = list(section_ids)
        gone = f"section_id NOT IN ({placeholders(present)})"
        with self.transaction() as conn:
            conn.execute(f"DELETE FROM plex_collections WHERE {gone}", present)
            return self._unlink_and_queue(conn, gone, present, source)

    def unlink_all(self, source: str) -> list[int]:
        """Another Plex server answers (its items are not the ones scenes were synced to):
        every scene loses its links and is queued as `source`; the index, our collections
        and the libraries last read are forgotten. Returns the queued scene ids, sorted."""
        with self.transaction() as conn:
            for table in ("plex_index", "plex_items", "plex_collections"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM kv WHERE key IN (?, ?)", (SECTIONS_KEY, INDEX_REFRESHED_KEY))
            return self._unlink_and_queue(conn, "1 = 1", [], source)

    def linked_but_unlisted(self, section_id: int) -> list[int]:
        """The ratingKeys scenes are linked to in one section that its index does not hold:
        right after a complete listing (`replace_index`), items Plex may have deleted."""
        rows = self._conn.execute(
            "SELECT DISTINCT rating_key FROM links WHERE section_id = ? AND rating_key NOT IN "
            "(SELECT rating_key FROM plex_items WHERE section_id = ?) ORDER BY rating_key",
            (section_id, section_id),
        )
        return [row[0] for row in rows]

    def unlink_items(self, rating_keys: Iterable[int], source: str) -> list[int]:
        """Plex no longer has these items (deleted, or their library added again with new
        items): every scene linked to one loses that link and is queued as `source`. Returns
        the queued scene ids, sorted."""
        scene_ids: set[int] = set()
        with self.transaction() as conn:
            for chunk in chunks(list(rating_keys)):
                where = f"rating_key IN ({placeholders(chunk)})"
                scene_ids.update(self._unlink_and_queue(conn, where, chunk, source))
        return sorted(scene_ids)

    def _unlink_and_queue(
        self, conn: sqlite3.Connection, where: str, params: list[int], source: str
    ) -> list[int]:
        """Drop the links `where` selects and queue their scenes, so each is pushed to
        whatever item holds its file now (until Plex has scanned it, it waits "not in Plex
        yet", as a new scene does)."""
        scene_ids = [
            row[0]
            for row in conn.execute(
                f"SELECT DISTINCT scene_id FROM links WHERE {where} ORDER BY scene_id", params
            )
        ]
        if scene_ids:
            conn.execute(f"DELETE FROM links WHERE {where}", params)
            self._nudge(conn)
            recording.upsert_jobs(conn, scene_ids, source, self.clock())
        return scene_ids

    def last_synced_at(self) -> float | None:
        """When any scene was last pushed (epoch seconds), or None."""
        row = self._conn.execute("SELECT MAX(synced_at) FROM links").fetchone()
        return row[0]

    def link_count(self) -> int:
        """How many scenes are linked to Plex (a scene with several items counts once)."""
        return int(self._conn.execute("SELECT COUNT(DISTINCT scene_id) FROM links").fetchone()[0])

    # ----------------------------------------------------------------- unsettled writes
    def unsettled_due(self, limit: int) -> list[UnsettledCheck]:
        """The unsettled writes whose check is due, the earliest first, at most `limit`."""
        rows = self._conn.execute(
            "SELECT scene_id, rating_key, tries, written FROM unsettled_writes "
            "WHERE check_at <= ? ORDER BY check_at LIMIT ?",
            (self.clock(), limit),
        ).fetchall()
        checks = []
        for scene_id, rating_key, tries, text in rows:
            written = json.loads(text)
            shown = {key: dict(pairs) for key, pairs in written["shown"].items()}
            checks.append(UnsettledCheck(scene_id, rating_key, tries, shown, written["ours"]))
        return checks

    def next_unsettled_check(self) -> float | None:
        """When the earliest check of an unsettled write is due, or None."""
        return self._conn.execute("SELECT MIN(check_at) FROM unsettled_writes").fetchone()[0]

    def settle(
        self, check: UnsettledCheck, *, check_at: float | None = None, failed: bool = False
    ) -> None:
        """The check of an item's unsettled writes is done; or, with `check_at`, put off until
        then (`failed`: because Plex could not be read, which counts in its tries)."""
        key = (check.scene_id, check.rating_key)
        if check_at is None:
            self._conn.execute(
                "DELETE FROM unsettled_writes WHERE scene_id = ? AND rating_key = ?", key
            )
        else:
            self._conn.execute(
                "UPDATE unsettled_writes SET check_at = ?, tries = tries + ? "
                "WHERE scene_id = ? AND rating_key = ?",
                (check_at, int(failed), *key),
            )

    def write_again(
        self,
        scene_id: int,
        rating_key: int,
        keys: Iterable[str],
        owned: Mapping[str, list[str]],
        source: str,
    ) -> None:
        """Forget that these keys were pushed to the item (an image's URL too, so its upload
        is planned again) and set these `owned` lists; then queue the scene, from `source`.
        One transaction; nothing when the scene is no longer linked to the item."""
        gone = set(keys) | {f"{key}_url" for key in keys}
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT fingerprints, owned FROM links WHERE scene_id = ? AND rating_key = ?",
                (scene_id, rating_key),
            ).fetchone()
            if row is None:
                return
            prints = {k: v for k, v in link_json.decode(row[0]).items() if k not in gone}
            lists = {**link_json.decode(row[1]), **owned}
            conn.execute(
                "UPDATE links SET fingerprints = ?, owned = ? WHERE scene_id = ? AND "
                "rating_key = ?",
                (link_json.encode(prints), link_json.encode(lists), scene_id, rating_key),
            )
            # A reconcile's record of the item is out of date: it is about to change.
            conn.execute("DELETE FROM plex_checks WHERE rating_key = ?", (rating_key,))
            recording.upsert_jobs(conn, [scene_id], source, self.clock())

    # ----------------------------------------------------------------- what scenes showed
    def save_scene_entities(self, scene_id: int, entities: Mapping[str, Iterable[int]]) -> None:
        """Replace the performer/studio/tag/group ids recorded for a scene's last push (no
        write when they are the same)."""
        wanted = {(kind, int(i)) for kind, ids in entities.items() for i in ids}
        rows = self._conn.execute(  # one statement: every unchanged scene asks this
            "SELECT kind, entity_id FROM link_entities WHERE scene_id = ? "
            "UNION ALL SELECT NULL, NULL FROM entity_backfill WHERE scene_id = ?",
            (scene_id, scene_id),
        ).fetchall()
        recorded = {(row[0], row[1]) for row in rows}
        if recorded == wanted:  # a pending backfill row, (None, None), is never wanted
            return
        with self.transaction() as conn:
            self._save_entities(conn, scene_id, entities)

    @staticmethod
    def _save_entities(
        conn: sqlite3.Connection, scene_id: int, entities: Mapping[str, Iterable[int]]
    ) -> None:
        conn.execute("DELETE FROM link_entities WHERE scene_id = ?", (scene_id,))
        conn.executemany(
            "INSERT OR IGNORE INTO link_entities (kind, entity_id, scene_id) VALUES (?, ?, ?)",
            [(kind, int(i), scene_id) for kind, ids in entities.items() for i in ids],
        )
        conn.execute("DELETE FROM entity_backfill WHERE scene_id = ?", (scene_id,))

    def entity_backfill(self, limit: int) -> list[int]:
        """Linked scenes whose entities are not recorded yet (links made before version 5),
        the lowest ids first, at most `limit`."""
        rows = self._conn.execute(
            "SELECT scene_id FROM entity_backfill ORDER BY scene_id LIMIT ?", (limit,)
        ).fetchall()
        return [row[0] for row in rows]

    def record_entity_backfill(
        self,
        entities: Mapping[int, Mapping[str, Iterable[int]]],
        requeue: Iterable[int],
        source: str,
        done: Iterable[int] = (),
    ) -> None:
        """In one transaction: record what each read scene shows (`entities`, scene id ->
        kind -> ids), queue `requeue` (Stash no longer says what was pushed, or the scene is
        gone), and take all of them, and `done`, off the backfill."""
        queued = list(requeue)
        with self.transaction() as conn:
            for scene_id, found in entities.items():
                self._save_entities(conn, scene_id, found)
            recording.upsert_jobs(conn, queued, source, self.clock())
            conn.executemany(
                "DELETE FROM entity_backfill WHERE scene_id = ?",
                [(i,) for i in [*queued, *done]],
            )

    def scenes_showing(self, kind: str, entity_id: int) -> list[int]:
        """Scenes whose last push showed this performer/studio/tag/group (or a child tag's
        ancestor, a child studio's parent)."""
        rows = self._conn.execute(
            "SELECT scene_id FROM link_entities WHERE kind = ? AND entity_id = ? ORDER BY scene_id",
            (kind, entity_id),
        ).fetchall()
        return [row[0] for row in rows]

    def record_entity_deletion(self, kind: str, entity_id: int) -> None:
        """Remember that a performer/studio/tag/group was deleted; the worker expands it."""
        with self.transaction() as conn:
            recording.record_action(conn, "entity_deleted", entity_id, "", kind, self.clock())

    def entity_deletions(self) -> list[tuple[str, int, float]]:
        """Deletions not yet expanded into scene jobs, oldest first."""
        rows = self._conn.execute(
            "SELECT kind, entity_id, recorded_at FROM entity_deletions ORDER BY recorded_at"
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def expand_entity_deletions(self) -> list[tuple[str, int, int]]:
        """Queue the scenes that showed each deleted entity, from our own records (Stash can
        no longer list them), and clear the deletions. Returns (kind, id, scenes queued)."""
        expanded = []
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT kind, entity_id FROM entity_deletions ORDER BY recorded_at"
            ).fetchall()
            for kind, entity_id in rows:
                scene_ids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT scene_id FROM link_entities WHERE kind = ? AND entity_id = ?",
                        (kind, entity_id),
                    )
                ]
                recording.upsert_jobs(conn, scene_ids, f"{kind} {entity_id} deleted", self.clock())
                conn.execute(
                    "DELETE FROM link_entities WHERE kind = ? AND entity_id = ?",
                    (kind, entity_id),
                )
                conn.execute(
                    "DELETE FROM entity_deletions WHERE kind = ? AND entity_id = ?",
                    (kind, entity_id),
                )
                expanded.append((kind, entity_id, len(scene_ids)))
        return expanded

    # ----------------------------------------------------------------- Plex index
    def replace_index(self, section_id: int, pages: Iterable[list[ListedItem]]) -> None:
        """Store a fresh full listing of one section, page by page: one transaction per page
        (memory bounded by a page, not the library), then one that drops what the listing no
        longer showed. A listing cut short leaves the old entries until the next one."""
        self._conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS listed (rating_key INTEGER PRIMARY KEY)"
        )
        self._conn.execute("DELETE FROM temp.listed")
        try:
            for page in pages:
                with self.transaction() as conn:
                    for item in page:
                        conn.execute(
                            "DELETE FROM plex_index WHERE rating_key = ?", (item.rating_key,)
                        )
                    self._insert_items(conn, page)
                    conn.executemany(
                        "INSERT OR IGNORE INTO temp.listed VALUES (?)",
                        [(item.rating_key,) for item in page],
                    )
            with self.transaction() as conn:
                for table in ("plex_index", "plex_items"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE section_id = ? AND rating_key NOT IN "
                        "(SELECT rating_key FROM temp.listed)",
                        (section_id,),
                    )
        finally:
            self._conn.execute("DELETE FROM temp.listed")

    def add_to_index(self, items: list[ListedItem]) -> None:
        """Add or refresh some items (an incremental refresh, or one item read again)."""
        with self.transaction() as conn:
            for item in items:
                conn.execute("DELETE FROM plex_index WHERE rating_key = ?", (item.rating_key,))
            self._insert_items(conn, items)

    @staticmethod
    def _insert_items(conn: sqlite3.Connection, items: list[ListedItem]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO plex_items (rating_key, section_id, collections, tags) "
            "VALUES (?, ?, ?, ?)",
            [
                (
                    i.rating_key,
                    i.section_id,
                    json.dumps(list(i.collections), ensure_ascii=False),
                    json.dumps(
                        {"genre": list(i.genres), "actor": list(i.actors)}, ensure_ascii=False
                    ),
                )
                for i in items
            ],
        )
        # One row per (item, path); a path listed twice keeps its last place and size.
        files: dict[tuple[int, str], tuple[int, int | None]] = {}
        for item in items:
            for path, size in item.files:
                files.pop((item.rating_key, path), None)
                files[(item.rating_key, path)] = (item.section_id, size)
        rows = []
        for (rating_key, path), (section_id, size) in files.items():
            key = path_key(path)
            # Plex's spelling only where the key differs (NULL: the key is the spelling).
            rows.append(
                (
                    rating_key,
                    section_id,
                    key,
                    basename_key(path),
                    None if path == key else path,
                    size,
                )
            )
        conn.executemany(
            "INSERT INTO plex_index (rating_key, section_id, path_key, basename_key, path, size)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def drop_from_index(self, rating_key: int) -> None:
        """Remove one Plex item from the index (it was deleted in Plex)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM plex_index WHERE rating_key = ?", (rating_key,))
            conn.execute("DELETE FROM plex_items WHERE rating_key = ?", (rating_key,))

    def keep_index_of(self, section_ids: list[int]) -> None:
        """Drop the index of every section but these (a library deleted in Plex, or no longer
        named in the settings): its files must not match scenes to items it no longer holds."""
        marks = ", ".join("?" * len(section_ids))
        with self.transaction() as conn:
            for table in ("plex_index", "plex_items"):
                conn.execute(
                    f"DELETE FROM {table} WHERE section_id NOT IN ({marks})", tuple(section_ids)
                )

    def indexed_rating_keys(self, section_id: int) -> set[int]:
        """The ratingKeys the index holds for one section."""
        rows = self._conn.execute(
            "SELECT rating_key FROM plex_items WHERE section_id = ?", (section_id,)
        ).fetchall()
        return {row[0] for row in rows}

    def listed(self, rating_key: int) -> tuple[list[str], dict[str, list[str]]] | None:
        """What the listing showed for an item: its collection tags, and its genre and actor
        tags by family (listings truncate those); None if not indexed."""
        row = self._conn.execute(
            "SELECT collections, tags FROM plex_items WHERE rating_key = ?", (rating_key,)
        ).fetchone()
        return (json.loads(row[0]), json.loads(row[1] or "{}")) if row else None

    def item_files(self, rating_key: int) -> list[tuple[str, int | None]]:
        """The files (parts) the index holds for one item, as Plex spells their paths."""
        rows = self._conn.execute(
            "SELECT COALESCE(path, path_key), size FROM plex_index WHERE rating_key = ? "
            "ORDER BY rowid",
            (rating_key,),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def multi_part_items(self) -> list[int]:
        """Items that hold more than one file (Plex stacked them, or several versions)."""
        rows = self._conn.execute(
            "SELECT rating_key FROM plex_index GROUP BY rating_key HAVING COUNT(*) > 1 "
            "ORDER BY rating_key"
        ).fetchall()
        return [row[0] for row in rows]

    def index_by_path(self, path: str) -> list[IndexEntry]:
        """Indexed files at this path, compared as `stash2plex.paths.path_key` does."""
        rows = self._conn.execute(
            "SELECT rating_key, section_id, COALESCE(path, path_key), size FROM plex_index "
            "WHERE path_key = ?",
            (path_key(path),),
        ).fetchall()
        return [IndexEntry(*row) for row in rows]

    def index_by_basename(self, basename: str) -> list[IndexEntry]:
        """Indexed files with this file name (Unicode form and case ignored)."""
        rows = self._conn.execute(
            "SELECT rating_key, section_id, COALESCE(path, path_key), size FROM plex_index "
            "WHERE basename_key = ?",
            (basename_key(basename),),
        ).fetchall()
        return [IndexEntry(*row) for row in rows]

    def scenes_linked_to_namesakes(self, rating_keys: Iterable[int]) -> list[int]:
        """Scenes linked to another item holding a file of the same name (and size, where both
        are known) as a file of one of these items: a link made by name may have its exact
        path among them. Sorted scene ids."""
        found: set[int] = set()
        for chunk in chunks(list(rating_keys)):
            rows = self._conn.execute(
                "SELECT DISTINCT l.scene_id FROM plex_index n "
                "JOIN plex_index o ON o.basename_key = n.basename_key "
                "AND o.rating_key != n.rating_key "
                "AND (o.size IS NULL OR n.size IS NULL OR o.size = n.size) "
                "JOIN links l ON l.rating_key = o.rating_key "
                f"WHERE n.rating_key IN ({placeholders(chunk)})",
                chunk,
            )
            found.update(row[0] for row in rows)
        return sorted(found)

    def index_size(self) -> int:
        """How many Plex items the index holds."""
        return int(self._conn.execute("SELECT COUNT(*) FROM plex_items").fetchone()[0])

    # ----------------------------------------------------------------- events
    def add_event(
        self, level: EventLevel, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        """Record something a person should see later (the worker has no Stash log)."""
        with self.transaction() as conn:
            self._add_event(conn, Event(level, kind, message), data)

    def _add_event(
        self, conn: sqlite3.Connection, event: Event, data: dict[str, Any] | None = None
    ) -> None:
        conn.execute(
            "INSERT INTO events (at, level, kind, message, data) VALUES (?, ?, ?, ?, ?)",
            (
                self.clock(),
                event.level,
                event.kind,
                event.message,
                json.dumps(data) if data else None,
            ),
        )

    def prune_events(self, older_than: float, keep: int = 1000) -> int:
        """Delete events older than `older_than` beyond the newest `keep`; returns how many."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM events WHERE at < ? OR id NOT IN "
                "(SELECT id FROM events ORDER BY id DESC LIMIT ?)",
                (older_than, keep),
            )
        return cursor.rowcount

    def watched_since(self) -> float | None:
        """Since when this store has been watching Plex (epoch seconds): its creation, or for
        stores older than that record, its oldest event or outage. Availability is computed
        over this window, not from the first outage."""
        row = self._conn.execute(
            "SELECT MIN(t) FROM (SELECT MIN(at) AS t FROM events "
            "UNION ALL SELECT MIN(started_at) FROM outages)"
        ).fetchone()
        created = self.get_value(CREATED_AT_KEY)
        times = [float(v) for v in (row[0], created) if v is not None]
        return min(times) if times else None

    def recent_events(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest events, newest first, as dicts of their columns."""
        return [
            dict(row)
            for row in self._conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        ]

    def scene_events(self, scene_id: int, limit: int = 10) -> list[dict[str, Any]]:
        """The newest events that speak of one scene ("scene 12: ...", "scene 12 has ..."),
        newest first."""
        rows = self._conn.execute(
            "SELECT * FROM events WHERE message LIKE ? OR message LIKE ? ORDER BY id DESC LIMIT ?",
            (f"scene {int(scene_id)}:%", f"scene {int(scene_id)} %", limit),
        )
        return [dict(row) for row in rows]

    # ----------------------------------------------------------------- Plex -> Stash pull
    def scenes_by_rating_key(self, rating_keys: list[int]) -> dict[int, list[int]]:
        """The linked scenes of each Plex item (usually one); unlinked items are absent."""
        found: dict[int, list[int]] = {}
        for start in range(0, len(rating_keys), 500):
            chunk = rating_keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT rating_key, scene_id FROM links WHERE rating_key IN ({marks}) "
                "ORDER BY scene_id",
                chunk,
            )
            for row in rows:
                found.setdefault(row[0], []).append(row[1])
        return found

    def pull_states(self, scene_ids: list[int]) -> dict[int, dict[str, Any]]:
        """What the last pulls recorded per scene (absent: nothing yet)."""
        states: dict[int, dict[str, Any]] = {}
        for start in range(0, len(scene_ids), 500):
            chunk = scene_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT * FROM pull_state WHERE scene_id IN ({marks})", chunk
            )
            states.update({row["scene_id"]: dict(row) for row in rows})
        return states

    def resumed_scenes(self) -> dict[int, tuple[int, int]]:
        """Linked scenes whose last pulled resume point was not 0: scene -> (ratingKey,
        offset in ms). When Plex no longer lists one as in progress, its point was reset."""
        rows = self._conn.execute(
            "SELECT p.scene_id, l.rating_key, p.resume_offset_ms FROM pull_state p "
            "JOIN links l ON l.scene_id = p.scene_id AND l.position = 0 "
            "WHERE p.resume_offset_ms > 0"
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    def save_resume_pulled(self, scene_id: int, offset_ms: int) -> None:
        """Remember the Plex resume point (ms) last given to Stash for a scene."""
        self._conn.execute(
            "INSERT INTO pull_state (scene_id, resume_offset_ms, resume_pulled_at) "
            "VALUES (?, ?, ?) ON CONFLICT(scene_id) DO UPDATE SET "
            "resume_offset_ms = excluded.resume_offset_ms, "
            "resume_pulled_at = excluded.resume_pulled_at",
            (scene_id, offset_ms, self.clock()),
        )

    def save_rating_agreed(
        self,
        scene_id: int,
        rating100: int | None,
        plex_at: int | None,
        *,
        stash_before: int | None = None,
        stash_pending: bool = False,
    ) -> None:
        """Both sides now show `rating100` (None: unrated); Plex's rating time then.
        `stash_pending`: decided, but Stash is not written yet and still shows `stash_before`
        (cleared by `rating_written`, or by the next decision saved)."""
        self._conn.execute(
            "INSERT INTO pull_state (scene_id, rating_known, rating_agreed, rating_plex_at, "
            "rating_decided_at, rating_stash_pending, rating_stash_before) "
            "VALUES (?, 1, ?, ?, ?, ?, ?) ON CONFLICT(scene_id) DO UPDATE SET "
            "rating_known = 1, rating_agreed = excluded.rating_agreed, "
            "rating_plex_at = excluded.rating_plex_at, "
            "rating_decided_at = excluded.rating_decided_at, "
            "rating_stash_pending = excluded.rating_stash_pending, "
            "rating_stash_before = excluded.rating_stash_before",
            (
                scene_id,
                rating100,
                plex_at,
                self.clock(),
                int(stash_pending),
                stash_before if stash_pending else None,
            ),
        )

    def rating_written(self, scene_id: int) -> None:
        """Stash now shows the scene's decided rating: the decision is no longer pending."""
        self._conn.execute(
            "UPDATE pull_state SET rating_stash_pending = 0, rating_stash_before = NULL "
            "WHERE scene_id = ?",
            (scene_id,),
        )

    def rating_pending_scenes(self) -> list[int]:
        """Linked scenes whose rating was decided for Stash but not yet written there (a run
        stopped between the two), in scene order."""
        rows = self._conn.execute(
            "SELECT p.scene_id FROM pull_state p WHERE p.rating_stash_pending = 1 "
            "AND EXISTS (SELECT 1 FROM links l WHERE l.scene_id = p.scene_id) "
            "ORDER BY p.scene_id"
        )
        return [row[0] for row in rows]

    def put_rating_state(
        self,
        scene_id: int,
        known: bool,
        rating100: int | None,
        plex_at: int | None,
        *,
        stash_before: int | None = None,
        stash_pending: bool = False,
    ) -> None:
        """Put back a scene's rating decision as it was (`known` False: none yet), after a
        write that should have followed it failed."""
        if known:
            self.save_rating_agreed(
                scene_id,
                rating100,
                plex_at,
                stash_before=stash_before,
                stash_pending=stash_pending,
            )
            return
        self._conn.execute(
            "UPDATE pull_state SET rating_known = 0, rating_agreed = NULL, rating_plex_at = NULL,"
            " rating_decided_at = NULL, rating_stash_pending = 0, rating_stash_before = NULL "
            "WHERE scene_id = ?",
            (scene_id,),
        )

    def rating_recheck(self, after_scene_id: int, limit: int) -> list[tuple[int, int]]:
        """(scene, ratingKey) of the linked items of scenes whose agreed rating is set, in
        scene order after `after_scene_id`, at most `limit`: what a pull reads again, because
        a rating cleared in Plex leaves no time to list it by."""
        rows = self._conn.execute(
            "SELECT p.scene_id, l.rating_key FROM pull_state p JOIN links l "
            "ON l.scene_id = p.scene_id WHERE p.rating_known = 1 AND p.rating_agreed IS NOT NULL "
            "AND p.scene_id > ? ORDER BY p.scene_id, l.rating_key LIMIT ?",
            (after_scene_id, limit),
        )
        return [(row[0], row[1]) for row in rows]

    def written_since(self, rating_keys: list[int], since: float) -> set[int]:
        """Of these Plex items, those Stash2Plex synced or rated at `since` (epoch s) or later."""
        found: set[int] = set()
        for chunk in chunks(rating_keys):
            rows = self._conn.execute(
                "SELECT DISTINCT rating_key FROM links "
                f"WHERE rating_key IN ({placeholders(chunk)}) AND synced_at >= ?",
                [*chunk, since],
            )
            found |= {row[0] for row in rows}
        return found

    def links_of_scenes(self, scene_ids: Iterable[int]) -> dict[int, list[Link]]:
        """Each scene's links, the primary first (scenes without a link are absent)."""
        found: dict[int, list[Link]] = {}
        for chunk in chunks(list(scene_ids)):
            rows = self._conn.execute(
                f"SELECT * FROM links WHERE scene_id IN ({placeholders(chunk)}) "
                "ORDER BY scene_id, position, rating_key",
                chunk,
            )
            for row in rows:
                found.setdefault(row["scene_id"], []).append(_link(row))
        return found

    def wake_conflict_partners(self, scene_id: int) -> list[int]:
        """Make due now the jobs waiting on a conflict that names `scene_id` (its detail's
        `scene_ids`), once that scene synced: the conflict may be settled (scenes merged in
        Stash, which fires no hook, or a file moved). Returns their scene ids."""
        now = self.clock()
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT scene_id, detail FROM jobs WHERE state = 'waiting' "
                "AND reason = 'conflict' AND scene_id != ?",
                (scene_id,),
            ).fetchall()
            partners = []
            for other, detail in rows:
                try:
                    named = (json.loads(detail or "{}") or {}).get("scene_ids") or []
                except (ValueError, AttributeError):
                    continue
                if scene_id in named:
                    partners.append(other)
            conn.executemany(
                "UPDATE jobs SET due_at = MIN(due_at, ?) WHERE scene_id = ?",
                [(now, other) for other in partners],
            )
        return partners

    def conflict_items(self) -> set[int]:
        """Plex items that hold files of several scenes (jobs waiting with reason conflict):
        nothing read from them belongs to one scene until the conflict is resolved."""
        rows = self._conn.execute(
            "SELECT detail FROM jobs WHERE state = 'waiting' AND reason = 'conflict'"
        )
        keys: set[int] = set()
        for (detail,) in rows:
            try:
                key = (json.loads(detail or "{}") or {}).get("rating_key")
            except (ValueError, AttributeError):
                continue
            if isinstance(key, int):
                keys.add(key)
        return keys

    def set_link_fingerprint(
        self, scene_id: int, key: str, value: str, rating_key: int | None = None
    ) -> None:
        """Record one field as pushed (a value that reached Plex another way), so the next
        sync of the scene does not write it again; on one of the scene's items (`rating_key`)
        or all of them."""
        with self.transaction() as conn:
            # Each of the scene's Plex items keeps its own fingerprints.
            rows = conn.execute(
                "SELECT rating_key, fingerprints FROM links WHERE scene_id = ?", (scene_id,)
            ).fetchall()
            if rating_key is not None:
                rows = [row for row in rows if row[0] == rating_key]
            for rating_key, fingerprints in rows:
                prints = link_json.decode(fingerprints)
                prints[key] = value
                conn.execute(
                    "UPDATE links SET fingerprints = ?, synced_at = ? WHERE scene_id = ? AND "
                    "rating_key = ?",
                    (link_json.encode(prints), self.clock(), scene_id, rating_key),
                )

    # ----------------------------------------------------------------- reconciliation
    def reconciliation(self) -> ReconcileTables:
        """The reconciliation's tables: runs, item checks and a run's scratch tables
        (`stash2plex.store.reconcile`), on this store's connection."""
        from stash2plex.store.reconcile import ReconcileTables

        return ReconcileTables(self._conn, self.transaction, self.clock)

    # ----------------------------------------------------------------- collection objects
    def plex_collection(self, section_id: int, title: str) -> dict[str, Any] | None:
        """What we know of one Plex collection (ours or the user's, its ratingKey, what we put
        on it), or None."""
        row = self._conn.execute(
            "SELECT * FROM plex_collections WHERE section_id = ? AND title = ?",
            (section_id, title),
        ).fetchone()
        if row is None:
            return None
        found = dict(row)
        found["ours"] = bool(found["ours"])
        found["fingerprints"] = json.loads(found["fingerprints"])
        return found

    def forget_plex_collection(self, section_id: int, title: str) -> None:
        """Forget a collection object (deleted in Plex): the next scene that wants it finds
        or creates it afresh."""
        self._conn.execute(
            "DELETE FROM plex_collections WHERE section_id = ? AND title = ?", (section_id, title)
        )

    def scenes_with_collection(self, section_id: int, title: str) -> list[int]:
        """Scenes whose items in this library we put into the collection `title`."""
        # A coarse filter in SQL (the title as `link_json` escapes it; LIKE's wildcards in it
        # taken literally), the exact test in Python.
        text = json.dumps(title, ensure_ascii=False)[1:-1]
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._conn.execute(
            "SELECT DISTINCT scene_id, owned FROM links WHERE section_id = ? "
            "AND owned LIKE ? ESCAPE '\\'",
            (section_id, f"%{pattern}%"),
        )
        return sorted(
            {
                scene_id
                for scene_id, owned in rows
                if title in (link_json.decode(owned).get("collection") or [])
            }
        )

    def forget_link_fingerprint(self, scene_ids: list[int], key: str, section_id: int) -> None:
        """Forget that a field was pushed to these scenes' items in one library, so their next
        sync writes it again."""
        with self.transaction() as conn:
            for chunk in chunks(scene_ids):
                rows = conn.execute(
                    f"SELECT scene_id, rating_key, fingerprints FROM links WHERE section_id = ? "
                    f"AND scene_id IN ({placeholders(chunk)})",
                    [section_id, *chunk],
                ).fetchall()
                for scene_id, rating_key, fingerprints in rows:
                    prints = link_json.decode(fingerprints)
                    if prints.pop(key, None) is not None:
                        conn.execute(
                            "UPDATE links SET fingerprints = ? WHERE scene_id = ? AND "
                            "rating_key = ?",
                            (link_json.encode(prints), scene_id, rating_key),
                        )

    def save_plex_collection(
        self,
        section_id: int,
        title: str,
        *,
        ours: bool,
        rating_key: int | None = None,
        fingerprints: dict[str, str] | None = None,
    ) -> None:
        """Record a Plex collection: whether Stash2Plex created it and what was last put on it."""
        self._conn.execute(
            "INSERT INTO plex_collections (section_id, title, ours, rating_key, fingerprints, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(section_id, title) DO UPDATE SET "
            "ours = excluded.ours, rating_key = excluded.rating_key, "
            "fingerprints = excluded.fingerprints, updated_at = excluded.updated_at",
            (
                section_id,
                title,
                int(ours),
                rating_key,
                json.dumps(fingerprints or {}, sort_keys=True),
                self.clock(),
            ),
        )


def _same_link(row: sqlite3.Row, wanted: tuple[int, str, str, str, int]) -> bool:
    """Whether a stored link row already says what `wanted` (section, path, fingerprints and
    owned as `link_json` writes them, position) says: by its text, or for a row written in
    the older spelling, by what it reads as."""
    stored = tuple(row)
    if stored == wanted:
        return True
    if (stored[0], stored[1], stored[4]) != (wanted[0], wanted[1], wanted[4]):
        return False
    try:
        return (
            link_json.encode(link_json.decode(stored[2])),
            link_json.encode(link_json.decode(stored[3])),
        ) == (wanted[2], wanted[3])
    except ValueError:
        return False


def _split_sql(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def _link(row: sqlite3.Row) -> Link:
    return Link(
        row["scene_id"],
        row["rating_key"],
        row["section_id"],
        row["plex_path"],
        link_json.decode(row["fingerprints"]),
        row["synced_at"],
        link_json.decode(row["owned"]),
        row["position"],
    )


def _job(row: sqlite3.Row) -> Job:
    return Job(
        scene_id=row["scene_id"],
        state=row["state"],
        reason=row["reason"],
        attempts=row["attempts"],
        due_at=row["due_at"],
        generation=row["generation"],
        source=row["source"],
        enqueued_at=row["enqueued_at"],
        last_error=row["last_error"],
        last_error_class=row["last_error_class"],
        detail=json.loads(row["detail"]) if row["detail"] else None,
    )


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _unreadable_reason(path: Path) -> str | None:
    """Why the store file cannot be a sound SQLite database, or None if it may be.

    A cheap look at the header first (the hook path opens the store every time), and
    SQLite's own check only when the header looks wrong: the header is read without SQLite's
    locks, and while another process checkpoints, page 1 (with the grown page count) is
    written before the pages that extend the file, so a sound store looks truncated for a
    moment (SQLite reads those pages from the WAL meanwhile). Raises StoreError when this
    user may not read it (a permission to fix, not a damaged store).
    """
    suspicion = _header_problem(path)
    if suspicion is None or _sound_to_sqlite(path):
        return None
    return suspicion


def _sound_to_sqlite(path: Path) -> bool:
    """True when SQLite reads the file as a database and its quick check finds nothing."""
    try:
        conn = sqlite3.connect(path, timeout=30)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute("PRAGMA quick_check(1)").fetchone()
        return row is not None and row[0] == "ok"
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def _header_problem(path: Path) -> str | None:
    """What the first 100 bytes say is wrong: no SQLite magic string, or an in-header page
    count larger than the file (a truncated copy, or a checkpoint under way)."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None
        with path.open("rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:
        return None
    except PermissionError as exc:  # not damage: moving it aside would lose a sound store
        raise StoreError(
            f"the store {path} cannot be read by this user ({exc.strerror}): check that the "
            "data directory and its files belong to the user Stash runs as, or set "
            "STASH2PLEX_DATA_DIR"
        ) from None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        return "it is not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]  # SQLite's "in-header size is valid" rule
    if header_valid and pages and size < pages * page_size:
        return f"it is truncated ({size} of {pages * page_size} bytes)"
    return None


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _note_unsettled(
    conn: sqlite3.Connection,
    scene_id: int,
    writes: Iterable[UnsettledWrite],
    now: float,
    check_at: float,
) -> None:
    """Remember writes that timed out `now`. Several for one item are kept together: every
    value each would show with the first time a write of it timed out, and the latest
    `check_at`."""
    for write in writes:
        row = conn.execute(
            "SELECT check_at, written FROM unsettled_writes WHERE scene_id = ? AND rating_key = ?",
            (scene_id, write.rating_key),
        ).fetchone()
        written = json.loads(row[1]) if row else {"shown": {}, "ours": {}}
        for key, print_ in write.shown.items():
            pairs = written["shown"].setdefault(key, [])
            if all(known != print_ for known, _ in pairs):
                pairs.append([print_, now])
        for key, names in write.ours.items():
            ours = written["ours"].setdefault(key, [])
            ours += [name for name in names if name not in ours]
        conn.execute(
            "INSERT OR REPLACE INTO unsettled_writes (scene_id, rating_key, check_at, tries, "
            "written) VALUES (?, ?, ?, 0, ?)",
            (
                scene_id,
                write.rating_key,
                max(check_at, row[0]) if row else check_at,
                json.dumps(written, ensure_ascii=False),
            ),
        )


def quarantine(store_path: str | os.PathLike[str], problem: str, inode: int | None = None) -> str:
    """Move an unreadable store (and its WAL files) aside; returns the message for people.

    `inode`: the file found unreadable; if another process already moved it aside and created
    a fresh store, the fresh one is left alone.
    """
    path = Path(store_path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.unreadable-{stamp}")
    with _file_lock(path.parent / "store.init.lock"):
        current = _inode(path)
        if current is None or (inode is not None and current != inode):
            return f"the store {path} was unreadable ({problem}) and was already replaced"
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{target}{suffix}"))
    return (
        f"the store {path} was unreadable ({problem}); it was moved aside to {target.name} and "
        "a new, empty store was created. Queued scenes and links from before are not in it: "
        "run the task 'Sync All Scenes' (or `stash2plex sync --all`) to restore them."
    )


def _nearly_full(folder: Path) -> bool:
    """SQLite reports a full disk during a WAL write as a plain I/O error: look at the disk."""
    try:
        stats = os.statvfs(folder)
        return stats.f_bavail * stats.f_frsize < 1024 * 1024
    except (OSError, AttributeError):  # AttributeError: Windows has no statvfs
        return False
