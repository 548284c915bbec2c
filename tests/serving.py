"""The real `stash2plex serve` process against the sandbox, for the service and browser tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families


class RunningService:
    """A `stash2plex serve` subprocess and the address it printed."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def metrics(self) -> dict[str, list]:
        text = requests.get(self.url + "metrics", timeout=10).text
        return {f.name: f.samples for f in text_string_to_metric_families(text)}

    def synced(self) -> float:
        samples = self.metrics()["stash2plex_syncs"]
        return sum(
            s.value
            for s in samples
            if s.name.endswith("_total") and s.labels["outcome"] == "synced"
        )


def start_service(data_dir: Path, stash_url: str) -> RunningService:
    """Start serve on a free loopback port, pointed at the emulated Stash (shipped defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    env["STASH2PLEX_STASH_URL"] = stash_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "stash2plex", "--data-dir", str(data_dir), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        pytest.fail(f"serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return RunningService(proc, match.group(1))


def stop_service(service: RunningService) -> None:
    if service.proc.poll() is None:
        service.proc.kill()
    service.proc.wait(timeout=30)
