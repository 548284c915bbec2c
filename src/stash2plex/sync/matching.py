"""Deterministic matching of a Stash scene to Plex items. Pure logic over an index lookup.

Each of a scene's files is matched on its own: first by the full path mapped through the path
rules, then by the file name with the file size as a tiebreak. Paths compare as
`stash2plex.paths` says (one Unicode normal form; Windows paths without case and with either
slash). A scene whose files Plex holds as several items (a merged scene, a copy in another
folder) matches all of them; the first is the primary (the primary file's, when Plex has it).
Ambiguity is reported with its candidates, never guessed.

The exact path always wins over the name: a Plex file whose path is exactly another Stash
scene's file (mapped) is that scene's, never a name-and-size match of this one (two cameras'
`clip01.mp4` of one size in two folders are two scenes, whichever Plex has scanned yet).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stash2plex.paths import basename, basename_key, path_key
from stash2plex.records import IndexEntry
from stash2plex.sync.pathmap import PathRule, map_path

MAPPED_PATH = "mapped_path"
BASENAME_SIZE = "basename_size"
BASENAME = "basename"


@dataclass(frozen=True)
class Match:
    rating_key: int
    section_id: int
    plex_path: str
    rule: str


@dataclass(frozen=True)
class MatchResult:
    """`matches`: one per distinct Plex item found, exact path matches first, each in the order
    of the scene's files. `candidates`: items a file could be but that were not chosen."""

    matches: list[Match] = field(default_factory=list)
    candidates: list[IndexEntry] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # the Plex paths we looked for

    @property
    def match(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def ambiguous(self) -> bool:
        return not self.matches and len({c.rating_key for c in self.candidates}) > 1


def is_exactly(stash_file: dict[str, Any], plex_path: str, rules: tuple[PathRule, ...]) -> bool:
    """Whether a Stash file, mapped through the path rules, is exactly this Plex path."""
    path = str(stash_file.get("path", ""))
    return bool(path) and path_key(map_path(path, rules)) == path_key(plex_path)


def claims_part(
    stash_file: dict[str, Any], plex_path: str, plex_size: int | None, rules: tuple[PathRule, ...]
) -> bool:
    """Whether a Stash file is this Plex file: the same mapped path, or (another root the rules
    do not cover) the same file name and size. See `part_holders` for who wins when several
    scenes claim one file."""
    if is_exactly(stash_file, plex_path, rules):
        return True
    path = str(stash_file.get("path", ""))
    size = stash_file.get("size")
    return (
        bool(path)
        and basename_key(path) == basename_key(plex_path)
        and size is not None
        and plex_size is not None
        and int(size) == int(plex_size)
    )


def part_holders(
    parts: list[tuple[str, int | None]],
    scenes: Mapping[int, list[dict[str, Any]]],
    rules: tuple[PathRule, ...],
) -> dict[int, list[str]]:
    """Which scene holds which file of one Plex item: `parts` are the item's (path, size),
    `scenes` the candidate scenes' Stash files by scene id. A file belongs to the scenes whose
    file maps exactly onto its path; only a file no scene maps onto is claimed by name and
    size. Returns scene id -> the item's paths it holds (scenes holding none left out)."""
    held: dict[int, list[str]] = {}
    for path, size in parts:
        owners = [
            sid for sid, files in scenes.items() if any(is_exactly(f, path, rules) for f in files)
        ]
        if not owners:
            owners = [
                sid
                for sid, files in scenes.items()
                if any(claims_part(f, path, size, rules) for f in files)
            ]
        for sid in owners:
            held.setdefault(sid, []).append(path)
    return held


def match_scene(
    files: list[dict[str, Any]],
    rules: tuple[PathRule, ...],
    by_path: Callable[[str], list[IndexEntry]],
    by_basename: Callable[[str], list[IndexEntry]],
    taken: Callable[[IndexEntry], bool] | None = None,
) -> MatchResult:
    """Find the Plex items holding the scene's files.

    `taken(entry)`: whether an indexed file is exactly another Stash scene's file; such a file
    is never this scene's by name and size (asked only when the exact path finds nothing)."""
    tried = [map_path(str(f.get("path", "")), rules) for f in files if f.get("path")]
    exact: list[Match] = []
    fallback: list[Match] = []
    candidates: list[IndexEntry] = []
    for stash_file in files:
        path = str(stash_file.get("path", ""))
        if not path:
            continue
        same_path = _unique(by_path(map_path(path, rules)))
        if len(same_path) == 1:
            entry = same_path[0]
            exact.append(Match(entry.rating_key, entry.section_id, entry.path, MAPPED_PATH))
            continue
        if len(same_path) > 1:  # the same file in two libraries: which one is meant is unclear
            candidates.extend(same_path)
            continue
        same_name = [e for e in by_basename(basename(path)) if taken is None or not taken(e)]
        if not same_name:
            continue
        size = stash_file.get("size")
        same_size = [e for e in same_name if size is not None and e.size == int(size)]
        if len({e.rating_key for e in same_size}) == 1:
            entry = same_size[0]
            fallback.append(Match(entry.rating_key, entry.section_id, entry.path, BASENAME_SIZE))
        elif len({e.rating_key for e in same_name}) == 1 and size is None:
            entry = same_name[0]
            fallback.append(Match(entry.rating_key, entry.section_id, entry.path, BASENAME))
        else:
            candidates.extend(same_size or same_name)
    matches: list[Match] = []
    for found in exact + fallback:
        if all(m.rating_key != found.rating_key for m in matches):
            matches.append(found)
    chosen = {m.rating_key for m in matches}
    left = [c for c in _unique(candidates) if c.rating_key not in chosen]
    return MatchResult(matches, left, tried)


def _unique(entries: list[IndexEntry]) -> list[IndexEntry]:
    seen: dict[int, IndexEntry] = {}
    for entry in entries:
        seen.setdefault(entry.rating_key, entry)
    return sorted(seen.values(), key=lambda e: e.rating_key)
