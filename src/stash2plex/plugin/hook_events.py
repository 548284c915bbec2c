"""What a Stash hook means for us: parse `args.hookContext` into one typed event.

Standard library only (hook path). The hook's `input` is never used for metadata: it can be
null (scans), an array (`scenesUpdate`) or a bulk input; the worker reads the current scene
from Stash instead. Only the trigger and the object id matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCENE_DIRTY = "scene_dirty"
SCENE_DELETED = "scene_deleted"
ENTITY_CHANGED = "entity_changed"
IGNORED = "ignored"

_ENTITY_KINDS = {
    "Performer": "performer",
    "Studio": "studio",
    "Tag": "tag",
    "Group": "group",
    "Movie": "group",
}


class HookError(ValueError):
    """The hook context is malformed; the message says what was wrong."""


@dataclass(frozen=True)
class HookEvent:
    action: str  # SCENE_DIRTY | SCENE_DELETED | ENTITY_CHANGED | IGNORED
    trigger: str
    object_id: int
    entity_kind: str | None = None


def parse_hook(hook_context: Any) -> HookEvent:
    if not isinstance(hook_context, dict):
        raise HookError("hookContext must be an object with `type` and `id`")
    trigger = hook_context.get("type")
    if not isinstance(trigger, str) or trigger.count(".") != 2:
        raise HookError(f"hookContext.type {trigger!r} is not a Stash hook trigger")
    raw_id = hook_context.get("id", 0)
    try:
        object_id = int(raw_id)
    except (TypeError, ValueError):
        raise HookError(f"hookContext.id {raw_id!r} is not an integer id") from None
    kind, operation, _ = trigger.split(".")
    if kind == "Scene":
        if object_id <= 0:
            raise HookError(f"{trigger} arrived without a scene id")
        if operation in ("Create", "Update"):
            return HookEvent(SCENE_DIRTY, trigger, object_id)
        if operation == "Destroy":
            return HookEvent(SCENE_DELETED, trigger, object_id)
    if kind in _ENTITY_KINDS and operation in ("Update", "Merge") and object_id > 0:
        return HookEvent(ENTITY_CHANGED, trigger, object_id, _ENTITY_KINDS[kind])
    return HookEvent(IGNORED, trigger, object_id)
