"""The hook path's import diet, and its lean writer agreeing with the store's.

A Stash hook blocks the user's Save until its process exits; its budget is three bare
interpreter starts (bench/bench_hook.py measures it). json and sqlite3 take two of those, so
a hook on a store at the current schema must not import pathlib, typing, dataclasses, the
records or `store.db` (plugin/entry.py says why). The hook runs here as Stash runs it, with
`-X importtime` added to list what it imported.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path

import pytest

from stash2plex.engine.worker_lock import open_lock_file, try_lock
from stash2plex.records import BreakerState, Holds, Pause
from stash2plex.store import recording, spool
from stash2plex.store.db import DB_FILENAME, Store
from stash2plex.store.schema import MIGRATIONS

HEAVY = {"typing", "pathlib", "dataclasses", "stash2plex.records", "stash2plex.store.db"}
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ?\s*(\S+)$")


def run_hook(plugin_dir: Path, scene_id: int, trigger: str = "Scene.Update.Post") -> set[str]:
    """One hook process; returns the modules it imported (and checks its answer)."""
    payload = {
        "server_connection": {"Scheme": "http", "Port": 9, "PluginDir": str(plugin_dir)},
        "args": {"hookContext": {"id": scene_id, "type": trigger}},
    }
    env = dict(os.environ, PYTHONPATH=str(plugin_dir.parent))
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(plugin_dir / "stash2plex_plugin.py")],
        input=json.dumps(payload).encode(),
        capture_output=True,
        env=env,
        cwd=plugin_dir.parent,
        timeout=60,
    )
    answer = json.loads(result.stdout)
    assert answer["error"] is None, answer
    lines = result.stderr.decode().splitlines()
    return {match.group(1) for line in lines if (match := _IMPORT_LINE.match(line))}


@pytest.fixture
def worker_lock_held(plugin_dir: Path):
    """A worker 'runs' (its lock is held), so the hooks start none."""
    data = plugin_dir / "data"
    data.mkdir(exist_ok=True)
    fd = open_lock_file(data)
    assert try_lock(fd)
    yield data
    os.close(fd)


def job(data: Path, scene_id: int) -> tuple:
    with Store.open(data) as store:
        row = store._conn.execute(
            "SELECT state, source FROM jobs WHERE scene_id = ?", (scene_id,)
        ).fetchone()
    return tuple(row) if row else ()


def test_a_hook_on_a_current_store_imports_none_of_the_heavy_modules(plugin_dir, worker_lock_held):
    data = worker_lock_held
    first = run_hook(plugin_dir, 1)  # creates the store: that one needs `Store`
    assert "stash2plex.store.db" in first

    for scene_id, trigger in ((2, "Scene.Update.Post"), (3, "Scene.Destroy.Post")):
        imported = run_hook(plugin_dir, scene_id, trigger)
        assert "stash2plex.store.recording" in imported
        assert not imported & HEAVY, sorted(imported & HEAVY)
    imported = run_hook(plugin_dir, 7, "Performer.Destroy.Post")
    assert not imported & HEAVY

    assert job(data, 1) == ("pending", "Scene.Update.Post")
    assert job(data, 2) == ("pending", "Scene.Update.Post")
    with Store.open(data) as store:
        assert store.entity_deletions()[0][:2] == ("performer", 7)


def test_a_hook_on_an_older_or_damaged_store_goes_through_the_store(plugin_dir, worker_lock_held):
    data = worker_lock_held
    conn = sqlite3.connect(data / DB_FILENAME)  # as the previous Stash2Plex left it
    conn.executescript("".join(MIGRATIONS[:-1]) + f"PRAGMA user_version={len(MIGRATIONS) - 1};")
    conn.close()

    imported = run_hook(plugin_dir, 2)

    assert "stash2plex.store.db" in imported  # migrated by Store.open, then recorded
    assert job(data, 2) == ("pending", "Scene.Update.Post")


def stores_side_by_side(tmp_path: Path, pause: Pause | None) -> tuple[Path, Path]:
    """Two stores in the same state: a scene done, one waiting for Plex, the queue paused."""
    folders = (tmp_path / "lean", tmp_path / "store")
    for folder in folders:
        with Store.open(folder, clock=lambda: 100.0) as store:
            store.enqueue([1, 2], "seed")
            store._conn.execute("UPDATE jobs SET state = 'done' WHERE scene_id = 1")
            store._conn.execute(
                "UPDATE jobs SET state = 'waiting', reason = 'not_in_plex', due_at = 900 "
                "WHERE scene_id = 2"
            )
            store.change_holds(lambda holds: (replace(holds, pause=pause), []))
    return folders


def snapshot(folder: Path) -> dict:
    conn = sqlite3.connect(folder / DB_FILENAME)
    try:
        return {
            "jobs": conn.execute("SELECT * FROM jobs ORDER BY scene_id").fetchall(),
            "kv": conn.execute(
                "SELECT key, value FROM kv WHERE key != 'created_at' ORDER BY key"
            ).fetchall(),
            "deletions": conn.execute("SELECT * FROM entity_deletions").fetchall(),
        }
    finally:
        conn.close()


@pytest.mark.parametrize(
    "pause",
    [
        None,
        Pause(kind="plex_auth", message="fix the token", since=50.0, next_check_at=500.0),
        Pause(kind="config", message="fix the library", since=50.0, next_check_at=150.0),
    ],
)
def test_the_lean_writer_writes_what_the_store_writes(tmp_path, pause):
    lean, full = stores_side_by_side(tmp_path, pause)
    connection = {"Scheme": "http", "Port": 9999}
    events = [
        ("scene_dirty", 1, None),
        ("scene_dirty", 2, None),
        ("scene_dirty", 3, None),
        ("entity_deleted", 4, "studio"),
    ]

    for action, object_id, kind in events:
        recorded = recording.record_event(
            lean,
            action,
            object_id,
            source="Hook",
            entity_kind=kind,
            connection=connection,
            busy_timeout=0.5,
            now=200.0,
        )
        with Store.open(full, clock=lambda: 200.0) as store:
            holds = store.record_hook(
                action, object_id, source="Hook", entity_kind=kind, connection=connection
            )
        expected = None if holds.pause is None else (holds.pause.kind, holds.pause.message)
        assert (None if recorded is None else (recorded["kind"], recorded["message"])) == expected

    assert snapshot(lean) == snapshot(full)
    with Store.open(lean) as store:  # done, waiting for a scan and new: all due again
        states = store._conn.execute("SELECT state, reason FROM jobs").fetchall()
    assert [tuple(row) for row in states] == [("pending", None)] * 3


def test_the_lean_writer_leaves_a_store_it_cannot_read_to_the_store(tmp_path):
    with pytest.raises(recording.NeedsStore):  # no store yet
        recording.record_event(
            tmp_path, "scene_dirty", 1, source="x", entity_kind=None, connection=None,
            busy_timeout=0.5, now=1.0,
        )  # fmt: skip
    (tmp_path / DB_FILENAME).write_bytes(b"not a database at all" * 100)
    with pytest.raises(recording.NeedsStore):
        recording.record_event(
            tmp_path, "scene_dirty", 1, source="x", entity_kind=None, connection=None,
            busy_timeout=0.5, now=1.0,
        )  # fmt: skip


def test_a_spooled_deletion_of_a_performer_is_merged(tmp_path):
    spool.append(tmp_path, {"action": "entity_deleted", "id": 7, "entity_kind": "performer"})
    entries, files = spool.take(tmp_path)

    with Store.open(tmp_path) as store:
        assert store.merge_spool(entries) == 1
        assert [row[:2] for row in store.entity_deletions()] == [("performer", 7)]
    spool.discard(files)
    assert not spool.pending(tmp_path)


def test_the_lean_fields_of_the_holds_are_the_records_fields():
    assert {f.name for f in fields(Holds)} == recording.HOLDS_FIELDS
    assert {f.name for f in fields(BreakerState)} == recording.BREAKER_FIELDS
    assert {f.name for f in fields(Pause)} == recording.PAUSE_FIELDS
    required = {f.name for f in fields(Pause) if f.default is MISSING}
    assert required == recording.PAUSE_REQUIRED


PAUSE = {"kind": "config", "message": "Plex has no library named 'Old'", "since": 1.0}


@pytest.mark.parametrize(
    "holds",
    [
        {"breaker": {}, "pause": {**PAUSE, "next_check_at": 9e9, "added_later": 1}},
        {"breaker": {}, "pause": {"kind": "config", "message": "m", "next_check_at": 9e9}},
        {"breaker": {"state": "open", "failures": [[1.0, "x"]]}, "pause": None},
        {"breaker": {"state": "open", "new_field": 1}, "pause": None},
        {"breaker": {"state": "sideways"}, "pause": None},
        {"breaker": {}, "pause": {**PAUSE, "next_check_at": "soon"}},
        {"breaker": {}, "pause": None, "nudged_at": "x"},
    ],
)
def test_holds_the_worker_cannot_read_are_rewritten_as_it_reads_them(tmp_path, holds):
    """A hook never keeps holds `store.holds` reads otherwise (left by a newer version, or
    damaged): the store rewrites them as the worker reads them, so no stale pause lingers."""
    with Store.open(tmp_path) as store:
        store.put_value("holds", holds)
    with pytest.raises(recording.NeedsStore):
        recording.record_event(
            tmp_path, "scene_dirty", 1, source="x", entity_kind=None, connection=None,
            busy_timeout=0.5, now=5.0,
        )  # fmt: skip

    with Store.open(tmp_path, clock=lambda: 5.0) as store:
        read = store.holds()
        store.record_hook("scene_dirty", 1, source="x")
        assert store.holds() == replace(
            read,
            pause=None if read.pause is None else replace(read.pause, next_check_at=5.0),
            nudged_at=5.0,
        )
        assert store.job(1).state == "pending"


# Runs the hook as Stash would (stdin from the parent) and prints the hook's peak memory.
_MEASURED = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], stdin=sys.stdin, capture_output=True)
sys.stderr.buffer.write(run.stderr)
print(run.stdout.decode(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, sep="\\n")
"""


def test_a_save_carrying_a_40_mib_cover_is_queued_without_holding_the_cover(
    plugin_dir, worker_lock_held
):
    # The scene edit form sends the new cover as a data URL in the hook's input.
    cover = "data:image/png;base64," + "iVBORw0K" * (5 * 1024 * 1024)
    payload = (
        '{"server_connection":{"Scheme":"http","Port":9,"PluginDir":'
        + json.dumps(str(plugin_dir))
        + '},"args":{"hookContext":{"id":7,"type":"Scene.Update.Post","input":{"id":"7",'
        + '"cover_image":"'
        + cover
        + '"},"inputFields":["id","cover_image"]}}}'
    ).encode()
    env = dict(os.environ, PYTHONPATH=str(plugin_dir.parent))

    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, sys.executable, str(plugin_dir / "stash2plex_plugin.py")],
        input=payload,
        capture_output=True,
        env=env,
        cwd=plugin_dir.parent,
        timeout=120,
    )

    answer_line, peak_kib = [line for line in result.stdout.decode().splitlines() if line]
    assert json.loads(answer_line)["error"] is None, result.stderr.decode()[-2000:]
    assert job(worker_lock_held, 7) == ("pending", "Scene.Update.Post")
    assert len(payload) > 40 * 1024 * 1024
    assert int(peak_kib) < 25 * 1024, "the hook's memory target is 25 MiB: it held the cover"
