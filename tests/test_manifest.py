"""The strict manifest loader: what Stash v0.30 (go-yaml v2, strict) accepts and rejects, and the
stricter CommunityScripts index schema."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stash2plex.sandbox.manifest import (
    ManifestError,
    load_manifest,
    validate_community_schema,
)

REPO = Path(__file__).resolve().parents[1]

FULL = """\
name: Probe Plugin
# requires: PythonDepManager, OtherPlugin
description: >
  Folded description
  on two lines.
version: 1.0
url: https://example.invalid/probe
exec:
  - python
  - "{pluginDir}/probe.py"
interface: raw
errLog: warning
tasks:
  - name: Sync all
    description: |
      Literal block
      kept as is.
    execArgs: ["--full", '{pluginDir}/x']
    defaultArgs:
      mode: sync_all   # a trailing comment
      days: 30
      flag: true
      ratio: 1.50
      answer: yes
      empty:
      quoted: "30"
hooks:
  - name: On update
    triggeredBy: [Scene.Update.Post, Scene.Create.Post]
  - name: With args
    description: has defaults
    triggeredBy:
      - Tag.Merge.Post
    defaultArgs: {mode: hook}
settings:
  plexUrl:
    displayName: Plex URL
    description: Where Plex lives
    type: STRING
  dryRun:
    displayName: Dry run
    type: BOOLEAN
  untyped:
    displayName: No type given
ui:
  requires: [Other]
  javascript: [probe.js]
  css: []
  assets: {"/": assets}
  csp:
    connect-src: ["http://localhost:32400"]
"""


def write(tmp_path: Path, text: str, name: str = "Probe.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return "\n".join(caught.value.problems)


def test_full_manifest_decodes_like_stash(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, FULL))

    assert manifest.id == "Probe"  # the file stem, not `name:`
    assert manifest.name == "Probe Plugin"
    assert manifest.description == "Folded description on two lines.\n"
    assert manifest.version == "1.0"  # kept as written, not the float 1.0
    assert manifest.url == "https://example.invalid/probe"
    assert manifest.exec == ["python", "{pluginDir}/probe.py"]
    assert manifest.interface == "raw"
    assert manifest.err_log == "warning"
    assert manifest.plugin_dir == tmp_path

    (task,) = manifest.tasks
    assert task.name == "Sync all"
    assert task.description == "Literal block\nkept as is.\n"
    assert task.exec_args == ["--full", "{pluginDir}/x"]
    # map[string]string: every default is the YAML text as written; null is "".
    assert task.default_args == {
        "mode": "sync_all",
        "days": "30",
        "flag": "true",
        "ratio": "1.50",
        "answer": "yes",
        "empty": "",
        "quoted": "30",
    }

    assert [h.name for h in manifest.hooks] == ["On update", "With args"]
    assert manifest.hooks[0].triggered_by == ["Scene.Update.Post", "Scene.Create.Post"]
    assert manifest.hooks[0].default_args == {}
    assert manifest.hooks[1].default_args == {"mode": "hook"}
    assert manifest.hooks_for("Scene.Create.Post") == [manifest.hooks[0]]

    assert list(manifest.settings) == ["plexUrl", "dryRun", "untyped"]
    assert manifest.settings["plexUrl"].display_name == "Plex URL"
    assert manifest.settings["dryRun"].type == "BOOLEAN"
    assert manifest.settings["untyped"].type == "STRING"  # Stash's default

    assert manifest.ui.javascript == ["probe.js"]
    assert manifest.ui.assets == {"/": "assets"}
    assert manifest.ui.csp == {"connect-src": ["http://localhost:32400"]}


def test_defaults_for_a_minimal_manifest(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, "exec: [python, x.py]\n", name="my.plugin.yml"))
    assert manifest.id == "my.plugin"  # only the last extension is cut
    assert manifest.name == "my.plugin"  # an empty name falls back to the id
    assert manifest.interface == "raw"
    assert manifest.err_log == "error"
    assert manifest.version is None and manifest.description is None
    assert manifest.tasks == [] and manifest.hooks == [] and manifest.settings == {}


def test_the_projects_own_manifest_loads_and_passes_the_index_schema() -> None:
    manifest = load_manifest(REPO / "Stash2Plex.yml")
    assert manifest.id == "Stash2Plex"
    assert manifest.hooks, "the plugin must register its hook"
    validate_community_schema(REPO / "Stash2Plex.yml")


def test_a_requires_comment_is_fine_but_a_requires_key_names_itself(tmp_path: Path) -> None:
    ok = write(tmp_path, "name: P\n# requires: PythonDepManager\nexec: [python]\n")
    assert load_manifest(ok).name == "P"

    bad = write(tmp_path, "name: P\nrequires: PythonDepManager\nexec: [python]\n")
    assert problems_of(bad) == "line 2: field requires not found in type plugin.Config"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tasks:\n  - name: T\n    triggeredBy: [Scene.Update.Post]\n",
            "line 3: field triggeredBy not found in type plugin.OperationConfig",
        ),
        (
            "hooks:\n  - name: H\n    triggeredBy: [Scene.Update.Post]\n    args: {a: b}\n",
            "line 4: field args not found in type plugin.HookConfig",
        ),
        (
            "settings:\n  url:\n    display_name: URL\n",
            "line 3: field display_name not found in type plugin.SettingConfig",
        ),
        ("errlog: info\n", "line 1: field errlog not found in type plugin.Config"),
        ("ui:\n  scripts: [a.js]\n", "line 2: field scripts not found in type plugin.UIConfig"),
        (
            "ui:\n  csp:\n    img-src: [x]\n",
            "line 3: field img-src not found in type plugin.PluginCSP",
        ),
    ],
)
def test_unknown_nested_keys_fail_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert problems_of(write(tmp_path, text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: A\nname: B\n", "line 2: field name already set in type plugin.Config"),
        (
            "tasks:\n  - name: T\n    defaultArgs:\n      mode: a\n      mode: b\n",
            "line 5: key 'mode' already set in map",
        ),
        (
            "settings:\n  url: {type: STRING}\n  url: {type: NUMBER}\n",
            "line 3: key 'url' already set in map",
        ),
        (
            "hooks:\n  - name: H\n    name: H2\n    triggeredBy: []\n",
            "line 3: field name already set in type plugin.HookConfig",
        ),
    ],
)
def test_duplicate_keys_fail(tmp_path: Path, text: str, expected: str) -> None:
    assert problems_of(write(tmp_path, text)) == expected


@pytest.mark.parametrize("setting_type", ["INT", "string", "Boolean", "ENUM"])
def test_a_bad_setting_type_fails(tmp_path: Path, setting_type: str) -> None:
    path = write(tmp_path, f"settings:\n  s:\n    displayName: S\n    type: {setting_type}\n")
    assert f"invalid type {setting_type} for setting s" in problems_of(path)


def test_interface_must_be_raw_rpc_or_js(tmp_path: Path) -> None:
    for interface in ("raw", "rpc", "js"):
        assert load_manifest(write(tmp_path, f"interface: {interface}\n")).interface == interface
    assert "invalid interface type RAW" in problems_of(write(tmp_path, "interface: RAW\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "exec: python plugin.py\n",
            "line 1: cannot unmarshal !!str `python plugin.py` into []string",
        ),
        ("name: [a, b]\n", "line 1: cannot unmarshal !!seq into string"),
        ("tasks: {name: T}\n", "line 1: cannot unmarshal !!map into []*plugin.OperationConfig"),
        ("tasks:\n  - name: T\n    execArgs: --full\n", "line 3: cannot unmarshal !!str `--full`"),
        ("tasks:\n  -\n", "line 2: empty entry in a list of plugin.OperationConfig"),
        ("hooks:\n  - name: H\n    defaultArgs: [a]\n", "line 3: cannot unmarshal !!seq into map"),
    ],
)
def test_values_of_the_wrong_shape_fail(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in problems_of(write(tmp_path, text))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "requires: X\nname: A\nname: B\nsettings:\n  s: {type: INT}\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert len(caught.value.problems) == 3
    assert str(caught.value).startswith("Probe.yml: line 1: field requires not found")


def test_unknown_err_log_loads_as_in_stash_and_means_error(tmp_path: Path) -> None:
    # Stash never validates errLog: an unknown level silently logs unprefixed lines as errors.
    manifest = load_manifest(write(tmp_path, "name: P\nerrLog: verbose\n"))
    assert manifest.err_log == "verbose"
    assert manifest.effective_err_log == "error"
    assert load_manifest(write(tmp_path, "errLog: none\n")).effective_err_log == "none"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        "name: [unclosed\n",
        "name: a\n\tbad: tab\n",
        "- just\n- a list\n",
    ],
)
def test_empty_or_malformed_yaml_fails(tmp_path: Path, text: str) -> None:
    with pytest.raises(ManifestError):
        load_manifest(write(tmp_path, text))


def test_anchors_and_merge_keys_decode_like_go_yaml(tmp_path: Path) -> None:
    text = """\
    tasks:
      - name: A
        defaultArgs: &defaults {mode: a, days: 7}
      - name: B
        defaultArgs: *defaults
      - &base
        name: C
        description: shared
      - <<: *base
        name: D
    """
    tasks = load_manifest(write(tmp_path, text)).tasks
    assert tasks[1].default_args == {"mode": "a", "days": "7"}
    assert (tasks[3].name, tasks[3].description) == ("D", "shared")


def test_only_the_first_document_counts(tmp_path: Path) -> None:
    assert load_manifest(write(tmp_path, "name: A\n---\nbogus: 1\n")).name == "A"


# -- the CommunityScripts index schema ---------------------------------------------------------

VALID_FOR_INDEX = """\
name: P
version: 1.2.3
exec: [python, "{pluginDir}/p.py"]
errLog: error
tasks:
  - name: Purge
    description: Purge old entries
    defaultArgs: {mode: purge, days: "30"}
hooks:
  - name: H
    triggeredBy: [Scene.Update.Post]
    defaultArgs: {mode: hook}
settings:
  url: {displayName: URL, type: STRING}
"""


def community_problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ManifestError) as caught:
        validate_community_schema(write(tmp_path, text))
    return "\n".join(caught.value.problems)


def test_index_schema_accepts_a_clean_manifest(tmp_path: Path) -> None:
    validate_community_schema(write(tmp_path, VALID_FOR_INDEX))
    # A version written as a YAML number is a JSON number there: the pattern does not apply.
    validate_community_schema(write(tmp_path, VALID_FOR_INDEX.replace("1.2.3", "1.0")))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("version: 1.2.3", "version: v1.2"), "version 'v1.2' must match"),
        (("version: 1.2.3", "version: 1.2.3-beta"), "must match"),
        (("errLog: error", "errLog: none"), "errLog 'none' must be one of"),
        (("errLog: error", "errLog: progress"), "errLog 'progress' must be one of"),
        (("{displayName: URL, type: STRING}", "{type: STRING}"), "settings.url.displayName is req"),
        (
            ("{displayName: URL, type: STRING}", "{displayName: URL}"),
            "settings.url.type is required",
        ),
        (('days: "30"', "days: 30"), "tasks[0].defaultArgs.days must be string, not integer"),
        (("[Scene.Update.Post]", "[Scene.Updated.Post]"), "'Scene.Updated.Post' is not a hook"),
        (("name: P\n", ""), "name is required"),
        (
            (
                "    defaultArgs: {mode: purge",
                '    execArgs: ["--x"]\n    defaultArgs: {mode: purge',
            ),
            "tasks[0].execArgs must be object, not array",
        ),
    ],
)
def test_index_schema_is_stricter_than_stash(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    text = VALID_FOR_INDEX.replace(old, new, 1)
    assert text != VALID_FOR_INDEX
    load_manifest(write(tmp_path, text))  # Stash itself would load it
    assert expected in community_problems(tmp_path, text)


def test_index_schema_requires_stash_to_load_the_manifest_first(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="field requires not found"):
        validate_community_schema(write(tmp_path, VALID_FOR_INDEX + "requires: X\n"))
