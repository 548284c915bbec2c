"""Reconciliation and "Sync Recent Scenes" on the command line as a newcomer meets them: what
"nothing changed" means, usage errors in one sentence, counts that add up, exit codes by the
README's table, the last run with its trigger, and --json everywhere."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stash2plex.cli import main

from .sandbox import PLEX_TOKEN, SteppedClock, sandbox


@pytest.fixture
def clock():
    return SteppedClock()  # Plex's clock: moved on, items pushed are settled for a reconcile


@pytest.fixture
def box(tmp_path, clock):
    # Scenes Plex does not have and conflicts: they wait before any recent sync starts.
    with sandbox(
        tmp_path, scenes=40, settings={}, traps=True, not_in_plex_ratio=0.1, plex_clock=clock
    ) as opened:
        opened.stash.plugin_settings = {}  # nothing saved in Stash: the CLI brings it all
        yield opened


@pytest.fixture
def cli(box, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_STASH_URL", box.stash.url)
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", box.plex.url)
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", PLEX_TOKEN)
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", box.library.path_map)
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(main, ["--data-dir", str(box.data_dir), *args])
        assert result.exit_code == expect, result.output
        assert "Traceback" not in result.output
        assert PLEX_TOKEN not in result.output
        return result

    return run


def waiting(box) -> int:
    with box.store() as store:
        counts = store.job_counts()
    return sum(n for state, n in counts.items() if state.startswith("waiting"))


def test_a_recent_sync_with_nothing_changed_succeeds_whatever_already_waited(box, cli):
    cli("sync", "--all", expect=0)
    assert waiting(box) > 0  # not in Plex and conflicts, from before

    result = cli("sync", "--recent")

    assert "nothing changed in Stash since" in result.output
    assert "No scene reached Plex" not in result.output
    data = json.loads(cli("--json", "sync", "--since", "1h").output)
    assert data["recent"]["queued"] == 0 and data["recent"]["scene_ids"] == []
    assert data["recent"]["since_text"].startswith("20") and data["error"] is None

    # A scene changed whose file Plex does not have: this run's scene, this run's failure.
    lost = next(s for s in box.library.scenes.values() if s.files and not s.in_plex)
    box.stash.update_scene(lost.id, title="Changed, still not in Plex")
    failed = cli("sync", "--recent", expect=1)
    assert "The scene changed in Stash did not reach Plex: it waits (1 not in Plex yet)" in (
        failed.output
    )


def test_a_recent_sync_shows_the_token_error_when_plex_refuses_us(box, cli, monkeypatch):
    cli("sync", "--all")
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-000")

    nothing = cli("sync", "--recent", expect=2)
    assert "Plex rejected the token" in nothing.output and "plex_token" in nothing.output

    lost = next(s for s in box.library.scenes.values() if s.files and not s.in_plex)
    box.stash.update_scene(lost.id, title="Changed while the token is wrong")
    changed = cli("sync", "--recent", expect=2)
    assert "Plex rejected the token" in changed.output
    assert "not in Plex" not in changed.output.split("Plex rejected the token")[-1]
    assert changed.output.count("Plex rejected the token") == 1
    assert "wrong-token-000" not in changed.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("sync", "--since", "999999999d"), "too far back"),
        (("sync", "--since", "0001-01-01"), "too far back"),
        (("sync", "--since", "2999-01-01"), "is in the future"),
        (("sync", "--since", "in 2 hours"), "is not a duration"),
        (("sync", "--since", ""), "--since needs a value"),
        (("sync", "--recent", "--since", "2h"), "one of them"),
        (("reconcile", "--fix", "--last"), "--last shows the last run"),
    ],
)
def test_impossible_times_and_options_are_usage_errors_in_one_sentence(cli, args, said):
    result = cli(*args, expect=2)
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and said in error[0], result.output


def test_changed_matching_settings_are_no_cached_verdict(box, cli, clock, monkeypatch):
    cli("sync", "--all")
    clock.offset += 60
    first = json.loads(cli("--json", "reconcile", expect=1).output)
    assert first["items_read"] > 0 and first["matched_by_name"] == 0 and first["notes"] == []
    assert json.loads(cli("--json", "reconcile", expect=1).output)["items_read"] == 0

    # A copy of a synced scene's file, same name and size, in a folder path_map never named.
    scene = box.find(lambda s: len(s.files) == 1 and s.title and s.in_plex)
    copy = box.library.plex_path(scene.files[0].path).replace("\\", "\\Copies\\", 1)
    box.plex.add_item(box.section_id, copy, sizes=scene.files[0].size)
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", "/data/stash => /mnt/wrong")
    wrong = json.loads(cli("--json", "reconcile", expect=1).output)

    assert wrong["items_read"] == first["items_read"], "checks made under the old path_map"
    assert scene.id in [s["scene_id"] for s in wrong["samples"]["ambiguous"]]
    assert wrong["results"]["in_sync"] < first["results"]["in_sync"]
    [hint] = wrong["notes"]
    assert "by file name and size only" in hint and "was looked for as /mnt/wrong/" in hint
    assert f"set path_map to '{box.library.path_map.split(' => ')[0]}" in hint

    # Another library: the scenes are not in it, whatever the index held of the old one.
    box.plex.add_section("Home Videos", ["/elsewhere"])
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", box.library.path_map)
    monkeypatch.setenv("STASH2PLEX_PLEX_LIBRARY", "Home Videos")
    moved = json.loads(cli("--json", "reconcile", expect=1).output)
    with_files = sum(1 for s in box.library.scenes.values() if s.files)
    assert moved["results"]["in_sync"] == 0
    assert moved["results"]["not_in_plex"] + moved["results"]["link_broken"] == with_files
