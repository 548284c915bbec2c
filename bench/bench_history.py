"""Benchmark: the history checker at scale — a 1,000-scene library, "Sync All Scenes" and a
stream of user saves while the worker is SIGKILLed 20 times and Plex and Stash fail in every
way (refused connections, 503 bursts, dropped connections, Stash answering 503).

Reports how many acknowledged edits ended synced / visibly waiting / lost, whether Plex equals
Stash, the dead letters, and how long the queue took to settle after the last fault, with the
shipped timers. Emulators run in this process; the plugin and its workers as Stash runs them.

Usage: python bench/bench_history.py [--scenes 1000] [--kills 20] [--edits 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from report import command_line, machine, write_report  # noqa: E402
from stash2plex.sandbox.history import Chaos  # noqa: E402
from stash2plex.sandbox.library import generate_library  # noqa: E402
from stash2plex.sandbox.processes import reap_workers  # noqa: E402
from stash2plex.sandbox.runner import PluginRunner  # noqa: E402
from stash2plex.sandbox.session import running_sandbox  # noqa: E402

TOKEN = "bench-history-token-0123"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "history.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stash2plex-history-"))
    plugin_dir = work / "plugins" / "stash2plex"
    plugin_dir.mkdir(parents=True)
    for name in ("Stash2Plex.yml", "stash2plex_plugin.py"):
        shutil.copy(REPO / name, plugin_dir)
    (plugin_dir / "stash2plex").symlink_to(REPO / "src" / "stash2plex", target_is_directory=True)
    data_dir = plugin_dir / "data"
    library = generate_library(args.scenes, seed=args.seed)
    started = time.monotonic()
    try:
        with running_sandbox(library, plex_token=TOKEN) as (plex, stash, _):
            plex.faults.latency(0.002)
            runner = PluginRunner(plugin_dir, cwd=work)
            connection = stash.server_connection(plugin_dir=str(plugin_dir))
            chaos = Chaos(library, plex, stash, runner, connection, data_dir, seed=args.seed)
            report = chaos.run(
                edits=args.edits,
                kills=args.kills,
                other_faults=args.faults,
                settle_timeout=900,
            )
    finally:
        reap_workers(data_dir)
        shutil.rmtree(work, ignore_errors=True)
    verdicts = {k: len(v) for k, v in report.verdicts.items()}
    lines = [
        "# History checker at scale",
        "",
        f"Command: `{command_line('bench_history.py')}`  ",
        f"Machine: {machine()}",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| scenes | {args.scenes} | |",
        f"| acknowledged edits | {len(report.acknowledged)} (refused hooks: "
        f"{report.refused_hooks}) | |",
        f"| SIGKILL rounds (processes killed) | {args.kills} ({report.kills}) | 20 |",
        f"| other faults | {_faults(report.faults)} | |",
        f"| scenes with acknowledged edits: synced / waiting (visible reason) / lost | "
        f"{verdicts['synced']} / {verdicts['waiting']} / {verdicts['lost']} | lost 0 |",
        f"| scenes where Plex differs from Stash | {len(report.mismatches)} | 0 |",
        f"| dead letters | {report.dead_letters} | 0 |",
        f"| settle time after the last fault | {report.settle_seconds:.1f} s | |",
        f"| Plex writes | {report.plex_writes} | |",
        f"| wall time | {time.monotonic() - started:.0f} s | |",
        "",
    ]
    if report.mismatches:
        lines += ["First differences:", "", *[f"- {m}" for m in report.mismatches[:10]], ""]
    write_report(args.out, lines)
    return 0 if not report.verdicts["lost"] and not report.mismatches else 1


def _faults(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if name != "kill")


if __name__ == "__main__":
    sys.exit(main())
