"""The reconcile schedule for a plugin-only install: the plugin's worker exits when idle, so
the due time is kept in the store and any task or hook that finds it passed starts a worker,
which reconciles at its first idle round. Timing proven with the injected clock."""

from __future__ import annotations

from pathlib import Path

from stash2plex.engine.worker import Worker
from stash2plex.plugin.entry import wake_worker
from stash2plex.store.db import CREATED_AT_KEY, RECONCILE_DUE_KEY, Store, reconcile_overdue

from .conftest import wait_until
from .sandbox import sandbox


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def runs(data_dir: Path) -> list[tuple[str, str]]:
    with Store.open(data_dir) as store:
        return [(r["trigger"], r["state"]) for r in store.reconciliation().runs(10)]


def test_a_worker_started_with_an_empty_queue_reconciles_once_the_interval_passed(tmp_path):
    with sandbox(tmp_path, scenes=20, seed=47) as box:
        box.drain()
        box.settings(reconcile_interval="hourly")
        with box.store() as store:
            created = float(store.get_value(CREATED_AT_KEY))
        clock = Clock(created + 1800)

        Worker(box.data_dir, clock=clock, sleep=clock.sleep).run(until_idle=True)

        assert runs(box.data_dir) == []
        with box.store() as store:
            due = store.get_value(RECONCILE_DUE_KEY)
        assert due == created + 3600
        assert not reconcile_overdue(due, created + 3599) and reconcile_overdue(due, created + 3600)

        clock.now = created + 3600  # a task or a hook starts a worker; nothing is queued
        Worker(box.data_dir, clock=clock, sleep=clock.sleep).run(until_idle=True)

        assert runs(box.data_dir) == [("schedule", "done")]
        with box.store() as store:
            assert store.get_value(RECONCILE_DUE_KEY) == created + 7200
        Worker(box.data_dir, clock=clock, sleep=clock.sleep).run(until_idle=True)
        assert len(runs(box.data_dir)) == 1, "once per interval"


def test_a_task_wakes_a_worker_for_a_due_reconcile_when_nothing_is_queued(tmp_path, plugin_dir):
    data_dir = plugin_dir / "data"
    with sandbox(tmp_path, scenes=20, seed=53) as box:
        box.data_dir = data_dir
        with Store.open(data_dir) as store:
            store.put_value("server_connection", box.stash.server_connection())
        box.drain()
        box.settings(reconcile_interval="hourly")
        with Store.open(data_dir) as store:
            created = float(store.get_value(CREATED_AT_KEY))
        # Two hours ago the worker reconciled; the worker computed the next one then.
        clock = Clock(created - 7200)
        with Store.open(data_dir, clock=clock) as store:
            tables = store.reconciliation()
            tables.finish_run(tables.start_run("schedule", True), "done", {}, {})
        Worker(data_dir, clock=clock, sleep=clock.sleep).run(until_idle=True)
        with Store.open(data_dir) as store:
            assert store.get_value(RECONCILE_DUE_KEY) == created - 3600
            assert store.due_now() == 0

        assert wake_worker(data_dir, plugin_dir) is None  # what every task does first

        wait_until(
            lambda: ("schedule", "done") in runs(data_dir)[:1],
            timeout=60,
            message="the woken worker to reconcile",
        )
