"""Orphan links (scenes Stash no longer has, still linked to a Plex item), whatever their ids:
the newest scenes deleted, every scene deleted, and a scene that arrives and syncs while the
reconcile walks Stash (never taken for deleted)."""

from __future__ import annotations

from pathlib import Path

from stash2plex.engine.context import build_context
from stash2plex.reconcile.run import ReconcileReport, run_reconcile

from .sandbox import Sandbox, sandbox
from .test_reconcile import new_scene


def linked(box: Sandbox) -> list[int]:
    with box.store() as store:
        return sorted(store.links_of_scenes(list(box.library.scenes)))


def reconcile(box: Sandbox, *, fix: bool = False, progress=None) -> ReconcileReport:
    with box.store() as store:
        return run_reconcile(build_context(store), fix=fix, trigger="command", progress=progress)


def orphans(report: ReconcileReport) -> set[int]:
    return {s["scene_id"] for s in report.samples.get("orphan_link", [])}


def test_the_newest_scenes_deleted_in_stash_are_orphan_links_and_fix_drops_them(
    tmp_path: Path,
) -> None:
    with sandbox(tmp_path, scenes=40, seed=7) as box:
        box.drain()
        ids = linked(box)
        assert len(ids) > 10
        # The two newest linked scenes (no scene after them: the walk ends before their ids)
        # and one in the middle.
        deleted = {ids[-1], ids[-2], ids[len(ids) // 2]}
        with box.store() as store:
            links = sum(len(store.links(scene_id)) for scene_id in deleted)
        for scene_id in deleted:
            box.stash.delete_scene(scene_id)

        report = reconcile(box)

        assert report.results["orphan_link"] == 3
        assert orphans(report) == deleted
        assert report.actions["drop"] == 3

        fixed = reconcile(box, fix=True)
        assert fixed.results["orphan_link"] == 3 and fixed.links_dropped == links
        assert set(linked(box)) == set(ids) - deleted
        assert reconcile(box).results["orphan_link"] == 0


def test_an_empty_stash_makes_every_linked_scene_an_orphan(tmp_path: Path) -> None:
    with sandbox(tmp_path, scenes=30, seed=8) as box:
        box.drain()
        ids = linked(box)
        for scene_id in list(box.library.scenes):
            box.stash.delete_scene(scene_id)

        report = reconcile(box)

        assert report.scenes == 0
        assert report.results["orphan_link"] == len(ids) > 0
        assert "deleted scenes still linked" in report.summary()
        fixed = reconcile(box, fix=True)
        assert fixed.links_dropped >= len(ids) and linked(box) == []


def test_a_scene_synced_while_the_walk_runs_is_not_an_orphan(tmp_path: Path) -> None:
    with sandbox(tmp_path, scenes=30, seed=9) as box:
        box.drain()
        newest = linked(box)[-1]
        box.stash.delete_scene(newest)
        # Its file is in Plex already (the run's listing indexes it); the scene is not in
        # Stash yet, and takes an id after every one Stash ever gave.
        path = "/data/stash/Arrivals/During the walk.mp4"
        box.plex.add_item(box.section_id, box.library.plex_path(path), sizes=734_003_200)
        arrived: list[int] = []

        def progress(fraction: float) -> None:
            # After the walk's last page: the scene created in Stash and synced (as its
            # hook's worker would) before the run looks for orphans.
            if 0.89 < fraction < 1.0 and not arrived:
                scene = new_scene(box, path, id=newest + 1)  # Stash never reuses an id
                arrived.append(scene.id)
                assert box.drain(scene.id).synced == 1

        report = reconcile(box, progress=progress)

        assert arrived and arrived[0] in linked(box)
        assert orphans(report) == {newest}
