"""The Stash tasks that show the queue and rewrite Plex, run through the plugin runner: Show
Waiting Scenes, Force Sync All (honouring preserve_plex_edits), and obfuscate_paths covering
the Diagnose task and every record (events, jobs) when paths have spaces."""

from __future__ import annotations

import re

import pytest
import requests

from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN


@pytest.fixture
def env(plugin_dir, worker_env, tmp_path):
    library = generate_library(24, seed=5)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, section_id):
        runner = PluginRunner(plugin_dir, cwd=tmp_path, env=worker_env)
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        yield library, plex, stash, section_id, runner, connection, plugin_dir / "data"


def _key(library, plex, scene) -> int:
    return plex.find_by_file(library.plex_path(scene.files[0].path))


def _edit_title(plex, section_id, rating_key, title) -> None:
    answer = requests.put(
        f"{plex.url}/library/sections/{section_id}/all",
        params={"type": 1, "id": rating_key, "title.value": title, "title.locked": 1},
        headers={"X-Plex-Token": PLEX_TOKEN},
        timeout=10,
    )
    assert answer.status_code == 200


def test_show_waiting_scenes_lists_each_scene_with_why(env):
    library, plex, _stash, _sid, runner, connection, _data_dir = env
    gone = [s for s in library.scenes.values() if s.files and s.in_plex][:2]
    for scene in gone:
        plex.delete_item(_key(library, plex, scene))
    runner.run_task("Sync All Scenes", connection)
    unscanned = [s.id for s in gone]

    run = runner.run_task("Show Waiting Scenes", connection)

    assert run.error is None
    # The first line sums it up: how many, by reason; then one line per scene.
    first = run.messages("info")[0]
    total = run.output["count"]
    assert first.startswith(f"Stash2Plex: {total} scenes not synced yet: "), first
    assert "not in Plex yet" in first and run.output["summary"] in first
    rows = {row["scene_id"]: row for row in run.output["scenes"]}
    assert set(unscanned) <= set(rows)
    row = rows[unscanned[0]]
    assert row["status"] == "not in Plex yet" and "looked for" in row["last_error"]
    prefix = f"Stash2Plex: scene {row['scene_id']}:"
    lines = [m for m in run.messages("info") if m.startswith(prefix)]
    assert lines and "not in Plex yet" in lines[0] and "next:" in lines[0]
    assert not any(re.search(r"\bNone\b|\{'", m) for m in run.messages())


@pytest.mark.parametrize("preserve", [False, True])
def test_force_sync_all_rewrites_plex_edits_unless_preserved(env, preserve):
    library, plex, stash, section_id, runner, connection, _data_dir = env
    if preserve:
        stash.plugin_settings["preserve_plex_edits"] = True
    runner.run_task("Sync All Scenes", connection)
    scene = next(s for s in library.scenes.values() if s.files and s.in_plex and s.title)
    key = _key(library, plex, scene)
    _edit_title(plex, section_id, key, "Edited in Plex")

    runner.run_task("Sync All Scenes", connection)
    assert plex.item(key).title == "Edited in Plex"  # a plain sync never undoes Plex edits
    run = runner.run_task("Force Sync All", connection)

    assert run.error is None, run.error
    expected = "Edited in Plex" if preserve else scene.title.strip()
    assert plex.item(key).title == expected
    assert any("to rewrite in Plex from Stash" in m for m in run.messages("info"))


def test_obfuscate_paths_covers_the_diagnose_task_and_the_records(env):
    library, plex, stash, _sid, runner, connection, data_dir = env
    stash.plugin_settings.update(
        obfuscate_paths=True, trigger_plex_scan=True, path_map="/data/stash => /plex/media"
    )
    spaced = next(
        s for s in library.scenes.values() if s.files and s.in_plex and " " in s.files[0].path
    )
    plex.delete_item(_key(library, plex, spaced))  # waits "not in Plex", asks for a scan
    runner.run_task("Sync All Scenes", connection)
    stash.plugin_settings["path_map"] = "/data/stash/Unsorted => /elsewhere"

    diagnose = runner.run_task("Diagnose", connection)

    names = {
        part
        for scene in library.scenes.values()
        for file in scene.files
        for part in file.path.split("/")[2:]
        if " " in part or "." in part
    }
    texts = [diagnose.stdout, diagnose.stderr]
    with Store.open(data_dir) as store:
        texts += [event["message"] for event in store.recent_events(500)]
        texts += [job.last_error or "" for job in store.jobs()]
        texts += [str(job.detail or "") for job in store.jobs()]
    joined = "\n".join(texts)
    assert "<path-" in joined
    with Store.open(data_dir) as store:
        assert store.job(spaced.id).reason == "not_in_plex"
        assert any(e["kind"] == "scan" for e in store.recent_events(500))
    leaked = sorted(name for name in names if name in joined)
    assert leaked == [], leaked
