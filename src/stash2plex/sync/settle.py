"""Writes to Plex that timed out, and the later check that none of them landed over a newer
one.

A slow Plex still applies a request its client gave up on (PMS finishes the request; nothing
tells it the client left). When an edit times out, its retry carries the scene's newest
values; if the timed-out edit lands after the retry, Plex shows the older values for good.
The retry already waits twice `plex_timeout` (engine.routing); a Plex slower than that still
lands the older write last. So each write that timed out is remembered with what it would make
the item show, and, `check_after` seconds later, the item is read: a field that shows a value
of such a write, and not what we pushed last, is forgotten and the scene queued, so the
newest value is written again. An image cannot be read back: a timed-out upload of another
image than the one pushed last is simply uploaded again.

Values compare as "shown prints": fingerprints of what Plex shows for a key (text as is, a
tag list sorted, since Plex returns tags in its own order), the same for a write, for our last
push (the link) and for the item as read. A write that would show what we pushed last anyway
cannot do harm and costs no request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from stash2plex.clients.plex import PlexItem
from stash2plex.errors import UNSETTLED_WRITE, NotInPlexError, SyncError
from stash2plex.records import Link, UnsettledWrite
from stash2plex.sync.metadata import IMAGE_FIELDS, TEXT_FIELDS, fingerprint

if TYPE_CHECKING:
    from stash2plex.clients.plex import PlexClient
    from stash2plex.store.db import Store
    from stash2plex.sync.syncer import SyncPlan

# The source of a job queued because an older write landed late.
SETTLE_SOURCE = "late write"
# How long after a write timed out its item is checked: ten times `plex_timeout`, at least
# a minute (a Plex that took longer still is caught by a reconcile, as drift).
CHECK_FACTOR = 10
MIN_CHECK_SECONDS = 60.0
_TAG_KEYS = ("genre", "actor", "collection", "label")


def check_after(plex_timeout: float) -> float:
    """Seconds from a write timing out to the check of its item."""
    return max(MIN_CHECK_SECONDS, CHECK_FACTOR * plex_timeout)


@contextlib.contextmanager
def noted(
    rating_key: int, shown: Mapping[str, str] | Callable[[], Mapping[str, str]]
) -> Iterator[None]:
    """Around one write to an item: if it times out (a SyncError carrying UNSETTLED_WRITE),
    the error carries what the write would make the item show (`shown`, or `shown()`
    computed only then: an edit's prints would cost CPU on every write otherwise)."""
    try:
        yield
    except SyncError as exc:
        if (exc.detail or {}).get(UNSETTLED_WRITE):
            prints = shown() if callable(shown) else shown
            exc.unsettled.append(UnsettledWrite(rating_key, dict(prints)))
        raise


def edit_shown(plan: SyncPlan) -> dict[str, str]:
    """What the plan's edit would make its item show, per key it changes."""
    desired, owned = plan.desired, plan.owned
    lists: dict[str, Any] = {
        "genre": desired.genres,
        "actor": [actor.name for actor in desired.actors or ()],
        "collection": owned.get("collection_all"),
        "label": owned.get("label_all"),
    }
    shown = {}
    for key in plan.changes:
        if key in TEXT_FIELDS:
            shown[key] = fingerprint(desired.fields.get(key, ""))
        elif key in _TAG_KEYS and lists[key] is not None:
            shown[key] = _tags_print(lists[key])
    return shown


def rating_shown(rating: float | None) -> dict[str, str]:
    return {"rating": fingerprint(rating)}


def pushed_shown(link: Link) -> dict[str, str]:
    """What our last push made the item show, per key (as far as the link records it)."""
    shown = {key: link.fingerprints[key] for key in TEXT_FIELDS if key in link.fingerprints}
    for key in ("rating", *IMAGE_FIELDS):
        if key in link.fingerprints:
            shown[key] = link.fingerprints[key]
    for key, owned_key in (
        ("genre", "genre"),
        ("actor", "actor"),
        ("collection", "collection_all"),
        ("label", "label_all"),
    ):
        if owned_key in link.owned:
            shown[key] = _tags_print(link.owned[owned_key])
    return shown


def item_shown(item: PlexItem) -> dict[str, str]:
    """What the item shows, per key."""
    shown = {key: fingerprint(item.fields.get(key, "") or "") for key in TEXT_FIELDS}
    shown.update({key: _tags_print(item.tags.get(key, [])) for key in _TAG_KEYS})
    shown["rating"] = fingerprint(item.user_rating)
    return shown


def harmful(written: Mapping[str, list[str]], link: Link) -> dict[str, list[str]]:
    """Per key, the values of timed-out writes that differ from what we pushed last (only
    those can hide a newer value if they land late)."""
    pushed = pushed_shown(link)
    found = {key: [p for p in prints if p != pushed.get(key)] for key, prints in written.items()}
    return {key: prints for key, prints in found.items() if prints}


def landed(harm: Mapping[str, list[str]], item: PlexItem | None) -> list[str]:
    """The keys where a harmful write landed: the item shows one of its values (images
    cannot be read back: any harmful image counts)."""
    shown = item_shown(item) if item is not None else {}
    return [key for key, prints in harm.items() if key in IMAGE_FIELDS or shown.get(key) in prints]


def check(
    store: Store, plex: PlexClient, scene_id: int, rating_key: int, written: Mapping[str, list[str]]
) -> list[str]:
    """Check one item's timed-out writes: returns the keys found landed late, which are then
    forgotten from the link and the scene queued (its next sync writes them again). Reads the
    item only when a write could have done harm. Raises the SyncErrors of reading it (a
    deleted item is no error: nothing to check)."""
    link = next((lk for lk in store.links(scene_id) if lk.rating_key == rating_key), None)
    if link is None:
        return []  # unlinked since: the next sync matches afresh
    harm = harmful(written, link)
    if not harm:
        return []
    item = None
    if any(key not in IMAGE_FIELDS for key in harm):
        try:
            item = plex.item_detail(rating_key)
        except NotInPlexError:
            return []
    stale = landed(harm, item)
    if stale:
        store.reconciliation().forget_pushed(scene_id, rating_key, stale)
        store.enqueue([scene_id], source=SETTLE_SOURCE)
    return stale


def _tags_print(names: Any) -> str:
    return fingerprint(sorted(str(name) for name in names))
