"""`stash2plex sandbox`: the emulators kept running for trying things by hand, as a person
starts it (a subprocess), with the command line and a plugin task pointed at them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from stash2plex.sandbox.processes import reap_workers, worker_pids

COMMAND = [sys.executable, "-m", "stash2plex"]


@contextlib.contextmanager
def sandbox_command(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, Path, list[str]]]:
    """`stash2plex sandbox` running in `tmp_path/try` until the block ends (then Ctrl-C, and
    the workers it started are reaped). Yields (its environment, the folder, the plugin's data
    directory, what it printed up to "Ctrl-C")."""
    folder = tmp_path / "try"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    server = subprocess.Popen(
        [*COMMAND, "sandbox", "--dir", str(folder), "--scenes", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    data_dir = folder / "plugins" / "stash2plex" / "data"
    try:
        lines = []
        for line in server.stdout:  # type: ignore[union-attr]
            lines.append(line.strip())
            if line.startswith("Ctrl-C"):
                break
        yield env, folder, data_dir, lines
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0, server.stderr.read()  # type: ignore[union-attr]
        left = worker_pids(data_dir)  # the sandbox stops the workers its hooks started
        reap_workers(data_dir)
        assert left == []


def test_the_sandbox_serves_until_ctrl_c_for_the_cli_and_plugin_tasks(tmp_path: Path):
    with sandbox_command(tmp_path) as (env, folder, data_dir, lines):
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        assert set(exports) == {"STASH2PLEX_STASH_URL", "STASH2PLEX_DATA_DIR"}, lines
        assert Path(exports["STASH2PLEX_DATA_DIR"]) == data_dir
        assert any("task 'Sync All Scenes'" in line for line in lines)
        cli_env = {**env, **exports}
        before = subprocess.run(
            [*COMMAND, "--json", "reconcile"], env=cli_env, capture_output=True, text=True
        )
        assert before.returncode == 1, before.stderr  # nothing synced yet
        assert json.loads(before.stdout)["results"]["never_synced"] > 0

        task = subprocess.run(
            [*COMMAND, "sandbox", "--dir", str(folder), "task", "Sync All Scenes"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert task.returncode == 0, task.stdout + task.stderr
        assert "[info] Stash2Plex: queued 20 scenes" in task.stdout
        assert '"synced": ' in task.stdout

        after = subprocess.run(
            [*COMMAND, "--json", "reconcile"], env=cli_env, capture_output=True, text=True
        )
        assert json.loads(after.stdout)["results"]["never_synced"] == 0, after.stdout
        assert "Traceback" not in before.stderr + task.stderr + after.stderr
    assert not (folder / "sandbox.json").exists()
    gone = subprocess.run(
        [*COMMAND, "sandbox", "--dir", str(folder), "task", "Sync All Scenes"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 2 and "no sandbox runs in" in gone.stderr

    # The same folder again: fresh emulators, so the queue left there is removed (it called
    # every scene unchanged against a Plex that had none of them); the settings file stays.
    (data_dir / "stash2plex.toml").write_text("max_retries = 3\n", encoding="utf-8")
    with sandbox_command(tmp_path) as (env, folder, data_dir, lines):
        assert any("all starts afresh" in line for line in lines), lines
        assert (data_dir / "stash2plex.toml").read_text(encoding="utf-8") == "max_retries = 3\n"
        cli_env = {**env, "STASH2PLEX_DATA_DIR": str(data_dir)}
        cli_env.update(
            line.removeprefix("export ").split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        again = subprocess.run(
            [*COMMAND, "--json", "reconcile"], env=cli_env, capture_output=True, text=True
        )
        assert json.loads(again.stdout)["results"]["never_synced"] > 0, again.stdout


def _graphql(url: str, query: str, variables: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read())


def _plex_status(url: str) -> int:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/identity", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_scene_saved_in_the_sandbox_reaches_plex_and_plex_goes_down_and_up(tmp_path: Path):
    from stash2plex.sandbox.plex_emulator import EmulatorControl

    from .conftest import wait_until

    with sandbox_command(tmp_path) as (env, folder, _data_dir, lines):
        assert any("runs the plugin's hook" in line for line in lines), lines
        assert any("plex down|up" in line for line in lines), lines
        state = json.loads((folder / "sandbox.json").read_text(encoding="utf-8"))
        assert (folder / "sandbox.json").stat().st_mode & 0o077 == 0  # it holds a cookie
        # Saved by hand, as a person would in Stash's UI: no task, only the hook.
        for scene_id in range(1, 21):
            reply = _graphql(
                state["stash"],
                "mutation($i: SceneUpdateInput!) { sceneUpdate(input: $i) { id } }",
                {"i": {"id": str(scene_id), "title": f"Saved by hand {scene_id}"}},
            )
            assert "errors" not in reply, reply
        plex = EmulatorControl(state["plex"])

        def saved_titles() -> list[str]:
            titles = [plex.item(key)["title"] for key in plex.items()]
            return [t for t in titles if t.startswith("Saved by hand")]

        wait_until(saved_titles, timeout=60, message="a scene saved by hand to reach Plex")

        assert _plex_status(state["plex"]) == 200
        down = subprocess.run(
            [*COMMAND, "sandbox", "--dir", str(folder), "plex", "down"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert down.returncode == 0 and "is down" in down.stdout, down.stdout + down.stderr
        assert _plex_status(state["plex"]) == 503
        up = subprocess.run(
            [*COMMAND, "sandbox", "--dir", str(folder), "plex", "up"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert up.returncode == 0 and "answers again" in up.stdout, up.stdout + up.stderr
        assert _plex_status(state["plex"]) == 200
    gone = subprocess.run(
        [*COMMAND, "sandbox", "--dir", str(folder), "plex", "down"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 2 and "no sandbox runs in" in gone.stderr


def test_a_sandbox_empties_only_a_data_folder_a_sandbox_made(tmp_path: Path):
    """Outside a checkout the data folder is DIR/data, which may be the person's own: it is
    never emptied unless a sandbox made it, and a sandbox's settings file always stays."""
    import pytest

    from stash2plex.sandbox.keep import SandboxError, _start_afresh

    said: list[str] = []
    own = tmp_path / "project" / "data"
    own.mkdir(parents=True)
    (own / "thesis.txt").write_text("years of work", encoding="utf-8")
    with pytest.raises(SandboxError, match=r"holds files a sandbox did not make \(thesis.txt\)"):
        _start_afresh(own, said.append)
    assert (own / "thesis.txt").exists()

    made = tmp_path / "sandbox" / "data"
    _start_afresh(made, said.append)  # new: nothing to remove, marked as the sandbox's
    (made / "stash2plex.db").write_bytes(b"a queue")
    (made / "stash2plex.toml").write_text("max_retries = 3\n", encoding="utf-8")
    _start_afresh(made, said.append)
    assert sorted(p.name for p in made.iterdir()) == [".stash2plex-sandbox", "stash2plex.toml"]
    assert said == [
        "(the queue an earlier sandbox left in this folder was removed: all starts afresh)"
    ]
