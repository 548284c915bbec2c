"""The emulated Plex library: sections, items, tags, locks, images, collections and scans.

Pure in-memory state and the edit semantics of `docs/plex-api-contract.md` §3-4, with no I/O.
`plex_emulator` serves it over HTTP and `plex_xml` renders it. Every public method takes the
library's re-entrant lock, so the HTTP threads and a test thread can use one library at once.

Behaviour the contract marks [unverified] is a switch in `Behaviour`; tests run both settings.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, unquote

SEARCH_TYPE_MOVIE = 1
SEARCH_TYPE_COLLECTION = 18

# Tag families the edit endpoint accepts, mapped to the XML element that carries them.
TAG_ELEMENTS: dict[str, str] = {
    "genre": "Genre",
    "country": "Country",
    "director": "Director",
    "writer": "Writer",
    "producer": "Producer",
    "collection": "Collection",
    "label": "Label",
    "actor": "Role",
}
# Plain string fields an edit may set with `X.value`.
TEXT_FIELDS = (
    "title",
    "titleSort",
    "originalTitle",
    "summary",
    "tagline",
    "studio",
    "contentRating",
    "editionTitle",
)
NUMBER_FIELDS = ("rating", "audienceRating")
EDITABLE_FIELDS = frozenset(
    (*TEXT_FIELDS, *NUMBER_FIELDS, "originallyAvailableAt", "year", "addedAt")
)
COLLECTION_FIELDS = frozenset(("title", "titleSort", "summary", "contentRating"))
# What an agent refresh may overwrite when unlocked (collections and labels are the user's).
AGENT_TEXT_FIELDS = ("title", "titleSort", "originalTitle", "summary", "tagline", "studio")
AGENT_TAG_FAMILIES = ("genre", "country", "director", "writer", "producer", "actor")

# (agent, scanner) Plex gives a new section of each type.
SECTION_DEFAULTS: dict[str, tuple[str, str]] = {
    "movie": ("tv.plex.agents.none", "Plex Video Files Scanner"),
    "show": ("tv.plex.agents.series", "Plex TV Series"),
    "artist": ("tv.plex.agents.music", "Plex Music"),
    "photo": ("com.plexapp.agents.none", "Plex Photo Scanner"),
}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TAG_SET = re.compile(r"^([A-Za-z]+)\[(\d+)\]\.(tag|tagging)\.([A-Za-z]+)$")
_TAG_REMOVE = re.compile(r"^([A-Za-z]+)\[\]\.tag\.tag-$")
_TAG_CLEAR = re.compile(r"^([A-Za-z]+)\[\]\.tag$")
_URI = re.compile(r"^server://([^/]+)/com\.plexapp\.plugins\.library(/.*)$")


class PlexError(Exception):
    """A request the emulated server refuses; `status` is the HTTP answer (400, 404, 409)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or str(status))
        self.status = status


@dataclass
class Behaviour:
    """Switches, settable at run time, for behaviour a real PMS may or may not have."""

    truncate_listing_tags: bool = True
    """Listings carry at most 2 genres, 3 roles, 2 collections, 1 director... (real shape)."""
    scan_delay: float = 0.5
    """Seconds (on the injected clock) between a scan request and its new items."""
    refresh_delay: float = 0.0
    """Seconds before an item refresh lands; 0 applies it while answering the request."""
    unknown_id_put_status: int = 404
    """[unverified] Answer to an edit or rating of an unknown ratingKey: 404, or 200 (ignored)."""
    multi_edit_adds_tags: bool = False
    """[unverified] A multi-id (or no-id) tag edit adds the tags instead of replacing the list."""
    agent_overwrites_unlocked: bool = True
    """A refresh resets unlocked fields to what the agent knows (title: file stem)."""
    upload_url_failure_status: int = 400
    """[unverified] Answer when a poster `?url=` cannot be downloaded: 400, or 200 (dropped)."""
    upload_selects_image: bool = True
    """[unverified] An uploaded poster/art becomes the selected one."""
    image_change_locks: bool = True
    """[unverified] Uploading or selecting a poster/art locks `thumb`/`art`."""
    delete_empty_collections: bool = False
    """[unverified] Removing the last collection tag deletes the collection object."""
    title_search_includes_original_title: bool = False
    """[unverified] `title=` also matches `originalTitle`."""
    watched_threshold: float = 0.9
    """Share of the duration a stopped or progressing timeline must reach to count as a play
    (PMS's default "video played threshold" is 90%)."""
    unscrobble_clears_history: bool = False
    """[unverified] Marking an item unplayed also deletes its history entries."""
    path_change_bumps_updated_at: bool = False
    """[unverified] A file renamed in place (Plex keeps the item and its ratingKey; the part
    gets the new path) bumps the item's `updatedAt`. Off: only the part changes."""


@dataclass(frozen=True)
class ActorState:
    """One `<Role>`: the person, their character and their photo URL."""

    name: str
    role: str | None
    thumb: str | None


@dataclass(frozen=True)
class AgentMetadata:
    """What a Plex metadata agent found for an item: shown after the scan that added it,
    restored by a refresh for every unlocked field. Nothing is locked by an agent."""

    title: str
    summary: str = ""
    studio: str = ""
    originally_available_at: str | None = None
    tagline: str = ""
    genres: tuple[str, ...] = ()
    actors: tuple[ActorState, ...] = ()
    directors: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    guid: str | None = None  # e.g. plex://movie/5d776..., else one is made up

    def text(self) -> dict[str, str]:
        return {
            "title": self.title,
            "summary": self.summary,
            "studio": self.studio,
            "tagline": self.tagline,
        }

    def tags(self) -> dict[str, list[Tag]]:
        return {
            "genre": [Tag(name) for name in self.genres],
            "actor": [Tag(a.name, a.thumb, a.role) for a in self.actors],
            "director": [Tag(name) for name in self.directors],
            "country": [Tag(name) for name in self.countries],
        }


@dataclass(frozen=True)
class ImageState:
    """One stored poster or art (`sha1` of its bytes; `selected` is the one shown)."""

    rating_key: str
    provider: str | None
    selected: bool
    sha1: str


@dataclass(frozen=True)
class ItemState:
    """A snapshot of one emulated item, as Plex holds it (not as a listing truncates it)."""

    rating_key: int
    section_id: int
    title: str
    title_sort: str
    summary: str
    studio: str
    originally_available_at: str | None
    year: int | None
    user_rating: float | None
    content_rating: str
    locked: frozenset[str]
    genres: list[str]
    collections: list[str]
    labels: list[str]
    directors: list[str]
    actors: list[ActorState]
    files: list[str]
    posters: list[ImageState]
    arts: list[ImageState]
    poster_sha1: str | None
    art_sha1: str | None
    updated_at: int
    refresh_count: int
    edit_count: int
    # Beyond the agreed API: more fields the edit endpoint sets.
    tagline: str = ""
    original_title: str = ""
    writers: list[str] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    added_at: int = 0
    # The view state of the token's owner (account 1), as the item's XML shows it.
    view_count: int = 0
    last_viewed_at: int | None = None
    view_offset: int = 0
    last_rated_at: int | None = None
    guid: str = ""


@dataclass(frozen=True)
class CollectionState:
    """A collection object; `index` is its tag id, `children` its items in order."""

    title: str
    rating_key: int
    index: int
    children: list[int]
    section_id: int
    smart: bool = False
    summary: str = ""
    poster_sha1: str | None = None
    locked: frozenset[str] = frozenset()


@dataclass
class Tag:
    name: str
    thumb: str | None = None
    role: str | None = None


@dataclass
class Image:
    rating_key: str
    provider: str | None
    sha1: str
    data: bytes
    selected: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    """One play in the server's watch history (`/status/sessions/history/all`)."""

    id: int
    rating_key: int
    section_id: int
    account_id: int
    device_id: int
    viewed_at: int


@dataclass
class ViewState:
    """One account's view state of one item."""

    view_count: int = 0
    last_viewed_at: int | None = None
    view_offset: int = 0  # milliseconds; 0 when not partly watched


@dataclass
class Part:
    id: int
    file: str
    size: int


@dataclass
class Section:
    key: int
    title: str
    type: str
    locations: list[tuple[int, str]]
    uuid: str
    agent: str
    scanner: str
    language: str
    created_at: int
    updated_at: int
    scanned_at: int


@dataclass
class Item:
    rating_key: int
    section_id: int
    parts: list[Part]
    duration_ms: int
    added_at: int
    updated_at: int
    guid: str
    agent_title: str
    text: dict[str, str]
    originally_available_at: str | None = None
    year: int | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    user_rating: float | None = None
    last_rated_at: int | None = None
    locked: set[str] = field(default_factory=set)
    tags: dict[str, list[Tag]] = field(default_factory=dict)
    posters: list[Image] = field(default_factory=list)
    arts: list[Image] = field(default_factory=list)
    refresh_count: int = 0
    edit_count: int = 0
    views: dict[int, ViewState] = field(default_factory=dict)  # account id -> state
    agent: AgentMetadata | None = None
    stacked: bool = False  # the parts are one film in pieces (one Media), not versions

    @property
    def title(self) -> str:
        return self.text.get("title", "")

    def view(self, account_id: int = 1) -> ViewState:
        """The view state of one account (the token's owner, 1, by default)."""
        return self.views.get(account_id) or ViewState()

    @property
    def title_sort(self) -> str:
        # Plex falls back to the title when no sort title is set.
        return self.text.get("titleSort") or self.title

    def names(self, family: str) -> list[str]:
        return [tag.name for tag in self.tags.get(family, [])]

    def selected(self, kind: str) -> Image | None:
        return next((img for img in self.images(kind) if img.selected), None)

    def images(self, kind: str) -> list[Image]:
        return self.posters if kind == "thumb" else self.arts

    @property
    def files(self) -> list[str]:
        return [part.file for part in self.parts]

    @property
    def media_size(self) -> int:
        return sum(part.size for part in self.parts)


@dataclass
class Collection:
    rating_key: int
    section_id: int
    title: str
    children: list[int]
    added_at: int
    updated_at: int
    guid: str
    smart: bool = False
    content: str | None = None  # the search URI of a smart collection
    text: dict[str, str] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    user_rating: float | None = None
    last_rated_at: int | None = None
    edit_count: int = 0
    posters: list[Image] = field(default_factory=list)
    arts: list[Image] = field(default_factory=list)

    @property
    def title_sort(self) -> str:
        return self.text.get("titleSort") or self.title

    def selected(self, kind: str) -> Image | None:
        return next((img for img in self.images(kind) if img.selected), None)

    def images(self, kind: str) -> list[Image]:
        return self.posters if kind == "thumb" else self.arts


@dataclass
class _Edit:
    """One parsed `PUT /library/sections/{id}/all`."""

    ids: list[int] | None
    search_type: int
    fields: dict[str, str]
    locks: dict[str, bool]
    tag_sets: dict[str, dict[int, dict[str, str]]]
    tag_removals: dict[str, list[str]]
    tag_clears: set[str]


def file_stem(path: str) -> str:
    """The file name without directory or extension (Windows or POSIX separators)."""
    name = re.split(r"[\\/]", path)[-1]
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/\\")
    return path == folder or path.startswith((folder + "/", folder + "\\"))


def _date_epoch(value: str | None) -> int | None:
    if not value:
        return None
    return int(datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())


class PlexLibrary:
    """All emulated server state. Thread-safe: every public method holds `lock`."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        behaviour: Behaviour | None = None,
        machine_identifier: str | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.behaviour = behaviour or Behaviour()
        self.machine_identifier = machine_identifier or uuid.uuid4().hex + uuid.uuid4().hex[:8]
        # Signed in to a Plex account (`GET /identity` claimed="1", the root's
        # myPlexSigninState "ok"); a fresh install is not.
        self.claimed = False
        self.sections: dict[int, Section] = {}
        self.items: dict[int, Item] = {}
        self.collections: dict[int, Collection] = {}
        # Path -> {section id: ratingKey}: one file may be in several libraries (two sections
        # whose folders overlap), one item in each, as a real Plex holds it.
        self._by_file: dict[str, dict[int, int]] = {}
        self._scannable: dict[int, dict[str, int]] = {}
        # Files of deleted libraries: deleting a library in Plex leaves its media on disk,
        # where a library added again over the same folders finds them (path -> size).
        self._left_on_disk: dict[str, int] = {}
        self._sections_created = 0
        self._pending_scans: list[tuple[float, int, str | None, bool]] = []
        self._pending_refreshes: list[tuple[float, int]] = []
        self._tag_ids: dict[tuple[str, str], int] = {}
        self._next_rating_key = 1
        self._next_part_id = 1
        self._next_tag_id = 1000
        self._next_location_id = 1
        self.created_at = self.now()
        # Server accounts (`/accounts`): 0 is the system, 1 the server owner (the token's).
        self.accounts: dict[int, str] = {0: "", 1: "owner"}
        self.history: list[HistoryEntry] = []
        self._next_history_id = 1
        # Callbacks that receive every notification the websocket would carry.
        self.subscribers: list[Callable[[dict], None]] = []
        self._next_session_key = 1
        self._scrobbled_sessions: set[int] = set()

    # ------------------------------------------------------------------ helpers
    def now(self) -> int:
        return int(self.clock())

    def _new_rating_key(self) -> int:
        key = self._next_rating_key
        self._next_rating_key += 1
        return key

    def tag_id(self, family: str, name: str) -> int:
        """The id of a tag, created on first use (PMS creates tags on the fly)."""
        key = (family, name)
        if key not in self._tag_ids:
            self._tag_ids[key] = self._next_tag_id
            self._next_tag_id += 1
        return self._tag_ids[key]

    def section(self, section_id: int) -> Section:
        try:
            return self.sections[section_id]
        except KeyError:
            raise PlexError(404, f"no section {section_id}") from None

    def get_item(self, rating_key: int) -> Item:
        try:
            return self.items[rating_key]
        except KeyError:
            raise PlexError(404, f"no item {rating_key}") from None

    def get_collection(self, rating_key: int) -> Collection:
        try:
            return self.collections[rating_key]
        except KeyError:
            raise PlexError(404, f"no collection {rating_key}") from None

    def scanning(self, section_id: int) -> bool:
        with self.lock:
            return any(sid == section_id for _, sid, _, _ in self._pending_scans)

    # ------------------------------------------------------------------ library setup
    def add_section(
        self,
        title: str,
        locations: Sequence[str],
        type: str = "movie",
        *,
        agent: str | None = None,
        scanner: str | None = None,
        language: str = "xn",
    ) -> int:
        """A section; agent and scanner default to what Plex picks for its type (personal
        media for movies, the series agent and scanner for TV shows)."""
        default_agent, default_scanner = SECTION_DEFAULTS.get(type, SECTION_DEFAULTS["movie"])
        agent = agent or default_agent
        scanner = scanner or default_scanner
        with self.lock:
            # As an SQLite rowid: the newest key, deleted, is given again (whether PMS does is
            # unverified; Stash2Plex copes with either).
            key = max(self.sections, default=0) + 1
            locs = []
            for path in locations:
                locs.append((self._next_location_id, path))
                self._next_location_id += 1
            now = self.now()
            # A library added again under the same key is another library: another uuid.
            self._sections_created += 1
            section_uuid = str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL,
                    f"{self.machine_identifier}/{key}/{self._sections_created}",
                )
            )
            self.sections[key] = Section(
                key, title, type, locs, section_uuid, agent, scanner, language, now, now, now
            )
            # A new library's folders may already hold media (the files of a library deleted
            # before): its first scan finds them.
            self._scannable[key] = {
                path: size
                for path, size in self._disk_files().items()
                if any(_under(path, folder) for _, folder in locs)
            }
            return key

    def _disk_files(self) -> dict[str, int]:
        """Every media file this Plex knows on disk (path -> size): in its items, waiting for
        a scan, or left by a deleted library."""
        files = dict(self._left_on_disk)
        for scannable in self._scannable.values():
            files.update(scannable)
        for item in self.items.values():
            files.update((part.file, part.size) for part in item.parts)
        return files

    def add_item(
        self,
        section_id: int,
        files: str | Sequence[str],
        *,
        sizes: int | Sequence[int] | None = None,
        title: str | None = None,
        duration_ms: int = 600_000,
        agent: AgentMetadata | None = None,
        stacked: bool = False,
    ) -> int:
        """An item with one part per file: several files are versions (one Media each), or
        with `stacked` one film Plex stacked from `- part1`, `- part2` files (one Media with a
        Part each). `agent`: what a metadata agent found for it (title, summary, studio, date,
        genres, actors...), as after a scan in a library with a real agent."""
        with self.lock:
            if section_id not in self.sections:
                raise KeyError(section_id)
            section = self.sections[section_id]
            if section.type != "movie":
                raise ValueError(
                    f"the emulator holds items only in movie sections, not {section.type}"
                )
            paths = [files] if isinstance(files, str) else list(files)
            if not paths:
                raise ValueError("an item needs at least one file")
            if sizes is None:
                size_list = [1_000_000] * len(paths)
            elif isinstance(sizes, int):
                size_list = [sizes] * len(paths)
            else:
                size_list = list(sizes)
            if len(size_list) != len(paths):
                raise ValueError("sizes must match files one to one")
            for path in paths:
                if section_id in self._by_file.get(path, {}):
                    raise ValueError(f"{path} is already in the library {section.title!r}")
            key = self._new_rating_key()
            parts = []
            for path, size in zip(paths, size_list, strict=True):
                parts.append(Part(self._next_part_id, path, int(size)))
                self._next_part_id += 1
                self._by_file.setdefault(path, {})[section_id] = key
            now = self.now()
            item_title = title if title is not None else file_stem(paths[0])
            item = Item(
                rating_key=key,
                section_id=section_id,
                parts=parts,
                duration_ms=duration_ms,
                added_at=now,
                updated_at=now,
                guid=f"local://{key}",
                agent_title=item_title,
                text={"title": item_title},
            )
            item.stacked = stacked and len(parts) > 1
            if agent is not None:
                item.agent = agent
                item.agent_title = agent.title
                item.guid = (
                    agent.guid or f"plex://movie/{hashlib.sha1(str(key).encode()).hexdigest()[:24]}"
                )
                self._apply_agent(item, set())
            self.items[key] = item
            section.updated_at = now
            return key

    def move_file(
        self, old_path: str, new_path: str, size: int | None = None, section_id: int | None = None
    ) -> int:
        """A file renamed or moved on disk and found again by a scan: Plex keeps the item (its
        ratingKey, addedAt and metadata) and the part gets the new path. Returns the ratingKey.
        `section_id`: which library's item, when the file is in several (default: the first)."""
        with self.lock:
            key = self.find_by_file(old_path, section_id)
            if key is None:
                raise KeyError(old_path)
            item = self.items[key]
            if item.section_id in self._by_file.get(new_path, {}):
                raise ValueError(f"{new_path} is already in the library")
            for part in item.parts:
                if part.file == old_path:
                    part.file = new_path
                    if size is not None:
                        part.size = int(size)
            self._forget_file(old_path, item.section_id)
            self._by_file.setdefault(new_path, {})[item.section_id] = key
            if self.behaviour.path_change_bumps_updated_at:
                item.updated_at = self.now()
            return key

    def delete_item(self, rating_key: int) -> None:
        with self.lock:
            item = self.items.pop(rating_key, None)
            if item is None:
                raise KeyError(rating_key)
            for part in item.parts:
                self._forget_file(part.file, item.section_id)
            for coll in self.collections.values():
                if rating_key in coll.children:
                    coll.children.remove(rating_key)

    def delete_section(self, section_id: int) -> None:
        """Remove a library with its items and collections (Plex Web: Manage Library >
        Delete); their keys then answer 404."""
        with self.lock:
            if section_id not in self.sections:
                raise KeyError(section_id)
            for key in [k for k, item in self.items.items() if item.section_id == section_id]:
                self._left_on_disk.update((p.file, p.size) for p in self.items[key].parts)
                self.delete_item(key)
            self._left_on_disk.update(self._scannable.get(section_id, {}))
            for coll in self.section_collections(section_id):
                del self.collections[coll.rating_key]
            del self.sections[section_id]
            self._scannable.pop(section_id, None)

    def add_scannable_file(self, section_id: int, path: str, size: int = 1_000_000) -> None:
        with self.lock:
            if section_id not in self.sections:
                raise KeyError(section_id)
            self._scannable[section_id][path] = size

    # ------------------------------------------------------------------ snapshots
    def item_state(self, rating_key: int) -> ItemState:
        with self.lock:
            item = self.items[rating_key]
            return ItemState(
                rating_key=item.rating_key,
                section_id=item.section_id,
                title=item.title,
                title_sort=item.title_sort,
                summary=item.text.get("summary", ""),
                studio=item.text.get("studio", ""),
                originally_available_at=item.originally_available_at,
                year=item.year,
                user_rating=item.user_rating,
                content_rating=item.text.get("contentRating", ""),
                locked=frozenset(item.locked),
                genres=item.names("genre"),
                collections=item.names("collection"),
                labels=item.names("label"),
                directors=item.names("director"),
                actors=[ActorState(t.name, t.role, t.thumb) for t in item.tags.get("actor", [])],
                files=item.files,
                posters=[_image_state(img) for img in item.posters],
                arts=[_image_state(img) for img in item.arts],
                poster_sha1=_selected_sha1(item.posters),
                art_sha1=_selected_sha1(item.arts),
                updated_at=item.updated_at,
                refresh_count=item.refresh_count,
                edit_count=item.edit_count,
                tagline=item.text.get("tagline", ""),
                original_title=item.text.get("originalTitle", ""),
                writers=item.names("writer"),
                producers=item.names("producer"),
                countries=item.names("country"),
                sizes=[part.size for part in item.parts],
                added_at=item.added_at,
                view_count=item.view().view_count,
                last_viewed_at=item.view().last_viewed_at,
                view_offset=item.view().view_offset,
                last_rated_at=item.last_rated_at,
                guid=item.guid,
            )

    def item_keys(self, section_id: int | None = None) -> list[int]:
        with self.lock:
            return [
                key
                for key, item in self.items.items()
                if section_id is None or item.section_id == section_id
            ]

    def find_by_file(self, path: str, section_id: int | None = None) -> int | None:
        """The item holding this file in that library (default: in the first library that
        has it)."""
        with self.lock:
            held = self._by_file.get(path, {})
            if section_id is not None:
                return held.get(section_id)
            return held[min(held)] if held else None

    def _forget_file(self, path: str, section_id: int) -> None:
        held = self._by_file.get(path, {})
        held.pop(section_id, None)
        if not held:
            self._by_file.pop(path, None)

    def collection_states(self, section_id: int) -> list[CollectionState]:
        with self.lock:
            return [
                CollectionState(
                    c.title,
                    c.rating_key,
                    self.tag_id("collection", c.title),
                    self.collection_children(c),
                    c.section_id,
                    c.smart,
                    c.text.get("summary", ""),
                    _selected_sha1(c.posters),
                    frozenset(c.locked),
                )
                for c in self.collections.values()
                if c.section_id == section_id
            ]

    # ------------------------------------------------------------------ scans and refreshes
    def request_scan(self, section_id: int | None, path: str | None, force: bool = False) -> None:
        """Queue a scan of one section (or all, `None`), optionally only under `path`."""
        with self.lock:
            due = self.clock() + self.behaviour.scan_delay
            targets = [section_id] if section_id is not None else list(self.sections)
            for sid in targets:
                self.section(sid)
                self._pending_scans.append((due, sid, path, force))

    def cancel_scans(self, section_id: int | None) -> None:
        with self.lock:
            self._pending_scans = [
                s for s in self._pending_scans if section_id is not None and s[1] != section_id
            ]

    def pending_scans(self) -> list[tuple[int, str | None]]:
        """(section id, path) of every scan not applied yet, oldest first."""
        with self.lock:
            return [(sid, path) for _, sid, path, _ in self._pending_scans]

    def request_refresh(self, rating_key: int) -> None:
        with self.lock:
            item = self.get_item(rating_key)
            item.refresh_count += 1
            delay = self.behaviour.refresh_delay
            if delay <= 0:
                self._agent_refresh(item)
            else:
                self._pending_refreshes.append((self.clock() + delay, rating_key))

    def run_due_scans(self) -> None:
        """Apply every scan and refresh whose time has come (lazily; no timer threads)."""
        with self.lock:
            if not self._pending_scans and not self._pending_refreshes:
                return
            now = self.clock()
            due = [s for s in self._pending_scans if s[0] <= now]
            self._pending_scans = [s for s in self._pending_scans if s[0] > now]
            for _, section_id, path, force in sorted(due, key=lambda s: s[0]):
                if section_id in self.sections:
                    self._scan(section_id, path, force)
            refreshes = [r for r in self._pending_refreshes if r[0] <= now]
            self._pending_refreshes = [r for r in self._pending_refreshes if r[0] > now]
            for _, rating_key in refreshes:
                if rating_key in self.items:
                    self._agent_refresh(self.items[rating_key])

    def _scan(self, section_id: int, path: str | None, force: bool) -> None:
        found = self._scannable[section_id]
        # One item per file, in path order, as a scanner walking the folder would add them.
        for file_path in sorted(found):
            if (path is None or _under(file_path, path)) and section_id not in self._by_file.get(
                file_path, {}
            ):
                self.add_item(section_id, file_path, sizes=found[file_path])
        section = self.sections[section_id]
        section.scanned_at = self.now()
        if force:
            for item in list(self.items.values()):
                if item.section_id == section_id:
                    self._agent_refresh(item)

    def _apply_agent(self, item: Item, locked: set[str]) -> bool:
        """Put the agent's metadata into every field not in `locked`; True if any changed."""
        agent = item.agent
        assert agent is not None
        changed = False
        for name, value in agent.text().items():
            if name not in locked and item.text.get(name, "") != value:
                item.text[name] = value
                changed = True
        if "originallyAvailableAt" not in locked:
            date = agent.originally_available_at
            year = int(date[:4]) if date else None
            if (item.originally_available_at, item.year) != (date, year):
                item.originally_available_at, item.year = date, year
                changed = True
        for family, tags in agent.tags().items():
            if family not in locked and [t.name for t in item.tags.get(family, [])] != [
                t.name for t in tags
            ]:
                item.tags[family] = tags
                changed = True
        return changed

    def _agent_refresh(self, item: Item) -> None:
        if not self.behaviour.agent_overwrites_unlocked:
            return
        if item.agent is not None:
            if self._apply_agent(item, item.locked):
                item.updated_at = self.now()
            return
        changed = False
        for name in AGENT_TEXT_FIELDS:
            if name in item.locked:
                continue
            agent_value = item.agent_title if name == "title" else ""
            if item.text.get(name, "") != agent_value:
                item.text[name] = agent_value
                changed = True
        if "originallyAvailableAt" not in item.locked and item.originally_available_at:
            item.originally_available_at = None
            changed = True
        if "year" not in item.locked and "originallyAvailableAt" not in item.locked and item.year:
            item.year = None
            changed = True
        for family in AGENT_TAG_FAMILIES:
            if family not in item.locked and item.tags.get(family):
                item.tags[family] = []
                changed = True
        if changed:
            item.updated_at = self.now()

    # ------------------------------------------------------------------ listing and search
    def section_items(self, section_id: int) -> list[Item]:
        return [item for item in self.items.values() if item.section_id == section_id]

    def section_collections(self, section_id: int) -> list[Collection]:
        return [c for c in self.collections.values() if c.section_id == section_id]

    def collection_children(self, coll: Collection) -> list[int]:
        if not coll.smart:
            return list(coll.children)
        query = (coll.content or "").partition("?")[2]
        params = dict(parse_qsl(query, keep_blank_values=True))
        items = self.search_items(coll.section_id, params)
        return [item.rating_key for item in items]

    def search_items(self, section_id: int, params: dict[str, str]) -> list[Item]:
        """Items of a section matching `params` (filters, `sort`, `limit`) in answer order."""
        items = self.section_items(section_id)
        for predicate in _filters(params, self):
            items = [item for item in items if predicate(item)]
        items = _sort(items, params.get("sort") or "titleSort")
        limit = params.get("limit")
        if limit:
            try:
                items = items[: max(0, int(limit))]
            except ValueError:
                raise PlexError(400, f"bad limit {limit!r}") from None
        return items

    def search_collections(self, section_id: int, params: dict[str, str]) -> list[Collection]:
        colls = self.section_collections(section_id)
        for key, value in params.items():
            if _ignored_param(key) or key in ("type", "sort", "limit"):
                continue
            if key == "title":
                colls = [c for c in colls if value.casefold() in c.title.casefold()]
            elif key == "title=":
                colls = [c for c in colls if value.casefold() == c.title.casefold()]
            else:
                raise PlexError(400, f"unsupported collection filter {key!r}")
        colls.sort(key=lambda c: (c.title_sort.casefold(), c.rating_key))
        if params.get("sort", "").endswith(":desc"):
            colls.reverse()
        if params.get("limit"):
            colls = colls[: int(params["limit"])]
        return colls

    def tag_choices(self, section_id: int, family: str) -> list[tuple[str, str]]:
        """(key, title) filter choices of one tag family in use in a section, by title."""
        seen: dict[str, str] = {}
        for item in self.section_items(section_id):
            if family == "contentRating":
                rating = item.text.get("contentRating")
                if rating:
                    seen[rating] = rating
                continue
            for tag in item.tags.get(family, []):
                seen[str(self.tag_id(family, tag.name))] = tag.name
        return sorted(seen.items(), key=lambda kv: kv[1].casefold())

    # ------------------------------------------------------------------ edits
    def apply_edit(self, section_id: int, pairs: Sequence[tuple[str, str]]) -> None:
        """Apply one `PUT /library/sections/{id}/all` (decoded query pairs). Atomic."""
        with self.lock:
            self.section(section_id)
            edit = _parse_edit(pairs, self.sections[section_id])
            multi = edit.ids is None or len(edit.ids) > 1
            if edit.search_type == SEARCH_TYPE_COLLECTION:
                colls = self._edit_targets(section_id, edit, self.collections)
                self._check_collection_edit(colls, edit)
                for coll in colls:
                    self._apply_collection_edit(coll, edit)
                return
            if edit.search_type != SEARCH_TYPE_MOVIE:
                return  # no items of other types live in the emulator
            targets = self._edit_targets(section_id, edit, self.items)
            for item in targets:
                self._apply_item_edit(item, edit, multi)

    def _edit_targets(self, section_id: int, edit: _Edit, pool: dict) -> list:
        if edit.ids is None:
            return [obj for obj in pool.values() if obj.section_id == section_id]
        found = [pool[i] for i in edit.ids if i in pool and pool[i].section_id == section_id]
        if len(found) < len(edit.ids) and self.behaviour.unknown_id_put_status != 200:
            raise PlexError(self.behaviour.unknown_id_put_status, "unknown id in edit")
        return found

    def _apply_item_edit(self, item: Item, edit: _Edit, multi: bool) -> None:
        changed = False
        for name, value in edit.fields.items():
            changed |= self._set_field(item, name, value)
        for name, locked in edit.locks.items():
            changed |= _set_lock(item.locked, name, locked)
        families = set(edit.tag_sets) | set(edit.tag_removals) | edit.tag_clears
        for family in sorted(families):
            before = list(item.tags.get(family, []))
            tags = list(before)
            if family in edit.tag_clears:
                tags = []
            if family in edit.tag_sets:
                new = _tags_from_entries(edit.tag_sets[family])
                if multi and self.behaviour.multi_edit_adds_tags:
                    tags = _merge_tags(tags, new)
                else:
                    tags = new
            if family in edit.tag_removals:
                gone = set(edit.tag_removals[family])
                tags = [t for t in tags if t.name not in gone]
            if tags != before:
                item.tags[family] = tags
                changed = True
                if family == "collection":
                    self._sync_collections(item, [t.name for t in before], [t.name for t in tags])
        item.edit_count += 1
        if changed:
            item.updated_at = self.now()
            self._timeline(item)

    def _set_field(self, item: Item, name: str, value: str) -> bool:
        if name in TEXT_FIELDS:
            if item.text.get(name, "") == value:
                return False
            item.text[name] = value
            return True
        if name == "originallyAvailableAt":
            new_date = value or None
            new_year = int(value[:4]) if value else item.year
            changed = (item.originally_available_at, item.year) != (new_date, new_year)
            item.originally_available_at, item.year = new_date, new_year
            return changed
        if name == "year":
            new_year = int(value) if value else None
            changed = item.year != new_year
            item.year = new_year
            return changed
        if name == "addedAt":
            new_added = int(value) if value else item.added_at
            changed = new_added != item.added_at
            item.added_at = new_added
            return changed
        # rating / audienceRating
        if not value:
            return item.numbers.pop(name, None) is not None
        number = float(value)
        changed = item.numbers.get(name) != number
        item.numbers[name] = number
        return changed

    def _check_collection_edit(self, colls: list[Collection], edit: _Edit) -> None:
        # Check everything first so a refused edit changes nothing.
        for name in edit.fields:
            if name not in COLLECTION_FIELDS:
                raise PlexError(400, f"collections have no field {name!r}")
        if edit.tag_sets or edit.tag_removals or edit.tag_clears:
            raise PlexError(400, "the emulator keeps no tags on collections")
        title = edit.fields.get("title")
        if title is None:
            return
        if not title or len(colls) > 1:
            raise PlexError(400, "a collection needs one unique title")
        for coll in colls:
            clash = self._find_collection(coll.section_id, title)
            if clash is not None and clash is not coll:
                raise PlexError(409, f"a collection named {title!r} exists")

    def _apply_collection_edit(self, coll: Collection, edit: _Edit) -> None:
        changed = False
        for name, value in edit.fields.items():
            if name == "title":
                if value != coll.title:
                    self._rename_collection(coll, value)
                    changed = True
            elif coll.text.get(name, "") != value:
                coll.text[name] = value
                changed = True
        for name, locked in edit.locks.items():
            changed |= _set_lock(coll.locked, name, locked)
        coll.edit_count += 1
        if changed:
            coll.updated_at = self.now()

    def _rename_collection(self, coll: Collection, title: str) -> None:
        # The collection is its tag: keep the tag id, change the name everywhere.
        old = coll.title
        tag_id = self.tag_id("collection", old)
        del self._tag_ids[("collection", old)]
        self._tag_ids[("collection", title)] = tag_id
        coll.title = title
        for item in self.section_items(coll.section_id):
            for tag in item.tags.get("collection", []):
                if tag.name == old:
                    tag.name = title
                    item.updated_at = self.now()

    # ------------------------------------------------------------------ collections
    def _find_collection(self, section_id: int, title: str) -> Collection | None:
        return next(
            (
                c
                for c in self.collections.values()
                if c.section_id == section_id and c.title == title
            ),
            None,
        )

    def _ensure_collection(self, section_id: int, title: str) -> Collection:
        coll = self._find_collection(section_id, title)
        if coll is None:
            now = self.now()
            key = self._new_rating_key()
            coll = Collection(
                key, section_id, title, [], now, now, f"collection://{uuid.uuid4().hex}"
            )
            self.collections[key] = coll
            self.tag_id("collection", title)  # the collection's index is its tag id
        return coll

    def _sync_collections(self, item: Item, before: list[str], after: list[str]) -> None:
        now = self.now()
        for name in after:
            if name not in before:
                coll = self._ensure_collection(item.section_id, name)
                if item.rating_key not in coll.children:
                    coll.children.append(item.rating_key)
                    coll.updated_at = now
        for name in before:
            if name in after:
                continue
            coll = self._find_collection(item.section_id, name)
            if coll is None or item.rating_key not in coll.children:
                continue
            coll.children.remove(item.rating_key)
            coll.updated_at = now
            if not coll.children and self.behaviour.delete_empty_collections and not coll.smart:
                del self.collections[coll.rating_key]

    def _uri_items(self, uri: str, section_id: int) -> list[Item]:
        match = _URI.match(uri)
        if not match or match.group(1) != self.machine_identifier:
            raise PlexError(400, f"bad uri {uri!r}")
        path = match.group(2)
        keys = re.fullmatch(r"/library/metadata/([\d,]+)", path)
        if not keys:
            raise PlexError(400, f"bad uri {uri!r}")
        items = []
        for part in keys.group(1).split(","):
            item = self.items.get(int(part))
            if item is None:
                raise PlexError(404, f"no item {part}")
            if item.section_id != section_id:
                raise PlexError(400, f"item {part} is not in section {section_id}")
            items.append(item)
        return items

    def create_collection(self, params: dict[str, str]) -> Collection:
        """`POST /library/collections`: a regular (uri of items) or smart (uri of a search)."""
        with self.lock:
            try:
                section_id = int(params["sectionId"])
                title = params["title"]
                uri = params["uri"]
            except (KeyError, ValueError):
                raise PlexError(400, "sectionId, title and uri are required") from None
            self.section(section_id)
            if not title:
                raise PlexError(400, "a collection needs a title")
            if params.get("smart") == "1":
                match = _URI.match(uri)
                if not match or match.group(1) != self.machine_identifier:
                    raise PlexError(400, f"bad uri {uri!r}")
                coll = self._ensure_collection(section_id, title)
                coll.smart = True
                coll.content = match.group(2)
                return coll
            items = self._uri_items(uri, section_id)
            coll = self._ensure_collection(section_id, title)
            for item in items:
                self._tag_into_collection(item, coll)
            return coll

    def _tag_into_collection(self, item: Item, coll: Collection) -> None:
        tags = item.tags.setdefault("collection", [])
        if coll.title not in (t.name for t in tags):
            tags.append(Tag(coll.title))
            item.updated_at = self.now()
        if item.rating_key not in coll.children:
            coll.children.append(item.rating_key)
            coll.updated_at = self.now()

    def collection_add_items(self, rating_key: int, uri: str) -> None:
        with self.lock:
            coll = self.get_collection(rating_key)
            if coll.smart:
                raise PlexError(400, "cannot add items to a smart collection")
            for item in self._uri_items(uri, coll.section_id):
                self._tag_into_collection(item, coll)

    def collection_remove_item(self, rating_key: int, item_key: int) -> None:
        with self.lock:
            coll = self.get_collection(rating_key)
            if item_key not in coll.children:
                raise PlexError(404, f"item {item_key} is not in collection {rating_key}")
            coll.children.remove(item_key)
            coll.updated_at = self.now()
            item = self.items.get(item_key)
            if item is not None:
                item.tags["collection"] = [
                    t for t in item.tags.get("collection", []) if t.name != coll.title
                ]
                item.updated_at = self.now()

    def collection_move_item(self, rating_key: int, item_key: int, after: int | None) -> None:
        with self.lock:
            coll = self.get_collection(rating_key)
            if item_key not in coll.children or (after is not None and after not in coll.children):
                raise PlexError(404, "item not in collection")
            coll.children.remove(item_key)
            position = 0 if after is None else coll.children.index(after) + 1
            coll.children.insert(position, item_key)
            coll.updated_at = self.now()

    def delete_collection(self, rating_key: int) -> None:
        with self.lock:
            coll = self.get_collection(rating_key)
            del self.collections[rating_key]
            for item in self.section_items(coll.section_id):
                tags = item.tags.get("collection", [])
                if any(t.name == coll.title for t in tags):
                    item.tags["collection"] = [t for t in tags if t.name != coll.title]
                    item.updated_at = self.now()

    # ------------------------------------------------------------------ plays and history
    def add_account(self, name: str) -> int:
        """A managed or shared user of the server; returns its account id."""
        with self.lock:
            account_id = max(self.accounts) + 1
            self.accounts[account_id] = name
            return account_id

    def _view(self, item: Item, account_id: int) -> ViewState:
        if account_id not in self.accounts:
            raise PlexError(400, f"no account {account_id}")
        return item.views.setdefault(account_id, ViewState())

    def scrobble(
        self,
        rating_key: int,
        *,
        account_id: int = 1,
        viewed_at: int | None = None,
        device_id: int = 1,
    ) -> HistoryEntry:
        """`/:/scrobble`: one full play. Counts it, clears the resume point, logs history."""
        with self.lock:
            item = self.get_item(rating_key)
            at = self.now() if viewed_at is None else int(viewed_at)
            view = self._view(item, account_id)
            view.view_count += 1
            view.last_viewed_at = max(view.last_viewed_at or 0, at)
            view.view_offset = 0
            entry = HistoryEntry(
                self._next_history_id, rating_key, item.section_id, account_id, device_id, at
            )
            self._next_history_id += 1
            self.history.append(entry)
            self._timeline(item)
            return entry

    def unscrobble(self, rating_key: int, *, account_id: int = 1) -> None:
        """`/:/unscrobble`: the item is unplayed again."""
        with self.lock:
            item = self.get_item(rating_key)
            item.views[account_id] = ViewState()
            if self.behaviour.unscrobble_clears_history:
                self.history = [
                    h
                    for h in self.history
                    if not (h.rating_key == rating_key and h.account_id == account_id)
                ]
            self._timeline(item)

    def progress(
        self,
        rating_key: int,
        time_ms: int,
        state: str = "stopped",
        *,
        duration_ms: int | None = None,
        account_id: int = 1,
        session_key: int | None = None,
    ) -> None:
        """`/:/timeline` and `/:/progress`: a player reports its position.

        Past `watched_threshold` of the duration the play counts (a scrobble); otherwise a
        stopped or paused position becomes the resume point (`viewOffset`).
        """
        if state not in ("playing", "paused", "stopped", "buffering"):
            raise PlexError(400, f"bad state {state!r}")
        with self.lock:
            item = self.get_item(rating_key)
            if time_ms < 0:
                raise PlexError(400, "bad time")
            duration = duration_ms or item.duration_ms
            view = self._view(item, account_id)
            key = session_key if session_key is not None else self._new_session_key()
            self._notify(
                {
                    "type": "playing",
                    "size": 1,
                    "PlaySessionStateNotification": [
                        {
                            "sessionKey": str(key),
                            "guid": "",
                            "ratingKey": str(rating_key),
                            "url": "",
                            "key": f"/library/metadata/{rating_key}",
                            "viewOffset": int(time_ms),
                            "playQueueItemID": key,
                            "state": state,
                        }
                    ],
                }
            )
            watched = duration > 0 and time_ms >= duration * self.behaviour.watched_threshold
            if watched:
                # One play per playback session, however many reports pass the threshold.
                if key not in self._scrobbled_sessions:
                    self._scrobbled_sessions.add(key)
                    self.scrobble(rating_key, account_id=account_id)
                return
            if time_ms > 0 and state in ("stopped", "paused"):
                view.view_offset = int(time_ms)
                # Plex's Continue Watching orders partly watched items by this time.
                view.last_viewed_at = self.now()
                self._timeline(item)

    def _new_session_key(self) -> int:
        key = self._next_session_key
        self._next_session_key += 1
        return key

    def history_entries(self, params: dict[str, str]) -> list[HistoryEntry]:
        """The watch history filtered and sorted as `/status/sessions/history/all` answers."""
        with self.lock:
            entries = list(self.history)
        filters: list[Callable[[HistoryEntry], bool]] = []
        for key, value in params.items():
            if _ignored_param(key) or key == "sort":
                continue
            try:
                number = int(value)
            except ValueError:
                raise PlexError(400, f"bad value {value!r} for {key}") from None
            if key == "accountID":
                filters.append(lambda h, n=number: h.account_id == n)
            elif key == "metadataItemID":
                filters.append(lambda h, n=number: h.rating_key == n)
            elif key == "librarySectionID":
                filters.append(lambda h, n=number: h.section_id == n)
            elif key in ("viewedAt>", "viewedAt>="):  # plexapi sends `viewedAt>=<epoch>`
                filters.append(lambda h, n=number: h.viewed_at >= n)
            elif key in ("viewedAt<", "viewedAt<="):
                filters.append(lambda h, n=number: h.viewed_at <= n)
            else:
                raise PlexError(400, f"unsupported history filter {key!r}")
        entries = [h for h in entries if all(f(h) for f in filters)]
        sort = params.get("sort") or "viewedAt:desc"
        name, _, direction = sort.partition(":")
        if name not in ("viewedAt", "id") or direction not in ("", "asc", "desc"):
            raise PlexError(400, f"unsupported sort {sort!r}")
        entries.sort(
            key=lambda h: (h.viewed_at, h.id) if name == "viewedAt" else (h.id,),
            reverse=direction == "desc",
        )
        return entries

    def delete_history(self, history_id: int) -> None:
        with self.lock:
            kept = [h for h in self.history if h.id != history_id]
            if len(kept) == len(self.history):
                raise PlexError(404, f"no history entry {history_id}")
            self.history = kept

    # ------------------------------------------------------------------ notifications
    def _notify(self, container: dict) -> None:
        for subscriber in list(self.subscribers):
            subscriber(container)

    def _timeline(self, target: Item | Collection) -> None:
        """A "timeline" notification: the item's metadata or view state changed (state 5)."""
        if not self.subscribers:
            return
        self._notify(
            {
                "type": "timeline",
                "size": 1,
                "TimelineEntry": [
                    {
                        "identifier": "com.plexapp.plugins.library",
                        "sectionID": str(target.section_id),
                        "itemID": str(target.rating_key),
                        "type": SEARCH_TYPE_MOVIE
                        if isinstance(target, Item)
                        else SEARCH_TYPE_COLLECTION,
                        "title": target.title,
                        "state": 5,
                        "updatedAt": self.now(),
                    }
                ],
            }
        )

    # ------------------------------------------------------------------ ratings and images
    def rate(self, rating_key: int, rating: str) -> None:
        """`PUT /:/rate`: user rating 0-10; -1 clears it."""
        with self.lock:
            try:
                value = float(rating)
            except ValueError:
                raise PlexError(400, f"bad rating {rating!r}") from None
            if value != -1 and not 0 <= value <= 10:
                raise PlexError(400, f"bad rating {rating!r}")
            target: Item | Collection | None = self.items.get(rating_key) or self.collections.get(
                rating_key
            )
            if target is None:
                if self.behaviour.unknown_id_put_status != 200:
                    raise PlexError(self.behaviour.unknown_id_put_status, "unknown key")
                return
            target.user_rating = None if value == -1 else value
            target.last_rated_at = None if value == -1 else self.now()
            target.updated_at = self.now()
            self._timeline(target)

    def get_imageable(self, rating_key: int) -> Item | Collection:
        """An item or a collection: both carry posters and art."""
        found: Item | Collection | None = self.items.get(rating_key) or self.collections.get(
            rating_key
        )
        if found is None:
            raise PlexError(404, f"no item {rating_key}")
        return found

    def add_image(self, rating_key: int, kind: str, data: bytes) -> Image:
        """Store an uploaded poster (`kind="thumb"`) or art; the same bytes twice are one image."""
        with self.lock:
            item = self.get_imageable(rating_key)
            sha1 = hashlib.sha1(data).hexdigest()
            images = item.images(kind)
            image = next((img for img in images if img.sha1 == sha1), None)
            if image is None:
                folder = "posters" if kind == "thumb" else "arts"
                image = Image(f"upload://{folder}/{sha1}", None, sha1, data)
                images.append(image)
            if self.behaviour.upload_selects_image:
                for img in images:
                    img.selected = img is image
            if self.behaviour.image_change_locks:
                item.locked.add(kind)
            item.updated_at = self.now()
            return image

    def select_image(self, rating_key: int, kind: str, image_key: str) -> None:
        with self.lock:
            item = self.get_imageable(rating_key)
            images = item.images(kind)
            if not any(img.rating_key == image_key for img in images):
                raise PlexError(404, f"no image {image_key!r}")
            for img in images:
                img.selected = img.rating_key == image_key
            if self.behaviour.image_change_locks:
                item.locked.add(kind)
            item.updated_at = self.now()

    def deselect_image(self, rating_key: int, kind: str) -> None:
        with self.lock:
            item = self.get_imageable(rating_key)
            for img in item.images(kind):
                img.selected = False
            item.updated_at = self.now()

    def image_bytes(self, rating_key: int, kind: str, image_key: str | None = None) -> bytes:
        with self.lock:
            item = self.get_imageable(rating_key)
            images = item.images("thumb") + item.images("art")
            if image_key is None:
                image = item.selected(kind)
            else:
                image = next((img for img in images if img.rating_key == image_key), None)
            if image is None:
                raise PlexError(404, "no image")
            return image.data


# ---------------------------------------------------------------------- edit parsing
def _parse_edit(pairs: Sequence[tuple[str, str]], section: Section) -> _Edit:
    params = dict(pairs)
    try:
        search_type = int(params.get("type") or SEARCH_TYPE_MOVIE)
    except ValueError:
        raise PlexError(400, "bad type") from None
    ids: list[int] | None = None
    if params.get("id"):
        try:
            ids = [int(part) for part in params["id"].split(",") if part]
        except ValueError:
            raise PlexError(400, "bad id") from None
    edit = _Edit(ids, search_type, {}, {}, {}, {}, set())
    for key, value in pairs:
        if key in ("id", "type") or _ignored_param(key):
            continue
        if match := _TAG_SET.match(key):
            family, index, scope, attr = match.groups()
            _check_family(family)
            entry = edit.tag_sets.setdefault(family, {}).setdefault(int(index), {})
            entry[f"{scope}.{attr}"] = value
        elif match := _TAG_REMOVE.match(key):
            family = match.group(1)
            _check_family(family)
            # plexapi quotes each name, then the whole list is quoted again: after the normal
            # query decoding, split on the literal comma and decode each piece once more.
            edit.tag_removals.setdefault(family, []).extend(
                unquote(piece) for piece in value.split(",") if piece
            )
        elif match := _TAG_CLEAR.match(key):
            _check_family(match.group(1))
            if value == "":
                edit.tag_clears.add(match.group(1))
        elif key.endswith(".locked"):
            if value not in ("0", "1"):
                raise PlexError(400, f"bad lock value {value!r} for {key}")
            edit.locks[key[: -len(".locked")]] = value == "1"
        elif key.endswith(".value"):
            name = key[: -len(".value")]
            _check_field_value(name, value, search_type)
            edit.fields[name] = value
        else:
            raise PlexError(400, f"unsupported edit parameter {key!r}")
    return edit


def _check_family(family: str) -> None:
    if family not in TAG_ELEMENTS:
        raise PlexError(400, f"unsupported tag type {family!r}")


def _check_field_value(name: str, value: str, search_type: int) -> None:
    if search_type == SEARCH_TYPE_COLLECTION:
        return  # checked against the collection's fields when applied
    if name not in EDITABLE_FIELDS:
        raise PlexError(400, f"unsupported field {name!r}")
    if not value:
        return
    try:
        if name == "originallyAvailableAt":
            if not _DATE.match(value):
                raise ValueError
            datetime.strptime(value, "%Y-%m-%d")
        elif name in ("year", "addedAt"):
            int(value)
        elif name in NUMBER_FIELDS:
            float(value)
    except ValueError:
        raise PlexError(400, f"bad value {value!r} for {name}") from None


def _set_lock(locked: set[str], name: str, on: bool) -> bool:
    if on and name not in locked:
        locked.add(name)
        return True
    if not on and name in locked:
        locked.discard(name)
        return True
    return False


def _tags_from_entries(entries: dict[int, dict[str, str]]) -> list[Tag]:
    tags: list[Tag] = []
    seen: set[str] = set()
    for index in sorted(entries):
        entry = entries[index]
        name = entry.get("tag.tag", "")
        if not name or name in seen:
            continue
        seen.add(name)
        thumb = entry.get("tag.thumb") or entry.get("tagging.thumb") or None
        tags.append(Tag(name, thumb, entry.get("tagging.text") or None))
    return tags


def _merge_tags(old: list[Tag], new: list[Tag]) -> list[Tag]:
    names = {t.name for t in old}
    return old + [t for t in new if t.name not in names]


def _image_state(img: Image) -> ImageState:
    return ImageState(img.rating_key, img.provider, img.selected, img.sha1)


def _selected_sha1(images: Iterable[Image]) -> str | None:
    return next((img.sha1 for img in images if img.selected), None)


# ---------------------------------------------------------------------- search filters
_IGNORED_PREFIXES = ("include", "exclude", "X-Plex-", "x-plex-")
_IGNORED = frozenset(("checkFiles", "skipRefresh", "asyncAugmentMetadata", "async", "force"))
_FILTER_KEY = re.compile(r"^(?:[a-z]+\.)?([A-Za-z]+)(!=|==|!|=|<<|>>|<|>)?$")
_RELATIVE = re.compile(r"^-?(\d+)(mon|[smhdwy])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mon": 2592000, "y": 31536000}

_STRING_FIELDS: dict[str, Callable[[Item], str]] = {
    "title": lambda i: i.title,
    "studio": lambda i: i.text.get("studio", ""),
    "originalTitle": lambda i: i.text.get("originalTitle", ""),
    "editionTitle": lambda i: i.text.get("editionTitle", ""),
}
_INTEGER_FIELDS: dict[str, Callable[[Item], float | None]] = {
    "year": lambda i: i.year,
    "decade": lambda i: i.year // 10 * 10 if i.year else None,
    "duration": lambda i: i.duration_ms,
    "userRating": lambda i: i.user_rating,
    "viewCount": lambda i: i.view().view_count,
    "mediaSize": lambda i: i.media_size,
}
_DATE_FIELDS: dict[str, Callable[[Item], int | None]] = {
    "addedAt": lambda i: i.added_at,
    "updatedAt": lambda i: i.updated_at,
    "originallyAvailableAt": lambda i: _date_epoch(i.originally_available_at),
    "lastViewedAt": lambda i: i.view().last_viewed_at,
    "lastRatedAt": lambda i: i.last_rated_at,
}
_BOOLEAN_FIELDS: dict[str, Callable[[Item], bool]] = {
    "unwatched": lambda i: i.view().view_count == 0,
    "inProgress": lambda i: i.view().view_offset > 0,
}


def _ignored_param(key: str) -> bool:
    return key.startswith(_IGNORED_PREFIXES) or key in _IGNORED


def _filters(params: dict[str, str], library: PlexLibrary) -> list[Callable[[Item], bool]]:
    predicates = []
    for key, value in params.items():
        if _ignored_param(key) or key in ("type", "sort", "limit"):
            continue
        match = _FILTER_KEY.match(key)
        if not match:
            raise PlexError(400, f"unsupported filter {key!r}")
        name, op = match.group(1), match.group(2) or ""
        predicates.append(_predicate(name, op, value, library))
    return predicates


def _predicate(name: str, op: str, value: str, library: PlexLibrary) -> Callable[[Item], bool]:
    if name in _STRING_FIELDS:
        return _string_predicate(name, op, value, library)
    if name in TAG_ELEMENTS or name == "contentRating":
        wanted = {piece.casefold() for piece in value.split(",")}

        def tags_of(item: Item) -> set[str]:
            if name == "contentRating":
                rating = item.text.get("contentRating", "")
                return {rating.casefold()} if rating else set()
            out = set()
            for tag in item.tags.get(name, []):
                out.add(tag.name.casefold())
                out.add(str(library.tag_id(name, tag.name)))
            return out

        if op in ("", "="):
            return lambda item: bool(tags_of(item) & wanted)
        if op in ("!", "!="):
            return lambda item: not tags_of(item) & wanted
    if name in _INTEGER_FIELDS:
        getter = _INTEGER_FIELDS[name]
        try:
            numbers = [float(piece) for piece in value.split(",")]
        except ValueError:
            raise PlexError(400, f"bad value {value!r} for {name}") from None
        return _ordered_predicate(getter, op, numbers)
    if name in _DATE_FIELDS:
        return _ordered_predicate(_DATE_FIELDS[name], op, [_date_value(value, library)])
    if name in _BOOLEAN_FIELDS and op in ("", "=", "!", "!="):
        getter_b = _BOOLEAN_FIELDS[name]
        truth = value == "1"
        negate = op in ("!", "!=")
        return lambda item: (getter_b(item) == truth) != negate
    if name == "guid" and op in ("", "="):
        return lambda item: item.guid == value
    raise PlexError(400, f"unsupported filter {name}{op!r}")


def _string_predicate(
    name: str, op: str, value: str, library: PlexLibrary
) -> Callable[[Item], bool]:
    needle = value.casefold()
    getters = [_STRING_FIELDS[name]]
    if name == "title" and library.behaviour.title_search_includes_original_title:
        getters.append(_STRING_FIELDS["originalTitle"])
    tests: dict[str, Callable[[str], bool]] = {
        "": lambda s: needle in s,
        "!": lambda s: needle not in s,
        "=": lambda s: s == needle,
        "==": lambda s: s == needle,
        "!=": lambda s: s != needle,
        "<": lambda s: s.startswith(needle),
        ">": lambda s: s.endswith(needle),
    }
    if op not in tests:
        raise PlexError(400, f"unsupported operator {op!r} for {name}")
    test = tests[op]
    negative = op in ("!", "!=")
    if negative:
        return lambda item: all(test(g(item).casefold()) for g in getters)
    return lambda item: any(test(g(item).casefold()) for g in getters)


def _ordered_predicate(
    getter: Callable[[Item], float | None], op: str, values: list[float]
) -> Callable[[Item], bool]:
    def check(item: Item) -> bool:
        actual = getter(item)
        if actual is None:
            return op in ("!", "!=")
        if op in ("", "="):
            return actual in values
        if op in ("!", "!="):
            return actual not in values
        if op == ">>":
            return actual > values[0]
        if op == "<<":
            return actual < values[0]
        raise PlexError(400, f"unsupported operator {op!r}")

    return check


def _date_value(value: str, library: PlexLibrary) -> float:
    if match := _RELATIVE.match(value):
        return library.clock() - int(match.group(1)) * _UNITS[match.group(2)]
    if _DATE.match(value):
        return float(_date_epoch(value) or 0)
    try:
        return float(value)
    except ValueError:
        raise PlexError(400, f"bad date {value!r}") from None


_SORT_KEYS: dict[str, Callable[[Item], object]] = {
    "titleSort": lambda i: i.title_sort.casefold(),
    "title": lambda i: i.title.casefold(),
    "year": lambda i: i.year,
    "originallyAvailableAt": lambda i: i.originally_available_at,
    "rating": lambda i: i.numbers.get("rating"),
    "audienceRating": lambda i: i.numbers.get("audienceRating"),
    "userRating": lambda i: i.user_rating,
    "contentRating": lambda i: i.text.get("contentRating") or None,
    "duration": lambda i: i.duration_ms,
    "addedAt": lambda i: i.added_at,
    "updatedAt": lambda i: i.updated_at,
    "lastViewedAt": lambda i: i.view().last_viewed_at,
    "lastRatedAt": lambda i: i.last_rated_at,
    "viewCount": lambda i: i.view().view_count,
    "mediaSize": lambda i: i.media_size,
    "id": lambda i: i.rating_key,
}


def _sort(items: list[Item], sort: str) -> list[Item]:
    specs = []
    for piece in sort.split(","):
        name, _, direction = piece.strip().partition(":")
        name = name.rpartition(".")[2]  # plexapi sends `movie.addedAt`
        if name not in _SORT_KEYS or direction not in ("", "asc", "desc", "nullsLast"):
            raise PlexError(400, f"unsupported sort {piece!r}")
        specs.append((_SORT_KEYS[name], direction))
    # Ties break on ratingKey in the primary direction, so `addedAt:desc` puts the newest first.
    primary_desc = specs[0][1] == "desc"
    result = sorted(items, key=lambda i: i.rating_key, reverse=primary_desc)
    for getter, direction in reversed(specs):
        if direction == "nullsLast":
            result.sort(key=lambda i, g=getter: _null_key(g(i), nulls_first=False))
        else:
            result.sort(
                key=lambda i, g=getter: _null_key(g(i), nulls_first=True),
                reverse=direction == "desc",
            )
    return result


def _null_key(value: object, *, nulls_first: bool) -> tuple[int, object]:
    if value is None:
        return (0 if nulls_first else 1, 0)
    return (1 if nulls_first else 0, value)
