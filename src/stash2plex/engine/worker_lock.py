"""The worker lock, and starting the one worker detached when work is due.

Standard library only: the hook path calls `ensure_worker`.

Exactly one worker drains at a time: it holds an exclusive OS file lock on
``<data dir>/worker.lock`` for its lifetime (the kernel releases it if the worker is killed).
A hook that finds the lock free takes it itself and hands the locked file to the worker it
starts, so between the probe and the worker's start nobody else can see the lock free: a
burst of fifty hooks starts at most one worker.

Nothing but a drain ever takes the lock: the holder writes its process id into the lock file,
and `worker_running` reads that id instead of probing the lock (a probe would briefly hold it,
and a hook arriving in that moment would think a worker runs and start none).
"""

from __future__ import annotations

import contextlib
import os
import sys

# Not `typing.TYPE_CHECKING`, and paths as strings rather than pathlib: the hook process would
# pay ~5 ms for typing and ~6 ms for pathlib (see plugin/entry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    StrPath = str | os.PathLike[str]

LOCK_FILENAME = "worker.lock"
WORKER_OUTPUT = "worker.out"
MAX_OUTPUT_BYTES = 1_000_000

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on `fd` without waiting; False if another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt

    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def unlock(fd: int) -> None:
    """Release the lock held on `fd` (the file stays open)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def held_if_free(path: StrPath) -> Iterator[bool]:
    """Hold the lock file at `path` if it is free; yields False (without waiting) when another
    process holds it. One run at a time of a pull or a reconcile."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        locked = try_lock(fd)
        try:
            yield locked
        finally:
            if locked:
                unlock(fd)
    finally:
        os.close(fd)


def open_lock_file(data_dir: StrPath) -> int:
    """Open (creating) the worker lock file of `data_dir`; returns the descriptor."""
    return os.open(os.path.join(data_dir, LOCK_FILENAME), os.O_CREAT | os.O_RDWR, 0o600)


def mark_holder(fd: int, pid: int | None = None) -> None:
    """Record the lock holder (this process, or the child it was handed to) in the lock file."""
    data = f"{pid or os.getpid()}\n".encode()
    os.ftruncate(fd, 0)
    if hasattr(os, "pwrite"):  # the descriptor may be shared with a child: no shared offset
        os.pwrite(fd, data, 0)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)


def release(fd: int) -> None:
    """Clear the holder record and give the lock up (the file descriptor stays open)."""
    os.ftruncate(fd, 0)
    unlock(fd)


def worker_running(data_dir: StrPath) -> bool:
    """True if a live process holds the worker lock, read without touching the lock.

    Linux: the kernel's lock table (/proc/locks) says whether the lock file is locked, which a
    pid reused by an unrelated process cannot fake. Elsewhere: the recorded holder is alive.
    """
    path = os.path.join(data_dir, LOCK_FILENAME)
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        return False
    locked = _locked_in_kernel_table(inode)
    if locked is not None:
        return locked
    try:
        with open(path, encoding="ascii", errors="replace") as lock_file:
            text = lock_file.read().strip()
    except FileNotFoundError:
        return False
    if not text.isdigit():
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would signal the process there
        return True
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False  # the holder died (killed): the kernel released its lock
    except PermissionError:
        return True
    return True


def _locked_in_kernel_table(inode: int) -> bool | None:
    """Whether an flock lock is held on the file with this inode (None: cannot tell here)."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.readlines()
    except OSError:
        return None
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF" (a "->" marks a waiter)
        fields = line.split()
        if len(fields) >= 6 and "FLOCK" in fields and "->" not in fields:
            device_inode = fields[5] if fields[1] == "FLOCK" else fields[6]
            if device_inode.rsplit(":", 1)[-1] == str(inode):
                return True
    return False


def ensure_worker(
    data_dir: StrPath,
    *,
    python: str | None = None,
    python_path: list[str] | None = None,
    unset: tuple[str, ...] = (),
) -> bool:
    """Start a detached worker unless one holds the lock. Returns True if one was started.
    `unset`: environment variables the worker is started without.

    The worker gets the already-locked file descriptor (`--lock-fd`), its std streams go to a
    file in the data directory (never Stash's pipes, or Stash would wait for the worker to exit
    before finishing the user's save), and it runs in a new session so Stash killing the hook
    does not kill it.
    """
    fd = open_lock_file(data_dir)
    try:
        if not try_lock(fd):
            return False
        import subprocess  # only a hook that starts the worker pays for this import

        output_path = os.path.join(data_dir, WORKER_OUTPUT)
        _rotate(output_path)
        env = {name: value for name, value in os.environ.items() if name not in unset}
        paths = [*(python_path or []), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        output_fd = os.open(output_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(output_fd, "ab") as output:
            command = [
                python or sys.executable,
                "-m",
                "stash2plex",
                "worker",
                "--data-dir",
                os.fspath(data_dir),
            ]
            kwargs: dict = {}
            if fcntl is not None:
                command += ["--lock-fd", str(fd)]
                kwargs = {"pass_fds": (fd,), "start_new_session": True}
            else:
                # Windows cannot pass a locked handle: release it and let the worker race for
                # it; the loser exits at once.
                unlock(fd)
                kwargs = {"creationflags": 0x00000008 | 0x00000200}  # DETACHED, NEW_GROUP
            child = subprocess.Popen(
                command,
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
                **kwargs,
            )
        if fcntl is not None:
            mark_holder(fd, child.pid)  # so a status check sees it before it has started
        return True
    finally:
        os.close(fd)


def _rotate(path: str) -> None:
    try:
        if os.stat(path).st_size > MAX_OUTPUT_BYTES:
            os.replace(path, path + ".1")
    except FileNotFoundError:
        pass
