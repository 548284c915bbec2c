"""`stash2plex demo`: a full sync between emulated Stash and Plex servers on loopback.

It runs the product's real path (store, worker, sync, plexapi over HTTP) against the sandbox,
so a new user sees what Stash2Plex does without a Stash or Plex server at hand.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stash2plex.engine.context import connect_stash
from stash2plex.engine.worker import Worker
from stash2plex.operations.present import WAIT_WORDS
from stash2plex.operations.queue import queue_all_scenes
from stash2plex.sandbox.library import TRAPS_MINIMUM, generate_library
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.session import running_sandbox
from stash2plex.sandbox.verify import (
    LEFT_ALONE,
    conflict_scene_ids,
    expected_items,
    library_problems,
)
from stash2plex.store.db import Store
from stash2plex.words import plural

SAMPLE_SIZE = 4
PLEX_TOKEN = "demo-plex-token"


def run_demo(
    *, scenes: int = 300, seed: int = 7, console: Console | None = None, as_json: bool = False
) -> int:
    """Run the demo; returns the process exit code (0 when every matchable scene is exactly
    right in Plex, and what cannot be synced is reported and left unwritten).

    The library carries the situations users meet (see `library.generate_library`'s traps):
    a Windows Plex, NFD paths, agent-filled items, freshly scanned scenes, stacked files.
    `as_json`: print only a JSON summary on stdout (the tables go nowhere).
    """
    if as_json:
        import io

        console = Console(file=io.StringIO())
    console = console or Console()
    library = generate_library(scenes, seed=seed, traps=scenes >= TRAPS_MINIMUM)
    with (
        running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, section_id),
        tempfile.TemporaryDirectory(prefix="stash2plex-demo-") as data_dir,
    ):
        console.print(
            f"[bold]Stash2Plex demo[/]: {len(library.scenes)} scenes in an emulated Stash at "
            f"{stash.url}, {len(plex.items(section_id))} items in an emulated Plex at "
            f"{plex.url}"
        )
        sample = _sample_scene_ids(library)
        before = {sid: _plex_view(plex, library, sid) for sid in sample}
        items_before = {key: plex.item(key) for key in plex.items(section_id)}
        started = time.monotonic()
        report = _sync(Path(data_dir), stash.server_connection(), console)
        elapsed = time.monotonic() - started
        after = {sid: _plex_view(plex, library, sid) for sid in sample}
        _print_sample(console, library, before, after)
        with Store.open(data_dir) as store:
            counts = store.job_counts()
            dead = store.dead_letters()
            linked = store.link_count()
            reported = {job.scene_id for job in store.jobs("waiting") if job.reason == "conflict"}
        problems = library_problems(plex, library, before=items_before)
        expected = expected_items(library)
        conflicts = conflict_scene_ids(library)
        left_alone = sum(1 for e in expected.values() if e.state == LEFT_ALONE)
        matchable = sum(
            1 for s in library.scenes.values() if s.files and s.in_plex and s.id not in conflicts
        )
        requests = len(plex.log.entries)
        unknown = plex.log.unknown()
    waiting = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("waiting:")}
    if as_json:
        import json

        summary = {
            "scenes": len(library.scenes),
            "synced": report.synced,
            "linked": linked,
            "matchable": matchable,
            "skipped": report.skipped,
            "waiting": waiting,
            "dead_letters": len(dead),
            "seconds": round(elapsed, 1),
            "plex_requests_per_scene": round(requests / max(1, report.synced), 2),
            "exactly_right": len(expected) - len(problems),
            "checked": len(expected),
            "conflicts_reported": len(reported),
            "in_sync": not unknown
            and linked >= matchable
            and not dead
            and not problems
            and reported == conflicts,
        }
        print(json.dumps(summary, indent=2))
        return 0 if summary["in_sync"] else 1
    table = Table(title="Summary", show_header=False)
    table.add_row("scenes in Stash", str(len(library.scenes)))
    table.add_row("synced to Plex", f"{report.synced} (linked {linked} of {matchable} matchable)")
    table.add_row(
        "checked field by field",
        f"{len(expected) - len(problems)} of {len(expected)} Plex items exactly right",
    )
    table.add_row("left alone (no metadata of their own yet)", str(left_alone))
    table.add_row("skipped (left alone or no video file)", str(report.skipped))
    table.add_row(
        "conflicts (scenes sharing one Plex item)",
        f"{plural(len(reported), 'scene')} waiting, nothing written to their Plex items",
    )
    table.add_row(
        "waiting", ", ".join(f"{v} {WAIT_WORDS.get(k, k)}" for k, v in waiting.items()) or "0"
    )
    table.add_row("failed (dead letters)", str(len(dead)))
    table.add_row("time", f"{elapsed:.1f} s ({report.synced / max(elapsed, 1e-9):.0f} scenes/s)")
    table.add_row("Plex requests per synced scene", f"{requests / max(1, report.synced):.2f}")
    console.print(table)
    if reported:
        console.print(CONFLICT_WORDS)
    if unknown:
        console.print(f"[red]The Plex emulator saw {len(unknown)} requests to unknown routes[/]")
        return 1
    for path, wrong in list(problems.items())[:5]:
        console.print(f"[red]{path}: {'; '.join(wrong)}[/]")
    if linked < matchable or dead or problems or reported != conflicts:
        console.print("[red]Not every matchable scene is right in Plex.[/]")
        return 1
    console.print("[green]Every matchable scene is in sync.[/]")
    return 0


#: What a conflict is and what to do about it (the demo library holds some on purpose).
CONFLICT_WORDS = (
    "A conflict is one Plex item holding the files of several Stash scenes (Plex stacks "
    "files such as part1/part2, or merges versions into one item). Stash2Plex cannot tell "
    "whose title and details that item should show, so it writes nothing to it and the scenes "
    "wait. To fix one: merge the scenes in Stash if they are one video, or split the item "
    "apart in Plex (the item's ... menu > Split Apart); the scenes then sync by themselves. "
    "The demo library contains a few on purpose."
)


def _sync(data_dir: Path, connection: dict, console: Console):
    with Store.open(data_dir) as store:
        stash = connect_stash(store, connection)
        total = queue_all_scenes(store, stash)
    columns = (TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("sync", total=total)
        worker = Worker(data_dir)
        return worker.run(
            until_idle=True, progress=lambda report: bar.update(task, completed=report.processed)
        )


def _sample_scene_ids(library) -> list[int]:
    """A few scenes with files, preferring ones with a title, details and a studio."""
    rich = [
        s.id
        for s in library.scenes.values()
        if s.files and s.in_plex and s.title and s.details and s.studio_id
    ]
    return rich[:SAMPLE_SIZE]


def _plex_view(plex: PlexEmulator, library, scene_id: int) -> dict[str, str]:
    scene = library.scenes[scene_id]
    rating_key = plex.find_by_file(library.plex_path(scene.files[0].path))
    if rating_key is None:
        return {}
    item = plex.item(rating_key)
    return {
        "title": item.title or "",
        "studio": item.studio or "",
        "date": item.originally_available_at or "",
        "summary": (item.summary or "").split("\n", 1)[0][:40],
    }


def _print_sample(console: Console, library, before: dict, after: dict) -> None:
    table = Table(title="Plex before → after (sample)")
    for column in ("scene", "title", "studio", "date", "summary (first line)"):
        table.add_column(column, overflow="fold")
    for scene_id, was in before.items():
        now = after[scene_id]
        table.add_row(
            str(scene_id),
            f"{was.get('title', '')} → {now.get('title', '')}",
            f"{was.get('studio') or '—'} → {now.get('studio') or '—'}",
            f"{was.get('date') or '—'} → {now.get('date') or '—'}",
            f"{was.get('summary') or '—'} → {now.get('summary') or '—'}",
        )
    console.print(table)
