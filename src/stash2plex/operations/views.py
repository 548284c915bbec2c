"""The views of the Plex page and the dashboard: pure reads of the store, as JSON-able dicts.

One set of views for two hosts: the Stash page asks for them through `runPluginOperation`
(plugin/operations.py), `stash2plex serve` through its JSON API (service/app.py). A view never
touches the network and never writes, so it answers in milliseconds while a drain runs.

Standard library plus the store and the engine's pure modules only: importing this module must
not pull in plexapi or requests (the operation process has a budget of well under a second).
Times are epoch seconds from the store's clock; durations are seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stash2plex.engine.context import PLEX_SERVER_KEY
from stash2plex.engine.outage_metrics import Outage, outage_metrics
from stash2plex.engine.ramp import RecoveryRamp
from stash2plex.engine.worker_lock import worker_running
from stash2plex.numbers import whole_number
from stash2plex.store.db import Store
from stash2plex.store.holds import PARKED
from stash2plex.store.reconcile import outage_reconciled
from stash2plex.store.schema import SECTIONS_KEY

#: Availability windows the outage view reports, by label.
WINDOWS: dict[str, float] = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
LIST_LIMIT = 200


class ViewError(ValueError):
    """A view was asked for with an unknown name or bad parameters; the message says which."""


def overview(store: Store, data_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The queue by state and reason, dead letters by class, holds, ramp and the worker.

    Shape: ``{"now", "queue": {"pending", "in_progress", "waiting": {reason: n},
    "waiting_total", "done", "outstanding"}, "dead_letters": {"total", "by_class"},
    "breaker": {...}, "paused": str|None, "pause_setting": str|None, "ramp": {...},
    "worker_running", "linked_scenes", "last_sync_at", "recent_events": [...],
    "reconcile": {...}}``.
    """
    now = store.clock()
    counts = store.job_counts()
    waiting = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if ":" in k}
    pending, leased, done = counts.get("pending", 0), counts.get("leased", 0), counts.get("done", 0)
    by_class = dict(sorted(store.dead_letter_counts().items()))
    holds = store.holds()
    pause = holds.pause
    return {
        "now": now,
        "queue": {
            "pending": pending,
            "in_progress": leased,
            "waiting": waiting,
            "waiting_total": sum(waiting.values()),
            "done": done,
            "outstanding": pending + leased + sum(waiting.values()),
        },
        "dead_letters": {"total": sum(by_class.values()), "by_class": by_class},
        "breaker": breaker_view(store, now),
        "paused": None if pause is None else pause.message,
        "pause_setting": None if pause is None else (pause.setting or None),
        "ramp": ramp_view(store, now),
        "worker_running": worker_running(data_dir),
        "linked_scenes": store.link_count(),
        "last_sync_at": store.last_synced_at(),
        "recent_events": [
            {"at": e["at"], "level": e["level"], "kind": e["kind"], "message": e["message"]}
            for e in store.recent_events(10)
        ],
        "reconcile": reconcile_view(store),
    }


def breaker_view(store: Store, now: float) -> dict[str, Any]:
    """The circuit breaker: state, since when it is open, when the next health probe runs."""
    state = store.holds().breaker
    open_since = None if state.is_closed else state.opened_at
    return {
        "state": state.state,
        "since": open_since,
        "open_seconds": None if open_since is None else round(now - open_since, 1),
        "failed_probes": state.probes,
        "next_probe_at": None if state.is_closed else state.next_probe_at,
    }


def ramp_view(store: Store, now: float) -> dict[str, Any]:
    """The gentle drain after a recovery: how far along, at how many jobs per second."""
    started = store.holds().ramp_started_at
    if started is None:
        return {"active": False}
    ramp = RecoveryRamp(float(started))
    if ramp.finished(now):
        return {"active": False, "started_at": float(started)}
    return {
        "active": True,
        "started_at": float(started),
        "progress": round(min(1.0, (now - float(started)) / ramp.ramp_seconds), 3),
        "rate_per_second": round(ramp.rate(now), 2),
        "full_rate_per_second": ramp.full_rate,
    }


def reconcile_view(store: Store) -> dict[str, Any]:
    """The last reconciliation run that ended, or ``{"ran": False, "message"}`` until one did.

    Shape: ``{"ran", "started_at", "finished_at", "trigger" (schedule | task | command |
    outage), "fix", "state" (done | failed | interrupted), "results": {class: scenes},
    "summary", "plex_requests"}``.
    """
    last = store.reconciliation().last_run()
    if last is None:
        return {"ran": False, "message": "no reconcile yet"}
    report = last["report"]
    return {
        "ran": True,
        "started_at": last["started_at"],
        "finished_at": last["finished_at"],
        "trigger": last["trigger"],
        "fix": last["fix"],
        "state": last["state"],
        "results": last["results"],
        "summary": report.get("summary", ""),
        "plex_requests": (report.get("plex_requests") or {}).get("total"),
    }


def outages(store: Store, data_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Availability, MTTR and MTBF over 24 h, 7 d and 30 d, and the outage timeline.

    Each window counts the outages that overlap it, clipped to it; its availability is over
    the part of the window Stash2Plex has been watching (from its first recorded event or
    outage: `observed_since`), None when nothing was watched. Shape: ``{"now",
    "watched_since", "windows": {label: {"seconds", "observed_since", "outages",
    "downtime_s", "availability_pct", "mttr_s", "mtbf_s"}}, "timeline": {"since", "until",
    "outages": [{"started_at", "ended_at", "duration_s", "jobs_affected", "ongoing",
    "reconciled"}]}}`` (`reconciled`: what the reconcile after it queued, or None).
    """
    now = store.clock()
    rows = store.outages()
    watched_since = store.watched_since()
    windows = {}
    for label, seconds in WINDOWS.items():
        start = now - seconds
        clipped = [
            Outage(max(o["started_at"], start), o["ended_at"], o["jobs_affected"])
            for o in rows
            if o["ended_at"] is None or o["ended_at"] > start
        ]
        observed = None if watched_since is None else max(start, watched_since)
        metrics = outage_metrics(clipped, now, observed_since=observed)
        availability = metrics.availability  # 100.0 when watched with no outage in it
        windows[label] = {
            "seconds": seconds,
            "observed_since": observed,
            "outages": metrics.outages,
            "downtime_s": round(metrics.total_downtime, 1),
            "availability_pct": None if availability is None else round(availability, 3),
            "mttr_s": None if metrics.mttr is None else round(metrics.mttr, 1),
            "mtbf_s": None if metrics.mtbf is None else round(metrics.mtbf, 1),
        }
    since = now - WINDOWS["30d"]
    timeline = [
        {
            "started_at": o["started_at"],
            "ended_at": o["ended_at"],
            "duration_s": round((o["ended_at"] or now) - o["started_at"], 1),
            "jobs_affected": o["jobs_affected"],
            "ongoing": o["ended_at"] is None,
            "reconciled": outage_reconciled(o),
        }
        for o in rows
        if o["ended_at"] is None or o["ended_at"] > since
    ]
    return {
        "now": now,
        "watched_since": watched_since,
        "windows": windows,
        "timeline": {"since": since, "until": now, "outages": timeline},
    }


def waiting(store: Store, data_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Scenes waiting, each with its reason, last error and what matching found.

    Shape: ``{"total", "scenes": [{"scene_id", "reason", "attempts", "due_at", "error",
    "error_class", "candidates": [{"rating_key", "path", "library"}], "paths": [...],
    "scan_requested"}]}`` (at most `limit`, default 200, oldest first).
    """
    limit = _int_param(params, "limit", LIST_LIMIT)
    jobs = store.jobs("waiting")
    scenes = []
    for job in sorted(jobs, key=lambda j: (j.enqueued_at, j.scene_id))[:limit]:
        detail = job.detail or {}
        scenes.append(
            {
                "scene_id": job.scene_id,
                "reason": job.reason,
                "attempts": job.attempts,
                # A parked job (due_at >= store.holds.PARKED) has no time: it waits for a change.
                "due_at": job.due_at,
                "parked": job.due_at >= PARKED,
                "enqueued_at": job.enqueued_at,
                "error": job.last_error,
                "error_class": job.last_error_class,
                "candidates": list(detail.get("candidates") or []),
                "paths": list(detail.get("paths") or []),
                "scan_requested": bool(detail.get("scan_requested")),
            }
        )
    return {"total": len(jobs), "scenes": scenes}


def dead_letters(store: Store, data_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Dead letters, newest first: ``{"total", "by_class", "letters": [{"id", "scene_id",
    "error_class", "message", "attempts", "failed_at"}]}`` (at most `limit`, default 200)."""
    limit = _int_param(params, "limit", LIST_LIMIT)
    letters = store.dead_letters()
    newest = sorted(letters, key=lambda d: (d["failed_at"], d["id"]), reverse=True)[:limit]
    return {
        "total": len(letters),
        "by_class": dict(sorted(store.dead_letter_counts().items())),
        "letters": [
            {
                "id": d["id"],
                "scene_id": d["scene_id"],
                "error_class": d["error_class"],
                "message": d["message"],
                "attempts": d["attempts"],
                "failed_at": d["failed_at"],
            }
            for d in newest
        ],
    }


def scene(store: Store, data_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """One scene's Plex state for its badge.

    `state` is one of: ``in_sync`` (linked, nothing outstanding), ``queued`` (pending),
    ``syncing`` (leased), ``waiting`` (with `reason`), ``failed`` (a dead letter and no job),
    ``not_linked`` (never synced). Shape: ``{"scene_id", "state", "reason", "error",
    "rating_key", "section_id", "synced_at", "plex_url", "dead_letter"}``; `plex_url` opens the
    item in Plex Web when the server is known.
    """
    scene_id = _int_param(params, "scene_id", None)
    if scene_id is None:
        raise ViewError("the scene view needs scene_id")
    job = store.job(scene_id)
    link = store.link(scene_id)
    letters = [d for d in store.dead_letters() if d["scene_id"] == scene_id]
    letter = max(letters, key=lambda d: d["failed_at"]) if letters else None
    reason = error = None
    if job is not None and job.state == "waiting":
        state, reason, error = "waiting", job.reason, job.last_error
    elif job is not None and job.state == "pending":
        state = "queued"
    elif job is not None and job.state == "leased":
        state = "syncing"
    elif letter is not None and (link is None or letter["failed_at"] >= link.synced_at):
        state, error = "failed", letter["message"]
    elif link is not None:
        state = "in_sync"
    else:
        state = "not_linked"
    return {
        "scene_id": scene_id,
        "state": state,
        "reason": reason,
        "error": error,
        "rating_key": None if link is None else link.rating_key,
        "section_id": None if link is None else link.section_id,
        "synced_at": None if link is None else link.synced_at,
        "plex_url": None if link is None else plex_web_url(store, link.rating_key),
        "dead_letter": None
        if letter is None
        else {k: letter[k] for k in ("id", "error_class", "message", "failed_at")},
    }


# Plex Web as plex.tv serves it: it opens a claimed server's items from any browser signed in
# to the server's account, wherever the server is (Plex Web's own deep-link form).
APP_PLEX_WEB = "https://app.plex.tv/desktop/"


def plex_web_url(store: Store, rating_key: int) -> str | None:
    """Plex Web's page for an item: ``<web>#!/server/<machine id>/details?key=/library/
    metadata/<ratingKey>``, where <web> is app.plex.tv for a claimed server (`plex_url` is
    often an address only Stash's machine reaches: 127.0.0.1, a Docker service name) and
    ``<plex_url>/web/index.html`` for one that is not. Needs the server's machine
    identifier, recorded once the worker or a health check connected; without it, Plex Web's
    start page at `plex_url`."""
    server = store.get_value(PLEX_SERVER_KEY) or {}
    url = server.get("url") or (store.get_value(SECTIONS_KEY) or {}).get("url")
    if not url:
        return None
    parts = urlsplit(str(url).rstrip("/"))
    # Scheme and host as a browser writes them (a `HTTP://NAS:32400` typed on a phone).
    base = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}/web/index.html"
    machine = server.get("machine_identifier")
    if not machine:
        return base
    web = APP_PLEX_WEB if server.get("claimed") else base
    return f"{web}#!/server/{machine}/details?key=%2Flibrary%2Fmetadata%2F{int(rating_key)}"


def _int_param(params: dict[str, Any], key: str, default: Any) -> Any:
    value = params.get(key)
    if value in (None, ""):
        return default
    try:
        return whole_number(value)
    except ValueError:
        raise ViewError(f"{key}={str(value)[:40]!r} must be a whole number, 0 or more") from None


View = Callable[[Store, Path, dict[str, Any]], dict[str, Any]]

#: Every view by the name the Stash page and the dashboard ask for.
VIEWS: dict[str, View] = {
    "overview": overview,
    "outages": outages,
    "waiting": waiting,
    "dead_letters": dead_letters,
    "scene": scene,
}


def answer(name: str, store: Store, data_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The view `name` with `params`; ViewError for an unknown name or a bad parameter."""
    view = VIEWS.get(name)
    if view is None:
        raise ViewError(f"unknown view {name!r}; expected one of: {', '.join(sorted(VIEWS))}")
    return view(store, data_dir, params)
