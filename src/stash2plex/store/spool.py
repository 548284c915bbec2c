"""The hook spool: an append-only file beside the store for events a hook could not record
because the store was locked past the hook's budget. The worker merges it into the store.

Standard library only (hook path). One JSON object per line. Appenders hold a shared lock
while writing; the merger renames the file first, then takes an exclusive lock on it, so every
append that started before the rename has finished when it reads. An appender whose file was
renamed under it (checked after locking) opens the new one, so no line is written to a file
that was already read.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

# Not `typing.TYPE_CHECKING`, and paths as strings rather than pathlib: the hook process would
# pay ~5 ms for typing and ~6 ms for pathlib (see plugin/entry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]

SPOOL_NAME = "hooks.spool"
MERGING_SUFFIX = ".merging"


def append(data_dir: StrPath, entry: dict[str, Any]) -> None:
    """Append one event (raises OSError, e.g. when the disk is full)."""
    path = os.path.join(data_dir, SPOOL_NAME)
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _lock(fd, exclusive=False)
            if _same_file(fd, path):
                os.write(fd, line)
                return
        finally:
            os.close(fd)


def take(data_dir: StrPath) -> tuple[list[dict[str, Any]], list[str]]:
    """Claim every spooled event: returns the entries and the files to `discard` once they are
    recorded. Files left by a merger that was killed are claimed again (merging twice only
    coalesces into the same jobs)."""
    path = os.path.join(data_dir, SPOOL_NAME)
    if os.path.exists(path):
        target = f"{path}.{os.getpid()}-{time.time_ns()}{MERGING_SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, target)
    files = _merging_files(data_dir)
    entries: list[dict[str, Any]] = []
    for file in files:
        try:
            fd = os.open(file, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            _lock(fd, exclusive=True)  # waits for appends that began before the rename
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
        finally:
            os.close(fd)
        for raw in data.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a torn line from a crash mid-append
            if isinstance(entry, dict):
                entries.append(entry)
    return entries, files


def discard(files: list[str]) -> None:
    """Remove merged spool files."""
    for file in files:
        with contextlib.suppress(FileNotFoundError):
            os.remove(file)


def pending(data_dir: StrPath) -> bool:
    """True when events wait in the spool."""
    return os.path.exists(os.path.join(data_dir, SPOOL_NAME)) or bool(_merging_files(data_dir))


def _merging_files(data_dir: StrPath) -> list[str]:
    """Spool files renamed for merging (a killed merger's are claimed again), oldest first."""
    try:
        names = os.listdir(data_dir)
    except FileNotFoundError:
        return []
    prefix = SPOOL_NAME + "."
    return sorted(
        os.path.join(data_dir, name)
        for name in names
        if name.startswith(prefix) and name.endswith(MERGING_SUFFIX)
    )


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _lock(fd: int, *, exclusive: bool) -> None:
    if sys.platform == "win32":
        return  # appends are small single writes; Windows has no advisory shared locks
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
