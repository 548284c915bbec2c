"""Stash behind a reverse proxy: the image URLs it hands out name its `external_host` (a public
name the plugin often cannot reach, or only through the proxy's login), so covers are fetched
where Stash2Plex talks to Stash. (That no credential goes to another address:
tests/test_http_transport.py.)"""

from __future__ import annotations

import http.server
import socket

import pytest

from stash2plex.clients.stash import StashClient, StashConnection, image_address
from stash2plex.errors import ConfigError, StashDownError, SyncError, TransientError
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.stash_emulator import StashEmulator
from stash2plex.sandbox.verify import library_problems

from .conftest import serving
from .sandbox import PLEX_TOKEN, sandbox

STASH = "http://127.0.0.1:9999"


@pytest.mark.parametrize(
    "url, fetched",
    [
        # Stash's own address: as it is.
        (f"{STASH}/scene/7/screenshot?t=1700000000", f"{STASH}/scene/7/screenshot?t=1700000000"),
        # external_host, with and without a path of the proxy's, any scheme: at Stash's address.
        (
            "https://stash.example.com/scene/7/screenshot?t=1700000000",
            f"{STASH}/scene/7/screenshot?t=1700000000",
        ),
        (
            "https://example.com/media/stash/studio/12/image?t=5",
            f"{STASH}/studio/12/image?t=5",
        ),
        ("http://nas.local:8080/group/3/frontimage", f"{STASH}/group/3/frontimage"),
        ("https://example.com/performer/41/image", f"{STASH}/performer/41/image"),
        # external_host written with a query of its own: the route is found all the same.
        (
            "https://ext.invalid/a?b=c/scene/7/screenshot?t=1700000000",
            f"{STASH}/scene/7/screenshot?t=1700000000",
        ),
        ("https://example.com/scene/7/screenshot#top", f"{STASH}/scene/7/screenshot"),
        # Not an image route of Stash's: left as it is (and fetched without credentials).
        ("https://cdn.example.com/covers/7.jpg", "https://cdn.example.com/covers/7.jpg"),
        (
            "https://example.com/scene/7/screenshot/extra",
            "https://example.com/scene/7/screenshot/extra",
        ),
    ],
)
def test_an_image_stash_hands_out_is_fetched_at_the_address_stash2plex_uses(url, fetched):
    assert image_address(url, STASH) == fetched
    assert image_address(url, STASH + "/") == fetched  # a connection written with a slash
    assert image_address(url, STASH.upper()).lower() == fetched.lower()  # and in capitals


@pytest.mark.parametrize(
    "external_host",
    ["https://stash.example.invalid", "https://example.invalid/stash", "https://ext.invalid/a?b=c"],
)
def test_covers_reach_plex_when_stash_hands_out_an_external_host_nobody_here_can_reach(
    tmp_path, external_host, caplog
):
    # Before: every cover download went to the public name and failed, and the queue paused
    # with "Stash is not reachable for an image download" while Stash answered every query.
    with sandbox(tmp_path, scenes=12, seed=5) as box:
        box.stash.external_host = external_host
        report = box.drain()
        with box.store() as store:
            assert store.holds().pause is None
            assert {job.state for job in store.jobs()} == {"done"}
        assert report.synced > 0
        assert library_problems(box.plex, box.library) == {}  # posters and backgrounds too
        images = [status for _, path, status in box.stash.http_log if "/screenshot" in path]
        assert images and set(images) == {200}
    assert PLEX_TOKEN not in caplog.text


def test_an_address_typed_with_capitals_keeps_its_credentials(tmp_path, caplog):
    # `HTTP://` (a phone's keyboard) or a host in capitals is the same origin: the token and
    # the API key must still go with every request (they once were taken for another origin).
    api_key = "stash-key-123456"
    with StashEmulator(generate_library(3, seed=1), api_key=api_key, require_auth=True) as stash:
        client = StashClient(
            StashConnection.from_url(stash.url.replace("http://", "HTTP://"), api_key)
        )
        assert client.find_scene(1) is not None
        assert client.image(f"{stash.url}/scene/1/screenshot").sha1
    with sandbox(tmp_path, scenes=8, seed=5) as box:
        box.settings(
            plex_url=box.plex.url.replace("http://", "HTTP://").replace("127.0.0.1", "LocalHost")
        )
        box.drain()
        with box.store() as store:
            assert store.holds().pause is None
            assert {job.state for job in store.jobs()} == {"done"}
        assert library_problems(box.plex, box.library) == {}
    assert PLEX_TOKEN not in caplog.text and api_key not in caplog.text


def test_an_image_address_elsewhere_that_fails_is_that_scene_s_problem_not_stash_down():
    # A URL that is not an image address of Stash's is fetched as it is; when it cannot be
    # reached, Stash itself still answers: the scene waits (TransientError) with the setting
    # named, and the queue is not paused as if Stash were down (StashDownError).
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with StashEmulator(generate_library(3, seed=1)) as stash:
        client = StashClient(StashConnection.from_url(stash.url))
        with pytest.raises(SyncError) as raised:
            client.image(f"{dead}/covers/1.jpg")
        with pytest.raises(StashDownError):  # Stash's own address failing is Stash down
            StashClient(StashConnection.from_url(dead)).image(f"{dead}/scene/1/screenshot")
    assert type(raised.value) is TransientError
    assert "Stash gives this scene's image at 127.0.0.1, which cannot be reached" in str(
        raised.value.message
    )
    assert "external_host" in raised.value.message


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("stash.local:9999", "(such as http://stash.local:9999)"),
        ("stash.local:9999/?apikey=secret-KEY-77", "(such as http://stash.local:9999), without"),
        # One message for both faults: the scheme it lacks and the login it must not carry.
        ("user:secret-KEY-77@stash.local:9999", "(such as http://stash.local:9999), without a"),
    ],
)
def test_an_address_without_its_scheme_is_answered_with_it_fixed_never_with_a_key(typed, said):
    with pytest.raises(ConfigError) as refused:
        StashConnection.from_url(typed)
    assert refused.value.setting == "stash_url"
    assert said in refused.value.message and "secret-KEY-77" not in refused.value.message


@pytest.mark.parametrize(
    "typed",
    ["http://[::1", "http://127.0.0.1:99999", "http://stash.local:port"],
)
def test_an_address_that_is_not_one_names_the_setting_without_a_traceback(typed):
    with pytest.raises(ConfigError) as refused:
        StashConnection.from_url(typed)
    assert refused.value.setting == "stash_url"
    assert "is not an address" in refused.value.message


def test_a_login_in_the_address_is_refused_saying_the_api_key_given_is_used():
    with pytest.raises(ConfigError) as refused:
        StashConnection.from_url("http://user:secret-KEY-77@127.0.0.1:9999", "secret-KEY-77")
    assert "the API key given in STASH2PLEX_STASH_API_KEY is used" in refused.value.message
    assert "(http://127.0.0.1:9999)" in refused.value.message
    assert "secret-KEY-77" not in refused.value.message


def another_server(status: int):
    """A web server that is not Stash, answering every request with `status` and a page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"<html><body>Not here</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    return serving(Page)


def test_stash_url_at_plex_or_another_server_names_stash_url():
    """Another server's port given as Stash's: Plex (its answers say so), or a 404 for POST
    /graphql, is a setting to fix, not a scene's failure nor a rejected API key; a 503 page
    may be Stash starting, so it waits, and says which setting to check if Stash does not run
    there."""
    with PlexEmulator(token=PLEX_TOKEN) as plex, pytest.raises(ConfigError) as refused:
        StashClient(StashConnection.from_url(plex.url)).version()
    assert refused.value.setting == "stash_url"
    assert refused.value.message.startswith(f"{plex.url} is Plex's address, not Stash's")
    assert "check stash_url (STASH2PLEX_STASH_URL)" in refused.value.message
    assert PLEX_TOKEN not in refused.value.message

    with another_server(404) as url, pytest.raises(ConfigError) as refused:
        StashClient(StashConnection.from_url(url)).version()
    assert refused.value.setting == "stash_url"
    assert refused.value.message.startswith(f"no Stash answers at {url}: POST {url}/graphql")

    with another_server(503) as url, pytest.raises(StashDownError) as down:
        StashClient(StashConnection.from_url(url)).version()
    assert f"if Stash does not run at {url}, check stash_url" in down.value.message
