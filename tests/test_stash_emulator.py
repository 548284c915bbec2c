"""The Stash emulator over real HTTP: GraphQL semantics, images, auth and faults."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from stash2plex.clients import stash_documents as docs
from stash2plex.clients.stash import StashClient, StashConnection
from stash2plex.sandbox import images
from stash2plex.sandbox.library import SampleLibrary, VideoFile, generate_library
from stash2plex.sandbox.stash_emulator import StashEmulator

ALL_IDS = {"sort": "id", "direction": "ASC", "per_page": -1}


class Clock:
    """A settable clock for the emulator (cookie expiry, updated_at bumps)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def library() -> SampleLibrary:
    return generate_library(60, seed=11)


@pytest.fixture
def stash(library: SampleLibrary) -> Iterator[StashEmulator]:
    with StashEmulator(library) as emulator:
        yield emulator


def post(
    stash: StashEmulator, query: str, variables: dict | None = None, **kwargs: Any
) -> requests.Response:
    return requests.post(
        f"{stash.url}/graphql", json={"query": query, "variables": variables or {}}, **kwargs
    )


def data(stash: StashEmulator, query: str, variables: dict | None = None) -> dict:
    response = post(stash, query, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def scene_ids(stash: StashEmulator, scene_filter: dict | None = None, **find: Any) -> list[int]:
    variables = {"filter": {**ALL_IDS, **find}, "scene_filter": scene_filter or {}}
    found = data(stash, docs.FIND_SCENE_IDS, variables)["findScenes"]
    return [int(s["id"]) for s in found["scenes"]]


# --------------------------------------------------------------------------- scenes
def test_find_scene_answers_every_field_the_project_asks_for(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    scene = next(
        s for s in library.scenes.values() if len(s.files) == 2 and s.performer_ids and s.studio_id
    )
    scene.group_ids = [1]
    got = data(stash, docs.FIND_SCENE, {"id": str(scene.id)})["findScene"]
    assert got["id"] == str(scene.id)
    assert (got["title"], got["details"], got["date"]) == (scene.title, scene.details, scene.date)
    assert (got["rating100"], got["organized"], got["code"]) == (
        scene.rating100,
        scene.organized,
        scene.code,
    )
    assert (got["created_at"], got["updated_at"], got["urls"]) == (
        scene.created_at,
        scene.updated_at,
        scene.urls,
    )
    assert [f["path"] for f in got["files"]] == [f.path for f in scene.files]  # primary first
    assert [f["size"] for f in got["files"]] == [f.size for f in scene.files]
    assert isinstance(got["files"][0]["size"], int) and got["files"][0]["basename"]
    unix = int(datetime.fromisoformat(scene.updated_at).timestamp())
    assert got["paths"]["screenshot"] == f"{stash.url}/scene/{scene.id}/screenshot?t={unix}"
    studio = library.studios[scene.studio_id]
    assert got["studio"]["name"] == studio.name
    if studio.parent_id:
        assert got["studio"]["parent_studio"]["name"] == library.studios[studio.parent_id].name
    assert [p["name"] for p in got["performers"]] == [
        library.performers[i].name for i in scene.performer_ids
    ]
    for performer in got["performers"]:
        has_image = library.performers[int(performer["id"])].has_image
        assert performer["image_path"].endswith("&default=true") != has_image
    assert [t["name"] for t in got["tags"]] == [library.tags[i].name for i in scene.tag_ids]
    group = library.groups[1]
    got_group = got["groups"][0]["group"]
    assert {k: got_group[k] for k in ("id", "name", "synopsis")} == {
        "id": "1",
        "name": group.name,
        "synopsis": group.synopsis,
    }
    assert "/group/1/frontimage?t=" in got_group["front_image_path"]
    assert "scene_index" in got["groups"][0]
    assert data(stash, docs.FIND_SCENE, {"id": "9999"}) == {"findScene": None}


def test_image_urls_follow_the_host_the_client_used(stash: StashEmulator) -> None:
    response = requests.post(
        f"{stash.url}/graphql",
        json={"query": "{ findScene(id: 1) { paths { screenshot } } }"},
        headers={"Host": "stash.local:9999"},
    )
    assert response.json()["data"]["findScene"]["paths"]["screenshot"].startswith(
        "http://stash.local:9999/scene/1/screenshot?t="
    )


def test_paging_count_and_defaults(stash: StashEmulator, library: SampleLibrary) -> None:
    total = len(library.scenes)
    seen: list[int] = []
    for page in range(1, 10):
        variables = {"filter": {"page": page, "per_page": 7, "sort": "id"}}
        found = data(stash, docs.FIND_SCENE_IDS, variables)["findScenes"]
        assert found["count"] == total
        seen += [int(s["id"]) for s in found["scenes"]]
    assert seen == sorted(library.scenes)
    first = data(stash, docs.FIND_SCENE_IDS, {"filter": {"page": 0, "per_page": 5, "sort": "id"}})
    assert [s["id"] for s in first["findScenes"]["scenes"]] == ["1", "2", "3", "4", "5"]
    default = data(stash, docs.FIND_SCENE_IDS, {})["findScenes"]
    assert len(default["scenes"]) == 25 and default["count"] == total
    assert len(scene_ids(stash)) == total  # per_page -1 = all
    beyond = data(stash, docs.FIND_SCENE_IDS, {"filter": {"page": 50, "per_page": 10}})
    assert beyond["findScenes"] == {"count": total, "scenes": []}


def test_sort_direction_whitelist_and_random_seed(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    assert scene_ids(stash, direction="DESC") == sorted(library.scenes, reverse=True)
    by_updated = scene_ids(stash, sort="updated_at")
    stamps = [library.scenes[i].updated_at for i in by_updated]
    assert stamps == sorted(stamps)
    assert scene_ids(stash, sort="random_42") == scene_ids(stash, sort="random_42")
    assert sorted(scene_ids(stash, sort="random_42")) == sorted(library.scenes)
    for sort in ("title", "date", "path", "filesize", "rating", "studio", "play_count"):
        assert sorted(scene_ids(stash, sort=sort)) == sorted(library.scenes)
    response = post(stash, docs.FIND_SCENE_IDS, {"filter": {"sort": "title; DROP TABLE scenes"}})
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["message"] == "invalid sort: title; DROP TABLE scenes"


def test_title_sort_is_natural_and_null_dates_come_first(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    for scene_id, title in zip((1, 2, 3), ("Part 10", "part 2", "Part 1"), strict=True):
        library.scenes[scene_id].title = title
    subset = {"id": {"value": 3, "modifier": "LESS_THAN"}}
    assert scene_ids(stash, subset, sort="title") == [2, 1]  # "part 2" < "Part 10"
    subset = {"id": {"value": 1, "value2": 3, "modifier": "BETWEEN"}}
    assert scene_ids(stash, subset, sort="title") == [3, 2, 1]
    library.scenes[1].date, library.scenes[2].date, library.scenes[3].date = "2020", None, "2019-05"
    assert scene_ids(stash, subset, sort="date") == [2, 3, 1]
    assert scene_ids(stash, subset, sort="date", direction="DESC") == [1, 3, 2]


def test_updated_at_filter_compares_text_like_stash(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    for scene in library.scenes.values():
        scene.updated_at = "2025-01-01T00:00:00+10:00"
    library.scenes[5].updated_at = "2025-06-01T12:00:00+10:00"
    library.scenes[6].updated_at = "2025-06-01T12:00:01+10:00"
    library.scenes[7].updated_at = "2025-06-01T13:30:00+10:00"

    def changed(value: str, modifier: str = "GREATER_THAN", **extra: str) -> list[int]:
        criterion = {"value": value, "modifier": modifier, **extra}
        return scene_ids(stash, {"updated_at": criterion})

    assert changed("2025-06-01T12:00:00+10:00") == [6, 7]  # strictly greater
    # The same instant written in UTC compares as text: "2025-06-01T02:..." < every local value.
    assert changed("2025-06-01T02:00:00Z") == [5, 6, 7]
    # The UI's minute-precision local value works because it is a text prefix.
    assert changed("2025-06-01T12:00") == [5, 6, 7]
    assert changed("2025-06-01T12:00:01+10:00", "LESS_THAN") == [
        i for i in sorted(library.scenes) if i not in (6, 7)
    ]
    between = changed("2025-06-01T12:00:00+10:00", "BETWEEN", value2="2025-06-01T13:00:00+10:00")
    assert between == [5, 6]
    created = scene_ids(stash, {"created_at": {"value": "2000", "modifier": "GREATER_THAN"}})
    assert created == sorted(library.scenes)


def test_performer_filters(stash: StashEmulator, library: SampleLibrary) -> None:
    scenes = library.scenes.values()
    library.scenes[1].performer_ids = [3, 4]
    includes = {"performers": {"value": ["3"], "modifier": "INCLUDES"}}
    assert scene_ids(stash, includes) == sorted(s.id for s in scenes if 3 in s.performer_ids)
    every = {"performers": {"value": ["3", "4"], "modifier": "INCLUDES_ALL"}}
    assert 1 in scene_ids(stash, every)
    excludes = {"performers": {"value": ["3"], "modifier": "EXCLUDES"}}
    assert scene_ids(stash, excludes) == sorted(s.id for s in scenes if 3 not in s.performer_ids)
    nobody = {"performers": {"modifier": "IS_NULL"}}
    assert scene_ids(stash, nobody) == sorted(s.id for s in scenes if not s.performer_ids)
    unsupported = {"scene_filter": {"performers": {"value": ["1"], "modifier": "NOT_EQUALS"}}}
    response = post(stash, docs.FIND_SCENE_IDS, unsupported)
    assert response.status_code == 200 and response.json()["data"] is None


def test_studio_and_tag_filters_include_children_with_depth(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    child = next(s for s in library.studios.values() if s.parent_id)
    library.scenes[4].studio_id = child.id
    library.scenes[5].studio_id = child.parent_id
    exact = {"studios": {"value": [str(child.parent_id)], "modifier": "INCLUDES"}}
    deep = {"studios": {**exact["studios"], "depth": -1}}
    assert 5 in scene_ids(stash, exact) and 4 not in scene_ids(stash, exact)
    assert {4, 5} <= set(scene_ids(stash, deep))
    no_studio = scene_ids(stash, {"studios": {"modifier": "IS_NULL"}})
    assert no_studio == sorted(s.id for s in library.scenes.values() if s.studio_id is None)

    child_tag = next(t for t in library.tags.values() if t.parent_ids)
    library.scenes[6].tag_ids = [child_tag.id]
    parent_tag = {"tags": {"value": [str(child_tag.parent_ids[0])], "modifier": "INCLUDES"}}
    assert 6 not in scene_ids(stash, parent_tag)
    assert 6 in scene_ids(stash, {"tags": {**parent_tag["tags"], "depth": -1}})
    assert 6 in scene_ids(stash, {"tags": {**parent_tag["tags"], "depth": 1}})

    grouped = {"groups": {"value": ["1", "2"], "modifier": "INCLUDES"}}
    expected = sorted(s.id for s in library.scenes.values() if {1, 2} & set(s.group_ids))
    assert scene_ids(stash, grouped) == expected


def test_path_filter_has_sqlite_like_semantics(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    library.scenes[2].files = [VideoFile(900, "/data/stash/Café/Clip 01.mp4", 10**9, 60.0)]

    def by_path(value: str, modifier: str = "EQUALS") -> list[int]:
        return scene_ids(stash, {"path": {"value": value, "modifier": modifier}})

    assert by_path("/data/stash/Café/Clip 01.mp4") == [2]
    # SQLite's LIKE folds the case of ASCII letters only, and % and _ are wildcards.
    assert by_path("/DATA/STASH/CAFé/CLIP 01.MP4") == [2]
    assert by_path("/data/stash/CAFÉ/Clip 01.mp4") == []
    assert by_path("%/caf_/clip 01.mp4") == [2]
    assert 2 in by_path("zzz café/clip", "INCLUDES")  # any word
    assert by_path("", "IS_NULL") == sorted(s.id for s in library.scenes.values() if not s.files)


def test_title_organized_and_free_text_search(stash: StashEmulator, library: SampleLibrary) -> None:
    library.scenes[8].title = "Crème Brûlée at Midnight"
    library.scenes[8].organized = True
    title = {"title": {"value": "brûlée midnight", "modifier": "INCLUDES"}}
    assert 8 in scene_ids(stash, title)
    regex = {"title": {"value": "^Crème", "modifier": "MATCHES_REGEX"}, "organized": True}
    assert scene_ids(stash, regex) == [8]
    assert 8 in scene_ids(stash, q="crème MIDNIGHT") and 8 not in scene_ids(stash, q="-midnight")
    bad_regex = post(
        stash,
        docs.FIND_SCENE_IDS,
        {"scene_filter": {"title": {"value": "(", "modifier": "MATCHES_REGEX"}}},
    )
    assert bad_regex.status_code == 200 and bad_regex.json()["data"] is None


def test_and_or_not_sub_filters(stash: StashEmulator) -> None:
    three = {"value": 3, "modifier": "EQUALS"}
    either = {"id": three, "OR": {"id": {"value": 9, "modifier": "EQUALS"}}}
    assert scene_ids(stash, either) == [3, 9]
    below_five = {"value": 5, "modifier": "LESS_THAN"}
    assert scene_ids(stash, {"id": below_five, "NOT": {"id": three}}) == [1, 2, 4]
    assert scene_ids(stash, {"id": below_five, "AND": {"id": three}}) == [3]
    both = post(stash, docs.FIND_SCENE_IDS, {"scene_filter": {"AND": {}, "OR": {}}})
    assert both.json()["data"] is None


def test_ids_argument_returns_those_scenes_and_rejects_unknown_ones(stash: StashEmulator) -> None:
    query = "query($ids: [ID!]) { findScenes(ids: $ids) { count scenes { id } } }"
    found = data(stash, query, {"ids": ["7", "3"]})["findScenes"]
    assert found == {"count": 2, "scenes": [{"id": "7"}, {"id": "3"}]}
    response = post(stash, query, {"ids": ["3", "4242"]})
    assert response.json()["errors"][0]["message"] == "scene with id 4242 not found"


def test_query_errors_are_422_and_resolver_errors_are_200(stash: StashEmulator) -> None:
    bad_syntax = post(stash, "query { findScene(id: 1) { id ")
    assert bad_syntax.status_code == 422
    assert bad_syntax.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    unknown_field = post(stash, "{ findScene(id: 1) { id titel } }")
    assert unknown_field.status_code == 422
    assert "Cannot query field 'titel'" in unknown_field.json()["errors"][0]["message"]
    bad_variable = post(stash, docs.FIND_SCENES, {"filter": {"per_page": "many"}})
    assert bad_variable.status_code == 422
    not_json = requests.post(f"{stash.url}/graphql", data=b"{nope")
    assert not_json.status_code == 400
    resolver = post(stash, docs.FIND_SCENE, {"id": "abc"})
    assert resolver.status_code == 200 and resolver.json()["data"] == {"findScene": None}
    assert resolver.json()["errors"]


def test_the_project_client_reads_scenes_settings_and_images(library: SampleLibrary) -> None:
    settings = {"plex_url": "http://plex:32400", "dry_run": True}
    with StashEmulator(library, plugin_settings=settings, api_key="key-1") as stash:
        client = StashClient(StashConnection.from_server_connection(stash.server_connection()))
        assert client.version() == "v0.30.1"
        assert client.api_key() == "key-1"
        assert client.plugin_settings("Stash2Plex") == settings
        count, scenes = client.find_scenes(per_page=40)
        assert count == len(library.scenes) and len(scenes) == 40
        assert client.scene_ids() == sorted(library.scenes)
        covered = next(s for s in scenes if library.scenes[int(s["id"])].cover_version)
        image = client.image(covered["paths"]["screenshot"])
        assert image.content_type in ("image/jpeg", "image/png") and image.data
        assert image.sha1 == hashlib.sha1(image.data).hexdigest() and not image.placeholder
        bare = next(s for s in scenes if library.scenes[int(s["id"])].cover_version is None)
        placeholder = client.image(bare["paths"]["screenshot"])
        assert placeholder.placeholder and placeholder.data == b""  # the body was never read


# --------------------------------------------------------------------------- configuration
def test_plugin_settings_are_absent_until_saved(stash: StashEmulator) -> None:
    variables = {"include": ["Stash2Plex"]}
    assert data(stash, docs.PLUGIN_SETTINGS, variables) == {"configuration": {"plugins": {}}}
    stash.plugin_settings = {"plex_token": "t", "max_retries": 5, "dry_run": False}
    assert data(stash, docs.PLUGIN_SETTINGS, variables)["configuration"]["plugins"] == {
        "Stash2Plex": {"plex_token": "t", "max_retries": 5, "dry_run": False}
    }
    other = data(stash, docs.PLUGIN_SETTINGS, {"include": ["SomethingElse"]})
    assert other == {"configuration": {"plugins": {}}}
    assert data(stash, docs.PLUGIN_SETTINGS, {})["configuration"]["plugins"] != {}


def test_version_and_api_key(stash: StashEmulator) -> None:
    version = data(stash, docs.VERSION)["version"]
    assert version["version"] == "v0.30.1" and version["hash"] and version["build_time"]
    assert data(stash, docs.API_KEY) == {"configuration": {"general": {"apiKey": ""}}}
    stash.api_key = "generated"
    assert data(stash, docs.API_KEY)["configuration"]["general"]["apiKey"] == "generated"


# --------------------------------------------------------------------------- edits
def test_update_scene_bumps_updated_at_and_rename_does_not(library: SampleLibrary) -> None:
    clock = Clock(1_760_000_000.0)
    with StashEmulator(library, clock=clock, utc_offset="+10:00") as stash:
        scene = next(s for s in library.scenes.values() if s.performer_ids)
        before = data(stash, docs.FIND_SCENE, {"id": str(scene.id)})["findScene"]

        performer_id = scene.performer_ids[0]
        clock.now += 60
        stash.rename("performer", performer_id, "Renamed Performer")
        stash.rename("tag", scene.tag_ids[0] if scene.tag_ids else 1, "Renamed Tag")
        after = data(stash, docs.FIND_SCENE, {"id": str(scene.id)})["findScene"]
        assert after["updated_at"] == before["updated_at"]
        renamed = next(p for p in after["performers"] if p["id"] == str(performer_id))
        assert renamed["name"] == "Renamed Performer"
        old = next(p for p in before["performers"] if p["id"] == str(performer_id))
        assert renamed["image_path"] != old["image_path"]  # the performer's own stamp moved

        clock.now += 60
        stash.update_scene(scene.id, title="New “title”", cover_version=7)
        edited = data(stash, docs.FIND_SCENE, {"id": str(scene.id)})["findScene"]
        assert edited["title"] == "New “title”"
        assert edited["updated_at"] == "2025-10-09T18:55:20+10:00"
        assert edited["paths"]["screenshot"].endswith(f"?t={int(clock.now)}")
        with pytest.raises(TypeError):
            stash.update_scene(scene.id, nonsense=1)

        stash.delete_scene(scene.id)
        assert data(stash, docs.FIND_SCENE, {"id": str(scene.id)}) == {"findScene": None}


# --------------------------------------------------------------------------- images
def test_images_are_real_and_change_with_the_cover(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    scene = next(s for s in library.scenes.values() if s.cover_version is not None)
    url = f"{stash.url}/scene/{scene.id}/screenshot?t=1"
    first = requests.get(url)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == images.sniff_content_type(first.content)
    assert first.headers["Content-Type"] in ("image/jpeg", "image/png")
    assert first.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    stash.update_scene(scene.id, cover_version=scene.cover_version + 1)
    second = requests.get(url)
    assert hashlib.sha256(second.content).digest() != hashlib.sha256(first.content).digest()

    stash.update_scene(scene.id, cover_version=None)
    placeholder = requests.get(url)
    assert placeholder.status_code == 200
    assert placeholder.headers["Content-Type"] == "image/svg+xml"
    assert placeholder.content == images.PLACEHOLDER_SVG

    kinds = {p.has_image: p.id for p in library.performers.values()}
    photo = requests.get(f"{stash.url}/performer/{kinds[True]}/image")
    assert photo.headers["Content-Type"] == "image/jpeg" and photo.content[:3] == b"\xff\xd8\xff"
    default = requests.get(f"{stash.url}/performer/{kinds[False]}/image?default=true")
    assert default.headers["Content-Type"] == "image/png"
    logo = requests.get(f"{stash.url}/studio/1/image")
    assert logo.headers["Content-Type"] == "image/png" and logo.content.startswith(b"\x89PNG")
    for path in ("/scene/9999/screenshot", "/performer/9999/image", "/studio/9999/image", "/x"):
        assert requests.get(f"{stash.url}{path}").status_code == 404


def test_jpeg_and_png_encoders_write_well_formed_files() -> None:
    jpeg = images.scene_cover(1, 1)
    png = images.scene_cover(4, 1)
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    assert images.scene_cover(1, 1) != images.scene_cover(1, 2) != images.scene_cover(2, 1)


# --------------------------------------------------------------------------- auth
def test_auth_by_cookie_api_key_header_or_query(library: SampleLibrary) -> None:
    clock = Clock(1_760_000_000.0)
    with StashEmulator(library, api_key="secret-key", require_auth=True, clock=clock) as stash:
        graphql = f"{stash.url}/graphql"
        image = f"{stash.url}/scene/1/screenshot"
        query = {"query": docs.VERSION}
        assert requests.post(graphql, json=query).status_code == 401
        assert requests.get(image).status_code == 401

        cookie = stash.server_connection()["SessionCookie"]["Value"]
        assert requests.post(graphql, json=query, cookies={"session": cookie}).status_code == 200
        assert requests.get(image, cookies={"session": cookie}).status_code == 200
        assert requests.post(graphql, json=query, cookies={"session": "forged"}).status_code == 401

        assert requests.post(graphql, json=query, headers={"ApiKey": "secret-key"}).ok
        assert requests.get(f"{image}?apikey=secret-key").status_code == 200
        wrong = requests.post(
            graphql, json=query, headers={"ApiKey": "wrong"}, cookies={"session": cookie}
        )
        assert wrong.status_code == 401  # a presented key decides alone

        clock.now += 3601  # past max_session_age
        assert requests.post(graphql, json=query, cookies={"session": cookie}).status_code == 401
        fresh = stash.server_connection()["SessionCookie"]["Value"]
        assert requests.post(graphql, json=query, cookies={"session": fresh}).status_code == 200
        stash.expire_cookies()
        assert requests.post(graphql, json=query, cookies={"session": fresh}).status_code == 401
        assert requests.post(graphql, json=query, headers={"ApiKey": "secret-key"}).ok

        stash.require_auth = False
        assert requests.post(graphql, json=query).status_code == 200


def test_server_connection_has_stashs_shape(stash: StashEmulator) -> None:
    connection = stash.server_connection(
        plugin_dir="/stash/config/plugins/stash2plex", stash_dir="/stash/config"
    )
    assert set(connection) == {"Scheme", "Host", "Port", "SessionCookie", "Dir", "PluginDir"}
    assert (connection["Scheme"], connection["Host"], connection["Port"]) == (
        "http",
        "0.0.0.0",
        stash.port,
    )
    assert (connection["Dir"], connection["PluginDir"]) == (
        "/stash/config",
        "/stash/config/plugins/stash2plex",
    )
    cookie = connection["SessionCookie"]
    assert set(cookie) == {
        "Name", "Value", "Path", "Domain", "Expires", "RawExpires", "MaxAge", "Secure",
        "HttpOnly", "SameSite", "Raw", "Unparsed", "Quoted", "Partitioned",
    }  # fmt: skip
    assert cookie["Name"] == "session" and cookie["MaxAge"] == 3600 and cookie["Value"]
    assert cookie["Expires"].endswith("+10:00")
    assert stash.server_connection()["SessionCookie"]["Value"] != cookie["Value"]


# --------------------------------------------------------------------------- faults
def test_http_faults_count_down_and_are_logged(stash: StashEmulator) -> None:
    stash.fail(503, count=2)
    statuses = [post(stash, docs.VERSION).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert stash.count("Version") == 3  # failed attempts reached the server too
    assert stash.log[-1].operation_name == "Version" and stash.log[-1].variables == {}

    stash.fail(500)
    assert [post(stash, docs.VERSION).status_code for _ in range(3)] == [500, 500, 500]
    assert requests.get(f"{stash.url}/studio/1/image").status_code == 500
    stash.clear()
    assert post(stash, docs.VERSION).status_code == 200


def test_graphql_error_fault_and_latency(stash: StashEmulator) -> None:
    stash.graphql_error("database is locked", count=1)
    failed = post(stash, docs.API_KEY)
    assert failed.status_code == 200
    assert failed.json() == {"errors": [{"message": "database is locked"}], "data": None}
    assert post(stash, docs.API_KEY).json()["data"] is not None
    assert requests.get(f"{stash.url}/studio/1/image").status_code == 200

    stash.latency(0.3)
    started = time.monotonic()
    post(stash, docs.VERSION)
    assert time.monotonic() - started >= 0.3
    stash.clear()
    assert stash.count() == 3 and stash.count("ApiKey") == 2


def test_stop_drops_keep_alive_connections_and_restart_keeps_the_port(
    library: SampleLibrary,
) -> None:
    stash = StashEmulator(library).start()
    session = requests.Session()
    url = f"{stash.url}/graphql"
    assert session.post(url, json={"query": docs.VERSION}).status_code == 200
    port = stash.port
    stash.stop()
    with pytest.raises(requests.ConnectionError):
        session.post(url, json={"query": docs.VERSION}, timeout=5)
    stash.start()
    try:
        assert stash.port == port
        assert session.post(url, json={"query": docs.VERSION}).status_code == 200
    finally:
        stash.stop()


# --------------------------------------------------------------------------- situations
def test_a_deleted_entity_leaves_no_trace_a_query_could_follow(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    scene = next(s for s in library.scenes.values() if s.performer_ids and s.studio_id)
    performer, studio = scene.performer_ids[0], scene.studio_id
    tag = next(t for t in library.tags.values() if t.parent_ids)
    parent = tag.parent_ids[0]
    updated = scene.updated_at

    stash.delete_entity("performer", performer)
    stash.delete_entity("studio", studio)
    stash.delete_entity("tag", parent)

    shown = data(stash, docs.FIND_SCENE, {"id": str(scene.id)})["findScene"]
    assert str(performer) not in [p["id"] for p in shown["performers"]]
    assert shown["studio"] is None and shown["updated_at"] == updated
    include = {"performers": {"value": [str(performer)], "modifier": "INCLUDES"}}
    assert scene_ids(stash, include) == []
    assert parent not in library.tags[tag.id].parent_ids
    assert all(s.studio_id != studio for s in library.scenes.values())
    with pytest.raises(ValueError):
        stash.delete_entity("scene", scene.id)


def test_a_merge_moves_the_files_deletes_the_sources_and_fires_nothing(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    kept, merged = [s for s in library.scenes.values() if len(s.files) == 1][:2]
    merged_file = merged.files[0]
    stash.merge_scenes(kept.id, [merged.id])
    assert merged.id not in library.scenes
    shown = data(stash, docs.FIND_SCENE, {"id": str(kept.id)})["findScene"]
    assert [f["path"] for f in shown["files"]][-1] == merged_file.path
    assert data(stash, docs.FIND_SCENE, {"id": str(merged.id)})["findScene"] is None


def test_a_moved_file_keeps_its_scene_and_windows_paths_have_their_basename(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    scene = next(s for s in library.scenes.values() if len(s.files) == 1)
    old = scene.files[0].path
    assert stash.move_file(old, "C:\\Media\\Cam A\\clip01.mp4") == scene.id
    [file] = data(stash, docs.FIND_SCENE, {"id": str(scene.id)})["findScene"]["files"]
    assert (file["path"], file["basename"]) == ("C:\\Media\\Cam A\\clip01.mp4", "clip01.mp4")
    with pytest.raises(KeyError):
        stash.move_file(old, "/x.mp4")


def test_find_tags_pages_the_whole_hierarchy_with_several_parents(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    client = StashClient(StashConnection.from_url(stash.url))
    tags = client.tag_hierarchy()
    assert set(tags) == set(library.tags)
    night = next(t for t in library.tags.values() if len(t.parent_ids) > 1)
    assert set(tags[night.id][1]) == set(night.parent_ids)
    requests_before = stash.count("FindTagHierarchy")
    client.tag_hierarchy()
    assert stash.count("FindTagHierarchy") == requests_before  # read once per client
    client.forget_tag_hierarchy()
    client.tag_hierarchy()
    assert stash.count("FindTagHierarchy") == requests_before + 1
    page = data(stash, docs.FIND_TAG_HIERARCHY, {"filter": {"page": 2, "per_page": 5}})
    assert page["findTags"]["count"] == len(library.tags) and len(page["findTags"]["tags"]) == 5


def test_scenes_with_a_file_are_found_by_its_name_in_either_normal_form(
    stash: StashEmulator, library: SampleLibrary
) -> None:
    import unicodedata

    scene = next(s for s in library.scenes.values() if len(s.files) == 1)
    path = unicodedata.normalize("NFD", "/data/stash/Ünïcode Földer/Café – Ωmega.mp4")
    stash.update_scene(scene.id, files=[VideoFile(scene.files[0].id, path, 5, 1.0)])
    client = StashClient(StashConnection.from_url(stash.url))
    found = client.scenes_with_file("Café – Ωmega.mp4")  # asked in NFC
    assert [int(s["id"]) for s in found] == [scene.id]
    assert found[0]["files"][0]["size"] == 5


# Variables for each query document the project sends: the fast path must answer each one
# exactly as graphql-core's executor does.
_QUERY_VARIABLES: dict[str, dict[str, Any]] = {
    "FindScene": {"id": "5"},
    "FindScenes": {"filter": {"page": 2, "per_page": 50, "sort": "id"}, "scene_filter": {}},
    "FindSceneIds": {
        "filter": {"page": 1, "per_page": 1000, "sort": "title", "direction": "DESC"},
        "scene_filter": {"tags": {"value": ["3"], "modifier": "INCLUDES", "depth": -1}},
    },
    "FindSceneFiles": {
        "filter": {"per_page": -1, "sort": "id"},
        "scene_filter": {"path": {"value": '"e"', "modifier": "INCLUDES"}},
    },
    "FindSceneUpdates": {
        "filter": {"page": 1, "per_page": 1000, "sort": "id", "direction": "ASC"},
        "scene_filter": {
            "updated_at": {"value": "2024-01-01T00:00:00Z", "modifier": "GREATER_THAN"}
        },
    },
    "FindTagHierarchy": {"filter": {"page": 1, "per_page": 1000, "sort": "id"}},
    "PluginSettings": {"include": ["Stash2Plex"]},
    "ApiKey": {},
    "Version": {},
    "ScenesPlayState": {"ids": ["1", "2", "3"]},
    "ScenePlayState": {"id": "4"},
}


def test_the_fast_path_answers_every_query_exactly_as_graphql_core() -> None:
    from graphql import execute_sync
    from graphql.execution.values import get_variable_values
    from graphql.utilities import get_operation_ast

    from stash2plex.sandbox import stash_emulator as emulator

    library = generate_library(120, seed=3, traps=True)
    stash = StashEmulator(library, plugin_settings={"plex_url": "http://p"})
    schema = emulator.load_schema()
    queries = {
        name: document
        for name, document in docs.ALL_DOCUMENTS.items()
        if document.lstrip().startswith("query")
    }
    assert set(queries) <= set(_QUERY_VARIABLES), "give the new query document its variables"
    for name, document in queries.items():
        variables = _QUERY_VARIABLES[name]
        parsed, errors, _ = emulator._prepare(document)
        assert not errors and parsed is not None
        operation = get_operation_ast(parsed, None)
        assert operation is not None
        coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
        fast = emulator._plain_query(schema, operation, emulator._Root(stash, "http://h"), coerced)
        reference = execute_sync(
            schema, parsed, root_value=emulator._Root(stash, "http://h"), variable_values=variables
        ).formatted
        assert fast is not None, name
        assert fast == reference, name


def test_queries_the_fast_path_leaves_to_graphql_core_keep_their_answers(
    stash: StashEmulator,
) -> None:
    # A fragment and __typename are answered by graphql-core; a resolver error keeps its shape.
    body = data(
        stash,
        "query { findScene(id: 1) { ...F __typename } } fragment F on Scene { id title }",
    )
    assert body["findScene"]["__typename"] == "Scene" and body["findScene"]["id"] == "1"
    response = post(stash, "query { findScenes(ids: [999999]) { count } }")
    assert response.status_code == 200
    assert "not found" in response.json()["errors"][0]["message"]
