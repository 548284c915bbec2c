"""Every exception class the product raises, and the one table that maps HTTP statuses to them.

    SyncError                       every failure the worker routes; `error_class` names the route
    ├── TransientError              retry with backoff, counting attempts      (timeouts, 5xx, ...)
    │   ├── GatewayError            a proxy's 502/504: the server behind it did not answer
    │   └── InternalError           a bug of ours: retried like a transient failure, never a hold
    ├── ServerDownError             open the breaker; wait without burning attempts (refused, 503)
    │   └── StashDownError          Stash itself is unreachable: a pause of its own, no Plex outage
    ├── NotInPlexError              wait for Plex to scan the file (a waiting state, never the DLQ)
    ├── AmbiguousMatchError         wait, listing the candidates (never guessed)
    ├── ConflictError               wait: several scenes claim one Plex item (never write a mix)
    ├── ConfigError                 hold the queue until a setting is fixed (names the setting)
    ├── PermanentError              dead-letter at once (bad data, other 4xx)
    └── AuthError                   pause the queue; say which credential to fix (401)

Each error knows which server it came from (`server`: "plex", "stash", or None for our own),
so the same status can take the right route on each side: Plex's 401 is the Plex token, Stash's
401 is Stash's API key. The class decides the route; the message is what a person reads, so
it says what to do. Messages never contain a secret: everything is passed through `redact`.

Translation of library exceptions happens at each client's boundary (`clients.plex`,
`clients.stash`), both through `error_for_status` for HTTP statuses.
"""

from __future__ import annotations

import re

# Not `typing.TYPE_CHECKING`: importing typing costs the hook process ~5 ms (see plugin/entry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from stash2plex.records import UnsettledWrite
    from stash2plex.vocabulary import ErrorClass, Server

TRANSIENT: ErrorClass = "transient"
SERVER_DOWN: ErrorClass = "server_down"
NOT_IN_PLEX: ErrorClass = "not_in_plex"
AMBIGUOUS: ErrorClass = "ambiguous"
PERMANENT: ErrorClass = "permanent"
AUTH: ErrorClass = "auth"
CONFLICT: ErrorClass = "conflict"
CONFIG: ErrorClass = "config"


class SyncError(Exception):
    """A classified failure. `status` is the HTTP status when one was received."""

    error_class: ErrorClass = TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        detail: dict[str, Any] | None = None,
        server: Server | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.server = server
        self.status = status
        # Writes of this attempt that timed out and may still land (see sync.settle).
        self.unsettled: list[UnsettledWrite] = []
        # One failure several scenes share (a request made for all of them): the circuit
        # breaker counts it once, for the scene that raised it first.
        self.shared = False

    def shared_copy(self) -> SyncError:
        """This failure as the scenes after the first one to meet it get it: same class, message
        and fields, marked `shared`, without the writes of the attempt that raised it (those
        belong to that attempt alone)."""
        # Built without calling __init__: subclasses add required keyword arguments (ConfigError's
        # `setting`) that a generic copy cannot pass back.
        shared = type(self).__new__(type(self), *self.args)
        shared.__dict__.update(self.__dict__)
        shared.unsettled = []
        shared.shared = True
        return shared


class TransientError(SyncError):
    error_class = TRANSIENT


class GatewayError(TransientError):
    """A reverse proxy in front of the server answered 502 or 504 after the quick re-asks:
    the server behind it did not answer (down, or only busy). Routed like a 5xx; told apart
    from one where it matters that the server itself did not answer."""


class InternalError(TransientError):
    """An unexpected exception in our own code: counted as an attempt, never a hold."""


class WorkerStopping(TransientError):
    """The worker was asked to stop while this attempt waited for a request slot: nothing
    was sent, so the job is given back as it was (never routed)."""


class ServerDownError(SyncError):
    error_class = SERVER_DOWN


class StashDownError(ServerDownError):
    """Stash is unreachable (restarting, stopped, 503). Jobs wait; Plex's breaker is untouched."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("server", "stash")
        super().__init__(message, **kwargs)


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

    `setting` names the setting to fix (`source`: where its value came from, if known); the
    queue holds (no dead letters) until it is fixed.
    """

    error_class = CONFIG

    def __init__(self, message: str, *, setting: str, source: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.setting = setting
        self.source = source  # where the setting's value came from, when the raiser knows


class PermanentError(SyncError):
    error_class = PERMANENT


class AuthError(SyncError):
    error_class = AUTH


class NotConfiguredError(PermanentError):
    """Required settings are missing (or no Stash connection is known): nothing can sync."""


# The one status table, for Plex and Stash alike: status -> (class, what it means).
_STATUS_TABLE: dict[int, tuple[type[SyncError], str]] = {
    401: (AuthError, "rejected the credentials (401 Unauthorized)"),
    408: (TransientError, "timed out the request (408)"),
    429: (TransientError, "is too busy (429 Too Many Requests)"),
    503: (ServerDownError, "is unavailable (503, e.g. starting up or in maintenance)"),
}


# In an error's `detail`: a write that timed out, which the server may still apply later (a
# slow Plex finishes requests its client gave up on); see engine.routing.
UNSETTLED_WRITE = "unsettled_write"
# In an error's `detail`: the server took the request but sent no answer in time (running, but
# slow: nothing to start), unlike a refused connection or a 503.
ANSWER_LATE = "answer_late"
# Key of a retry's stored detail: the tries a scene gets before it goes to the dead letters (the
# setting `max_retries` when it failed), so what is told about the retry can count them.
MAX_ATTEMPTS = "max_attempts"


def error_for_status(
    status: int, server: Server, detail: str = "", *, action: str = ""
) -> SyncError:
    """The classified error for an HTTP status from `server` (message names the server).

    401 -> AuthError; 503 -> ServerDownError (StashDownError for Stash); 408, 429 and other
    5xx -> TransientError; 404 -> NotInPlexError for Plex; other 4xx -> PermanentError.
    `action` says what was being done ("the edit of Plex item 12"): a person reads the
    message in the dead-letter queue, so a refusal says what was refused and what to do.
    """
    name = "Plex" if server == "plex" else "Stash"
    cls: type[SyncError]
    phrase = _reason_phrase(status)
    if status in _STATUS_TABLE:
        cls, meaning = _STATUS_TABLE[status]
    elif status >= 500:
        cls, meaning = TransientError, f"failed the request (HTTP {status}{phrase})"
    elif status == 404 and server == "plex":
        cls, meaning = NotInPlexError, "has no such item (404)"
    else:
        cls, meaning = PermanentError, f"rejected the request (HTTP {status}{phrase})"
    if cls is ServerDownError and server == "stash":
        cls = StashDownError
    if action:
        meaning = meaning.replace("the request", action, 1)
    message = f"{name} {meaning}" + (f": {detail}" if detail else "")
    if cls is PermanentError and server == "plex":
        message += (
            "; Plex will refuse it again as long as the scene's values are the same: check "
            "the scene in Stash, then run Retry Dead Letters"
        )
    return cls(message, server=server, status=status)


def _reason_phrase(status: int) -> str:
    """' Bad Request' for 400; '' for a status without a standard name."""
    from http import HTTPStatus

    try:
        return f" {HTTPStatus(status).phrase}"
    except ValueError:
        return ""


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


def without_credentials(text: str) -> str:
    """An address shown without what may carry a credential: a login, and anything after the
    host and port (a query, `;X-Plex-Token=…`, a percent-encoded one) as "…"; typed without
    its scheme (`user:token@host:32400`, `host:32400/?X-Plex-Token=…`) as well."""
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "", text
    login = ""
    if "@" in rest:  # everything to the last @ (a login may hold a / or a ?) is hidden
        login, rest = "…@", rest.rpartition("@")[2]
    host = re.split(r"[/?#;]", rest, maxsplit=1)[0]
    more = "…" if rest[len(host) :].strip("/") else ""
    return f"{scheme}{separator}{login}{host}{more}"


def shorten(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters (for messages that quote a server's answer)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------- the store
class StoreError(RuntimeError):
    """The store cannot be used; the message says why and what to do. Not routed: the entry
    points report it (a hook falls back to the spool when the store is only busy)."""


class StoreLockedError(StoreError):
    """Another process holds the store's write lock longer than we may wait."""


class StoreFullError(StoreError):
    """The disk holding the store is full."""


class StoreUnreadableError(StoreError):
    """The store file is not a readable database (truncated, overwritten, corrupt)."""


# ---------------------------------------------------------------------------- input
class PluginInputError(ValueError):
    """Stash's stdin JSON is not a usable PluginInput; the message says what was wrong."""


class HookError(ValueError):
    """A hook context is malformed; the message says what was wrong."""
