"""One catch-up pull from Plex to Stash: plays, resume points and ratings since the watermarks.

Reads from Plex: the watch history of each configured library since the plays watermark of the
accounts whose plays count (`pull_account`; newest first, paged), the items in progress, the
items rated since the ratings watermark, and a bounded window of rated items read again (a
rating cleared in Plex leaves no time to list it by). Reads from Stash: the play history and
rating of every scene involved. Writes to Stash only what Plex really recorded, through
`decisions`:

- plays: `sceneAddPlay(id, times)`, one call per scene with all its new times; plays of an
  item that belongs to no scene that counts (not synced yet, its scene deleted or merged away
  without a hook, shared by two scenes) are counted, and arrive once the item gets one;
- resume points: `sceneSaveActivity(id, resume_time)`, from the scene's item watched last;
- ratings (`sync_rating_both_ways`): one decision per scene (`sync.ratings`), written with
  `sceneUpdate(rating100)` or with `rate()` on every Plex item of the scene.

No echo: `sceneUpdate` fires Stash's Scene.Update.Post hook, whose job re-syncs the scene to
Plex; before writing we record every item as showing the rating (the links' fingerprints), so
that job finds nothing to read or write. Stash fires no hook for plays and activity. A pull
is never started by a hook, so our own writes cannot trigger another pull.

Only one pull runs at a time per data directory (a file lock); a second one reports "busy".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from stash2plex.clients.plex import Play, ViewState
from stash2plex.engine.context import Context
from stash2plex.engine.worker_lock import held_if_free
from stash2plex.errors import PermanentError, SyncError
from stash2plex.names import name_key
from stash2plex.pull import decisions
from stash2plex.records import Link
from stash2plex.store.db import Store
from stash2plex.sync.ratings import RatingSync
from stash2plex.sync.syncer import PlexIndex
from stash2plex.words import agree, plural

log = logging.getLogger("stash2plex.pull")

LOCK_FILENAME = "pull.lock"
WATERMARKS_KEY = "pull_watermarks"
LAST_REPORT_KEY = "pull_last_report"
TIMER_KEY = "pull_timer"  # when the last pull started, whoever ran it (see timer.py)
# Plex items whose plays counted for no scene (not synced yet, their scene deleted or merged
# away, shared by two scenes): once one belongs to a scene that counts, its whole history is
# read, so plays older than the watermark still reach the scene. Bounded.
UNLINKED_KEY = "pull_unlinked_items"
UNLINKED_LIMIT = 50_000
# Ratings both ways: how many linked items (of scenes with an agreed rating) each pull reads
# again, 100 per request, to see ratings cleared in Plex (which leave no time to list by).
RATING_RECHECK_ITEMS = 1_000
OWNER_ACCOUNT = 1  # PMS's local account of the server owner, whose token the settings hold
ALL_ACCOUNTS = "*"
# Plays can reach Plex late with their original time (a phone that played offline syncs
# later), so each pull reads the history back this far before the newest play it saw. A week
# of one household's plays is a page or two; a play reported later than that is not seen.
PLAY_LOOKBACK_SECONDS = 7 * 86400.0


@dataclass
class PullReport:
    """What one pull saw and wrote. Counts only; no secrets, no paths."""

    plays_seen: int = 0
    plays_added: int = 0
    scenes_played: int = 0
    unlinked_plays: int = 0
    unlinked_items: int = 0
    resume_points: int = 0
    ratings_to_stash: int = 0
    ratings_to_plex: int = 0
    ratings_agreed: int = 0
    account: str = ""
    plex_requests: int = 0
    stash_writes: int = 0
    seconds: float = 0.0
    busy: bool = False
    note: str = ""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.busy:
            return "another pull is running; nothing done"
        if self.note:
            return self.note
        text = (
            f"{plural(self.plays_added, 'play')} added to {plural(self.scenes_played, 'scene')} "
            f"({plural(self.plays_seen, 'Plex play')} seen), "
            f"{plural(self.resume_points, 'resume point')}, "
            f"{plural(self.ratings_to_stash, 'rating')} to Stash, "
            f"{plural(self.ratings_to_plex, 'rating')} to Plex, {self.seconds:g} s"
        )
        if self.unlinked_plays:
            # Said only when it happened: plays of Plex items no scene is synced with yet
            # are counted once a sync links them.
            text += (
                f"; {plural(self.unlinked_plays, 'play')} of "
                f"{plural(self.unlinked_items, 'Plex item')} not counted: "
                f"{agree(self.unlinked_items, 'that item is', 'those items are')} not synced "
                "with a scene yet (run Sync All Scenes)"
            )
        return text


def pull_lock(store: Store) -> contextlib.AbstractContextManager[bool]:
    """Hold the pull lock if it is free; yields False (without waiting) when it is not."""
    return held_if_free(store.path.parent / LOCK_FILENAME)


def run_pull(
    context: Context,
    *,
    since: int | None = None,
    clock: Callable[[], float] = time.time,
    progress: Callable[[float], None] | None = None,
) -> PullReport:
    """Pull what Plex recorded since the watermarks (or since `since`, epoch seconds, for
    plays). Raises SyncError when Plex or Stash fails; what was written before stays written
    and the watermarks only move for a completed pull, so the next pull repeats safely."""
    started = clock()
    report = PullReport()
    config = context.config
    if not config.pulls:
        report.note = "nothing to pull: switch on pull_plays, pull_resume or sync_rating_both_ways"
        return report
    requests_before = context.plex.request_count
    with pull_lock(context.store) as locked:
        if not locked:
            report.busy = True
            return report
        # Any pull (timer, task, command, stream) moves the timer: the next poll is a full
        # interval later, so the hooks our own writes fire cannot start another pull.
        context.store.put_value(TIMER_KEY, {"last_attempt_at": started, "failed": False})
        _Pull(context, report, clock, progress).run(since)
    report.plex_requests = context.plex.request_count - requests_before
    report.seconds = round(clock() - started, 2)
    context.store.put_value(LAST_REPORT_KEY, {"at": clock(), **report.as_dict()})
    return report


class _Pull:
    def __init__(
        self,
        context: Context,
        report: PullReport,
        clock: Callable[[], float],
        progress: Callable[[float], None] | None,
    ) -> None:
        self.context = context
        self.store = context.store
        self.stash = context.stash
        self.plex = context.plex
        self.config = context.config
        self.report = report
        self.clock = clock
        self.progress = progress or (lambda fraction: None)
        self._waiting: dict[int, list[int]] = {}
        self._conflicts: set[int] = set()

    def run(self, since: int | None) -> None:
        sections = PlexIndex(self.store, self.plex, self.config, self.clock).section_ids()
        marks = self.store.get_value(WATERMARKS_KEY) or {}
        # The plays watermarks belong to the accounts whose plays count: after a switch of
        # `pull_account`, the new selection's older plays are read too. Watermarks stored
        # before they were kept per selection belong to the current one.
        plays_of = {str(k): dict(v or {}) for k, v in (marks.get("plays_of") or {}).items()}
        plays_marks: dict[str, Any] = {}
        rating_marks = dict(marks.get("ratings") or {})
        recheck_after = int(marks.get("rating_recheck_after") or 0)
        self._conflicts = self.store.conflict_items()
        plays: list[Play] = []
        in_progress: list[ViewState] = []
        rated: list[ViewState] = []
        recheck: list[tuple[int, int]] = []
        if self.config.pull_plays:
            account = self._account()
            selection = ALL_ACCOUNTS if account is None else str(account)
            if "plays_of" not in marks and marks.get("plays"):
                plays_of[selection] = dict(marks["plays"])
            plays_marks = plays_of.setdefault(selection, {})
            for section_id in sections:
                start = since
                if start is None and str(section_id) in plays_marks:
                    start = int(plays_marks[str(section_id)] - PLAY_LOOKBACK_SECONDS)
                found = self.plex.plays(section_id, since=start, account_id=account)
                plays += found
                if found:
                    newest = max(p.viewed_at for p in found)
                    plays_marks[str(section_id)] = max(newest, plays_marks.get(str(section_id), 0))
            plays += self._backfill(account)
        self.progress(0.3)
        if self.config.pull_resume:
            for section_id in sections:
                in_progress += self.plex.view_states(section_id, inProgress=1)
        if self.config.sync_rating_both_ways:
            for section_id in sections:
                # Strictly after: one second back, so a rating in the watermark's second
                # is read again (the decision is idempotent).
                mark = int(rating_marks.get(str(section_id), 0))
                found_rated = self.plex.view_states(
                    section_id, **{"lastRatedAt>>": max(0, mark - 1)}
                )
                rated += found_rated
                stamps = [s.last_rated_at for s in found_rated if s.last_rated_at]
                if stamps:
                    rating_marks[str(section_id)] = max(max(stamps), mark)
            # A rating cleared in Plex gets no time to list it by: each pull reads again the
            # items of the next scenes whose agreed rating is set, a bounded window in turn.
            recheck = self.store.rating_recheck(recheck_after, RATING_RECHECK_ITEMS)
            recheck_after = recheck[-1][0] if len(recheck) == RATING_RECHECK_ITEMS else 0
        self.progress(0.5)
        self._apply(plays, in_progress, rated, recheck)
        saved: dict[str, Any] = {"ratings": rating_marks, "rating_recheck_after": recheck_after}
        if plays_of or "plays_of" in marks:
            saved["plays_of"] = plays_of
        elif marks.get("plays"):
            saved["plays"] = marks["plays"]  # not pulling plays: kept for their selection
        self.store.put_value(WATERMARKS_KEY, saved)
        self.progress(1.0)

    def _backfill(self, account: int | None) -> list[Play]:
        """The whole history of items whose plays counted for no scene when a pull saw them
        (not synced yet, their scene deleted or merged away, shared by two scenes) and that
        now belong to a scene that counts: their plays older than the watermark arrive too."""
        waiting = _waiting_items(self.store.get_value(UNLINKED_KEY))
        linked = self.store.scenes_by_rating_key(sorted(waiting))
        due = [
            key
            for key in sorted(waiting)
            if key not in self._conflicts
            and any(scene_id not in waiting[key] for scene_id in linked.get(key, []))
        ]
        plays: list[Play] = []
        for rating_key in due:
            plays += self.plex.plays(None, account_id=account, rating_key=rating_key)
        self._waiting = {key: dead for key, dead in waiting.items() if key not in due}
        return plays

    def _account(self) -> int | None:
        """The `accountID` whose plays count (None: every account)."""
        wanted = self.config.pull_account.strip()
        if not wanted:
            self.report.account = "token owner"
            return OWNER_ACCOUNT
        if wanted == ALL_ACCOUNTS:
            self.report.account = "every user"
            return None
        accounts = self.plex.accounts()
        if wanted.isdigit() and int(wanted) in accounts:
            self.report.account = accounts[int(wanted)] or wanted
            return int(wanted)
        for account_id, name in accounts.items():
            if name_key(name) == name_key(wanted):
                self.report.account = name
                return account_id
        names = ", ".join(sorted(n for n in accounts.values() if n)) or "(none)"
        raise PermanentError(
            f"pull_account {wanted!r} is not an account of this Plex server; its accounts: "
            f"{names} (or leave it empty for the token's owner, or * for everyone)"
        )

    # ------------------------------------------------------------------ applying
    def _apply(
        self,
        plays: list[Play],
        in_progress: list[ViewState],
        rated: list[ViewState],
        recheck: list[tuple[int, int]],
    ) -> None:
        # A play seen twice while paging is one play (its history id says so).
        unique = {p.history_id or f"{p.rating_key}:{p.account_id}:{p.viewed_at}": p for p in plays}
        plays = list(unique.values())
        self.report.plays_seen = len(plays)
        keys = sorted(
            {p.rating_key for p in plays}
            | {s.rating_key for s in in_progress}
            | {s.rating_key for s in rated}
        )
        linked = self.store.scenes_by_rating_key(keys)
        # An item holding files of two scenes (a conflict) belongs to neither for now.
        scenes_of = {k: v for k, v in linked.items() if k not in self._conflicts}
        chosen, states = self._rating_candidates(rated, recheck, scenes_of)
        wanted = {s for p in plays for s in scenes_of.get(p.rating_key, [])} | set(chosen)
        stash_states = self.stash.play_states(sorted(wanted))
        self._plays(plays, scenes_of, linked, stash_states)
        self.progress(0.7)
        self._resume_points(in_progress, scenes_of)
        self.progress(0.8)
        self._ratings(chosen, states, stash_states)

    def _plays(
        self,
        plays: list[Play],
        scenes_of: dict[int, list[int]],
        linked: dict[int, list[int]],
        stash_states: dict[int, dict],
    ) -> None:
        times: dict[int, list[int]] = {}
        unlinked: list[Play] = []
        for play in plays:
            # A scene Stash no longer has (deleted, or merged away without a hook) counts no
            # play: the item waits for the scene that gets it next.
            live = [s for s in scenes_of.get(play.rating_key, []) if s in stash_states]
            if not live:
                unlinked.append(play)
            for scene_id in live:
                times.setdefault(scene_id, []).append(play.viewed_at)
        self.report.unlinked_plays = len(unlinked)
        self.report.unlinked_items = len({p.rating_key for p in unlinked})
        # Stash first, the record after: the waiting items read in full this time are struck
        # off only once their plays are in Stash, so a run stopped or refused in between reads
        # them again (a play already in Stash is not added twice: `decisions.new_plays`).
        for scene_id, plex_times in sorted(times.items()):
            state = stash_states[scene_id]
            missing = decisions.new_plays(plex_times, state.get("play_history") or [])
            if not missing:
                continue
            self.stash.add_plays(scene_id, [decisions.rfc3339(t) for t in missing])
            self.report.stash_writes += 1
            self.report.plays_added += len(missing)
            self.report.scenes_played += 1
        if self.config.pull_plays:
            waiting = dict(self._waiting)
            for play in unlinked:
                dead = [] if play.rating_key in self._conflicts else linked.get(play.rating_key, [])
                waiting[play.rating_key] = sorted(set(dead) | set(waiting.get(play.rating_key, [])))
            kept = list(waiting.items())[-UNLINKED_LIMIT:]
            self.store.put_value(UNLINKED_KEY, {str(key): dead for key, dead in kept})

    def _resume_points(self, in_progress: list[ViewState], scenes_of: dict[int, list[int]]) -> None:
        if not self.config.pull_resume:
            return
        seen: dict[int, dict[int, ViewState]] = {}
        for state in in_progress:
            for scene_id in scenes_of.get(state.rating_key, []):
                seen.setdefault(scene_id, {})[state.rating_key] = state
        # Scenes we gave a resume point that Plex no longer lists in progress: read their
        # items, because a point reset in Plex (watched to the end, marked unplayed) should
        # reset Stash's too, while an item deleted from Plex says nothing. A scene whose files
        # Plex holds as several items: the one watched last decides, so its other items are
        # read too.
        resumed = set(self.store.resumed_scenes())
        links = self.store.links_of_scenes(sorted(set(seen) | resumed))
        items_of = {
            scene_id: [lk.rating_key for lk in scene_links if lk.rating_key not in self._conflicts]
            for scene_id, scene_links in links.items()
        }
        unread = sorted(
            {
                key
                for scene_id, keys in items_of.items()
                if scene_id not in seen or len(keys) > 1
                for key in keys
                if key not in seen.get(scene_id, {})
            }
        )
        current = self.plex.items_view_states(unread) if unread else {}
        offsets: dict[int, int] = {}
        for scene_id, keys in items_of.items():
            states = [seen.get(scene_id, {}).get(k) or current.get(k) for k in keys]
            found = [state for state in states if state is not None]
            if found:
                latest = max(found, key=lambda s: (s.last_viewed_at or 0, s.view_offset_ms > 0))
                offsets[scene_id] = latest.view_offset_ms
        pulled = self.store.pull_states(sorted(offsets))
        for scene_id, offset in sorted(offsets.items()):
            previous = (pulled.get(scene_id) or {}).get("resume_offset_ms")
            seconds = decisions.resume_change(offset, previous)
            if seconds is None:
                continue
            try:
                self.stash.save_resume_time(scene_id, seconds)
            except SyncError as exc:
                if "not found" not in exc.message:
                    raise
                continue  # deleted in Stash
            self.store.save_resume_pulled(scene_id, offset)
            self.report.stash_writes += 1
            self.report.resume_points += 1

    def _rating_candidates(
        self,
        rated: list[ViewState],
        recheck: list[tuple[int, int]],
        scenes_of: dict[int, list[int]],
    ) -> tuple[dict[int, list[Link]], dict[int, ViewState]]:
        """The scenes whose rating needs a decision, with the items to decide it over, and
        the view state of every item read. A scene needs one when one of its items shows
        another rating than at the last decision, when it has had no decision yet, or when
        its last decision for Stash was recorded but not written there."""
        if not self.config.sync_rating_both_ways:
            return {}, {}
        states = {s.rating_key: s for s in rated}
        scene_ids = {s for state in rated for s in scenes_of.get(state.rating_key, [])}
        scene_ids |= {scene_id for scene_id, key in recheck if key not in self._conflicts}
        # Decisions for Stash that a stopped run recorded but never wrote: written now.
        scene_ids |= set(self.store.rating_pending_scenes())
        links = self.store.links_of_scenes(sorted(scene_ids))
        items = {
            scene_id: [lk for lk in scene_links if lk.rating_key not in self._conflicts]
            for scene_id, scene_links in links.items()
        }
        unread = sorted({lk.rating_key for ls in items.values() for lk in ls} - set(states))
        if unread:
            states.update(self.plex.items_view_states(unread))
        decided = self.store.pull_states(sorted(items))
        chosen = {
            scene_id: scene_links
            for scene_id, scene_links in items.items()
            if not (decided.get(scene_id) or {}).get("rating_known")
            or (decided.get(scene_id) or {}).get("rating_stash_pending")
            or RatingSync.plex_moved(scene_links, states)
        }
        return chosen, states

    def _ratings(
        self,
        chosen: dict[int, list[Link]],
        states: dict[int, ViewState],
        stash_states: dict[int, dict],
    ) -> None:
        ratings = RatingSync(self.store, self.stash, self.plex)
        for scene_id, links in sorted(chosen.items()):
            scene = stash_states.get(scene_id)
            if scene is None:
                continue  # deleted in Stash
            updated_at = scene.get("updated_at")
            value = scene.get("rating100")
            outcome = ratings.reconcile(
                scene_id,
                value if isinstance(value, int) else None,
                decisions.epoch(updated_at) if updated_at else None,
                links,
                states,
            )
            if outcome.action == decisions.AGREE:
                self.report.ratings_agreed += 1
            elif outcome.action == decisions.TO_STASH:
                self.report.ratings_to_stash += 1
            elif outcome.action == decisions.TO_PLEX:
                self.report.ratings_to_plex += 1
            self.report.stash_writes += int(outcome.stash_written)


def _waiting_items(stored: Any) -> dict[int, list[int]]:
    """The items whose plays wait for a scene: ratingKey -> the scenes they were linked to
    that did not count (empty: none, or shared by two scenes)."""
    if isinstance(stored, dict):
        return {
            int(key): [int(s) for s in dead or []]
            for key, dead in stored.items()
            if str(key).isdigit()
        }
    return {int(key): [] for key in stored or [] if str(key).isdigit()}
