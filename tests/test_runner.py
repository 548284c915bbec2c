"""The plugin runner executes a raw plugin exactly as Stash v0.30 does: argv and environment,
stdin input, stderr log levels and progress, stdout result, and the protocol violations that
would hang or blind a real Stash. Each test writes a throwaway plugin into tmp_path."""

from __future__ import annotations

import os
import signal
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stash2plex.sandbox.runner import (
    STDERR_LINE_LIMIT,
    LogLine,
    PluginRunner,
    PluginTimeout,
    ProtocolViolation,
    RunnerError,
    parse_plugin_output,
)

MANIFEST = """\
name: Probe
# requires: Nothing
exec:
  - {interpreter}
  - "{{pluginDir}}/probe.py"
  - "--plugin-dir={{pluginDir}}"
errLog: {err_log}
hooks:
  - name: On scene
    triggeredBy: [Scene.Update.Post, Scene.Create.Post]
    defaultArgs: {{mode: hook, days: 30}}
  - name: Bare
    triggeredBy: [Tag.Update.Post]
tasks:
  - name: Sync
    execArgs: ["--task", "{{pluginDir}}/data"]
    defaultArgs: {{mode: sync, days: 30, flag: true}}
  - name: Plain
"""

# Echoes everything Stash gave it.
PROBE = """\
import json, os, sys
raw = sys.stdin.read()
try:
    import siblinglib
    sibling = siblinglib.VALUE
except ImportError:
    sibling = None
print(json.dumps({"output": {
    "argv": sys.argv, "executable": sys.executable, "cwd": os.getcwd(),
    "pythonpath": os.environ.get("PYTHONPATH"), "sibling": sibling,
    "raw": raw, "input": json.loads(raw),
}}))
"""


def make_plugin(
    tmp_path: Path, script: str = PROBE, *, interpreter: str = "python", err_log: str = "error"
) -> Path:
    """A plugin folder under a plugins root, as Stash's plugins directory holds it."""
    plugin_dir = tmp_path / "plugins" / "probe"
    plugin_dir.mkdir(parents=True)
    (plugin_dir / "Probe.yml").write_text(MANIFEST.format(interpreter=interpreter, err_log=err_log))
    (plugin_dir / "probe.py").write_text(textwrap.dedent(script))
    return plugin_dir


def connection(tmp_path: Path) -> dict[str, object]:
    return {
        "Scheme": "http",
        "Host": "0.0.0.0",
        "Port": 9999,
        "SessionCookie": {"Name": "session", "Value": "cookie-value"},
        "Dir": str(tmp_path),
        "PluginDir": "wrong, Stash fills this in",
    }


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for a non-reaping init counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- how the process is started ----------------------------------------------------------------


@pytest.mark.parametrize("interpreter", ["python", "python3"])
def test_task_argv_environment_cwd_and_input_match_stash(tmp_path: Path, interpreter: str) -> None:
    plugin_dir = make_plugin(tmp_path, interpreter=interpreter)
    # A sibling plugin folder is importable through the plugins root on PYTHONPATH.
    (tmp_path / "plugins" / "siblinglib").mkdir()
    (tmp_path / "plugins" / "siblinglib" / "__init__.py").write_text("VALUE = 42\n")
    extra = str(tmp_path / "extra")
    runner = PluginRunner(plugin_dir, env={**os.environ, "PYTHONPATH": extra})

    run = runner.run_task(
        "Sync", connection(tmp_path), args={"mode": "override", "count": 3, "ids": [1, 2]}
    )

    assert run.error is None and run.returncode == 0, run.stderr
    seen = run.output
    # argv[0] `python`/`python3` becomes the configured interpreter; {pluginDir} is replaced
    # everywhere else, including inside an argument and in the task's execArgs.
    assert run.argv[0] == sys.executable
    assert seen["argv"] == [
        str(plugin_dir / "probe.py"),
        f"--plugin-dir={plugin_dir}",
        "--task",
        str(plugin_dir / "data"),
    ]
    assert Path(seen["cwd"]).is_dir()
    assert Path(seen["cwd"]) != plugin_dir  # Stash's cwd, never the plugin folder
    assert seen["pythonpath"] == f"{extra}{os.pathsep}{tmp_path / 'plugins'}"
    assert seen["sibling"] == 42
    # Caller args keep their JSON types; defaultArgs fill only missing keys, as strings.
    assert seen["input"]["args"] == {
        "mode": "override",
        "count": 3,
        "ids": [1, 2],
        "days": "30",
        "flag": "true",
    }
    assert seen["input"]["server_connection"] == {
        **connection(tmp_path),
        "PluginDir": str(plugin_dir),
    }


def test_pythonpath_is_the_plugins_root_when_unset_and_cwd_can_be_chosen(tmp_path: Path) -> None:
    plugin_dir = make_plugin(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    workdir = tmp_path / "stash-home"
    workdir.mkdir()
    run = PluginRunner(plugin_dir, env=env, cwd=workdir).run_task("Plain", connection(tmp_path))
    assert run.output["pythonpath"] == str(tmp_path / "plugins")
    assert run.output["cwd"] == str(workdir)
    # A task without defaultArgs or execArgs gets exactly the caller's args.
    assert run.output["input"]["args"] == {}
    assert run.output["argv"][1:] == [f"--plugin-dir={plugin_dir}"]


def test_task_without_a_name_runs_with_the_given_args_only(tmp_path: Path) -> None:
    runner = PluginRunner(make_plugin(tmp_path))
    run = runner.run_task(None, connection(tmp_path), args={"mode": "x"})
    assert run.output["input"]["args"] == {"mode": "x"}
    with pytest.raises(RunnerError, match="no task 'Nope'"):
        runner.start_task("Nope", connection(tmp_path))


def test_hook_args_carry_default_args_and_the_hook_context(tmp_path: Path) -> None:
    runner = PluginRunner(make_plugin(tmp_path))
    scene_input = {"id": "12", "title": "<b>Tom & Jerry</b>", "rating100": None}

    run = runner.run_hook(
        "Scene.Update.Post",
        12,
        connection(tmp_path),
        input=scene_input,
        input_fields=["id", "title"],
    )

    assert run.output["input"]["args"] == {
        "mode": "hook",
        "days": "30",
        "hookContext": {
            "id": 12,
            "type": "Scene.Update.Post",
            "input": scene_input,
            "inputFields": ["id", "title"],
        },
    }
    # Go's json.Marshal escapes <, > and & inside strings.
    assert "\\u003cb\\u003eTom \\u0026 Jerry\\u003c/b\\u003e" in run.output["raw"]


def test_hook_context_omits_a_zero_id_and_empty_input_fields(tmp_path: Path) -> None:
    runner = PluginRunner(make_plugin(tmp_path))
    run = runner.run_hook("Tag.Update.Post", 0, connection(tmp_path), input_fields=[])
    # The "Bare" hook has no defaultArgs, so args hold only hookContext (no `mode`).
    assert run.output["input"]["args"] == {
        "hookContext": {"type": "Tag.Update.Post", "input": None}
    }
    with pytest.raises(RunnerError, match=r"no hook for 'Gallery\.Update\.Post'"):
        runner.start_hook("Gallery.Update.Post", 1, connection(tmp_path))


def test_non_python_exec_is_found_in_the_plugin_folder_without_pythonpath(tmp_path: Path) -> None:
    plugin_dir = make_plugin(tmp_path, interpreter="run.sh")
    script = plugin_dir / "run.sh"
    script.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        'printf \'{"output": {"arg0": "%s", "arg1": "%s", "pp": "%s"}}\' '
        '"$0" "$1" "${PYTHONPATH-unset}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    run = PluginRunner(plugin_dir, env=env).run_task("Plain", connection(tmp_path))

    assert run.argv[0] == str(script)  # not in PATH: relative to the plugin folder
    assert run.output == {"arg0": str(script), "arg1": str(plugin_dir / "probe.py"), "pp": "unset"}


def test_runner_refuses_what_it_cannot_run_like_stash(tmp_path: Path) -> None:
    plugin_dir = make_plugin(tmp_path)
    (plugin_dir / "Other.yml").write_text("name: other\n")
    with pytest.raises(RunnerError, match=r"exactly one \.yml"):
        PluginRunner(plugin_dir)
    (plugin_dir / "Other.yml").unlink()
    (plugin_dir / "Probe.yml").write_text("name: p\ninterface: js\nexec: [p.js]\n")
    with pytest.raises(RunnerError, match="only raw plugins"):
        PluginRunner(plugin_dir)


# -- stderr: log levels and progress -----------------------------------------------------------

LOGGING = r"""
import sys
w = sys.stderr.write
w("\x01t\x02trace me\n")
w("\x01d\x02   padded debug \t\n")
w("\x01i\x02first line\n\x01i\x02second line\n")
w("\x01w\x02careful\r\n")
w("\n")
w("\x01e\x02failed\n")
w("\x01x\x02unknown level char\n")
w("\x01i\x02\n")
w("\x01\x00\x02dropped: the none level\n")
w("plain line  \n")
w("\x01i\x02no newline at the end")
"""


def test_stderr_lines_become_log_levels_like_stash(tmp_path: Path) -> None:
    run = PluginRunner(make_plugin(tmp_path, LOGGING)).run_task("Plain", connection(tmp_path))
    assert run.logs == [
        LogLine("trace", "trace me"),
        LogLine("debug", "padded debug"),  # TrimSpace after the prefix
        LogLine("info", "first line"),  # a multi-line message needs a prefix per line
        LogLine("info", "second line"),
        LogLine("warning", "careful"),
        LogLine("error", "failed"),
        # No valid prefix: the errLog level (default error), text kept whole and untrimmed.
        LogLine("error", "\x01x\x02unknown level char"),
        LogLine("error", "\x01i\x02"),  # 3 bytes are too short to carry a level
        LogLine("error", "plain line  "),
        LogLine("info", "no newline at the end"),
    ]
    assert run.messages("info") == ["first line", "second line", "no newline at the end"]
    assert run.output == ""  # nothing on stdout: Stash's output is the empty text


def test_a_traceback_shows_as_error_lines_and_exit_status(tmp_path: Path) -> None:
    script = "import sys\nsys.stderr.write('\\x01i\\x02starting\\n')\nraise RuntimeError('boom')\n"
    run = PluginRunner(make_plugin(tmp_path, script)).run_task("Plain", connection(tmp_path))
    assert run.messages("info") == ["starting"]
    errors = run.messages("error")
    assert errors[0] == "Traceback (most recent call last):"
    assert errors[-1] == "RuntimeError: boom"
    assert len(errors) >= 3  # one log entry per traceback line
    assert (run.returncode, run.error) == (1, "exit status 1")


@pytest.mark.parametrize(
    ("err_log", "expected"),
    [
        ("info", [LogLine("info", "plain")]),
        ("warning", [LogLine("warning", "plain")]),
        ("none", []),
        ("nonsense", [LogLine("error", "plain")]),  # Stash falls back to error
    ],
)
def test_err_log_sets_the_level_of_unprefixed_lines(
    tmp_path: Path, err_log: str, expected: list[LogLine]
) -> None:
    plugin_dir = make_plugin(
        tmp_path, "import sys\nsys.stderr.write('plain\\n')\n", err_log=err_log
    )
    run = PluginRunner(plugin_dir).run_task("Plain", connection(tmp_path))
    assert run.logs == expected


def test_progress_must_be_a_float_between_0_and_1(tmp_path: Path) -> None:
    script = r"""
    import sys
    for value in ["0", "0.25", " 1 ", "abc", "1.5", "-0.1", "nan", "1_0", " "]:
        sys.stderr.write("\x01p\x02" + value + "\n")
    """
    run = PluginRunner(make_plugin(tmp_path, script)).run_task("Sync", connection(tmp_path))
    assert run.progress == [0.0, 0.25, 1.0]
    assert run.messages("progress") == ["0", "0.25", "1"]
    invalid = run.messages("error")
    assert len(invalid) == 6
    assert all(message.startswith("invalid progress") for message in invalid)


# -- stdout and the exit code ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "output", "error"),
    [
        ('{"output": {"queued": 3}, "error": null}', {"queued": 3}, None),
        ('{"output": "ok", "error": "went wrong"}', "ok", "went wrong"),
        ("hello\nworld\n", "hello\nworld\n", None),
        ('{"output": 1}\n{"output": 2}\n', '{"output": 1}\n{"output": 2}\n', None),
    ],
)
def test_stdout_is_parsed_like_stash(
    tmp_path: Path, stdout: str, output: object, error: str | None
) -> None:
    script = f"import sys\nsys.stdout.write({stdout!r})\n"
    run = PluginRunner(make_plugin(tmp_path, script)).run_task("Plain", connection(tmp_path))
    assert (run.output, run.error, run.stdout) == (output, error, stdout)


def test_plugin_output_parsing_follows_go_json() -> None:
    assert parse_plugin_output("") == ("", None)
    assert parse_plugin_output("null") == (None, None)
    assert parse_plugin_output("[1, 2]") == ("[1, 2]", None)
    # Keys match case-insensitively; the last one wins.
    assert parse_plugin_output('{"Output": 1, "OUTPUT": 2, "Error": "e"}') == (2, "e")
    # An error that is not a string is a type error: the whole text becomes the output.
    assert parse_plugin_output('{"output": "x", "error": 5}') == (
        '{"output": "x", "error": 5}',
        None,
    )
    assert parse_plugin_output('{"output": NaN}') == ('{"output": NaN}', None)
    assert parse_plugin_output('  {"output": [1]}  ') == ([1], None)


def test_a_failed_exit_without_an_error_reports_the_exit_status(tmp_path: Path) -> None:
    run = PluginRunner(make_plugin(tmp_path, "import sys\nsys.exit(3)\n")).run_task(
        "Plain", connection(tmp_path)
    )
    assert (run.returncode, run.error, run.output) == (3, "exit status 3", "")

    script = 'import sys\nprint(\'{"output": null, "error": "no token"}\')\nsys.exit(1)\n'
    run = PluginRunner(make_plugin(tmp_path / "b", script)).run_task("Plain", connection(tmp_path))
    assert (run.returncode, run.error) == (1, "no token")


def test_a_plugin_that_ignores_a_large_stdin_still_finishes(tmp_path: Path) -> None:
    runner = PluginRunner(make_plugin(tmp_path, 'print(\'{"output": "ignored"}\')\n'))
    cover = "data:image/jpeg;base64," + "A" * 2_000_000
    run = runner.run_hook(
        "Scene.Update.Post", 5, connection(tmp_path), input={"cover_image": cover}
    )
    assert run.output == "ignored"


# -- protocol violations -----------------------------------------------------------------------


def long_line_script(length: int) -> str:
    return f"""
    import sys
    sys.stderr.write("\\x01i\\x02" + "x" * {length - 3} + "\\n")
    sys.stderr.flush()
    try:
        sys.stderr.write("\\x01i\\x02after\\n")
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    print('{{"output": "done"}}')
    """


def test_a_stderr_line_just_under_64_kib_is_fine(tmp_path: Path) -> None:
    script = long_line_script(STDERR_LINE_LIMIT - 1)
    run = PluginRunner(make_plugin(tmp_path, script)).run_task("Plain", connection(tmp_path))
    assert run.messages("info")[-1] == "after"
    assert len(run.messages("info")[0]) == STDERR_LINE_LIMIT - 4


def test_a_stderr_line_of_64_kib_stops_stash_reading_the_log(tmp_path: Path) -> None:
    script = long_line_script(STDERR_LINE_LIMIT)
    runner = PluginRunner(make_plugin(tmp_path, script))
    with pytest.raises(ProtocolViolation, match=r"bufio\.Scanner") as caught:
        runner.run_task("Plain", connection(tmp_path))
    run = caught.value.run
    assert run is not None
    assert run.messages("info") == []  # nothing after the long line reaches Stash's log
    assert "bufio.Scanner" in run.messages("error")[0]


def test_a_grandchild_holding_stdout_is_a_violation_and_is_killed(tmp_path: Path) -> None:
    script = """
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    sys.stderr.write(f"\\x01i\\x02{child.pid}\\n")
    print('{"output": "queued"}')
    """
    runner = PluginRunner(make_plugin(tmp_path, script), stdout_eof_timeout=0.5)
    with pytest.raises(ProtocolViolation, match="kept the plugin's stdout open") as caught:
        runner.run_hook("Scene.Update.Post", 1, connection(tmp_path))
    run = caught.value.run
    assert run is not None and run.returncode == 0
    grandchild = int(run.messages("info")[0])
    assert wait_dead(grandchild), "the runner must kill the process that held stdout"


def test_a_properly_detached_grandchild_is_fine(tmp_path: Path) -> None:
    script = """
    import json, subprocess, sys
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    print(json.dumps({"output": child.pid}))
    """
    runner = PluginRunner(make_plugin(tmp_path, script), stdout_eof_timeout=0.5)
    run = runner.run_hook("Scene.Update.Post", 1, connection(tmp_path))
    try:
        assert run.error is None
        assert run.wall_seconds < 5
        assert alive(run.output)  # a detached worker survives the hook, as it should
    finally:
        os.kill(run.output, signal.SIGKILL)


# -- cancelling, timeouts and concurrency ------------------------------------------------------

SLEEPER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
sys.stderr.write(f"\\x01i\\x02{child.pid}\\n")
sys.stderr.flush()
time.sleep(60)
"""


def test_kill_sends_sigkill_like_a_cancelled_stash_job(tmp_path: Path) -> None:
    runner = PluginRunner(make_plugin(tmp_path, "import time\ntime.sleep(60)\n"))
    handle = runner.start_task("Sync", connection(tmp_path))
    assert handle.running()
    handle.kill()
    run = handle.wait(timeout=5)
    assert (run.returncode, run.error) == (-signal.SIGKILL, "signal: killed")
    assert handle.wait() is run  # waiting again gives the same result


def test_a_timeout_kills_the_plugin_and_its_children(tmp_path: Path) -> None:
    runner = PluginRunner(make_plugin(tmp_path, SLEEPER))
    handle = runner.start_task("Sync", connection(tmp_path), timeout=30)
    deadline = time.monotonic() + 10
    while not handle.logs() and time.monotonic() < deadline:  # the grandchild is started
        time.sleep(0.02)
    with pytest.raises(PluginTimeout) as caught:
        handle.wait(timeout=0.2)
    run = caught.value.run
    assert run.returncode == -signal.SIGKILL
    assert not alive(handle.pid)
    assert wait_dead(int(run.messages("info")[0])), "the grandchild must be killed too"


def test_fifty_hooks_can_run_at_once(tmp_path: Path) -> None:
    runner = PluginRunner(make_plugin(tmp_path))
    handles = [
        runner.start_hook("Scene.Create.Post", scene_id, connection(tmp_path))
        for scene_id in range(1, 51)
    ]
    runs = [handle.wait(timeout=30) for handle in handles]
    assert [r.output["input"]["args"]["hookContext"]["id"] for r in runs] == list(range(1, 51))
    assert all(r.error is None for r in runs)
