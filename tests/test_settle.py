"""What a timed-out write could do if Plex applied it late (sync.settle): which values can hide
a newer one, and which the item shows. Pure; the worker's check runs end to end in
test_concurrency.py."""

from __future__ import annotations

from stash2plex.clients.plex import PlexItem
from stash2plex.records import Link
from stash2plex.sync.metadata import fingerprint
from stash2plex.sync.settle import (
    harmful,
    item_shown,
    landed,
    landed_words,
    owned_after,
    pushed_shown,
    unchecked_words,
)

PUSHED_AT = 1000.0  # when our last push wrote the link below


def link(**owned) -> Link:
    prints = {"title": fingerprint("Second"), "poster": "sha-new"}
    return Link(1, 10, 1, "/v/a.mp4", prints, PUSHED_AT, owned)


def item(title: str, genres: list[str]) -> PlexItem:
    return PlexItem(10, 1, {"title": title}, {"genre": genres}, frozenset(), None)


def test_only_values_other_than_the_last_push_and_older_than_it_can_do_harm():
    before, after = PUSHED_AT - 5, PUSHED_AT + 5
    written = {
        "title": {fingerprint("Second"): before, fingerprint("First"): before},
        "poster": {"sha-new": before},
        "genre": {fingerprint(sorted(["Rain", "Fog"])): before},
        # Timed out after our last push: it carried newer values than that push.
        "summary": {fingerprint("Newest"): after},
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


def test_a_late_list_counts_as_ours_so_the_next_push_replaces_or_removes_all_of_it():
    pushed = link(genre=["Rain"], collection=["Studio B"], collection_all=["Mine", "Studio B"])
    late = PlexItem(
        10,
        1,
        {"title": "Second"},
        {"genre": ["Fog", "Rain"], "collection": ["Mine", "Studio A"]},
        frozenset(),
        None,
    )

    owned = owned_after(
        pushed, ["genre", "collection", "title"], late, {"collection": ["Studio A"]}
    )

    assert owned == {
        "genre": ["Fog", "Rain"],  # what Plex shows: an empty list then removes all of it
        "collection": ["Studio B", "Studio A"],  # ours; "Mine" stays the user's
        "collection_all": ["Mine", "Studio A"],
    }


def test_the_words_say_what_was_read_back_and_what_only_may_have_landed():
    assert landed_words(3, ("title", "poster")) == (
        "scene 3: Plex applied an older write of title after a newer one; an upload of an "
        "older poster may have landed after a newer one (it had timed out); the scene is "
        "synced again"
    )
    kept = unchecked_words(3, "Plex is unavailable (503)", preserve=True)
    assert "stash2plex sync 3 --force" in kept and "Reconcile" not in kept
    assert "Reconcile finds and repairs" in unchecked_words(3, "503", preserve=False)
