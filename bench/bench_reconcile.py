"""Benchmark: reconciling a large synced library, unchanged and with 1 % drifted in Plex.

The emulators run in their own process (bench/serve_sandbox.py --synced): a generated
library with Plex as a first sync leaves it (sandbox/synced.py, proven equal to a real sync
by tests/test_reconcile_bench_seed.py; covers off). This process records the links a sync
leaves, then runs each reconcile in a fresh child process, exactly as a task or the CLI runs
it, and measures its wall time, its peak memory (the child's own peak RSS) and the requests
each server saw:

1. the first reconcile after the sync (it reads every linked item once, 100 a request);
2. nothing changed since: the steady state of a daily schedule;
3. 1 % of the items edited in Plex (a title each): every one must be found, and the reads
   must grow with the drift, not with the library.

Usage: python bench/bench_reconcile.py [--scenes 100000] [--plex-read-ms 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import sqlite3
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

from report import command_line, emulators, machine, write_report  # noqa: E402

TOKEN = "bench-plex-token"
SETTINGS = {"skip_poster": True, "skip_art": True}
TARGETS = {"seconds": 120.0, "peak_mb": 200.0, "requests_per_100": 1.0}
DRIFT_SHARE = 0.01


def plex_log(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/__sandbox__/log", timeout=120) as response:
        return json.load(response)


def clear_log(url: str) -> None:
    request = urllib.request.Request(f"{url}/__sandbox__/log/clear", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=60).close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_mb() -> float:
    """This process's own peak resident memory (MB). Linux's VmHWM belongs to the process image
    (reset by exec), where `ru_maxrss` keeps the peak of the parent it was forked from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(data_dir: Path) -> None:
    """Run one reconcile as the CLI does and print its report with this process's peak RSS."""
    from stash2plex.engine.context import build_context
    from stash2plex.reconcile.run import run_reconcile
    from stash2plex.store.db import Store

    started = time.perf_counter()
    with Store.open(data_dir) as store:
        report = run_reconcile(build_context(store), trigger="command")
    peak = peak_mb()
    print(
        json.dumps(
            {"report": report.as_dict(), "seconds": time.perf_counter() - started, "peak": peak}
        )
    )


def run_child(data_dir: Path, plex_url: str, serve_pid: int) -> dict:
    clear_log(plex_url)
    cpu_before = cpu_seconds(serve_pid)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    entries = plex_log(plex_url)
    result["emulator_cpu"] = cpu_seconds(serve_pid) - cpu_before
    result["routes"] = Counter(entry["route"] for entry in entries)
    result["plex_seen"] = len(entries)
    return result


def plant_drift(plex_url: str, section_id: int, rating_keys: list[int]) -> None:
    """Edit each item's title in Plex, as a person would in Plex Web (one PUT each)."""
    import requests

    session = requests.Session()
    session.headers["X-Plex-Token"] = TOKEN
    for key in rating_keys:
        response = session.put(
            f"{plex_url}/library/sections/{section_id}/all",
            params={"type": 1, "id": key, "title.value": f"Edited {key}", "title.locked": 1},
            timeout=30,
        )
        response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plex-read-ms", type=float, default=2.0)
    parser.add_argument("--stash-ms", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reconcile.md")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return

    from stash2plex.clients.plex import PlexClient
    from stash2plex.engine.context import connect_stash
    from stash2plex.sandbox.synced import record_links
    from stash2plex.settings.config import build_config
    from stash2plex.store.db import Store

    started = time.perf_counter()
    with emulators(
        *("--scenes", str(args.scenes), "--seed", str(args.seed)),
        *("--plex-read-ms", str(args.plex_read_ms), "--stash-ms", str(args.stash_ms)),
        *("--settings", json.dumps(SETTINGS), "--synced"),
    ) as (urls, server_pid):
        seeded = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            with Store.open(data_dir) as store:
                store.put_value("server_connection", urls["connection"])
                stash = connect_stash(store, urls["connection"])
                config = build_config({**SETTINGS, **stash.plugin_settings("Stash2Plex")})
                plex = PlexClient(urls["plex"], TOKEN)
                linked_started = time.perf_counter()
                linked = record_links(store, stash, plex, config)
                linking = time.perf_counter() - linked_started
                section_id = plex.sections()[0].id
            with contextlib.closing(sqlite3.connect(data_dir / "stash2plex.db")) as db:
                query = "SELECT DISTINCT rating_key FROM links ORDER BY rating_key"
                keys = [row[0] for row in db.execute(query)]
            first = run_child(data_dir, urls["plex"], server_pid)
            time.sleep(3)  # past the second of the last change: checks settle
            quiet = run_child(data_dir, urls["plex"], server_pid)
            drifted = keys[:: int(1 / DRIFT_SHARE)]
            plant_drift(urls["plex"], section_id, drifted)
            time.sleep(3)
            drift = run_child(data_dir, urls["plex"], server_pid)
    lines = render(args, urls, seeded, linking, linked, len(keys), first, quiet, drift, drifted)
    write_report(args.out, lines)


def per_100(result: dict, scenes: int) -> float:
    return 100.0 * result["report"]["plex_requests"]["total"] / scenes


def render(args, urls, seeded, linking, linked, items, first, quiet, drift, drifted) -> list[str]:
    scenes = quiet["report"]["scenes"]
    found = drift["report"]["results"]["drifted"]
    expected_detail = math.ceil(len(drifted) / 100)
    rows = [
        ("unchanged: reconcile time (s)", quiet["seconds"], f"≤ {TARGETS['seconds']:g}"),
        ("unchanged: worker peak memory (MB)", quiet["peak"], f"≤ {TARGETS['peak_mb']:g}"),
        (
            "unchanged: Plex requests per 100 scenes",
            per_100(quiet, scenes),
            f"≤ {TARGETS['requests_per_100']:g}",
        ),
        ("1 % drifted: drifted items found", found, f"= {len(drifted)}"),
        (
            "1 % drifted: item reads (requests)",
            drift["report"]["plex_requests"]["detail"],
            f"= {expected_detail} (the drift / 100)",
        ),
    ]
    met = [
        quiet["seconds"] <= TARGETS["seconds"],
        quiet["peak"] <= TARGETS["peak_mb"],
        per_100(quiet, scenes) <= TARGETS["requests_per_100"],
        found == len(drifted),
        drift["report"]["plex_requests"]["detail"] == expected_detail,
    ]
    lines = [
        "# Reconcile: time, memory and requests at scale",
        "",
        f"Command: `{command_line('bench_reconcile.py')}`  ",
        f"Machine: {machine()}. Library: {args.scenes} generated scenes ({linked} linked to "
        f"{items} Plex items), Plex as a first sync leaves it (covers off), "
        f"{args.plex_read_ms:g} ms injected latency on every Plex read, "
        f"{args.stash_ms:g} ms per Stash query; the emulators run in their own process. Each "
        "reconcile runs in a fresh process, as a task does.",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
    ]
    for (name, value, target), ok in zip(rows, met, strict=True):
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} | {shown} | {target} | {'yes' if ok else 'NO'} |")
    lines += [
        "",
        "| run | seconds | peak MB | Plex requests (listing / item reads / other) | "
        "per 100 scenes | Stash requests | items read | emulators' CPU s | found |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in (
        ("first after the sync", first),
        ("nothing changed", quiet),
        ("1 % drifted in Plex", drift),
    ):
        report = result["report"]
        requests = report["plex_requests"]
        differences = ", ".join(
            f"{n} {k.replace('_', ' ')}" for k, n in report["results"].items() if n
        )
        lines.append(
            f"| {name} | {result['seconds']:.1f} | {result['peak']:.0f} | "
            f"{requests['total']} ({requests['listing']} / {requests['detail']} / "
            f"{requests['other']}) | {per_100(result, report['scenes']):.2f} | "
            f"{report['stash_requests']} | {report['items_read']} | "
            f"{result['emulator_cpu']:.1f} | {differences} |"
        )
    first_per_100 = per_100(first, first["report"]["scenes"])
    lines += [
        "",
        f"Where the time goes: of the unchanged run's {quiet['seconds']:.0f} s, the emulators "
        f"spent {quiet['emulator_cpu']:.0f} s of CPU answering (Stash {scenes} scenes with the "
        "sync's fields, Plex the listing pages); each walk reads its next page while it "
        "handles the current one, so the wall time is near the larger of the two sides, not "
        "their sum. The first reconcile after a sync (or after anything that changed every "
        f"item) reads each linked item once, 100 a request: {first_per_100:.2f} requests per "
        "100 scenes; from then on an item is read again only when its `updatedAt`, its listing "
        "or our push changed.",
        "",
        f"Setup (not measured above): emulators generated and seeded in {seeded:.0f} s; the "
        f"links a sync leaves recorded in {linking:.0f} s.",
        "",
        "Plex requests by route, as the emulator saw them:",
        "",
        "| route | first | nothing changed | 1 % drifted |",
        "|---|---|---|---|",
    ]
    routes = sorted(set(first["routes"]) | set(quiet["routes"]) | set(drift["routes"]))
    for route in routes:
        lines.append(
            f"| `{route}` | {first['routes'].get(route, 0)} | {quiet['routes'].get(route, 0)} "
            f"| {drift['routes'].get(route, 0)} |"
        )
    return lines


if __name__ == "__main__":
    main()
