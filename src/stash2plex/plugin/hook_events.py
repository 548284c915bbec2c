"""What a Stash hook means for us: parse `args.hookContext` into one typed event.

Standard library only (hook path). The hook's `input` is never used for metadata: it can be
null (scans), an array (`scenesUpdate`) or a bulk input; the worker reads the current scene
from Stash instead. Only the trigger and the object id matter.

Stash sends ids as JSON numbers (Go `int`); a well-formed id is a whole number from 1 to
2^63 - 1. Anything else (3.7, true, "abc", 1e30) is refused, never rounded into another scene.
"""

from __future__ import annotations

import re

from stash2plex.errors import HookError
from stash2plex.numbers import NotANumber, whole_number

# Not `typing.TYPE_CHECKING`: importing typing costs the hook process ~5 ms (see plugin/entry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from stash2plex.vocabulary import HookAction

_TRIGGER = re.compile(r"[A-Z][A-Za-z]{1,40}\.[A-Z][A-Za-z]{1,40}\.(Pre|Post)")

_ENTITY_KINDS = {
    "Performer": "performer",
    "Studio": "studio",
    "Tag": "tag",
    "Group": "group",
    "Movie": "group",
}


class HookEvent:
    """One hook: what it asks of the store, its trigger (`Scene.Update.Post`) and object.

    A plain class rather than a dataclass or a typing.NamedTuple: either import costs the hook
    process more than the whole of this module.
    """

    __slots__ = ("action", "entity_kind", "object_id", "trigger")

    def __init__(
        self, action: HookAction, trigger: str, object_id: int, entity_kind: str | None = None
    ) -> None:
        self.action = action
        self.trigger = trigger
        self.object_id = object_id
        self.entity_kind = entity_kind

    def __repr__(self) -> str:
        return (
            f"HookEvent({self.action!r}, {self.trigger!r}, {self.object_id}, {self.entity_kind!r})"
        )


def parse_id(raw: Any, trigger: str) -> int:
    """The object id of a hook, or HookError naming what was wrong."""
    try:
        return whole_number(raw)
    except NotANumber:
        raise HookError(f"{trigger}: hookContext.id {str(raw)[:40]!r} is not an id") from None
    except ValueError as exc:
        raise HookError(f"{trigger}: hookContext.id {str(raw)[:40]!r} {exc}") from None


def parse_hook(hook_context: Any) -> HookEvent:
    """The event a hook context describes; raises HookError when it is malformed."""
    if not isinstance(hook_context, dict):
        raise HookError("hookContext must be an object with `type` and `id`")
    trigger = hook_context.get("type")
    if trigger is None:
        raise HookError("hookContext.type is missing: Stash names the hook there")
    if not isinstance(trigger, str) or not _TRIGGER.fullmatch(trigger):
        shown = trigger if isinstance(trigger, str) else type(trigger).__name__
        raise HookError(f"hookContext.type {str(shown)[:60]!r} is not a Stash hook trigger")
    object_id = parse_id(hook_context.get("id", 0), trigger)
    kind, operation, _ = trigger.split(".")
    if kind == "Scene":
        if object_id <= 0:
            raise HookError(f"{trigger} arrived without a scene id")
        if operation in ("Create", "Update"):
            return HookEvent("scene_dirty", trigger, object_id)
        if operation == "Destroy":
            return HookEvent("scene_deleted", trigger, object_id)
    if kind in _ENTITY_KINDS and operation in ("Update", "Merge") and object_id > 0:
        return HookEvent("entity_changed", trigger, object_id, _ENTITY_KINDS[kind])
    if kind in _ENTITY_KINDS and operation == "Destroy" and object_id > 0:
        # Stash no longer knows which scenes showed it: the worker asks our own records.
        return HookEvent("entity_deleted", trigger, object_id, _ENTITY_KINDS[kind])
    return HookEvent("ignored", trigger, object_id)
