"""What every benchmark report shares: the machine line and writing the markdown."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SERVE_SANDBOX = Path(__file__).resolve().parent / "serve_sandbox.py"
# What the benchmarks need besides the standard library: the package's dependencies and the
# sandbox's (`pip install -e ".[sandbox]"`, which the README's install command does).
NEEDED = ("plexapi", "requests", "urllib3", "certifi", "graphql", "yaml")


def require_environment() -> None:
    """Stop with a sentence, not a hang, when this Python lacks what the benchmarks import
    (the worker would otherwise retry a missing plexapi every few seconds, for ever)."""
    import importlib.util

    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"{Path(sys.argv[0]).name}: this Python ({sys.executable}) lacks "
            f"{', '.join(missing)}; run the benchmark with the project's environment, e.g. "
            f"`.venv/bin/python bench/{Path(sys.argv[0]).name} ...` after the README's install "
            "command"
        )


require_environment()


def command_line(script: str) -> str:
    """The command that produced a report, as a reader would type it."""
    return f"python bench/{script} " + " ".join(sys.argv[1:])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_report(out: Path, lines: list[str]) -> None:
    """Write the markdown report and print it."""
    report = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    print(f"\nReport written to {out}", file=sys.stderr)


@contextlib.contextmanager
def emulators(*args: str, stop_timeout: float = 60) -> Iterator[tuple[dict[str, Any], int]]:
    """The emulated Stash and Plex in a process of their own (bench/serve_sandbox.py with
    these arguments), so their CPU is not the measured one. Yields what it printed (the
    servers' URLs and Stash's connection) and its pid; stops it on exit."""
    server = subprocess.Popen(
        [sys.executable, str(SERVE_SANDBOX), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        yield json.loads(server.stdout.readline()), server.pid
    finally:
        server.stdin.close()
        server.wait(stop_timeout)
