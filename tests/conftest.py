"""Shared fixtures: a clean environment, the sandbox servers, a plugin installed as Stash would
see it, and the guarantee that no worker process outlives the test that caused it."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stash2plex.sandbox.processes import reap_workers, worker_pids
from stash2plex.sandbox.runner import PluginRunner

# plexapi reads its config file at import time; point it at nothing so a developer's
# ~/.config/plexapi cannot leak into the tests.
os.environ["PLEXAPI_CONFIG_PATH"] = str(Path(__file__).parent / "no-such-plexapi-config.ini")

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        default=None,
        help="Write the browser tests' screenshots (PNG) into this folder, e.g. docs/images.",
    )


PLEX_TOKEN = "test-plex-token-0123456789"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the host's Stash2Plex/Plex settings out of every test."""
    for name in list(os.environ):
        if name.startswith(("STASH2PLEX_", "PLEX_", "STASH_")):
            monkeypatch.delenv(name)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A throwaway web server on a free loopback port answering with `handler`: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_until(
    condition: Callable[[], object],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
) -> object:
    """Poll until `condition()` is truthy; fail the test with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    """The plugin as installed under Stash's plugins folder (the package linked, not copied)."""
    target = tmp_path / "plugins" / "stash2plex"
    target.mkdir(parents=True)
    shutil.copy(REPO / "Stash2Plex.yml", target)
    shutil.copy(REPO / "stash2plex_plugin.py", target)
    (target / "stash2plex").symlink_to(REPO / "src" / "stash2plex", target_is_directory=True)
    yield target
    reap_workers(target / "data")
    assert not worker_pids(target / "data"), "a stash2plex worker outlived its test"


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Environment for plugin runs (the host's Stash2Plex settings already removed); detached
    workers run with their shipped timers and are reaped by `plugin_dir`."""
    return dict(os.environ)


# The plugin run as Stash runs it, against a module's `servers` fixture (Plex, Stash[, section]).
@pytest.fixture
def plex(servers):
    return servers[0]


@pytest.fixture
def stash(servers):
    return servers[1]


@pytest.fixture
def section_id(servers):
    return servers[2]


@pytest.fixture
def runner(plugin_dir: Path, worker_env: dict[str, str], tmp_path: Path) -> PluginRunner:
    cwd = tmp_path / "stash-cwd"
    cwd.mkdir()
    return PluginRunner(plugin_dir, cwd=cwd, env=worker_env)


@pytest.fixture
def connection(stash, plugin_dir: Path) -> dict:
    return stash.server_connection(plugin_dir=str(plugin_dir))
