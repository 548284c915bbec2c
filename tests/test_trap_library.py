"""Acceptance: a generated 400-scene library with every trap, synced the way users sync it.

20 % of the Plex items are agent-filled (some of them for scenes without performers or tags,
some for freshly scanned scenes), Plex runs on Windows and spells a folder in NFD, two pairs of
scenes share a stacked item, a scene's two files are stacked, a five-level tag chain sits under
a tag filter, and a TV library stands next to the movie one. After "Sync All Scenes" every
matchable scene is exactly right on every field (sandbox/verify.py), conflicts and the TV
library are reported and never written, and an unchanged re-sync writes nothing to Plex.
"""

from __future__ import annotations

import pytest

from stash2plex.sandbox.library import DEEP_TAG_CHAIN, TV_SECTION, generate_library
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import SECTION_TITLE, running_sandbox
from stash2plex.sandbox.verify import (
    LEFT_ALONE,
    conflict_scene_ids,
    expected_items,
    library_problems,
)
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN

SETTINGS = {"tag_exclude": DEEP_TAG_CHAIN[0]}  # the root of the five-level chain


@pytest.fixture
def library():
    return generate_library(400, seed=1, traps=True)


def test_every_matchable_scene_is_exactly_right_and_the_rest_is_reported(
    library, plugin_dir, worker_env, tmp_path
):
    # The traps are really there.
    items = library.plex_items()
    assert len(library.agent) >= 0.2 * len(items) - 1
    owners = {f.path: s for s in library.scenes.values() for f in s.files}
    assert any(not owners[p].performer_ids and owners[p].title for p in library.agent)
    assert any(e.state == LEFT_ALONE for e in expected_items(library, SETTINGS).values())
    conflicts = conflict_scene_ids(library)
    assert len(conflicts) >= 2
    leaf = next(t for t in library.tags.values() if t.name == DEEP_TAG_CHAIN[-1])
    assert any(leaf.id in s.tag_ids and s.files for s in library.scenes.values())

    cwd = tmp_path / "stash-cwd"
    cwd.mkdir()
    runner = PluginRunner(plugin_dir, cwd=cwd, env=worker_env)
    settings = {**SETTINGS, "plex_library": f"{SECTION_TITLE}, {TV_SECTION[0]}"}
    with running_sandbox(library, plex_token=PLEX_TOKEN, settings=settings) as (plex, stash, _):
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        before = {key: plex.item(key) for key in plex.items()}

        # A TV library named: reported with the usable libraries, nothing written.
        run = runner.run_task("Sync All Scenes", connection)
        # A failed job in Stash, saying why: a setting to fix.
        assert run.returncode == 1, run.stderr
        reported = [run.error or "", run.output.get("blocked") or ""]
        assert all(f"'{TV_SECTION[0]}' is a TV Shows library" in r for r in reported)
        assert plex.log.writes() == []

        stash.plugin_settings["plex_library"] = SECTION_TITLE
        run = runner.run_task("Sync All Scenes", connection)
        assert run.returncode == 0 and run.error is None, run.stderr
        assert run.output["dead_letters"] == 0

        assert library_problems(plex, library, SETTINGS, before) == {}
        with Store.open(plugin_dir / "data") as store:
            waiting = {j.scene_id: j for j in store.jobs("waiting")}
        assert set(waiting) == conflicts
        assert all(j.reason == "conflict" for j in waiting.values())

        plex.log.clear()
        again = runner.run_task("Sync All Scenes", connection)
        assert again.returncode == 0 and again.error is None, again.stderr
        assert plex.log.writes() == []
        # Decided from the store: the one read is of Plex's libraries, made once for a Sync a
        # person asks for (a library removed and added again is seen by nothing else).
        assert [e.route for e in plex.log.entries] == ["GET /library/sections"]
        assert library_problems(plex, library, SETTINGS, before) == {}
        assert plex.log.unknown() == []
