"""Limits on the requests to one server, shared by the threads that talk to it.

`RequestThrottle`: some Plex servers answer "database is busy" under bulk edits (a NAS with a
slow disk); the user can cap the rate with `plex_max_requests_per_second`. A token bucket
holding at most one second's worth of requests: bursts stay short, the average stays under
the cap. Time and sleeping are injected, so the arithmetic is proven without waiting.

`RequestSlots`: at most `plex_max_concurrency` requests at the server at once, counting the
ones we gave up on. A request that timed out is still running at a slow server; if its slot
were free at once, the next request would join it, and a server already too slow to answer
in time would get more work than the setting allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RequestThrottle:
    """At most `per_second` requests per second on average (0 or less: no limit).

    `cancel_waits` (the worker is stopping) ends the wait in hand and every later one at once;
    `cancelled` then tells the caller not to send. `sleep` waits `s` seconds; by default a wait
    that `cancel_waits` ends early."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.per_second = per_second
        self.cancelled = False
        self._woken = threading.Event()
        self._clock = clock
        self._sleep = sleep or self._woken.wait
        self._lock = threading.Lock()
        self._tokens = max(1.0, per_second)
        self._last = clock()

    def acquire(self) -> float:
        """Wait for the right to send one request; returns the seconds waited (0 at once once
        cancelled: check `cancelled`)."""
        if self.per_second <= 0 or self.cancelled:
            return 0.0
        with self._lock:  # one waiter at a time keeps the order fair and the sum exact
            if self.cancelled:  # cancelled while this thread waited for the lock
                return 0.0
            now = self._clock()
            capacity = max(1.0, self.per_second)
            self._tokens = min(capacity, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            wait = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.per_second
            if wait > 0:
                self._sleep(wait)
                if self.cancelled:  # nothing will be sent: the budget stays as it was
                    return 0.0
                self._tokens += wait * self.per_second
                self._last = now + wait
            self._tokens -= 1.0
            return wait

    def cancel_waits(self) -> None:
        """End the wait in hand and make none after (the process is stopping)."""
        self.cancelled = True
        self._woken.set()


class RequestSlots:
    """At most `slots` requests at the server at once. `release(abandoned_for=s)` keeps the
    slot taken `s` seconds longer: the request was given up on (it timed out) and may still
    run at the server that long. Thread-safe; time injected."""

    def __init__(self, slots: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.slots = max(1, slots)
        self._clock = clock
        self._ready = threading.Condition()
        self._sending = 0
        self._abandoned_until: list[float] = []
        self._cancelled = False

    def in_use(self) -> int:
        """Slots taken now: requests being sent, and abandoned ones that may still run."""
        with self._ready:
            return self._sending + len(self._still_running(self._clock()))

    def acquire(self) -> bool:
        """Wait for a free slot and take it; False (no slot taken) once `cancel_waits` was
        called."""
        with self._ready:
            if not self._abandoned_until and self._sending < self.slots and not self._cancelled:
                self._sending += 1  # the common case: nothing given up on, a slot free
                return True
            while not self._cancelled:
                now = self._clock()
                running = self._still_running(now)
                if self._sending + len(running) < self.slots:
                    self._sending += 1
                    return True
                # Sending requests notify when they end; an abandoned one frees itself in time.
                self._ready.wait(min(running) - now if running else None)
            return False

    def cancel_waits(self) -> None:
        """End every wait for a slot, now and later (the process is stopping)."""
        with self._ready:
            self._cancelled = True
            self._ready.notify_all()

    def release(self, abandoned_for: float = 0.0) -> None:
        """Give the slot back, or keep it `abandoned_for` seconds more (a timed-out request)."""
        with self._ready:
            self._sending -= 1
            if abandoned_for > 0:
                self._abandoned_until.append(self._clock() + abandoned_for)
            self._ready.notify()

    def _still_running(self, now: float) -> list[float]:
        self._abandoned_until = [until for until in self._abandoned_until if until > now]
        return self._abandoned_until
