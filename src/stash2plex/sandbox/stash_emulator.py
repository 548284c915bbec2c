"""An emulated Stash server: GraphQL and image routes over real HTTP, with auth and faults.

It answers the documents Stash2Plex sends the way Stash v0.30.1 does (see
docs/stash-plugin-protocol.md): gqlgen's status codes (422 for a query that does not parse or
validate, 200 with `errors` when a resolver fails), `findScenes` paging, the sort whitelist and
the criteria semantics of Stash's SQL (timestamps compared as text, hierarchical studios and
tags), image URLs built from the request's Host header, the SVG placeholder for a missing cover,
and auth by `ApiKey` header, `apikey` query parameter or the plugin's expiring session cookie.

The schema is the hand-written subset in `stash_subset.graphql`; a contract test proves it a
true subset of the real schema. The library is live: resolvers read it on every request, so
a test edits a scene (or calls `update_scene`) and the next query sees it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import json
import operator
import os
import posixpath
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import parse_qs, urlsplit

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_ast_schema,
    execute_sync,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.utilities import get_operation_ast

from stash2plex.sandbox import images
from stash2plex.sandbox.library import (
    Group,
    Performer,
    SampleLibrary,
    Scene,
    Studio,
    Tag,
    VideoFile,
    format_rfc3339,
)

STASH_VERSION = {"version": "v0.30.1", "hash": "b23b0267", "build_time": "2025-12-18 14:57:33"}
SESSION_COOKIE = "session"
DEFAULT_SESSION_MAX_AGE = 3600  # Stash's max_session_age default, in seconds

# Stash v0.30.1's whitelist of scene sorts (CVE-2024-32231): anything else is an error.
SCENE_SORTS = frozenset(
    {
        *("bitrate", "created_at", "code", "date", "file_count", "filesize", "duration"),
        *("file_mod_time", "framerate", "group_scene_number", "id", "interactive"),
        *("interactive_speed", "last_o_at", "last_played_at", "movie_scene_number"),
        *("o_counter", "organized", "performer_count", "play_count", "play_duration"),
        *("resume_time", "path", "perceptual_similarity", "random", "rating", "studio"),
        *("tag_count", "title", "updated_at", "performer_age"),
    }
)
DEFAULT_PER_PAGE = 25

_IMAGE_ROUTE = re.compile(
    r"^/(scene)/(\d+)/screenshot$|^/(performer|studio)/(\d+)/image$|^/(group)/(\d+)/frontimage$"
)
# Every field of SceneUpdateInput (v0.30.1): a hook's `input` carries them all, unset = null.
SCENE_UPDATE_INPUT_FIELDS = (
    *("clientMutationId", "id", "title", "code", "details", "director", "url", "urls", "date"),
    *("rating100", "o_counter", "organized", "studio_id", "gallery_ids", "performer_ids"),
    *("movies", "groups", "tag_ids", "cover_image", "stash_ids", "resume_time"),
    *("play_duration", "play_count", "primary_file_id"),
)
_PLUGIN_ROUTE = re.compile(r"^/plugin/([^/]+)/(javascript|css)$")
#: How long a `runPluginOperation` may run before the emulator gives up (Stash has no limit).
OPERATION_TIMEOUT_SECONDS = 120.0
_RELATIVE_TIME = re.compile(r"^([<>])(\d+)([smhd])$")
_OPERATION_NAME = re.compile(r"\b(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")


class StashError(Exception):
    """An error a Stash resolver returns (the reply is HTTP 200 with `errors`)."""


class GraphQLRequest(NamedTuple):
    """One GraphQL request the emulator received."""

    operation_name: str | None
    variables: dict[str, Any]


@lru_cache(maxsize=1)
def load_schema() -> GraphQLSchema:
    """The emulator's schema, built from the subset SDL shipped in this package."""
    sdl = (files(__package__) / "stash_subset.graphql").read_text(encoding="utf-8")
    return build_ast_schema(parse(sdl))


# --------------------------------------------------------------------------- the emulator
class StashEmulator:
    """A Stash server on loopback serving a `SampleLibrary`.

    Faults (`fail`, `latency`, `graphql_error`) and auth (`require_auth`, `api_key`, cookies
    issued by `server_connection`) can be changed while it runs. `log` records every GraphQL
    request received, including ones answered by a fault or a 401, so tests can count attempts.
    """

    def __init__(
        self,
        library: SampleLibrary,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "",
        require_auth: bool = False,
        plugin_id: str = "Stash2Plex",
        plugin_settings: dict | None = None,
        clock: Callable[[], float] = time.time,
        utc_offset: str = "+10:00",
        session_max_age: int = DEFAULT_SESSION_MAX_AGE,
        external_host: str = "",
    ) -> None:
        self.library = library
        self.host = host
        self.port = port
        self.api_key = api_key
        self.require_auth = require_auth
        self.plugin_id = plugin_id
        self.plugin_settings: dict = dict(plugin_settings or {})
        self.clock = clock
        self.utc_offset = utc_offset
        self.tz = _parse_offset(utc_offset)
        self.session_max_age = session_max_age
        # Stash's `external_host` setting (behind a reverse proxy): every URL Stash hands out
        # starts with it instead of the address the client used.
        self.external_host = external_host
        self.log: list[GraphQLRequest] = []
        self.http_log: list[tuple[str, str, int]] = []  # (method, path with query, status)
        # Hooks Stash fires after a mutation commits: each is logged, then handed to
        # `on_hook` (if set) before the mutation's answer is sent, as Stash runs its hooks.
        self.hooks: list[dict[str, Any]] = []
        self.on_hook: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.RLock()
        self._cookies: dict[str, float] = {}  # value -> expiry (clock seconds)
        self._faults = _Faults()
        # The most image requests waiting out their injected latency at once (how many scenes
        # a client downloads covers for at the same time).
        self.images_at_once = 0
        self.max_images_at_once = 0
        self._images_lock = threading.Lock()
        # Image cache-buster stamps of performers/studios/tags/groups (bumped by `rename`).
        self._entity_stamps: dict[tuple[str, int], int] = {}
        self._base_stamp = int(clock())
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.plugin_runner: Any = None  # a sandbox.runner.PluginRunner, see attach_plugin
        #: Tasks started by `runPluginTask` (RunningPlugin objects; the job id is index + 1).
        self.task_runs: list[Any] = []
        self._ui_root: Any = None  # a directory served at / (see serve_ui)

    # ----------------------------------------------------------------- plugins
    def attach_plugin(self, runner: Any) -> None:
        """Install the plugin a `PluginRunner` runs: `runPluginOperation` on its ID runs it
        through the runner exactly as Stash runs a plugin operation, and its `ui:` files are
        served at `/plugin/<ID>/javascript` and `/plugin/<ID>/css`, as Stash serves them."""
        self.plugin_runner = runner

    def serve_ui(self, root: Any) -> None:
        """Serve a web UI from the directory `root` at `/` (index.html) and `/ui/<file>`, in
        place of Stash's own UI: the browser tests load a page there that provides
        `window.PluginApi` and talks to this emulator's `/graphql`."""
        self._ui_root = root

    def _run_operation(self, plugin_id: str, args: dict | None) -> Any:
        runner = self.plugin_runner
        if runner is None or runner.manifest.id != plugin_id:
            raise StashError(f"no plugin with ID {plugin_id}")
        # Stash builds the input from the caller's args alone: no task, so no defaultArgs.
        run = runner.run_task(
            None, self.server_connection(), args=args or {}, timeout=OPERATION_TIMEOUT_SECONDS
        )
        if run.error is not None:
            raise StashError(run.error)
        return run.output

    def _run_task(self, plugin_id: str, task_name: str | None, args: dict | None) -> str:
        runner = self.plugin_runner
        if runner is None or runner.manifest.id != plugin_id:
            raise StashError(f"no plugin with ID {plugin_id}")
        if task_name is not None:
            try:
                runner.manifest.task(task_name)
            except LookupError:
                raise StashError(f"no task with name {task_name} in plugin {plugin_id}") from None
        running = runner.start_task(task_name, self.server_connection(), args=args or {})
        with self._lock:
            self.task_runs.append(running)
            return str(len(self.task_runs))

    def _job(self, job_id: str) -> dict[str, Any] | None:
        """A task started by `runPluginTask` as Stash's job queue shows it: RUNNING until the
        plugin exits, then FAILED with the plugin's `error`, or FINISHED."""
        with self._lock:
            index = int(job_id) - 1 if job_id.isdigit() else -1
            if not 0 <= index < len(self.task_runs):
                return None
            running = self.task_runs[index]
        job: dict[str, Any] = {"id": job_id, "description": f"Running plugin task #{job_id}"}
        if running.running():
            return {**job, "status": "RUNNING", "progress": None, "error": None}
        try:
            run = running.wait()
        except Exception as exc:  # a runner error: the job failed as Stash would say
            return {**job, "status": "FAILED", "progress": 1.0, "error": str(exc)}
        status = "FAILED" if run.error else "FINISHED"
        return {**job, "status": status, "progress": 1.0, "error": run.error}

    def _plugin_file(self, plugin_id: str, kind: str) -> bytes | None:
        """The plugin's `ui.javascript` or `ui.css` files, concatenated (URLs are left to the
        browser, as in Stash); None when no such plugin is installed."""
        runner = self.plugin_runner
        if runner is None or runner.manifest.id != plugin_id:
            return None
        names = runner.manifest.ui.javascript if kind == "javascript" else runner.manifest.ui.css
        # Stash joins each name to the plugin folder (filepath.Join cleans `..`, symlinks are
        # followed when the file is opened); stricter here: a name may not climb out of it.
        root = os.path.normpath(os.path.abspath(runner.plugin_dir))
        parts = []
        for name in names:
            if name.startswith(("http://", "https://")):
                continue
            path = os.path.normpath(os.path.join(root, name))
            if not path.startswith(root + os.sep):
                continue
            with contextlib.suppress(OSError), open(path, "rb") as handle:
                parts.append(handle.read())
        return b"\n".join(parts)

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:9999` (the port is known once started)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> StashEmulator:
        """Start serving; after `stop`, starting again reuses the same port (a restart)."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"stash-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (clients see the server go away)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StashEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- auth
    def server_connection(
        self, *, host: str = "0.0.0.0", plugin_dir: str = "", stash_dir: str = ""
    ) -> dict:
        """What Stash puts in `PluginInput.server_connection`, with a fresh session cookie."""
        now = self.clock()
        value = self._issue_cookie(now)
        expires = datetime.fromtimestamp(int(now + self.session_max_age), self.tz)
        return {
            "Scheme": "http",
            "Host": host,
            "Port": self.port,
            "SessionCookie": {
                "Name": SESSION_COOKIE,
                "Value": value,
                "Path": "/",
                "Domain": "",
                "Expires": format_rfc3339(expires),
                "RawExpires": "",
                "MaxAge": self.session_max_age,
                "Secure": False,
                "HttpOnly": False,
                "SameSite": 2,
                "Raw": "",
                "Unparsed": None,
                "Quoted": False,
                "Partitioned": False,
            },
            "Dir": stash_dir,
            "PluginDir": plugin_dir,
        }

    def expire_cookies(self) -> None:
        """Every session cookie issued so far is rejected from now on (when auth is required)."""
        with self._lock:
            self._cookies.clear()

    def _issue_cookie(self, now: float) -> str:
        # Shaped like a gorilla securecookie: URL-safe base64 of "timestamp|payload|mac".
        raw = f"{int(now)}|{secrets.token_urlsafe(24)}|{secrets.token_hex(16)}"
        value = base64.urlsafe_b64encode(raw.encode()).decode()
        with self._lock:
            self._cookies[value] = now + self.session_max_age
        return value

    def _authorized(self, headers: Any, query: dict[str, list[str]], cookie_header: str) -> bool:
        if not self.require_auth:
            return True
        # As in Stash, a presented API key decides alone: a wrong key is 401 even with a cookie.
        presented = headers.get("ApiKey") or (query.get("apikey") or [""])[0]
        if presented:
            return bool(self.api_key) and secrets.compare_digest(presented, self.api_key)
        value = _cookie_value(cookie_header, SESSION_COOKIE)
        if not value:
            return False
        with self._lock:
            expiry = self._cookies.get(value)
        return expiry is not None and self.clock() < expiry

    # ----------------------------------------------------------------- library edits
    def now_text(self) -> str:
        """The current time as Stash writes timestamps (RFC3339, seconds, local offset)."""
        return format_rfc3339(datetime.fromtimestamp(int(self.clock()), self.tz))

    def update_scene(self, scene_id: int, **changes: Any) -> None:
        """Edit a scene as a user saving it in Stash: fields change and `updated_at` is bumped."""
        allowed = {f.name for f in dataclasses.fields(Scene)} - {"id"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"Scene has no field(s) {sorted(unknown)}")
        with self._lock:
            scene = self.library.scenes[scene_id]
            for name, value in changes.items():
                setattr(scene, name, copy.deepcopy(value))
            if "updated_at" not in changes:
                scene.updated_at = self.now_text()

    def delete_scene(self, scene_id: int) -> None:
        """Delete a scene (as Stash's destroy or clean would)."""
        with self._lock:
            del self.library.scenes[scene_id]

    def delete_entity(self, kind: str, entity_id: int) -> None:
        """Delete a performer, studio, tag or group, as Stash's destroy mutations do.

        Stash's database drops every reference with it: scenes no longer show it (their
        `updated_at` is not touched), a deleted studio's children lose their parent, a deleted
        tag's children lose that parent. Afterwards no query can find which scenes showed it.
        """
        pools = self._pools()
        if kind not in pools:
            raise ValueError(f"kind must be one of {sorted(pools)}, not {kind!r}")
        with self._lock:
            del pools[kind][entity_id]
            library = self.library
            for scene in library.scenes.values():
                if kind == "performer" and entity_id in scene.performer_ids:
                    scene.performer_ids = [i for i in scene.performer_ids if i != entity_id]
                elif kind == "studio" and scene.studio_id == entity_id:
                    scene.studio_id = None
                elif kind == "tag" and entity_id in scene.tag_ids:
                    scene.tag_ids = [i for i in scene.tag_ids if i != entity_id]
                elif kind == "group" and entity_id in scene.group_ids:
                    scene.group_ids = [i for i in scene.group_ids if i != entity_id]
            if kind == "studio":
                for studio in library.studios.values():
                    if studio.parent_id == entity_id:
                        studio.parent_id = None
            if kind == "tag":
                for tag in library.tags.values():
                    if entity_id in tag.parent_ids:
                        tag.parent_ids = [i for i in tag.parent_ids if i != entity_id]

    def merge_scenes(self, destination: int, sources: list[int], **values: Any) -> None:
        """Merge scenes as Stash's `sceneMerge` does: the sources' files move to the
        destination (after its own), the sources are deleted, `values` are set on the
        destination. Like Stash, this fires no hook at all (`pkg/scene/merge.go`)."""
        with self._lock:
            target = self.library.scenes[destination]
            for source_id in sources:
                source = self.library.scenes.pop(source_id)
                target.files = [*target.files, *source.files]
            for name, value in values.items():
                setattr(target, name, copy.deepcopy(value))
            target.updated_at = self.now_text()

    def move_file(self, old_path: str, new_path: str) -> int:
        """A file renamed or moved on disk and found by a scan: Stash keeps the file (and its
        scene) and updates the path. Returns the scene id."""
        with self._lock:
            for scene in self.library.scenes.values():
                for index, file in enumerate(scene.files):
                    if file.path == old_path:
                        scene.files[index] = dataclasses.replace(file, path=new_path)
                        scene.updated_at = self.now_text()
                        return scene.id
        raise KeyError(old_path)

    def _pools(self) -> dict[str, dict]:
        return {
            "performer": self.library.performers,
            "studio": self.library.studios,
            "tag": self.library.tags,
            "group": self.library.groups,
        }

    def rename(self, kind: str, entity_id: int, name: str) -> None:
        """Rename a performer, studio, tag or group.

        Like real Stash this does not touch the `updated_at` of the scenes that reference it,
        so an incremental sync by `updated_at` does not see the change.
        """
        pools = {
            "performer": self.library.performers,
            "studio": self.library.studios,
            "tag": self.library.tags,
            "group": self.library.groups,
        }
        if kind not in pools:
            raise ValueError(f"kind must be one of {sorted(pools)}, not {kind!r}")
        with self._lock:
            pools[kind][entity_id].name = name
            # The entity's own updated_at moves, and with it the cache-buster of its image URL.
            self._bump(kind, entity_id)

    def drop_child(self, kind: str, parent_id: int, child_id: int) -> None:
        """A child tag or studio taken out from under its parent on the parent's edit page
        (`tagUpdate` with `child_ids`, `studioUpdate` of the child's `parent_id`): the child
        loses that parent; Stash fires `Tag.Update.Post` / `Studio.Update.Post` for the parent
        only, and the scenes' `updated_at` stay as they were."""
        with self._lock:
            if kind == "tag":
                tag = self.library.tags[child_id]
                tag.parent_ids = [i for i in tag.parent_ids if i != parent_id]
            elif kind == "studio":
                studio = self.library.studios[child_id]
                if studio.parent_id == parent_id:
                    studio.parent_id = None
            else:
                raise ValueError(f"kind must be 'tag' or 'studio', not {kind!r}")
            self._bump(kind, parent_id)
            self._bump(kind, child_id)

    def _stamp(self, kind: str, entity_id: int) -> int:
        return self._entity_stamps.get((kind, entity_id), self._base_stamp)

    def _bump(self, kind: str, entity_id: int) -> None:
        stamp = max(int(self.clock()), self._stamp(kind, entity_id) + 1)
        self._entity_stamps[(kind, entity_id)] = stamp

    def update_studio(
        self, studio_id: int, *, details: str | None = None, new_image: bool = False
    ) -> None:
        """Edit a studio as a user would: new details and/or a new image (new bytes, new `t=`)."""
        with self._lock:
            studio = self.library.studios[studio_id]
            if details is not None:
                studio.details = details
            if new_image:
                studio.has_image = True
                studio.image_version += 1
            self._bump("studio", studio_id)

    def update_group(
        self, group_id: int, *, synopsis: str | None = None, new_front_image: bool = False
    ) -> None:
        """Edit a group: new synopsis and/or a new front image."""
        with self._lock:
            group = self.library.groups[group_id]
            if synopsis is not None:
                group.synopsis = synopsis
            if new_front_image:
                group.has_front_image = True
                group.front_image_version += 1
            self._bump("group", group_id)

    def _fire_hook(self, trigger: str, object_id: int, hook_input: Any, fields: list[str]) -> None:
        hook = {"type": trigger, "id": object_id, "input": hook_input}
        if fields:
            hook["inputFields"] = fields
        self.hooks.append(hook)
        if self.on_hook is not None:
            self.on_hook(copy.deepcopy(hook))

    def hook_count(self, trigger: str | None = None) -> int:
        """How many hooks fired (of one trigger, e.g. "Scene.Update.Post")."""
        return sum(1 for h in list(self.hooks) if trigger is None or h["type"] == trigger)

    # ----------------------------------------------------------------- log and faults
    def count(self, operation_name: str | None = None) -> int:
        """How many GraphQL requests (with this operation name, if given) were received."""
        entries = list(self.log)
        if operation_name is None:
            return len(entries)
        return sum(1 for entry in entries if entry.operation_name == operation_name)

    def fail(
        self, status: int, count: int | None = None, every: int = 1, *, images: bool = False
    ) -> None:
        """Answer the next `count` requests (every request if None) with this HTTP status;
        with `every`, only every n-th request (a busy Stash), `count` counting the failed;
        with `images`, only requests outside GraphQL (images: a broken screenshot file)."""
        self._faults.set_http(status, count, every, images=images)

    def latency(self, seconds: float, images: float | None = None) -> None:
        """Delay every GraphQL answer by `seconds` and every image by `images` (default: the
        same) until cleared."""
        self._faults.delay = max(0.0, float(seconds))
        self._faults.image_delay = self._faults.delay if images is None else max(0.0, images)

    def _wait_as_an_image(self, seconds: float) -> None:
        with self._images_lock:
            self.images_at_once += 1
            self.max_images_at_once = max(self.max_images_at_once, self.images_at_once)
        try:
            time.sleep(seconds)
        finally:
            with self._images_lock:
                self.images_at_once -= 1

    def graphql_error(self, message: str, count: int | None = None, every: int = 1) -> None:
        """Answer the next `count` GraphQL requests with 200, `errors` and `data: null`; with
        `every`, only every n-th request (Stash's "database is locked" during a scan)."""
        self._faults.set_graphql(message, count, every)

    def hold(self, operation_name: str) -> threading.Event:
        """Stop the next GraphQL request with this operation name before it runs (it is
        logged), until the returned event is set; it is then answered 503 without running, as a
        request that never reached Stash: a client killed meanwhile wrote nothing."""
        return self._faults.set_hold(operation_name)

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    # ----------------------------------------------------------------- HTTP dispatch
    def _handle(self, handler: _Handler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)  # clients here always send it
        body = handler.rfile.read(length) if length > 0 else b""

        payload: dict | None = None
        payload_error = ""
        if parts.path == "/graphql":
            payload, payload_error = _graphql_payload(method, body, query)
            if payload is not None:
                entry = _log_entry(payload)
                self.log.append(entry)
                held = self._faults.take_hold(entry.operation_name)
                if held is not None:
                    held.wait(60)
                    handler.reply(503, b"emulated fault: held, not run\n", "text/plain")
                    return

        if parts.path == "/graphql":
            if self._faults.delay:
                time.sleep(self._faults.delay)
        elif self._faults.image_delay:
            self._wait_as_an_image(self._faults.image_delay)
        status = self._faults.take_http(image=parts.path != "/graphql")
        if status is not None:
            handler.reply(status, f"emulated fault: HTTP {status}\n".encode(), "text/plain")
            return
        if not self._authorized(handler.headers, query, handler.headers.get("Cookie") or ""):
            handler.reply(401, b"Unauthorized\n", "text/plain; charset=utf-8")
            return

        if parts.path == "/graphql":
            if payload is None:
                handler.reply(400, payload_error.encode(), "text/plain; charset=utf-8")
                return
            message = self._faults.take_graphql()
            if message is not None:
                reply = {"errors": [{"message": message}], "data": _failed_data(payload)}
                handler.reply_json(200, reply)
                return
            status, reply = self._execute(payload, _base_url(handler.headers, self))
            handler.reply_json(status, reply)
            return

        plugin_route = _PLUGIN_ROUTE.match(parts.path)
        if plugin_route and method in ("GET", "HEAD"):
            body = self._plugin_file(plugin_route.group(1), plugin_route.group(2))
            if body is None:
                handler.reply(404, b"Not Found\n", "text/plain; charset=utf-8")
                return
            kind = "text/javascript" if plugin_route.group(2) == "javascript" else "text/css"
            handler.reply(200, body, kind)
            return
        if self._ui_root is not None and method in ("GET", "HEAD"):
            served = _ui_file(self._ui_root, parts.path)
            if served is not None:
                handler.reply(200, served[0], served[1], {"Cache-Control": "no-store"})
                return

        route = _IMAGE_ROUTE.match(parts.path)
        if route and method in ("GET", "HEAD"):
            kind = route.group(1) or route.group(3) or route.group(5)
            entity_id = int(route.group(2) or route.group(4) or route.group(6))
            image = self._image(kind, entity_id)
            if image is None:
                handler.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
                return
            headers = {}
            if "t" in query:  # with the cache buster Stash lets clients cache forever
                headers["Cache-Control"] = "private, max-age=31536000, immutable"
            handler.reply(200, image, images.sniff_content_type(image), headers)
            return
        handler.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _image(self, kind: str, entity_id: int) -> bytes | None:
        library = self.library
        if kind == "scene":
            scene = library.scenes.get(entity_id)
            if scene is None:
                return None
            if scene.cover_version is None:
                return images.PLACEHOLDER_SVG
            return images.scene_cover(scene.id, scene.cover_version)
        if kind == "performer":
            performer = library.performers.get(entity_id)
            if performer is None:
                return None
            if not performer.has_image:
                return images.default_performer_image()
            return images.performer_image(performer.id)
        if kind == "group":
            group = library.groups.get(entity_id)
            if group is None:
                return None
            if not group.has_front_image:
                return images.STUDIO_PLACEHOLDER_SVG
            return images.group_front_image(group.id, group.front_image_version)
        studio = library.studios.get(entity_id)
        if studio is None:
            return None
        if not studio.has_image:
            return images.STUDIO_PLACEHOLDER_SVG  # Stash's studio.svg stand-in
        return images.studio_image(studio.id, studio.image_version)

    # ----------------------------------------------------------------- GraphQL
    def _execute(self, payload: dict, base_url: str) -> tuple[int, dict]:
        """Run one GraphQL request; returns (HTTP status, JSON body) as gqlgen would."""
        schema = load_schema()
        query = payload.get("query")
        variables = payload.get("variables") or {}
        operation_name = payload.get("operationName") or None
        if not isinstance(query, str) or not query.strip():
            return 422, _request_error("no operation provided", "GRAPHQL_VALIDATION_FAILED")
        if not isinstance(variables, dict):
            return 422, _request_error("variables must be an object", "GRAPHQL_VALIDATION_FAILED")
        document, errors, code = _prepare(query)
        if errors:
            return 422, {"errors": [_with_code(e.formatted, code) for e in errors], "data": None}
        assert document is not None
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return 422, _request_error("operation not found", "GRAPHQL_VALIDATION_FAILED")
        coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
        if isinstance(coerced, list):
            formatted = [_with_code(e.formatted, "GRAPHQL_VALIDATION_FAILED") for e in coerced]
            return 422, {"errors": formatted, "data": None}
        root = _Root(self, base_url)
        fast = _plain_query(schema, operation, root, coerced)
        if fast is not None:
            return 200, fast
        result = execute_sync(
            schema,
            document,
            root_value=root,
            variable_values=variables,
            operation_name=operation_name,
        )
        return 200, result.formatted

    # ----------------------------------------------------------------- resolvers' helpers
    def _scenes_snapshot(self) -> list[Scene]:
        with self._lock:
            return list(self.library.scenes.values())


# --------------------------------------------------------------------------- resolvers
class _Root:
    """Root resolvers: graphql-core calls these methods for the Query fields."""

    def __init__(self, emulator: StashEmulator, base_url: str) -> None:
        self.emulator = emulator
        self.base_url = base_url

    def findScene(self, info: Any, id: str | None = None) -> _SceneView | None:
        if id is None:
            return None
        scene = self.emulator.library.scenes.get(_parse_id(id))
        return None if scene is None else _SceneView(self, scene)

    def findScenes(
        self,
        info: Any,
        scene_filter: dict | None = None,
        ids: list[str] | None = None,
        filter: dict | None = None,
    ) -> dict:
        library = self.emulator.library
        if ids:
            # As Stash: explicit ids bypass filter and paging and must all exist.
            wanted = [_parse_id(i) for i in ids]
            missing = next((i for i in wanted if i not in library.scenes), None)
            if missing is not None:
                raise StashError(f"scene with id {missing} not found")
            selected = [library.scenes[i] for i in wanted]
            return _result(self, selected, selected)
        find = filter or {}
        sort = find.get("sort")
        if sort and not (sort in SCENE_SORTS or _is_random_seed(sort)):
            raise StashError(f"invalid sort: {sort}")
        scenes = self.emulator._scenes_snapshot()
        if scene_filter or find.get("q"):
            matches = _compile_filter(scene_filter or {}, self.emulator)
            query = _compile_q(find.get("q"))
            scenes = [s for s in scenes if query(s) and matches(s)]
        scenes = _sort_scenes(scenes, sort, find.get("direction") or "ASC", library)
        page = find.get("page")
        page = page if page is not None and page >= 1 else 1
        per_page = find.get("per_page")
        per_page = DEFAULT_PER_PAGE if per_page is None else per_page
        shown = scenes if per_page < 0 else scenes[(page - 1) * per_page : page * per_page]
        return _result(self, scenes, shown)

    def findTags(self, info: Any, filter: dict | None = None, ids: list[str] | None = None) -> dict:
        """Tags by id (`ids`, all must exist) or paged by `filter` (sort `id` or `name`)."""
        with self.emulator._lock:
            pool = dict(self.emulator.library.tags)
        if ids:
            wanted = [_parse_id(i) for i in ids]
            missing = next((i for i in wanted if i not in pool), None)
            if missing is not None:
                raise StashError(f"tag with id {missing} not found")
            chosen = [pool[i] for i in wanted]
            return {"count": len(chosen), "tags": [_TagView(self, t) for t in chosen]}
        find = filter or {}
        sort = find.get("sort") or "name"
        if sort not in ("id", "name", "created_at", "updated_at", "scenes_count", "random"):
            raise StashError(f"invalid sort: {sort}")
        tags = sorted(pool.values(), key=lambda t: t.id)
        if sort == "name":
            tags.sort(key=lambda t: _natural(t.name))
        if (find.get("direction") or "ASC") == "DESC":
            tags.reverse()
        page = find.get("page")
        page = page if page is not None and page >= 1 else 1
        per_page = find.get("per_page")
        per_page = DEFAULT_PER_PAGE if per_page is None else per_page
        shown = tags if per_page < 0 else tags[(page - 1) * per_page : page * per_page]
        return {"count": len(tags), "tags": [_TagView(self, t) for t in shown]}

    def configuration(self, info: Any) -> dict:
        return {"general": {"apiKey": self.emulator.api_key}, "plugins": self._plugins}

    def _plugins(self, info: Any, include: list[str] | None = None) -> dict:
        emulator = self.emulator
        # A plugin whose settings were never saved has no key at all (not an empty map).
        saved = {emulator.plugin_id: emulator.plugin_settings} if emulator.plugin_settings else {}
        if include is not None:
            saved = {k: v for k, v in saved.items() if k in include}
        return copy.deepcopy(saved)

    def version(self, info: Any) -> dict:
        return dict(STASH_VERSION)

    def findJob(self, info: Any, input: dict) -> dict | None:
        return self.emulator._job(str(input.get("id") or ""))

    # ----------------------------------------------------------------- mutations
    def _scene(self, scene_id: str) -> Scene:
        scene = self.emulator.library.scenes.get(_parse_id(scene_id))
        if scene is None:
            raise StashError(f"scene with id {scene_id} not found")
        return scene

    def sceneUpdate(self, info: Any, input: dict) -> _SceneView:
        """Set the fields sent; bump updated_at; fire `Scene.Update.Post` (as Stash does)."""
        emulator = self.emulator
        with emulator._lock:
            scene = self._scene(input["id"])
            for name, value in input.items():
                if name in ("id", "clientMutationId"):
                    continue
                if name == "rating100":
                    scene.rating100 = value
                elif name in ("title", "details", "date", "code"):
                    setattr(scene, name, value)
                elif name == "organized":
                    scene.organized = bool(value)
                elif name == "studio_id":
                    scene.studio_id = None if value is None else _parse_id(value)
                elif name in ("performer_ids", "tag_ids"):
                    setattr(scene, name, [_parse_id(v) for v in value or []])
                elif name == "resume_time":
                    scene.resume_time = value
                elif name == "play_duration":
                    scene.play_duration = float(value or 0)
            scene.updated_at = emulator.now_text()
        hook_input = {key: None for key in SCENE_UPDATE_INPUT_FIELDS}
        hook_input.update(copy.deepcopy(input))
        emulator._fire_hook("Scene.Update.Post", scene.id, hook_input, list(input))
        return _SceneView(self, scene)

    def sceneAddPlay(self, info: Any, id: str, times: list[str] | None = None) -> dict:
        """Add one play per time (now when none); no hook, updated_at unchanged (Stash)."""
        emulator = self.emulator
        with emulator._lock:
            scene = self._scene(id)
            now = emulator.clock()
            moments = [_timestamp(t, now) for t in times] if times else [now]
            for moment in moments:
                stamp = datetime.fromtimestamp(int(moment), emulator.tz)
                scene.play_history.append(format_rfc3339(stamp))
            return {"count": len(scene.play_history), "history": _history(scene)}

    def sceneSaveActivity(
        self,
        info: Any,
        id: str,
        resume_time: float | None = None,
        playDuration: float | None = None,
    ) -> bool:
        """Set the resume point (if given) and add to the play duration; no hook (Stash)."""
        with self.emulator._lock:
            scene = self._scene(id)
            if resume_time is not None:
                scene.resume_time = float(resume_time)
            if playDuration is not None and playDuration > 0:
                scene.play_duration += float(playDuration)
        return True

    def runPluginOperation(self, info: Any, plugin_id: str, args: dict | None = None) -> Any:
        return self.emulator._run_operation(plugin_id, args)

    def runPluginTask(
        self,
        info: Any,
        plugin_id: str,
        task_name: str | None = None,
        description: str | None = None,
        args_map: dict | None = None,
    ) -> str:
        return self.emulator._run_task(plugin_id, task_name, args_map)


def _result(root: _Root, matched: list[Scene], shown: list[Scene]) -> dict:
    def total(attribute: str) -> Callable[..., float]:
        # Resolved only when a query selects it (a callable is called by the resolvers).
        return lambda *_: float(sum(getattr(s.files[0], attribute) for s in matched if s.files))

    return {
        "count": len(matched),
        "duration": total("duration"),
        "filesize": total("size"),
        "scenes": [_SceneView(root, s) for s in shown],
    }


class _SceneView:
    """A scene as GraphQL objects; fields are computed only when a query selects them."""

    def __init__(self, root: _Root, scene: Scene) -> None:
        self._root = root
        self._scene = scene
        self.id = str(scene.id)
        self.title = scene.title
        self.code = scene.code
        self.details = scene.details
        self.director = None
        self.urls = list(scene.urls)
        self.date = scene.date
        self.rating100 = scene.rating100
        self.organized = scene.organized
        self.created_at = scene.created_at
        self.updated_at = scene.updated_at
        self.resume_time = scene.resume_time
        self.play_duration = scene.play_duration
        self.play_count = len(scene.play_history)

    @property
    def play_history(self) -> list[str]:
        return _history(self._scene)

    @property
    def last_played_at(self) -> str | None:
        history = _history(self._scene)
        return history[0] if history else None

    @property
    def files(self) -> list[dict]:
        return [_file_view(f) for f in self._scene.files]

    @property
    def paths(self) -> dict:
        base = self._root.base_url
        scene = self._scene
        api_key = self._root.emulator.api_key
        stream = f"{base}/scene/{scene.id}/stream" + (f"?apikey={api_key}" if api_key else "")
        return {
            "screenshot": f"{base}/scene/{scene.id}/screenshot?t={_unix(scene.updated_at)}",
            "stream": stream,
        }

    @property
    def studio(self) -> _StudioView | None:
        studio = self._root.emulator.library.studios.get(self._scene.studio_id or 0)
        return None if studio is None else _StudioView(self._root, studio)

    @property
    def performers(self) -> list[_PerformerView]:
        pool = self._root.emulator.library.performers
        return [_PerformerView(self._root, pool[i]) for i in self._scene.performer_ids if i in pool]

    @property
    def tags(self) -> list[_TagView]:
        pool = self._root.emulator.library.tags
        return [_TagView(self._root, pool[i]) for i in self._scene.tag_ids if i in pool]

    @property
    def groups(self) -> list[dict]:
        pool = self._root.emulator.library.groups
        return [
            {
                "group": _GroupView(self._root, pool[i]),
                "scene_index": _scene_index(self._scene.id, i),
            }
            for i in self._scene.group_ids
            if i in pool
        ]


class _GroupView:
    def __init__(self, root: _Root, group: Group) -> None:
        self._root = root
        self._group = group
        self.id = str(group.id)
        self.name = group.name
        self.synopsis = group.synopsis

    @property
    def front_image_path(self) -> str:
        stamp = self._root.emulator._stamp("group", self._group.id)
        url = f"{self._root.base_url}/group/{self._group.id}/frontimage?t={stamp}"
        return url if self._group.has_front_image else url + "&default=true"


class _StudioView:
    def __init__(self, root: _Root, studio: Studio) -> None:
        self._root = root
        self._studio = studio
        self.id = str(studio.id)
        self.name = studio.name
        self.details = studio.details
        self.urls: list[str] = []

    @property
    def parent_studio(self) -> _StudioView | None:
        parent = self._root.emulator.library.studios.get(self._studio.parent_id or 0)
        return None if parent is None else _StudioView(self._root, parent)

    @property
    def child_studios(self) -> list[_StudioView]:
        studios = self._root.emulator.library.studios.values()
        return [_StudioView(self._root, s) for s in studios if s.parent_id == self._studio.id]

    @property
    def image_path(self) -> str:
        stamp = self._root.emulator._stamp("studio", self._studio.id)
        url = f"{self._root.base_url}/studio/{self._studio.id}/image?t={stamp}"
        # Stash flags its stand-in for a studio without an image in the URL.
        return url if self._studio.has_image else url + "&default=true"


class _PerformerView:
    def __init__(self, root: _Root, performer: Performer) -> None:
        self._root = root
        self._performer = performer
        self.id = str(performer.id)
        self.name = performer.name
        self.disambiguation = None

    @property
    def image_path(self) -> str:
        performer = self._performer
        stamp = self._root.emulator._stamp("performer", performer.id)
        url = f"{self._root.base_url}/performer/{performer.id}/image?t={stamp}"
        # Stash flags its generated stand-in in the URL; the bytes are a normal image.
        return url if performer.has_image else url + "&default=true"


class _TagView:
    def __init__(self, root: _Root, tag: Tag) -> None:
        self._root = root
        self._tag = tag
        self.id = str(tag.id)
        self.name = tag.name

    @property
    def parents(self) -> list[_TagView]:
        pool = self._root.emulator.library.tags
        return [_TagView(self._root, pool[i]) for i in self._tag.parent_ids if i in pool]

    @property
    def children(self) -> list[_TagView]:
        pool = self._root.emulator.library.tags.values()
        return [_TagView(self._root, t) for t in pool if self._tag.id in t.parent_ids]


_FORMATS = {".mkv": "matroska", ".webm": "webm", ".avi": "avi", ".wmv": "asf", ".mov": "mov"}


def _file_view(file: VideoFile) -> dict:
    # Stash on Windows stores paths with backslashes.
    name = re.split(r"[\\/]", file.path)[-1] if "\\" in file.path else posixpath.basename(file.path)
    ext = posixpath.splitext(name)[1].lower()
    tall = file.id % 4 == 0
    duration = file.duration
    return {
        "id": str(file.id),
        "path": file.path,
        "basename": name,
        "size": file.size,
        "format": _FORMATS.get(ext, "mp4"),
        "width": 1080 if tall else 1920,
        "height": 1920 if tall else 1080,
        "duration": duration,
        "video_codec": "hevc" if file.id % 3 == 0 else "h264",
        "audio_codec": "aac",
        "frame_rate": 29.97,
        "bit_rate": int(file.size * 8 / duration) if duration > 0 else 0,
    }


def _scene_index(scene_id: int, group_id: int) -> int | None:
    # Stored per scene and group in Stash; here a stable function of the pair (often unset).
    if (scene_id + group_id) % 3 == 0:
        return None
    return (scene_id * 7 + group_id) % 12 + 1


# --------------------------------------------------------------------------- filtering
Predicate = Callable[[Scene], bool]


def _compile_filter(spec: dict, emulator: StashEmulator) -> Predicate:
    """A predicate for a SceneFilterType, with Stash's SQL semantics for each criterion."""
    subs = [key for key in ("AND", "OR", "NOT") if spec.get(key) is not None]
    if len(subs) > 1:
        raise StashError(f"{subs[0]} and {subs[1]} sub-filters are not supported together")
    library = emulator.library
    checks: list[Predicate] = []
    if spec.get("id") is not None:
        test = _int_test(spec["id"])
        checks.append(lambda s: test(s.id))
    if spec.get("title") is not None:
        test_text = _string_test(spec["title"])
        checks.append(lambda s: test_text(s.title))
    if spec.get("path") is not None:
        checks.append(_path_test(spec["path"]))
    if spec.get("organized") is not None:
        organized = spec["organized"]
        checks.append(lambda s: s.organized == organized)
    if spec.get("studios") is not None:
        children = _children(
            {i: ([s.parent_id] if s.parent_id else []) for i, s in library.studios.items()}
        )
        test_ids = _hierarchical_test(spec["studios"], children, "studios")
        checks.append(lambda s: test_ids([s.studio_id] if s.studio_id else []))
    if spec.get("tags") is not None:
        children = _children({i: t.parent_ids for i, t in library.tags.items()})
        test_tags = _hierarchical_test(spec["tags"], children, "tags")
        checks.append(lambda s: test_tags(s.tag_ids))
    if spec.get("groups") is not None:
        test_groups = _hierarchical_test(spec["groups"], {}, "groups")
        checks.append(lambda s: test_groups(s.group_ids))
    if spec.get("performers") is not None:
        test_performers = _multi_test(spec["performers"])
        checks.append(lambda s: test_performers(s.performer_ids))
    for column in ("created_at", "updated_at"):
        if spec.get(column) is not None:
            checks.append(_timestamp_test(spec[column], column, emulator))

    def own(scene: Scene) -> bool:
        return all(check(scene) for check in checks)

    if not subs:
        return own
    sub = _compile_filter(spec[subs[0]], emulator)
    if subs[0] == "AND":
        return lambda s: own(s) and sub(s)
    if subs[0] == "OR":
        return (lambda s: own(s) or sub(s)) if checks else sub
    return lambda s: own(s) and not sub(s)


def _int_test(criterion: dict) -> Callable[[int | None], bool]:
    value = criterion["value"]
    # Stash compares BETWEEN against 0 when value2 is missing.
    upper = criterion.get("value2") if criterion.get("value2") is not None else 0
    tests: dict[str, Callable[[Any], bool]] = {
        "EQUALS": lambda x: x is not None and x == value,
        "NOT_EQUALS": lambda x: x is not None and x != value,
        "GREATER_THAN": lambda x: x is not None and x > value,
        "LESS_THAN": lambda x: x is not None and x < value,
        "BETWEEN": lambda x: x is not None and value <= x <= upper,
        "NOT_BETWEEN": lambda x: x is not None and not value <= x <= upper,
        "IS_NULL": lambda x: x is None,
        "NOT_NULL": lambda x: x is not None,
    }
    return _pick(tests, criterion["modifier"], "int")


def _timestamp_test(criterion: dict, column: str, emulator: StashEmulator) -> Predicate:
    # Stash passes the string straight into SQL against RFC3339 text in the server's offset:
    # the comparison is lexicographic, so a value in another zone is off by the offset.
    value = criterion["value"]
    upper = criterion.get("value2")
    if upper is None:
        upper = format_rfc3339(
            datetime.fromtimestamp(int(emulator.clock()), emulator.tz) + timedelta(days=1)
        )
    tests: dict[str, Callable[[Any], bool]] = {
        "EQUALS": lambda x: x == value,
        "NOT_EQUALS": lambda x: x != value,
        "GREATER_THAN": lambda x: x > value,
        "LESS_THAN": lambda x: x < value,
        "BETWEEN": lambda x: value <= x <= upper,
        "NOT_BETWEEN": lambda x: not value <= x <= upper,
        "IS_NULL": lambda x: False,
        "NOT_NULL": lambda x: True,
    }
    test = _pick(tests, criterion["modifier"], "timestamp")
    return lambda s: test(getattr(s, column))


def _string_test(criterion: dict) -> Callable[[str | None], bool]:
    value = criterion["value"]
    modifier = criterion["modifier"]
    if modifier in ("MATCHES_REGEX", "NOT_MATCHES_REGEX"):
        pattern = _regex(value)
        if modifier == "MATCHES_REGEX":
            return lambda x: x is not None and pattern.search(x) is not None
        return lambda x: x is None or pattern.search(x) is None
    words = [_like_pattern(f"%{w}%") for w in _search_words(value)]
    exact = _like_pattern(value)
    tests: dict[str, Callable[[Any], bool]] = {
        # SQL: NULL LIKE/NOT LIKE is NULL, so a missing value never matches either way.
        "EQUALS": lambda x: x is not None and _like(exact, x),
        "NOT_EQUALS": lambda x: x is not None and not _like(exact, x),
        "INCLUDES": lambda x: x is not None and any(_like(w, x) for w in words),
        "EXCLUDES": lambda x: x is not None and not any(_like(w, x) for w in words),
        "IS_NULL": lambda x: x is None or not x.strip(),
        "NOT_NULL": lambda x: x is not None and bool(x.strip()),
    }
    return _pick(tests, modifier, "string")


def _path_test(criterion: dict) -> Predicate:
    # Stash joins every file of the scene: a scene matches when any of its files does, and a
    # scene without files only matches IS_NULL.
    modifier = criterion["modifier"]
    if modifier == "IS_NULL":
        return lambda s: not s.files
    if modifier == "NOT_NULL":
        return lambda s: bool(s.files)
    test = _string_test(criterion)
    return lambda s: any(test(f.path) for f in s.files)


def _hierarchical_test(
    criterion: dict, children: dict[int, list[int]], what: str
) -> Callable[[list[int]], bool]:
    modifier = criterion["modifier"]
    depth = criterion.get("depth") or 0
    values = [_parse_id(v) for v in criterion.get("value") or []]
    groups = [_descendants(v, children, depth) for v in values]
    excluded = set().union(
        *(_descendants(_parse_id(v), children, depth) for v in criterion.get("excludes") or [])
    )
    everything = set().union(*groups)

    def base(ids: list[int]) -> bool:
        present = set(ids)
        if modifier == "IS_NULL":
            return not present
        if modifier == "NOT_NULL":
            return bool(present)
        if not groups:
            return True
        if modifier == "INCLUDES":
            return bool(present & everything)
        if modifier == "INCLUDES_ALL":
            return all(present & group for group in groups)
        if modifier == "EXCLUDES":
            return not present & everything
        raise StashError(f"{modifier} is not supported for {what}")

    if modifier not in ("IS_NULL", "NOT_NULL", "INCLUDES", "INCLUDES_ALL", "EXCLUDES"):
        raise StashError(f"{modifier} is not supported for {what}")
    return lambda ids: base(ids) and not (excluded & set(ids))


def _multi_test(criterion: dict) -> Callable[[list[int]], bool]:
    modifier = criterion["modifier"]
    values = {_parse_id(v) for v in criterion.get("value") or []}
    excluded = {_parse_id(v) for v in criterion.get("excludes") or []}
    if modifier == "IS_NULL":
        return lambda ids: not ids
    if modifier == "NOT_NULL":
        return lambda ids: bool(ids)
    if modifier == "NOT_EQUALS":
        raise StashError("not equals modifier is not supported for multi criterion input")
    if modifier == "EXCLUDES":
        excluded |= values
        values = set()
    tests: dict[str, Callable[[set[int]], bool]] = {
        "INCLUDES": lambda present: bool(present & values),
        "INCLUDES_ALL": lambda present: values <= present,
        "EQUALS": lambda present: present == values,
        "EXCLUDES": lambda present: True,
    }
    test = _pick(tests, modifier, "multi criterion")

    def matches(ids: list[int]) -> bool:
        present = set(ids)
        return (not values or test(present)) and not present & excluded

    return matches


def _compile_q(q: str | None) -> Predicate:
    """FindFilterType.q: every word must occur in the title, details, code, a path or a URL."""
    if not q or not q.strip():
        return lambda s: True
    required: list[re.Pattern[str]] = []
    forbidden: list[re.Pattern[str]] = []
    for word in _search_words(q):
        if word.startswith("-") and len(word) > 1:
            forbidden.append(_like_pattern(f"%{word[1:]}%"))
        else:
            required.append(_like_pattern(f"%{word}%"))

    def haystack(scene: Scene) -> list[str]:
        texts = [scene.title, scene.details, scene.code, *scene.urls]
        return [t for t in texts if t] + [f.path for f in scene.files]

    def matches(scene: Scene) -> bool:
        texts = haystack(scene)
        return all(any(_like(p, t) for t in texts) for p in required) and not any(
            _like(p, t) for p in forbidden for t in texts
        )

    return matches


def _search_words(text: str) -> list[str]:
    """Words of a search string; a fully quoted string is one phrase (as Stash splits it)."""
    stripped = text.strip()
    unquoted = stripped.strip('"')
    if unquoted != stripped:
        return [unquoted]
    return stripped.split()


def _like_pattern(pattern: str) -> re.Pattern[str]:
    """SQLite LIKE: % and _ are wildcards, case folding applies to ASCII letters only."""
    parts = []
    for ch in _ascii_lower(pattern):
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def _like(pattern: re.Pattern[str], text: str) -> bool:
    return pattern.fullmatch(_ascii_lower(text)) is not None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise StashError(f"error parsing regexp: {exc}") from exc


def _children(parents: dict[int, list[int]]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for child, parent_ids in parents.items():
        for parent in parent_ids:
            children.setdefault(parent, []).append(child)
    return children


def _descendants(root: int, children: dict[int, list[int]], depth: int) -> set[int]:
    """The id and its descendants down to `depth` levels (-1: all, 0: none)."""
    found = {root}
    frontier = [root]
    level = 0
    while frontier and (depth < 0 or level < depth):
        frontier = [c for node in frontier for c in children.get(node, []) if c not in found]
        found.update(frontier)
        level += 1
    return found


def _pick(tests: dict[str, Callable], modifier: str, what: str) -> Callable:
    if modifier not in tests:
        raise StashError(f"unsupported {what} filter modifier: {modifier}")
    return tests[modifier]


# --------------------------------------------------------------------------- sorting
_SCENE_ID = operator.attrgetter("id")


def _sort_scenes(
    scenes: list[Scene], sort: str | None, direction: str, library: SampleLibrary
) -> list[Scene]:
    ordered = sorted(scenes, key=_SCENE_ID)
    if not sort:
        return ordered  # Stash adds no ORDER BY: SQLite returns rowid order
    if sort == "id":  # unique: the title tie-break below can never decide anything
        return ordered[::-1] if direction == "DESC" else ordered
    # Stash's final tie-break is always COALESCE(title, id) ascending, whatever the direction.
    ordered.sort(key=lambda s: _natural(s.title if s.title is not None else str(s.id)))
    if _is_random_seed(sort) or sort == "random":
        seed = int(sort[len("random_") :]) if sort != "random" else random.getrandbits(32)
        shuffler = random.Random(seed)
        ranks = {s.id: shuffler.random() for s in sorted(ordered, key=lambda s: s.id)}
        ordered.sort(key=lambda s: ranks[s.id])
        return ordered
    key = _sort_key(sort, library)
    # SQLite puts NULL first ascending and last descending: (0, None) < (1, value) does both.
    ordered.sort(
        key=lambda s: (0, 0) if key(s) is None else (1, key(s)), reverse=direction == "DESC"
    )
    return ordered


def _sort_key(sort: str, library: SampleLibrary) -> Callable[[Scene], Any]:
    def primary(scene: Scene) -> VideoFile | None:
        return scene.files[0] if scene.files else None

    def title(scene: Scene) -> Any:
        file = primary(scene)
        name = (
            scene.title
            if scene.title is not None
            else (posixpath.basename(file.path) if file else None)
        )
        if name is None:
            return None
        folder = posixpath.dirname(file.path) if file else ""
        return (_natural(name), _natural(folder))

    def studio(scene: Scene) -> Any:
        found = library.studios.get(scene.studio_id or 0)
        return found.name if found else None

    def scene_number(scene: Scene) -> Any:
        return _scene_index(scene.id, scene.group_ids[0]) if scene.group_ids else None

    keys: dict[str, Callable[[Scene], Any]] = {
        "id": lambda s: s.id,
        "title": title,
        "date": lambda s: _full_date(s.date),
        "created_at": lambda s: s.created_at,
        "updated_at": lambda s: s.updated_at,
        "code": lambda s: s.code,
        "rating": lambda s: s.rating100,
        "organized": lambda s: s.organized,
        "studio": studio,
        "path": lambda s: _natural(primary(s).path) if s.files else _natural(""),
        "filesize": lambda s: primary(s).size if s.files else None,
        "duration": lambda s: primary(s).duration if s.files else None,
        "file_count": lambda s: len(s.files),
        "tag_count": lambda s: len(s.tag_ids),
        "performer_count": lambda s: len(s.performer_ids),
        "group_scene_number": scene_number,
        "movie_scene_number": scene_number,
    }
    # Whitelisted sorts on data the emulator does not model (play counts, codecs...) leave the
    # order to the tie-breaks, as equal values would in Stash.
    return keys.get(sort, lambda s: None)


def _natural(text: str) -> tuple:
    """A case-insensitive natural sort key ("Part 2" < "part 10")."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
        for part in re.split(r"(\d+)", text)
        if part
    )


def _full_date(date: str | None) -> str | None:
    # Stash stores a partial date as its first day plus a precision.
    if date is None:
        return None
    return {4: f"{date}-01-01", 7: f"{date}-01"}.get(len(date), date)


def _is_random_seed(sort: str) -> bool:
    return sort.startswith("random_") and sort[len("random_") :].isdigit()


# --------------------------------------------------------------------------- small helpers
def _parse_id(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise StashError(f'strconv.Atoi: parsing "{value}": invalid syntax') from None


def _history(scene: Scene) -> list[str]:
    """Play times, newest first."""
    return sorted(scene.play_history, key=_unix, reverse=True)


def _timestamp(value: str, now: float) -> float:
    """Stash's Timestamp input: RFC3339, or "<4h" (4 hours ago) / ">5m" (5 minutes ahead)."""
    relative = _RELATIVE_TIME.match(value.strip())
    if relative:
        sign = -1 if relative.group(1) == "<" else 1
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[relative.group(3)]
        return now + sign * int(relative.group(2)) * unit
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StashError(f"invalid timestamp {value!r}") from None
    if moment.tzinfo is None:
        raise StashError(f"invalid timestamp {value!r}: no UTC offset")
    return moment.timestamp()


def _unix(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def _parse_offset(offset: str) -> timezone:
    if offset in ("Z", "z"):
        return timezone.utc
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", offset)
    if not match:
        raise ValueError(f"utc_offset must look like '+10:00', not {offset!r}")
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


def _cookie_value(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"')
    return ""


def _base_url(headers: Any, emulator: StashEmulator) -> str:
    # Stash builds image URLs from the Host the client used, or its `external_host` setting
    # when set, plus a proxy's prefix (stashapp/stash, internal/api BaseURLMiddleware).
    prefix = (headers.get("X-Forwarded-Prefix") or "").rstrip("/")
    if emulator.external_host:
        return emulator.external_host + prefix
    host = headers.get("Host") or f"{emulator.host}:{emulator.port}"
    return f"http://{host}{prefix}"


def _graphql_payload(
    method: str, body: bytes, query: dict[str, list[str]]
) -> tuple[dict | None, str]:
    try:
        if method == "POST":
            payload = json.loads(body or b"null")
        else:
            payload = {k: v[0] for k, v in query.items()}
            if "variables" in payload:
                payload["variables"] = json.loads(payload["variables"])
    except (ValueError, UnicodeDecodeError):
        return None, "json request body could not be decoded\n"
    if not isinstance(payload, dict):
        return None, "json request body could not be decoded\n"
    return payload, ""


_UI_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def _ui_file(root: Any, path: str) -> tuple[bytes, str] | None:
    """(body, content type) of a UI file: `/` and any page route give index.html (a single
    page app), `/ui/<name>` a file under `root`; None when it is not the UI's."""
    base = os.path.realpath(root)
    if path.startswith("/ui/"):
        target = os.path.realpath(os.path.join(base, path[len("/ui/") :]))
        if not target.startswith(base + os.sep) or not os.path.isfile(target):
            return None
    elif path in ("/", "/index.html") or path.startswith(("/plugin/", "/scenes/")):
        target = os.path.join(base, "index.html")
    else:
        return None
    with open(target, "rb") as handle:
        body = handle.read()
    return body, _UI_TYPES.get(os.path.splitext(target)[1], "application/octet-stream")


def _log_entry(payload: dict) -> GraphQLRequest:
    name = payload.get("operationName")
    if not name and isinstance(payload.get("query"), str):
        found = _OPERATION_NAME.search(payload["query"])
        name = found.group(1) if found else None
    variables = payload.get("variables")
    return GraphQLRequest(
        name or None, copy.deepcopy(variables) if isinstance(variables, dict) else {}
    )


@lru_cache(maxsize=256)
def _prepare(query: str) -> tuple[DocumentNode | None, tuple[GraphQLError, ...], str]:
    """Parse and validate once per distinct document (the project sends a handful)."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, (error,), "GRAPHQL_PARSE_FAILED"
    errors = validate(load_schema(), document)
    return document, tuple(errors), "GRAPHQL_VALIDATION_FAILED"


class _NotPlain(Exception):
    """The fast path cannot answer this query; graphql-core's executor does."""


def _plain_query(
    schema: GraphQLSchema, operation: OperationDefinitionNode, root: Any, variables: Any
) -> dict | None:
    """Answer a validated query without graphql-core's executor, or None to let it answer.

    graphql-core completes every field through several layers of Python calls (about 20 us a
    field; a findScenes page of 500 scenes with the sync's fields took 0.5 s, so listing
    100,000 scenes took minutes). This path resolves fields the way its default resolver
    does (a dict key, else an attribute, called with `info` and the arguments when callable)
    and serializes leaves with the schema's own scalars, for queries made only of fields:
    no fragments, directives or introspection. Anything else, and any resolver error or null
    in a non-null position, goes to graphql-core, whose answer stays the reference (a test
    compares the two on every document the project sends).
    """
    if operation.operation != OperationType.QUERY or operation.directives:
        return None
    query_type = schema.query_type
    if query_type is None:
        return None
    try:
        return {"data": _plain_object(root, query_type, operation.selection_set, variables)}
    except _NotPlain:
        return None
    except Exception:  # a resolver's error: graphql-core reports it in its own shape
        return None


def _plain_object(
    source: Any, object_type: GraphQLObjectType, selection: SelectionSetNode, variables: Any
) -> dict:
    out: dict[str, Any] = {}
    for node in selection.selections:
        if not isinstance(node, FieldNode) or node.directives or node.name.value.startswith("__"):
            raise _NotPlain
        name = node.name.value
        field = object_type.fields.get(name)
        if field is None:
            raise _NotPlain
        args = get_argument_values(field, node, variables) if field.args else {}
        value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
        if callable(value):
            value = value(None, **args)
        key = node.alias.value if node.alias else name
        out[key] = _plain_value(value, field.type, node.selection_set, variables)
    return out


def _plain_value(
    value: Any, type_: GraphQLOutputType, selection: SelectionSetNode | None, variables: Any
) -> Any:
    if isinstance(type_, GraphQLNonNull):
        if value is None:
            raise _NotPlain
        return _plain_value(value, type_.of_type, selection, variables)
    if value is None:
        return None
    if isinstance(type_, GraphQLList):
        return [_plain_value(v, type_.of_type, selection, variables) for v in value]
    if isinstance(type_, GraphQLObjectType) and selection is not None:
        return _plain_object(value, type_, selection, variables)
    if isinstance(type_, (GraphQLScalarType, GraphQLEnumType)):
        return type_.serialize(value)
    raise _NotPlain  # interfaces and unions need type resolution


def _request_error(message: str, code: str) -> dict:
    return {"errors": [{"message": message, "extensions": {"code": code}}], "data": None}


def _with_code(formatted: dict, code: str) -> dict:
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", code)
    return {**formatted, "extensions": extensions}


_V = TypeVar("_V")


@dataclasses.dataclass
class _Fault(Generic[_V]):
    """One injected failure: `value` (a status or a message) for the next `left` requests it
    hits (None: until cleared), hitting one request in `every`."""

    value: _V
    left: int | None
    every: int = 1
    seen: int = 0


def _take(fault: _Fault[_V] | None) -> tuple[_V | None, _Fault[_V] | None]:
    """(the value if this request is hit, else None; the fault left after it)."""
    if fault is None:
        return None, None
    fault.seen += 1
    if fault.seen % max(1, fault.every):
        return None, fault
    if fault.left is None:
        return fault.value, fault
    fault.left -= 1
    return fault.value, (fault if fault.left > 0 else None)


class _Faults:
    """Injected failures; counts are consumed by the requests they hit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delay = 0.0
        self.image_delay = 0.0
        self._http: _Fault[int] | None = None
        self._image_http: _Fault[int] | None = None
        self._graphql: _Fault[str] | None = None
        self._hold: tuple[str, threading.Event] | None = None

    def set_hold(self, operation_name: str) -> threading.Event:
        with self._lock:
            self._hold = (operation_name, threading.Event())
            return self._hold[1]

    def take_hold(self, operation_name: Any) -> threading.Event | None:
        with self._lock:
            if self._hold is None or self._hold[0] != operation_name:
                return None
            held, self._hold = self._hold[1], None
            return held

    def set_http(
        self, status: int, count: int | None, every: int = 1, images: bool = False
    ) -> None:
        fault = _Fault(status, count, every) if count is None or count > 0 else None
        with self._lock:
            if images:
                self._image_http = fault
            else:
                self._http = fault

    def set_graphql(self, message: str, count: int | None, every: int = 1) -> None:
        with self._lock:
            self._graphql = _Fault(message, count, every) if count is None or count > 0 else None

    def take_http(self, image: bool) -> int | None:
        with self._lock:
            if image and self._image_http is not None:
                status, self._image_http = _take(self._image_http)
                if status is not None:
                    return status
            status, self._http = _take(self._http)
            return status

    def take_graphql(self) -> str | None:
        with self._lock:
            message, self._graphql = _take(self._graphql)
            return message

    def clear(self) -> None:
        with self._lock:
            self.delay = 0.0
            self.image_delay = 0.0
            self._http = None
            self._image_http = None
            self._graphql = None
            if self._hold is not None:
                self._hold[1].set()
            self._hold = None


def _failed_data(payload: dict) -> dict[str, None] | None:
    """`data` of an answer whose root fields' resolvers failed, as graphql-go and gqlgen send
    it (GraphQL spec, "Handling Field Errors"): each nullable root field null, or no data at
    all when a non-null one failed (a failed `findScene` answers `{"findScene": null}`)."""
    document, errors, _ = _prepare(str(payload.get("query") or ""))
    operation = None if errors or document is None else get_operation_ast(document)
    if operation is None:
        return None
    schema = load_schema()
    mutation = operation.operation == OperationType.MUTATION
    root = schema.mutation_type if mutation else schema.query_type
    data: dict[str, None] = {}
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode) or root is None:
            return None
        field = root.fields.get(selection.name.value)
        if field is None or isinstance(field.type, GraphQLNonNull):
            return None
        data[(selection.alias or selection.name).value] = None
    return data


# --------------------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, emulator: StashEmulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that drops a keep-alive connection is normal, not an emulator error.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut keep-alive connections, or a stopped server would still answer on them."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StashEmulator/0.30.1"
    timeout = 60  # idle keep-alive connections end instead of pinning a thread forever
    # Headers and body in one buffered write, sent at once: small replies on a keep-alive
    # connection would otherwise wait ~40 ms for Nagle's algorithm and delayed ACKs.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        self.replied = False
        try:
            self.server.emulator._handle(self, method)
        except Exception as exc:
            # A bug in the emulator must surface as a server error, not a dropped connection.
            if self.replied:
                raise
            self.reply(500, f"emulator error: {exc!r}\n".encode(), "text/plain; charset=utf-8")

    def reply(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.replied = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.emulator.http_log.append((self.command, self.path, status))

    def reply_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.reply(status, body, "application/json")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read `log` and `http_log`; stderr stays quiet
