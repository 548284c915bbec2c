"""Benchmark: how time and memory grow with the library, at 1,000, 10,000 and 100,000 scenes.

For each size, against the emulators in their own process (Plex: 1 ms per request), the worker
runs in a child process of its own (so its peak memory is its own) and measures:
- "Sync All" queueing every scene (a page of ids per transaction);
- the Plex library index built from scratch by paged listing;
- a first sync of the whole library and an unchanged re-sync;
- `queue status` on the resulting store, and the store's size on disk.

Usage: python bench/bench_scale.py [--sizes 1000,10000,100000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from report import command_line, emulators, machine, write_report  # noqa: E402

TARGETS = {
    "enqueue_s_100k": 10.0,
    "index_s_100k": 60.0,
    "resync_s_10k": 10.0,
    "worker_mb_100k": 150.0,
    "store_mb_100k": 150.0,
    "status_s_100k": 0.5,
}


def child(data_dir: Path, connection: dict) -> dict:
    """The worker's side, in this process: every phase timed, peak memory at the end."""
    from stash2plex.engine.context import build_context
    from stash2plex.engine.worker import Worker
    from stash2plex.operations.queue import queue_all_scenes, status_report
    from stash2plex.store.db import Store
    from stash2plex.sync.syncer import PlexIndex

    result: dict = {}
    with Store.open(data_dir) as store:
        context = build_context(store, connection)
        started = time.perf_counter()
        result["queued"] = queue_all_scenes(store, context.stash)
        result["enqueue_s"] = time.perf_counter() - started
        started = time.perf_counter()
        PlexIndex(store, context.plex, context.config).refresh(force=True, full=True)
        result["index_s"] = time.perf_counter() - started
        result["indexed"] = store.index_size()
    started = time.perf_counter()
    first = Worker(data_dir).run(until_idle=True)
    result["first_s"] = time.perf_counter() - started
    result["first_synced"] = first.synced
    with Store.open(data_dir) as store:
        store.enqueue([job.scene_id for job in store.jobs("done")], "re-sync")
    started = time.perf_counter()
    again = Worker(data_dir).run(until_idle=True)
    result["resync_s"] = time.perf_counter() - started
    result["resync_unchanged"] = again.unchanged
    with Store.open(data_dir) as store:
        started = time.perf_counter()
        status_report(store, data_dir)
        result["status_s"] = time.perf_counter() - started
    result["store_mb"] = sum(p.stat().st_size for p in data_dir.glob("stash2plex.db*")) / 2**20
    result["worker_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_size(scenes: int) -> dict:
    with emulators("--scenes", str(scenes), "--plex-read-ms", "1", "--plex-write-ms", "1") as (
        info,
        _,
    ):
        with tempfile.TemporaryDirectory(prefix="s2p-scale-") as tmp:
            out = subprocess.run(
                [sys.executable, __file__, "--child", tmp, json.dumps(info["connection"])],
                check=True,
                capture_output=True,
                text=True,
            )
        return {"scenes": scenes, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(Path(sys.argv[2]), json.loads(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.md")
    args = parser.parse_args()
    results = [run_size(int(size)) for size in args.sizes.split(",")]
    rows = [
        f"| {r['scenes']:,} | {r['enqueue_s']:.1f} s | {r['index_s']:.1f} s | "
        f"{r['first_s']:.0f} s ({r['first_synced'] / r['first_s']:.0f}/s) | "
        f"{r['resync_s']:.1f} s ({r['resync_unchanged'] / r['resync_s']:.0f}/s) | "
        f"{r['status_s'] * 1000:.0f} ms | {r['worker_mb']:.0f} MB | {r['store_mb']:.0f} MB |"
        for r in results
    ]
    checks = []
    ok = True
    for r in results:
        if r["scenes"] == 100_000:
            for key, label in (
                ("enqueue_s", "Sync All enqueue, 100,000 scenes (s)"),
                ("index_s", "index build at 1 ms, 100,000 scenes (s)"),
                ("worker_mb", "worker peak memory, 100,000 scenes (MB)"),
                ("store_mb", "store size, 100,000 scenes (MB)"),
                ("status_s", "queue status, 100,000 rows (s)"),
            ):
                target = TARGETS[f"{key}_100k"]
                met = r[key] <= target
                ok &= met
                checks.append(
                    f"| {label} | {r[key]:.2f} | ≤ {target:g} | {'yes' if met else 'NO'} |"
                )
        if r["scenes"] == 10_000:
            met = r["resync_s"] <= TARGETS["resync_s_10k"]
            ok &= met
            checks.append(
                f"| unchanged re-sync, 10,000 scenes (s) | {r['resync_s']:.2f} | ≤ "
                f"{TARGETS['resync_s_10k']:g} | {'yes' if met else 'NO'} |"
            )
    report = [
        "# Scale: 1,000 to 100,000 scenes",
        "",
        f"Command: `{command_line('bench_scale.py').strip()}`  ",
        f"Machine: {machine()}. Plain generated libraries; Plex emulator 1 ms per request; the "
        "worker in a child process of its own (its peak memory is the worker's).",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
        *checks,
        "",
        "| scenes | Sync All enqueue | index build | first sync | unchanged re-sync | "
        "queue status | worker peak | store |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    write_report(args.out, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
