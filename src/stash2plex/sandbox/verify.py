"""What Plex must show after a sync of a sample library, field by field, and the check of it.

An oracle written from the rules users are promised, independent of the sync code: every Plex
item of a scene shows that scene (title, or the primary file's name; details; studio; date,
a partial one as its first day; tags as genres, filtered through the whole tag hierarchy;
performers as actors; the studio, with the settings its parent studio and groups, as
collections; the chosen tags as labels; the cover). Every synced field is locked, an emptied
one too, so a Plex agent refresh cannot fill it again; poster and art only when a cover was
uploaded. A scene with no metadata of its own that was never pushed leaves its item as the
scan or agent left it (once pushed, it keeps being pushed: its title is then the file name).
An item holding files of several scenes is never written. Names (tags in filters, one
performer or collection under two spellings) compare in NFC, case-folded. Used by the demo
and the tests.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stash2plex.sandbox import images
from stash2plex.sandbox.library import SampleLibrary, Scene
from stash2plex.sandbox.plex_model import ItemState

CONFLICT = "conflict"
LEFT_ALONE = "left alone"
SYNCED = "synced"


@dataclass(frozen=True)
class Expected:
    """What one Plex item must show. `state`: synced | left alone | conflict."""

    scene_ids: tuple[int, ...]
    state: str
    fields: dict[str, Any] = field(default_factory=dict)
    locked: frozenset[str] = frozenset()


def own_metadata(scene: Scene) -> bool:
    return bool(
        (scene.title or "").strip()
        or (scene.details or "").strip()
        or scene.date
        or scene.studio_id
        or scene.performer_ids
        or scene.tag_ids
    )


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold()).strip()


def _once(names: Iterable[str]) -> list[str]:
    """Each name once, by `_key`, the first spelling kept."""
    kept: dict[str, str] = {}
    for name in names:
        if _key(name):
            kept.setdefault(_key(name), name)
    return list(kept.values())


def _setting_names(settings: Mapping[str, Any], name: str) -> set[str]:
    return {_key(n) for n in str(settings.get(name) or "").split(",")} - {""}


def expected_items(
    library: SampleLibrary,
    settings: Mapping[str, Any] | None = None,
    pushed: Collection[int] = (),
) -> dict[str, Expected]:
    """Per Plex item (keyed by its first file's Stash path): what it must show.

    `pushed`: scenes Stash2Plex pushed before (a scene that has since lost all its metadata
    is still pushed, not left alone)."""
    settings = settings or {}
    owners = {f.path: s for s in library.scenes.values() for f in s.files}
    result: dict[str, Expected] = {}
    for paths in library.plex_items():
        scenes = sorted({owners[p].id for p in paths})
        if len(scenes) > 1:
            result[paths[0]] = Expected(tuple(scenes), CONFLICT)
            continue
        scene = library.scenes[scenes[0]]
        if (
            not own_metadata(scene)
            and not settings.get("sync_empty_scenes")
            and scene.id not in pushed
        ):
            result[paths[0]] = Expected((scene.id,), LEFT_ALONE)
            continue
        result[paths[0]] = _synced(library, scene, settings)
    return result


def _synced(library: SampleLibrary, scene: Scene, settings: Mapping[str, Any]) -> Expected:
    primary = scene.files[0].path
    stem = posixpath.splitext(posixpath.basename(primary))[0]
    studio = library.studios[scene.studio_id] if scene.studio_id else None
    collections = [studio.name] if studio else []
    if studio and studio.parent_id and settings.get("collection_parent_studio"):
        collections.append(library.studios[studio.parent_id].name)
    if settings.get("collection_groups"):
        collections += [library.groups[g].name for g in scene.group_ids]
    fields: dict[str, Any] = {
        "title": (scene.title or "").strip() or stem,
        "summary": (scene.details or "").strip(),
        "studio": studio.name if studio else "",
        "originally_available_at": _full_date(scene.date),
        "genres": _genres(
            library,
            scene,
            _setting_names(settings, "tag_include"),
            _setting_names(settings, "tag_exclude"),
        ),
        "actors": _once(library.performers[p].name for p in scene.performer_ids),
        "collections": _once(collections),
        "poster_sha1": _cover(scene),
    }
    locked = {"title", "summary", "studio", "originallyAvailableAt", "genre", "actor"}
    locked |= {"collection"}
    label_tags = _setting_names(settings, "label_tags")
    if label_tags:
        fields["labels"] = _genres(library, scene, label_tags, set())
        locked |= {"label"}
    locked |= {"thumb", "art"} if fields["poster_sha1"] else set()
    return Expected((scene.id,), SYNCED, fields, frozenset(locked))


def _genres(
    library: SampleLibrary, scene: Scene, include: set[str], exclude: set[str]
) -> list[str]:
    """The scene's tags whose lineage (the tag and every ancestor) meets `include` (when set)
    and not `exclude`, names compared by `_key`."""
    names: list[str] = []
    for tag_id in scene.tag_ids:
        lineage = {_key(library.tags[i].name) for i in _lineage(library, tag_id)}
        if include and not lineage & include:
            continue
        if lineage & exclude:
            continue
        names.append(library.tags[tag_id].name.strip())
    return _once(names)


def _lineage(library: SampleLibrary, tag_id: int) -> set[int]:
    found = {tag_id}
    frontier = [tag_id]
    while frontier:
        for parent in library.tags[frontier.pop()].parent_ids:
            if parent not in found and parent in library.tags:
                found.add(parent)
                frontier.append(parent)
    return found


def _full_date(date: str | None) -> str | None:
    if not date or not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", date):
        return None
    return {4: f"{date}-01-01", 7: f"{date}-01"}.get(len(date), date)


def _cover(scene: Scene) -> str | None:
    if scene.cover_version is None:
        return None
    return hashlib.sha1(images.scene_cover(scene.id, scene.cover_version)).hexdigest()


def item_problems(expected: Expected, item: ItemState, before: ItemState | None) -> list[str]:
    """How an item differs from what it must show ([] when exactly right)."""
    if expected.state != SYNCED:
        # Never written: as the scan (or agent) left it, nothing locked.
        problems = []
        if item.edit_count or item.locked:
            problems.append(f"written although {expected.state} (locked {sorted(item.locked)})")
        if before is not None and _view(item) != _view(before):
            problems.append(f"changed although {expected.state}")
        return problems
    actual = {
        "title": item.title,
        "summary": item.summary,
        "studio": item.studio,
        "originally_available_at": item.originally_available_at,
        "genres": item.genres,
        "actors": [a.name for a in item.actors],
        "collections": item.collections,
        "labels": item.labels,
        "poster_sha1": item.poster_sha1,
    }
    problems = [
        f"{name}: {actual[name]!r} != {value!r}"
        for name, value in expected.fields.items()
        if actual[name] != value
    ]
    if item.locked != expected.locked:
        problems.append(f"locked {sorted(item.locked)} != {sorted(expected.locked)}")
    return problems


def _view(item: ItemState) -> tuple:
    return (
        item.title,
        item.summary,
        item.studio,
        item.originally_available_at,
        tuple(item.genres),
        tuple(a.name for a in item.actors),
        tuple(item.collections),
        item.poster_sha1,
    )


def library_problems(
    plex: Any,
    library: SampleLibrary,
    settings: Mapping[str, Any] | None = None,
    before: Mapping[int, ItemState] | None = None,
    pushed: Collection[int] = (),
) -> dict[str, list[str]]:
    """Every Plex item of the library that is not exactly right, with what is wrong.

    `plex`: the emulator (`find_by_file`, `item`); `before`: item states before the sync, to
    prove items left alone did not change; `pushed`: see `expected_items`."""
    problems: dict[str, list[str]] = {}
    for first, expected in expected_items(library, settings, pushed).items():
        rating_key = plex.find_by_file(library.plex_path(first))
        if rating_key is None:
            problems[first] = ["not in Plex"]
            continue
        item = plex.item(rating_key)
        found = item_problems(expected, item, (before or {}).get(rating_key))
        if found:
            problems[first] = found
    return problems


def conflict_scene_ids(library: SampleLibrary) -> set[int]:
    return {i for e in expected_items(library).values() if e.state == CONFLICT for i in e.scene_ids}
