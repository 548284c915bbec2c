"""Collections that look like Stash: a studio collection shows the studio's image as its poster
and its details as summary; a group collection (setting `collection_groups`) the group's front
image and synopsis.

Only collection objects Stash2Plex created are touched: the first time a scene wants a
collection, the library's collections are listed, and one that already exists then is the
user's (recorded as not ours, never edited). What was put on each collection is fingerprinted
in the store: the summary text and the image URL (Stash's `?t=` changes when the studio or
group changes); the image is downloaded only when its URL changed, and uploaded only when the
content hash differs from the last upload. Stash's stand-in images (`default=true`, SVG) are
never uploaded.

A collection of ours deleted in Plex (a 404 for its stored ratingKey) is forgotten, and made
again as when it was first needed: the items of every scene that had it are tagged again.
One of ours that its last scene left (a studio renamed) is deleted when Plex shows it empty.

In the worker, the sync threads share each library's listing for a few seconds
(`CollectionLookups`), and a collection an edit has just made gets its ratingKey, summary and
poster once the batch's other scenes are done (`CollectionArt.settle`): one listing finds all
the collections a batch made, where a lookup each was one more Plex request per new
collection. The scenes that made them finish with the settle (the worker holds their
results): its failure is theirs, retried, counted and dead-lettered as any other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stash2plex.clients.plex import PlexClient
from stash2plex.clients.stash import StashClient
from stash2plex.errors import NotInPlexError, SyncError, TransientError
from stash2plex.names import name_key
from stash2plex.settings.config import Config
from stash2plex.single_flight import SingleFlight
from stash2plex.store.db import Store
from stash2plex.sync.image_stamps import read_at_text, read_too_early
from stash2plex.sync.metadata import SUMMARY_MAX, TAG_MAX, clean_text, fingerprint


@dataclass(frozen=True)
class Source:
    """What a collection mirrors: a studio or a group's name, text and image."""

    title: str
    summary: str
    image_url: str  # '' when Stash has only its stand-in


def collection_sources(scene: dict[str, Any], config: Config) -> list[Source]:
    """The studio (and, with the settings, parent studio and group) collections of a scene,
    named exactly as `metadata.wanted_collections` names them."""
    if config.skip_collections:
        return []
    sources: list[Source] = []
    studio = scene.get("studio") or {}
    entities = [(studio, "details", "image_path")] if studio.get("name") else []
    parent = studio.get("parent_studio") or {}
    if config.collection_parent_studio and parent.get("name"):
        entities.append((parent, "details", "image_path"))
    if config.collection_groups:
        for entry in scene.get("groups") or []:
            group = entry.get("group") or {}
            if group.get("name"):
                entities.append((group, "synopsis", "front_image_path"))
    seen: set[str] = set()
    for entity, text_key, image_key in entities:
        title = clean_text(entity.get("name"), TAG_MAX)
        if not title or name_key(title) in seen:
            continue
        seen.add(name_key(title))
        url = str(entity.get(image_key) or "")
        sources.append(
            Source(
                title,
                clean_text(entity.get(text_key), SUMMARY_MAX),
                "" if "default=true" in url else url,
            )
        )
    return sources


# A library's listing of collections is trusted this long (seconds) to tell whether a collection
# already exists (the user's) before an edit makes one of ours: a collection the user makes
# with a studio's name in these seconds would be taken for ours.
LISTING_TRUST_SECONDS = 5.0


# A collection waiting for its ratingKey: (library section id, title).
Awaited = tuple[int, str]


class CollectionLookups:
    """What the worker's sync threads share about Plex collections: each library's listing
    (read at most once per LISTING_TRUST_SECONDS, by one thread) and the collections edits
    have made since whose ratingKey is not known yet, awaiting `CollectionArt.settle`.

    Every method is thread-safe.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._reading = SingleFlight()
        self._listings: dict[int, tuple[float, dict[str, int]]] = {}
        self._awaited: dict[Awaited, Source] = {}

    def listing(self, section_id: int, read: Callable[[], dict[str, int]]) -> dict[str, int]:
        """The section's collections by `names.name_key` of their title (ratingKey), as read
        by `read()` within the trust window (threads wanting it at once share one read)."""

        def trusted() -> dict[str, int] | None:
            with self._lock:
                kept = self._listings.get(section_id)
            if kept is not None and 0 <= self.clock() - kept[0] < LISTING_TRUST_SECONDS:
                return kept[1]
            return None

        def fresh() -> dict[str, int]:
            listing = _by_name(read())
            with self._lock:
                self._listings[section_id] = (self.clock(), listing)
            return listing

        return self._reading.run(trusted, fresh)

    def forget(self, section_id: int) -> None:
        """Drop a section's listing (a collection of it was deleted)."""
        with self._lock:
            self._listings.pop(section_id, None)

    def await_key(self, section_id: int, source: Source) -> None:
        """Remember a collection whose ratingKey is still to be found."""
        with self._lock:
            self._awaited[(section_id, source.title)] = source

    def take_awaited(self) -> dict[Awaited, Source]:
        """The awaited collections and what they mirror; forgotten here."""
        with self._lock:
            awaited, self._awaited = self._awaited, {}
        return awaited


class CollectionArt:
    """Poster and summary of the collections one scene's sync touches.

    `lookups`: shared with the worker's other sync threads; a collection whose ratingKey is
    not known yet then waits for `settle`. Without it the collection is looked up at once.
    """

    def __init__(
        self,
        store: Store,
        stash: StashClient,
        plex: PlexClient,
        config: Config,
        lookups: CollectionLookups | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.stash = stash
        self.plex = plex
        self.config = config
        self.clock = clock
        self._settles_later = lookups is not None
        self._lookups = lookups if lookups is not None else CollectionLookups()
        # (section, title) of our collections Plex answered 404 for: deleted in Plex. Their
        # record is forgotten; the syncer has them made again as when first needed.
        self.vanished: list[tuple[int, str]] = []
        # The collections `ensure` left to `settle` (the scene finishes with the settle).
        self.awaited: list[Awaited] = []

    def note_wanted(self, section_id: int, scene: dict[str, Any]) -> None:
        """Before the edit that may create them: remember which wanted collections already
        exist in Plex (the user's) and which Stash2Plex is about to create (ours)."""
        for source in collection_sources(scene, self.config):
            if self.store.plex_collection(section_id, source.title) is not None:
                continue
            # A collection Plex shows in another Unicode form or case is that same one.
            existing = self._lookups.listing(section_id, lambda: self.plex.collections(section_id))
            self.store.save_plex_collection(
                section_id,
                source.title,
                ours=name_key(source.title) not in existing,
                rating_key=existing.get(name_key(source.title)),
            )

    def ensure(self, section_id: int, scene: dict[str, Any]) -> list[str]:
        """After the edit: bring each of our collections' summary and poster up to date.
        Returns what was written ("collection summary", "collection poster")."""
        written: list[str] = []
        for source in collection_sources(scene, self.config):
            row = self.store.plex_collection(section_id, source.title)
            if row is None or not row["ours"] or _up_to_date(row, source):
                continue  # not ours, or nothing changed in Stash: no request at all
            rating_key = row["rating_key"]
            if rating_key is None and self._settles_later:
                self._lookups.await_key(section_id, source)
                self.awaited.append((section_id, source.title))
                continue
            rating_key = rating_key or self._find(section_id, source.title)
            if rating_key is None:
                continue  # not created (yet): the next sync of one of its scenes retries
            written += self._bring_up_to_date(section_id, source, row, rating_key)
        return written

    def settle(self, *, ask_plex: bool = True) -> dict[Awaited, SyncError]:
        """Find the collections edits have made since the last call (one listing per library)
        and bring their summary and poster up to date. Returns the collections this failed
        for, with the error (a failed listing fails its whole library; `ask_plex` False: Plex
        is down, the breaker open, and is not asked). A collection Plex does not list is left
        to the next sync of one of its scenes, as a collection not made yet."""
        awaited = self._lookups.take_awaited()
        failed: dict[Awaited, SyncError] = {}
        for section_id in sorted({section for section, _ in awaited}):
            titles = sorted(title for section, title in awaited if section == section_id)
            try:
                if not ask_plex:
                    raise TransientError(
                        "Plex is down (the circuit breaker is open)", server="plex"
                    )
                listing = _by_name(self.plex.collections(section_id))
            except SyncError as exc:
                failed.update(dict.fromkeys(((section_id, title) for title in titles), exc))
                continue
            for title in titles:
                row = self.store.plex_collection(section_id, title)
                rating_key = listing.get(name_key(title))
                if row is None or not row["ours"] or rating_key is None:
                    continue
                try:
                    self._bring_up_to_date(
                        section_id, awaited[(section_id, title)], row, rating_key
                    )
                except SyncError as exc:
                    failed[(section_id, title)] = exc
        return failed

    def _bring_up_to_date(
        self, section_id: int, source: Source, row: dict[str, Any], rating_key: int
    ) -> list[str]:
        """Write what changed in Stash of one collection of ours; record what was put on it
        (each write as it succeeds: a poster Plex refuses does not send the summary again)."""
        written: list[str] = []
        prints = dict(row["fingerprints"])
        summary_print = fingerprint(source.summary)
        url_print = fingerprint(source.image_url)
        try:
            if prints.get("summary") != summary_print:
                self.plex.edit_collection(
                    section_id,
                    rating_key,
                    {"summary.value": source.summary, "summary.locked": 1},
                )
                prints["summary"] = summary_print
                written.append("collection summary")
                self.store.save_plex_collection(
                    section_id, source.title, ours=True, rating_key=rating_key, fingerprints=prints
                )
            if prints.get("image_url") != url_print or read_too_early(
                source.image_url, prints.get("image_read_at")
            ):
                if source.image_url and self._upload(rating_key, source.image_url, prints):
                    written.append("collection poster")
                prints["image_url"] = url_print
        except NotInPlexError:
            # Deleted in Plex (which also took it off its items): not the scene's problem.
            self.store.forget_plex_collection(section_id, source.title)
            self._lookups.forget(section_id)
            self.vanished.append((section_id, source.title))
            return []
        self.store.save_plex_collection(
            section_id, source.title, ours=True, rating_key=rating_key, fingerprints=prints
        )
        return written

    def drop_emptied(self, section_id: int, titles: list[str]) -> list[str]:
        """After a scene's items left these collections (its studio renamed, its group
        removed): delete each one Stash2Plex created that no scene of ours is in any more and
        that Plex shows empty, so a renamed studio leaves no empty collection behind. One
        the user put items into is kept. Returns "collection deleted" per deletion."""
        written: list[str] = []
        for title in titles:
            row = self.store.plex_collection(section_id, title)
            if row is None or not row["ours"]:
                continue
            if self.store.scenes_with_collection(section_id, title):
                continue  # other scenes' items are still in it
            rating_key = row["rating_key"] or self._find(section_id, title)
            try:
                if rating_key is not None and self.plex.collection_size(rating_key) > 0:
                    continue  # items we did not put there: the user's now
                if rating_key is not None:
                    self.plex.delete_collection(rating_key)
                    written.append("collection deleted")
            except NotInPlexError:
                pass  # already gone (Plex may remove an emptied collection itself)
            self.store.forget_plex_collection(section_id, title)
            self._lookups.forget(section_id)
        return written

    def _upload(self, rating_key: int, url: str, prints: dict[str, str]) -> bool:
        prints["image_read_at"] = read_at_text(self.clock())  # as the request leaves
        image = self.stash.image(url)
        if image.placeholder or prints.get("poster") == image.sha1:
            return False
        self.plex.upload_image(rating_key, "poster", image.data)
        prints["poster"] = image.sha1
        return True

    def _find(self, section_id: int, title: str) -> int | None:
        return _by_name(self.plex.collections(section_id, title=title)).get(name_key(title))


def _up_to_date(row: dict[str, Any], source: Source) -> bool:
    """Whether a collection shows the source's summary and image as last written."""
    prints = row["fingerprints"]
    return (
        prints.get("summary") == fingerprint(source.summary)
        and prints.get("image_url") == fingerprint(source.image_url)
        and not read_too_early(source.image_url, prints.get("image_read_at"))
    )


def _by_name(collections: dict[str, int]) -> dict[str, int]:
    """Collections by `names.name_key` of their title."""
    return {name_key(title): rating_key for title, rating_key in collections.items()}
