"""Record types shared by the store, the clients, the matching and the engine.

A leaf module: standard library only, so the hook path may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    """One scene's job as stored: "scene X is dirty", with its state and last failure."""

    scene_id: int
    state: str
    reason: str | None
    attempts: int
    due_at: float
    generation: int
    source: str | None
    enqueued_at: float
    last_error: str | None
    last_error_class: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class Link:
    """A scene's Plex item and the fingerprints of what we last pushed to it."""

    scene_id: int
    rating_key: int
    section_id: int
    plex_path: str
    fingerprints: dict[str, str]
    synced_at: float
    owned: dict[str, Any]


@dataclass(frozen=True)
class ListedItem:
    """One Plex item as a library listing shows it."""

    rating_key: int
    section_id: int
    files: tuple[tuple[str, int | None], ...]
    collections: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexEntry:
    """One file of one Plex item in the stored library index."""

    rating_key: int
    section_id: int
    path: str
    size: int | None
