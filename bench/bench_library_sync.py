"""Benchmark: a full first sync and an unchanged re-sync of a generated library.

The emulators run in their own process (bench/serve_sandbox.py) with injected latencies: per
Stash query, per Plex read and per Plex write, so the run looks like real servers (a NAS). The
product runs here exactly as the worker runs: store, batched Stash reads, concurrent Plex
writes over plexapi's transport. The library carries the generator's traps (agent-filled items,
stacked files, NFD and Windows paths...; `--plain` for one without).

Reports, for both phases: scenes per second; Plex and Stash requests per scene (fixed costs
included; image downloads counted apart); the worker's own CPU per scene (this process's CPU:
the emulators run elsewhere); where the wall time went (time spent waiting on Plex and on
Stash, summed over threads); peak memory.

Usage: python bench/bench_library_sync.py [--scenes 2000] [--stash-ms 0] [--stash-images-ms 0]
    [--plex-read-ms 2] [--plex-write-ms 2] [--concurrency 4] [--min-scenes-per-second 30]
    [--plain] [--out FILE] [--runs 3] [--profile]

`--profile` (py-spy: `pip install -e ".[bench]"`) adds where the worker's time goes in the
first syncs: its CPU against its waits on Plex and Stash, and the CPU by layer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from report import command_line, emulators, machine, write_report  # noqa: E402
from sampling import MISSING, SAMPLES_PER_SECOND, Samples, py_spy, sampled  # noqa: E402
from stash2plex.clients.http import ServerTransport  # noqa: E402
from stash2plex.engine.context import connect_stash  # noqa: E402
from stash2plex.engine.worker import Worker  # noqa: E402
from stash2plex.operations.queue import queue_all_scenes  # noqa: E402
from stash2plex.sandbox.library import generate_library  # noqa: E402
from stash2plex.sandbox.verify import conflict_scene_ids  # noqa: E402
from stash2plex.store.db import Store  # noqa: E402

TARGETS = {
    "first_requests": 3.0,
    "resync_requests": 0.0,
    "resync_libraries_reads": 3.0,
    "resync_writes": 0.0,
    "stash_requests": 0.1,
    "cpu_ms": 3.0,
}
WRITE_METHODS = ("PUT", "POST", "DELETE")
LIBRARIES_READ = ("GET /", "GET /identity", "GET /library/sections")
TRAPS = (
    "20 % agent-filled items, freshly scanned scenes, stacked files, NFD folder names, a "
    "Windows Plex with a rule in another case and slash, a deep tag chain, a TV library"
)


class Wire:
    """Every HTTP exchange of this process, by server: count and time waited (summed over
    threads). Installed on the clients' transport, so it sees exactly what the product sends."""

    def __init__(self, ports: dict[str, str]) -> None:
        self.ports = ports  # port -> "plex" | "stash"
        self.lock = threading.Lock()
        self.reset()
        original = ServerTransport.request
        wire = self

        def request(transport: Any, method: str, target: str, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(transport, method, target, **kwargs)
            finally:
                url = transport.base_url + target if target.startswith("/") else target
                wire.note(url, time.perf_counter() - started)

        ServerTransport.request = request  # type: ignore[method-assign]

    def reset(self) -> None:
        with self.lock:
            self.counts: Counter[str] = Counter()
            self.seconds: Counter[str] = Counter()

    def note(self, url: str, seconds: float) -> None:
        port = str(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[-1])
        server = self.ports.get(port, "other")
        if server == "stash" and "/graphql" not in url:
            server = "stash images"
        with self.lock:
            self.counts[server] += 1
            self.seconds[server] += seconds


def plex_log(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/__sandbox__/log", timeout=30) as response:
        return json.load(response)


def clear_log(url: str) -> None:
    request = urllib.request.Request(f"{url}/__sandbox__/log/clear", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=30).close()


def usage_now() -> tuple[float, float, int]:
    """This process's user and system CPU seconds, and its voluntary context switches (a
    thread giving up its core: waiting for an answer, a lock, or the GIL)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_nvcsw


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by another process (the emulators), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(
    data_dir: Path,
    connection: dict,
    plex_url: str,
    wire: Wire,
    emulators: int,
    profile: bool = False,
) -> dict:
    clear_log(plex_url)
    with Store.open(data_dir) as store:
        queue_all_scenes(store, connect_stash(store, connection))
    wire.reset()
    with sampled() if profile else contextlib.nullcontext(Samples()) as samples:
        usage, emulator_cpu = usage_now(), process_cpu_seconds(emulators)
        started = time.perf_counter()
        report = Worker(data_dir).run(until_idle=True)
        seconds = time.perf_counter() - started
    user, system, switches = (now - then for now, then in zip(usage_now(), usage, strict=True))
    emulator_cpu = process_cpu_seconds(emulators) - emulator_cpu
    entries = plex_log(plex_url)
    processed = max(1, report.synced + report.unchanged)
    return {
        "synced": report.synced,
        "unchanged": report.unchanged,
        "seconds": seconds,
        "requests": len(entries),
        "writes": sum(1 for entry in entries if entry["method"] in WRITE_METHODS),
        "waiting": report.deferred,
        "skipped": report.skipped,
        "requests_per_scene": len(entries) / processed,
        # A Sync All reads Plex's libraries once, with the connection that takes (a library
        # removed and added again is seen by nothing else when the scenes are unchanged):
        # requests per run, not per scene.
        "libraries_reads": sum(1 for e in entries if e["route"] in LIBRARIES_READ),
        "scene_requests_per_scene": sum(1 for e in entries if e["route"] not in LIBRARIES_READ)
        / processed,
        "stash_per_scene": wire.counts["stash"] / processed,
        "images_per_scene": wire.counts["stash images"] / processed,
        "scenes_per_second": processed / seconds,
        "cpu_ms": 1000 * (user + system) / processed,
        "system_ms": 1000 * system / processed,
        "switches": switches / processed,
        "emulator_cpu_ms": 1000 * emulator_cpu / processed,
        "wait_plex": wire.seconds["plex"],
        "wait_stash": wire.seconds["stash"] + wire.seconds["stash images"],
        "routes": Counter(entry["route"] for entry in entries),
        "unknown": sum(1 for entry in entries if entry["route"] == "UNKNOWN"),
        "samples": samples,
    }


# The three requests a scene with a cover needs: one edit and two image uploads (Plex has no
# call that sets the poster and the background at once).
PER_SCENE_ROUTES = (
    "PUT /library/sections/{id}/all",
    "POST /library/metadata/{id}/posters",
    "POST /library/metadata/{id}/arts",
)


# What the other routes of a first sync are, in words (see `why_missed`).
FIXED_ROUTE_WORDS = {
    "GET /": "the connection",
    "GET /library/sections": "library sections",
    "GET /library/sections/{id}/all": "index listings",
    "GET /library/sections/{id}/collections": "collection lookups",
    "GET /library/metadata/{ids}": "item details read (up to 100 a request)",
}


def idle_cost_factor(wait_seconds: float, rounds: int = 100) -> float:
    """How many times the CPU of one fixed piece of Python work (a JSON round trip, a hash, a
    sort: the kind a sync does per answer) grows when each run of it follows a wait of
    `wait_seconds` instead of the previous run, on this machine (caches and clocks cool down
    while a thread waits). The wait's own cost is measured apart and taken out."""
    tags = [f"t{j}" for j in range(20)]
    data = [{"id": i, "title": f"Scene {i}", "tags": tags} for i in range(50)]

    def work() -> None:
        text = json.dumps(data)
        hashlib.sha1(text.encode()).hexdigest()
        sorted(item["title"] for item in json.loads(text))

    def cpu_per_round(waits: bool, runs_work: bool) -> float:
        started = time.process_time()
        for _ in range(rounds):
            if runs_work:
                work()
            if waits:
                time.sleep(wait_seconds)
        return (time.process_time() - started) / rounds

    back_to_back = min(cpu_per_round(False, True) for _ in range(3))
    after_a_wait = cpu_per_round(True, True) - cpu_per_round(True, False)
    return after_a_wait / back_to_back


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f} to {high:.2f}"


def _met(value: float, op: str, target: float) -> bool:
    return value <= target if op == "≤" else value >= target


def why_missed(
    missed: list[str],
    first: dict[str, Any],
    idle: tuple[float, float] | None = None,
    firsts: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The reasons of the targets missed, from what this run measured. `idle`: the longest
    injected latency (ms) and this machine's `idle_cost_factor` for it; `firsts`: every run's
    first sync."""
    lines = []
    synced = max(1, first["synced"])
    if "first sync Plex requests/scene" in missed:
        per_scene = sum(first["routes"].get(route, 0) for route in PER_SCENE_ROUTES)
        fixed = first["requests"] - per_scene
        fixed_routes = [
            f"{FIXED_ROUTE_WORDS.get(route, f'`{route}`')} {count}"
            for route, count in first["routes"].most_common()
            if route not in PER_SCENE_ROUTES
        ]
        lines.append(
            f"- Plex requests per scene: {per_scene / synced:.2f} go to the scenes' items and "
            f"our collections (an edit, a poster and a background per scene with a cover; Plex "
            f"has no call that sets both images), {fixed / synced:.2f} are fixed costs that do "
            f"not grow with the scenes ({fixed} requests: {', '.join(fixed_routes)})."
        )
    if "worker CPU per scene, first sync (ms)" in missed:
        http = (first["requests"] + first["images_per_scene"] * synced) / synced
        lines.append(
            f"- Worker CPU per scene: a first sync sends {http:.1f} HTTP requests per scene "
            "(Plex writes and cover downloads), each 0.25 to 0.45 ms of CPU in urllib3 and "
            "http.client on this machine, the edit the most (bench/results/http-stack.md: "
            "urllib3 re-checks its long, percent-encoded target byte by byte, and http.client "
            "parses every answer's headers with the e-mail parser). "
            f"{first['system_ms']:.2f} ms of it is the kernel's, with "
            f"{first['switches']:.0f} voluntary context switches per scene: the sync threads "
            "hand the GIL over at every socket call and every SQLite statement (with one "
            "sync thread, `--concurrency 1`, the same sync makes a few switches per scene and "
            "far less kernel time, at half the speed: bench/results/sync-one-thread.md). The "
            "rest is the sync's own work and the store. A busy machine "
            "(other processes on both cores) raises the CPU each scene costs."
        )
        if idle is not None:
            lines.append(
                f"- Latency raises the CPU of the same work: on this machine a fixed piece of "
                f"Python work costs {idle[1]:.1f}× the CPU when it runs after a {idle[0]:g} ms "
                "wait as when it runs back to back (caches and clocks cool down while a thread "
                "waits). Every answer from a slow server is handled after such a wait, so the "
                "same first sync costs more CPU per scene here than with a fast Plex."
            )
        if firsts:
            emulators = _span([f["emulator_cpu_ms"] for f in firsts])
            ratios = _span([f["cpu_ms"] / max(1e-9, f["emulator_cpu_ms"]) for f in firsts])
            lines.append(
                "- The machine's speed: the emulators, doing the same work in every run, took "
                f"{emulators} ms of CPU per scene here, and the worker {ratios} times theirs: "
                "its CPU per scene follows this shared machine's speed at the time, which "
                "changes by half within minutes. Read each run's CPU beside the emulators'."
            )
    return ["Why targets are missed:", "", *lines, ""] if lines else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stash-ms", type=float, default=0.0, help="latency per Stash query")
    parser.add_argument(
        "--stash-images-ms", type=float, default=0.0, help="latency per image Stash serves"
    )
    parser.add_argument("--plex-read-ms", type=float, default=2.0)
    parser.add_argument("--plex-write-ms", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=4, help="plex_max_concurrency")
    parser.add_argument("--min-scenes-per-second", type=float, default=30.0)
    parser.add_argument("--plain", action="store_true", help="a library without the traps")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sync.md")
    parser.add_argument(
        "--runs", type=int, default=3, help="repeat on fresh servers; the targets use medians"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the first syncs with py-spy: where the worker's CPU goes, by layer",
    )
    args = parser.parse_args()
    if args.profile and py_spy() is None:
        parser.error(f"--profile needs py-spy, which {MISSING.removeprefix('py-spy ')}")
    # Measured before the runs, on a quiet machine: with a slow server, how much more CPU the
    # same work costs (reported when the CPU target is missed).
    slowest = max(args.stash_ms, args.stash_images_ms, args.plex_read_ms, args.plex_write_ms)
    idle = (slowest, idle_cost_factor(slowest / 1000)) if slowest >= 10 else None
    runs = [run_once(args) for _ in range(max(1, args.runs))]
    return write_results(args, runs, idle)


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """A first sync and an unchanged re-sync on freshly started emulators."""
    settings = {"plex_max_concurrency": args.concurrency}
    with emulators(
        *("--scenes", str(args.scenes), "--seed", str(args.seed)),
        *("--stash-ms", str(args.stash_ms)),
        *("--stash-images-ms", str(args.stash_images_ms)),
        *("--plex-read-ms", str(args.plex_read_ms)),
        *("--plex-write-ms", str(args.plex_write_ms)),
        *("--settings", json.dumps(settings)),
        *([] if args.plain else ["--traps"]),
    ) as (info, server_pid):
        wire = Wire(
            {info["plex"].rsplit(":", 1)[-1]: "plex", info["stash"].rsplit(":", 1)[-1]: "stash"}
        )
        library = generate_library(args.scenes, seed=args.seed, traps=not args.plain)
        conflicts = conflict_scene_ids(library)  # reported and never written, by design
        matchable = sum(
            1 for s in library.scenes.values() if s.files and s.in_plex and s.id not in conflicts
        )
        with tempfile.TemporaryDirectory(prefix="s2p-bench-") as tmp:
            data_dir = Path(tmp)
            first = phase(
                data_dir, info["connection"], info["plex"], wire, server_pid, args.profile
            )
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            again = phase(data_dir, info["connection"], info["plex"], wire, server_pid)
            with Store.open(data_dir) as store:
                linked = store.link_count()
                dead = len(store.dead_letters())
    return {
        "first": first,
        "again": again,
        "linked": linked,
        "matchable": matchable,
        "conflicts": len(conflicts),
        "dead": dead,
        "peak_mb": peak_mb,
    }


def where_time_goes(runs: list[dict[str, Any]]) -> list[str]:
    """The profile of the first syncs: the wall time against the worker's CPU and its waits,
    and the CPU by layer (py-spy's samples of all runs together)."""
    firsts = [run["first"] for run in runs]
    samples = Samples()
    for first in firsts:
        samples.stacks.update(first["samples"].stacks)
    lines = ["", "## Where the worker's time goes (first sync, all runs)", ""]
    if not samples.total:
        errors = {first["samples"].error for first in firsts} - {None}
        return [*lines, f"Not sampled: {'; '.join(sorted(e for e in errors if e))}."]
    scenes = sum(first["synced"] + first["unchanged"] for first in firsts)
    wall = sum(first["seconds"] for first in firsts)
    cpu = sum(first["cpu_ms"] * (first["synced"] + first["unchanged"]) for first in firsts) / 1000
    plex = sum(first["wait_plex"] for first in firsts)
    stash = sum(first["wait_stash"] for first in firsts)
    per_scene = 1000 * cpu / max(1, scenes)
    lines += [
        "| of the first syncs' wall time | seconds | per scene |",
        "|---|---|---|",
        f"| wall time | {wall:.1f} s | {1000 * wall / max(1, scenes):.2f} ms |",
        f"| the worker's own CPU | {cpu:.1f} s | {per_scene:.2f} ms |",
        f"| waiting on Plex (summed over threads) | {plex:.1f} s "
        f"| {1000 * plex / max(1, scenes):.2f} ms |",
        f"| waiting on Stash (summed over threads) | {stash:.1f} s "
        f"| {1000 * stash / max(1, scenes):.2f} ms |",
        "",
        f"The worker's CPU by layer: {samples.total} samples ({SAMPLES_PER_SECOND} a second) of "
        "the threads "
        "holding the GIL, each counted to the layer of its innermost Python frame (a C call, "
        "such as an SQLite statement, counts to the frame that made it).",
        "",
        "| layer | share of the CPU | ms per scene |",
        "|---|---|---|",
        *(
            f"| {name} | {share:.0%} | {share * per_scene:.2f} |"
            for name, share in samples.by_layer()
        ),
        "",
        "The functions whose own code ran most:",
        "",
        "| function | share of the CPU |",
        "|---|---|",
        *(f"| `{name}` | {share:.1%} |" for name, share in samples.top_functions(12)),
    ]
    return lines


def write_results(
    args: argparse.Namespace, runs: list[dict[str, Any]], idle: tuple[float, float] | None
) -> int:
    """The report: each target against the median of the runs, each run's phases, and the
    details (requests by route) of the run with the median first-sync CPU."""

    def median(phase_name: str, key: str) -> float:
        return statistics.median(run[phase_name][key] for run in runs)

    typical = sorted(runs, key=lambda run: run["first"]["cpu_ms"])[len(runs) // 2]
    first, again = typical["first"], typical["again"]
    linked, matchable, dead = typical["linked"], typical["matchable"], typical["dead"]
    checks = {
        "first sync scenes/s": (
            median("first", "scenes_per_second"),
            "≥",
            args.min_scenes_per_second,
        ),
        "first sync Plex requests/scene": (
            median("first", "requests_per_scene"),
            "≤",
            TARGETS["first_requests"],
        ),
        "first sync Stash requests/scene (plus image downloads)": (
            median("first", "stash_per_scene"),
            "≤",
            TARGETS["stash_requests"],
        ),
        "worker CPU per scene, first sync (ms)": (
            median("first", "cpu_ms"),
            "≤",
            TARGETS["cpu_ms"],
        ),
        "unchanged re-sync Plex requests/scene (except the one read of Plex's libraries)": (
            median("again", "scene_requests_per_scene"),
            "≤",
            TARGETS["resync_requests"],
        ),
        "unchanged re-sync: the read of Plex's libraries, with its connection (requests per run)": (
            median("again", "libraries_reads"),
            "≤",
            TARGETS["resync_libraries_reads"],
        ),
        "unchanged re-sync Plex writes": (median("again", "writes"), "≤", TARGETS["resync_writes"]),
        "unchanged re-sync Stash requests/scene": (
            median("again", "stash_per_scene"),
            "≤",
            TARGETS["stash_requests"],
        ),
    }
    ok = all(
        run["linked"] == run["matchable"]
        and run["dead"] == 0
        and run["first"]["unknown"] == run["again"]["unknown"] == 0
        for run in runs
    )
    rows = []
    for name, (value, op, target) in checks.items():
        met = _met(value, op, target)
        ok &= met
        rows.append(f"| {name} | {value:.3f} | {op} {target:g} | {'yes' if met else 'NO'} |")
    routes = sorted(set(first["routes"]) | set(again["routes"]))
    missed = [name for name, (value, op, target) in checks.items() if not _met(value, op, target)]
    report = [
        "# Library sync: throughput, requests, CPU, memory",
        "",
        f"Command: `{command_line('bench_library_sync.py').strip()}`  ",
        f"Machine: {machine()}. Library: {args.scenes} generated scenes ({matchable} "
        f"matchable in Plex{'' if args.plain else ', with the traps: ' + TRAPS}; "
        f"{typical['conflicts']} scenes in conflicts). Injected latency: Stash "
        f"{args.stash_ms:g} ms per query and {args.stash_images_ms:g} ms per image, Plex "
        f"{args.plex_read_ms:g} ms per read and {args.plex_write_ms:g} ms per write; "
        "`plex_max_concurrency` "
        f"{args.concurrency}. The emulators run in their own process.",
        "",
        (
            f"Each value is the median of {len(runs)} runs, each on freshly started emulators; "
            "the runs are listed below."
            if len(runs) > 1
            else "Each value is from one run on freshly started emulators (`--runs 3` gives "
            "medians, as the committed results use)."
        ),
        "The scenes/s target is this command's `--min-scenes-per-second`; bench/README.md "
        "gives the command of each of the targets this project set itself.",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
        *rows,
        "",
        "| phase | scenes | wall | scenes/s | worker CPU | of it in the kernel | context "
        "switches | emulators' CPU | waiting on Plex | waiting on Stash |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {p['synced'] + p['unchanged']} | {p['seconds']:.1f} s | "
            f"{p['scenes_per_second']:.0f} | {p['cpu_ms']:.2f} ms/scene | "
            f"{p['system_ms']:.2f} ms/scene | {p['switches']:.1f}/scene | "
            f"{p['emulator_cpu_ms']:.2f} ms/scene | {p['wait_plex']:.1f} s | "
            f"{p['wait_stash']:.1f} s |"
            for number, run in enumerate(runs, 1)
            for name, p in (
                (f"first sync (run {number})", run["first"]),
                (f"unchanged re-sync (run {number})", run["again"]),
            )
        ),
        "",
        "Waiting times are summed over the sync threads, so with concurrency they can exceed the "
        "wall time. Context switches are the worker's voluntary ones (a thread waiting for an "
        "answer, a lock or the GIL). The emulators share this machine's two cores with the "
        "worker.",
        "",
        f"Details of run {runs.index(typical) + 1} (the median worker CPU). "
        f"First sync: {first['synced']} scenes written, {first['requests']} Plex requests "
        f"({first['writes']} writes), {first['images_per_scene']:.2f} image downloads per scene; "
        f"{first['skipped']} skipped (no file, or no metadata of their own), {first['waiting']} "
        f"waiting. Unchanged re-sync: {again['unchanged']} scenes checked, {again['requests']} "
        f"Plex requests ({again['writes']} writes). Linked {linked} of {matchable}; {dead} dead "
        f"letters. Peak RSS of the worker after the first sync: {typical['peak_mb']:.0f} MB.",
        "",
        "Plex requests by route:",
        "",
        "| route | first sync | re-sync |",
        "|---|---|---|",
        *(f"| `{r}` | {first['routes'].get(r, 0)} | {again['routes'].get(r, 0)} |" for r in routes),
        "",
        *why_missed(missed, first, idle, [run["first"] for run in runs]),
        *(where_time_goes(runs) if args.profile else []),
    ]
    write_report(args.out, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
