"""After Plex comes back, drain gently: a token bucket whose rate ramps from a few jobs per
second to full speed over a configurable period, and halves again if errors spike.

Pure: the caller passes `now` and sleeps for the returned wait itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

START_RATE = 2.0  # jobs per second right after recovery
FULL_RATE = 50.0  # the ramp ends here; after the ramp there is no limit at all
RAMP_SECONDS = 120.0
ERROR_WINDOW_SECONDS = 30.0
ERROR_RATIO_BACKOFF = 0.3  # above this share of failed jobs in the window, halve the rate
MIN_SAMPLES = 5


@dataclass
class RecoveryRamp:
    """A token bucket for the first minutes after a recovery (rates in jobs per second)."""

    started_at: float
    ramp_seconds: float = RAMP_SECONDS
    start_rate: float = START_RATE
    full_rate: float = FULL_RATE
    tokens: float = 1.0
    last_refill: float | None = None
    penalty: float = 1.0  # multiplier < 1 after an error spike
    results: deque[tuple[float, bool]] = field(default_factory=deque)

    def finished(self, now: float) -> bool:
        """True once the ramp is over and no error penalty remains."""
        return now - self.started_at >= self.ramp_seconds and self.penalty >= 1.0

    def rate(self, now: float) -> float:
        """Jobs per second allowed at `now`: a linear ramp, times any error penalty."""
        progress = min(1.0, max(0.0, (now - self.started_at) / self.ramp_seconds))
        return (self.start_rate + (self.full_rate - self.start_rate) * progress) * self.penalty

    def wait_time(self, now: float) -> float:
        """Seconds to wait before the next job may start (0 when a token is available)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate(now)

    def take(self, now: float) -> None:
        """Spend the token of one job started at `now`."""
        self._refill(now)
        self.tokens -= 1.0

    def record(self, now: float, ok: bool) -> None:
        """Feed a job result; an error spike halves the rate, a calm window restores it."""
        self.results.append((now, ok))
        while self.results and now - self.results[0][0] > ERROR_WINDOW_SECONDS:
            self.results.popleft()
        if len(self.results) < MIN_SAMPLES:
            return
        failed = sum(1 for _, success in self.results if not success) / len(self.results)
        if failed > ERROR_RATIO_BACKOFF:
            self.penalty = max(0.05, self.penalty / 2)
            self.results.clear()
        elif failed == 0 and self.penalty < 1.0:
            self.penalty = min(1.0, self.penalty * 2)

    def _refill(self, now: float) -> None:
        if self.last_refill is None:
            self.last_refill = now
            return
        elapsed = max(0.0, now - self.last_refill)
        self.tokens = min(1.0, self.tokens + elapsed * self.rate(now))
        self.last_refill = now
