"""Plex items read ahead for a batch of scenes, 100 items a request.

A scene's first push needs its Plex item in full when the stored listing is older than its
freshness window (someone may have added collections in Plex since). Read one by one, that is
one more request per scene for the rest of a long first sync; read ahead for the whole claimed
batch (`GET /library/metadata/1,2,3`, Plex answers every item it still has), it is one request
per hundred scenes. Each item read ahead is used once, by one plan, and only while it is young:
after that plan writes the item, what was read is no longer what Plex holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from stash2plex.clients.plex import PlexItem

# An item read ahead is trusted this long (seconds): a batch's scenes start within seconds
# of its claim; one whose turn comes later reads its item itself.
READ_AHEAD_TRUST_SECONDS = 60.0


class ItemsReadAhead:
    """Plex items read for scenes about to be synced; each taken at most once.

    Shared by the worker's sync threads (every method is thread-safe).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._items: dict[int, tuple[float, PlexItem]] = {}
        self._lock = threading.Lock()

    def put(self, items: Iterable[PlexItem]) -> None:
        """Keep these items (read now); items kept earlier and too old to trust are dropped."""
        now = self.clock()
        with self._lock:
            for key in [k for k, (at, _) in self._items.items() if self._expired(at, now)]:
                del self._items[key]
            for item in items:
                self._items[item.rating_key] = (now, item)

    def take(self, rating_key: int) -> PlexItem | None:
        """The item as read ahead, if it was and is still young; it is not handed out again."""
        with self._lock:
            kept = self._items.pop(rating_key, None)
        if kept is None or self._expired(kept[0], self.clock()):
            return None
        return kept[1]

    def discard(self, rating_key: int) -> None:
        """Forget an item (it was just written: what was read is out of date)."""
        with self._lock:
            self._items.pop(rating_key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @staticmethod
    def _expired(read_at: float, now: float) -> bool:
        return not 0 <= now - read_at <= READ_AHEAD_TRUST_SECONDS


def first_push_items(
    scenes: Iterable[dict[str, Any] | None],
    linked: Callable[[int], bool],
    lookup: Callable[[list[dict[str, Any]]], list[int]],
    pushes: Callable[[dict[str, Any]], bool],
) -> list[int]:
    """The ratingKeys of the items these scenes will be pushed to for the first time.

    `linked(scene_id)`: the scene was pushed before; `lookup(files)`: the indexed items holding
    these files (no request); `pushes(scene)`: the scene has something to push (a freshly
    scanned scene is left alone and needs no item read). Scenes Stash no longer has (None) and
    scenes without files are skipped.
    """
    keys: dict[int, None] = {}
    for scene in scenes:
        if not isinstance(scene, dict) or not scene.get("files"):
            continue
        if linked(int(scene["id"])) or not pushes(scene):
            continue
        keys.update(dict.fromkeys(lookup(scene["files"])))
    return list(keys)
