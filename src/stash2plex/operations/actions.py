"""What the Plex page and the dashboard can do: retry or purge dead letters, sync a scene now,
preview a scene. Shared by the Stash page (plugin/operations.py) and `stash2plex serve`.

Store actions write one transaction and return at once; whoever drains the queue picks the
change up (the serve process's own worker, or the detached worker the plugin starts). Only
`preview` talks to Stash and Plex, and it writes nothing.

Importing this module must stay cheap (no plexapi): `preview` imports the sync code lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stash2plex.numbers import whole_number
from stash2plex.store.db import Store

RETRY_SOURCE = "retry dead letters"
SYNC_NOW_SOURCE = "sync now"


class ActionError(ValueError):
    """An action was asked for with an unknown name or bad parameters, or names something that
    does not exist; the message says which. `status` is the HTTP status a host answers with
    (400 bad parameters, 404 an unknown action or scene)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def retry_dead_letters(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """Queue dead-lettered scenes again and remove their letters.

    `ids` (letter ids) picks letters; else `error_class` picks a class; else all. Returns
    ``{"requeued": <scenes queued>, "removed": <letters removed>}``.
    """
    ids = _ids(params)
    error_class = str(params.get("error_class") or "") or None
    letters = store.dead_letters(error_class)
    if ids is not None:
        letters = [letter for letter in letters if letter["id"] in ids]
    before = len(store.dead_letters())
    # One transaction: the scenes are queued and their letters removed (the store's redrive).
    scene_ids = store.redrive([letter["id"] for letter in letters], RETRY_SOURCE) if letters else []
    store.nudge()  # settings may have been fixed in Stash since: the worker reads them afresh
    return {"requeued": len(scene_ids), "removed": before - len(store.dead_letters())}


def purge_dead_letters(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """Remove dead letters without retrying them: `ids`, or those older than `days`.

    One of the two is required, so a stray request cannot empty the queue. Returns
    ``{"purged": n}``.
    """
    ids = _ids(params)
    if ids is not None:
        return {"purged": store.delete_dead_letters(ids=sorted(ids)) if ids else 0}
    days = params.get("days")
    if days in (None, ""):
        raise ActionError("purge needs ids (letters to remove) or days (remove older ones)")
    try:
        age = float(days)
    except (TypeError, ValueError):
        raise ActionError(f"days={days!r} must be a number") from None
    if age < 0:
        raise ActionError("days must be 0 or more")
    return {"purged": store.delete_dead_letters(older_than=store.clock() - age * 86400)}


def sync_scene(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """Mark one scene dirty now (a scene waiting for Plex to scan it, for an ambiguity or for a
    retry is tried at once). Returns ``{"queued": scene_id, "new": bool}``."""
    scene_id = _scene_id(params)
    new = store.enqueue([scene_id], source=SYNC_NOW_SOURCE, retry_now=True)
    store.nudge()  # a setting changed in Stash is read before this scene is synced
    return {"queued": scene_id, "new": bool(new)}


def preview_scene(context: Any, params: dict[str, Any]) -> dict[str, Any]:
    """What a sync of one scene would change in Plex, field by field (reads Stash and Plex,
    writes nothing). `context` is an engine Context. Returns a ScenePreview as a dict."""
    from stash2plex.operations.queue import preview

    scene_id = _scene_id(params)
    (item,) = preview(context, scene_id=scene_id)
    if item.status == "not in Stash":
        raise ActionError(f"Stash has no scene {scene_id}: nothing to preview", status=404)
    return item.as_dict()


@dataclass(frozen=True)
class Action:
    run: Callable[..., dict[str, Any]]
    #: Needs a Context (settings from Stash, a Plex client) rather than the store alone.
    needs_context: bool = False
    #: Changes the queue: the host makes sure a worker will pick it up.
    wakes_worker: bool = False


#: Every action by the name the Stash page and the dashboard send.
ACTIONS: dict[str, Action] = {
    "retry_dead_letters": Action(retry_dead_letters, wakes_worker=True),
    "purge_dead_letters": Action(purge_dead_letters),
    "sync_scene": Action(sync_scene, wakes_worker=True),
    "preview_scene": Action(preview_scene, needs_context=True),
}


def lookup(name: str) -> Action:
    """The action `name`; ActionError naming the known ones otherwise."""
    action = ACTIONS.get(name)
    if action is None:
        raise ActionError(
            f"unknown action {name!r}; expected one of: {', '.join(sorted(ACTIONS))}", status=404
        )
    return action


def _ids(params: dict[str, Any]) -> set[int] | None:
    value = params.get("ids")
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        return {whole_number(item) for item in items if str(item).strip()}
    except ValueError:
        raise ActionError(f"ids={str(value)[:60]!r} must be whole numbers") from None


def _scene_id(params: dict[str, Any]) -> int:
    value = params.get("scene_id")
    try:
        return whole_number(value, minimum=1)
    except ValueError:
        raise ActionError(
            f"scene_id={str(value)[:40]!r} must be a scene id (a whole number)"
        ) from None
