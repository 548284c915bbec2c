"""The command line as a person meets it: a queue one can see into, words instead of Python
values, the README's exit codes, clear messages instead of tracebacks, preview and dry run
against Plex as it is, force, and `--json` after every subcommand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

from stash2plex.cli import main
from stash2plex.records import Decision
from stash2plex.sandbox.processes import reap_workers

from .sandbox import PLEX_TOKEN, sandbox

REPR = re.compile(r"\bNone\b|\{'|\[\]|\{\}|\b1[6-9]\d{8}\.\d+")


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=25, settings={}) as opened:
        opened.stash.plugin_settings = {}
        try:
            yield opened
        finally:
            reap_workers(opened.data_dir)  # the detached workers `sync` started


@pytest.fixture
def cli(box, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_STASH_URL", box.stash.url)
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", box.plex.url)
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", PLEX_TOKEN)
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", box.library.path_map)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(main, ["--data-dir", str(box.data_dir), *args])
        assert result.exit_code == expect, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert PLEX_TOKEN not in result.output and "Traceback" not in result.output
        return result

    return run


def matchable(box):
    return [s for s in box.library.scenes.values() if s.files and s.in_plex]


def edit_in_plex(box, scene, title: str) -> None:
    """Change an item's title in Plex as Plex Web does (a PUT that also locks the field)."""
    import requests

    answer = requests.put(
        f"{box.plex.url}/library/sections/{box.section_id}/all",
        params={"type": 1, "id": box.rating_key(scene), "title.value": title, "title.locked": 1},
        headers={"X-Plex-Token": PLEX_TOKEN},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def test_json_is_accepted_after_every_subcommand():
    def walk(group: click.Group, prefix: list[str]):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from walk(command, [*prefix, name])
            else:
                yield [*prefix, name], command

    for path, command in walk(main, []):
        names = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--json" in names, f"stash2plex {' '.join(path)} does not take --json"


def test_queue_status_after_the_command_reads_in_words(box, cli):
    cli("sync", "--all")
    status = json.loads(cli("queue", "status", "--json").stdout)
    assert status["breaker"] == "closed" and status["pending"] == 0
    human = cli("queue", "status").stdout
    assert "last sync" in human and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d \(", human)
    assert not REPR.search(human), human


def _wait(box, scene_id, reason, **detail):
    with box.store() as store:
        store.enqueue([scene_id], "test")
        [job] = [j for j in store.claim_due("t", 100) if j.scene_id == scene_id]
        store.apply(
            job,
            Decision(
                "wait",
                2,
                reason=reason,
                due_at=time.time() + 600,
                error_class=reason,
                message=f"why {scene_id} waits",
                detail=detail or None,
            ),
        )


def test_queue_list_shows_reasons_candidates_errors_and_next_attempt(box, cli):
    a, b, c = (s.id for s in matchable(box)[:3])
    _wait(box, a, "not_in_plex", paths=["/plex/x.mp4"])
    _wait(
        box,
        b,
        "ambiguous",
        candidates=[
            {"rating_key": 7, "path": "/p/one.mp4"},
            {"rating_key": 8, "path": "/q/one.mp4"},
        ],
    )
    with box.store() as store:
        store.enqueue([c], "test")

    rows = json.loads(cli("queue", "list", "--json").stdout)
    by_scene = {row["scene_id"]: row for row in rows}
    assert by_scene[a]["status"] == "not in Plex yet" and by_scene[a]["attempts"] == 2
    assert by_scene[a]["last_error"] == f"why {a} waits"
    assert by_scene[b]["candidates"] == ["Plex item 7: /p/one.mp4", "Plex item 8: /q/one.mp4"]
    assert by_scene[c]["state"] == "pending"
    assert "in 9 min" in by_scene[a]["next_attempt"] or "in 10 min" in by_scene[a]["next_attempt"]

    only = json.loads(cli("queue", "list", "--reason", "ambiguous", "--json").stdout)
    assert [row["scene_id"] for row in only] == [b]
    pending = json.loads(cli("--json", "queue", "list", "--state", "pending").stdout)
    assert [row["scene_id"] for row in pending] == [c]

    human = cli("queue", "list").stdout
    assert "Plex item 8: /q/one.mp4" in human and "ambiguous" in human
    assert not REPR.search(human), human


def test_scene_shows_its_link_what_was_pushed_and_its_events(box, cli):
    scene = next(s for s in matchable(box) if s.title and s.performer_ids)
    cli("sync", str(scene.id))
    box.stash.update_scene(scene.id, title="Changed since")
    report = json.loads(cli("scene", str(scene.id), "--json").stdout)
    assert report["link"]["rating_key"] == box.rating_key(scene)
    fields = {row["field"]: row for row in report["fields"]}
    assert fields["title"]["stash_now"] == "changed since (not synced yet)"
    assert fields["title"]["pushed"] is None  # only its fingerprint is kept
    assert fields["studio"]["stash_now"] == "same as pushed"
    assert fields["studio"]["pushed"] == box.library.studios[scene.studio_id].name
    assert fields["actor"]["pushed"]  # the performer names pushed
    order = [row["field"] for row in report["fields"]]  # as Plex Web's edit dialog, images last
    assert order[:3] == ["title", "originallyAvailableAt", "studio"] and order[-1] == "art"
    assert order.index("summary") < order.index("actor") < order.index("genre")
    human = cli("scene", str(scene.id)).stdout
    assert "What was pushed" in human and "last synced" in human
    flat = " ".join(human.split())
    assert "a value Stash no longer has" in flat and "an image (its checksum is kept)" in flat
    assert "queued by │ stash2plex sync" in flat  # not the store's "cli"
    assert not REPR.search(human), human


def test_dead_letters_and_outages_are_listed_in_words(box, cli):
    with box.store() as store:
        store.enqueue([1], "test")
        [job] = store.claim_due("t", 1)
        store.apply(job, Decision("dead_letter", 5, error_class="transient", message="Plex 502"))
        now = time.time()
        store.record_outage(now - 4000, now - 3700, jobs_affected=12)
        store.record_outage(now - 600, now - 540, jobs_affected=3)
    letters = cli("dlq", "list").stdout
    assert "after 5 attempts" in letters and "Plex 502" in letters
    outages = cli("outages").stdout
    assert "5 min" in outages and "1 min" in outages  # each outage: its length
    assert "12" in outages and "mean time to recovery" in outages
    assert not REPR.search(outages), outages
    listed = json.loads(cli("outages", "--json").stdout)["recent"]
    assert [o["jobs_affected"] for o in listed] == [12, 3]


def test_preview_of_a_scene_stash_does_not_have_exits_2(box, cli):
    result = cli("preview", "99999", expect=2)
    assert "Stash has no scene 99999" in result.output


def test_preview_of_a_scene_without_a_file_says_it_is_not_pushed(box, cli):
    fileless = next(s for s in box.library.scenes.values() if not s.files)
    synced = " ".join(cli("sync", str(fileless.id)).output.split())
    assert "skipped (no video file, or no metadata of its own yet) │ 1" in synced
    said = " ".join(cli("preview", str(fileless.id)).output.split())
    assert "no file" in said
    assert f"Nothing would change: scene {fileless.id} is not pushed to Plex" in said
    assert "(the scene has no video file)" in said and "Plex already shows" not in said


def test_sync_of_a_scene_stash_does_not_have_exits_2_and_queues_nothing(box, cli):
    known = matchable(box)[0].id
    result = cli("sync", str(known), "99999", expect=2)
    assert "Stash has no scene 99999: nothing was queued" in result.output
    with box.store() as store:
        assert store.job(known) is None


def test_queue_status_exits_1_while_scenes_wait(box, cli):
    fileless = next(s for s in box.library.scenes.values() if not s.files)
    box.drain(fileless.id)  # done, though nothing was pushed: counted as such
    said = " ".join(cli("queue", "status").stdout.split())  # nothing queued, nothing waiting
    assert "done (synced, or nothing to push) │ 1" in said
    _wait(box, matchable(box)[0].id, "not_in_plex", paths=["/plex/x.mp4"])
    result = cli("queue", "status", "--json", expect=1)
    assert json.loads(result.stdout)["waiting"] == {"not_in_plex": 1}


def test_preview_and_dry_run_compare_with_plex_as_it_is(box, cli):
    scene = next(s for s in matchable(box) if s.title)
    # A fresh data dir, Plex already showing Stash's title: not a change.
    edit_in_plex(box, scene, scene.title.strip())
    first = json.loads(cli("preview", str(scene.id), "--json").stdout)[0]
    assert "title" not in [c["field"] for c in first["changes"]]

    cli("sync", str(scene.id))
    edit_in_plex(box, scene, "Edited in Plex")
    edited = json.loads(cli("preview", str(scene.id), "--json").stdout)[0]
    assert edited["status"] == "edited in Plex"
    assert edited["kept"] == [
        {"field": "title", "plex": "Edited in Plex", "stash": scene.title.strip()}
    ]
    writes = box.writes()
    dry = json.loads(cli("sync", "--dry-run", "--force", str(scene.id), "--json").stdout)[0]
    assert dry["status"] == "would change"
    assert {"field": "title", "plex": "Edited in Plex", "stash": scene.title.strip()} in dry[
        "changes"
    ]
    assert box.writes() == writes, "a dry run wrote to Plex"


def test_force_rewrites_plex_edits_unless_they_are_preserved(box, cli, monkeypatch):
    first, second = [s for s in matchable(box) if s.title][:2]
    cli("sync", str(first.id), str(second.id))
    for scene in (first, second):
        edit_in_plex(box, scene, "Edited in Plex")
    cli("sync", str(first.id))
    assert box.item(first).title == "Edited in Plex"  # a normal sync leaves Plex edits
    cli("sync", "--force", str(first.id))
    assert box.item(first).title == first.title.strip()

    # Saved in Stash: a running worker re-reads Stash's settings (not the CLI's environment).
    box.stash.plugin_settings["preserve_plex_edits"] = True
    cli("sync", "--force", str(second.id))
    assert box.item(second).title == "Edited in Plex"


def test_config_check_prints_its_table_with_problems_marked(box, cli, monkeypatch):
    monkeypatch.delenv("STASH2PLEX_PLEX_TOKEN")
    box.stash.plugin_settings["plex_timeout"] = "soon"  # a value no timer can take, saved in Stash
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", "/data => /media; /x -> /y")
    result = cli("config", "check", expect=2)
    assert "Effective configuration" in result.stdout
    assert "missing: required" in result.stdout
    assert "invalid" in result.stdout
    assert "expected a number from 1 to 300" in result.output
    assert "could not convert" not in result.output
    assert "the rule '/x -> /y' is not" in result.output
    data = json.loads(cli("config", "check", "--json", expect=2).stdout)
    assert data["missing"] == ["plex_token"] and data["invalid"] == ["path_map", "plex_timeout"]


def test_a_bad_path_map_rule_stops_a_sync_naming_the_rule(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", "/data => /media; /x -> /y")
    result = cli("sync", "--all", expect=2)
    assert "the rule '/x -> /y' is not" in result.output
    assert "STASH2PLEX_PATH_MAP" in result.output
    with box.store() as store:
        assert store.link_count() == 0 and store.dead_letters() == []


def test_data_dir_problems_are_one_sentence_not_a_traceback(tmp_path, monkeypatch):
    runner = CliRunner()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(main, ["--data-dir", str(blocker / "data"), "queue", "status"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "cannot create the data directory" in result.output
    assert "STASH2PLEX_DATA_DIR" in result.output and "Traceback" not in result.output


def test_demo_without_the_sandbox_extra_names_the_install_command():
    code = (
        "import sys; sys.modules['graphql'] = None\n"
        "from stash2plex.cli import main\n"
        "main(['demo'])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "pip install 'stash2plex[sandbox]'" in run.stderr


def test_obfuscate_paths_covers_diagnose_output(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_OBFUSCATE_PATHS", "true")
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", "/nowhere => /nothing")
    result = cli("diagnose")  # matched by name and size: works, with a path_map suggestion
    text = result.output
    assert "<path-" in text
    for scene in matchable(box)[:5]:
        name = scene.files[0].path.rsplit("/", 1)[-1]
        assert name not in text and name.rsplit(".", 1)[0] not in text


def test_a_drain_runs_with_the_settings_of_the_command_that_asked(box, cli, monkeypatch):
    first, second = (s.id for s in matchable(box)[:2])
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "a-wrong-token")
    held = cli("sync", str(first), expect=2)
    assert "STASH2PLEX_PLEX_TOKEN" in held.output  # the worker it started holds the queue

    # The user fixes the variable: the next command's drain must use it, not the running
    # worker's (started with the wrong one and still checking its pause).
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", PLEX_TOKEN)
    fixed = cli("--json", "sync", str(second))
    assert json.loads(fixed.stdout)["drained"]["synced"] == 2  # both scenes, the held one too
    with box.store() as store:
        assert store.job(first).state == "done" and store.job(second).state == "done"

    # And the other way round: a wrong value now is what this command's drain meets.
    box.stash.update_scene(first, title="Saved again")
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "another-wrong-token")
    again = cli("sync", str(first), expect=2)
    assert "rejected" in again.output and "another-wrong-token" not in again.output


def test_queue_list_takes_leased_as_the_name_of_in_progress(box, cli):
    a, b = (s.id for s in matchable(box)[:2])
    with box.store() as store:
        store.enqueue([a, b], "test")
        [held] = store.claim_due("someone:1", 1)
    leased = json.loads(cli("--json", "queue", "list", "--state", "leased").stdout)
    in_progress = json.loads(cli("--json", "queue", "list", "--state", "in_progress").stdout)
    assert [row["scene_id"] for row in leased] == [held.scene_id]
    assert leased == in_progress
    helped = cli("queue", "list", "--help").stdout
    assert "leased" in helped and "another name for in_progress" in " ".join(helped.split())


def test_config_check_shows_a_refused_value_as_given(box, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", "/x -> /y")
    monkeypatch.setenv("STASH2PLEX_SKIP_TITLE", "maybe")
    result = cli("config", "check", expect=2)
    path_map = next(line for line in result.stdout.splitlines() if "(path_map)" in line)
    assert "/x -> /y (not valid)" in path_map and "empty" not in path_map
    assert "maybe (not valid)" in result.stdout
    data = json.loads(cli("config", "check", "--json", expect=2).stdout)
    rows = {row["key"]: row for row in data["settings"]}
    assert rows["path_map"]["given"] == "/x -> /y" and rows["path_map"]["problem"]
    assert rows["skip_title"]["given"] == "maybe"
    assert "given" not in rows["plex_url"]  # only refused values carry it


def test_preview_and_scene_name_fields_as_people_do(box, cli):
    scene = matchable(box)[0]
    cli("sync", str(scene.id))
    box.stash.update_scene(scene.id, date="2001-02-03")
    preview = cli("preview", str(scene.id), expect=0).output
    assert "date" in preview and "originallyAvailableAt" not in preview
    shown = cli("scene", str(scene.id)).output
    assert "originallyAvailableAt" not in shown


def test_scene_says_when_the_whole_queue_is_held(box, cli):
    from dataclasses import replace

    from stash2plex.records import Pause

    scene = matchable(box)[0]
    pause = Pause("plex_auth", "Plex rejected the token", 0, 0, setting="plex_token")
    with box.store() as store:
        store.enqueue([scene.id], "Scene.Update.Post")
        store.change_holds(lambda holds: (replace(holds, pause=pause), []))
    said = " ".join(cli("scene", str(scene.id)).stdout.split())
    assert "queue held │ Plex rejected the token" in said
    assert "next attempt │ when the hold on the queue lifts" in said


def test_scene_held_by_a_later_hold_does_not_show_the_earlier_ones_reason(box, cli):
    """The scene waited for the token to be fixed; the token was fixed and now a library name
    holds the queue: the scene says the queue is held, not that a token is to be fixed, and
    waits for that hold, not "as soon as the worker gets to it"."""
    import sqlite3
    from dataclasses import replace

    from stash2plex.records import Pause

    scene = matchable(box)[0]
    pause = Pause("config", "Plex has no library named 'Stash Scene'", 0, 0, setting="plex_library")
    with box.store() as store:
        store.enqueue([scene.id], "Scene.Update.Post")
        store.change_holds(lambda holds: (replace(holds, pause=pause), []))
        path = store.path
    with sqlite3.connect(path) as db:  # as an earlier hold (the token) left it
        db.execute(
            "UPDATE jobs SET state = 'waiting', reason = 'auth', due_at = 0 WHERE scene_id = ?",
            (scene.id,),
        )
    said = " ".join(cli("scene", str(scene.id)).stdout.split())
    assert "state │ waiting: the queue is held" in said, said
    assert "token" not in said and "as soon as the worker" not in said
    assert "next attempt │ when the hold on the queue lifts" in said
