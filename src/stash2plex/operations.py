"""One function per user-facing operation, shared by Stash tasks, the CLI and the demo.

Operations return data (dataclasses and dicts); callers decide how to show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors
from .context import Context
from .stash_client import StashClient
from .store import Store
from .sync import SceneSyncer
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


@dataclass(frozen=True)
class FieldChange:
    field: str
    plex: str
    stash: str


@dataclass(frozen=True)
class ScenePreview:
    scene_id: int
    status: str  # "would change" | "unchanged" | "not in Plex" | "ambiguous" | "no file" | ...
    rating_key: int | None = None
    changes: tuple[FieldChange, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "status": self.status,
            "rating_key": self.rating_key,
            "changes": [c.__dict__ for c in self.changes],
            "note": self.note,
        }


def preview(
    context: Context, *, scene_id: int | None = None, count: int = 10
) -> list[ScenePreview]:
    """What a sync would change in Plex, field by field. Reads Stash and Plex; writes nothing.

    Plex's current values come from each item's detail (one read per scene), so the preview
    shows what is really there, including edits made in Plex.
    """
    syncer = SceneSyncer(context.store, context.stash, context.plex, context.config)
    if scene_id is not None:
        scene = context.stash.find_scene(scene_id)
        scenes = [scene] if scene else []
        if not scenes:
            return [ScenePreview(scene_id, "not in Stash", note="no such scene in Stash")]
    else:
        _, scenes = context.stash.find_scenes(per_page=count)
    return [_preview_scene(syncer, scene) for scene in scenes]


def _preview_scene(syncer: SceneSyncer, scene: dict[str, Any]) -> ScenePreview:
    scene_id = int(scene["id"])
    files = scene.get("files") or []
    if not files:
        return ScenePreview(scene_id, "no file", note="the scene has no video file")
    try:
        match = syncer.index.match(files)
        plan = syncer.plan(scene, match)
        current = plan.current or syncer.plex.item_detail(match.rating_key)
    except errors.SyncError as exc:
        status = {errors.NOT_IN_PLEX: "not in Plex", errors.AMBIGUOUS: "ambiguous"}.get(
            exc.error_class, "error"
        )
        return ScenePreview(scene_id, status, note=exc.message)
    changes = []
    desired = plan.desired
    for key in plan.changes:
        if key in desired.fields:
            changes.append(FieldChange(key, current.fields.get(key, ""), desired.fields[key]))
        elif key == "genre":
            changes.append(_list_change(key, current.tags.get(key, []), desired.genres or ()))
        elif key == "actor":
            names = [a.name for a in desired.actors or ()]
            changes.append(_list_change(key, current.tags.get(key, []), names))
        elif key == "collection":
            new = plan.owned.get("collection_all", [])
            changes.append(_list_change(key, current.tags.get(key, []), new))
        elif key == "rating":
            changes.append(FieldChange(key, str(current.user_rating or ""), str(desired.rating)))
    for kind in plan.images:
        changes.append(
            FieldChange(kind, "(current image)", "the Stash cover, if its content changed")
        )
    note = f"left alone, edited in Plex: {', '.join(plan.preserved)}" if plan.preserved else ""
    status = "would change" if changes else "unchanged"
    return ScenePreview(scene_id, status, match.rating_key, tuple(changes), note)


def _list_change(key: str, before: list[str], after: Any) -> FieldChange:
    return FieldChange(key, ", ".join(before), ", ".join(after))


def _due_count(store: Store) -> int:
    counts = store.job_counts()
    return counts.get("pending", 0) + counts.get("leased", 0) + counts.get("waiting:retry", 0)
