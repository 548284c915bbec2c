"""One request for many threads: the worker's sync threads start together and all want the same
first answer from Plex (who serves, its libraries, the library's listing, its collections).

`SingleFlight.run` lets the first thread ask while the others wait for its answer. When it
fails, the threads that waited meanwhile get its error instead of each asking again in turn:
behind a Plex that hangs, four threads asking one after another would wait four timeouts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from stash2plex.errors import SyncError

T = TypeVar("T")


class SingleFlight:
    """Runs a piece of work for every thread that needs it at once. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished = 0  # rounds of work done, failed or not
        self._failure: SyncError | None = None

    def run(self, done: Callable[[], T | None], work: Callable[[], T]) -> T:
        """`done()`'s result when it has one (the work was done before, or by the thread this
        one waited for); else `work()`'s. Raises the SyncError of `work()`, or of the round a
        thread waited for while another ran it."""
        seen = self._finished
        with self._lock:
            result = done()
            if result is not None:
                return result
            if self._finished != seen and self._failure is not None:
                # It failed while this thread waited: not asked again, and counted once.
                raise self._failure.shared_copy()
            try:
                result = work()
            except SyncError as exc:
                self._failure = exc
                raise
            else:
                self._failure = None
            finally:
                self._finished += 1
            return result
