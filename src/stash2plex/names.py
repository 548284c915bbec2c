"""How two spellings of one name (a tag, a performer, a collection, a library) are recognised
as the same name. Pure, standard library only.

Stash stores names as they were typed or imported, and a name that came through macOS or an
SMB share is often in NFD (a letter followed by its combining accent) while a setting typed
in a browser is in NFC: `Café` is then two different strings. Names people type into
settings are also matched without regard to case. Every comparison of names therefore uses
`name_key`: NFC, then case-folded, surrounding blanks ignored. What is *sent* to Plex stays
as Stash spells it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable


def name_key(name: str) -> str:
    """The form of a name that equal names share: NFC, case-folded, stripped (case folding
    can itself decompose a letter, so the result is put in NFC once more)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold()).strip()


def unique_names(names: Iterable[str]) -> list[str]:
    """The names in order, each kept once (the first spelling wins), empty names dropped."""
    seen: set[str] = set()
    kept: list[str] = []
    for name in names:
        key = name_key(name)
        if key and key not in seen:
            seen.add(key)
            kept.append(name)
    return kept
