"""A limit on requests per second to one server, shared by the threads that talk to it.

Some Plex servers answer "database is busy" under bulk edits (a NAS with a slow disk); the user
can cap the rate with `plex_max_requests_per_second`. A token bucket holding at most one
second's worth of requests: bursts stay short, the average stays under the cap. Time and
sleeping are injected, so the arithmetic is proven without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RequestThrottle:
    """At most `per_second` requests per second on average (0 or less: no limit)."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = max(1.0, per_second)
        self._last = clock()

    def acquire(self) -> float:
        """Wait for the right to send one request; returns the seconds waited."""
        if self.per_second <= 0:
            return 0.0
        with self._lock:  # one waiter at a time keeps the order fair and the sum exact
            now = self._clock()
            capacity = max(1.0, self.per_second)
            self._tokens = min(capacity, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            wait = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.per_second
            if wait > 0:
                self._sleep(wait)
                self._tokens += wait * self.per_second
                self._last = now + wait
            self._tokens -= 1.0
            return wait
