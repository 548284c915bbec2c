"""Words for what the store records: local times, durations, waiting reasons, job states.

Human output (the command line's tables, the Stash tasks' log lines) shows these, never
Python values (`None`, dicts, epoch floats). Pure functions; `now` is passed in.
"""

from __future__ import annotations

import math
import time
from typing import Any

from stash2plex.store.holds import PARKED
from stash2plex.words import plural

__all__ = ["plural"]  # re-exported: callers of present take their words from here

# What each waiting reason means, in words (vocabulary.WaitReason).
WAIT_WORDS = {
    "retry": "waiting to be retried",
    "plex_down": "waiting for Plex to come back",
    "stash_down": "waiting for Stash to answer",
    "auth": "waiting for a rejected Plex token or Stash API key to be fixed",
    "settings": "waiting for a setting to be fixed",
    "not_in_plex": "not in Plex yet",
    "ambiguous": "ambiguous: several Plex items could be it",
    "conflict": "conflict: one Plex item holds several scenes",
}
STATE_WORDS = {"pending": "queued", "leased": "being synced", "done": "done"}
# The reasons a job waits for the whole queue's hold (not for something of its own scene):
# what they say may be an earlier hold's once another holds the queue.
QUEUE_HOLD_REASONS = ("plex_down", "stash_down", "auth", "settings")
#: What a parked job's due time (store.holds.PARKED, ~1e18) means: no timer, it waits for news.
NEVER_BY_ITSELF = "when something changes"


def parked(epoch: float | None) -> bool:
    """True for a due time that is no time at all: the store parks jobs that wait for a change
    (a fixed setting, Plex back, a new save) at PARKED rather than at a moment."""
    return epoch is not None and float(epoch) >= PARKED


def duration(seconds: float) -> str:
    """'42 s', '3 min 5 s', '2 h 10 min', '3 d 4 h'."""
    total = round(max(0.0, seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def local_time(epoch: float | None) -> str:
    """Local date and time ('2026-11-30 08:11'), '—' for nothing, 'when something changes'
    for a parked due time."""
    if epoch is None:
        return "—"
    if parked(epoch):
        return NEVER_BY_ITSELF
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(epoch)))


def when(epoch: float | None, now: float) -> str:
    """Local time with how long ago or from now: '2026-11-30 08:11 (3 min ago)'."""
    if epoch is None:
        return "—"
    if parked(epoch):
        return NEVER_BY_ITSELF
    delta = float(epoch) - now
    if abs(delta) < 1:
        return f"{local_time(epoch)} (now)"
    relative = f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"
    return f"{local_time(epoch)} ({relative})"


def optional_duration(seconds: float | None) -> str:
    """A duration in words, or '—' when there is none (no outage, nothing measured)."""
    return "—" if seconds is None else duration(seconds)


def availability_words(percent: float | None, watched_since: float | None, now: float) -> str:
    """Availability with the window it covers: '99.5 % over the last 3 d 4 h (since
    2026-11-30 08:11, when Stash2Plex began watching)', or 'not measured yet'."""
    if watched_since is None or now <= watched_since:
        return "not measured yet (nothing watched so far)"
    # Two decimals at most, never rounded up: 99.996 % is not "100 %".
    shown = "100 %" if percent is None else f"{math.floor(percent * 100) / 100:g} %"
    return (
        f"{shown} over the last {duration(now - watched_since)} "
        f"(since {local_time(watched_since)}, when Stash2Plex began watching)"
    )


def outage_summary(report: dict[str, Any]) -> str:
    """One line for `operations.queue.outage_report`: outages, MTTR, MTBF, availability and
    the window it covers; words only (no None, no epoch floats)."""
    now = float(report.get("now") or time.time())
    parts = [plural(int(report["outages"]), "outage")]
    if report["outages"]:
        parts.append(f"{duration(report['total_downtime_s'])} down in all")
        parts.append(f"mean time to recovery {optional_duration(report['mttr_s'])}")
        parts.append(f"mean time between failures {optional_duration(report['mtbf_s'])}")
    availability = availability_words(report["availability_pct"], report.get("watched_since"), now)
    return f"{', '.join(parts)}; availability {availability}"


def state_words(state: str, reason: str | None) -> str:
    """A job's state in words ('not in Plex yet', 'queued', ...)."""
    if state == "waiting":
        return WAIT_WORDS.get(reason or "", f"waiting ({reason})")
    return STATE_WORDS.get(state, state)


def next_attempt(job: Any, now: float) -> str:
    """When a job is tried next, in words."""
    if job.state == "leased":
        return "now (being synced)"
    if job.state == "done":
        return "—"
    if parked(job.due_at):
        if job.reason == "plex_down":
            return "when Plex is back"
        if job.reason in ("auth", "settings"):
            return "when the hold on the queue lifts"
        return NEVER_BY_ITSELF
    if job.due_at <= now:
        return "as soon as the worker gets to it"
    return when(job.due_at, now)


def value_words(value: Any) -> str:
    """Any recorded value as text: lists joined, nothing as '—', times left to callers."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {value_words(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(value_words(item) for item in value)
    return str(value)


# Plex's names for the synced fields, in the words the settings use (the rest read as is).
FIELD_WORDS = {"originallyAvailableAt": "date", "actor": "performers", "genre": "tags"}


# The synced fields in the order Plex Web's edit dialog shows them, images last.
FIELD_ORDER = (
    "title",
    "originallyAvailableAt",
    "studio",
    "summary",
    "rating",
    "actor",
    "genre",
    "collection",
    "label",
    "poster",
    "art",
)


# What queued a job, as people know it (the store keeps the short names commands and hooks
# give; the others are already words: "reconcile", "sync now", "performer 4 changed").
SOURCE_WORDS = {
    "cli": "stash2plex sync",
    "force": "a forced sync (rewrites every field)",
    "sync_all": "Sync All Scenes",
    "sync_recent": "Sync Recent Scenes",
    "Scene.Create.Post": "the scene created in Stash",
    "Scene.Update.Post": "the scene saved in Stash",
}


def source_words(source: str | None) -> str:
    """What queued a job, in words ('Scene.Update.Post' -> 'the scene saved in Stash')."""
    return SOURCE_WORDS.get(source or "", source or "—")


def field_words(field: str) -> str:
    """A synced field as people call it (`originallyAvailableAt` -> `date`)."""
    return FIELD_WORDS.get(field, field)


def field_order(field: str) -> tuple[int, str]:
    """A sort key putting synced fields in FIELD_ORDER (any other after, by name)."""
    return (FIELD_ORDER.index(field) if field in FIELD_ORDER else len(FIELD_ORDER), field)
