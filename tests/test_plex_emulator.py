"""The Plex emulator as plexapi 4.18.3 sees it: real HTTP on loopback, no mocks.

The fixture tests pin the emulator's XML to trimmed real captures (tests/fixtures/plex/, quoted
in docs/plex-api-contract.md); the rest drive plexapi through every flow the contract lists and
run every [unverified] switch both ways.
"""

from __future__ import annotations

import os
from pathlib import Path

# plexapi reads its config at import time: point it at nothing, before the first import.
os.environ["PLEXAPI_CONFIG_PATH"] = str(Path(__file__).parent / "no-such-plexapi-config.ini")

import hashlib
import select
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree as ET

import pytest
import requests
from plexapi import media, video
from plexapi.collection import Collection
from plexapi.exceptions import BadRequest, NotFound, Unauthorized
from plexapi.library import MovieSection
from plexapi.server import Identity, PlexServer

from stash2plex.sandbox.plex_emulator import ActorState, EmulatorControl, PlexEmulator

TOKEN = "emulator-test-token"
FIXTURES = Path(__file__).parent / "fixtures" / "plex"
PNG = b"\x89PNG\r\n\x1a\n" + b"first poster"
PNG_2 = b"\x89PNG\r\n\x1a\n" + b"second poster"


class FakeClock:
    """An injectable clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[PlexEmulator]:
    with PlexEmulator(TOKEN, clock=clock) as emulator:
        yield emulator
        assert emulator.internal_errors == []


@pytest.fixture
def section(emu: PlexEmulator) -> int:
    return emu.add_section("Movies", ["/data/Movies"])


@pytest.fixture
def plex(emu: PlexEmulator, section: int) -> PlexServer:
    return PlexServer(emu.url, TOKEN, timeout=5)


def get(emu: PlexEmulator, path: str, *, token: str | None = TOKEN, **kwargs) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["X-Plex-Token"] = token
    return requests.request(
        kwargs.pop("method", "GET"), emu.url + path, headers=headers, timeout=5, **kwargs
    )


def xml_of(response: requests.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)


def fixture(name: str) -> ET.Element:
    return ET.parse(FIXTURES / name).getroot()


def built(cls: type, elem: ET.Element, initpath: str) -> object:
    """A plexapi object parsed from an element, with auto-reload off (no server behind it)."""
    obj = cls(None, elem, initpath)
    obj._autoReload = False
    return obj


def assert_attrs(real: ET.Element, ours: ET.Element, missing_ok: set[str] = frozenset()) -> None:
    """The emulator's element carries every attribute the real one does (values may differ)."""
    missing = set(real.attrib) - set(ours.attrib) - set(missing_ok)
    assert not missing, f"<{ours.tag}> lacks {sorted(missing)}"


def child_tags(elem: ET.Element) -> set[str]:
    return {child.tag for child in elem}


def rich_item(emu: PlexEmulator, section: int, plex: PlexServer) -> int:
    """An item with every field and tag family set, a poster and an art."""
    key = emu.add_item(section, "/data/Movies/Wicked (2024).mkv", sizes=30_649_952_104)
    movie = plex.fetchItem(key)
    movie.edit(
        **{
            "title.value": "Wicked",
            "titleSort.value": "Wicked, The",
            "originalTitle.value": "Wicked: Part I",
            "studio.value": "Universal Pictures",
            "contentRating.value": "PG",
            "summary.value": "Line one,\nline two.",
            "tagline.value": "Everyone deserves the chance to fly.",
            "originallyAvailableAt.value": "2024-11-20",
            "rating.value": "5.9",
            "audienceRating.value": "6.9",
            "title.locked": 1,
            "genre[0].tag.tag": "Romance",
            "genre[1].tag.tag": "Musical",
            "genre[2].tag.tag": "Fantasy",
            "genre.locked": 1,
            "country[0].tag.tag": "United States of America",
            "collection[0].tag.tag": "My Coll",
            "director[0].tag.tag": "Jon M. Chu",
            "writer[0].tag.tag": "Gregory Maguire",
            "writer[1].tag.tag": "Winnie Holzman",
            "producer[0].tag.tag": "Marc Platt",
            "label[0].tag.tag": "lbl",
            "actor[0].tag.tag": "Johnny Bishop",
            "actor[0].tagging.text": "Dancer",
            "actor[0].tag.thumb": "https://example.com/jb.jpg",
            "actor[1].tag.tag": "A2",
            "actor[2].tag.tag": "A3",
            "actor[3].tag.tag": "A4",
        }
    )
    movie.uploadPoster(filepath=PNG)
    movie.uploadArt(filepath=PNG_2)
    return key


# ---------------------------------------------------------------------- shapes of real captures
def test_root_and_identity_match_the_real_capture(emu: PlexEmulator, plex: PlexServer) -> None:
    real, ours = fixture("root.xml"), xml_of(get(emu, "/"))
    assert_attrs(real, ours)
    assert {d.get("key") for d in real} <= {d.get("key") for d in ours}
    assert all(set(d.attrib) == {"count", "key", "title"} for d in ours)
    parsed = []
    for elem in (real, ours):
        server = PlexServer.__new__(PlexServer)
        server._loadData(elem)
        parsed.append(server)
    for attr in ("machineIdentifier", "version", "myPlex", "allowMediaDeletion", "updatedAt"):
        assert type(getattr(parsed[0], attr)) is type(getattr(parsed[1], attr)), attr
    assert parsed[1].version.startswith("1.43.")
    assert plex.machineIdentifier == emu.machine_identifier

    real_id, ours_id = fixture("identity.xml"), xml_of(get(emu, "/identity", token=None))
    assert set(real_id.attrib) == set(ours_id.attrib)
    identity = Identity(None, ours_id)
    assert identity.claimed is False and identity.machineIdentifier == emu.machine_identifier


def test_library_and_sections_match_the_real_shape(emu: PlexEmulator, section: int) -> None:
    real, ours = fixture("library.xml"), xml_of(get(emu, "/library"))
    assert set(real.attrib) == set(ours.attrib)
    assert [d.attrib for d in real] == [d.attrib for d in ours]

    real, ours = fixture("sections.xml"), xml_of(get(emu, "/library/sections"))
    assert_attrs(real, ours)
    assert_attrs(real[0], ours[0])
    assert_attrs(real[0][0], ours[0][0])
    real_section = built(MovieSection, real[0], "/library/sections")
    our_section = built(MovieSection, ours[0], "/library/sections")
    assert our_section.key == section and isinstance(our_section.key, int)
    assert our_section.locations == ["/data/Movies"]
    for attr in ("allowSync", "filters", "refreshing", "createdAt", "updatedAt", "uuid"):
        assert type(getattr(real_section, attr)) is type(getattr(our_section, attr)), attr


def test_listing_item_matches_the_real_truncated_shape(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    rich_item(emu, section, plex)
    real = fixture("listing.xml")
    ours = xml_of(get(emu, f"/library/sections/{section}/all?includeGuids=1&type=1"))
    assert_attrs(real, ours)
    real_video, our_video = real[0], ours[0]
    # slug/chapterSource/... come from the Plex Movie agent; emulated items have none.
    agent_only = {"slug", "audienceRatingImage", "chapterSource", "primaryExtraKey"}
    assert_attrs(real_video, our_video, agent_only)
    assert "librarySectionID" not in our_video.attrib  # listings leave it to the container
    assert child_tags(our_video) <= child_tags(real_video)
    assert child_tags(real_video) - child_tags(our_video) <= {"UltraBlurColors", "Guid"}
    assert_attrs(real_video.find("Media"), our_video.find("Media"))
    assert_attrs(real_video.find("Media/Part"), our_video.find("Media/Part"))
    assert_attrs(real_video.find("Image"), our_video.find("Image"))
    for tag in ("Genre", "Country", "Collection", "Director", "Writer", "Role"):
        assert all(set(e.attrib) == {"tag"} for e in our_video.iter(tag)), tag
    assert len(our_video.findall("Genre")) == 2 and len(our_video.findall("Role")) == 3
    assert our_video.find("Label") is None and our_video.find("Field") is None
    assert our_video.find("Producer") is None

    real_movie = built(video.Movie, real_video, "/library/sections/1/all")
    our_movie = built(video.Movie, our_video, f"/library/sections/{section}/all")
    for attr in ("ratingKey", "title", "titleSort", "year", "duration", "addedAt", "thumb"):
        assert type(getattr(real_movie, attr)) is type(getattr(our_movie, attr)), attr
    assert our_movie.locations == ["/data/Movies/Wicked (2024).mkv"]
    assert our_movie.media[0].parts[0].size == 30_649_952_104


def test_detail_item_matches_the_real_shape(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    key = rich_item(emu, section, plex)
    real = fixture("detail.xml")
    ours = xml_of(get(emu, f"/library/metadata/{key}?includeFields=thumbBlurHash"))
    assert_attrs(real, ours)
    real_video, our_video = real[0], ours[0]
    assert_attrs(real_video, our_video, {"slug", "audienceRatingImage", "chapterSource"})
    assert child_tags(our_video) <= child_tags(real_video)
    assert child_tags(real_video) - child_tags(our_video) <= {"UltraBlurColors", "Guid", "Rating"}
    for tag in ("Genre", "Country", "Director", "Writer", "Producer", "Collection", "Label"):
        assert_attrs(real_video.find(tag), our_video.find(tag), {"tagKey", "thumb"})
    assert_attrs(real_video.find("Role"), our_video.find("Role"), {"tagKey"})
    assert_attrs(real_video.find("Field"), our_video.find("Field"))
    assert b'summary="Line one,&#10;line two."' in get(emu, f"/library/metadata/{key}").content

    movie = built(video.Movie, our_video, f"/library/metadata/{key}")
    assert movie.librarySectionID == section and movie.librarySectionKey
    assert [g.tag for g in movie.genres] == ["Romance", "Musical", "Fantasy"]
    first_role = movie.roles[0]
    assert (first_role.tag, first_role.role) == ("Johnny Bishop", "Dancer")
    assert first_role.thumb == "https://example.com/jb.jpg"
    assert [r.tag for r in movie.roles] == ["Johnny Bishop", "A2", "A3", "A4"]
    assert {f.name for f in movie.fields} >= {"title", "genre", "thumb", "art"}
    assert all(f.locked for f in movie.fields)
    assert movie.summary == "Line one,\nline two."
    assert movie.titleSort == "Wicked, The" and movie.originalTitle == "Wicked: Part I"
    assert movie.rating == 5.9 and movie.audienceRating == 6.9
    assert movie.originallyAvailableAt.year == 2024 and movie.year == 2024
    assert {i.type for i in movie.images} == {"coverPoster", "background"}


def test_poster_list_and_collection_match_the_real_shape(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    key = rich_item(emu, section, plex)
    real = fixture("posters.xml")
    ours = xml_of(get(emu, f"/library/metadata/{key}/posters"))
    assert_attrs(real, ours)
    # Uploads have no provider; agent posters (the real capture) do.
    assert_attrs(real[0], ours[0], {"provider"})
    poster = built(media.Poster, ours[0], f"/library/metadata/{key}/posters")
    assert poster.selected is True and poster.ratingKey.startswith("upload://posters/")

    real = fixture("collections.xml")
    ours = xml_of(get(emu, f"/library/sections/{section}/collections"))
    assert_attrs(real, ours)
    assert_attrs(real[0], ours[0])
    coll = built(Collection, ours[0], f"/library/sections/{section}/collections")
    assert coll.title == "My Coll" and coll.key == f"/library/collections/{coll.ratingKey}"
    assert coll.childCount == 1 and coll.smart is False


def test_headers_and_error_bodies_are_those_of_pms(emu: PlexEmulator, section: int) -> None:
    ok = get(emu, "/library/sections")
    assert ok.headers["Content-Type"] == "text/xml;charset=utf-8"
    assert ok.headers["X-Plex-Protocol"] == "1.0"
    assert ok.headers["Cache-Control"] == "no-cache"
    assert int(ok.headers["Content-Length"]) == len(ok.content)
    assert ok.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<MediaContainer')
    missing = get(emu, "/library/metadata/999")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "text/html"
    assert "<h1>404 Not Found</h1>" in missing.text
    denied = get(emu, "/library/sections", token="wrong")
    assert denied.status_code == 401 and denied.headers["Content-Type"] == "text/html"
    assert "window.location" in denied.text and "<h1>401 Unauthorized</h1>" in denied.text


# ---------------------------------------------------------------------- reading the library
def test_connect_identity_without_token_and_sections(emu: PlexEmulator, section: int) -> None:
    assert get(emu, "/identity", token=None).status_code == 200
    assert get(emu, "/", token=None).status_code == 401
    plex = PlexServer(emu.url, TOKEN)
    assert plex.identity().machineIdentifier == emu.machine_identifier
    movies = plex.library.section("movies")
    assert movies.key == section and movies.type == "movie" and movies.locations == ["/data/Movies"]
    assert plex.library.sectionByID(section).title == "Movies"
    assert [e.status for e in emu.log.entries if e.route == "GET /"] == [401, 200]


def test_section_all_pages_250_items_in_three_requests(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    keys = [emu.add_item(section, f"/data/Movies/m{i:03d}.mkv") for i in range(250)]
    movies = plex.library.section("Movies")
    emu.log.clear()
    listed = movies.all()
    assert [m.ratingKey for m in listed] == keys  # titleSort order
    assert emu.log.count("GET /library/sections/{id}/all") == 3
    assert movies.totalSize == 250
    first = emu.log.entries[0]
    assert first.query == {"includeGuids": "1", "type": "1"}
    assert all(m.librarySectionID == section for m in listed)


def test_paging_edge_cases_by_header_or_query(emu: PlexEmulator, section: int) -> None:
    for i in range(12):
        emu.add_item(section, f"/data/Movies/p{i:02d}.mkv")
    path = f"/library/sections/{section}/all?type=1"
    beyond = get(emu, path, headers={"X-Plex-Container-Start": "20", "X-Plex-Container-Size": "5"})
    root = xml_of(beyond)
    assert (root.get("size"), root.get("totalSize"), root.get("offset")) == ("0", "12", "20")
    assert beyond.headers["X-Plex-Container-Total-Size"] == "12"
    assert beyond.headers["X-Plex-Container-Start"] == "20"
    sized = xml_of(get(emu, path + "&X-Plex-Container-Start=10&X-Plex-Container-Size=5"))
    assert (sized.get("size"), sized.get("totalSize")) == ("2", "12")
    empty = xml_of(get(emu, path + "&includeMeta=1&X-Plex-Container-Size=0"))
    assert empty.get("size") == "0" and empty.find("Video") is None
    assert empty.find("Meta/Type[@type='movie']") is not None
    limited = xml_of(get(emu, path + "&limit=3"))
    assert len(limited.findall("Video")) == 3 and limited.get("totalSize") == "3"
    assert get(emu, "/library/sections/9/all").status_code == 404


def test_search_get_fetch_item_and_fetch_items(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    bunny = emu.add_item(section, "/data/Movies/Big Buck Bunny.mkv")
    sintel = emu.add_item(section, ["/data/Movies/Sintel.1.mkv", "/data/Movies/Sintel.2.mkv"])
    emu.add_item(section, "/data/Movies/Elephants Dream.mkv", title="Elephants Dream")
    movies = plex.library.section("Movies")
    assert [m.ratingKey for m in movies.search(title="BUNNY")] == [bunny]
    assert movies.get("Sintel.1").ratingKey == sintel
    with pytest.raises(NotFound):
        movies.get("no such title")
    sintel_movie = plex.fetchItem(sintel)
    assert sintel_movie.locations == ["/data/Movies/Sintel.1.mkv", "/data/Movies/Sintel.2.mkv"]
    assert [m.title for m in plex.fetchItems([bunny, sintel])] == ["Big Buck Bunny", "Sintel.1"]
    with pytest.raises(NotFound):
        plex.fetchItem(999)
    found = movies.search(Media__Part__file__exact="/data/Movies/Sintel.2.mkv")
    assert [m.ratingKey for m in found] == [sintel]
    assert emu.find_by_file("/data/Movies/Sintel.2.mkv") == sintel


def test_sort_and_filters_validated_against_meta(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock
) -> None:
    first = emu.add_item(section, "/data/Movies/b.mkv")
    clock.advance(60)
    second = emu.add_item(section, "/data/Movies/a.mkv")
    plex.fetchItem(first).editStudio("Blender Foundation")
    plex.fetchItem(second).addGenre("Action")
    movies = plex.library.section("Movies")
    assert [m.ratingKey for m in movies.search(sort="addedAt:desc")] == [second, first]
    assert [m.ratingKey for m in movies.recentlyAdded(maxresults=1)] == [second]
    assert any(e.query.get("sort") == "movie.addedAt:desc" for e in emu.log.entries)
    assert [m.ratingKey for m in movies.search(studio="blender")] == [first]
    assert [m.ratingKey for m in movies.search(genre="Action")] == [second]
    assert emu.log.count("GET /library/sections/{id}/{filter}") == 1
    genre_id = [c for c in emu.log.entries if "genre" in c.query][-1].query["genre"]
    assert genre_id.isdigit()  # plexapi turned the name into the tag id of the choices
    with pytest.raises(NotFound):
        movies.search(filters={"file": "/data/Movies/a.mkv"})
    with pytest.raises(NotFound):  # as in PMS: `location` has no filter choices
        movies.search(filters={"location": "/data/Movies"})


@pytest.mark.parametrize("include_original", [False, True])
def test_title_search_and_original_title_switch(
    emu: PlexEmulator, section: int, plex: PlexServer, include_original: bool
) -> None:
    emu.behaviour.title_search_includes_original_title = include_original
    key = emu.add_item(section, "/data/Movies/x.mkv", title="Wicked")
    plex.fetchItem(key).editOriginalTitle("Wicked: Part I")
    found = plex.library.section("Movies").search(title="part i")
    assert [m.ratingKey for m in found] == ([key] if include_original else [])


# ---------------------------------------------------------------------- edits
def test_batched_edit_is_one_put_and_round_trips(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    key = emu.add_item(section, "/data/Movies/bunny.mkv")
    movie = plex.fetchItem(key)
    emu.log.clear()
    movie.batchEdits().editTitle("New & Title/ü").editSummary("a\nb").editStudio(
        "Studio X"
    ).editOriginallyAvailable("2021-03-04").saveEdits()
    assert emu.log.count("PUT /library/sections/{id}/all") == 1
    assert len(emu.log.writes()) == 1
    movie.reload()
    assert (movie.title, movie.summary, movie.studio) == ("New & Title/ü", "a\nb", "Studio X")
    assert movie.originallyAvailableAt.strftime("%Y-%m-%d") == "2021-03-04"
    assert movie.year == 2021
    assert all(movie.isLocked(f) for f in ("title", "summary", "studio", "originallyAvailableAt"))
    state = emu.item(key)
    assert state.edit_count == 1 and state.title == "New & Title/ü"
    assert state.originally_available_at == "2021-03-04" and state.year == 2021

    movie.editTitle("Unlocked", locked=False)
    movie.editSummary(None)
    movie.reload()
    assert movie.title == "Unlocked" and not movie.isLocked("title")
    assert movie.summary == "" and movie.isLocked("summary")
    assert emu.item(key).edit_count == 3


def test_updated_at_moves_only_on_change(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock
) -> None:
    key = emu.add_item(section, "/data/Movies/t.mkv")
    movie = plex.fetchItem(key)
    clock.advance(10)
    movie.editTitle("T")
    changed = emu.item(key).updated_at
    assert changed == int(clock.now)
    clock.advance(10)
    movie.editTitle("T")  # same value, same lock
    assert emu.item(key).updated_at == changed and emu.item(key).edit_count == 2


def test_bad_values_are_refused_without_changes(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    key = emu.add_item(section, "/data/Movies/d.mkv")
    movie = plex.fetchItem(key)
    with pytest.raises(BadRequest, match=r"\(400\)"):
        movie.edit(**{"title.value": "X", "originallyAvailableAt.value": "2021"})
    with pytest.raises(BadRequest, match=r"\(400\)"):
        movie.edit(**{"mood[0].tag.tag": "calm"})
    assert emu.item(key).title == "d" and emu.item(key).edit_count == 0


def test_tag_lists_replace_and_remove(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    key = emu.add_item(section, "/data/Movies/tags.mkv")
    movie = plex.fetchItem(key)
    movie.addGenre(["Animation", "Comedy"])
    movie.edit(**{"genre[0].tag.tag": "Drama", "genre.locked": 1})  # a list replaces the list
    assert emu.item(key).genres == ["Drama"]
    movie.reload()
    movie.addGenre(["Sci, Fi", "Rock & Roll", "Test Tag !@#$%^&*()-_=+[];:'\"/?,."])
    assert emu.item(key).genres == [
        "Drama",
        "Sci, Fi",
        "Rock & Roll",
        "Test Tag !@#$%^&*()-_=+[];:'\"/?,.",
    ]
    movie.removeGenre(["Sci, Fi", "Rock & Roll", "Test Tag !@#$%^&*()-_=+[];:'\"/?,."])
    assert emu.item(key).genres == ["Drama"]
    assert any(e.query.get("genre[].tag.tag-") for e in emu.log.entries)
    movie.addLabel("lbl").addDirector("Jane Doe")
    movie.edit(**{"label[].tag": ""})  # an empty `tag` removes every label
    state = emu.item(key)
    assert state.labels == [] and state.directors == ["Jane Doe"]
    assert {"genre", "label", "director"} <= state.locked
    movie.removeGenre("Drama", locked=False)
    assert "genre" not in emu.item(key).locked and emu.item(key).genres == []


def test_actors_through_raw_edit(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    key = emu.add_item(section, "/data/Movies/actors.mkv")
    movie = plex.fetchItem(key)
    movie.edit(
        **{
            "actor[0].tag.tag": "Actor A",
            "actor[0].tagging.text": "Role A",
            "actor[0].tag.thumb": "http://x/y.jpg",
            "actor[1].tag.tag": "Actor B",
            "actor[1].tagging.thumb": "http://x/b.jpg",
            "actor.locked": 1,
        }
    )
    movie.reload()
    assert [(r.tag, r.role, r.thumb) for r in movie.roles] == [
        ("Actor A", "Role A", "http://x/y.jpg"),
        ("Actor B", None, "http://x/b.jpg"),
    ]
    assert movie.isLocked("actor")
    state = emu.item(key)
    assert state.actors[0] == ActorState("Actor A", "Role A", "http://x/y.jpg")
    movie.edit(**{"actor[0].tag.tag": "Actor C"})
    assert [a.name for a in emu.item(key).actors] == ["Actor C"]


@pytest.mark.parametrize("adds", [False, True])
def test_multi_edit_tags_replace_or_add(
    emu: PlexEmulator, section: int, plex: PlexServer, adds: bool
) -> None:
    emu.behaviour.multi_edit_adds_tags = adds
    one = emu.add_item(section, "/data/Movies/one.mkv")
    two = emu.add_item(section, "/data/Movies/two.mkv")
    plex.fetchItem(one).addGenre("Old")
    movies = plex.library.section("Movies")
    items = [plex.fetchItem(one), plex.fetchItem(two)]
    movies.multiEdit(items, **{"genre[0].tag.tag": "New", "genre.locked": 1})
    movies.multiEdit(items, **{"studio.value": "S", "studio.locked": 1})
    assert emu.item(one).genres == (["Old", "New"] if adds else ["New"])
    assert emu.item(two).genres == ["New"]
    assert emu.item(one).studio == emu.item(two).studio == "S"
    movies.lockAllField("thumb")
    assert all("thumb" in emu.item(k).locked for k in (one, two))


@pytest.mark.parametrize("status", [404, 200])
def test_edit_of_an_unknown_id(emu: PlexEmulator, section: int, status: int) -> None:
    emu.unknown_id_put_status = status
    key = emu.add_item(section, "/data/Movies/known.mkv")
    query = f"?type=1&id={key},999&title.value=X&title.locked=1"
    response = get(emu, f"/library/sections/{section}/all{query}", method="PUT")
    assert response.status_code == status
    assert emu.item(key).title == ("known" if status == 404 else "X")


def test_listing_truncates_and_a_listing_object_loses_tags(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    key = emu.add_item(section, "/data/Movies/Bunny.mkv")
    plex.fetchItem(key).addGenre(["G1", "G2", "G3", "G4", "G5"])
    movies = plex.library.section("Movies")
    listed = movies.search(title="bunny")[0]
    assert [g.tag for g in listed.genres] == ["G1", "G2"]
    assert [g.tag for g in plex.fetchItem(key).genres] == ["G1", "G2", "G3", "G4", "G5"]
    listed.addGenre("New")  # the documented hazard: only the truncated list is re-sent
    assert emu.item(key).genres == ["G1", "G2", "New"]

    emu.truncate_listing_tags = False
    plex.fetchItem(key).addGenre(["G3", "G4"])
    assert len(movies.search(title="bunny")[0].genres) == 5


# ---------------------------------------------------------------------- images and ratings
@pytest.fixture
def image_server() -> Iterator[str]:
    """A tiny HTTP server that serves PNG_2 (and 404 under /missing)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = (404, b"") if self.path.startswith("/missing") else (200, PNG_2)
            self.send_response(status)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_upload_poster_by_bytes_and_by_url(
    emu: PlexEmulator, section: int, plex: PlexServer, image_server: str
) -> None:
    key = emu.add_item(section, "/data/Movies/poster.mkv")
    movie = plex.fetchItem(key)
    movie.uploadPoster(filepath=PNG)
    first_sha = hashlib.sha1(PNG).hexdigest()
    posters = movie.posters()
    assert [(p.ratingKey, p.selected) for p in posters] == [(f"upload://posters/{first_sha}", True)]
    assert emu.item(key).poster_sha1 == first_sha
    movie.reload()
    assert movie.thumb == f"/library/metadata/{key}/thumb/{emu.item(key).updated_at}"
    assert movie.isLocked("thumb")
    served = get(emu, movie.thumb)
    assert served.content == PNG and served.headers["Content-Type"] == "image/png"

    movie.uploadPoster(url=f"{image_server}/p.png?a=1&b=2")
    second_sha = hashlib.sha1(PNG_2).hexdigest()
    posters = movie.posters()
    assert [p.selected for p in posters] == [False, True]
    assert posters[1].ratingKey.endswith(second_sha)
    assert emu.item(key).poster_sha1 == second_sha
    assert get(emu, posters[0].key).content == PNG

    movie.setPoster(posters[0])
    assert emu.item(key).poster_sha1 == first_sha
    movie.deletePoster()
    assert not any(p.selected for p in movie.posters())
    assert emu.item(key).poster_sha1 is None
    movie.reload()
    assert movie.thumb is None

    movie.uploadArt(filepath=PNG)
    assert emu.item(key).art_sha1 == first_sha and movie.arts()[0].selected
    assert "art" in emu.item(key).locked
    assert emu.log.count("POST /library/metadata/{id}/posters") == 2
    assert emu.log.count("PUT /library/metadata/{id}/poster") == 1


@pytest.mark.parametrize("status", [400, 200])
def test_upload_from_an_unreachable_url(
    emu: PlexEmulator, section: int, plex: PlexServer, image_server: str, status: int
) -> None:
    emu.behaviour.upload_url_failure_status = status
    key = emu.add_item(section, "/data/Movies/p.mkv")
    movie = plex.fetchItem(key)
    if status == 400:
        with pytest.raises(BadRequest, match=r"\(400\)"):
            movie.uploadPoster(url=f"{image_server}/missing.png")
    else:
        movie.uploadPoster(url=f"{image_server}/missing.png")
    assert emu.item(key).posters == []


@pytest.mark.parametrize("on", [True, False])
def test_upload_select_and_lock_switches(
    emu: PlexEmulator, section: int, plex: PlexServer, on: bool
) -> None:
    emu.behaviour.upload_selects_image = on
    emu.behaviour.image_change_locks = on
    key = emu.add_item(section, "/data/Movies/s.mkv")
    plex.fetchItem(key).uploadPoster(filepath=PNG)
    state = emu.item(key)
    assert state.posters[0].selected is on
    assert ("thumb" in state.locked) is on


def test_rate(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    key = emu.add_item(section, "/data/Movies/r.mkv")
    movie = plex.fetchItem(key)
    movie.rate(7.5)
    movie.reload()
    assert movie.userRating == 7.5 and movie.lastRatedAt is not None
    assert emu.item(key).user_rating == 7.5
    assert emu.log.count("PUT /:/rate") == 1
    movie.rate()
    assert emu.item(key).user_rating is None
    query = f"/:/rate?key={key}&identifier=com.plexapp.plugins.library&rating=11"
    assert get(emu, query, method="PUT").status_code == 400
    assert emu.item(key).edit_count == 0  # ratings are not metadata edits


# ---------------------------------------------------------------------- scans and refreshes
def test_partial_scan_adds_files_under_the_path_after_the_delay(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock
) -> None:
    emu.add_scannable_file(section, "/data/Movies/New & Co/a.mkv", 123)
    emu.add_scannable_file(section, "/data/Movies/New & Co/b.mkv")
    emu.add_scannable_file(section, "/data/Movies/Other/c.mkv")
    movies = plex.library.section("Movies")
    movies.update(path="/data/Movies/New & Co")
    assert emu.log.entries[-1].query == {"path": "/data/Movies/New & Co"}
    emu.run_due_scans()
    assert emu.items(section) == []
    assert plex.library.section("Movies") is movies  # sections are cached by plexapi
    clock.advance(0.5)
    emu.run_due_scans()
    a = emu.find_by_file("/data/Movies/New & Co/a.mkv")
    assert a is not None and emu.find_by_file("/data/Movies/New & Co/b.mkv") is not None
    assert emu.find_by_file("/data/Movies/Other/c.mkv") is None
    assert emu.item(a).title == "a" and emu.item(a).sizes == [123]

    movies.update()  # a full scan; applied lazily by the next request once due
    clock.advance(0.5)
    newest = movies.search(sort="addedAt:desc", maxresults=1)
    assert newest[0].locations == ["/data/Movies/Other/c.mkv"]
    assert len(movies.all()) == 3
    assert emu.log.count("GET /library/sections/{id}/refresh") == 2
    assert emu.log.writes() == []


def test_scan_cancel_and_library_wide_scan(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock
) -> None:
    other = emu.add_section("Other", ["/data/Other"])
    emu.add_scannable_file(section, "/data/Movies/x.mkv")
    emu.add_scannable_file(other, "/data/Other/y.mkv")
    movies = plex.library.section("Movies")
    movies.update()
    assert [(a.type, a.title) for a in plex.activities] == [
        ("library.update.section", "Scanning Movies")
    ]
    assert plex.library.sectionByID(section).refreshing is False  # cached from before
    assert xml_of(get(emu, "/library/sections"))[0].get("refreshing") == "1"
    movies.cancelUpdate()
    assert plex.activities == []
    clock.advance(1)
    emu.run_due_scans()
    assert emu.items() == []
    plex.library.update()
    clock.advance(1)
    emu.run_due_scans()
    assert len(emu.items(section)) == 1 and len(emu.items(other)) == 1


@pytest.mark.parametrize("overwrites", [True, False])
def test_refresh_keeps_locked_fields(
    emu: PlexEmulator, section: int, plex: PlexServer, overwrites: bool
) -> None:
    emu.behaviour.agent_overwrites_unlocked = overwrites
    key = emu.add_item(section, "/data/Movies/stem.mkv")
    movie = plex.fetchItem(key)
    movie.batchEdits().editTitle("Locked").editSummary("free", locked=False).addGenre(
        "Kept"
    ).saveEdits()
    movie.refresh()
    state = emu.item(key)
    assert state.refresh_count == 1
    assert state.title == "Locked" and state.genres == ["Kept"]
    assert state.summary == ("" if overwrites else "free")
    movie.editTitle("Open", locked=False)
    movie.refresh()
    assert emu.item(key).title == ("stem" if overwrites else "Open")
    assert emu.log.count("PUT /library/metadata/{id}/refresh") == 2


def test_delayed_refresh_lands_after_its_delay(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock
) -> None:
    emu.behaviour.refresh_delay = 2
    key = emu.add_item(section, "/data/Movies/late.mkv")
    movie = plex.fetchItem(key)
    movie.editTitle("Open", locked=False)
    movie.refresh()
    assert emu.item(key).title == "Open" and emu.item(key).refresh_count == 1
    clock.advance(2)
    emu.run_due_scans()
    assert emu.item(key).title == "late"


# ---------------------------------------------------------------------- collections
def test_collections_through_tags(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    one = emu.add_item(section, "/data/Movies/one.mkv")
    two = emu.add_item(section, "/data/Movies/two.mkv")
    plex.fetchItem(one).addCollection("Fav")
    plex.fetchItem(two).addCollection("Fav")
    [fav] = emu.collections(section)
    assert fav.title == "Fav" and fav.children == [one, two]
    movie = plex.fetchItem(one)
    tag = movie.collections[0]
    assert tag.id == fav.index
    assert tag.collection().ratingKey == fav.rating_key
    movies = plex.library.section("Movies")
    assert [c.title for c in movies.collections()] == ["Fav"]
    assert [m.ratingKey for m in movies.collection("Fav").items()] == [one, two]
    plex.fetchItem(two).removeCollection("Fav")
    assert emu.collections(section)[0].children == [one]


@pytest.mark.parametrize("delete_empty", [False, True])
def test_empty_collection_switch(
    emu: PlexEmulator, section: int, plex: PlexServer, delete_empty: bool
) -> None:
    emu.behaviour.delete_empty_collections = delete_empty
    key = emu.add_item(section, "/data/Movies/one.mkv")
    plex.fetchItem(key).addCollection("Solo")
    plex.fetchItem(key).removeCollection("Solo")
    assert [c.title for c in emu.collections(section)] == ([] if delete_empty else ["Solo"])


def test_collections_api(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    keys = [emu.add_item(section, f"/data/Movies/{n}.mkv") for n in ("a", "b", "c")]
    movies = plex.library.section("Movies")
    a, b, c = (plex.fetchItem(k) for k in keys)
    coll = movies.createCollection("My Coll", items=[a, b])
    assert coll.title == "My Coll" and coll.librarySectionID == section
    assert [m.ratingKey for m in coll.items()] == keys[:2]
    assert emu.item(keys[0]).collections == ["My Coll"]
    coll.addItems(c)
    coll.moveItem(c, after=a)
    coll.removeItems(b)
    coll.reload()
    assert [m.ratingKey for m in movies.collection("My Coll").items()] == [keys[0], keys[2]]
    assert emu.item(keys[1]).collections == []
    coll.editTitle("Renamed")
    assert emu.item(keys[0]).collections == ["Renamed"]
    assert [c.title for c in emu.collections(section)] == ["Renamed"]
    coll.delete()
    assert emu.collections(section) == []
    assert emu.item(keys[0]).collections == []
    for route in (
        "POST /library/collections",
        "PUT /library/collections/{id}/items",
        "DELETE /library/collections/{id}/items/{rk}",
        "PUT /library/collections/{id}/items/{rk}/move",
        "DELETE /library/collections/{id}",
    ):
        assert emu.log.count(route) == 1, route
    assert emu.log.unknown() == []


def test_smart_collection(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    keep = emu.add_item(section, "/data/Movies/keep.mkv")
    emu.add_item(section, "/data/Movies/other.mkv")
    plex.fetchItem(keep).editStudio("Blender")
    movies = plex.library.section("Movies")
    smart = movies.createCollection("Blender films", smart=True, studio="Blender")
    assert smart.smart is True
    assert [m.ratingKey for m in smart.items()] == [keep]
    assert smart.filters()["filters"] == {"studio": "Blender"}


# ---------------------------------------------------------------------- faults
def test_refused_connections_then_the_same_port_again(emu: PlexEmulator, plex: PlexServer) -> None:
    port = emu.port
    emu.faults.refuse_connections()
    with pytest.raises(requests.exceptions.ConnectionError, match="refused"):
        PlexServer(emu.url, TOKEN, timeout=2)
    with pytest.raises(requests.exceptions.ConnectionError):
        plex.query("/library/sections")  # its kept-alive connection was cut as well
    emu.faults.accept_connections()
    assert emu.port == port
    assert PlexServer(emu.url, TOKEN).machineIdentifier == emu.machine_identifier
    assert len(plex.query("/library/sections")) == 1


def test_maintenance_answers_503_json(
    emu: PlexEmulator, plex: PlexServer, clock: FakeClock
) -> None:
    emu.faults.maintenance()
    with pytest.raises(BadRequest, match=r"^\(503\) service_unavailable") as info:
        plex.query("/library/sections")
    assert '"title":"Maintenance"' in str(info.value)
    raw = get(emu, "/identity", token=None)
    assert raw.status_code == 503 and raw.headers["Content-Type"] == "application/json"
    assert raw.json()["status"].startswith("Plex Media Server is currently running startup")
    emu.faults.maintenance(False)
    plex.query("/library/sections")
    emu.faults.maintenance(duration=30)
    assert get(emu, "/identity").status_code == 503
    clock.advance(30)
    assert get(emu, "/identity").status_code == 200


def test_error_statuses_counts_and_routes(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    key = emu.add_item(section, "/data/Movies/f.mkv")
    emu.faults.fail(500, count=1)
    with pytest.raises(BadRequest, match=r"^\(500\) internal_server_error"):
        plex.fetchItem(key)
    assert plex.fetchItem(key).ratingKey == key
    emu.faults.fail(401, count=1)
    with pytest.raises(Unauthorized):
        plex.fetchItem(key)
    emu.faults.fail(520, count=1)
    with pytest.raises(TypeError):  # plexapi cannot name 520: the real behaviour
        plex.fetchItem(key)
    emu.faults.fail(502, route=r"^PUT ")
    movie = plex.fetchItem(key)
    with pytest.raises(BadRequest, match=r"^\(502\)"):
        movie.editTitle("x")
    with pytest.raises(BadRequest, match=r"^\(502\)"):
        movie.editTitle("x")
    emu.faults.fail(429, count=1, body="slow down")
    with pytest.raises(BadRequest, match="slow down"):
        plex.fetchItem(key)
    emu.faults.clear()
    movie.editTitle("x")
    statuses = [e.status for e in emu.log.entries]
    assert statuses.count(502) == 2 and 520 in statuses and 429 in statuses


def test_latency_makes_a_read_time_out(emu: PlexEmulator, section: int) -> None:
    emu.faults.latency(0.6, route="GET /library/sections$")
    plex = PlexServer(emu.url, TOKEN, timeout=0.2)  # GET / is not delayed
    with pytest.raises(requests.exceptions.ReadTimeout):
        plex.library.sections()
    emu.faults.latency(0, route="GET /library/sections$")
    assert [s.key for s in plex.library.sections()] == [section]


def test_dropped_connection_and_garbage_xml(emu: PlexEmulator, plex: PlexServer) -> None:
    emu.faults.drop_connections(count=1)
    with pytest.raises(requests.exceptions.ConnectionError, match=r"RemoteDisconnected|aborted"):
        plex.query("/library/sections")
    assert emu.log.entries[-1].status == 0
    emu.faults.garbage_xml(count=1)
    with pytest.raises(ET.ParseError):
        plex.query("/library/sections")
    assert len(plex.query("/library/sections")) == 1


def test_clear_removes_every_fault(emu: PlexEmulator, plex: PlexServer) -> None:
    emu.faults.fail(500)
    emu.faults.maintenance()
    emu.faults.garbage_xml()
    emu.faults.drop_connections()
    emu.faults.latency(5)
    emu.faults.refuse_connections()
    emu.faults.clear()
    started = time.monotonic()
    assert PlexServer(emu.url, TOKEN).machineIdentifier == emu.machine_identifier
    assert time.monotonic() - started < 2


def test_token_change_and_unauthenticated_access(emu: PlexEmulator, plex: PlexServer) -> None:
    emu.token = "fixed-token"
    with pytest.raises(Unauthorized):
        plex.query("/library/sections")
    assert PlexServer(emu.url, "fixed-token").machineIdentifier == emu.machine_identifier
    assert get(emu, "/library/sections?X-Plex-Token=fixed-token", token=None).status_code == 200
    with pytest.raises(Unauthorized):
        PlexServer(emu.url, None)
    emu.allow_unauthenticated = True
    assert PlexServer(emu.url, None).machineIdentifier == emu.machine_identifier


# ---------------------------------------------------------------------- request log, control
def test_request_log(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    key = emu.add_item(section, "/data/Movies/log.mkv")
    movie = plex.fetchItem(key)
    movie.editTitle("Logged")
    movie.refresh()
    get(emu, "/no/such/route")
    get(emu, f"/library/metadata/{key}?X-Plex-Token={TOKEN}", token=None)
    counts = emu.log.route_counts()
    assert counts["GET /"] == 1 and counts["GET /library/metadata/{ids}"] == 2
    assert counts["PUT /library/sections/{id}/all"] == 1
    assert emu.log.count("/library/metadata/{ids}") == 2
    assert emu.log.count(method="PUT") == 2
    [unknown] = emu.log.unknown()
    assert (unknown.method, unknown.path, unknown.status) == ("GET", "/no/such/route", 404)
    assert [w.route for w in emu.log.writes()] == ["PUT /library/sections/{id}/all"]
    assert TOKEN not in repr(emu.log.entries)
    edit = emu.log.writes()[0]
    assert edit.query["title.value"] == "Logged" and edit.query["id"] == str(key)
    emu.log.clear()
    assert emu.log.entries == []


def test_control_api_round_trip(emu: PlexEmulator, clock: FakeClock) -> None:
    control = EmulatorControl(emu.url)
    section = control.add_section("Scenes", ["/data/Scenes"])
    key = control.add_item(section, "/data/Scenes/a.mp4", sizes=5, title="A")
    assert control.item(key)["title"] == "A" and control.items(section) == [key]
    assert control.find_by_file("/data/Scenes/a.mp4") == key
    control.add_scannable_file(section, "/data/Scenes/b.mp4")
    control.fault("fail", status=500, count=1, route="^GET /identity$")
    assert get(emu, "/identity").status_code == 500
    assert get(emu, "/identity").status_code == 200
    control.fault("maintenance")
    assert get(emu, "/identity").status_code == 503
    control.fault("clear")
    control.settings(token="other", truncate_listing_tags=False)
    assert emu.token == "other" and emu.truncate_listing_tags is False
    log = control.log()
    assert [entry["route"] for entry in log] == ["GET /identity"] * 3
    control.clear_log()
    assert control.log() == []
    with pytest.raises(urllib.error.HTTPError, match="400"):
        control.fault("explode")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        control.item(999)
    assert requests.get(f"{emu.url}/__sandbox__/nothing", timeout=5).status_code == 404
    assert emu.log.entries == []  # the control API is not part of the emulated server


def test_command_line_runs_in_the_foreground() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stash2plex.sandbox.plex_emulator",
            "--port",
            "0",
            "--token",
            "cli-token",
            "--section",
            "Scenes=/data/Scenes",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the emulator printed no URL"
        line = process.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        sections = PlexServer(url, "cli-token").library.sections()
        assert [(s.title, s.locations) for s in sections] == [("Scenes", ["/data/Scenes"])]
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
    assert process.returncode == 0


def test_large_library_is_fast(emu: PlexEmulator, section: int, plex: PlexServer) -> None:
    keys = [emu.add_item(section, f"/data/Movies/big/{i:05d}.mkv") for i in range(2000)]
    movies = plex.library.section("Movies")
    started = time.monotonic()
    assert len(movies.all()) == 2000
    listing = time.monotonic() - started
    session = requests.Session()
    started = time.monotonic()
    for key in keys[:300]:
        response = session.put(
            f"{emu.url}/library/sections/{section}/all",
            params={"type": 1, "id": key, "title.value": f"T{key}", "title.locked": 1},
            headers={"X-Plex-Token": TOKEN},
            timeout=5,
        )
        assert response.status_code == 200
    edits = time.monotonic() - started
    # Generous bounds for a loaded 2-core CI box; typical runs are ten times faster.
    assert listing < 5 and edits < 5, (listing, edits)


# ---------------------------------------------------------------------- situations users meet
def _agent():
    from stash2plex.sandbox.plex_model import AgentMetadata

    return AgentMetadata(
        title="The Long Harbour",
        summary="A ferry captain's last winter.",
        studio="Gaumont",
        originally_available_at="1998-04-02",
        genres=("Drama", "Mystery", "Romance"),
        actors=tuple(ActorState(n, "Herself", None) for n in ("A", "B", "C", "D")),
        guid="plex://movie/5d7768265af944001f1f6977",
    )


@pytest.mark.parametrize("overwrites", [True, False])
def test_an_agent_filled_item_shows_its_metadata_and_a_refresh_restores_unlocked_fields(
    emu: PlexEmulator, section: int, plex: PlexServer, overwrites: bool
) -> None:
    emu.behaviour.agent_overwrites_unlocked = overwrites
    key = emu.add_item(section, "/data/Movies/harbour.mkv", agent=_agent())
    state = emu.item(key)
    assert (state.title, state.studio, state.originally_available_at, state.year) == (
        "The Long Harbour",
        "Gaumont",
        "1998-04-02",
        1998,
    )
    assert [a.name for a in state.actors] == ["A", "B", "C", "D"] and not state.locked
    assert state.guid == "plex://movie/5d7768265af944001f1f6977"
    listing = xml_of(get(emu, f"/library/sections/{section}/all?type=1"))
    video_el = listing.find("Video")
    assert [r.get("tag") for r in video_el.findall("Role")] == ["A", "B", "C"]  # truncated
    assert len(video_el.findall("Genre")) == 2

    movie = plex.fetchItem(key)
    movie.edit(
        **{
            "actor.locked": 0,
            "actor[].tag.tag-": "A,B,C,D",
            "title.value": "Mine",
            "title.locked": 1,
        }
    )
    movie.edit(**{"summary.value": "", "summary.locked": 0})
    movie.refresh()
    state = emu.item(key)
    assert state.title == "Mine"  # locked
    if overwrites:
        assert state.summary == "A ferry captain's last winter."
        assert [a.name for a in state.actors] == ["A", "B", "C", "D"]
    else:
        assert state.summary == "" and state.actors == []


def test_one_file_can_be_in_two_libraries_as_two_items(emu: PlexEmulator, section: int) -> None:
    """Two libraries whose folders overlap each hold the file, as a real Plex does."""
    other = emu.add_section("All Videos", ["/data"])
    first = emu.add_item(section, "/data/Movies/shared.mkv")
    second = emu.add_item(other, "/data/Movies/shared.mkv")
    assert first != second
    assert emu.find_by_file("/data/Movies/shared.mkv") == first
    assert emu.find_by_file("/data/Movies/shared.mkv", other) == second
    with pytest.raises(ValueError, match="already in the library"):
        emu.add_item(other, "/data/Movies/shared.mkv")
    for section_id, key in ((section, first), (other, second)):
        listing = xml_of(get(emu, f"/library/sections/{section_id}/all?type=1"))
        assert [v.get("ratingKey") for v in listing.findall("Video")] == [str(key)]
    assert emu.move_file("/data/Movies/shared.mkv", "/data/Movies/moved.mkv", section_id=other) == (
        second
    )
    assert emu.find_by_file("/data/Movies/shared.mkv") == first
    emu.delete_item(first)
    assert emu.find_by_file("/data/Movies/shared.mkv") is None
    assert emu.find_by_file("/data/Movies/moved.mkv") == second


def test_fields_emptied_and_locked_stay_empty_through_an_agent_refresh(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock
) -> None:
    """docs/plex-api-contract.md §3.1: a locked field survives a refresh, an empty one too;
    the agent still fills what is unlocked. Immediately and after a refresh delay."""
    emu.behaviour.refresh_delay = 2
    key = emu.add_item(section, "/data/Movies/harbour.mkv", agent=_agent())
    movie = plex.fetchItem(key)
    movie.edit(
        **{
            "summary.value": "",
            "summary.locked": 1,
            "studio.value": "",
            "studio.locked": 1,
            "originallyAvailableAt.value": "",
            "originallyAvailableAt.locked": 1,
            "genre.locked": 1,
            "genre[].tag.tag-": "Drama,Mystery,Romance",
            "actor.locked": 1,
            "actor[].tag.tag-": "A,B,C,D",
            "title.value": "",
            "title.locked": 0,
        }
    )
    movie.refresh()
    clock.advance(3)
    emu.run_due_scans()
    state = emu.item(key)
    assert state.refresh_count == 1
    assert (state.summary, state.studio, state.originally_available_at) == ("", "", None)
    assert (state.genres, state.actors) == ([], [])
    assert {"summary", "studio", "originallyAvailableAt", "genre", "actor"} <= state.locked
    assert state.title == "The Long Harbour"  # unlocked: the agent's again


@pytest.mark.parametrize("bumps", [False, True])
def test_a_renamed_file_keeps_its_item_and_rating_key(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock, bumps: bool
) -> None:
    emu.behaviour.path_change_bumps_updated_at = bumps
    key = emu.add_item(section, "/data/Movies/old name.mkv")
    added = emu.item(key).added_at
    clock.advance(60)
    assert emu.move_file("/data/Movies/old name.mkv", "/data/Movies/new name.mkv") == key
    state = emu.item(key)
    assert state.files == ["/data/Movies/new name.mkv"] and state.added_at == added
    assert (state.updated_at > added) is bumps
    assert emu.find_by_file("/data/Movies/old name.mkv") is None
    assert plex.fetchItem(key).locations == ["/data/Movies/new name.mkv"]
    with pytest.raises(KeyError):
        emu.move_file("/data/Movies/old name.mkv", "/x.mkv")


def test_stacked_parts_windows_and_nfd_paths_are_served_as_plex_spells_them(
    emu: PlexEmulator, section: int, plex: PlexServer
) -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", "M:\\Ünïcode Földer\\Café - part1.mp4")
    files = [nfd, "M:\\Ünïcode Földer\\Café - part2.mp4"]
    key = emu.add_item(section, files, sizes=[1, 2], stacked=True)
    movie = plex.fetchItem(key)
    assert movie.locations == files
    # Stacked: one Media holding a Part per file (versions would be one Media each).
    [medium] = movie.media
    assert [p.file for p in medium.parts] == files
    versions = plex.fetchItem(emu.add_item(section, ["/v/a.mkv", "/v/b.mkv"]))
    assert [[p.file for p in m.parts] for m in versions.media] == [["/v/a.mkv"], ["/v/b.mkv"]]
    assert movie.title == unicodedata.normalize("NFD", "Café - part1")


def test_a_tv_section_gets_the_series_agent_and_lists_no_movies(
    emu: PlexEmulator, plex: PlexServer
) -> None:
    shows = emu.add_section("Shows", ["/data/TV"], "show")
    [directory] = [d for d in xml_of(get(emu, "/library/sections")) if d.get("key") == str(shows)]
    assert (directory.get("type"), directory.get("agent"), directory.get("scanner")) == (
        "show",
        "tv.plex.agents.series",
        "Plex TV Series",
    )
    assert xml_of(get(emu, f"/library/sections/{shows}/all?type=1")).get("totalSize") == "0"
    with pytest.raises(ValueError):
        emu.add_item(shows, "/data/TV/Show/S01E01.mkv")


def test_the_control_api_adds_agent_items_and_moves_files(emu: PlexEmulator, section: int) -> None:
    control = EmulatorControl(emu.url)
    key = control.add_item(section, "/data/Movies/a.mkv", agent=_agent())
    assert control.item(key)["title"] == "The Long Harbour"
    assert control.move_file("/data/Movies/a.mkv", "/data/Movies/b.mkv") == key
    assert control.find_by_file("/data/Movies/b.mkv") == key


def test_a_library_deleted_and_added_again_through_plexapi_finds_its_media_again(
    emu: PlexEmulator, section: int, plex: PlexServer, clock: FakeClock
) -> None:
    """Plex Web's Delete Library and Add Library, as plexapi sends them: the media stay on
    disk, the new library's first scan finds them as new, bare items under a new ratingKey.
    (plexapi's `Library.add` first browses the folder through /services/browse, which the
    emulator does not serve: its request is sent as it would send it.)"""
    old = rich_item(emu, section, plex)
    plex.library.sectionByID(section).delete()
    assert emu.items() == [] and [s.title for s in plex.library.sections()] == []

    params = {
        "name": "Movies",
        "type": "movie",
        "agent": "tv.plex.agents.none",
        "scanner": "Plex Video Files Scanner",
        "language": "xn",
        "location": "/data/Movies",
    }
    assert get(emu, "/library/sections", method="POST", params=params).status_code == 200
    (added,) = PlexServer(emu.url, TOKEN, timeout=5).library.sections()  # plexapi caches
    assert added.title == "Movies" and added.locations == ["/data/Movies"]
    clock.advance(1)  # the first scan's delay
    emu.run_due_scans()
    (movie,) = added.all()
    assert movie.ratingKey != old and movie.title == "Wicked (2024)"
    assert [p.file for p in movie.iterParts()] == ["/data/Movies/Wicked (2024).mkv"]
    assert get(emu, f"/library/sections/{added.key + 9}", method="DELETE").status_code == 404
    del params["location"]
    assert get(emu, "/library/sections", method="POST", params=params).status_code == 400
