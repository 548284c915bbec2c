"""Sync one scene: read it from Stash, match it, diff against what we pushed, write, record.

The I/O sequence lives here; the decisions are pure functions in `metadata` and `matching`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Config
from .errors import AmbiguousMatchError, NotInPlexError
from .matching import Match, match_scene
from .metadata import changed_fields, desired_item, edit_params
from .plex_client import PlexClient
from .stash_client import StashClient
from .store import Store

SYNCED = "synced"
UNCHANGED = "unchanged"
DELETED = "deleted"
NO_FILE = "no_file"

# A scene missing from the index triggers a re-listing at most this often, so a burst of
# scenes Plex has not scanned yet costs one listing, not one per scene.
INDEX_REFRESH_MIN_SECONDS = 30.0


@dataclass(frozen=True)
class SyncOutcome:
    status: str
    rating_key: int | None = None
    written: list[str] = field(default_factory=list)


class PlexIndex:
    """The stored index of the configured Plex libraries, refreshed by paged listings."""

    def __init__(
        self, store: Store, plex: PlexClient, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.plex = plex
        self.config = config
        self.clock = clock

    def section_ids(self) -> list[int]:
        cached = self.store.get_value("plex_sections")
        wanted = list(self.config.plex_library)
        if cached and cached.get("wanted") == wanted and cached.get("url") == self.config.plex_url:
            return list(cached["ids"])
        sections = self.plex.sections()
        if wanted:
            by_title = {s.title.strip().lower(): s for s in sections}
            missing = [name for name in wanted if name.strip().lower() not in by_title]
            if missing:
                from .errors import PermanentError

                raise PermanentError(
                    f"Plex has no library named {', '.join(missing)}; set `plex_library` to one "
                    f"of: {', '.join(s.title for s in sections) or '(none)'}"
                )
            ids = [by_title[name.strip().lower()].id for name in wanted]
        else:
            ids = [s.id for s in sections if s.type == "movie"]
        self.store.put_value(
            "plex_sections", {"wanted": wanted, "url": self.config.plex_url, "ids": ids}
        )
        return ids

    def refresh(self, *, force: bool = False) -> bool:
        """Re-list the libraries unless that happened very recently. True if it re-listed."""
        last = self.store.get_value("plex_index_refreshed_at", 0.0)
        if not force and self.clock() - float(last) < INDEX_REFRESH_MIN_SECONDS:
            return False
        for section_id in self.section_ids():
            self.store.replace_index(section_id, self.plex.list_section(section_id))
        self.store.put_value("plex_index_refreshed_at", self.clock())
        return True

    def ensure_built(self) -> None:
        if self.store.get_value("plex_index_refreshed_at") is None:
            self.refresh(force=True)

    def match(self, files: list[dict]) -> Match:
        """Match, re-listing once if the file is not in the index yet."""
        self.ensure_built()
        result = self._match(files)
        if result.match is None and not result.ambiguous and self.refresh():
            result = self._match(files)
        if result.match is not None:
            return result.match
        if result.ambiguous:
            raise AmbiguousMatchError(
                f"{len(result.candidates)} Plex items could be this scene; not guessing",
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

    def _match(self, files: list[dict]):  # -> MatchResult
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

    def sync(self, scene_id: int) -> SyncOutcome:
        scene = self.stash.find_scene(scene_id)
        if scene is None:
            self.store.drop_link(scene_id)
            return SyncOutcome(DELETED)
        files = scene.get("files") or []
        if not files:
            return SyncOutcome(NO_FILE)
        match = self._linked_match(scene_id, files) or self.index.match(files)
        link = self.store.link(scene_id)
        pushed = link.fingerprints if link and link.rating_key == match.rating_key else {}
        desired = desired_item(scene, self.config)
        changed = changed_fields(desired, pushed)
        if changed:
            self.plex.edit(match.section_id, match.rating_key, edit_params(desired, changed))
        self.store.save_link(
            scene_id,
            match.rating_key,
            match.section_id,
            match.plex_path,
            {**pushed, **desired.fingerprints()},
        )
        return SyncOutcome(SYNCED if changed else UNCHANGED, match.rating_key, changed)

    def _linked_match(self, scene_id: int, files: list[dict]) -> Match | None:
        """The stored link, if the index still shows that item holding that file."""
        link = self.store.link(scene_id)
        if link is None:
            return None
        from .pathmap import map_path

        current_paths = {map_path(str(f.get("path", "")), self.config.path_map) for f in files}
        if link.plex_path not in current_paths:
            return None
        if any(e.rating_key == link.rating_key for e in self.store.index_by_path(link.plex_path)):
            return Match(link.rating_key, link.section_id, link.plex_path, "link")
        return None
