"""HTTP to one server over urllib3: kept-alive connections, settings read once, failures sorted.

Why urllib3 and not `requests`: a first sync sends about four requests per scene (an edit, two
image uploads, a cover download), and `requests`' own work per request (preparing it, merging
session settings, cookies and hooks) cost more CPU than the whole sync besides: 0.77 ms per
request against 0.30 ms through urllib3 itself on the benchmark machine (bench/results/sync.md).
urllib3 is the connection layer `requests` is built on; the clients need nothing `requests`
adds on top of it.

What `requests` read from the environment for every request is read once, when the transport
is made (a transport talks to one server): the proxy from HTTP(S)_PROXY / NO_PROXY for that
server's URL (read by `requests`' own function; a login in the proxy's address is sent), and
for https with certificates verified the CA bundle (a file or a folder) from
REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else certifi's (the bundle `requests` uses).
Verification off stays off in every environment and never warns per request (a warning would
reach Stash's log as an error). Redirects are followed only where asked (cover downloads).
Credentials (the headers in `_CREDENTIALS`) go only to the server's own origin: never with a
request for a URL elsewhere, never along a redirect to one.

Every failure without a usable answer is a `TransportError`, so the clients sort them without
knowing urllib3: `Unreachable` (no connection, or it closed before an answer;
`ProxyUnreachable` when the proxy failed or wants a login), `AnswerTimeout` (connected, no
answer in time), `AnswerBroken` (the answer broke off), `RedirectFailed` (a followed redirect
led nowhere), `SetupProblem` (the environment names a proxy or CA bundle that cannot work;
raised by every request, never when the transport is made, so a client can always be built
and report it).
"""

from __future__ import annotations

import os
import random
import ssl
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    HTTPError,
    InsecureRequestWarning,
    LocationValueError,
    MaxRetryError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
)

# A redirect followed at most this often (image downloads only; see `ServerTransport.request`).
MAX_REDIRECTS = 5
# A busy server (a database locked under bulk edits or a library scan) refuses a request and
# serves the next ones. The clients ask such a refusal again after these pauses (seconds, see
# `busy_pause`) before it counts as a failure: one refused request is no failed job, so a
# flaky server is neither taken for an outage nor given attempts towards the dead letters.
# Only answers are asked again, never a timeout (a write that timed out may still land).
BUSY_RETRY_DELAYS = (0.5, 1.5)
# A longer Retry-After is left to the job's own retry: a worker asked to stop (Docker gives
# ten seconds) must not sleep through it.
BUSY_RETRY_AFTER_CAP = 5.0


class TransportError(Exception):
    """A request that got no usable answer. `text` is urllib3's description of the failure
    (it can quote the URL with its query: redact secrets before showing it)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Unreachable(TransportError):
    """No connection: refused, unknown host, TLS failure, proxy failure, connect timeout, or
    the connection closed before any answer."""


class ProxyUnreachable(Unreachable):
    """The proxy the environment names (`proxy`, its password hidden; `variable`) could not
    be reached or refused to pass the request on."""

    def __init__(self, text: str, proxy: str, variable: str, logged_in: bool = False) -> None:
        super().__init__(text)
        self.proxy = proxy
        self.variable = variable
        self.logged_in = logged_in  # the address carries user:password

    def describe(self, server: str, url: str) -> str:
        """One sentence for a person: `server` ("Plex", "Stash") at `url` through the proxy."""
        lowered = self.text.lower()
        if "refused" in lowered:
            why = "the proxy refused the connection"
        elif "timed out" in lowered:
            why = "the proxy did not answer in time"
        elif "407" in lowered and self.logged_in:
            why = "the proxy refused the login in its address (check user:password@)"
        elif "407" in lowered:
            why = "the proxy wants a login (put user:password@ in its address)"
        elif "resolve" in lowered or "name or service" in lowered:
            why = "the proxy's host name is unknown"
        else:
            why = "the proxy did not pass the request on"
        host = urlsplit(url).hostname or url
        return (
            f"{server} at {url} is not reachable through the proxy {self.proxy} "
            f"({self.variable}): {why}; is the proxy running, or should {host} be in NO_PROXY?"
        )


class RedirectFailed(TransportError):
    """A redirect was followed and failed there: `location` could not be reached, or
    redirected more than MAX_REDIRECTS times. A failure of that address, not of the server."""

    def __init__(self, text: str, location: str, *, loop: bool = False) -> None:
        super().__init__(text)
        self.location = location
        self.loop = loop


class AnswerTimeout(TransportError):
    """Connected, but no answer (or the rest of it) within the read timeout."""


class AnswerBroken(TransportError):
    """The answer began and could not be read to its end (cut off, undecodable)."""


class SetupProblem(TransportError):
    """The environment asks for what cannot work: a proxy of a kind urllib3 cannot use, a CA
    bundle that is not there. `variable` names the environment variable to fix; `text` says
    what is wrong and what to do (no secret: a proxy's password is hidden)."""

    def __init__(self, text: str, variable: str) -> None:
        super().__init__(text)
        self.variable = variable


@dataclass(frozen=True)
class Exchange:
    """One request and its answer, for observers: `path` with its query (the whole URL for
    another server), `seconds` from sending to the answer (its headers when streamed)."""

    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    seconds: float


Timeout = float | tuple[float, float]  # seconds; (connect, read) or one value for both


class Answer:
    """A server's answer: `status`, `headers` (case-insensitive), and the body, read whole
    (`body`, `text`) or streamed (`chunks`). Use as a context manager when streaming: leaving
    it early closes the connection (its unread rest must not reach the next request)."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers
        self.body = b""

    def read(self) -> bytes:
        """The whole body (kept in `body`). Raises AnswerTimeout or AnswerBroken."""
        self.body = b"".join(self.chunks())
        return self.body

    def chunks(self, size: int = 64 * 1024) -> Iterator[bytes]:
        """The body in chunks of up to `size` bytes. Raises AnswerTimeout or AnswerBroken."""
        try:
            yield from self._response.stream(size)
        except ReadTimeoutError as exc:
            self.close()
            raise AnswerTimeout(str(exc)) from exc
        except (HTTPError, OSError) as exc:
            self.close()
            raise AnswerBroken(str(exc)) from exc
        self._response.release_conn()

    @property
    def text(self) -> str:
        """The body read so far as text, in the charset the answer names (UTF-8 if none)."""
        # `text/xml;charset=utf-8` (Plex), `application/json` (Stash: UTF-8 by definition).
        parameters = self.headers.get("Content-Type", "").lower().partition("charset=")[2]
        charset = parameters.split(";")[0].strip().strip('"') or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Drop the connection unless the body was read to its end (then it is kept alive)."""
        if not self._response.closed:
            self._response.close()
        self._response.release_conn()

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServerTransport:
    """Kept-alive HTTP(S) connections to the server at `base_url` (see the module docstring).

    `headers`: sent with every request (to change them, assign a new dict: other threads
    may be sending with the current one);
    `pool_size`: connections kept alive, one per thread that may talk to the server at once;
    `before_send`: called before every request (a throttle's wait); `observers`: called with
    each `Exchange` once its answer's headers arrived. Thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool = True,
        pool_size: int = 1,
        headers: Mapping[str, str] | None = None,
        before_send: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        # Compressed answers when the server offers them, as `requests` asked (a listing page
        # is a tenth of the bytes gzipped; urllib3 decodes it).
        self.headers: dict[str, str] = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
        self.verify = verify
        self.pool_size = max(1, pool_size)
        self.observers: list[Callable[[Exchange], None]] = []
        self._before_send = before_send
        self._clock = clock
        self.proxy: str | None = None
        self._proxy_variable = ""
        self.ca_bundle: str | None = None
        self._problem: SetupProblem | None = None
        self._own_pool: Any = None
        try:
            # Read only for https (as `requests` did): a stale variable never breaks http.
            self.ca_bundle = ca_bundle() if verify and parts.scheme == "https" else None
            self.proxy, proxy_headers, self._proxy_variable = proxy_for(self.base_url)
        except SetupProblem as problem:
            self._problem = problem
            return
        options: dict[str, Any] = {"maxsize": self.pool_size, "retries": False}
        if verify:
            options["cert_reqs"] = "CERT_REQUIRED"
            if self.ca_bundle:
                where = "ca_cert_dir" if os.path.isdir(self.ca_bundle) else "ca_certs"
                options[where] = self.ca_bundle
        else:
            options.update(cert_reqs="CERT_NONE", assert_hostname=False)
            # Unverified on purpose: the per-request warning would only fill Stash's log.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        if not self.proxy:
            self._manager: urllib3.PoolManager = urllib3.PoolManager(**options)
        else:
            try:
                self._manager = urllib3.ProxyManager(
                    self.proxy, proxy_headers=proxy_headers, **options
                )
            except (HTTPError, ValueError) as exc:  # e.g. a port that is not a number
                self._problem = SetupProblem(
                    f"the proxy {_shown(self.proxy)} ({self._proxy_variable}) is not an address "
                    f"Stash2Plex can use ({type(exc).__name__}): correct it, or unset it",
                    self._proxy_variable,
                )
                return
        # Requests to the server's own address skip the manager's per-request URL parsing.
        self._own_pool = None if self.proxy else self._connection_pool()

    def _connection_pool(self) -> Any:
        try:
            return self._manager.connection_from_url(self.base_url)
        except (LocationValueError, ValueError):
            return None  # an address urllib3 cannot parse fails on the first request instead

    def request(
        self,
        method: str,
        target: str,
        *,
        timeout: Timeout,
        body: bytes | bytearray | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> Answer:
        """Send `method` to `target` (a path on the server, or an absolute URL) and return the
        answer, its body read unless `stream`. Any status is an answer (a redirect too, unless
        `follow_redirects`, then up to MAX_REDIRECTS). Raises a TransportError: Unreachable
        (ProxyUnreachable when the proxy failed), AnswerTimeout, AnswerBroken, RedirectFailed
        or SetupProblem."""
        if self._problem is not None:
            raise self._problem
        url = self.base_url + target if target.startswith("/") else target
        # Any URL on this server's origin goes through its own pool (cheaper than the manager).
        path = self.own_path(url)
        sent_headers = {**self.headers, **headers} if headers else self.headers
        if path is None:  # another origin: the server's credentials stay with the server
            sent_headers = {k: v for k, v in sent_headers.items() if k.lower() not in _CREDENTIALS}
        options: dict[str, Any] = {
            "body": body,
            "headers": sent_headers,
            "timeout": _timeout(timeout),
            "preload_content": False,
            "redirect": False,
            "retries": _NO_RETRIES,
        }
        if self._before_send is not None:
            self._before_send()
        started = self._clock()
        try:
            if path is not None and self._own_pool is not None:
                response = self._own_pool.urlopen(method, path, **options)
            else:
                response = self._manager.urlopen(method, url, **options)
        except (HTTPError, OSError, ValueError) as exc:
            raise self._transport_error(exc) from exc
        if self.proxy and response.status == 407:  # the proxy, not the server, answered
            response.drain_conn()
            raise self._proxy_failed("407 Proxy Authentication Required")
        if follow_redirects and response.get_redirect_location():
            response = self._redirected(method, url, response, options)
        answer = Answer(response)
        if not stream:
            answer.read()
        if self.observers:
            exchange = Exchange(
                method,
                path if path is not None else url,
                answer.status,
                answer.headers,
                self._clock() - started,
            )
            for observe in self.observers:
                observe(exchange)
        return answer

    def own_path(self, url: str) -> str | None:
        """The path (with its query) of a URL on this server's origin, None for a URL elsewhere.
        Scheme and host compare without case (`HTTP://NAS:9999` is `http://nas:9999`)."""
        end = len(self._origin)
        if url[:end].lower() == self._origin.lower() and url[end : end + 1] == "/":
            return url[end:]
        return None

    def _redirected(
        self, method: str, url: str, response: Any, options: dict[str, Any]
    ) -> urllib3.BaseHTTPResponse:
        """Follow a redirect (urllib3 follows any further ones). Credentials never go to
        another origin. Raises RedirectFailed."""
        location = urljoin(url, str(response.get_redirect_location()))
        response.drain_conn()
        if self.own_path(location) is None:
            options["headers"] = {
                k: v for k, v in options["headers"].items() if k.lower() not in _CREDENTIALS
            }
        options.update(redirect=True, retries=_REDIRECTS_ONLY)
        try:
            result: urllib3.BaseHTTPResponse = self._manager.urlopen(method, location, **options)
        except MaxRetryError as exc:  # a later hop: too many, or one that failed
            loop = isinstance(exc.reason, ResponseError)
            text = f"more than {MAX_REDIRECTS} redirects" if loop else str(exc.reason)
            raise RedirectFailed(text, location, loop=loop) from exc
        except (HTTPError, OSError, ValueError) as exc:
            raise RedirectFailed(str(exc), location) from exc
        return result

    def _proxy_failed(self, text: str) -> ProxyUnreachable:
        logged_in = "@" in str(self.proxy).partition("://")[2]
        return ProxyUnreachable(text, _shown(str(self.proxy)), self._proxy_variable, logged_in)

    def _transport_error(self, exc: BaseException) -> TransportError:
        if isinstance(exc, ProxyError) and self.proxy:
            return self._proxy_failed(str(exc))
        return _transport_error(exc)


def _transport_error(exc: BaseException) -> TransportError:
    if isinstance(exc, ReadTimeoutError):
        return AnswerTimeout(str(exc))
    return Unreachable(str(exc))


def _timeout(timeout: Timeout) -> urllib3.Timeout:
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(connect=timeout, read=timeout)


# Retrying is the engine's job (with backoff and the breaker): urllib3 retries nothing, and
# follows redirects only where asked to. Made once: urllib3 would build (and log) one per request.
_NO_RETRIES = urllib3.Retry.from_int(False, redirect=False)
# Headers that carry a credential: never sent on to another origin by a redirect.
_CREDENTIALS = frozenset({"cookie", "apikey", "authorization", "x-plex-token"})
_REDIRECTS_ONLY = urllib3.Retry(
    total=None,
    connect=0,
    read=0,
    status=0,
    other=0,
    redirect=MAX_REDIRECTS - 1,  # the first was followed by hand
    remove_headers_on_redirect=_CREDENTIALS | {"proxy-authorization"},
)


class BusyTries:
    """The tries of a request to a server that may be busy: a refusal is asked again after
    each of BUSY_RETRY_DELAYS. A server that refused every try of a request is not merely
    busy: its next requests get one try each (no pauses: an outage costs no waiting, and
    the breaker or pause takes over sooner) until one is answered. Thread-safe enough: a
    flag whose races only cost or save one pause."""

    def __init__(self) -> None:
        self.refusing = False

    def delays(self) -> tuple[float | None, ...]:
        """The pause after each try, None after the last."""
        return _ONE_TRY if self.refusing else _ALL_TRIES

    def note(self, busy: bool, delay: float | None) -> None:
        """One try's outcome: `busy` refused for now; `delay` None on the last try."""
        if not busy:
            self.refusing = False
        elif delay is None:
            self.refusing = True


_ALL_TRIES: tuple[float | None, ...] = (*BUSY_RETRY_DELAYS, None)
_ONE_TRY: tuple[float | None, ...] = (None,)


def busy_pause(delay: float, retry_after: str | None, rng: random.Random) -> float:
    """Seconds before asking a busy server again: `delay` (one of BUSY_RETRY_DELAYS) less up
    to half of it at random, so threads refused together do not return together; or the
    answer's Retry-After in whole seconds (RFC 9110 10.2.3), up to BUSY_RETRY_AFTER_CAP."""
    text = (retry_after or "").strip()
    if text.isascii() and text.isdigit():  # not "²", which str.isdigit also takes
        return min(float(text), BUSY_RETRY_AFTER_CAP)
    return delay * (1 - rng.random() / 2)


def proxy_for(url: str) -> tuple[str | None, dict[str, str] | None, str]:
    """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, with
    NO_PROXY's exceptions, read as `requests` reads them) and the headers that log in to it
    (from `user:password@` in its address) and the variable that named it, or (None, None,
    ""). A proxy without a scheme is http://, as `requests` takes it; a NO_PROXY entry may
    name a host with its port (as curl reads it). Raises SetupProblem for a proxy urllib3
    cannot use."""
    from requests.utils import get_auth_from_url, get_environ_proxies

    proxies = get_environ_proxies(url)
    scheme = urlsplit(url).scheme
    key = scheme if proxies.get(scheme) else "all"
    variable = _variable(f"{key}_proxy")
    proxy = (proxies.get(key) or "").strip()
    if not proxy or _excepted_with_port(url):
        return None, None, ""
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    try:
        parts = urlsplit(proxy)
        user, password = get_auth_from_url(proxy)
    except ValueError as exc:  # e.g. an unclosed [IPv6 address
        raise SetupProblem(
            f"the proxy in {variable} is not an address Stash2Plex can use ({exc}): correct "
            "it, or unset it",
            variable,
        ) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise SetupProblem(
            f"the proxy {_shown(proxy)} ({variable}) is a {parts.scheme} proxy, which "
            "Stash2Plex cannot use: set an http:// proxy there, or name this server in NO_PROXY",
            variable,
        )
    if not user:
        return proxy, None, variable
    return proxy, urllib3.make_headers(proxy_basic_auth=f"{user}:{password}"), variable


def _variable(name: str) -> str:
    """Which spelling of a proxy variable is in effect: lowercase wins when both are set (the
    standard library's reading, which `requests` uses)."""
    return name if os.environ.get(name) else name.upper()


def _shown(proxy: str) -> str:
    """A proxy's address for messages: scheme, host and port, never any part of a login (in
    an address too malformed to parse, everything up to its last @ is dropped)."""
    scheme, _, rest = proxy.partition("://")
    host_and_port = rest.rpartition("@")[2].split("/")[0]
    return f"{scheme}://{host_and_port}"


def _excepted_with_port(url: str) -> bool:
    """Whether NO_PROXY names `url`'s host with its port (`host:port`), which `requests`
    does not read."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    wanted = f"{parts.hostname}:{port}".lower()
    listed = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    return any(entry.strip().lower() == wanted for entry in listed.split(","))


def ca_bundle() -> str:
    """The CA bundle (a file, or a folder of hashed certificates) certificates are checked
    against: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when set (what `requests` honours), else
    certifi's. Raises SetupProblem when the variable names nothing that exists."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        bundle = os.environ.get(variable)
        if not bundle:
            continue
        if not os.path.exists(bundle):
            raise SetupProblem(
                f"{variable} names {bundle}, which does not exist: point it at a CA "
                "bundle file or folder, or unset it",
                variable,
            )
        if not os.access(bundle, os.R_OK):
            raise SetupProblem(
                f"{variable} names {bundle}, which this user may not read: make it readable, "
                "or point the variable elsewhere",
                variable,
            )
        if os.path.isfile(bundle):
            try:  # read once here, so a wrong file is named, not taken for the server down
                ssl.create_default_context(cafile=bundle)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise SetupProblem(
                    f"{variable} names {bundle}, which holds no certificate this machine can "
                    f"read ({type(exc).__name__}): point it at a PEM bundle, or unset it",
                    variable,
                ) from exc
        return bundle
    import certifi

    return str(certifi.where())
