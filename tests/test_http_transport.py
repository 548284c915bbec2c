"""The clients' HTTP transport (clients/http.py) in the situations users meet: a redirect in
front of Plex or Stash, an answer cut off mid-body, a cover served through a redirect, a proxy
named in the environment (and NO_PROXY). Every exchange is real HTTP: the emulators, a tiny
redirecting server and a tiny forwarding proxy run on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import tracemalloc
from http.server import BaseHTTPRequestHandler
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from stash2plex import errors
from stash2plex.clients.plex import PlexClient
from stash2plex.clients.stash import StashClient, StashConnection
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.stash_emulator import StashEmulator

from .conftest import serving
from .sandbox import PLEX_TOKEN, cover_sha1, sandbox


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=12, seed=5) as opened:
        yield opened


def redirecting_to(target: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Redirect


def use_proxy(monkeypatch, address: str, variable: str = "HTTP_PROXY") -> None:
    """Send requests through `address`, with no NO_PROXY exception from this machine."""
    monkeypatch.setenv(variable, address)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def stash_client(box) -> StashClient:
    return StashClient(StashConnection.from_server_connection(box.stash.server_connection()))


def stash_at(url: str) -> StashClient:
    """A logged-in client whose Stash is at `url` (a test server standing in for Stash): the
    image URLs of Stash's are fetched there (another address would be taken for Stash's
    external_host)."""
    return StashClient(StashConnection(url, "cookie-value-1", "api-key-2"))


def test_plex_behind_a_redirect_is_a_setting_to_fix_not_a_write_that_seems_to_succeed(box):
    # A reverse proxy sending http:// to https://: following it would turn the edit into a
    # read (after a 302 or 303), which Plex answers 200, and the scene would be marked synced.
    box.plex.faults.fail(
        301, proxy=True, headers={"Location": "https://plex.example:32400/"}, count=1
    )
    with pytest.raises(errors.ConfigError) as raised:
        PlexClient(box.plex.url, PLEX_TOKEN).sections()
    assert raised.value.setting == "plex_url"
    assert "redirects to https://plex.example:32400/" in raised.value.message
    assert PLEX_TOKEN not in raised.value.message


def test_an_edit_redirected_by_plex_itself_is_refused_too(box):
    scene = box.find(lambda s: bool(s.title))
    box.plex.faults.fail(307, route="^PUT ", headers={"Location": "/elsewhere"}, count=1)
    client = PlexClient(box.plex.url, PLEX_TOKEN)
    with pytest.raises(errors.ConfigError, match="redirects to"):
        client.edit(box.section_id, box.rating_key(scene), {"title.value": "moved"})
    assert box.item(scene).title != "moved"


def test_an_answer_cut_off_mid_body_is_a_transient_failure_and_the_next_request_works(box):
    client = PlexClient(box.plex.url, PLEX_TOKEN)
    client.sections()  # connected, with a kept-alive connection
    box.plex.faults.cut_answers(count=1, route=r"^GET /library/sections$")
    with pytest.raises(errors.TransientError, match="broke off") as raised:
        client.sections()
    assert PLEX_TOKEN not in raised.value.message
    assert [s.id for s in client.sections()] == [s.id for s in client.sections()]


def test_a_cover_served_through_a_redirect_is_downloaded(box):
    scene = box.find(lambda s: s.cover_version is not None)
    with serving(redirecting_to(box.stash.url)) as redirector:
        image = stash_at(redirector).image(f"{redirector}/scene/{scene.id}/screenshot")
    assert not image.placeholder
    assert image.sha1 == cover_sha1(scene) == hashlib.sha1(image.data).hexdigest()


def test_a_cover_address_that_redirects_in_a_loop_is_a_transient_failure(box):
    class Loop(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", self.path + "x")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Loop) as url, pytest.raises(errors.TransientError, match="in a loop"):
        stash_at(url).image(f"{url}/scene/1/screenshot")


def test_stash_behind_a_redirect_names_the_address_to_set(box):
    connection = StashConnection.from_server_connection(box.stash.server_connection())

    class RedirectPost(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(308)
            self.send_header("Location", "https://stash.example/graphql")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(RedirectPost) as url:
        moved = StashConnection(url, connection.session_cookie, connection.api_key)
        with pytest.raises(errors.ConfigError) as raised:
            StashClient(moved).execute("{ version { version } }")
    assert raised.value.setting == "stash_url"
    assert "redirects to https://stash.example/graphql" in raised.value.message


class ForwardingProxy(BaseHTTPRequestHandler):
    """A plain-http forward proxy: requests arrive in absolute form and are passed on."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []
    login: ClassVar[str | None] = None  # "user:password" the proxy requires, if any

    def _forward(self) -> None:
        if self.login is not None:
            expected = "Basic " + base64.b64encode(self.login.encode()).decode()
            if self.headers.get("Proxy-Authorization") != expected:
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        ForwardingProxy.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        upstream.request(
            self.command,
            target.path + (f"?{target.query}" if target.query else ""),
            body=body,
            headers=headers,
        )
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_the_proxy_the_environment_names_carries_plex_and_stash_requests(box, monkeypatch):
    ForwardingProxy.seen = []
    scene = box.find(lambda s: s.cover_version is not None)
    with serving(ForwardingProxy) as proxy:
        use_proxy(monkeypatch, proxy)
        plex = PlexClient(box.plex.url, PLEX_TOKEN)
        assert plex.transport.proxy == proxy
        assert plex.sections()
        stash = stash_client(box)
        assert stash.find_scene(scene.id) is not None
        assert stash.image(f"{box.stash.url}/scene/{scene.id}/screenshot").sha1 == cover_sha1(scene)
    assert f"GET {box.plex.url}/library/sections" in ForwardingProxy.seen
    assert f"POST {box.stash.url}/graphql" in ForwardingProxy.seen
    assert any(s.startswith(f"GET {box.stash.url}/scene/{scene.id}/") for s in ForwardingProxy.seen)


@pytest.mark.parametrize("excepted", ["127.0.0.1", "{plex_host_port}"])
def test_no_proxy_keeps_a_server_direct(box, monkeypatch, excepted):
    # A host alone (as requests reads NO_PROXY) or a host with its port (as curl reads it).
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", excepted.format(plex_host_port=box.plex.url.split("//")[1]))
    plex = PlexClient(box.plex.url, PLEX_TOKEN)
    assert plex.transport.proxy is None
    assert plex.sections()


def test_a_dead_proxy_is_named_not_taken_for_the_server(box, monkeypatch):
    use_proxy(monkeypatch, "http://carol:pw123@127.0.0.1:9")  # nothing listens there
    with pytest.raises(errors.ServerDownError) as plex:
        PlexClient(box.plex.url, PLEX_TOKEN, timeout=5).sections()
    with pytest.raises(errors.StashDownError) as stash:
        stash_client(box).plugin_settings("stash2plex")
    for raised, server, url in ((plex, "Plex", box.plex.url), (stash, "Stash", box.stash.url)):
        assert raised.value.message == (
            f"{server} at {url} is not reachable through the proxy http://127.0.0.1:9 "
            "(HTTP_PROXY): the proxy refused the connection; is the proxy running, or should "
            "127.0.0.1 be in NO_PROXY?"
        )


def test_a_gzipped_answer_is_read_as_plex_meant_it():
    # Plex compresses when asked (the transport asks, as requests did): a listing page is
    # a tenth of the bytes.
    import gzip

    sections = (
        '<?xml version="1.0" encoding="UTF-8"?><MediaContainer size="1">'
        '<Directory key="3" title="Films é" type="movie"><Location path="/m"/></Directory>'
        "</MediaContainer>"
    )
    root = '<MediaContainer machineIdentifier="abc" version="1.40"/>'

    compressed: list[str] = []

    class GzipPlex(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = (sections if self.path.startswith("/library/sections") else root).encode()
            gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "")
            if gzipped:
                body = gzip.compress(body)
                compressed.append(self.path)
            self.send_response(200)
            self.send_header("X-Plex-Protocol", "1.0")
            self.send_header("Content-Type", "text/xml;charset=utf-8")
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(GzipPlex) as url:
        client = PlexClient(url, PLEX_TOKEN)
        [section] = client.sections()
        assert client.connect().machine_identifier == "abc"
    assert (section.id, section.title, section.locations) == (3, "Films é", ("/m",))
    assert "/library/sections" in compressed


@pytest.mark.parametrize(
    ("login", "proxy_address"),
    [
        (None, "{host}"),  # no scheme: http://, as requests took it
        ("alice:s3cr@t", "http://alice:s3cr%40t@{host}"),  # a proxy that wants a login
    ],
)
def test_a_proxy_without_scheme_or_with_a_login_carries_the_requests(
    box, monkeypatch, login, proxy_address
):
    ForwardingProxy.seen, ForwardingProxy.login = [], login
    try:
        with serving(ForwardingProxy) as proxy:
            use_proxy(monkeypatch, proxy_address.format(host=proxy.split("//")[1]))
            assert PlexClient(box.plex.url, PLEX_TOKEN).sections()
            assert stash_client(box).plugin_settings("stash2plex") is not None
    finally:
        ForwardingProxy.login = None
    assert f"GET {box.plex.url}/library/sections" in ForwardingProxy.seen
    assert f"POST {box.stash.url}/graphql" in ForwardingProxy.seen


def test_a_proxy_of_a_kind_that_cannot_work_is_a_setting_to_fix(box, monkeypatch):
    use_proxy(monkeypatch, "socks5://bob:hunter2@127.0.0.1:1080")
    with pytest.raises(errors.ConfigError) as plex:
        PlexClient(box.plex.url, PLEX_TOKEN).sections()
    with pytest.raises(errors.ConfigError) as stash:
        stash_client(box).plugin_settings("stash2plex")
    for raised in (plex.value, stash.value):
        assert raised.setting == "HTTP_PROXY"
        assert "socks5://127.0.0.1:1080 (HTTP_PROXY) is a socks5 proxy" in raised.message
        assert "hunter2" not in raised.message and "bob" not in raised.message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("http://127.0.0.1:notaport", "is not an address Stash2Plex can use"),
        ("http://[::1", "the proxy in HTTP_PROXY is not an address"),
    ],
)
def test_a_proxy_address_that_cannot_be_read_is_a_setting_to_fix(box, monkeypatch, value, words):
    use_proxy(monkeypatch, value)
    with pytest.raises(errors.ConfigError) as raised:
        PlexClient(box.plex.url, PLEX_TOKEN).sections()
    assert raised.value.setting == "HTTP_PROXY" and words in raised.value.message


def test_a_ca_bundle_that_holds_no_certificate_names_the_variable(box, monkeypatch, tmp_path):
    garbage = tmp_path / "bundle.pem"
    garbage.write_text("not a certificate\n")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(garbage))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    https = box.plex.url.replace("http://", "https://")
    with pytest.raises(errors.ConfigError) as raised:
        PlexClient(https, PLEX_TOKEN).sections()
    assert raised.value.setting == "CURL_CA_BUNDLE"
    assert f"CURL_CA_BUNDLE names {garbage}, which holds no certificate" in raised.value.message
    # Plain http never reads the bundle, as before.
    assert stash_client(box).plugin_settings("stash2plex") is not None


def test_a_ca_bundle_that_is_not_there_names_the_variable(box, monkeypatch, tmp_path):
    missing = tmp_path / "gone.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(missing))
    https = box.plex.url.replace("http://", "https://")
    with pytest.raises(errors.ConfigError) as raised:
        PlexClient(https, PLEX_TOKEN).sections()
    assert raised.value.setting == "REQUESTS_CA_BUNDLE"
    assert f"REQUESTS_CA_BUNDLE names {missing}, which does not exist" in raised.value.message
    # Plain http and verification off need no bundle: the same environment works.
    assert PlexClient(box.plex.url, PLEX_TOKEN).sections()


def test_a_cover_redirected_to_an_unreachable_address_fails_that_scene_not_stash(box):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with serving(redirecting_to(dead)) as redirector, pytest.raises(errors.SyncError) as raised:
        stash_at(redirector).image(f"{redirector}/scene/1/screenshot")
    assert type(raised.value) is errors.TransientError  # the scene retries; Stash is not down
    assert "redirects to 127.0.0.1, which failed" in raised.value.message


def recording_image_server(seen: list[dict[str, str]]) -> type[BaseHTTPRequestHandler]:
    """Another host serving a tiny JPEG; every request's headers are appended to `seen`."""

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff\xd9")

        def log_message(self, *args: object) -> None:
            pass

    return Elsewhere


def _credentials(headers: dict[str, str]) -> set[str]:
    return {name.lower() for name in headers} & {"apikey", "cookie", "authorization"}


def test_credentials_never_follow_a_cover_redirect_to_another_origin():
    seen: list[dict[str, str]] = []
    with (
        serving(recording_image_server(seen)) as elsewhere,
        serving(redirecting_to(elsewhere)) as redirector,
    ):
        # The redirector stands for Stash (credentials go to it), Elsewhere for another host.
        stash = StashClient(StashConnection(redirector, "cookie-value-1", "api-key-2"))
        image = stash.image(f"{redirector}/scene/1/screenshot")
    assert image.data == b"\xff\xd8\xff\xd9"
    [headers] = seen
    assert not _credentials(headers)


def test_no_credential_of_stash_goes_to_another_address():
    api_key = "stash-key-123456"
    seen: list[dict[str, str]] = []
    with (
        StashEmulator(generate_library(3, seed=1), api_key=api_key, require_auth=True) as stash,
        serving(recording_image_server(seen)) as elsewhere,
    ):
        client = StashClient(StashConnection.from_url(stash.url, api_key))
        image = client.image(f"{elsewhere}/covers/1.jpg")  # not an image address of Stash's
        own = client.image(f"{stash.url}/scene/1/screenshot")  # Stash itself: with the key
    assert image.data == b"\xff\xd8\xff\xd9" and own.sha1
    [headers] = seen
    assert not _credentials(headers) and api_key not in str(headers)


@pytest.mark.parametrize(
    ("proxy_login", "words"),
    [
        (None, "the proxy wants a login (put user:password@ in its address)"),
        ("alice:wrong", "the proxy refused the login in its address (check user:password@)"),
    ],
)
def test_a_proxy_asking_for_a_login_is_named_as_the_problem(box, monkeypatch, proxy_login, words):
    ForwardingProxy.seen, ForwardingProxy.login = [], "alice:right"
    try:
        with serving(ForwardingProxy) as proxy:
            host = proxy.split("//")[1]
            address = f"http://{proxy_login}@{host}" if proxy_login else proxy
            use_proxy(monkeypatch, address, "http_proxy")  # the lowercase spelling is named
            monkeypatch.delenv("HTTP_PROXY", raising=False)
            with pytest.raises(errors.ServerDownError) as plex:
                PlexClient(box.plex.url, PLEX_TOKEN).sections()
            with pytest.raises(errors.StashDownError) as stash:
                stash_client(box).plugin_settings("stash2plex")
    finally:
        ForwardingProxy.login = None
    for raised in (plex.value, stash.value):
        assert f"through the proxy {proxy} (http_proxy): {words}" in raised.message
        assert "wrong" not in raised.message


def test_no_part_of_a_proxy_login_shows_even_in_an_address_that_cannot_be_read(box, monkeypatch):
    use_proxy(monkeypatch, "http://alice:pa#ss/word@proxy.invalid:3128")
    with pytest.raises(errors.SyncError) as raised:
        PlexClient(box.plex.url, PLEX_TOKEN).sections()
    assert (
        "alice" not in raised.value.message
        and "pa" not in raised.value.message.split("proxy.invalid")[0].split("://")[-1]
    )


@pytest.mark.parametrize(
    ("proxy", "fix", "setting"),
    [
        (
            "socks5://127.0.0.1:1080",
            "Correct or unset the environment variable HTTP_PROXY",
            "HTTP_PROXY",
        ),
        ("http://127.0.0.1:9", "Start the proxy the message names, or list the server's host", ""),
    ],
)
def test_diagnose_names_the_environment_as_the_fix(box, monkeypatch, proxy, fix, setting):
    from stash2plex.operations.diagnose import diagnose

    use_proxy(monkeypatch, proxy)
    with box.store() as store:
        [check] = diagnose(store)
    assert (check.name, check.ok, check.setting) == ("Stash", False, setting)
    assert check.fix.startswith(fix) and "Make sure Stash is running" not in check.fix


class LargeCover(BaseHTTPRequestHandler):
    """A Stash serving one 16 MB cover (an 8K PNG a user set by hand)."""

    BODY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (16 * 4096)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cover_is_held_in_memory_once_while_it_streams_in():
    # Each sync thread holds one cover at a time; collecting the chunks and joining them held
    # it twice (16 scenes at once with 60 MB covers: 1.3 GB).
    with serving(LargeCover) as url:
        stash = stash_at(url)
        tracemalloc.start()
        try:
            image = stash.image(f"{url}/scene/1/screenshot?t=1")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    size = len(LargeCover.BODY)
    assert image.sha1 == hashlib.sha1(LargeCover.BODY).hexdigest() and len(image.data) == size
    assert peak < 1.3 * size, f"{peak / size:.2f} times the cover"
