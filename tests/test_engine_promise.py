"""The engine keeps its promise by itself, end to end through the plugin runner, with the
shipped timers: outages in the middle of a task, killed workers, settings switched off and on,
kills inside composite operations, a Plex failing every request, a store locked by another
process. Every test reaps the workers it caused (see `plugin_dir`)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from stash2plex.operations.queue import outage_report
from stash2plex.records import Decision
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.processes import worker_pids
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until

EDIT_ROUTE = "PUT /library/sections/{id}/all"


class Env:
    def __init__(self, library, plex, stash, runner, connection, data_dir):
        self.library, self.plex, self.stash = library, plex, stash
        self.runner, self.connection, self.data_dir = runner, connection, data_dir

    def matchable(self) -> list[int]:
        return sorted(s.id for s in self.library.scenes.values() if s.files and s.in_plex)

    def save(self, scene_id: int):
        """What Stash does when a user saves a scene: the hook must answer at once."""
        run = self.runner.run_hook("Scene.Update.Post", scene_id, self.connection)
        assert run.returncode == 0 and run.error is None, run.stderr
        assert "Traceback" not in run.stderr
        return run

    def store(self) -> Store:
        return Store.open(self.data_dir)

    def outstanding(self) -> int:
        with self.store() as store:
            return store.outstanding_jobs()

    def edits(self) -> int:
        return self.plex.log.count(route=EDIT_ROUTE)

    def kill_workers(self) -> int:
        pids = worker_pids(self.data_dir)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return len(pids)

    def all_synced(self) -> bool:
        with self.store() as store:
            return store.outstanding_jobs() == 0 and store.link_count() == len(self.matchable())


@pytest.fixture
def make_env(plugin_dir, worker_env, tmp_path):
    opened = []

    def make(scenes: int, seed: int = 17, latency: float = 0.0) -> Env:
        library = generate_library(scenes, seed=seed)
        context = running_sandbox(library, plex_token=PLEX_TOKEN)
        plex, stash, _ = context.__enter__()
        opened.append(context)
        if latency:
            plex.faults.latency(latency)
        cwd = tmp_path / "cwd"
        cwd.mkdir(exist_ok=True)
        runner = PluginRunner(plugin_dir, cwd=cwd, env=worker_env)
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        data_dir = plugin_dir / "data"
        data_dir.mkdir(exist_ok=True)
        return Env(library, plex, stash, runner, connection, data_dir)

    yield make
    for context in reversed(opened):
        context.__exit__(None, None, None)


@pytest.mark.slow
def test_sync_all_meeting_a_5_s_outage_finishes_by_itself(make_env):
    env = make_env(150, latency=0.01)
    task = env.runner.start_task("Sync All Scenes", env.connection)
    wait_until(lambda: env.edits() >= 30, timeout=60, message="the drain to be under way")
    env.plex.faults.refuse_connections()
    down_at = time.time()
    time.sleep(5)
    env.plex.faults.accept_connections()
    back_at = time.time()
    run = task.wait(120)
    assert "Traceback" not in run.stderr
    # The task stopped at the outage: Stash shows a failed job saying the scenes will follow.
    assert run.returncode == 1 and "sync by themselves when Plex is back" in run.error

    # No user action from here on: the worker the task handed over to finishes the job.
    wait_until(env.all_synced, timeout=60, message="every scene synced after Plex is back")
    with env.store() as store:
        [outage] = store.outages()
        report = outage_report(store)
        watched_since = store.watched_since()
        assert store.dead_letters() == []
    assert down_at - 1 <= outage["started_at"] <= back_at
    assert back_at <= outage["ended_at"], "the outage ended before Plex was back"
    assert outage["ended_at"] - outage["started_at"] < 15, "the outage ended late"
    down = outage["ended_at"] - outage["started_at"]
    assert report["mttr_s"] == pytest.approx(down, abs=0.1)
    # Availability over the time the store has been watching, not from the outage's start.
    window = time.time() - watched_since
    assert report["availability_pct"] == pytest.approx(100 * (1 - down / window), abs=1.0)


@pytest.mark.slow
def test_two_sigkills_during_a_20_s_outage_lose_nothing(make_env):
    env = make_env(300, seed=23, latency=0.005)
    with env.store() as store:
        store.enqueue(env.matchable(), "bulk import")
    env.save(env.matchable()[0])
    wait_until(lambda: env.edits() >= 40, timeout=60, message="the drain to be under way")
    env.plex.faults.refuse_connections()
    outage_started = time.time()
    for scene_id in env.matchable()[1:3]:
        time.sleep(4)
        wait_until(lambda: worker_pids(env.data_dir), message="a worker to kill")
        assert env.kill_workers() >= 1
        env.save(scene_id)  # the next save starts a fresh worker
    time.sleep(max(0.0, 20 - (time.time() - outage_started)))
    env.plex.faults.accept_connections()

    wait_until(env.all_synced, timeout=60, message="every scene synced within 60 s")
    with env.store() as store:
        assert store.dead_letters() == []
        assert len(store.outages()) == 1


@pytest.mark.slow
def test_switched_off_the_worker_exits_and_switched_on_the_next_hook_drains(make_env):
    env = make_env(20)
    scene_id = env.matchable()[0]
    env.stash.plugin_settings = {**env.stash.plugin_settings, "enabled": False}
    env.save(scene_id)
    wait_until(lambda: not worker_pids(env.data_dir), timeout=60, message="the worker to exit")
    assert env.edits() == 0
    with env.store() as store:
        assert store.holds().pause.kind == "disabled"
        assert store.job(scene_id).state != "done"

    env.stash.plugin_settings = {**env.stash.plugin_settings, "enabled": True}
    env.save(env.matchable()[1])
    wait_until(lambda: env.outstanding() == 0, timeout=30, message="the next hook to drain")

    # Switched off right after a save that made the worker read the settings: a scene saved
    # now must not reach Plex.
    env.save(env.matchable()[2])
    wait_until(lambda: env.outstanding() == 0, message="that save synced")
    env.stash.plugin_settings = {**env.stash.plugin_settings, "enabled": False}
    env.stash.update_scene(scene_id, title="Saved while switched off")
    env.save(scene_id)
    time.sleep(3)
    key = env.plex.find_by_file(env.library.plex_path(env.library.scenes[scene_id].files[0].path))
    assert env.plex.item(key).title != "Saved while switched off"
    wait_until(lambda: env.outstanding() == 1, message="the save recorded")
    env.stash.plugin_settings = {**env.stash.plugin_settings, "enabled": True}
    run = env.runner.run_task("Process Queue", env.connection)
    assert "switched off" not in (run.stderr + str(run.output))
    wait_until(lambda: env.outstanding() == 0, timeout=30, message="Process Queue to drain")


def plant_dead_letters(env, scene_ids, window):
    with env.store() as store:
        store.record_outage(*window, jobs_affected=len(scene_ids))
        store.enqueue(scene_ids, "test")
        failed_at = (window[0] + window[1]) / 2
        store.clock = lambda: failed_at
        for job in store.claim_due("t", len(scene_ids)):
            store.apply(job, Decision("dead_letter", 5, error_class="transient", message="502"))


def assert_each_scene_in_exactly_one_state(env, scene_ids):
    with env.store() as store:
        lettered = [d["scene_id"] for d in store.dead_letters()]
        queued = {j.scene_id for j in store.jobs() if j.state != "done"}
    assert len(lettered) == len(set(lettered)), "a scene dead-lettered twice"
    assert not queued & set(lettered), "a scene both queued and dead-lettered"


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_name", ["Retry Dead Letters", "Recover Outage Jobs", "Clear Pending Queue"]
)
def test_sigkill_inside_a_composite_task_leaves_each_scene_in_one_state(make_env, task_name):
    env = make_env(60, seed=31)
    scene_ids = env.matchable()[:40]
    rng = random.Random(task_name)
    for _ in range(4):
        now = time.time()
        plant_dead_letters(env, scene_ids, (now - 120, now - 60))
        if task_name == "Clear Pending Queue":
            with env.store() as store:
                store.enqueue(env.matchable()[40:], "test")
        task = env.runner.start_task(task_name, env.connection)
        time.sleep(rng.uniform(0.05, 0.8))
        task.kill()
        env.kill_workers()
        assert_each_scene_in_exactly_one_state(env, scene_ids)
        with env.store() as store:
            store.clear_pending()
            store.delete_dead_letters()


@pytest.mark.slow
def test_plex_failing_every_request_for_2_minutes_is_one_outage_not_dead_letters(make_env):
    env = make_env(200, seed=41, latency=0.005)
    with env.store() as store:
        store.enqueue(env.matchable(), "bulk import")
    env.save(env.matchable()[0])
    wait_until(lambda: env.edits() >= 30, timeout=60, message="the drain to be under way")
    env.plex.faults.fail(500)
    failing_since = time.time()

    def outage_open():
        with env.store() as store:
            outages = store.outages()
            return outages[-1] if outages else None

    outage = wait_until(outage_open, timeout=60, message="the breaker to open")
    with env.store() as store:
        held = store.outstanding_jobs()
    requests_before = len(env.plex.log.entries)
    time.sleep(max(0.0, 120 - (time.time() - failing_since)))
    requests_during = len(env.plex.log.entries) - requests_before
    env.plex.faults.clear()

    wait_until(env.all_synced, timeout=90, message="every scene synced after the failures")
    with env.store() as store:
        outages = store.outages()
        assert store.dead_letters() == []
    assert len(outages) == 1 and outages[0]["id"] == outage["id"]
    assert outages[0]["jobs_affected"] == held
    # A sick Plex costs probes (two small requests every 10 s), not attempts.
    assert requests_during < 60, requests_during  # about 25 in two minutes


def hold_the_store_locked(data_dir, seconds: float) -> subprocess.Popen:
    """Another process (a backup tool, a database browser) holds the write lock."""
    code = (
        "import sqlite3, sys, time\n"
        f"conn = sqlite3.connect({str(data_dir / 'stash2plex.db')!r}, isolation_level=None)\n"
        "conn.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        "conn.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow
def test_hooks_answer_at_once_while_another_process_locks_the_store(make_env):
    env = make_env(30)
    first = env.matchable()[0]
    env.save(first)  # the store exists, a worker ran
    wait_until(lambda: env.outstanding() == 0, message="the first sync")
    env.kill_workers()
    # Longer than any wait of ours on the store: the worker must outlast it too.
    holder = hold_the_store_locked(env.data_dir, 35)
    try:
        saved = env.matchable()[1:6]
        for scene_id in saved:
            run = env.save(scene_id)
            assert run.wall_seconds < 1.0, run.wall_seconds
            assert "busy" in str(run.output)
        assert holder.poll() is None, "the lock ended too early for the test to mean anything"
        holder.wait(60)
    finally:
        holder.kill()

    def synced() -> bool:
        with env.store() as store:
            return set(saved) <= {j.scene_id for j in store.jobs("done")}

    wait_until(synced, timeout=60, message="the spooled saves synced")


def test_a_truncated_store_gets_a_clear_message_and_a_fresh_store(make_env):
    env = make_env(10)
    scene_id = env.matchable()[0]
    env.save(scene_id)
    wait_until(lambda: env.outstanding() == 0, message="the first sync")
    env.kill_workers()
    path = env.data_dir / "stash2plex.db"
    with sqlite3.connect(path) as conn:  # fold the WAL in, then cut the file short
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)

    run = env.save(env.matchable()[1])

    assert "Traceback" not in run.stderr
    [message] = [m for m in run.messages("error") if "unreadable" in m]
    assert "moved aside" in message and "Sync All Scenes" in message
    assert list(env.data_dir.glob("stash2plex.db.unreadable-*"))
    wait_until(lambda: env.outstanding() == 0, message="the save synced into the fresh store")


def test_garbage_in_place_of_the_store_gets_a_clear_message(make_env):
    env = make_env(10)
    (env.data_dir / "stash2plex.db").write_bytes(b"this is not a database" * 100)
    run = env.save(env.matchable()[0])
    assert "Traceback" not in run.stderr
    assert any("not an SQLite database" in m for m in run.messages("error"))


@pytest.mark.slow
def test_a_store_damaged_under_a_running_worker_is_replaced_and_the_queue_goes_on(make_env):
    env = make_env(40, latency=0.05)
    with env.store() as store:
        store.enqueue(env.matchable()[:20], "bulk import")
    env.save(env.matchable()[20])
    wait_until(lambda: env.edits() >= 5, message="the drain to be under way")
    path = env.data_dir / "stash2plex.db"
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    late = env.matchable()[30]
    env.stash.update_scene(late, title="Saved after the damage")
    env.save(late)

    def synced():
        with env.store() as store:
            job = store.job(late)
            return job is not None and job.state == "done"

    wait_until(synced, timeout=60, message="the save after the damage synced")
    assert list(env.data_dir.glob("stash2plex.db.unreadable-*"))


def test_a_store_with_corrupt_pages_is_moved_aside_by_the_next_hook(make_env):
    env = make_env(20)
    env.save(env.matchable()[0])
    wait_until(lambda: env.outstanding() == 0, message="the first sync")
    env.kill_workers()
    path = env.data_dir / "stash2plex.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // page_size):
        data[page * page_size : page * page_size + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))

    run = env.save(env.matchable()[1])

    assert "Traceback" not in run.stderr
    assert any("moved aside" in m for m in run.messages("error")), run.stderr
    wait_until(lambda: env.outstanding() == 0, message="the save synced into a fresh store")


def test_a_task_on_a_locked_store_says_so_in_one_line(make_env):
    env = make_env(10)
    env.save(env.matchable()[0])
    wait_until(lambda: env.outstanding() == 0, message="the first sync")
    env.kill_workers()
    holder = hold_the_store_locked(env.data_dir, 30)
    try:
        run = env.runner.run_task("View Queue Status", env.connection)
    finally:
        holder.kill()
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "locked by another process" in run.error
    assert run.wall_seconds < 15


def test_a_hook_that_cannot_start_the_worker_still_answers(make_env):
    env = make_env(10)
    (env.data_dir / "worker.lock").mkdir()
    run = env.runner.run_hook("Scene.Update.Post", env.matchable()[0], env.connection)
    assert run.returncode == 0 and run.error is None and "Traceback" not in run.stderr
    assert "could not start" in str(run.output)
    with env.store() as store:
        assert store.job(env.matchable()[0]) is not None  # recorded all the same


@pytest.mark.slow
def test_stop_pressed_mid_task_stops_the_watching_not_the_work(make_env):
    env = make_env(150, seed=61, latency=0.01)
    task = env.runner.start_task("Sync All Scenes", env.connection)
    wait_until(lambda: env.edits() >= 10, timeout=60, message="the drain to be under way")
    late = env.matchable()[-1]
    env.stash.update_scene(late, title="Saved during the task")
    env.save(late)
    task.kill()  # Stash's Stop button

    wait_until(env.all_synced, timeout=90, message="every scene synced after Stop")
    key = env.plex.find_by_file(env.library.plex_path(env.library.scenes[late].files[0].path))
    assert env.plex.item(key).title == "Saved during the task"
