"""Building the installable plugin: `Stash2Plex.zip` and a Stash plugin source `index.yml`.

Stash's "Available Plugins" page reads a source index: a YAML list of packages with the fields
of `pkg/pkg.RemotePackage` (`id`, `name`, `metadata`, `version`, `date`, `path`, `sha256`,
`requires`). To install, Stash downloads the zip named by `path` (relative to the index),
refuses it unless its sha256 matches, and unzips it over `<plugins>/<id>/`, creating each file
with the mode stored in the zip. It offers an update when an index entry's `date` (UTC,
`YYYY-MM-DD HH:MM:SS`) is later than the installed one's.

The zip holds, at its root, the manifest, the entry script, a generated requirements.txt, the
license, the README, the user docs (`docs/`, which the README links to) and the `stash2plex`
package without the sandbox (the emulators are for tests and the demo, not for users). It is
reproducible: entries sorted, one fixed timestamp, one fixed mode, and stored rather than
deflated, because deflate output differs between zlib builds and anyone should be able to
rebuild a release and get its published sha256.

Standard library only (plus `tomli` on Python 3.10, to read pyproject.toml).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from stash2plex.settings.config import PLUGIN_ID

MANIFEST_NAME = f"{PLUGIN_ID}.yml"
ZIP_NAME = f"{PLUGIN_ID}.zip"
INDEX_NAME = "index.yml"
ENTRY_SCRIPT = "stash2plex_plugin.py"
PACKAGE = "stash2plex"
#: Stash's package time format (`pkg/pkg.TimeFormat`), always UTC.
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: The earliest time a zip header can hold; any constant would do.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
#: Regular file, rw-r--r--. Stash creates each file with the zip entry's mode, and an entry
#: without Unix attributes would be created with no permissions at all.
ZIP_FILE_MODE = (stat.S_IFREG | 0o644) << 16
#: Left out of the zip: bytecode, hidden files (editor and OS droppings), the emulators.
EXCLUDED_DIRS = frozenset({"__pycache__", "sandbox"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


class BuildError(RuntimeError):
    """The plugin cannot be built from this checkout; the message says what to fix."""


@dataclass(frozen=True)
class BuildResult:
    """What `build_plugin` wrote. `source_url` is what to enter in Stash as the plugin source
    (Settings > Plugins > Available Plugins > Add Source) when Stash runs on this machine."""

    zip_path: Path
    index_path: Path
    sha256: str
    version: str
    date: str
    #: The zip's entry names, in archive order.
    files: tuple[str, ...]

    @property
    def source_url(self) -> str:
        """`file://` and the index's absolute path: Stash reads a local source index (and the
        zip beside it) when its URL has the file scheme."""
        return self.index_path.resolve().as_uri()


def runtime_requirements(pyproject: Path) -> list[str]:
    """`[project] dependencies` of pyproject.toml: the pinned ranges the worker needs."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise BuildError(
                "reading pyproject.toml needs Python 3.11+ or the tomli package"
            ) from None
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read {pyproject}: {exc}") from None
    dependencies = data.get("project", {}).get("dependencies")
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise BuildError(f"{pyproject} has no [project] dependencies list")
    return list(dependencies)


def render_requirements(requirements: list[str]) -> str:
    """requirements.txt for the plugin folder, read by `plugin.install` on the first task."""
    header = (
        "# Runtime dependencies of Stash2Plex, generated from pyproject.toml by\n"
        "# `stash2plex build-plugin`. The first task run installs them into data/deps/ beside\n"
        "# this file (see stash2plex/plugin/install.py), never into the system Python.\n"
    )
    return header + "".join(f"{requirement}\n" for requirement in requirements)


def package_files(package_dir: Path) -> list[tuple[str, Path]]:
    """(archive name, file) for every file of the package that users need, sorted by name."""
    found = []
    for root, dirs, files in os.walk(package_dir):
        # Prune in place so os.walk does not descend into excluded folders.
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith(EXCLUDED_SUFFIXES):
                continue
            path = Path(root) / name
            relative = path.relative_to(package_dir).as_posix()
            found.append((f"{PACKAGE}/{relative}", path))
    return sorted(found)


def manifest_scalar(text: str, key: str) -> str | None:
    """A top-level one-line scalar of the manifest (`name:`, `description:`, `version:`).

    Enough YAML for our own manifest, without a YAML library: plain, single- and double-quoted
    values. A block scalar (`|`, `>`) is refused rather than misread.
    """
    for line in text.splitlines():
        if not line.startswith(f"{key}:"):
            continue
        value = line[len(key) + 1 :].strip()
        if value.startswith('"'):
            try:
                return str(json.loads(value))
            except ValueError:
                break
        if value.startswith("'"):
            if len(value) < 2 or not value.endswith("'"):
                break
            return value[1:-1].replace("''", "'")
        value = re.split(r"\s#", value, maxsplit=1)[0].strip()
        if not value or value[0] in "|>&*!{[":
            break
        return value
    else:
        return None
    raise BuildError(f"{MANIFEST_NAME}: keep `{key}:` a one-line plain or quoted string")


def default_date(repo_root: Path) -> str:
    """The index date when none is given: SOURCE_DATE_EPOCH, else the last commit, else now.

    Stash offers an update when the date advances, so a release build from a commit carries
    that commit's time, and rebuilding the same commit gives the same index.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    seconds: float | None = None
    if epoch:
        try:
            seconds = int(epoch)
        except ValueError:
            raise BuildError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None
    else:
        try:
            result = subprocess.run(
                ["git", "-C", str(repo_root), "log", "-1", "--format=%ct"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            seconds = int(result.stdout.strip())
        except (OSError, subprocess.SubprocessError, ValueError):
            seconds = None
    if seconds is None:
        seconds = time.time()
    return datetime.fromtimestamp(seconds, timezone.utc).strftime(DATE_FORMAT)


def _package_version(repo_root: Path) -> str | None:
    init = repo_root / "src" / PACKAGE / "__init__.py"
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', init.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None


def write_zip(path: Path, entries: dict[str, bytes]) -> None:
    """Write a reproducible zip: sorted entries, fixed time and mode, stored."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
                info.create_system = 3  # Unix, so Stash (Go's archive/zip) reads the mode
                info.external_attr = ZIP_FILE_MODE
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, entries[name])
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def render_index(
    *, plugin_id: str, name: str, description: str, version: str, date: str, sha256: str
) -> str:
    """The source index: one `RemotePackage`. Strings are double-quoted (JSON-style escapes
    are valid YAML) so a version like 1.0 stays a string and no text can break the YAML."""

    def q(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    return (
        "# Stash plugin source index, written by `stash2plex build-plugin`.\n"
        f"- id: {q(plugin_id)}\n"
        f"  name: {q(name)}\n"
        "  metadata:\n"
        f"    description: {q(description)}\n"
        f"  version: {q(version)}\n"
        f"  date: {q(date)}\n"
        f"  path: {q(ZIP_NAME)}\n"
        f"  sha256: {q(sha256)}\n"
        "  requires: []\n"
    )


def build_plugin(
    out_dir: Path, *, repo_root: Path, version: str | None = None, date: str | None = None
) -> BuildResult:
    """Write `out_dir/Stash2Plex.zip` and `out_dir/index.yml` from the checkout at `repo_root`.

    `version` defaults to the manifest's (which must equal `stash2plex.__version__`), `date`
    (`YYYY-MM-DD HH:MM:SS`, UTC) to `default_date`. Raises BuildError naming what to fix.
    """
    repo_root = Path(repo_root)
    manifest_path = repo_root / MANIFEST_NAME
    manifest = _read(manifest_path).decode("utf-8")
    manifest_version = manifest_scalar(manifest, "version")
    package_version = _package_version(repo_root)
    if manifest_version != package_version:
        raise BuildError(
            f"{MANIFEST_NAME} says version {manifest_version} but stash2plex.__version__ is "
            f"{package_version}: make them equal"
        )
    if date is None:
        date = default_date(repo_root)
    else:
        try:
            datetime.strptime(date, DATE_FORMAT)
        except ValueError:
            raise BuildError(f"date {date!r} is not YYYY-MM-DD HH:MM:SS (UTC)") from None
    version = version or manifest_version
    assert version is not None  # equal to the package version, which the regex found

    entries: dict[str, bytes] = {
        MANIFEST_NAME: manifest.encode("utf-8"),
        ENTRY_SCRIPT: _read(repo_root / ENTRY_SCRIPT),
        "LICENSE": _read(repo_root / "LICENSE"),
        "README.md": _read(repo_root / "README.md"),
        "requirements.txt": render_requirements(
            runtime_requirements(repo_root / "pyproject.toml")
        ).encode("utf-8"),
    }
    package_dir = repo_root / "src" / PACKAGE
    if not (package_dir / "__init__.py").is_file():
        raise BuildError(f"no package at {package_dir}")
    for name, path in package_files(package_dir):
        entries[name] = _read(path)
    docs = repo_root / "docs"
    if not docs.is_dir():
        raise BuildError(f"no docs folder at {docs}: the zip carries the user docs")
    for path in sorted(docs.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.parts):
            entries[path.relative_to(repo_root).as_posix()] = _read(path)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / ZIP_NAME
    write_zip(zip_path, entries)
    sha256 = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    index_path = out_dir / INDEX_NAME
    index_path.write_text(
        render_index(
            plugin_id=PLUGIN_ID,
            name=manifest_scalar(manifest, "name") or PLUGIN_ID,
            description=manifest_scalar(manifest, "description") or "",
            version=version,
            date=date,
            sha256=sha256,
        ),
        encoding="utf-8",
    )
    return BuildResult(
        zip_path=zip_path,
        index_path=index_path,
        sha256=sha256,
        version=version,
        date=date,
        files=tuple(sorted(entries)),
    )
