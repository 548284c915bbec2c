"""The only code that talks to Stash: our own GraphQL documents over our transport
(clients/http.py), with timeouts.

Connection facts (see docs): Stash passes the host it binds to, which may be 0.0.0.0 or ::,
so we connect to loopback then; the plugin's session cookie expires (one hour by default), so
long runs switch to the API key read once through the cookie.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from stash2plex.clients import stash_documents as docs
from stash2plex.clients.http import (
    Answer,
    AnswerBroken,
    AnswerTimeout,
    BusyTries,
    ProxyUnreachable,
    RedirectFailed,
    ServerTransport,
    SetupProblem,
    Unreachable,
    busy_pause,
)
from stash2plex.errors import (
    AuthError,
    ConfigError,
    StashDownError,
    TransientError,
    error_for_status,
    redact,
    shorten,
    without_credentials,
)

DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read
IMAGE_CHUNK_BYTES = 64 * 1024
# Connections kept alive: the most sync threads (plex_max_concurrency, at most 16, and one more
# scene while Plex answers slowly: engine/sync_width.py) download images at once, and the
# reader thread asks GraphQL meanwhile.
STASH_CONNECTIONS = 18
PAGE_SIZE = 200
TAG_PAGE_SIZE = 1000


@dataclass(frozen=True)
class StashImage:
    """An image Stash served: its bytes, content type and SHA-1 (hex); `placeholder`: Stash's
    "no image" drawing, never worth uploading (bytes then empty)."""

    data: bytes | bytearray
    content_type: str
    sha1: str
    placeholder: bool = False


@dataclass(frozen=True)
class StashConnection:
    """Where Stash is and how to authenticate, built from Stash's `server_connection`."""

    url: str
    session_cookie: str | None = None
    api_key: str | None = None
    verify_tls: bool = True

    @classmethod
    def from_server_connection(
        cls, connection: dict[str, Any], api_key: str | None = None
    ) -> StashConnection:
        """From Stash's `server_connection` (a hook's or task's input).

        A wildcard bind host (0.0.0.0, ::) becomes loopback. Stash sends the session cookie
        as `{"Name", "Value"}`; any other shape counts as no cookie (the API key, if stored,
        still works), never as an error that stops the worker.
        """
        if not isinstance(connection, dict):
            connection = {}
        scheme = connection.get("Scheme") or "http"
        host = str(connection.get("Host") or "")
        if host in ("", "0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = connection.get("Port") or 9999
        session = connection.get("SessionCookie")
        cookie = str(session.get("Value") or "") or None if isinstance(session, dict) else None
        # Stash's certificate is rarely valid for loopback; the connection never leaves the host.
        return cls(
            f"{scheme}://{host}:{port}",
            cookie,
            api_key or None,
            verify_tls=scheme != "https" or host not in ("127.0.0.1", "[::1]"),
        )

    @classmethod
    def from_url(cls, url: str, api_key: str | None = None) -> StashConnection:
        """A connection given by address, for the command line and the service. Raises
        ConfigError (setting `stash_url`) for an address that is not one, saying the fix and
        never repeating a login or query the address carried."""
        text = url.strip().rstrip("/")
        if text.endswith("/graphql"):
            text = text[: -len("/graphql")]
        shown = without_credentials(text)
        example = "e.g. http://127.0.0.1:9999"
        key = (
            "the API key given in STASH2PLEX_STASH_API_KEY is used"
            if api_key
            else "give Stash's API key in STASH2PLEX_STASH_API_KEY"
        )
        if not text.lower().startswith(("http://", "https://")):
            if "://" not in text:  # the address itself: no login, query or path
                host = re.split(r"[/?#;]", text.rpartition("@")[2], maxsplit=1)[0]
                example = f"such as http://{host}"
            extra = (
                f", without a login (…@) or a query (?…): {key}"
                if shown.startswith("…@") or shown.endswith("…")
                else ""
            )
            raise ConfigError(
                f"stash_url {shown!r} must start with http:// or https:// ({example}){extra}",
                setting="stash_url",
            )
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ConfigError(
                f"stash_url {shown!r} is not an address: it needs a host name and a port "
                f"number up to 65535 ({example})",
                setting="stash_url",
            ) from None
        # A login or key in the address (`user:key@`, `?apikey=`) would be shown in every
        # message that names the address: Stash's API key has a variable of its own.
        # Any @ after the scheme: `user:pa/ss@host` puts the host in the path for urlsplit.
        if parts.query or parts.fragment or "@" in text.partition("://")[2]:
            address = f"{parts.scheme}://{text.partition('://')[2].rpartition('@')[2]}"
            raise ConfigError(
                f"stash_url must be Stash's address alone ({without_credentials(address)}), "
                f"without a login (…@) or a query (?…): {key}",
                setting="stash_url",
            )
        return cls(text, None, api_key or None)

    def secrets(self) -> tuple[str, ...]:
        """The credentials to keep out of every message."""
        return tuple(s for s in (self.session_cookie, self.api_key) if s)


class StashClient:
    """Stash's GraphQL API with explicit timeouts; raises classified SyncErrors."""

    def __init__(
        self,
        connection: StashConnection,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.connection = connection
        self.timeout = timeout
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._busy = BusyTries()
        self.transport = ServerTransport(
            connection.url,
            verify=connection.verify_tls,
            pool_size=STASH_CONNECTIONS,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        self._apply_auth()
        self._tags: dict[int, tuple[str, tuple[int, ...]]] | None = None

    def _apply_auth(self) -> None:
        # A new dict, swapped in whole: other threads may be sending with the old one.
        headers = {k: v for k, v in self.transport.headers.items() if k not in ("Cookie", "ApiKey")}
        if self.connection.api_key:
            headers["ApiKey"] = self.connection.api_key
        elif self.connection.session_cookie:
            headers["Cookie"] = f"session={self.connection.session_cookie}"
        self.transport.headers = headers

    def use_api_key(self, api_key: str) -> None:
        """Switch from the expiring session cookie to the API key."""
        self.connection = StashConnection(
            self.connection.url, self.connection.session_cookie, api_key, self.connection.verify_tls
        )
        self._apply_auth()

    # ------------------------------------------------------------------ transport
    def execute(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL document; return `data` or raise a classified error.

        A busy Stash (its database locked by a scan or an import) is asked again after
        BUSY_RETRY_DELAYS (clients/http.py) before a refusal counts: any document refused with
        "database is locked" (Stash rolled it back), and a query refused with 408, 429 or a
        5xx but 503. A mutation refused otherwise may have been applied: never sent again.
        """
        mutation = document.lstrip().startswith("mutation")
        body = json.dumps({"query": document, "variables": variables or {}}).encode()
        for delay in self._busy.delays():
            try:
                data = self._post(body)
            except _Busy as busy:
                self._busy.note(True, delay)
                if delay is None or (mutation and not busy.locked):
                    raise busy.error from None
                self._sleep(busy_pause(delay, None, self._rng))
            else:
                self._busy.note(False, delay)
                return data
        raise AssertionError("unreachable: the last try raises")

    def _post(self, body: bytes) -> dict[str, Any]:
        """One POST of a GraphQL request: its `data`, or a classified error (_Busy wrapping
        it when Stash refused for now)."""
        secrets = self.connection.secrets()
        try:
            response = self.transport.request("POST", "/graphql", body=body, timeout=self.timeout)
        except SetupProblem as exc:
            raise self._setup_error(exc) from exc
        except ProxyUnreachable as exc:
            raise StashDownError(exc.describe("Stash", self.connection.url)) from exc
        except Unreachable as exc:
            url = self.connection.url
            raise StashDownError(
                f"Stash is not reachable at {url}: is Stash running at {url}? "
                f"{_CHECK_STASH_URL[0].upper()}{_CHECK_STASH_URL[1:]}"
            ) from exc
        except AnswerTimeout as exc:
            raise TransientError("Stash did not answer in time", server="stash") from exc
        except AnswerBroken as exc:
            raise TransientError("Stash's answer broke off before its end", server="stash") from exc
        if response.status != 200:
            error = self._refusal(response.status, response.headers, redact(response.text, secrets))
            if _busy_status(response.status):
                raise _Busy(error)
            raise error
        try:
            payload = json.loads(response.body)
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise TransientError("Stash sent a reply that is not JSON", server="stash") from exc
        # An error is a failure even beside `data`: a nullable root field that failed is null
        # there (GraphQL spec, "Handling Field Errors"), and a failed findScene read as "no
        # such scene" would drop the scene's link.
        if payload.get("errors"):
            listed = (
                payload["errors"] if isinstance(payload["errors"], list) else [payload["errors"]]
            )
            messages = "; ".join(
                str(e.get("message") if isinstance(e, dict) else e) for e in listed
            )
            error = TransientError(
                redact(f"Stash GraphQL error: {messages}", secrets), server="stash"
            )
            if _LOCKED.search(messages):
                raise _Busy(error, locked=True)
            raise error
        return payload.get("data") or {}

    def _refusal(self, status: int, headers: Mapping[str, str], text: str) -> Exception:
        """The classified error for a status other than 200 (`text`: the answer, redacted)."""
        url = self.connection.url
        if "X-Plex-Protocol" in headers:  # Plex marks every answer (docs/plex-api-contract.md)
            return ConfigError(
                f"{url} is Plex's address, not Stash's (Plex answered HTTP {status}): "
                f"{_CHECK_STASH_URL}",
                setting="stash_url",
                server="stash",
                status=status,
            )
        if status == 401:
            return self._auth_error()
        location = headers.get("Location") if 300 <= status < 400 else None
        if location:
            target = location if "://" in location else f"{url}{location}"
            target = redact(target, self.connection.secrets())
            return ConfigError(
                f"Stash at {url} redirects to {shorten(target, 160)}: set stash_url "
                "(STASH2PLEX_STASH_URL) to the address Stash answers at",
                setting="stash_url",
                server="stash",
            )
        if status in (404, 405):
            # Stash serves POST /graphql at its root: whatever answered has no GraphQL here
            # (another server's port, or a path Stash is not behind).
            return ConfigError(
                f"no Stash answers at {url}: POST {url}/graphql was refused (HTTP {status}); "
                f"{_CHECK_STASH_URL}",
                setting="stash_url",
                server="stash",
                status=status,
            )
        if status == 503:  # Stash starting, or another server's page: either may be meant
            return error_for_status(
                status, "stash", f"if Stash does not run at {url}, {_CHECK_STASH_URL}"
            )
        return error_for_status(status, "stash", shorten(text) if status < 500 else "")

    def _setup_error(self, problem: SetupProblem) -> ConfigError:
        return ConfigError(
            f"Stash at {self.connection.url} cannot be reached as this machine is set up: "
            f"{problem.text}",
            setting=problem.variable,
            server="stash",
        )

    def _auth_error(self) -> AuthError:
        """Stash's 401, naming the credential that was refused."""
        if self.connection.api_key:
            message = (
                "Stash rejected the API key (401): it was regenerated or removed; set the "
                "current key from Stash's Settings > Security"
            )
        else:
            message = (
                "Stash rejected the plugin's session (401): the session cookie expired and no "
                "API key is available; generate an API key in Stash's Settings > Security"
            )
        return AuthError(message, server="stash", status=401)

    # ------------------------------------------------------------------ queries
    def find_scene(self, scene_id: int) -> dict[str, Any] | None:
        """One scene with the fields the sync needs, or None when Stash has no such scene."""
        return self.execute(docs.FIND_SCENE, {"id": str(scene_id)}).get("findScene")

    def find_scenes_by_ids(self, scene_ids: list[int]) -> dict[int, dict[str, Any] | None]:
        """The scenes with these ids in one request: id -> scene, or None for a scene Stash
        no longer has.

        Stash answers an explicit id list in full, or with an error naming the first id it
        does not have; that id is then recorded as gone and the rest asked for again.
        """
        found: dict[int, dict[str, Any] | None] = {}
        remaining = list(dict.fromkeys(int(i) for i in scene_ids))
        while remaining:
            try:
                data = self.execute(docs.FIND_SCENES_BY_IDS, {"ids": [str(i) for i in remaining]})
            except TransientError as exc:
                missing = _missing_scene(exc.message)
                if missing is None or missing not in remaining:
                    raise
                found[missing] = None
                remaining.remove(missing)
                continue
            for scene in data["findScenes"]["scenes"]:
                found[int(scene["id"])] = scene
            break
        return {scene_id: found.get(scene_id) for scene_id in scene_ids}

    def find_scenes(
        self,
        *,
        page: int = 1,
        per_page: int = PAGE_SIZE,
        scene_filter: dict[str, Any] | None = None,
        sort: str = "id",
    ) -> tuple[int, list[dict[str, Any]]]:
        """One page of scenes (1-based `page`) and the total count matching `scene_filter`."""
        data = self.execute(
            docs.FIND_SCENES,
            {
                "filter": {"page": page, "per_page": per_page, "sort": sort, "direction": "ASC"},
                "scene_filter": scene_filter or {},
            },
        )["findScenes"]
        return int(data["count"]), list(data["scenes"])

    def scene_ids(self, scene_filter: dict[str, Any] | None = None) -> list[int]:
        """Every scene id matching the filter (see `scene_id_pages`)."""
        return [scene_id for page in self.scene_id_pages(scene_filter) for scene_id in page]

    def scene_id_pages(self, scene_filter: dict[str, Any] | None = None) -> Iterator[list[int]]:
        """The ids of the scenes matching the filter, a page of 1,000 at a time, in id order."""
        page, seen = 1, 0
        while True:
            data = self.execute(
                docs.FIND_SCENE_IDS,
                {
                    "filter": {"page": page, "per_page": 1000, "sort": "id", "direction": "ASC"},
                    "scene_filter": scene_filter or {},
                },
            )["findScenes"]
            ids = [int(scene["id"]) for scene in data["scenes"]]
            if ids:
                yield ids
            seen += len(ids)
            if not ids or seen >= int(data["count"]):
                return
            page += 1

    def scene_updates(self, scene_filter: dict[str, Any]) -> list[tuple[int, str]]:
        """(id, updated_at) of every scene matching the filter, paged by 1000, by id.

        Stash compares an `updated_at` criterion as text against times written in its own UTC
        offset (docs/stash-plugin-protocol.md): callers ask with a margin and compare the
        returned times themselves.
        """
        found: list[tuple[int, str]] = []
        page = 1
        while True:
            data = self.execute(
                docs.FIND_SCENE_UPDATES,
                {
                    "filter": {"page": page, "per_page": 1000, "sort": "id", "direction": "ASC"},
                    "scene_filter": scene_filter,
                },
            )["findScenes"]
            found.extend((int(s["id"]), str(s["updated_at"])) for s in data["scenes"])
            if not data["scenes"] or len(found) >= int(data["count"]):
                return found
            page += 1

    def scenes_with_file(self, basename: str) -> list[dict[str, Any]]:
        """Scenes with a file of this name (`[{id, files: [{path, basename, size}]}]`).

        Stash matches a quoted `path` value as one phrase anywhere in the file's full path
        (SQL LIKE, so also inside folder names: callers compare the files themselves). The
        name is asked for in NFC and, when it differs, in NFD: Stash stores what the file
        system reported.
        """
        forms = list(dict.fromkeys(unicodedata.normalize(f, basename) for f in ("NFC", "NFD")))
        scene_filter: dict[str, Any] = {}
        for form in reversed(forms):
            criterion = {"path": {"value": f'"{form}"', "modifier": "INCLUDES"}}
            scene_filter = {**criterion, "OR": scene_filter} if scene_filter else criterion
        data = self.execute(
            docs.FIND_SCENE_FILES,
            {"filter": {"per_page": -1, "sort": "id"}, "scene_filter": scene_filter},
        )["findScenes"]
        return list(data["scenes"])

    def tag_hierarchy(self) -> dict[int, tuple[str, tuple[int, ...]]]:
        """Every tag: id -> (name, parent ids). Read once per client (a run) and kept until
        `forget_tag_hierarchy` (a tag changed); pages of 1000."""
        if self._tags is None:
            tags: dict[int, tuple[str, tuple[int, ...]]] = {}
            page = 1
            while True:
                data = self.execute(
                    docs.FIND_TAG_HIERARCHY,
                    {"filter": {"page": page, "per_page": TAG_PAGE_SIZE, "sort": "id"}},
                )["findTags"]
                for tag in data["tags"]:
                    parents = tuple(int(p["id"]) for p in tag.get("parents") or [])
                    tags[int(tag["id"])] = (str(tag.get("name") or ""), parents)
                if not data["tags"] or len(tags) >= int(data["count"]):
                    break
                page += 1
            self._tags = tags
        return self._tags

    def forget_tag_hierarchy(self) -> None:
        """A tag was changed, merged or deleted: read the hierarchy again when next needed."""
        self._tags = None

    def version(self) -> str:
        """Stash's version string (a cheap request that proves the credentials work)."""
        data = self.execute(docs.VERSION)
        return str((data.get("version") or {}).get("version") or "")

    def plugin_settings(self, plugin_id: str) -> dict[str, Any]:
        """The plugin's saved settings; empty when the user never saved any."""
        data = self.execute(docs.PLUGIN_SETTINGS, {"include": [plugin_id]})
        plugins = (data.get("configuration") or {}).get("plugins") or {}
        return dict(plugins.get(plugin_id) or {})

    def api_key(self) -> str:
        """Stash's API key ('' if the user never generated one)."""
        data = self.execute(docs.API_KEY)
        return str(((data.get("configuration") or {}).get("general") or {}).get("apiKey") or "")

    # ------------------------------------------------------------------ Plex -> Stash
    def play_states(self, scene_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Plays, resume point and rating of these scenes by id; deleted scenes are absent.

        One query per 200 ids; a batch naming a deleted scene is an error in Stash, so that
        batch is read again one scene at a time.
        """
        states: dict[int, dict[str, Any]] = {}
        for start in range(0, len(scene_ids), PAGE_SIZE):
            batch = [str(i) for i in scene_ids[start : start + PAGE_SIZE]]
            try:
                scenes = self.execute(docs.SCENES_PLAY_STATE, {"ids": batch})["findScenes"]
                found = scenes["scenes"]
            except TransientError:
                found = []
                for scene_id in batch:
                    scene = self.execute(docs.SCENE_PLAY_STATE, {"id": scene_id}).get("findScene")
                    if scene:
                        found.append(scene)
            states.update({int(scene["id"]): scene for scene in found})
        return states

    def add_plays(self, scene_id: int, times: list[str]) -> int:
        """Record plays at these RFC3339 times; returns the scene's new play count."""
        data = self.execute(docs.SCENE_ADD_PLAY, {"id": str(scene_id), "times": times})
        return int(data["sceneAddPlay"]["count"])

    def save_resume_time(self, scene_id: int, seconds: float) -> None:
        """Set the scene's resume point (seconds; 0 means start from the beginning)."""
        self.execute(docs.SCENE_SAVE_ACTIVITY, {"id": str(scene_id), "resume_time": seconds})

    def set_rating(self, scene_id: int, rating100: int | None) -> str:
        """Set (1-100) or clear (None) the rating; returns the scene's new updated_at."""
        data = self.execute(
            docs.SCENE_SET_RATING, {"input": {"id": str(scene_id), "rating100": rating100}}
        )
        return str((data.get("sceneUpdate") or {}).get("updated_at") or "")

    def image(self, url: str) -> StashImage:
        """Fetch an image Stash serves, once: streamed and hashed on the way in.

        An image of Stash's at another address (its `external_host` setting, behind a reverse
        proxy) is fetched where this client talks to Stash (`image_address`). Stash answers a
        scene without a cover with its SVG drawing (`image/svg+xml`): that is
        seen from the headers (or the first bytes) and the body is not read. A busy refusal
        (408, 429, a 5xx but 503) is asked again after BUSY_RETRY_DELAYS. Raises the
        classified errors of a download.
        """
        url = image_address(url, self.connection.url)
        for delay in self._busy.delays():
            response = self._image_answer(url)
            busy = _busy_status(response.status)
            self._busy.note(busy, delay)
            if delay is None or not busy:
                break
            response.close()
            self._sleep(busy_pause(delay, response.headers.get("Retry-After"), self._rng))
        with response:
            if response.status == 401:
                raise self._auth_error()
            if response.status != 200:
                raise error_for_status(response.status, "stash", "for an image download")
            content_type = response.headers.get("Content-Type", "")
            if "svg" in content_type.lower():
                return StashImage(b"", content_type, "", placeholder=True)
            digest = hashlib.sha1()
            # Filled as it streams in, never joined: one copy of the image per sync thread.
            body = bytearray()
            try:
                for chunk in response.chunks(IMAGE_CHUNK_BYTES):
                    if not body and chunk.lstrip()[:5].lower() in (b"<svg ", b"<?xml"):
                        return StashImage(b"", content_type, "", placeholder=True)
                    digest.update(chunk)
                    body += chunk
            except AnswerTimeout as exc:
                raise TransientError("Stash did not send an image in time", server="stash") from exc
            except AnswerBroken as exc:
                raise TransientError("Stash broke off an image download", server="stash") from exc
        return StashImage(body, content_type, digest.hexdigest())

    def _image_answer(self, url: str) -> Answer:
        """The answer to one image request, its body not read yet. Raises the classified
        errors of a download that got no answer."""
        try:
            return self.transport.request(
                "GET", url, timeout=self.timeout, stream=True, follow_redirects=True
            )
        except SetupProblem as exc:
            raise self._setup_error(exc) from exc
        except ProxyUnreachable as exc:
            raise StashDownError(exc.describe("Stash", self.connection.url)) from exc
        except Unreachable as exc:
            if self.transport.own_path(url) is None:  # not Stash's address: only this image
                where = urlsplit(url).hostname or "another address"
                raise TransientError(
                    f"Stash gives this scene's image at {where}, which cannot be reached from "
                    "here and is not an image address of Stash's: check Stash's external_host "
                    "setting (it should be the address Stash answers at)",
                    server="stash",
                ) from exc
            raise StashDownError("Stash is not reachable for an image download") from exc
        except AnswerTimeout as exc:
            raise TransientError("Stash did not send an image in time", server="stash") from exc
        except RedirectFailed as exc:
            where = urlsplit(exc.location).hostname or "another address"
            why = "in a loop" if exc.loop else f"to {where}, which failed"
            raise TransientError(
                f"the cover's address in Stash redirects {why}; the scene is tried again",
                server="stash",
            ) from exc


# The routes Stash serves its images at, the end of every image URL it hands out
# (stashapp/stash internal/api: /scene/{id}/screenshot, /performer|studio|tag/{id}/image,
# /group/{id}/frontimage…).
# Matched at the end of the whole URL: an `external_host` written with a query of its own
# (`https://host/a?b=c`) puts the route inside the query; the route's own query (`?t=…`)
# follows it.
_IMAGE_ROUTE = re.compile(
    r"(/(?:scene|performer|studio|tag|group|movie|gallery|image)/[0-9]+/[A-Za-z_]+)"
    r"(\?[^?#]*)?(?:#.*)?$"
)


def image_address(url: str, stash_url: str) -> str:
    """Where to fetch an image URL Stash handed out: at `stash_url`, the address this client
    talks to Stash at.

    Stash writes every URL it hands out with its `external_host` setting when one is set
    (stashapp/stash internal/api BaseURLMiddleware; set by most users behind a reverse
    proxy): a public name often not reachable from where the plugin runs, and behind a login
    of the proxy's. A URL at another address that ends in one of Stash's image routes (and
    its query) is therefore fetched at `stash_url` (path from the route on, query kept); any
    other URL is left as it is (it gets no credentials of Stash's, see
    `ServerTransport.request`).
    Only URLs Stash handed out are given here."""
    stash_url = stash_url.rstrip("/")
    if url.lower().startswith(stash_url.lower() + "/"):
        return url
    route = _IMAGE_ROUTE.search(url)
    if route is None:
        return url
    return stash_url + route.group(1) + (route.group(2) or "")


_MISSING_SCENE = re.compile(r"scene with id (\d+) not found")


class _Busy(Exception):
    """Stash refused a request for now (`error`, the classified refusal); `locked`: its
    database was locked, so nothing of the request was applied."""

    def __init__(self, error: Exception, *, locked: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.locked = locked


# Stash's words when SQLite refuses a transaction (stashapp/stash issues 3053, 4849, 5252:
# "beginning transaction: database is locked"); the request was rolled back.
_LOCKED = re.compile(r"database is locked|database is busy|SQLITE_BUSY", re.IGNORECASE)


_CHECK_STASH_URL = (
    "check stash_url (STASH2PLEX_STASH_URL), or the server connection Stash passes the plugin"
)


def _busy_status(status: int) -> bool:
    """408, 429 and any 5xx but 503 (Stash starting or stopped: StashDownError)."""
    return status in (408, 429) or (status >= 500 and status != 503)


def _missing_scene(message: str) -> int | None:
    """The id Stash named in "scene with id N not found", if that is the error."""
    match = _MISSING_SCENE.search(message)
    return int(match.group(1)) if match else None
