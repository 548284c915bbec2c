"""One catch-up pull from Plex to Stash: plays, resume points and ratings since the watermarks.

Reads from Plex: the watch history of each configured library since the plays watermark
(newest first, paged), the items in progress, and the items rated since the ratings
watermark. Reads from Stash: the play history and rating of every scene involved. Writes to
Stash only what Plex really recorded, through `decisions`:

- plays: `sceneAddPlay(id, times)`, one call per scene with all its new times;
- resume points: `sceneSaveActivity(id, resume_time)`;
- ratings (`sync_rating_both_ways`): `sceneUpdate(rating100)`, or `rate()` in Plex when
  Stash's change is the later one.

No echo: `sceneUpdate` fires Stash's Scene.Update.Post hook, whose job re-syncs the scene to
Plex; before writing we record the rating as already pushed (the link's fingerprint), so that
job finds nothing to write. Stash fires no hook for plays and activity. A pull is never started
by a hook, so our own writes cannot trigger another pull.

Only one pull runs at a time per data directory (a file lock); a second one reports "busy".
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from stash2plex.clients.plex import Play, ViewState
from stash2plex.engine.context import Context
from stash2plex.engine.worker_lock import try_lock, unlock
from stash2plex.errors import PermanentError, SyncError
from stash2plex.names import name_key
from stash2plex.pull import decisions
from stash2plex.store.db import Store
from stash2plex.sync.metadata import fingerprint
from stash2plex.sync.syncer import PlexIndex

log = logging.getLogger("stash2plex.pull")

LOCK_FILENAME = "pull.lock"
WATERMARKS_KEY = "pull_watermarks"
LAST_REPORT_KEY = "pull_last_report"
TIMER_KEY = "pull_timer"  # when the last pull started, whoever ran it (see timer.py)
# Plex items whose plays we saw before they were synced with a scene: once one is, its whole
# history is read, so plays older than the watermark still reach the scene. Bounded.
UNLINKED_KEY = "pull_unlinked_items"
UNLINKED_LIMIT = 50_000
OWNER_ACCOUNT = 1  # PMS's local account of the server owner, whose token the settings hold
ALL_ACCOUNTS = "*"
# Plays can reach Plex late with their original time (a phone that played offline syncs
# later), so each pull reads the history back this far before the newest play it saw.
PLAY_LOOKBACK_SECONDS = 24 * 3600.0


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
        return (
            f"{self.plays_added} plays added to {self.scenes_played} scenes "
            f"({self.plays_seen} Plex plays seen, {self.unlinked_plays} of "
            f"{self.unlinked_items} items not synced with a scene), "
            f"{self.resume_points} resume points, ratings {self.ratings_to_stash} to Stash / "
            f"{self.ratings_to_plex} to Plex, {self.seconds} s"
        )


@contextlib.contextmanager
def pull_lock(store: Store) -> Iterator[bool]:
    """Hold the pull lock if it is free; yields False (without waiting) when it is not."""
    fd = os.open(store.path.parent / LOCK_FILENAME, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        locked = try_lock(fd)
        try:
            yield locked
        finally:
            if locked:
                unlock(fd)
    finally:
        os.close(fd)


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
        self._still_unlinked: list[int] = []

    def run(self, since: int | None) -> None:
        sections = PlexIndex(self.store, self.plex, self.config, self.clock).section_ids()
        marks = self.store.get_value(WATERMARKS_KEY) or {}
        plays_marks = dict(marks.get("plays") or {})
        rating_marks = dict(marks.get("ratings") or {})
        plays: list[Play] = []
        in_progress: list[ViewState] = []
        rated: list[ViewState] = []
        if self.config.pull_plays:
            account = self._account()
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
        self.progress(0.5)
        self._apply(plays, in_progress, rated)
        self.store.put_value(WATERMARKS_KEY, {"plays": plays_marks, "ratings": rating_marks})
        self.progress(1.0)

    def _backfill(self, account: int | None) -> list[Play]:
        """The whole history of items that got their scene since a pull saw them unlinked."""
        waiting = [int(k) for k in self.store.get_value(UNLINKED_KEY) or []]
        linked = self.store.scenes_by_rating_key(waiting)
        plays: list[Play] = []
        for rating_key in sorted(linked):
            plays += self.plex.plays(None, account_id=account, rating_key=rating_key)
        self._still_unlinked = [k for k in waiting if k not in linked]
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
        self, plays: list[Play], in_progress: list[ViewState], rated: list[ViewState]
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
        scenes_of = self.store.scenes_by_rating_key(keys)
        unlinked = [p for p in plays if p.rating_key not in scenes_of]
        self.report.unlinked_plays = len(unlinked)
        self.report.unlinked_items = len({p.rating_key for p in unlinked})
        if self.config.pull_plays:
            waiting = dict.fromkeys(self._still_unlinked)
            waiting.update(dict.fromkeys(sorted({p.rating_key for p in unlinked})))
            self.store.put_value(UNLINKED_KEY, list(waiting)[-UNLINKED_LIMIT:])

        times: dict[int, list[int]] = {}
        for play in plays:
            for scene_id in scenes_of.get(play.rating_key, []):
                times.setdefault(scene_id, []).append(play.viewed_at)
        rated_by_scene: dict[int, list[ViewState]] = {}
        for state in rated:
            for scene_id in scenes_of.get(state.rating_key, []):
                rated_by_scene.setdefault(scene_id, []).append(state)
        stash_states = self.stash.play_states(sorted(set(times) | set(rated_by_scene)))
        rated_scenes = _one_rating_per_scene(rated_by_scene, stash_states)
        self._plays(times, stash_states)
        self.progress(0.7)
        self._resume_points(in_progress, scenes_of)
        self.progress(0.8)
        self._ratings(rated_scenes, stash_states)

    def _plays(self, times: dict[int, list[int]], stash_states: dict[int, dict]) -> None:
        for scene_id, plex_times in sorted(times.items()):
            state = stash_states.get(scene_id)
            if state is None:
                continue  # the scene was deleted in Stash
            missing = decisions.new_plays(plex_times, state.get("play_history") or [])
            if not missing:
                continue
            self.stash.add_plays(scene_id, [decisions.rfc3339(t) for t in missing])
            self.report.stash_writes += 1
            self.report.plays_added += len(missing)
            self.report.scenes_played += 1

    def _resume_points(self, in_progress: list[ViewState], scenes_of: dict[int, list[int]]) -> None:
        if not self.config.pull_resume:
            return
        offsets: dict[int, int] = {}
        for state in in_progress:
            for scene_id in scenes_of.get(state.rating_key, []):
                offsets[scene_id] = state.view_offset_ms
        # Scenes we gave a resume point that Plex no longer lists in progress: read their
        # items, because a point reset in Plex (watched to the end, marked unplayed) should
        # reset Stash's too, while an item deleted from Plex says nothing.
        gone = {
            scene_id: rating_key
            for scene_id, (rating_key, _) in self.store.resumed_scenes().items()
            if scene_id not in offsets
        }
        if gone:
            current = self.plex.items_view_states(sorted(set(gone.values())))
            for scene_id, rating_key in gone.items():
                if rating_key in current:
                    offsets[scene_id] = current[rating_key].view_offset_ms
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

    def _ratings(self, rated: dict[int, ViewState], stash_states: dict[int, dict]) -> None:
        if not self.config.sync_rating_both_ways:
            return
        recorded = self.store.pull_states(sorted(rated))
        for scene_id, plex in sorted(rated.items()):
            scene = stash_states.get(scene_id)
            if scene is None:
                continue
            stash_value = scene.get("rating100")
            row = recorded.get(scene_id) or {}
            last = (
                decisions.RatingState(row.get("rating_agreed"), row.get("rating_plex_at"))
                if row.get("rating_known")
                else None
            )
            updated_at = scene.get("updated_at")
            action = decisions.decide_rating(
                plex.user_rating,
                plex.last_rated_at,
                stash_value,
                decisions.epoch(updated_at) if updated_at else None,
                last,
            )
            if action == decisions.AGREE:
                self._mark_pushed(scene_id, stash_value)
                self.store.save_rating_agreed(scene_id, stash_value, plex.last_rated_at)
                self.report.ratings_agreed += 1
            elif action == decisions.TO_STASH:
                self._rating_to_stash(scene_id, plex)
            else:
                self.plex.rate(plex.rating_key, decisions.plex_rating(stash_value))
                self._mark_pushed(scene_id, stash_value)
                self.store.save_rating_agreed(scene_id, stash_value, None)
                self.report.ratings_to_plex += 1

    def _rating_to_stash(self, scene_id: int, plex: ViewState) -> None:
        value = decisions.stash_rating(plex.user_rating)
        link = self.store.link(scene_id)
        before = link.fingerprints.get("rating") if link else None
        # First say "Plex already shows this", then write: the Scene.Update.Post hook of our
        # own write queues the scene, and its sync must find the rating unchanged.
        self._mark_pushed(scene_id, value)
        try:
            self.stash.set_rating(scene_id, value)
        except SyncError:
            if link is not None and before is not None:
                self.store.set_link_fingerprint(scene_id, "rating", before)
            raise
        self.store.save_rating_agreed(scene_id, value, plex.last_rated_at)
        self.report.stash_writes += 1
        self.report.ratings_to_stash += 1

    def _mark_pushed(self, scene_id: int, rating100: int | None) -> None:
        self.store.set_link_fingerprint(
            scene_id, "rating", fingerprint(decisions.plex_rating(rating100))
        )


def _one_rating_per_scene(
    rated: dict[int, list[ViewState]], stash_states: dict[int, dict]
) -> dict[int, ViewState]:
    """A scene whose files Plex holds as several items has a rating on each: the news is the
    latest one that differs from Stash's (ratings pushed together share their second), else
    the latest."""
    chosen: dict[int, ViewState] = {}
    for scene_id, states in rated.items():
        in_stash = decisions.plex_rating((stash_states.get(scene_id) or {}).get("rating100"))
        differing = [s for s in states if s.user_rating != in_stash]
        chosen[scene_id] = max(differing or states, key=lambda s: s.last_rated_at or 0)
    return chosen
