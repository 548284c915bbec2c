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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stash2plex.clients.plex import PlexClient
from stash2plex.clients.stash import StashClient
from stash2plex.errors import NotInPlexError
from stash2plex.names import name_key
from stash2plex.settings.config import Config
from stash2plex.store.db import Store
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


class CollectionArt:
    """Poster and summary of the collections one scene's sync touches."""

    def __init__(self, store: Store, stash: StashClient, plex: PlexClient, config: Config) -> None:
        self.store = store
        self.stash = stash
        self.plex = plex
        self.config = config
        self._listed: dict[int, dict[str, int]] = {}
        # (section, title) of our collections Plex answered 404 for: deleted in Plex. Their
        # record is forgotten; the syncer has them made again as when first needed.
        self.vanished: list[tuple[int, str]] = []

    def note_wanted(self, section_id: int, scene: dict[str, Any]) -> None:
        """Before the edit that may create them: remember which wanted collections already
        exist in Plex (the user's) and which Stash2Plex is about to create (ours)."""
        for source in collection_sources(scene, self.config):
            if self.store.plex_collection(section_id, source.title) is not None:
                continue
            # A collection Plex shows in another Unicode form or case is that same one.
            existing = _by_name(self._listing(section_id))
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
            if row is None or not row["ours"]:
                continue
            prints = dict(row["fingerprints"])
            summary_print = fingerprint(source.summary)
            url_print = fingerprint(source.image_url)
            if prints.get("summary") == summary_print and prints.get("image_url") == url_print:
                continue  # nothing changed in Stash: no request at all
            rating_key = row["rating_key"] or self._find(section_id, source.title)
            if rating_key is None:
                continue  # not created (yet): the next sync of one of its scenes retries
            try:
                if prints.get("summary") != summary_print:
                    self.plex.edit_collection(
                        section_id,
                        rating_key,
                        {"summary.value": source.summary, "summary.locked": 1},
                    )
                    prints["summary"] = summary_print
                    written.append("collection summary")
                if prints.get("image_url") != url_print:
                    if source.image_url and self._upload(rating_key, source.image_url, prints):
                        written.append("collection poster")
                    prints["image_url"] = url_print
            except NotInPlexError:
                # Deleted in Plex (which also took it off its items): not the scene's problem.
                self.store.forget_plex_collection(section_id, source.title)
                self._listed.pop(section_id, None)
                self.vanished.append((section_id, source.title))
                continue
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
            self._listed.pop(section_id, None)
        return written

    def _upload(self, rating_key: int, url: str, prints: dict[str, str]) -> bool:
        image = self.stash.image(url)
        if image.placeholder or prints.get("poster") == image.sha1:
            return False
        self.plex.upload_image(rating_key, "poster", image.data)
        prints["poster"] = image.sha1
        return True

    def _listing(self, section_id: int) -> dict[str, int]:
        if section_id not in self._listed:
            self._listed[section_id] = self.plex.collections(section_id)
        return self._listed[section_id]

    def _find(self, section_id: int, title: str) -> int | None:
        return _by_name(self.plex.collections(section_id, title=title)).get(name_key(title))


def _by_name(collections: dict[str, int]) -> dict[str, int]:
    """Collections by `names.name_key` of their title."""
    return {name_key(title): rating_key for title, rating_key in collections.items()}
