"""Ratings both ways (`sync_rating_both_ways`): one decision per scene, written to the side
that lost and to every Plex item of the scene.

The rule is `pull.decisions.decide_rating` (the side that changed since the last decision
wins; when both did, or at first contact, the later change; an unrated side never clears a
rated one on first contact), with Plex's side of a scene held as several items from
`pull.decisions.scene_plex_rating`. The sync of a scene (its Stash rating changed, or the
scene meets its items for the first time) and the pull (Plex reported a rating, or a re-check
found one cleared) both come here, so there is one rule whichever runs first.

What the store remembers: per scene, the decision (`pull_state`: the rating both sides then
showed and Plex's time); per Plex item, the rating it showed at that decision (the link's
`rating` fingerprint). An item is news only when it no longer shows what it showed then, so
an item not yet brought in line never overrides a newer decision.

Order of writes, so that our own writes cause no echo and a failure loses nothing: the Plex
items that differ first, each recorded once written; then the decision and every item as
showing it; then Stash. The Scene.Update.Post hook of that Stash write queues the scene, and
its sync finds every item recorded with Stash's new rating: no read, no write. Because the
decision is recorded before Stash is written, it is marked "not yet written in Stash" with
the rating Stash showed, and the mark is cleared once Stash took it. If Stash refuses, the
decision is put back as it was and the next run decides again; if the run is stopped in
between (killed), the mark stays, and the next run that meets the scene (a pull reads every
marked scene; a sync sees Stash's rating differ from the items') writes Stash then, as long
as Stash still shows what it showed at the decision: otherwise Stash changed since, and that
later change is decided as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stash2plex.clients.plex import PlexClient, ViewState
from stash2plex.clients.stash import StashClient
from stash2plex.errors import SyncError
from stash2plex.pull import decisions
from stash2plex.records import Link
from stash2plex.store.db import Store
from stash2plex.sync.metadata import fingerprint

KEY = "rating"  # the fingerprint key of a link: the rating its item showed at the decision


def shown(rating: float | None) -> str:
    """The fingerprint of a Plex rating, on Stash's scale (as the push records it)."""
    return fingerprint(decisions.plex_rating(decisions.stash_rating(rating)))


def recorded(rating100: int | None) -> str:
    """The fingerprint of a Stash rating as the items show it."""
    return fingerprint(decisions.plex_rating(rating100))


@dataclass(frozen=True)
class RatingOutcome:
    """What one decision did: its action (`decisions.AGREE`, `TO_STASH`, `TO_PLEX`; '' when
    none of the scene's items could be read), Plex items rated, whether Stash was written."""

    action: str = ""
    plex_writes: int = 0
    stash_written: bool = False


class RatingSync:
    """Decide one scene's rating and write it where it is missing."""

    def __init__(self, store: Store, stash: StashClient, plex: PlexClient) -> None:
        self.store = store
        self.stash = stash
        self.plex = plex

    @staticmethod
    def items(links: Sequence[Link], states: dict[int, ViewState]) -> list[tuple[Link, ViewState]]:
        """The scene's items Plex still has, with their view state."""
        return [(link, states[link.rating_key]) for link in links if link.rating_key in states]

    @staticmethod
    def plex_moved(links: Sequence[Link], states: dict[int, ViewState]) -> bool:
        """Whether one of the items shows another rating than at the last decision (an item
        never recorded does not count): the cheap test before reading Stash."""
        return any(
            KEY in link.fingerprints and link.fingerprints[KEY] != shown(state.user_rating)
            for link, state in RatingSync.items(links, states)
        )

    def reconcile(
        self,
        scene_id: int,
        stash_rating100: int | None,
        stash_updated_at: int | None,
        links: Sequence[Link],
        states: dict[int, ViewState],
    ) -> RatingOutcome:
        """Decide the scene's rating from Stash's (`rating100`, `updated_at` in epoch s) and
        its Plex items' (`states` by ratingKey; items missing there are left alone) and write
        it where it is missing. Raises the classified SyncErrors of the writes; the store
        then says what was really written."""
        items = self.items(links, states)
        if not items:
            return RatingOutcome()
        row = self.store.pull_states([scene_id]).get(scene_id) or {}
        known = bool(row.get("rating_known"))
        last = (
            decisions.RatingState(row.get("rating_agreed"), row.get("rating_plex_at"))
            if known
            else None
        )
        stash_value = stash_rating100
        if (
            known
            and row.get("rating_stash_pending")
            and (stash_rating100 == row.get("rating_stash_before"))
        ):
            # Decided for Stash, recorded, never written (the run stopped in between): Stash
            # still shows what it showed then, which is no change of its own; the decision
            # stands and is written below.
            stash_value = row.get("rating_agreed")
        plex_value, plex_at = decisions.scene_plex_rating(
            [
                decisions.ItemRating(
                    state.user_rating,
                    state.last_rated_at,
                    KEY in link.fingerprints and link.fingerprints[KEY] != shown(state.user_rating),
                )
                for link, state in items
            ],
            last,
        )
        action = decisions.decide_rating(plex_value, plex_at, stash_value, stash_updated_at, last)
        target = decisions.stash_rating(plex_value) if action == decisions.TO_STASH else stash_value
        to_stash = target != stash_rating100
        want = recorded(target)
        plex_writes = 0
        for link, state in items:
            if shown(state.user_rating) != want:
                self.plex.rate(link.rating_key, decisions.plex_rating(target))
                self.store.set_link_fingerprint(scene_id, KEY, want, link.rating_key)
                plex_writes += 1
        newest = max((s.last_rated_at or 0 for _, s in items), default=0) or None
        stamp = plex_at if action == decisions.TO_STASH else newest
        before = {link.rating_key: link.fingerprints.get(KEY) for link, _ in items}
        unchanged_state = known and row.get("rating_agreed") == target
        for link, state in items:
            if shown(state.user_rating) == want and before[link.rating_key] != want:
                self.store.set_link_fingerprint(scene_id, KEY, want, link.rating_key)
        if to_stash:
            # Recorded first, so the hook of the Stash write finds it (no echo); marked as not
            # yet written, so a run stopped before the write still writes it next time.
            self.store.save_rating_agreed(
                scene_id, target, stamp, stash_before=stash_rating100, stash_pending=True
            )
        elif not unchanged_state or plex_writes or row.get("rating_stash_pending"):
            self.store.save_rating_agreed(scene_id, target, stamp)
        if not to_stash:
            return RatingOutcome(action, plex_writes, False)
        try:
            self.stash.set_rating(scene_id, target)
        except SyncError:
            # Stash did not take it: as if undecided, so the next run decides again.
            self.store.put_rating_state(
                scene_id,
                known,
                row.get("rating_agreed"),
                row.get("rating_plex_at"),
                stash_before=row.get("rating_stash_before"),
                stash_pending=bool(row.get("rating_stash_pending")),
            )
            for link, state in items:
                old = before[link.rating_key]
                if shown(state.user_rating) == want and old != want and old is not None:
                    self.store.set_link_fingerprint(scene_id, KEY, old, link.rating_key)
            raise
        self.store.rating_written(scene_id)
        return RatingOutcome(decisions.TO_STASH, plex_writes, True)
