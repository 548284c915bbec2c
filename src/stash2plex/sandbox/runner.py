"""Run a raw Stash plugin exactly the way Stash v0.30 runs it, for tests, benchmarks and the demo.

What Stash does (`pkg/plugin/raw.go`, `config.go`, `pkg/python`, `pkg/logger/plugin.go`), and so
what this runner does:

* argv = manifest `exec` + the task's or hook's `execArgs`; `{pluginDir}` is replaced in every
  argument but argv[0]. An argv[0] of exactly `python` or `python3` becomes the configured Python
  path (here: the runner's `python`), and only then `PYTHONPATH` gets the plugins root (the
  plugin folder's parent) appended. Any other argv[0] is looked up in PATH, else taken relative
  to the plugin folder.
* The working directory is Stash's, never the plugin folder (here: a fresh temp directory).
* The PluginInput JSON `{"server_connection": ..., "args": ...}` is written to stdin from a
  separate writer, then stdin is closed.
* stderr is the log channel, read line by line as Go's `bufio.Scanner` does: `\\x01<c>\\x02`
  prefixes pick the level, other lines get the manifest's `errLog` level, a line of 64 KiB or
  more stops the reader for good (the plugin's later stderr writes fail).
* stdout is read to EOF *before* Stash waits for the process, then parsed as
  `{"output", "error"}`; anything else becomes the output text.

Where the runner is stricter than Stash, it fails loudly instead of hanging or losing logs:
`ProtocolViolation` for an over-long log line and for a child process that keeps stdout open
after the plugin exited (in Stash that blocks the task, or the user's save for a hook, until the
child exits). Progress values must lie in 0..1. Timeouts (Stash has none) kill and raise.

Deviation kept on purpose: the plugin starts in a new session, so that a timeout or a protocol
violation can kill every process the run left behind. Stash starts it in its own session; the
only visible difference is that the plugin process itself cannot call `os.setsid()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash2plex.sandbox.manifest import PluginManifest, load_manifest

__all__ = [
    "STDERR_LINE_LIMIT",
    "LogLine",
    "PluginRun",
    "PluginRunner",
    "PluginTimeout",
    "ProtocolViolation",
    "RunnerError",
    "RunningPlugin",
    "parse_plugin_output",
]

#: Go's bufio.MaxScanTokenSize: Stash's stderr reader gives up on a line this long or longer.
STDERR_LINE_LIMIT = 64 * 1024

_LEVEL_BY_CHAR = {
    ord("t"): "trace",
    ord("d"): "debug",
    ord("i"): "info",
    ord("w"): "warning",
    ord("e"): "error",
    ord("p"): "progress",
    # Stash's "none" level has the character 0, so `\x01\x00\x02...` is a valid, dropped line.
    0: "none",
}

# Go's strings.TrimSpace (unicode.IsSpace), used on the text after a level prefix. Python's
# str.strip() would also eat \x1c-\x1f, which Go keeps.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

# What Go's os.ProcessState.String() says for a process killed by a signal (Linux names).
_GO_SIGNAL_NAMES = {
    1: "hangup",
    2: "interrupt",
    3: "quit",
    4: "illegal instruction",
    5: "trace/breakpoint trap",
    6: "aborted",
    7: "bus error",
    8: "floating point exception",
    9: "killed",
    10: "user defined signal 1",
    11: "segmentation fault",
    12: "user defined signal 2",
    13: "broken pipe",
    14: "alarm clock",
    15: "terminated",
}


class RunnerError(RuntimeError):
    """The plugin could not be run the way Stash would run it."""


class ProtocolViolation(RunnerError):
    """The plugin broke the raw-plugin protocol in a way that would hurt a real Stash.

    `run` holds what was observed up to the violation (None if nothing useful was captured).
    """

    def __init__(self, message: str, run: PluginRun | None = None) -> None:
        super().__init__(message)
        self.run = run


class PluginTimeout(RunnerError, TimeoutError):
    """The plugin did not finish in time; it (and its session) has been killed.

    `run` holds the logs and output captured before the kill.
    """

    def __init__(self, message: str, run: PluginRun) -> None:
        super().__init__(message)
        self.run = run


@dataclass(frozen=True)
class LogLine:
    """One stderr line as Stash logs it (without Stash's `[Plugin / name]` prefix)."""

    #: trace | debug | info | warning | error | progress
    level: str
    message: str


@dataclass(frozen=True)
class PluginRun:
    """Everything Stash would see from one plugin run."""

    argv: list[str]
    #: The exit code; negative for a signal (-9 after a kill), as in subprocess.
    returncode: int
    #: The JSON `output`, or the whole stdout text when stdout is not a PluginOutput object.
    output: Any
    #: The JSON `error`, else Go's error for a failed exit ("exit status 1", "signal: killed").
    error: str | None
    #: Every stderr line Stash would log, in order; progress lines appear with level "progress".
    logs: list[LogLine]
    #: Valid progress values (0..1) in order. Stash only shows them for tasks.
    progress: list[float]
    stdout: str
    stderr: str
    #: From the start of the process until it had exited and closed stdout: what Stash waits.
    wall_seconds: float

    def messages(self, level: str | None = None) -> list[str]:
        """The logged messages, all of them or only those at `level`."""
        return [line.message for line in self.logs if level is None or line.level == level]


def parse_plugin_output(stdout: str) -> tuple[Any, str | None]:
    """Parse stdout as Stash does: `json.Unmarshal` into `{Error *string; Output any}`.

    Like Go's decoder, keys match case-insensitively and the last one wins; a non-object, an
    invalid document or an `error` that is not a string makes the whole text the output
    (empty stdout gives ""); JSON `null` gives no output and no error.
    """

    def reject_constant(name: str) -> Any:
        # Python accepts NaN/Infinity; Go's decoder does not.
        raise ValueError(name)

    try:
        value = json.loads(stdout, parse_constant=reject_constant)
    except ValueError:
        return stdout, None
    if value is None:
        return None, None
    if not isinstance(value, dict):
        return stdout, None
    pairs: list[tuple[str, Any]] = json.loads(stdout, object_pairs_hook=list)
    output_key: str | None = None
    error: str | None = None
    type_error = False
    for key, item in pairs:
        folded = key.lower()
        if folded == "output":
            output_key = key
        elif folded == "error":
            if item is None or isinstance(item, str):
                error = item
            else:
                type_error = True
    if type_error:
        # Go returns an UnmarshalTypeError, so Stash falls back to the raw text for output.
        return stdout, error
    return (value[output_key] if output_key is not None else None), error


def _go_error_for_exit(returncode: int) -> str | None:
    """Go's exec.ExitError text for a finished process, or None for success."""
    if returncode == 0:
        return None
    if returncode > 0:
        return f"exit status {returncode}"
    signum = -returncode
    return f"signal: {_GO_SIGNAL_NAMES.get(signum, f'signal {signum}')}"


def _go_parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64) for the decimal forms; None where Go would fail."""
    # Python's float() also takes digit separators and non-ASCII digits; Go does not.
    if not text.isascii() or "_" in text or text.strip() != text or not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _go_json(value: Any, *, sort_keys: bool) -> str:
    """json.Marshal output: compact, UTF-8, with Go's HTML-safe escapes."""
    text = json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, allow_nan=False
    )
    # These characters can only occur inside JSON strings, so a plain replace is exact.
    for char, escape in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


# --------------------------------------------------------------------------------------------
# Finding the processes a run left behind (Linux: /proc; elsewhere the process group only).


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _pipe_holders(inodes: set[int]) -> list[int]:
    """Processes (other than this one) holding an end of one of the pipes `inodes`."""
    wanted = {f"pipe:[{inode}]" for inode in inodes}
    holders = []
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    holders.append(pid)
                    break
            except OSError:
                continue
    return holders


def _session_members(sid: int) -> list[int]:
    members = []
    for pid in _all_pids():
        try:
            if os.getsid(pid) == sid:
                members.append(pid)
        except OSError:
            continue
    return members


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = "?"
    return f"{pid} ({cmdline})"


def _sigkill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------


class _Pump(threading.Thread):
    """Does Stash's three pipe jobs for one process: feed stdin, read stdout, scan stderr.

    One selector loop instead of three blocking threads, so the runner can stop reading at any
    moment (a child still holding a pipe must not leave a thread stuck forever).
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], payload: bytes, err_log: str, wake_fd: int
    ) -> None:
        super().__init__(name=f"stash-plugin-io-{proc.pid}", daemon=True)
        self._proc = proc
        self._payload = memoryview(payload)
        self._written = 0
        self._err_log = err_log
        self._wake_fd = wake_fd
        self._line = bytearray()
        self.stopping = False
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.logs: list[LogLine] = []
        self.progress: list[float] = []
        self.violation: str | None = None
        self.stdout_eof = threading.Event()
        self.stdout_eof_at: float | None = None
        self.stderr_done = threading.Event()

    def run(self) -> None:
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        selector = selectors.DefaultSelector()
        try:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "stdin")
            selector.register(proc.stdout.fileno(), selectors.EVENT_READ, "stdout")
            selector.register(proc.stderr.fileno(), selectors.EVENT_READ, "stderr")
            selector.register(self._wake_fd, selectors.EVENT_READ, "wake")
            # Runs while any stream is open (the wake pipe is always registered).
            while len(selector.get_map()) > 1 and not self.stopping:
                for key, _ in selector.select():
                    if key.data == "stdin":
                        self._feed_stdin(selector)
                    elif key.data == "stdout":
                        self._read_stdout(selector)
                    elif key.data == "stderr":
                        self._read_stderr(selector)
        finally:
            selector.close()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    stream.close()
            self.stderr_done.set()

    def _feed_stdin(self, selector: selectors.BaseSelector) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            self._written += os.write(stdin.fileno(), self._payload[self._written :])
        except BlockingIOError:
            return
        except OSError:
            # The plugin exited or closed stdin without reading it all; Stash only logs this.
            self._written = len(self._payload)
        if self._written >= len(self._payload):
            selector.unregister(stdin.fileno())
            stdin.close()  # Stash closes stdin once the input is written

    def _read_stdout(self, selector: selectors.BaseSelector) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        data = os.read(stdout.fileno(), 65536)
        if data:
            self.stdout += data
            return
        selector.unregister(stdout.fileno())
        self.stdout_eof_at = time.monotonic()
        self.stdout_eof.set()

    def _read_stderr(self, selector: selectors.BaseSelector) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        data = os.read(stderr.fileno(), 65536)
        self.stderr += data
        self._scan(data, eof=not data)
        if not data or self.violation is not None:
            # At EOF, or after a too-long line: Stash's scanner stops and closes its end, so
            # the plugin's further writes to stderr fail.
            selector.unregister(stderr.fileno())
            stderr.close()
            self.stderr_done.set()

    def _scan(self, data: bytes, *, eof: bool) -> None:
        """bufio.Scanner with ScanLines and the default 64 KiB token limit."""
        self._line += data
        start = 0
        while True:
            end = self._line.find(b"\n", start)
            if end < 0:
                break
            if end - start >= STDERR_LINE_LIMIT:
                self._too_long(end - start)
                return
            self._handle_line(bytes(self._line[start:end]))
            start = end + 1
        del self._line[:start]
        if len(self._line) >= STDERR_LINE_LIMIT:
            self._too_long(len(self._line))
            return
        if eof and self._line:
            self._handle_line(bytes(self._line))
            self._line.clear()

    def _too_long(self, length: int) -> None:
        self.violation = (
            f"the plugin wrote a stderr line of {length}+ bytes; Stash's log reader "
            f"(bufio.Scanner, limit {STDERR_LINE_LIMIT} bytes) stops at such a line, so every "
            "later log line is lost and the plugin's writes to stderr fail"
        )
        self.logs.append(LogLine("error", self.violation))

    def _handle_line(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # ScanLines drops a trailing CR
        if not raw:
            return  # Stash skips empty lines
        level: str | None = None
        if len(raw) >= 4 and raw[0] == 1 and raw[2] == 2:
            level = _LEVEL_BY_CHAR.get(raw[1])
        if level is not None:
            message = raw[3:].decode("utf-8", errors="replace").strip(_GO_SPACE)
        else:
            level = self._err_log
            message = raw.decode("utf-8", errors="replace")
        if level == "none":
            return
        if level == "progress":
            value = _go_parse_float(message)
            if value is None or not 0.0 <= value <= 1.0:
                # Stash logs an error for a non-float; an out-of-range value is a bug too.
                self.logs.append(LogLine("error", f"invalid progress value {message!r}"))
                return
            self.progress.append(value)
        self.logs.append(LogLine(level, message))


class RunningPlugin:
    """A started plugin process. `wait()` for its PluginRun, or `kill()` it as Stash cancels."""

    def __init__(
        self,
        *,
        argv: list[str],
        executable: str,
        env: dict[str, str],
        cwd: Path,
        payload: bytes,
        err_log: str,
        timeout: float | None,
        stdout_eof_timeout: float,
    ) -> None:
        self.argv = argv
        self._timeout = timeout
        self._stdout_eof_timeout = stdout_eof_timeout
        self._started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                argv,
                executable=executable,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                bufsize=0,
                # See the module docstring: lets a timeout or a violation reap the whole run.
                start_new_session=True,
            )
        except OSError as exc:
            raise RunnerError(f"error running plugin: {exc}") from exc
        assert self._proc.stdout is not None and self._proc.stderr is not None
        # Remembered now: the pipes' inodes identify leftover children after the pump closed them.
        self._pipe_inodes = {
            os.fstat(self._proc.stdout.fileno()).st_ino,
            os.fstat(self._proc.stderr.fileno()).st_ino,
        }
        self._wake_r, self._wake_w = os.pipe()
        self._pump = _Pump(self._proc, payload, err_log, self._wake_r)
        self._pump.start()
        self._lock = threading.Lock()
        self._outcome: PluginRun | RunnerError | None = None

    @property
    def pid(self) -> int:
        """The plugin process id (also its session and process group id)."""
        return self._proc.pid

    def running(self) -> bool:
        """Whether the plugin process has not exited yet."""
        return self._proc.poll() is None

    def logs(self) -> list[LogLine]:
        """The log lines read so far, while the run goes on (e.g. to wait for "started")."""
        return list(self._pump.logs)

    def kill(self) -> None:
        """SIGKILL the plugin process only, as Stash does when a job is cancelled.

        Its children are left alone (so is Stash); `wait()` then reports a child that kept stdout
        open as a ProtocolViolation.
        """
        self._proc.kill()

    def wait(self, timeout: float | None = None) -> PluginRun:
        """Wait for the run to finish as Stash sees it: exit *and* EOF on stdout.

        `timeout` counts from now; None uses the timeout given when the run started (counted
        from the start). On timeout the run's processes are killed and PluginTimeout is
        raised. Raises ProtocolViolation for an over-long stderr line, or when stdout stays
        open for `stdout_eof_timeout` seconds after the plugin exited.
        """
        with self._lock:
            if self._outcome is None:
                try:
                    self._outcome = self._wait(timeout)
                except RunnerError as exc:
                    self._outcome = exc
            if isinstance(self._outcome, RunnerError):
                raise self._outcome
            return self._outcome

    def _wait(self, timeout: float | None) -> PluginRun:
        if timeout is not None:
            remaining: float | None = timeout
        elif self._timeout is not None:
            remaining = self._timeout - (time.monotonic() - self._started)
        else:
            remaining = None
        try:
            self._proc.wait(timeout=None if remaining is None else max(remaining, 0.0))
        except subprocess.TimeoutExpired:
            self._reap_leftovers()
            self._proc.wait()
            self._pump.stdout_eof.wait(2.0)
            run = self._finish()
            raise PluginTimeout(
                f"plugin {self.argv} still running after {run.wall_seconds:.1f} s; killed it and "
                "its session (Stash has no time limit; a hook this slow blocks the user's save)",
                run,
            ) from None
        exited_at = time.monotonic()
        if not self._pump.stdout_eof.wait(self._stdout_eof_timeout):
            holders = _pipe_holders(self._pipe_inodes)
            self._reap_leftovers(holders)
            run = self._finish(exited_at)
            who = ", ".join(_describe(pid) for pid in holders) or "unknown (no /proc)"
            raise ProtocolViolation(
                "a child process kept the plugin's stdout open after the plugin exited "
                f"(exit code {run.returncode}); Stash reads stdout to EOF before it waits for "
                "the process, so it would hang (for a hook: the user's save) until that child "
                "exits. Start background processes with stdin/stdout/stderr redirected "
                f"(DEVNULL or a file) and start_new_session=True. Holders, now killed: {who}",
                run,
            )
        # Stash does not wait for stderr; a detached child may still hold it, so only a short
        # grace to collect the plugin's last lines.
        self._pump.stderr_done.wait(min(1.0, self._stdout_eof_timeout))
        run = self._finish(exited_at)
        if self._pump.violation is not None:
            raise ProtocolViolation(self._pump.violation, run)
        return run

    def _reap_leftovers(self, extra: list[int] | None = None) -> None:
        """SIGKILL the plugin, everything in its session and every holder of its pipes."""
        pids = set(extra or [])
        pids.update(_session_members(self._proc.pid))
        pids.update(_pipe_holders(self._pipe_inodes))
        if hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        _sigkill(sorted(pids))
        with contextlib.suppress(OSError):
            self._proc.kill()

    def _finish(self, exited_at: float | None = None) -> PluginRun:
        """Stop the pump and build the PluginRun from what it collected."""
        pump = self._pump
        pump.stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        pump.join()
        os.close(self._wake_r)
        os.close(self._wake_w)
        ended = max(exited_at or time.monotonic(), pump.stdout_eof_at or 0.0)
        returncode = self._proc.wait()
        stdout = pump.stdout.decode("utf-8", errors="replace")
        output, error = parse_plugin_output(stdout)
        if error is None:
            error = _go_error_for_exit(returncode)
        return PluginRun(
            argv=list(self.argv),
            returncode=returncode,
            output=output,
            error=error,
            logs=list(pump.logs),
            progress=list(pump.progress),
            stdout=stdout,
            stderr=pump.stderr.decode("utf-8", errors="replace"),
            wall_seconds=ended - self._started,
        )


class PluginRunner:
    """Runs the raw plugin in `plugin_dir` the way Stash v0.30 runs it.

    `python` plays Stash's "Python path" setting, `cwd` Stash's working directory (default: a
    fresh temp directory, removed with the runner), `env` Stash's environment (default: a copy
    of os.environ at each run). The manifest is the only `.yml` in `plugin_dir`, loaded with
    Stash's strictness.
    """

    def __init__(
        self,
        plugin_dir: Path,
        *,
        python: str = sys.executable,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stdout_eof_timeout: float = 5.0,
    ) -> None:
        # Absolute but not resolved: Stash keeps the path it walked, symlinks included.
        self.plugin_dir = Path(os.path.abspath(plugin_dir))
        manifests = sorted(p for p in self.plugin_dir.iterdir() if p.suffix == ".yml")
        if len(manifests) != 1:
            names = [p.name for p in manifests]
            raise RunnerError(f"expected exactly one .yml in {self.plugin_dir}, found {names}")
        self.manifest: PluginManifest = load_manifest(manifests[0])
        if self.manifest.interface != "raw":
            raise RunnerError(f"only raw plugins can be run, not {self.manifest.interface!r}")
        self.python = python
        if cwd is None:
            cwd = Path(tempfile.mkdtemp(prefix="stash-cwd-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, cwd, ignore_errors=True)
        self.cwd = Path(cwd)
        self.env = env
        self.stdout_eof_timeout = stdout_eof_timeout

    # -- Stash's command line -----------------------------------------------------------------

    def command(self, exec_args: list[str]) -> tuple[list[str], str, bool]:
        """(argv, executable, is_python) for an operation with `exec_args`, as Stash builds it."""
        argv = [*self.manifest.exec, *exec_args]
        if not argv:
            raise RunnerError("empty exec value")
        plugin_dir = str(self.plugin_dir)
        argv[1:] = [arg.replace("{pluginDir}", plugin_dir) for arg in argv[1:]]
        env = self._stash_env()
        if argv[0] in ("python", "python3"):
            python = self._resolve_python(env)
            if python is not None:
                return [python, *argv[1:]], python, True
            # Stash warns and runs the command as-is when no python is found.
        found = self._look_path(argv[0], env)
        if found is None:
            argv[0] = os.path.join(plugin_dir, argv[0])
            found = argv[0]
        return argv, found, False

    def _stash_env(self) -> dict[str, str]:
        return dict(os.environ if self.env is None else self.env)

    def _resolve_python(self, env: dict[str, str]) -> str | None:
        # The configured path wins if it is a file; else python3, then python, from PATH.
        configured = os.path.join(self.cwd, self.python) if self.python else ""
        if configured and os.path.isfile(configured):
            return self.python
        path = env.get("PATH")
        return shutil.which("python3", path=path) or shutil.which("python", path=path)

    def _look_path(self, name: str, env: dict[str, str]) -> str | None:
        # exec.LookPath: a name with a slash is checked as a path, else searched in PATH.
        if os.sep in name:
            candidate = os.path.join(self.cwd, name)
            return (
                candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
            )
        return shutil.which(name, path=env.get("PATH"))

    # -- starting runs -------------------------------------------------------------------------

    def start_hook(
        self,
        trigger: str,
        object_id: int,
        server_connection: dict[str, Any],
        *,
        input: Any = None,
        input_fields: list[str] | None = None,
        hook_name: str | None = None,
        timeout: float | None = 60,
    ) -> RunningPlugin:
        """Start the hook for `trigger` as Stash does after the triggering change commits.

        args = the hook's defaultArgs (strings) + `hookContext` {id (omitted when 0), type,
        input, inputFields (omitted when empty)}. When several hooks listen to `trigger` (Stash
        would run each in turn), pass `hook_name`.
        """
        hooks = self.manifest.hooks_for(trigger)
        if hook_name is not None:
            hooks = [hook for hook in hooks if hook.name == hook_name]
        if not hooks:
            raise RunnerError(f"plugin {self.manifest.id} has no hook for {trigger!r}")
        if len(hooks) > 1:
            raise RunnerError(
                f"{len(hooks)} hooks of {self.manifest.id} listen to {trigger!r} "
                f"({[h.name for h in hooks]}); pass hook_name"
            )
        hook = hooks[0]
        args: dict[str, Any] = dict(hook.default_args)
        context: dict[str, Any] = {}
        if object_id:
            context["id"] = object_id
        context["type"] = trigger
        context["input"] = input
        if input_fields:
            context["inputFields"] = list(input_fields)
        args["hookContext"] = context
        return self._start(hook.exec_args, server_connection, args, timeout)

    def start_task(
        self,
        task_name: str | None,
        server_connection: dict[str, Any],
        *,
        args: dict[str, Any] | None = None,
        timeout: float | None = 600,
    ) -> RunningPlugin:
        """Start a task as `runPluginTask` does.

        args = the caller's `args` (JSON types kept) + the task's defaultArgs (strings) for keys
        not already present; argv gets the task's execArgs. `task_name=None` runs the plugin
        with the given args only, as Stash does when no task name is given.
        """
        merged: dict[str, Any] = dict(args or {})
        exec_args: list[str] = []
        if task_name is not None:
            try:
                task = self.manifest.task(task_name)
            except LookupError as exc:
                raise RunnerError(str(exc)) from None
            for key, value in task.default_args.items():
                merged.setdefault(key, value)
            exec_args = task.exec_args
        return self._start(exec_args, server_connection, merged, timeout)

    def run_hook(
        self,
        trigger: str,
        object_id: int,
        server_connection: dict[str, Any],
        *,
        input: Any = None,
        input_fields: list[str] | None = None,
        hook_name: str | None = None,
        timeout: float | None = 60,
    ) -> PluginRun:
        """Run the hook for `trigger` to completion (see `start_hook`)."""
        return self.start_hook(
            trigger,
            object_id,
            server_connection,
            input=input,
            input_fields=input_fields,
            hook_name=hook_name,
            timeout=timeout,
        ).wait()

    def run_task(
        self,
        task_name: str | None,
        server_connection: dict[str, Any],
        *,
        args: dict[str, Any] | None = None,
        timeout: float | None = 600,
    ) -> PluginRun:
        """Run a task to completion (see `start_task`)."""
        return self.start_task(task_name, server_connection, args=args, timeout=timeout).wait()

    def run_raw(self, payload: bytes, *, timeout: float | None = 60) -> PluginRun:
        """Run the plugin with `payload` as its stdin, byte for byte (input Stash would never
        send well-formed: invalid UTF-8, absurd nesting, non-finite numbers...)."""
        return self._launch([], payload, timeout).wait()

    def _start(
        self,
        exec_args: list[str],
        server_connection: dict[str, Any],
        args: dict[str, Any],
        timeout: float | None,
    ) -> RunningPlugin:
        # Stash fills in PluginDir for each plugin; the rest comes from the server.
        connection = {**server_connection, "PluginDir": str(self.plugin_dir)}
        # Go marshals the struct in field order and the args map with sorted keys.
        payload = (
            '{"server_connection":'
            + _go_json(connection, sort_keys=False)
            + ',"args":'
            + _go_json(args, sort_keys=True)
            + "}"
        ).encode()
        return self._launch(exec_args, payload, timeout)

    def _launch(self, exec_args: list[str], payload: bytes, timeout: float | None) -> RunningPlugin:
        """Start the plugin's process as Stash does, with `payload` on its stdin."""
        argv, executable, is_python = self.command(exec_args)
        env = self._stash_env()
        if is_python:
            root = str(self.plugin_dir.parent)
            current = env.get("PYTHONPATH")
            env["PYTHONPATH"] = root if current is None else f"{current}{os.pathsep}{root}"
        return RunningPlugin(
            argv=argv,
            executable=executable,
            env=env,
            cwd=self.cwd,
            payload=payload,
            err_log=self.manifest.effective_err_log,
            timeout=timeout,
            stdout_eof_timeout=self.stdout_eof_timeout,
        )
