"""A library "as a sync left it", in seconds instead of minutes: for the 100,000-scene
reconcile benchmark.

`first_push` is what the first sync of a scene writes to its Plex item and records in its
link, for an item that shows no collections or tags of its own (the plain generated library,
no metadata agent) and with covers off (`skip_poster`, `skip_art`). It is computed with the
sync's own pure functions; tests/test_reconcile_bench_seed.py proves the state it produces
equal to what a real sync of the same library leaves, item by item and link by link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stash2plex.settings.config import Config
from stash2plex.sync.metadata import desired_item, edit_params, has_own_metadata
from stash2plex.sync.tag_tree import TagTree


@dataclass(frozen=True)
class FirstPush:
    """The edit (`params`, as plexapi sends it) and the link's records of it."""

    params: dict[str, Any]
    fingerprints: dict[str, str]
    owned: dict[str, Any]

    def pairs(self, rating_key: int) -> list[tuple[str, str]]:
        """The decoded query pairs of the edit's PUT for one item (what the emulator takes)."""
        pairs = [("type", "1"), ("id", str(rating_key))]
        return pairs + [(key, str(value)) for key, value in self.params.items()]


def first_push(
    scene: dict[str, Any], config: Config, tree: TagTree | None = None
) -> FirstPush | None:
    """The first push of `scene` (a GraphQL scene dict), or None when the sync leaves its item
    alone (no metadata of its own). Raises ValueError when covers are synced (not modelled)."""
    if not (config.skip_poster and config.skip_art) or config.label_tags or config.sync_rating:
        raise ValueError(
            "first_push models a sync with skip_poster and skip_art on, without labels or ratings"
        )
    if not config.sync_empty_scenes and not has_own_metadata(scene):
        return None
    desired = desired_item(scene, config, tree)
    prints = desired.fingerprints()
    keys = [key for key in sorted(prints) if key != "rating"]
    collections = list(desired.collections) if desired.collections is not None else []
    params = edit_params(desired, keys, present={}, collections=collections, labels=[])
    owned: dict[str, Any] = {}
    if desired.genres is not None:
        owned["genre"] = list(desired.genres)
    if desired.actors is not None:
        owned["actor"] = [actor.name for actor in desired.actors]
    if desired.collections is not None:
        owned["collection"] = list(desired.collections)
        owned["collection_all"] = collections
    return FirstPush(params, prints, owned)


def push_to_plex(plex: Any, stash: Any, config: Config, page_size: int = 1000) -> int:
    """Write every scene's first push into the Plex emulator's library directly (no HTTP):
    `plex` a PlexEmulator, `stash` the StashEmulator serving the scenes, in this process.
    Returns how many items were written."""
    from stash2plex.clients import stash_documents as docs

    library, written, page = stash.library, 0, 1
    while True:
        payload = {
            "query": docs.FIND_SCENES,
            "variables": {"filter": {"page": page, "per_page": page_size, "sort": "id"}},
        }
        status, body = stash._execute(payload, stash.url)
        scenes = body["data"]["findScenes"]["scenes"] if status == 200 else []
        for scene in scenes:
            push = first_push(scene, config)
            if push is None:
                continue
            keys: list[int] = []
            for file in scene["files"]:
                key = plex.find_by_file(library.plex_path(file["path"]))
                if key is not None and key not in keys:
                    keys.append(key)
            for key in keys:
                section = plex.item(key).section_id
                plex.library.apply_edit(section, push.pairs(key))
                written += 1
        if len(scenes) < page_size:
            return written
        page += 1


def record_links(store: Any, stash: Any, plex: Any, config: Config, page_size: int = 500) -> int:
    """Record the links a sync of every scene leaves (`store` a Store, `stash` and `plex` our
    clients): the index built by a listing, each scene matched as the sync matches it.
    Returns how many scenes were linked."""
    from stash2plex.sync.matching import match_scene
    from stash2plex.sync.syncer import PlexIndex

    PlexIndex(store, plex, config).refresh(force=True, full=True)
    linked, last = 0, 0
    while True:
        _, scenes = stash.find_scenes(
            page=1,
            per_page=page_size,
            scene_filter={"id": {"value": last, "modifier": "GREATER_THAN"}},
            sort="id",
        )
        for scene in scenes:
            files = scene.get("files") or []
            result = match_scene(
                files, config.path_map, store.index_by_path, store.index_by_basename
            )
            if not files or not result.matches:
                continue
            push = first_push(scene, config)
            prints = push.fingerprints if push else {}
            owned = push.owned if push else {}
            for position, match in enumerate(result.matches):
                store.save_link(
                    int(scene["id"]),
                    match.rating_key,
                    match.section_id,
                    match.plex_path,
                    prints,
                    owned,
                    position,
                )
            linked += 1
        if len(scenes) < page_size:
            return linked
        last = int(scenes[-1]["id"])
