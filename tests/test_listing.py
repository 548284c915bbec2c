"""The index's full listing of a section, read page by page while the sync renames items."""

from __future__ import annotations

from stash2plex.clients.plex import LISTING_PAGE_SIZE, PlexClient

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
