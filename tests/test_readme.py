"""The README is true: each command of its command-line section runs as written against the
sandbox and exits 0; the demo and build commands work; every task it names is a task of the
manifest (and every task is named); every document it links to exists."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from stash2plex.cli import main
from stash2plex.sandbox.manifest import load_manifest

from .sandbox import sandbox

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def shell_lines(text: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def without_comment(line: str) -> str:
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


def test_every_command_line_example_runs_as_written(tmp_path, monkeypatch):
    lines = shell_lines(section("Command line"))
    exports = [line for line in lines if line.startswith("export ")]
    commands = [without_comment(line) for line in lines if line.startswith("stash2plex ")]
    assert len(commands) >= 15
    with sandbox(tmp_path, scenes=20) as box:
        scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
        names = set()
        for line in exports:
            for assignment in shlex.split(line)[1:]:
                name, _, _value = assignment.partition("=")
                names.add(name)
        # The README's values are examples; the names are what must work.
        assert names == {"STASH2PLEX_STASH_URL", "STASH2PLEX_STASH_API_KEY", "STASH2PLEX_DATA_DIR"}
        monkeypatch.setenv("STASH2PLEX_STASH_URL", box.stash.url)
        monkeypatch.setenv("STASH2PLEX_STASH_API_KEY", "your-stash-api-key")
        monkeypatch.setenv("STASH2PLEX_DATA_DIR", str(box.data_dir))
        runner = CliRunner()
        for command in commands:
            argv = shlex.split(command.replace("SCENE_ID", str(scene.id)))[1:]
            result = runner.invoke(main, argv)
            assert result.exit_code == 0, f"{command}\n{result.output}"
            assert "Traceback" not in result.output
            if "--json" in argv:
                json.loads(result.stdout)
        with box.store() as store:
            assert store.link_count() > 0 and store.dead_letters() == []


def test_the_demo_and_build_commands_work_as_written(tmp_path, monkeypatch):
    [demo] = [
        line for line in shell_lines(section("Try it, then test it")) if "stash2plex demo" in line
    ]
    assert demo.endswith(".venv/bin/stash2plex demo")
    runner = CliRunner()
    result = runner.invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "Every matchable scene is in sync." in result.output
    # The demo's conflicts are explained: what one is and what to do about it.
    assert "A conflict is one Plex item holding the files of several Stash scenes" in result.output
    assert "Split Apart" in result.output and "merge the scenes in Stash" in result.output

    [build] = [line for line in shell_lines(section("Install in Stash")) if "build-plugin" in line]
    assert build == ".venv/bin/stash2plex build-plugin --out dist"
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["build-plugin", "--out", "dist"])
    assert result.exit_code == 0, result.output
    index = (tmp_path / "dist" / "index.yml").resolve()
    assert f"plugin source URL for Stash on this machine: file://{index}" in result.output
    assert (tmp_path / "dist" / "Stash2Plex.zip").is_file()


def test_the_tasks_the_readme_names_are_the_manifests():
    manifest = load_manifest(REPO / "Stash2Plex.yml")
    tasks = {task.name for task in manifest.tasks}
    install = section("Install in Stash")
    named = {" ".join(n.split()) for n in re.findall(r"\*\*([^*]+)\*\*", install)} - {
        "Add Source",
        "Reload plugins",
        "plugin source URL",
        "Plex URL",
        "Plex token",
        "Path mapping",
        "failed job",
        "Preserve Plex edits",
        "Pull plays from Plex",
        "Pull resume points from Plex",
        "Sync ratings both ways",
    }
    assert named == tasks


@pytest.mark.parametrize(
    "document", ["README.md", *sorted(p.name for p in (REPO / "docs").glob("*.md"))]
)
def test_every_linked_document_exists(document):
    path = REPO / document if document == "README.md" else REPO / "docs" / document
    for link in re.findall(r"\]\(([^)#\s]+)", path.read_text(encoding="utf-8")):
        if "://" in link:
            continue
        assert (path.parent / link).exists(), f"{document} links to {link}"


def test_the_browser_test_harness_build_step_is_stated():
    text = " ".join(section("Try it, then test it").split())
    assert "cd ui && npm ci && npm run build:harness" in text
    scripts = json.loads((REPO / "ui" / "package.json").read_text())["scripts"]
    assert "build:harness" in scripts
    assert "ui/harness/dist/" in text  # where tests/test_browser.py looks for it


def test_where_the_stash_api_key_is_kept_is_stated_and_true(tmp_path):
    import os
    import stat

    from stash2plex.engine.context import API_KEY_KEY
    from stash2plex.store.db import DB_FILENAME, Store

    text = " ".join(section("Install in Stash").split())
    assert f"data/{DB_FILENAME}" in text and "mode 0600" in text
    assert "never appear in logs" in text and "STASH2PLEX_STASH_API_KEY" in text
    with Store.open(tmp_path) as store:
        store.put_value(API_KEY_KEY, "a-stash-key")
    mode = stat.S_IMODE(os.stat(tmp_path / DB_FILENAME).st_mode)
    assert mode == 0o600, oct(mode)


def test_the_bare_command_runs_in_the_venv_the_install_created():
    # The install command creates `.venv` and installs there: a section that types a bare
    # `stash2plex` activates that venv before its first use.
    [install] = [line for line in shell_lines(section("Try it, then test it")) if "demo" in line]
    assert install.startswith("python3 -m venv .venv && .venv/bin/pip install")
    for title in ("Command line", "Try things by hand"):
        lines = shell_lines(section(title))
        first = next(i for i, line in enumerate(lines) if line.startswith("stash2plex "))
        assert ". .venv/bin/activate" in lines[:first], title
