"""The store's compact forms, against real SQLite files: links written in the older
spelling (spelled-out names, spaced JSON) keep reading the same, and are left as they are
until the sync next writes them."""

from __future__ import annotations

import json
import sqlite3
import unicodedata

import pytest

from stash2plex.store import link_json
from stash2plex.store.db import DB_FILENAME, MIGRATIONS, Store
from stash2plex.store.link_json import SHORT_NAMES

KINDS = ("performer", "studio", "tag", "group")
NFD_NAME = unicodedata.normalize("NFD", "Café Été.mp4")


def v8_prints(scene_id: int) -> dict[str, str]:
    prints = {key: f"{scene_id:04x}{key[:4]:>4}" for key in ("title", "summary", "studio")}
    prints.update(originallyAvailableAt="7f3a", genre="aa", actor="bb", collection="cc")
    prints.update(poster="1" * 40, poster_url="9f", rating="r5", someday_field="kept")
    return prints


def v8_owned(scene_id: int) -> dict[str, list[str]]:
    title = ["Blue Hour Archive", "北極星映像", 'Say "when"', "50% off"][scene_id % 4]
    return {
        "genre": [f"Tag {scene_id}", "Ελλάδα"],
        "actor": ["Mia O'Connor"],
        "collection": [title],
        "collection_all": [title, "User's own"],
    }


def v8_path(rating_key: int, part: int) -> str:
    """Plex's spelling of a file: POSIX, POSIX in NFD (its key is NFC), and Windows (its key
    has `/` and no case)."""
    if rating_key % 3 == 1:
        return f"/plex/media/{rating_key}/{part}/{NFD_NAME}"
    if rating_key % 3 == 2:
        return f"M:\\Media\\Studio {rating_key}\\Clip {part}.MP4"
    return f"/plex/media/{rating_key}/clip {part}.mp4"


def write_version_8_store(data_dir, scenes: int) -> None:
    """A store as version 8 wrote it: links in spelled-out, spaced JSON (json.dumps as it
    did), what each scene showed, and the Plex index with its path, basename and keys; two
    files on every fifth item, and every scene sharing a file name with the next (namesakes
    for the fallback match)."""
    from stash2plex.paths import basename_key, path_key

    conn = sqlite3.connect(data_dir / DB_FILENAME)
    conn.executescript("".join(MIGRATIONS[:8]) + "PRAGMA user_version=8;")
    for scene_id in range(1, scenes + 1):
        rating_key = 100 + scene_id
        conn.execute(
            "INSERT INTO links (scene_id, rating_key, section_id, plex_path, fingerprints, "
            "synced_at, owned, position) VALUES (?, ?, 1, ?, ?, ?, ?, 0)",
            (
                scene_id,
                rating_key,
                v8_path(rating_key, 0),
                json.dumps(v8_prints(scene_id), sort_keys=True),
                float(scene_id),
                json.dumps(v8_owned(scene_id), sort_keys=True, ensure_ascii=False),
            ),
        )
        for number, kind in enumerate(KINDS):
            for entity_id in range(number + 1):
                conn.execute(
                    "INSERT INTO link_entities (kind, entity_id, scene_id) VALUES (?, ?, ?)",
                    (kind, entity_id + scene_id % 7, scene_id),
                )
        conn.execute(
            "INSERT INTO plex_items (rating_key, section_id, collections, tags) "
            "VALUES (?, 1, '[]', '{}')",
            (rating_key,),
        )
        for part in range(2 if rating_key % 5 == 0 else 1):
            path = v8_path(rating_key, part)
            conn.execute(
                "INSERT INTO plex_index (rating_key, section_id, path, basename, size, "
                "path_key, basename_key) VALUES (?, 1, ?, ?, ?, ?, ?)",
                (
                    rating_key,
                    path,
                    path.replace("\\", "/").rsplit("/", 1)[-1],
                    1000 + part,
                    path_key(path),
                    basename_key(path),
                ),
            )
    conn.commit()
    conn.close()


def test_an_unchanged_link_in_the_older_spelling_is_left_as_it_is(tmp_path):
    write_version_8_store(tmp_path, 3)
    with Store.open(tmp_path) as store:
        [link] = store.links(2)
        store.save_link(2, 102, 1, link.plex_path, link.fingerprints, link.owned, wrote=False)
        # Not rewritten: its synced_at still says when Plex was last written.
        raw = store._conn.execute(
            "SELECT fingerprints, synced_at FROM links WHERE scene_id = 2"
        ).fetchone()
        assert raw[1] == 2.0 and raw[0].startswith('{"actor": ')
        # A changed one is written, in the compact spelling, and reads back the same.
        prints = {**link.fingerprints, "title": "new"}
        store.save_link(2, 102, 1, link.plex_path, prints, link.owned, wrote=False)
        raw = store._conn.execute(
            "SELECT fingerprints, owned FROM links WHERE scene_id = 2"
        ).fetchone()
        assert raw[0] == link_json.encode(prints) and '"T":"new"' in raw[0]
        assert store.links(2)[0].fingerprints == prints
        assert store.links(2)[0].owned == link.owned


def test_fingerprint_edits_on_old_rows_keep_the_other_fields(tmp_path):
    write_version_8_store(tmp_path, 2)
    with Store.open(tmp_path) as store:
        store.set_link_fingerprint(1, "title", "t2")
        store.forget_link_fingerprint([1], "summary", 1)
        store.reconciliation().forget_pushed(1, 101, ["poster"])
        expected = {**v8_prints(1), "title": "t2"}
        del expected["summary"], expected["poster"]
        assert store.link(1).fingerprints == expected
        assert store.link(1).owned == v8_owned(1)


def test_the_compact_spelling_reads_back_and_is_shorter():
    for values in (v8_prints(12), v8_owned(3), {}, {"label_all": ["x"], "Rare": 1}):
        text = link_json.encode(values)
        assert link_json.decode(text) == values
        assert link_json.decode(json.dumps(values, sort_keys=True)) == values
        assert len(text.encode()) <= len(json.dumps(values, ensure_ascii=False).encode())
    assert link_json.decode(None) == {} and link_json.decode("") == {}
    with pytest.raises(ValueError):
        link_json.decode("[1]")


def test_short_names_are_capitals_and_never_a_key_the_sync_writes():
    shorts = list(SHORT_NAMES.values())
    assert len(set(shorts)) == len(shorts)
    assert all(len(s) == 1 and s.isupper() for s in shorts)
    assert not any(full[0].isupper() for full in SHORT_NAMES)
