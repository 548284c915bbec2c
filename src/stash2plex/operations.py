"""One function per user-facing operation, shared by Stash tasks, the CLI and the demo.

Operations return data (dataclasses and dicts); callers decide how to show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stash_client import StashClient
from .store import Store
from .worker import BLOCKED_KEY, DrainReport, Worker
from .worker_lock import worker_running

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class QueueStatus:
    counts: dict[str, int]
    dead_letters: int
    worker_running: bool
    linked_scenes: int
    recent_events: list[dict[str, Any]]

    @property
    def outstanding(self) -> int:
        return sum(n for state, n in self.counts.items() if state != "done")

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "outstanding": self.outstanding,
            "dead_letters": self.dead_letters,
            "worker_running": self.worker_running,
            "linked_scenes": self.linked_scenes,
            "recent_events": self.recent_events,
        }


def queue_status(store: Store, data_dir: Path) -> QueueStatus:
    return QueueStatus(
        counts=store.job_counts(),
        dead_letters=len(store.dead_letters()),
        worker_running=worker_running(data_dir),
        linked_scenes=store.link_count(),
        recent_events=store.recent_events(5),
    )


def queue_all_scenes(store: Store, stash: StashClient) -> int:
    """Mark every Stash scene dirty. Unchanged scenes then cost no Plex write."""
    scene_ids = stash.scene_ids()
    store.enqueue(scene_ids, source="sync_all")
    return len(scene_ids)


def process_queue(
    data_dir: Path,
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    worker_factory: Callable[[Path], Worker] | None = None,
) -> DrainReport | None:
    """Drain in the foreground until nothing is due.

    Only the lock holder drains. If a detached worker holds the lock, follow its progress from
    the store until the queue is drained or only waiting jobs remain; returns None then.
    """
    make_worker = worker_factory or (lambda d: Worker(d, clock=clock, sleep=sleep))
    with Store.open(data_dir, clock=clock) as store:
        total = max(1, _due_count(store))
    if not worker_running(data_dir):
        worker = make_worker(data_dir)
        try:
            return worker.run(
                until_idle=True,
                progress=(
                    (lambda report: progress(report.processed, max(total, report.processed)))
                    if progress
                    else None
                ),
            )
        except RuntimeError:
            pass  # a worker started between our check and the lock: follow it instead
    with Store.open(data_dir, clock=clock) as store:
        while worker_running(data_dir):
            due = _due_count(store)
            if progress:
                progress(max(0, total - due), total)
            # Stop following when nothing is left, or when the worker says it is blocked
            # (settings missing, Plex down): waiting on it would never end.
            if due == 0 or store.get_value(BLOCKED_KEY):
                break
            sleep(0.5)
    return None


def _due_count(store: Store) -> int:
    counts = store.job_counts()
    return counts.get("pending", 0) + counts.get("leased", 0) + counts.get("waiting:retry", 0)
