"""Words for what the store records: local times, durations, waiting reasons, job states.

Human output (the command line's tables, the Stash tasks' log lines) shows these, never
Python values (`None`, dicts, epoch floats). Pure functions; `now` is passed in.
"""

from __future__ import annotations

import time
from typing import Any

from stash2plex.store.holds import PARKED

# What each waiting reason means, in words (vocabulary.WaitReason).
WAIT_WORDS = {
    "retry": "waiting to be retried",
    "plex_down": "waiting for Plex to come back",
    "stash_down": "waiting for Stash to answer",
    "auth": "waiting for a credential to be fixed",
    "settings": "waiting for a setting to be fixed",
    "not_in_plex": "not in Plex yet",
    "ambiguous": "ambiguous: several Plex items could be it",
    "conflict": "conflict: one Plex item holds several scenes",
}
STATE_WORDS = {"pending": "queued", "leased": "being synced", "done": "done"}


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
    """Local date and time ('2026-11-30 08:11'), or '—' for nothing."""
    if epoch is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(epoch)))


def when(epoch: float | None, now: float) -> str:
    """Local time with how long ago or from now: '2026-11-30 08:11 (3 min ago)'."""
    if epoch is None:
        return "—"
    delta = float(epoch) - now
    if abs(delta) < 1:
        return f"{local_time(epoch)} (now)"
    relative = f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"
    return f"{local_time(epoch)} ({relative})"


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
    if job.due_at >= PARKED:
        return "when the hold on the queue lifts"
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
