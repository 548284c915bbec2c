"""Talking to Stash properly: loopback for a wildcard bind address, the cookie swapped for the
API key so long runs survive its expiry, and a timeout on every request."""

from __future__ import annotations

import pytest

from stash2plex.clients.stash import StashClient, StashConnection
from stash2plex.engine.context import API_KEY_KEY, connect_stash
from stash2plex.errors import AuthError, TransientError
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
