"""Whether Stash2Plex's runtime dependencies can be found: the cheap check a hook makes.

A hook never installs anything (it blocks the user's save); it only asks `dependencies_present`
whether starting a worker is useful. Installing them is `plugin.install`, on the first task run.

Standard library only, and only its light part (no pathlib, typing or dataclasses): the hook
process has a budget of three bare interpreter starts (see plugin/entry.py).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the import alone costs the hook ~5 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

    StrPath = str | os.PathLike[str]

# Inside the default data directory, beside the store: it survives plugin updates (which
# unzip over the plugin folder) and goes with an uninstall.
DEPS_DIRNAME = "data/deps"
#: Inside `data/deps/`: the folders PythonDepManager installed into, one per line, so that hooks
#: (deciding whether to start a worker) and the worker (its PYTHONPATH) find them too.
RECORDED_PATHS_FILENAME = "pythondepmanager-paths.txt"
#: What a hook says while the dependencies are missing (its job is recorded all the same).
MISSING_HINT = (
    "Stash2Plex's dependencies are not installed yet: "
    "run any Stash2Plex task once to install dependencies"
)
#: (pip requirement with the tested range, import name, exact pin for PythonDepManager), kept
#: equal to pyproject.toml's `[project] dependencies` (a test checks), because the plugin zip
#: carries a generated requirements.txt but no pyproject.toml, and a checkout neither.
#: `plugin.install.DEPENDENCIES` is this table as records.
DEPENDENCY_TABLE: tuple[tuple[str, str, str], ...] = (
    ("plexapi>=4.18.3,<4.19", "plexapi", "4.18.3"),
    ("requests>=2.31,<3", "requests", "2.34.2"),
    ("urllib3>=2.0,<3", "urllib3", "2.8.0"),
    ("certifi>=2024.2.2", "certifi", "2026.10.19.post1"),
    ("click>=8.1,<9", "click", "8.5.1"),
    ("rich>=13.7,<16", "rich", "15.0.0"),
    ("websocket-client>=1.7,<2", "websocket", "1.9.2"),
)
#: The import names that prove the dependencies are installed.
REQUIRED_MODULES: tuple[str, ...] = tuple(module for _, module, _ in DEPENDENCY_TABLE)


def recorded_paths(plugin_dir: StrPath | None) -> list[str]:
    """The PythonDepManager folders a previous install recorded that still exist."""
    if plugin_dir is None:
        return []
    try:
        path = os.path.join(plugin_dir, DEPS_DIRNAME, RECORDED_PATHS_FILENAME)
        with open(path, encoding="utf-8") as recorded:
            text = recorded.read()
    except (OSError, ValueError):
        return []
    return [line for line in (raw.strip() for raw in text.splitlines()) if os.path.isdir(line)]


def dependency_paths(plugin_dir: StrPath | None) -> list[str]:
    """Folders beyond the interpreter's own that may hold the dependencies, in search order."""
    if plugin_dir is None:
        return []
    deps = os.path.join(plugin_dir, DEPS_DIRNAME)
    return ([deps] if os.path.isdir(deps) else []) + recorded_paths(plugin_dir)


def dependencies_present(
    plugin_dir: StrPath | None, modules: Sequence[str] = REQUIRED_MODULES
) -> bool:
    """True if every module can be found, without importing any (cheap: the hook path).

    Looks where a worker started by the hook will look: this interpreter's sys.path (which the
    plugin entry extends with `<plugin dir>/data/deps`) and the folders PythonDepManager recorded.
    """
    extra = dependency_paths(plugin_dir)
    return all(_findable(module, extra) for module in modules)


def _findable(module: str, extra: list[str]) -> bool:
    try:
        if importlib.util.find_spec(module) is not None:
            return True
    except (ImportError, ValueError):
        pass
    return bool(extra) and importlib.machinery.PathFinder.find_spec(module, extra) is not None
