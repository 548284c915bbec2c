"""Every queue-management task, run through the plugin runner exactly as Stash runs it, with
its report checked against the store's real state."""

from __future__ import annotations

import re
import time
from typing import get_args

import pytest

from stash2plex.records import Decision, PauseKind
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.processes import reap_workers, worker_pids
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN

DAY = 86400.0


@pytest.fixture
def env(plugin_dir, worker_env, tmp_path):
    library = generate_library(20, seed=4)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        stash.api_key = "stash-api-key-7890"
        runner = PluginRunner(plugin_dir, cwd=cwd, env=worker_env)
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        data_dir = plugin_dir / "data"

        def task(name: str, **args):
            run = runner.run_task(name, connection, args=args or None)
            log = data_dir / "worker.log"
            for text in (run.stdout, run.stderr, log.read_text() if log.exists() else ""):
                for secret in (PLEX_TOKEN, connection["SessionCookie"]["Value"], stash.api_key):
                    assert secret not in text
            return run

        yield library, plex, stash, task, data_dir


def matchable(library):
    return [s.id for s in library.scenes.values() if s.files and s.in_plex]


def letters(data_dir, *specs):
    """Write dead letters (scene id, error class, age in days) as failures would."""
    with Store.open(data_dir) as store:
        for scene_id, error_class, age in specs:
            store.enqueue([scene_id], "test")
            [job] = [j for j in store.claim_due("t", 100) if j.scene_id == scene_id]
            store.clock = lambda age=age: time.time() - age * DAY
            store.apply(job, Decision("dead_letter", 5, error_class=error_class, message="why"))
            store.clock = time.time


def test_view_queue_status_reports_the_real_state(env):
    library, _plex, stash, task, data_dir = env
    first, second, third, fourth = matchable(library)[:4]
    task("Sync All Scenes")
    reap_workers(data_dir)
    # Switched off, so the worker the status task wakes for the pending job leaves it be.
    stash.plugin_settings = {**stash.plugin_settings, "enabled": False}
    data_dir.mkdir(exist_ok=True)
    letters(data_dir, (first, "transient", 1), (second, "permanent", 1))
    with Store.open(data_dir) as store:
        store.enqueue([third, fourth], "test")
        for job in store.claim_due("t", 10):
            if job.scene_id == fourth:
                waiting = Decision("wait", 0, reason="not_in_plex", due_at=time.time() + 600)
                store.apply(job, waiting)
            else:
                store.release([job])

    run = task("View Queue Status")

    status = run.output
    assert status is not None, (run.error, run.stderr)
    assert status["pending"] == 1 and status["in_progress"] == 0
    assert status["waiting"] == {"not_in_plex": 1}
    assert status["dead_letters"] == {"transient": 1, "permanent": 1}
    assert status["breaker"] == "closed" and status["last_sync_at"] is not None
    assert any("1 pending" in m for m in run.messages("info"))
    assert worker_pids(data_dir), "the task did not wake a worker for the pending job"


def test_clear_pending_queue_leaves_jobs_in_progress(env):
    library, _plex, _stash, task, data_dir = env
    a, b, c = matchable(library)[:3]
    data_dir.mkdir(exist_ok=True)
    with Store.open(data_dir) as store:
        store.enqueue([a, b, c], "test")
        claimed = store.claim_due("busy-worker", 10)
        [leased] = [j for j in claimed if j.scene_id == c]
        store.release([j for j in claimed if j.scene_id != c])  # only c stays in progress
    run = task("Clear Pending Queue")
    assert run.output == {"cleared": 2}
    with Store.open(data_dir) as store:
        assert [j.scene_id for j in store.jobs()] == [leased.scene_id]


def test_dead_letter_tasks(env):
    library, _plex, _stash, task, data_dir = env
    a, b, c = matchable(library)[:3]
    data_dir.mkdir(exist_ok=True)
    letters(data_dir, (a, "transient", 40), (b, "permanent", 1), (c, "transient", 1))

    assert task("Purge Old DLQ Entries").output == {"purged": 1, "days": 30}
    retried = task("Retry Dead Letters (transient only)").output
    assert retried["requeued"] == 1 and retried["drain"]["synced"] == 1
    with Store.open(data_dir) as store:
        assert [(d["scene_id"], d["error_class"]) for d in store.dead_letters()] == [
            (b, "permanent")
        ]
    assert task("Retry Dead Letters").output["requeued"] == 1
    letters(data_dir, (a, "permanent", 2))
    assert task("Clear Dead Letter Queue").output == {"cleared": 1}


def test_recover_outage_jobs_picks_the_window_skips_and_is_idempotent(env):
    library, plex, stash, task, data_dir = env
    inside, outside, permanent, deleted = matchable(library)[:4]
    now = time.time()
    data_dir.mkdir(exist_ok=True)
    with Store.open(data_dir) as store:
        store.record_outage(now - 2 * 3600, now - 3600, jobs_affected=4)
    letters(
        data_dir,
        (inside, "transient", 1.5 / 24),
        (outside, "transient", 3 / 24),
        (permanent, "permanent", 1.5 / 24),
        (deleted, "transient", 1.5 / 24),
    )
    stash.delete_scene(deleted)

    first = task("Recover Outage Jobs").output
    assert first["recovered"] == 1
    assert first["skipped"] == {"deleted in Stash": 1}
    assert first["drain"]["synced"] >= 1
    second = task("Recover Outage Jobs").output
    assert second["recovered"] == 0 and second["skipped"] == {}
    with Store.open(data_dir) as store:
        remaining = sorted(d["scene_id"] for d in store.dead_letters())
    assert remaining == sorted([outside, permanent])

    plex.faults.refuse_connections()
    letters(data_dir, (inside, "transient", 1.5 / 24))
    refused = task("Recover Outage Jobs")
    assert refused.output["recovered"] == 0 and "not healthy" in refused.output["health"]
    assert refused.returncode == 1 and "not healthy" in refused.error
    plex.faults.accept_connections()


def test_health_check_reports_latency_maintenance_and_a_bad_token(env):
    _library, plex, _stash, task, _data_dir = env
    healthy = task("Health Check").output
    assert healthy["healthy"] is True and healthy["latency_ms"] > 0
    assert healthy["breaker"] == "closed"
    plex.faults.maintenance(True)
    down = task("Health Check")
    assert down.output["healthy"] is False and "503" in down.output["detail"]
    assert down.returncode == 1 and "Plex is NOT healthy" in down.error  # a failed job
    plex.faults.maintenance(False)
    plex.token = "a-different-token"
    rejected = task("Health Check")
    assert rejected.output["healthy"] is False and "plex_token" in rejected.output["detail"]
    assert "plex_token" in rejected.error


def test_outage_summary_report_has_exact_metrics(env):
    _library, _plex, _stash, task, data_dir = env
    data_dir.mkdir(exist_ok=True)
    now = time.time()
    with Store.open(data_dir) as store:
        store.record_outage(now - 1000, now - 940, jobs_affected=3)  # 60 s
        store.record_outage(now - 700, now - 580, jobs_affected=5)  # 120 s
    report = task("Outage Summary Report").output
    assert (report["outages"], report["completed"]) == (2, 2)
    assert report["mttr_s"] == 90.0
    assert report["mtbf_s"] == 240.0
    # Observed since the first outage began, 1000 s ago, down 180 s of it.
    assert report["availability_pct"] == pytest.approx(100 * (1 - 180 / 1000), abs=0.05)
    assert [o["jobs_affected"] for o in report["recent"]] == [3, 5]


def test_outage_summary_reads_in_words_with_its_window(env):
    _library, _plex, _stash, task, data_dir = env
    data_dir.mkdir(exist_ok=True)
    with Store.open(data_dir):
        pass  # watched from now on, no outage yet
    run = task("Outage Summary Report")
    [line] = run.messages("info")
    assert line.startswith("Stash2Plex: 0 outages; availability 100 % over the last "), line
    assert "when Stash2Plex began watching" in line
    assert run.output["availability_pct"] == 100.0  # the JSON says what the words say
    now = time.time()
    with Store.open(data_dir) as store:
        store.record_outage(now - 700, now - 580, jobs_affected=1)
    lines = task("Outage Summary Report").messages("info")
    assert lines[0].startswith(
        "Stash2Plex: 1 outage, 2 min down in all, mean time to recovery 2 min"
    )
    assert "lasted 2 min, 1 job held" in lines[1]
    for text in lines:
        assert not re.search(r"\bNone\b|\{'|\b1[6-9]\d{8}(\.\d+)?\b", text), text


def test_process_queue_returns_when_plex_is_down_without_burning_attempts(env):
    library, plex, _stash, task, data_dir = env
    first, scene = matchable(library)[:2]
    data_dir.mkdir(exist_ok=True)
    with Store.open(data_dir) as store:
        store.enqueue([first], "test")
    assert task("Process Queue").returncode == 0  # Plex answered: its address is proven
    with Store.open(data_dir) as store:
        store.enqueue([scene], "test")
    plex.faults.refuse_connections()
    run = task("Process Queue")
    plex.faults.accept_connections()
    assert run.returncode == 1  # Stash shows a failed job: nothing reached Plex
    assert run.output["queue"] == {"done": 1, "waiting:plex_down": 1}
    assert "not reachable" in run.error and "1 scene waits" in run.error
    assert "syncs by itself when Plex is back" in run.error
    with Store.open(data_dir) as store:
        assert store.job(scene).attempts == 0 and store.dead_letters() == []
        assert len(store.outages()) == 1


def test_process_queue_before_plex_ever_answered_names_the_address_to_check(env):
    # A mistyped port, or Plex not running yet when the plugin is first used: no outage.
    library, plex, _stash, task, data_dir = env
    scene = matchable(library)[0]
    data_dir.mkdir(exist_ok=True)
    with Store.open(data_dir) as store:
        store.enqueue([scene], "test")
    plex.faults.refuse_connections()
    run = task("Process Queue")
    plex.faults.accept_connections()
    assert run.returncode == 1
    assert run.output["queue"] == {"waiting:settings": 1}
    assert "connection refused" in run.error and "check plex_url" in run.error
    assert "Traceback" not in run.error
    with Store.open(data_dir) as store:
        assert store.job(scene).attempts == 0 and store.dead_letters() == []
        assert store.outages() == []
    # The first tasks a new user runs say the same, never "when Plex is back".
    plex.faults.refuse_connections()
    for name in ("Sync All Scenes", "Health Check"):
        run = task(name)
        assert run.returncode == 1, name
        assert "check plex_url" in run.error and "when Plex is back" not in run.error, run.error
    plex.faults.accept_connections()
    with Store.open(data_dir) as store:
        assert store.outages() == []


def test_reconcile_tasks_name_where_a_wrong_token_came_from_as_health_check_does(
    env, plugin_dir, worker_env, tmp_path
):
    _library, plex, stash, task, _data_dir = env
    plex.token = "a-different-token"  # the token saved in Stash is no longer Plex's
    where = "Plex token (plex_token) is set in Settings > Plugins > Stash2Plex"
    assert where in task("Health Check").error
    for name in ("Reconcile with Plex", "Reconcile and Repair"):
        refused = task(name)
        assert refused.returncode == 1 and "Plex rejected the token" in refused.error
        assert where in refused.error, name

    # The same token given in the plugin's environment: the variable is named instead.
    connection = stash.server_connection(plugin_dir=str(plugin_dir))
    cwd = tmp_path / "cwd-env"
    cwd.mkdir()
    runner = PluginRunner(
        plugin_dir, cwd=cwd, env={**worker_env, "STASH2PLEX_PLEX_TOKEN": "wrong-in-env"}
    )
    refused = runner.run_task("Reconcile with Plex", connection)
    assert "comes from the environment variable STASH2PLEX_PLEX_TOKEN" in refused.error
    assert "wrong-in-env" not in refused.stdout + refused.stderr


@pytest.mark.parametrize("kind", [*get_args(PauseKind), "plex down"])
def test_the_verb_agrees_with_the_count_of_waiting_scenes(kind):
    # "1 scene waits and sync by itself" was the kind of sentence a newcomer met.
    from stash2plex.operations.outcome import health_verdict, held_sentence
    from stash2plex.records import BreakerState, Holds, Pause

    if kind == "plex down":
        holds = Holds(breaker=BreakerState(state="open", opened_at=0.0, reason="Plex is down"))
    else:
        holds = Holds(
            pause=Pause(kind=kind, message="Something is wrong", since=0, next_check_at=0)
        )
    one, two = held_sentence(holds, 1), held_sentence(holds, 2)
    assert one is not None and two is not None
    assert re.search(r"1 scene waits and syncs\b", one), one
    assert re.search(r"2 scenes wait and sync\b", two), two
    assert "themselves" not in one and "itself" not in two
    down = {"healthy": False, "detail": "refused", "problem": "down", "queue": {"pending": 1}}
    said = health_verdict(down).error or ""
    assert "Start Plex (or wait while it restarts): 1 scene waits and syncs by itself" in said
    token = {**down, "problem": "auth"}
    assert (health_verdict(token).error or "").endswith("1 scene waits for it.")


def test_dead_letters_are_summed_up_with_what_to_run_on_the_command_line_too():
    from stash2plex.operations.outcome import dead_letter_summary

    def letter(scene_id: int, message: str) -> dict:
        return {"scene_id": scene_id, "message": message}

    sentence, notes = dead_letter_summary(
        [letter(5, "HTTP 500 for item 12"), letter(6, "HTTP 500 for item 13"), letter(7, "400")]
    )
    assert "run Retry Dead Letters (or `stash2plex dlq retry`) once the cause is fixed" in sentence
    assert notes == ("2 scenes (5, 6): HTTP 500 for the item", "scene 7: 400")  # not "1 scene (7)"


def test_a_refused_setting_is_named_in_the_next_task_report(env):
    # docs/settings.md: a value that is not valid falls back to its default, "and the next
    # task report names the key and the accepted values".
    _library, _plex, stash, task, _data_dir = env
    stash.plugin_settings = {**stash.plugin_settings, "plex_max_concurrency": 100}
    run = task("Health Check")
    warned = [m for m in run.messages("warning") if "plex_max_concurrency" in m]
    assert len(warned) == 1 and "from 1 to 16" in warned[0], run.messages()
