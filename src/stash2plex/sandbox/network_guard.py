"""Prove that a process makes no network request: a `sitecustomize` module that, put first on
the child's PYTHONPATH, makes every socket connect and name lookup fail and records it.

Python imports `sitecustomize` from sys.path at start-up, before the plugin's own code, so a
plugin run through the PluginRunner with `env={"PYTHONPATH": str(guard)}` (the runner then
appends the plugins root, as Stash does) is watched from its first line.
"""

from __future__ import annotations

from pathlib import Path

LOG_ENV = "NETWORK_GUARD_LOG"

_SITECUSTOMIZE = """
import os
import socket

_log = os.environ.get("NETWORK_GUARD_LOG")


def _refuse(what, target):
    if _log:
        with open(_log, "a", encoding="utf-8") as handle:
            handle.write(f"{what} {target!r}\\n")
    raise OSError(f"network guard: {what} {target!r} refused")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    return _connect_ex(self, address)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = lambda host, *a, **k: _refuse("getaddrinfo", host)
socket.create_connection = lambda address, *a, **k: _refuse("create_connection", address)
"""


def write_guard(directory: Path) -> Path:
    """Write the guard's sitecustomize.py into `directory` (created); returns the directory.

    Run the child with PYTHONPATH starting with it and NETWORK_GUARD_LOG naming a file; after
    the run, that file lists every attempted connection (absent or empty: none).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE.lstrip(), encoding="utf-8")
    return directory
