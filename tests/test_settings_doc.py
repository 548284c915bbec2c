"""The settings reference and the manifest's `settings:` block are generated from
`config.SETTINGS`, are current, and load in Stash."""

from __future__ import annotations

import shutil

import pytest
import yaml

from stash2plex.sandbox.manifest import load_manifest, validate_community_schema
from stash2plex.settings import reference as settings_doc
from stash2plex.settings.config import PLUGIN_ID, SETTINGS, Setting
from stash2plex.settings.reference import (
    WRITE_COMMAND,
    render_manifest,
    render_reference,
    stale_files,
    yaml_string,
)

from .conftest import REPO

MANIFEST = REPO / f"{PLUGIN_ID}.yml"


def test_generated_files_are_current():
    stale = [path.relative_to(REPO).as_posix() for path in stale_files(REPO)]

    assert not stale, f"{', '.join(stale)} out of date with config.SETTINGS; run: {WRITE_COMMAND}"


def test_manifest_loads_in_stash_and_passes_the_community_schema():
    load_manifest(MANIFEST)
    validate_community_schema(MANIFEST)


def test_manifest_settings_are_exactly_the_settings_table():
    loaded = load_manifest(MANIFEST).settings

    assert set(loaded) == {s.key for s in SETTINGS}
    assert list(loaded) == [s.key for s in SETTINGS]
    for setting in SETTINGS:
        entry = loaded[setting.key]
        assert (entry.display_name, entry.description, entry.type) == (
            setting.display_name,
            setting.description,
            setting.type,
        )


def test_reference_documents_every_setting_and_its_default():
    text = (REPO / settings_doc.REFERENCE).read_text(encoding="utf-8")

    assert "Stash stores no defaults" in text
    assert "unchecked" in text
    for setting in SETTINGS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{setting.key}` |"))
        assert f"| {settings_doc.describe_default(setting)} |" in row


@pytest.mark.parametrize(
    "text",
    [
        "Plain words",
        "Default: 30.",
        "yes",
        "Off",
        "a # not a comment",
        "it's",
        'say "hi"',
        "trailing space ",
        "30",
        "http://127.0.0.1:32400",
        "- dash",
        "ünïcode ⇒ arrows, [brackets] {braces}",
        "back\\slash",
    ],
)
def test_yaml_strings_read_back_exactly_in_yaml_11_and_12(text, tmp_path):
    manifest = tmp_path / "Probe.yml"
    manifest.write_text(
        f"name: Probe\nexec: [python, x.py]\nsettings:\n  k:\n"
        f"    displayName: {yaml_string(text)}\n    type: STRING\n",
        encoding="utf-8",
    )

    assert load_manifest(manifest).settings["k"].display_name == text
    validate_community_schema(manifest)  # YAML 1.2: still a string
    assert yaml.safe_load(manifest.read_text(encoding="utf-8"))["settings"]["k"]["displayName"] == (
        text
    )


SETTINGS_SAMPLE = (
    Setting("alpha", "STRING", "", "Alpha", "First: one."),
    Setting("beta", "BOOLEAN", False, "Beta", "Second"),
)


def test_only_the_settings_block_is_replaced():
    before = "name: X\n# a comment\nsettings:\n  old:\n    type: STRING\n\n# tail\ntasks: []\n"

    after = render_manifest(before, SETTINGS_SAMPLE)

    assert after == (
        "name: X\n# a comment\n"
        "settings:\n"
        '  alpha:\n    displayName: Alpha\n    description: "First: one."\n    type: STRING\n'
        "  beta:\n    displayName: Beta\n    description: Second\n    type: BOOLEAN\n"
        "\n# tail\ntasks: []\n"
    )
    assert render_manifest(after, SETTINGS_SAMPLE) == after


def test_a_manifest_without_settings_gets_the_block_appended():
    after = render_manifest("name: X\nexec: [python]", SETTINGS_SAMPLE)

    assert after.startswith("name: X\nexec: [python]\nsettings:\n  alpha:\n")


def test_check_fails_on_stale_files_and_write_fixes_them(tmp_path, capsys):
    shutil.copy(MANIFEST, tmp_path / MANIFEST.name)
    (tmp_path / "docs").mkdir()
    (tmp_path / settings_doc.REFERENCE).write_text("old\n", encoding="utf-8")

    assert settings_doc.main(["--check", "--repo-root", str(tmp_path)]) == 1
    assert WRITE_COMMAND in capsys.readouterr().err
    assert settings_doc.main(["--write", "--repo-root", str(tmp_path)]) == 0
    assert settings_doc.main(["--check", "--repo-root", str(tmp_path)]) == 0
    assert (tmp_path / settings_doc.REFERENCE).read_text(encoding="utf-8") == render_reference()
    assert (tmp_path / MANIFEST.name).read_bytes() == MANIFEST.read_bytes()
