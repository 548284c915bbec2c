"""Where a process's CPU goes: py-spy samples the threads that hold the GIL, and each sample is
counted to the layer its innermost frame belongs to (the HTTP client, the store, the sync...).

py-spy (`pip install ".[bench]"`) reads the process from outside, without stopping it
(`--nonblocking`), so the sampled run costs what it costs unsampled. It needs the right to read
another process's memory: root, or a kernel that allows ptrace between a user's processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Each layer by the files of its innermost frames (py-spy names files by their import path).
# A C call (a socket's recv, an SQLite statement) counts to the Python frame that made it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "HTTP client: urllib3 and http.client (headers parsed by the e-mail parser)",
        ("urllib3/", "http/client.py", "email/", "socket.py", "ssl.py", "selectors.py"),
    ),
    ("Plex request encoding: plexapi and urllib.parse", ("plexapi/", "urllib/parse.py")),
    ("answers parsed: JSON (Stash) and XML (Plex)", ("json/", "xml/")),
    ("Stash2Plex's store (SQLite)", ("stash2plex/store/", "sqlite3/")),
    (
        "Stash2Plex's sync: plan, match, metadata",
        ("stash2plex/sync/", "stash2plex/names.py", "stash2plex/paths.py"),
    ),
    ("Stash2Plex's Stash and Plex clients", ("stash2plex/clients/",)),
    (
        "Stash2Plex's engine, threads and locks",
        (
            "stash2plex/engine/",
            "stash2plex/single_flight.py",
            "concurrent/",
            "threading.py",
            "queue.py",
        ),
    ),
    ("the benchmark's own counting", ("bench_",)),
)
OTHER = "other (standard library, imports)"
SAMPLES_PER_SECOND = 250


@dataclass
class Samples:
    """Stacks sampled (outermost frame first) and how often each was seen."""

    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)
    error: str | None = None  # why nothing was sampled

    @property
    def total(self) -> int:
        return sum(self.stacks.values())

    def by_layer(self) -> list[tuple[str, float]]:
        """(layer, share of the samples), largest first."""
        counts: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            counts[layer_of(stack[-1])] += count
        total = max(1, self.total)
        return [(name, count / total) for name, count in counts.most_common()]

    def top_functions(self, limit: int) -> list[tuple[str, float]]:
        """The functions whose own code ran most (innermost frames), with their share."""
        counts: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            counts[function_of(stack[-1])] += count
        total = max(1, self.total)
        return [(name, count / total) for name, count in counts.most_common(limit)]


def layer_of(frame: str) -> str:
    path = _path_of(frame)
    for name, prefixes in LAYERS:
        if any(path.startswith(prefix) or f"/{prefix}" in path for prefix in prefixes):
            return name
    return OTHER


def function_of(frame: str) -> str:
    """`Class.method (path)`, without the line: a function's samples add up across lines."""
    name, _, rest = frame.partition(" (")
    return f"{name} ({_path_of(frame)})" if rest else name


def _path_of(frame: str) -> str:
    return frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]


MISSING = 'py-spy is not installed: .venv/bin/pip install ".[bench]" (or pip install py-spy)'


def py_spy() -> str | None:
    """The py-spy program beside this Python or on PATH, or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def sampled(rate: int = SAMPLES_PER_SECOND) -> Iterator[Samples]:
    """Sample this process while the block runs; the Samples are filled in when it ends (with
    `error` set, and no samples, when py-spy is missing or may not read this process)."""
    samples = Samples()
    spy = py_spy()
    if spy is None:
        samples.error = MISSING
        yield samples
        return
    with tempfile.TemporaryDirectory(prefix="s2p-profile-") as tmp:
        out = Path(tmp) / "stacks.txt"
        command = [spy, "record", "--pid", str(os.getpid()), "--gil", "--nonblocking"]
        command += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
        spying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches before the work starts
        try:
            yield samples
        finally:
            spying.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            try:
                _, err = spying.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                spying.kill()
                _, err = spying.communicate()
            if out.exists():
                samples.stacks = read_raw(out.read_text())
            if not samples.stacks:
                said = err.decode(errors="replace").strip().splitlines()
                samples.error = "py-spy sampled nothing" + (f": {said[-1]}" if said else "")


def read_raw(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw format: one `frame;frame;...;frame count` line per distinct stack."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks
