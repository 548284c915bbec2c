"""A drain follows the settings of the command that asked for it.

A worker reads Stash's plugin settings afresh, but what it was given outside Stash (its
STASH2PLEX_* variables, the settings file's path) belongs to its process, fixed when it
started. A command or task given other such settings that wants a drain asks the running
worker to hand the queue over: the worker stops at its next round and the command starts one
of its own, so a fixed token, URL or library takes effect at once and an error names what is
set now. A service's worker keeps its own settings: it is the one configured to run.
"""

from __future__ import annotations

import os
import socket
import sys
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
_HOST = socket.gethostname()


def _alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (on Windows, where signal 0 would end it, it
    is taken to: the request's time limit still applies)."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or the platform cannot tell: assume so
    return True


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
        # Signed with this process: the request stands only while it lives (it may fail before
        # it drains, and a worker a later hook starts must not stop for a request nobody will
        # follow up), whichever worker holds the lock by then (a hook's may not have said who
        # it is yet).
        request = {"local": fingerprint, "at": clock(), "host": _HOST, "pid": os.getpid()}
        store.put_value(HANDOVER_KEY, request)
        store.nudge()
    deadline = clock() + HANDOVER_SECONDS
    while worker_running(data_dir) and clock() < deadline:
        sleep(POLL_SECONDS)
    if worker_running(data_dir):
        return "the running worker did not hand the queue over in time; it drains with its settings"
    return None


def asked_to_hand_over(
    request: Any, own: str, now: float, alive: Callable[[int], bool] | None = None
) -> bool:
    """Whether a stored handover request (None when there is none) asks a worker given the
    settings `own` to stop: made recently, for other settings, by a process still alive
    (`alive(pid)`; known only on the same host: elsewhere, and for a request an earlier
    version wrote, recent is enough)."""
    if not isinstance(request, dict) or request.get("local") in (None, own):
        return False
    pid = request.get("pid")
    if request.get("host") == _HOST and isinstance(pid, int) and not (alive or _alive)(pid):
        return False
    made_at = request.get("at")
    return isinstance(made_at, (int, float)) and 0 <= now - made_at <= HANDOVER_SECONDS
