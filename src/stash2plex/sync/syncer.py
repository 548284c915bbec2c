"""Sync one scene: read it from Stash, match it, plan the changes, write them, record them.

`SceneSyncer.plan` only reads (it is what "Preview Sync" shows); `apply` is the only step that
writes to Plex. The decisions are pure functions in `metadata` and `matching`.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stash2plex.clients.plex import PlexClient, PlexItem
from stash2plex.clients.stash import StashClient
from stash2plex.errors import AmbiguousMatchError, ConfigError, NotInPlexError, TransientError
from stash2plex.settings.config import Config
from stash2plex.store.db import Store
from stash2plex.sync.collection_art import CollectionArt
from stash2plex.sync.matching import Match, MatchResult, match_scene
from stash2plex.sync.metadata import (
    TEXT_FIELDS,
    DesiredItem,
    changed_fields,
    collection_list,
    desired_item,
    edit_params,
    fingerprint,
)
from stash2plex.sync.pathmap import map_path

SYNCED = "synced"
UNCHANGED = "unchanged"
DELETED = "deleted"
NO_FILE = "no_file"

# A scene missing from the index triggers a re-listing at most this often, so a burst of
# scenes Plex has not scanned yet costs one listing, not one per scene.
INDEX_REFRESH_MIN_SECONDS = 30.0
# An incremental refresh reads the newest items first; more new items than this means a
# full re-listing is cheaper than paging by date.
INCREMENTAL_PAGE = 100
# How long a listing's collection tags are trusted for an item's first sync.
INDEX_FRESH_SECONDS = 600.0
# Listings show at most about two collection tags; at that count the list may be truncated.
LISTING_COLLECTION_LIMIT = 2


@dataclass(frozen=True)
class SyncOutcome:
    status: str
    rating_key: int | None = None
    written: list[str] = field(default_factory=list)
    preserved: list[str] = field(default_factory=list)


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

    @property
    def writes_fields(self) -> bool:
        return bool(self.params)


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

    def sections(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The configured libraries (id, title, locations), cached until the settings change.

        `refresh`: ask Plex again even if cached (a probe of a paused queue). Raises
        ConfigError when a configured library does not exist, TransientError when Plex lists
        no library at all (a restarting server; a verdict on the settings needs an answer).
        """
        cached = self.store.get_value("plex_sections")
        wanted = list(self.config.plex_library)
        if (
            not refresh
            and cached
            and cached.get("wanted") == wanted
            and cached.get("url") == self.config.plex_url
        ):
            return list(cached["sections"])
        sections = self.plex.sections()
        if not sections:
            raise TransientError(
                "Plex listed no libraries at all (is it still starting?)", server="plex"
            )
        if wanted:
            by_title = {s.title.strip().casefold(): s for s in sections}
            missing = [name for name in wanted if name.strip().casefold() not in by_title]
            if missing:
                choices = ", ".join(f"{s.title} ({s.type})" for s in sections)
                raise ConfigError(
                    f"Plex has no library named {', '.join(missing)}; set `plex_library` to one "
                    f"of: {choices}",
                    setting="plex_library",
                )
            chosen = [by_title[name.strip().casefold()] for name in wanted]
        else:
            chosen = [s for s in sections if s.type == "movie"]
        found = [{"id": s.id, "title": s.title, "locations": list(s.locations)} for s in chosen]
        self.store.put_value(
            "plex_sections", {"wanted": wanted, "url": self.config.plex_url, "sections": found}
        )
        return found

    def section_ids(self) -> list[int]:
        return [section["id"] for section in self.sections()]

    def refresh(self, *, force: bool = False, full: bool = False) -> bool:
        """Bring the index up to date unless that happened very recently. True if it did.

        Incremental: read the newest items first and stop at the first one already indexed;
        if the section's total then disagrees with the index (items deleted), re-list it.
        """
        last = self.store.get_value("plex_index_refreshed_at", 0.0)
        if not force and self.clock() - float(last) < self.refresh_min_seconds:
            return False
        for section_id in self.section_ids():
            known = self.store.indexed_rating_keys(section_id)
            if full or not known:
                self.store.replace_index(section_id, self.plex.list_section(section_id))
                continue
            newest, total = self.plex.newest_items(section_id, INCREMENTAL_PAGE)
            fresh = [item for item in newest if item.rating_key not in known]
            if len(fresh) == len(newest) == INCREMENTAL_PAGE or len(known) + len(fresh) != total:
                self.store.replace_index(section_id, self.plex.list_section(section_id))
            elif fresh:
                self.store.add_to_index(fresh)
        self.store.put_value("plex_index_refreshed_at", self.clock())
        return True

    def fresh(self) -> bool:
        """True when the index was refreshed within the last few minutes."""
        last = self.store.get_value("plex_index_refreshed_at")
        return last is not None and self.clock() - float(last) < INDEX_FRESH_SECONDS

    def ensure_built(self) -> None:
        if self.store.get_value("plex_index_refreshed_at") is None:
            self.refresh(force=True, full=True)

    def match(self, files: list[dict[str, Any]]) -> Match:
        """Match, refreshing the index once if the file is not in it yet."""
        self.ensure_built()
        result = self._match(files)
        if result.match is None and not result.ambiguous and self.refresh():
            result = self._match(files)
        if result.match is not None:
            return result.match
        if result.ambiguous:
            raise AmbiguousMatchError(
                f"{len(result.candidates)} Plex items could be this scene; not guessing: "
                + "; ".join(c.path for c in result.candidates[:5]),
                detail={
                    "candidates": [
                        {"rating_key": c.rating_key, "path": c.path} for c in result.candidates
                    ]
                },
            )
        raise NotInPlexError(
            "the scene's file is not in Plex yet (looked for " + ", ".join(result.tried[:3]) + ")",
            detail={"paths": result.tried},
        )

    def request_scan(self, plex_paths: list[str]) -> list[str]:
        """Ask Plex to scan the folders of these files, in the libraries that hold them."""
        scanned = []
        for path in plex_paths:
            folder = posixpath.dirname(path.replace("\\", "/")) if "/" in path else path
            for section in self.sections():
                locations = section.get("locations") or []
                if not locations or any(path.startswith(loc) for loc in locations):
                    self.plex.scan_path(section["id"], folder)
                    scanned.append(f"{section['title']}: {folder}")
        return scanned

    def _match(self, files: list[dict[str, Any]]) -> MatchResult:
        return match_scene(
            files, self.config.path_map, self.store.index_by_path, self.store.index_by_basename
        )


class SceneSyncer:
    def __init__(
        self,
        store: Store,
        stash: StashClient,
        plex: PlexClient,
        config: Config,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.stash = stash
        self.plex = plex
        self.config = config
        self.index = PlexIndex(store, plex, config, clock)

    # ------------------------------------------------------------------ sync
    def sync(self, scene_id: int) -> SyncOutcome:
        scene = self.stash.find_scene(scene_id)
        if scene is None:
            self.store.drop_link(scene_id)
            return SyncOutcome(DELETED)
        files = scene.get("files") or []
        if not files:
            return SyncOutcome(NO_FILE)
        linked = self._linked_match(scene_id, files)
        match = linked or self.index.match(files)
        art = CollectionArt(self.store, self.stash, self.plex, self.config)
        try:
            plan = self.plan(scene, match)
            art.note_wanted(plan.match.section_id, scene)
            written = self.apply(plan)
        except NotInPlexError:
            # The item we knew was deleted in Plex (404): forget it, re-list, match afresh.
            self.store.drop_link(scene_id)
            self.store.drop_from_index(match.rating_key)
            self.index.refresh(force=True, full=True)
            plan = self.plan(scene, self.index.match(files))
            written = self.apply(plan)
        # The collections' own poster and summary (only those Stash2Plex created).
        written += art.ensure(plan.match.section_id, scene)
        return SyncOutcome(
            SYNCED if written else UNCHANGED, plan.match.rating_key, written, plan.preserved
        )

    def plan(self, scene: dict[str, Any], match: Match) -> SyncPlan:
        """What syncing this scene to this item would change. Reads only."""
        scene_id = int(scene["id"])
        link = self.store.link(scene_id)
        same_item = link is not None and link.rating_key == match.rating_key
        pushed = dict(link.fingerprints) if link and same_item else {}
        owned = dict(link.owned) if link and same_item else {}
        desired = desired_item(scene, self.config)
        changes = changed_fields(desired, pushed)

        listed = self.store.listed_collections(match.rating_key) or []
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
        current = None
        # Listings never carry labels: changing ours needs the item's full list.
        labels_unknown = "label" in changes
        if collections_unknown or labels_unknown or (self.config.preserve_plex_edits and pushed):
            current = self.plex.item_detail(match.rating_key)

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
        params = edit_params(
            desired,
            [key for key in changes if key != "rating"],
            pushed_lists=owned,
            collections=full_collections,
            labels=full_labels,
        )
        new_prints = {**pushed, **desired.fingerprints()}
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
            if pushed.get(f"{kind}_url") != fingerprint(url)
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
        )

    def apply(self, plan: SyncPlan) -> list[str]:
        """Write the plan to Plex and record it. Returns what was written."""
        written = [key for key in plan.changes if key != "rating"] if plan.params else []
        match = plan.match
        if plan.params:
            self.plex.edit(match.section_id, match.rating_key, plan.params)
        if "rating" in plan.changes:
            self.plex.rate(match.rating_key, plan.desired.rating)
            written.append("rating")
        downloads: dict[str, tuple[bytes, str]] = {}
        for kind, url in plan.images.items():
            if url not in downloads:
                downloads[url] = self.stash.download(url)
            data, content_type = downloads[url]
            plan.fingerprints[f"{kind}_url"] = fingerprint(url)
            if _is_placeholder(data, content_type):
                continue  # Stash's "no cover" drawing is never worth uploading
            digest = hashlib.sha1(data).hexdigest()
            if plan.fingerprints.get(kind) != digest:
                self.plex.upload_image(match.rating_key, kind, data)
                plan.fingerprints[kind] = digest
                written.append(kind)
        self.store.save_link(
            plan.scene_id,
            match.rating_key,
            match.section_id,
            match.plex_path,
            plan.fingerprints,
            plan.owned,
        )
        return written

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
                and current.tags.get(key, []) != owned[key]
            )
            if text_edited or list_edited:
                edited.append(key)
        return edited

    def _linked_match(self, scene_id: int, files: list[dict[str, Any]]) -> Match | None:
        """The stored link, if the index still shows that item holding that file."""
        link = self.store.link(scene_id)
        if link is None:
            return None
        current_paths = {map_path(str(f.get("path", "")), self.config.path_map) for f in files}
        if link.plex_path not in current_paths:
            return None
        if any(e.rating_key == link.rating_key for e in self.store.index_by_path(link.plex_path)):
            return Match(link.rating_key, link.section_id, link.plex_path, "link")
        return None


def _is_placeholder(data: bytes, content_type: str) -> bool:
    return "svg" in content_type.lower() or data.lstrip()[:5].lower() in (b"<svg ", b"<?xml")
