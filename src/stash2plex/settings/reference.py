"""Generate the settings reference (`docs/settings.md`) and the manifest's `settings:` block from
`config.SETTINGS`, the single source of truth for settings.

    python -m stash2plex.settings.reference --write   # rewrite both files
    python -m stash2plex.settings.reference --check   # exit 1 if either is stale

Only the `settings:` block of `Stash2Plex.yml` is generated; the rest of the manifest is left
byte for byte as written. The YAML is written by hand (no YAML library needed): strings are
plain when that is unambiguous in both YAML 1.1 (Stash's go-yaml) and YAML 1.2 (the
CommunityScripts validator), double-quoted otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from stash2plex.settings.config import (
    CONNECTION_HELP,
    CONNECTION_LABELS,
    PLUGIN_ID,
    SETTINGS,
    Setting,
)

MANIFEST = f"{PLUGIN_ID}.yml"
REFERENCE = "docs/settings.md"
WRITE_COMMAND = "python -m stash2plex.settings.reference --write"

# A plain scalar that reads the same in YAML 1.1 and 1.2: starts with a letter, no `: `/` #`
# (excluding `:` and `#` altogether keeps the rule simple), no quotes, no trailing space.
_PLAIN = re.compile(r"^[A-Za-z][^:#'\"\n\\]*(?<! )$")
# Words YAML 1.1 reads as booleans or null, whatever their case.
_YAML11_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_SETTINGS_LINE = re.compile(r"^settings:[ \t]*(#.*)?$")


def yaml_string(value: str) -> str:
    """`value` as a YAML scalar that both YAML 1.1 and 1.2 read back as this exact string."""
    if _PLAIN.match(value) and value.lower() not in _YAML11_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


def render_settings_block(settings: Sequence[Setting] = SETTINGS) -> str:
    """The manifest's `settings:` block: displayName, description and type, in table order."""
    lines = ["settings:"]
    for setting in settings:
        lines += [
            f"  {yaml_string(setting.key)}:",
            f"    displayName: {yaml_string(setting.display_name)}",
            f"    description: {yaml_string(setting.description)}",
            f"    type: {setting.type}",
        ]
    return "\n".join(lines) + "\n"


def render_manifest(text: str, settings: Sequence[Setting] = SETTINGS) -> str:
    """`text` (a manifest) with its `settings:` block replaced, or appended if it has none.

    The block runs from the top-level `settings:` line through the last indented line after it;
    whatever follows (the next top-level key, comments, blank lines) is kept.
    """
    block = render_settings_block(settings)
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _SETTINGS_LINE.match(line)), None)
    if start is None:
        if any(line.startswith("settings:") for line in lines):
            raise ValueError(f"{MANIFEST}: write `settings:` as a block mapping, on its own line")
        separator = "" if not text or text.endswith("\n") else "\n"
        return text + separator + block
    end = start + 1
    last = start
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            break  # the next top-level key
        if line.strip() and line[0].isspace():
            last = end
        end += 1
    return "".join(lines[:start]) + block + "".join(lines[last + 1 :])


def describe_default(setting: Setting) -> str:
    """What an absent key means, in words."""
    if setting.required:
        return "none: required"
    if setting.type == "BOOLEAN":
        if setting.default:
            return "on (an untouched box shows unchecked but counts as on)"
        return "off"
    if setting.default is None or setting.default == "" or setting.default == ():
        return "empty"
    if isinstance(setting.default, float) and setting.default.is_integer():
        return str(int(setting.default))
    return str(setting.default)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_reference(settings: Sequence[Setting] = SETTINGS) -> str:
    """docs/settings.md."""
    rows = [
        f"| `{s.key}` | {_cell(s.display_name)} | {s.type} | {_cell(describe_default(s))} | "
        f"{_cell(s.description)} |"
        for s in settings
    ]
    return "\n".join(
        [
            "# Settings reference",
            "",
            f"<!-- Generated from src/stash2plex/settings/config.py by `{WRITE_COMMAND}`; "
            "do not edit by hand. -->",
            "",
            f"Set these in Stash under **Settings > Plugins > {PLUGIN_ID}**. The command line "
            "and the service read the same keys.",
            "",
            "Stash stores no defaults: a setting you never changed is simply absent from what "
            "Stash hands the plugin, and Stash2Plex uses the default below (the *Default* "
            "column says what an absent key means). Stash shows an untouched BOOLEAN setting "
            "as unchecked whatever its default, so a behaviour that is on by default gets a "
            "name whose unchecked state is the default, or a description that says "
            '"default: on".',
            "",
            "A value that is not valid never disables the plugin: that one setting falls back "
            "to its default, and the next task report names the key and the accepted values.",
            "",
            "| Key | Name in Stash | Type | Default | Description |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "## Outside Stash: how the command line and the service reach Stash",
            "",
            "Stash gives the plugin its own connection; the command line and the service read "
            "these from the environment (`STASH2PLEX_<KEY>`) or the settings file. "
            "`stash2plex config check` shows which Stash it uses and where that came from.",
            "",
            "| Key | Variable | Description |",
            "|---|---|---|",
            *(
                f"| `{key}` | `STASH2PLEX_{key.upper()}` | {_cell(CONNECTION_HELP[key])} |"
                for key in CONNECTION_LABELS
            ),
            "",
        ]
    )


def expected_files(repo_root: Path) -> dict[Path, str]:
    """Each generated file and the content it should have."""
    manifest = repo_root / MANIFEST
    return {
        repo_root / REFERENCE: render_reference(),
        manifest: render_manifest(manifest.read_text(encoding="utf-8")),
    }


def stale_files(repo_root: Path) -> list[Path]:
    """The generated files whose content differs from what SETTINGS says (or that are missing)."""
    stale = []
    for path, content in expected_files(repo_root).items():
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != content:
            stale.append(path)
    return stale


def write_files(repo_root: Path) -> list[Path]:
    """Rewrite the stale generated files; returns the ones written."""
    written = []
    for path, content in expected_files(repo_root).items():
        if path.is_file() and path.read_text(encoding="utf-8") == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # newline="" keeps "\n" line endings on every platform.
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(content)
        written.append(path)
    return written


def _default_repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stash2plex.settings.reference",
        description="Generate docs/settings.md and the settings: block of the manifest.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite both files")
    action.add_argument("--check", action="store_true", help="exit 1 if either is stale")
    parser.add_argument(
        "--repo-root", type=Path, default=None, help="the checkout (default: this one)"
    )
    args = parser.parse_args(argv)
    root = args.repo_root or _default_repo_root()
    if not (root / MANIFEST).is_file():
        parser.error(f"no {MANIFEST} in {root}: pass --repo-root")
    if args.check:
        stale = stale_files(root)
        if stale:
            names = ", ".join(path.relative_to(root).as_posix() for path in stale)
            print(f"stale: {names}; run: {WRITE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    for path in write_files(root):
        print(f"wrote {path.relative_to(root).as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
