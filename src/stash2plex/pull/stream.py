"""The real-time trigger of the pull: Plex's notification websocket, for `stash2plex serve`.

A component with `start()`/`stop()`. It listens with plexapi's `AlertListener`
(`/:/websockets/notifications`, the `websocket-client` package) and, when Plex reports that a
playback stopped or paused (a play or a resume point) or that an item changed (a rating),
runs one catch-up pull after a short quiet period, so a burst of notifications costs one pull.
Plex also says "item changed" after our own edits and ratings: when every notification since
the last pull named an item Stash2Plex wrote meanwhile (the links' `synced_at`), no pull runs.
The pull reads everything since the watermarks, so nothing depends on what a notification
said; when the socket drops it reconnects with backoff and pulls once on reconnecting, and the
worker's timer covers whatever time the service was down.

Wiring into a service::

    stream = PlexAlertStream(data_dir)
    stream.start()
    ...
    stream.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stash2plex.engine.context import Context, build_context
from stash2plex.errors import SyncError
from stash2plex.store.db import Store

log = logging.getLogger("stash2plex.pull.stream")

DEBOUNCE_SECONDS = 2.0
MAX_DELAY_SECONDS = 10.0
RECONNECT_MIN_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 60.0
# A Plex item written by Stash2Plex this long before the first notification naming it counts
# as our own write (the notification can overtake the store's record of the write).
OWN_WRITE_MARGIN_SECONDS = 5.0
_PLAYBACK_STATES = ("stopped", "paused")
_MOVIE = 1


def wants_pull(container: dict[str, Any], *, ratings: bool) -> bool:
    """Whether a notification (`NotificationContainer`) may mean something to pull.

    A playback that stopped or paused may have recorded a play or a resume point; a timeline
    entry of a movie-type item ("state" 5: processed) may be a new rating, so it counts only
    when ratings come back (`ratings`).
    """
    kind = container.get("type")
    if kind == "playing":
        entries = container.get("PlaySessionStateNotification") or []
        return any(entry.get("state") in _PLAYBACK_STATES for entry in entries)
    if kind == "timeline" and ratings:
        entries = container.get("TimelineEntry") or []
        return any(
            str(entry.get("type")) == str(_MOVIE) and str(entry.get("state")) == "5"
            for entry in entries
        )
    return False


def timeline_items(container: dict[str, Any]) -> set[int]:
    """The movie items a "timeline" notification says changed (empty for other kinds)."""
    if container.get("type") != "timeline":
        return set()
    return {
        int(entry["itemID"])
        for entry in container.get("TimelineEntry") or []
        if str(entry.get("type")) == str(_MOVIE)
        and str(entry.get("state")) == "5"
        and str(entry.get("itemID", "")).isdigit()
    }


def only_our_writes(items: set[int], written: set[int], playback: bool) -> bool:
    """Whether the signals since the last pull were only "item changed" notifications of
    items Stash2Plex itself wrote meanwhile (`written`): then there is nothing to pull. A
    playback signal always pulls."""
    return not playback and bool(items) and items <= written


def pull_now(
    first_signal: float | None,
    last_signal: float | None,
    now: float,
    debounce: float = DEBOUNCE_SECONDS,
    max_delay: float = MAX_DELAY_SECONDS,
) -> bool:
    """After signals, pull once things were quiet for `debounce` s, or `max_delay` s after the
    first signal at the latest (a steady stream of notifications must not starve the pull)."""
    if first_signal is None or last_signal is None:
        return False
    return now - last_signal >= debounce or now - first_signal >= max_delay


def reconnect_delay(failures: int) -> float:
    """Seconds before reconnecting after `failures` drops in a row (doubling, capped)."""
    return float(min(RECONNECT_MAX_SECONDS, RECONNECT_MIN_SECONDS * 2 ** max(0, failures - 1)))


class PlexAlertStream:
    """Listen to Plex and pull on relevant notifications, until `stop()`.

    `pull` runs one pull with a context (default: `stash2plex.pull.pull.run_pull`); each pull
    builds a fresh context from the data directory, so changed settings apply at once.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        context_factory: Callable[[Store], Context] = build_context,
        pull: Callable[[Context], Any] | None = None,
        debounce_seconds: float = DEBOUNCE_SECONDS,
        max_delay_seconds: float = MAX_DELAY_SECONDS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.context_factory = context_factory
        if pull is None:
            from stash2plex.pull.pull import run_pull

            pull = run_pull
        self._pull = pull
        self.debounce_seconds = debounce_seconds
        self.max_delay_seconds = max_delay_seconds
        self.pulls = 0  # pulls run by this stream
        self.notifications = 0  # relevant notifications received
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._signal = threading.Event()
        self._lock = threading.Lock()
        self._first_signal: float | None = None
        self._last_signal: float | None = None
        # Since the last pull: the items timeline notifications named, whether a playback
        # signalled, and when the first signal came (wall clock, as the store's times).
        self._items: set[int] = set()
        self._playback = False
        self._signalled_at: float | None = None
        self.skipped = 0  # signals that were only our own writes: no pull
        self._listener: Any = None
        self._ratings = False
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> PlexAlertStream:
        """Connect and listen in background threads (returns at once)."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._listen_forever, name="plex-alerts", daemon=True),
            threading.Thread(target=self._pull_when_signalled, name="plex-pull", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the websocket and end both threads."""
        self._stop.set()
        self._signal.set()
        self._close_listener()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def __enter__(self) -> PlexAlertStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the websocket
    def _listen_forever(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with Store.open(self.data_dir) as store:
                    context = self.context_factory(store)
                    self._ratings = context.config.sync_rating_both_ways
                    plex = context.plex
                    plex.connect()
                    if not context.config.pulls:
                        log.info("no pull setting is on; the Plex notification stream waits")
                        self._stop.wait(RECONNECT_MAX_SECONDS)
                        continue
            except SyncError as exc:
                failures += 1
                log.warning("cannot listen to Plex yet: %s", exc.message)
                self._stop.wait(reconnect_delay(failures))
                continue
            listener = plex.alert_listener(self._on_message, self._on_error)
            self._listener = listener
            listener.start()
            # plexapi gives no "connected" callback; its socket exists once connecting began.
            self._wait_connected(listener)
            if listener.is_alive() and not self._stop.is_set():
                failures = 0
                self.connected.set()
                self._request_pull(catch_up=True)  # what happened while we were not listening
            listener.join()
            self.connected.clear()
            self._listener = None
            if self._stop.is_set():
                return
            failures += 1
            delay = reconnect_delay(failures)
            log.info("Plex notification stream closed; reconnecting in %.0f s", delay)
            self._stop.wait(delay)

    def _wait_connected(self, listener: Any) -> None:
        deadline = time.monotonic() + 10.0
        while listener.is_alive() and time.monotonic() < deadline and not self._stop.is_set():
            ws = getattr(listener, "_ws", None)
            sock = getattr(ws, "sock", None)
            if sock is not None and getattr(sock, "connected", False):
                return
            time.sleep(0.02)

    def _close_listener(self) -> None:
        listener = self._listener
        ws = getattr(listener, "_ws", None) if listener is not None else None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # closing a socket that is already gone
                log.debug("closing the Plex notification socket failed", exc_info=True)

    def _on_message(self, container: dict[str, Any]) -> None:
        if wants_pull(container, ratings=self._ratings):
            self.notifications += 1
            items = timeline_items(container)
            with self._lock:
                self._items |= items
                self._playback |= not items
            self._request_pull()

    def _on_error(self, error: Exception) -> None:
        log.info("Plex notification stream error: %s", type(error).__name__)

    # ------------------------------------------------------------------ pulling
    def _request_pull(self, *, catch_up: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if self._first_signal is None:
                self._first_signal = now
                self._signalled_at = time.time()
            self._last_signal = now
            self._playback |= catch_up
        self._signal.set()

    def _pull_when_signalled(self) -> None:
        while not self._stop.is_set():
            self._signal.wait()
            if self._stop.is_set():
                return
            with self._lock:
                due = pull_now(
                    self._first_signal,
                    self._last_signal,
                    time.monotonic(),
                    self.debounce_seconds,
                    self.max_delay_seconds,
                )
                if due:
                    self._first_signal = self._last_signal = None
                    items, playback, since = self._items, self._playback, self._signalled_at
                    self._items, self._playback, self._signalled_at = set(), False, None
                    self._signal.clear()
            if not due:
                self._stop.wait(0.1)
                continue
            self._run_pull(items, playback, since)

    def _run_pull(
        self, items: set[int] | None = None, playback: bool = True, since: float | None = None
    ) -> None:
        try:
            with Store.open(self.data_dir) as store:
                # Our own edits and ratings make Plex say "item changed" too. Checked after
                # the quiet period, when the sync has recorded what it wrote.
                written = store.written_since(
                    sorted(items or ()), (since or time.time()) - OWN_WRITE_MARGIN_SECONDS
                )
                if only_our_writes(items or set(), written, playback):
                    self.skipped += 1
                    log.debug("Plex reported only our own writes; nothing to pull")
                    return
                report = self._pull(self.context_factory(store))
        except SyncError as exc:
            log.warning("pull after a Plex notification failed: %s", exc.message)
            return
        self.pulls += 1
        summary = report.summary() if hasattr(report, "summary") else report
        log.info("pulled after a Plex notification: %s", summary)
