"""Prometheus metrics of `stash2plex serve`, with prometheus-client.

Two kinds, in one registry per service:
- read from the store at each scrape (so they hold whatever process drains the queue): jobs by
  state and reason, dead letters by class, the breaker, downtime and availability per window,
  linked scenes, the last reconciliation;
- counted in this process as they happen: syncs by outcome (fed from the worker's drain
  report) and the latency of every Plex request by method and route (a `requests` response
  hook on the Plex client's session; `Response.elapsed` is the time to the response headers).

Label values are bounded: routes keep the path with every number replaced by `{id}` and no
query string, so a ratingKey never becomes a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stash2plex.clients.http import Exchange
from stash2plex.operations import views
from stash2plex.store.db import Store

#: What a drained job ended as (the fields of engine.worker.DrainReport).
OUTCOMES = ("synced", "unchanged", "skipped", "deferred", "dead_lettered")
#: Plex answers in milliseconds to seconds; the top buckets catch timeouts (default 30 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_NUMBER = re.compile(r"/\d+(?=/|$)")


def plex_route(path: str) -> str:
    """A Plex request path as a bounded label: no query, numbers as `{id}`.

    `/library/metadata/123/posters?url=...` -> `/library/metadata/{id}/posters`.
    """
    return _NUMBER.sub("/{id}", path.split("?", 1)[0]) or "/"


class ServiceMetrics:
    """The registry `/metrics` exposes, and the hooks that feed its counters."""

    def __init__(self, data_dir: Path) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.syncs = Counter(
            "stash2plex_syncs",
            "Jobs the service's worker finished, by outcome (deferred: waiting again).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.syncs.labels(outcome)  # every series exists from the start, at 0
        self.plex_latency = Histogram(
            "stash2plex_plex_request_duration_seconds",
            "Time from sending a Plex request to its response headers, by method and route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(data_dir))
        self._last: dict[str, int] = {}

    def observe_drain(self, report: Any) -> None:
        """Feed the worker's cumulative DrainReport (its progress callback): count the deltas."""
        for outcome in OUTCOMES:
            value = int(getattr(report, outcome, 0))
            delta = value - self._last.get(outcome, 0)
            if delta > 0:
                self.syncs.labels(outcome).inc(delta)
            self._last[outcome] = value

    def reset_drain(self) -> None:
        """A new drain started (its report counts from zero again)."""
        self._last = {}

    def observe_plex_response(self, exchange: Exchange) -> None:
        """An observer of the Plex transport: record each request's latency by method and
        route."""
        self.plex_latency.labels(exchange.method, plex_route(exchange.path)).observe(
            exchange.seconds
        )


class StoreCollector(Collector):
    """Metrics read from the store at scrape time (a few indexed queries)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def collect(self) -> Iterator[Metric]:
        with Store.open(self.data_dir) as store:
            overview = views.overview(store, self.data_dir, {})
            outages = views.outages(store, self.data_dir, {})
        queue = overview["queue"]
        jobs = GaugeMetricFamily(
            "stash2plex_jobs",
            "Jobs in the queue by state, and waiting jobs by reason.",
            labels=["state", "reason"],
        )
        jobs.add_metric(["pending", ""], queue["pending"])
        jobs.add_metric(["leased", ""], queue["in_progress"])
        jobs.add_metric(["done", ""], queue["done"])
        for reason, count in queue["waiting"].items():
            jobs.add_metric(["waiting", reason], count)
        yield jobs

        letters = GaugeMetricFamily(
            "stash2plex_dead_letters", "Dead letters by error class.", labels=["error_class"]
        )
        for error_class, count in overview["dead_letters"]["by_class"].items():
            letters.add_metric([error_class], count)
        yield letters

        breaker = GaugeMetricFamily(
            "stash2plex_breaker_state",
            "The circuit breaker: 1 for its current state.",
            labels=["state"],
        )
        for state in ("closed", "open", "half_open"):
            breaker.add_metric([state], 1.0 if overview["breaker"]["state"] == state else 0.0)
        yield breaker

        paused = GaugeMetricFamily("stash2plex_auth_paused", "1 while Plex rejects the token.")
        paused.add_metric([], 1.0 if overview["paused"] else 0.0)
        yield paused

        downtime = GaugeMetricFamily(
            "stash2plex_outage_seconds",
            "Seconds Plex was down within the window (outages overlapping it, clipped).",
            labels=["window"],
        )
        availability = GaugeMetricFamily(
            "stash2plex_availability_ratio",
            "Share of the watched part of the window Plex was up (0..1).",
            labels=["window"],
        )
        for label, window in outages["windows"].items():
            downtime.add_metric([label], window["downtime_s"])
            if window["availability_pct"] is not None:
                availability.add_metric([label], window["availability_pct"] / 100.0)
        yield downtime
        yield availability

        ongoing = GaugeMetricFamily("stash2plex_outage_ongoing", "1 while an outage is open.")
        ongoing.add_metric(
            [], 1.0 if any(o["ongoing"] for o in outages["timeline"]["outages"]) else 0.0
        )
        yield ongoing

        linked = GaugeMetricFamily("stash2plex_linked_scenes", "Scenes linked to a Plex item.")
        linked.add_metric([], overview["linked_scenes"])
        yield linked

        worker = GaugeMetricFamily("stash2plex_worker_running", "1 while a worker holds the lock.")
        worker.add_metric([], 1.0 if overview["worker_running"] else 0.0)
        yield worker

        reconcile = GaugeMetricFamily(
            "stash2plex_reconcile_items",
            "Items of the last reconciliation run by result (absent until one ran).",
            labels=["result"],
        )
        last = overview["reconcile"]
        if last.get("ran"):
            for result, count in (last.get("results") or {}).items():
                if isinstance(count, int | float):
                    reconcile.add_metric([str(result)], count)
        yield reconcile
