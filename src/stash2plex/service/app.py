"""The HTTP side of `stash2plex serve`: the dashboard, a JSON API over the operations, metrics.

Starlette (ASGI, served by uvicorn). Routes:
- ``GET /``: the dashboard page, the same frontend bundle the Stash page loads;
- ``GET /static/<file>``: that bundle;
- ``GET /api/views/<name>?<params>``: one view of operations/views.py as JSON;
- ``POST /api/actions/<name>`` (JSON body of params): one action of operations/actions.py;
- ``GET /metrics``: Prometheus text format.

Security:
- With a token, every request except the page shell and its static files (which hold no data)
  needs ``Authorization: Bearer <token>``, else 401. The page asks for the token and sends it.
- State changes are POST only, with CSRF protection: the ``X-CSRF-Token`` header must carry
  this process's random token (the page reads it from its own HTML, which a cross-site page
  cannot), a present ``Origin`` must be this server, and the body must be JSON.
- Bound to loopback, only loopback host names are accepted (Starlette's TrustedHostMiddleware),
  so a DNS-rebinding page cannot read the CSRF token.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from stash2plex.errors import SyncError, redact
from stash2plex.operations import actions, views
from stash2plex.service.metrics import ServiceMetrics
from stash2plex.store.db import Store, StoreError

log = logging.getLogger("stash2plex.service")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
CSRF_HEADER = "x-csrf-token"
# An action's parameters are a few ids: a larger body is refused before it is read whole.
MAX_BODY_BYTES = 64 * 1024
#: Paths anyone may fetch even when a token is set: the page shell and its static bundle.
PUBLIC_PATHS = ("/", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
#: Served with every page: the bundle runs from this origin only and talks to it only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def static_dir() -> Path:
    """The built frontend bundle shipped in the package (see ui/README.md)."""
    return Path(str(files("stash2plex") / "web" / "static"))


class BearerAuth:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>`` matches (when a token is
    set). Compared in constant time; the page shell and static files stay public."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        presented = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = presented.partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(
            value.strip().encode(), self.token.encode()
        ):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"error": "a bearer token is required: send Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="stash2plex"'},
        )
        await response(scope, receive, send)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def create_app(
    data_dir: Path,
    *,
    metrics: ServiceMetrics,
    token: str | None = None,
    loopback_only: bool = True,
    context_factory: Callable[[Store], Any] | None = None,
    csrf_token: str | None = None,
) -> Starlette:
    """The service's ASGI app over the store in `data_dir`.

    `context_factory(store)` builds an engine Context for actions that read Stash and Plex
    (`preview_scene`); `csrf_token` is random per process unless given (tests).
    """
    csrf = csrf_token or secrets.token_urlsafe(32)
    static = static_dir()

    def page(request: Request) -> Response:
        config = {"csrfToken": csrf, "tokenRequired": bool(token), "apiBase": ""}
        # A JSON script element is raw text: escaping `<` keeps `</script>` out of it.
        data = json.dumps(config).replace("<", "\\u003c")
        body = DASHBOARD_HTML.replace("{{CONFIG}}", data).replace(
            "{{VERSION}}", _asset_version(static)
        )
        return HTMLResponse(body, headers=_page_headers())

    def view(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            with Store.open(data_dir) as store:
                result = views.answer(request.path_params["name"], store, data_dir, params)
        except views.ViewError as exc:
            return _error(str(exc), 400)
        except StoreError as exc:
            return _error(str(exc), 503)
        except Exception as exc:  # one log line, JSON for the caller
            return _unexpected(f"view {request.path_params['name']!r}", exc)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    async def action(request: Request) -> Response:
        problem = _csrf_problem(request, csrf)
        if problem:
            return _error(problem, 403)
        body = await _bounded_body(request)
        if body is None:
            return _error(f"the body is larger than {MAX_BODY_BYTES // 1024} KiB", 413)
        try:
            params = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            return _error("the body must be a JSON object of parameters", 400)
        if not isinstance(params, dict):
            return _error("the body must be a JSON object of parameters", 400)
        try:
            chosen = actions.lookup(request.path_params["name"])
        except actions.ActionError as exc:
            return _error(str(exc), 404)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_run_action, chosen, params)

    def _run_action(chosen: actions.Action, params: dict[str, Any]) -> Response:
        try:
            with Store.open(data_dir) as store:
                if chosen.needs_context:
                    if context_factory is None:
                        return _error("this service cannot reach Stash and Plex", 503)
                    context = context_factory(store)
                    secrets_ = context.config.secrets() + context.stash.connection.secrets()
                    result = chosen.run(context, params)
                    return JSONResponse(json.loads(redact(json.dumps(result), secrets_)))
                return JSONResponse(chosen.run(store, params))
        except actions.ActionError as exc:
            return _error(str(exc), exc.status)
        except SyncError as exc:
            return _error(exc.message, 502)
        except StoreError as exc:
            return _error(str(exc), 503)
        except Exception as exc:  # one log line, JSON for the caller
            return _unexpected(f"action {chosen.run.__name__!r}", exc)

    def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    middleware = [Middleware(BearerAuth, token=token)]
    if loopback_only:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS)))
    return Starlette(
        routes=[
            Route("/", page),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/api/views/{name}", view),
            Route("/api/actions/{name}", action, methods=["POST"]),
            Route("/metrics", metrics_endpoint),
            Mount("/static", app=StaticFiles(directory=static), name="static"),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as JSON with a sentence."""
    status = getattr(exc, "status_code", 500)
    if status == 404:
        message = (
            f"nothing at {request.url.path}: the API is GET /api/views/<name> and "
            "POST /api/actions/<name>"
        )
    elif status == 405:
        message = (
            f"{request.method} is not allowed on {request.url.path}: views are GET, "
            "actions are POST with a JSON body"
        )
    else:
        message = str(getattr(exc, "detail", "")) or "the request was refused"
    headers = getattr(exc, "headers", None)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _unexpected(what: str, exc: Exception) -> JSONResponse:
    """An error nobody planned for: one log line (no traceback on the console) and a JSON 500
    that says what failed."""
    log.error("the %s failed: %s: %s", what, type(exc).__name__, exc)
    return _error(f"the {what} failed unexpectedly ({type(exc).__name__}); see the log", 500)


def _csrf_problem(request: Request, csrf: str) -> str | None:
    """Why this state-changing request must be refused (None when it may proceed)."""
    presented = request.headers.get(CSRF_HEADER, "")
    if not presented or not secrets.compare_digest(presented.encode(), csrf.encode()):
        return "missing or wrong X-CSRF-Token header (reload the dashboard)"
    origin = request.headers.get("origin")
    if origin and origin != "null":
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if urlsplit(origin)._replace(path="").geturl() != expected:
            return f"cross-origin request from {origin} refused"
    if not request.headers.get("content-type", "").startswith("application/json"):
        return "the body must be JSON (Content-Type: application/json)"
    return None


async def _bounded_body(request: Request) -> bytes | None:
    """The request's body, or None past MAX_BODY_BYTES (read no further: an action's
    parameters are a few ids)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _asset_version(static: Path) -> str:
    """A cache buster for the bundle: its size and modification time."""
    try:
        stat = (static / "stash2plex-ui.js").stat()
    except OSError:
        return "0"
    return f"{stat.st_size:x}{int(stat.st_mtime):x}"


DASHBOARD_HTML = """<!doctype html>
<html lang="en" data-host="dashboard">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stash2Plex</title>
<link rel="stylesheet" href="/static/bootstrap.min.css?v={{VERSION}}">
<link rel="stylesheet" href="/static/dashboard.css?v={{VERSION}}">
<link rel="stylesheet" href="/static/stash2plex-ui.css?v={{VERSION}}">
<script id="stash2plex-config" type="application/json">{{CONFIG}}</script>
</head>
<body>
<div id="root"><noscript>The Stash2Plex dashboard needs JavaScript.</noscript></div>
<script src="/static/dashboard-host.js?v={{VERSION}}"></script>
<script src="/static/stash2plex-ui.js?v={{VERSION}}"></script>
</body>
</html>
"""
