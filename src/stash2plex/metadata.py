"""From a Stash scene and the settings, what the Plex item should show. Pure functions.

Each synced field is fingerprinted; the store keeps the fingerprints of what we last pushed,
so an unchanged scene costs no write and only changed fields are sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .config import Config

TITLE_MAX = 255
SUMMARY_MAX = 10_000
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


@dataclass(frozen=True)
class DesiredItem:
    """What the Plex item should show. `fields` maps Plex field keys to values ('' clears)."""

    fields: dict[str, str] = field(default_factory=dict)

    def fingerprints(self) -> dict[str, str]:
        return {key: fingerprint(value) for key, value in self.fields.items()}


def fingerprint(value: Any) -> str:
    encoded = json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha1(encoded).hexdigest()[:16]


def clean_text(text: str | None, limit: int) -> str:
    """Keep line breaks, tabs and typography; drop other control characters; cap the length."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    kept = kept.strip()
    if len(kept) > limit:
        kept = kept[: limit - 1].rstrip() + "…"
    return kept


def plex_date(stash_date: str | None) -> str:
    """Stash dates may be YYYY, YYYY-MM or YYYY-MM-DD; Plex needs a full date.

    A partial date is expanded to the first day of its period, so Plex shows the right year
    and sorts it correctly; a malformed date is not sent at all.
    """
    match = _DATE.match((stash_date or "").strip())
    if not match:
        return ""
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    return f"{year}-{month}-{day}"


def file_title(scene: dict[str, Any]) -> str:
    """The title Plex should show for an untitled scene: its primary file's name, no extension."""
    files = scene.get("files") or []
    if not files:
        return ""
    basename = files[0].get("basename") or str(files[0].get("path", "")).replace("\\", "/")
    basename = basename.rsplit("/", 1)[-1]
    return basename.rsplit(".", 1)[0] if "." in basename else basename


def desired_item(scene: dict[str, Any], config: Config) -> DesiredItem:
    """Compute the Plex fields for a scene."""
    del config  # field toggles arrive with the full field set
    studio = scene.get("studio") or {}
    fields = {
        "title": clean_text(scene.get("title"), TITLE_MAX)
        or clean_text(file_title(scene), TITLE_MAX),
        "summary": clean_text(scene.get("details"), SUMMARY_MAX),
        "studio": clean_text(studio.get("name"), TITLE_MAX),
        "originallyAvailableAt": plex_date(scene.get("date")),
    }
    return DesiredItem(fields=fields)


def changed_fields(desired: DesiredItem, pushed: dict[str, str]) -> list[str]:
    """Field keys whose desired value differs from what we last pushed."""
    current = desired.fingerprints()
    return sorted(key for key, value in current.items() if pushed.get(key) != value)


def edit_params(desired: DesiredItem, keys: list[str]) -> dict[str, Any]:
    """The parameters of one batched Plex edit: each written field set and locked."""
    params: dict[str, Any] = {}
    for key in keys:
        params[f"{key}.value"] = desired.fields[key]
        params[f"{key}.locked"] = 1
    return params
