"""What one scene's state in Plex is, compared with Stash and with what we pushed. Pure.

The classes a reconcile reports, and what repairing each means:

- never_synced: its file is in Plex, no push was ever recorded. Repair: queue the scene.
- stale: Stash changed since our last push (a field, the cover, the items holding its
  files). Repair: queue.
- drifted: Plex changed since our last push (an edit, an agent refresh, a lock removed).
  Repair: write the drifted fields again.
- kept: drifted, but `preserve_plex_edits` is on: the Plex edit stays, on purpose. Not a
  difference to repair (a reconcile does not report it as one, run after run).
- link_broken: the item we pushed to is gone (deleted, or re-added under a new ratingKey).
  Repair: forget that link, queue.
- orphan_link: the scene is gone from Stash (deleted, merged away). Repair: forget its links.
- not_in_plex: Plex has no item with its file. Repair: queue (it waits for Plex's scan).
- ambiguous: several items could be it. Only a person can decide (`path_map`,
  `plex_library`).
- conflict: one item holds files of several scenes. Only a person can decide (merge the
  scenes, or split the item).

A scene may be stale and drifted at once; a conflict replaces every other finding of its
scenes (nothing is written to such an item).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stash2plex.records import Job, Link
from stash2plex.settings.config import Config
from stash2plex.sync.drift import Drift
from stash2plex.sync.matching import MatchResult
from stash2plex.sync.metadata import (
    TEXT_FIELDS,
    changed_fields,
    desired_item,
    fingerprint,
    has_own_metadata,
)
from stash2plex.sync.tag_tree import TagTree
from stash2plex.words import agree

NEVER_SYNCED = "never_synced"
STALE = "stale"
DRIFTED = "drifted"
KEPT = "kept"
LINK_BROKEN = "link_broken"
ORPHAN_LINK = "orphan_link"
NOT_IN_PLEX = "not_in_plex"
AMBIGUOUS = "ambiguous"
CONFLICT = "conflict"
# Classes that are no difference to repair: shown, never counted against the library.
SETTLED_KINDS = (KEPT,)
# Classes a person (or Plex's scan) must act on: a repair cannot end them.
ATTENTION_KINDS = (NOT_IN_PLEX, AMBIGUOUS, CONFLICT)
KINDS = (
    NEVER_SYNCED,
    STALE,
    DRIFTED,
    KEPT,
    LINK_BROKEN,
    ORPHAN_LINK,
    NOT_IN_PLEX,
    AMBIGUOUS,
    CONFLICT,
)

# What a repair does for a finding.
QUEUE = "queue"  # sync the scene through the normal queue
REWRITE = "rewrite"  # forget the drifted fields' push records, then queue
RELINK = "relink"  # forget the links to items that are gone, then queue
DROP = "drop"  # forget the links of a scene Stash no longer has
KEEP = "keep"  # drift left alone: preserve_plex_edits is on
WAITING = "waiting"  # already waiting for Plex's scan: nothing more to do
NEEDS_YOU = "needs_you"  # a person must decide
NOTHING = "nothing"  # skip_not_found: Plex holds only part of Stash
ACTION_TEXT = {
    QUEUE: "queue the scene",
    REWRITE: "write the drifted fields again",
    RELINK: "forget the gone item and queue the scene",
    DROP: "forget the links of the deleted scene (its Plex item is left as it is)",
    KEEP: "leave it: preserve_plex_edits is on",
    WAITING: "nothing: it already waits for Plex to scan the file",
    NEEDS_YOU: "nothing: it needs you",
    NOTHING: "nothing: skip_not_found is on",
}
REPAIRS = (QUEUE, REWRITE, RELINK, DROP)


@dataclass(frozen=True)
class Finding:
    """One difference of one scene. `fields`: what differs (field keys, `items`, `cover`);
    `detail`: one sentence for people; `action`: what a repair does (see ACTION_TEXT)."""

    scene_id: int
    kind: str
    rating_key: int | None = None
    fields: tuple[str, ...] = ()
    detail: str = ""
    action: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "kind": self.kind,
            "rating_key": self.rating_key,
            "fields": list(self.fields),
            "detail": self.detail,
            "action": self.action,
        }


def classify(
    scene: dict[str, Any],
    result: MatchResult,
    links: list[Link],
    *,
    gone: set[int],
    drift: Mapping[int, list[Drift]],
    job: Job | None,
    config: Config,
    tree: TagTree | None = None,
) -> list[Finding]:
    """The findings of one scene that has files (empty: Plex shows what Stash says).

    `result`: its files matched against a fresh index; `links`: its links (primary first);
    `gone`: ratingKeys Plex no longer has; `drift`: per linked ratingKey what Plex shows
    otherwise than we pushed; `job`: its job, if queued or waiting.
    """
    scene_id = int(scene["id"])
    linked = [link.rating_key for link in links]
    matched = [match.rating_key for match in result.matches]
    lost = [key for key in linked if key in gone]
    if lost:
        return [_broken(scene_id, lost, [k for k in matched if k not in linked], result)]
    if not result.matches:
        if result.ambiguous:
            paths = "; ".join(c.path for c in result.candidates[:5])
            return [
                Finding(
                    scene_id,
                    AMBIGUOUS,
                    None,
                    (),
                    f"{len({c.rating_key for c in result.candidates})} Plex items could be "
                    f"this scene: {paths}; set `path_map` so full paths match, or restrict "
                    "`plex_library`",
                    NEEDS_YOU,
                )
            ]
        return [_not_in_plex(scene_id, result, job, config)]
    if not links:
        return [
            Finding(
                scene_id,
                NEVER_SYNCED,
                matched[0],
                (),
                f"never pushed to its Plex item {', '.join(map(str, matched))}",
                QUEUE,
            )
        ]
    desired = desired_item(scene, config, tree)
    findings: list[Finding] = []
    stale: list[str] = []
    notes: list[str] = []
    if set(matched) != set(linked):
        stale.append("items")
        notes.append(
            f"its files are now in Plex items {', '.join(map(str, matched))} "
            f"(pushed to {', '.join(map(str, linked))})"
        )
    for link in links:
        if link.rating_key not in matched:
            continue
        pushed = link.fingerprints
        if not pushed and not config.sync_empty_scenes and not has_own_metadata(scene):
            continue  # left as the scan or agent filled it, as the sync does
        for key in changed_fields(desired, pushed):
            if key not in stale:
                stale.append(key)
        cover_url_changed = any(
            pushed.get(f"{kind}_url") != fingerprint(url) for kind, url in desired.images.items()
        )
        drifted = drift.get(link.rating_key) or []
        if drifted:
            findings.append(_drifted(scene_id, link.rating_key, drifted, desired, config))
        if cover_url_changed and not stale:
            # Stash's image address carries the scene's update time: any edit changes it,
            # the picture perhaps not. Only a download would tell (the sync compares the
            # image and uploads it only if it differs), so it is no field that differs.
            stale.append("cover_url")
    if stale:
        shown = ", ".join(key for key in stale if key not in ("items", "cover_url"))
        if shown:
            notes.insert(0, f"changed in Stash since the last push: {shown}")
        elif "cover_url" in stale:
            notes.insert(
                0,
                "changed in Stash since the last push, in no field Plex shows; its cover "
                "may differ (the sync compares the image and uploads it only if it changed)",
            )
        detail = "; ".join(notes)
        findings.insert(0, Finding(scene_id, STALE, linked[0], tuple(stale), detail, QUEUE))
    return findings


def orphan(scene_id: int, links: list[int]) -> Finding:
    """A linked scene the walk of Stash did not find: deleted or merged away."""
    return Finding(
        scene_id,
        ORPHAN_LINK,
        links[0] if links else None,
        (),
        f"scene {scene_id} is no longer in Stash (deleted, or merged into another scene); "
        f"linked to Plex item {', '.join(map(str, links))}",
        DROP,
    )


def conflict(scene_id: int, rating_key: int, scene_ids: list[int]) -> Finding:
    """A scene whose Plex item also holds files of other scenes."""
    ids = sorted(set(scene_ids))
    names = ", ".join(str(i) for i in ids[:-1]) + f" and {ids[-1]}"
    return Finding(
        scene_id,
        CONFLICT,
        rating_key,
        (),
        f"scenes {names} are one item in Plex (ratingKey {rating_key}): merge the scenes in "
        "Stash, or split the item apart in Plex",
        NEEDS_YOU,
    )


def _plex_items(keys: list[int]) -> str:
    """'Plex item 101', 'Plex items 101 and 102'."""
    if len(keys) == 1:
        return f"Plex item {keys[0]}"
    return "Plex items " + ", ".join(map(str, keys[:-1])) + f" and {keys[-1]}"


def _broken(scene_id: int, lost: list[int], new: list[int], result: MatchResult) -> Finding:
    where = (
        f"; {agree(len(new), 'its file is', 'its files are')} now {_plex_items(new)}"
        if new
        else ("; its file is not in Plex" if not result.matches else "")
    )
    return Finding(
        scene_id,
        LINK_BROKEN,
        lost[0],
        ("items",),
        f"{_plex_items(lost)} {agree(len(lost), 'is', 'are')} gone{where}",
        RELINK,
    )


def _not_in_plex(scene_id: int, result: MatchResult, job: Job | None, config: Config) -> Finding:
    tried = ", ".join(result.tried[:3])
    if config.skip_not_found:
        action = NOTHING
    elif job is not None and job.state == "waiting" and job.reason == "not_in_plex":
        action = WAITING
    else:
        action = QUEUE
    detail = f"Plex has no item with its file (looked for {tried})"
    return Finding(scene_id, NOT_IN_PLEX, None, (), detail, action)


def _drifted(
    scene_id: int, rating_key: int, drifted: list[Drift], desired: Any, config: Config
) -> Finding:
    parts = []
    for drift in drifted:
        difference = getattr(drift, "difference", "")
        if difference:  # a list: what differs, not two long lists cut alike
            parts.append(f"{drift.field}: {difference}")
            continue
        stash = _stash_value(drift.field, desired)
        text = f"{drift.field}: Plex shows {drift.plex!r}"
        if drift.note:
            text += f" ({drift.note})"
        elif stash is not None:
            text += f", Stash {stash!r}"
        parts.append(text)
    fields = tuple(d.field for d in drifted)
    if config.preserve_plex_edits:
        return Finding(scene_id, KEPT, rating_key, fields, "; ".join(parts), KEEP)
    return Finding(scene_id, DRIFTED, rating_key, fields, "; ".join(parts), REWRITE)


def _stash_value(key: str, desired: Any) -> str | None:
    if key in TEXT_FIELDS:
        value = desired.fields.get(key)
        return None if value is None else _short(value)
    if key == "genre" and desired.genres is not None:
        return _short(", ".join(desired.genres))
    if key == "actor" and desired.actors is not None:
        return _short(", ".join(a.name for a in desired.actors))
    if key == "collection" and desired.collections is not None:
        return _short(", ".join(desired.collections))
    if key == "label" and desired.labels is not None:
        return _short(", ".join(desired.labels))
    if key == "rating":
        return "" if desired.rating is None else f"{desired.rating:g}"
    return None


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
