"""Find and reap detached workers started for a data directory (tests, benchmarks, demo).

Linux only (reads /proc); elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def worker_pids(data_dir: Path) -> list[int]:
    """PIDs of `stash2plex worker` processes started with `--data-dir data_dir`."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    needle = b"--data-dir\0" + os.fsencode(str(data_dir)) + b"\0"
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"stash2plex\0worker" in cmdline and needle in cmdline:
            pids.append(int(entry.name))
    return pids


def reap_workers(data_dir: Path, grace: float = 5.0) -> None:
    """Ask workers to stop (SIGTERM: they finish the job in hand), give them up to `grace`
    seconds, then SIGKILL what remains."""
    for pid in worker_pids(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while worker_pids(data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in worker_pids(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while worker_pids(data_dir) and time.monotonic() < deadline:
        time.sleep(0.02)
