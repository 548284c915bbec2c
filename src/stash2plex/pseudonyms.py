"""Stable pseudonyms for file paths, for logs people want to share (`obfuscate_paths`).

The same path always gets the same pseudonym (a short hash), so a log still shows that two
lines speak of the same file; the extension is kept because it helps troubleshooting.
"""

from __future__ import annotations

import hashlib
import re

# A file path: from a leading "/" (or a drive letter) lazily up to the first ".ext" that ends
# a word, so names with spaces and brackets are covered; then folders without an extension.
_FILE = re.compile(
    r"(?:(?<![\w.])/|\b[A-Za-z]:\\)[^\n\"'<>|]*?\.[A-Za-z0-9]{1,5}(?=$|[\s,;:)\]\"'])"
)
_FOLDER = re.compile(r"(?<![\w.<-])/(?:[^\s/\"'<>|]+/)+[^\s/\"'<>|,;)]*")


def pseudonym(path: str) -> str:
    digest = hashlib.sha1(path.encode("utf-8")).hexdigest()[:10]
    tail = path.replace("\\", "/").rsplit("/", 1)[-1]
    extension = tail.rsplit(".", 1)[-1] if "." in tail else ""
    return f"<path-{digest}{'.' + extension if extension else ''}>"


def obfuscate_paths(text: str) -> str:
    """Replace every file path in `text` with its pseudonym."""
    text = _FILE.sub(lambda match: pseudonym(match.group(0)), text)
    return _FOLDER.sub(lambda match: pseudonym(match.group(0)), text)
