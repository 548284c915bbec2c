"""The words the product's records use, in one place: job states, wait reasons, error classes,
sync outcomes and hook actions.

Standard library only and import-free (the hook path reads it). Values are plain strings so
they store as-is in SQLite and JSON; `Literal` types let mypy check every use.
"""

from __future__ import annotations

from typing import Literal, get_args

JobState = Literal["pending", "leased", "waiting", "done"]
PENDING: JobState = "pending"
LEASED: JobState = "leased"
WAITING: JobState = "waiting"
DONE: JobState = "done"

# Why a waiting job waits. Each has an owner that makes it due again: a timer (retry,
# not_in_plex, ambiguous, stash_down) or a hold lifting (plex_down, auth, settings).
WaitReason = Literal[
    "retry", "plex_down", "stash_down", "auth", "not_in_plex", "ambiguous", "conflict", "settings"
]
WAIT_REASONS: tuple[WaitReason, ...] = get_args(WaitReason)

# The route a failure takes (see errors.py for the exception classes that carry them).
ErrorClass = Literal[
    "transient",
    "server_down",
    "not_in_plex",
    "ambiguous",
    "conflict",
    "permanent",
    "auth",
    "config",
]
ERROR_CLASSES: tuple[ErrorClass, ...] = get_args(ErrorClass)

# Which server an error came from: the same status means different things on each side.
Server = Literal["plex", "stash"]

# What one scene's sync ended as.
SyncStatus = Literal["synced", "unchanged", "deleted", "no_file", "skipped"]

# What a hook asks of the store.
HookAction = Literal["scene_dirty", "scene_deleted", "entity_changed", "entity_deleted", "ignored"]
