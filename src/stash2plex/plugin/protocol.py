"""Stash's raw-plugin protocol: stdin input, stderr log lines and progress, one stdout result.

Standard library only: the hook path imports this module.

Stash reads stderr line by line with a 64 KiB scanner; a longer line stops its reader, so long
messages are split. Every line of a multi-line message carries the level prefix. Progress is a
0..1 float on stderr (stdout is reserved for the final JSON result).
"""

from __future__ import annotations

import json
import re
import sys

from stash2plex.errors import PluginInputError

# Not `typing.TYPE_CHECKING`: importing typing costs the hook process ~5 ms (see plugin/entry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

LEVEL_CODES = {"trace": "t", "debug": "d", "info": "i", "warning": "w", "error": "e"}
# Stash's scanner limit is 64 KiB per line; stay well below it, counting UTF-8 bytes.
MAX_LINE_BYTES = 60_000


# What the plugin keeps of its input, once strings longer than LONG_STRING_BYTES are left out.
MAX_INPUT_BYTES = 16 * 1024 * 1024
# No value the plugin reads comes near this; a hook's `input` can carry a cover as a base64 data
# URL (`cover_image`, tens of MiB), which the hook never needs (see hook_events.py).
LONG_STRING_BYTES = 1024 * 1024
# What such a string reads as (so a message quoting one says what happened to it).
LEFT_OUT = "(a text over 1 MiB, left out)"
_CHUNK_BYTES = 64 * 1024
_TOO_LARGE = "the input on stdin is larger than 16 MiB without its long texts; not a PluginInput"
# Any bytes but a quote or a backslash, and escapes (a backslash and the byte after it).
_STRING_TEXT = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)


class _LongStringsLeftOut:
    """Collects JSON bytes fed chunk by chunk, each string longer than `limit` bytes replaced by
    LEFT_OUT, so memory is bounded by what is kept, not by the input.

    Exact on any JSON: outside strings only a `"` starts one; inside, a backslash escapes the
    next byte and a `"` ends it (neither byte occurs inside a multi-byte UTF-8 character).
    """

    def __init__(self, limit: int) -> None:
        self.kept = bytearray()
        self._limit = limit
        self._in_string = False
        self._escaped = False  # the last chunk ended inside an escape
        self._start = 0  # where the current string's text begins in `kept`
        self._length = 0  # bytes of the current string seen so far
        self._too_long = False

    def feed(self, chunk: bytes) -> None:
        pos, end = 0, len(chunk)
        while pos < end:
            if not self._in_string:
                quote = chunk.find(b'"', pos)
                if quote < 0:
                    self.kept += chunk[pos:]
                    return
                self.kept += chunk[pos : quote + 1]
                pos = quote + 1
                self._in_string, self._length, self._too_long = True, 0, False
                self._start = len(self.kept)
            elif self._escaped:
                self._take(chunk[pos : pos + 1])
                pos, self._escaped = pos + 1, False
            else:
                # The string's text up to its closing quote, or to a backslash ending the chunk
                # (its escaped byte comes with the next one).
                text = _STRING_TEXT.match(chunk, pos)
                at = text.end() if text else pos
                self._take(chunk[pos:at])
                if at == end:
                    return
                if chunk[at] == 0x5C:
                    self._take(chunk[at:])
                    self._escaped = True
                    return
                self.kept += b'"'
                self._in_string = False
                pos = at + 1

    def _take(self, text: bytes) -> None:
        self._length += len(text)
        if self._too_long:
            return
        if self._length > self._limit:
            del self.kept[self._start :]
            self.kept += LEFT_OUT.encode()
            self._too_long = True
        else:
            self.kept += text


def _read_kept(source: Any) -> bytes | str:
    """Stdin as bytes (or text, from a text stream), strings longer than LONG_STRING_BYTES left
    out; raises PluginInputError when even that is longer than MAX_INPUT_BYTES."""
    first = source.read(_CHUNK_BYTES)
    if isinstance(first, str):  # a text stream (tests)
        text = first + source.read(MAX_INPUT_BYTES)
        if len(text) > MAX_INPUT_BYTES:
            raise PluginInputError(_TOO_LARGE)
        return text
    kept = _LongStringsLeftOut(LONG_STRING_BYTES)
    chunk = first
    while chunk:
        kept.feed(chunk)
        if len(kept.kept) > MAX_INPUT_BYTES:
            raise PluginInputError(_TOO_LARGE)
        chunk = source.read(_CHUNK_BYTES)
    return bytes(kept.kept)


def read_input(stream: IO[str] | IO[bytes] | None = None) -> dict[str, Any]:
    """Parse the PluginInput JSON Stash writes to stdin.

    Strings longer than LONG_STRING_BYTES (1 MiB) are read past and kept as LEFT_OUT: a hook's
    input can hold a cover image of any size, and the plugin reads none of them. Raises
    PluginInputError with a message a person can act on (not JSON, not UTF-8, nested absurdly
    deep, non-finite numbers, wrong shapes, over 16 MiB without its long strings); the caller
    reports it as the run's error instead of a traceback.
    """
    source: Any = stream if stream is not None else getattr(sys.stdin, "buffer", sys.stdin)
    raw = _read_kept(source)
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PluginInputError(
                f"stdin is not valid UTF-8 (byte {exc.start}); Stash sends UTF-8 JSON"
            ) from None
    else:
        text = raw
    if not text.strip():
        raise PluginInputError("no input on stdin: Stash passes a JSON PluginInput to the plugin")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        # json's messages end in "at" where a position follows ("Unterminated string starting at").
        where = f"line {exc.lineno} column {exc.colno}"
        raise PluginInputError(
            f"stdin is not JSON ({exc.msg.removesuffix(' at')} at {where})"
        ) from None
    except RecursionError:
        raise PluginInputError("stdin JSON is nested too deeply to be a PluginInput") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise PluginInputError(f"stdin JSON holds a value Python cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise PluginInputError("stdin JSON must be an object with server_connection and args")
    args = data.get("args")
    if args is not None and not isinstance(args, dict):
        raise PluginInputError("PluginInput.args must be an object")
    connection = data.get("server_connection")
    if connection is not None and not isinstance(connection, dict):
        raise PluginInputError("PluginInput.server_connection must be an object")
    plugin_dir = (connection or {}).get("PluginDir")
    if plugin_dir is not None and not isinstance(plugin_dir, str):
        raise PluginInputError("server_connection.PluginDir must be a folder path (a string)")
    return data


def _reject_constant(name: str) -> Any:
    raise PluginInputError(f"stdin JSON contains {name}, which is not valid JSON")


def split_utf8(text: str, limit: int = MAX_LINE_BYTES) -> list[str]:
    """Split text into pieces of at most `limit` UTF-8 bytes without cutting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return [text]
    pieces = []
    start = 0
    while start < len(encoded):
        end = min(start + limit, len(encoded))
        # Back off to a character boundary (continuation bytes are 0b10xxxxxx).
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:
            end -= 1
        pieces.append(encoded[start:end].decode("utf-8"))
        start = end
    return pieces


def format_log(level: str, message: str) -> str:
    """Return the stderr bytes (as text) for one log message: prefixed, split, newline-ended."""
    code = LEVEL_CODES[level]
    out = []
    for line in str(message).splitlines() or [""]:
        for piece in split_utf8(line):
            out.append(f"\x01{code}\x02{piece}\n")
    return "".join(out)


class StashLog:
    """Writes log lines and progress to Stash over stderr.

    `debug_enabled` gates debug lines (the `debug_logging` setting); `scrub` removes secrets
    and, when asked, file paths from every line before it leaves the process.
    """

    def __init__(
        self, stream: IO[str] | None = None, *, debug_enabled: bool = False, scrub: Any = None
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.debug_enabled = debug_enabled
        self._scrub = scrub

    def set_scrubber(self, scrub: Any) -> None:
        self._scrub = scrub

    def log(self, level: str, message: str) -> None:
        if level == "debug" and not self.debug_enabled:
            return
        text = self._scrub(message) if self._scrub else message
        self._stream.write(format_log(level, text))
        self._stream.flush()

    def debug(self, message: str) -> None:
        self.log("debug", message)

    def info(self, message: str) -> None:
        self.log("info", message)

    def warning(self, message: str) -> None:
        self.log("warning", message)

    def error(self, message: str) -> None:
        self.log("error", message)

    def progress(self, fraction: float) -> None:
        value = min(1.0, max(0.0, float(fraction)))
        self._stream.write(f"\x01p\x02{value:.4f}\n")
        self._stream.flush()


def write_result(
    output: Any = None, error: str | None = None, stream: IO[str] | None = None
) -> None:
    """Print the single JSON result Stash parses from stdout."""
    target = stream if stream is not None else sys.stdout
    target.write(json.dumps({"output": output, "error": error}, ensure_ascii=False))
    target.write("\n")
    target.flush()
