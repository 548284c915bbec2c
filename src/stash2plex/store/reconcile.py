"""The reconciliation's tables and queries: runs with their reports, the checks of Plex items,
the outages reconciled, and the scratch tables of one run.

Standard library only (the Plex page's views read the last run). Only `Store.reconciliation`
builds a `ReconcileTables`, on the store's own connection.

A run's scratch tables are SQLite TEMP tables: private to the connection, gone when it
closes, kept on disk by SQLite rather than in memory, so a run over 100,000 scenes holds only
a page of them at a time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from stash2plex.records import Job, Link
from stash2plex.store import link_json

# When the next scheduled reconcile is due (epoch seconds), as the worker last computed it
# from `reconcile_interval` and the runs: a task or a hook that finds it passed starts a
# worker even with an empty queue, so a plugin-only install reconciles on schedule.
# Runs kept: the newest ones, whatever their age (a weekly schedule keeps two years of them).
RUNS_KEPT = 100
# What a link records of the item itself rather than of its scene: the collections and labels
# Stash2Plex added (see `hand_over`).
OWNED_BY_ITEM = ("collection", "collection_all", "label", "label_all")
# A run's scratch tables (temporary: they go with the connection).
SCRATCH_TABLES = ("rc_items", "rc_scenes", "rc_claims", "rc_findings", "rc_linked")
# Scene ids per SQL statement (SQLite's bound-parameter limit is 999 on old builds).
CHUNK = 500


@dataclass(frozen=True)
class ItemCheck:
    """What a run found when it last verified one Plex item.

    `updated_at`: the item's `updatedAt` then (Plex's clock); `listing`, `pushed`:
    fingerprints of what the listing showed of our fields and of what we had pushed; `drift`:
    what differed (`[{"field", "plex", "note"}]`, empty when in step); `settled`: False when
    the item had changed within the second before the check, so a change in that same second
    could hide behind an equal `updatedAt` (the next run reads it again).
    """

    rating_key: int
    updated_at: int | None
    listing: str
    pushed: str
    drift: list[dict[str, str]]
    settled: bool


class ReconcileTables:
    """Queries of the reconciliation, on one store connection (see module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
        clock: Callable[[], float],
    ) -> None:
        self._conn = conn
        self._transaction = transaction
        self.clock = clock

    # ------------------------------------------------------------------ runs
    def start_run(self, trigger: str, fix: bool) -> int:
        """Record a run that starts now; returns its id. Old runs beyond `RUNS_KEPT` go."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO reconcile_runs (started_at, trigger, fix, state) "
                "VALUES (?, ?, ?, 'running')",
                (self.clock(), trigger, int(fix)),
            )
            conn.execute(
                "DELETE FROM reconcile_runs WHERE id NOT IN "
                "(SELECT id FROM reconcile_runs ORDER BY id DESC LIMIT ?)",
                (RUNS_KEPT,),
            )
        return int(cursor.lastrowid or 0)

    def finish_run(
        self, run_id: int, state: str, results: dict[str, int], report: dict[str, Any]
    ) -> None:
        """Record how a run ended: `state` done | failed | interrupted, counts by class and
        the whole report (JSON)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE reconcile_runs SET finished_at = ?, state = ?, results = ?, report = ? "
                "WHERE id = ?",
                (
                    self.clock(),
                    state,
                    json.dumps(results, sort_keys=True),
                    json.dumps(report, ensure_ascii=False, default=str),
                    run_id,
                ),
            )

    def runs(self, limit: int = 10, *, finished: bool = False) -> list[dict[str, Any]]:
        """The newest runs first: ``{"id", "started_at", "finished_at", "trigger", "fix",
        "state", "results", "report"}`` (`finished`: only runs that ended)."""
        where = "WHERE finished_at IS NOT NULL " if finished else ""
        rows = self._conn.execute(
            f"SELECT * FROM reconcile_runs {where}ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_run(row) for row in rows]

    def last_run(self) -> dict[str, Any] | None:
        """The newest run that ended, or None."""
        runs = self.runs(1, finished=True)
        return runs[0] if runs else None

    def newest_run(self) -> dict[str, Any] | None:
        """The newest run whatever its state (one still running, or whose process died while
        it ran, is "running"), or None."""
        runs = self.runs(1)
        return runs[0] if runs else None

    def interrupt_abandoned(self, before_id: int) -> int:
        """Record whole-library runs older than `before_id` that never recorded their end as
        interrupted (their process was stopped or killed: only the holder of the reconcile
        lock calls this; the short runs after an outage take no lock). Returns how many."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE reconcile_runs SET state = 'interrupted', finished_at = COALESCE("
                "finished_at, started_at) WHERE state = 'running' AND trigger != 'outage' "
                "AND id < ?",
                (before_id,),
            )
        return cursor.rowcount

    def last_started(self, triggers: Sequence[str]) -> dict[str, Any] | None:
        """The newest run started by one of these triggers (ended or not), or None."""
        marks = ",".join("?" * len(triggers))
        row = self._conn.execute(
            f"SELECT * FROM reconcile_runs WHERE trigger IN ({marks}) ORDER BY id DESC LIMIT 1",
            tuple(triggers),
        ).fetchone()
        return _run(row) if row else None

    # ------------------------------------------------------------------ item checks
    def checks(self, rating_keys: Iterable[int]) -> dict[int, ItemCheck]:
        """The last check of each of these items (absent: never checked)."""
        found: dict[int, ItemCheck] = {}
        for chunk in _chunks(list(rating_keys)):
            rows = self._conn.execute(
                f"SELECT * FROM plex_checks WHERE rating_key IN ({_marks(chunk)})", chunk
            )
            for row in rows:
                found[row["rating_key"]] = ItemCheck(
                    row["rating_key"],
                    row["updated_at"],
                    row["listing"],
                    row["pushed"],
                    json.loads(row["drift"] or "[]"),
                    bool(row["settled"]),
                )
        return found

    def save_checks(self, checks: Iterable[ItemCheck]) -> None:
        """Record what a run found for these items (one transaction)."""
        now = self.clock()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO plex_checks (rating_key, updated_at, listing, pushed, "
                "drift, settled, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.rating_key,
                        c.updated_at,
                        c.listing,
                        c.pushed,
                        json.dumps(c.drift, ensure_ascii=False),
                        int(c.settled),
                        now,
                    )
                    for c in checks
                ],
            )

    def prune_checks(self) -> int:
        """Forget the checks of items no scene is linked to any more; returns how many."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM plex_checks WHERE rating_key NOT IN (SELECT rating_key FROM links)"
            )
        return cursor.rowcount

    def forget_checks(self, rating_keys: Iterable[int]) -> None:
        """Forget the checks of these items (gone from Plex, or about to be rewritten)."""
        keys = list(rating_keys)
        with self._transaction() as conn:
            for chunk in _chunks(keys):
                conn.execute(
                    f"DELETE FROM plex_checks WHERE rating_key IN ({_marks(chunk)})", chunk
                )

    def forget_other_sections(self, section_ids: Sequence[int]) -> int:
        """Drop from the Plex index the items of libraries no longer configured (the setting
        `plex_library` changed): matching must not find a scene in a library it no longer
        syncs into. Returns how many items went."""
        keep = list(section_ids)
        marks = _marks(keep) if keep else "NULL"
        with self._transaction() as conn:
            cursor = conn.execute(f"DELETE FROM plex_items WHERE section_id NOT IN ({marks})", keep)
            conn.execute(f"DELETE FROM plex_index WHERE section_id NOT IN ({marks})", keep)
        return cursor.rowcount

    # ------------------------------------------------------------------ links and jobs
    def links_of_items(self, rating_keys: Iterable[int]) -> dict[int, list[Link]]:
        """The links to each of these Plex items (unlinked items are absent)."""
        from stash2plex.store.db import _link

        found: dict[int, list[Link]] = {}
        for chunk in _chunks(list(rating_keys)):
            rows = self._conn.execute(
                f"SELECT * FROM links WHERE rating_key IN ({_marks(chunk)}) ORDER BY scene_id",
                chunk,
            )
            for row in rows:
                found.setdefault(row["rating_key"], []).append(_link(row))
        return found

    def jobs_of(self, scene_ids: Iterable[int]) -> dict[int, Job]:
        """The job of each of these scenes (scenes without one are absent)."""
        from stash2plex.store.db import _job

        found: dict[int, Job] = {}
        for chunk in _chunks(list(scene_ids)):
            rows = self._conn.execute(
                f"SELECT * FROM jobs WHERE scene_id IN ({_marks(chunk)})", chunk
            )
            for row in rows:
                found[row["scene_id"]] = _job(row)
        return found

    def forget_pushed(self, scene_id: int, rating_key: int, keys: Iterable[str]) -> None:
        """Forget that these fields were pushed to this item, so the scene's next sync writes
        them again (a drift repair); the item's check goes too (it is about to change)."""
        gone = set(keys)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT fingerprints FROM links WHERE scene_id = ? AND rating_key = ?",
                (scene_id, rating_key),
            ).fetchone()
            if row is not None:
                prints = {k: v for k, v in link_json.decode(row[0]).items() if k not in gone}
                conn.execute(
                    "UPDATE links SET fingerprints = ? WHERE scene_id = ? AND rating_key = ?",
                    (link_json.encode(prints), scene_id, rating_key),
                )
            conn.execute("DELETE FROM plex_checks WHERE rating_key = ?", (rating_key,))

    def drop_links(self, pairs: Iterable[tuple[int, int | None]]) -> None:
        """Drop these (scene id, ratingKey) links; a ratingKey None drops all the scene's
        links and what it showed (a scene deleted in Stash). One transaction."""
        with self._transaction() as conn:
            for scene_id, rating_key in pairs:
                if rating_key is None:
                    conn.execute("DELETE FROM links WHERE scene_id = ?", (scene_id,))
                    conn.execute("DELETE FROM link_entities WHERE scene_id = ?", (scene_id,))
                else:
                    conn.execute(
                        "DELETE FROM links WHERE scene_id = ? AND rating_key = ?",
                        (scene_id, rating_key),
                    )
                    conn.execute("DELETE FROM plex_checks WHERE rating_key = ?", (rating_key,))

    def hand_over(self, scene_id: int, rating_key: int, to_scene: int) -> bool:
        """The link of a scene gone from Stash to an item that another scene's files are in
        now (a merge): the new scene takes over what Stash2Plex added there (collections,
        labels), so its first push removes what it does not want; nothing counts as pushed.
        False when that scene already has its own link to the item."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT section_id, plex_path, owned FROM links WHERE scene_id = ? "
                "AND rating_key = ?",
                (scene_id, rating_key),
            ).fetchone()
            taken = conn.execute(
                "SELECT 1 FROM links WHERE scene_id = ? AND rating_key = ?",
                (to_scene, rating_key),
            ).fetchone()
            if row is None or taken is not None:
                return False
            owned = link_json.decode(row["owned"])
            kept = {k: v for k, v in owned.items() if k in OWNED_BY_ITEM}
            conn.execute(
                "INSERT INTO links (scene_id, rating_key, section_id, plex_path, fingerprints, "
                "synced_at, owned, position) VALUES (?, ?, ?, ?, '{}', ?, ?, 1)",
                (
                    to_scene,
                    rating_key,
                    row["section_id"],
                    row["plex_path"],
                    self.clock(),
                    link_json.encode(kept),
                ),
            )
        return True

    # ------------------------------------------------------------------ outages
    def outages_to_reconcile(self, since: float | None = None) -> list[dict[str, Any]]:
        """Ended outages not reconciled yet (those that ended after `since`), oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM outages WHERE ended_at IS NOT NULL AND reconciled IS NULL "
            "AND ended_at >= ? ORDER BY started_at",
            (since if since is not None else float("-inf"),),
        ).fetchall()
        return [dict(row) for row in rows]

    def mark_outage_reconciled(self, outage_id: int, summary: dict[str, Any]) -> None:
        """Record what the reconcile after an outage did (shown by the outage report)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE outages SET reconciled = ? WHERE id = ?",
                (json.dumps(summary, sort_keys=True), outage_id),
            )

    # ------------------------------------------------------------------ a run's scratch
    def begin_scratch(self) -> None:
        """Create (empty) the scratch tables of a run on this connection."""
        self.end_scratch()
        self._conn.executescript(
            """
            CREATE TEMP TABLE rc_items (rating_key INTEGER PRIMARY KEY, section_id INTEGER);
            CREATE TEMP TABLE rc_scenes (scene_id INTEGER PRIMARY KEY);
            CREATE TEMP TABLE rc_claims (rating_key INTEGER, scene_id INTEGER,
                                         PRIMARY KEY (rating_key, scene_id));
            CREATE TEMP TABLE rc_findings (scene_id INTEGER, kind TEXT, rating_key INTEGER,
                                           fields TEXT, detail TEXT, action TEXT);
            CREATE INDEX temp.rc_findings_kind ON rc_findings (kind, scene_id);
            CREATE TEMP TABLE rc_linked (scene_id INTEGER PRIMARY KEY);
            """
        )

    def end_scratch(self) -> None:
        """Drop the scratch tables (they also go when the connection closes)."""
        self._conn.executescript(
            "".join(f"DROP TABLE IF EXISTS temp.{table};" for table in SCRATCH_TABLES)
        )

    def saw_items(self, section_id: int, rating_keys: Iterable[int]) -> None:
        """Items a run's listing showed."""
        self._conn.executemany(
            "INSERT OR IGNORE INTO temp.rc_items (rating_key, section_id) VALUES (?, ?)",
            [(key, section_id) for key in rating_keys],
        )

    def unseen_linked(self) -> list[int]:
        """Linked items the run's listing did not show (gone, or moved past a page edge)."""
        rows = self._conn.execute(
            "SELECT DISTINCT rating_key FROM links WHERE rating_key NOT IN "
            "(SELECT rating_key FROM temp.rc_items) ORDER BY rating_key"
        ).fetchall()
        return [row[0] for row in rows]

    def saw_scenes(self, scene_ids: Iterable[int]) -> None:
        """Scenes a run's walk of Stash returned."""
        self._conn.executemany(
            "INSERT OR IGNORE INTO temp.rc_scenes (scene_id) VALUES (?)",
            [(scene_id,) for scene_id in scene_ids],
        )

    def note_linked_scenes(self) -> int:
        """Remember the scenes linked now, before a run walks Stash: only they can be orphans
        (a scene linked while the walk runs was created or synced meanwhile, and the walk may
        have passed its id already). Returns how many."""
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO temp.rc_linked (scene_id) SELECT DISTINCT scene_id FROM links"
        )
        return cursor.rowcount

    def unseen_linked_scenes(self) -> list[int]:
        """Scenes linked when the walk of Stash began (`note_linked_scenes`), still linked,
        that the walk did not return: deleted or merged away in Stash. Stash's ids only grow,
        and the walk goes by id to the end, so a scene that existed then and exists now was
        returned, whatever its id (the newest included, and every one when Stash returned no
        scene at all)."""
        rows = self._conn.execute(
            "SELECT DISTINCT scene_id FROM links WHERE scene_id IN "
            "(SELECT scene_id FROM temp.rc_linked) AND scene_id NOT IN "
            "(SELECT scene_id FROM temp.rc_scenes) ORDER BY scene_id"
        ).fetchall()
        return [row[0] for row in rows]

    def claimants(self, rating_keys: Iterable[int]) -> dict[int, list[int]]:
        """The scenes whose files a run found in each of these items."""
        found: dict[int, list[int]] = {}
        for chunk in _chunks(list(rating_keys)):
            rows = self._conn.execute(
                f"SELECT rating_key, scene_id FROM temp.rc_claims WHERE rating_key IN "
                f"({_marks(chunk)}) ORDER BY scene_id",
                chunk,
            )
            for rating_key, scene_id in rows:
                found.setdefault(rating_key, []).append(scene_id)
        return found

    def claim(self, claims: Iterable[tuple[int, int]]) -> None:
        """(ratingKey, scene id): the scene's files are in that item."""
        self._conn.executemany(
            "INSERT OR IGNORE INTO temp.rc_claims (rating_key, scene_id) VALUES (?, ?)",
            list(claims),
        )

    def shared_items(self) -> dict[int, list[int]]:
        """Items claimed by several scenes (conflicts): ratingKey -> scene ids."""
        rows = self._conn.execute(
            "SELECT rating_key, scene_id FROM temp.rc_claims WHERE rating_key IN "
            "(SELECT rating_key FROM temp.rc_claims GROUP BY rating_key "
            "HAVING COUNT(*) > 1) ORDER BY rating_key, scene_id"
        ).fetchall()
        shared: dict[int, list[int]] = {}
        for rating_key, scene_id in rows:
            shared.setdefault(rating_key, []).append(scene_id)
        return shared

    def add_findings(self, findings: Iterable[tuple[int, str, int | None, str, str, str]]) -> None:
        """(scene id, kind, ratingKey, fields JSON, detail, action) rows of a run."""
        self._conn.executemany(
            "INSERT INTO temp.rc_findings (scene_id, kind, rating_key, fields, detail, action) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            list(findings),
        )

    def drop_findings(self, scene_ids: Iterable[int]) -> None:
        """Forget what was found for these scenes (a conflict replaces it)."""
        for chunk in _chunks(list(scene_ids)):
            self._conn.execute(
                f"DELETE FROM temp.rc_findings WHERE scene_id IN ({_marks(chunk)})", chunk
            )

    def finding_counts(self) -> dict[str, int]:
        """Scenes per kind of finding."""
        rows = self._conn.execute(
            "SELECT kind, COUNT(DISTINCT scene_id) FROM temp.rc_findings GROUP BY kind"
        ).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def scenes_with_findings(
        self,
        exclude: Sequence[str] = (),
        *,
        only: Sequence[str] = (),
        exclude_actions: Sequence[str] = (),
    ) -> int:
        """Scenes with at least one finding (not counting the kinds in `exclude`, only the
        kinds in `only` when given, not counting findings whose action is in
        `exclude_actions`)."""
        clauses: list[str] = []
        values: list[str] = []
        for column, found, negate in (
            ("kind", exclude, True),
            ("kind", only, False),
            ("action", exclude_actions, True),
        ):
            if found:
                clauses.append(f"{column} {'NOT ' if negate else ''}IN ({_marks(found)})")
                values.extend(found)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        row = self._conn.execute(
            f"SELECT COUNT(DISTINCT scene_id) FROM temp.rc_findings {where}", tuple(values)
        )
        return int(row.fetchone()[0])

    def action_counts(self) -> dict[str, int]:
        """Scenes per repair action."""
        rows = self._conn.execute(
            "SELECT action, COUNT(DISTINCT scene_id) FROM temp.rc_findings GROUP BY action"
        ).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def samples(self, kind: str, limit: int) -> list[dict[str, Any]]:
        """The first findings of one kind by scene id: ``{"scene_id", "kind", "rating_key",
        "fields", "detail", "action"}``."""
        rows = self._conn.execute(
            "SELECT * FROM temp.rc_findings WHERE kind = ? ORDER BY scene_id, rating_key LIMIT ?",
            (kind, limit),
        ).fetchall()
        return [_finding(row) for row in rows]

    def findings_after(self, row_id: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The next findings after row `row_id`, as (row id, finding): a run's repairs walk
        them a page at a time, however many there are."""
        rows = self._conn.execute(
            "SELECT rowid AS row_id, * FROM temp.rc_findings WHERE rowid > ? ORDER BY rowid "
            "LIMIT ?",
            (row_id, limit),
        ).fetchall()
        return [(row["row_id"], _finding(row)) for row in rows]


def _finding(row: sqlite3.Row) -> dict[str, Any]:
    found = {key: row[key] for key in ("scene_id", "kind", "rating_key", "detail", "action")}
    found["fields"] = json.loads(row["fields"] or "[]")
    return found


def outage_reconciled(outage: dict[str, Any]) -> dict[str, Any] | None:
    """What the reconcile after an outage did (`reconcile.run.reconcile_outage`), from its
    row: ``{"changed_in_stash", "already_queued", "failed_jobs_requeued", "queued", "at"}``,
    or None until then."""
    try:
        found = json.loads(outage.get("reconciled") or "null")
    except ValueError:
        return None
    return found if isinstance(found, dict) and "queued" in found else None


def _run(row: sqlite3.Row) -> dict[str, Any]:
    found = dict(row)
    found["fix"] = bool(found["fix"])
    found["results"] = json.loads(found["results"] or "{}")
    found["report"] = json.loads(found["report"] or "{}")
    return found


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _chunks(values: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
