"""One reconcile: every Stash scene against the Plex library, classified, optionally repaired.

Two walks, each a page at a time (memory bounded by the page, never by the library):

1. Plex: the paged listing of each configured library, ordered by `addedAt`. Each page
   refreshes the stored index (so matching below sees Plex as it is now) and is compared with
   what the last run recorded of each linked item: an item whose `updatedAt`, listing view and
   push record are all unchanged since a settled check keeps that check's verdict without a
   read; the others are read in full, 100 per request, and their drift recorded
   (`sync.drift`). Linked items the listing did not show are read too: gone, or just moved
   across a page edge. Requests therefore grow with what changed, not with the library.
2. Stash: every scene with the sync's fields, by id (`id > last` paging, which neither skips
   nor repeats a scene while others are added or deleted), matched against the fresh index and
   classified (`reconcile.classify`). No Plex request is made here.

Then scenes linked when the walk began that it did not return are orphans (whatever their
ids), items claimed by several scenes are conflicts, and with `fix` the repairs go through the
normal queue: scenes are queued, the push records of drifted fields are forgotten first (so
the sync writes them again), links to gone items or deleted scenes are dropped. The run, its
counts and its report are stored (`store.reconcile`); the Plex page and `stash2plex reconcile`
show the last one.

Only one reconcile runs at a time per data directory (a file lock); another one reports busy.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

from stash2plex.clients.http import Exchange
from stash2plex.clients.plex import DETAIL_BATCH, PlexItem
from stash2plex.engine.context import Context
from stash2plex.engine.worker_lock import held_if_free
from stash2plex.errors import ConfigError, ServerDownError, SyncError, TransientError, redact
from stash2plex.reconcile import classify as kinds
from stash2plex.reconcile.classify import Finding
from stash2plex.reconcile.recent import scenes_updated
from stash2plex.records import Link, ListedItem
from stash2plex.settings.config import setting_label
from stash2plex.settings.sources import with_source
from stash2plex.store.db import Store
from stash2plex.store.reconcile import ItemCheck, ReconcileTables
from stash2plex.store.schema import INDEX_REFRESHED_KEY, SECTIONS_KEY
from stash2plex.sync.drift import Drift, item_drift, listing_print, pushed_print, synced_keys
from stash2plex.sync.matching import MAPPED_PATH, match_scene
from stash2plex.sync.metadata import fingerprint
from stash2plex.sync.syncer import PlexIndex, describe_library_type
from stash2plex.sync.tag_tree import TagTree
from stash2plex.words import agree, plural

log = logging.getLogger("stash2plex.reconcile")
_T = TypeVar("_T")

LOCK_FILENAME = "reconcile.lock"
WITHOUT_FILE = "without_file"  # a row of the results: scenes Stash has no file for
STASH_PAGE = 500
SAMPLES = 5
# An item changed within this many seconds before Plex answered may change again within the
# same second of `updatedAt` (Plex's resolution): its check is not trusted the next time.
SETTLE_SECONDS = 2
REPAIR_PAGE = 500
IN_SYNC = "in_sync"
# Settings that decide which Plex item a scene is and what is pushed to it: a check made
# under other values of these is no verdict any more (the item is read again).
CHECK_SETTINGS = (
    "plex_url",
    "plex_library",
    "path_map",
    "skip_title",
    "skip_summary",
    "skip_date",
    "skip_studio",
    "skip_performers",
    "skip_tags",
    "skip_collections",
    "skip_poster",
    "skip_art",
    "sync_rating",
    "sync_rating_both_ways",
    "collection_parent_studio",
    "collection_groups",
    "tag_include",
    "tag_exclude",
    "label_tags",
    "sync_empty_scenes",
    "preserve_plex_edits",
)

Progress = Callable[[float], None]


class Stopped(Exception):
    """The worker was asked to stop while a reconcile ran."""


@dataclass
class ReconcileReport:
    """What one reconcile found and did. Counts are scenes; no secrets.

    `results`: scenes per class (`reconcile.classify.KINDS`), `in_sync` and `without_file`:
    with the classes they add up to `scenes`, but for a scene found in two classes (stale and
    drifted) and the orphan links (scenes Stash no longer has); `samples`: the first findings
    of each class; `actions`: scenes per repair (`classify.ACTION_TEXT`), applied when
    `repaired`; `attention`: scenes a repair cannot bring back (not in Plex, ambiguous,
    conflicts); `plex_requests`: {"total", "listing", "detail", "other"}.
    """

    trigger: str
    fix: bool
    started_at: float
    finished_at: float | None = None
    state: str = "running"  # done | failed | interrupted | busy
    scenes: int = 0
    without_file: int = 0
    items_listed: int = 0
    items_read: int = 0
    items_gone: int = 0
    results: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    repaired: bool = False
    attention: int = 0
    matched_by_name: int = 0
    notes: list[str] = field(default_factory=list)
    queued: int = 0
    links_dropped: int = 0
    plex_requests: dict[str, int] = field(default_factory=dict)
    stash_requests: int = 0
    seconds: float = 0.0
    error: str = ""
    run_id: int = 0

    @property
    def differences(self) -> int:
        """Scenes with at least one finding (a scene stale and drifted counts once)."""
        return sum(
            n
            for kind, n in self.results.items()
            if kind not in (IN_SYNC, WITHOUT_FILE, *kinds.SETTLED_KINDS)
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary()
        return data

    def summary(self) -> str:
        """One line for a log or a task result."""
        if self.state == "busy":
            return self.error or "another reconcile is running; nothing done"
        if self.state == "failed":
            return f"reconcile failed: {self.error}"
        found = ", ".join(
            f"{n} {KIND_WORDS.get(kind, kind.replace('_', ' '))}"
            for kind, n in self.results.items()
            if n and kind not in (IN_SYNC, WITHOUT_FILE, kinds.ORPHAN_LINK)
        )
        without = self.results.get(WITHOUT_FILE, 0)
        orphans = self.results.get(kinds.ORPHAN_LINK, 0)
        line = (
            f"{self.scenes} scenes: {self.results.get(IN_SYNC, 0)} in sync"
            + (f", {found}" if found else "")
            + (f", {without} without a file" if without else "")
            + (f"; {orphans} deleted scenes still linked" if orphans else "")
            + ("" if self.differences else "; nothing to repair")
            + f"; {self.plex_requests.get('total', 0)} Plex requests, {self.seconds} s"
        )
        if self.state == "interrupted":
            line += " (interrupted: nothing repaired)"
        elif self.repaired:
            line += f"; repaired: {self.queued} scenes queued, {self.links_dropped} links dropped"
        return line


def reconcile_lock(store: Store) -> contextlib.AbstractContextManager[bool]:
    """Hold the reconcile lock if it is free; yields False (without waiting) when it is not."""
    return held_if_free(store.path.parent / LOCK_FILENAME)


# A class as a table row or a summary names it.
KIND_WORDS = {
    IN_SYNC: "in sync",
    WITHOUT_FILE: "without a file",
    kinds.KEPT: "kept (preserve_plex_edits)",
    kinds.ORPHAN_LINK: "orphan link (scene deleted)",
}

TRIGGER_WORDS = {
    "schedule": "the schedule (reconcile_interval)",
    "task": "a Stash task",
    "command": "the command line",
    "outage": "the end of a Plex outage",
}


def reconcile_running(store: Store) -> bool:
    """Whether a reconcile holds the lock now (in any process of this data directory)."""
    with reconcile_lock(store) as locked:
        return not locked


def busy_sentence(store: Store) -> str:
    """ "another reconcile is running (started <local time> by <trigger>)"; the time and the
    trigger are left out when that run has not recorded itself yet."""
    run = store.reconciliation().newest_run()
    if run is None or run["state"] != "running":
        return "another reconcile is running; try again when it is done"
    return (
        f"another reconcile is running (started {_local(run['started_at'])} by "
        f"{TRIGGER_WORDS.get(run['trigger'], run['trigger'])}); try again when it is done"
    )


def last_run(store: Store) -> dict[str, Any] | None:
    """The newest run, as the store recorded it, with `trigger_text` and `started_text`; a run
    recorded as running whose process is gone (Stop pressed, the process killed: the lock is
    free) is "interrupted", with a summary saying so. None when no run was recorded."""
    run = store.reconciliation().newest_run()
    if run is None:
        return None
    report = dict(run.get("report") or {})
    if run["state"] == "running" and run["trigger"] != "outage" and not reconcile_running(store):
        run["state"] = "interrupted"
        report["summary"] = (
            "interrupted: its process stopped before the run ended (Stop pressed, or the "
            "process was killed); nothing was repaired by it. Run it again."
        )
    elif run["state"] == "running":
        report["summary"] = "still running"
    elif run["state"] == "failed" and not report.get("summary"):
        report["summary"] = f"reconcile failed: {report.get('error') or 'no reason recorded'}"
    report.setdefault("state", run["state"])
    report["state"] = run["state"]
    run["report"] = report
    run["trigger_text"] = TRIGGER_WORDS.get(run["trigger"], run["trigger"])
    run["started_text"] = _local(run["started_at"])
    return run


def _local(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(moment)))


def run_reconcile(
    context: Context,
    *,
    fix: bool = False,
    trigger: str = "task",
    clock: Callable[[], float] = time.time,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ReconcileReport:
    """Reconcile the whole library (module docstring); with `fix`, queue the repairs.

    Raises SyncError when Stash or Plex fails (the run is recorded as failed first); returns a
    report with state "interrupted" when `should_stop` said so, "busy" when another reconcile
    holds the lock.
    """
    report = ReconcileReport(trigger, fix, clock())
    with reconcile_lock(context.store) as locked:
        if not locked:
            report.state = "busy"
            report.error = busy_sentence(context.store)
            return report
        tables = context.store.reconciliation()
        report.run_id = tables.start_run(trigger, fix)
        tables.interrupt_abandoned(report.run_id)
        run = _Run(context, tables, report, clock, progress, should_stop)
        try:
            run.run()
            report.state = "done"
        except Stopped:
            report.state = "interrupted"
        except SyncError as exc:
            explain_failure(exc, context)
            report.state = "failed"
            report.error = redact(exc.message, context.config.secrets())
            raise
        except Exception as exc:  # a bug of ours, or the store: never recorded as done
            report.state = "failed"
            report.error = redact(f"{type(exc).__name__}: {exc}", context.config.secrets())
            raise
        finally:
            run.close()
            report.finished_at = clock()
            report.seconds = round(report.finished_at - report.started_at, 1)
            if report.state == "running":  # left by Ctrl-C (KeyboardInterrupt) or a signal
                report.state = "interrupted"
            tables.finish_run(report.run_id, report.state, report.results, report.as_dict())
    return report


def explain_failure(error: SyncError, context: Context) -> None:
    """Say in `error.message` what a person needs when a run fails: for a setting or a
    credential, where its value came from (`settings.sources.with_source`, as health and sync
    say it); for a server that failed or could not be reached, that the run stopped having
    changed nothing (repairs are queued only after both walks, Plex is only read) and when it
    runs again (a failed run is retried sooner by the schedule, `reconcile.timer`)."""
    from stash2plex.reconcile.timer import INTERVALS, RETRY_AFTER_FAILURE_SECONDS

    message = with_source(error, context.sources)
    if isinstance(error, (TransientError, ServerDownError)):
        interval = INTERVALS.get(context.config.reconcile_interval)
        again = "run it again later"
        if interval is not None:
            minutes = round(min(interval, RETRY_AFTER_FAILURE_SECONDS) / 60)
            again = (
                f"the schedule (reconcile_interval) runs it again in {minutes} minutes, or {again}"
            )
        message += f"; the reconcile stopped and changed nothing: {again}"
        if error.server == "plex" and (error.status or 0) >= 500:
            message += (
                "; if Plex keeps failing, its logs say why (Plex Web: Settings > "
                "Troubleshooting > Console or Download logs)"
            )
    error.message = message
    error.args = (message,)


class _Run:
    def __init__(
        self,
        context: Context,
        tables: ReconcileTables,
        report: ReconcileReport,
        clock: Callable[[], float],
        progress: Progress | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.context = context
        self.store = context.store
        self.config = context.config
        self.plex = context.plex
        self.stash = context.stash
        self.tables = tables
        self.report = report
        self.clock = clock
        self.progress = progress or (lambda fraction: None)
        self.should_stop = should_stop or (lambda: False)
        self.keys = synced_keys(self.config)
        self.settings_print = settings_print(self.config)
        self.gone: set[int] = set()
        # Per thread (the listing is read ahead on its own thread): the last `Date` Plex
        # sent and how many answers came.
        self.seen = threading.local()
        self.requests = {"listing": 0, "detail": 0}
        self.requests_before = self.plex.request_count
        self.sections: list[int] = []
        # Paths for the path_map hint: one found by file name only, a few not found at all.
        self.name_only_paths: list[str] = []
        self.mapped = 0  # scenes found under their mapped path
        self.unmatched_paths: list[str] = []
        # Changed items wait here until a whole request's worth can be read (bounded).
        self.to_read: list[tuple[ListedItem, Link, float]] = []
        self.plex.transport.observers.append(self._server_date)
        tables.begin_scratch()

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.plex.transport.observers.remove(self._server_date)
        total = self.plex.request_count - self.requests_before
        self.report.plex_requests = {
            "total": total,
            **self.requests,
            "other": total - sum(self.requests.values()),
        }
        with contextlib.suppress(Exception):
            self.tables.end_scratch()

    def _pushed(self, link: Link) -> str:
        """What a check records of the push and of the settings it was made under."""
        return fingerprint([pushed_print(link, self.keys), self.settings_print])

    def _server_date(self, response: Exchange) -> None:
        """Plex's own time from its `Date` header (`updatedAt` comes from the same clock), and
        the answers counted, for the thread that sent the request."""
        self.seen.answers = getattr(self.seen, "answers", 0) + 1
        value = response.headers.get("Date")
        if value:
            with contextlib.suppress(TypeError, ValueError):
                self.seen.date = email.utils.parsedate_to_datetime(value).timestamp()

    def _answers(self) -> int:
        return int(getattr(self.seen, "answers", 0))

    def _check_stop(self) -> None:
        if self.should_stop():
            raise Stopped

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        self.plex.connect()  # connect first, so the walk's counts are its own requests
        self.sections = PlexIndex(self.store, self.plex, self.config, self.clock).section_ids()
        self.progress(0.0)
        self._walk_plex()
        self._walk_stash()
        self._settle_findings()
        self._count()
        self._path_hint()
        if self.report.fix:
            self._repair()
        self.progress(1.0)

    # ------------------------------------------------------------------ Plex
    def _walk_plex(self) -> None:
        self.tables.forget_other_sections(self.sections)
        for section_id in self.sections:
            # The listing rebuilds the index as it goes (items it no longer shows leave it).
            try:
                self.store.replace_index(section_id, self._listed(section_id))
            except SyncError as exc:
                if exc.server != "plex" or exc.status != 404:
                    raise
                raise self._library_gone(section_id) from exc
        self._read_items(flush=True)
        self._check_unseen_linked()
        self.tables.prune_checks()
        now = self.clock()
        self.store.put_value(INDEX_REFRESHED_KEY, now)
        self.store.put_value("plex_index_full_at", now)

    def _library_gone(self, section_id: int) -> ConfigError:
        """A 404 on a library's listing: the library is gone (deleted in Plex, or deleted and
        added again under another key), no item. Plex is asked for its libraries again, which
        raises the ConfigError naming `plex_library` and the libraries Plex has when the one
        configured no longer exists; otherwise the error says the library went away."""
        cached = self.store.get_value(SECTIONS_KEY) or {}
        title = next(
            (s["title"] for s in cached.get("sections", []) if s["id"] == section_id), None
        )
        index = PlexIndex(self.store, self.plex, self.config, self.clock)
        index.sections(refresh=True)  # raises when the configured library is gone
        libraries = "; ".join(
            f"'{s.title}' ({describe_library_type(s.type)})" for s in self.plex.sections()
        )
        return ConfigError(
            f"Plex's library {f'{title!r} ' if title else ''}(section {section_id}) is gone "
            f"(404 Not Found on its listing); Plex's libraries now: {libraries}; check "
            f"{setting_label('plex_library')}, then run the reconcile again",
            setting="plex_library",
        )

    def _listing(self, section_id: int) -> Iterator[tuple[list[ListedItem], float]]:
        """Each page with the time Plex answered it (runs on the read-ahead thread)."""
        before = self._answers()
        try:
            for page in self.plex.listing_pages(section_id):
                yield page, getattr(self.seen, "date", None) or self.clock()
        finally:
            self.requests["listing"] += self._answers() - before

    def _listed(self, section_id: int) -> Iterator[list[ListedItem]]:
        """The listing's pages, each compared with the last checks before it is indexed; the
        next page is fetched while this one is handled."""
        expected = max(1, self.store.index_size())
        for page, now in read_ahead(self._listing(section_id)):
            self.tables.saw_items(section_id, [item.rating_key for item in page])
            self.report.items_listed += len(page)
            self._check_items(page, now)
            self.progress(min(0.3, 0.3 * self.report.items_listed / expected))
            self._check_stop()
            yield page

    def _check_items(self, page: list[ListedItem], now: float) -> None:
        """Compare a listing page with the last checks; read the items that changed."""
        keys = [item.rating_key for item in page]
        links = self.tables.links_of_items(keys)
        checks = self.tables.checks(keys)
        for item in page:
            item_links = links.get(item.rating_key) or []
            if len(item_links) != 1 or not item_links[0].fingerprints:
                continue  # unlinked, left alone, or shared by scenes (a conflict)
            link = item_links[0]
            check = checks.get(item.rating_key)
            if (
                check is not None
                and check.settled
                and check.updated_at == item.updated_at
                and check.listing == listing_print(item)
                and check.pushed == self._pushed(link)
            ):
                continue  # unchanged since a settled check: its verdict stands
            self.to_read.append((item, link, now))
        self._read_items()

    def _read_items(self, *, flush: bool = False) -> None:
        """Read the changed items waiting, a full request's worth at a time (all with
        `flush`), and record what each shows."""
        while self.to_read and (flush or len(self.to_read) >= DETAIL_BATCH):
            batch, self.to_read = self.to_read[:DETAIL_BATCH], self.to_read[DETAIL_BATCH:]
            self._read_batch(batch)

    def _read_batch(
        self,
        changed: list[tuple[ListedItem, Link, float]],
        details: dict[int, PlexItem] | None = None,
    ) -> None:
        """Read these items (unless `details` has them already) and record each one's check."""
        if details is None:
            before = self._answers()
            details = self.plex.items_detail([item.rating_key for item, _, _ in changed])
            self.requests["detail"] += self._answers() - before
        self.report.items_read += len(changed)
        checks = []
        for item, link, now in changed:
            detail = details.get(item.rating_key)
            if detail is None:  # deleted between the listing and the read
                self.gone.add(item.rating_key)
                continue
            drift = item_drift(detail, link, self.keys)
            stamp = item.updated_at if item.updated_at is not None else detail.updated_at
            checks.append(
                ItemCheck(
                    item.rating_key,
                    stamp,
                    listing_print(item) if item.fields else "",  # "" : read it again next time
                    self._pushed(link),
                    [d.as_dict() for d in drift],
                    stamp is not None and stamp <= now - SETTLE_SECONDS,
                )
            )
        self.tables.save_checks(checks)

    def _check_unseen_linked(self) -> None:
        """Linked items the listing did not show: read them (gone, or moved past a page)."""
        unseen = self.tables.unseen_linked()
        if not unseen:
            return
        before = self._answers()
        details = self.plex.items_detail(unseen)
        self.requests["detail"] += self._answers() - before
        gone = [key for key in unseen if key not in details]
        self.gone.update(gone)
        self.report.items_gone = len(self.gone)
        self.tables.forget_checks(gone)
        found = [item for key, item in details.items() if item.section_id in self.sections]
        if found:
            # Moved past a page edge while the listing was read: index them, check them with
            # what was just read (no listing view of them: the next run reads them again).
            self.store.add_to_index([item.as_listed() for item in found])
            links = self.tables.links_of_items([item.rating_key for item in found])
            now = getattr(self.seen, "date", None) or self.clock()
            changed = [
                (ListedItem(item.rating_key, item.section_id, ()), links[item.rating_key][0], now)
                for item in found
                if len(links.get(item.rating_key) or []) == 1
                and links[item.rating_key][0].fingerprints
            ]
            self._read_batch(changed, details)

    # ------------------------------------------------------------------ Stash
    def _walk_stash(self) -> None:
        config = self.config
        tree = None
        if config.tag_include or config.tag_exclude or config.label_tags:
            tree = TagTree(self.stash.tag_hierarchy())
            self.report.stash_requests += 1
        self.tables.note_linked_scenes()
        for total, scenes in read_ahead(self._scene_pages()):
            self._classify_page(scenes, tree)
            self.progress(0.3 + 0.6 * min(1.0, self.report.scenes / max(1, total)))
            self._check_stop()

    def _scene_pages(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Every scene by id, a page at a time, with the count of the first answer (runs on
        the read-ahead thread: only it talks to Stash meanwhile)."""
        last_id, total = 0, None
        while True:
            count, scenes = self.stash.find_scenes(
                page=1, per_page=STASH_PAGE, scene_filter=after_id(last_id), sort="id"
            )
            self.report.stash_requests += 1
            total = count if total is None else total
            if not scenes:
                return
            yield total, scenes
            if len(scenes) < STASH_PAGE:
                return
            last_id = int(scenes[-1]["id"])

    def _classify_page(self, scenes: list[dict[str, Any]], tree: TagTree | None) -> None:
        ids = [int(scene["id"]) for scene in scenes]
        self.tables.saw_scenes(ids)
        links = self.store.links_of_scenes(ids)
        jobs = self.tables.jobs_of(ids)
        checks = self.tables.checks({link.rating_key for ls in links.values() for link in ls})
        rules = self.config.path_map
        claims: list[tuple[int, int]] = []
        rows: list[Finding] = []
        for scene in scenes:
            scene_id = int(scene["id"])
            self.report.scenes += 1
            files = scene.get("files") or []
            if not files:
                self.report.without_file += 1
                continue
            store = self.store
            result = match_scene(files, rules, store.index_by_path, store.index_by_basename)
            claims += [(match.rating_key, scene_id) for match in result.matches]
            if any(m.rule == MAPPED_PATH for m in result.matches):
                self.mapped += 1
            elif result.matches:
                # Found by file name and size only: the path rules do not map this path.
                self.report.matched_by_name += 1
                self.name_only_paths = self.name_only_paths or [str(files[0].get("path"))]
            elif not result.matches and len(self.unmatched_paths) < SAMPLES:
                self.unmatched_paths.append(str(files[0].get("path")))
            scene_links = links.get(scene_id, [])
            drift: dict[int, list[Drift]] = {}
            for link in scene_links:
                check = checks.get(link.rating_key)
                if check and check.drift and check.pushed == self._pushed(link):
                    drift[link.rating_key] = [Drift(**d) for d in check.drift]
            rows += kinds.classify(
                scene,
                result,
                scene_links,
                gone=self.gone,
                drift=drift,
                job=jobs.get(scene_id),
                config=self.config,
                tree=tree,
            )
        self.tables.claim(claims)
        self.tables.add_findings(_rows(rows))

    # ------------------------------------------------------------------ afterwards
    def _settle_findings(self) -> None:
        """Orphans (linked scenes Stash no longer has) and conflicts (one item, several
        scenes): known only once every scene was seen."""
        orphans = self.tables.unseen_linked_scenes()
        if orphans:
            links = self.store.links_of_scenes(orphans)
            self.tables.add_findings(
                _rows(
                    kinds.orphan(scene_id, [link.rating_key for link in links.get(scene_id, [])])
                    for scene_id in orphans
                )
            )
        shared = self.tables.shared_items()
        in_conflict = sorted({scene_id for ids in shared.values() for scene_id in ids})
        if in_conflict:
            self.tables.drop_findings(in_conflict)
            rows = []
            seen: set[int] = set()
            for rating_key, scene_ids in sorted(shared.items()):
                for scene_id in scene_ids:
                    if scene_id not in seen:
                        seen.add(scene_id)
                        rows.append(kinds.conflict(scene_id, rating_key, scene_ids))
            self.tables.add_findings(_rows(rows))

    def _count(self) -> None:
        counts = self.tables.finding_counts()
        report = self.report
        with_files = report.scenes - report.without_file
        differing = self.tables.scenes_with_findings(exclude=(kinds.ORPHAN_LINK,))
        report.results = {IN_SYNC: with_files - differing}
        report.results.update({kind: counts.get(kind, 0) for kind in kinds.KINDS})
        report.results[WITHOUT_FILE] = report.without_file
        report.attention = self.tables.scenes_with_findings(
            only=kinds.ATTENTION_KINDS, exclude_actions=(kinds.NOTHING,)
        )
        report.samples = {
            kind: self.tables.samples(kind, SAMPLES) for kind in kinds.KINDS if counts.get(kind)
        }
        report.actions = self.tables.action_counts()
        report.items_gone = len(self.gone)

    def _path_hint(self) -> None:
        """What diagnose says about `path_map` when the paths of this run's scenes are not
        mapped onto Plex's: a scene found by file name only, or not found at all."""
        from stash2plex.operations.diagnose import _suggest_rule  # one rule-finder for both
        from stash2plex.sync.pathmap import map_path

        # Scenes found under their mapped paths prove the rules right: the others are then
        # just not in Plex (yet), and a rule guessed from a file name elsewhere would mislead.
        paths = self.name_only_paths + ([] if self.mapped else self.unmatched_paths)
        if not paths:
            return
        rule = _suggest_rule(paths, self.store)
        by_name = self.report.matched_by_name
        if rule is None and not by_name:
            return  # not found, and no rule would find them: Plex may not have them yet
        example = paths[0]
        head = (
            f"{plural(by_name, 'scene')} matched {agree(by_name, 'its', 'their')} Plex item "
            "by file name and size only"
            if by_name
            else "scenes are not found in Plex under their mapped paths"
        )
        hint = (
            f"{head}: path_map does not map Stash's paths onto Plex's (for example {example} "
            f"was looked for as {map_path(example, self.config.path_map)})"
        )
        hint += f"; set path_map to '{rule}'" if rule else "; check path_map"
        self.report.notes.append(hint)

    def _repair(self) -> None:
        """Queue the repairs (only what `classify.REPAIRS` names), a page at a time; the links
        of deleted scenes go first, so a scene that took over their items (a merge) finds what
        they left there before it is pushed."""
        queued: set[int] = set()
        for orphans in (True, False):
            self._repair_pass(orphans, queued)
        self.report.queued = len(queued)
        self.report.repaired = True

    def _repair_pass(self, orphans: bool, queued: set[int]) -> None:
        row_id = 0
        while True:
            found = self.tables.findings_after(row_id, REPAIR_PAGE)
            if not found:
                break
            row_id = found[-1][0]
            batch = [(i, f) for i, f in found if (f["action"] == kinds.DROP) == orphans]
            if orphans:
                self._drop_orphans([f["scene_id"] for _, f in batch])
                continue
            to_queue: list[int] = []
            drops: list[tuple[int, int | None]] = []
            relink = [f["scene_id"] for _, f in batch if f["action"] == kinds.RELINK]
            links = self.store.links_of_scenes(relink) if relink else {}
            for _, finding in batch:
                scene_id, action = finding["scene_id"], finding["action"]
                if action == kinds.QUEUE:
                    to_queue.append(scene_id)
                elif action == kinds.REWRITE:
                    self.tables.forget_pushed(scene_id, finding["rating_key"], finding["fields"])
                    to_queue.append(scene_id)
                elif action == kinds.RELINK:
                    drops += [
                        (scene_id, link.rating_key)
                        for link in links.get(scene_id, [])
                        if link.rating_key in self.gone
                    ]
                    to_queue.append(scene_id)
            if drops:
                self.tables.drop_links(drops)
                self.report.links_dropped += len(drops)
            fresh = [scene_id for scene_id in dict.fromkeys(to_queue) if scene_id not in queued]
            if fresh:
                self.store.enqueue(fresh, source="reconcile")
                queued.update(fresh)

    def _drop_orphans(self, scene_ids: list[int]) -> None:
        """Forget the links of scenes Stash no longer has. An item whose files another scene
        holds now (the scenes were merged) is handed to that scene first."""
        if not scene_ids:
            return
        links = self.store.links_of_scenes(scene_ids)
        keys = {link.rating_key for found in links.values() for link in found}
        claimants = self.tables.claimants(keys)
        for found in links.values():
            for link in found:
                for heir in claimants.get(link.rating_key, [])[:1]:
                    self.tables.hand_over(link.scene_id, link.rating_key, heir)
        self.tables.drop_links([(scene_id, None) for scene_id in scene_ids])
        self.report.links_dropped += sum(len(found) for found in links.values())


def settings_print(config: Any) -> str:
    """A fingerprint of the settings in `CHECK_SETTINGS` (path rules as their text)."""
    values = []
    for key in CHECK_SETTINGS:
        value = getattr(config, key, None)
        if key == "path_map":
            value = [f"{rule.stash_prefix} => {rule.plex_prefix}" for rule in value or ()]
        values.append([key, value if isinstance(value, (str, int, float, bool)) else repr(value)])
    return fingerprint(values)


def read_ahead(pages: Iterator[_T]) -> Iterator[_T]:
    """Yield what `pages` yields, with the next one fetched on a thread while the caller
    handles this one: the walk then waits on a server only when the server is slower than
    the handling. An error raised while fetching is raised here; when the caller stops early,
    the thread stops at its next page."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(kind: str, value: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                box.put((kind, value), timeout=0.1)
                return True
        return False

    def fetch() -> None:
        try:
            for page in pages:
                if not hand_over("page", page):
                    return
            hand_over("end", None)
        except BaseException as exc:  # handed to the caller's thread
            hand_over("error", exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=fetch, name="stash2plex-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def after_id(scene_id: int) -> dict[str, Any]:
    """The scene filter of the walk's next page: ids after the last one seen."""
    return {"id": {"value": scene_id, "modifier": "GREATER_THAN"}}


def _rows(findings: Any) -> list[tuple[int, str, int | None, str, str, str]]:
    import json

    return [
        (f.scene_id, f.kind, f.rating_key, json.dumps(list(f.fields)), f.detail, f.action)
        for f in findings
    ]


# ---------------------------------------------------------------------- after an outage
def reconcile_outage(
    context: Context, outage: dict[str, Any], *, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """After Plex recovered from `outage` (a row of the outages table): queue the scenes Stash
    changed during it and re-queue the jobs that failed in it (transient dead letters). Hooks
    already queued what they saw; this catches what fired no hook (merges, scans, edits while
    the plugin was off) and what used up its attempts before the breaker opened. Recorded as a
    run (trigger "outage") and on the outage, which the outage report shows. Returns the
    summary: ``{"changed_in_stash", "already_queued", "failed_jobs_requeued", "queued"}``."""
    store = context.store
    tables = store.reconciliation()
    started, ended = float(outage["started_at"]), float(outage["ended_at"])
    run_id = tables.start_run("outage", True)
    try:
        changed = [scene_id for scene_id, _ in scenes_updated(context.stash, started, ended)]
    except SyncError as exc:
        error = redact(exc.message, context.config.secrets())
        tables.finish_run(run_id, "failed", {}, {"trigger": "outage", "error": error})
        raise
    jobs = tables.jobs_of(changed)
    already = sum(1 for scene_id in changed if scene_id in jobs and jobs[scene_id].state != "done")
    letters = [
        letter["id"]
        for letter in store.dead_letters("transient")
        if started <= float(letter["failed_at"]) <= ended
    ]
    store.enqueue(changed, source="reconcile after an outage")
    requeued = store.redrive(letters, "reconcile after an outage")
    summary = {
        "changed_in_stash": len(changed),
        "already_queued": already,
        "failed_jobs_requeued": len(requeued),
        "queued": len(set(changed) | set(requeued)),
    }
    report = {
        "trigger": "outage",
        "window": [started, ended],
        **summary,
        "summary": outage_summary(summary),
    }
    tables.finish_run(run_id, "done", summary, report)
    tables.mark_outage_reconciled(int(outage["id"]), {**summary, "at": clock()})
    return summary


def outage_summary(summary: dict[str, Any]) -> str:
    """One sentence for the outage report."""
    changed = summary.get("changed_in_stash", 0)
    return (
        f"reconciled after it: {plural(changed, 'scene')} changed in Stash "
        f"during it ({summary.get('already_queued', 0)} already queued), "
        f"{plural(summary.get('failed_jobs_requeued', 0), 'failed job')} re-queued"
    )


def with_store(context: Context, store: Store) -> Context:
    """The context with another store (the worker may have reopened its store)."""
    return context if context.store is store else replace(context, store=store)
