"""Deterministic matching of a Stash scene to a Plex item. Pure logic over an index lookup.

Order: the full path mapped through the path rules (the primary file first), then the
basename with the file size as a tiebreak. Any of a scene's files may match. Ambiguity is
reported with its candidates, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    match: Match | None
    candidates: list[IndexEntry] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # the Plex paths we looked for

    @property
    def ambiguous(self) -> bool:
        return self.match is None and len({c.rating_key for c in self.candidates}) > 1


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def match_scene(
    files: list[dict[str, Any]],
    rules: tuple[PathRule, ...],
    by_path: Callable[[str], list[IndexEntry]],
    by_basename: Callable[[str], list[IndexEntry]],
) -> MatchResult:
    """Find the one Plex item holding one of the scene's files."""
    tried = [map_path(str(f.get("path", "")), rules) for f in files if f.get("path")]
    # Files in Stash's order: the first is the primary file. An exact mapped path is this
    # scene for certain, so the first file that Plex holds exactly once decides.
    for plex_path in tried:
        exact = _unique(by_path(plex_path))
        if len(exact) == 1:
            entry = exact[0]
            return MatchResult(
                Match(entry.rating_key, entry.section_id, entry.path, MAPPED_PATH), tried=tried
            )
        if len(exact) > 1:  # the same file in two libraries: which one the user means is unclear
            return MatchResult(None, exact, tried)

    candidates: list[IndexEntry] = []
    for stash_file in files:
        path = str(stash_file.get("path", ""))
        if not path:
            continue
        same_name = by_basename(_basename(path))
        if not same_name:
            continue
        size = stash_file.get("size")
        same_size = [e for e in same_name if size is not None and e.size == int(size)]
        if len({e.rating_key for e in same_size}) == 1:
            entry = same_size[0]
            return MatchResult(
                Match(entry.rating_key, entry.section_id, entry.path, BASENAME_SIZE), tried=tried
            )
        if len({e.rating_key for e in same_name}) == 1 and size is None:
            entry = same_name[0]
            return MatchResult(
                Match(entry.rating_key, entry.section_id, entry.path, BASENAME), tried=tried
            )
        candidates.extend(same_size or same_name)
    return MatchResult(None, _unique(candidates), tried)


def _unique(entries: list[IndexEntry]) -> list[IndexEntry]:
    seen: dict[int, IndexEntry] = {}
    for entry in entries:
        seen.setdefault(entry.rating_key, entry)
    return sorted(seen.values(), key=lambda e: e.rating_key)
