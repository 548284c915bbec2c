"""Backoff, breaker transitions, probe timing, the recovery ramp and outage metrics, with
injected clocks and random sources: exact values, no sleeping."""

import random

import pytest

from stash2plex.engine.backoff import RetryPolicy, retry_delay
from stash2plex.engine.outage_metrics import Outage, outage_metrics
from stash2plex.engine.ramp import RecoveryRamp


class MaxRandom(random.Random):
    def uniform(self, a, b):
        return b


def test_backoff_ceiling_doubles_then_caps_and_jitter_stays_below_it():
    policy = RetryPolicy(base_seconds=10, cap_seconds=100, max_attempts=9)
    assert [retry_delay(n, policy, MaxRandom()) for n in range(1, 6)] == [10, 20, 40, 80, 100]
    rng = random.Random(4)
    assert all(0 <= retry_delay(3, policy, rng) <= 40 for _ in range(200))


def test_backoff_policy_is_validated():
    with pytest.raises(ValueError):
        RetryPolicy(base_seconds=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_ramp_starts_slow_reaches_full_rate_and_backs_off_on_errors():
    ramp = RecoveryRamp(started_at=0.0, ramp_seconds=100.0, start_rate=2.0, full_rate=20.0)
    assert ramp.rate(0.0) == 2.0
    assert ramp.rate(50.0) == 11.0
    assert ramp.rate(100.0) == 20.0
    assert ramp.wait_time(0.0) == 0.0
    ramp.take(0.0)
    assert ramp.wait_time(0.0) == pytest.approx(0.5)
    assert ramp.wait_time(0.5) == pytest.approx(0.0, abs=1e-9)
    for second in range(5):
        ramp.record(10.0 + second, ok=False)
    assert ramp.penalty == 0.5
    assert ramp.rate(100.0) == 10.0
    assert not ramp.finished(200.0)
    for second in range(5):
        ramp.record(300.0 + second, ok=True)
    assert ramp.penalty == 1.0
    assert ramp.finished(300.0)


def test_outage_metrics_exact_values():
    outages = [Outage(100.0, 160.0), Outage(400.0, 520.0), Outage(1000.0, None)]
    metrics = outage_metrics(outages, now=1100.0, observed_since=0.0)
    assert metrics.outages == 3 and metrics.completed == 2
    assert metrics.total_downtime == 60 + 120 + 100
    assert metrics.mttr == 90.0
    assert metrics.mtbf == ((400 - 160) + (1000 - 520)) / 2
    assert metrics.availability == pytest.approx(100 * (1 - 280 / 1100))


def test_no_outages_means_no_metrics():
    metrics = outage_metrics([], now=10.0)
    assert (metrics.mttr, metrics.mtbf, metrics.availability) == (None, None, None)
