"""The `stash2plex` command line: thin commands over the operations.

Every command takes `--json` (machine-readable output, also accepted before the command);
human output shows local times, durations and tables. No traceback reaches a person: store,
settings and server problems end in one sentence and the README's exit codes: 0 done, 1 done
but something needs attention, 2 a configuration or usage error, 3 another worker drains.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from stash2plex import __version__
from stash2plex.errors import SyncError
from stash2plex.vocabulary import ERROR_CLASSES, WAIT_REASONS
from stash2plex.words import agree, plural

# Exit codes: 0 done, 1 done but something needs attention (unhealthy, failures, blocked),
# 2 a usage or configuration error, 3 another worker already drains the queue.
EXIT_ATTENTION = 1
EXIT_CONFIG = 2
EXIT_BUSY = 3
# What a shell reports for a command SIGPIPE ended (128 + 13): the reader of the output left.
EXIT_READER_GONE = 141


class Stash2PlexGroup(click.Group):
    """The root command: turns every failure a person can meet into one sentence and an
    exit code (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        from stash2plex.errors import StoreError, StoreFullError, StoreLockedError

        # SIGTERM ends a command as Ctrl-C does: through its cleanups (a command that took the
        # queue over starts a worker for it), not in the middle of them. `worker` and `serve`
        # set their own handler (stop after the job in hand).
        previous = _on_sigterm_raise()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Terminated:
            _die(DRAIN_INTERRUPTED if ctx.invoked_subcommand == "sync" else "stopped", 143)
        except BrokenPipeError:
            _reader_gone()
        except SyncError as exc:
            _fail(exc)
        except StoreError as exc:
            busy = isinstance(exc, (StoreLockedError, StoreFullError))
            _die(str(exc), EXIT_ATTENTION if busy else EXIT_CONFIG)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            _die(f"{exc.strerror or exc}{where}", EXIT_ATTENTION)
        except KeyboardInterrupt:
            _die(DRAIN_INTERRUPTED if ctx.invoked_subcommand == "sync" else "interrupted", 130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


class Terminated(Exception):
    """SIGTERM reached a command (see `Stash2PlexGroup.invoke`)."""


def _on_sigterm_raise() -> Any:
    """Have SIGTERM raise Terminated; returns the handler it replaced (None where signals
    cannot be set: not the main thread)."""

    def terminated(_signum: int, _frame: Any) -> None:
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread
        return None


@click.group(cls=Stash2PlexGroup)
@click.version_option(__version__, prog_name="stash2plex")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("STASH2PLEX_DATA_DIR") or str(Path.home() / ".stash2plex"),
    show_default="STASH2PLEX_DATA_DIR or ~/.stash2plex",
    help="The data directory (point it at the plugin's data folder to share its queue).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A TOML settings file (default: STASH2PLEX_CONFIG or <data dir>/stash2plex.toml).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path, config_file: Path | None, as_json: bool) -> None:
    """Stash2Plex: push scene metadata from Stash to Plex, reliably.

    Settings come from Stash's plugin page, overridden by a TOML file and by
    STASH2PLEX_<SETTING> environment variables; STASH2PLEX_STASH_URL and
    STASH2PLEX_STASH_API_KEY say where Stash is.
    """
    ctx.obj = Cli(Path(data_dir), config_file, as_json)


@main.command()
@click.option(
    "--data-dir",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Overrides the group's --data-dir (the plugin passes it this way).",
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
@click.pass_obj
def worker(cli: Cli, data_dir: Path | None, lock_fd: int | None, idle_exit: float | None) -> None:
    """Drain the queue; exit after an idle period. Normally started by the plugin."""
    from stash2plex.engine.worker import Worker, WorkerBusyError, configure_worker_logging
    from stash2plex.errors import StoreLockedError

    data_dir = data_dir or cli.data_dir
    engine = None
    for _ in range(120):  # a store locked by another process: wait for it (up to 10 min)
        try:
            engine = (
                Worker(data_dir)
                if idle_exit is None
                else Worker(data_dir, idle_exit_seconds=idle_exit)
            )
            break
        except StoreLockedError as exc:  # other store problems end here (see the group)
            click.echo(f"stash2plex worker: {exc}; trying again in 5 s", err=True)
            time.sleep(5)
    if engine is None:
        sys.exit(EXIT_ATTENTION)
    configure_worker_logging(
        data_dir,
        lambda: engine.context.config.secrets() if engine.context else (),
        lambda: bool(engine.context and engine.context.config.obfuscate_paths),
    )
    signal.signal(signal.SIGTERM, lambda *_: engine.request_stop())
    try:
        engine.run(lock_fd)
    except WorkerBusyError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_BUSY)


#: What `stash2plex serve` imports from the [serve] extra (pyproject.toml).
SERVE_MODULES = ("starlette", "uvicorn", "prometheus_client")


def _importable(name: str, find_spec: Any) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # a module blocked with sys.modules[name] = None
        return False


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback needs a token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A file whose first line is the bearer token (default: STASH2PLEX_SERVE_TOKEN).",
)
@click.pass_obj
def serve(cli: Cli, host: str, port: int, token_file: Path | None) -> None:
    """Run the sync engine as a service, with a dashboard, a JSON API and /metrics.

    Shares the data directory with the plugin (point --data-dir at the plugin's data folder).
    Stops cleanly on SIGTERM: the job in hand finishes first.
    """
    from importlib.util import find_spec

    # The web parts are imported only once the engine starts: check them before anything runs.
    missing = [name for name in SERVE_MODULES if not _importable(name, find_spec)]
    if missing:
        _die(
            f"the serve command needs the optional [serve] extra ({', '.join(missing)} "
            "not installed): pip install 'stash2plex[serve]' (in a checkout: "
            "pip install -e '.[serve]')",
            EXIT_CONFIG,
        )
    from stash2plex.engine.context import build_context
    from stash2plex.service.process import ServeError, ServiceOptions, read_token
    from stash2plex.service.process import serve as run_service

    try:
        token = read_token(token_file)
    except ServeError as exc:
        click.secho(f"stash2plex serve: {exc}", fg="red", err=True)
        sys.exit(EXIT_CONFIG)
    local = cli.local()
    options = ServiceOptions(
        data_dir=cli.data_dir,
        host=host,
        port=port,
        token=token,
        context_factory=lambda store: build_context(store, local=local),
    )
    sys.exit(run_service(options))


@main.command()
@click.option(
    "--scenes",
    type=click.IntRange(1, 20000),
    default=300,
    show_default=True,
    help="How many scenes the generated library holds.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_obj
def demo(cli: Cli, scenes: int, seed: int) -> None:
    """Sync a generated library between emulated Stash and Plex servers on loopback."""
    try:
        from stash2plex.sandbox.demo import run_demo
    except ImportError as exc:
        _die(
            f"stash2plex demo needs the [sandbox] extra ({exc.name} is missing): "
            "pip install 'stash2plex[sandbox]' (in a checkout: pip install '.[sandbox]')",
            EXIT_CONFIG,
        )
    sys.exit(run_demo(scenes=scenes, seed=seed, as_json=cli.as_json))


@main.group("sandbox", invoke_without_command=True)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("stash2plex-sandbox"),
    show_default=True,
    help="The sandbox's folder: the plugin as Stash installs it, its data folder.",
)
@click.option("--scenes", type=click.IntRange(1, 20000), default=300, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--traps", is_flag=True, help="A library with every hard case (see the demo).")
@click.pass_context
def sandbox_group(ctx: click.Context, folder: Path, scenes: int, seed: int, traps: bool) -> None:
    """Keep an emulated Stash and Plex running (nothing synced) to try things by hand: prints
    the STASH2PLEX_* lines for the command line; `sandbox task NAME` runs a plugin task
    against them as Stash would. Runs until Ctrl-C."""
    ctx.obj.sandbox_dir = folder.resolve()
    if ctx.invoked_subcommand is not None:
        return
    try:
        from stash2plex.sandbox.keep import SandboxError, keep_sandbox
    except ImportError as exc:
        _die(
            f"stash2plex sandbox needs the [sandbox] extra ({exc.name} is missing): "
            "pip install 'stash2plex[sandbox]' (in a checkout: pip install '.[sandbox]')",
            EXIT_CONFIG,
        )
    try:
        keep_sandbox(
            folder.resolve(),
            _checkout_root(),
            scenes=scenes,
            seed=seed,
            traps=traps,
            say=lambda line: click.echo(line),
        )
    except SandboxError as exc:
        _die(str(exc), EXIT_ATTENTION)


@sandbox_group.command("task")
@click.argument("name")
@click.pass_obj
def sandbox_task(cli: Cli, name: str) -> None:
    """Run the plugin task NAME (as the Tasks page names it, e.g. 'Sync All Scenes') against
    the running sandbox, as Stash runs it: its log lines, then its result."""
    from stash2plex.sandbox.keep import SandboxError, run_sandbox_task
    from stash2plex.sandbox.runner import RunnerError

    try:
        run = run_sandbox_task(cli.sandbox_dir, name)
    except (SandboxError, RunnerError) as exc:  # RunnerError: a task the manifest lacks
        _die(str(exc), EXIT_CONFIG)
    if cli.as_json:
        cli.show({"output": run.output, "error": run.error, "returncode": run.returncode})
    else:
        for line in run.logs:
            if line.level != "progress":
                click.echo(f"[{line.level}] {line.message}")
        click.echo(json.dumps(run.output, indent=2, ensure_ascii=False, default=str))
        if run.error:
            click.secho(f"task error: {run.error}", fg="red", err=True)
    sys.exit(0 if run.returncode == 0 and not run.error else EXIT_ATTENTION)


@sandbox_group.command("plex")
@click.argument("state", type=click.Choice(["down", "up"]))
@click.pass_obj
def sandbox_plex(cli: Cli, state: str) -> None:
    """Take the running sandbox's Plex down (it answers 503 to everything, as Plex does while
    starting) or bring it up again, to watch the circuit breaker and the queue react."""
    from stash2plex.sandbox.keep import SandboxError, plex_availability

    try:
        said = plex_availability(cli.sandbox_dir, up=state == "up")
    except SandboxError as exc:
        _die(str(exc), EXIT_CONFIG)
    except OSError as exc:
        _die(f"the sandbox's Plex does not answer its control API: {exc}", EXIT_ATTENTION)
    if cli.as_json:
        cli.show({"plex": state, "said": said})
    else:
        click.echo(said)


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
    from stash2plex.plugin.packaging import BuildError
    from stash2plex.plugin.packaging import build_plugin as build

    try:
        result = build(out_dir, repo_root=repo_root, version=version, date=date)
    except BuildError as exc:
        _die(str(exc), EXIT_CONFIG)
    if click.get_current_context().find_object(Cli).as_json:  # type: ignore[union-attr]
        data = {
            "zip": str(result.zip_path),
            "sha256": result.sha256,
            "index": str(result.index_path),
            "source_url": result.source_url,
            "version": result.version,
            "date": result.date,
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{result.zip_path}  sha256 {result.sha256}")
    click.echo(f"{result.index_path}  version {result.version}, date {result.date}")
    click.echo(f"plugin source URL for Stash on this machine: {result.source_url}")


# ---------------------------------------------------------------------- operations
class Cli:
    """What every operational command needs: the data directory, settings, output mode."""

    def __init__(self, data_dir: Path, config_file: Path | None, as_json: bool) -> None:
        self.data_dir = data_dir
        self.config_file = config_file
        if config_file is not None:  # a worker this command starts reads the same file
            os.environ["STASH2PLEX_CONFIG"] = str(Path(config_file).resolve())
        self.as_json = as_json
        self._local: Any = None
        self._hide_paths: bool | None = None
        self._sources: dict[str, str] = {}
        self._warned: set[str] = set()  # settings warnings said (once per command)
        self.printed = False  # the command's output went to stdout already
        self.sandbox_dir = Path("stash2plex-sandbox")

    def store(self):  # -> Store
        from stash2plex.store.db import Store

        store = Store.open(self.data_dir)
        if store.recovered_from:  # what follows reads an empty store: say so first
            click.secho(f"warning: {store.recovered_from}", fg="yellow", err=True)
        return store

    def local(self):  # -> LocalSettings
        from stash2plex.settings.sources import load_local_settings

        if self._local is None:
            self._local = load_local_settings(self.data_dir, self.config_file)
        return self._local

    def context(self, store):  # -> Context
        from stash2plex.engine.context import build_context
        from stash2plex.settings.config import unsaid_warnings

        context = build_context(store, local=self.local())
        self._hide_paths = context.config.obfuscate_paths
        self._sources = dict(context.sources)
        # A value the settings refused (the default is used instead) is said by every command
        # that reads the settings, not only by `config check` and the worker's log.
        for warning in unsaid_warnings(context.config, self._warned):
            self.say(f"warning: {warning}", color="yellow")
        return context

    def sources(self) -> dict[str, str]:
        """Where each setting came from (`settings.sources`), for messages that name it: the
        settings read, or (when reading them failed) what was given outside Stash."""
        found: dict[str, str] = {}
        with contextlib.suppress(SyncError):
            found.update(self.local().sources)
        found.update(self._sources)
        return found

    def hide_paths(self, value: bool) -> None:
        """The `obfuscate_paths` setting, once the settings were read."""
        self._hide_paths = value

    def _hiding_paths(self) -> bool:
        if self._hide_paths is None:
            # Not read through Stash (a store-only command): the environment or file may say.
            from stash2plex.settings.config import build_config

            raw = self.local().plugin_values().get("obfuscate_paths")
            self._hide_paths = build_config({"obfuscate_paths": raw}).obfuscate_paths
        return self._hide_paths

    def scrub(self, data: Any) -> Any:
        """`data` with file paths replaced by pseudonyms when `obfuscate_paths` is on."""
        from stash2plex.pseudonyms import obfuscate_data

        return obfuscate_data(data) if self._hiding_paths() else data

    def redact(self, text: str) -> str:
        """`text` without tokens nor the secrets given here (the Plex token and Stash's API
        key from the environment or the settings file), wherever a message quotes them (an
        address typed with the token in it)."""
        from stash2plex.errors import redact
        from stash2plex.settings.config import SETTINGS

        try:
            values = self.local().values
        except Exception:  # the settings file is unreadable: its own message says so
            values = {}
        keys = [setting.key for setting in SETTINGS if setting.secret] + ["stash_api_key"]
        return redact(text, [str(values[key]) for key in keys if values.get(key)])

    def show(self, data: Any, render: Any = None) -> None:
        """Print `data` as JSON with --json, else `render(data)` (a rich renderable or text)
        or the data as a table; paths are hidden first when `obfuscate_paths` is on."""
        data = self.scrub(data)
        self.printed = True
        if self.as_json:
            click.echo(self.redact(json.dumps(data, indent=2, ensure_ascii=False, default=str)))
            return
        from rich.console import Console

        class _Console(Console):
            def on_broken_pipe(self) -> None:  # rich would exit 1 itself: one way for all
                self.quiet = True
                raise BrokenPipeError

        shown = render(data) if callable(render) else render
        _Console().print(shown if shown is not None else _table("", data))

    def say(self, message: str, *, color: str | None = None) -> None:
        """A line for people on stderr (never mixed into --json output)."""
        click.secho(f"stash2plex: {self.redact(self.scrub(message))}", fg=color, err=True)


class _SceneId(click.IntRange):
    """A scene's id as Stash shows it in the scene's address (a whole number from 1)."""

    name = "scene id (the number in the scene's address in Stash)"


SCENE_ID = _SceneId(1)

# Ctrl-C while a command follows the background worker's drain: what goes on without it.
DRAIN_INTERRUPTED = (
    "interrupted: the scenes already queued go on syncing in the background worker "
    "('stash2plex queue status' shows them, 'stash2plex queue clear' drops them)"
)


def _reader_gone() -> NoReturn:
    """The output's reader stopped early (`stash2plex queue list | head`): end quietly, as a
    command SIGPIPE ends does (exit 141, no message). Whatever Python still flushes goes to
    /dev/null (Python's documentation, "Note on SIGPIPE")."""
    _stdout_to_devnull()
    sys.exit(EXIT_READER_GONE)


def _stdout_to_devnull() -> None:
    """Send what is still written to stdout nowhere (its reader left)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _die(message: str, code: int) -> NoReturn:
    """Say why on stderr and exit; with --json also a JSON error object on stdout, unless the
    command printed its JSON already (stdout then stays one document)."""
    ctx = click.get_current_context(silent=True)
    cli = ctx.find_object(Cli) if ctx is not None else None
    if cli is not None:
        message = cli.redact(message)
    # The sentence first: a reader of stdout that left must not silence it.
    click.secho(f"stash2plex: {message}", fg="red", err=True)
    if cli is not None and cli.as_json and not cli.printed:
        try:
            click.echo(json.dumps({"error": message, "exit_code": code}, ensure_ascii=False))
        except BrokenPipeError:  # the error's own code still stands
            _stdout_to_devnull()
    sys.exit(code)


def _fail(exc: SyncError) -> NoReturn:
    from stash2plex.errors import PERMANENT, AuthError, ConfigError
    from stash2plex.settings.sources import with_source

    config = isinstance(exc, (AuthError, ConfigError)) or exc.error_class == PERMANENT
    ctx = click.get_current_context(silent=True)
    cli = ctx.find_object(Cli) if ctx is not None else None
    sources = cli.sources() if cli is not None else {}
    _die(with_source(exc, sources), EXIT_CONFIG if config else 1)


def _table(title: str, rows: dict[str, Any], caption: str | None = None) -> Any:
    """A two-column table of `rows`, values in words (never Python reprs), with a `caption`
    under it if given."""
    from rich.table import Table

    from stash2plex.operations.present import value_words

    table = Table(title=title or None, caption=caption, show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # a long value (a URL, a path) wraps, never cut short
    for key, value in rows.items():
        table.add_row(str(key), value_words(value))
    return table


def _now() -> float:
    return time.time()


@main.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("check")
@click.pass_obj
def config_check(cli: Cli) -> None:
    """Print every setting's effective value (secrets masked) and where it came from.

    The table is printed even when a required setting is missing or a value is invalid (they
    are marked); the exit code is then 2.
    """
    from stash2plex.engine.context import API_KEY_KEY, FROM_STASH, connect_stash, stash_address
    from stash2plex.errors import ConfigError, without_credentials
    from stash2plex.settings.config import (
        PLUGIN_ID,
        SETTINGS,
        build_config,
        setting_label,
        shown_value,
    )
    from stash2plex.settings.sources import effective_settings, source_words, unknown_variables

    problem = None
    with cli.store() as store:
        stash_url, stash_source = stash_address(store, cli.local())
        key_source = cli.local().sources.get("stash_api_key") if cli.local().stash_api_key else None
        if key_source is None and stash_source == FROM_STASH and store.get_value(API_KEY_KEY):
            key_source = "read from Stash by the plugin"
        try:
            stash_values = connect_stash(store, None, cli.local()).plugin_settings(PLUGIN_ID)
        except SyncError as exc:
            # Stash cannot be read: show what the environment and the file say.
            problem = exc
            stash_values = {}
    # The raw values too: a refused value is shown as given, beside why it was refused.
    values, sources = effective_settings(stash_values, cli.local())
    config = build_config(values)
    cli.hide_paths(config.obfuscate_paths)
    # First the Stash these settings are read from: the command line's own address, or the one
    # Stash gave the plugin.
    rows: list[dict[str, Any]] = [
        {
            "key": "stash_url",
            "value": stash_url,
            "shown": stash_url or "not known",
            "source": stash_source or "not set",
            "problem": None if stash_url else "missing: set STASH2PLEX_STASH_URL",
        },
        {
            "key": "stash_api_key",
            "value": "***" if key_source else None,
            "shown": "***" if key_source else "not set (needed only when Stash asks a login)",
            "source": key_source or "not set",
            "problem": None,
        },
    ]
    if isinstance(problem, ConfigError) and problem.setting == "stash_url":
        rows[0]["problem"] = "invalid (see below)"
    bad_values: list[str] = []  # values refused (their default applies): still an error

    def masked(value: Any) -> str:
        return f"***{str(value)[-2:]}" if len(str(value)) > 8 else "***"

    for setting in SETTINGS:
        value = getattr(config, setting.key)
        if setting.secret and value:
            shown = masked(value)
        elif setting.key == "path_map":
            shown = "; ".join(f"{r.stash_prefix} => {r.plex_prefix}" for r in value) or "empty"
        else:
            shown = shown_value(value)
        mark = ""
        rejected = [w for w in config.warnings if f"({setting.key}) = " in w]
        given = values.get(setting.key)
        refused = setting.key in config.invalid or bool(rejected)
        if refused and given is not None and str(given).strip():
            if setting.secret:
                given = masked(given)
            elif setting.is_address:
                given = without_credentials(str(given))
            shown = f"{given} (not valid)"
        else:
            given = None
        if setting.key in config.invalid:
            mark = "invalid: " + config.invalid[setting.key].split(": expected ", 1)[-1]
        elif rejected:
            mark = "invalid, default used: " + rejected[0].split(": expected ", 1)[-1]
            bad_values.append(setting.key)
        elif setting.key in config.missing:
            # Without Stash's own settings, a value set there is not missing, only unseen.
            mark = "missing: required" if problem is None else "not set here (Stash not read)"
        if setting.key == "path_map":
            value = [f"{r.stash_prefix} => {r.plex_prefix}" for r in value]
        rows.append(
            {
                "key": setting.key,
                "value": value if not setting.secret else shown,
                "shown": shown,
                "source": sources.get(setting.key, "default"),
                "problem": mark or None,
                **({"given": given} if given is not None else {}),
            }
        )
    unknown = unknown_variables()
    data = {
        "settings": [{k: v for k, v in row.items() if k != "shown"} for row in rows],
        "warnings": list(config.warnings),
        "missing": list(config.missing),
        "invalid": sorted({*config.invalid, *bad_values}),
        "stash": None if problem is None else problem.message,
        "unknown_variables": unknown,
    }

    def render(data: dict[str, Any]) -> Any:
        from rich.table import Table

        table = Table(title="Effective configuration")
        for column in ("setting", "value", "from", "problem"):
            table.add_column(column, overflow="fold")
        for row, shown_row in zip(data["settings"], rows, strict=True):
            problem_text = row["problem"] or ""
            table.add_row(
                setting_label(row["key"]),
                cli.scrub(shown_row["shown"]),
                source_words(row["source"]),
                f"[red]{problem_text}[/]" if problem_text else "",
            )
        return table

    cli.show(data, render)
    if problem is not None:
        cli.say(
            f"Stash's plugin settings could not be read ({problem.message}); the table shows "
            "the environment and settings file only",
            color="yellow",
        )
    for key in config.invalid:
        cli.say(config.invalid[key] + "; nothing syncs until it is fixed", color="red")
    for warning in config.warnings:
        if not any(warning.startswith(config.invalid[key]) for key in config.invalid):
            cli.say(f"warning: {warning}", color="yellow")
    for name in unknown:
        cli.say(f"warning: {name} is not a setting Stash2Plex reads (misspelt?)", color="yellow")
    # A refused value is not missing too (it is marked invalid above).
    missing = [key for key in config.missing if key not in config.invalid]
    if missing:
        labels = ", ".join(setting_label(key) for key in missing)
        if problem is None:
            cli.say(f"missing required settings: {labels}", color="red")
        else:
            cli.say(
                f"not set in the environment or the settings file: {labels} (they may be set "
                "in Stash, whose settings could not be read: fix that first)",
                color="yellow",
            )
    if config.missing or config.invalid or bad_values or problem is not None:
        sys.exit(EXIT_CONFIG)
    if not cli.as_json:
        cli.say("the values are valid; `stash2plex diagnose` tries them on Stash and Plex")


@main.command("sync")
@click.option("--all", "all_scenes", is_flag=True, help="Every scene in Stash.")
@click.option(
    "--dry-run", is_flag=True, help="Show what would change in Plex, field by field; write nothing."
)
@click.option(
    "--force",
    is_flag=True,
    help="Rewrite every synced field and image from Stash, even if Plex was edited "
    "(fields edited in Plex stay with preserve_plex_edits).",
)
@click.option(
    "--since",
    default=None,
    metavar="DURATION|DATE",
    help="The scenes Stash changed since then: a duration (90m, 6h, 2d, 1w), a local date or "
    "time (2025-06-01, 2025-06-01T18:30), or 'last' (since the last such sync).",
)
@click.option("--recent", is_flag=True, help="Same as --since last.")
@click.argument("scene_ids", nargs=-1, type=SCENE_ID)
@click.pass_obj
def sync_command(
    cli: Cli,
    all_scenes: bool,
    dry_run: bool,
    force: bool,
    since: str | None,
    recent: bool,
    scene_ids: tuple[int, ...],
) -> None:
    """Queue scenes (or --all, or those Stash changed --since) and drain the queue with a
    progress bar."""
    from stash2plex.engine.worker import FORCE_SOURCE
    from stash2plex.operations.queue import drain_taken_over, queue_all_scenes

    chosen = [all_scenes, bool(scene_ids), since is not None, recent]
    if sum(chosen) != 1:
        raise click.UsageError("give scene ids, --all, --since or --recent (one of them)")
    if (since is not None or recent) and dry_run:
        raise click.UsageError("--dry-run takes scene ids or --all")
    if since is not None and not since.strip():
        raise click.UsageError("--since needs a value: a duration (6h), a date, or 'last'")
    if dry_run:
        _dry_run(cli, None if all_scenes else list(scene_ids), force)
        return
    if since is not None or recent:
        _sync_recent(cli, "last" if recent else str(since))
        return
    queued_at = time.time()  # the plugin's worker may finish these scenes before we follow it
    with cli.store() as store:
        # First what may fail (settings this command cannot use, scene ids Stash lacks): such
        # a command stops no worker.
        context = cli.context(store)
        if not all_scenes:
            scenes = context.stash.find_scenes_by_ids(list(scene_ids))
            unknown = [str(scene_id) for scene_id, scene in scenes.items() if scene is None]
            if unknown:
                _die(
                    f"Stash has no scene {', '.join(unknown)}: nothing was queued (check the id "
                    "in the scene's address in Stash; a scene deleted in Stash leaves Plex with "
                    "its Destroy hook or the next reconcile)",
                    EXIT_CONFIG,
                )
        # Then the queue: a running worker given other settings must not sync these scenes.
        with drain_taken_over(cli.data_dir):
            if all_scenes:
                queued = queue_all_scenes(store, context.stash, force=force)
            else:
                source = FORCE_SOURCE if force else "cli"
                store.enqueue(list(scene_ids), source=source, retry_now=True)
                queued = len(set(scene_ids))  # `sync 3 3` queues one scene
    if not cli.as_json:
        cli.say(f"queued {plural(queued, 'scene')}" + (" to rewrite from Stash" if force else ""))
    named = {} if all_scenes else {"scenes": sorted(set(scene_ids))}
    _drain(cli, queued_at, extra={"queued": queued, **named})


def _sync_recent(cli: Cli, since: str) -> None:
    """`sync --since/--recent`: queue what Stash changed since then and drain it, judged on
    those scenes alone (`operations.recent`); nothing changed is a success."""
    from stash2plex.errors import PermanentError
    from stash2plex.operations.queue import drain_taken_over
    from stash2plex.operations.recent import plex_verdict, recent_verdict
    from stash2plex.reconcile.recent import parse_since, queue_recent

    queued_at = time.time()
    with cli.store() as store:
        try:
            start = parse_since(since, store.clock())
        except PermanentError as exc:
            raise click.UsageError(exc.message) from None
        context = cli.context(store)  # first: settings this command cannot use stop nothing
        with drain_taken_over(cli.data_dir):
            report = queue_recent(store, context.stash, since=start)
        recent = report.as_dict()
        if not report.queued:
            verdict = plex_verdict(context, cli.data_dir)
    if report.queued:
        if not cli.as_json:
            cli.say(report.summary())
        _drain(
            cli,
            queued_at,
            extra={"recent": recent},
            judge=lambda store, started, drained: recent_verdict(
                store,
                started,
                drained,
                report.scene_ids,
                probe=lambda: plex_verdict(cli.context(store), cli.data_dir),
            ),
        )
        return
    cli.show(
        {"recent": recent, "error": verdict.error, "exit_code": verdict.exit_code},
        lambda data: data["recent"]["summary"],
    )
    if verdict.error and not cli.as_json:
        cli.say(verdict.error, color="red")
    if verdict.exit_code:
        sys.exit(verdict.exit_code)


def _dry_run(cli: Cli, scene_ids: list[int] | None, force: bool) -> None:
    from stash2plex.operations.queue import preview as run_preview

    with cli.store() as store:
        context = cli.context(store)
        if scene_ids is None:
            scene_ids = context.stash.scene_ids()
        previews = run_preview(context, scene_ids=scene_ids, force=force)
    _show_previews(cli, previews, title="Dry run: what a sync would change")
    _preview_exit(cli, previews)


def _show_previews(cli: Cli, previews: list[Any], *, title: str) -> None:
    from rich.table import Table

    from stash2plex.operations.present import field_words

    data = [p.as_dict() for p in previews]

    def render(data: list[dict[str, Any]]) -> Any:
        counts: dict[str, int] = {}
        for item in data:
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no scenes"
        table = Table(title=f"{title} ({summary})")
        for column in ("scene", "status", "field", "Plex now", "from Stash"):
            table.add_column(column, overflow="fold")
        for item in data:
            if item["status"] == "unchanged":
                table.add_row(
                    str(item["scene_id"]), "unchanged", "every field (kept)", "", "same in Plex"
                )
                continue
            rows = [(c, "") for c in item["changes"]] + [(c, " (kept)") for c in item["kept"]]
            if not rows:
                table.add_row(str(item["scene_id"]), item["status"], "", "", item["note"])
            for change, kept in rows:
                table.add_row(
                    str(item["scene_id"]),
                    item["status"],
                    field_words(change["field"]) + kept,
                    change["plex"] or "—",
                    change["stash"] or "—",
                )
        return table

    cli.show(data, render)


@main.command("reconcile")
@click.option("--fix", is_flag=True, help="Repair what differs, through the queue, and drain.")
@click.option(
    "--last",
    "last",
    is_flag=True,
    help="Show the last run (when, started by what, its report) instead of running one.",
)
@click.pass_obj
def reconcile_command(cli: Cli, fix: bool, last: bool) -> None:
    """Compare every scene with Plex: never synced, changed in Stash or in Plex, gone items,
    deleted scenes, not in Plex, ambiguous, conflicts; with samples and what --fix does.

    Exit 0 when nothing needs attention (with --fix: everything repairable was repaired and
    synced), 1 when scenes still need attention (not in Plex, ambiguous, conflicts, or
    differences left without --fix), 3 when another reconcile runs."""
    from rich.progress import Progress

    from stash2plex.reconcile.run import run_reconcile

    if fix and last:
        raise click.UsageError(
            "--last shows the last run and --fix starts a new one: give one of them"
        )
    if last:
        _reconcile_last(cli)
        return
    started_at = time.time()
    with cli.store() as store, Progress(disable=cli.as_json, transient=True) as bar:
        task = bar.add_task("reconciling", total=1.0)
        report = run_reconcile(
            cli.context(store),
            fix=fix,
            trigger="command",
            progress=lambda fraction: bar.update(task, completed=fraction),
        )
    if report.state == "busy":
        _die(report.summary(), EXIT_BUSY)
    if fix and report.queued:
        if not cli.as_json:
            cli.show(report.as_dict(), _reconcile_table)
            for note in report.notes:
                cli.say(note, color="yellow")
        _drain(cli, since=started_at, extra={"reconcile": report.as_dict()})
        # The drain exits non-zero on its own failures; scenes a person must decide on remain.
        if report.attention:
            sys.exit(EXIT_ATTENTION)
        return
    cli.show(report.as_dict(), _reconcile_table)
    for note in report.notes if not cli.as_json else ():
        cli.say(note, color="yellow")
    if report.attention or (not fix and report.differences):
        sys.exit(EXIT_ATTENTION)


def _reconcile_last(cli: Cli) -> None:
    """`reconcile --last`: the newest run, when and by what it started, and how it ended."""
    from stash2plex.reconcile.run import last_run

    with cli.store() as store:
        run = last_run(store)
    if run is None:
        cli.show({"ran": False}, "no reconcile has run yet")
        return

    def render(data: dict[str, Any]) -> Any:
        from rich.console import Group
        from rich.text import Text

        finished = data.get("finished_at")
        took = (
            f", took {round(float(finished) - float(data['started_at']), 1)} s"
            if finished and data["state"] not in ("running", "interrupted")
            else ""
        )
        head = Text(
            f"Last reconcile: {data['state']}, started {data['started_text']} by "
            f"{data['trigger_text']}" + (" with --fix (repair)" if data["fix"] else "") + took
        )
        report = data["report"]
        if data["state"] in ("failed", "interrupted", "running") or not report.get("results"):
            return Group(head, Text(report.get("summary") or ""))
        return Group(head, _reconcile_table(report))

    cli.show({"ran": True, **run}, render)


def _reconcile_table(report: dict[str, Any]) -> Any:
    """A reconcile report as a table: one row per class (in sync and without a file too, so
    the rows add up to the scenes of the title), its samples and what a repair does."""
    from rich.table import Table

    from stash2plex.reconcile.classify import ACTION_TEXT
    from stash2plex.reconcile.run import KIND_WORDS

    table = Table(title=report.get("summary") or "Reconcile")
    for column in ("class", "scenes", "samples", "repair"):
        table.add_column(column, overflow="fold")
    samples = report.get("samples") or {}
    for kind, count in (report.get("results") or {}).items():
        shown = samples.get(kind) or []
        text = "\n".join(f"scene {s['scene_id']}: {s['detail']}" for s in shown)
        action = ACTION_TEXT.get(shown[0]["action"], "") if shown else ""
        table.add_row(KIND_WORDS.get(kind, kind.replace("_", " ")), str(count), text, action)
    return table


# The drain syncs everything due, not only what the command queued: the bar says so.
DRAIN_BAR_LABEL = "syncing the queue"


def drain_bar(*, disable: bool, console: Any = None) -> Any:
    """The drain's progress bar: scenes synced of those due (a count, not only a share) and
    the time left; erased when the drain ends. A `rich.progress.Progress`."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("scenes"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=True,
    )


# A sync of named scenes lists each of them (up to this many) in its table.
NAMED_SCENES_SHOWN = 20


def _drain(
    cli: Cli,
    since: float | None = None,
    *,
    extra: dict[str, Any] | None = None,
    judge: Any = None,
) -> None:
    """Follow a drain and report it; `since`: when the scenes were queued (default: now);
    `extra`: what the command did before the drain (the JSON output is one document: these
    keys with the drain's `status`, `drained`, `error` and `notes`; a command that drains
    prints nothing else to stdout with --json); `judge(store, since, report)`: the verdict
    (default `outcome.drain_verdict`)."""
    from stash2plex.engine.worker_lock import ensure_worker
    from stash2plex.operations.inspect import scene_report
    from stash2plex.operations.outcome import drain_verdict
    from stash2plex.operations.queue import process_queue, status_report
    from stash2plex.operations.recent import settings_checked

    started_at = time.time() if since is None else since
    try:
        with drain_bar(disable=cli.as_json) as bar:
            task = bar.add_task(DRAIN_BAR_LABEL, total=None)
            report = process_queue(
                cli.data_dir,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                start_worker=lambda: ensure_worker(cli.data_dir),
                since=started_at,
            )
    except KeyboardInterrupt:  # only the following stops: the worker drains on
        _die(DRAIN_INTERRUPTED, 130)
    named = [int(scene_id) for scene_id in (extra or {}).get("scenes", [])]
    with cli.store() as store:
        status = status_report(store, cli.data_dir)
        verdict = (judge or drain_verdict)(store, started_at, report)
        verdict = settings_checked(lambda: cli.context(store), cli.data_dir, report, verdict)
        # The scenes a person named, each where it stands now (the counts below are the
        # drain's, which took up earlier scenes too).
        now = time.time()
        where = {
            str(scene_id): scene_report(store, scene_id, None, now=now)["state_words"]
            for scene_id in named[:NAMED_SCENES_SHOWN]
        }
    data: dict[str, Any] = {**(extra or {}), "status": status}
    if named:
        data["scenes"] = where  # the named ids become where each stands
    data["drained"] = {
        k: getattr(report, k)
        for k in ("synced", "unchanged", "skipped", "deferred", "dead_lettered")
    }
    data["error"] = verdict.error
    data["exit_code"] = verdict.exit_code
    data["notes"] = list(verdict.notes)

    def render(data: dict[str, Any]) -> Any:
        drained, status = data["drained"], data["status"]
        # Held by an outage or a pause, most scenes were never tried: counted here, so the
        # table adds up to the sentence's "N scenes wait".
        untried = status["pending"] + status["in_progress"]
        earlier = sum(drained.values()) - int(data.get("queued") or 0)
        caption = (
            f"{plural(earlier, 'scene')} queued before this sync {agree(earlier, 'was', 'were')} "
            "taken up too and counted; (all): the whole queue"
            if "queued" in data and earlier > 0
            else None
        )
        return _table(
            "Sync",
            {
                **{f"scene {k}": v for k, v in data.get("scenes", {}).items()},
                **{DRAINED_WORDS.get(k, k): v for k, v in drained.items()},
                # The rows above count this sync; these count the queue, earlier jobs too.
                "waiting (all)": _reasons(status["waiting"]) or "none",
                **({"queued, not tried yet": untried} if untried else {}),
                "dead letters (all)": _classes(status["dead_letters"]) or "none",
                "circuit breaker": status["breaker"],
            },
            caption,
        )

    cli.show(data, render)
    if not cli.as_json:
        for note in verdict.notes:
            cli.say(note, color="yellow")
        if verdict.error:
            cli.say(verdict.error, color="red")
    if verdict.exit_code:
        sys.exit(verdict.exit_code)


# The rows of a sync's table, in words ("deferred" meant nothing to people trying it).
DRAINED_WORDS = {
    "deferred": "tried, waits again",
    "dead_lettered": "dead lettered",
    "skipped": "skipped (no video file, or no metadata of its own yet)",
}


def _reasons(waiting: dict[str, int]) -> str:
    from stash2plex.operations.present import WAIT_WORDS

    return ", ".join(f"{n} {WAIT_WORDS.get(reason, reason)}" for reason, n in waiting.items())


def _classes(letters: dict[str, int]) -> str:
    return ", ".join(f"{n} {error_class}" for error_class, n in letters.items())


@main.group("queue")
def queue_group() -> None:
    """The job queue."""


@queue_group.command("status")
@click.pass_obj
def queue_status(cli: Cli) -> None:
    """Pending, waiting by reason, in progress, dead letters, breaker, last outage and sync."""
    from stash2plex.operations.present import duration, when
    from stash2plex.operations.queue import status_report, variable_gone_note

    with cli.store() as store:
        status = status_report(store, cli.data_dir)
        note = variable_gone_note(store.holds(), os.environ, status["worker_running"])
    if note:  # this shell's view, apart from the stored hold
        status["paused_here"] = note
    now = _now()

    def render(status: dict[str, Any]) -> Any:
        outage = status["last_outage"]
        if outage is None:
            last_outage = "none recorded"
        else:
            ended = outage["ended_at"]
            length = duration((ended or now) - outage["started_at"])
            last_outage = (
                f"{when(outage['started_at'], now)}, lasted {length}"
                if ended
                else f"since {when(outage['started_at'], now)} (ongoing, {length} so far)"
            )
        breaker = status["breaker"]
        if status["breaker_since"]:
            breaker += f" since {when(status['breaker_since'], now)}"
        return _table(
            "Queue",
            {
                "queued": status["pending"],
                "being synced": status["in_progress"],
                "waiting": _reasons(status["waiting"]) or "none",
                "done (synced, or nothing to push)": status["done"],
                "dead letters": _classes(status["dead_letters"]) or "none",
                "circuit breaker": breaker,
                "held": status["paused"] or "no",
                **({"in this shell": status["paused_here"]} if "paused_here" in status else {}),
                "worker running": status["worker_running"],
                "last outage": last_outage,
                "last sync": when(status["last_sync_at"], now),
                "scenes linked to Plex": status["linked_scenes"],
            },
        )

    cli.show(status, render)
    attention = status["waiting"] or status["dead_letters"] or status["paused"]
    if attention or status["breaker"] != "closed":
        sys.exit(EXIT_ATTENTION)  # the README's exit codes: scenes wait, or Plex is down


@queue_group.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    # "leased" is the store's and the metrics' word for a job a worker holds (in progress).
    type=click.Choice(["pending", "in_progress", "leased", "waiting", "done", "dead_letter"]),
    help="Only jobs in this state (repeatable; default: pending, in progress and waiting). "
    "leased is another name for in_progress: a job a worker is syncing now.",
)
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    type=click.Choice(sorted({*WAIT_REASONS, *ERROR_CLASSES})),
    help="Only jobs waiting for this reason (e.g. not_in_plex, ambiguous, retry, plex_down), "
    "or dead letters of this error class.",
)
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@click.pass_obj
def queue_list(cli: Cli, states: tuple[str, ...], reasons: tuple[str, ...], limit: int) -> None:
    """Each job with its state, reason, candidates, last error, attempts and next attempt."""
    from rich.table import Table

    from stash2plex.operations.inspect import OUTSTANDING, jobs_summary, list_jobs

    now = _now()
    states = tuple(dict.fromkeys("in_progress" if s == "leased" else s for s in states))
    if not states and set(reasons) - set(WAIT_REASONS):  # an error class: dead letters too
        states = (*OUTSTANDING, "dead_letter")
    with cli.store() as store:
        rows = list_jobs(store, states=states or OUTSTANDING, reasons=reasons, now=now)

    def render(rows: list[dict[str, Any]]) -> Any:
        if not rows:
            if states or reasons:
                return "No job in that state or waiting for that reason."
            return (
                "No job is queued, being synced or waiting (dead letters: `stash2plex dlq list`)."
            )
        table = Table(title=f"{plural(len(rows), 'job')}: {jobs_summary(rows)}")
        for column in ("scene", "state", "attempts", "next attempt", "last error / candidates"):
            table.add_column(column, overflow="fold")
        for row in rows[:limit]:
            detail = row["last_error"] or ""
            if row["candidates"]:
                detail += ("\n" if detail else "") + "\n".join(row["candidates"])
            table.add_row(
                str(row["scene_id"]),
                row["status"],
                str(row["attempts"]),
                row["next_attempt"],
                detail or "—",
            )
        if len(rows) > limit:
            table.caption = f"{len(rows) - limit} more not shown (--limit)"
        return table

    cli.show(rows, render)


@queue_group.command("process")
@click.pass_obj
def queue_process(cli: Cli) -> None:
    """Drain in the foreground until the queue is empty or Plex goes down."""
    _drain(cli)


@queue_group.command("clear")
@click.pass_obj
def queue_clear(cli: Cli) -> None:
    """Remove pending and waiting jobs (jobs in progress are left alone)."""
    with cli.store() as store:
        cleared = store.clear_pending()
    cli.show({"cleared": cleared}, f"cleared {plural(cleared, 'pending job')}")


@main.command("scene")
@click.argument("scene_id", type=SCENE_ID)
@click.pass_obj
def scene_command(cli: Cli, scene_id: int) -> None:
    """One scene: its job, dead letter, Plex link, what was pushed per field, recent events."""
    from rich.console import Group
    from rich.table import Table

    from stash2plex.operations.inspect import NOT_IN_STASH, scene_report
    from stash2plex.operations.present import (
        QUEUE_HOLD_REASONS,
        field_words,
        source_words,
        value_words,
        when,
    )
    from stash2plex.operations.queue import hold_message

    now = _now()
    with cli.store() as store:
        try:
            context = cli.context(store)
        except SyncError as exc:
            context = None
            reason = exc.message
        report = scene_report(store, scene_id, context, now=now)
        held = hold_message(store.holds())
    job = report["job"]
    if held and job is not None:  # its next attempt waits for the whole queue
        report["held"] = held
        if job["state"] in ("pending", "waiting"):
            job["next_attempt"] = "when the hold on the queue lifts"
        if job["reason"] in QUEUE_HOLD_REASONS:  # its own reason may be an older hold's
            report["state_words"] = "waiting: the queue is held"
            job["status"] = "waiting"
    if context is None:
        report.setdefault("note", f"Stash was not asked ({reason})")
    unknown = report["job"] is None and report["link"] is None and not report["dead_letters"]
    if unknown and report.get("note") == NOT_IN_STASH:
        if cli.as_json:
            cli.show(report)
        _die(
            f"Stash has no scene {scene_id}, and Stash2Plex has no record of it: check the "
            "scene id (the number in the scene's address in Stash, /scenes/<id>)",
            EXIT_CONFIG,
        )

    def render(report: dict[str, Any]) -> Any:
        parts: list[Any] = []
        job = report["job"]
        summary: dict[str, Any] = {"state": report["state_words"]}
        if job is None:
            summary["job"] = "no job (never queued, or finished and cleaned up)"
            summary["next attempt"] = "when the scene is saved in Stash or synced again"
        else:
            summary["job"] = job["status"]
            if job["attempts"]:  # failed ones; a synced job has none left to show
                summary["failed attempts"] = job["attempts"]
            summary.update(
                {
                    **({"queue held": report["held"]} if report.get("held") else {}),
                    "next attempt": job["next_attempt"],
                    "last error": job["last_error"],
                    "candidates": "; ".join(job["candidates"]),
                    "queued": when(job["queued_at"], now),
                    "queued by": source_words(job["source"]),
                }
            )
        for letter in report["dead_letters"]:
            summary["dead letter"] = (
                f"{letter['error_class']}, failed {when(letter['failed_at'], now)} after "
                f"{plural(letter['attempts'], 'attempt')}: {letter['message']}"
            )
        link = report["link"]
        if link is None:
            summary["Plex item"] = "not linked yet"
        else:
            summary["Plex item"] = (
                f"ratingKey {link['rating_key']} in library section {link['section_id']}"
            )
            summary["Plex file"] = link["plex_path"]
            summary["last synced"] = when(link["synced_at"], now)
        if report.get("note"):
            summary["note"] = report["note"]
        parts.append(_table(f"Scene {report['scene_id']}", summary))
        if report["fields"]:
            fields = Table(title="What was pushed")
            for column in ("field", "pushed", "Stash now"):
                fields.add_column(column, overflow="fold")
            for row in report["fields"]:
                if row["pushed"] is not None:
                    pushed = value_words(row["pushed"])
                elif row["field"] in ("poster", "art"):
                    pushed = "an image (its checksum is kept)"
                elif context is None:  # a text is kept only as a fingerprint
                    pushed = "not known here (its fingerprint is kept; Stash was not asked)"
                else:  # shown while Stash still says it
                    pushed = "a value Stash no longer has"
                fields.add_row(field_words(row["field"]), pushed, row.get("stash_now", "—"))
            parts.append(fields)
        if report["events"]:
            events = Table(title="Recent events")
            for column in ("when", "level", "what"):
                events.add_column(column, overflow="fold")
            for event in report["events"]:
                events.add_row(when(event["at"], now), event["level"], event["message"])
            parts.append(events)
        return Group(*parts)

    cli.show(report, render)
    if not cli.as_json and report["link"] is not None and report.get("plex_url"):
        # A line of its own, never folded or cut: a terminal keeps it one link to click or copy.
        click.echo(f"Open in Plex: {report['plex_url']}")


@main.group("dlq")
def dlq_group() -> None:
    """The dead-letter queue."""


@dlq_group.command("list")
@click.option("--class", "error_class", default=None, help="Only this error class.")
@click.pass_obj
def dlq_list(cli: Cli, error_class: str | None) -> None:
    """List dead letters with their error class, reason and attempts."""
    from rich.table import Table

    from stash2plex.operations.present import when

    now = _now()
    with cli.store() as store:
        letters = store.dead_letters(error_class)

    def render(letters: list[dict[str, Any]]) -> Any:
        if not letters:
            return "No dead letter" + (f" of class {error_class}." if error_class else ".")
        table = Table(
            title=plural(len(letters), "dead letter"),
            caption="Once the cause is fixed: `stash2plex dlq retry` (or Retry Dead Letters)",
        )
        for column in ("scene", "class", "failed", "why"):
            table.add_column(column, overflow="fold")
        for letter in letters:
            table.add_row(
                str(letter["scene_id"]),
                letter["error_class"],
                f"{when(letter['failed_at'], now)} after {plural(letter['attempts'], 'attempt')}",
                letter["message"],
            )
        return table

    cli.show(letters, render)


@dlq_group.command("retry")
@click.option("--class", "error_class", default=None, help="Only this error class.")
@click.pass_obj
def dlq_retry(cli: Cli, error_class: str | None) -> None:
    """Queue dead-lettered scenes again and drain."""
    from stash2plex.operations.queue import retry_dead_letters

    since = time.time()
    with cli.store() as store:
        queued = retry_dead_letters(store, error_class)
    if not cli.as_json:
        cli.say(f"re-queued {plural(queued, 'scene')}")
    if queued:
        _drain(cli, since, extra={"requeued": queued})
    elif cli.as_json:
        cli.show({"requeued": 0})


@dlq_group.command("purge")
@click.option("--days", type=click.FloatRange(0), default=30, show_default=True)
@click.pass_obj
def dlq_purge(cli: Cli, days: float) -> None:
    """Remove dead letters older than N days."""
    from stash2plex.operations.queue import purge_dead_letters

    with cli.store() as store:
        purged = purge_dead_letters(store, days)
    cli.show(
        {"purged": purged, "days": days},
        f"purged {plural(purged, 'dead letter')} older than {plural(days, 'day')}",
    )


@dlq_group.command("clear")
@click.pass_obj
def dlq_clear(cli: Cli) -> None:
    """Remove every dead letter."""
    with cli.store() as store:
        cleared = store.delete_dead_letters()
    cli.show({"cleared": cleared}, f"removed {plural(cleared, 'dead letter')}")


@main.command("pull")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    default=None,
    help="Read Plex's plays from this local date/time on, instead of since the last pull.",
)
@click.pass_obj
def pull(cli: Cli, since: object) -> None:
    """Bring plays, resume points and ratings recorded in Plex into Stash (as the pull
    settings allow). Exit 1 if another pull is running."""
    from stash2plex.pull.pull import run_pull

    start = int(since.timestamp()) if since is not None else None  # type: ignore[attr-defined]
    with cli.store() as store:
        report = run_pull(cli.context(store), since=start)
    data = report.as_dict()
    cli.show(data, lambda _: report.summary())
    if report.busy:
        cli.say("another pull from Plex is running; try again when it is done", color="yellow")
        sys.exit(EXIT_ATTENTION)


@main.command("health")
@click.pass_obj
def health(cli: Cli) -> None:
    """Prove Plex is serving (reachable, token accepted, library readable). Exit 1 if not
    (2 when a setting or the token is the cause)."""
    from stash2plex.operations.outcome import health_verdict
    from stash2plex.operations.queue import health_report

    with cli.store() as store:
        report = health_report(cli.context(store), cli.data_dir)
    verdict = health_verdict(report)

    def render(report: dict[str, Any]) -> Any:
        queue = report["queue"]
        return _table(
            "Health",
            {
                "Plex": "healthy" if report["healthy"] else "NOT healthy",
                "detail": report["detail"],
                "answered in": f"{report['latency_ms']:.0f} ms",
                "circuit breaker": report["breaker"],
                "held": report["paused"] or "no",
                "queued": queue["pending"],
                "waiting": _reasons(queue["waiting"]) or "none",
                "dead letters": _classes(queue["dead_letters"]) or "none",
            },
        )

    # As every JSON answer: the error and the exit code in the document (README).
    cli.show({**report, "error": verdict.error, "exit_code": verdict.exit_code}, render)
    if verdict.error and not cli.as_json:
        cli.say(verdict.error, color="red")
    if verdict.exit_code:
        sys.exit(verdict.exit_code)


@main.command("outages")
@click.option("--limit", type=click.IntRange(1), default=30, show_default=True)
@click.pass_obj
def outages(cli: Cli, limit: int) -> None:
    """The outages (start, end, length, jobs held) with MTTR, MTBF and availability."""
    from rich.console import Group
    from rich.table import Table

    from stash2plex.operations.present import availability_words, duration, when
    from stash2plex.operations.queue import outage_report

    now = _now()
    with cli.store() as store:
        report = outage_report(store, limit)
        breaker = store.holds().breaker

    def render(report: dict[str, Any]) -> Any:
        def seconds(value: float | None) -> str:
            return "—" if value is None else duration(value)

        availability = report["availability_pct"]
        summary = _table(
            "Outages",
            {
                "outages": report["outages"],
                "completed": report["completed"],
                "total downtime": duration(report["total_downtime_s"]),
                "mean time to recovery": seconds(report["mttr_s"]),
                "mean time between failures": seconds(report["mtbf_s"]),
                "availability": availability_words(
                    availability, report["watched_since"], report["now"]
                ),
            },
        )
        table = Table(title=f"The last {plural(len(report['recent']), 'outage')}")
        for column in ("started", "ended", "lasted", "jobs held", "reconciled after it"):
            table.add_column(column)
        for outage in report["recent"]:
            done = outage.get("reconciled")
            table.add_row(
                when(outage["started_at"], now),
                "ongoing" if outage["ongoing"] else when(outage["ended_at"], now),
                duration(outage["duration_s"]),
                str(outage["jobs_affected"]),
                "—"
                if not done
                else f"{done['changed_in_stash']} changed in Stash, "
                f"{done['failed_jobs_requeued']} failed jobs re-queued",
            )
        return Group(summary, table) if report["recent"] else summary

    cli.show(report, render)
    # The README's exit codes: Plex is down (an outage recorded as going on, or the breaker
    # not closed: between an outage's trials it may be either alone).
    ongoing = next((o for o in report["recent"] if o["ongoing"]), None)
    since = ongoing["started_at"] if ongoing is not None else breaker.opened_at
    if ongoing is not None or not breaker.is_closed:
        down = f"Plex has been down since {when(since, now)}" if since else "Plex is down"
        cli.say(
            f"{down}; jobs wait and sync by themselves when it is back (`stash2plex health` "
            "checks it now)",
            color="yellow",
        )
        sys.exit(EXIT_ATTENTION)
    if not cli.as_json and not report["recent"]:
        # The history is the worker's: a Plex down while nothing synced is not in it yet.
        cli.say(
            "Outages are recorded when a sync meets Plex down; `stash2plex health` checks Plex now."
        )


@main.command("recover-outage-jobs")
@click.option(
    "--include", "include", multiple=True, help="Also recover this error class (e.g. permanent)."
)
@click.pass_obj
def recover_outage_jobs(cli: Cli, include: tuple[str, ...]) -> None:
    """Re-queue dead letters that failed during the last outage, after a health check."""
    from stash2plex.operations.present import local_time
    from stash2plex.operations.queue import recover_outage_jobs as recover

    with cli.store() as store:
        report = recover(cli.context(store), ("transient", *include))
    data = report.as_dict()

    def render(data: dict[str, Any]) -> Any:
        window = data["window"]
        return _table(
            "Recover outage jobs",
            {
                "outage": "—"
                if window is None
                else f"{local_time(window[0])} to {local_time(window[1])}",
                "recovered": data["recovered"],
                "skipped": ", ".join(f"{n} {why}" for why, n in data["skipped"].items()),
                "failed": "; ".join(f"scene {k}: {v}" for k, v in data["failed"].items()),
                "Plex": data["health"],
            },
        )

    if report.failed or (report.window is None and "not healthy" in report.health):
        cli.show(data, render)
        sys.exit(EXIT_ATTENTION)
    if not report.recovered:
        cli.show(data, render)
        return
    # With --json the recovery goes into the drain's document: stdout stays one document.
    if not cli.as_json:
        cli.show(data, render)
    _drain(cli, extra={"recover": data})


@main.command("preview")
@click.argument("scene_id", type=SCENE_ID, required=False)
@click.option("--count", type=click.IntRange(1, 10000), default=10, show_default=True)
@click.pass_obj
def preview(cli: Cli, scene_id: int | None, count: int) -> None:
    """What a sync would change in Plex, field by field, compared with Plex as it is; writes
    nothing. Exit 2 for a scene Stash does not have."""
    from stash2plex.operations.queue import preview as run_preview

    with cli.store() as store:
        previews = run_preview(cli.context(store), scene_id=scene_id, count=count)
    _show_previews(cli, previews, title="Preview")
    if scene_id is not None and previews[0].status == "not in Stash":
        _die(f"Stash has no scene {scene_id}: nothing to preview", EXIT_CONFIG)
    _preview_exit(cli, previews)


def _preview_exit(cli: Cli, previews: list[Any]) -> None:
    """Hints, then the README's exit code for a preview or dry run."""
    from stash2plex.operations.outcome import preview_verdict

    verdict = preview_verdict(previews)
    if not cli.as_json:
        for note in verdict.notes:
            cli.say(note)
        if verdict.error:
            cli.say(verdict.error, color="red")
    if verdict.exit_code:
        sys.exit(verdict.exit_code)


@main.command("diagnose")
@click.pass_obj
def diagnose_command(cli: Cli) -> None:
    """Check Stash, the settings, Plex, the token, the libraries and the path mapping."""
    from rich.table import Table

    from stash2plex.engine.context import connect_stash, load_config
    from stash2plex.operations.diagnose import as_dicts, diagnose

    with cli.store() as store:
        try:
            config, _ = load_config(connect_stash(store, None, cli.local()), cli.local())
            cli.hide_paths(config.obfuscate_paths)
        except SyncError:
            pass  # diagnose reports it as its first check
        checks = diagnose(store, local=cli.local())

    def render(checks: list[dict[str, Any]]) -> Any:
        table = Table(title="Diagnose")
        for column in ("check", "", "detail", "fix"):
            table.add_column(column, overflow="fold")
        for check in checks:
            table.add_row(
                check["name"],
                "OK" if check["ok"] else "[red]FIX[/]",
                check["detail"],
                check["fix"],
            )
        return table

    cli.show(as_dicts(checks), render)
    problems = [check for check in checks if not check.ok]
    if problems:
        # A setting to change is a configuration error (2); anything else needs attention (1).
        configuration = any(check.setting for check in problems)
        first = problems[0]
        if not cli.as_json:
            cli.say(
                f"{plural(len(problems), 'problem')} found; first: {first.name}: {first.fix}",
                color="red",
            )
        sys.exit(EXIT_CONFIG if configuration else EXIT_ATTENTION)


def _accept_json_everywhere(group: click.Group) -> None:
    """Give every subcommand a `--json` flag, so `stash2plex queue status --json` works as
    well as `stash2plex --json queue status`."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        cli = ctx.find_object(Cli)
        if value and cli is not None:
            cli.as_json = True
        return value

    for command in group.commands.values():
        if isinstance(command, click.Group):
            _accept_json_everywhere(command)
        elif not any(p.name == "as_json" for p in command.params):
            command.params.append(
                click.Option(
                    ["--json", "as_json"],
                    is_flag=True,
                    expose_value=False,
                    callback=remember,
                    help="Machine-readable output.",
                )
            )


_accept_json_everywhere(main)
