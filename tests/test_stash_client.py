"""Talking to Stash properly: loopback for a wildcard bind address, the cookie swapped for the
API key so long runs survive its expiry, a timeout on every request, and a busy Stash (its
database locked by a scan) asked again after a pause."""

from __future__ import annotations

import random

import pytest

from stash2plex.clients.http import BUSY_RETRY_DELAYS
from stash2plex.clients.stash import StashClient, StashConnection
from stash2plex.engine.context import API_KEY_KEY, connect_stash
from stash2plex.errors import AuthError, StashDownError, TransientError
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.stash_emulator import StashEmulator
from stash2plex.store.db import Store


@pytest.mark.parametrize(
    "host, expected",
    [
        ("0.0.0.0", "http://127.0.0.1:9999"),
        ("::", "http://127.0.0.1:9999"),
        ("", "http://127.0.0.1:9999"),
        ("192.168.1.5", "http://192.168.1.5:9999"),
        ("fe80::1", "http://[fe80::1]:9999"),
    ],
)
def test_wildcard_bind_addresses_become_loopback(host, expected):
    connection = StashConnection.from_server_connection(
        {"Scheme": "http", "Host": host, "Port": 9999, "SessionCookie": {"Value": "c"}}
    )
    assert connection.url == expected


@pytest.mark.parametrize("cookie", ["session=abc", ["x"], 7, None, {"Name": "session"}])
def test_a_session_cookie_of_another_shape_is_no_cookie_not_a_crash(cookie):
    # A malformed server_connection once made every drain of the worker end in a traceback.
    connection = StashConnection.from_server_connection(
        {"Scheme": "http", "Host": "127.0.0.1", "Port": 9999, "SessionCookie": cookie}, "key"
    )
    assert (connection.url, connection.session_cookie, connection.api_key) == (
        "http://127.0.0.1:9999",
        None,
        "key",
    )
    assert StashConnection.from_server_connection("not a mapping").url == "http://127.0.0.1:9999"


@pytest.fixture
def stash():
    with StashEmulator(
        generate_library(5, seed=1), api_key="stash-key-123456", require_auth=True
    ) as emulator:
        yield emulator


def test_the_cookie_is_swapped_for_the_api_key_and_survives_expiry(stash, tmp_path):
    with Store.open(tmp_path) as store:
        client = connect_stash(store, stash.server_connection())
        assert store.get_value(API_KEY_KEY) == "stash-key-123456"
        stash.expire_cookies()
        assert client.find_scene(1)["id"] == "1"
        # A later worker (new process) uses the stored key, not the dead cookie.
        assert connect_stash(store).find_scene(2)["id"] == "2"


def test_without_an_api_key_an_expired_cookie_says_what_to_do(stash, tmp_path):
    stash.api_key = ""
    with Store.open(tmp_path) as store:
        client = connect_stash(store, stash.server_connection())
        stash.expire_cookies()
        with pytest.raises(AuthError, match="generate an API key"):
            client.find_scene(1)


def test_every_request_has_a_timeout(stash):
    stash.require_auth = False
    client = StashClient(StashConnection(stash.url), timeout=(1.0, 0.3))
    stash.latency(1.0)
    with pytest.raises(TransientError, match="in time"):
        client.find_scene(1)


class Pauses(list):
    """An injected `sleep`: records each pause instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def busy_client(stash, pauses: Pauses) -> StashClient:
    stash.require_auth = False
    return StashClient(StashConnection(stash.url), sleep=pauses, rng=random.Random(3))


def test_a_locked_stash_database_is_asked_again_after_a_pause(stash):
    # Stash answers "database is locked" while a scan or an import holds its database.
    pauses = Pauses()
    client = busy_client(stash, pauses)
    stash.graphql_error("findScene: beginning transaction: database is locked", count=2)
    assert client.find_scene(1)["id"] == "1"
    assert len(stash.log) == 3
    assert [d / 2 <= p <= d for p, d in zip(pauses, BUSY_RETRY_DELAYS, strict=True)] == [
        True,
        True,
    ]
    # A mutation refused that way was rolled back by Stash: sent again too, applied once.
    stash.graphql_error("database is locked", count=1)
    client.add_plays(1, ["2026-01-01T10:00:00Z"])
    assert [e.operation_name for e in stash.log[3:]] == ["SceneAddPlay", "SceneAddPlay"]
    assert len(stash.library.scenes[1].play_history) == 1


def test_a_busy_refusal_that_outlasts_the_pauses_is_a_transient_failure(stash):
    pauses = Pauses()
    client = busy_client(stash, pauses)
    stash.fail(500)
    with pytest.raises(TransientError, match="HTTP 500"):
        client.find_scene(1)
    assert len(stash.log) == len(BUSY_RETRY_DELAYS) + 1


def test_a_mutation_refused_with_500_is_not_sent_again_and_503_never_is(stash):
    # After a 500 Stash may have applied it: a second play must not be recorded.
    pauses = Pauses()
    client = busy_client(stash, pauses)
    stash.fail(500, count=1)
    with pytest.raises(TransientError, match="HTTP 500"):
        client.add_plays(1, ["2026-01-01T10:00:00Z"])
    stash.fail(503, count=1)
    with pytest.raises(StashDownError):
        client.find_scene(1)
    assert len(stash.log) == 2 and pauses == []


def test_a_cover_download_refused_for_now_is_asked_again(stash):
    pauses = Pauses()
    client = busy_client(stash, pauses)
    url = client.find_scene(1)["paths"]["screenshot"]
    stash.fail(502, count=1)
    image = client.image(url)
    assert image.data and not image.placeholder and len(pauses) == 1


def test_an_error_beside_a_null_scene_is_a_failure_not_a_missing_scene(stash):
    # Stash answers a failed findScene {"errors": [...], "data": {"findScene": null}}: read
    # as "no such scene", the scene's link to its Plex item would be dropped.
    client = busy_client(stash, Pauses())
    stash.graphql_error("findScene: something broke", count=1)
    with pytest.raises(TransientError, match="something broke"):
        client.find_scene(1)
    assert client.find_scene(1)["id"] == "1"
