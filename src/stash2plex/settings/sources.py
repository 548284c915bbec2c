"""Where settings come from outside Stash: environment variables and a TOML file.

For the CLI and the service the same settings as in Stash's plugin page can be given as
`STASH2PLEX_<KEY>` environment variables (e.g. `STASH2PLEX_PLEX_URL`) or in a TOML file
(`--config`, `STASH2PLEX_CONFIG`, or `stash2plex.toml` in the data directory). Precedence,
lowest first: defaults, Stash's plugin settings, the file, the environment. Two extra keys say
how to reach Stash without a plugin connection: `stash_url` and `stash_api_key`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash2plex.errors import AuthError, ConfigError, PermanentError, SyncError
from stash2plex.settings.config import SETTINGS, SETTINGS_BY_KEY

ENV_PREFIX = "STASH2PLEX_"
CONFIG_FILENAME = "stash2plex.toml"
CONNECTION_KEYS = ("stash_url", "stash_api_key")
# The environment's say in how Plex and Stash are reached (clients/http.py: proxies as
# `requests` reads them, either case; the CA bundle): a process given other values reaches
# them differently, as with other settings.
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
NETWORK_VARIABLES = (
    *_PROXIES,
    *(name.lower() for name in _PROXIES),
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@dataclass(frozen=True)
class LocalSettings:
    """Settings given outside Stash, with where each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    network: dict[str, str] = field(default_factory=dict)  # NETWORK_VARIABLES that are set

    @property
    def stash_url(self) -> str | None:
        return self.values.get("stash_url") or None

    @property
    def stash_api_key(self) -> str | None:
        return self.values.get("stash_api_key") or None

    def plugin_values(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k in SETTINGS_BY_KEY}

    def fingerprint(self) -> str:
        """What this process was given outside Stash: its STASH2PLEX_* variables, the
        settings file's path (whose content every reader re-reads) and the proxy and CA
        variables, as 16 hex digits. Two processes with the same fingerprint read the same
        settings and reach the servers the same way."""
        given = {
            key: str(value)
            for key, value in self.values.items()
            if self.sources.get(key, "").startswith("environment")
        }
        text = json.dumps(
            {"env": given, "file": str(self.file or ""), "network": self.network},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise PermanentError(f"cannot read the settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PermanentError(f"the settings file {path} is not valid TOML: {exc}") from None
    table = data.get("stash2plex", data)
    known = {*SETTINGS_BY_KEY, *CONNECTION_KEYS}
    unknown = sorted(set(table) - known)
    if unknown:
        raise PermanentError(
            f"the settings file {path} has unknown keys {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    return dict(table)


def load_local_settings(
    data_dir: Path | None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LocalSettings:
    """Read the TOML file (if any) and the environment, later sources winning."""
    env = os.environ if environ is None else environ
    path = config_file or (
        Path(env[f"{ENV_PREFIX}CONFIG"]) if env.get(f"{ENV_PREFIX}CONFIG") else None
    )
    if path is None and data_dir is not None and (data_dir / CONFIG_FILENAME).is_file():
        path = data_dir / CONFIG_FILENAME
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        for key, value in _read_toml(path).items():
            values[key] = value
            sources[key] = f"file {path}"
    for key in [*(s.key for s in SETTINGS), *CONNECTION_KEYS]:
        name = f"{ENV_PREFIX}{key.upper()}"
        if name in env:
            values[key] = env[name]
            sources[key] = f"environment {name}"
    network = {name: env[name] for name in NETWORK_VARIABLES if name in env}
    return LocalSettings(values, sources, path, network)


# STASH2PLEX_* variables that are not settings: where the data lives, the settings file, and
# the service's token.
OTHER_VARIABLES = ("DATA_DIR", "CONFIG", "SERVE_TOKEN")


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """STASH2PLEX_* variables no setting reads (a misspelt name is otherwise silently
    ignored), sorted."""
    env = os.environ if environ is None else environ
    known = {
        f"{ENV_PREFIX}{name.upper()}"
        for name in (*(s.key for s in SETTINGS), *CONNECTION_KEYS, *OTHER_VARIABLES)
    }
    return sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known)


def effective_settings(
    stash_values: Mapping[str, Any], local: LocalSettings
) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge Stash's plugin settings with the local ones; returns (values, source per key)."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.key in local.values:
            merged[setting.key] = local.values[setting.key]
            sources[setting.key] = local.sources[setting.key]
        elif stash_values.get(setting.key) is not None:
            merged[setting.key] = stash_values[setting.key]
            sources[setting.key] = "Stash plugin settings"
        else:
            sources[setting.key] = "default"
    return merged, sources


def describe_source(setting: str, source: str) -> str:
    """Where a setting's value came from, as a clause a person can act on.

    e.g. "Plex token (plex_token) comes from the environment variable STASH2PLEX_PLEX_TOKEN";
    empty when the source is unknown.
    """
    if not setting or not source:
        return ""
    from stash2plex.settings.config import setting_label

    label = setting_label(setting)
    if source == "Stash plugin settings":
        return f"{label} is set in Settings > Plugins > Stash2Plex"
    if source.startswith("environment "):
        return f"{label} comes from the environment variable {source.split(' ', 1)[1]}"
    if source.startswith("file "):
        return f"{label} comes from the settings file {source.split(' ', 1)[1]}"
    if source == "default":
        return f"{label} is not set (its default applies)"
    return f"{label} comes from {source}"


def error_source(error: SyncError, sources: Mapping[str, str]) -> str:
    """Where the value behind `error` came from (`describe_source`), or "" when the error is
    not about a setting's value or its source is unknown.

    A ConfigError names its setting (and often its source); an AuthError is the Plex token
    (from Plex) or the Stash API key (from Stash: `stash_api_key`, given outside Stash only;
    a plugin reaches Stash with its session cookie). `sources`: setting -> source, as
    `effective_settings` and `LocalSettings.sources` record them.
    """
    if isinstance(error, ConfigError):
        return describe_source(error.setting, error.source or sources.get(error.setting, ""))
    if isinstance(error, AuthError):
        setting = "stash_api_key" if error.server == "stash" else "plex_token"
        return describe_source(setting, sources.get(setting, ""))
    return ""


def with_source(error: SyncError, sources: Mapping[str, str]) -> str:
    """The error's message followed by where its value came from (`error_source`), the one
    way every command, task and report says it."""
    where = error_source(error, sources)
    if not where or where in error.message:
        return error.message
    return f"{error.message}; {where}"


def source_words(source: str) -> str:
    """Where a value came from, short: 'Stash plugin settings', 'environment STASH2PLEX_X',
    'file <path>', 'default' (the forms `effective_settings` records), in words."""
    if source.startswith("environment "):
        return f"environment variable {source.split(' ', 1)[1]}"
    if source.startswith("file "):
        return f"settings file {source.split(' ', 1)[1]}"
    if source == "default":
        return "default (not set)"
    return source or "default (not set)"
