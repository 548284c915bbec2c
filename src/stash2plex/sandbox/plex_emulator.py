"""An emulated Plex Media Server that plexapi 4.18.3 accepts, served over real HTTP.

It answers the routes of `docs/plex-api-contract.md` §8 with the XML shapes of real captures
(`plex_xml`) over the library model (`plex_model`), counts every request in a `RequestLog`, and
injects the faults a real server shows (`Faults`): refused connections, startup maintenance,
error statuses, latency, dropped connections and malformed XML.

In-process use::

    with PlexEmulator(token="t") as plex:
        section = plex.add_section("Movies", ["/data/Movies"])
        key = plex.add_item(section, "/data/Movies/a.mkv")
        PlexServer(plex.url, "t").fetchItem(key)

In its own process (benchmarks): `python -m stash2plex.sandbox.plex_emulator --port N --token T`,
steered through the control API under `/__sandbox__/` (see `EmulatorControl`).
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import dataclasses
import email.utils
import hashlib
import json
import queue
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from stash2plex.sandbox import plex_xml as xml
from stash2plex.sandbox.plex_model import (
    SEARCH_TYPE_COLLECTION,
    SEARCH_TYPE_MOVIE,
    ActorState,
    AgentMetadata,
    Behaviour,
    CollectionState,
    HistoryEntry,
    ImageState,
    ItemState,
    PlexError,
    PlexLibrary,
)

__all__ = [
    "ActorState",
    "AgentMetadata",
    "Behaviour",
    "CollectionState",
    "EmulatorControl",
    "Faults",
    "HistoryEntry",
    "ImageState",
    "ItemState",
    "PlexEmulator",
    "RequestLog",
    "RequestRecord",
]

XML_TYPE = "text/xml;charset=utf-8"
HTML_TYPE = "text/html"
UNKNOWN_ROUTE = "UNKNOWN"
CONTROL_PREFIX = "/__sandbox__/"
DOWNLOAD_TIMEOUT = 10.0

# Real PMS error bodies (contract §1.2).
HTML_401 = (
    "<html><head><script>window.location = window.location.href.match(/(^.+\\/)[^\\/]*$/)[1]"
    " + 'web/index.html';</script><title>Unauthorized</title></head><body><h1>401 Unauthorized"
    "</h1></body></html>"
)
MAINTENANCE_BODY = (
    '{"code":503,"title":"Maintenance","status":"Plex Media Server is currently running '
    'startup maintenance tasks."}'
)
# Not XML even after plexapi's cleanup pass: an unclosed element and a stray ampersand.
GARBAGE_XML = '<?xml version="1.0" encoding="UTF-8"?>\n<MediaContainer size="1"><Video & </Media'


def html_error(status: int) -> str:
    """The text/html body PMS sends with an error status."""
    if status == 401:
        return HTML_401
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return (
        f"<html><head><title>{phrase}</title></head><body><h1>{status} {phrase}</h1></body></html>"
    )


# ---------------------------------------------------------------------- request log
@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received (the token is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    route: str
    status: int  # 0: the connection was dropped without an answer
    at: float


class RequestLog:
    """Every request to the emulated server except the control API. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RequestRecord] = []

    @property
    def entries(self) -> list[RequestRecord]:
        """A copy of all records, oldest first."""
        with self._lock:
            return list(self._entries)

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._entries.append(record)

    def count(self, route: str | None = None, method: str | None = None) -> int:
        """Requests to `route` (a full name like `"GET /identity"` or just its path template)
        and/or with `method`; no arguments counts everything."""
        return sum(1 for r in self.entries if _route_matches(r, route, method))

    def route_counts(self) -> collections.Counter[str]:
        return collections.Counter(r.route for r in self.entries)

    def unknown(self) -> list[RequestRecord]:
        """Requests to routes the emulator does not serve (a test should expect none)."""
        return [r for r in self.entries if r.route == UNKNOWN_ROUTE]

    def writes(self) -> list[RequestRecord]:
        """PUT/POST/DELETE requests, except scans and refreshes (which change no metadata)."""
        return [
            r
            for r in self.entries
            if r.method in ("PUT", "POST", "DELETE") and not r.route.endswith("/refresh")
        ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _route_matches(record: RequestRecord, route: str | None, method: str | None) -> bool:
    if method is not None and record.method != method.upper():
        return False
    if route is None:
        return True
    return record.route == route or record.route.partition(" ")[2] == route


# ---------------------------------------------------------------------- faults
@dataclass
class _Rule:
    route: re.Pattern[str] | None
    remaining: int | None  # None: until cleared

    def applies(self, route: str) -> bool:
        return self.route is None or self.route.search(route) is not None

    def consume(self) -> bool:
        """Count one use; True when the rule is used up."""
        if self.remaining is None:
            return False
        self.remaining -= 1
        return self.remaining <= 0


@dataclass
class _FailRule(_Rule):
    status: int = 500
    body: str | None = None
    proxy: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    every: int = 1  # fail one matching request in this many (a flaky server), serve the rest
    seen: int = 0
    target: re.Pattern[str] | None = None  # matched against the request's path and query

    def fails_this_one(self) -> bool:
        """Count one matching request; True when it is the one in `every` that fails."""
        self.seen += 1
        return self.seen % self.every == 0


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = XML_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    websocket_key: str | None = None  # set: answer 101 and serve notifications
    from_plex: bool = True  # False: a reverse proxy or portal answered (no X-Plex-* headers)
    cut: bool = False  # True: promise the whole body, send half of it, close the connection


# RFC 6455: the server proves the handshake with SHA-1 of the client's key and this GUID.
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_IDLE_POLL_SECONDS = 0.2


def _ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final server frame (text by default)."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, length])
    elif length < 1 << 16:
        header = bytes([0x80 | opcode, 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 127]) + length.to_bytes(8, "big")
    return header + payload


def _ws_read_frame(stream: Any) -> tuple[int, bytes] | None:
    """(opcode, payload) of one client frame (clients mask theirs); None at end of stream."""
    head = stream.read(2)
    if len(head) < 2:
        return None
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(stream.read(2), "big")
    elif length == 127:
        length = int.from_bytes(stream.read(8), "big")
    mask = stream.read(4) if head[1] & 0x80 else b""
    data = stream.read(length)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


class Faults:
    """Failures the emulated server shows, switchable at run time from any thread.

    `route` arguments are regular expressions searched in the route name
    (e.g. `"PUT /library/sections/{id}/all"`, or `"^GET "` for every read).
    """

    def __init__(self, emulator: PlexEmulator) -> None:
        self._emulator = emulator
        self._lock = threading.Lock()
        self._maintenance = False
        self._maintenance_until: float | None = None
        self._fails: list[_FailRule] = []
        self._latency: list[tuple[float, _Rule]] = []
        self._drop: _Rule | None = None
        self._garbage: _Rule | None = None
        self._cut: _Rule | None = None

    def refuse_connections(self) -> None:
        """Close the listening socket (and open connections): clients get connection refused."""
        self._emulator._close_listener()

    def accept_connections(self) -> None:
        """Listen again on the same port."""
        self._emulator._open_listener()

    def maintenance(self, on: bool = True, duration: float | None = None) -> None:
        """Answer 503 "startup maintenance" (JSON body, as PMS) to everything; with `duration`,
        only for that many seconds of the emulator's clock."""
        with self._lock:
            self._maintenance = on
            self._maintenance_until = (
                self._emulator.library.clock() + duration if on and duration is not None else None
            )

    def fail(
        self,
        status: int,
        count: int | None = None,
        route: str | None = None,
        body: str | None = None,
        proxy: bool = False,
        headers: dict[str, str] | None = None,
        every: int = 1,
        target: str | None = None,
    ) -> None:
        """Answer `status` (text/html, or `body`) to the next `count` matching requests
        (None: until cleared). Rules are checked in the order they were added. `proxy`: the
        answer comes from something in front of Plex (a reverse proxy's error or maintenance
        page, a captive portal, a redirect to https), so it carries none of Plex's headers;
        `headers`: more headers to send (a redirect's Location); `every`: only every n-th
        matching request fails (a flaky server: 5 fails a fifth of them), `count` counting
        the failed ones; `target`: only requests whose path and query match this
        regex (one item's edit: `id=14(&|$)`)."""
        with self._lock:
            rule = _FailRule(
                _compile(route),
                count,
                status,
                body,
                proxy,
                dict(headers or {}),
                max(1, every),
                target=_compile(target),
            )
            self._fails.append(rule)

    def latency(self, seconds: float, route: str | None = None) -> None:
        """Delay every matching request by `seconds` (real time); 0 removes the rule."""
        with self._lock:
            pattern = route or None
            self._latency = [(s, r) for s, r in self._latency if _pattern(r) != pattern]
            if seconds > 0:
                self._latency.append((seconds, _Rule(_compile(route), None)))

    def drop_connections(self, count: int | None = None, route: str | None = None) -> None:
        """Read the next `count` requests, then close the socket without an answer."""
        with self._lock:
            self._drop = _Rule(_compile(route), count)

    def cut_answers(self, count: int | None = None, route: str | None = None) -> None:
        """Serve the next `count` matching requests, but send only half of each answer's
        body (its headers promise all of it) and close the connection."""
        with self._lock:
            self._cut = _Rule(_compile(route), count)

    def garbage_xml(self, count: int | None = None, route: str | None = None) -> None:
        """Answer the next `count` requests 200 with malformed XML (the request is not run)."""
        with self._lock:
            self._garbage = _Rule(_compile(route), count)

    def clear(self) -> None:
        """A healthy server again: no faults, and listening."""
        with self._lock:
            self._maintenance = False
            self._maintenance_until = None
            self._fails.clear()
            self._latency.clear()
            self._drop = None
            self._garbage = None
            self._cut = None
        self.accept_connections()

    def apply(self, action: str, **kwargs: Any) -> None:
        """Call a fault by name (the control API's `{"action": ...}`)."""
        allowed = (
            "maintenance",
            "fail",
            "latency",
            "drop_connections",
            "cut_answers",
            "garbage_xml",
            "clear",
        )
        if action not in allowed:
            raise ValueError(f"unknown fault action {action!r}")
        getattr(self, action)(**kwargs)

    def decide(self, route: str, target: str = "") -> tuple[float, str | _Response | None]:
        """(delay, outcome) for one request: outcome is None (serve it), "drop", "cut" (serve
        it, send half the answer), or an answer."""
        with self._lock:
            delay = max((s for s, rule in self._latency if rule.applies(route)), default=0.0)
            if self._drop is not None and self._drop.applies(route):
                if self._drop.consume():
                    self._drop = None
                return delay, "drop"
            until = self._maintenance_until
            if self._maintenance and until is not None and self._emulator.library.clock() >= until:
                self._maintenance = False
            if self._maintenance:
                body = MAINTENANCE_BODY.encode()
                return delay, _Response(503, body, "application/json")
            for rule in self._fails:
                aimed = rule.target is None or rule.target.search(target) is not None
                if rule.applies(route) and aimed and rule.fails_this_one():
                    if rule.consume():
                        self._fails.remove(rule)
                    body = rule.body if rule.body is not None else html_error(rule.status)
                    answer = _Response(rule.status, body.encode(), HTML_TYPE, dict(rule.headers))
                    answer.from_plex = not rule.proxy
                    return delay, answer
            if self._garbage is not None and self._garbage.applies(route):
                if self._garbage.consume():
                    self._garbage = None
                return delay, _Response(200, GARBAGE_XML.encode())
            if self._cut is not None and self._cut.applies(route):
                if self._cut.consume():
                    self._cut = None
                return delay, "cut"
            return delay, None


def _compile(route: str | None) -> re.Pattern[str] | None:
    return re.compile(route) if route else None


def _pattern(rule: _Rule) -> str | None:
    return rule.route.pattern if rule.route is not None else None


# ---------------------------------------------------------------------- routes
@dataclass
class _Request:
    method: str
    path: str
    groups: tuple[str, ...]
    pairs: list[tuple[str, str]]
    params: dict[str, str]
    headers: Any
    body: bytes


_ROUTES: list[tuple[frozenset[str], re.Pattern[str], str, str]] = []


def _route(methods: str, pattern: str, template: str) -> Callable[[Callable], Callable]:
    """Register a handler for `methods` on a path regex; `template` names it in the log."""

    def register(func: Callable) -> Callable:
        _ROUTES.append(
            (frozenset(methods.split()), re.compile(f"^{pattern}$"), template, func.__name__)
        )
        return func

    return register


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


# ---------------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: PlexEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        tls = self.emulator.tls
        if tls is not None:
            # The handshake runs in the handler's thread (`_Handler.setup`), so a client that
            # rejects the certificate cannot stall the accept loop.
            conn = tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Connections we cut on purpose (refuse/stop) raise in their threads: stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        if self.server.emulator.tls is not None:
            self.request.do_handshake()  # fails (quietly, see handle_error) on a rejection
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        self.server.emulator._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The `Date` header tells the server's time; it follows the library's (injected) clock,
        # as a real server's follows the clock its `updatedAt` values come from.
        now = self.server.emulator.library.clock() if timestamp is None else timestamp
        return email.utils.formatdate(now, usegmt=True)

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        emulator = self.server.emulator
        try:
            body = self._read_body()
        except (OSError, ValueError):  # the client went away or sent a broken body
            self.close_connection = True
            return
        emulator._enter()
        try:
            response = emulator._serve(self, body)
        except Exception:  # a bug of the emulator: answer 500 and keep the traceback
            emulator.internal_errors.append(traceback.format_exc())
            response = _error(500)
        finally:
            emulator._leave()
        if response is None:  # a dropped connection: close without a word
            self.close_connection = True
            return
        if response.websocket_key is not None:
            self._serve_websocket(response.websocket_key)
            return
        self._send(response)

    def _serve_websocket(self, key: str) -> None:
        """Switch protocols and push every notification of the library until either side
        closes (or the emulator stops listening, which cuts the socket)."""
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        emulator = self.server.emulator
        inbox: queue.Queue[dict] = queue.Queue()
        emulator.library.subscribers.append(inbox.put)
        try:
            while emulator._started:
                with contextlib.suppress(queue.Empty):
                    container = inbox.get(timeout=WS_IDLE_POLL_SECONDS)
                    message = json.dumps({"NotificationContainer": container})
                    self.wfile.write(_ws_frame(message.encode()))
                    self.wfile.flush()
                readable, _, _ = select.select([self.connection], [], [], 0)
                if readable:
                    frame = _ws_read_frame(self.rfile)
                    if frame is None or frame[0] == 0x8:  # end of stream or close
                        with contextlib.suppress(OSError):
                            self.wfile.write(_ws_frame(b"", 0x8))
                            self.wfile.flush()
                        return
                    if frame[0] == 0x9:  # ping
                        self.wfile.write(_ws_frame(frame[1], 0xA))
                        self.wfile.flush()
        except (OSError, ValueError):
            return  # the client went away or the emulator cut the connection
        finally:
            with contextlib.suppress(ValueError):
                emulator.library.subscribers.remove(inbox.put)

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.from_plex:
            self.send_header("X-Plex-Protocol", "1.0")
            self.send_header("Cache-Control", "no-cache")
        for name, value in response.headers.items():
            self.send_header(name, value)
        # Headers and body in one write: two small writes stall on Nagle + delayed ACK.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            body = response.body[: len(response.body) // 2] if response.cut else response.body
            self._headers_buffer.append(body)
        self.flush_headers()
        if response.cut:
            self.close_connection = True


# ---------------------------------------------------------------------- the emulator
class PlexEmulator:
    """A Plex Media Server emulator for plexapi, on a real loopback HTTP port.

    The library model is manipulated with `add_section`/`add_item`/..., observed with
    `item()`/`items()`/`collections()`; `faults` injects failures and `log` records requests.
    Switches for [unverified] behaviour live in `behaviour` (a `Behaviour`).
    """

    def __init__(
        self,
        token: str = "emulator-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        truncate_listing_tags: bool = True,
        scan_delay: float = 0.5,
        unknown_id_put_status: int = 404,
        allow_unauthenticated: bool = False,
        clock: Callable[[], float] = time.time,
        behaviour: Behaviour | None = None,
        friendly_name: str = "stash2plex-emulator",
        tls: ssl.SSLContext | None = None,
        url_host: str | None = None,
    ) -> None:
        self.token = token
        # With `tls`, serve https with that context's certificate; `url_host` is the name the
        # URL uses (e.g. "localhost", to test a certificate issued for another name).
        self.tls = tls
        self.url_host = url_host or host
        self.allow_unauthenticated = allow_unauthenticated
        self.host = host
        self.port = port
        self.friendly_name = friendly_name
        behaviour = behaviour or Behaviour()
        behaviour.truncate_listing_tags = truncate_listing_tags
        behaviour.scan_delay = scan_delay
        behaviour.unknown_id_put_status = unknown_id_put_status
        self.library = PlexLibrary(clock=clock, behaviour=behaviour)
        self.faults = Faults(self)
        self.log = RequestLog()
        self.internal_errors: list[str] = []
        # Requests being served right now, and the most at once (client concurrency shows).
        self.in_flight = 0
        self.max_in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._started = False

    # ------------------------------------------------------------------ switches
    @property
    def behaviour(self) -> Behaviour:
        return self.library.behaviour

    @property
    def truncate_listing_tags(self) -> bool:
        return self.behaviour.truncate_listing_tags

    @truncate_listing_tags.setter
    def truncate_listing_tags(self, value: bool) -> None:
        self.behaviour.truncate_listing_tags = value

    @property
    def scan_delay(self) -> float:
        return self.behaviour.scan_delay

    @scan_delay.setter
    def scan_delay(self, value: float) -> None:
        self.behaviour.scan_delay = value

    @property
    def unknown_id_put_status(self) -> int:
        return self.behaviour.unknown_id_put_status

    @unknown_id_put_status.setter
    def unknown_id_put_status(self, value: int) -> None:
        self.behaviour.unknown_id_put_status = value

    @property
    def machine_identifier(self) -> str:
        return self.library.machine_identifier

    # ------------------------------------------------------------------ lifecycle
    def _enter(self) -> None:
        with self._in_flight_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._in_flight_lock:
            self.in_flight -= 1

    def start(self) -> PlexEmulator:
        """Listen (on `port`, or a free one when 0) and serve in daemon threads."""
        self._started = True
        self._open_listener()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        self._started = False
        self._close_listener()

    def __enter__(self) -> PlexEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open_listener(self) -> None:
        with self._listener_lock:
            if self._server is not None or not self._started:
                return
            server = _Server((self.host, self.port), self)
            self.port = server.server_address[1]
            scheme = "https" if self.tls is not None else "http"
            self.url = f"{scheme}://{self.url_host}:{self.port}"
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"plex-emulator-{self.port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread

    def _close_listener(self) -> None:
        with self._listener_lock:
            server, self._server = self._server, None
            if server is not None:
                server.shutdown()
                server.server_close()
            with self._connections_lock:
                connections = list(self._connections)
            for conn in connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # ------------------------------------------------------------------ library model
    def add_section(self, title: str, locations: list[str], type: str = "movie") -> int:
        """Add a library section; returns its key (1, 2, ...)."""
        return self.library.add_section(title, locations, type)

    def add_item(
        self,
        section_id: int,
        files: str | list[str],
        *,
        sizes: int | list[int] | None = None,
        title: str | None = None,
        duration_ms: int = 600_000,
        agent: AgentMetadata | None = None,
        stacked: bool = False,
    ) -> int:
        """Add a movie with one Media/Part per file (versions), or with `stacked` one Media
        with a Part per file (`- part1`, `- part2`); the title defaults to the first file's
        stem, or comes with everything else from `agent` (what a metadata agent found).
        Returns its ratingKey."""
        return self.library.add_item(
            section_id,
            files,
            sizes=sizes,
            title=title,
            duration_ms=duration_ms,
            agent=agent,
            stacked=stacked,
        )

    def move_file(
        self, old_path: str, new_path: str, size: int | None = None, section_id: int | None = None
    ) -> int:
        """A file renamed on disk and rescanned: the item keeps its ratingKey, the part gets
        the new path. Returns the ratingKey (`section_id`: the library's, for a file in
        several)."""
        return self.library.move_file(old_path, new_path, size, section_id)

    def delete_item(self, rating_key: int) -> None:
        """Remove an item (its ratingKey then answers 404)."""
        self.library.delete_item(rating_key)

    def delete_section(self, section_id: int) -> None:
        """Remove a library with its items (its key then answers 404)."""
        self.library.delete_section(section_id)

    def add_scannable_file(self, section_id: int, path: str, size: int = 1_000_000) -> None:
        """A file on the emulated disk that becomes an item once a scan covers it."""
        self.library.add_scannable_file(section_id, path, size)

    def run_due_scans(self) -> None:
        """Apply scans (and delayed refreshes) whose `scan_delay` has passed on the clock."""
        self.library.run_due_scans()

    def item(self, rating_key: int) -> ItemState:
        """A snapshot of an item; KeyError if there is none."""
        return self.library.item_state(rating_key)

    def items(self, section_id: int | None = None) -> list[int]:
        """ratingKeys of all items (of one section)."""
        return self.library.item_keys(section_id)

    def find_by_file(self, path: str, section_id: int | None = None) -> int | None:
        """The ratingKey of the item holding this file, if any (`section_id`: in that library;
        default: in the first library that has it)."""
        return self.library.find_by_file(path, section_id)

    def collections(self, section_id: int) -> list[CollectionState]:
        """The collection objects of a section, oldest first."""
        return self.library.collection_states(section_id)

    def add_account(self, name: str) -> int:
        """Another user of the server (a managed or shared user); returns its account id."""
        return self.library.add_account(name)

    def play(
        self, rating_key: int, viewed_at: int | None = None, *, account_id: int = 1
    ) -> HistoryEntry:
        """One complete play of an item (as a player's scrobble), at `viewed_at` (epoch s)."""
        return self.library.scrobble(rating_key, viewed_at=viewed_at, account_id=account_id)

    def stop_at(self, rating_key: int, offset_ms: int, *, account_id: int = 1) -> None:
        """A playback stopped part-way: the item's resume point becomes `offset_ms`."""
        self.library.progress(rating_key, offset_ms, "stopped", account_id=account_id)

    def rate(self, rating_key: int, rating: float | None) -> None:
        """Rate an item 0-10 as a user in Plex Web would (None clears the rating)."""
        self.library.rate(rating_key, "-1" if rating is None else str(rating))

    def history(self) -> list[HistoryEntry]:
        """Every play in the watch history, oldest first."""
        with self.library.lock:
            return list(self.library.history)

    # ------------------------------------------------------------------ request handling
    def _serve(self, handler: _Handler, body: bytes) -> _Response | None:
        method = handler.command
        split = urlsplit(handler.path)
        path = unquote(split.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        self.library.run_due_scans()
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path, dict(pairs), body)
        template, func, groups = _match(method, path)
        query = {k: v for k, v in pairs if k.lower() != "x-plex-token"}
        delay, outcome = self.faults.decide(template, f"{path}?{urlencode(query)}")
        if delay:
            time.sleep(delay)
        if outcome == "drop":
            self._record(method, path, query, template, 0)
            return None
        if isinstance(outcome, _Response):
            self._record(method, path, query, template, outcome.status)
            return outcome
        response = self._dispatch(method, path, pairs, handler, body, template, func, groups)
        response.cut = outcome == "cut"
        self._record(method, path, query, template, response.status)
        return response

    def _dispatch(
        self,
        method: str,
        path: str,
        pairs: list[tuple[str, str]],
        handler: _Handler,
        body: bytes,
        template: str,
        func: str | None,
        groups: tuple[str, ...],
    ) -> _Response:
        if template != "GET /identity" and not self._authorized(handler, pairs):
            return _Response(401, HTML_401.encode(), HTML_TYPE)
        if func is None:
            return _error(404)
        request = _Request(method, path, groups, pairs, dict(pairs), handler.headers, body)
        try:
            # Downloads and the notification stream run outside the library lock.
            if func in ("post_images", "websocket_notifications"):
                return getattr(self, func)(request)
            with self.library.lock:
                return getattr(self, func)(request)
        except PlexError as exc:
            return _error(exc.status)
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            return _error(500)

    def _authorized(self, handler: _Handler, pairs: list[tuple[str, str]]) -> bool:
        if self.allow_unauthenticated:
            return True
        token = handler.headers.get("X-Plex-Token")
        if token is None:
            token = next((v for k, v in pairs if k.lower() == "x-plex-token"), None)
        return token is not None and token == self.token

    def _record(self, method: str, path: str, query: dict, route: str, status: int) -> None:
        self.log.add(RequestRecord(method, path, query, route, status, self.library.clock()))

    # ------------------------------------------------------------------ helpers for handlers
    def _paging(self, request: _Request) -> tuple[int, int | None]:
        def read(name: str) -> str | None:
            value = request.params.get(name)
            return value if value is not None else request.headers.get(name)

        try:
            start = int(read("X-Plex-Container-Start") or 0)
            size_raw = read("X-Plex-Container-Size")
            size = int(size_raw) if size_raw is not None else None
        except ValueError:
            raise PlexError(400, "bad paging") from None
        return max(0, start), size

    def _page(self, request: _Request, rows: Sequence[Any]) -> tuple[Sequence[Any], int, dict]:
        start, size = self._paging(request)
        end = len(rows) if size is None else start + max(0, size)
        headers = {
            "X-Plex-Container-Start": str(start),
            "X-Plex-Container-Total-Size": str(len(rows)),
        }
        return rows[start:end], start, headers

    def _item(self, request: _Request) -> Any:
        return self.library.get_item(int(request.groups[0]))

    # ------------------------------------------------------------------ server routes
    @_route("GET", "/", "GET /")
    def get_root(self, request: _Request) -> _Response:
        return _Response(200, xml.root(self.library, self.friendly_name))

    @_route("GET", "/identity", "GET /identity")
    def get_identity(self, request: _Request) -> _Response:
        return _Response(200, xml.identity(self.library))

    @_route("GET", "/activities", "GET /activities")
    def get_activities(self, request: _Request) -> _Response:
        return _Response(200, xml.activities(self.library))

    @_route("GET", "/library", "GET /library")
    def get_library(self, request: _Request) -> _Response:
        return _Response(200, xml.library_root())

    @_route("GET", "/library/sections", "GET /library/sections")
    def get_sections(self, request: _Request) -> _Response:
        return _Response(200, xml.sections(self.library))

    @_route("POST", "/library/sections", "POST /library/sections")
    def add_section_route(self, request: _Request) -> _Response:
        """Add a library (plexapi `Library.add`: name, type, agent, scanner, language and one
        `location` per folder); Plex scans a new library at once."""
        name = request.params.get("name", "").strip()
        locations = [value for key, value in request.pairs if key == "location" and value]
        if not name or not locations:
            return _error(400)
        key = self.library.add_section(
            name,
            locations,
            request.params.get("type") or "movie",
            agent=request.params.get("agent") or None,
            scanner=request.params.get("scanner") or None,
            language=request.params.get("language") or "xn",
        )
        self.library.request_scan(key, None)
        return _Response(200, xml.sections(self.library))

    @_route("DELETE", r"/library/sections/(\d+)", "DELETE /library/sections/{id}")
    def delete_section_route(self, request: _Request) -> _Response:
        """Delete a library with its items and collections (plexapi `LibrarySection.delete`);
        its media stay on disk."""
        section_id = int(request.groups[0])
        self.library.section(section_id)  # 404 when there is none
        self.library.delete_section(section_id)
        return _Response(200)

    @_route("GET", "/library/sections/", "GET /library/sections/")
    def get_sections_slash(self, request: _Request) -> _Response:
        return _Response(200, xml.sections(self.library))

    @_route("GET POST DELETE", "/library/sections/all/refresh", "{M} /library/sections/all/refresh")
    def all_refresh(self, request: _Request) -> _Response:
        if request.method == "DELETE":
            self.library.cancel_scans(None)
        else:
            self.library.request_scan(None, None, request.params.get("force") == "1")
        return _Response(200)

    @_route("GET", r"/library/sections/(\d+)/all", "GET /library/sections/{id}/all")
    def get_section_all(self, request: _Request) -> _Response:
        section = self.library.section(int(request.groups[0]))
        params = request.params
        search_type = params.get("type") or str(SEARCH_TYPE_MOVIE)
        meta = ""
        if params.get("includeMeta") == "1":
            meta = xml.movie_meta(section)
        if search_type == str(SEARCH_TYPE_COLLECTION):
            colls = self.library.search_collections(section.key, params)
            page, start, headers = self._page(request, colls)
            children = [xml.collection_directory(self.library, c, detail=False) for c in page]
            body = xml.listing_container(
                section,
                children,
                total=len(colls),
                offset=start,
                title2="All Collections",
                view_group="collection",
                meta=meta,
            )
            return _Response(200, body, headers=headers)
        if search_type == str(SEARCH_TYPE_MOVIE):
            items = self.library.search_items(section.key, params)
        else:
            items = []  # the emulator holds movies only
        page, start, headers = self._page(request, items)
        truncate = self.behaviour.truncate_listing_tags
        children = [xml.video_listing(self.library, i, truncate=truncate) for i in page]
        body = xml.listing_container(
            section,
            children,
            total=len(items),
            offset=start,
            title2=f"All {section.title}",
            meta=meta,
        )
        return _Response(200, body, headers=headers)

    @_route("PUT", r"/library/sections/(\d+)/all", "PUT /library/sections/{id}/all")
    def put_section_all(self, request: _Request) -> _Response:
        self.library.apply_edit(int(request.groups[0]), request.pairs)
        return _Response(200)

    @_route("GET", r"/library/sections/(\d+)/collections", "GET /library/sections/{id}/collections")
    def get_section_collections(self, request: _Request) -> _Response:
        section = self.library.section(int(request.groups[0]))
        colls = self.library.search_collections(section.key, request.params)
        page, start, headers = self._page(request, colls)
        meta = xml.collection_meta(section) if request.params.get("includeMeta") == "1" else ""
        children = [xml.collection_directory(self.library, c, detail=False) for c in page]
        body = xml.listing_container(
            section,
            children,
            total=len(colls),
            offset=start,
            title2="All Collections",
            view_group="collection",
            meta=meta,
        )
        return _Response(200, body, headers=headers)

    @_route(
        "GET POST DELETE", r"/library/sections/(\d+)/refresh", "{M} /library/sections/{id}/refresh"
    )
    def section_refresh(self, request: _Request) -> _Response:
        section_id = int(request.groups[0])
        self.library.section(section_id)
        if request.method == "DELETE":
            self.library.cancel_scans(section_id)
        else:
            path = request.params.get("path") or None
            self.library.request_scan(section_id, path, request.params.get("force") == "1")
        return _Response(200)

    @_route(
        "GET",
        r"/library/sections/(\d+)/(" + "|".join(xml.FILTER_CHOICE_FAMILIES) + ")",
        "GET /library/sections/{id}/{filter}",
    )
    def get_filter_choices(self, request: _Request) -> _Response:
        section = self.library.section(int(request.groups[0]))
        family = request.groups[1]
        title = next(t for k, t, _ in xml.MOVIE_FIELDS if k == family)
        choices = self.library.tag_choices(section.key, family)
        return _Response(200, xml.filter_choices(section, family, title, choices))

    # ------------------------------------------------------------------ metadata routes
    @_route("GET", r"/library/metadata/(\d+(?:,\d+)*)", "GET /library/metadata/{ids}")
    def get_metadata(self, request: _Request) -> _Response:
        objects = []
        for part in request.groups[0].split(","):
            key = int(part)
            obj = self.library.items.get(key) or self.library.collections.get(key)
            if obj is not None:
                objects.append(obj)
        if not objects:
            raise PlexError(404)
        return _Response(200, xml.metadata(self.library, objects))

    @_route("DELETE", r"/library/metadata/(\d+)", "DELETE /library/metadata/{id}")
    def delete_metadata(self, request: _Request) -> _Response:
        key = int(request.groups[0])
        if key in self.library.collections:
            self.library.delete_collection(key)
        elif key in self.library.items:
            self.library.delete_item(key)
        else:
            raise PlexError(404)
        return _Response(200)

    @_route("PUT", r"/library/metadata/(\d+)/refresh", "PUT /library/metadata/{id}/refresh")
    def put_refresh(self, request: _Request) -> _Response:
        self.library.request_refresh(int(request.groups[0]))
        return _Response(200)

    @_route("GET", r"/library/metadata/(\d+)/posters", "GET /library/metadata/{id}/posters")
    def get_posters(self, request: _Request) -> _Response:
        return self._list_images(request, "thumb")

    @_route("GET", r"/library/metadata/(\d+)/arts", "GET /library/metadata/{id}/arts")
    def get_arts(self, request: _Request) -> _Response:
        return self._list_images(request, "art")

    def _list_images(self, request: _Request, kind: str) -> _Response:
        item = self.library.get_imageable(int(request.groups[0]))
        page, _, headers = self._page(request, item.images(kind))
        return _Response(200, xml.photos(item, kind, page), headers=headers)

    @_route(
        "POST",
        r"/library/metadata/(\d+)/(?P<kind>posters|arts)",
        "POST /library/metadata/{id}/{kind}",
    )
    def post_images(self, request: _Request) -> _Response:
        kind = "thumb" if request.groups[1] == "posters" else "art"
        url = request.params.get("url")
        with self.library.lock:
            self.library.get_imageable(int(request.groups[0]))
        if url:
            data = _download(url)
            if data is None:
                status = self.behaviour.upload_url_failure_status
                if status == 200:
                    return _Response(200)  # accepted; the download "fails later"
                raise PlexError(status)
        elif request.body:
            data = request.body
        else:
            raise PlexError(400)
        with self.library.lock:
            self.library.add_image(int(request.groups[0]), kind, data)
        return _Response(200)

    @_route(
        "PUT", r"/library/metadata/(\d+)/(?P<kind>poster|art)", "PUT /library/metadata/{id}/{kind}"
    )
    def put_image_select(self, request: _Request) -> _Response:
        url = request.params.get("url")
        if not url:
            raise PlexError(400)
        kind = "thumb" if request.groups[1] == "poster" else "art"
        self.library.select_image(int(request.groups[0]), kind, url)
        return _Response(200)

    @_route(
        "DELETE",
        r"/library/metadata/(\d+)/(?P<kind>thumb|art)",
        "DELETE /library/metadata/{id}/{kind}",
    )
    def delete_image(self, request: _Request) -> _Response:
        self.library.deselect_image(int(request.groups[0]), request.groups[1])
        return _Response(200)

    @_route(
        "GET",
        r"/library/metadata/(\d+)/(?P<kind>thumb|art)/(\d+)",
        "GET /library/metadata/{id}/{kind}/{ts}",
    )
    def get_image(self, request: _Request) -> _Response:
        data = self.library.image_bytes(int(request.groups[0]), request.groups[1])
        return _Response(200, data, _image_type(data))

    @_route("GET", r"/library/metadata/(\d+)/file", "GET /library/metadata/{id}/file")
    def get_image_file(self, request: _Request) -> _Response:
        url = request.params.get("url")
        if not url:
            raise PlexError(400)
        data = self.library.image_bytes(int(request.groups[0]), "thumb", url)
        return _Response(200, data, _image_type(data))

    @_route("PUT", "/:/rate", "PUT /:/rate")
    def put_rate(self, request: _Request) -> _Response:
        params = request.params
        if params.get("identifier") != xml.LIBRARY_IDENTIFIER:
            raise PlexError(400)
        try:
            key = int(params.get("key", ""))
        except ValueError:
            raise PlexError(400) from None
        self.library.rate(key, params.get("rating", ""))
        return _Response(200)

    # ------------------------------------------------------------------ plays and notifications
    @_route("GET", "/status/sessions/history/all", "GET /status/sessions/history/all")
    def get_history(self, request: _Request) -> _Response:
        entries = self.library.history_entries(request.params)
        page, start, headers = self._page(request, entries)
        body = xml.history(self.library, page, total=len(entries), offset=start)
        return _Response(200, body, headers=headers)

    @_route("DELETE", r"/status/sessions/history/(\d+)", "DELETE /status/sessions/history/{id}")
    def delete_history(self, request: _Request) -> _Response:
        self.library.delete_history(int(request.groups[0]))
        return _Response(200)

    @_route("GET", "/accounts", "GET /accounts")
    def get_accounts(self, request: _Request) -> _Response:
        return _Response(200, xml.accounts(self.library))

    def _library_key(self, request: _Request, name: str = "key") -> int:
        if request.params.get("identifier") != xml.LIBRARY_IDENTIFIER:
            raise PlexError(400)
        try:
            return int(request.params.get(name, ""))
        except ValueError:
            raise PlexError(400) from None

    @_route("GET PUT", r"/:/(?P<kind>scrobble|unscrobble)", "{M} /:/{kind}")
    def scrobble(self, request: _Request) -> _Response:
        key = self._library_key(request)
        if request.groups[0] == "scrobble":
            self.library.scrobble(key)
        else:
            self.library.unscrobble(key)
        return _Response(200)

    @_route("GET PUT", "/:/timeline", "{M} /:/timeline")
    def timeline(self, request: _Request) -> _Response:
        """A player's report (plexapi `updateTimeline`): position, state, duration."""
        key = self._library_key(request, "ratingKey")
        params = request.params
        try:
            time_ms = int(params.get("time", ""))
            duration = int(params["duration"]) if params.get("duration") else None
        except ValueError:
            raise PlexError(400) from None
        session = request.headers.get("X-Plex-Session-Identifier") or params.get("sessionKey")
        self.library.progress(
            key,
            time_ms,
            params.get("state") or "stopped",
            duration_ms=duration,
            session_key=int(session) if session and session.isdigit() else None,
        )
        return _Response(200)

    @_route("GET PUT", "/:/progress", "{M} /:/progress")
    def progress(self, request: _Request) -> _Response:
        """plexapi `updateProgress`: set the resume point."""
        key = self._library_key(request)
        try:
            time_ms = int(request.params.get("time", ""))
        except ValueError:
            raise PlexError(400) from None
        self.library.progress(key, time_ms, request.params.get("state") or "stopped")
        return _Response(200)

    @_route("GET", "/:/websockets/notifications", "GET /:/websockets/notifications")
    def websocket_notifications(self, request: _Request) -> _Response:
        key = request.headers.get("Sec-WebSocket-Key")
        if "websocket" not in (request.headers.get("Upgrade") or "").lower() or not key:
            raise PlexError(400, "a websocket upgrade is required")
        return _Response(101, websocket_key=key)

    # ------------------------------------------------------------------ collections routes
    @_route("POST", "/library/collections", "POST /library/collections")
    def post_collection(self, request: _Request) -> _Response:
        coll = self.library.create_collection(request.params)
        return _Response(200, xml.new_collection(self.library, coll))

    @_route("GET", r"/library/collections/(\d+)", "GET /library/collections/{id}")
    def get_collection(self, request: _Request) -> _Response:
        coll = self.library.get_collection(int(request.groups[0]))
        return _Response(200, xml.metadata(self.library, [coll]))

    @_route("DELETE", r"/library/collections/(\d+)", "DELETE /library/collections/{id}")
    def delete_collection(self, request: _Request) -> _Response:
        self.library.delete_collection(int(request.groups[0]))
        return _Response(200)

    @_route(
        "GET",
        r"/library/collections/(\d+)/(?:children|items)",
        "GET /library/collections/{id}/children",
    )
    def get_collection_children(self, request: _Request) -> _Response:
        coll = self.library.get_collection(int(request.groups[0]))
        section = self.library.sections[coll.section_id]
        keys = self.library.collection_children(coll)
        page, start, headers = self._page(request, keys)
        truncate = self.behaviour.truncate_listing_tags
        children = [
            xml.video_listing(self.library, self.library.items[k], truncate=truncate) for k in page
        ]
        body = xml.listing_container(
            section, children, total=len(keys), offset=start, title2=coll.title
        )
        return _Response(200, body, headers=headers)

    @_route("PUT", r"/library/collections/(\d+)/items", "PUT /library/collections/{id}/items")
    def put_collection_items(self, request: _Request) -> _Response:
        self.library.collection_add_items(int(request.groups[0]), request.params.get("uri", ""))
        return _Response(200)

    @_route(
        "DELETE",
        r"/library/collections/(\d+)/items/(\d+)",
        "DELETE /library/collections/{id}/items/{rk}",
    )
    def delete_collection_item(self, request: _Request) -> _Response:
        self.library.collection_remove_item(int(request.groups[0]), int(request.groups[1]))
        return _Response(200)

    @_route(
        "PUT",
        r"/library/collections/(\d+)/items/(\d+)/move",
        "PUT /library/collections/{id}/items/{rk}/move",
    )
    def put_collection_move(self, request: _Request) -> _Response:
        after = request.params.get("after")
        self.library.collection_move_item(
            int(request.groups[0]), int(request.groups[1]), int(after) if after else None
        )
        return _Response(200)

    # ------------------------------------------------------------------ control API
    def _control(self, method: str, path: str, params: dict[str, str], body: bytes) -> _Response:
        """`/__sandbox__/...`: steer the emulator from another process (JSON in and out).
        404: no such control route, item or section; 400: a bad request body."""
        try:
            payload = json.loads(body) if body else {}
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            route = path[len(CONTROL_PREFIX) :].strip("/")
            result = self._control_call(method, route, params, payload)
        except (KeyError, PlexError) as exc:
            return _json(404, {"error": f"not found: {exc}"})
        except (ValueError, TypeError, re.error) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, result)

    def _control_call(self, method: str, route: str, params: dict, payload: dict) -> Any:
        if (method, route) == ("POST", "faults"):
            self.faults.apply(_need(payload, "action"), **_without(payload, "action"))
            return {"ok": True}
        if (method, route) == ("GET", "log"):
            return [dataclasses.asdict(r) for r in self.log.entries]
        if (method, route) == ("POST", "log/clear"):
            self.log.clear()
            return {"ok": True}
        if (method, route) == ("GET", "items"):
            section = params.get("section_id")
            return self.items(int(section) if section else None)
        if (method, route) == ("POST", "items"):
            agent = payload.get("agent")
            key = self.add_item(
                int(_need(payload, "section_id")),
                _need(payload, "files"),
                sizes=payload.get("sizes"),
                title=payload.get("title"),
                duration_ms=int(payload.get("duration_ms", 600_000)),
                agent=_agent_from_json(agent) if agent is not None else None,
                stacked=bool(payload.get("stacked", False)),
            )
            return {"rating_key": key}
        if (method, route) == ("POST", "move"):
            key = self.move_file(
                _need(payload, "old_path"),
                _need(payload, "new_path"),
                payload.get("size"),
                payload.get("section_id"),
            )
            return {"rating_key": key}
        if match := re.fullmatch(r"items/(\d+)", route):
            if method == "DELETE":
                self.delete_item(int(match.group(1)))
                return {"ok": True}
            return _state_json(self.item(int(match.group(1))))
        if (method, route) == ("POST", "sections"):
            key = self.add_section(
                _need(payload, "title"),
                list(payload.get("locations", [])),
                payload.get("type", "movie"),
            )
            return {"section_id": key}
        if (method, route) == ("POST", "scannable"):
            self.add_scannable_file(
                int(_need(payload, "section_id")),
                _need(payload, "path"),
                int(payload.get("size", 1_000_000)),
            )
            return {"ok": True}
        if (method, route) == ("POST", "run_due_scans"):
            self.run_due_scans()
            return {"ok": True}
        if (method, route) == ("GET", "find"):
            section = params.get("section_id")
            return {
                "rating_key": self.find_by_file(
                    _need(params, "path"), int(section) if section else None
                )
            }
        if match := re.fullmatch(r"collections/(\d+)", route):
            return [dataclasses.asdict(c) for c in self.collections(int(match.group(1)))]
        if (method, route) == ("POST", "settings"):
            self._apply_settings(payload)
            return {"ok": True}
        if (method, route) == ("POST", "plays"):
            # Many plays at once: [{"rating_key", "viewed_at", "account_id"?}, ...].
            with self.library.lock:
                for play in _need(payload, "plays"):
                    self.library.scrobble(
                        int(play["rating_key"]),
                        viewed_at=play.get("viewed_at"),
                        account_id=int(play.get("account_id", 1)),
                    )
            return {"history": len(self.library.history)}
        if (method, route) == ("POST", "stop_at"):
            self.stop_at(int(_need(payload, "rating_key")), int(_need(payload, "offset_ms")))
            return {"ok": True}
        if (method, route) == ("POST", "rate"):
            self.rate(int(_need(payload, "rating_key")), payload.get("rating"))
            return {"ok": True}
        raise KeyError(f"{method} {CONTROL_PREFIX}{route}")

    def _apply_settings(self, payload: dict[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(Behaviour)}
        for name, value in payload.items():
            if name in ("token", "allow_unauthenticated"):
                setattr(self, name, value)
            elif name in names:
                setattr(self.behaviour, name, value)
            else:
                raise ValueError(f"unknown setting {name!r}")


# ---------------------------------------------------------------------- module helpers
def _match(method: str, path: str) -> tuple[str, str | None, tuple[str, ...]]:
    """(route name, handler name, path groups); the name spells out the method and the
    image kind, e.g. `POST /library/metadata/{id}/posters`."""
    for methods, pattern, template, func in _ROUTES:
        if method in methods and (m := pattern.match(path)):
            name = template.replace("{M}", method)
            if "kind" in pattern.groupindex:
                name = name.replace("{kind}", m.group("kind"))
            return name, func, m.groups()
    return UNKNOWN_ROUTE, None, ()


def _agent_from_json(data: dict[str, Any]) -> AgentMetadata:
    """An `AgentMetadata` from its JSON form (actors as objects with name, role and thumb)."""
    if not isinstance(data, dict):
        raise ValueError("agent must be an object")
    actors = tuple(
        ActorState(str(a["name"]), a.get("role"), a.get("thumb")) for a in data.get("actors", [])
    )
    return AgentMetadata(
        title=str(_need(data, "title")),
        summary=str(data.get("summary", "")),
        studio=str(data.get("studio", "")),
        originally_available_at=data.get("originally_available_at"),
        tagline=str(data.get("tagline", "")),
        genres=tuple(data.get("genres", ())),
        actors=actors,
        directors=tuple(data.get("directors", ())),
        countries=tuple(data.get("countries", ())),
        guid=data.get("guid"),
    )


def _need(values: dict[str, Any], name: str) -> Any:
    if name not in values:
        raise ValueError(f"missing {name!r}")
    return values[name]


def _without(values: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != name}


def _error(status: int) -> _Response:
    return _Response(status, html_error(status).encode(), HTML_TYPE)


def _json(status: int, value: Any) -> _Response:
    return _Response(status, json.dumps(value).encode(), "application/json")


def _state_json(state: ItemState) -> dict[str, Any]:
    data = dataclasses.asdict(state)
    data["locked"] = sorted(state.locked)
    return data


def _download(url: str) -> bytes | None:
    """Fetch an image as PMS does for `?url=`; None when it cannot be had."""
    if urlsplit(url).scheme not in ("http", "https"):
        return None
    # No proxies: the URL is usually a loopback Stash or test server.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=DOWNLOAD_TIMEOUT) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data or None


class EmulatorControl:
    """A client for the control API of an emulator running in another process."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, route: str, payload: Any = None, **params: Any) -> Any:
        url = f"{self.url}{CONTROL_PREFIX}{route}"
        if params:
            url += "?" + urlencode(params)
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=self.timeout) as response:
            return json.loads(response.read() or b"null")

    def fault(self, action: str, **kwargs: Any) -> None:
        """e.g. `fault("fail", status=500, count=2)`, `fault("clear")`."""
        self._call("POST", "faults", {"action": action, **kwargs})

    def log(self) -> list[dict[str, Any]]:
        return self._call("GET", "log")

    def clear_log(self) -> None:
        self._call("POST", "log/clear", {})

    def item(self, rating_key: int) -> dict[str, Any]:
        return self._call("GET", f"items/{rating_key}")

    def items(self, section_id: int | None = None) -> list[int]:
        return self._call("GET", "items", **({"section_id": section_id} if section_id else {}))

    def add_section(self, title: str, locations: list[str], type: str = "movie") -> int:
        payload = {"title": title, "locations": locations, "type": type}
        return self._call("POST", "sections", payload)["section_id"]

    def add_item(
        self,
        section_id: int,
        files: str | list[str],
        *,
        sizes: int | list[int] | None = None,
        title: str | None = None,
        agent: AgentMetadata | None = None,
        stacked: bool = False,
    ) -> int:
        payload: dict[str, Any] = {
            "section_id": section_id,
            "files": files,
            "sizes": sizes,
            "title": title,
            "stacked": stacked,
        }
        if agent is not None:
            payload["agent"] = dataclasses.asdict(agent)
        return self._call("POST", "items", payload)["rating_key"]

    def move_file(
        self, old_path: str, new_path: str, size: int | None = None, section_id: int | None = None
    ) -> int:
        payload = {
            "old_path": old_path,
            "new_path": new_path,
            "size": size,
            "section_id": section_id,
        }
        return self._call("POST", "move", payload)["rating_key"]

    def add_scannable_file(self, section_id: int, path: str, size: int = 1_000_000) -> None:
        self._call("POST", "scannable", {"section_id": section_id, "path": path, "size": size})

    def find_by_file(self, path: str, section_id: int | None = None) -> int | None:
        extra = {"section_id": section_id} if section_id is not None else {}
        return self._call("GET", "find", path=path, **extra)["rating_key"]

    def settings(self, **values: Any) -> None:
        """Set `Behaviour` switches, `token` or `allow_unauthenticated`."""
        self._call("POST", "settings", values)

    def plays(self, plays: list[dict[str, Any]]) -> int:
        """Add plays in bulk (`rating_key`, `viewed_at`, optional `account_id`); returns the
        size of the watch history."""
        return self._call("POST", "plays", {"plays": plays})["history"]

    def stop_at(self, rating_key: int, offset_ms: int) -> None:
        self._call("POST", "stop_at", {"rating_key": rating_key, "offset_ms": offset_ms})

    def rate(self, rating_key: int, rating: float | None) -> None:
        self._call("POST", "rate", {"rating_key": rating_key, "rating": rating})


def main(argv: Sequence[str] | None = None) -> int:
    """Run an emulator in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m stash2plex.sandbox.plex_emulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default="emulator-token")
    parser.add_argument("--scan-delay", type=float, default=0.5)
    parser.add_argument("--no-truncate", action="store_true", help="full tag lists in listings")
    parser.add_argument("--allow-unauthenticated", action="store_true")
    parser.add_argument(
        "--section",
        action="append",
        default=[],
        metavar="TITLE=PATH",
        help="add a movie section (repeatable)",
    )
    args = parser.parse_args(argv)
    emulator = PlexEmulator(
        args.token,
        host=args.host,
        port=args.port,
        scan_delay=args.scan_delay,
        truncate_listing_tags=not args.no_truncate,
        allow_unauthenticated=args.allow_unauthenticated,
    )
    for spec in args.section:
        title, _, path = spec.partition("=")
        emulator.add_section(title, [path] if path else [])
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with emulator:
        print(f"Plex emulator listening on {emulator.url}", flush=True)
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
