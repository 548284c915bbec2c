"""Record what linked scenes show, for links made before the store kept it (version 5).

A deletion of a performer, studio, tag or group in Stash is expanded into scene jobs from our
own records (`link_entities`: Stash can no longer list the scenes that showed it). Links made
by an older version have no such records, so the worker reads those scenes from Stash in the
background, a batch at a time, and records them; nothing is written to Plex here.

A scene read after a deletion no longer shows the deleted entity, so its records cannot find
it any more. What the scene would push now is therefore compared with the fingerprints of what
was pushed: a scene that differs (a performer deleted meanwhile, a setting changed) is queued
for an ordinary sync, which writes what changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stash2plex.clients.stash import StashClient
from stash2plex.errors import SyncError
from stash2plex.settings.config import Config
from stash2plex.store.db import Store
from stash2plex.sync.metadata import desired_item, scene_entities
from stash2plex.sync.tag_tree import TagTree

BATCH = 100  # scenes read from Stash per request
SOURCE = "Stash changed since the last push (found while recording what scenes show)"

log = logging.getLogger(__name__)


def backfill_batch(store: Store, stash: StashClient, config: Config) -> tuple[int, int]:
    """Read one batch of linked scenes without records from Stash and record them.

    Returns (scenes done, scenes queued). Raises the client's SyncErrors (nothing is recorded
    then; the batch is tried again later).
    """
    scene_ids = store.entity_backfill(BATCH)
    if not scene_ids:
        return 0, 0
    scenes = stash.find_scenes_by_ids(scene_ids)
    tree = _tag_tree(stash, config, [s for s in scenes.values() if s])
    entities: dict[int, dict[str, set[int]]] = {}
    requeue: list[int] = []
    for scene_id in scene_ids:
        scene = scenes.get(scene_id)
        if scene is None:  # gone from Stash: its sync forgets the links
            requeue.append(scene_id)
            continue
        entities[scene_id] = scene_entities(scene, tree)
        if _differs(store, scene, config, tree):
            requeue.append(scene_id)
    store.record_entity_backfill(entities, requeue, SOURCE, done=scene_ids)
    return len(scene_ids), len(requeue)


def _differs(store: Store, scene: dict[str, Any], config: Config, tree: TagTree | None) -> bool:
    """Whether any field pushed to one of the scene's items would be pushed differently now."""
    if not scene.get("files"):
        return False
    wanted = desired_item(scene, config, tree).fingerprints()
    for link in store.links(int(scene["id"])):
        if any(
            link.fingerprints.get(key) != value
            for key, value in wanted.items()
            if key in link.fingerprints
        ):
            return True
    return False


def _tag_tree(stash: StashClient, config: Config, scenes: list[dict[str, Any]]) -> TagTree | None:
    """Stash's tag hierarchy when tag filters or label tags need it (read again if a scene
    shows a tag created since it was read)."""
    if not (config.tag_include or config.tag_exclude or config.label_tags):
        return None
    tags = stash.tag_hierarchy()
    shown = {
        int(t["id"]) for s in scenes for t in s.get("tags") or [] if str(t.get("id", "")).isdigit()
    }
    if shown - set(tags):
        stash.forget_tag_hierarchy()
        tags = stash.tag_hierarchy()
    return TagTree(tags)


class EntityBackfill:
    """The worker's schedule for `backfill_batch`: one batch per round while scenes are left,
    a pause of `RETRY_SECONDS` after a failure (Stash down, a refused key: the jobs' own holds
    say so), during which a worker with nothing else to do may exit. Time is injected."""

    RETRY_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.retry_at = float("-inf")
        self.recorded = 0
        self.queued = 0

    def tick(self, store: Store, stash: StashClient, config: Config) -> int:
        """Run one batch if one is due; returns how many scenes it recorded."""
        if self.failing():
            return 0
        try:
            done, queued = backfill_batch(store, stash, config)
        except SyncError as exc:
            log.warning("could not read linked scenes from Stash to record what they show: %s", exc)
            self.retry_at = self.clock() + self.RETRY_SECONDS
            return 0
        self.recorded += done
        self.queued += queued
        return done

    def failing(self) -> bool:
        """Whether the last batch failed and its pause is not over."""
        return self.clock() < self.retry_at

    def next_due_at(self, store: Store) -> float | None:
        """When the next batch is due (None: nothing left)."""
        if not store.entity_backfill(1):
            return None
        return max(self.clock(), self.retry_at)
