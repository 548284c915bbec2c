"""Benchmark: what the Plex page in Stash costs, one `runPluginOperation` per view.

Stash runs the whole plugin process for every operation and waits for it (docs/stash-plugin-
protocol.md 1.5), so each case is that whole process, run by the sandbox's PluginRunner exactly
as Stash runs it, on a busy store: 10,000 jobs (pending, waiting for every reason, done),
500 dead letters, 30 outages, 1,000 events. A network guard (sandbox/network_guard.py) makes
every connection attempt fail and records it: the count must be 0.

Budget: under 300 ms per operation, no network request.

Usage: python bench/bench_operation.py [--runs N] [--out bench/results/operation.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from report import command_line, machine, write_report  # noqa: E402
from stash2plex.operations import views  # noqa: E402
from stash2plex.records import Decision  # noqa: E402
from stash2plex.sandbox.network_guard import LOG_ENV, write_guard  # noqa: E402
from stash2plex.sandbox.runner import PluginRunner  # noqa: E402
from stash2plex.store.db import Store  # noqa: E402

BUDGET_MS = 300.0
REASONS = ("retry", "plex_down", "not_in_plex", "ambiguous", "auth")
CASES = {
    "overview": {},
    "outages": {},
    "waiting": {"limit": 50},
    "dead_letters": {"limit": 100},
    "scene": {"scene_id": 4242},
}


def install_plugin(root: Path) -> Path:
    plugin = root / "plugins" / "stash2plex"
    plugin.mkdir(parents=True)
    shutil.copy(REPO / "Stash2Plex.yml", plugin)
    shutil.copy(REPO / "stash2plex_plugin.py", plugin)
    shutil.copytree(REPO / "src" / "stash2plex", plugin / "stash2plex")
    return plugin


def seed(data_dir: Path) -> None:
    with Store.open(data_dir) as store:
        store.enqueue(list(range(1, 10_001)), source="bench")
        now = store.clock()
        jobs = store.jobs()
        for index, job in enumerate(jobs[:4000]):
            reason = REASONS[index % len(REASONS)]
            detail = {"paths": [f"/media/{job.scene_id}.mp4"]}
            store.apply(job, Decision("wait", 1, reason=reason, due_at=now + 3600, detail=detail))
        for job in jobs[4000:7000]:
            store.apply(job, Decision("done", 0, status="synced"))
        for job in jobs[7000:7500]:
            store.apply(
                job, Decision("dead_letter", 1, error_class="permanent", message="bad data")
            )
        for i in range(30):
            start = now - (30 - i) * 86400
            store.record_outage(start, start + 600, 10)
        for i in range(1000):
            store.add_event("info", "bench", f"event {i}")


def connection(plugin: Path) -> dict:
    return {
        "Scheme": "http",
        "Host": "0.0.0.0",
        "Port": 9,  # nothing listens there: a request would fail, and the guard would see it
        "SessionCookie": {"Name": "session", "Value": "bench-cookie"},
        "Dir": str(plugin.parent.parent),
        "PluginDir": str(plugin),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "operation.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="s2p-bench-op-") as tmp:
        root = Path(tmp)
        plugin = install_plugin(root)
        seed(plugin / "data")
        guard = write_guard(root / "guard")
        net_log = root / "network.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
        env.update({"PYTHONPATH": str(guard), LOG_ENV: str(net_log)})
        runner = PluginRunner(plugin, env=env)
        rows = []
        for view, params in CASES.items():
            walls, inner = [], []
            for _ in range(args.runs):
                run = runner.run_task(
                    None,
                    connection(plugin),
                    args={"mode": "operation", "view": view, **params},
                    timeout=30,
                )
                if run.error is not None:
                    raise SystemExit(f"{view}: {run.error}")
                walls.append(run.wall_seconds * 1000)
            with Store.open(plugin / "data") as store:
                for _ in range(args.runs):
                    started = time.perf_counter()
                    views.answer(view, store, plugin / "data", dict(params))
                    inner.append((time.perf_counter() - started) * 1000)
            rows.append((view, statistics.median(walls), max(walls), statistics.median(inner)))
        attempts = net_log.read_text().splitlines() if net_log.exists() else []

    worst = max(row[2] for row in rows)
    lines = [
        "# Stash page operations: one runPluginOperation per view",
        "",
        f"Command: `{command_line('bench_operation.py')}`  ",
        f"Machine: {machine()}, {args.runs} runs per view.  ",
        "Store: 10,000 jobs (4,000 waiting, 3,000 done), 500 dead letters, 30 outages, "
        "1,000 events.  ",
        f"Budget: under {BUDGET_MS:.0f} ms per operation and no network request.",
        "",
        "| view | median process ms | max process ms | median view ms (in process) |",
        "|---|---|---|---|",
        *[f"| {v} | {m:.1f} | {x:.1f} | {i:.2f} |" for v, m, x, i in rows],
        "",
        f"Network connection attempts during all runs: {len(attempts)}.  ",
        f"Within budget: {'yes' if worst < BUDGET_MS and not attempts else 'NO'} "
        f"(slowest run {worst:.1f} ms).",
        "",
        '"process" is the whole plugin run as Stash waits for it (start, read the store, print '
        'the JSON); "view" is the store read alone.',
        "",
    ]
    write_report(args.out, lines)
    return 0 if worst < BUDGET_MS and not attempts else 1


if __name__ == "__main__":
    sys.exit(main())
