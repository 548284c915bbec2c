"""The reconcile and "Sync Recent Scenes" tasks as a user meets them: run as Stash runs a
plugin task (stdin JSON, stderr log lines and progress, stdout result), against the sandbox,
with the detached worker draining what they queue under its shipped timers."""

from __future__ import annotations

import pytest
from plexapi.server import PlexServer

from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.session import running_sandbox
from stash2plex.sandbox.verify import conflict_scene_ids, library_problems
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, wait_until


def idle(data_dir) -> bool:
    """Nothing due (scenes in a conflict wait for a person, on their own timer)."""
    with Store.open(data_dir) as store:
        return store.due_now() == 0


def synced_scenes(library, plex, count: int) -> list:
    conflicts = conflict_scene_ids(library)
    chosen = [
        s
        for s in sorted(library.scenes.values(), key=lambda s: s.id)
        if len(s.files) == 1 and s.in_plex and s.title and s.id not in conflicts
    ]
    return chosen[:count]


@pytest.mark.slow
def test_reconcile_reports_then_repair_brings_plex_back_to_stash(runner, plugin_dir):
    library = generate_library(60, seed=53, traps=True)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        data_dir = plugin_dir / "data"
        sync = runner.run_task("Sync All Scenes", connection)
        assert sync.returncode == 0 and sync.error is None
        wait_until(lambda: idle(data_dir), message="the first sync to finish")
        edited, renamed, deleted = synced_scenes(library, plex, 3)
        edited_key = plex.find_by_file(library.plex_path(edited.files[0].path))
        PlexServer(plex.url, PLEX_TOKEN).fetchItem(edited_key).editTitle("Edited in Plex")
        stash.update_scene(renamed.id, title="Renamed without a hook")
        stash.delete_scene(deleted.id)
        writes = len(plex.log.writes())

        report = runner.run_task("Reconcile with Plex", connection)

        assert report.returncode == 0 and report.error is None, report.stderr
        results = report.output["results"]
        assert (results["drifted"], results["stale"], results["orphan_link"]) == (1, 1, 1)
        assert results["conflict"] == len(conflict_scene_ids(library))
        assert report.output["repaired"] is False and len(plex.log.writes()) == writes
        info = report.messages("info")
        assert any("Plex shows 'Edited in Plex'" in line for line in info), info
        assert any(line.strip().startswith("drifted: 1 scene; repair:") for line in info)
        assert report.progress and report.progress[-1] == 1.0

        repair = runner.run_task("Reconcile and Repair", connection)

        assert repair.returncode == 0 and repair.error is None, repair.stderr
        assert repair.output["repaired"] is True and repair.output["queued"] == 2
        assert repair.output["links_dropped"] == 1
        assert repair.output["drain"]["synced"] == 2
        wait_until(lambda: idle(data_dir), message="the repairs to finish")
        assert library_problems(plex, library) == {}

        last = runner.run_task("Last Reconcile Report", connection)
        assert last.returncode == 0 and last.output["ran"] is True
        assert last.output["trigger"] == "task" and last.output["fix"] is True
        assert last.output["results"]["drifted"] == 1
        again = runner.run_task("Reconcile with Plex", connection)
        assert {k: again.output["results"][k] for k in ("drifted", "stale", "orphan_link")} == {
            "drifted": 0,
            "stale": 0,
            "orphan_link": 0,
        }
        assert plex.item(edited_key).title == edited.title


@pytest.mark.slow
def test_sync_recent_scenes_syncs_exactly_what_changed_since_its_last_run(runner, plugin_dir):
    library = generate_library(40, seed=59)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        data_dir = plugin_dir / "data"
        sync = runner.run_task("Sync All Scenes", connection)
        assert sync.returncode == 0 and sync.error is None
        wait_until(lambda: idle(data_dir), message="the first sync to finish")
        first = runner.run_task("Sync Recent Scenes", connection)
        assert first.returncode == 0 and first.output["queued"] == 0, first.stderr

        a, b = synced_scenes(library, plex, 2)
        stash.update_scene(a.id, title="Changed in Stash A")
        stash.update_scene(b.id, details="Changed in Stash B")
        recent = runner.run_task("Sync Recent Scenes", connection)

        assert recent.returncode == 0 and recent.error is None, recent.stderr
        assert sorted(recent.output["scene_ids"]) == sorted([a.id, b.id])
        assert recent.output["synced"] == 2 and recent.output["unchanged"] == 0
        assert any("queued 2 scenes changed in Stash since" in m for m in recent.messages("info"))
        assert plex.item(plex.find_by_file(library.plex_path(a.files[0].path))).title == (
            "Changed in Stash A"
        )
        again = runner.run_task("Sync Recent Scenes", connection)
        assert again.returncode == 0 and again.error is None, again.stderr
        assert again.output["queued"] == 0 and "synced" not in again.output
        assert any("nothing changed in Stash since" in m for m in again.messages("info"))


@pytest.mark.slow
def test_tasks_when_nothing_changed_a_token_is_wrong_or_a_run_was_killed(runner, plugin_dir):
    from stash2plex.reconcile.run import reconcile_lock

    library = generate_library(40, seed=61, traps=True, not_in_plex_ratio=0.1)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (_plex, stash, _):
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        data_dir = plugin_dir / "data"
        runner.run_task("Sync All Scenes", connection)
        wait_until(lambda: idle(data_dir), message="the first sync to finish")

        quiet = runner.run_task("Sync Recent Scenes", connection)  # scenes wait from before

        assert quiet.returncode == 0 and quiet.error is None, quiet.stderr
        assert any("nothing changed in Stash since" in m for m in quiet.messages("info"))

        stash.plugin_settings = {**stash.plugin_settings, "plex_token": "wrong-token-000"}
        refused = runner.run_task("Sync Recent Scenes", connection)
        assert refused.returncode == 1 and "Plex rejected the token" in (refused.error or "")
        assert "wrong-token-000" not in refused.stdout + refused.stderr
        stash.plugin_settings = {**stash.plugin_settings, "plex_token": PLEX_TOKEN}

        # A reconcile whose process was killed: recorded as running, its lock free.
        with Store.open(data_dir) as store:
            store.reconciliation().start_run("task", True)
        killed = runner.run_task("Last Reconcile Report", connection)
        assert killed.output["state"] == "interrupted"
        assert any("interrupted" in m and "by a Stash task" in m for m in killed.messages("info"))

        with Store.open(data_dir) as store:
            store.reconciliation().start_run("command", False)
            with reconcile_lock(store):
                busy = runner.run_task("Reconcile with Plex", connection)
        assert busy.returncode == 1
        assert busy.error.count("another reconcile is running") == 1
        assert "by the command line" in busy.error
