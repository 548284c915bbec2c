"""Stash's tag hierarchy, for tag filters that name an ancestor. Pure logic, no I/O.

Stash tags form a graph, not a tree: a tag may have several parents, chains may be deep, and
a careless edit can even make a cycle. A filter naming a tag covers every tag below it, at any
depth and through any parent.
"""

from __future__ import annotations

from collections.abc import Mapping

from stash2plex.names import name_key


class TagTree:
    """Built from `{tag id: (name, parent ids)}` as `StashClient.tag_hierarchy` returns it."""

    def __init__(self, tags: Mapping[int, tuple[str, tuple[int, ...]]]) -> None:
        self._tags = tags
        self._ancestors: dict[int, frozenset[int]] = {}
        self._names: frozenset[str] | None = None

    def __contains__(self, tag_id: object) -> bool:
        return tag_id in self._tags

    def ancestors(self, tag_id: int) -> frozenset[int]:
        """Every tag above this one, through all parents (the tag itself excluded)."""
        cached = self._ancestors.get(tag_id)
        if cached is not None:
            return cached
        found: set[int] = set()
        frontier = list(self._tags.get(tag_id, ("", ()))[1])
        while frontier:  # iterative and cycle-safe: a tag already seen is not walked again
            parent = frontier.pop()
            if parent in found or parent == tag_id:
                continue
            found.add(parent)
            frontier.extend(self._tags.get(parent, ("", ()))[1])
        result = frozenset(found)
        self._ancestors[tag_id] = result
        return result

    def has_name(self, name: str) -> bool:
        """Whether a tag of this name exists, compared as filters compare names."""
        if self._names is None:
            self._names = frozenset(name_key(tag_name) for tag_name, _ in self._tags.values())
        return name_key(name) in self._names

    def lineage_names(self, tag_id: int) -> frozenset[str]:
        """The tag's own name and the names of all its ancestors, each as `names.name_key`
        compares them (NFC, case-folded)."""
        ids = {tag_id} | self.ancestors(tag_id)
        return frozenset(name_key(self._tags[i][0]) for i in ids if i in self._tags)
