"""A queue a person can see into: every job with its state, reason, candidates, last error,
attempts and next attempt (`stash2plex queue list`, the "Show Waiting Scenes" task), and one
scene's whole story (`stash2plex scene SCENE_ID`): its job, dead letter, link, what was pushed
per field and its recent events. Reads only.
"""

from __future__ import annotations

from typing import Any

from stash2plex import errors
from stash2plex.engine.context import Context
from stash2plex.operations.present import field_order, next_attempt, state_words, when
from stash2plex.store.db import Store
from stash2plex.sync.metadata import desired_item, fingerprint
from stash2plex.words import plural

#: `--state` choices: the job states, `in_progress` for leased jobs, and dead letters.
STATES = ("pending", "in_progress", "waiting", "done", "dead_letter")
OUTSTANDING = ("pending", "in_progress", "waiting")
NOT_IN_STASH = "Stash has no such scene"
#: The scene view's states (operations/views.py `scene`), in words.
SCENE_STATE_WORDS = {
    "in_sync": "in sync with Plex",
    "queued": "queued",
    "syncing": "being synced now",
    "waiting": "waiting",
    "failed": "failed (a dead letter)",
    "not_linked": "not linked to a Plex item",
}


def list_jobs(
    store: Store,
    *,
    states: tuple[str, ...] = OUTSTANDING,
    reasons: tuple[str, ...] = (),
    now: float,
) -> list[dict[str, Any]]:
    """Jobs (and dead letters, with state `dead_letter`) as rows a person reads, by scene id.

    Each row: scene_id, state, reason, status (in words), attempts, next_attempt (words),
    due_at (epoch or None), last_error, candidates (ambiguous: Plex items with their paths;
    conflict: the scenes that share the item), source, queued_at.
    """
    rows: list[dict[str, Any]] = []
    for state in states:
        if state == "dead_letter":
            for letter in store.dead_letters():
                if reasons and letter["error_class"] not in reasons:
                    continue
                rows.append(
                    {
                        "scene_id": letter["scene_id"],
                        "state": "dead_letter",
                        "reason": letter["error_class"],
                        "status": f"dead letter ({letter['error_class']})",
                        "attempts": letter["attempts"],
                        "next_attempt": "only after Retry Dead Letters or a new save",
                        "due_at": None,
                        "last_error": letter["message"],
                        "candidates": [],
                        "source": None,
                        "queued_at": None,
                        "failed_at": letter["failed_at"],
                    }
                )
            continue
        for job in store.jobs("leased" if state == "in_progress" else state):
            if reasons and job.reason not in reasons:
                continue
            rows.append(
                {
                    "scene_id": job.scene_id,
                    "state": "in_progress" if job.state == "leased" else job.state,
                    "reason": job.reason,
                    "status": state_words(job.state, job.reason),
                    "attempts": job.attempts,
                    "next_attempt": next_attempt(job, now),
                    "due_at": None if job.state in ("done", "leased") else _due(job.due_at),
                    "last_error": job.last_error,
                    "candidates": candidates(job.detail),
                    "source": job.source,
                    "queued_at": job.enqueued_at,
                }
            )
    rows.sort(key=lambda row: (row["scene_id"], row["state"]))
    return rows


def _due(due_at: float) -> float | None:
    from stash2plex.store.holds import PARKED

    return None if due_at >= PARKED else due_at


def candidates(detail: dict[str, Any] | None) -> list[str]:
    """What an ambiguous or conflicting job waits on, as short texts."""
    if not detail:
        return []
    found = [
        (
            f"Plex item {c.get('rating_key')}"
            + (f" in '{c['library']}'" if c.get("library") else "")
            + f": {c.get('path', '')}"
        ).rstrip(": ")
        for c in detail.get("candidates") or []
        if isinstance(c, dict)
    ]
    if detail.get("scene_ids"):
        found.append("scenes " + ", ".join(str(i) for i in detail["scene_ids"]))
    return found


def scene_report(
    store: Store, scene_id: int, context: Context | None = None, *, now: float
) -> dict[str, Any]:
    """Everything known about one scene: its job, dead letters, link, what was pushed per
    field (compared with Stash now when `context` can read it) and its recent events."""
    job = store.job(scene_id)
    report: dict[str, Any] = {"scene_id": scene_id, "job": None, "dead_letters": []}
    if job is not None:
        report["job"] = {
            "state": "in_progress" if job.state == "leased" else job.state,
            "reason": job.reason,
            "status": state_words(job.state, job.reason),
            "attempts": job.attempts,
            "next_attempt": next_attempt(job, now),
            "last_error": job.last_error,
            "candidates": candidates(job.detail),
            "source": job.source,
            "queued_at": job.enqueued_at,
        }
    report["dead_letters"] = [
        {k: letter[k] for k in ("error_class", "message", "attempts", "failed_at")}
        for letter in store.dead_letters()
        if letter["scene_id"] == scene_id
    ]
    link = store.link(scene_id)
    report["link"] = None
    report["fields"] = []
    if link is not None:
        report["link"] = {
            "rating_key": link.rating_key,
            "section_id": link.section_id,
            "plex_path": link.plex_path,
            "synced_at": link.synced_at,
        }
        report["fields"] = _pushed_fields(link, scene_id, context, report)
    elif context is not None and not report["job"] and not report["dead_letters"]:
        # Nothing recorded here: say whether Stash knows the scene at all.
        try:
            if context.stash.find_scene(scene_id) is None:
                report["note"] = NOT_IN_STASH
        except errors.SyncError as exc:
            report["note"] = f"Stash could not be read: {exc.message}"
    from stash2plex.operations.views import scene as badge

    shown = badge(store, store.path.parent, {"scene_id": scene_id})
    report["state"] = shown["state"]
    report["state_words"] = SCENE_STATE_WORDS.get(shown["state"], shown["state"])
    if shown["state"] == "waiting" and report["job"] is not None:
        report["state_words"] = f"waiting: {report['job']['status']}"
    report["plex_url"] = shown["plex_url"]
    report["events"] = [
        {"at": event["at"], "level": event["level"], "message": event["message"]}
        for event in store.scene_events(scene_id)
    ]
    return report


def _pushed_fields(
    link: Any, scene_id: int, context: Context | None, report: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per field: the value pushed (lists as kept; a text field only when Stash still says
    the same, since only its fingerprint is kept, else None), and whether Stash still says
    the same (when Stash can be read)."""
    desired_prints: dict[str, str] | None = None
    desired_fields: dict[str, str] = {}
    if context is not None:
        try:
            scene = context.stash.find_scene(scene_id)
        except errors.SyncError as exc:
            report["note"] = f"Stash could not be read, so it is not compared: {exc.message}"
            scene = None
        if scene is None and "note" not in report:
            report["note"] = NOT_IN_STASH
        elif scene is not None:
            desired = desired_item(scene, context.config)
            desired_prints = desired.fingerprints()
            desired_fields = desired.fields
            for kind, url in desired.images.items():
                desired_prints[f"{kind}_url"] = fingerprint(url)
    fields = []
    for key in sorted(link.fingerprints, key=field_order):
        if key.endswith(("_url", "_read_at")):  # where and when an image was read, no field
            continue
        row: dict[str, Any] = {"field": key, "pushed": link.owned.get(key)}
        if desired_prints is not None:
            if key in ("poster", "art"):
                same = desired_prints.get(f"{key}_url") == link.fingerprints.get(f"{key}_url")
            else:
                same = desired_prints.get(key) == link.fingerprints.get(key)
            row["stash_now"] = "same as pushed" if same else "changed since (not synced yet)"
            if same and row["pushed"] is None and key in desired_fields:
                row["pushed"] = desired_fields[key] or "(cleared)"
        fields.append(row)
    return fields


def jobs_summary(rows: list[dict[str, Any]]) -> str:
    """'3 not in Plex yet, 1 waiting to be retried' for a list of rows."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing"


def row_line(row: dict[str, Any], now: float) -> str:
    """One job as one line of text (the Stash task's log)."""
    parts = [f"scene {row['scene_id']}: {row['status']}"]
    if row["attempts"]:
        parts.append(plural(row["attempts"], "attempt"))
    if row.get("failed_at"):
        parts.append(f"failed {when(row['failed_at'], now)}")
    elif row["next_attempt"] != "—":
        parts.append(f"next: {row['next_attempt']}")
    line = ", ".join(parts)
    if row["last_error"]:
        line += f" — {row['last_error']}"
    if row["candidates"]:
        line += " — candidates: " + "; ".join(row["candidates"])
    return line
