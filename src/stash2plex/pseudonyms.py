"""Stable pseudonyms for file paths, for logs people want to share (`obfuscate_paths`).

The same path always gets the same pseudonym (a short hash), so a log still shows that two
lines speak of the same file; the extension is kept because it helps troubleshooting.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

# A file path: from a leading "/" (or a drive letter) lazily up to the first ".ext" that ends
# a word (or a sentence), so names with spaces and brackets are covered.
# Not after a word, a dot, ":" or "/" (so "1/2" and the "//host" of a URL are not paths).
_FILE = re.compile(
    r"(?:(?<![\w.:/])/|\b[A-Za-z]:[\\/])[^\n\"'<>|]*?\.[A-Za-z0-9]{1,5}"
    r"(?=$|[\s,;:)\]\"']|\.(?:\s|$))"
)
# Then folders without an extension: segments may hold spaces (any segment followed by "/",
# and words of the last one), so "/media/Studio A/Sub Folder" is one path; " =>" (a
# path_map rule), punctuation and quotes end it. "/plex" alone is a folder too.
_SEGMENT = r"[^\s/\"'<>|,;)=]+"
_FOLDER = re.compile(
    rf"(?<![\w.:/<-])/(?:[^\s/\"'<>|,;=][^\n/\"'<>|,;=]*/)*{_SEGMENT}(?: {_SEGMENT})*"
)


def pseudonym(path: str) -> str:
    digest = hashlib.sha1(path.encode("utf-8")).hexdigest()[:10]
    tail = path.replace("\\", "/").rsplit("/", 1)[-1]
    extension = tail.rsplit(".", 1)[-1] if "." in tail else ""
    return f"<path-{digest}{'.' + extension if extension else ''}>"


def obfuscate_paths(text: str) -> str:
    """Replace every file path in `text` with its pseudonym."""
    text = _FILE.sub(lambda match: pseudonym(match.group(0)), text)
    return _FOLDER.sub(lambda match: pseudonym(match.group(0)), text)


def obfuscate_data(value: Any) -> Any:
    """`value` with every file path in its strings replaced (dicts and lists walked)."""
    if isinstance(value, str):
        return obfuscate_paths(value)
    if isinstance(value, dict):
        return {key: obfuscate_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [obfuscate_data(item) for item in value]
    return value
