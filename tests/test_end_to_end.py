"""The whole path, as a user meets it: Stash fires a hook, the plugin runs as Stash runs it, a
detached worker syncs, and the emulated Plex shows the scene's metadata, locked."""

from __future__ import annotations

from pathlib import Path

import pytest

from stash2plex.engine.worker_lock import worker_running
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until

SYNCED_FIELDS = {"title", "summary", "studio", "originallyAvailableAt"}


@pytest.fixture
def library():
    return generate_library(60, seed=3)


@pytest.fixture
def servers(library):
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        yield plex, stash
        assert plex.log.unknown() == [], "the Plex emulator saw requests to unknown routes"


def full_scene(library):
    for scene in library.scenes.values():
        if (
            scene.files
            and scene.in_plex
            and scene.title
            and scene.details
            and "\n" in scene.details
            and scene.studio_id
            and scene.date
            and len(scene.date) == 10
        ):
            return scene
    raise AssertionError("the generated library has no fully described scene")


def rating_key_of(plex, library, scene):
    key = plex.find_by_file(library.plex_path(scene.files[0].path))
    assert key is not None
    return key


def drained(data_dir: Path, scene_id: int) -> bool:
    with Store.open(data_dir) as store:
        job = store.job(scene_id)
        return job is not None and job.state == "done"


def test_hook_reaches_plex_locked_and_an_identical_hook_writes_nothing(
    library, plex, stash, runner, plugin_dir
):
    scene = full_scene(library)
    key = rating_key_of(plex, library, scene)
    connection = stash.server_connection(plugin_dir=str(plugin_dir))

    run = runner.run_hook(
        "Scene.Update.Post",
        scene.id,
        connection,
        input={"id": str(scene.id), "title": scene.title},
        input_fields=["id", "title"],
    )

    assert run.returncode == 0, run.stderr
    assert run.error is None
    assert "queued" in str(run.output)
    assert run.wall_seconds < 5
    wait_until(lambda: plex.item(key).title == scene.title, message="the title in Plex")
    item = plex.item(key)
    studio = library.studios[scene.studio_id].name
    assert item.summary == scene.details.strip()
    assert item.studio == studio
    assert item.originally_available_at == scene.date
    assert set(item.locked) >= SYNCED_FIELDS
    wait_until(lambda: drained(plugin_dir / "data", scene.id), message="the worker to finish")
    writes_before = len(plex.log.writes())

    again = runner.run_hook("Scene.Update.Post", scene.id, connection)

    assert again.returncode == 0 and again.error is None
    wait_until(lambda: drained(plugin_dir / "data", scene.id), message="the second drain")
    assert len(plex.log.writes()) == writes_before
    assert plex.item(key).edit_count == 1


def test_fifty_simultaneous_hooks_leave_fifty_jobs_and_one_worker(
    library, plex, stash, runner, plugin_dir, monkeypatch
):
    scene_ids = sorted(library.scenes)[:50]
    connection = stash.server_connection(plugin_dir=str(plugin_dir))

    handles = [runner.start_hook("Scene.Update.Post", sid, connection) for sid in scene_ids]
    runs = [handle.wait(60) for handle in handles]

    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.error is None

    def recorded() -> list[int]:  # a hook that met a busy store spooled; the worker merges
        with Store.open(plugin_dir / "data") as store:
            return [job.scene_id for job in store.jobs()]

    wait_until(lambda: recorded() == scene_ids, message="every hook's job in the store")
    with Store.open(plugin_dir / "data") as store:
        starts = [e for e in store.recent_events(500) if e["kind"] == "worker_started"]
    assert len(starts) <= 1


def test_malformed_hook_payload_is_reported_and_loses_nothing(stash, runner, plugin_dir):
    connection = stash.server_connection(plugin_dir=str(plugin_dir))
    run = runner.run_hook("Scene.Update.Post", 0, connection)
    assert run.returncode == 1
    assert "without a scene id" in run.error
    assert not (plugin_dir / "data" / "worker.lock").exists() or not worker_running(
        plugin_dir / "data"
    )


def assert_no_secrets(stash, connection, *texts):
    secrets = [PLEX_TOKEN, connection["SessionCookie"]["Value"]]
    if stash.api_key:
        secrets.append(stash.api_key)
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_sync_all_task_reports_progress_and_syncs_every_matchable_scene(
    library, plex, stash, runner, plugin_dir
):
    stash.api_key = "stash-api-key-abcdef"
    connection = stash.server_connection(plugin_dir=str(plugin_dir))

    run = runner.run_task("Sync All Scenes", connection)

    assert run.returncode == 0, run.stderr
    assert run.error is None
    matchable = [s for s in library.scenes.values() if s.files and s.in_plex]
    assert run.output["queued"] == len(library.scenes)
    assert run.output["synced"] == len(matchable)
    assert run.output["dead_letters"] == 0
    assert run.progress and all(0.0 <= p <= 1.0 for p in run.progress)
    assert run.progress[-1] == 1.0
    assert any("synced" in m for m in run.messages("info"))
    for scene in matchable:
        item = plex.item(rating_key_of(plex, library, scene))
        assert item.title == (scene.title or "").strip() or not scene.title
    worker_log = plugin_dir / "data" / "worker.log"
    assert_no_secrets(
        stash,
        connection,
        run.stdout,
        run.stderr,
        worker_log.read_text() if worker_log.exists() else "",
    )

    again = runner.run_task("Process Queue", connection)
    assert again.returncode == 0 and again.error is None
    assert again.output["queue"].get("pending", 0) == 0


def test_scene_destroy_hook_forgets_the_job_and_the_link(library, plex, stash, runner, plugin_dir):
    scene = full_scene(library)
    connection = stash.server_connection(plugin_dir=str(plugin_dir))
    runner.run_hook("Scene.Update.Post", scene.id, connection)
    wait_until(lambda: drained(plugin_dir / "data", scene.id), message="the first sync")
    with Store.open(plugin_dir / "data") as store:
        assert store.link(scene.id) is not None

    run = runner.run_hook(
        "Scene.Destroy.Post",
        scene.id,
        connection,
        input={"id": str(scene.id), "delete_file": False},
    )

    assert run.returncode == 0 and "forgotten" in run.output
    with Store.open(plugin_dir / "data") as store:
        assert store.job(scene.id) is None and store.link(scene.id) is None


def test_preview_sync_task_lists_changes_and_writes_nothing(
    library, plex, stash, runner, plugin_dir
):
    scene = full_scene(library)
    connection = stash.server_connection(plugin_dir=str(plugin_dir))
    writes = len(plex.log.writes())

    run = runner.run_task("Preview Sync", connection, args={"scene_id": scene.id})
    default = runner.run_task("Preview Sync", connection)

    assert run.returncode == 0 and run.error is None
    [preview] = run.output["scenes"]
    assert preview["status"] == "would change"
    title = next(c for c in preview["changes"] if c["field"] == "title")
    assert title["stash"] == scene.title.strip()
    assert any(m.strip().startswith('title: "') and "→" in m for m in run.messages("info"))
    assert default.output["previewed"] == 10
    assert len(plex.log.writes()) == writes
