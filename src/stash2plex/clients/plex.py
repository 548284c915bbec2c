"""The only code that talks to Plex: plexapi's requests over our transport, with explicit
timeouts, and every failure translated into our error classes.

We send plexapi's own requests (the same paths, parameter encoding and `X-Plex-*` headers as
its server and edit mixins) and parse answers as it does, but through `clients/http.py` rather
than a `requests` session (a first sync sends about three Plex requests per scene; `requests`'
per-request work was the largest CPU cost of the sync). We never touch plexapi's partial
objects: reading an empty attribute on one makes a hidden HTTP request, which would break our
request budget and our timers.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from stash2plex.clients.http import (
    Answer,
    AnswerBroken,
    AnswerTimeout,
    BusyTries,
    ProxyUnreachable,
    ServerTransport,
    SetupProblem,
    Unreachable,
    busy_pause,
)
from stash2plex.clients.throttle import RequestSlots, RequestThrottle
from stash2plex.errors import (
    ANSWER_LATE,
    UNSETTLED_WRITE,
    AuthError,
    ConfigError,
    GatewayError,
    NotInPlexError,
    PermanentError,
    ServerDownError,
    SyncError,
    TransientError,
    WorkerStopping,
    error_for_status,
    redact,
    shorten,
)
from stash2plex.records import ListedItem
from stash2plex.single_flight import SingleFlight

_T = TypeVar("_T")

LISTING_PAGE_SIZE = 500
# Items read per `GET /library/metadata/{ids}` request (plexapi's fetchItems sends such lists).
DETAIL_BATCH = 100
MOVIE_SEARCH_TYPE = 1
COLLECTION_SEARCH_TYPE = 18


@dataclass(frozen=True)
class Section:
    """One Plex library section: its id, title, type (movie, show, ...), folders, and its
    uuid (every `<Directory>` of `GET /library/sections` carries one, docs/plex-api-contract.md;
    "" when not given). The uuid is the library's own: a library removed and added again may
    come back under the same id, not as the same library."""

    id: int
    title: str
    type: str
    locations: tuple[str, ...]
    uuid: str = ""


@dataclass(frozen=True)
class PlexItem:
    """What Plex holds for one item, from its detail (complete tag lists)."""

    rating_key: int
    section_id: int
    fields: dict[str, str]
    tags: dict[str, list[str]]  # genre, actor, collection, ... in order
    locked: frozenset[str]
    user_rating: float | None
    files: tuple[tuple[str, int | None], ...] = ()  # every part: (path as Plex spells it, size)
    updated_at: int | None = None  # epoch seconds, Plex's clock

    def as_listed(self) -> ListedItem:
        """The item as the index stores it (from a detail, so its tag lists are complete)."""
        return ListedItem(
            self.rating_key,
            self.section_id,
            self.files,
            tuple(self.tags.get("collection", [])),
            tuple(self.tags.get("genre", [])),
            tuple(self.tags.get("actor", [])),
            self.updated_at,
            tuple(self.fields.items()),
        )


@dataclass(frozen=True)
class Play:
    """One entry of Plex's watch history: an item played to the end by an account."""

    rating_key: int
    section_id: int
    account_id: int
    viewed_at: int  # epoch seconds
    history_id: str = ""  # from `historyKey`; tells a play seen twice while paging


@dataclass(frozen=True)
class ViewState:
    """What the token's account sees of one item: resume point, plays and its rating."""

    rating_key: int
    section_id: int
    view_offset_ms: int
    view_count: int
    last_viewed_at: int | None
    user_rating: float | None
    last_rated_at: int | None


@dataclass(frozen=True)
class Health:
    """A health probe's verdict; `error` is the classified failure when not ok."""

    ok: bool
    latency_ms: float
    detail: str
    error: SyncError | None = None

    @property
    def error_class(self) -> str | None:
        return self.error.error_class if self.error is not None else None


def _reads(method: Callable[..., _T]) -> Callable[..., _T]:
    """Read an answer inside `plex_errors`, so an answer of the wrong shape is a classified
    transient failure, never an exception that stops the worker."""

    @functools.wraps(method)
    def read(self: PlexClient, *args: Any, **kwargs: Any) -> _T:
        with plex_errors(self.secrets):
            return method(self, *args, **kwargs)

    return read


@dataclass(frozen=True)
class ServerIdentity:
    """Who answered at the Plex URL (`GET /`): its machine identifier and version."""

    machine_identifier: str
    version: str
    name: str


class PlexClient:
    """A lazily connected Plex server. Counts every request it sends (`request_count`).

    Requests are the ones plexapi 4.18.3 sends (its paths, parameter encoding and `X-Plex-*`
    headers), over our transport (clients/http.py); answers are parsed as plexapi parses them.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        verify_tls: bool = True,
        clock: Callable[[], float] = time.monotonic,
        max_concurrency: int = 1,
        max_requests_per_second: float = 0.0,
        sleep: Callable[[float], object] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        from plexapi import BASE_HEADERS

        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.throttle = RequestThrottle(max_requests_per_second)
        self.slots = RequestSlots(max_concurrency)
        # One kept-alive connection per thread that may talk to Plex at once, and the user's
        # cap on requests per second for all of them together.
        self.transport = ServerTransport(
            self.url,
            verify=verify_tls,
            pool_size=max_concurrency,
            headers={**BASE_HEADERS, "X-Plex-Token": token} if token else dict(BASE_HEADERS),
            before_send=self._wait_for_turn,
        )
        self.identity: ServerIdentity | None = None
        # Called with who answers, each time this client connects, before its first request
        # is sent; what it raises fails that request (the worker: another Plex server).
        self.on_identity: Callable[[ServerIdentity], None] | None = None
        self._connecting = SingleFlight()
        self._clock = clock
        # Pauses before asking a busy Plex again end early when the worker is asked to stop.
        self._stopping = threading.Event()
        self._sleep = sleep if sleep is not None else self._stopping.wait
        self._rng = rng or random.Random()
        self._busy = BusyTries()
        self.request_count = 0
        # Whether Plex itself (its X-Plex-Protocol header) ever answered this client: a URL
        # where it never did is a setting to check, not an outage (engine/routing.py).
        self.answered = False
        self._count_lock = threading.Lock()

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()

    def connect(self) -> ServerIdentity:
        """Who serves at the URL, asking on first use (one `GET /`, as plexapi's PlexServer
        does when it is made); a 404 there means the URL is not Plex's."""
        if self.identity is not None:
            return self.identity
        # The sync threads starting together share one GET / (and its failure).
        return self._connecting.run(lambda: self.identity, self._ask_identity)

    def _ask_identity(self) -> ServerIdentity:
        root = self._query("/", connecting=True)
        if root is None:
            raise TransientError("Plex sent an empty answer to GET /", server="plex")
        identity = ServerIdentity(
            root.get("machineIdentifier", ""),
            root.get("version", ""),
            root.get("friendlyName", ""),
        )
        if self.on_identity is not None:
            self.on_identity(identity)
        self.identity = identity
        return identity

    def stop_waiting(self) -> None:
        """End any pause before asking a busy Plex again, any wait for a request slot and
        any wait for the request rate's next turn, and make none after: the worker is
        stopping (SIGTERM; Docker kills it ten seconds later). A request that then finds no
        slot, or no turn, raises WorkerStopping: nothing more is sent."""
        self._stopping.set()
        self.slots.cancel_waits()
        self.throttle.cancel_waits()

    def _wait_for_turn(self) -> None:
        """Before each request: wait for its turn under `plex_max_requests_per_second`.
        Raises WorkerStopping when the worker stopped meanwhile."""
        self.throttle.acquire()
        if self.throttle.cancelled:
            raise WorkerStopping("the worker is stopping: not sent", server="plex")

    def reset(self) -> None:
        """Forget the connection (after an outage or a token change)."""
        self.identity = None

    def claimed(self) -> bool | None:
        """Whether the server is claimed (signed in to a Plex account, so app.plex.tv can open
        its items from any browser): `GET /identity`'s `claimed` ("1" or "0", as plexapi's
        `PlexServer.identity()` reads it; docs/plex-api-contract.md §1.2). None when Plex did
        not say (an error, an answer without it)."""
        try:
            root = self._query("/identity")
        except SyncError:
            return None
        value = None if root is None else root.get("claimed")
        return None if value is None else value == "1"

    def alert_listener(
        self, on_message: Callable[[Any], None], on_error: Callable[[Any], None]
    ) -> Any:
        """plexapi's AlertListener (a thread; `start()` it) for this server's notification
        websocket. It reads nothing of the server but `url(key, includeToken=True)` (plexapi
        4.18.3 alert.py), so it is given the address instead of a second connection."""
        from plexapi import logfilter
        from plexapi.alert import AlertListener

        # The listener logs its address, token included; plexapi's log filter hides a token
        # it was told of (its PlexServer tells it when made).
        if self._token:
            logfilter.add_secret(self._token)
        return AlertListener(_Endpoint(self.url, self._token), on_message, on_error)

    def _query(
        self,
        path: str,
        method: str = "GET",
        *,
        action: str = "",
        headers: dict[str, str] | None = None,
        data: bytes | bytearray | None = None,
        connecting: bool = False,
    ) -> ET.Element | None:
        """One request, after connecting (unless this is the connection's own `GET /`), its
        answer read as plexapi's `PlexServer.query` reads it: 200, 201 and 204 are answers (the
        body parsed as XML, None when empty), any other status is refused with the classified
        error; `action` names the request in that error. A busy answer from Plex (408, 429,
        5xx but 503: a Plex whose database is locked under bulk edits) is asked again after
        BUSY_RETRY_DELAYS first (clients/http.py); every request Plex sees is counted and
        throttled."""
        if not connecting:
            self.connect()
        from plexapi import utils

        writing = method != "GET"
        with plex_errors(
            self.secrets, self.url, self.timeout, connecting=connecting, writing=writing
        ):
            for delay in self._busy.delays():
                answer = self._send(method, path, data, headers)
                from_plex = self._count(answer)
                busy = _busy(answer.status, from_plex)
                self._busy.note(busy, delay)
                if delay is None or not busy:
                    break
                self._sleep(busy_pause(delay, answer.headers.get("Retry-After"), self._rng))
                if self._stopping.is_set():
                    break  # the refusal stands; the job is tried again by the next worker
            if not from_plex and busy:
                asked = action or f"{method} {path.partition('?')[0]}"
                raise _gateway_error(self.url, answer.status, asked)
            if not from_plex:
                self._refuse_not_plex(answer)
            if answer.status in _TOO_LARGE:  # about this request, whoever answered
                raise _too_large(answer.status, action or path.partition("?")[0], path, data)
            if answer.status not in (200, 201, 204):
                raise self._refusal(answer, connecting, action)
            return utils.parseXMLString(answer.text)

    def _send(
        self, method: str, path: str, data: bytes | bytearray | None, headers: dict[str, str] | None
    ) -> Answer:
        """One request in one of the `plex_max_concurrency` slots. A request that timed out
        keeps its slot for another `timeout`: Plex may still be running it (as long as a
        timed-out write may take to land, see engine/routing.py), and a Plex too slow to
        answer in time must not be sent more at once than the setting allows."""
        if not self.slots.acquire():
            raise WorkerStopping("the worker is stopping: not sent", server="plex")
        abandoned_for = 0.0
        try:
            return self.transport.request(
                method, path, timeout=self.timeout, body=data, headers=headers
            )
        except AnswerTimeout:
            abandoned_for = self.timeout
            raise
        finally:
            self.slots.release(abandoned_for)

    def _count(self, answer: Answer) -> bool:
        """Count a request Plex (or something in front of it) answered; returns whether Plex
        itself did (its X-Plex-Protocol header)."""
        with self._count_lock:
            self.request_count += 1
        from_plex = _from_plex(answer)
        if from_plex:
            self.answered = True
        return from_plex

    def _refuse_not_plex(self, answer: Answer) -> None:
        """Refuse an answer that did not come from Plex.

        A Plex Media Server marks every answer, errors included, with `X-Plex-Protocol`
        (docs/plex-api-contract.md, captures). A reverse proxy's error or maintenance page, a
        captive portal or a wrong port can answer 200 too; taking that as success would mark
        scenes synced that never reached Plex. Such an answer means Plex is not reachable.
        """
        # A refusal for its size is the request's fault, not a sign Plex is away; 101 is the
        # notification websocket's handshake.
        if answer.status in _TOO_LARGE or answer.status == 101:
            return
        location = answer.headers.get("Location") if 300 <= answer.status < 400 else None
        if location:
            raise _redirected(self.url, redact(location, self.secrets))
        raise ServerDownError(
            f"something other than Plex answered at {self.url} (HTTP "
            f"{answer.status}, no X-Plex-Protocol header): a reverse proxy, a "
            "maintenance page, or a URL that does not point at Plex",
            server="plex",
            status=answer.status,
        )

    def _refusal(self, answer: Answer, connecting: bool, action: str) -> SyncError:
        """The classified error for a status other than 200, 201 or 204."""
        status = answer.status
        if status == 401:
            return AuthError(
                "Plex rejected the token (401 Unauthorized): set a valid Plex token "
                "(plex_token); to find it in Plex Web: any item > Get Info > View XML, the "
                "value after X-Plex-Token= in the address",
                server="plex",
                status=401,
            )
        if status == 404:
            if connecting:
                return _not_plex(self.url, "404 Not Found")
            return NotInPlexError(
                "Plex has no such item any more (404 Not Found)", server="plex", status=404
            )
        if 300 <= status < 400 and answer.headers.get("Location"):
            return _redirected(self.url, redact(answer.headers["Location"], self.secrets))
        if not _standard_status(status):
            return TransientError(
                f"Plex (or a proxy in front of it) answered a non-standard HTTP status ({status})",
                server="plex",
                status=status,
            )
        return error_for_status(status, "plex", action=action)

    # ------------------------------------------------------------------ reads
    @_reads
    def sections(self) -> list[Section]:
        """Every library section Plex has (GET /library/sections)."""
        root = self._query("/library/sections")
        return [
            Section(
                int(d.get("key", "")),
                d.get("title", ""),
                d.get("type", ""),
                tuple(loc.get("path", "") for loc in d.iter("Location")),
                d.get("uuid", ""),
            )
            for d in (root if root is not None else [])
            if d.tag == "Directory"
        ]

    def list_section(self, section_id: int) -> Iterator[list[ListedItem]]:
        """Every movie-type item of a section with its files, one page of 500 at a time (a
        page in memory, never the library), in `addedAt` order: in Plex's default title order
        an item renamed while the pages are read (the sync renames items) moves to a page
        already read and is never listed, and the index would drop it."""
        start = 0
        while True:
            page, total = self._listing_page(section_id, start, LISTING_PAGE_SIZE, sort="addedAt")
            _check_page(section_id, start, LISTING_PAGE_SIZE, page, total)
            yield page
            start += LISTING_PAGE_SIZE
            if not page or start >= total:
                return

    def listing_pages(
        self, section_id: int, page_size: int = LISTING_PAGE_SIZE
    ) -> Iterator[list[ListedItem]]:
        """Every movie-type item of a section, one page at a time (memory bounded by the page).

        Ordered by `addedAt` (ties by ratingKey): an item edited while the pages are read keeps
        its place, where the default title order would move it. An item added or deleted
        meanwhile can still shift one item across a page boundary; callers that must not miss
        an item check the ones they expected and did not see.
        """
        start = 0
        while True:
            page, total = self._listing_page(
                section_id, start, page_size, sort="addedAt", with_fields=True
            )
            _check_page(section_id, start, page_size, page, total)
            if page:
                yield page
            start += page_size
            if not page or start >= total:
                return

    @_reads
    def items_detail(self, rating_keys: list[int]) -> dict[int, PlexItem]:
        """The full items (every tag, the locks) of these ratingKeys, 100 per request
        (`GET /library/metadata/1,2,3`); items Plex no longer has are absent."""
        found: dict[int, PlexItem] = {}
        for start in range(0, len(rating_keys), DETAIL_BATCH):
            ids = ",".join(str(k) for k in rating_keys[start : start + DETAIL_BATCH])
            try:
                root = self._query(f"/library/metadata/{ids}")
            except NotInPlexError:
                continue  # none of them exists any more
            if root is None:  # Plex answers with a MediaContainer: this is no answer
                raise TransientError(
                    f"Plex answered the read of items {shorten(ids, 60)} with nothing",
                    server="plex",
                )
            for video in root:
                if video.tag == "Video":
                    item = _plex_item(video)
                    found[item.rating_key] = item
        return found

    @_reads
    def newest_items(self, section_id: int, count: int) -> tuple[list[ListedItem], int]:
        """The most recently added items and the section's total size (incremental refresh)."""
        return self._listing_page(section_id, 0, count, sort="addedAt:desc")

    @_reads
    def _listing_page(
        self,
        section_id: int,
        start: int,
        size: int,
        sort: str | None = None,
        *,
        with_fields: bool = False,
    ) -> tuple[list[ListedItem], int]:
        query = f"/library/sections/{section_id}/all?type={MOVIE_SEARCH_TYPE}"
        if sort:
            query += f"&sort={sort}"
        root = self._query(
            query,
            headers={"X-Plex-Container-Start": str(start), "X-Plex-Container-Size": str(size)},
        )
        if root is None:  # Plex answers every listing with a MediaContainer, if empty
            raise TransientError(
                f"Plex answered the listing of library {section_id} with nothing", server="plex"
            )
        items = [
            _listed_item(video, section_id, with_fields) for video in root if video.tag == "Video"
        ]
        return items, int(root.get("totalSize") or root.get("size") or 0)

    @_reads
    def item_detail(self, rating_key: int) -> PlexItem:
        """The full item: every tag (listings truncate them) and which fields are locked."""
        root = self._query(f"/library/metadata/{rating_key}")
        video = root.find("Video") if root is not None else None
        if video is None:
            raise NotInPlexError(f"Plex item {rating_key} no longer exists")
        return _plex_item(video)

    def health(self) -> Health:
        """Prove Plex is really serving: reachable, token accepted, library readable."""
        started = self._clock()
        try:
            self.reset()
            sections = self.sections()
        except SyncError as exc:
            return Health(False, (self._clock() - started) * 1000, exc.message, exc)
        count = f"{len(sections)} {'library' if len(sections) == 1 else 'libraries'}"
        return Health(True, (self._clock() - started) * 1000, f"{count} readable")

    # ------------------------------------------------------------------ writes
    def edit(self, section_id: int, rating_key: int, params: dict[str, Any]) -> None:
        """One batched edit of one item: the PUT plexapi's edit mixins send."""
        from plexapi import utils

        args = {"type": MOVIE_SEARCH_TYPE, **params, "id": str(rating_key)}
        self._query(
            f"/library/sections/{section_id}/all{utils.joinArgs(args)}",
            method="PUT",
            action=f"the edit of Plex item {rating_key}",
        )

    def upload_image(self, rating_key: int, kind: str, data: bytes | bytearray) -> None:
        """Upload poster (`kind="poster"`) or background art (`"art"`) bytes."""
        plural = {"poster": "posters", "art": "arts"}[kind]
        self._query(
            f"/library/metadata/{rating_key}/{plural}",
            method="POST",
            data=data,
            action=f"the {kind} upload for Plex item {rating_key}",
        )

    def rate(self, rating_key: int, rating: float | None) -> None:
        """Set (0-10) or clear (None) the user rating, as plexapi's `rate()` does."""
        value = -1 if rating is None else rating
        self._query(
            f"/:/rate?key={rating_key}&identifier=com.plexapp.plugins.library&rating={value}",
            method="PUT",
            action=f"the rating of Plex item {rating_key}",
        )

    # ------------------------------------------------------------------ plays (Plex -> Stash)
    @_reads
    def plays(
        self,
        section_id: int | None,
        *,
        since: int | None = None,
        account_id: int | None = None,
        rating_key: int | None = None,
    ) -> list[Play]:
        """The watch history of one library, newest first, paged.

        The request plexapi's `PlexServer.history()` sends (`/status/sessions/history/all`,
        `sort=viewedAt:desc`, `viewedAt>=` for `mindate`, `accountID`, `librarySectionID`),
        with larger pages. Plays recorded while we page shift later pages, so an entry may
        come twice but none is skipped; callers de-duplicate.
        """
        from plexapi import utils

        args: dict[str, Any] = {"sort": "viewedAt:desc"}
        if section_id is not None:
            args["librarySectionID"] = section_id
        if rating_key is not None:
            args["metadataItemID"] = rating_key
        if account_id is not None:
            args["accountID"] = account_id
        if since is not None:
            args["viewedAt>"] = int(since)
        path = "/status/sessions/history/all" + utils.joinArgs(args)
        return [
            Play(
                int(video.get("ratingKey") or 0),
                int(video.get("librarySectionID") or section_id or 0),
                int(video.get("accountID") or 0),
                int(video.get("viewedAt") or 0),
                (video.get("historyKey") or "").rpartition("/")[2],
            )
            for video in self._paged(path)
            if (video.get("ratingKey") or "").isdigit() and (video.get("viewedAt") or "").isdigit()
        ]

    @_reads
    def view_states(self, section_id: int, **filters: Any) -> list[ViewState]:
        """Items of a library matching Plex filters, with their view state and rating.

        e.g. `inProgress=1` (partly watched) or `**{"lastRatedAt>>": t}` (rated after t; a
        field plexapi knows PMS filters on without listing it).
        """
        from plexapi import utils

        args = {"type": MOVIE_SEARCH_TYPE, **filters}
        path = f"/library/sections/{section_id}/all" + utils.joinArgs(args)
        return [_view_state(video, section_id) for video in self._paged(path)]

    @_reads
    def items_view_states(self, rating_keys: list[int]) -> dict[int, ViewState]:
        """The view state of these items (100 per request); deleted items are absent."""
        states: dict[int, ViewState] = {}
        for start in range(0, len(rating_keys), 100):
            ids = ",".join(str(k) for k in rating_keys[start : start + 100])
            try:
                root = self._query(f"/library/metadata/{ids}")
            except NotInPlexError:
                continue  # none of them exists any more
            for video in root if root is not None else []:
                if video.tag == "Video":
                    state = _view_state(video, int(video.get("librarySectionID") or 0))
                    states[state.rating_key] = state
        return states

    @_reads
    def accounts(self) -> dict[int, str]:
        """The server's accounts by id (`GET /accounts`; 1 is the server owner)."""
        root = self._query("/accounts")
        return {
            int(a.get("id", "")): a.get("name", "")
            for a in (root if root is not None else [])
            if a.tag == "Account" and (a.get("id") or "").isdigit()
        }

    def _paged(self, path: str) -> list[ET.Element]:
        elements: list[ET.Element] = []
        start = 0
        while True:
            root = self._query(
                path,
                headers={
                    "X-Plex-Container-Start": str(start),
                    "X-Plex-Container-Size": str(LISTING_PAGE_SIZE),
                },
            )
            if root is None:
                return elements
            page = [child for child in root if child.tag == "Video"]
            elements.extend(page)
            start += LISTING_PAGE_SIZE
            total = int(root.get("totalSize") or root.get("size") or 0)
            if not page or start >= total:
                return elements

    # ------------------------------------------------------------------ collection objects
    @_reads
    def collections(self, section_id: int, title: str | None = None) -> dict[str, int]:
        """The collection objects of a library by title (ratingKey), paged; with `title`,
        only those whose title contains it (Plex's `title=` filter)."""
        from plexapi import utils

        args = {"title": title} if title else {}
        path = f"/library/sections/{section_id}/collections" + utils.joinArgs(args)
        found: dict[str, int] = {}
        start = 0
        while True:
            root = self._query(
                path,
                headers={
                    "X-Plex-Container-Start": str(start),
                    "X-Plex-Container-Size": str(LISTING_PAGE_SIZE),
                },
            )
            page = [d for d in (root if root is not None else []) if d.tag == "Directory"]
            for directory in page:
                key = directory.get("ratingKey") or ""
                if key.isdigit():
                    found[directory.get("title", "")] = int(key)
            start += LISTING_PAGE_SIZE
            total = int(root.get("totalSize") or root.get("size") or 0) if root is not None else 0
            if not page or start >= total:
                return found

    def edit_collection(self, section_id: int, rating_key: int, params: dict[str, Any]) -> None:
        """One batched edit of a collection object (search type 18), as plexapi sends it."""
        from plexapi import utils

        args = {"type": COLLECTION_SEARCH_TYPE, **params, "id": str(rating_key)}
        self._query(
            f"/library/sections/{section_id}/all{utils.joinArgs(args)}",
            method="PUT",
            action=f"the edit of collection {rating_key}",
        )

    @_reads
    def collection_size(self, rating_key: int) -> int:
        """How many items a collection object holds: the `totalSize` of its children
        listing asked for no item (`X-Plex-Container-Size: 0`, as plexapi's `totalSize`
        asks). Raises NotInPlexError when Plex has no such collection."""
        root = self._query(
            f"/library/collections/{rating_key}/children",
            headers={"X-Plex-Container-Start": "0", "X-Plex-Container-Size": "0"},
            action=f"the size of collection {rating_key}",
        )
        return int(root.get("totalSize") or root.get("size") or 0) if root is not None else 0

    def delete_collection(self, rating_key: int) -> None:
        """Delete a collection object (`DELETE /library/collections/{ratingKey}`, plexapi's
        `Collection.delete`); its items stay."""
        self._query(
            f"/library/collections/{rating_key}",
            method="DELETE",
            action=f"the deletion of collection {rating_key}",
        )

    def scan_path(self, section_id: int, path: str) -> None:
        """Ask Plex to scan one folder (a partial scan); new items appear later."""
        from urllib.parse import quote_plus

        self._query(f"/library/sections/{section_id}/refresh?path={quote_plus(path)}")


_TAG_ELEMENTS = {
    "Genre": "genre",
    "Role": "actor",
    "Collection": "collection",
    "Director": "director",
    "Label": "label",
}
_FIELD_ATTRIBUTES = ("title", "titleSort", "summary", "studio", "originallyAvailableAt")


def _files(video: ET.Element) -> tuple[tuple[str, int | None], ...]:
    files = []
    for part in video.iter("Part"):
        size = part.get("size")
        files.append((part.get("file", ""), int(size) if size and size.isdigit() else None))
    return tuple(files)


def _listed_item(video: ET.Element, section_id: int, with_fields: bool = False) -> ListedItem:
    """One listed item; `with_fields` keeps its text fields and `updatedAt` too (a summary can
    be long: the index does not keep them)."""

    def tags(element: str) -> tuple[str, ...]:
        return tuple(c.get("tag", "") for c in video.findall(element))

    return ListedItem(
        int(video.get("ratingKey") or 0),
        section_id,
        _files(video),
        tags("Collection"),
        tags("Genre"),
        tags("Role"),
        _int_attr(video, "updatedAt") if with_fields else None,
        tuple((name, video.get(name, "")) for name in _FIELD_ATTRIBUTES) if with_fields else (),
    )


def _plex_item(video: ET.Element) -> PlexItem:
    tags: dict[str, list[str]] = {}
    for child in video:
        family = _TAG_ELEMENTS.get(child.tag)
        if family:
            tags.setdefault(family, []).append(child.get("tag", ""))
    rating = video.get("userRating")
    return PlexItem(
        rating_key=int(video.get("ratingKey") or 0),
        section_id=int(video.get("librarySectionID") or 0),
        fields={name: video.get(name, "") for name in _FIELD_ATTRIBUTES},
        tags=tags,
        locked=frozenset(
            f.get("name", "") for f in video.findall("Field") if f.get("locked") == "1"
        ),
        user_rating=float(rating) if rating else None,
        files=_files(video),
        updated_at=_int_attr(video, "updatedAt"),
    )


def connection_problem(text: str, url: str, timeout: float) -> SyncError:
    """The classified error for a failed connection to Plex, from the text urllib3 gives.

    Each cause a person meets gets its own explanation with the URL that was tried: https
    against a plain-http Plex, a certificate that is self-signed, expired or for another
    host name, an unknown host, a closed port, a timeout. Certificate and address problems
    are settings to fix (ConfigError: a hold, never an outage); a refused or timed-out
    connection is Plex being down (ServerDownError: the breaker).
    """
    lowered = text.lower()
    parts = urlsplit(url)
    host = parts.hostname or url
    port = parts.port or (443 if parts.scheme == "https" else 32400)
    plain = f"http://{parts.netloc}"
    if any(
        m in lowered
        for m in (
            "wrong_version_number",
            "wrong version number",
            "record layer failure",
            "unknown protocol",
            "packet length too long",
            "http_request",
        )
    ):
        return ConfigError(
            f"Plex at {url} does not speak https (it answered in plain http): set plex_url "
            f"to {plain}, or switch on secure connections in Plex",
            setting="plex_url",
            server="plex",
        )
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        switch_off = "switch off verify_tls (Verify Plex's certificate) if you trust this server"
        if "has expired" in lowered:
            why = "has expired"
            fix = f"renew it in Plex (or whatever serves it), or {switch_off}"
        elif "mismatch" in lowered or "doesn't match" in lowered or "not valid for" in lowered:
            why = f"is issued for another host name, not {host}"
            fix = (
                "use the host name the certificate names in plex_url (Plex's own certificate "
                f"is for its *.plex.direct address), use {plain}, or {switch_off}"
            )
        elif "self-signed" in lowered or "self signed" in lowered or "local issuer" in lowered:
            why = "is self-signed or signed by an authority this machine does not trust"
            fix = f"{switch_off}, or add its authority to REQUESTS_CA_BUNDLE"
        elif "verify failed" in lowered:
            why = "failed verification"
            fix = switch_off
        else:
            return ConfigError(
                f"the secure (TLS) connection to Plex at {url} failed: "
                f"{shorten(_ssl_reason(text), 160)}; check plex_url or use {plain}",
                setting="plex_url",
                server="plex",
            )
        return ConfigError(
            f"Plex's certificate at {url} {why}: {fix}", setting="verify_tls", server="plex"
        )
    if any(
        m in lowered
        for m in (
            "name or service not known",
            "nodename nor servname",
            "getaddrinfo failed",
            "failed to resolve",
            "name resolution",
            "no address associated",
        )
    ):
        return ConfigError(
            f"the host name {host} in plex_url ({url}) is unknown (it does not resolve to an "
            "address): check its spelling, or use Plex's IP address",
            setting="plex_url",
            server="plex",
        )
    if "refused" in lowered:
        return ServerDownError(
            f"Plex is not reachable at {url}: connection refused (nothing listens on port "
            f"{port}; is Plex running, and is {port} its port?)",
            server="plex",
        )
    if "timed out" in lowered or "timeout" in lowered:
        return ServerDownError(
            f"Plex at {url} did not answer within {timeout:g} s (connection timed out): is "
            "Plex running, and is the address right and reachable from this machine?",
            server="plex",
        )
    if "no route to host" in lowered or "network is unreachable" in lowered:
        return ServerDownError(
            f"Plex at {url} cannot be reached from this machine (no route to the host): is "
            "the address right, and is the network up?",
            server="plex",
        )
    if "remotedisconnected" in lowered or "connection aborted" in lowered or "reset" in lowered:
        return TransientError(
            f"Plex at {url} closed the connection without an answer"
            + (
                " (if Plex requires secure connections, use https:// in plex_url)"
                if parts.scheme == "http"
                else ""
            ),
            server="plex",
        )
    return ServerDownError(f"Plex is not reachable at {url}", server="plex")


# Statuses that refuse a request for its size (RFC 9110 15.5.14, 15.5.15; RFC 6585 5): from
# Plex or from a reverse proxy in front of it (nginx refuses an address over 8 KB and a body
# over 1 MB by default). The same request fails the same way: never an outage.
_TOO_LARGE = (413, 414, 431)


def _busy(status: int, from_plex: bool) -> bool:
    """Whether a request was refused for now, not for good. From Plex: 408, 429 and any 5xx
    but 503 (Plex in maintenance: an outage, see errors.error_for_status). From a reverse
    proxy in front of it: 502 and 504 (nginx, Traefik and Caddy send them when Plex did not
    answer them in time or dropped the connection; RFC 9110 15.6.3, 15.6.5)."""
    if not from_plex:
        return status in (502, 504)
    return status in (408, 429) or (status >= 500 and status != 503)


def _check_page(section_id: int, start: int, size: int, page: list[Any], total: int) -> None:
    """Refuse a listing page shorter than the library's total says it must be: a listing cut
    short would be taken for items deleted in Plex (and their scenes' links dropped)."""
    if len(page) < min(size, total - start):
        raise TransientError(
            f"Plex's listing of library {section_id} broke off: {len(page)} items from "
            f"position {start} of {total}",
            server="plex",
        )


def _gateway_error(url: str, status: int, action: str) -> GatewayError:
    """A reverse proxy's 502 or 504 that outlasted the re-asks: Plex behind it did not answer
    this request. Like Plex's own 500 it is the request's failure, not yet an outage: one
    busy moment of Plex must not hold the queue. Failures of several scenes in a row open the
    breaker, and a job failing twice has Plex's health checked (engine/routing.py,
    engine/worker.py), so a Plex down behind the proxy still holds the queue."""
    return GatewayError(
        f"a reverse proxy at {url} answered HTTP {status} to {action}: Plex behind it did "
        "not answer in time or is not running",
        server="plex",
        status=status,
    )


def _from_plex(answer: Answer) -> bool:
    """Plex marks every answer, errors included, with X-Plex-Protocol
    (docs/plex-api-contract.md)."""
    return "X-Plex-Protocol" in answer.headers


def _too_large(
    status: int, action: str, path: str, body: bytes | bytearray | None
) -> PermanentError:
    """The refusal of a request too large for Plex or a proxy in front of it, with its size
    and what to do."""
    if status == 413:
        length = len(body or b"")
        size = (
            f"a body of {length / 1_000_000:.1f} MB"
            if length >= 1_000_000
            else f"a body of {max(1, round(length / 1000))} KB"
        )
        fix = (
            "use a smaller image in Stash, or raise the proxy's limit (nginx: client_max_body_size)"
        )
    else:
        size = f"an address of {len(path):,} characters"
        fix = (
            "shorten the scene's longest text in Stash (usually its details), or raise the "
            "proxy's limit (nginx: large_client_header_buffers)"
        )
    return PermanentError(
        f"Plex, or a proxy in front of it, refused {action} as too large (HTTP {status}, "
        f"{size}): {fix}; then run Retry Dead Letters",
        server="plex",
        status=status,
    )


def _ssl_reason(text: str) -> str:
    """The OpenSSL reason inside an error text (e.g. "sslv3 alert handshake failure")."""
    match = re.search(r"\[SSL[^\]]*\]\s*([^(\"']+)", text)
    return match.group(1).strip() if match else text


@contextlib.contextmanager
def plex_errors(
    secrets: tuple[str, ...] = (),
    url: str = "",
    timeout: float = 30.0,
    *,
    connecting: bool = False,
    writing: bool = False,
) -> Iterator[None]:
    """Translate a failed exchange with Plex, or an answer that cannot be read, into a
    SyncError from Plex (chained). `url` is the server's address (for messages);
    `connecting`: the first request to the server (a malformed answer then hints at the URL);
    `writing`: a PUT, POST or DELETE, which a timed-out Plex may still apply later (the
    error's detail then carries UNSETTLED_WRITE).
    """
    try:
        yield
    except SyncError:
        raise
    except SetupProblem as exc:
        raise ConfigError(
            f"Plex at {url} cannot be reached as this machine is set up: {exc.text}",
            setting=exc.variable,
            server="plex",
        ) from exc
    except ProxyUnreachable as exc:
        raise ServerDownError(
            exc.describe("Plex", url), server="plex", detail={"setting": exc.variable}
        ) from exc
    except Unreachable as exc:
        raise connection_problem(redact(exc.text, secrets), url, timeout) from exc
    except AnswerTimeout as exc:
        if writing:  # Plex may still apply it: a newer write must not go first (routing)
            raise TransientError(
                f"Plex did not answer a write within {timeout:g} s (read timeout) and may "
                "still apply it, so it is sent again only after that could have happened; a "
                "very busy Plex can take longer: raise plex_timeout if this keeps happening",
                server="plex",
                detail={UNSETTLED_WRITE: True, ANSWER_LATE: True},
            ) from exc
        raise TransientError(
            f"Plex did not answer within {timeout:g} s (read timeout); a very busy Plex can "
            "take longer: raise plex_timeout if this keeps happening",
            server="plex",
            detail={ANSWER_LATE: True},
        ) from exc
    except AnswerBroken as exc:
        # The text can quote the request URL (percent-encoded, with our parameters): a
        # person gets what failed, not the URL.
        raise TransientError(
            "Plex's answer broke off before its end (the connection was cut); it is tried again",
            server="plex",
        ) from exc
    except ET.ParseError as exc:
        # Transient even when connecting: one odd answer is no verdict on the settings.
        hint = f" (if this persists, check that plex_url {url} is Plex)" if connecting else ""
        raise TransientError(f"Plex sent a malformed XML answer{hint}", server="plex") from exc
    except AttributeError as exc:
        raise TransientError("Plex sent an empty or incomplete answer", server="plex") from exc
    except (ValueError, KeyError, TypeError) as exc:
        # Raised while reading an answer (see `_reads`): a value missing or not a number.
        raise TransientError(
            f"Plex sent an answer that could not be read ({type(exc).__name__}: "
            f"{shorten(str(exc), 120)})",
            server="plex",
        ) from exc


def _redirected(url: str, location: str) -> ConfigError:
    """A redirect from the Plex URL: a setting to fix, never followed. (Following a 302 or
    303, HTTP clients turn the write into a read, which Plex answers 200: the write would seem
    to succeed.)"""
    target = location if "://" in location else f"{url}{location}"
    return ConfigError(
        f"Plex at {url} redirects to {shorten(target, 160)}: set plex_url to the address "
        "Plex answers at (often https:// where http:// was given)",
        setting="plex_url",
        server="plex",
    )


def _standard_status(status: int) -> bool:
    from http import HTTPStatus

    try:
        HTTPStatus(status)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Endpoint:
    """What plexapi's AlertListener reads of a PlexServer: `url(key, includeToken=True)`."""

    base_url: str
    token: str

    def url(self, key: str, includeToken: bool = False) -> str:  # plexapi's signature
        if self.token and includeToken:
            return f"{self.base_url}{key}{'&' if '?' in key else '?'}X-Plex-Token={self.token}"
        return f"{self.base_url}{key}"


def _not_plex(url: str, what: str) -> ConfigError:
    return ConfigError(
        f"{url} does not answer like a Plex Media Server ({what}): set plex_url to the "
        "server's address, e.g. http://192.168.1.10:32400",
        setting="plex_url",
        server="plex",
    )


def _int_attr(element: ET.Element, name: str) -> int | None:
    value = element.get(name)
    return int(value) if value and value.lstrip("-").isdigit() else None


def _view_state(video: ET.Element, section_id: int) -> ViewState:
    rating = video.get("userRating")
    return ViewState(
        rating_key=int(video.get("ratingKey") or 0),
        section_id=section_id,
        view_offset_ms=_int_attr(video, "viewOffset") or 0,
        view_count=_int_attr(video, "viewCount") or 0,
        last_viewed_at=_int_attr(video, "lastViewedAt"),
        user_rating=float(rating) if rating else None,
        last_rated_at=_int_attr(video, "lastRatedAt"),
    )
