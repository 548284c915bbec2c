"""Path mapping rules: how a Stash file path becomes the path Plex sees.

Stash and Plex often see the same disk under different roots (two containers, a NAS share
mounted on different machines, a Windows Plex server and a Linux Stash). The user writes rules
`stash_prefix => plex_prefix`, separated by `;` or new lines; the longest matching Stash prefix
wins. A prefix matches whole path segments, compared as `stash2plex.paths` compares paths:
Unicode normal form ignored everywhere, case and slash direction ignored for Windows-style
paths. Pure logic, no I/O.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from stash2plex.paths import KEYS_REMEMBERED, is_windows_path, nfc, split_path


class PathMapError(ValueError):
    """A rule cannot be parsed; the message names the rule."""


def _segments(path: str, windows: bool) -> list[str]:
    parts = split_path(path)
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()  # "M:\" and "/data/" end with a separator that names no segment
    keyed = [nfc(part) for part in parts]
    return [part.casefold() for part in keyed] if windows else keyed


@dataclass(frozen=True)
class PathRule:
    stash_prefix: str
    plex_prefix: str

    def _windows(self, path: str) -> bool:
        return is_windows_path(self.stash_prefix) or is_windows_path(path)

    def applies_to(self, path: str) -> bool:
        windows = self._windows(path)
        prefix = _segments(self.stash_prefix, windows)
        return _segments(path, windows)[: len(prefix)] == prefix

    def apply(self, path: str) -> str:
        windows = self._windows(path)
        count = len(_segments(self.stash_prefix, windows))
        rest = split_path(path)[count:]
        target = self.plex_prefix
        # A Windows Plex server reports backslashes; keep the separator style of the target.
        backslash = is_windows_path(target) or ("\\" in target and "/" not in target)
        sep = "\\" if backslash else "/"
        if not rest:
            return target
        return target.rstrip("/\\") + sep + sep.join(rest)


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
    rules.sort(key=lambda rule: len(_segments(rule.stash_prefix, False)), reverse=True)
    return tuple(rules)


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def map_path(path: str, rules: tuple[PathRule, ...]) -> str:
    """Map a Stash path to the Plex path; unchanged when no rule applies."""
    for rule in rules:
        if rule.applies_to(path):
            return rule.apply(path)
    return path


def unmap_path(plex_path: str, rules: tuple[PathRule, ...]) -> str:
    """The Stash path of a Plex path: the rules read right to left (longest Plex prefix first)."""
    reverse = sorted(
        (PathRule(rule.plex_prefix, rule.stash_prefix) for rule in rules),
        key=lambda rule: len(_segments(rule.stash_prefix, False)),
        reverse=True,
    )
    return map_path(plex_path, tuple(reverse))
