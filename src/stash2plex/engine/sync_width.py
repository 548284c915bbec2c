"""How many scenes the worker syncs at once.

`plex_max_concurrency` caps the requests Plex gets at once (clients/throttle.py
`RequestSlots`); each scene holds a slot only while it talks to Plex. A scene also waits on
Stash (its cover) and on the worker's own CPU, and meanwhile its slot stays idle. With a slow
Plex (a NAS: tens of milliseconds per write) one scene more than the slots keeps every slot
busy: NAS latencies (Plex 50 ms per write, Stash 20 ms), 21 scenes/s with four scenes at once,
23 with five, for about 6 % more CPU per scene (bench/results/sync-nas.md). With a fast Plex
the worker's CPU is the limit, and a fifth scene only adds GIL hand-offs and waits for a slot
(25 to 36 context switches per scene, more CPU per scene and fewer scenes per second): so the
scene is added only while Plex answers slowly.
"""

from __future__ import annotations

from stash2plex.clients.http import Exchange

# A Plex answering slower than this (typical answer, seconds) keeps the worker's threads
# waiting most of each scene's time: one more scene costs nothing there.
SLOW_ANSWER_SECONDS = 0.02
EXTRA_SCENES_WHEN_SLOW = 1
# Weight of the newest answer in the moving average (about the last ten answers count).
SMOOTHING = 0.1


class AnswerTimes:
    """A moving average of how fast Plex answers a scene's writes (edits and image uploads),
    fed by the Plex transport's observers (`observe(exchange)`: `exchange.seconds` from
    sending to the answer). Reads are left out: a library's listing takes long at any Plex.
    `typical`: seconds, None before the first write. Threads update it without a lock: an
    update lost to a race only delays the average by one answer."""

    def __init__(self) -> None:
        self.typical: float | None = None

    def observe(self, exchange: Exchange) -> None:
        """Take one answer into the average (a read is left out)."""
        if exchange.method == "GET":
            return
        seconds = exchange.seconds
        typical = self.typical
        self.typical = seconds if typical is None else typical + SMOOTHING * (seconds - typical)


def scenes_at_once(slots: int, typical_answer_seconds: float | None) -> int:
    """Scenes synced at once for `slots` Plex requests at once (`plex_max_concurrency`): the
    slots, and `EXTRA_SCENES_WHEN_SLOW` more while Plex answers slowly. One slot stays one
    scene: the user asked for one thing at a time."""
    if slots <= 1:
        return 1
    slow = typical_answer_seconds is not None and typical_answer_seconds >= SLOW_ANSWER_SECONDS
    return slots + EXTRA_SCENES_WHEN_SLOW if slow else slots


def most_scenes_at_once(slots: int) -> int:
    """The most scenes `scenes_at_once` gives for these slots (the sync threads to keep)."""
    return scenes_at_once(slots, SLOW_ANSWER_SECONDS)
