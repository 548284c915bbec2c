"""What differs between a Plex item and what Stash2Plex last pushed to it ("drift"). Pure.

Drift is a field or list we pushed that Plex now shows otherwise: a title edited in Plex, a
summary a metadata agent replaced after the field was unlocked, a genre removed. It is
measured against the link's record of the push (the fingerprints of the values, the lists in
`owned`), never against Stash: a scene changed in Stash since the push is "stale", another
class. A field we pushed that Plex shows unchanged but no longer locked counts too (note
`unlocked`): the next agent refresh replaces it.

Also here: the two fingerprints that let a reconcile skip reading an item, what the listing
shows of our fields (`listing_print`) and what we had pushed (`pushed_print`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stash2plex.clients.plex import PlexItem
from stash2plex.records import Link, ListedItem
from stash2plex.settings.config import Config
from stash2plex.sync.metadata import TEXT_FIELDS, fingerprint

LIST_KEYS = ("genre", "actor", "collection", "label")
# The Plex field each of our keys is locked under (the edit's `{key}.locked`).
LOCK_NAMES = {**{key: key for key in TEXT_FIELDS}, **{key: key for key in LIST_KEYS}}
SHOWN_MAX = 120  # characters of a Plex value a report shows


@dataclass(frozen=True)
class Drift:
    """One field of one Plex item that no longer shows what we pushed.

    `field`: our key (title, summary, studio, originallyAvailableAt, genre, actor, collection,
    label, rating); `plex`: what Plex shows now (lists joined with ", ", shortened);
    `note`: "unlocked" when the value is still ours but Plex may replace it, else "";
    `difference`: for a list, what differs ("missing in Plex: A, B; extra in Plex: C"), so a
    report need not show two long lists shortened alike.
    """

    field: str
    plex: str
    note: str = ""
    difference: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def synced_keys(config: Config) -> frozenset[str]:
    """The keys the settings push to Plex now (a field switched off is not drift)."""
    keys: set[str] = set()
    toggles = {
        "title": config.skip_title,
        "summary": config.skip_summary,
        "studio": config.skip_studio,
        "originallyAvailableAt": config.skip_date,
        "genre": config.skip_tags,
        "actor": config.skip_performers,
        "collection": config.skip_collections,
    }
    keys.update(key for key, skipped in toggles.items() if not skipped)
    if config.label_tags:
        keys.add("label")
    # Both ways, a rating changed in Plex is news for Stash (the pull), not drift.
    if config.sync_rating and not config.sync_rating_both_ways:
        keys.add("rating")
    return frozenset(keys)


def item_drift(item: PlexItem, link: Link, keys: frozenset[str]) -> list[Drift]:
    """How `item` (read in full: every tag, the locks) differs from what `link` says we
    pushed, for the synced `keys`. Empty when the item shows exactly what we pushed.

    Lists compare as sets: Plex may return tags in its own order. Collections and labels
    compare only ours (the user's own stay theirs).
    """
    pushed = link.fingerprints
    owned = link.owned
    empty = fingerprint("")
    found: list[Drift] = []
    for key in TEXT_FIELDS:
        if key not in keys or key not in pushed:
            continue
        value = item.fields.get(key, "") or ""
        if fingerprint(value) != pushed[key]:
            found.append(Drift(key, _shown(value)))
        elif pushed[key] != empty and LOCK_NAMES[key] not in item.locked:
            found.append(Drift(key, _shown(value), "unlocked"))
    for key in ("genre", "actor"):
        if key not in keys or key not in pushed or key not in owned:
            continue
        ours = [str(v) for v in owned.get(key) or []]
        theirs = item.tags.get(key, [])
        if sorted(theirs) != sorted(ours):
            found.append(Drift(key, _shown(", ".join(theirs)), "", list_difference(ours, theirs)))
        elif ours and LOCK_NAMES[key] not in item.locked:
            found.append(Drift(key, _shown(", ".join(theirs)), "unlocked"))
    for key in ("collection", "label"):
        if key not in keys or key not in pushed:
            continue
        ours = [str(v) for v in owned.get(key) or []]
        theirs = item.tags.get(key, [])
        if any(name not in theirs for name in ours):
            # The user's own collections and labels are theirs: only ours missing counts.
            missing = [name for name in ours if name not in theirs]
            found.append(Drift(key, _shown(", ".join(theirs)), "", list_difference(missing, [])))
    rating = item.user_rating
    if "rating" in keys and "rating" in pushed and fingerprint(rating) != pushed["rating"]:
        found.append(Drift("rating", "" if rating is None else f"{rating:g}"))
    return found


def list_difference(ours: list[str], theirs: list[str]) -> str:
    """What a Plex list lacks of ours and holds beyond it, each shortened on its own:
    "missing in Plex: Rain; extra in Plex: Fog" (empty parts left out)."""
    missing = [name for name in ours if name not in theirs]
    extra = [name for name in theirs if name not in ours]
    parts = []
    if missing:
        parts.append(f"missing in Plex: {_shown(', '.join(missing))}")
    if extra:
        parts.append(f"extra in Plex: {_shown(', '.join(extra))}")
    return "; ".join(parts)


def listing_print(item: ListedItem) -> str:
    """A fingerprint of what a listing shows of the fields we push (the text fields and the
    first tags of each list): equal prints and an equal `updatedAt` mean an unchanged item."""
    return fingerprint(
        [sorted(item.fields), list(item.genres), list(item.actors), list(item.collections)]
    )


def pushed_print(link: Link, keys: frozenset[str]) -> str:
    """A fingerprint of what we last pushed to an item and of the keys the settings sync: a
    new push, or a field switched on or off, invalidates an item's check."""
    return fingerprint([link.fingerprints, link.owned, sorted(keys)])


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"
