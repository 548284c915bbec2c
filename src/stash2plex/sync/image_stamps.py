"""When an image Stash serves is read again although its URL did not change.

Stash's image URLs carry their object's `updated_at` in whole seconds as a cache-buster
(`{base}/scene/{id}/screenshot?t={updated_at unix}`, and the same `t` on performer, studio,
tag and group images: docs/stash-plugin-protocol.md, "images"). A cover saved in the same
second as an earlier save keeps the URL, so a cover read right after the first save and
compared by URL alone is never read again. An image read within `STAMP_MARGIN_SECONDS` of its
URL's stamp (either side: the two hosts' clocks differ) may have changed unseen: it is read
again the next time its object syncs (and uploaded only if its bytes changed); once a read
falls outside that window, the URL alone decides again.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

# The stamp's whole second, plus clock skew between Stash's host and the worker's.
STAMP_MARGIN_SECONDS = 2.0


def url_stamp(url: str) -> int | None:
    """The `t` cache-buster of a Stash image URL (Unix seconds), or None without one."""
    values = parse_qs(urlsplit(url).query).get("t")
    if not values or not values[0].isdigit():
        return None
    return int(values[0])


def read_at_text(now: float) -> str:
    """When an image was read (Unix seconds), as links and collections record it."""
    return f"{now:.3f}"


def read_too_early(url: str, read_at: str | None) -> bool:
    """Whether the image at `url`, last read at `read_at` (`read_at_text`: when its request
    was sent; None: unknown), may have changed since within its stamp's second. A read well
    before the stamp (a date in the future, or Stash's clock far ahead of the worker's) tells
    nothing about that second: the URL alone decides, or every sync would read it again."""
    stamp = url_stamp(url)
    if stamp is None or read_at is None:
        return False
    try:
        read = float(read_at)
    except ValueError:
        return False
    return stamp - STAMP_MARGIN_SECONDS <= read < stamp + STAMP_MARGIN_SECONDS
