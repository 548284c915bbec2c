"""Path mapping rules: how a Stash file path becomes the path Plex sees.

Stash and Plex often see the same disk under different roots (two containers, a NAS share
mounted on different machines). The user writes rules `stash_prefix => plex_prefix`, separated by
`;` or new lines; the longest matching Stash prefix wins. Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


class PathMapError(ValueError):
    """A rule cannot be parsed; the message names the rule."""


@dataclass(frozen=True)
class PathRule:
    stash_prefix: str
    plex_prefix: str

    def applies_to(self, path: str) -> bool:
        prefix = self.stash_prefix.rstrip("/\\")
        return path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "\\")

    def apply(self, path: str) -> str:
        rest = path[len(self.stash_prefix.rstrip("/\\")) :]
        target = self.plex_prefix.rstrip("/\\")
        # A Windows Plex server sees backslashes; keep the separator style of the target.
        if "\\" in target and "/" not in target:
            rest = rest.replace("/", "\\")
        elif "/" in target or not target:
            rest = rest.replace("\\", "/")
        return target + rest


def parse_path_map(text: str | None) -> tuple[PathRule, ...]:
    """Parse the `path_map` setting. Empty means Plex sees the same paths as Stash."""
    rules = []
    for raw in (text or "").replace("\n", ";").split(";"):
        entry = raw.strip()
        if not entry:
            continue
        if entry.count("=>") != 1:
            raise PathMapError(
                f"path_map rule {entry!r} must look like '/stash/prefix => /plex/prefix'"
            )
        stash_prefix, plex_prefix = (part.strip() for part in entry.split("=>"))
        if not stash_prefix or not plex_prefix:
            raise PathMapError(f"path_map rule {entry!r} needs a prefix on both sides of '=>'")
        rules.append(PathRule(stash_prefix, plex_prefix))
    # Longest prefix first, so a specific rule beats a general one.
    rules.sort(key=lambda rule: len(rule.stash_prefix), reverse=True)
    return tuple(rules)


def map_path(path: str, rules: tuple[PathRule, ...]) -> str:
    """Map a Stash path to the Plex path; unchanged when no rule applies."""
    for rule in rules:
        if rule.applies_to(path):
            return rule.apply(path)
    return path
