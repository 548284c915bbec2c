"""Malformed hook input, fed byte for byte to the plugin as Stash would run it: each gets a
valid plugin answer with an error that names what was wrong, no traceback, and queues
nothing."""

from __future__ import annotations

import json

import pytest

from stash2plex.sandbox.runner import PluginRunner, parse_plugin_output
from stash2plex.store.db import Store


def _connection(plugin_dir, **changes):
    connection = {
        "Scheme": "http",
        "Host": "127.0.0.1",
        "Port": 9,
        "SessionCookie": {"Name": "session", "Value": "cookie-secret-1234"},
        "Dir": str(plugin_dir.parent),
        "PluginDir": str(plugin_dir),
    }
    connection.update(changes)
    return json.dumps(connection)


def _hook(plugin_dir, context: str, **changes) -> bytes:
    return (
        '{"server_connection":'
        + _connection(plugin_dir, **changes)
        + ',"args":{"hookContext":'
        + context
        + "}}"
    ).encode()


CASES = {
    "id above 2^63-1": (
        lambda d: _hook(d, '{"id": 9223372036854775808, "type": "Scene.Update.Post"}'),
        "out of range",
    ),
    "id 3.7": (lambda d: _hook(d, '{"id": 3.7, "type": "Scene.Update.Post"}'), "whole number"),
    "id true": (lambda d: _hook(d, '{"id": true, "type": "Scene.Update.Post"}'), "not an id"),
    "id Infinity": (
        lambda d: _hook(d, '{"id": Infinity, "type": "Scene.Update.Post"}'),
        "Infinity",
    ),
    "invalid UTF-8 in the trigger": (
        lambda d: _hook(d, '{"id": 4, "type": "Scene.Upd\xffate.Post"}').replace(
            b"\xc3\xbf", b"\xff"
        ),
        "not valid UTF-8",
    ),
    "nested 100,000 deep": (
        lambda d: _hook(
            d,
            '{"id": 4, "type": "Scene.Update.Post", "input": '
            + "[" * 100_000
            + "]" * 100_000
            + "}",
        ),
        "nested too deeply",
    ),
    "a trigger of 2 MiB": (
        lambda d: _hook(d, '{"id": 4, "type": "' + "Scene" * 400_000 + '"}'),
        "(a text over 1 MiB, left out)' is not a Stash hook trigger",
    ),
    "server_connection a string": (
        lambda d: (
            b'{"server_connection": "http://127.0.0.1:9999", "args": {"hookContext": '
            b'{"id": 4, "type": "Scene.Update.Post"}}}'
        ),
        "server_connection must be an object",
    ),
    "PluginDir a number": (
        lambda d: _hook(d, '{"id": 4, "type": "Scene.Update.Post"}', PluginDir=42),
        "PluginDir must be a folder path",
    ),
    "PluginDir with a NUL": (
        lambda d: _hook(d, '{"id": 4, "type": "Scene.Update.Post"}', PluginDir=f"{d}\x00x"),
        "is not a path this system can open",
    ),
    "PluginDir with a lone surrogate": (
        lambda d: _hook(d, '{"id": 4, "type": "Scene.Update.Post"}', PluginDir=f"{d}\ud800"),
        "is not a path this system can open",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_hook_input_gets_a_clean_error_and_queues_nothing(plugin_dir, worker_env, case):
    build, words = CASES[case]
    runner = PluginRunner(plugin_dir, env=worker_env)

    run = runner.run_raw(build(plugin_dir))

    assert run.returncode == 1
    _output, error = parse_plugin_output(run.stdout)
    assert error == run.error and error is not None, run.stdout
    assert words in error
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    assert "cookie-secret-1234" not in run.stderr + run.stdout
    assert any(words in message for message in run.messages("error"))
    data_dir = plugin_dir / "data"
    if (data_dir / "stash2plex.db").exists():
        with Store.open(data_dir) as store:
            assert store.jobs() == []
