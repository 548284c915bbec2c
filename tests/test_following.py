"""A command or task that follows the detached worker in the store (operations/queue.py
`process_queue`) always comes back: it waits for the worker to check a hold, but not forever.
Injected clock and sleep: no waiting."""

from __future__ import annotations

import os
from dataclasses import replace

from stash2plex.engine.worker_lock import open_lock_file, try_lock
from stash2plex.operations.queue import CHECK_WAIT_SECONDS, process_queue
from stash2plex.records import Pause
from stash2plex.store.db import Store


def test_a_follower_reports_a_hold_whose_check_the_worker_never_makes(tmp_path):
    now = [1000.0]

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pause = Pause(kind="config", message="check plex_url", since=990.0, next_check_at=995.0)
    with Store.open(tmp_path, clock=clock) as store:
        store.enqueue([1], "test")
        store.change_holds(lambda holds: (replace(holds, pause=pause), []))
    fd = open_lock_file(tmp_path)
    assert try_lock(fd)  # a worker holds the queue, and never checks the hold (stuck)
    try:
        report = process_queue(tmp_path, clock=clock, sleep=sleep, start_worker=lambda: None)
    finally:
        os.close(fd)
    assert now[0] - 1000.0 <= CHECK_WAIT_SECONDS + 1
    assert report.processed == 0
