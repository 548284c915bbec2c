"""The emulators' plays, ratings and notifications, driven by the real clients: plexapi for Plex
(history paging, scrobble, timeline, accounts, the alert websocket, collection posters) and
GraphQL for Stash (sceneAddPlay, sceneSaveActivity, sceneUpdate and the hooks they fire)."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
import requests
from plexapi.server import PlexServer

from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.stash_emulator import StashEmulator

from .conftest import wait_until

TOKEN = "emulator-plays-token"


@pytest.fixture
def plex():
    with PlexEmulator(token=TOKEN) as emulator:
        section = emulator.add_section("Movies", ["/data"])
        for index in range(3):
            emulator.add_item(section, f"/data/m{index}.mkv", duration_ms=100_000)
        yield emulator
        assert emulator.log.unknown() == [] and emulator.internal_errors == []


def test_plexapi_reads_the_history_in_pages_newest_first(plex):
    server = PlexServer(plex.url, TOKEN)
    for n in range(250):
        plex.play(1 + n % 3, 1_700_000_000 + n)

    entries = server.history()

    assert len(entries) == 250
    assert [type(e).__name__ for e in entries[:1]] == ["MovieHistory"]
    assert entries[0].viewedAt > entries[-1].viewedAt
    assert plex.log.count("GET /status/sessions/history/all") == 3  # 100 per page
    since = server.history(mindate=datetime.fromtimestamp(1_700_000_200))
    assert len(since) == 50
    assert len(server.history(ratingKey=2)) == 83
    assert {e.accountID for e in entries} == {1}


def test_scrobble_timeline_and_progress_set_the_view_state(plex):
    server = PlexServer(plex.url, TOKEN)
    movie = server.fetchItem(1)
    movie.updateTimeline(40_000, state="stopped", duration=100_000)
    movie.reload()
    assert (movie.viewOffset, movie.viewCount) == (40_000, 0)
    movie.updateTimeline(95_000, state="stopped", duration=100_000)  # past 90 %: a play
    movie.reload()
    assert (movie.viewOffset, movie.viewCount, movie.isPlayed) == (0, 1, True)
    movie.markPlayed()
    movie.updateProgress(12_000)
    movie.reload()
    assert (movie.viewCount, movie.viewOffset) == (2, 12_000)
    assert len(plex.history()) == 2
    movie.markUnplayed()
    movie.reload()
    assert movie.viewCount == 0 and len(plex.history()) == 2  # PMS keeps the history
    plex.behaviour.unscrobble_clears_history = True
    movie.markPlayed()
    movie.markUnplayed()
    assert plex.history() == []


def test_accounts_and_other_users_plays(plex):
    server = PlexServer(plex.url, TOKEN)
    guest = plex.add_account("guest")
    plex.play(1, 1_700_000_000, account_id=guest)
    plex.play(1, 1_700_000_001)
    assert {(a.id, a.name) for a in server.systemAccounts()} >= {(1, "owner"), (guest, "guest")}
    assert [e.accountID for e in server.history(accountID=guest)] == [guest]
    assert server.fetchItem(1).viewCount == 1  # the token owner's own state


def test_the_alert_listener_receives_playing_and_timeline_notifications(plex):
    server = PlexServer(plex.url, TOKEN)
    received: list[dict] = []
    listener = server.startAlertListener(callback=received.append)
    try:
        wait_until(lambda: plex.library.subscribers, message="the websocket to subscribe")
        server.fetchItem(2).updateTimeline(30_000, state="paused", duration=100_000)
        plex.rate(2, 8.0)
        wait_until(lambda: len(received) >= 3, message="three notifications")
    finally:
        listener.stop()
    kinds = [r["type"] for r in received]
    assert kinds[0] == "playing" and "timeline" in kinds
    playing = received[0]["PlaySessionStateNotification"][0]
    assert (playing["ratingKey"], playing["state"], playing["viewOffset"]) == ("2", "paused", 30000)
    wait_until(lambda: not plex.library.subscribers, message="the socket to close")
    upgrade = next(r for r in plex.log.entries if r.route.endswith("notifications"))
    assert "X-Plex-Token" not in upgrade.query


def test_the_websocket_needs_the_token(plex):
    answer = requests.get(
        f"{plex.url}/:/websockets/notifications",
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "abc"},
        timeout=5,
    )
    assert answer.status_code == 401


def test_collections_take_posters_and_summaries(plex):
    server = PlexServer(plex.url, TOKEN)
    collection = server.library.section("Movies").createCollection(
        "Studio A", items=[server.fetchItem(1)]
    )
    collection.uploadPoster(filepath=b"\x89PNG fake poster bytes")
    collection.editSummary("About studio A")
    [state] = plex.collections(1)
    assert state.summary == "About studio A" and state.poster_sha1 and "summary" in state.locked
    collection.reload()
    assert collection.thumb.startswith(f"/library/metadata/{collection.ratingKey}/thumb/")


# --------------------------------------------------------------------------- Stash
@pytest.fixture
def stash():
    with StashEmulator(generate_library(20, seed=2)) as emulator:
        yield emulator


def gql(stash, query, variables=None):
    answer = requests.post(
        f"{stash.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_plays_and_activity_fire_no_hook_and_leave_updated_at(stash):
    scene = stash.library.scenes[1]
    updated = scene.updated_at
    added = gql(
        stash,
        "mutation($id: ID!, $t: [Timestamp!]) "
        "{ sceneAddPlay(id: $id, times: $t) { count history } }",
        {"id": "1", "t": ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20Z"]},
    )["data"]["sceneAddPlay"]
    saved = gql(
        stash,
        "mutation { sceneSaveActivity(id: 1, resume_time: 12.5, playDuration: 30) }",
    )["data"]["sceneSaveActivity"]
    read = gql(
        stash,
        "{ findScene(id: 1) { play_count play_history last_played_at resume_time play_duration"
        " updated_at } }",
    )["data"]["findScene"]

    assert added["count"] == 2 and len(added["history"]) == 2  # Stash keeps duplicates
    assert saved is True
    assert read["play_count"] == 2 and read["resume_time"] == 12.5
    assert read["play_duration"] == 30.0 and read["updated_at"] == updated
    assert read["last_played_at"] == read["play_history"][0]
    assert read["play_history"][0].startswith("2023-11-15T08:13:20+10:00")
    assert stash.hooks == []
    bad = gql(stash, 'mutation { sceneAddPlay(id: 1, times: ["yesterday"]) { count } }')
    assert "invalid timestamp" in bad["errors"][0]["message"]


def test_scene_update_fires_scene_update_post_inside_the_request(stash):
    seen_during_request = threading.Event()
    stash.on_hook = lambda hook: seen_during_request.set()
    started = time.time()
    answer = gql(
        stash,
        "mutation($i: SceneUpdateInput!) { sceneUpdate(input: $i) { id rating100 updated_at } }",
        {"i": {"id": "3", "rating100": 80}},
    )["data"]["sceneUpdate"]
    assert seen_during_request.is_set() and time.time() - started < 5
    [hook] = stash.hooks
    assert hook["type"] == "Scene.Update.Post" and hook["id"] == 3
    assert hook["inputFields"] == ["id", "rating100"]
    assert hook["input"]["rating100"] == 80 and hook["input"]["title"] is None
    assert "play_count" in hook["input"]  # every SceneUpdateInput field, unset = null
    assert answer["rating100"] == 80 and stash.library.scenes[3].rating100 == 80


def test_studio_and_group_images_and_texts(stash):
    studio = next(s for s in stash.library.studios.values() if s.details)
    scene = next(s for s in stash.library.scenes.values() if s.studio_id == studio.id)
    read = gql(
        stash,
        "query($id: ID!) { findScene(id: $id) { studio { details image_path } "
        "groups { group { synopsis front_image_path } } } }",
        {"id": str(scene.id)},
    )["data"]["findScene"]
    assert read["studio"]["details"] == studio.details
    image = requests.get(read["studio"]["image_path"], timeout=5)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    studio.has_image = False
    again = gql(
        stash,
        "query($id: ID!) { findScene(id: $id) { studio { image_path } } }",
        {"id": str(scene.id)},
    )
    assert again["data"]["findScene"]["studio"]["image_path"].endswith("&default=true")
