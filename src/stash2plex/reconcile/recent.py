"""Scenes Stash changed since a time: "Sync Recent Scenes" (`stash2plex sync --since`) and the
reconcile after an outage.

Stash filters `updated_at` by comparing text: its timestamps are RFC3339 in the server's own
UTC offset, and the value given is compared as a string (docs/stash-plugin-protocol.md,
`getTimestampWhereClause`). So we ask with a margin wider than any UTC offset (14 hours), in
UTC, and keep exactly the scenes whose time, parsed, is at or after the one wanted. Times are
epoch seconds; Stash's have one-second resolution.

"Sync Recent Scenes" remembers where it stopped: the newest `updated_at` it queued and the
scenes it queued with that very second, so the next run takes every scene changed since,
including one saved in that same second after the run, and none twice. That mark never moves
past our own clock's now: a mark in the future (Stash's clock ahead of ours, a clock set back,
an older version) would make every later run find nothing. One found there is ignored, with a
warning, and the run takes the scenes changed since the last push to Plex instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from stash2plex.clients.stash import StashClient
from stash2plex.errors import PermanentError
from stash2plex.store.db import Store

log = logging.getLogger("stash2plex.recent")

WATERMARK_KEY = "recent_sync"
# Wider than any UTC offset (-12:00 .. +14:00): a time in Stash's zone compares as text.
OFFSET_MARGIN_SECONDS = 14 * 3600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")
SINCE_HELP = (
    "a duration (90m, 6h, 2d, 1w), a local date or time (2025-06-01, 2025-06-01T18:30), "
    "or 'last' (since the last Sync Recent Scenes)"
)


def stash_epoch(text: str) -> float:
    """A Stash timestamp (RFC3339, any offset, `Z`) as epoch seconds."""
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()


def parse_since(text: str | None, now: float) -> float | None:
    """What `--since` means, as epoch seconds; None for "since the last run" (empty, `last`).

    Raises PermanentError (one sentence) naming the accepted forms, or saying why the time
    cannot be used: before the year 1 (a huge duration) or in the future.
    """
    value = (text or "").strip()
    if not value or value.lower() == "last":
        return None
    moment = _moment(value, now)
    # The query asks Stash with a margin before the time (module docstring): that time must
    # be a date Python can write, and a time to come can hold no change yet.
    try:
        datetime.fromtimestamp(moment - OFFSET_MARGIN_SECONDS, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise PermanentError(
            f"--since {value!r} is too far back to ask Stash about (before the year 1); give a "
            "later date or a shorter duration"
        ) from None
    if moment > now:
        raise PermanentError(
            f"--since {value!r} is in the future ({_local_words(moment)}); nothing can have "
            "changed since then"
        )
    return moment


def _moment(value: str, now: float) -> float:
    duration = _DURATION.match(value)
    if duration:
        try:
            return now - float(duration.group(1)) * _UNITS[duration.group(2).lower()]
        except OverflowError:
            return float("-inf")
    for form in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(value, form)  # local time, as people mean it
        except ValueError:
            continue
        return _epoch(parsed)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(f"--since {value!r} is not {SINCE_HELP}") from None
    return _epoch(parsed)


def _epoch(moment: datetime) -> float:
    """Epoch seconds; minus infinity for a time too early for the platform to convert."""
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return float("-inf")


def scenes_updated(
    stash: StashClient, since: float, until: float | None = None
) -> list[tuple[int, float]]:
    """(id, updated_at as epoch) of every scene Stash changed at or after `since` (and at or
    before `until`), by id. One query with a margin (module docstring), paged by 1000."""
    found = []
    for scene_id, stamp in stash.scene_updates(updated_after(since)):
        try:
            moment = stash_epoch(stamp)
        except ValueError:
            continue  # not a time: never ours to judge
        if moment >= int(since) and (until is None or moment <= until):
            found.append((scene_id, moment))
    return found


def updated_after(since: float) -> dict[str, Any]:
    """The scene filter that finds every scene changed at or after `since` in any UTC offset
    (and some before it: the caller compares the times itself)."""
    floor = datetime.fromtimestamp(since - OFFSET_MARGIN_SECONDS, timezone.utc)
    return {
        "updated_at": {"value": floor.strftime("%Y-%m-%dT%H:%M:%SZ"), "modifier": "GREATER_THAN"}
    }


@dataclass
class RecentReport:
    """What one "Sync Recent Scenes" queued. `since`: epoch seconds (None: every scene)."""

    since: float | None
    queued: int = 0
    scene_ids: list[int] = field(default_factory=list)
    first_run: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON: `since` epoch seconds, `since_text` its local ISO time,
        `scene_ids` the first 50 queued (`queued` says how many), `summary` one line."""
        data = asdict(self)
        data["scene_ids"] = self.scene_ids[:50]  # a sample; `queued` says how many
        data["since_text"] = _local(self.since)
        data["summary"] = self.summary()
        return data

    def summary(self) -> str:
        """One line; the `note` (a warning) follows it."""
        warning = f" ({self.note})" if self.note else ""
        if self.since is None:
            return f"queued {self.queued} scenes (no earlier sync recorded: every scene){warning}"
        if not self.queued:
            return f"nothing changed in Stash since {_local_words(self.since)}{warning}"
        noun = "scene" if self.queued == 1 else "scenes"
        return (
            f"queued {self.queued} {noun} changed in Stash since {_local_words(self.since)}"
            + warning
        )


def queue_recent(
    store: Store,
    stash: StashClient,
    *,
    since: float | None = None,
    clock: Callable[[], float] = time.time,
) -> RecentReport:
    """Queue the scenes Stash changed since `since`, or (None) since the last run.

    With no run recorded yet, "since" is the last push to Plex, and with none of those every
    scene is queued. The mark moves only when this run covers everything since the last one
    (an explicit `since` later than the mark leaves it, so nothing between is skipped), and
    never past `clock()`; a mark found after `clock()` is ignored with a warning in `note`
    (module docstring).
    """
    now = clock()
    mark = store.get_value(WATERMARK_KEY) or {}
    at = int(mark["at"]) if isinstance(mark.get("at"), int | float) else None
    seen_at_mark = {int(i) for i in mark.get("ids") or []}
    report = RecentReport(since)
    if at is not None and at > now:
        report.note = (
            f"the last Sync Recent Scenes was recorded as reaching {_local_words(at)}, which "
            "is in the future (a clock was wrong): that mark was ignored, and the scenes "
            "changed since the last push to Plex are taken instead"
        )
        log.warning("Sync Recent Scenes: %s", report.note)
        at, seen_at_mark = None, set()
    # Scenes queued with the mark's very second are left out only when continuing from it: a
    # time given by the user means every scene since then.
    skip = set() if since is not None else seen_at_mark
    if since is None:
        if at is not None:
            since = float(at)
        else:
            report.first_run = not report.note
            pushed = store.last_synced_at()
            since = None if pushed is None else min(pushed, now)
        report.since = since
    # Stash's times have whole seconds: a scene saved in the second `since` falls in that
    # second, so the comparison starts at its beginning.
    start = None if since is None else int(since)
    found = scenes_updated(stash, start) if start is not None else _every_scene(stash)
    chosen = [scene_id for scene_id, moment in found if not (moment == at and scene_id in skip)]
    store.enqueue(chosen, source="sync_recent", retry_now=True)
    report.queued = len(chosen)
    report.scene_ids = chosen
    if at is None or start is None or start <= at:  # this run covers everything since the mark
        newest = int(max((moment for _, moment in found), default=start or 0))
        ids = {scene_id for scene_id, moment in found if moment == newest}
        if at is not None and newest < at:
            newest, ids = at, set()
        if at is not None and newest == at:
            ids |= seen_at_mark
        if newest > now:
            # Stash's clock runs ahead of ours (or `since` was a time to come): the mark stays
            # at our now, so the scenes stamped after it are taken again, never skipped.
            newest = int(now)
            ids = {scene_id for scene_id, moment in found if moment == newest}
        store.put_value(WATERMARK_KEY, {"at": newest, "ids": sorted(ids), "ran_at": now})
    return report


def _every_scene(stash: StashClient) -> list[tuple[int, float]]:
    found = []
    for scene_id, stamp in stash.scene_updates({}):
        try:
            found.append((scene_id, stash_epoch(stamp)))
        except ValueError:
            found.append((scene_id, 0.0))
    return found


def _local(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment).astimezone().isoformat(timespec="seconds")


def _local_words(moment: float) -> str:
    """A time as people read it: local, to the second, with the zone's name."""
    return datetime.fromtimestamp(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
