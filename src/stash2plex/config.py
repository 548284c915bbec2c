"""Settings: their definitions (one table, which also feeds the manifest and the docs) and the
validated configuration built from whatever values Stash, the environment or a file gave.

Stash stores no defaults and shows an untouched BOOLEAN as off, so every default here is what
an absent key means. Validation is per key: a bad value produces a warning naming the key and
the accepted values, and that key falls back to its default; it never disables the plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .pathmap import PathMapError, PathRule, parse_path_map

PLUGIN_ID = "Stash2Plex"


@dataclass(frozen=True)
class Setting:
    key: str
    type: str  # STRING | NUMBER | BOOLEAN, as Stash's manifest names them
    default: Any
    display_name: str
    description: str
    secret: bool = False
    required: bool = False
    check: Callable[[Any], Any] | None = None  # returns the parsed value or raises ValueError


def _url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not text.lower().startswith(("http://", "https://")):
        raise ValueError("a URL starting with http:// or https://, e.g. http://127.0.0.1:32400")
    return text


def _library_list(value: Any) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


def _path_rules(value: Any) -> tuple[PathRule, ...]:
    try:
        return parse_path_map(str(value))
    except PathMapError as exc:
        raise ValueError(str(exc)) from None


def _positive_number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        number = float(value)
        if not low <= number <= high:
            raise ValueError(f"a number from {low:g} to {high:g}")
        return number

    return check


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "plex_url",
        "STRING",
        "",
        "Plex URL",
        "Address of your Plex Media Server, e.g. http://192.168.1.10:32400. Required.",
        required=True,
        check=_url,
    ),
    Setting(
        "plex_token",
        "STRING",
        "",
        "Plex token",
        "Your X-Plex-Token (Plex Web: any item > Get Info > View XML, the value after "
        "X-Plex-Token= in the address). Required. Never shown in logs.",
        secret=True,
        required=True,
    ),
    Setting(
        "plex_library",
        "STRING",
        "",
        "Plex libraries",
        "Comma-separated names of the Plex libraries holding your Stash files. Empty: every "
        "movie and other-videos library.",
        check=_library_list,
    ),
    Setting(
        "path_map",
        "STRING",
        "",
        "Path mapping",
        "How Stash paths become Plex paths when the two see the disk under different roots: "
        "'/stash/prefix => /plex/prefix', several rules separated by ';'. Empty: the same "
        "paths.",
        check=_path_rules,
    ),
    Setting(
        "plex_timeout",
        "NUMBER",
        30,
        "Plex timeout (seconds)",
        "How long to wait for one Plex request (connect and read). Default: 30.",
        check=_positive_number(1, 300),
    ),
)
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    plex_url: str = ""
    plex_token: str = ""
    plex_library: tuple[str, ...] = ()
    path_map: tuple[PathRule, ...] = ()
    plex_timeout: float = 30.0
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def missing(self) -> tuple[str, ...]:
        """Required settings without a value: syncing stops until they are set."""
        return tuple(s.key for s in SETTINGS if s.required and not getattr(self, s.key))

    def secrets(self) -> tuple[str, ...]:
        return tuple(
            str(getattr(self, s.key)) for s in SETTINGS if s.secret and getattr(self, s.key)
        )


def _parse_one(setting: Setting, raw: Any) -> Any:
    if setting.type == "BOOLEAN":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off", ""):
            return False
        raise ValueError("true or false")
    if setting.type == "NUMBER" and isinstance(raw, bool):
        raise ValueError("a number")
    value = raw if setting.type == "NUMBER" else str(raw).strip()
    return setting.check(value) if setting.check else value


def build_config(values: Mapping[str, Any] | None) -> Config:
    """Validate raw settings per key; a bad value warns and falls back to its default."""
    parsed: dict[str, Any] = {}
    warnings: list[str] = []
    for setting in SETTINGS:
        raw = (values or {}).get(setting.key)
        if raw is None or (isinstance(raw, str) and not raw.strip() and setting.type != "BOOLEAN"):
            continue
        try:
            parsed[setting.key] = _parse_one(setting, raw)
        except (ValueError, TypeError) as exc:
            shown = "***" if setting.secret else repr(raw)
            warnings.append(
                f"setting {setting.key} = {shown} is not valid (expected {exc}); "
                f"using the default {setting.default!r}"
            )
    return Config(**parsed, warnings=tuple(warnings))
