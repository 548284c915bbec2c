"""Dependency bootstrap: nothing to do when they import, PythonDepManager when it sits beside
the plugin, else a real pip install into `<plugin>/deps`, and a message naming the exact command
when that fails. The last test starts from a Python that has only the standard library."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

from stash2plex.engine.worker_lock import worker_running
from stash2plex.plugin import deps, install
from stash2plex.plugin.install import Dependency, ensure_dependencies
from stash2plex.plugin.packaging import build_plugin, runtime_requirements
from stash2plex.plugin.protocol import StashLog
from stash2plex.sandbox.processes import reap_workers, worker_pids
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.settings.config import PLUGIN_ID
from stash2plex.store.db import Store

from .conftest import REPO, wait_until
from .test_packaging import emulated_servers, find_synced_scene, install_zip

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX paths and process groups")

PROBE = Dependency("s2p-probe==1.0", "s2p_probe", "1.0")
ABSENT = Dependency("s2p-absent==1.0", "s2p_absent", "1.0")

# Stands in for the PythonDepManager plugin (not on PyPI). It keeps the documented interface,
# `ensure_import(*specs)` with specs like "import_name:pip-name==1.0", records each call, and
# does what the real one does for a spec: install into a folder of its own beside the plugins
# and put that folder first on sys.path.
STAND_IN = """\
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ensure_import(*specs):
    with open(HERE.parent / "pdm-calls.jsonl", "a") as calls:
        calls.write(json.dumps(list(specs)) + "\\n")
    if FAIL:
        raise Exception("PythonDepManager: git is required but not available")
    for spec in specs:
        import_name, _, pinned = spec.rpartition(":")
        name, _, version = pinned.partition("==")
        folder = HERE.parent / "py_dependencies" / f"{import_name or name}_{version}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{import_name or name}.py").write_text("SOURCE = 'PythonDepManager'\\n")
        sys.path.insert(0, str(folder))
"""


# ---------------------------------------------------------------------------- wheelhouses


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(folder: Path, dist_info: str, tag: str, files: dict[str, bytes]) -> Path:
    """A wheel holding `files` plus a RECORD (every other dist-info file comes in `files`)."""
    name, version = dist_info.removesuffix(".dist-info").split("-")
    path = folder / f"{name}-{version}-{tag}.whl"
    records = [_record_line(n, data) for n, data in sorted(files.items())]
    records.append(f"{dist_info}/RECORD,,")
    with zipfile.ZipFile(path, "w") as wheel:
        for entry, data in sorted(files.items()):
            wheel.writestr(entry, data)
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return path


def probe_wheel(folder: Path) -> Path:
    """A tiny pure-Python distribution `s2p-probe` 1.0 (module `s2p_probe`)."""
    info = "s2p_probe-1.0.dist-info"
    return write_wheel(
        folder,
        info,
        "py3-none-any",
        {
            "s2p_probe/__init__.py": b"SOURCE = 'pip'\n",
            f"{info}/METADATA": b"Metadata-Version: 2.1\nName: s2p-probe\nVersion: 1.0\n",
            f"{info}/WHEEL": (
                b"Wheel-Version: 1.0\nGenerator: stash2plex-tests\nRoot-Is-Purelib: true\n"
                b"Tag: py3-none-any\n"
            ),
        },
    )


def repack_installed(name: str, folder: Path) -> Path:
    """Rebuild the wheel of an installed distribution from its RECORD (no network, no sdist).

    Scripts outside site-packages, bytecode and the installer's own files are left out; the
    tag is one of the wheel's that this interpreter accepts (compiled wheels stay platform
    wheels)."""
    dist = importlib.metadata.distribution(name)
    site = Path(str(dist.locate_file("")))
    files: dict[str, bytes] = {}
    dist_info = ""
    for entry in dist.files or []:
        relative = entry.as_posix()
        if relative.startswith("..") or "__pycache__" in relative or relative.endswith(".pyc"):
            continue
        top = relative.split("/", 1)[0]
        if top.endswith(".dist-info"):
            dist_info = top
            if entry.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                continue
        files[relative] = (site / relative).read_bytes()
    wheel_meta = files[f"{dist_info}/WHEEL"].decode()
    supported = {str(tag) for tag in sys_tags()}
    tags = re.findall(r"(?m)^Tag: (\S+)$", wheel_meta)
    tag = next(t for t in tags if t in supported)
    return write_wheel(folder, dist_info, tag, files)


def runtime_closure() -> list[str]:
    """The installed distributions the runtime dependencies need, markers evaluated here."""
    seen: dict[str, str] = {}
    queue = [Requirement(d.requirement).name for d in install.DEPENDENCIES]
    while queue:
        name = queue.pop()
        if canonicalize_name(name) in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[canonicalize_name(name)] = name
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(requirement.name)
    return sorted(seen.values())


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of the probe and of every runtime dependency, rebuilt from this environment."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    probe_wheel(folder)
    for name in runtime_closure():
        repack_installed(name, folder)
    return folder


def pip_env(wheelhouse: Path) -> dict[str, str]:
    """pip settings that make the install come from the wheelhouse only."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
    }


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def plugins_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Stash's plugins folder on sys.path (as PYTHONPATH puts it), with an empty plugin in it.

    sys.path and the probe modules are restored afterwards.
    """
    root = tmp_path / "plugins"
    (root / PLUGIN_ID).mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [*sys.path, str(root)])
    yield root
    for name in ("PythonDepManager", PROBE.module, ABSENT.module):
        sys.modules.pop(name, None)


def add_stand_in(plugins_root: Path, *, fail: bool = False) -> Path:
    package = plugins_root / "PythonDepManager"
    package.mkdir()
    (package / "__init__.py").write_text(f"FAIL = {fail}\n" + STAND_IN)
    return plugins_root / "pdm-calls.jsonl"


def new_log() -> tuple[StashLog, io.StringIO]:
    stream = io.StringIO()
    return StashLog(stream), stream


# ---------------------------------------------------------------------------- the tests


def test_dependency_table_matches_pyproject_and_pins_lie_in_range():
    requirements = runtime_requirements(REPO / "pyproject.toml")

    assert [d.requirement for d in install.DEPENDENCIES] == requirements
    for dependency in install.DEPENDENCIES:
        requirement = Requirement(dependency.requirement)
        assert dependency.pin in SpecifierSet(str(requirement.specifier)), dependency
        # PythonDepManager needs the import name only when it differs (websocket-client).
        prefix = "" if dependency.module == requirement.name else f"{dependency.module}:"
        assert dependency.pythondepmanager_spec == f"{prefix}{requirement.name}=={dependency.pin}"


def test_present_dependencies_need_nothing(tmp_path):
    log, stream = new_log()

    assert ensure_dependencies(tmp_path, log) is None
    assert deps.dependencies_present(tmp_path)
    assert not (tmp_path / "data" / "deps").exists()
    assert stream.getvalue() == ""


def test_pythondepmanager_installs_and_its_folders_are_recorded_for_hooks(plugins_root):
    plugin = plugins_root / PLUGIN_ID
    calls = add_stand_in(plugins_root)
    log, stream = new_log()

    assert not deps.dependencies_present(plugin, [PROBE.module])
    assert ensure_dependencies(plugin, log, dependencies=[PROBE]) is None

    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        ["s2p_probe:s2p-probe==1.0"]
    ]
    assert importlib.import_module("s2p_probe").SOURCE == "PythonDepManager"
    folder = str(plugins_root / "py_dependencies" / "s2p_probe_1.0")
    assert deps.recorded_paths(plugin) == [folder]
    assert not (plugin / "data" / "deps" / "s2p_probe").exists(), "pip must not run"
    # A later hook process has only the plugins root and deps/ on its path: it finds the
    # recorded folder, and the worker it starts gets that folder on its PYTHONPATH.
    sys.path.remove(folder)
    sys.modules.pop("s2p_probe")
    assert deps.dependencies_present(plugin, [PROBE.module])
    assert "PythonDepManager" in stream.getvalue()


def test_pythondepmanager_failure_falls_back_to_pip(plugins_root, wheelhouse, monkeypatch):
    plugin = plugins_root / PLUGIN_ID
    calls = add_stand_in(plugins_root, fail=True)
    for name, value in pip_env(wheelhouse).items():
        monkeypatch.setenv(name, value)
    log, stream = new_log()

    assert ensure_dependencies(plugin, log, dependencies=[PROBE]) is None

    assert calls.read_text().count("s2p_probe:s2p-probe==1.0") == 1
    assert "git is required" in stream.getvalue()
    assert (plugin / "data" / "deps" / "s2p_probe" / "__init__.py").is_file()
    assert importlib.import_module("s2p_probe").SOURCE == "pip"
    assert deps.dependencies_present(plugin, [PROBE.module])
    assert not deps.recorded_paths(plugin)


def test_pip_uses_the_plugins_requirements_file(plugins_root, wheelhouse, monkeypatch):
    plugin = plugins_root / PLUGIN_ID
    (plugin / "requirements.txt").write_text("# generated\ns2p-probe==1.0\n")
    for name, value in pip_env(wheelhouse).items():
        monkeypatch.setenv(name, value)
    log, stream = new_log()
    # The requirement list given is not what pip sees when a requirements.txt exists.
    probe_by_name = Dependency("s2p-absent==1.0", "s2p_probe", "1.0")

    assert ensure_dependencies(plugin, log, dependencies=[probe_by_name]) is None

    assert f"-r {plugin / 'requirements.txt'}" in stream.getvalue()
    assert "--target" in stream.getvalue()
    assert (plugin / "data" / "deps" / "s2p_probe").is_dir()


def test_pip_failure_names_the_exact_command(plugins_root, wheelhouse, monkeypatch):
    plugin = plugins_root / PLUGIN_ID
    for name, value in pip_env(wheelhouse).items():
        monkeypatch.setenv(name, value)
    log, stream = new_log()

    message = ensure_dependencies(plugin, log, dependencies=[ABSENT])

    assert message is not None
    command = install.render_command(install.pip_command(plugin, [ABSENT]))
    assert message.endswith(f"\n{command}")
    assert "s2p_absent" in message
    assert "No matching distribution" in message
    assert "\x01e\x02pip: " in stream.getvalue()


@posix_only
def test_pip_that_hangs_is_stopped_and_reported(plugins_root, tmp_path):
    plugin = plugins_root / PLUGIN_ID
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    log, _ = new_log()

    message = ensure_dependencies(plugin, log, dependencies=[ABSENT], python=str(slow), timeout=0.5)

    assert message is not None
    assert "did not finish within 0.5 s" in message
    command = install.pip_command(plugin, [ABSENT], str(slow))
    assert message.endswith(install.render_command(command))


@posix_only
def test_a_python_without_pip_gets_a_command_that_works_there(plugins_root, tmp_path):
    plugin = plugins_root / PLUGIN_ID
    venv = tmp_path / "nopip"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = str(venv / "bin" / "python")
    log, stream = new_log()

    message = ensure_dependencies(plugin, log, dependencies=[ABSENT], python=python)

    assert message is not None and "Traceback" not in message + stream.getvalue()
    assert f"the Python Stash runs ({python}) has no pip" in message
    command = message.rsplit("\n", 1)[1]
    pip = install.render_command(install.pip_command(plugin, [ABSENT], python))
    # First give that Python pip, then the same install: never `python -m pip` alone.
    assert command.endswith(f" && {pip}") and not command.startswith(pip)
    first = command[: -len(f" && {pip}")]
    if first.endswith("-m ensurepip --upgrade"):
        given = subprocess.run(first, shell=True, capture_output=True, timeout=300)
        assert given.returncode == 0, given.stderr
        assert subprocess.run([python, "-m", "pip", "--version"], timeout=60).returncode == 0


def test_without_a_plugin_folder_the_message_still_says_what_to_run():
    log, _ = new_log()

    message = ensure_dependencies(None, log, dependencies=[ABSENT])

    assert message is not None
    assert message.endswith(f"-m pip install {ABSENT.requirement}")


@posix_only
@pytest.mark.slow
def test_a_python_with_only_the_standard_library(tmp_path, wheelhouse, worker_env):
    """The acceptance path: a fresh virtual environment without any package. The hook records
    the job without starting a worker; the first task installs the dependencies into the
    plugin folder, then does its work."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    bare = subprocess.run([str(python), "-c", "import plexapi"], capture_output=True)
    assert bare.returncode != 0, "the fresh environment must not have plexapi"
    build = build_plugin(tmp_path / "dist", repo_root=REPO, date="2026-01-02 03:04:05")
    plugin = install_zip(build.zip_path, tmp_path / "plugins")
    data = plugin / "data"
    env = {
        name: value
        for name, value in worker_env.items()
        if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(pip_env(wheelhouse))
    cwd = tmp_path / "stash-cwd"
    cwd.mkdir()
    runner = PluginRunner(plugin, python=str(python), cwd=cwd, env=env)
    try:
        with emulated_servers() as (library, plex, stash):
            connection = stash.server_connection(plugin_dir=str(plugin))
            scene = find_synced_scene(library)
            key = plex.find_by_file(library.plex_path(scene.files[0].path))

            hook = runner.run_hook("Scene.Update.Post", scene.id, connection)

            assert hook.returncode == 0 and hook.error is None, hook.stderr
            assert "run any Stash2Plex task once to install dependencies" in str(hook.output)
            # Said in Stash's log too, not only in the output Stash logs at debug level.
            assert any(deps.MISSING_HINT in m for m in hook.messages("warning"))
            with Store.open(data) as store:
                job = store.job(scene.id)
                assert job is not None and job.state == "pending"
            assert not worker_running(data) and not worker_pids(data)

            task = runner.run_task("Process Queue", connection, timeout=300)

            assert task.error is None, task.stderr
            assert (plugin / "data" / "deps" / "plexapi" / "__init__.py").is_file()
            assert any("dependencies installed into" in line.message for line in task.logs)
            wait_until(lambda: plex.item(key).title == scene.title, message="the title in Plex")
    finally:
        reap_workers(data)
    assert not worker_pids(data)
