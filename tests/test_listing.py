"""The index's full listing of a section, read page by page while the sync renames items."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import requests

from stash2plex.clients.plex import LISTING_PAGE_SIZE, PlexClient
from stash2plex.engine.context import build_context
from stash2plex.errors import TransientError
from stash2plex.store.db import Store
from stash2plex.sync.syncer import PlexIndex

from .sandbox import PLEX_TOKEN, sandbox


def test_a_full_listing_lists_every_item_when_titles_change_between_its_pages(tmp_path):
    """In Plex's default title order an item renamed between two pages moves to a page already
    read and is never listed: the index then dropped it (the next sync of its scene read it
    again). The listing keeps its order while items are edited."""
    with sandbox(tmp_path, scenes=LISTING_PAGE_SIZE + 60, seed=3) as box:
        client = PlexClient(box.plex.url, PLEX_TOKEN)
        every = {i.rating_key for page in client.list_section(box.section_id) for i in page}
        assert len(every) > LISTING_PAGE_SIZE  # more than one page

        pages = client.list_section(box.section_id)
        listed = {item.rating_key for item in next(pages)}
        for rating_key in sorted(every - listed)[:40]:  # as a sync's edits rename them
            client.edit(box.section_id, rating_key, {"title.value": "!", "title.locked": 1})
        for page in pages:
            listed |= {item.rating_key for item in page}

        assert listed == every


def test_an_item_a_listing_misses_keeps_its_link_and_a_deleted_one_syncs_again(tmp_path):
    """A full listing that does not show an item Plex still has (an item deleted while the
    pages were read shifts another across a page boundary) must not drop its scene's link:
    the scene would sync again as new, and with preserve_plex_edits on overwrite what was
    edited in Plex. The item is read before anything is dropped. An item really deleted in
    Plex frees its scene to sync again at once; a listing cut short drops nothing."""
    with sandbox(tmp_path, scenes=20, seed=3) as box:
        box.drain()
        missed, deleted = [s for s in box.library.scenes.values() if s.files and s.in_plex][:2]
        missed_key, deleted_key = box.rating_key(missed), box.rating_key(deleted)
        box.plex.delete_item(deleted_key)
        listing = f"/library/sections/{box.section_id}/all?type=1&sort=addedAt"
        root = ET.fromstring(
            requests.get(box.plex.url + listing, headers={"X-Plex-Token": PLEX_TOKEN}).text
        )
        for video in [v for v in root if v.get("ratingKey") == str(missed_key)]:
            root.remove(video)
        root.set("size", str(len(root)))
        root.set("totalSize", str(len(root)))
        route = r"^GET /library/sections/\{id\}/all$"

        def relist() -> None:
            with Store.open(box.data_dir) as store:
                context = build_context(store)
                PlexIndex(store, context.plex, context.config).refresh(force=True, full=True)

        box.plex.faults.fail(200, count=1, route=route, body=ET.tostring(root, "unicode"))
        relist()

        with Store.open(box.data_dir) as store:
            assert [link.rating_key for link in store.links(missed.id)] == [missed_key]
            assert store.links(deleted.id) == []
            job = store.job(deleted.id)
            assert job is not None and job.state == "pending"
            assert job.source == "Plex item or library removed"
            assert store.job(missed.id).state == "done"

        # A listing cut short (a page answered with fewer items than Plex says it has).
        root.set("totalSize", str(len(root) + 5))
        box.plex.faults.fail(200, count=1, route=route, body=ET.tostring(root, "unicode"))
        with pytest.raises(TransientError, match="broke off"):
            relist()
        with Store.open(box.data_dir) as store:
            assert [link.rating_key for link in store.links(missed.id)] == [missed_key]
