"""Installing Stash2Plex's runtime dependencies on first use (the task path).

Standard library only: it runs before any dependency may exist.

Stash runs the plugin with whatever Python it finds (its "Python path" setting, else python3),
which usually has none of plexapi, requests, click and rich. A hook never installs anything (it
blocks the user's save); it only asks `dependencies_present` whether starting a worker is
useful. The first task run calls `ensure_dependencies`, which, in order:

1. finds them importable already (system packages, `<plugin dir>/data/deps`, or the folders a
   previous PythonDepManager install recorded) and does nothing;
2. asks PythonDepManager, a CommunityScripts plugin that may sit beside this one (importable
   because Stash puts the plugins folder on PYTHONPATH);
3. otherwise runs pip with `--target <plugin dir>/data/deps`: never into the system Python, and the
   folder survives plugin updates, which unzip over the plugin folder.

When none of that works it returns a message naming the exact command to run by hand.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stash2plex.engine.worker_lock import try_lock, unlock
from stash2plex.plugin.deps import (
    DEPENDENCY_TABLE,
    DEPS_DIRNAME,
    RECORDED_PATHS_FILENAME,
    dependency_paths,
    recorded_paths,
)

REQUIREMENTS_FILENAME = "requirements.txt"
INSTALL_LOCK_FILENAME = ".install.lock"
PIP_TIMEOUT_SECONDS = 600.0
_PIP_TAIL_LINES = 20
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


class Log(Protocol):
    """What this module logs through (a `stash2plex.plugin.protocol.StashLog`)."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...


@dataclass(frozen=True)
class Dependency:
    """One runtime dependency.

    `requirement` is the pip specifier with the tested range, as in pyproject.toml. `module` is
    the import name that proves it is installed. `pin` is the exact version handed to
    PythonDepManager: its `ensure_import` understands only `name`, `name==version` and
    `name>=version` (a compound range such as `>=4.18.3,<4.19` would install the newest release
    and ignore the upper bound), so it gets a version the test suite ran with.
    """

    requirement: str
    module: str
    pin: str

    @property
    def project(self) -> str:
        """The distribution name at the start of `requirement`."""
        match = _PROJECT_NAME.match(self.requirement)
        if match is None:
            raise ValueError(f"not a requirement specifier: {self.requirement!r}")
        return match.group(0)

    @property
    def pythondepmanager_spec(self) -> str:
        """The argument for PythonDepManager's `ensure_import` (`import_name:` only if needed)."""
        spec = f"{self.project}=={self.pin}"
        return spec if self.module == self.project else f"{self.module}:{spec}"


#: `plugin.deps.DEPENDENCY_TABLE` as records.
DEPENDENCIES: tuple[Dependency, ...] = tuple(Dependency(*row) for row in DEPENDENCY_TABLE)


def ensure_dependencies(
    plugin_dir: Path | None,
    log: Log,
    *,
    dependencies: Sequence[Dependency] = DEPENDENCIES,
    python: str | None = None,
    timeout: float = PIP_TIMEOUT_SECONDS,
) -> str | None:
    """Make the dependencies importable in this process, installing them if needed.

    Returns None when they import, else a message for the task's error result that names the
    exact command to run by hand. Never raises for an installation problem. `python` is the
    interpreter pip runs under (default: this one, which is what the worker will use).
    """
    _activate(dependency_paths(plugin_dir))
    missing = _missing(dependencies, log)
    if not missing:
        return None
    log.info(
        f"Stash2Plex: installing its dependencies ({_names(missing)} missing); "
        "the first run may take a minute"
    )
    if _install_with_pythondepmanager(dependencies, plugin_dir, log):
        return None
    python = python or sys.executable
    if plugin_dir is None:
        # Stash always passes PluginDir; only a hand-made input can lack it.
        command = [python, "-m", "pip", "install", *(d.requirement for d in dependencies)]
        return _failure(missing, "no plugin folder to install them into", command)
    return _install_with_pip(plugin_dir, dependencies, missing, log, python, timeout)


def pip_command(
    plugin_dir: Path, dependencies: Sequence[Dependency] = DEPENDENCIES, python: str | None = None
) -> list[str]:
    """The pip command that installs the dependencies into `<plugin dir>/data/deps`.

    Uses the plugin's requirements.txt (shipped in the zip) when there is one, else the ranges
    above (a checkout). `--target` keeps the system Python untouched (pip skips its
    externally-managed check for it); `--upgrade` lets a re-run replace a partial install.
    """
    requirements = plugin_dir / REQUIREMENTS_FILENAME
    if requirements.is_file():
        sources = ["-r", str(requirements)]
    else:
        sources = [dependency.requirement for dependency in dependencies]
    return [
        python or sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--upgrade",
        "--target",
        str(plugin_dir / DEPS_DIRNAME),
        *sources,
    ]


def render_command(command: Sequence[str]) -> str:
    """The command as a user would type it in this platform's shell."""
    import subprocess  # task path only: a hook never installs

    if os.name == "nt":
        return subprocess.list2cmdline(list(command))
    import shlex

    return shlex.join(command)


def _names(dependencies: Sequence[Dependency]) -> str:
    return ", ".join(dependency.module for dependency in dependencies)


def _activate(paths: Sequence[str]) -> None:
    """Put `paths` on sys.path (after the interpreter's own, as the plugin entry does)."""
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
        # A folder that did not exist when first searched is cached as "no finder"; forget it.
        sys.path_importer_cache.pop(path, None)
    importlib.invalidate_caches()


def _missing(dependencies: Sequence[Dependency], log: Log) -> list[Dependency]:
    """The dependencies that do not import. A real import: a half-installed package fails here."""
    missing = []
    for dependency in dependencies:
        try:
            importlib.import_module(dependency.module)
        except ImportError:
            missing.append(dependency)
        except Exception as exc:  # a broken install can fail in any way while importing
            log.warning(f"Stash2Plex: {dependency.module} is installed but fails to import: {exc}")
            missing.append(dependency)
    return missing


def _failure(missing: Sequence[Dependency], reason: str, command: Sequence[str] | str) -> str:
    shown = command if isinstance(command, str) else render_command(command)
    return (
        f"Stash2Plex could not install its dependencies ({_names(missing)}): {reason}. "
        "Install them by hand with the Python that Stash runs, then run the task again:\n"
        f"{shown}"
    )


def without_pip_command(python: str, command: Sequence[str]) -> str:
    """A command that installs the dependencies with a Python that has no pip: first give it
    pip (its own ensurepip when it has one, else the system's package: Stash's Docker image
    is Alpine Linux), then the pip command."""
    import subprocess  # task path only: a hook never installs

    try:
        probe = subprocess.run(
            [python, "-c", "import ensurepip"], capture_output=True, timeout=30, check=False
        )
        has_ensurepip = probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        has_ensurepip = False
    if has_ensurepip:
        first = render_command([python, "-m", "ensurepip", "--upgrade"])
    elif os.path.exists("/etc/alpine-release"):
        first = "apk add py3-pip"
    elif os.path.exists("/etc/debian_version"):
        first = "apt-get install -y python3-pip"
    else:
        first = "install pip for this Python with your system's package manager"
        return f"{first}, then: {render_command(command)}"
    return f"{first} && {render_command(command)}"


def _install_with_pythondepmanager(
    dependencies: Sequence[Dependency], plugin_dir: Path | None, log: Log
) -> bool:
    """Install through PythonDepManager if it sits beside this plugin. True if that worked."""
    try:
        manager = importlib.import_module("PythonDepManager")
        ensure_import = manager.ensure_import
    except ImportError as exc:
        if getattr(exc, "name", None) != "PythonDepManager":
            log.warning(f"Stash2Plex: PythonDepManager cannot be used ({exc}); using pip instead")
        return False
    except Exception as exc:
        log.warning(f"Stash2Plex: PythonDepManager cannot be used ({exc}); using pip instead")
        return False
    specs = [dependency.pythondepmanager_spec for dependency in dependencies]
    log.info(f"Stash2Plex: asking PythonDepManager for {', '.join(specs)}")
    before = set(sys.path)
    previous = set(recorded_paths(plugin_dir))
    try:
        ensure_import(*specs)
    except Exception as exc:  # it raises plain Exception, RuntimeError or ValueError
        log.warning(f"Stash2Plex: PythonDepManager failed ({exc}); using pip instead")
        return False
    importlib.invalidate_caches()
    still = _missing(dependencies, log)
    if still:
        log.warning(
            f"Stash2Plex: PythonDepManager finished but {_names(still)} still do not import; "
            "using pip instead"
        )
        return False
    # Its folders are on this process's sys.path only: record them for hooks and the worker.
    added = [p for p in sys.path if (p not in before or p in previous) and os.path.isdir(p)]
    if plugin_dir is not None and added:
        try:
            _write_recorded_paths(plugin_dir, added)
        except OSError as exc:
            log.warning(
                f"Stash2Plex: could not record PythonDepManager's folders ({exc}); "
                "the background worker may not find its dependencies"
            )
    log.info("Stash2Plex: dependencies provided by PythonDepManager")
    return True


def _write_recorded_paths(plugin_dir: Path, paths: Sequence[str]) -> None:
    folder = plugin_dir / DEPS_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / RECORDED_PATHS_FILENAME
    temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(f"{path}\n" for path in dict.fromkeys(paths)), encoding="utf-8")
    os.replace(temporary, target)


def _install_with_pip(
    plugin_dir: Path,
    dependencies: Sequence[Dependency],
    missing: Sequence[Dependency],
    log: Log,
    python: str,
    timeout: float,
) -> str | None:
    target = plugin_dir / DEPS_DIRNAME
    command = pip_command(plugin_dir, dependencies, python)
    try:
        target.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(target / INSTALL_LOCK_FILENAME, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        return _failure(missing, f"cannot write to {target} ({exc})", command)
    try:
        # Two runs installing into one folder at once would corrupt it: the second one waits,
        # then usually finds everything installed by the first.
        deadline = time.monotonic() + timeout
        while not try_lock(lock_fd):
            if time.monotonic() > deadline:
                return _failure(
                    missing, f"another run kept installing for more than {timeout:g} s", command
                )
            time.sleep(0.5)
        try:
            _activate([str(target)])
            still = _missing(dependencies, log)
            if not still:
                return None
            return _run_pip(command, plugin_dir, dependencies, still, log, timeout)
        finally:
            unlock(lock_fd)
    finally:
        os.close(lock_fd)


def _run_pip(
    command: list[str],
    plugin_dir: Path,
    dependencies: Sequence[Dependency],
    missing: Sequence[Dependency],
    log: Log,
    timeout: float,
) -> str | None:
    import subprocess  # task path only: a hook never installs

    target = plugin_dir / DEPS_DIRNAME
    log.info(f"Stash2Plex: running {render_command(command)}")
    started = time.monotonic()
    try:
        returncode, output = _run_with_timeout(command, plugin_dir, timeout)
    except subprocess.TimeoutExpired:
        return _failure(missing, f"pip did not finish within {timeout:g} s", command)
    except OSError as exc:
        return _failure(missing, f"could not start {command[0]} ({exc})", command)
    if returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        for line in lines[-_PIP_TAIL_LINES:]:
            log.error(f"pip: {line}")
        reason = f"pip exited with status {returncode}"
        errors = [line.strip() for line in lines if line.lstrip().startswith("ERROR:")]
        if "No module named pip" in output:
            reason = (
                f"the Python Stash runs ({command[0]}) has no pip; the command below gives it "
                "pip first (or point Stash's Python path setting at a Python that has pip)"
            )
            return _failure(missing, reason, without_pip_command(command[0], command))
        if errors:
            reason += f" ({errors[-1]})"
        return _failure(missing, reason, command)
    _activate([str(target)])
    still = _missing(dependencies, log)
    if still:
        return _failure(still, f"pip finished but they still do not import from {target}", command)
    log.info(
        f"Stash2Plex: dependencies installed into {target} in {time.monotonic() - started:.0f} s"
    )
    return None


def _run_with_timeout(command: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run `command`, returning (exit status, stderr + stdout); TimeoutExpired after `timeout`.

    pip runs in its own process group so that a timeout kills its children too (a build
    backend holding our pipes open would otherwise keep us waiting after pip itself died).
    """
    import subprocess  # task path only: a hook never installs

    posix = os.name == "posix"
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=posix,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if posix:
            import signal

            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                process.kill()
        else:
            process.kill()
        process.communicate()
        raise
    return process.returncode, (stderr or "") + (stdout or "")
