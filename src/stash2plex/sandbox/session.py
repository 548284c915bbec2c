"""Both emulators started, seeded from one library and configured for Stash2Plex."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stash2plex.sandbox.library import SampleLibrary, seed_plex
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.stash_emulator import StashEmulator
from stash2plex.settings.config import PLUGIN_ID

SECTION_TITLE = "Stash Scenes"


@contextmanager
def running_sandbox(
    library: SampleLibrary,
    *,
    plex_token: str,
    settings: dict[str, Any] | None = None,
    plex_clock: Callable[[], float] | None = None,
    stash_clock: Callable[[], float] | None = None,
) -> Iterator[tuple[PlexEmulator, StashEmulator, int]]:
    """Yield (plex, stash, section id): Plex holds the library's files, Stash its scenes, and
    Stash's saved plugin settings point at that Plex (`settings` adds or overrides keys).
    `plex_clock`, `stash_clock`: each server's own clock (Plex's `updatedAt` and `Date`,
    Stash's `updated_at`), when a test moves time."""
    with PlexEmulator(token=plex_token, clock=plex_clock or time.time) as plex:
        section_id = seed_plex(plex, library, section_title=SECTION_TITLE)
        values = {
            "plex_url": plex.url,
            "plex_token": plex_token,
            "plex_library": SECTION_TITLE,
            "path_map": library.path_map,
            **(settings or {}),
        }
        with StashEmulator(
            library,
            plugin_settings=values,
            plugin_id=PLUGIN_ID,
            clock=stash_clock or time.time,
        ) as stash:
            yield plex, stash, section_id
