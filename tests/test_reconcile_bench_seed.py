"""The 100,000-scene reconcile benchmark starts from a library "as a sync left it", seeded
without running the sync (`sandbox/synced.py`): proven here equal to a real sync of the same
library, item by item in Plex and link by link in the store."""

from __future__ import annotations

from pathlib import Path

from stash2plex.clients.plex import PlexClient
from stash2plex.engine.context import build_context
from stash2plex.sandbox.synced import push_to_plex, record_links
from stash2plex.settings.config import build_config

from .sandbox import PLEX_TOKEN, sandbox

SETTINGS = {"skip_poster": True, "skip_art": True}


def snapshot(box) -> tuple[dict, dict]:
    """Every Plex item by its first file (as Plex shows it) and every link by scene."""
    items = {}
    for key in box.plex.items(box.section_id):
        item = box.plex.item(key)
        items[item.files[0]] = (
            item.title,
            item.summary,
            item.studio,
            item.originally_available_at,
            item.genres,
            [actor.name for actor in item.actors],
            item.collections,
            sorted(item.locked),
        )
    links = {}
    with box.store() as store:
        for scene_id in sorted(box.library.scenes):
            links[scene_id] = [
                (
                    box.plex.item(link.rating_key).files[0],
                    link.position,
                    link.fingerprints,
                    link.owned,
                )
                for link in store.links(scene_id)
            ]
    return items, links


def test_the_seeded_library_is_exactly_what_a_sync_leaves(tmp_path: Path) -> None:
    with sandbox(tmp_path / "synced", scenes=200, seed=61, settings=SETTINGS) as box:
        box.drain()
        synced = snapshot(box)
    with sandbox(tmp_path / "seeded", scenes=200, seed=61, settings=SETTINGS) as box:
        config = build_config({**box.stash.plugin_settings})
        assert push_to_plex(box.plex, box.stash, config) > 150
        with box.store() as store:
            stash = build_context(store).stash
            plex = PlexClient(box.plex.url, PLEX_TOKEN)
            record_links(store, stash, plex, config)
        seeded = snapshot(box)
    items, links = synced
    assert len(items) > 150 and sum(1 for found in links.values() if found) > 150
    assert sum(1 for state in items.values() if "genre" in state[-1]) > 100  # really written
    assert seeded[0] == items
    assert seeded[1] == links
