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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stash2plex.records import IndexEntry, Job, Link, ListedItem

Clock = Callable[[], float]

DB_FILENAME = "stash2plex.db"
BUSY_TIMEOUT_SECONDS = 30.0

# Job states. A waiting job has a reason (see WAIT_REASONS); a leased job belongs to the
# worker named in lease_owner until lease_until, after which any worker may take it again.
PENDING = "pending"
LEASED = "leased"
WAITING = "waiting"
DONE = "done"

# Each migration is applied once, in order; PRAGMA user_version records how many ran.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        scene_id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        lease_until REAL,
        lease_owner TEXT,
        generation INTEGER NOT NULL DEFAULT 0,
        source TEXT,
        enqueued_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_error TEXT,
        last_error_class TEXT,
        detail TEXT
    );
    CREATE INDEX jobs_state_due ON jobs (state, due_at);
    CREATE TABLE entity_changes (
        kind TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (kind, entity_id)
    );
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scene_id INTEGER NOT NULL,
        error_class TEXT NOT NULL,
        message TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        failed_at REAL NOT NULL
    );
    CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at);
    CREATE INDEX dead_letters_scene ON dead_letters (scene_id);
    CREATE TABLE links (
        scene_id INTEGER PRIMARY KEY,
        rating_key INTEGER NOT NULL,
        section_id INTEGER NOT NULL,
        plex_path TEXT NOT NULL,
        fingerprints TEXT NOT NULL DEFAULT '{}',
        synced_at REAL NOT NULL
    );
    CREATE INDEX links_rating_key ON links (rating_key);
    CREATE TABLE plex_index (
        rating_key INTEGER NOT NULL,
        section_id INTEGER NOT NULL,
        path TEXT NOT NULL,
        basename TEXT NOT NULL,
        size INTEGER,
        updated_at INTEGER,
        PRIMARY KEY (rating_key, path)
    );
    CREATE INDEX plex_index_path ON plex_index (path);
    CREATE INDEX plex_index_basename ON plex_index (basename);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        level TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
    );
    CREATE INDEX events_at ON events (at);
    CREATE TABLE outages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL,
        ended_at REAL,
        jobs_affected INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 2: what a link owns in Plex (list values pushed, collections we added), and one row per
    # indexed Plex item so the index can be refreshed incrementally.
    """
    ALTER TABLE links ADD COLUMN owned TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE plex_items (
        rating_key INTEGER PRIMARY KEY,
        section_id INTEGER NOT NULL,
        collections TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX plex_items_section ON plex_items (section_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RuntimeError):
    """The store cannot be opened or is newer than this code."""


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
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # Windows: msvcrt locks a byte range instead.
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        yield
    finally:
        os.close(fd)


class Store:
    """Access to the SQLite database in the data directory.

    One instance per thread; open it with `Store.open(data_dir)`.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock) -> None:
        self._conn = conn
        self.path = path
        self.clock = clock

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], *, clock: Clock = time.time) -> Store:
        """Open (creating and migrating if needed) the store in `data_dir`."""
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {directory}: {exc.strerror}. "
                "Check that its parent exists and is writable, or set STASH2PLEX_DATA_DIR."
            ) from None
        path = directory / DB_FILENAME
        _create_private_file(path)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        store = cls(conn, path, clock)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            store._migrate(directory)
        conn.execute("PRAGMA synchronous=NORMAL")
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
                with self.transaction():
                    for statement in _split_sql(MIGRATIONS[number]):
                        self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version={number + 1}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (cheap wake-up check)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # ----------------------------------------------------------------- key/value
    def put_value(self, key: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (key, json.dumps(value), self.clock()),
        )

    def get_value(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except ValueError:
            return default

    def delete_value(self, key: str) -> None:
        self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))

    def nudge_auth_pause(self) -> None:
        """A hook or task arrived: a paused worker re-reads the settings and probes at once,
        so a fixed token lifts the pause without waiting for the next timed probe."""
        if self.get_value("auth_pause") is None:  # the usual case: no write at all
            return
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM kv WHERE key = 'auth_pause'").fetchone()
            if row is None:
                return
            pause = json.loads(row[0])
            pause["next_probe_at"] = 0
            conn.execute("UPDATE kv SET value = ? WHERE key = 'auth_pause'", (json.dumps(pause),))

    # ----------------------------------------------------------------- jobs
    def enqueue(self, scene_ids: list[int] | tuple[int, ...], source: str) -> int:
        """Mark scenes dirty; returns how many were not already outstanding.

        Coalesces with an existing job.

        A job being synced right now (leased) gets its generation bumped, so the worker
        knows to sync it again when it finishes. A job waiting for Plex to scan its file or
        for an ambiguity to be resolved is made due now: the scene may have changed in a way
        that settles it. A job waiting for a retry keeps its backoff, to spare a failing Plex.
        """
        with self.transaction() as conn:
            return self._upsert_jobs(conn, scene_ids, source, self.clock())

    @staticmethod
    def _upsert_jobs(
        conn: sqlite3.Connection, scene_ids: list[int] | tuple[int, ...], source: str, now: float
    ) -> int:
        new = 0
        for scene_id in scene_ids:
            prior = conn.execute(
                "SELECT state FROM jobs WHERE scene_id = ?", (int(scene_id),)
            ).fetchone()
            if prior is None or prior[0] == DONE:
                new += 1
            conn.execute(
                """
                INSERT INTO jobs (scene_id, state, attempts, due_at, generation, source,
                                  enqueued_at, updated_at)
                VALUES (?, 'pending', 0, ?, 0, ?, ?, ?)
                ON CONFLICT(scene_id) DO UPDATE SET
                    generation = jobs.generation + 1,
                    source = excluded.source,
                    updated_at = excluded.updated_at,
                    attempts = CASE WHEN jobs.state = 'done' THEN 0 ELSE jobs.attempts END,
                    enqueued_at = CASE WHEN jobs.state = 'done'
                                       THEN excluded.enqueued_at ELSE jobs.enqueued_at END,
                    due_at = CASE
                        WHEN jobs.state = 'done' THEN excluded.due_at
                        WHEN jobs.state = 'waiting' AND jobs.reason IN
                            ('not_in_plex', 'ambiguous') THEN excluded.due_at
                        ELSE jobs.due_at END,
                    state = CASE
                        WHEN jobs.state = 'leased' THEN 'leased'
                        WHEN jobs.state = 'waiting' AND jobs.reason IN
                            ('not_in_plex', 'ambiguous') THEN 'pending'
                        WHEN jobs.state = 'waiting' THEN 'waiting'
                        ELSE 'pending' END,
                    reason = CASE
                        WHEN jobs.state IN ('leased', 'pending') THEN jobs.reason
                        WHEN jobs.state = 'waiting' AND jobs.reason NOT IN
                            ('not_in_plex', 'ambiguous') THEN jobs.reason
                        ELSE NULL END
                """,
                (int(scene_id), now, source, now, now),
            )
        return new

    def record_entity_change(self, kind: str, entity_id: int) -> None:
        """Remember that a performer/studio/tag/group changed; the worker expands it."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO entity_changes (kind, entity_id, recorded_at) VALUES (?, ?, ?) "
                "ON CONFLICT(kind, entity_id) DO UPDATE SET recorded_at = excluded.recorded_at",
                (kind, int(entity_id), self.clock()),
            )

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
            self._upsert_jobs(conn, scene_ids, f"{kind} {entity_id} changed", self.clock())
            conn.execute(
                "DELETE FROM entity_changes WHERE kind = ? AND entity_id = ? AND recorded_at = ?",
                (kind, entity_id, recorded_at),
            )

    def forget_scene(self, scene_id: int) -> None:
        """A scene was deleted in Stash: drop its job and its link."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM jobs WHERE scene_id = ?", (scene_id,))
            conn.execute("DELETE FROM links WHERE scene_id = ?", (scene_id,))

    def claim_due(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` due jobs, oldest due first.

        A lease that expired (its worker was killed) counts as due: that is how a SIGKILL
        loses nothing.
        """
        now = self.clock()
        with self.transaction() as conn:
            rows = conn.execute(
                """
                SELECT * FROM jobs
                WHERE (state IN ('pending', 'waiting') AND due_at <= ?)
                   OR (state = 'leased' AND lease_until <= ?)
                ORDER BY due_at, scene_id
                LIMIT ?
                """,
                (now, now, limit),
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE jobs SET state = 'leased', lease_until = ?, lease_owner = ?, "
                    "updated_at = ? WHERE scene_id = ?",
                    (now + lease_seconds, owner, now, row["scene_id"]),
                )
        return [_job(row) for row in rows]

    def complete(self, job: Job) -> None:
        """The scene is in sync. If it was edited again meanwhile, it becomes due again."""
        now = self.clock()
        with self.transaction() as conn:
            conn.execute(
                """
                UPDATE jobs SET
                    state = CASE WHEN generation = ? THEN 'done' ELSE 'pending' END,
                    due_at = CASE WHEN generation = ? THEN due_at ELSE ? END,
                    reason = NULL, attempts = 0, lease_until = NULL, lease_owner = NULL,
                    last_error = NULL, last_error_class = NULL, detail = NULL, updated_at = ?
                WHERE scene_id = ?
                """,
                (job.generation, job.generation, now, now, job.scene_id),
            )

    def defer(
        self,
        job: Job,
        *,
        reason: str,
        due_at: float,
        attempts: int,
        error: str | None = None,
        error_class: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Park a job until `due_at` with a visible reason (retry, not in Plex, ...)."""
        now = self.clock()
        with self.transaction() as conn:
            conn.execute(
                """
                UPDATE jobs SET state = 'waiting', reason = ?, due_at = ?, attempts = ?,
                    lease_until = NULL, lease_owner = NULL, last_error = ?,
                    last_error_class = ?, detail = ?, updated_at = ?
                WHERE scene_id = ?
                """,
                (
                    reason,
                    due_at,
                    attempts,
                    error,
                    error_class,
                    json.dumps(detail) if detail is not None else None,
                    now,
                    job.scene_id,
                ),
            )

    def release(self, job: Job) -> None:
        """Give a leased job back untouched (the worker is stopping or Plex went down)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET state = CASE WHEN reason IS NULL THEN 'pending' ELSE 'waiting' "
                "END, lease_until = NULL, lease_owner = NULL WHERE scene_id = ? "
                "AND state = 'leased'",
                (job.scene_id,),
            )

    def dead_letter(self, job: Job, *, error_class: str, message: str, attempts: int) -> None:
        """Move a job to the dead-letter queue with a reason a person can act on."""
        now = self.clock()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO dead_letters (scene_id, error_class, message, attempts, failed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (job.scene_id, error_class, message, attempts, now),
            )
            # If the scene was edited during the failed attempt, that edit still deserves a try.
            conn.execute(
                "DELETE FROM jobs WHERE scene_id = ? AND generation = ?",
                (job.scene_id, job.generation),
            )
            conn.execute(
                "UPDATE jobs SET state = 'pending', attempts = 0, due_at = ?, lease_until = NULL,"
                " lease_owner = NULL, reason = NULL WHERE scene_id = ?",
                (now, job.scene_id),
            )

    def make_due(self, reason: str) -> int:
        """Make every job waiting for `reason` due now (Plex is back, the token was fixed)."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'pending', due_at = ?, reason = NULL "
                "WHERE state = 'waiting' AND reason = ?",
                (self.clock(), reason),
            )
        return cursor.rowcount

    def clear_pending(self) -> int:
        """Drop jobs not being worked on (pending or waiting); leased jobs are left alone."""
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM jobs WHERE state IN ('pending', 'waiting')")
        return cursor.rowcount

    def prune_done_jobs(self, older_than: float) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?", (older_than,)
            )
        return cursor.rowcount

    def job(self, scene_id: int) -> Job | None:
        row = self._conn.execute("SELECT * FROM jobs WHERE scene_id = ?", (scene_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, state: str | None = None) -> list[Job]:
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

    def next_due_at(self) -> float | None:
        """When the earliest not-done job becomes due (an expired lease counts)."""
        row = self._conn.execute(
            """
            SELECT MIN(CASE WHEN state = 'leased' THEN lease_until ELSE due_at END)
            FROM jobs WHERE state != 'done'
            """
        ).fetchone()
        return row[0]

    def dead_letters(self, error_class: str | None = None) -> list[dict[str, Any]]:
        if error_class is None:
            rows = self._conn.execute("SELECT * FROM dead_letters ORDER BY failed_at, id")
        else:
            rows = self._conn.execute(
                "SELECT * FROM dead_letters WHERE error_class = ? ORDER BY failed_at, id",
                (error_class,),
            )
        return [dict(row) for row in rows]

    def dead_letter_counts(self) -> dict[str, int]:
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

    # ----------------------------------------------------------------- outages
    def start_outage(self, started_at: float) -> int:
        with self.transaction() as conn:
            cursor = conn.execute("INSERT INTO outages (started_at) VALUES (?)", (started_at,))
            # Keep the last 30 outages.
            conn.execute(
                "DELETE FROM outages WHERE id NOT IN "
                "(SELECT id FROM outages ORDER BY started_at DESC LIMIT 30)"
            )
        return int(cursor.lastrowid or 0)

    def end_outage(self, ended_at: float, jobs_affected: int) -> dict[str, Any] | None:
        """Close the open outage; returns it, or None if none was open."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM outages WHERE ended_at IS NULL ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE outages SET ended_at = ?, jobs_affected = ? WHERE id = ?",
                (ended_at, jobs_affected, row["id"]),
            )
        return {**dict(row), "ended_at": ended_at, "jobs_affected": jobs_affected}

    def outages(self) -> list[dict[str, Any]]:
        return [
            dict(row) for row in self._conn.execute("SELECT * FROM outages ORDER BY started_at")
        ]

    # ----------------------------------------------------------------- links
    def link(self, scene_id: int) -> Link | None:
        row = self._conn.execute("SELECT * FROM links WHERE scene_id = ?", (scene_id,)).fetchone()
        if row is None:
            return None
        return Link(
            row["scene_id"],
            row["rating_key"],
            row["section_id"],
            row["plex_path"],
            json.loads(row["fingerprints"]),
            row["synced_at"],
            json.loads(row["owned"] or "{}"),
        )

    def save_link(
        self,
        scene_id: int,
        rating_key: int,
        section_id: int,
        plex_path: str,
        fingerprints: dict[str, str],
        owned: dict[str, Any] | None = None,
    ) -> None:
        """Record the scene's Plex item and the fingerprints of what we pushed to it."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO links (scene_id, rating_key, section_id, plex_path, fingerprints,
                                   synced_at, owned)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(scene_id) DO UPDATE SET rating_key = excluded.rating_key,
                    section_id = excluded.section_id, plex_path = excluded.plex_path,
                    fingerprints = excluded.fingerprints, synced_at = excluded.synced_at,
                    owned = excluded.owned
                """,
                (
                    scene_id,
                    rating_key,
                    section_id,
                    plex_path,
                    json.dumps(fingerprints, sort_keys=True),
                    self.clock(),
                    json.dumps(owned or {}, sort_keys=True, ensure_ascii=False),
                ),
            )

    def drop_link(self, scene_id: int) -> None:
        self._conn.execute("DELETE FROM links WHERE scene_id = ?", (scene_id,))

    def last_synced_at(self) -> float | None:
        row = self._conn.execute("SELECT MAX(synced_at) FROM links").fetchone()
        return row[0]

    def link_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM links").fetchone()[0])

    # ----------------------------------------------------------------- Plex index
    def replace_index(self, section_id: int, items: list[ListedItem]) -> None:
        """Store a fresh full listing of one section."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM plex_index WHERE section_id = ?", (section_id,))
            conn.execute("DELETE FROM plex_items WHERE section_id = ?", (section_id,))
            self._insert_items(conn, items)

    def add_to_index(self, items: list[ListedItem]) -> None:
        """Add or refresh some items (an incremental refresh)."""
        with self.transaction() as conn:
            for item in items:
                conn.execute("DELETE FROM plex_index WHERE rating_key = ?", (item.rating_key,))
            self._insert_items(conn, items)

    @staticmethod
    def _insert_items(conn: sqlite3.Connection, items: list[ListedItem]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO plex_items (rating_key, section_id, collections) "
            "VALUES (?, ?, ?)",
            [
                (i.rating_key, i.section_id, json.dumps(list(i.collections), ensure_ascii=False))
                for i in items
            ],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO plex_index (rating_key, section_id, path, basename, size)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (i.rating_key, i.section_id, path, _basename(path), size)
                for i in items
                for path, size in i.files
            ],
        )

    def drop_from_index(self, rating_key: int) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM plex_index WHERE rating_key = ?", (rating_key,))
            conn.execute("DELETE FROM plex_items WHERE rating_key = ?", (rating_key,))

    def indexed_rating_keys(self, section_id: int) -> set[int]:
        rows = self._conn.execute(
            "SELECT rating_key FROM plex_items WHERE section_id = ?", (section_id,)
        ).fetchall()
        return {row[0] for row in rows}

    def listed_collections(self, rating_key: int) -> list[str] | None:
        """The collection tags the listing showed for an item (None if not indexed)."""
        row = self._conn.execute(
            "SELECT collections FROM plex_items WHERE rating_key = ?", (rating_key,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def index_by_path(self, path: str) -> list[IndexEntry]:
        rows = self._conn.execute(
            "SELECT rating_key, section_id, path, size FROM plex_index WHERE path = ?", (path,)
        ).fetchall()
        return [IndexEntry(*row) for row in rows]

    def index_by_basename(self, basename: str) -> list[IndexEntry]:
        rows = self._conn.execute(
            "SELECT rating_key, section_id, path, size FROM plex_index WHERE basename = ?",
            (basename,),
        ).fetchall()
        return [IndexEntry(*row) for row in rows]

    def index_size(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM plex_items").fetchone()[0])

    # ----------------------------------------------------------------- events
    def add_event(
        self, level: str, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        """Record something a person should see later (the worker has no Stash log)."""
        self._conn.execute(
            "INSERT INTO events (at, level, kind, message, data) VALUES (?, ?, ?, ?, ?)",
            (self.clock(), level, kind, message, json.dumps(data) if data else None),
        )

    def prune_events(self, older_than: float, keep: int = 1000) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM events WHERE at < ? OR id NOT IN "
                "(SELECT id FROM events ORDER BY id DESC LIMIT ?)",
                (older_than, keep),
            )
        return cursor.rowcount

    def recent_events(self, limit: int = 20) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in self._conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        ]


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _split_sql(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


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
