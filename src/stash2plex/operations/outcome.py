"""What a drain achieved, as one verdict: the Stash task's `error` and the command line's exit code.

A task or command that could not do its job says so. Stash shows a task whose result carries
an `error` as a failed job, so the error is set whenever nothing useful happened or a person
must act: the queue is held (a setting, a credential, Plex or Stash down, switched off), scenes
went to the dead-letter queue, or every scene touched ended waiting. A mass failure is one
sentence (how many scenes, why, what happens next), never one line per scene.

Exit codes (the README's): 0 done, 1 done but something needs attention, 2 a configuration
error (a setting or credential must be fixed).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from stash2plex.engine.worker import DrainReport
from stash2plex.operations.present import when
from stash2plex.records import Holds, Retry
from stash2plex.store.db import Store
from stash2plex.words import agree, plural

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_CONFIG = 2

# Pauses only a fixed setting or credential lifts: configuration errors (exit 2).
CONFIG_PAUSES = ("plex_auth", "stash_auth", "config", "not_configured")
# How each hold ends, said after the count of waiting scenes.
_RESUMES = {
    "plex_auth": ("syncs by itself once it is fixed", "sync by themselves once it is fixed"),
    "stash_auth": ("syncs by itself once it is fixed", "sync by themselves once it is fixed"),
    "config": ("syncs by itself once it is fixed", "sync by themselves once it is fixed"),
    "not_configured": ("syncs by itself once they are set", "sync by themselves once they are set"),
    "stash_down": (
        "syncs by itself when Stash answers again",
        "sync by themselves when Stash answers again",
    ),
    "disabled": (
        "syncs once Stash2Plex is switched on again",
        "sync once Stash2Plex is switched on again",
    ),
}
# Waiting reasons that need no person when some scenes did sync (Plex scans later, ...).
MATCH_WAITS = {"not_in_plex": "not in Plex yet", "ambiguous": "ambiguous", "conflict": "conflict"}


@dataclass(frozen=True)
class Verdict:
    """`error`: one sentence for the task's error (None: all went well). `notes`: a few more
    lines worth logging (one per distinct dead-letter reason). `exit_code`: 0, 1 or 2."""

    error: str | None
    exit_code: int = EXIT_OK
    notes: tuple[str, ...] = ()


def scenes(count: int) -> str:
    """'1 scene', '12 scenes'."""
    return plural(count, "scene")


def held_sentence(holds: Holds, waiting: int) -> str | None:
    """What holds the queue, what to fix, how many scenes wait and how they resume."""
    from stash2plex.operations.queue import hold_message

    message = hold_message(holds)
    if message is None:
        return None
    count = f"{scenes(waiting)} {agree(waiting, 'waits', 'wait')}"
    if holds.pause is not None:
        resume = agree(waiting, *_RESUMES.get(holds.pause.kind, _RESUMES["config"]))
        return f"{message}. {count} and {resume}." if waiting else f"{message}."
    reason = holds.breaker.reason or "Plex is down"
    down = reason if reason.startswith("Plex") else f"Plex is down: {reason}"
    back = agree(waiting, "syncs by itself", "sync by themselves")
    return f"{down}. {count} and {back} when Plex is back." if waiting else f"{down}."


_ITEM_NUMBER = re.compile(r"\b(of|for) ((?:Plex )?item|collection) \d+\b")


def reason_of(message: str | None) -> str:
    """A failure's reason without the number of the Plex item, so that 192 scenes refused for
    one reason count as one reason."""
    return _ITEM_NUMBER.sub(r"\1 the \2", message or "no reason recorded")


def dead_letter_summary(letters: list[dict[str, Any]]) -> tuple[str, tuple[str, ...]]:
    """One sentence for new dead letters, and one note per distinct reason (with its scenes)."""
    reasons = Counter(reason_of(letter["message"]) for letter in letters)
    by_reason: dict[str, list[int]] = {}
    for letter in letters:
        by_reason.setdefault(reason_of(letter["message"]), []).append(int(letter["scene_id"]))
    (top, top_count), *others = reasons.most_common()
    head = f"{scenes(len(letters))} failed and went to the dead-letter queue"
    if not others:
        sentence = f"{head}: {top}."
    else:
        sentence = (
            f"{head} for {len(reasons)} different reasons; the most common "
            f"({scenes(top_count)}): {top}."
        )
    sentence += " See them with Show Waiting Scenes (or `stash2plex dlq list`); run Retry Dead "
    sentence += "Letters (or `stash2plex dlq retry`) once the cause is fixed."
    notes = tuple(
        f"scene {ids[0]}: {reason}"
        if len(ids) == 1
        else f"{scenes(len(ids))} ({_ids(ids)}): {reason}"
        for reason, ids in by_reason.items()
    )
    return sentence, notes


def _ids(ids: list[int], shown: int = 5) -> str:
    text = ", ".join(str(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def drain_verdict(store: Store, started_at: float, report: DrainReport | None) -> Verdict:
    """The verdict on a drain that began at `started_at` (epoch seconds).

    `report` counts what finished since the call (None: nothing known of the drain).
    """
    holds = store.holds()
    counts = store.job_counts()
    outstanding = sum(n for state, n in counts.items() if state != "done")
    letters = [
        letter for letter in store.dead_letters() if float(letter["failed_at"]) >= started_at
    ]
    sentences: list[str] = []
    notes: tuple[str, ...] = ()
    exit_code = EXIT_OK
    held = held_sentence(holds, outstanding)
    if held is not None:
        sentences.append(held)
        pause = holds.pause
        exit_code = EXIT_CONFIG if pause is not None and pause.kind in CONFIG_PAUSES else 1
    if letters:
        sentence, notes = dead_letter_summary(letters)
        sentences.append(sentence)
        exit_code = exit_code or EXIT_ATTENTION
    for problem in report.errors if report is not None else []:
        if problem.startswith("the background worker did not start"):
            sentences.append(f"{problem[0].upper()}{problem[1:]}.")
            exit_code = exit_code or EXIT_ATTENTION
    if not sentences and report is not None and report.processed and report.deferred:
        if report.synced + report.unchanged + report.skipped:
            # Others reached Plex: the sync did its job (no error, exit 0), and a note says
            # why the scenes left waiting wait, as a table's count alone would not.
            left = _left_waiting(store, started_at, none_reached=False)
            if left is not None:
                notes = (*notes, left)
        else:
            sentences.append(
                _left_waiting(store, started_at, none_reached=True)
                or "No scene reached Plex; Show Waiting Scenes (or `stash2plex queue list`) "
                "lists each scene with its reason."
            )
            exit_code = EXIT_ATTENTION
    return Verdict(" ".join(sentences) or None, exit_code, notes)


def waits_sentence(head: str, waits: dict[str, int], retry: Retry | None, now: float) -> str:
    """Why scenes did not reach Plex: `head` ("No scene reached Plex: 2 scenes wait"), then
    `waits` by reason; Diagnose is suggested only for scenes waiting for a match (it checks
    the settings that decide one), and for a retry (`retry`: the first one, as
    `Store.next_retry` gives it) its failure and next try are named."""
    described = ", ".join(
        f"{n} {MATCH_WAITS.get(reason, 'to be retried')}" for reason, n in waits.items() if n
    )
    sentences = [f"{head} ({described})."]
    if set(waits) & set(MATCH_WAITS):
        sentences.append(
            "Run Diagnose (or `stash2plex diagnose`): it checks plex_library and path_map on a "
            "sample of scenes; Show Waiting Scenes lists each scene with its reason."
        )
    if retry is not None:
        retries = waits.get("retry", 0)
        whose = (
            "It failed with"
            if retries <= 1
            else f"Scene {retry.scene_id}, the first to be retried, failed with"
        )
        next_try = "now" if retry.due_at < now + 1 else f"at {when(retry.due_at, now)}"
        if retry.unsettled:  # Store.enqueue: such a retry waits, however soon it is asked for
            after = (
                "by itself: the write timed out and may still land until then, so syncing "
                "again cannot bring it forward."
            )
        else:
            after = "by itself; syncing " + agree(
                retries, "the scene again tries it at once.", "the scenes again tries them at once."
            )
        sentences.append(f"{whose}: {retry.error.rstrip('.')}. The next try is {next_try}, {after}")
        if retry.max_attempts is not None and retry.attempts:
            sentences.append(_tries_sentence(retry.attempts, retry.max_attempts))
    return " ".join(sentences)


def _tries_sentence(attempts: int, max_attempts: int) -> str:
    """How many tries a scene has used: each sync asked for while Plex fails spends one, and a
    person syncing again and again should know the dead letters are near."""
    left = max(0, max_attempts - attempts)
    return (
        f"That was try {attempts} of {max_attempts} (the setting max_retries); "
        + agree(left, "one more failure", f"{left} more failures")
        + " and the scene goes to the dead letters, where Retry Dead Letters (or `stash2plex "
        "dlq retry`) gives it back once the cause is fixed."
    )


def _left_waiting(store: Store, started_at: float, *, none_reached: bool) -> str | None:
    """Why scenes a drain that began at `started_at` queued or tried wait (for a match or a
    retry; those left waiting from before, untouched, are not this drain's), or None when
    none does. `none_reached`: no scene of the drain reached Plex ("No scene reached Plex: 2
    scenes wait"), else "2 scenes did not reach Plex and wait"."""
    waits = {
        reason: n
        for reason, n in store.waiting_counts(started_at).items()
        if reason in (*MATCH_WAITS, "retry")
    }
    total = sum(waits.values())
    if not total:
        return None
    wait = agree(total, "waits", "wait")
    head = (
        f"No scene reached Plex: {scenes(total)} {wait}"
        if none_reached
        else f"{scenes(total)} did not reach Plex and {wait}"
    )
    return waits_sentence(head, waits, store.next_retry(started_at), store.clock())


def health_verdict(report: dict[str, Any]) -> Verdict:
    """The verdict on a health check (`operations.queue.health_report`): an error naming what
    is wrong when Plex does not serve; exit 2 when a setting or the token is the cause."""
    queue = report.get("queue") or {}
    waiting = sum((queue.get("waiting") or {}).values()) + int(queue.get("pending") or 0)
    if report["healthy"]:
        line = (
            f"Plex is healthy ({report['detail']}, answered in {report['latency_ms']:.0f} ms); "
            f"circuit breaker {report['breaker']}; {scenes(waiting)} queued"
        )
        held = report.get("paused")
        if held:
            return Verdict(
                f"Plex is healthy, but the queue is still held by an earlier check: {held}. "
                "If that is fixed, Process Queue (or `stash2plex queue process`) drains the "
                "queue now.",
                EXIT_ATTENTION,
                (line,),
            )
        return Verdict(None, EXIT_OK, (line,))
    problem = report.get("problem")
    code = EXIT_CONFIG if problem in ("auth", "config") else EXIT_ATTENTION
    # Plex answered but refused the token or lacks the library: the settings are at fault,
    # not Plex's health.
    head = "Stash2Plex cannot use Plex" if code == EXIT_CONFIG else "Plex is NOT healthy"
    line = f"{head}: {report['detail']}"
    failing = (report.get("status") or 0) >= 500 and report.get("status") != 503
    if code == EXIT_CONFIG:  # the detail names the setting to fix
        tail = f" {scenes(waiting)} {agree(waiting, 'waits', 'wait')} for it." if waiting else ""
    elif failing:  # Plex runs, but fails: starting it is not the advice
        tail = (
            " Plex is running but failing: its log says why (Plex Web > Settings > "
            "Troubleshooting > Download logs); restarting Plex often helps."
            + (
                f" {scenes(waiting)} {agree(waiting, 'waits', 'wait')} and "
                f"{agree(waiting, 'syncs by itself', 'sync by themselves')} once it answers."
                if waiting
                else ""
            )
        )
    elif report.get("slow"):  # running, but busy: starting it is not the advice either
        tail = (
            " Plex is running but slow to answer (a scan, a backup or a slow disk can do "
            "this)"
            + (
                f": {scenes(waiting)} "
                f"{agree(waiting, 'waits and syncs by itself', 'wait and sync by themselves')} "
                "once it answers in time."
                if waiting
                else "."
            )
        )
    elif waiting:  # down: nothing to do but bring Plex back; nothing is lost meanwhile
        tail = (
            f" Start Plex (or wait while it restarts): {scenes(waiting)} "
            f"{agree(waiting, 'waits and syncs by itself', 'wait and sync by themselves')} "
            "when it is back."
        )
    else:
        tail = " Start Plex (or wait while it restarts)."
    return Verdict(f"{line}.{tail}", code, (line,))


#: Preview statuses that mean a person must act, and how (exit 2: a setting or the scene id).
_PREVIEW_USAGE = ("not in Stash", "settings")
_PREVIEW_ATTENTION = ("not in Plex", "ambiguous", "conflict", "error")
_PREVIEW_NOT_PUSHED = ("no file", "left alone")


def preview_verdict(previews: list[Any]) -> Verdict:
    """The verdict on a preview or dry run (`operations.queue.preview`'s ScenePreviews), by
    the README's exit codes: 2 for a scene Stash does not have or a setting to fix, 1 when a
    scene cannot be synced as it is (not in Plex, ambiguous, a conflict, Plex unreachable),
    else 0; `notes` carry a hint on what to do next."""
    statuses = Counter(p.status for p in previews)
    problems = [p for p in previews if p.status in _PREVIEW_USAGE + _PREVIEW_ATTENTION]
    notes: list[str] = []
    # Scenes a sync does not push (no video file, no metadata of their own) were not compared
    # with Plex: "Plex already shows what Stash has" is not to be said of them.
    compared = [p for p in previews if p.status not in _PREVIEW_NOT_PUSHED]
    if previews and not problems and not compared:
        first = previews[0]
        notes.append(
            f"Nothing would change: scene {first.scene_id} is not pushed to Plex ({first.note})."
            if len(previews) == 1
            else "Nothing would change: none of these scenes is pushed to Plex (no video file, "
            "or no metadata of their own yet)."
        )
    elif compared and not problems and not statuses.get("would change"):
        if statuses.get("edited in Plex"):
            notes.append(
                "Nothing would change: the fields marked (kept) were edited in Plex and a sync "
                "leaves them; `stash2plex sync --force SCENE_ID` (or Force Sync All) rewrites "
                "them from Stash."
            )
        else:
            notes.append(
                "Nothing would change: Plex already shows what Stash has (every field kept). "
                "Edit the scene in Stash, or rewrite Plex anyway with "
                "`stash2plex sync --force SCENE_ID`."
            )
    if not problems:
        return Verdict(None, EXIT_OK, tuple(notes))
    first = problems[0]
    summary = ", ".join(
        f"{plural(n, 'scene')} {status}"
        for status, n in statuses.items()
        if status in _PREVIEW_USAGE + _PREVIEW_ATTENTION
    )
    sentence = f"{summary}; scene {first.scene_id}: {first.note or first.status}"
    code = EXIT_CONFIG if any(p.status in _PREVIEW_USAGE for p in problems) else EXIT_ATTENTION
    return Verdict(sentence, code, tuple(notes))
