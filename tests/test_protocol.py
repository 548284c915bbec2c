"""Stash's raw protocol: input parsing, log framing, line splitting, progress, result."""

import io
import json

import pytest

from stash2plex.errors import PluginInputError
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
