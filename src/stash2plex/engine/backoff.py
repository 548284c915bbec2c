"""Retry delays: exponential backoff with full jitter. Pure; the random source is injected."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of transient failures: base and cap in seconds, and the attempts before a job
    goes to the dead-letter queue."""

    base_seconds: float = 10.0
    cap_seconds: float = 900.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("backoff needs 0 < base <= cap")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


def retry_delay(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): uniform in [0, min(cap, base * 2^(n-1))].

    Full jitter spreads the retries of many jobs that failed together, so a recovering Plex is
    not hit by all of them at the same instant.
    """
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)
