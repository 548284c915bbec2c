"""What a timed-out write could do if Plex applied it late (sync.settle): which values can hide
a newer one, and which the item shows. Pure; the worker's check runs end to end in
test_concurrency.py."""

from __future__ import annotations

from stash2plex.clients.plex import PlexItem
from stash2plex.records import Link
from stash2plex.sync.metadata import fingerprint
from stash2plex.sync.settle import harmful, item_shown, landed, pushed_shown


def link(**owned) -> Link:
    prints = {"title": fingerprint("Second"), "poster": "sha-new"}
    return Link(1, 10, 1, "/v/a.mp4", prints, 0.0, owned)


def item(title: str, genres: list[str]) -> PlexItem:
    return PlexItem(10, 1, {"title": title}, {"genre": genres}, frozenset(), None)


def test_only_values_other_than_the_last_push_can_do_harm():
    written = {
        "title": [fingerprint("Second"), fingerprint("First")],
        "poster": ["sha-new"],
        "genre": [fingerprint(sorted(["Rain", "Fog"]))],
    }

    harm = harmful(written, link(genre=["Fog", "Rain"]))

    assert harm == {"title": [fingerprint("First")]}


def test_a_late_value_counts_where_the_item_shows_it_whatever_the_tag_order():
    harm = {
        "title": [fingerprint("First")],
        "genre": [fingerprint(sorted(["Rain", "Fog"]))],
        "art": ["sha-old"],
    }

    assert landed(harm, item("Second", ["Rain", "Fog"])) == ["genre", "art"]
    assert landed(harm, item("First", ["Fog"])) == ["title", "art"]


def test_what_a_push_made_an_item_show_is_what_the_item_shows_then():
    pushed = pushed_shown(link(genre=["Rain", "Fog"], collection_all=["Mine", "Ours"]))
    shown = item_shown(
        PlexItem(
            10,
            1,
            {"title": "Second"},
            {"genre": ["Fog", "Rain"], "collection": ["Ours", "Mine"]},
            frozenset(),
            None,
        )
    )

    assert {key: shown[key] for key in ("title", "genre", "collection")} == {
        key: pushed[key] for key in ("title", "genre", "collection")
    }
