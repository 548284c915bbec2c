"""Sync one scene: read it from Stash, match it, plan the changes, write them, record them.

`SceneSyncer.resolve` and `plan` only read (they are what "Preview Sync" shows); `apply` is
the only step that writes to Plex. The decisions are pure functions in `metadata` and
`matching`.

A scene whose files Plex holds as several items (a merged scene, a copy in another folder)
is pushed to each of them. A Plex item holding files of several scenes (Plex stacked
`part1`/`part2` files of two scenes into one item) is a conflict: nothing is written to it.
"""

from __future__ import annotations

import difflib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from stash2plex.clients.plex import Health, PlexClient, PlexItem, Section
from stash2plex.clients.stash import StashClient, StashImage
from stash2plex.errors import (
    AmbiguousMatchError,
    ConfigError,
    ConflictError,
    NotInPlexError,
    ServerDownError,
    SyncError,
)
from stash2plex.names import name_key
from stash2plex.paths import basename, is_windows_path, path_key, split_path
from stash2plex.pull.decisions import epoch
from stash2plex.records import IndexEntry, Link
from stash2plex.settings.config import Config, setting_label
from stash2plex.single_flight import SingleFlight
from stash2plex.store.db import Store
from stash2plex.store.schema import INDEX_REFRESHED_KEY, SECTIONS_KEY
from stash2plex.sync import ratings, settle
from stash2plex.sync.collection_art import Awaited, CollectionArt, CollectionLookups
from stash2plex.sync.image_stamps import read_at_text, read_too_early
from stash2plex.sync.matching import (
    MAPPED_PATH,
    Match,
    MatchResult,
    is_exactly,
    match_scene,
    part_holders,
)
from stash2plex.sync.metadata import (
    TEXT_FIELDS,
    DesiredItem,
    changed_fields,
    collection_list,
    desired_item,
    edit_params,
    fingerprint,
    has_own_metadata,
    scene_entities,
)
from stash2plex.sync.pathmap import map_path
from stash2plex.sync.read_ahead import ItemsReadAhead, first_push_items
from stash2plex.sync.tag_tree import TagTree
from stash2plex.words import agree, plural

log = logging.getLogger("stash2plex.sync")

SYNCED = "synced"
UNCHANGED = "unchanged"
DELETED = "deleted"
NO_FILE = "no_file"
LEFT_ALONE = "skipped"  # a scene without metadata of its own left its Plex item as it was
# In a ConfigError's detail: the fix is a library to add in Plex, not a setting to change.
ADD_LIBRARY = "add_library"
# Why scenes whose Plex items are gone are queued again (shown in their jobs).
ITEMS_GONE_SOURCE = "Plex item or library removed"

# A scene missing from the index triggers a re-listing at most this often, so a burst of
# scenes Plex has not scanned yet costs one listing, not one per scene.
INDEX_REFRESH_MIN_SECONDS = 30.0
# An incremental refresh reads the newest items first; more new items than this means a
# full re-listing is cheaper than paging by date.
INCREMENTAL_PAGE = 100
# How long a syncer reuses the configured libraries it read from the store.
SECTIONS_MEMO_SECONDS = 5.0
# How long a listing's tags are trusted for an item's first sync.
INDEX_FRESH_SECONDS = 600.0
# An incremental refresh sees only new items. A file renamed in place keeps its item (same
# ratingKey and addedAt) under a new path, which only a full listing shows, so a scene still
# missing after an incremental refresh re-lists the libraries, at most this often.
FULL_RELIST_SECONDS = 600.0
# Listings show at most this many tags of a family; at that count the list may be truncated.
LISTING_LIMITS = {"collection": 2, "genre": 2, "actor": 3}
LISTING_COLLECTION_LIMIT = LISTING_LIMITS["collection"]
# The `label_tags` names Stash had no tag for when last checked (an event when they change).
MISSING_LABEL_TAGS_KEY = "label_tags_missing"
# Plex's library types, as its sections list names them, in words people use.
LIBRARY_TYPES = {
    "movie": "a Movies or Other Videos library",
    "show": "a TV Shows library",
    "artist": "a Music library",
    "photo": "a Photos library",
}


@dataclass(frozen=True)
class SyncOutcome:
    status: str
    rating_key: int | None = None
    written: list[str] = field(default_factory=list)
    preserved: list[str] = field(default_factory=list)
    rating_keys: tuple[int, ...] = ()  # every Plex item of the scene, the primary first
    # Collections its edits made whose art waits for the worker's `settle_collections`.
    awaiting: tuple[Awaited, ...] = ()


@dataclass
class SyncPlan:
    """Everything a sync would change, computed from reads only."""

    scene_id: int
    match: Match
    desired: DesiredItem
    changes: list[str]  # text/list fields and "rating" to write
    params: dict[str, Any]  # the one batched edit
    images: dict[str, str]  # kind -> Stash URL whose content must be checked
    preserved: list[str]  # fields edited in Plex and left alone (preserve_plex_edits)
    fingerprints: dict[str, str]  # to record once applied (image hashes added then)
    owned: dict[str, Any]
    current: PlexItem | None = None
    left_alone: bool = False  # the scene has no metadata of its own: nothing is pushed
    position: int = 0  # 0: the scene's primary item
    recorded: Link | None = None  # the scene's link to this item as the plan found it

    @property
    def writes_fields(self) -> bool:
        return bool(self.params)


def describe_library_type(section_type: str) -> str:
    return LIBRARY_TYPES.get(section_type, f"a library of type {section_type!r}")


class PlexIndex:
    """The stored index of the configured Plex libraries, refreshed by paged listings."""

    def __init__(
        self, store: Store, plex: PlexClient, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.plex = plex
        self.config = config
        self.clock = clock
        self.refresh_min_seconds = INDEX_REFRESH_MIN_SECONDS
        self._built = False
        self._refreshed_at = -math.inf  # the refresh time last read (see `fresh`)
        # The sections as last read (time, sections): every scene asks; the store is asked
        # again after a few seconds, so a probe's new answer reaches every thread.
        self._sections: tuple[float, list[dict[str, Any]]] | None = None

    def sections(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The configured libraries (id, title, locations), cached until the settings change.

        `refresh`: ask Plex again even if cached (a probe of a paused queue). Raises
        ConfigError (setting `plex_library`) when a named library does not exist or is not a
        Movies/Other Videos library, or when Plex has no such library at all: scenes cannot be
        synced into TV, music or photo libraries, and waiting would never end. When Plex
        lists no library at all: ServerDownError if scenes were synced into one (a Plex
        still starting), else ConfigError (a new Plex: a library to add).
        """
        if not refresh and self._sections is not None:
            read_at, remembered = self._sections
            if 0 <= self.clock() - read_at < SECTIONS_MEMO_SECONDS:
                return list(remembered)
        # One thread asks Plex; the sync threads starting with it find its answer stored.
        return _SECTIONS.run(lambda: None if refresh else self._stored_sections(), self._ask)

    def _stored_sections(self) -> list[dict[str, Any]] | None:
        """The sections as last read, if read for these settings."""
        cached = self.store.get_value(SECTIONS_KEY)
        if (
            cached
            and cached.get("wanted") == list(self.config.plex_library)
            and cached.get("url") == self.config.plex_url
        ):
            self._sections = (self.clock(), list(cached["sections"]))
            return list(cached["sections"])
        return None

    def _replaced_sections(self, sections: list[Section]) -> set[int]:
        """The ids of libraries removed and added again under the same id since they were last
        read at this address: the uuid differs (new items, none of our metadata)."""
        before = self.store.get_value(SECTIONS_KEY) or {}
        if before.get("url") != self.config.plex_url:
            return set()
        known = {s["id"]: s.get("uuid", "") for s in before.get("sections", [])}
        return {s.id for s in sections if s.uuid and known.get(s.id) not in (None, "", s.uuid)}

    def _libraries_gone(self, section_ids: list[int]) -> int:
        """Scenes synced into a library Plex no longer lists (deleted in Plex, or deleted
        and added again) sync again; returns how many."""
        queued = self.store.unlink_gone_sections(section_ids, ITEMS_GONE_SOURCE)
        self._tell_items_gone(queued)
        return len(queued)

    def _replace_index(self, section_id: int) -> None:
        """List a section whole; scenes linked to items it no longer has (deleted in Plex,
        or the library added again under the same id: new items) sync again. Those items
        are read first (100 per request): an item deleted while the pages were read shifts
        another across a page boundary, unseen but still there, and its scene must keep its
        link (and what it knows of edits made in Plex)."""
        self.store.replace_index(section_id, self.plex.list_section(section_id))
        unlisted = self.store.linked_but_unlisted(section_id)
        if unlisted:
            self._read_again(unlisted)
            gone = set(unlisted) - self.store.indexed_rating_keys(section_id)
            self._tell_items_gone(self.store.unlink_items(sorted(gone), ITEMS_GONE_SOURCE))

    def _tell_items_gone(self, queued: list[int]) -> None:
        """Say it in the events and the log (where a detached worker tells a person)."""
        if queued:
            message = (
                f"the Plex items of {plural(len(queued), 'synced scene')} are gone (deleted in "
                "Plex, or their library removed and added again): "
                f"{agree(len(queued), 'it is', 'they are')} queued to sync again to the items "
                "holding their files now"
            )
            self.store.add_event("warning", "items_gone", message)
            log.warning(message)

    def _ask(self) -> list[dict[str, Any]]:
        wanted = list(self.config.plex_library)
        sections = self.plex.sections()
        if not sections:
            if self.store.link_count():  # it listed ours before: a Plex still starting
                raise ServerDownError(  # waits like an outage, probed until it lists them
                    "Plex lists no libraries at all: it is still starting, or every library "
                    "was removed in Plex (then add yours again)",
                    server="plex",
                    detail={ADD_LIBRARY: True},
                )
            raise ConfigError(  # a new Plex: the queue holds until a library is added
                "Plex has no library yet: add a Movies or Other Videos library holding your "
                "Stash files in Plex (the queue goes on by itself once Plex lists one)",
                setting="plex_library",
                detail={ADD_LIBRARY: True},
            )
        usable = [s for s in sections if s.type == "movie"]
        choices = ", ".join(s.title for s in usable) or "(none: add one in Plex)"
        if wanted:
            by_title = {name_key(s.title): s for s in sections}
            missing = [name for name in wanted if name_key(name) not in by_title]
            if missing:
                named = ", ".join(f"'{name.strip()}'" for name in missing)
                existing = ", ".join(
                    f"'{s.title}' ({describe_library_type(s.type)})" for s in sections
                )
                close = difflib.get_close_matches(
                    missing[0].strip(), [s.title for s in usable], n=1, cutoff=0.6
                )
                guess = f" (did you mean '{close[0]}'?)" if len(missing) == 1 and close else ""
                add = "" if usable else "; add your Stash folder to one in Plex"
                raise ConfigError(
                    f"Plex has no library named {named}{guess}; change "
                    f"{setting_label('plex_library')} to the Movies or Other Videos libraries "
                    f"holding your Stash files{add}. Plex's libraries: {existing}",
                    setting="plex_library",
                    detail={"did_you_mean": close[0]} if guess else None,
                )
            chosen = [by_title[name_key(name)] for name in wanted]
            unsupported = [s for s in chosen if s.type != "movie"]
            if unsupported:
                named = "; ".join(
                    f"'{s.title}' is {describe_library_type(s.type)}" for s in unsupported
                )
                raise ConfigError(
                    f"{named}, which Stash2Plex cannot sync scenes into (TV libraries are not "
                    f"supported yet); change {setting_label('plex_library')} to Movies or "
                    f"Other Videos libraries: {choices}",
                    setting="plex_library",
                    detail={"unsupported": [[s.title, s.type] for s in unsupported]},
                )
        else:
            chosen = usable
            if not chosen:
                listed = ", ".join(f"'{s.title}' ({s.type})" for s in sections)
                raise ConfigError(
                    "Plex has no Movies or Other Videos library, the only kinds Stash2Plex "
                    f"syncs into (libraries found: {listed}); add your Stash folder to one and "
                    f"name it in {setting_label('plex_library')}",
                    setting="plex_library",
                    detail={ADD_LIBRARY: True},
                )
        found = [
            {"id": s.id, "title": s.title, "locations": list(s.locations), "uuid": s.uuid}
            for s in chosen
        ]
        replaced = self._replaced_sections(sections)
        self.store.keep_index_of([s.id for s in chosen if s.id not in replaced])
        if self._libraries_gone([s.id for s in sections if s.id not in replaced]) or replaced:
            # Their scenes match again at once: the next miss lists the libraries, however
            # recently the old ones were listed.
            self.store.put_value(INDEX_REFRESHED_KEY, 0.0)
        self.store.put_value(
            SECTIONS_KEY,
            {
                "wanted": wanted,
                "url": self.config.plex_url,
                "sections": found,
                "read_at": self.clock(),
            },
        )
        self._sections = (self.clock(), found)
        return found

    def section_ids(self) -> list[int]:
        return [section["id"] for section in self.sections()]

    def health(self) -> Health:
        """Plex's health as a sync needs it: serving (`PlexClient.health`) and holding the
        libraries the settings name (`sections`, asked again); when not, `error` is the
        classified failure (a ConfigError naming plex_library for a library it lacks)."""
        health = self.plex.health()
        if not health.ok:
            return health
        try:
            found = self.sections(refresh=True)
        except SyncError as exc:
            return replace(health, ok=False, detail=exc.message, error=exc)
        names = ", ".join(f"'{section['title']}'" for section in found)
        return replace(health, detail=f"{health.detail}; syncing into {names}")

    def refresh(self, *, force: bool = False, full: bool = False, seen: int | None = None) -> bool:
        """Bring the index up to date unless that happened very recently. True if the index
        changed: refreshed now, or (`seen`: `refreshes()` when the caller last looked) by
        another thread since the caller looked, which a match made before must not miss.

        Incremental: read the newest items first and stop at the first one already indexed;
        if the section's total then disagrees with the index (items deleted), re-list it.
        """
        with _REFRESH_LOCK:  # threads missing at once share one listing
            if not force and seen is not None and _REFRESHES[0] != seen:
                return True
            last = self.store.get_value(INDEX_REFRESHED_KEY, 0.0)
            if not force and self.clock() - float(last) < self.refresh_min_seconds:
                return False
            return self._refresh(full)

    @staticmethod
    def refreshes() -> int:
        """How many refreshes of the index this process has made (see `refresh`'s `seen`)."""
        return _REFRESHES[0]

    def _refresh(self, full: bool) -> bool:
        try:
            return self._list_sections(full)
        except NotInPlexError:
            # A library the sections named is gone (deleted in Plex since they were read):
            # read them again, which names the setting to fix (ConfigError) when it was named
            # there, else lists the libraries there are now.
            self.sections(refresh=True)
            return self._list_sections(full=True)

    def _list_sections(self, full: bool) -> bool:
        listed_all = True
        appeared: set[int] = set()
        for section_id in self.section_ids():
            known = self.store.indexed_rating_keys(section_id)
            if full or not known:
                self._replace_index(section_id)
                if known:  # a first listing is no news
                    appeared |= self.store.indexed_rating_keys(section_id) - known
                continue
            newest, total = self.plex.newest_items(section_id, INCREMENTAL_PAGE)
            fresh = [item for item in newest if item.rating_key not in known]
            if len(fresh) == len(newest) == INCREMENTAL_PAGE or len(known) + len(fresh) != total:
                self._replace_index(section_id)
                appeared |= self.store.indexed_rating_keys(section_id) - known
                continue
            listed_all = False
            if fresh:
                self.store.add_to_index(fresh)
                appeared |= {item.rating_key for item in fresh}
        if appeared:
            # A scene matched by file name may have its exact path among the new items: it is
            # matched again (the exact path wins; see `match`).
            recheck = self.store.scenes_linked_to_namesakes(appeared)
            if recheck:
                self.store.enqueue(recheck, "a Plex file of the same name appeared")
        now = self.clock()
        self.store.put_value(INDEX_REFRESHED_KEY, now)
        if listed_all:
            self.store.put_value("plex_index_full_at", now)
        _REFRESHES[0] += 1  # under _REFRESH_LOCK
        return True

    def fresh(self) -> bool:
        """True when the index was refreshed within the last few minutes.

        A plan asks several times per scene; the refresh time only ever grows, so while the
        time last read still says fresh the store need not be asked again."""
        now = self.clock()
        if now - self._refreshed_at < INDEX_FRESH_SECONDS:
            return True
        last = self.store.get_value(INDEX_REFRESHED_KEY)
        if last is None:
            return False
        self._refreshed_at = float(last)
        return now - self._refreshed_at < INDEX_FRESH_SECONDS

    def ensure_built(self) -> None:
        if self._built:  # an index once built stays built: no query per scene
            return
        # The sync threads start together; the first one lists the library for all of them
        # (at 100,000 items, a listing takes a minute).
        _BUILD.run(self._stored_index, self._build)
        self._built = True

    def _stored_index(self) -> bool | None:
        return True if self.store.get_value(INDEX_REFRESHED_KEY) is not None else None

    def _build(self) -> bool:
        with _REFRESH_LOCK:
            return self._refresh(full=True)

    def match(
        self,
        files: list[dict[str, Any]],
        linked: list[Link] | None = None,
        taken: Callable[[IndexEntry], bool] | None = None,
        scene_id: int | None = None,
    ) -> list[Match]:
        """The Plex items holding the scene's files, primary first.

        On a miss: an incremental refresh (new items); then the items the scene was linked to,
        read again (a renamed file keeps its item and gets the new path); then, at most every
        `FULL_RELIST_SECONDS`, a full re-listing. A match by file name only stands after the
        index was brought up to date (at most every `refresh_min_seconds`): the exact path may
        have been scanned since. A match the links contradict (see `_doubtful`) stands only
        after the items involved were read again. `linked`: the scene's links; `scene_id`:
        the scene (to tell other scenes' links apart). `taken`: see `matching.match_scene`.
        Raises AmbiguousMatchError or NotInPlexError.
        """
        self.ensure_built()
        seen = self.refreshes()
        result = self._match(files, taken)
        if (self._missing(result) or self._by_name(result)) and self.refresh(seen=seen):
            result = self._match(files, taken)
        reread = False
        doubtful = self._doubtful(result, linked or [], scene_id)
        if doubtful:
            self._read_again(doubtful)
            reread = True
            result = self._match(files, taken)
        if self._missing(result) and linked and not reread and self._follow_moved(files, linked):
            result = self._match(files, taken)
        if self._missing(result) and self._full_relist_due():
            self.refresh(force=True, full=True)
            result = self._match(files, taken)
        if result.matches:
            return result.matches
        if result.ambiguous:
            raise self._ambiguous(result)
        raise NotInPlexError(
            "the scene's file is not in Plex yet (looked for " + ", ".join(result.tried[:3]) + ")",
            detail={"paths": result.tried},
        )

    @staticmethod
    def _missing(result: MatchResult) -> bool:
        return not result.matches and not result.ambiguous

    @staticmethod
    def _by_name(result: MatchResult) -> bool:
        return any(m.rule != MAPPED_PATH for m in result.matches)

    def _ambiguous(self, result: MatchResult) -> AmbiguousMatchError:
        """The error naming each candidate with its library; when one file is in several
        libraries, how to choose (`plex_library`)."""
        titles = {int(s["id"]): str(s["title"]) for s in self.sections()}
        candidates: list[dict[str, Any]] = [
            {
                "rating_key": c.rating_key,
                "path": c.path,
                "library": titles.get(c.section_id, f"library {c.section_id}"),
            }
            for c in result.candidates
        ]
        named = "; ".join(
            f"{c['path']} in '{c['library']}' (ratingKey {c['rating_key']})" for c in candidates[:5]
        )
        message = f"{len(candidates)} Plex items could be this scene; not guessing: {named}"
        same_file = {path_key(c.path) for c in result.candidates}
        libraries = list(dict.fromkeys(c["library"] for c in candidates))
        if len(same_file) < len(candidates) and len(libraries) > 1:
            message += (
                f". The same file is in several libraries ({', '.join(libraries)}): set "
                f"{setting_label('plex_library')} to the one Stash2Plex should write to"
            )
        return AmbiguousMatchError(message, detail={"candidates": candidates})

    def _doubtful(self, result: MatchResult, linked: list[Link], scene_id: int | None) -> list[int]:
        """The items to read again before this match can stand, or [] when the links agree
        with it: a found item is linked to another scene, or an item the scene is linked to
        was not found. Both happen when files swap names or a chain of renames ends on an
        old name: Plex keeps each item's ratingKey and gives it the new path, while the index
        still holds the old paths, so the exact path finds the other scene's item. An
        unchanged scene finds exactly its own items: this costs it no request."""
        if scene_id is None:
            return []
        found = [m.rating_key for m in result.matches] + [c.rating_key for c in result.candidates]
        own = [link.rating_key for link in linked]
        contradicted = any(key not in found for key in own) or any(
            link.scene_id != scene_id for key in found for link in self.store.links_to_item(key)
        )
        return list(dict.fromkeys(found + own)) if contradicted else []

    def _read_again(self, rating_keys: list[int]) -> None:
        """Read these items from Plex (100 per request) and put what they hold now into the
        index; items Plex no longer has leave it."""
        items = self.plex.items_detail(rating_keys)
        for key in rating_keys:
            if key not in items:
                self.store.drop_from_index(key)
        if items:
            self.store.add_to_index([item.as_listed() for item in items.values()])

    def _follow_moved(self, files: list[dict[str, Any]], linked: list[Link]) -> bool:
        """Read the scene's linked items again; True if one now holds one of its files."""
        wanted = {
            path_key(map_path(str(f["path"]), self.config.path_map)) for f in files if f.get("path")
        }
        found = False
        for link in linked:
            try:
                item = self.plex.item_detail(link.rating_key)
            except NotInPlexError:
                self.store.drop_from_index(link.rating_key)
                continue
            self.store.add_to_index([item.as_listed()])
            found |= any(path_key(path) in wanted for path, _ in item.files)
        return found

    def _full_relist_due(self) -> bool:
        last = self.store.get_value("plex_index_full_at")
        return last is None or self.clock() - float(last) >= FULL_RELIST_SECONDS

    def request_scan(self, plex_paths: list[str]) -> list[str]:
        """Ask Plex to scan the folders of these files, in the libraries that hold them."""
        scanned = []
        for path in plex_paths:
            folder = _folder(path)
            for section in self.sections():
                locations = section.get("locations") or []
                if not locations or any(_under(path, loc) for loc in locations):
                    self.plex.scan_path(section["id"], folder)
                    scanned.append(f"{section['title']}: {folder}")
        return scanned

    def lookup(self, files: list[dict[str, Any]]) -> list[int]:
        """The indexed items that hold these files, unambiguously (no request, no refresh).
        Only a hint for reading items ahead, so it raises nothing about the settings: every
        indexed library counts and files other scenes hold are not ruled out (the push
        itself checks both)."""
        result = match_scene(
            files, self.config.path_map, self.store.index_by_path, self.store.index_by_basename
        )
        return [match.rating_key for match in result.matches]

    def _match(
        self, files: list[dict[str, Any]], taken: Callable[[IndexEntry], bool] | None
    ) -> MatchResult:
        # The index may still hold libraries a changed `plex_library` no longer names.
        chosen = set(self.section_ids())

        def by_path(path: str) -> list[IndexEntry]:
            return [e for e in self.store.index_by_path(path) if e.section_id in chosen]

        def by_basename(name: str) -> list[IndexEntry]:
            return [e for e in self.store.index_by_basename(name) if e.section_id in chosen]

        return match_scene(files, self.config.path_map, by_path, by_basename, taken)


_REFRESH_LOCK = threading.Lock()
_REFRESHES = [0]  # refreshes of the index made by this process (see `PlexIndex.refresh`)
_SECTIONS = SingleFlight()
_BUILD = SingleFlight()
# `SceneSyncer.sync` was given no scene: it reads the scene itself.
UNFETCHED = object()
# Writes to one Plex item never interleave (two scenes of one item run on different threads).
_ITEM_LOCKS: dict[int, threading.Lock] = {}
_ITEM_LOCKS_GUARD = threading.Lock()


def _item_lock(rating_key: int) -> threading.Lock:
    with _ITEM_LOCKS_GUARD:
        return _ITEM_LOCKS.setdefault(rating_key, threading.Lock())


class SceneSyncer:
    """One scene at a time: read, resolve the Plex items, plan, apply, record.

    Thread use: one syncer (and store connection) per thread; the Stash and Plex clients may be
    shared. Writes to one Plex item are serialized across threads.
    """

    def __init__(
        self,
        store: Store,
        stash: StashClient,
        plex: PlexClient,
        config: Config,
        clock: Callable[[], float] = time.time,
        *,
        force: bool = False,
        items_ahead: ItemsReadAhead | None = None,
        collections: CollectionLookups | None = None,
    ) -> None:
        self.store = store
        self.stash = stash
        self.plex = plex
        self.config = config
        self.clock = clock
        self.index = PlexIndex(store, plex, config, clock)
        # Items a batch read ahead (shared by the worker's threads); None: each plan reads.
        self.items_ahead = items_ahead
        # What the worker's threads share about collections; None: each sync looks up its own.
        self.collections = collections
        self._tree: tuple[object, TagTree] | None = None
        # `label_tags` names a tag Stash does not have (renamed or deleted): labels are left
        # as they are rather than taken off every item (they may limit what shared users see).
        self._labels_held = False
        # Rewrite Plex from Stash: every synced field and image is written whatever we last
        # pushed (fields edited in Plex are still left alone with preserve_plex_edits).
        self.force = force

    # ------------------------------------------------------------------ sync
    def sync(self, scene_id: int, scene: dict[str, Any] | object | None = UNFETCHED) -> SyncOutcome:
        """Sync one scene: `scene` is the scene as a batch read it (None: Stash no longer has
        it); left out, it is read here. Raises the classified SyncErrors of reading, matching
        and writing."""
        if scene is UNFETCHED:
            scene = self.stash.find_scene(scene_id)
        if not isinstance(scene, dict):
            self._forget(scene_id)
            return SyncOutcome(DELETED)
        files = scene.get("files") or []
        if not files:
            return SyncOutcome(NO_FILE)
        tree = self.tag_tree(scene)
        # The scene's links, read once: an unchanged scene writes no row, so they stand for the
        # whole sync; after any write of this sync they are read again.
        links = self.store.links(scene_id)
        writes_before = self.store.rows_written()
        before = _collections_of(links)
        written: list[str] = []
        awaiting: list[Awaited] = []
        for attempt in range(2):
            art = self.collection_art()
            matches = self.resolve(scene, links)
            if self.store.rows_written() != writes_before:  # e.g. a merged scene's item handed over
                links = self.store.links(scene_id)
            results = self._push(scene, matches, tree, art, links, retry=True)
            kept = {plan.match.rating_key for plan, _ in results}
            for link in links:  # the links saved by this push are all kept
                if link.rating_key not in kept:  # the scene no longer has a file in that item
                    self.store.drop_link(scene_id, link.rating_key)
            self.store.save_scene_entities(scene_id, scene_entities(scene, tree))
            written += [key for _, keys in results for key in keys]
            # The collections' own poster and summary (only those Stash2Plex created).
            pushed_to = dict.fromkeys(p.match.section_id for p, _ in results if not p.left_alone)
            for section_id in pushed_to:
                written += art.ensure(section_id, scene)
            awaiting += art.awaited
            if not art.vanished or attempt:
                break
            # One of our collections was deleted in Plex: this scene tags its items again
            # now (which makes the collection anew), the collection's other scenes next.
            self._collections_deleted(scene_id, art.vanished)
            links = self.store.links(scene_id)
        if self.store.rows_written() != writes_before:
            links = self.store.links(scene_id)
        after = _collections_of(links)
        for section_id, titles in sorted(before.items()):
            left = sorted(titles - after.get(section_id, set()))
            if left:
                written += art.drop_emptied(section_id, left)
        written += self._decide_rating(scene, links)
        preserved = list(dict.fromkeys(key for plan, _ in results for key in plan.preserved))
        if written:
            status = SYNCED
        elif all(plan.left_alone for plan, _ in results):
            status = LEFT_ALONE
        else:
            status = UNCHANGED
        keys = tuple(plan.match.rating_key for plan, _ in results)
        return SyncOutcome(
            status, keys[0], list(dict.fromkeys(written)), preserved, keys, tuple(awaiting)
        )

    def collection_art(self) -> CollectionArt:
        return CollectionArt(
            self.store, self.stash, self.plex, self.config, self.collections, self.clock
        )

    def _push(
        self,
        scene: dict[str, Any],
        matches: list[Match],
        tree: TagTree | None,
        art: CollectionArt,
        links: list[Link] | None,
        *,
        retry: bool,
    ) -> list[tuple[SyncPlan, list[str]]]:
        results = []
        for position, match in enumerate(matches):
            try:
                plan = self.plan(scene, match, tree=tree, position=position, links=links)
                if not plan.left_alone:
                    art.note_wanted(plan.match.section_id, scene)
                written = self.apply(plan)
            except NotInPlexError:
                if not retry:
                    raise
                # The item we knew was deleted in Plex (404): forget it, re-list, match afresh.
                self.store.drop_link(int(scene["id"]), match.rating_key)
                self.store.drop_from_index(match.rating_key)
                self.index.refresh(force=True, full=True)
                return self._push(scene, self.resolve(scene), tree, art, None, retry=False)
            results.append((plan, written))
        return results

    def settle_collections(self, *, ask_plex: bool = True) -> dict[Awaited, SyncError]:
        """The end of a worker's batch: the collections its edits made get their ratingKey,
        summary and poster (`CollectionArt.settle`). Returns those this failed for."""
        art = self.collection_art()
        failed = art.settle(ask_plex=ask_plex)
        if art.vanished:  # deleted in Plex moments after it was made: made again, as below
            self._collections_deleted(None, art.vanished)
        return failed

    def _collections_deleted(self, scene_id: int | None, vanished: list[tuple[int, str]]) -> None:
        """Collections of ours deleted in Plex: every scene that had one pushes its collection
        list again (`scene_id`'s at once, the others queued), so the collection is made again
        with all its items, as when it was first needed."""
        for section_id, title in vanished:
            scenes = self.store.scenes_with_collection(section_id, title)
            pushing = {*scenes} | ({scene_id} if scene_id is not None else set())
            self.store.forget_link_fingerprint(sorted(pushing), "collection", section_id)
            others = [other for other in scenes if other != scene_id]
            if others:
                self.store.enqueue(others, source="collection deleted in Plex")
            self.store.add_event(
                "warning",
                "collection",
                f"the collection '{title}' was deleted in Plex; Stash2Plex makes it again "
                f"for its {max(len(scenes), 1)} scenes (the setting skip_collections stops "
                "Stash2Plex making collections)",
            )

    def _decide_rating(self, scene: dict[str, Any], links: list[Link]) -> list[str]:
        """Ratings both ways: decide the scene's rating with its items' when Stash's is not
        what every item showed at the last decision (first contact, or changed in Stash), or
        when forced. `links`: the scene's links as they are now. Returns "rating" when a Plex
        item was rated, "rating to Stash" when Plex's rating went to Stash."""
        if not self.config.sync_rating_both_ways:
            return []
        scene_id = int(scene["id"])
        value = scene.get("rating100")
        value = value if isinstance(value, int) else None
        want = ratings.recorded(value)
        if not links or (
            not self.force and all(link.fingerprints.get(ratings.KEY) == want for link in links)
        ):
            return []  # nothing new from Stash: an unchanged re-sync reads nothing
        states = self.plex.items_view_states([link.rating_key for link in links])
        updated_at = scene.get("updated_at")
        outcome = ratings.RatingSync(self.store, self.stash, self.plex).reconcile(
            scene_id,
            value,
            epoch(str(updated_at)) if updated_at else None,
            links,
            states,
        )
        return [ratings.KEY] * bool(outcome.plex_writes) + (
            ["rating to Stash"] if outcome.stash_written else []
        )

    def _forget(self, scene_id: int) -> None:
        self.store.drop_link(scene_id)
        self.store.save_scene_entities(scene_id, {})

    # ------------------------------------------------------------------ reading
    def read_ahead(self, scenes: Iterable[dict[str, Any] | None]) -> int:
        """Read the items of these scenes' first pushes that `plan` will read in full, 100 a
        request (each plan would otherwise read its own item): all of them when the index is
        older than its freshness window; else those whose listing shows collections (a Plex
        agent's or the user's, kept beside ours) or a list cut at the listing's limit (to
        empty it, every name is needed) and, with `label_tags`, all (listings carry no
        labels). Returns how many items were read; a failed read leaves each scene to read
        its own."""
        if self.items_ahead is None:
            return 0
        keys = first_push_items(
            scenes,
            linked=lambda scene_id: bool(self.store.links(scene_id)),
            lookup=self.index.lookup,
            pushes=lambda scene: self.config.sync_empty_scenes or has_own_metadata(scene),
        )
        if self.index.fresh() and not self.config.label_tags:
            keys = [key for key in keys if self._listing_incomplete(key)]
        if not keys:
            return 0
        try:
            items = self.plex.items_detail(keys)
        except SyncError:
            return 0
        self.items_ahead.put(items.values())
        return len(items)

    def _listing_incomplete(self, rating_key: int) -> bool:
        """Whether a first push may need more of the item than its listing shows (`plan`)."""
        collections, tags = self.store.listed(rating_key) or ([], {})
        cut = any(
            len(tags.get(family, [])) >= LISTING_LIMITS[family] for family in ("genre", "actor")
        )
        return bool(collections) or cut

    def _item(self, rating_key: int) -> PlexItem:
        """The item in full: as a batch read it moments ago, or read now."""
        ahead = self.items_ahead.take(rating_key) if self.items_ahead else None
        return ahead or self.plex.item_detail(rating_key)

    def resolve(self, scene: dict[str, Any], links: list[Link] | None = None) -> list[Match]:
        """The Plex items this scene is pushed to, checked for conflicts. Reads only (and
        drops links of scenes that no longer exist). `links`: the scene's links, if already
        read.

        Raises ConfigError (unusable library setting), NotInPlexError, AmbiguousMatchError,
        or ConflictError when an item also holds another scene's file.
        """
        self.index.sections()
        scene_id = int(scene["id"])
        files = scene.get("files") or []
        if links is None:
            links = self.store.links(scene_id)
        matches = self.index.match(files, links, self._taken_by_others(scene_id), scene_id)
        for match in matches:
            self._check_claims(scene, match)
        return matches

    def _taken_by_others(self, scene_id: int) -> Callable[[IndexEntry], bool]:
        """Whether an indexed Plex file is exactly (mapped) another Stash scene's file: Stash
        is asked by file name, once per name."""
        rules = self.config.path_map
        asked: dict[str, list[dict[str, Any]]] = {}

        def taken(entry: IndexEntry) -> bool:
            name = basename(entry.path)
            if name not in asked:
                asked[name] = self.stash.scenes_with_file(name)
            return any(
                int(other["id"]) != scene_id
                and any(is_exactly(f, entry.path, rules) for f in other.get("files") or [])
                for other in asked[name]
            )

        return taken

    def _check_claims(self, scene: dict[str, Any], match: Match) -> None:
        """Raise ConflictError if another Stash scene holds a file of this Plex item (see
        `matching.part_holders`: an exact path beats a name and size). Drops the links of
        scenes that are gone or no longer hold a file of it."""
        scene_id = int(scene["id"])
        rules = self.config.path_map
        parts = self.store.item_files(match.rating_key)
        files_of: dict[int, list[dict[str, Any]]] = {scene_id: scene.get("files") or []}
        linked = [
            link.scene_id
            for link in self.store.links_to_item(match.rating_key)
            if link.scene_id != scene_id
        ]
        handed_over = self.store.reconciliation().hand_over
        for other_id in linked:
            other = self.stash.find_scene(other_id)
            if other is None:  # merged away or deleted without a hook: its links go
                # This scene takes over what Stash2Plex put on the item for it (its studio
                # collection, labels), so its push removes what it does not want instead of
                # keeping it as the user's.
                handed_over(other_id, match.rating_key, scene_id)
                self._forget(other_id)
                continue
            files_of[other_id] = other.get("files") or []
        for path, _ in parts:
            if any(is_exactly(f, path, rules) for f in files_of[scene_id]):
                continue
            for other in self.stash.scenes_with_file(basename(path)):
                files_of.setdefault(int(other["id"]), other.get("files") or [])
        held = part_holders(parts, files_of, rules)
        for other_id in linked:
            if other_id in files_of and other_id not in held:  # its files moved elsewhere
                handed_over(other_id, match.rating_key, scene_id)
                self.store.drop_link(other_id, match.rating_key)
        others = sorted(sid for sid in held if sid != scene_id)
        if not others:
            return
        ids = sorted({scene_id, *others})
        names = ", ".join(str(i) for i in ids[:-1]) + f" and {ids[-1]}"
        holdings = "; ".join(
            f"scene {sid}: {', '.join(held[sid])}"
            if sid in held
            else f"scene {sid}: none of its files"
            for sid in ids
        )
        raise ConflictError(
            f"scenes {names} are one item in Plex (ratingKey {match.rating_key}; {holdings}); "
            "nothing is written until one scene holds it: merge the scenes in Stash, or split "
            "the item apart in Plex",
            detail={
                "scene_ids": ids,
                "rating_key": match.rating_key,
                "paths": [path for path, _ in parts],
                "files": {str(sid): held.get(sid, []) for sid in ids},
            },
        )

    def tag_tree(self, scene: dict[str, Any]) -> TagTree | None:
        """Stash's tag hierarchy, read once per Stash client (a run), when tag filters or
        label tags are set; read again if the scene shows a tag created since."""
        if not (self.config.tag_include or self.config.tag_exclude or self.config.label_tags):
            return None
        tags = self.stash.tag_hierarchy()
        ids = [int(t["id"]) for t in scene.get("tags") or [] if str(t.get("id", "")).isdigit()]
        if any(tag_id not in tags for tag_id in ids):
            self.stash.forget_tag_hierarchy()
            tags = self.stash.tag_hierarchy()
        if self._tree is None or self._tree[0] is not tags:
            self._tree = (tags, TagTree(tags))
            self._labels_held = self._missing_label_tags(self._tree[1])
        return self._tree[1]

    def _missing_label_tags(self, tree: TagTree) -> bool:
        """Whether `label_tags` names a tag Stash does not have; said once as an event (the
        Plex page shows it) each time the missing names change."""
        missing = sorted(name for name in self.config.label_tags if not tree.has_name(name))
        if missing != self.store.get_value(MISSING_LABEL_TAGS_KEY, []):
            self.store.put_value(MISSING_LABEL_TAGS_KEY, missing)
            if missing:
                self.store.add_event(
                    "warning",
                    "labels",
                    "label_tags names "
                    + ", ".join(f"'{name}'" for name in missing)
                    + ", which Stash has no tag for (renamed or deleted?): Plex labels are left "
                    "as they are until label_tags names only existing tags",
                )
        return bool(missing)

    def plan(
        self,
        scene: dict[str, Any],
        match: Match,
        *,
        tree: TagTree | None = None,
        position: int = 0,
        links: list[Link] | None = None,
    ) -> SyncPlan:
        """What syncing this scene to this item would change. Reads only. `links`: the scene's
        links, if already read."""
        scene_id = int(scene["id"])
        if links is None:
            links = self.store.links(scene_id)
        link = next((lk for lk in links if lk.rating_key == match.rating_key), None)
        pushed = dict(link.fingerprints) if link else {}
        owned = dict(link.owned) if link else {}
        desired = desired_item(scene, self.config, tree)
        if self._labels_held and tree is not None:
            desired = replace(desired, labels=None)
        both_ways = self.config.sync_rating_both_ways
        # The rating is the user's, not metadata a Plex agent fills: whether we pushed one
        # (or a pull recorded one) says nothing about leaving the item's metadata alone.
        metadata_pushed = any(key != ratings.KEY for key in pushed)
        if (
            not metadata_pushed
            and not self.config.sync_empty_scenes
            and not has_own_metadata(scene)
        ):
            # Freshly scanned, nothing of its own yet: a Plex agent's metadata is better than
            # an empty push, and nothing gets locked. Pushed once it has metadata.
            return self._left_alone(scene_id, match, desired, pushed, position, link)
        changes = changed_fields(desired, {} if self.force else pushed)
        if both_ways:
            # Both ways, the rating is one decision per scene (`sync.ratings`), not a push.
            changes = [key for key in changes if key != ratings.KEY]

        listed, listed_tags = self.store.listed(match.rating_key) or ([], {})
        ours = set(owned.get("collection", []))
        collections_unknown = "collection" in changes and (
            # After our first push the user may have added collections in Plex at any time,
            # so a change reads the item. A first push may trust a fresh listing that shows
            # fewer collections than listings truncate to, none of them the user's.
            "collection" in pushed
            or not self.index.fresh()
            or any(name not in ours for name in listed)
            or len(listed) >= LISTING_COLLECTION_LIMIT
        )
        # An emptied list is removed by naming what Plex holds. After our push that is what we
        # pushed; before it, what a Plex agent put there: the listing says whether there is
        # any and, below its truncation limit, which; otherwise the item is read.
        emptied = [
            family
            for family, values in (("genre", desired.genres), ("actor", desired.actors))
            if family in changes and values is not None and not values
        ]
        lists_unknown = any(
            family not in pushed
            and (
                not self.index.fresh() or len(listed_tags.get(family, [])) >= LISTING_LIMITS[family]
            )
            for family in emptied
        )
        current = None
        # Listings never carry labels: changing ours needs the item's full list.
        labels_unknown = "label" in changes
        if (
            collections_unknown
            or labels_unknown
            or lists_unknown
            or (self.config.preserve_plex_edits and pushed)
        ):
            current = self._item(match.rating_key)

        preserved = self._edited_in_plex(changes, current, pushed, owned)
        changes = [key for key in changes if key not in preserved]
        in_plex = current.tags.get("collection", []) if current else listed
        full_collections = (
            collection_list(desired.collections, ours, in_plex)
            if desired.collections is not None
            else []
        )
        full_labels = (
            collection_list(desired.labels, owned.get("label", []), current.tags.get("label", []))
            if desired.labels is not None and current is not None
            else []
        )
        present: dict[str, list[str]] = {
            "collection": list(owned.get("collection_all", [])),
            "label": list(owned.get("label_all", [])),
        }
        for family in emptied:
            names = list(owned.get(family, []))
            if family not in pushed:
                names += current.tags.get(family, []) if current else listed_tags.get(family, [])
            present[family] = names
        params = edit_params(
            desired,
            [key for key in changes if key != "rating"],
            present=present,
            collections=full_collections,
            labels=full_labels,
        )
        new_prints = {**pushed, **desired.fingerprints()}
        if both_ways:  # what the item showed at the last rating decision stays recorded
            new_prints.pop(ratings.KEY, None)
            if ratings.KEY in pushed:
                new_prints[ratings.KEY] = pushed[ratings.KEY]
        for key in preserved:  # keep the old print so a later Stash change is still noticed
            if key in pushed:
                new_prints[key] = pushed[key]
            else:
                new_prints.pop(key, None)
        new_owned = dict(owned)
        if desired.genres is not None and "genre" not in preserved:
            new_owned["genre"] = list(desired.genres)
        if desired.actors is not None and "actor" not in preserved:
            new_owned["actor"] = [a.name for a in desired.actors]
        if desired.collections is not None:
            new_owned["collection"] = list(desired.collections)
            new_owned["collection_all"] = full_collections
        if desired.labels is not None and "label" in changes:
            new_owned["label"] = list(desired.labels)
            new_owned["label_all"] = full_labels
        images = {
            kind: url
            for kind, url in desired.images.items()
            if self.force
            or pushed.get(f"{kind}_url") != fingerprint(url)
            or read_too_early(url, pushed.get(f"{kind}_read_at"))
        }
        return SyncPlan(
            scene_id,
            match,
            desired,
            changes,
            params,
            images,
            preserved,
            new_prints,
            new_owned,
            current,
            False,
            position,
            link,
        )

    def _left_alone(
        self,
        scene_id: int,
        match: Match,
        desired: DesiredItem,
        pushed: dict[str, str],
        position: int,
        link: Link | None,
    ) -> SyncPlan:
        """The plan of a scene without metadata of its own: no field, list or image; only
        the rating, which is the user's and follows its own setting."""
        prints = {ratings.KEY: pushed[ratings.KEY]} if ratings.KEY in pushed else {}
        changes = []
        if self.config.sync_rating and not self.config.sync_rating_both_ways:
            want = desired.fingerprints()[ratings.KEY]
            if self.force or pushed.get(ratings.KEY) != want:
                changes.append(ratings.KEY)
            prints[ratings.KEY] = want
        return SyncPlan(
            scene_id, match, desired, changes, {}, {}, [], prints, {}, None, True, position, link
        )

    # ------------------------------------------------------------------ writing
    def apply(self, plan: SyncPlan) -> list[str]:
        """Write the plan to Plex and record it. Returns what was written."""
        with _item_lock(plan.match.rating_key):
            if self.items_ahead is not None:  # read before this write: out of date after it
                self.items_ahead.discard(plan.match.rating_key)
            return self._apply(plan)

    def _apply(self, plan: SyncPlan) -> list[str]:
        match = plan.match
        if plan.left_alone:
            left_written = []
            if ratings.KEY in plan.changes:
                self._rate(match.rating_key, plan.desired.rating)
                left_written.append(ratings.KEY)
            self._record(plan, {}, wrote=bool(left_written))
            return left_written
        written = [key for key in plan.changes if key != "rating"] if plan.params else []
        if plan.params:
            with settle.noted(
                match.rating_key,
                lambda: settle.edit_shown(plan),
                lambda: settle.edit_ours(plan),
            ):
                self.plex.edit(match.section_id, match.rating_key, plan.params)
        if "rating" in plan.changes:
            self._rate(match.rating_key, plan.desired.rating)
            written.append("rating")
        fetched: dict[str, StashImage] = {}  # poster and art share the cover: fetched once
        read_at: dict[str, str] = {}
        for kind, url in plan.images.items():
            if url not in fetched:
                read_at[url] = read_at_text(self.clock())  # as the request leaves
                fetched[url] = self.stash.image(url)
            image = fetched[url]
            plan.fingerprints[f"{kind}_url"] = fingerprint(url)
            plan.fingerprints[f"{kind}_read_at"] = read_at[url]
            if image.placeholder:
                continue  # Stash's "no cover" drawing is never worth uploading
            if self.force or plan.fingerprints.get(kind) != image.sha1:
                with settle.noted(match.rating_key, {kind: image.sha1}):
                    self.plex.upload_image(match.rating_key, kind, image.data)
                plan.fingerprints[kind] = image.sha1
                written.append(kind)
        self._record(plan, plan.owned, wrote=bool(written))
        return written

    def _rate(self, rating_key: int, rating: float | None) -> None:
        with settle.noted(rating_key, lambda: settle.rating_shown(rating)):
            self.plex.rate(rating_key, rating)

    def _record(self, plan: SyncPlan, owned: dict[str, Any], *, wrote: bool) -> None:
        """Record the link as applied; nothing when nothing was written to Plex and the link
        the plan found is exactly this (an unchanged scene writes no row)."""
        match, link = plan.match, plan.recorded
        if not wrote and link is not None:
            recorded = (link.section_id, link.plex_path, link.fingerprints, link.owned)
            if link.position == plan.position and recorded == (
                match.section_id,
                match.plex_path,
                plan.fingerprints,
                owned,
            ):
                return
        self.store.save_link(
            plan.scene_id,
            match.rating_key,
            match.section_id,
            match.plex_path,
            plan.fingerprints,
            owned,
            plan.position,
            wrote=wrote,
        )

    # ------------------------------------------------------------------ helpers
    def _edited_in_plex(
        self,
        changes: list[str],
        current: PlexItem | None,
        pushed: dict[str, str],
        owned: dict[str, Any],
    ) -> list[str]:
        """Fields someone changed in Plex after our last push (preserve_plex_edits)."""
        if not (self.config.preserve_plex_edits and current and pushed):
            return []
        edited = []
        for key in changes:
            text_edited = (
                key in TEXT_FIELDS
                and key in pushed
                and fingerprint(current.fields.get(key, "")) != pushed[key]
            )
            list_edited = (
                key in ("genre", "actor")
                and key in owned
                and [name_key(n) for n in current.tags.get(key, [])]
                != [name_key(n) for n in owned[key]]
            )
            if text_edited or list_edited:
                edited.append(key)
        return edited


def _folder(path: str) -> str:
    """The folder of a Plex path, in the path's own separator (a Windows server's `\\`)."""
    parts = split_path(path)
    separator = "\\" if "\\" in path and (is_windows_path(path) or "/" not in path) else "/"
    return separator.join(parts[:-1]) or separator


def _under(path: str, folder: str) -> bool:
    """Whether a path lies in a library location, compared as `paths.path_key` compares."""
    key, root = path_key(path), path_key(folder).rstrip("/\\")
    return key == root or key.startswith(root + "/") or key.startswith(root + "\\")


def _collections_of(links: Iterable[Link]) -> dict[int, set[str]]:
    """The collections we put a scene's items into, by library section."""
    found: dict[int, set[str]] = {}
    for link in links:
        found.setdefault(link.section_id, set()).update(link.owned.get("collection") or [])
    return found
