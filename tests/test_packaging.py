"""The installable plugin: a reproducible zip whose manifest Stash loads, an index Stash's
package manager accepts, and a plugin that works when installed from the zip alone."""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stash2plex.cli import main as cli_main
from stash2plex.plugin import install
from stash2plex.plugin.packaging import (
    DATE_FORMAT,
    BuildError,
    build_plugin,
    runtime_requirements,
)
from stash2plex.sandbox.library import SampleLibrary, Scene, generate_library, seed_plex
from stash2plex.sandbox.manifest import load_manifest, validate_community_schema
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.processes import reap_workers, worker_pids
from stash2plex.sandbox.runner import PluginRunner
from stash2plex.sandbox.stash_emulator import StashEmulator
from stash2plex.settings.config import PLUGIN_ID
from stash2plex.store.db import Store

from .conftest import PLEX_TOKEN, REPO, wait_until

FIXED_DATE = "2026-01-02 03:04:05"
# pkg/pkg.RemotePackage's YAML fields, exactly.
INDEX_FIELDS = {"id", "name", "metadata", "version", "date", "path", "sha256", "requires"}


def install_zip(zip_path: Path, plugins_root: Path) -> Path:
    """Install the zip as Stash's package manager does: into `<plugins>/<id>/`, each file
    created with the mode stored in its zip entry (`pkg/pkg.Store.InstallPackage`)."""
    target = plugins_root / PLUGIN_ID
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            path = target / info.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(info))
            path.chmod(stat.S_IMODE(info.external_attr >> 16))
    return target


def find_synced_scene(library: SampleLibrary) -> Scene:
    """A scene with a file that Plex holds and a title to push."""
    for scene in library.scenes.values():
        if scene.files and scene.in_plex and scene.title:
            return scene
    raise AssertionError("the generated library has no scene in Plex with a title")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory):
    return build_plugin(tmp_path_factory.mktemp("dist"), repo_root=REPO, date=FIXED_DATE)


@contextmanager
def emulated_servers() -> Iterator[tuple[SampleLibrary, PlexEmulator, StashEmulator]]:
    """A small library in emulated Plex and Stash, with the plugin configured in Stash."""
    library = generate_library(20, seed=5)
    with PlexEmulator(token=PLEX_TOKEN) as plex:
        seed_plex(plex, library)
        settings = {
            "plex_url": plex.url,
            "plex_token": PLEX_TOKEN,
            "plex_library": "Stash Scenes",
            "path_map": library.path_map,
        }
        with StashEmulator(library, plugin_settings=settings, plugin_id=PLUGIN_ID) as stash:
            yield library, plex, stash


@pytest.fixture
def servers() -> Iterator[tuple[SampleLibrary, PlexEmulator, StashEmulator]]:
    with emulated_servers() as running:
        yield running


def test_zip_manifest_loads_in_stash_and_passes_the_community_schema(build, tmp_path):
    with zipfile.ZipFile(build.zip_path) as archive:
        manifest = tmp_path / f"{PLUGIN_ID}.yml"
        manifest.write_bytes(archive.read(f"{PLUGIN_ID}.yml"))

    loaded = load_manifest(manifest)
    validate_community_schema(manifest)
    assert loaded.id == PLUGIN_ID
    assert loaded.exec[1] == "{pluginDir}/stash2plex_plugin.py"


def test_index_is_a_stash_package_list_matching_the_zip(build):
    entries = yaml.safe_load(build.index_path.read_text(encoding="utf-8"))
    manifest = load_manifest(REPO / f"{PLUGIN_ID}.yml")

    assert isinstance(entries, list) and len(entries) == 1
    entry = entries[0]
    assert set(entry) == INDEX_FIELDS
    assert entry["id"] == PLUGIN_ID
    assert entry["name"] == manifest.name
    assert entry["metadata"] == {"description": manifest.description}
    assert entry["version"] == manifest.version == build.version
    assert entry["date"] == FIXED_DATE
    assert entry["path"] == build.zip_path.name
    assert entry["requires"] == []
    assert entry["sha256"] == hashlib.sha256(build.zip_path.read_bytes()).hexdigest()
    assert entry["sha256"] == build.sha256


def test_two_builds_are_byte_identical(build, tmp_path):
    again = build_plugin(tmp_path, repo_root=REPO, date=FIXED_DATE)

    assert again.sha256 == build.sha256
    assert again.zip_path.read_bytes() == build.zip_path.read_bytes()
    assert again.index_path.read_text() == build.index_path.read_text()


def test_zip_holds_what_users_need_and_nothing_else(build):
    with zipfile.ZipFile(build.zip_path) as archive:
        infos = archive.infolist()
        requirements = archive.read("requirements.txt").decode()
    names = [info.filename for info in infos]
    package = {
        f"stash2plex/{path.relative_to(REPO / 'src' / 'stash2plex').as_posix()}"
        for path in (REPO / "src" / "stash2plex").rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and "sandbox" not in path.parts
        and path.suffix != ".pyc"
    }
    docs = {
        path.relative_to(REPO).as_posix() for path in (REPO / "docs").rglob("*") if path.is_file()
    }

    assert names == sorted(names)
    assert set(names) == {
        f"{PLUGIN_ID}.yml",
        "stash2plex_plugin.py",
        "requirements.txt",
        "LICENSE",
        "README.md",
        *package,
        *docs,
    }
    # The README's links to the docs work inside the installed plugin folder too.
    readme = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert link in names, link
    assert "stash2plex/plugin/deps.py" in names and "stash2plex/plugin/entry.py" in names
    assert not [n for n in names if "sandbox/" in n or "__pycache__" in n or n.endswith(".pyc")]
    for info in infos:
        # Stash creates each file with the entry's mode: it must be a readable regular file.
        assert info.create_system == 3
        assert info.external_attr >> 16 == stat.S_IFREG | 0o644, info.filename
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
    pinned = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert pinned == runtime_requirements(REPO / "pyproject.toml")
    assert pinned == [dependency.requirement for dependency in install.DEPENDENCIES]


def test_zip_holds_the_ui_files_its_manifest_names(build, tmp_path):
    with zipfile.ZipFile(build.zip_path) as archive:
        names = set(archive.namelist())
        (tmp_path / f"{PLUGIN_ID}.yml").write_bytes(archive.read(f"{PLUGIN_ID}.yml"))
    ui = load_manifest(tmp_path / f"{PLUGIN_ID}.yml").ui
    assert ui.javascript and ui.css
    for name in [*ui.javascript, *ui.css]:
        assert name in names, f"{name} is named in the manifest's ui: block but not in the zip"


def test_installed_zip_records_hooks_and_runs_tasks(build, servers, tmp_path, worker_env):
    library, plex, stash = servers
    plugin = install_zip(build.zip_path, tmp_path / "plugins")
    data = plugin / "data"
    scene = find_synced_scene(library)
    key = plex.find_by_file(library.plex_path(scene.files[0].path))
    cwd = tmp_path / "stash-cwd"
    cwd.mkdir()
    runner = PluginRunner(plugin, python=sys.executable, cwd=cwd, env=worker_env)
    connection = stash.server_connection(plugin_dir=str(plugin))
    try:
        hook = runner.run_hook("Scene.Update.Post", scene.id, connection)

        assert hook.returncode == 0 and hook.error is None, hook.stderr
        assert "queued" in str(hook.output)
        with Store.open(data) as store:
            assert store.job(scene.id) is not None
        wait_until(lambda: plex.item(key).title == scene.title, message="the title in Plex")

        task = runner.run_task("Process Queue", connection, timeout=120)

        assert task.returncode == 0 and task.error is None, task.stderr
        assert not (plugin / "data" / "deps").exists(), (
            "dependencies were present: nothing to install"
        )
    finally:
        reap_workers(data)
    assert not worker_pids(data)


def test_cli_builds_the_plugin(tmp_path):
    result = CliRunner().invoke(
        cli_main, ["build-plugin", "--out", str(tmp_path), "--date", FIXED_DATE]
    )

    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{PLUGIN_ID}.zip").is_file()
    assert re.search(r"sha256 [0-9a-f]{64}", result.output)
    assert yaml.safe_load((tmp_path / "index.yml").read_text())[0]["date"] == FIXED_DATE


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A minimal checkout to break in different ways."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in (f"{PLUGIN_ID}.yml", "stash2plex_plugin.py", "LICENSE", "README.md"):
        shutil.copy(REPO / name, root)
    shutil.copy(REPO / "pyproject.toml", root)
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copytree(
        REPO / "src" / "stash2plex",
        root / "src" / "stash2plex",
        ignore=shutil.ignore_patterns("__pycache__", "sandbox"),
    )
    return root


def test_default_date_is_utc_in_stash_format(repo_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")

    result = build_plugin(tmp_path / "out", repo_root=repo_copy)

    assert result.date == "2026-01-01 00:00:00"
    assert yaml.safe_load(result.index_path.read_text())[0]["date"] == result.date


def test_version_mismatch_and_bad_date_are_refused(repo_copy, tmp_path):
    manifest = repo_copy / f"{PLUGIN_ID}.yml"
    text = manifest.read_text()

    with pytest.raises(BuildError, match="YYYY-MM-DD HH:MM:SS"):
        build_plugin(tmp_path / "a", repo_root=repo_copy, date="2026-01-02")
    manifest.write_text(re.sub(r"(?m)^version: .*$", "version: 9.9.9", text))
    with pytest.raises(BuildError, match="make them equal"):
        build_plugin(tmp_path / "b", repo_root=repo_copy, date=FIXED_DATE)
    assert DATE_FORMAT == "%Y-%m-%d %H:%M:%S"
