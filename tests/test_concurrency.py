"""With several scenes written to Plex at once, order still holds where it matters: two edits
of one scene reach Plex in the order they were made, and the last one wins; two scenes of one
Plex item never write at the same time."""

from __future__ import annotations

import threading

from stash2plex.engine.worker import Worker

from .conftest import wait_until
from .sandbox import sandbox

EDIT = "PUT /library/sections/{id}/all"


def test_two_edits_of_one_scene_reach_plex_in_order(tmp_path):
    with sandbox(tmp_path, scenes=30, seed=12) as box:
        box.drain()
        scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex][:12]
        target = scenes[5]
        key = box.rating_key(target)
        box.plex.faults.latency(0.3, route=r"^PUT ")
        before = len(box.plex.log.entries)
        for scene in scenes:
            box.stash.update_scene(scene.id, title=f"First {scene.id}")
        box.queue(*[s.id for s in scenes])
        worker = Worker(box.data_dir)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()

        def writing_target() -> bool:  # the first edit of the target is on its way to Plex
            return any(
                r.route == EDIT and r.query.get("id") == str(key)
                for r in box.plex.log.entries[before:]
            )

        wait_until(writing_target, message="the first edit in flight")
        box.stash.update_scene(target.id, title="Second")
        box.queue(target.id)

        def drained() -> bool:
            with box.store() as store:
                return store.outstanding_jobs() == 0

        wait_until(drained, timeout=60, message="the queue drained")
        worker.request_stop()
        thread.join(10)

        titles = [
            r.query.get("title.value")
            for r in box.plex.log.entries[before:]
            if r.route == EDIT and r.query.get("id") == str(key)
        ]
        assert titles == [f"First {target.id}", "Second"]
        assert box.item(target).title == "Second"
        assert box.plex.max_in_flight > 1, "the scenes were not written concurrently"
