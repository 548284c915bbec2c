"""Error classes, and the one place where library exceptions are translated into them.

    SyncError                       every failure the worker routes; `error_class` names the route
    ├── TransientError              retry with backoff, counting attempts      (timeouts, 5xx, ...)
    ├── ServerDownError             open the breaker; wait without burning attempts (refused, 503)
    │   └── StashDownError          Stash itself is unreachable: wait, but it is no Plex outage
    ├── NotInPlexError              wait for Plex to scan the file (a waiting state, never the DLQ)
    ├── AmbiguousMatchError         wait, listing the candidates (never guessed)
    ├── ConflictError               wait: several scenes claim one Plex item (never write a mix)
    ├── ConfigError                 hold the queue until a setting is fixed (names the setting)
    ├── PermanentError              dead-letter at once (bad data, other 4xx)
    └── AuthError                   pause the queue; say which setting to fix (401)

The class decides the route; the message is what a person reads, so it says what to do.
Messages never contain a token: translation goes through `redact` before anything is kept.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

TRANSIENT = "transient"
SERVER_DOWN = "server_down"
NOT_IN_PLEX = "not_in_plex"
AMBIGUOUS = "ambiguous"
PERMANENT = "permanent"
AUTH = "auth"
CONFLICT = "conflict"
CONFIG = "config"


class SyncError(Exception):
    error_class = TRANSIENT

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class TransientError(SyncError):
    error_class = TRANSIENT


class ServerDownError(SyncError):
    error_class = SERVER_DOWN


class StashDownError(ServerDownError):
    """Stash is unreachable (restarting, stopped). Jobs wait; Plex's breaker is not touched."""


class NotInPlexError(SyncError):
    error_class = NOT_IN_PLEX


class AmbiguousMatchError(SyncError):
    error_class = AMBIGUOUS


class ConflictError(SyncError):
    """Several Stash scenes map to one Plex item (e.g. files Plex stacked as parts).

    `detail["scene_ids"]` names every scene involved; nothing is written until it is resolved.
    """

    error_class = CONFLICT


class ConfigError(SyncError):
    """A setting makes syncing impossible (unknown library, unsupported library type, ...).

    `setting` names the setting to fix; the queue holds (no dead letters) until it is fixed.
    """

    error_class = CONFIG

    def __init__(self, message: str, *, setting: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message, detail=detail)
        self.setting = setting


class PermanentError(SyncError):
    error_class = PERMANENT


class AuthError(SyncError):
    error_class = AUTH


_STATUS_PREFIX = re.compile(r"^\((\d{3})\)")
_TOKEN_PATTERNS = (
    re.compile(r"(X-Plex-Token=)[^&\s]+", re.IGNORECASE),
    re.compile(r"(apikey=)[^&\s]+", re.IGNORECASE),
)


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Remove tokens and the given secret values from a message."""
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _status_of(exc: BaseException) -> int | None:
    # plexapi exceptions carry no status attribute; their message starts with "(NNN)".
    match = _STATUS_PREFIX.match(str(exc))
    return int(match.group(1)) if match else None


def classify_status(status: int, what: str) -> SyncError:
    """Map an HTTP status from Plex or Stash to an error class."""
    if status == 401:
        return AuthError(f"{what} answered 401 Unauthorized")
    if status == 503:
        return ServerDownError(f"{what} is unavailable (503, e.g. startup maintenance)")
    if status in (408, 429) or status >= 500:
        return TransientError(f"{what} answered HTTP {status}")
    return PermanentError(f"{what} rejected the request with HTTP {status}")


@contextlib.contextmanager
def translate_plex_errors(secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Turn anything plexapi or requests raises into a SyncError (chained with `from`)."""
    import requests
    from plexapi import exceptions as plex_exc

    try:
        yield
    except SyncError:
        raise
    except plex_exc.Unauthorized as exc:
        raise AuthError(
            "Plex rejected the token (401): set a valid `plex_token` in the plugin settings"
        ) from exc
    except plex_exc.NotFound as exc:
        raise NotInPlexError(redact(f"Plex has no such item: {exc}", secrets)) from exc
    except plex_exc.BadRequest as exc:
        status = _status_of(exc)
        error = classify_status(status, "Plex") if status else PermanentError("Plex: bad request")
        raise type(error)(redact(f"{error.message}: {_short(exc)}", secrets)) from exc
    except (requests.ConnectTimeout, requests.ConnectionError) as exc:
        text = str(exc)
        if "RemoteDisconnected" in text or "Connection aborted" in text:
            raise TransientError("Plex closed the connection mid-request") from exc
        raise ServerDownError("Plex is not reachable (connection refused or timed out)") from exc
    except requests.Timeout as exc:
        raise TransientError("Plex did not answer in time (read timeout)") from exc
    except requests.RequestException as exc:
        raise TransientError(redact(f"HTTP error talking to Plex: {_short(exc)}", secrets)) from exc
    except ET.ParseError as exc:
        raise TransientError("Plex sent a malformed XML answer") from exc
    except TypeError as exc:
        # plexapi raises TypeError for statuses `requests` has no name for (520, 599, ...).
        if "NoneType" in str(exc) and "subscriptable" in str(exc):
            raise TransientError(
                "Plex (or a proxy in front of it) answered a non-standard HTTP status"
            ) from exc
        raise
    except AttributeError as exc:
        # An empty 200 body leaves plexapi objects without attributes.
        raise TransientError("Plex sent an empty or incomplete answer") from exc


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
