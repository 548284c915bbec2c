"""The Plex page's backend in Stash: `runPluginOperation` on the Stash emulator runs the plugin
through the plugin runner exactly as Stash does, and the plugin answers from the store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from stash2plex.engine.worker_lock import worker_running
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.network_guard import LOG_ENV, write_guard
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until
from .seeding import dead

OPERATION = (
    "mutation Op($plugin_id: ID!, $args: Map) "
    "{ runPluginOperation(plugin_id: $plugin_id, args: $args) }"
)


@pytest.fixture
def stash(plugin_dir: Path, tmp_path: Path):
    library = generate_library(20, seed=3)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (_, stash, _section):
        cwd = tmp_path / "stash-cwd"
        cwd.mkdir()
        stash.attach_plugin(PluginRunner(plugin_dir, cwd=cwd))
        yield stash


def operation(stash, args: dict, plugin_id: str = "Stash2Plex") -> dict:
    reply = requests.post(
        f"{stash.url}/graphql",
        json={"query": OPERATION, "variables": {"plugin_id": plugin_id, "args": args}},
        timeout=60,
    )
    assert reply.status_code == 200
    return reply.json()


def test_a_view_through_stash_equals_the_store(stash, plugin_dir: Path):
    with Store.open(plugin_dir / "data") as store:
        store.enqueue([1, 2, 3], source="test")
        (job,) = [j for j in store.jobs() if j.scene_id == 3]
        dead(store, job, error_class="permanent", message="bad data", attempts=1)
        counts = store.job_counts()
    reply = operation(stash, {"mode": "operation", "view": "overview"})
    assert "errors" not in reply
    data = reply["data"]["runPluginOperation"]
    assert data["queue"]["pending"] == counts["pending"] == 2
    assert data["dead_letters"]["total"] == 1
    # Stash ran the plugin with the caller's args alone: no task, so no defaultArgs.
    assert stash.count("Op") == 1


def test_errors_become_graphql_errors_with_the_plugins_message(stash):
    reply = operation(stash, {"mode": "operation", "view": "nope"})
    assert reply["data"] == {"runPluginOperation": None}
    assert reply["errors"][0]["message"].startswith("unknown view 'nope'")
    reply = operation(stash, {"mode": "operation", "view": "scene"})
    assert "needs scene_id" in reply["errors"][0]["message"]
    reply = operation(stash, {"mode": "operation", "view": "overview"}, plugin_id="Other")
    assert reply["errors"][0]["message"] == "no plugin with ID Other"
    for odd in (99999999999999999999999, True, 3.7):  # never an overflow, never scene 1 or 3
        reply = operation(stash, {"mode": "operation", "action": "sync_scene", "scene_id": odd})
        assert reply["data"] == {"runPluginOperation": None}
        assert "must be a scene id (a whole number)" in reply["errors"][0]["message"]


def test_sync_now_queues_the_scene_and_a_worker_syncs_it(stash, plugin_dir: Path):
    data_dir = plugin_dir / "data"
    reply = operation(stash, {"mode": "operation", "action": "sync_scene", "scene_id": 4})
    assert reply["data"]["runPluginOperation"] == {"queued": 4, "new": True}

    def synced() -> bool:
        with Store.open(data_dir) as store:
            job = store.job(4)
            return job is not None and job.state == "done"

    wait_until(synced, timeout=60, message="the worker the action started to sync scene 4")
    scene = operation(stash, {"mode": "operation", "view": "scene", "scene_id": 4})
    assert scene["data"]["runPluginOperation"]["state"] == "in_sync"
    assert worker_running(data_dir) or synced()


def test_a_task_button_queues_the_task_in_stash(stash):
    reply = requests.post(
        f"{stash.url}/graphql",
        json={
            "query": "mutation T($p: ID!, $t: String!) "
            "{ runPluginTask(plugin_id: $p, task_name: $t) }",
            "variables": {"p": "Stash2Plex", "t": "View Queue Status"},
        },
        timeout=30,
    )
    assert reply.json()["data"]["runPluginTask"] == "1"
    run = stash.task_runs[0].wait()
    assert run.error is None and "pending" in run.output


def test_the_page_s_views_make_no_network_request(plugin_dir: Path, tmp_path: Path):
    guard = write_guard(tmp_path / "guard")
    net_log = tmp_path / "network.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    env.update({"PYTHONPATH": str(guard), LOG_ENV: str(net_log)})
    # The guard works: a child that connects is caught and recorded.
    control = subprocess.run(
        [sys.executable, "-c", "import socket; socket.socket().connect(('127.0.0.1', 9))"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert control.returncode != 0 and "network guard" in control.stderr
    assert net_log.read_text().count("connect") == 1
    net_log.unlink()

    with Store.open(plugin_dir / "data") as store:
        store.enqueue([1, 2], source="test")
    cwd = tmp_path / "stash-cwd"
    cwd.mkdir()
    runner = PluginRunner(plugin_dir, cwd=cwd, env=env)
    # Port 9 is the discard port: nothing answers there, so a request could not succeed either.
    connection = {"Scheme": "http", "Host": "0.0.0.0", "Port": 9, "SessionCookie": {"Value": "c"}}
    for view, params in (
        ("overview", {}),
        ("outages", {}),
        ("waiting", {}),
        ("dead_letters", {}),
        ("scene", {"scene_id": 1}),
    ):
        run = runner.run_task(None, connection, args={"mode": "operation", "view": view, **params})
        assert run.error is None, (view, run.error)
        assert isinstance(run.output, dict)
        assert run.logs == []  # nothing logged on success: the page asks every few seconds
    assert not net_log.exists() or net_log.read_text() == ""


def test_the_pages_task_buttons_name_tasks_of_the_manifest():
    from stash2plex.sandbox.manifest import load_manifest

    from .conftest import REPO

    source = (REPO / "ui" / "src" / "page.jsx").read_text(encoding="utf-8")
    block = re.search(r"const TASKS = \[(.*?)\];", source, re.S)
    assert block is not None
    buttons = re.findall(r'"([^"]+)"', block.group(1))
    tasks = {task.name for task in load_manifest(REPO / "Stash2Plex.yml").tasks}
    assert buttons and set(buttons) <= tasks
