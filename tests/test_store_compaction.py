"""The store's compact forms (version 9), against real SQLite files: a store written by
version 8 upgrades with every link, every recorded entity and every index entry intact and
found by every lookup, gives the freed space back, and keeps reading links written in the
older spelling until the sync next writes them."""

from __future__ import annotations

import json
import sqlite3
import time
import unicodedata

import pytest

from stash2plex.records import ListedItem
from stash2plex.store import link_json
from stash2plex.store.db import DB_FILENAME, MIGRATIONS, SCHEMA_VERSION, Store
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


def test_a_version_8_store_upgrades_with_every_row_and_lookup_intact(tmp_path):
    scenes = 600
    write_version_8_store(tmp_path, scenes)
    before = (tmp_path / DB_FILENAME).stat().st_size
    with Store.open(tmp_path) as store:
        conn = store._conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Links: each reads as it was written, and the coarse SQL filter on owned still
        # finds collection titles with quotes, a % or CJK in the older spelling.
        for scene_id in range(1, scenes + 1):
            [link] = store.links(scene_id)
            assert (link.rating_key, link.plex_path, link.synced_at) == (
                100 + scene_id,
                v8_path(100 + scene_id, 0),
                float(scene_id),
            )
            assert (link.fingerprints, link.owned) == (v8_prints(scene_id), v8_owned(scene_id))
        for number, title in enumerate(
            ["Blue Hour Archive", "北極星映像", 'Say "when"', "50% off"]
        ):
            expected = [s for s in range(1, scenes + 1) if s % 4 == number]
            assert store.scenes_with_collection(1, title) == expected
        # What each scene showed: by entity (a deletion's expansion) and by scene.
        assert conn.execute("SELECT COUNT(*) FROM link_entities").fetchone()[0] == scenes * 10
        for number, kind in enumerate(KINDS):
            for entity_id in range(number + 7):
                expected = [s for s in range(1, scenes + 1) if s % 7 <= entity_id <= s % 7 + number]
                assert store.scenes_showing(kind, entity_id) == expected
        # The index: every file found by its path and its name, in Plex's spelling, the
        # files of an item in their order.
        files = conn.execute("SELECT COUNT(*) FROM plex_index").fetchone()[0]
        assert files == scenes + len([k for k in range(101, 101 + scenes) if k % 5 == 0])
        assert store.index_size() == scenes
        for rating_key in range(101, 101 + scenes):
            parts = [v8_path(rating_key, p) for p in range(2 if rating_key % 5 == 0 else 1)]
            assert store.item_files(rating_key) == [(p, 1000 + n) for n, p in enumerate(parts)]
            for number, path in enumerate(parts):
                entries = store.index_by_path(path)
                assert [(e.rating_key, e.path, e.size) for e in entries] == [
                    (rating_key, path, 1000 + number)
                ]
        assert store.multi_part_items() == [k for k in range(101, 101 + scenes) if k % 5 == 0]
        namesakes = store.index_by_basename(unicodedata.normalize("NFC", "CAFÉ ÉTÉ.mp4"))
        assert sorted((e.rating_key, e.path, e.size) for e in namesakes) == [
            (k, v8_path(k, p), 1000 + p)
            for k in range(101, 101 + scenes)
            if k % 3 == 1
            for p in range(2 if k % 5 == 0 else 1)
        ]
        # Item 103's file has the size of every other NFD item's first file.
        assert store.scenes_linked_to_namesakes([103]) == [
            k - 100 for k in range(101, 101 + scenes) if k % 3 == 1 and k != 103
        ]
        # The rebuild's free pages were given back: the upgraded file is smaller.
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert (tmp_path / DB_FILENAME).stat().st_size < before * 0.85


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
    for damaged in ("[1]", "null", '"text"', "{not json"):  # edited by hand: nothing pushed
        assert link_json.decode(damaged) == {}


def test_a_link_row_damaged_by_hand_reads_as_nothing_pushed_and_spares_the_others(tmp_path):
    with Store.open(tmp_path) as store:
        for scene_id in (1, 2):
            store.save_link(scene_id, scene_id, 1, f"/m/{scene_id}.mp4", {"title": "t"})
        store._conn.execute("UPDATE links SET fingerprints = '[1, 2]' WHERE scene_id = 1")
        found = store.links_of_scenes([1, 2])
        prints = {
            scene_id: [link.fingerprints for link in links] for scene_id, links in found.items()
        }
        assert prints == {1: [{}], 2: [{"title": "t"}]}


def test_giving_back_space_never_waits_for_a_reader(tmp_path):
    """The checkpoint after an upgrade's VACUUM held the write lock for the whole busy timeout
    while another connection read, and every hook spooled meanwhile."""
    conn = sqlite3.connect(tmp_path / "stash2plex.db")
    conn.executescript("".join(MIGRATIONS[:8]) + "PRAGMA user_version=8; PRAGMA journal_mode=WAL;")
    conn.executemany(
        "INSERT INTO link_entities (scene_id, kind, entity_id) VALUES (?, 'tag', ?)",
        [(i, i % 50) for i in range(20_000)],
    )
    conn.commit()
    reader = sqlite3.connect(tmp_path / "stash2plex.db")
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM link_entities").fetchone()  # a read stays open
    started = time.monotonic()
    with Store.open(tmp_path, busy_timeout=60) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert time.monotonic() - started < 30  # it gave up at once, never waited out 60 s
    reader.close()
    conn.close()


def test_short_names_are_capitals_and_never_a_key_the_sync_writes():
    shorts = list(SHORT_NAMES.values())
    assert len(set(shorts)) == len(shorts)
    assert all(len(s) == 1 and s.isupper() for s in shorts)
    assert not any(full[0].isupper() for full in SHORT_NAMES)


def test_the_index_keeps_plex_spelling_and_a_path_listed_twice_once(store_dir_store):
    store = store_dir_store
    windows = "M:\\Studio A\\Clip.MP4"
    store.add_to_index(
        [
            ListedItem(5, 1, ((f"/plex/{NFD_NAME}", 1), ("/plex/a.mp4", 2), (windows, 3))),
            ListedItem(6, 1, (("/plex/b.mp4", 4), ("/plex/c.mp4", 5), ("/plex/b.mp4", 6))),
        ]
    )
    assert store.item_files(5) == [(f"/plex/{NFD_NAME}", 1), ("/plex/a.mp4", 2), (windows, 3)]
    # As the (item, path) key did: the later listing of a path wins, in its place.
    assert store.item_files(6) == [("/plex/c.mp4", 5), ("/plex/b.mp4", 6)]
    stored = dict(store._conn.execute("SELECT path_key, path FROM plex_index").fetchall())
    # Plex's spelling is kept only where it is not its key.
    assert stored["/plex/a.mp4"] is None and stored["m:/studio a/clip.mp4"] == windows
    assert stored[unicodedata.normalize("NFC", f"/plex/{NFD_NAME}")] == f"/plex/{NFD_NAME}"
    assert [e.path for e in store.index_by_path("m:/studio a/clip.mp4")] == [windows]


@pytest.fixture
def store_dir_store(tmp_path):
    with Store.open(tmp_path) as opened:
        yield opened
