"""Serve both emulators in their own process, for benchmarks.

Builds the library from the seed (deterministically, so the benchmark process can rebuild
the same one), seeds Plex, applies a latency to every Plex route, prints one JSON line with
the URLs and the Stash server connection, and serves until stdin closes. Latencies: per Plex
read and per Plex write (or one for every route), and per Stash request.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.session import running_sandbox

TOKEN = "bench-plex-token"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=None, help="every Plex route")
    parser.add_argument("--plex-read-ms", type=float, default=2.0)
    parser.add_argument("--plex-write-ms", type=float, default=2.0)
    parser.add_argument("--stash-ms", type=float, default=0.0, help="every Stash query")
    parser.add_argument("--stash-images-ms", type=float, default=None, help="default: stash-ms")
    parser.add_argument("--settings", default="{}", help="plugin settings to add, as JSON")
    parser.add_argument("--traps", action="store_true", help="the library with every trap")
    parser.add_argument(
        "--synced",
        action="store_true",
        help="Plex as a first sync leaves it (sandbox/synced.py; needs skip_poster, skip_art)",
    )
    args = parser.parse_args()
    library = generate_library(args.scenes, seed=args.seed, traps=args.traps)
    settings = json.loads(args.settings)
    with running_sandbox(library, plex_token=TOKEN, settings=settings) as (plex, stash, _):
        if args.latency_ms is not None:
            plex.faults.latency(args.latency_ms / 1000)
        else:  # reads and writes apart: a real Plex writes far slower than it reads
            plex.faults.latency(args.plex_read_ms / 1000, route=r"^GET ")
            plex.faults.latency(args.plex_write_ms / 1000, route=r"^(PUT|POST|DELETE) ")
        if args.synced:
            from stash2plex.sandbox.synced import push_to_plex
            from stash2plex.settings.config import build_config

            push_to_plex(plex, stash, build_config(stash.plugin_settings))
        images = args.stash_ms if args.stash_images_ms is None else args.stash_images_ms
        stash.latency(args.stash_ms / 1000, images=images / 1000)
        print(
            json.dumps(
                {"plex": plex.url, "stash": stash.url, "connection": stash.server_connection()}
            ),
            flush=True,
        )
        sys.stdin.read()  # serve until the benchmark closes our stdin


if __name__ == "__main__":
    main()
