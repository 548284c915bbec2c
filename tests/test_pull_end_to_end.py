"""No echo, as a user meets it: the "Pull Plays from Plex" task runs as Stash runs it, its own
Stash writes fire the hooks Stash fires (the emulator runs the plugin for each, inside the
request, as Stash does), the detached worker they start syncs, and Plex sees no write."""

from __future__ import annotations

import pytest
import requests

from stash2plex.pull import decisions
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until

SETTINGS = {"pull_plays": True, "pull_resume": True, "sync_rating_both_ways": True}


@pytest.fixture
def library():
    return generate_library(30, seed=5)


def idle(data_dir) -> bool:
    with Store.open(data_dir) as store:
        return store.outstanding_jobs() == 0


def generation(data_dir, scene_id: int) -> int:
    with Store.open(data_dir) as store:
        job = store.job(scene_id)
        return -1 if job is None else job.generation


def synced_again(data_dir, scene_id: int, before: int) -> bool:
    """The scene was queued again (by a hook) since `before`, and that job is done."""
    with Store.open(data_dir) as store:
        job = store.job(scene_id)
        return job is not None and job.generation > before and job.state == "done"


@pytest.mark.slow
def test_pulled_writes_fire_hooks_that_cause_no_plex_write_and_no_new_pull(
    library, runner, plugin_dir
):
    with running_sandbox(library, plex_token=PLEX_TOKEN, settings=SETTINGS) as (plex, stash, _):
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        hook_runs = []

        def run_hook_as_stash(hook: dict) -> None:
            run = runner.run_hook(
                hook["type"],
                hook["id"],
                connection,
                input=hook["input"],
                input_fields=hook.get("inputFields"),
            )
            hook_runs.append(run)

        sync = runner.run_task("Sync All Scenes", connection)
        assert sync.returncode == 0 and sync.error is None
        wait_until(lambda: idle(plugin_dir / "data"), message="the first sync to finish")
        scene = next(s for s in library.scenes.values() if s.files and s.in_plex)
        key = plex.find_by_file(library.plex_path(scene.files[0].path))
        plex.play(key, 1_700_000_000)
        plex.play(key, 1_700_003_600)
        plex.stop_at(key, 90_000)
        plex.rate(key, 8.0)
        stash.on_hook = run_hook_as_stash
        queued = generation(plugin_dir / "data", scene.id)
        plex_writes = len(plex.log.writes())
        history_reads = plex.log.count("GET /status/sessions/history/all")

        pulled = runner.run_task("Pull Plays from Plex", connection)

        assert pulled.returncode == 0 and pulled.error is None, pulled.stderr
        assert pulled.output["plays_added"] == 2 and pulled.output["ratings_to_stash"] == 1
        assert pulled.output["resume_points"] == 1
        assert any("pulled from Plex" in m for m in pulled.messages("info"))
        assert pulled.progress and pulled.progress[-1] == 1.0
        current = library.scenes[scene.id]
        assert sorted(decisions.epoch(t) for t in current.play_history) == [
            1_700_000_000,
            1_700_003_600,
        ]
        assert current.resume_time == 90.0 and current.rating100 == 80
        # Exactly the hooks Stash fires: one Scene.Update.Post for the rating, none for the
        # plays or the resume point; each ran the plugin, which queued the scene.
        assert [h["type"] for h in stash.hooks] == ["Scene.Update.Post"]
        assert [r.returncode for r in hook_runs] == [0] and "queued" in hook_runs[0].output
        wait_until(
            lambda: synced_again(plugin_dir / "data", scene.id, queued),
            message="the hook's job to be synced",
        )
        assert len(plex.log.writes()) == plex_writes  # 0 Plex writes from our own writes
        # ... and no second pull: the worker the hook started found the poll not due.
        assert plex.log.count("GET /status/sessions/history/all") == history_reads + 1

        # A later change in Stash reaches Plex once, and the next pull writes nothing.
        queued = generation(plugin_dir / "data", scene.id)
        query = "mutation($input: SceneUpdateInput!) { sceneUpdate(input: $input) { id } }"
        answer = requests.post(
            f"{stash.url}/graphql",
            json={"query": query, "variables": {"input": {"id": str(scene.id), "rating100": 60}}},
            timeout=30,
        )
        assert answer.status_code == 200 and "errors" not in answer.json()
        wait_until(lambda: plex.item(key).user_rating == 6.0, message="6/10 in Plex")
        wait_until(
            lambda: synced_again(plugin_dir / "data", scene.id, queued),
            message="the rating push to finish",
        )
        assert len(plex.log.writes()) == plex_writes + 1
        hooks = len(stash.hooks)

        again = runner.run_task("Pull Plays from Plex", connection)

        assert again.output["plays_added"] == 0
        assert (again.output["ratings_to_stash"], again.output["ratings_to_plex"]) == (0, 0)
        assert again.output["stash_writes"] == 0 and len(stash.hooks) == hooks
        assert len(plex.log.writes()) == plex_writes + 1
        for run in [pulled, again, *hook_runs]:
            assert PLEX_TOKEN not in run.stdout + run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("next_run", ["Sync All Scenes", "Pull Plays from Plex"])
def test_a_pull_killed_before_its_stash_rating_write_loses_no_rating(
    library, runner, plugin_dir, next_run
):
    with running_sandbox(library, plex_token=PLEX_TOKEN, settings=SETTINGS) as (plex, stash, _):
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        sync = runner.run_task("Sync All Scenes", connection)
        assert sync.returncode == 0 and sync.error is None
        wait_until(lambda: idle(plugin_dir / "data"), message="the first sync to finish")
        scene = next(
            s
            for s in library.scenes.values()
            if s.files and s.in_plex and s.rating100 not in (None, 90)
        )
        before = scene.rating100
        key = plex.find_by_file(library.plex_path(scene.files[0].path))
        assert plex.item(key).user_rating == decisions.plex_rating(before)
        plex.rate(key, 9.0)
        held = stash.hold("SceneSetRating")

        # Killed (SIGKILL, as Stash cancels a task) while its rating write is on the way.
        killed = runner.start_task("Pull Plays from Plex", connection)
        wait_until(lambda: stash.count("SceneSetRating") == 1, message="the rating write")
        killed.kill()
        assert killed.wait().returncode == -9
        held.set()
        assert library.scenes[scene.id].rating100 == before

        # Whichever runs next, the scene's sync or a pull, writes the decision to Stash, and
        # nothing puts Stash's old rating back in Plex.
        queued = generation(plugin_dir / "data", scene.id)
        following = runner.run_task(next_run, connection)
        assert following.returncode == 0 and following.error is None
        if next_run == "Sync All Scenes":
            wait_until(
                lambda: synced_again(plugin_dir / "data", scene.id, queued),
                message="the scene's sync",
            )
        else:
            assert following.output["ratings_to_stash"] == 1
        assert library.scenes[scene.id].rating100 == 90
        assert plex.item(key).user_rating == 9.0
        resync = runner.run_task("Sync All Scenes", connection)
        assert resync.returncode == 0
        wait_until(lambda: idle(plugin_dir / "data"), message="the resync to finish")

        again = runner.run_task("Pull Plays from Plex", connection)
        assert again.output["stash_writes"] == 0
        assert library.scenes[scene.id].rating100 == 90 and plex.item(key).user_rating == 9.0
