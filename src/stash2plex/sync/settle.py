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

The check waits while the scene's own job is outstanding (its retry may not have written the
newer values yet). Only a write that timed out before our last push can hide it: a later one
carried newer values than that push (the scene's next sync writes Stash's values anyway). A
late tag list is repaired by counting what Plex shows as ours (`owned_after`), so the next
push replaces or removes all of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stash2plex.clients.plex import PlexItem
from stash2plex.errors import UNSETTLED_WRITE, NotInPlexError, SyncError
from stash2plex.records import Link, UnsettledCheck, UnsettledWrite
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
# Checks that could not read Plex before one is given up (Reconcile finds what it would have).
MAX_CHECK_TRIES = 5
_TAG_KEYS = ("genre", "actor", "collection", "label")


def check_after(plex_timeout: float) -> float:
    """Seconds from a write timing out to the check of its item."""
    return max(MIN_CHECK_SECONDS, CHECK_FACTOR * plex_timeout)


@contextlib.contextmanager
def noted(
    rating_key: int,
    shown: Mapping[str, str] | Callable[[], Mapping[str, str]],
    ours: Callable[[], dict[str, list[str]]] | None = None,
) -> Iterator[None]:
    """Around one write to an item: if it times out (a SyncError carrying UNSETTLED_WRITE),
    the error carries what the write would make the item show (`shown`, or `shown()`
    computed only then: an edit's prints would cost CPU on every write otherwise) and the
    collections and labels it makes ours (`ours()`)."""
    try:
        yield
    except SyncError as exc:
        if (exc.detail or {}).get(UNSETTLED_WRITE):
            prints = shown() if callable(shown) else shown
            names = ours() if ours is not None else {}
            exc.unsettled.append(UnsettledWrite(rating_key, dict(prints), names))
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


def edit_ours(plan: SyncPlan) -> dict[str, list[str]]:
    """The collections and labels the plan's edit makes ours (a late landing puts them back)."""
    desired = plan.desired
    wanted = {"collection": desired.collections, "label": desired.labels}
    return {
        key: list(names)
        for key, names in wanted.items()
        if key in plan.changes and names is not None
    }


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


def harmful(written: Mapping[str, Mapping[str, float]], link: Link) -> dict[str, list[str]]:
    """Per key, the values of writes that timed out before our last push and differ from it
    (`written`: key -> print -> when its write timed out): only those can hide a newer value
    if they land late."""
    pushed = pushed_shown(link)
    found = {
        key: [p for p, at in prints.items() if at < link.synced_at and p != pushed.get(key)]
        for key, prints in written.items()
    }
    return {key: prints for key, prints in found.items() if prints}


def landed(harm: Mapping[str, list[str]], item: PlexItem | None) -> list[str]:
    """The keys where a harmful write landed: the item shows one of its values (images
    cannot be read back: any harmful image counts)."""
    shown = item_shown(item) if item is not None else {}
    return [key for key, prints in harm.items() if key in IMAGE_FIELDS or shown.get(key) in prints]


@dataclass(frozen=True)
class Verdict:
    """What a check found: `wait` (the scene's job is still outstanding: look again later),
    else done, with the keys found landed late (written again), if any."""

    wait: bool = False
    stale: tuple[str, ...] = ()


def check(store: Store, plex: PlexClient, unsettled: UnsettledCheck) -> Verdict:
    """Check one item's timed-out writes. Keys found landed late are forgotten from the link
    and the scene queued (its next sync writes them again). Reads the item only when a write
    could have done harm. Raises the SyncErrors of reading it (a deleted item is no error:
    nothing to check)."""
    scene_id, rating_key = unsettled.scene_id, unsettled.rating_key
    job = store.job(scene_id)
    if job is not None and job.state != "done":
        return Verdict(wait=True)
    link = next((lk for lk in store.links(scene_id) if lk.rating_key == rating_key), None)
    if link is None:
        return Verdict()  # unlinked since: the next sync matches afresh
    harm = harmful(unsettled.shown, link)
    if not harm:
        return Verdict()
    item = None
    if any(key not in IMAGE_FIELDS for key in harm):
        try:
            item = plex.item_detail(rating_key)
        except NotInPlexError:
            return Verdict()
    stale = landed(harm, item)
    if stale:
        owned = owned_after(link, stale, item, unsettled.ours)
        store.write_again(scene_id, rating_key, stale, owned, SETTLE_SOURCE)
    return Verdict(stale=tuple(stale))


def owned_after(
    link: Link, stale: list[str], item: PlexItem | None, late_ours: Mapping[str, list[str]]
) -> dict[str, list[str]]:
    """What the link's `owned` lists become once late `stale` lists are found: the list Plex
    shows now was put there by us, so the next push treats it as ours. It then names every
    value to remove when Stash's list is empty (`-=` names what Plex holds), and a Plex edit
    is not what preserve_plex_edits sees there. Collections and labels also count the late
    write's names as ours (`late_ours`), so a push drops those no longer wanted while the
    user's own stay."""
    changes: dict[str, list[str]] = {}
    for family in stale:
        if family not in _TAG_KEYS:
            continue
        shown = list(item.tags.get(family, [])) if item is not None else []
        if family in ("genre", "actor"):
            changes[family] = shown
        else:
            names = [*link.owned.get(family, []), *late_ours.get(family, [])]
            changes[family] = list(dict.fromkeys(names))
            changes[f"{family}_all"] = shown
    return changes


def landed_words(scene_id: int, stale: tuple[str, ...]) -> str:
    """What a person reads when a check found older values: the fields read back, and the
    images (which cannot be read back: they may not have landed)."""
    fields = [key for key in stale if key not in IMAGE_FIELDS]
    images = [key for key in stale if key in IMAGE_FIELDS]
    parts = []
    if fields:
        parts.append(f"Plex applied an older write of {', '.join(fields)} after a newer one")
    if images:
        kinds = " and ".join(images)
        parts.append(f"an upload of an older {kinds} may have landed after a newer one")
    return f"scene {scene_id}: {'; '.join(parts)} (it had timed out); the scene is synced again"


def unchecked_words(scene_id: int, problem: str, *, preserve: bool) -> str:
    """What a person reads when a check is given up: Plex could not be read back."""
    text = (
        f"scene {scene_id}: a write to Plex timed out and its item could not be read back to "
        f"check it ({problem}); "
    )
    if preserve:  # Reconcile takes an older value for an edit made in Plex, and keeps it
        fix = f"`stash2plex sync {scene_id} --force` (or Force Sync All)"
        return text + f"if Plex shows older values, {fix} writes Stash's values"
    return text + "Reconcile finds and repairs it if Plex applied it after a newer one"


def _tags_print(names: Any) -> str:
    return fingerprint(sorted(str(name) for name in names))
