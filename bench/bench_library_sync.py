"""Benchmark: a full first sync and an unchanged re-sync of a generated library.

The emulators run in their own process (bench/serve_sandbox.py) with an injected Plex latency
on every route; the product runs here exactly as the worker runs: store, Stash client,
plexapi transport. The library carries the generator's traps (agent-filled items, stacked
files, NFD and Windows paths...; `--plain` for one without). Reports Plex requests per scene
(fixed costs included), writes on the re-sync, scenes per second and peak memory, against the
targets of the requests budget.

Usage: python bench/bench_library_sync.py [--scenes 2000] [--latency-ms 2] [--plain] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from report import command_line, machine, write_report  # noqa: E402
from stash2plex.engine.context import connect_stash  # noqa: E402
from stash2plex.engine.worker import Worker  # noqa: E402
from stash2plex.operations.queue import queue_all_scenes  # noqa: E402
from stash2plex.sandbox.library import generate_library  # noqa: E402
from stash2plex.sandbox.verify import conflict_scene_ids  # noqa: E402
from stash2plex.store.db import Store  # noqa: E402

TARGETS = {
    "first_requests": 4.0,
    "resync_requests": 0.05,
    "resync_writes": 0.0,
    "scenes_per_second": 30.0,
}
WRITE_METHODS = ("PUT", "POST", "DELETE")


TRAPS = (
    "20 % agent-filled items, freshly scanned scenes, stacked files, NFD folder names, a "
    "Windows Plex with a rule in another case and slash, a deep tag chain, a TV library"
)


def plex_log(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/__sandbox__/log", timeout=30) as response:
        return json.load(response)


def clear_log(url: str) -> None:
    request = urllib.request.Request(f"{url}/__sandbox__/log/clear", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=30).close()


def phase(data_dir: Path, connection: dict, plex_url: str) -> dict:
    clear_log(plex_url)
    with Store.open(data_dir) as store:
        queue_all_scenes(store, connect_stash(store, connection))
    started = time.perf_counter()
    report = Worker(data_dir).run(until_idle=True)
    seconds = time.perf_counter() - started
    entries = plex_log(plex_url)
    processed = report.synced + report.unchanged
    return {
        "synced": report.synced,
        "unchanged": report.unchanged,
        "dead": report.dead_lettered,
        "seconds": seconds,
        "requests": len(entries),
        "writes": sum(1 for entry in entries if entry["method"] in WRITE_METHODS),
        "waiting": report.deferred,
        "skipped": report.skipped,
        "requests_per_scene": len(entries) / max(1, processed),
        "scenes_per_second": processed / seconds,
        "routes": Counter(entry["route"] for entry in entries),
        "unknown": sum(1 for entry in entries if entry["route"] == "UNKNOWN"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--plain", action="store_true", help="a library without the traps")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sync.md")
    args = parser.parse_args()
    server = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "serve_sandbox.py"),
            "--scenes",
            str(args.scenes),
            "--seed",
            str(args.seed),
            "--latency-ms",
            str(args.latency_ms),
            *([] if args.plain else ["--traps"]),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(server.stdout.readline())
        library = generate_library(args.scenes, seed=args.seed, traps=not args.plain)
        conflicts = conflict_scene_ids(library)  # reported and never written, by design
        matchable = sum(
            1 for s in library.scenes.values() if s.files and s.in_plex and s.id not in conflicts
        )
        with tempfile.TemporaryDirectory(prefix="s2p-bench-") as tmp:
            data_dir = Path(tmp)
            first = phase(data_dir, info["connection"], info["plex"])
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            again = phase(data_dir, info["connection"], info["plex"])
            with Store.open(data_dir) as store:
                linked = store.link_count()
                dead = len(store.dead_letters())
    finally:
        server.stdin.close()
        server.wait(30)
    checks = {
        "first sync requests/scene": (first["requests_per_scene"], "≤", TARGETS["first_requests"]),
        "unchanged re-sync requests/scene": (
            again["requests_per_scene"],
            "≤",
            TARGETS["resync_requests"],
        ),
        "unchanged re-sync Plex writes": (again["writes"], "≤", TARGETS["resync_writes"]),
        "first sync scenes/s": (first["scenes_per_second"], "≥", TARGETS["scenes_per_second"]),
    }
    ok = linked == matchable and dead == 0 and first["unknown"] == again["unknown"] == 0
    rows = []
    for name, (value, op, target) in checks.items():
        met = value <= target if op == "≤" else value >= target
        ok &= met
        rows.append(f"| {name} | {value:.3f} | {op} {target:g} | {'yes' if met else 'NO'} |")
    routes = sorted(set(first["routes"]) | set(again["routes"]))
    report = [
        "# Library sync: requests, throughput, memory",
        "",
        f"Command: `{command_line('bench_library_sync.py').strip()}`  ",
        f"Machine: {machine()}. Library: {args.scenes} generated scenes ({matchable} "
        f"matchable in Plex{'' if args.plain else ', with the traps: ' + TRAPS}; "
        f"{len(conflicts)} scenes in conflicts), {args.latency_ms:g} ms injected latency on "
        "every Plex route; the emulators run in their own process.",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
        *rows,
        "",
        f"First sync: {first['synced']} scenes written in {first['seconds']:.1f} s, "
        f"{first['requests']} Plex requests ({first['writes']} writes); {first['skipped']} "
        f"skipped (no file, or no metadata of their own), {first['waiting']} waiting. "
        f"Unchanged re-sync: {again['unchanged']} scenes "
        f"checked in {again['seconds']:.1f} s, {again['requests']} Plex requests "
        f"({again['writes']} writes). Linked "
        f"{linked} of {matchable}; {dead} dead letters. Peak RSS of the benchmark process "
        f"(the worker) after the first sync: {peak_mb:.0f} MB.",
        "",
        "Plex requests by route:",
        "",
        "| route | first sync | re-sync |",
        "|---|---|---|",
        *(f"| `{r}` | {first['routes'].get(r, 0)} | {again['routes'].get(r, 0)} |" for r in routes),
        "",
    ]
    write_report(args.out, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
