"""The `stash2plex` command line: thin commands over the operations."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from stash2plex import __version__
from stash2plex.errors import SyncError

# Exit codes: 0 done, 1 done but something needs attention (unhealthy, failures, blocked),
# 2 a usage or configuration error, 3 another worker already drains the queue.
EXIT_ATTENTION = 1
EXIT_CONFIG = 2


@click.group()
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
    from stash2plex.errors import StoreError

    data_dir = data_dir or cli.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = None
    for _ in range(120):  # a store locked by another process: wait for it (up to 10 min)
        try:
            engine = (
                Worker(data_dir)
                if idle_exit is None
                else Worker(data_dir, idle_exit_seconds=idle_exit)
            )
            break
        except StoreError as exc:
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
        sys.exit(3)


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
    try:
        from stash2plex.service.process import ServeError, ServiceOptions, read_token
        from stash2plex.service.process import serve as run_service
    except ImportError as exc:
        click.secho(
            f"stash2plex serve needs the [serve] extra ({exc.name} is missing): "
            "pip install 'stash2plex[serve]'",
            fg="red",
            err=True,
        )
        sys.exit(EXIT_CONFIG)
    from stash2plex.engine.context import build_context

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
def demo(scenes: int, seed: int) -> None:
    """Sync a generated library between emulated Stash and Plex servers on loopback."""
    from stash2plex.sandbox.demo import run_demo

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
    from stash2plex.plugin.packaging import BuildError
    from stash2plex.plugin.packaging import build_plugin as build

    try:
        result = build(out_dir, repo_root=repo_root, version=version, date=date)
    except BuildError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{result.zip_path}  sha256 {result.sha256}")
    click.echo(f"{result.index_path}  version {result.version}, date {result.date}")


# ---------------------------------------------------------------------- operations
class Cli:
    """What every operational command needs: the data directory, settings, output mode."""

    def __init__(self, data_dir: Path, config_file: Path | None, as_json: bool) -> None:
        self.data_dir = data_dir
        self.config_file = config_file
        self.as_json = as_json

    def store(self):  # -> Store
        from stash2plex.store.db import Store

        return Store.open(self.data_dir)

    def local(self):  # -> LocalSettings
        from stash2plex.settings.sources import load_local_settings

        return load_local_settings(self.data_dir, self.config_file)

    def context(self, store):  # -> Context
        from stash2plex.engine.context import build_context

        return build_context(store, local=self.local())

    def show(self, data: object, render: object = None) -> None:
        """Print `data` as JSON with --json, else through `render` (a rich renderable)."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        else:
            from rich.console import Console

            Console().print(render if render is not None else data)


def _fail(exc: SyncError) -> None:
    from stash2plex.errors import PERMANENT

    click.secho(f"stash2plex: {exc.message}", fg="red", err=True)
    sys.exit(EXIT_CONFIG if exc.error_class == PERMANENT else EXIT_ATTENTION)


def _table(title: str, rows: dict) -> object:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        table.add_row(str(key), "—" if value in (None, {}, []) else str(value))
    return table


@main.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("check")
@click.pass_obj
def config_check(cli: Cli) -> None:
    """Print every setting's effective value (secrets masked) and where it came from."""
    from stash2plex.settings.config import SETTINGS

    try:
        with cli.store() as store:
            context = cli.context(store)
    except SyncError as exc:
        _fail(exc)
    config = context.config
    rows = []
    for setting in SETTINGS:
        value = getattr(config, setting.key)
        if setting.secret and value:
            value = f"***{str(value)[-2:]}" if len(str(value)) > 8 else "***"
        elif isinstance(value, tuple):
            value = ", ".join(
                str(getattr(v, "stash_prefix", v))
                + (f" => {v.plex_prefix}" if hasattr(v, "plex_prefix") else "")
                for v in value
            )
        rows.append({"key": setting.key, "value": value, "source": context.sources[setting.key]})
    data = {"settings": rows, "warnings": list(config.warnings), "missing": list(config.missing)}
    from rich.table import Table

    table = Table(title="Effective configuration")
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["key"], str(row["value"]), row["source"])
    cli.show(data, table)
    for warning in config.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if config.missing:
        click.secho(f"missing required settings: {', '.join(config.missing)}", fg="red", err=True)
        sys.exit(EXIT_CONFIG)


@main.command("sync")
@click.option("--all", "all_scenes", is_flag=True, help="Queue every scene in Stash.")
@click.argument("scene_ids", nargs=-1, type=int)
@click.pass_obj
def sync_command(cli: Cli, all_scenes: bool, scene_ids: tuple[int, ...]) -> None:
    """Queue scenes (or --all) and drain the queue with a progress bar."""
    from stash2plex.operations.queue import queue_all_scenes

    if not all_scenes and not scene_ids:
        raise click.UsageError("give scene ids or --all")
    try:
        with cli.store() as store:
            context = cli.context(store)
            if all_scenes:
                queue_all_scenes(store, context.stash)
            else:
                store.enqueue(list(scene_ids), source="cli")
    except SyncError as exc:
        _fail(exc)
    _drain(cli)


def _drain(cli: Cli) -> None:
    from rich.progress import Progress

    from stash2plex.engine.worker_lock import ensure_worker
    from stash2plex.operations.queue import process_queue

    with Progress(disable=cli.as_json, transient=True) as bar:
        task = bar.add_task("syncing", total=None)
        report = process_queue(
            cli.data_dir,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            start_worker=lambda: ensure_worker(cli.data_dir),
        )
    with cli.store() as store:
        from stash2plex.operations.queue import status_report

        status = status_report(store, cli.data_dir)
    data: dict[str, Any] = {"status": status}
    if report is not None:
        data["drained"] = {
            k: getattr(report, k)
            for k in ("synced", "unchanged", "skipped", "deferred", "dead_lettered")
        }
        data["errors"] = report.errors
    cli.show(
        data,
        _table(
            "Drain",
            {
                **data.get("drained", {}),
                "waiting": status["waiting"],
                "dead letters": status["dead_letters"],
                "breaker": status["breaker"],
            },
        ),
    )
    if not cli.as_json:
        # What a person must fix (e.g. a TV library named in plex_library), in full.
        messages = [*(report.errors if report is not None else []), status["paused"]]
        for message in dict.fromkeys(m for m in messages if m):
            click.secho(f"stash2plex: {message}", fg="red", err=True)
    blocked = (
        (report is not None and report.errors)
        or status["breaker"] != "closed"
        or (status["paused"])
    )
    if blocked:
        sys.exit(EXIT_ATTENTION)


@main.group("queue")
def queue_group() -> None:
    """The job queue."""


@queue_group.command("status")
@click.pass_obj
def queue_status(cli: Cli) -> None:
    """Pending, waiting by reason, in progress, dead letters, breaker, last outage and sync."""
    from stash2plex.operations.queue import status_report

    with cli.store() as store:
        status = status_report(store, cli.data_dir)
    cli.show(status, _table("Queue", status))


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
    cli.show({"cleared": cleared}, f"cleared {cleared} pending jobs")


@main.group("dlq")
def dlq_group() -> None:
    """The dead-letter queue."""


@dlq_group.command("list")
@click.option("--class", "error_class", default=None, help="Only this error class.")
@click.pass_obj
def dlq_list(cli: Cli, error_class: str | None) -> None:
    """List dead letters with their error class, reason and attempts."""
    from rich.table import Table

    with cli.store() as store:
        letters = store.dead_letters(error_class)
    table = Table(title=f"{len(letters)} dead letters")
    for column in ("scene", "class", "attempts", "failed at", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        failed = time.strftime("%Y-%m-%d %H:%M", time.localtime(letter["failed_at"]))
        table.add_row(
            str(letter["scene_id"]),
            letter["error_class"],
            str(letter["attempts"]),
            failed,
            letter["message"],
        )
    cli.show(letters, table)


@dlq_group.command("retry")
@click.option("--class", "error_class", default=None, help="Only this error class.")
@click.pass_obj
def dlq_retry(cli: Cli, error_class: str | None) -> None:
    """Queue dead-lettered scenes again and drain."""
    from stash2plex.operations.queue import retry_dead_letters

    with cli.store() as store:
        queued = retry_dead_letters(store, error_class)
    if not cli.as_json:
        click.echo(f"re-queued {queued} scenes")
    if queued:
        _drain(cli)


@dlq_group.command("purge")
@click.option("--days", type=click.FloatRange(0), default=30, show_default=True)
@click.pass_obj
def dlq_purge(cli: Cli, days: float) -> None:
    """Remove dead letters older than N days."""
    from stash2plex.operations.queue import purge_dead_letters

    with cli.store() as store:
        purged = purge_dead_letters(store, days)
    cli.show(
        {"purged": purged, "days": days}, f"purged {purged} dead letters older than {days} days"
    )


@dlq_group.command("clear")
@click.pass_obj
def dlq_clear(cli: Cli) -> None:
    """Remove every dead letter."""
    with cli.store() as store:
        cleared = store.delete_dead_letters()
    cli.show({"cleared": cleared}, f"removed {cleared} dead letters")


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
    try:
        with cli.store() as store:
            report = run_pull(cli.context(store), since=start)
    except SyncError as exc:
        _fail(exc)
    data = report.as_dict()
    cli.show(data, report.summary())
    if report.busy:
        sys.exit(EXIT_ATTENTION)


@main.command("health")
@click.pass_obj
def health(cli: Cli) -> None:
    """Prove Plex is serving (reachable, token accepted, library readable). Exit 1 if not."""
    from stash2plex.operations.queue import health_report

    try:
        with cli.store() as store:
            report = health_report(cli.context(store), cli.data_dir)
    except SyncError as exc:
        _fail(exc)
    cli.show(report, _table("Health", report))
    if not report["healthy"]:
        sys.exit(EXIT_ATTENTION)


@main.command("outages")
@click.pass_obj
def outages(cli: Cli) -> None:
    """Outage history with MTTR, MTBF and availability."""
    from stash2plex.operations.queue import outage_report

    with cli.store() as store:
        report = outage_report(store)
    cli.show(report, _table("Outages", {k: v for k, v in report.items() if k != "recent"}))


@main.command("recover-outage-jobs")
@click.option(
    "--include", "include", multiple=True, help="Also recover this error class (e.g. permanent)."
)
@click.pass_obj
def recover_outage_jobs(cli: Cli, include: tuple[str, ...]) -> None:
    """Re-queue dead letters that failed during the last outage, after a health check."""
    from stash2plex.operations.queue import recover_outage_jobs as recover

    try:
        with cli.store() as store:
            report = recover(cli.context(store), ("transient", *include))
    except SyncError as exc:
        _fail(exc)
    data = report.as_dict()
    cli.show(data, _table("Recover outage jobs", data))
    if report.failed or (report.window is None and "not healthy" in report.health):
        sys.exit(EXIT_ATTENTION)
    if report.recovered:
        _drain(cli)


@main.command("preview")
@click.argument("scene_id", type=int, required=False)
@click.option("--count", type=click.IntRange(1, 10000), default=10, show_default=True)
@click.pass_obj
def preview(cli: Cli, scene_id: int | None, count: int) -> None:
    """What a sync would change in Plex, field by field; writes nothing."""
    from rich.table import Table

    from stash2plex.operations.queue import preview as run_preview

    try:
        with cli.store() as store:
            previews = run_preview(cli.context(store), scene_id=scene_id, count=count)
    except SyncError as exc:
        _fail(exc)
    table = Table(title="Preview")
    for column in ("scene", "status", "field", "Plex now", "from Stash"):
        table.add_column(column, overflow="fold")
    for item in previews:
        if not item.changes:
            table.add_row(str(item.scene_id), item.status, "", "", item.note)
        for change in item.changes:
            table.add_row(str(item.scene_id), item.status, change.field, change.plex, change.stash)
    cli.show([p.as_dict() for p in previews], table)


@main.command("diagnose")
@click.pass_obj
def diagnose_command(cli: Cli) -> None:
    """Check Stash, the settings, Plex, the token, the libraries and the path mapping."""
    from rich.table import Table

    from stash2plex.operations.diagnose import as_dicts, diagnose

    with cli.store() as store:
        checks = diagnose(store, local=cli.local())
    table = Table(title="Diagnose")
    for column in ("check", "", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(check.name, "OK" if check.ok else "FIX", check.detail, check.fix)
    cli.show(as_dicts(checks), table)
    if any(not check.ok for check in checks):
        sys.exit(EXIT_ATTENTION)
