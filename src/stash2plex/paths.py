"""How two spellings of one file path are recognised as the same file. Pure, standard library
only (the store, which the hook path opens, keys its Plex index with these functions).

Two things make equal paths differ as strings:
- Unicode normal forms. macOS and many SMB shares hand out names in NFD (a letter followed by
  its combining accent), Linux tools usually NFC; `Café` is then two different strings. Every
  comparison uses NFC.
- Windows paths. A Windows Plex server reports `M:\\Studio A\\x.mp4`; users write rules with
  either slash and any case (`c:/media`), and Windows itself ignores case. A Windows-style
  path (drive letter or UNC) therefore compares with `/` for every separator and case-folded.

POSIX paths stay case-sensitive: Linux file systems are.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_DRIVE = re.compile(r"^[A-Za-z]:(?:[\\/]|$)")
# Keys are asked for the same few paths many times per scene (matching, claims, the index):
# remembered, bounded (a few MB at most).
KEYS_REMEMBERED = 8192


def is_windows_path(path: str) -> bool:
    """A drive-letter path (`C:\\x`, `c:/x`, `M:`) or a UNC path (`\\\\nas\\share`,
    `//nas/share`)."""
    return bool(_DRIVE.match(path)) or path.startswith("\\\\") or _is_unc_slashes(path)


def _is_unc_slashes(path: str) -> bool:
    return path.startswith("//") and len(path) > 2 and path[2] not in "/\\"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def path_key(path: str, *, windows: bool | None = None) -> str:
    """The form of a path that equal paths share: NFC; for Windows-style paths also `/` for
    every separator and case-folded. `windows` forces (or forbids) the Windows treatment."""
    text = nfc(path)
    if windows if windows is not None else is_windows_path(text):
        return text.replace("\\", "/").casefold()
    return text


def split_path(path: str) -> list[str]:
    """The segments of a path: on `/`, and on `\\` too for Windows-style paths or paths that use
    only backslashes. A leading separator gives a leading empty segment."""
    if is_windows_path(path) or ("\\" in path and "/" not in path):
        return re.split(r"[\\/]", path)
    return path.split("/")


def basename(path: str) -> str:
    """The file name, whichever separator the path uses."""
    return re.split(r"[\\/]", path)[-1]


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def basename_key(path: str) -> str:
    """The file name of a path, NFC and case-folded (a fallback match is then tolerant of a
    Windows server's case and a Mac's normal form; the file size still has to agree)."""
    return nfc(basename(path)).casefold()
