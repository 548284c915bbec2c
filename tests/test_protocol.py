"""Stash's raw protocol: input parsing, log framing, line splitting, progress, result."""

import io
import json

import pytest

from stash2plex.errors import PluginInputError
from stash2plex.plugin import protocol
from stash2plex.plugin.protocol import (
    MAX_LINE_BYTES,
    StashLog,
    format_log,
    read_input,
    split_utf8,
    write_result,
)


def test_every_line_of_a_multiline_message_carries_the_prefix():
    assert format_log("warning", "one\ntwo") == "\x01w\x02one\n\x01w\x02two\n"


def test_long_lines_are_split_below_stash_limit_without_cutting_characters():
    text = "é" * (MAX_LINE_BYTES)  # two bytes each
    pieces = split_utf8(text)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= MAX_LINE_BYTES for p in pieces)
    for line in format_log("info", text).splitlines():
        assert len(line.encode()) < 64 * 1024


def test_debug_only_when_enabled_and_progress_is_a_clamped_float():
    stream = io.StringIO()
    log = StashLog(stream)
    log.debug("hidden")
    log.debug_enabled = True
    log.debug("shown")
    log.progress(1.7)
    assert stream.getvalue() == "\x01d\x02shown\n\x01p\x021.0000\n"


def test_scrubber_applies_to_every_line():
    stream = io.StringIO()
    StashLog(stream, scrub=lambda s: s.replace("secret", "***")).error("a secret\nsecret")
    assert "secret" not in stream.getvalue()


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no input"),
        ("{not json", "not JSON"),
        ('{"args": {"a": "open', "Unterminated string starting at line 1 column 16"),
        ("[1]", "must be an object"),
        ('{"args": 3}', "args must be an object"),
        ('{"args": {"hookContext": {"id": Infinity}}}', "Infinity"),
        ('{"args": {}, "x": NaN}', "NaN"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"server_connection": "http://x", "args": {}}', "server_connection must be an object"),
        ('{"args": {"hookContext": {"id": ' + "9" * 5000 + "}}}", "cannot read"),
        ('{"server_connection": {"PluginDir": 5}, "args": {}}', "PluginDir must be a folder"),
    ],
)
def test_bad_input_gets_a_clear_message(text, message):
    with pytest.raises(PluginInputError, match=message):
        read_input(io.StringIO(text))


def test_invalid_utf8_is_named():
    raw = b'{"args": {"hookContext": {"type": "Scene.Upd\xffte.Post", "id": 1}}}'
    with pytest.raises(PluginInputError, match="not valid UTF-8"):
        read_input(io.BytesIO(raw))


def test_result_is_one_json_object():
    stream = io.StringIO()
    write_result(output={"n": 1}, stream=stream)
    assert json.loads(stream.getvalue()) == {"output": {"n": 1}, "error": None}


class _Trickle(io.BytesIO):
    """A stdin that hands out `size` bytes per read, so every boundary falls somewhere."""

    def __init__(self, raw: bytes, size: int) -> None:
        super().__init__(raw)
        self.size = size

    def read(self, n: int = -1) -> bytes:
        return super().read(self.size)


def test_a_hook_carrying_a_cover_larger_than_the_input_limit_is_read_without_it():
    cover = "data:image/jpeg;base64," + "QUJD" * (5 * 1024 * 1024)  # 20 MiB
    hook = {
        "server_connection": {"Port": 9999, "PluginDir": "/plugins/stash2plex"},
        "args": {
            "hookContext": {
                "id": 45,
                "type": "Scene.Update.Post",
                "input": {"id": "45", "title": 'a "quoted" \\ title', "cover_image": cover},
                "inputFields": ["id", "title", "cover_image"],
            }
        },
    }

    data = read_input(io.BytesIO(json.dumps(hook).encode()))

    context = data["args"]["hookContext"]
    assert (context["id"], context["type"]) == (45, "Scene.Update.Post")
    assert context["input"]["title"] == 'a "quoted" \\ title'
    assert context["input"]["cover_image"] == protocol.LEFT_OUT
    assert data["server_connection"] == hook["server_connection"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64 * 1024])
def test_long_strings_are_left_out_exactly_wherever_the_reads_split_the_input(size, monkeypatch):
    monkeypatch.setattr(protocol, "LONG_STRING_BYTES", 16)  # as encoded
    value = {
        "short": 'a\\"b',  # 6 bytes once escaped: kept
        "long": 'x\\"y' * 10,  # escapes across every boundary: left out
        "unicode": "é\u2028\U0001f600",
        "escaped long": "\\" * 20,
        "list": ["0123456789" * 2, "ok", {"k": "\\\\"}],
        "n": -1.5e3,
    }

    data = read_input(_Trickle(json.dumps(value, ensure_ascii=False).encode(), size))

    left_out = protocol.LEFT_OUT
    assert data == {
        "short": 'a\\"b',
        "long": left_out,
        "unicode": "é\u2028\U0001f600",
        "escaped long": left_out,
        "list": [left_out, "ok", {"k": "\\\\"}],
        "n": -1.5e3,
    }


def test_an_input_too_large_even_without_its_long_strings_is_refused(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_INPUT_BYTES", 1000)
    raw = json.dumps({"args": {"ids": list(range(1000))}}).encode()

    with pytest.raises(PluginInputError, match="larger than 16 MiB"):
        read_input(io.BytesIO(raw))
