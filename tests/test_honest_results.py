"""A task that could not do its job says so: Sync All Scenes, run through the plugin runner as
Stash runs it, with a wrong token, Plex down, the settings missing or a wrong library ends as a
failed job with one sentence naming the cause and the fix; nothing is dead-lettered; and fixing
the cause lets the detached worker finish the queue with no further action (shipped timers)."""

from __future__ import annotations

import pytest

from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.processes import reap_workers
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until

SCENES = 24


@pytest.fixture
def env(plugin_dir, worker_env, tmp_path):
    library = generate_library(SCENES, seed=5)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        stash.api_key = "stash-api-key-7890"
        runner = PluginRunner(plugin_dir, cwd=tmp_path, env=worker_env)
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        yield library, plex, stash, runner, connection, plugin_dir / "data"


def _no_secret_or_traceback(run, data_dir, stash, *extra: str) -> None:
    log = data_dir / "worker.log"
    texts = (run.stdout, run.stderr, log.read_text() if log.exists() else "")
    for text in texts:
        assert "Traceback" not in text
        for secret in (PLEX_TOKEN, stash.api_key, *extra):
            assert secret not in text


def _matchable(library) -> int:
    return sum(1 for s in library.scenes.values() if s.files and s.in_plex)


def _synced_everything(data_dir, library) -> bool:
    with Store.open(data_dir) as store:
        counts = store.job_counts()
        return store.link_count() == _matchable(library) and set(counts) == {"done"}


BREAK_AND_FIX = {
    "wrong token": (
        lambda plex, stash: stash.plugin_settings.update(plex_token="wrong-token-0000"),
        lambda plex, stash: stash.plugin_settings.update(plex_token=PLEX_TOKEN),
        ("rejected the token", "plex_token", "Settings > Plugins > Stash2Plex"),
    ),
    # Down before it ever answered: a wrong port looks the same, so the address is named
    # (once Plex has answered, it is an outage: tests/test_task_reports.py).
    "Plex down": (
        lambda plex, stash: plex.faults.refuse_connections(),
        lambda plex, stash: plex.faults.accept_connections(),
        ("not reachable", "connection refused", "is Plex running", "check plex_url"),
    ),
    "settings missing": (
        lambda plex, stash: [stash.plugin_settings.pop(k) for k in ("plex_url", "plex_token")],
        lambda plex, stash: stash.plugin_settings.update(plex_url=plex.url, plex_token=PLEX_TOKEN),
        (
            "not configured",
            "Plex URL (plex_url) and Plex token (plex_token)",
            "Settings > Plugins > Stash2Plex",
        ),
    ),
    "wrong library": (
        lambda plex, stash: stash.plugin_settings.update(plex_library="Moviez"),
        lambda plex, stash: stash.plugin_settings.update(plex_library="Stash Scenes"),
        ("no library named 'Moviez'", "'Stash Scenes' (a Movies", "Plex libraries (plex_library)"),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BREAK_AND_FIX))
def test_sync_all_fails_with_one_sentence_and_resumes_once_fixed(env, case):
    library, plex, stash, runner, connection, data_dir = env
    break_it, fix_it, words = BREAK_AND_FIX[case]
    break_it(plex, stash)

    run = runner.run_task("Sync All Scenes", connection)

    assert run.returncode == 1
    assert run.error is not None and "\n" not in run.error
    for word in words:
        assert word in run.error, run.error
    assert f"{SCENES} scenes wait" in run.error
    assert "sync by themselves" in run.error
    # One sentence for the whole failure: nothing logged per scene at warning or error.
    assert run.messages("error") == [] and run.messages("warning") == []
    _no_secret_or_traceback(run, data_dir, stash, "wrong-token-0000")
    with Store.open(data_dir) as store:
        assert store.dead_letters() == []
        assert store.link_count() == 0

    fix_it(plex, stash)
    wait_until(
        lambda: _synced_everything(data_dir, library),
        timeout=120,
        message=f"the queue to drain by itself after fixing: {case}",
    )
    with Store.open(data_dir) as store:
        assert store.dead_letters() == [] and store.holds().held is False


def test_a_wrong_path_map_rule_holds_the_queue_naming_the_rule(env):
    library, _plex, stash, runner, connection, data_dir = env
    good = stash.plugin_settings["path_map"]
    stash.plugin_settings["path_map"] = f"{good}; /media -> /plex"

    run = runner.run_task("Sync All Scenes", connection)

    assert run.returncode == 1
    assert "path_map" in run.error and "'/media -> /plex'" in run.error
    assert "=>" in run.error  # says what a rule looks like
    with Store.open(data_dir) as store:
        assert store.link_count() == 0 and store.dead_letters() == []
    stash.plugin_settings["path_map"] = good
    wait_until(lambda: _synced_everything(data_dir, library), timeout=120, message="resume")


def test_dead_letters_of_a_mass_failure_are_one_sentence(env):
    library, plex, stash, runner, connection, data_dir = env
    runner.run_task("Sync All Scenes", connection)  # link everything first
    reap_workers(data_dir)  # the next jobs are for the worker Process Queue starts
    linked = [s.id for s in library.scenes.values() if s.files and s.in_plex]
    for scene_id in linked:
        stash.update_scene(scene_id, title=f"Renamed {scene_id}")
    with Store.open(data_dir) as store:
        store.enqueue(linked, "test")
    plex.faults.fail(400, route=r"^PUT ")

    run = runner.run_task("Process Queue", connection)

    plex.faults.clear()
    count = _matchable(library)
    assert run.returncode == 1
    assert run.error.startswith(f"{count} scenes failed and went to the dead-letter queue: ")
    assert "400" in run.error and "Retry Dead Letters" in run.error
    assert "\n" not in run.error and "http://" not in run.error
    # One warning line for the one reason, not one per scene.
    assert len(run.messages("warning")) == 1
