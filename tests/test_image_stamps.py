"""Stash's image URLs change with their object's `updated_at` in whole seconds (`?t=`): a
cover set in the same second as the save before it keeps its URL. An image read within its
stamp's second is read again at the next sync, and uploaded only if its bytes changed
(sync/image_stamps.py)."""

from __future__ import annotations

import time

import pytest

from stash2plex.sync.image_stamps import STAMP_MARGIN_SECONDS, read_too_early, url_stamp

from .sandbox import cover_sha1, sandbox

URL = "http://stash:9999/scene/12/screenshot?t=1700000000"


@pytest.mark.parametrize(
    "url, stamp",
    [
        (URL, 1700000000),
        ("http://stash:9999/studio/3/image?t=1700000000&default=true", 1700000000),
        ("http://stash:9999/scene/12/screenshot", None),
        ("http://stash:9999/scene/12/screenshot?t=soon", None),
    ],
)
def test_the_stamp_is_the_urls_t(url, stamp):
    assert url_stamp(url) == stamp


def test_an_image_read_within_its_stamps_second_is_read_again_and_later_ones_are_not():
    assert read_too_early(URL, "1700000000.400")
    assert read_too_early(URL, f"{1700000000 + STAMP_MARGIN_SECONDS - 0.1:.3f}")
    assert not read_too_early(URL, f"{1700000000 + STAMP_MARGIN_SECONDS:.3f}")
    # Read well before its stamp: a date in the future, or Stash's clock far ahead. Nothing
    # is known of that second; re-reading would go on at every sync until the date passed.
    assert not read_too_early(URL, f"{1700000000 - STAMP_MARGIN_SECONDS - 0.1:.3f}")
    assert read_too_early(URL, f"{1700000000 - STAMP_MARGIN_SECONDS + 0.1:.3f}")  # skew
    assert not read_too_early(URL, None)  # a link recorded before reads were timed
    assert not read_too_early("http://stash:9999/scene/12/screenshot", "1")


def test_a_cover_set_in_the_same_second_as_the_save_before_it_reaches_plex(tmp_path):
    # Stash's clock stands still within one second (a moment ahead of the worker's): the
    # title saved and synced at once (its hook), then a new cover saved in the same second.
    stash_now = [time.time()]
    with sandbox(tmp_path, scenes=10, seed=3, stash_clock=lambda: stash_now[0]) as box:
        box.drain()
        scene = box.find(lambda s: s.cover_version is not None)
        stash_now[0] = int(time.time()) + 1.2
        box.stash.update_scene(scene.id, title="Renamed")
        box.drain(scene.id)
        saved_at = scene.updated_at  # the screenshot URL's `t`

        scene.cover_version += 1
        box.stash.update_scene(scene.id, details="cover set")
        box.drain(scene.id)

        assert scene.updated_at == saved_at  # the same URL
        item = box.item(scene)
        assert (item.title, item.summary) == ("Renamed", "cover set")
        assert item.poster_sha1 == cover_sha1(scene)
