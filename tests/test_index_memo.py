"""The library index's per-scene reads: the configured libraries are asked of the store at
most every few seconds by a syncer, and a probe's new answer still reaches it."""

from __future__ import annotations

from stash2plex.settings.config import build_config
from stash2plex.store.db import Store
from stash2plex.sync.syncer import SECTIONS_MEMO_SECONDS, PlexIndex


def test_sections_are_reused_for_a_few_seconds_then_read_again(tmp_path):
    now = [1000.0]
    config = build_config({"plex_url": "http://plex.test:32400", "plex_token": "t"})

    def stored(title: str) -> dict:
        section = {"id": 1, "title": title, "locations": ["/media"]}
        return {"wanted": [], "url": config.plex_url, "sections": [section]}

    with Store.open(tmp_path, clock=lambda: now[0]) as store:
        store.put_value("plex_sections", stored("Movies"))
        index = PlexIndex(store, plex=None, config=config, clock=lambda: now[0])  # type: ignore[arg-type]
        assert index.sections()[0]["title"] == "Movies"
        store.put_value("plex_sections", stored("Renamed"))  # another syncer's probe
        now[0] += SECTIONS_MEMO_SECONDS / 2
        assert index.sections()[0]["title"] == "Movies"
        now[0] += SECTIONS_MEMO_SECONDS
        assert index.sections()[0]["title"] == "Renamed"
