"""The rules of Plex -> Stash, as pure functions (no I/O, time passed in).

Plays: a Plex play is added to Stash unless Stash's play history already holds a play at that
second; plays are only ever added, so play counts only go up. Resume points: Stash keeps no
time for its resume point, so the rule is "Plex's resume point changed since we last pulled
it". Ratings: when Plex and Stash disagree, the later change wins (see `decide_rating`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

AGREE = "agree"
TO_STASH = "to_stash"
TO_PLEX = "to_plex"


def epoch(timestamp: str) -> int:
    """Epoch seconds of an RFC3339 time as Stash writes it (`...+10:00` or `...Z`)."""
    return int(datetime.fromisoformat(timestamp.strip().replace("Z", "+00:00")).timestamp())


def rfc3339(seconds: int) -> str:
    """An epoch time as the RFC3339 UTC text Stash's `Timestamp` input takes."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_plays(plex_times: Iterable[int], stash_history: Iterable[str]) -> list[int]:
    """Plex play times (epoch s) that Stash's play history does not hold yet, oldest first.

    A multiset difference at one-second resolution (Stash stores seconds): two Plex plays in
    the same second need two Stash plays then. Stash plays that Plex does not know stay.
    """
    have = Counter(epoch(t) for t in stash_history)
    missing: list[int] = []
    for moment in sorted(plex_times):
        if have[moment] > 0:
            have[moment] -= 1
        else:
            missing.append(moment)
    return missing


def resume_change(plex_offset_ms: int, pulled_offset_ms: int | None) -> float | None:
    """The resume point (seconds) to give Stash, or None to leave Stash's alone.

    Only a point that moved in Plex since our last pull is sent, so a resume point the user
    set in Stash afterwards is not overwritten by an old Plex one. The first time we see an
    item, only a real point (not 0) is sent.
    """
    if pulled_offset_ms is None:
        return plex_offset_ms / 1000 if plex_offset_ms > 0 else None
    if plex_offset_ms == pulled_offset_ms:
        return None
    return plex_offset_ms / 1000


def stash_rating(plex_rating: float | None) -> int | None:
    """Plex's 0-10 user rating in Stash's 1-100 (x10); 0 and none both mean unrated."""
    if plex_rating is None:
        return None
    value = round(plex_rating * 10)
    return max(1, min(100, value)) if value > 0 else None


def plex_rating(rating100: int | None) -> float | None:
    """Stash's rating as the Plex rating the push sends (the same rounding as `metadata`)."""
    return round(rating100 / 10, 1) if isinstance(rating100, int) else None


@dataclass(frozen=True)
class RatingState:
    """What the last decision recorded: the rating both sides showed (None: unrated)."""

    agreed: int | None
    plex_rated_at: int | None


def decide_rating(
    plex_value: float | None,
    plex_rated_at: int | None,
    stash_value: int | None,
    stash_changed_at: int | None,
    last: RatingState | None,
) -> str:
    """Which side's rating wins: AGREE (nothing to write), TO_STASH or TO_PLEX.

    The rule: when the two sides disagree, the side that changed since the last decision
    wins; when both changed (or there was no decision yet), the later change wins, Plex's
    time being its `lastRatedAt` and Stash's the scene's `updated_at` (Stash keeps no time for
    the rating alone, so this is the latest moment it can have changed). Stash wins a tie.
    The two times come from two servers' clocks: only when both sides changed between two
    decisions does a difference between those clocks matter.
    An unrated side never clears a rated one on first contact, and a Plex rating cleared
    without a time (Plex records none) is treated as older than any Stash change.
    """
    plex_as_stash = stash_rating(plex_value)
    if plex_as_stash == stash_value:
        return AGREE
    if last is None:
        if stash_value is None:
            return TO_STASH
        if plex_as_stash is None:
            return TO_PLEX
        return _later(plex_rated_at, stash_changed_at)
    stash_moved = stash_value != last.agreed
    plex_moved = plex_as_stash != last.agreed or (
        plex_rated_at is not None
        and last.plex_rated_at is not None
        and plex_rated_at > last.plex_rated_at
    )
    if plex_moved and not stash_moved:
        return TO_STASH
    if stash_moved and not plex_moved:
        return TO_PLEX
    return _later(plex_rated_at, stash_changed_at)


@dataclass(frozen=True)
class ItemRating:
    """One Plex item of a scene as read now: its rating (0-10, None: unrated), Plex's
    `lastRatedAt` (epoch s; Plex keeps none for a cleared rating), and whether it no longer
    shows what it showed at the scene's last decision (False for an item never recorded)."""

    value: float | None
    rated_at: int | None
    changed: bool


def scene_plex_rating(
    items: Iterable[ItemRating], last: RatingState | None
) -> tuple[float | None, int | None]:
    """Plex's side of one scene, whose files Plex may hold as several items: (rating, time)
    to give `decide_rating`.

    First contact (no decision yet): the most recently rated item, or unrated if none is.
    After a decision, only an item that changed since counts, so an item not yet brought in
    line (still showing an older rating) never overrides the decision: with none changed,
    Plex still shows the decision; otherwise the latest timed change wins, and a rating
    cleared in Plex (no time) only when nothing else changed.
    """
    items = list(items)
    if last is None:
        rated = [i for i in items if stash_rating(i.value) is not None]
        if not rated:
            return None, None
        latest = max(rated, key=lambda i: i.rated_at or 0)
        return latest.value, latest.rated_at
    changed = [i for i in items if i.changed]
    if not changed:
        return plex_rating(last.agreed), last.plex_rated_at
    timed = [i for i in changed if stash_rating(i.value) is not None and i.rated_at is not None]
    if timed:
        latest = max(timed, key=lambda i: i.rated_at or 0)
        return latest.value, latest.rated_at
    rated = [i for i in changed if stash_rating(i.value) is not None]
    return (rated[0].value, None) if rated else (None, None)


def _later(plex_rated_at: int | None, stash_changed_at: int | None) -> str:
    if plex_rated_at is None:
        return TO_PLEX
    if stash_changed_at is None:
        return TO_STASH
    return TO_STASH if plex_rated_at > stash_changed_at else TO_PLEX
