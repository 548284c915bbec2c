"""The history checker, small enough for CI: every edit Stash acknowledged while the worker is
SIGKILLed and Plex and Stash fail in every way ends synced (or visibly waiting), none lost, and
Plex equals Stash at the end. `bench/bench_history.py` runs it at 1,000 scenes."""

from __future__ import annotations

import pytest

from stash2plex.sandbox.history import Chaos
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.session import running_sandbox

from .conftest import PLEX_TOKEN


@pytest.mark.slow
def test_no_acknowledged_edit_is_lost_through_kills_and_faults(plugin_dir, worker_env, tmp_path):
    library = generate_library(80, seed=53)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        plex.faults.latency(0.005)
        runner = PluginRunner(plugin_dir, cwd=cwd, env=worker_env)
        connection = stash.server_connection(plugin_dir=str(plugin_dir))
        chaos = Chaos(library, plex, stash, runner, connection, plugin_dir / "data", seed=5)

        report = chaos.run(edits=40, kills=5, other_faults=5)

    assert len(report.acknowledged) >= 35, report.refused_hooks
    assert report.kills >= 1, "the chaos never hit a running worker"
    assert report.verdicts["lost"] == []
    assert report.mismatches == []
    assert report.dead_letters == 0
