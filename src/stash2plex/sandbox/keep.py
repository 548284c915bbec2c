"""`stash2plex sandbox`: the emulated Stash and Plex kept running for trying things by hand.

The servers start with a generated library and nothing synced. A folder holds the plugin as
Stash would install it (`plugins/stash2plex`: the manifest, the entry script, the package
linked from this checkout) and its data folder, which the printed `STASH2PLEX_DATA_DIR`
points the command line at: tasks run with `stash2plex sandbox task NAME` and commands share
one queue. The emulated Stash runs the plugin's hooks after a change commits, as Stash does,
so a scene saved by hand reaches Plex on its own. `sandbox.json` in the folder says where the
servers are, for `task` and `plex down|up`; it goes when the sandbox stops (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.processes import reap_workers
from stash2plex.sandbox.session import running_sandbox

STATE_FILE = "sandbox.json"
PLEX_TOKEN = "sandbox-plex-token"
PLUGIN_FILES = ("Stash2Plex.yml", "stash2plex_plugin.py")


# Marks a data folder a sandbox made: only such a folder is ever emptied (`_start_afresh`).
SANDBOX_MARKER = ".stash2plex-sandbox"


class SandboxError(Exception):
    """The sandbox cannot do what was asked: one sentence for people."""


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (also when it already existed)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    os.chmod(path, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def install_plugin(folder: Path, checkout: Path) -> Path | None:
    """Lay out `folder/plugins/stash2plex` as Stash installs the plugin, from `checkout`;
    None when `checkout` is no Stash2Plex checkout (tasks then need one)."""
    if not all((checkout / name).is_file() for name in PLUGIN_FILES):
        return None
    plugin_dir = folder / "plugins" / "stash2plex"
    plugin_dir.mkdir(parents=True, exist_ok=True)
    for name in PLUGIN_FILES:
        shutil.copy(checkout / name, plugin_dir / name)
    package = plugin_dir / "stash2plex"
    if not package.exists():
        package.symlink_to(Path(__file__).resolve().parents[1], target_is_directory=True)
    return plugin_dir


def keep_sandbox(
    folder: Path,
    checkout: Path,
    *,
    scenes: int,
    seed: int,
    traps: bool,
    say: Callable[[str], None],
    stop: threading.Event | None = None,
) -> None:
    """Serve the emulators until `stop` is set (Ctrl-C or SIGTERM by default), saying first
    how to point the command line and the plugin's tasks at them; then stop the workers
    started for them."""
    folder.mkdir(parents=True, exist_ok=True)
    plugin_dir = install_plugin(folder, checkout)
    data_dir = (plugin_dir or folder) / "data"
    _start_afresh(data_dir, say)
    stop = stop or threading.Event()
    library = generate_library(scenes, seed=seed, traps=traps)
    with running_sandbox(library, plex_token=PLEX_TOKEN) as (plex, stash, _):
        connection = stash.server_connection(plugin_dir=str(plugin_dir or folder))
        if plugin_dir is not None:
            _attach_plugin(stash, plugin_dir, folder / "stash-cwd", connection, say)
        state = {
            "stash": stash.url,
            "plex": plex.url,
            "data_dir": str(data_dir),
            "plugin_dir": str(plugin_dir) if plugin_dir else None,
            "connection": connection,
        }
        _write_private(folder / STATE_FILE, json.dumps(state, indent=2))  # a session cookie
        try:
            say(f"Stash (emulated) at {stash.url}, Plex (emulated) at {plex.url}")
            say(f"  Plex token (the sandbox's, no secret): {PLEX_TOKEN}")
            say(f"{scenes} scenes, nothing synced yet. Point the command line at them:")
            say(f"  export STASH2PLEX_STASH_URL={stash.url}")
            say(f"  export STASH2PLEX_DATA_DIR={data_dir}")
            say("then for example: stash2plex sync --all; stash2plex reconcile")
            if plugin_dir is not None:
                say("Run a plugin task as Stash would (in another shell):")
                say(f"  stash2plex sandbox --dir {folder} task 'Sync All Scenes'")
                say("Saving a scene in the emulated Stash runs the plugin's hook, as Stash does.")
            say(f"Plex down / up again: stash2plex sandbox --dir {folder} plex down|up")
            say("Ctrl-C stops the servers.")
            _wait(stop)
        finally:
            (folder / STATE_FILE).unlink(missing_ok=True)
            # The workers its hooks and tasks started: with the emulated Stash gone they would
            # wait an hour for it (STASH_DOWN_EXIT_SECONDS).
            reap_workers(data_dir)


def _start_afresh(data_dir: Path, say: Callable[[str], None]) -> None:
    """A data folder holding nothing but a settings file: the emulated servers start afresh,
    so a queue, links and fingerprints left by an earlier sandbox in the same folder would
    describe a Plex that is gone (a sync would call every scene unchanged). Only a folder a
    sandbox made (it holds SANDBOX_MARKER) is emptied, and its settings file
    (`stash2plex.toml`, where the README has people change settings) is kept. Raises
    SandboxError for a folder a sandbox did not make, or while a worker still holds it."""
    from stash2plex.engine.worker_lock import worker_running
    from stash2plex.settings.sources import CONFIG_FILENAME

    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / SANDBOX_MARKER
    left = sorted(p for p in data_dir.iterdir() if p.name not in (CONFIG_FILENAME, marker.name))
    if left and not marker.exists():
        names = ", ".join(p.name for p in left[:3]) + (", …" if len(left) > 3 else "")
        raise SandboxError(
            f"{data_dir} holds files a sandbox did not make ({names}): give --dir a new or "
            "empty folder"
        )
    if left and worker_running(data_dir):
        raise SandboxError(
            f"a Stash2Plex worker of an earlier sandbox still runs on {data_dir} (it stops by "
            "itself once idle): end that process, or give another --dir"
        )
    for path in left:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if left:
        say("(the queue an earlier sandbox left in this folder was removed: all starts afresh)")
    marker.touch()


def _attach_plugin(
    stash: Any, plugin_dir: Path, cwd: Path, connection: dict, say: Callable[[str], None]
) -> None:
    """Install the plugin in the emulated Stash: its tasks and operations run through
    `runPluginTask`/`runPluginOperation`, and every hook its manifest declares runs after the
    change commits, before the mutation answers (Stash runs hooks synchronously)."""
    from stash2plex.sandbox.runner import PluginRunner, RunnerError

    cwd.mkdir(parents=True, exist_ok=True)
    runner = PluginRunner(plugin_dir, cwd=cwd)
    stash.attach_plugin(runner)

    def run_hook(hook: dict[str, Any]) -> None:
        if not runner.manifest.hooks_for(hook["type"]):
            return  # Stash runs only the hooks a plugin declares
        try:
            run = runner.run_hook(
                hook["type"],
                hook["id"],
                connection,
                input=hook["input"],
                input_fields=hook.get("inputFields"),
            )
        except RunnerError as exc:  # Stash logs a failed hook; the change stays saved
            say(f"hook {hook['type']} for {hook['id']} failed: {exc}")
            return
        if run.error:
            say(f"hook {hook['type']} for {hook['id']} failed: {run.error}")

    stash.on_hook = run_hook


def plex_availability(folder: Path, up: bool) -> str:
    """Take the sandbox's emulated Plex down (it answers every request 503, as Plex does
    while starting or under maintenance) or bring it up again; returns a sentence.

    Raises SandboxError when no sandbox runs in `folder`."""
    from stash2plex.sandbox.plex_emulator import EmulatorControl

    state = _state(folder)
    control = EmulatorControl(state["plex"])
    if up:
        control.fault("clear")
        return f"Plex (emulated) at {state['plex']} answers again."
    control.fault("maintenance")
    return f"Plex (emulated) at {state['plex']} is down: it answers 503 until `plex up`."


def _state(folder: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SandboxError(
            f"no sandbox runs in {folder}: start one with `stash2plex sandbox --dir {folder}`"
        ) from None
    return state


def _wait(stop: threading.Event) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def run_sandbox_task(folder: Path, task: str, args: dict[str, Any] | None = None) -> Any:
    """Run the plugin task named `task` (as the manifest names it) against the running
    sandbox in `folder`, as Stash runs it; returns the run (`sandbox.runner.PluginRun`).

    Raises SandboxError when no sandbox runs there or it has no plugin folder."""
    from stash2plex.sandbox.runner import PluginRunner

    state = _state(folder)
    if not state.get("plugin_dir"):
        raise SandboxError(
            "this sandbox has no plugin folder (start it from a Stash2Plex checkout)"
        )
    plugin_dir = Path(state["plugin_dir"])
    cwd = folder / "stash-cwd"
    cwd.mkdir(exist_ok=True)
    return PluginRunner(plugin_dir, cwd=cwd).run_task(task, state["connection"], args=args)
