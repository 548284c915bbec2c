"""Benchmark: pulling a 10,000-play Plex watch history into Stash, then pulling again.

The emulators run in their own process (bench/serve_sandbox.py) with an injected Plex latency
on every route. Every scene with a file in Plex is linked to its item directly in the store
(the sync itself is measured by bench_library_sync.py), then the history is seeded through the
emulator's control API: `--plays` plays spread over the linked items and two years. The pull
runs here exactly as the worker or the task runs it. Target: the first pull under 30 s; the
second adds nothing.

Usage: python bench/bench_pull.py [--scenes 2000] [--plays 10000] [--latency-ms 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from report import command_line, emulators, machine, write_report  # noqa: E402
from stash2plex.engine.context import build_context  # noqa: E402
from stash2plex.pull.pull import PLAY_LOOKBACK_SECONDS, run_pull  # noqa: E402
from stash2plex.sandbox.library import generate_library  # noqa: E402
from stash2plex.sandbox.plex_emulator import EmulatorControl  # noqa: E402
from stash2plex.store.db import Store  # noqa: E402

TARGET_SECONDS = 30.0
START = 1_650_000_000  # plays spread over two years from here


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--plays", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pull.md")
    args = parser.parse_args()
    with emulators(
        *("--scenes", str(args.scenes), "--seed", str(args.seed)),
        *("--latency-ms", str(args.latency_ms)),
        *("--settings", json.dumps({"pull_plays": True})),
        stop_timeout=30,
    ) as (info, _):
        plex = EmulatorControl(info["plex"], timeout=120)
        library = generate_library(args.scenes, seed=args.seed)
        rng = random.Random(args.seed)
        with tempfile.TemporaryDirectory(prefix="s2p-bench-") as tmp:
            data_dir = Path(tmp)
            links = {}
            with Store.open(data_dir) as store:
                store.put_value("server_connection", info["connection"])
                for scene in library.scenes.values():
                    if not (scene.files and scene.in_plex):
                        continue
                    path = library.plex_path(scene.files[0].path)
                    key = plex.find_by_file(path)
                    if key is not None:
                        store.save_link(scene.id, key, 1, path, {})
                        links[scene.id] = key
            keys = sorted(links.values())
            plays = [
                {"rating_key": rng.choice(keys), "viewed_at": START + rng.randrange(63_072_000)}
                for _ in range(args.plays)
            ]
            for start in range(0, len(plays), 2000):
                plex.plays(plays[start : start + 2000])
            per_scene = Counter(play["rating_key"] for play in plays)
            plex.clear_log()
            runs = []
            for _ in range(2):
                with Store.open(data_dir) as store:
                    context = build_context(store)
                    started = time.perf_counter()
                    report = run_pull(context)
                    runs.append((time.perf_counter() - started, report, plex.log()))
                    plex.clear_log()
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (first_s, first, first_log), (second_s, second, second_log) = runs
    ok = (
        first_s < TARGET_SECONDS
        and first.plays_added == args.plays
        and second.plays_added == 0
        and first.unlinked_plays == 0
    )
    lines = [
        "# Pull from Plex: a 10,000-play watch history into Stash",
        "",
        f"Command: `{command_line('bench_pull.py')}`  ",
        f"Machine: {machine()}. Library: {args.scenes} generated scenes, {len(links)} linked to "
        f"their Plex items; {args.plays} plays spread over {len(per_scene)} of them and two "
        f"years; {args.latency_ms:g} ms injected latency on every Plex route; the emulators run "
        "in their own process.",
        "",
        "| pull | seconds | plays seen | plays added | scenes written | Plex requests "
        "| Stash writes | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| first | {first_s:.2f} | {first.plays_seen} | {first.plays_added} | "
        f"{first.scenes_played} | {len(first_log)} | {first.stash_writes} "
        f"| < {TARGET_SECONDS:g} s | {'yes' if first_s < TARGET_SECONDS else 'NO'} |",
        f"| again | {second_s:.2f} | {second.plays_seen} | {second.plays_added} | "
        f"{second.scenes_played} | {len(second_log)} | {second.stash_writes} | adds 0 | "
        f"{'yes' if second.plays_added == 0 else 'NO'} |",
        "",
        "Plex requests of the first pull by route: "
        + ", ".join(f"`{r}` {n}" for r, n in sorted(Counter(e["route"] for e in first_log).items()))
        + ". The second pull reads the history from the watermark minus the "
        + f"{PLAY_LOOKBACK_SECONDS / 86400:g}-day look-back (plays Plex reports late). "
        f"Peak RSS of the benchmark process: {peak_mb:.0f} MB.",
        "",
    ]
    write_report(args.out, lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
