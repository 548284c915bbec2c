"""The verdict on a "Sync Recent Scenes" (`stash2plex sync --since/--recent`): judged on the
scenes this run queued, never on scenes that were already waiting before it.

- Nothing changed since the mark: success ("nothing changed in Stash since <local time>"),
  unless Plex refuses us (a wrong token, a wrong setting) or is down: one health probe says
  so, as Health Check would, since no sync ran to find out.
- Scenes were queued: the drain's verdict (`outcome.drain_verdict`: a held queue, dead
  letters, a worker that did not start), except "no scene reached Plex", which here counts
  only this run's scenes: old scenes still waiting for Plex's scan or a person are the same
  before and after, not this run's failure.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from stash2plex.engine.context import Context, plex_settings_proven
from stash2plex.engine.worker import DrainReport
from stash2plex.errors import MAX_ATTEMPTS, UNSETTLED_WRITE, SyncError
from stash2plex.operations.outcome import (
    EXIT_ATTENTION,
    EXIT_OK,
    Verdict,
    drain_verdict,
    health_verdict,
    waits_sentence,
)
from stash2plex.operations.queue import health_report
from stash2plex.records import NO_REASON, Retry
from stash2plex.store.db import Store


def plex_verdict(context: Context, data_dir: Path) -> Verdict:
    """Fine (no error), unless Plex does not serve us: the reason, exit 2 for a setting or
    the token, 1 for Plex down. One Plex request."""
    verdict = health_verdict(health_report(context, data_dir))
    # Its notes repeat the error in other words: the error alone is said.
    return Verdict(verdict.error, verdict.exit_code) if verdict.error else Verdict(None, EXIT_OK)


def settings_checked(
    make_context: Callable[[], Context],
    data_dir: Path,
    report: DrainReport | None,
    verdict: Verdict,
) -> Verdict:
    """A drain's verdict, unless no scene of it reached Plex while Plex has never answered
    the settings in use (a token or URL just changed): an unchanged scene sends Plex nothing,
    so one probe (`plex_verdict`) says whether they work. Settings Plex answered before cost
    no request; the settings are read (`make_context`) only when the drain leaves the
    question open, and a failure to read them leaves the verdict as it is."""
    if verdict.error is not None or report is None or report.synced:
        return verdict
    if not (report.unchanged or report.skipped):
        return verdict
    try:
        context = make_context()
    except SyncError:
        return verdict
    if plex_settings_proven(context):
        return verdict
    probed = plex_verdict(context, data_dir)
    return probed if probed.error is not None else verdict


def recent_verdict(
    store: Store,
    started_at: float,
    report: DrainReport | None,
    scene_ids: list[int],
    probe: Callable[[], Verdict] | None = None,
) -> Verdict:
    """The verdict on the drain of the scenes a recent sync queued (`scene_ids`). When none
    of them reached Plex, `probe` (`plex_verdict`) is asked first: matching reads only the
    stored index, so a wrong token would otherwise hide behind "not in Plex"."""
    # The drain's "nothing matched" rule counts every scene the worker touched, old waiting
    # ones included: judged below on this run's scenes instead.
    own = None if report is None else dataclasses.replace(report, deferred=0)
    verdict = drain_verdict(store, started_at, own)
    if verdict.error is not None or not scene_ids:
        return verdict
    jobs = store.reconciliation().jobs_of(scene_ids)
    if any(job.state == "done" for job in jobs.values()):
        return verdict
    waits = Counter(job.reason or "retry" for job in jobs.values() if job.state == "waiting")
    if not waits or sum(waits.values()) < len(jobs):
        return verdict  # some are still queued or in hand: the worker carries on
    if probe is not None:
        unhealthy = probe()
        if unhealthy.error is not None:
            return unhealthy
    head = (
        "The scene changed in Stash did not reach Plex: it waits"
        if len(scene_ids) == 1
        else f"None of the {len(scene_ids)} scenes changed in Stash reached Plex: they wait"
    )
    retries = [job for job in jobs.values() if (job.reason or "retry") == "retry"]
    first = min(retries, key=lambda job: (job.due_at, job.scene_id), default=None)
    retry = (
        None
        if first is None
        else Retry(
            first.scene_id,
            first.due_at,
            first.last_error or NO_REASON,
            bool((first.detail or {}).get(UNSETTLED_WRITE)),
            first.attempts,
            (first.detail or {}).get(MAX_ATTEMPTS),
        )
    )
    return Verdict(
        waits_sentence(head, dict(waits), retry, store.clock()), EXIT_ATTENTION, verdict.notes
    )
