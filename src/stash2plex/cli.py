"""The `stash2plex` command line: thin commands over the operations."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import __version__


def _default_data_dir() -> str | None:
    return os.environ.get("STASH2PLEX_DATA_DIR")


@click.group()
@click.version_option(__version__, prog_name="stash2plex")
def main() -> None:
    """Stash2Plex: push scene metadata from Stash to Plex, reliably."""


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_default_data_dir,
    required=True,
    help="The data directory shared with the plugin (or STASH2PLEX_DATA_DIR).",
)
@click.option(
    "--lock-fd",
    type=int,
    default=None,
    hidden=True,
    help="An already-locked worker lock file descriptor, handed over by a hook.",
)
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    help="Exit after the queue has been empty this many seconds.",
)
def worker(data_dir: Path, lock_fd: int | None, idle_exit: float | None) -> None:
    """Drain the queue; exit after an idle period. Normally started by the plugin."""
    from .worker import IDLE_EXIT_SECONDS, Worker, configure_worker_logging

    data_dir.mkdir(parents=True, exist_ok=True)
    engine = Worker(
        data_dir,
        idle_exit_seconds=idle_exit
        if idle_exit is not None
        else float(os.environ.get("STASH2PLEX_IDLE_EXIT", IDLE_EXIT_SECONDS)),
    )
    configure_worker_logging(
        data_dir,
        lambda: engine._context.config.secrets() if engine._context else (),
        lambda: bool(engine._context and engine._context.config.obfuscate_paths),
    )
    try:
        engine.run(lock_fd)
    except RuntimeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(3)


@main.command()
@click.option(
    "--scenes",
    type=click.IntRange(1, 20000),
    default=300,
    show_default=True,
    help="How many scenes the generated library holds.",
)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(scenes: int, seed: int) -> None:
    """Sync a generated library between emulated Stash and Plex servers on loopback."""
    from .demo import run_demo

    sys.exit(run_demo(scenes=scenes, seed=seed))


def _checkout_root() -> Path:
    """The checkout this package runs from (src layout), else the current directory."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


@main.command("build-plugin")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write Stash2Plex.zip and index.yml into.",
)
@click.option("--version", "version", default=None, help="Index version (default: manifest's).")
@click.option(
    "--date",
    default=None,
    help="Index date, 'YYYY-MM-DD HH:MM:SS' UTC (default: SOURCE_DATE_EPOCH or last commit).",
)
@click.option(
    "--repo-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=_checkout_root,
    help="The checkout to build from.",
)
def build_plugin(out_dir: Path, version: str | None, date: str | None, repo_root: Path) -> None:
    """Build the installable plugin zip and a Stash plugin source index."""
    from .packaging import BuildError
    from .packaging import build_plugin as build

    try:
        result = build(out_dir, repo_root=repo_root, version=version, date=date)
    except BuildError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{result.zip_path}  sha256 {result.sha256}")
    click.echo(f"{result.index_path}  version {result.version}, date {result.date}")
