"""The holds as the store keeps them: one JSON value, and the one listener that turns their
changes into records (outage rows, parked jobs released).

Standard library only. Only the store calls these, inside its transactions.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from dataclasses import asdict, replace

from stash2plex.records import BreakerState, Holds, Pause
from stash2plex.store.schema import HOLDS_KEY

# A parked job waits for a hold to lift, not for a time: its due time is far in the future.
PARKED = 1e18
OUTAGES_KEPT = 500
# Which parked waits each hold releases when it lifts.
BREAKER_REASONS = ("plex_down",)
PAUSE_REASONS = ("auth", "settings", "stash_down")


def holds_to_json(holds: Holds) -> str:
    """The JSON the store keeps for `holds`."""
    return json.dumps(asdict(holds), sort_keys=True)


@functools.lru_cache(maxsize=16)  # read at every job's end, changed rarely; Holds is frozen
def holds_from_json(text: str | None) -> Holds:
    """Read stored holds; anything unreadable means no holds (never block on bad data)."""
    if not text:
        return Holds()
    try:
        data = json.loads(text)
        breaker_data = dict(data.get("breaker") or {})
        breaker_data["failures"] = tuple(
            (float(at), int(scene)) for at, scene in breaker_data.get("failures") or ()
        )
        breaker = BreakerState(**breaker_data)
        if breaker.state not in ("closed", "open", "half_open"):
            breaker = BreakerState()
        pause = Pause(**data["pause"]) if data.get("pause") else None
        return Holds(
            breaker=breaker,
            pause=pause,
            ramp_started_at=data.get("ramp_started_at"),
            nudged_at=float(data.get("nudged_at") or 0.0),
        )
    except (TypeError, ValueError, KeyError, AttributeError):
        return Holds()


def read_holds(conn: sqlite3.Connection) -> Holds:
    """The holds as stored (inside or outside a transaction)."""
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (HOLDS_KEY,)).fetchone()
    return holds_from_json(row[0] if row else None)


def write_holds(conn: sqlite3.Connection, old: Holds, new: Holds, now: float) -> Holds:
    """Store `new` and record what changed from `old`. Call inside a write transaction.

    - breaker closed -> open: an outage row starts, counting the jobs it holds; the jobs of the
      failure streak that opened it get their attempt back and wait for Plex instead; reopened
      by the first job after a passing probe (on trial), the last outage goes on instead;
    - breaker -> closed: the open outage ends now (counting the jobs it held) and the jobs parked
      behind it become due; the recovery ramp starts;
    - a pause lifted: the jobs parked behind it become due; after Plex refused the token
      (often a Plex still starting), the recovery ramp starts as after an outage.
    """
    was_closed, is_closed = old.breaker.is_closed, new.breaker.is_closed
    if was_closed and not is_closed and old.breaker.trial:
        _resume_outage(conn, old.breaker)
    elif was_closed and not is_closed:
        _start_outage(conn, new.breaker.opened_at or now, old.breaker)
    elif not was_closed and is_closed:
        _end_outage(conn, now)
        _release(conn, BREAKER_REASONS, now)
        new = replace(new, ramp_started_at=now)
    if old.pause is not None and new.pause is None:
        _release(conn, PAUSE_REASONS, now)
        if old.pause.kind == "plex_auth":  # Plex refused us for a while: back in gently too
            new = replace(new, ramp_started_at=now)
    if new != old:
        conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
            "SET value = excluded.value, updated_at = excluded.updated_at",
            (HOLDS_KEY, holds_to_json(new), now),
        )
    return new


def _outstanding(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0])


def _refund(conn: sqlite3.Connection, streak: BreakerState) -> None:
    """The scenes of the failure streak that opened the breaker wait for Plex instead of a
    retry, with their attempt given back: a sick Plex costs probes, not attempts."""
    scenes = sorted({scene for _, scene in streak.failures})
    if scenes:
        marks = ",".join("?" * len(scenes))
        conn.execute(
            f"UPDATE jobs SET reason = 'plex_down', due_at = ?, "
            f"attempts = MAX(0, attempts - 1) "
            f"WHERE state = 'waiting' AND reason = 'retry' AND scene_id IN ({marks})",
            (PARKED, *scenes),
        )


def _start_outage(conn: sqlite3.Connection, started_at: float, streak: BreakerState) -> None:
    _refund(conn, streak)
    conn.execute(
        "INSERT INTO outages (started_at, jobs_affected) VALUES (?, ?)",
        (started_at, _outstanding(conn)),
    )
    conn.execute(
        "DELETE FROM outages WHERE id NOT IN "
        "(SELECT id FROM outages ORDER BY started_at DESC LIMIT ?)",
        (OUTAGES_KEPT,),
    )


def _resume_outage(conn: sqlite3.Connection, streak: BreakerState) -> None:
    _refund(conn, streak)
    conn.execute("UPDATE outages SET ended_at = NULL WHERE id = (SELECT MAX(id) FROM outages)")


def _end_outage(conn: sqlite3.Connection, now: float) -> None:
    conn.execute(
        "UPDATE outages SET ended_at = ?, jobs_affected = MAX(jobs_affected, ?) "
        "WHERE ended_at IS NULL",
        (now, _outstanding(conn)),
    )


def _release(conn: sqlite3.Connection, reasons: tuple[str, ...], now: float) -> None:
    marks = ",".join("?" * len(reasons))
    conn.execute(
        f"UPDATE jobs SET state = 'pending', reason = NULL, due_at = ? "
        f"WHERE state = 'waiting' AND reason IN ({marks})",
        (now, *reasons),
    )
