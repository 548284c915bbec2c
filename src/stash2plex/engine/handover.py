"""A drain follows the settings of the command that asked for it.

A worker reads Stash's plugin settings afresh, but what it was given outside Stash (its
STASH2PLEX_* variables, the settings file's path) belongs to its process, fixed when it
started. A command or task given other such settings that wants a drain asks the running
worker to hand the queue over: the worker stops at its next round and the command starts one
of its own, so a fixed token, URL or library takes effect at once and an error names what is
set now. A service's worker keeps its own settings: it is the one configured to run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stash2plex.engine.worker_lock import worker_running
from stash2plex.store.db import Store

# The store keys: what the running worker was given, and a command's request to hand over.
WORKER_SETTINGS_KEY = "worker_settings"
HANDOVER_KEY = "settings_handover"
# How long a command waits for the running worker to stop, and how long a request stands (a
# request nobody followed up must not stop the workers that later hooks start).
HANDOVER_SECONDS = 15.0
POLL_SECONDS = 0.2


def request_handover(
    data_dir: Path,
    fingerprint: str,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """If the running worker was given other settings than `fingerprint`
    (`LocalSettings.fingerprint`), ask it to hand over and wait until it stopped.

    Returns None when the drain may start with this process's settings, else a sentence for
    people saying which settings the running worker drains with.
    """
    if not worker_running(data_dir):
        return None
    with Store.open(data_dir, clock=clock) as store:
        running = store.get_value(WORKER_SETTINGS_KEY) or {}
        if running.get("local") in (None, fingerprint):
            return None
        if running.get("keeps"):
            return "the service's worker drains the queue with the service's own settings"
        # Addressed to the worker running now: a worker a later hook starts (this command may
        # fail before it drains) must not stop for it and leave the queue undrained.
        request = {"local": fingerprint, "at": clock(), "to": running.get("owner")}
        store.put_value(HANDOVER_KEY, request)
        store.nudge()
    deadline = clock() + HANDOVER_SECONDS
    while worker_running(data_dir) and clock() < deadline:
        sleep(POLL_SECONDS)
    if worker_running(data_dir):
        return "the running worker did not hand the queue over in time; it drains with its settings"
    return None


def asked_to_hand_over(request: Any, own: str, owner: str, now: float) -> bool:
    """Whether a stored handover request (None when there is none) asks the worker `owner`,
    given the settings `own`, to stop: made recently, for other settings, to that worker."""
    if not isinstance(request, dict) or request.get("local") in (None, own):
        return False
    if request.get("to") not in (None, owner):
        return False
    made_at = request.get("at")
    return isinstance(made_at, (int, float)) and 0 <= now - made_at <= HANDOVER_SECONDS
