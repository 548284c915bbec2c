"""A history checker: did every edit Stash acknowledged reach Plex, through a storm of faults?

The chaos run saves scenes the way a user does (the scene changes in the Stash emulator, then
the plugin's hook runs as Stash runs it; a hook that answered without error *acknowledged* the
edit) while a fault schedule plays: SIGKILLs of the worker (and of the running task, as
Stash's Stop button does) at random points, Plex refusing connections, 503 bursts, dropped
connections, Plex failing only writes, a proxy answering 200 in Plex's place, Stash answering
503, 500 or GraphQL errors. Then the faults stop and, with no further action, the run waits for
the queue to settle.

`classify` then sorts every acknowledged edit as:
- synced: Plex shows the scene's current title;
- waiting: not in Plex, but the scene's job waits with a reason a person can see;
- lost: neither. A correct engine loses nothing.
`compare` checks every matchable scene's fields in Plex against Stash.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash2plex.sandbox.library import SampleLibrary, Scene
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.processes import worker_pids
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.stash_emulator import StashEmulator
from stash2plex.settings.config import build_config
from stash2plex.store.db import Store
from stash2plex.sync.metadata import desired_item

FAULTS = (
    "kill",
    "refuse",
    "burst_503",
    "drop",
    "writes_500",
    "proxy_200",
    "stash_503",
    "stash_500",
    "stash_graphql",
)


@dataclass(frozen=True)
class Acknowledged:
    """An edit whose hook answered without error: Stash told the user it was saved."""

    scene_id: int
    title: str
    at: float


@dataclass
class ChaosReport:
    """What a chaos run did and found."""

    acknowledged: list[Acknowledged] = field(default_factory=list)
    refused_hooks: int = 0  # hooks that answered with an error (not acknowledged)
    faults: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    plex_writes: int = 0
    settle_seconds: float = 0.0
    verdicts: dict[str, list[int]] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    dead_letters: int = 0


def expected_fields(library: SampleLibrary, scene: Scene) -> Any:
    """What Plex must show for a scene, through the product's own rules (default settings)."""
    studio = library.studios.get(scene.studio_id) if scene.studio_id else None
    scene_dict = {
        "id": str(scene.id),
        "title": scene.title,
        "details": scene.details,
        "date": scene.date,
        "studio": {"name": studio.name} if studio else None,
        "files": [{"path": f.path, "basename": f.path.rsplit("/", 1)[-1]} for f in scene.files],
        "performers": [{"name": library.performers[p].name} for p in scene.performer_ids],
        "tags": [{"name": library.tags[t].name} for t in scene.tag_ids],
    }
    return desired_item(scene_dict, build_config({}))


def plex_item_of(plex: PlexEmulator, library: SampleLibrary, scene: Scene) -> Any:
    key = plex.find_by_file(library.plex_path(scene.files[0].path))
    return plex.item(key) if key is not None else None


def classify(
    acknowledged: list[Acknowledged],
    library: SampleLibrary,
    plex: PlexEmulator,
    data_dir: Path,
) -> dict[str, list[int]]:
    """Sort the scenes of acknowledged edits into synced / waiting / lost (see the module)."""
    verdicts: dict[str, list[int]] = {"synced": [], "waiting": [], "lost": []}
    with Store.open(data_dir) as store:
        for scene_id in sorted({edit.scene_id for edit in acknowledged}):
            scene = library.scenes[scene_id]
            item = plex_item_of(plex, library, scene)
            wanted = expected_fields(library, scene).fields.get("title")
            job = store.job(scene_id)
            if item is not None and item.title == wanted:
                verdicts["synced"].append(scene_id)
            elif job is not None and job.state == "waiting" and job.reason:
                verdicts["waiting"].append(scene_id)
            else:
                verdicts["lost"].append(scene_id)
    return verdicts


def compare(library: SampleLibrary, plex: PlexEmulator) -> list[str]:
    """Every field of every matchable scene that Plex shows differently from Stash."""
    problems = []
    for scene in library.scenes.values():
        if not (scene.files and scene.in_plex):
            continue
        item = plex_item_of(plex, library, scene)
        desired = expected_fields(library, scene)
        if item is None:
            problems.append(f"scene {scene.id}: no Plex item")
            continue
        shown = {
            "title": item.title,
            "summary": item.summary or "",
            "studio": item.studio or "",
            "originallyAvailableAt": item.originally_available_at or "",
        }
        for key, value in shown.items():
            if value != desired.fields.get(key, value):
                problems.append(f"scene {scene.id}: {key} {value!r} != {desired.fields[key]!r}")
        if item.genres != list(desired.genres or ()):
            problems.append(f"scene {scene.id}: genres differ")
        if [a.name for a in item.actors] != [a.name for a in desired.actors or ()]:
            problems.append(f"scene {scene.id}: actors differ")
    return problems


class Chaos:
    """Plays a fault schedule against the sandbox while saving scenes through the plugin."""

    def __init__(
        self,
        library: SampleLibrary,
        plex: PlexEmulator,
        stash: StashEmulator,
        runner: PluginRunner,
        connection: dict[str, Any],
        data_dir: Path,
        *,
        seed: int = 1,
    ) -> None:
        self.library, self.plex, self.stash = library, plex, stash
        self.runner, self.connection, self.data_dir = runner, connection, data_dir
        self.rng = random.Random(seed)
        self.report = ChaosReport()
        self._edits = 0
        self._task: Any = None

    def matchable(self) -> list[int]:
        return sorted(s.id for s in self.library.scenes.values() if s.files and s.in_plex)

    def save(self, scene_id: int) -> None:
        """Edit the scene in Stash, then run the hook as Stash does after the edit commits."""
        self._edits += 1
        title = f"Edit {self._edits} of scene {scene_id}"
        self.stash.update_scene(scene_id, title=title)
        run = self.runner.run_hook("Scene.Update.Post", scene_id, self.connection)
        if run.returncode == 0 and run.error is None:
            self.report.acknowledged.append(Acknowledged(scene_id, title, time.time()))
        else:
            self.report.refused_hooks += 1

    def kill_workers(self) -> None:
        """SIGKILL every worker, and the Sync All task if it still runs (Stash's Stop button)."""
        if self._task is not None and self._task.running:
            self._task.kill()
            self.report.kills += 1
        for pid in worker_pids(self.data_dir):
            try:
                os.kill(pid, signal.SIGKILL)
                self.report.kills += 1
            except ProcessLookupError:
                pass

    def fault(self, name: str) -> Callable[[], None]:
        """Start fault `name`; returns the function that ends it."""
        self.report.faults[name] = self.report.faults.get(name, 0) + 1
        faults = self.plex.faults
        if name == "kill":
            self.kill_workers()
            return lambda: None
        if name == "refuse":
            faults.refuse_connections()
            return faults.accept_connections
        if name == "burst_503":
            faults.maintenance(True)
            return lambda: faults.maintenance(False)
        if name == "drop":
            faults.drop_connections(count=self.rng.randint(1, 5))
            return lambda: None
        if name == "writes_500":  # Plex reads fine but fails every edit and upload
            faults.fail(500, route=r"^(PUT|POST) ")
            return faults.clear
        if name == "proxy_200":  # a proxy or portal answers 200 in Plex's place
            faults.fail(200, body="<html><body>Back soon</body></html>", proxy=True)
            return faults.clear
        if name == "stash_503":
            self.stash.fail(503)
            return self.stash.clear
        if name == "stash_500":
            self.stash.fail(500)
            return self.stash.clear
        if name == "stash_graphql":
            self.stash.graphql_error("database is locked")
            return self.stash.clear
        raise ValueError(name)

    def run(
        self,
        *,
        edits: int,
        kills: int,
        other_faults: int,
        fault_seconds: tuple[float, float] = (1.0, 4.0),
        settle_timeout: float = 180.0,
    ) -> ChaosReport:
        """Run "Sync All Scenes", and save `edits` scenes while `kills` SIGKILLs and
        `other_faults` outages happen at random moments; then heal, wait for the queue to settle
        with no further action, and judge."""
        scene_ids = self.matchable()
        self._task = self.runner.start_task("Sync All Scenes", self.connection)
        schedule = ["edit"] * edits + ["kill"] * kills + ["other"] * other_faults
        self.rng.shuffle(schedule)
        writes_before = len(self.plex.log.writes())
        for step in schedule:
            if step == "edit":
                self.save(self.rng.choice(scene_ids))
            elif step == "kill":
                self.fault("kill")
            else:
                name = self.rng.choice(FAULTS[1:])
                end = self.fault(name)
                for _ in range(self.rng.randint(0, 3)):  # users keep saving meanwhile
                    self.save(self.rng.choice(scene_ids))
                time.sleep(self.rng.uniform(*fault_seconds))
                end()
            time.sleep(self.rng.uniform(0.0, 0.3))
        self.plex.faults.clear()
        self.stash.clear()
        if self._task.running:
            self._task.wait(settle_timeout)
        started = time.monotonic()
        self._settle(settle_timeout)
        self.report.settle_seconds = time.monotonic() - started
        self.report.plex_writes = len(self.plex.log.writes()) - writes_before
        self.report.verdicts = classify(
            self.report.acknowledged, self.library, self.plex, self.data_dir
        )
        self.report.mismatches = compare(self.library, self.plex)
        with Store.open(self.data_dir) as store:
            self.report.dead_letters = len(store.dead_letters())
        return self.report

    def _settle(self, timeout: float) -> None:
        """Wait, with no user action, until no job is due or leased any more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with Store.open(self.data_dir) as store:
                counts = store.job_counts()
            busy = counts.get("pending", 0) + counts.get("leased", 0)
            busy += sum(n for k, n in counts.items() if k in ("waiting:retry", "waiting:plex_down"))
            busy += sum(n for k, n in counts.items() if k.startswith("waiting:stash"))
            if busy == 0 and not (self.data_dir / "hooks.spool").exists():
                return
            time.sleep(0.2)
