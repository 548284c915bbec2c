"""From a Stash scene and the settings, what the Plex item should show. Pure functions.

Each synced field is fingerprinted; the store keeps the fingerprints of what we last pushed,
so an unchanged scene costs no write and only changed fields are sent.

What replace semantics own: genres and actors mirror Stash exactly. Collections are shared
with the user, so only the ones Stash2Plex added are ever removed (see `collection_list`).
Stash has no sort title, so Plex's is left alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stash2plex.names import name_key, unique_names
from stash2plex.settings.config import Config
from stash2plex.sync.tag_tree import TagTree

TITLE_MAX = 255
SUMMARY_MAX = 10_000
TAG_MAX = 255
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
# Unicode's control characters (category Cc: U+0000-U+001F, U+007F-U+009F) but tab and line
# feed. One regex pass instead of a category lookup per character (a reconcile cleans every
# scene's details: it was a fifth of its own time).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Fingerprint keys, also the names a preview and a report use.
TEXT_FIELDS = ("title", "summary", "studio", "originallyAvailableAt")
LIST_FIELDS = ("genre", "actor", "collection")
IMAGE_FIELDS = ("poster", "art")


@dataclass(frozen=True)
class Actor:
    name: str
    thumb: str = ""


@dataclass(frozen=True)
class DesiredItem:
    """What the Plex item should show. Only the fields being synced are present.

    `fields`: Plex field key -> value ('' clears). `genres`/`actors`/`collections`: complete
    lists (None = not synced). `rating`: 0-10 or None to clear (absent when not synced).
    `images`: poster/art -> the Stash URL to fetch the image from.
    """

    fields: dict[str, str] = field(default_factory=dict)
    genres: tuple[str, ...] | None = None
    actors: tuple[Actor, ...] | None = None
    collections: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None  # None: labels not synced (`label_tags` empty)
    rating: float | None = None
    sync_rating: bool = False
    images: dict[str, str] = field(default_factory=dict)

    def fingerprints(self) -> dict[str, str]:
        """Fingerprint of every synced value except images (their content is hashed later).

        Computed once per item (a plan asks twice); each call returns its own dict."""
        cached = self.__dict__.get("_fingerprints")
        if cached is None:
            cached = self._fingerprints()
            object.__setattr__(self, "_fingerprints", cached)  # frozen: a memo, not state
        return dict(cached)

    def _fingerprints(self) -> dict[str, str]:
        prints = {key: fingerprint(value) for key, value in self.fields.items()}
        if self.genres is not None:
            prints["genre"] = fingerprint(list(self.genres))
        if self.actors is not None:
            prints["actor"] = fingerprint([[a.name, a.thumb] for a in self.actors])
        if self.collections is not None:
            prints["collection"] = fingerprint(sorted(self.collections))
        if self.labels is not None:
            prints["label"] = fingerprint(sorted(self.labels))
        if self.sync_rating:
            prints["rating"] = fingerprint(self.rating)
        return prints


def fingerprint(value: Any) -> str:
    """16 hex digits of the SHA-1 of the value's canonical JSON (stored in links: the
    encoding must never change, or every scene would be pushed again)."""
    encoded = _CANONICAL.encode(value).encode("utf-8")
    return hashlib.sha1(encoded).hexdigest()[:16]


# json.dumps with options builds an encoder on every call: one, shared (it keeps no state).
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def clean_text(text: str | None, limit: int) -> str:
    """Keep line breaks, tabs and typography; drop other control characters; cap the length."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = _CONTROL.sub("", text).strip()
    if len(kept) > limit:
        kept = kept[: limit - 1].rstrip() + "…"
    return kept


def plex_date(stash_date: str | None) -> str:
    """Stash dates may be YYYY, YYYY-MM or YYYY-MM-DD; Plex needs a full date.

    A partial date is expanded to the first day of its period, so Plex shows the right year
    and sorts it correctly; a malformed date is not sent at all.
    """
    match = _DATE.match((stash_date or "").strip())
    if not match:
        return ""
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    return f"{year}-{month}-{day}"


def file_title(scene: dict[str, Any]) -> str:
    """The title Plex should show for an untitled scene: its primary file's name, no extension."""
    files = scene.get("files") or []
    if not files:
        return ""
    basename = files[0].get("basename") or str(files[0].get("path", "")).replace("\\", "/")
    basename = basename.rsplit("/", 1)[-1]
    return basename.rsplit(".", 1)[0] if "." in basename else basename


def genre_list(
    tags: Iterable[dict[str, Any]],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    tree: TagTree | None = None,
) -> tuple[str, ...]:
    """Tag names to send as genres. Naming a tag in a filter covers every tag below it, at any
    depth and through any parent (`tree`: the whole hierarchy; without it only the tag itself
    is known). Exclusion wins over inclusion. Names compare as `names.name_key` says (one
    Unicode form, any case); two tags of one name give one genre, spelled as the first."""
    wanted = {name_key(name) for name in include} - {""}
    unwanted = {name_key(name) for name in exclude} - {""}
    genres: list[str] = []
    for tag in tags:
        lineage = {name_key(str(tag.get("name", "")))}
        tag_id = _int_id(tag.get("id"))
        if tree is not None and tag_id is not None and tag_id in tree:
            lineage |= tree.lineage_names(tag_id)
        if wanted and not lineage & wanted:
            continue
        if lineage & unwanted:
            continue
        genres.append(clean_text(tag.get("name"), TAG_MAX))
    return tuple(unique_names(genres))


def _int_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def has_own_metadata(scene: dict[str, Any]) -> bool:
    """Whether the scene carries metadata of its own: a title, details, a date, a studio,
    performers or tags. A freshly scanned scene has none of these (its file name is not
    metadata), so pushing it would only wipe what a Plex agent found."""
    return bool(
        (scene.get("title") or "").strip()
        or (scene.get("details") or "").strip()
        or (scene.get("date") or "").strip()
        or (scene.get("studio") or {}).get("name")
        or scene.get("performers")
        or scene.get("tags")
    )


def scene_entities(scene: dict[str, Any], tree: TagTree | None = None) -> dict[str, set[int]]:
    """Ids of the performers, studios (with the parent), tags (with every ancestor, which tag
    filters depend on) and groups a scene shows: what a deletion in Stash can change."""
    studio = scene.get("studio") or {}
    studios = {_int_id(studio.get("id")), _int_id((studio.get("parent_studio") or {}).get("id"))}
    tags: set[int] = set()
    for tag in scene.get("tags") or []:
        tag_id = _int_id(tag.get("id"))
        if tag_id is not None:
            tags.add(tag_id)
            if tree is not None:
                tags |= tree.ancestors(tag_id)
    return {
        "performer": {i for p in scene.get("performers") or [] if (i := _int_id(p.get("id")))},
        "studio": {i for i in studios if i is not None},
        "tag": tags,
        "group": {
            i for g in scene.get("groups") or [] if (i := _int_id((g.get("group") or {}).get("id")))
        },
    }


def wanted_collections(scene: dict[str, Any], config: Config) -> tuple[str, ...]:
    """The collections Stash2Plex wants this item in: its studio, optionally more."""
    names: list[str] = []
    studio = scene.get("studio") or {}
    if studio.get("name"):
        names.append(clean_text(studio["name"], TAG_MAX))
    parent = studio.get("parent_studio") or {}
    if config.collection_parent_studio and parent.get("name"):
        names.append(clean_text(parent["name"], TAG_MAX))
    if config.collection_groups:
        for entry in scene.get("groups") or []:
            name = clean_text((entry.get("group") or {}).get("name"), TAG_MAX)
            if name:
                names.append(name)
    return tuple(unique_names(names))


def desired_item(scene: dict[str, Any], config: Config, tree: TagTree | None = None) -> DesiredItem:
    """Compute the Plex state for a scene under the settings' field toggles (`tree`: Stash's
    tag hierarchy, needed only when tag filters are set)."""
    studio = scene.get("studio") or {}
    fields: dict[str, str] = {}
    if not config.skip_title:
        fields["title"] = clean_text(scene.get("title"), TITLE_MAX) or clean_text(
            file_title(scene), TITLE_MAX
        )
    if not config.skip_summary:
        fields["summary"] = clean_text(scene.get("details"), SUMMARY_MAX)
    if not config.skip_studio:
        fields["studio"] = clean_text(studio.get("name"), TITLE_MAX)
    if not config.skip_date:
        fields["originallyAvailableAt"] = plex_date(scene.get("date"))
    actors = None
    if not config.skip_performers:
        # Plex keeps one actor per name: two performers of one name are one actor (the first).
        named: dict[str, dict[str, Any]] = {}
        for performer in scene.get("performers") or []:
            name = clean_text(performer.get("name"), TAG_MAX)
            if name_key(name) and name_key(name) not in named:
                named[name_key(name)] = {**performer, "name": name}
        actors = tuple(
            Actor(p["name"], _photo(p) if config.sync_performer_photos else "")
            for p in named.values()
        )
    rating100 = scene.get("rating100")
    images = {}
    screenshot = (scene.get("paths") or {}).get("screenshot")
    if screenshot:
        if not config.skip_poster:
            images["poster"] = screenshot
        if not config.skip_art:
            images["art"] = screenshot
    return DesiredItem(
        fields=fields,
        genres=None
        if config.skip_tags
        else genre_list(scene.get("tags") or [], config.tag_include, config.tag_exclude, tree),
        actors=actors,
        collections=None if config.skip_collections else wanted_collections(scene, config),
        # Labels: only the chosen tags (by name, or a parent naming its children).
        labels=genre_list(scene.get("tags") or [], config.label_tags, (), tree)
        if config.label_tags
        else None,
        rating=round(rating100 / 10, 1) if isinstance(rating100, int) else None,
        sync_rating=config.sync_rating,
        images=images,
    )


def _photo(performer: dict[str, Any]) -> str:
    path = str(performer.get("image_path") or "")
    # Stash marks its generated placeholder with default=true: no photo then.
    return "" if "default=true" in path else path


def changed_fields(desired: DesiredItem, pushed: dict[str, str]) -> list[str]:
    """Keys whose desired value differs from what we last pushed (images excluded)."""
    current = desired.fingerprints()
    return sorted(key for key, value in current.items() if pushed.get(key) != value)


def collection_list(
    wanted: tuple[str, ...], owned_before: Iterable[str], in_plex: Iterable[str]
) -> list[str]:
    """The item's full collection list after our change.

    Plex replaces the whole list on edit, so the list keeps every collection the user made
    (those in Plex we never added), drops ours that are no longer wanted, and adds the wanted.
    Names compare as `names.name_key` says: a collection Plex shows in another Unicode form or
    case is the same collection.
    """
    ours_before = {name_key(name) for name in owned_before}
    keep = {name_key(name) for name in wanted}
    result = [
        name for name in in_plex if name_key(name) not in ours_before or name_key(name) in keep
    ]
    return unique_names([*result, *wanted])


def edit_params(
    desired: DesiredItem,
    keys: Iterable[str],
    *,
    present: dict[str, list[str]] | None = None,
    collections: list[str] | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """The parameters of one batched Plex edit for the changed `keys`.

    Every field or list we write is locked, the emptied ones too: an empty value is what Stash
    says, and unlocked a Plex agent refresh would fill it again (a scene without metadata of
    its own is never written at all, see `has_own_metadata`). An emptied list cannot be sent
    as an empty replacement; it is removed with `-=` naming every value Plex may hold
    (`present`: what we pushed before and what Plex showed).
    """
    params: dict[str, Any] = {}
    before = present or {}
    for key in keys:
        if key in desired.fields:
            params[f"{key}.value"] = desired.fields[key]
            params[f"{key}.locked"] = 1
        elif key == "genre" and desired.genres is not None:
            _list_params(params, "genre", list(desired.genres), before.get("genre", []))
        elif key == "actor" and desired.actors is not None:
            names = [a.name for a in desired.actors]
            _list_params(params, "actor", names, before.get("actor", []))
            for index, actor in enumerate(desired.actors):
                if actor.thumb:
                    params[f"actor[{index}].tag.thumb"] = actor.thumb
        elif key == "collection" and collections is not None:
            _list_params(params, "collection", collections, before.get("collection", []))
        elif key == "label" and labels is not None:
            _list_params(params, "label", labels, before.get("label", []))
    return params


def _list_params(params: dict[str, Any], family: str, values: list[str], before: list[str]) -> None:
    params[f"{family}.locked"] = 1
    if values:
        for index, value in enumerate(values):
            params[f"{family}[{index}].tag.tag"] = value
    elif before:
        # plexapi's removal encoding: each value percent-encoded, joined by commas.
        from urllib.parse import quote

        unique = list(dict.fromkeys(before))
        params[f"{family}[].tag.tag-"] = ",".join(quote(v, safe="") for v in unique)
