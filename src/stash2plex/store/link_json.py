"""How a link row writes what was pushed to its Plex item (`fingerprints`, field -> print) and
what Stash2Plex owns there (`owned`, list name -> values): compact JSON with a one-letter name
for each key the sync writes. Every link row repeats these names, and at 100,000 scenes the
spelled-out names and the spaces after `:` and `,` took about 15 MB of the store.

Rows written before (names in full, spaced JSON) read the same: a name that is not a short
name is read as it stands. Short names are capital letters and no key the sync writes starts
with one, so the two spellings never meet. A letter's meaning never changes (stored rows hold
it); a new key gets a new letter, or none (it is then written in full).

Standard library only: the store, which the hook path opens, imports this.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SHORT_NAMES: dict[str, str] = {
    "actor": "A",
    "art": "B",
    "art_url": "C",
    "collection": "D",
    "collection_all": "E",
    "genre": "G",
    "label": "L",
    "label_all": "M",
    "originallyAvailableAt": "O",
    "poster": "P",
    "poster_url": "Q",
    "rating": "R",
    "studio": "S",
    "title": "T",
    "summary": "U",
}
_FULL_NAMES = {short: full for full, short in SHORT_NAMES.items()}

# One encoder for every row (json.dumps with options builds one per call). Sorted keys: the
# same values always give the same text, so an unchanged link is recognised by its text.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def encode(values: Mapping[str, Any]) -> str:
    """The stored text of a link's fingerprints or owned lists (a JSON object)."""
    return _ENCODER.encode({SHORT_NAMES.get(key, key): value for key, value in values.items()})


def decode(text: str | None) -> dict[str, Any]:
    """A link's fingerprints or owned lists from their stored text, in either spelling. Empty,
    NULL, or text that is not a JSON object (a row edited by hand, or damaged) reads as none:
    the scene is then pushed again, where raising would stop every scene read with it."""
    try:
        values: Any = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(values, dict):
        return {}
    return {_FULL_NAMES.get(str(key), str(key)): value for key, value in values.items()}
