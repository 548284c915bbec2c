"""A sandbox for sync tests: both emulators, a data directory, and the real worker drained in
this process (the detached worker is covered by the end-to-end tests of the plugin)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash2plex.engine.context import build_context
from stash2plex.engine.worker import DrainReport, Worker
from stash2plex.operations.queue import queue_all_scenes
from stash2plex.sandbox import images
from stash2plex.sandbox.library import SampleLibrary, Scene, generate_library
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.processes import reap_workers
from stash2plex.sandbox.session import running_sandbox
from stash2plex.sandbox.stash_emulator import StashEmulator
from stash2plex.store.db import Store

PLEX_TOKEN = "sandbox-plex-token-42"


def freshly_scanned(**more: Any) -> dict[str, Any]:
    """The fields of a scene with no metadata of its own (just scanned), for `update_scene`."""
    return dict(
        title=None,
        details=None,
        date=None,
        studio_id=None,
        performer_ids=[],
        tag_ids=[],
        group_ids=[],
        **more,
    )


class SteppedClock:
    """Real time plus an offset the test can advance (to reach a timer without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Sandbox:
    library: SampleLibrary
    plex: PlexEmulator
    stash: StashEmulator
    data_dir: Path
    section_id: int

    def settings(self, **changes: Any) -> None:
        """Change plugin settings in Stash (None removes a key, as if never saved)."""
        values = dict(self.stash.plugin_settings)
        for key, value in changes.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        self.stash.plugin_settings = values

    def store(self) -> Store:
        return Store.open(self.data_dir)

    def queue(self, *scene_ids: int) -> None:
        with self.store() as store:
            if scene_ids:
                store.enqueue(list(scene_ids), source="test")
            else:
                queue_all_scenes(store, build_context(store).stash)

    def drain(self, *scene_ids: int) -> DrainReport:
        """Queue the scenes (all when none given) and drain until nothing is due."""
        self.queue(*scene_ids)
        return Worker(self.data_dir).run(until_idle=True)

    def rating_key(self, scene: Scene, file_index: int = 0) -> int:
        key = self.plex.find_by_file(self.library.plex_path(scene.files[file_index].path))
        assert key is not None, f"scene {scene.id} file {file_index} is not in Plex"
        return key

    def item(self, scene: Scene):
        return self.plex.item(self.rating_key(scene))

    def writes(self) -> int:
        return len(self.plex.log.writes())

    def job(self, scene_id: int):
        with self.store() as store:
            return store.job(scene_id)

    def find(self, predicate) -> Scene:
        for scene in self.library.scenes.values():
            if scene.files and scene.in_plex and predicate(scene):
                return scene
        raise AssertionError("no scene in the sample library fits the test")


def cover_sha1(scene: Scene) -> str:
    return hashlib.sha1(images.scene_cover(scene.id, scene.cover_version)).hexdigest()


@contextmanager
def sandbox(
    tmp_path: Path,
    *,
    scenes: int = 40,
    seed: int = 11,
    settings: dict[str, Any] | None = None,
    plex_clock: Any = None,
    stash_clock: Any = None,
    **library_options: Any,
) -> Iterator[Sandbox]:
    library = generate_library(scenes, seed=seed, **library_options)
    with running_sandbox(
        library,
        plex_token=PLEX_TOKEN,
        settings=settings,
        plex_clock=plex_clock,
        stash_clock=stash_clock,
    ) as (
        plex,
        stash,
        section_id,
    ):
        data_dir = tmp_path / "data"
        with Store.open(data_dir) as store:
            store.put_value("server_connection", stash.server_connection())
        try:
            yield Sandbox(library, plex, stash, data_dir, section_id)
        finally:
            # Detached workers a command or task started must not outlive the servers (they
            # would wait an hour for Stash, and load the machine for the tests after).
            reap_workers(data_dir)
        assert plex.log.unknown() == [], "the Plex emulator saw requests to unknown routes"
