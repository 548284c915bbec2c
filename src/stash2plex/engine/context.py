"""Everything one unit of work needs: the store, the settings, and clients for Stash and Plex.

Settings come from Stash, read through the freshest server connection a hook or task recorded
(a detached worker has no stdin of its own). The session cookie expires, so the API key is read
once through it and kept in the store (mode 0600) for later runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from stash2plex.clients.plex import PlexClient
from stash2plex.clients.stash import StashClient, StashConnection
from stash2plex.errors import AuthError, ConfigError, NotConfiguredError, without_credentials
from stash2plex.settings.config import PLUGIN_ID, Config, build_config, setting_label
from stash2plex.settings.sources import LocalSettings, effective_settings, load_local_settings
from stash2plex.store.db import Store
from stash2plex.store.schema import SERVER_CONNECTION_KEY

API_KEY_KEY = "stash_api_key"
# The Plex server's URL and machine identifier, for links to an item's page in Plex Web
# (operations/views.py `plex_web_url`), which are made without asking Plex, and which
# settings it last answered (`plex_settings_proven`).
PLEX_SERVER_KEY = "plex_server"
ANSWERED_URLS_KEPT = 10


@dataclass
class Context:
    """The store, the effective settings (and where each came from) and the two clients."""

    store: Store
    config: Config
    stash: StashClient
    plex: PlexClient
    sources: dict[str, str] = field(default_factory=dict)


def remember_plex_server(context: Context, *, ask_claimed: bool) -> None:
    """Record who serves at `plex_url` once Plex said it (its `GET /` answer's
    machineIdentifier) and, when `ask_claimed`, whether it is claimed (one `GET /identity`;
    links then go through app.plex.tv). What was known of the same server is kept when not
    asked or when Plex does not say. Nothing before the client connected; no write when
    unchanged."""
    identity = context.plex.identity
    if identity is None or not identity.machine_identifier:
        return
    url = context.config.plex_url
    before = context.store.get_value(PLEX_SERVER_KEY) or {}
    same_server = before.get("machine_identifier") == identity.machine_identifier
    claimed = context.plex.claimed() if ask_claimed else None
    if claimed is None and same_server:
        claimed = before.get("claimed")
    # Every address Plex answered at (the plugin and a command line on another machine may
    # reach it by different names), the newest last.
    urls = [u for u in before.get("urls") or [before.get("url")] if u and u != url]
    server = {
        "url": url,
        "urls": [*urls[-(ANSWERED_URLS_KEPT - 1) :], url],
        "machine_identifier": identity.machine_identifier,
        "claimed": claimed,
        "settings": _plex_settings_print(context.config),
    }
    if before != server:
        context.store.put_value(PLEX_SERVER_KEY, server)


def plex_url_answered(context: Context) -> bool:
    """True when Plex has answered at `plex_url` (in this process, or recorded before)."""
    return context.plex.answered or answered_before(context.store, context.config.plex_url)


def answered_before(store: Store, url: str) -> bool:
    """True when Plex was recorded answering at `url` (`remember_plex_server`)."""
    server = store.get_value(PLEX_SERVER_KEY) or {}
    return url in (server.get("urls") or [server.get("url")])


def plex_settings_proven(context: Context) -> bool:
    """True when Plex last answered these very settings (its URL and our token)."""
    server = context.store.get_value(PLEX_SERVER_KEY) or {}
    return bool(server.get("settings") == _plex_settings_print(context.config))


def _plex_settings_print(config: Config) -> str:
    """A fingerprint of the URL and token (16 hex digits; the token cannot be read back)."""
    text = f"{config.plex_url}\0{config.plex_token}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# Where the Stash address came from when Stash gave it (see `stash_address`).
FROM_STASH = "the connection Stash gave the plugin (its last hook or task)"


def stash_address(store: Store, local: LocalSettings | None = None) -> tuple[str | None, str]:
    """Which Stash the command line talks to and where that address came from, as
    `connect_stash` chooses it: `(url without credentials, source)` (a `sources` form:
    "environment STASH2PLEX_STASH_URL", "file <path>", FROM_STASH), or `(None, "")` when no
    address is known. Reads the store only; asks no server."""
    if local is not None and local.stash_url:
        return without_credentials(local.stash_url), local.sources.get("stash_url", "")
    connection = store.get_value(SERVER_CONNECTION_KEY)
    if connection:
        return StashConnection.from_server_connection(connection).url, FROM_STASH
    return None, ""


def connect_stash(
    store: Store, connection: dict[str, Any] | None = None, local: LocalSettings | None = None
) -> StashClient:
    """A Stash client that survives the session cookie's expiry by switching to the API key.

    Outside Stash (CLI, service) `stash_url` and `stash_api_key` from the environment or the
    settings file say where Stash is; inside, the plugin's server connection does.
    """
    if local is not None and local.stash_url:
        return StashClient(StashConnection.from_url(local.stash_url, local.stash_api_key))
    if connection is not None:
        store.put_value(SERVER_CONNECTION_KEY, connection)
    connection = connection or store.get_value(SERVER_CONNECTION_KEY)
    if not connection:
        raise NotConfiguredError(
            "no Stash connection recorded yet: save a scene in Stash, run a Stash2Plex task, "
            "or set STASH2PLEX_STASH_URL (and STASH2PLEX_STASH_API_KEY) for the command line"
        )
    stored_key = store.get_value(API_KEY_KEY) or None
    client = StashClient(StashConnection.from_server_connection(connection, api_key=stored_key))
    if stored_key:
        try:
            client.version()
            return client
        except AuthError:
            # The key was regenerated in Stash: forget it and read the new one via the cookie.
            store.delete_value(API_KEY_KEY)
            client = StashClient(StashConnection.from_server_connection(connection))
    try:
        api_key = client.api_key()
    except AuthError as exc:
        if not stored_key:
            raise
        raise AuthError(
            "Stash rejected the API key Stash2Plex kept (it was regenerated or removed) and "
            "the plugin's session has expired: run any Stash2Plex task, or save a scene, so "
            "the plugin can read the current key",
            server="stash",
            status=401,
        ) from exc
    if api_key:
        store.put_value(API_KEY_KEY, api_key)
        client.use_api_key(api_key)
    return client


def load_config(
    stash: StashClient, local: LocalSettings | None = None
) -> tuple[Config, dict[str, str]]:
    """The effective settings (Stash's, overridden by file and environment) and their sources."""
    values, sources = effective_settings(stash.plugin_settings(PLUGIN_ID), local or LocalSettings())
    return build_config(values), sources


def build_context(
    store: Store, connection: dict[str, Any] | None = None, local: LocalSettings | None = None
) -> Context:
    """Read the settings through Stash and build the clients.

    Raises ConfigError naming an invalid blocking setting (`plex_url`, `path_map`),
    NotConfiguredError when required settings are missing, and the Stash client's
    errors (StashDownError, AuthError, ...) when the settings cannot be read.
    """
    if local is None:
        local = load_local_settings(store.path.parent)
    stash = connect_stash(store, connection, local)
    config, sources = load_config(stash, local)
    for key, problem in config.invalid.items():
        # Checked before `missing`: an invalid URL is reported as invalid, not as unset.
        raise ConfigError(problem, setting=key, source=sources.get(key, ""))
    if config.missing:
        invalid = [w for w in config.warnings if any(f" {key} " in w for key in config.missing)]
        names = " and ".join(setting_label(key) for key in config.missing)
        emptied = [
            local.sources[key].removeprefix("environment ")
            for key in config.missing
            if local.sources.get(key, "").startswith("environment ")
        ]
        if emptied:  # an empty variable hides Stash's value: the likely cause, named
            raise NotConfiguredError(
                f"Stash2Plex is not configured: {' and '.join(emptied)} "
                f"{'is' if len(emptied) == 1 else 'are'} set but empty, which hides the value "
                f"in Stash's plugin settings: unset {'it' if len(emptied) == 1 else 'them'}, "
                f"or give {names} a value there"
            )
        where = "in Settings > Plugins > Stash2Plex"
        if local.stash_url:  # the command line or the service: the environment is at hand
            variables = " and ".join(f"STASH2PLEX_{key.upper()}" for key in config.missing)
            where += f", or as {variables}"
        raise NotConfiguredError(
            f"Stash2Plex is not configured: set {names} {where}"
            + "".join(f" ({warning})" for warning in invalid)
        )
    plex = PlexClient(
        config.plex_url,
        config.plex_token,
        timeout=config.plex_timeout,
        verify_tls=config.verify_tls,
        max_concurrency=config.plex_max_concurrency,
        max_requests_per_second=config.plex_max_requests_per_second,
    )
    return Context(store, config, stash, plex, sources)
