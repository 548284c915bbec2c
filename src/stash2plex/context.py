"""Everything one unit of work needs: the store, the settings, and clients for Stash and Plex.

Settings come from Stash, read through the freshest server connection a hook or task recorded
(a detached worker has no stdin of its own). The session cookie expires, so the API key is read
once through it and kept in the store (mode 0600) for later runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import PLUGIN_ID, Config, build_config
from .errors import AuthError, PermanentError
from .plex_client import PlexClient
from .stash_client import StashClient, StashConnection
from .store import Store

SERVER_CONNECTION_KEY = "server_connection"
API_KEY_KEY = "stash_api_key"


class NotConfiguredError(PermanentError):
    """Required settings are missing: syncing stops until they are set."""


@dataclass
class Context:
    store: Store
    config: Config
    stash: StashClient
    plex: PlexClient


def connect_stash(store: Store, connection: dict[str, Any] | None = None) -> StashClient:
    """A Stash client that survives the session cookie's expiry by switching to the API key."""
    if connection is not None:
        store.put_value(SERVER_CONNECTION_KEY, connection)
    connection = connection or store.get_value(SERVER_CONNECTION_KEY)
    if not connection:
        raise NotConfiguredError(
            "no Stash connection recorded yet: save a scene in Stash or run a Stash2Plex task"
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
    api_key = client.api_key()
    if api_key:
        store.put_value(API_KEY_KEY, api_key)
        client.use_api_key(api_key)
    return client


def load_config(stash: StashClient) -> Config:
    return build_config(stash.plugin_settings(PLUGIN_ID))


def build_context(store: Store, connection: dict[str, Any] | None = None) -> Context:
    stash = connect_stash(store, connection)
    config = load_config(stash)
    if config.missing:
        raise NotConfiguredError(
            "Stash2Plex is not configured: set "
            + ", ".join(config.missing)
            + " in Settings > Plugins > Stash2Plex"
        )
    plex = PlexClient(
        config.plex_url,
        config.plex_token,
        timeout=config.plex_timeout,
        verify_tls=config.verify_tls,
    )
    return Context(store, config, stash, plex)
