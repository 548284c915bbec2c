"""Outage history metrics: mean time to recovery, mean time between failures, availability.

Pure functions over (start, end) pairs in epoch seconds; an outage still in progress has no
end and counts as down up to `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class Outage:
    """One outage: start and end in epoch seconds (no end while it lasts)."""

    started_at: float
    ended_at: float | None
    jobs_affected: int = 0

    def duration(self, now: float) -> float:
        """Seconds it lasted, or has lasted until `now`."""
        return (self.ended_at if self.ended_at is not None else now) - self.started_at


@dataclass(frozen=True)
class OutageMetrics:
    """MTTR and MTBF in seconds, availability in percent of the observed window."""

    outages: int
    completed: int
    total_downtime: float
    mttr: float | None  # mean duration of completed outages
    mtbf: float | None  # mean uptime between the end of one outage and the start of the next
    availability: float | None  # percent of the observed window Plex was up


def outage_metrics(
    outages: list[Outage], now: float, observed_since: float | None = None
) -> OutageMetrics:
    """Metrics over outages sorted or not; `observed_since` starts the availability window
    (default: the first outage's start). Availability is a percentage (100.0 when watched
    without an outage), None when there is no window yet."""
    ordered = sorted(outages, key=lambda o: o.started_at)
    completed = [o for o in ordered if o.ended_at is not None]
    downtime = sum(o.duration(now) for o in ordered)
    mttr = sum(o.duration(now) for o in completed) / len(completed) if completed else None
    gaps = [
        later.started_at - earlier.ended_at
        for earlier, later in pairwise(ordered)
        if earlier.ended_at is not None
    ]
    mtbf = sum(gaps) / len(gaps) if gaps else None
    availability = None
    if ordered or observed_since is not None:
        # Watched with no outage is 100 %, not unknown; without a watch start and without
        # outages there is no window to measure.
        start = observed_since if observed_since is not None else ordered[0].started_at
        window = now - start
        if window > 0:
            availability = max(0.0, 100.0 * (1 - downtime / window))
    return OutageMetrics(len(ordered), len(completed), downtime, mttr, mtbf, availability)
