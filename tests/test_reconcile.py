"""Reconciliation over the sandbox: every class planted in a synced library is counted exactly,
a repair brings every matchable scene back to exactly what Stash says (checked by the
independent oracle in sandbox/verify.py), and the next reconcile finds nothing to repair.
Reads cost what changed, not the library."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from plexapi.server import PlexServer

from stash2plex.engine.context import build_context
from stash2plex.engine.worker import Worker
from stash2plex.operations import views
from stash2plex.reconcile.run import ReconcileReport, run_reconcile
from stash2plex.sandbox.library import Scene, VideoFile
from stash2plex.sandbox.verify import conflict_scene_ids, library_problems, own_metadata
from stash2plex.store.db import Store

from .sandbox import PLEX_TOKEN, Sandbox, SteppedClock, sandbox

REPAIRABLE = ("never_synced", "stale", "drifted", "link_broken", "orphan_link")


def reconcile(box: Sandbox, *, fix: bool = False) -> ReconcileReport:
    with box.store() as store:
        return run_reconcile(build_context(store), fix=fix, trigger="command")


def pick(box: Sandbox, used: set[int], test: Any = lambda s: True) -> Scene:
    """A synced scene with one file and metadata of its own, not in a trap, not used yet."""
    conflicts = conflict_scene_ids(box.library)
    scene = box.find(
        lambda s: (
            s.id not in used
            and s.id not in conflicts
            and len(s.files) == 1
            and own_metadata(s)
            and test(s)
        )
    )
    used.add(scene.id)
    return scene


def new_scene(box: Sandbox, path: str, **fields: Any) -> Scene:
    """A scene Stash got while Stash2Plex was not watching (no hook reached us); `id` by
    default the next after the scenes Stash has now."""
    library = box.library
    scene_id = fields.pop("id", max(library.scenes) + 1)
    file_id = max(f.id for s in library.scenes.values() for f in s.files) + 1
    template = library.scenes[min(library.scenes)]
    scene = dataclasses.replace(
        template,
        id=scene_id,
        title=fields.pop("title", f"Arrived unseen {scene_id}"),
        files=[VideoFile(file_id, path, 734_003_200, 612.5)],
        **fields,
    )
    with box.stash._lock:
        library.scenes[scene_id] = scene
    return scene


def plant_every_class(box: Sandbox, clock: SteppedClock) -> dict[str, Any]:
    """Change Stash and Plex behind the plugin's back, one way per class; returns who is who."""
    library, plex = box.library, box.plex
    server = PlexServer(plex.url, PLEX_TOKEN)
    used: set[int] = set()
    planted: dict[str, Any] = {}
    clock.offset += 60
    # Drift in Plex: a title edited, a summary an agent refresh replaced after it was
    # unlocked, a genre removed (the last one: listings show only the first two).
    edited = pick(box, used)
    server.fetchItem(box.rating_key(edited)).editTitle("Edited in Plex")
    refreshed = pick(box, used, lambda s: bool((s.details or "").strip()))
    item = server.fetchItem(box.rating_key(refreshed))
    item.edit(**{"summary.locked": 0})
    item.refresh()
    degenred = pick(box, used, lambda s: len(s.tag_ids) >= 3)
    item = server.fetchItem(box.rating_key(degenred))
    removed = item.genres[-1].tag
    item.removeGenre(removed)
    planted["drifted"] = {edited.id: "title", refreshed.id: "summary", degenred.id: "genre"}
    # Plex lost an item and re-added the file under a new ratingKey.
    readded = pick(box, used)
    old_key = box.rating_key(readded)
    plex.delete_item(old_key)
    new_key = plex.add_item(
        box.section_id,
        library.plex_path(readded.files[0].path),
        sizes=readded.files[0].size,
    )
    planted["link_broken"] = (readded.id, old_key, new_key)
    # Stash: a scene edited without a hook, one deleted, two merged.
    stale = pick(box, used)
    box.stash.update_scene(stale.id, title="Renamed while nobody watched")
    deleted = pick(box, used)
    box.stash.delete_scene(deleted.id)
    destination, source = pick(box, used), pick(box, used)
    box.stash.merge_scenes(destination.id, [source.id])
    planted["stale"] = {stale.id, destination.id}
    planted["orphan_link"] = {deleted.id, source.id}
    # A scene that arrived unseen, its file in Plex; and one whose file name is in Plex
    # twice, in other folders with the same size, while its own path is not.
    fresh = new_scene(box, "/data/stash/Arrivals/Unseen arrival.mp4")
    plex.add_item(box.section_id, library.plex_path(fresh.files[0].path), sizes=734_003_200)
    planted["never_synced"] = {fresh.id}
    twin = new_scene(box, "/data/stash/Arrivals/Twin take.mp4")
    twin.in_plex = False  # its own path is not in Plex: not matchable
    for folder in ("Copies A", "Copies B"):
        plex.add_item(box.section_id, f"M:\\{folder}\\Twin take.mp4", sizes=734_003_200)
    planted["ambiguous"] = {twin.id}
    clock.offset += 60
    return planted


def expected_counts(box: Sandbox, planted: dict[str, Any]) -> dict[str, int]:
    library = box.library
    with_files = [s for s in library.scenes.values() if s.files]
    not_in_plex = {s.id for s in with_files if not s.in_plex} - planted["ambiguous"]
    conflicts = conflict_scene_ids(library)
    counts = {
        "never_synced": 1,
        "stale": 2,
        "drifted": 3,
        "link_broken": 1,
        "orphan_link": 2,
        "not_in_plex": len(not_in_plex),
        "ambiguous": 1,
        "conflict": len(conflicts),
    }
    differing = sum(n for kind, n in counts.items() if kind != "orphan_link")
    without_file = len(library.scenes) - len(with_files)
    return {
        "in_sync": len(with_files) - differing,
        "kept": 0,
        **counts,
        "without_file": without_file,
    }


@pytest.mark.slow
def test_every_class_is_counted_exactly_then_repaired_and_gone(tmp_path: Path) -> None:
    clock = SteppedClock()
    with sandbox(
        tmp_path, scenes=160, seed=23, traps=True, not_in_plex_ratio=0.03, plex_clock=clock
    ) as box:
        box.drain()
        planted = plant_every_class(box, clock)
        writes = box.writes()

        report = reconcile(box)

        assert report.state == "done"
        assert report.results == expected_counts(box, planted)
        assert box.writes() == writes, "a reconcile without --fix writes nothing to Plex"
        samples = {k: {s["scene_id"]: s for s in found} for k, found in report.samples.items()}
        for scene_id, field in planted["drifted"].items():
            assert samples["drifted"][scene_id]["fields"] == [field]
        edited = next(i for i, field in planted["drifted"].items() if field == "title")
        assert "Plex shows 'Edited in Plex'" in samples["drifted"][edited]["detail"]
        scene_id, old_key, new_key = planted["link_broken"]
        broken = samples["link_broken"][scene_id]["detail"]
        assert f"item {old_key} is gone" in broken and f"now Plex item {new_key}" in broken
        assert set(samples["orphan_link"]) == planted["orphan_link"]
        assert set(samples["stale"]) == planted["stale"]
        assert set(samples["never_synced"]) == planted["never_synced"]
        assert set(samples["ambiguous"]) == planted["ambiguous"]
        assert report.actions["rewrite"] == 3 and report.actions["drop"] == 2
        assert not report.repaired and report.queued == 0

        fixed = reconcile(box, fix=True)
        assert fixed.results == report.results
        # never synced, stale, drifted, link broken; scenes not in Plex already wait for it.
        assert fixed.repaired and fixed.queued == 1 + 2 + 3 + 1
        assert fixed.actions["waiting"] == report.results["not_in_plex"]
        Worker(box.data_dir).run(until_idle=True)

        assert library_problems(box.plex, box.library) == {}
        clock.offset += 60
        again = reconcile(box)
        assert {kind: again.results[kind] for kind in REPAIRABLE} == dict.fromkeys(REPAIRABLE, 0)
        for kind in ("not_in_plex", "ambiguous", "conflict"):  # they need Plex's scan or you
            assert again.results[kind] == report.results[kind]
        with box.store() as store:  # the Plex page and the dashboard show the last run
            shown = views.overview(store, box.data_dir, {})["reconcile"]
        assert shown["ran"] is True and shown["results"] == again.results
        assert shown["trigger"] == "command" and shown["state"] == "done"
        assert shown["summary"] == again.summary()


@pytest.mark.slow
def test_reads_grow_with_what_changed_in_plex_not_with_the_library(tmp_path: Path) -> None:
    clock = SteppedClock()
    with sandbox(tmp_path, scenes=150, seed=29, traps=True, plex_clock=clock) as box:
        box.drain()
        clock.offset += 60
        first = reconcile(box)  # the first run reads every linked item once
        linked = first.items_read
        assert linked > 100 and first.plex_requests["detail"] == -(-linked // 100)

        clock.offset += 60
        quiet = reconcile(box)
        assert quiet.items_read == 0 and quiet.plex_requests["detail"] == 0
        assert quiet.plex_requests["total"] == quiet.plex_requests["listing"] + 1  # + connect
        assert quiet.results == first.results

        used: set[int] = set()
        server = PlexServer(box.plex.url, PLEX_TOKEN)
        drifted = [pick(box, used) for _ in range(4)]
        for scene in drifted:
            server.fetchItem(box.rating_key(scene)).editTitle(f"Edited {scene.id}")
        clock.offset += 60
        found = reconcile(box)
        assert found.items_read == 4 and found.plex_requests["detail"] == 1
        assert found.results["drifted"] == 4


def test_a_scene_with_a_pushed_field_switched_off_is_not_drifted(tmp_path: Path) -> None:
    clock = SteppedClock()
    with sandbox(tmp_path, scenes=40, seed=31, plex_clock=clock) as box:
        box.drain()
        scene = pick(box, set())
        server = PlexServer(box.plex.url, PLEX_TOKEN)
        server.fetchItem(box.rating_key(scene)).editTitle("Mine now")
        clock.offset += 60
        assert reconcile(box).results["drifted"] == 1
        box.settings(skip_title=True)
        assert reconcile(box).results["drifted"] == 0


def test_preserve_plex_edits_reports_drift_and_repairs_leave_it(tmp_path: Path) -> None:
    clock = SteppedClock()
    with sandbox(
        tmp_path, scenes=40, seed=37, settings={"preserve_plex_edits": True}, plex_clock=clock
    ) as box:
        box.drain()
        scene = pick(box, set())
        key = box.rating_key(scene)
        PlexServer(box.plex.url, PLEX_TOKEN).fetchItem(key).editTitle("Kept in Plex")
        clock.offset += 60
        report = reconcile(box, fix=True)
        # Kept on purpose: shown as such, and no difference that needs a repair or attention.
        assert report.results["kept"] == 1 and report.results["drifted"] == 0
        assert report.actions == {"keep": 1} and report.differences == 0
        assert report.queued == 0 and report.attention == 0
        assert "1 kept (preserve_plex_edits)" in report.summary()
        Worker(box.data_dir).run(until_idle=True)
        assert box.plex.item(key).title == "Kept in Plex"


def queue_recent_now(box: Sandbox, since: float | None = None) -> Any:
    from stash2plex.reconcile.recent import queue_recent

    with box.store() as store:
        return queue_recent(store, build_context(store).stash, since=since)


def test_sync_recent_queues_exactly_the_scenes_changed_since_the_last_run(tmp_path: Path):
    with sandbox(tmp_path, scenes=40, seed=41) as box:
        box.drain()
        first = queue_recent_now(box)
        assert first.first_run and first.queued == 0  # nothing changed since the last sync
        a, b, c = (pick(box, set(), lambda s, i=i: s.id % 3 == i) for i in range(3))
        box.stash.update_scene(a.id, title="Edited A")
        box.stash.update_scene(b.id, details="Edited B")

        second = queue_recent_now(box)
        assert sorted(second.scene_ids) == sorted([a.id, b.id])
        report = Worker(box.data_dir).run(until_idle=True)
        assert report.synced == 2 and box.item(a).title == "Edited A"

        assert queue_recent_now(box).queued == 0  # the same second is not queued twice
        box.stash.update_scene(c.id, title="Edited C")  # maybe within that very second
        assert queue_recent_now(box).scene_ids == [c.id]
        # An explicit time goes back further, and leaves the mark where it was.
        assert sorted(queue_recent_now(box, since=0.0).scene_ids) == sorted(
            s.id for s in box.library.scenes.values()
        )
        assert queue_recent_now(box).queued == 0


@pytest.mark.slow
def test_the_worker_reconciles_on_its_own_clock(tmp_path: Path) -> None:
    from stash2plex.store.db import CREATED_AT_KEY

    with sandbox(tmp_path, scenes=30, seed=43) as box:
        box.drain()
        box.settings(reconcile_interval="hourly")
        with box.store() as store:
            created = float(store.get_value(CREATED_AT_KEY))

        class Clock:
            now = created

            def __call__(self) -> float:
                return self.now

            def sleep(self, seconds: float) -> None:
                self.now += seconds

        clock = Clock()

        def drain_at(seconds: float) -> list[dict]:
            clock.now = created + seconds
            Worker(box.data_dir, clock=clock, sleep=clock.sleep).run(until_idle=True)
            with box.store() as store:
                return store.reconciliation().runs(10)

        scene = pick(box, set())
        key = box.rating_key(scene)
        PlexServer(box.plex.url, PLEX_TOKEN).fetchItem(key).editTitle("Edited in Plex")
        assert drain_at(3599) == []
        runs = drain_at(3600)
        assert [(r["trigger"], r["fix"], r["state"]) for r in runs] == [("schedule", True, "done")]
        assert runs[0]["results"]["drifted"] == 1
        assert box.plex.item(key).title == box.library.scenes[scene.id].title  # repaired
        assert len(drain_at(3600 + 1800)) == 1
        assert len(drain_at(7200)) == 2


@pytest.mark.slow
def test_when_plex_recovers_the_changes_made_during_the_outage_are_reconciled(tmp_path: Path):
    from stash2plex.operations.queue import outage_report

    from . import seeding

    clock = SteppedClock()
    with sandbox(tmp_path, scenes=40, seed=47, plex_clock=clock, stash_clock=clock) as box:
        box.drain()
        used: set[int] = set()
        unhooked, hooked, failed = pick(box, used), pick(box, used), pick(box, used)
        box.plex.faults.refuse_connections()
        trigger = pick(box, used)
        box.stash.update_scene(trigger.id, title="The edit that finds Plex down")
        box.queue(trigger.id)
        clock.offset += 30  # saved before the outage began: not one of its changes
        for _ in range(3):
            Worker(box.data_dir, clock=clock).run(until_idle=True)
            clock.offset += 60
        with Store.open(box.data_dir, clock=clock) as store:
            assert store.holds().breaker.state != "closed"
            # While Plex is down: a scene saved (its hook queues it), one changed in Stash
            # without a hook (a merge, a scan, the plugin switched off), and a job that used
            # up its attempts.
            box.stash.update_scene(hooked.id, title="Saved during the outage")
            store.enqueue([hooked.id], source="hook")
            box.stash.update_scene(unhooked.id, title="Changed without a hook")
            store.enqueue([failed.id], source="test")
            seeding.dead(
                store, store.job(failed.id), error_class="transient", message="timeout", attempts=5
            )
        clock.offset += 60
        box.plex.faults.accept_connections()
        for _ in range(3):
            Worker(box.data_dir, clock=clock).run(until_idle=True)
            clock.offset += 60

        assert box.item(unhooked).title == "Changed without a hook"
        assert box.item(hooked).title == "Saved during the outage"
        with box.store() as store:
            last = outage_report(store)["recent"][-1]
            runs = store.reconciliation().runs(5)
            assert store.dead_letters() == []
        assert last["ended_at"] is not None
        assert {k: v for k, v in last["reconciled"].items() if k != "at"} == {
            "changed_in_stash": 2,
            "already_queued": 1,
            "failed_jobs_requeued": 1,
            "queued": 3,
        }
        assert runs[0]["trigger"] == "outage"


def test_a_linked_item_the_listing_missed_is_read_not_taken_for_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stash2plex.clients.plex import PlexClient

    clock = SteppedClock()
    with sandbox(tmp_path, scenes=40, seed=67, plex_clock=clock) as box:
        box.drain()
        scene = pick(box, set())
        key = box.rating_key(scene)
        PlexServer(box.plex.url, PLEX_TOKEN).fetchItem(key).editTitle("Edited in Plex")
        clock.offset += 60
        listing_pages = PlexClient.listing_pages

        def shifted(self, section_id, page_size=500):
            # An item added or deleted while the pages are read moves one across an edge.
            for page in listing_pages(self, section_id, page_size):
                yield [item for item in page if item.rating_key != key]

        monkeypatch.setattr(PlexClient, "listing_pages", shifted)
        report = reconcile(box)
        assert report.results["drifted"] == 1 and report.results["link_broken"] == 0
        assert report.items_gone == 0
        with box.store() as store:
            assert store.item_files(key)  # put back into the index


def test_a_reconcile_stopped_by_ctrl_c_is_recorded_as_interrupted_not_done(tmp_path: Path):
    # Ctrl-C raises KeyboardInterrupt in the middle of the walk: the run must not read as a
    # clean result ("done, 0 scenes, nothing to repair") in place of the last real report.
    from stash2plex.reconcile.run import last_run

    def ctrl_c(fraction: float) -> None:
        if fraction > 0:
            raise KeyboardInterrupt

    with sandbox(tmp_path, scenes=20) as box, box.store() as store:
        with pytest.raises(KeyboardInterrupt):
            run_reconcile(build_context(store), trigger="command", progress=ctrl_c)
        run = last_run(store)
    assert run is not None and run["state"] == "interrupted"
    assert run["report"]["state"] == "interrupted"
    assert "interrupted" in run["report"]["summary"]
