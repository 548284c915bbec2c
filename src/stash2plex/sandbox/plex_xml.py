"""XML the emulated Plex Media Server answers, shaped like the real captures.

Layout follows PMS byte for byte where it matters to clients: an XML declaration, one element
per line, `<Tag a="b" />` for empty elements, "1"/"0" booleans, epoch-second dates, newlines in
attributes written as `&#10;`. Strings are built directly (not through ElementTree) because the
listing path must stay fast. Callers hold the library lock while rendering.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from urllib.parse import quote
from xml.sax.saxutils import escape

from stash2plex.sandbox.plex_model import (
    SEARCH_TYPE_COLLECTION,
    SEARCH_TYPE_MOVIE,
    TAG_ELEMENTS,
    Collection,
    HistoryEntry,
    Image,
    Item,
    PlexLibrary,
    Section,
)

PMS_VERSION = "1.43.2.10687-563d026ea"
API_VERSION = "1.2.2"
MEDIA_TAG_PREFIX = "/system/bundle/media/flags/"
MEDIA_TAG_VERSION = "1777730215"
LIBRARY_IDENTIFIER = "com.plexapp.plugins.library"

# The real listing shape: list tags are truncated, some families are left out (§2.2).
LISTING_TAG_LIMITS: dict[str, int] = {
    "genre": 2,
    "country": 2,
    "collection": 2,
    "director": 1,
    "writer": 2,
    "actor": 3,
}
# Order of tag elements inside a real <Video>.
DETAIL_TAG_ORDER = ("genre", "country", "director", "writer", "producer", "collection", "label")

_ATTR_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
# Characters XML 1.0 cannot carry at all; PMS never emits them either.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

Attrs = Sequence[tuple[str, object]]


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def attrs(pairs: Attrs) -> str:
    """` name="value"` for each pair whose value is not None, escaped as PMS does."""
    out = []
    for name, value in pairs:
        if value is None:
            continue
        text = _ILLEGAL.sub("", _value(value))
        out.append(f' {name}="{escape(text, _ATTR_ENTITIES)}"')
    return "".join(out)


def element(tag: str, pairs: Attrs, children: Iterable[str] = ()) -> str:
    """One element; children are already-rendered strings, one per line."""
    inner = "".join(children)
    if not inner:
        return f"<{tag}{attrs(pairs)} />\n"
    return f"<{tag}{attrs(pairs)}>\n{inner}</{tag}>\n"


def document(pairs: Attrs, children: Iterable[str] = ()) -> bytes:
    """A whole `<MediaContainer>` answer (a container always has an open and a close tag)."""
    inner = "".join(children)
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<MediaContainer{attrs(pairs)}>\n{inner}'
    return (body + "</MediaContainer>\n").encode("utf-8")


# ---------------------------------------------------------------------- server level
_ROOT_DIRECTORIES = (
    *("actions", "activities", "butler", "channels", "clients", "devices", "diagnostics"),
    *("downloadQueue", "hubs", "library", "livetv", "media", "neighborhood", "playQueues"),
    *("playlists", "resources", "search", "server", "servers", "service", "statistics"),
    *("system", "transcode", "updater", "user"),
)


def root(library: PlexLibrary, friendly_name: str) -> bytes:
    """`GET /`: the attribute set of the real 1.43.2 capture."""
    dirs = [
        element(
            "Directory",
            [("count", 3 if k in ("library", "livetv", "media") else 1), ("key", k), ("title", k)],
        )
        for k in _ROOT_DIRECTORIES
    ]
    pairs: list[tuple[str, object]] = [
        ("size", len(dirs)),
        ("allowCameraUpload", False),
        ("allowChannelAccess", True),
        ("allowMediaDeletion", True),
        ("allowSharing", True),
        ("allowSync", False),
        ("allowTuners", True),
        ("apiVersion", API_VERSION),
        ("backgroundProcessing", True),
        ("companionProxy", True),
        ("countryCode", ""),
        ("diagnostics", "logs,databases,streaminglogs"),
        ("eventStream", True),
        ("friendlyName", friendly_name),
        ("hubSearch", True),
        ("itemClusters", True),
        ("livetv", 7),
        ("machineIdentifier", library.machine_identifier),
        ("mediaProviders", True),
        ("multiuser", True),
        ("musicAnalysis", 2),
        ("myPlex", True),
        ("myPlexMappingState", "mapped"),
        ("myPlexSigninState", "ok" if library.claimed else "none"),
        ("myPlexSubscription", False),
        ("ownerFeatures", "collections,federated-auth,home,kevin-bacon,livetv,radio"),
        ("platform", "Linux"),
        ("platformVersion", "6.1.0"),
        ("pluginHost", True),
        ("pushNotifications", False),
        ("readOnlyLibraries", 0),
        ("streamingBrainABRVersion", 3),
        ("streamingBrainVersion", 2),
        ("sync", True),
        ("transcoderActiveVideoSessions", 0),
        ("transcoderAudio", True),
        ("transcoderLyrics", True),
        ("transcoderPhoto", True),
        ("transcoderSubtitles", True),
        ("transcoderVideo", True),
        ("transcoderVideoBitrates", "64,96,208,320,720,1500,2000,3000,4000,8000,10000,12000,20000"),
        ("transcoderVideoQualities", "0,1,2,3,4,5,6,7,8,9,10,11,12"),
        ("transcoderVideoResolutions", "128,128,160,240,320,480,768,720,720,1080,1080,1080,1080"),
        ("updatedAt", library.created_at),
        ("updater", True),
        ("version", PMS_VERSION),
        ("voiceSearch", True),
    ]
    return document(pairs, dirs)


def identity(library: PlexLibrary) -> bytes:
    return document(
        [
            ("size", 0),
            ("apiVersion", API_VERSION),
            ("claimed", library.claimed),
            ("machineIdentifier", library.machine_identifier),
            ("version", PMS_VERSION),
        ]
    )


def activities(library: PlexLibrary) -> bytes:
    """`GET /activities`: one "library.update.section" activity per scan not yet applied."""
    children = []
    for number, (section_id, path) in enumerate(library.pending_scans()):
        section = library.sections[section_id]
        children.append(
            element(
                "Activity",
                [
                    ("uuid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"scan/{section_id}/{number}"))),
                    ("type", "library.update.section"),
                    ("cancellable", True),
                    ("userID", 1),
                    ("title", f"Scanning {section.title}"),
                    ("subtitle", path or ""),
                    ("progress", 0),
                ],
                [element("Context", [("librarySectionID", section_id)])],
            )
        )
    return document([("size", len(children))], children)


def library_root() -> bytes:
    children = [
        element("Directory", [("key", "sections"), ("title", "Library Sections")]),
        element("Directory", [("key", "recentlyAdded"), ("title", "Recently Added Content")]),
        element("Directory", [("key", "onDeck"), ("title", "On Deck Content")]),
    ]
    return document(
        [
            ("size", 3),
            ("allowSync", False),
            ("art", "/:/resources/library-art.png"),
            ("content", ""),
            ("identifier", LIBRARY_IDENTIFIER),
            ("mediaTagPrefix", MEDIA_TAG_PREFIX),
            ("mediaTagVersion", MEDIA_TAG_VERSION),
            ("title1", "Plex Library"),
            ("title2", ""),
        ],
        children,
    )


def sections(library: PlexLibrary) -> bytes:
    children = []
    for section in library.sections.values():
        locations = [element("Location", [("id", i), ("path", p)]) for i, p in section.locations]
        children.append(
            element(
                "Directory",
                [
                    ("allowSync", True),
                    ("art", f"/:/resources/{section.type}-fanart.jpg"),
                    (
                        "composite",
                        f"/library/sections/{section.key}/composite/{section.updated_at}",
                    ),
                    ("filters", True),
                    ("refreshing", library.scanning(section.key)),
                    ("thumb", f"/:/resources/{section.type}.png"),
                    ("key", section.key),
                    ("type", section.type),
                    ("title", section.title),
                    ("agent", section.agent),
                    ("scanner", section.scanner),
                    ("language", section.language),
                    ("uuid", section.uuid),
                    ("updatedAt", section.updated_at),
                    ("createdAt", section.created_at),
                    ("scannedAt", section.scanned_at),
                    ("content", True),
                    ("directory", True),
                    ("contentChangedAt", section.updated_at),
                    ("hidden", False),
                ],
                locations,
            )
        )
    return document(
        [("size", len(children)), ("allowSync", False), ("title1", "Plex Library")], children
    )


# ---------------------------------------------------------------------- items
def _section_pairs(section: Section) -> list[tuple[str, object]]:
    return [
        ("librarySectionID", section.key),
        ("librarySectionTitle", section.title),
        ("librarySectionUUID", section.uuid),
    ]


def listing_container(
    section: Section,
    children: list[str],
    *,
    total: int,
    offset: int,
    title2: str,
    view_group: str = "movie",
    meta: str = "",
) -> bytes:
    """A paged `<MediaContainer>` of a section (listings, collections, children)."""
    pairs: list[tuple[str, object]] = [
        ("size", len(children)),
        ("totalSize", total),
        ("offset", offset),
        ("allowSync", True),
        ("art", f"/:/resources/{section.type}-fanart.jpg"),
        ("identifier", LIBRARY_IDENTIFIER),
        *_section_pairs(section),
        ("mediaTagPrefix", MEDIA_TAG_PREFIX),
        ("mediaTagVersion", MEDIA_TAG_VERSION),
        ("thumb", f"/:/resources/{section.type}.png"),
        ("title1", section.title),
        ("title2", title2),
        ("viewGroup", view_group),
    ]
    return document(pairs, [meta, *children] if meta else children)


def _container_ext(path: str) -> str:
    name = re.split(r"[\\/]", path)[-1]
    return name.rpartition(".")[2].lower() if "." in name else "mkv"


def _media(item: Item) -> list[str]:
    """One `<Media>` per version (several files of one film), or one `<Media>` holding a
    `<Part>` per file when Plex stacked the files (`- part1`, `- part2`: one film in pieces)."""
    groups = [item.parts] if item.stacked else [[part] for part in item.parts]
    out = []
    for parts in groups:
        ext = _container_ext(parts[0].file)
        part_els = [
            element(
                "Part",
                [
                    ("id", part.id),
                    (
                        "key",
                        f"/library/parts/{part.id}/{item.added_at}/file.{_container_ext(part.file)}",
                    ),
                    ("duration", item.duration_ms),
                    ("file", part.file),
                    ("size", part.size),
                    ("container", _container_ext(part.file)),
                ],
            )
            for part in parts
        ]
        duration = item.duration_ms * len(parts)
        size = sum(part.size for part in parts)
        bitrate = size * 8 // max(1, duration) if duration else 0
        out.append(
            element(
                "Media",
                [
                    ("id", parts[0].id),
                    ("duration", duration),
                    ("bitrate", bitrate),
                    ("width", 1920),
                    ("height", 1080),
                    ("aspectRatio", 1.78),
                    ("audioChannels", 2),
                    ("audioCodec", "aac"),
                    ("videoCodec", "h264"),
                    ("videoResolution", "1080"),
                    ("container", ext),
                    ("videoFrameRate", "24p"),
                    ("videoProfile", "high"),
                ],
                part_els,
            )
        )
    return out


def _image_url(item: Item | Collection, kind: str) -> str | None:
    if item.selected(kind) is None:
        return None
    return f"/library/metadata/{item.rating_key}/{kind}/{item.updated_at}"


def _images(item: Item) -> list[str]:
    out = []
    for kind, image_type in (("thumb", "coverPoster"), ("art", "background")):
        url = _image_url(item, kind)
        if url:
            out.append(element("Image", [("alt", item.title), ("type", image_type), ("url", url)]))
    return out


def _video_pairs(item: Item, section: Section, *, detail: bool) -> list[tuple[str, object]]:
    text = item.text
    title_sort = text.get("titleSort") or None
    pairs: list[tuple[str, object]] = [
        ("ratingKey", item.rating_key),
        ("key", f"/library/metadata/{item.rating_key}"),
        ("guid", item.guid),
        ("studio", text.get("studio") or None),
        ("type", "movie"),
        ("title", item.title),
        # A listing shows titleSort only when it differs from the title; a detail always does.
        (
            "titleSort",
            item.title_sort if detail else (title_sort if title_sort != item.title else None),
        ),
        ("originalTitle", text.get("originalTitle") or None),
    ]
    if detail:
        pairs += [
            ("librarySectionTitle", section.title),
            ("librarySectionID", section.key),
            ("librarySectionKey", f"/library/sections/{section.key}"),
        ]
    pairs += [
        ("contentRating", text.get("contentRating") or None),
        ("summary", text.get("summary", "")),
        ("rating", item.numbers.get("rating")),
        ("audienceRating", item.numbers.get("audienceRating")),
        ("userRating", item.user_rating),
        ("lastRatedAt", item.last_rated_at if item.user_rating is not None else None),
        # The token owner's view state; PMS leaves each attribute out while it is zero.
        ("viewOffset", item.view().view_offset or None),
        ("viewCount", item.view().view_count or None),
        ("lastViewedAt", item.view().last_viewed_at),
        ("year", item.year),
        ("tagline", text.get("tagline") or None),
        ("editionTitle", text.get("editionTitle") or None),
        ("thumb", _image_url(item, "thumb")),
        ("art", _image_url(item, "art")),
        ("duration", item.duration_ms),
        ("originallyAvailableAt", item.originally_available_at),
        ("addedAt", item.added_at),
        ("updatedAt", item.updated_at),
    ]
    return pairs


def _full_tags(library: PlexLibrary, item: Item) -> list[str]:
    out = []
    for family in DETAIL_TAG_ORDER:
        tag_el = TAG_ELEMENTS[family]
        for tag in item.tags.get(family, []):
            tid = library.tag_id(family, tag.name)
            out.append(
                element(tag_el, [("id", tid), ("filter", f"{family}={tid}"), ("tag", tag.name)])
            )
    for tag in item.tags.get("actor", []):
        tid = library.tag_id("actor", tag.name)
        out.append(
            element(
                "Role",
                [
                    ("id", tid),
                    ("filter", f"actor={tid}"),
                    ("tag", tag.name),
                    ("role", tag.role),
                    ("thumb", tag.thumb),
                ],
            )
        )
    return out


def _fields(locked: Iterable[str]) -> list[str]:
    return [element("Field", [("locked", True), ("name", name)]) for name in sorted(locked)]


def video_detail(library: PlexLibrary, item: Item) -> str:
    """The full `<Video>` of `GET /library/metadata/{id}`: every tag, `Field` for locks."""
    section = library.sections[item.section_id]
    children = _media(item) + _images(item) + _full_tags(library, item) + _fields(item.locked)
    return element("Video", _video_pairs(item, section, detail=True), children)


def video_listing(library: PlexLibrary, item: Item, *, truncate: bool) -> str:
    """A `<Video>` as a section listing shows it: truncated tags carrying only `tag`."""
    if not truncate:
        section = library.sections[item.section_id]
        children = _media(item) + _images(item) + _full_tags(library, item)
        return element("Video", _video_pairs(item, section, detail=False), children)
    section = library.sections[item.section_id]
    children = _media(item) + _images(item)
    for family in ("genre", "country", "collection", "director", "writer", "actor"):
        tags = item.tags.get(family, [])[: LISTING_TAG_LIMITS[family]]
        children += [element(TAG_ELEMENTS[family], [("tag", t.name)]) for t in tags]
    return element("Video", _video_pairs(item, section, detail=False), children)


def metadata(library: PlexLibrary, objects: Sequence[Item | Collection]) -> bytes:
    """`GET /library/metadata/{ids}`: full objects; container section only if shared."""
    children = [
        video_detail(library, obj) if isinstance(obj, Item) else collection_directory(library, obj)
        for obj in objects
    ]
    section_ids = {obj.section_id for obj in objects}
    pairs: list[tuple[str, object]] = [
        ("size", len(children)),
        ("allowSync", True),
        ("identifier", LIBRARY_IDENTIFIER),
    ]
    if len(section_ids) == 1:
        pairs += _section_pairs(library.sections[section_ids.pop()])
    pairs += [("mediaTagPrefix", MEDIA_TAG_PREFIX), ("mediaTagVersion", MEDIA_TAG_VERSION)]
    return document(pairs, children)


# ---------------------------------------------------------------------- collections
def collection_directory(library: PlexLibrary, coll: Collection, *, detail: bool = True) -> str:
    section = library.sections[coll.section_id]
    children = library.collection_children(coll)
    pairs: list[tuple[str, object]] = [
        ("ratingKey", coll.rating_key),
        ("key", f"/library/collections/{coll.rating_key}/children"),
        ("guid", coll.guid),
        ("type", "collection"),
        ("title", coll.title),
        ("titleSort", coll.text.get("titleSort") or None),
        ("librarySectionTitle", section.title),
        ("librarySectionID", section.key),
        ("librarySectionKey", f"/library/sections/{section.key}"),
        ("contentRating", coll.text.get("contentRating") or None),
        ("subtype", "movie"),
        ("summary", coll.text.get("summary", "")),
        ("index", library.tag_id("collection", coll.title)),
        ("userRating", coll.user_rating),
        ("lastRatedAt", coll.last_rated_at),
        # An uploaded poster replaces the composite of the children's posters.
        (
            "thumb",
            _image_url(coll, "thumb")
            or f"/library/collections/{coll.rating_key}/composite/{coll.updated_at}"
            "?width=400&height=600",
        ),
        ("art", _image_url(coll, "art")),
        ("addedAt", coll.added_at),
        ("updatedAt", coll.updated_at),
        ("childCount", len(children)),
        ("smart", coll.smart),
        # A smart collection's search, as a library path (plexapi parses only its query).
        ("content", coll.content if coll.smart else None),
    ]
    return element("Directory", pairs, _fields(coll.locked) if detail else ())


def new_collection(library: PlexLibrary, coll: Collection) -> bytes:
    """The answer to `POST /library/collections`: a container whose first child is the new one."""
    section = library.sections[coll.section_id]
    return document(
        [("size", 1), ("identifier", LIBRARY_IDENTIFIER), *_section_pairs(section)],
        [collection_directory(library, coll)],
    )


# ---------------------------------------------------------------------- plays
def history(
    library: PlexLibrary, entries: Sequence[HistoryEntry], *, total: int, offset: int
) -> bytes:
    """`GET /status/sessions/history/all`: one `<Video>` per play, newest first by default.

    Shape of the real answer (PMS 1.41, plexapi's `MovieHistory`): the item's keys and title
    plus `historyKey`, `viewedAt`, `accountID` and `deviceID`; no media, no tags.
    """
    children = []
    for entry in entries:
        item = library.items.get(entry.rating_key)
        children.append(
            element(
                "Video",
                [
                    ("historyKey", f"/status/sessions/history/{entry.id}"),
                    ("key", f"/library/metadata/{entry.rating_key}"),
                    ("ratingKey", entry.rating_key),
                    ("librarySectionID", entry.section_id),
                    ("title", item.title if item else None),
                    ("type", "movie"),
                    ("thumb", _image_url(item, "thumb") if item else None),
                    ("originallyAvailableAt", item.originally_available_at if item else None),
                    ("viewedAt", entry.viewed_at),
                    ("accountID", entry.account_id),
                    ("deviceID", entry.device_id),
                ],
            )
        )
    return document([("size", len(children)), ("totalSize", total), ("offset", offset)], children)


def accounts(library: PlexLibrary) -> bytes:
    """`GET /accounts`: the server's accounts (0 the system, 1 the owner), as `SystemAccount`."""
    children = [
        element(
            "Account",
            [
                ("id", account_id),
                ("key", f"/accounts/{account_id}"),
                ("name", name),
                ("defaultAudioLanguage", "en"),
                ("autoSelectAudio", True),
                ("defaultSubtitleLanguage", "en"),
                ("subtitleMode", 0),
                ("thumb", ""),
            ],
        )
        for account_id, name in sorted(library.accounts.items())
    ]
    return document(
        [("size", len(children)), ("identifier", "com.plexapp.system.accounts")], children
    )


# ---------------------------------------------------------------------- images
def photos(item: Item | Collection, kind: str, images: Sequence[Image]) -> bytes:
    """`GET /library/metadata/{id}/posters|arts`: one `<Photo>` per stored image."""
    children = []
    for img in images:
        url = f"/library/metadata/{item.rating_key}/file?url={quote(img.rating_key, safe='')}"
        children.append(
            element(
                "Photo",
                [
                    ("key", url),
                    ("provider", img.provider),
                    ("ratingKey", img.rating_key),
                    ("selected", img.selected),
                    ("thumb", url),
                ],
            )
        )
    return document(
        [
            ("size", len(children)),
            ("identifier", LIBRARY_IDENTIFIER),
            ("mediaTagPrefix", MEDIA_TAG_PREFIX),
            ("mediaTagVersion", MEDIA_TAG_VERSION),
        ],
        children,
    )


# ---------------------------------------------------------------------- filters and <Meta>
_STRING_OPS = (
    ("=", "contains"),
    ("!=", "does not contain"),
    ("==", "is"),
    ("!==", "is not"),
    ("<=", "begins with"),
    (">=", "ends with"),
)
_FIELD_TYPES: dict[str, Sequence[tuple[str, str]]] = {
    "tag": (("=", "is"), ("!=", "is not")),
    "integer": (("=", "is"), ("!=", "is not"), (">>=", "is greater than"), ("<<=", "is less than")),
    "string": _STRING_OPS,
    "date": (("<<=", "is before"), (">>=", "is after")),
    "boolean": (("=", "is true"), ("!=", "is false")),
}
# The movie fields the emulator can filter on, in the order and with the titles of the real
# <Meta> (§2.4). `location` is listed without a <Filter>, as in PMS, so plexapi cannot use it.
MOVIE_FIELDS: Sequence[tuple[str, str, str]] = (
    ("title", "Title", "string"),
    ("studio", "Studio", "string"),
    ("userRating", "Rating", "integer"),
    ("contentRating", "Content Rating", "tag"),
    ("year", "Year", "integer"),
    ("decade", "Decade", "integer"),
    ("originallyAvailableAt", "Release Date", "date"),
    ("duration", "Duration", "integer"),
    ("genre", "Genre", "tag"),
    ("collection", "Collection", "tag"),
    ("director", "Director", "tag"),
    ("writer", "Writer", "tag"),
    ("producer", "Producer", "tag"),
    ("actor", "Actor", "tag"),
    ("country", "Country", "tag"),
    ("label", "Label", "tag"),
    ("addedAt", "Date Added", "date"),
    ("viewCount", "Plays", "integer"),
    ("unwatched", "Unplayed", "boolean"),
    ("mediaSize", "File Size", "integer"),
    ("inProgress", "In Progress", "boolean"),
    ("location", "Folder Location", "tag"),
    ("editionTitle", "Edition", "string"),
)
FILTER_CHOICE_FAMILIES = (
    "genre",
    "collection",
    "director",
    "writer",
    "producer",
    "actor",
    "country",
    "label",
    "contentRating",
)
MOVIE_SORTS: Sequence[tuple[str, str, str]] = (
    ("titleSort", "Title", "asc"),
    ("year", "Year", "desc"),
    ("originallyAvailableAt", "Release Date", "desc"),
    ("rating", "Critic Rating", "desc"),
    ("audienceRating", "Audience Rating", "desc"),
    ("userRating", "Rating", "desc"),
    ("contentRating", "Content Rating", "asc"),
    ("duration", "Duration", "desc"),
    ("addedAt", "Date Added", "desc"),
    ("lastViewedAt", "Date Viewed", "desc"),
    ("viewCount", "Plays", "desc"),
    ("mediaSize", "File Size", "desc"),
)


def _sort_el(sid: int, key: str, title: str, direction: str, default: bool) -> str:
    first = f"/library/sections/{sid}/firstCharacter" if key == "titleSort" else None
    return element(
        "Sort",
        [
            ("default", direction if default else None),
            ("defaultDirection", direction),
            ("descKey", f"{key}:desc"),
            ("firstCharacterKey", first),
            ("key", key),
            ("title", title),
        ],
    )


def _field_types() -> list[str]:
    return [
        element(
            "FieldType",
            [("type", name)],
            [element("Operator", [("key", k), ("title", t)]) for k, t in ops],
        )
        for name, ops in _FIELD_TYPES.items()
    ]


def movie_meta(section: Section) -> str:
    """The `<Meta>` block of `…/all?includeMeta=1`: what plexapi validates searches against."""
    sid = section.key
    children = []
    for key, title, ftype in MOVIE_FIELDS:
        # Only tag filters need a <Filter>: plexapi asks its `key` for the value choices.
        if key in FILTER_CHOICE_FAMILIES:
            children.append(
                element(
                    "Filter",
                    [
                        ("filter", key),
                        ("filterType", ftype),
                        ("key", f"/library/sections/{sid}/{key}"),
                        ("title", title),
                        ("type", "filter"),
                    ],
                )
            )
    children += [_sort_el(sid, k, t, d, k == "titleSort") for k, t, d in MOVIE_SORTS]
    children += [
        element("Field", [("key", k), ("title", t), ("type", ft)]) for k, t, ft in MOVIE_FIELDS
    ]
    movie_type = element(
        "Type",
        [
            ("key", f"/library/sections/{sid}/all?type={SEARCH_TYPE_MOVIE}"),
            ("type", "movie"),
            ("title", "Movies"),
            ("active", True),
        ],
        children,
    )
    return element("Meta", [], [movie_type, *_field_types()])


def collection_meta(section: Section) -> str:
    """The `<Meta>` of `…/collections?includeMeta=1` (a `collection` type)."""
    sid = section.key
    children = [
        _sort_el(sid, "titleSort", "Title", "asc", True),
        _sort_el(sid, "addedAt", "Date Added", "desc", False),
        element("Field", [("key", "title"), ("title", "Title"), ("type", "string")]),
    ]
    coll_type = element(
        "Type",
        [
            ("key", f"/library/sections/{sid}/all?type={SEARCH_TYPE_COLLECTION}"),
            ("type", "collection"),
            ("title", "Collections"),
            ("active", False),
        ],
        children,
    )
    return element("Meta", [], [coll_type, *_field_types()])


def filter_choices(
    section: Section, family: str, title: str, choices: Sequence[tuple[str, str]]
) -> bytes:
    """`GET /library/sections/{id}/{filter}`: the values a tag filter can take."""
    children = [
        element(
            "Directory",
            [
                ("fastKey", f"/library/sections/{section.key}/all?{family}={quote(key, safe='')}"),
                ("key", key),
                ("title", name),
                ("type", family),
            ],
        )
        for key, name in choices
    ]
    return document(
        [
            ("size", len(children)),
            ("allowSync", False),
            ("art", f"/:/resources/{section.type}-fanart.jpg"),
            ("content", "secondary"),
            ("identifier", LIBRARY_IDENTIFIER),
            *_section_pairs(section),
            ("mediaTagPrefix", MEDIA_TAG_PREFIX),
            ("mediaTagVersion", MEDIA_TAG_VERSION),
            ("thumb", f"/:/resources/{section.type}.png"),
            ("title1", section.title),
            ("title2", f"By {title}"),
            ("viewGroup", "secondary"),
        ],
        children,
    )
