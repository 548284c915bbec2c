"""Crash safety: the detached worker is SIGKILLed at random moments during a drain; hooks
(as a user saving scenes) start new workers; every scene still ends as Stash has it."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from stash2plex.engine.worker_lock import worker_running
from stash2plex.sandbox.history import expected_fields
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.processes import worker_pids
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until


@pytest.fixture
def setup(plugin_dir, monkeypatch, tmp_path):
    library = generate_library(80, seed=21)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        plex.faults.latency(0.01)
        runner = PluginRunner(plugin_dir, cwd=cwd, env=dict(os.environ))
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        yield library, plex, stash, runner, connection, plugin_dir / "data"
        assert plex.log.unknown() == []


def save(runner, connection, scene_id):
    """What Stash does when a user saves a scene."""
    run = runner.run_hook("Scene.Update.Post", scene_id, connection)
    assert run.returncode == 0 and run.error is None, run.stderr


def kill_workers(data_dir):
    killed = 0
    for pid in worker_pids(data_dir):
        os.kill(pid, signal.SIGKILL)
        killed += 1
    return killed


def drained(data_dir):
    with Store.open(data_dir) as store:
        return store.outstanding_jobs() == 0


@pytest.mark.slow
def test_random_sigkills_during_a_drain_lose_nothing(setup):
    library, plex, _stash, runner, connection, data_dir = setup
    scene_ids = sorted(library.scenes)
    data_dir.mkdir(parents=True, exist_ok=True)
    with Store.open(data_dir) as store:
        store.enqueue(scene_ids, source="test")  # a bulk import already recorded these
    rng = random.Random(7)
    kills = 0
    for round_number in range(6):
        save(runner, connection, scene_ids[round_number])
        time.sleep(rng.uniform(0.05, 0.6))
        kills += kill_workers(data_dir)
    assert kills >= 3, "the chaos never hit a running worker"
    save(runner, connection, scene_ids[0])
    wait_until(lambda: drained(data_dir), timeout=90, message="the queue to drain")

    with Store.open(data_dir) as store:
        assert store.dead_letters() == []
        assert store.outstanding_jobs() == 0
    for scene in library.scenes.values():
        if not (scene.files and scene.in_plex):
            continue
        item = plex.item(plex.find_by_file(library.plex_path(scene.files[0].path)))
        desired = expected_fields(library, scene)
        assert item.title == desired.fields["title"]
        assert (item.summary or "") == desired.fields["summary"]
        assert (item.studio or "") == desired.fields["studio"]
        assert (item.originally_available_at or "") == desired.fields["originallyAvailableAt"]
        assert item.genres == list(desired.genres)
        assert [a.name for a in item.actors] == [a.name for a in desired.actors]


def test_a_killed_workers_leased_jobs_are_finished_by_the_next(setup):
    library, plex, _stash, runner, connection, data_dir = setup
    plex.faults.latency(0.2)
    scene_id = next(s.id for s in library.scenes.values() if s.files and s.in_plex and s.title)
    save(runner, connection, scene_id)

    def leased():
        with Store.open(data_dir) as store:
            job = store.job(scene_id)
            return job is not None and job.state == "leased"

    wait_until(leased, message="the worker to lease the job")
    assert kill_workers(data_dir) == 1
    wait_until(lambda: not worker_running(data_dir), message="the lock to be released")
    with Store.open(data_dir) as store:
        assert store.job(scene_id).state == "leased"  # still leased by the dead worker

    other = next(s.id for s in library.scenes.values() if s.id != scene_id)
    save(runner, connection, other)  # a later save starts a new worker
    wait_until(lambda: drained(data_dir), timeout=30, message="the next worker to finish")
    scene = library.scenes[scene_id]
    item = plex.item(plex.find_by_file(library.plex_path(scene.files[0].path)))
    assert item.title == scene.title.strip()
