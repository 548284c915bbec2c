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

    # One Plex refuses to edit: its failure and next try, and no advice about the settings.
    synced = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
    box.stash.update_scene(synced.id, title="Changed while Plex refuses edits")
    box.plex.faults.fail(500, route=r"^PUT ")
    refused = " ".join(cli("sync", "--recent", expect=1).stderr.split())
    assert "did not reach Plex: it waits (1 to be retried). It failed with: Plex failed" in refused
    assert "The next try is " in refused and "Run Diagnose" not in refused


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
        (("sync", "--since", "99999999999w"), "too far back"),
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


def test_rows_add_up_to_the_scenes_and_waiting_scenes_mean_attention(box, cli):
    cli("sync", "--all")
    report = json.loads(cli("--json", "reconcile", expect=1).output)
    results = report["results"]
    without = sum(1 for s in box.library.scenes.values() if not s.files)
    assert without > 0 and results["without_file"] == without
    assert sum(n for kind, n in results.items() if kind != "orphan_link") == report["scenes"]
    assert report["attention"] == results["not_in_plex"] + results["conflict"] > 0
    shown = cli("reconcile", expect=1).output
    assert "without a file" in shown and f"{without} without a file" in shown
    # --fix repairs nothing here, but scenes still wait for Plex or a person: exit 1 as well.
    cli("reconcile", "--fix", expect=1)


@pytest.fixture
def clean(tmp_path, monkeypatch):
    """A library Plex holds completely (no waiting scene can keep the exit code at 1)."""
    clock = SteppedClock()
    with sandbox(tmp_path / "clean", scenes=30, settings={}, plex_clock=clock) as opened:
        opened.stash.plugin_settings = {}
        monkeypatch.setenv("STASH2PLEX_STASH_URL", opened.stash.url)
        monkeypatch.setenv("STASH2PLEX_PLEX_URL", opened.plex.url)
        monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", PLEX_TOKEN)
        monkeypatch.setenv("STASH2PLEX_PATH_MAP", opened.library.path_map)
        runner = CliRunner()

        def run(*args: str, expect: int = 0):
            result = runner.invoke(main, ["--data-dir", str(opened.data_dir), *args])
            assert result.exit_code == expect, result.output
            return result

        clock.box = opened  # type: ignore[attr-defined]
        yield run, opened, clock


def test_fix_exits_0_once_everything_is_repaired_and_kept_drift_is_no_difference(
    clean, monkeypatch
):
    from plexapi.server import PlexServer

    cli, box, clock = clean
    cli("sync", "--all")
    clock.offset += 60
    cli("reconcile")  # in sync: 0
    scene = box.find(lambda s: len(s.files) == 1 and bool(s.title))
    box.stash.update_scene(scene.id, title="Renamed without a hook")
    stale = json.loads(cli("--json", "reconcile", expect=1).output)
    [sample] = stale["samples"]["stale"]
    assert sample["fields"] == ["title"], "only the title changed; no cover was uploaded"
    assert sample["detail"] == "changed in Stash since the last push: title"

    fixed = cli("--json", "reconcile", "--fix")  # repaired and synced: 0
    assert json.loads(fixed.output)["reconcile"]["queued"] == 1
    clock.offset += 60
    cli("reconcile")

    other = box.find(lambda s: len(s.files) == 1 and bool(s.title) and s.id != scene.id)
    PlexServer(box.plex.url, PLEX_TOKEN).fetchItem(box.rating_key(other)).editTitle("Mine")
    monkeypatch.setenv("STASH2PLEX_PRESERVE_PLEX_EDITS", "true")
    clock.offset += 60
    for _ in range(2):  # not a difference this time, nor the next
        kept = json.loads(cli("--json", "reconcile").output)
        assert kept["results"]["kept"] == 1 and kept["results"]["drifted"] == 0
        assert "1 kept (preserve_plex_edits)" in kept["summary"]
    cli("reconcile", "--fix")
    assert box.plex.item(box.rating_key(other)).title == "Mine"


def test_last_says_when_and_by_what_and_how_a_run_ended(box, cli, monkeypatch):
    from stash2plex.reconcile.run import reconcile_lock

    assert "no reconcile has run yet" in cli("reconcile", "--last").output
    cli("sync", "--all")
    cli("reconcile", expect=1)
    done = cli("reconcile", "--last").output
    assert "Last reconcile: done, started 20" in done and "by the command line" in done
    assert "in sync" in done

    # Plex stops answering in the middle of nothing: the run fails, --last gives the reason.
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", "http://127.0.0.1:9")
    cli("reconcile", expect=1)
    failed = cli("reconcile", "--last").output
    assert "Last reconcile: failed" in failed and "Plex is not reachable at" in failed
    last = json.loads(cli("--json", "reconcile", "--last").output)
    assert last["state"] == "failed" and "Plex is not reachable" in last["report"]["summary"]

    # A run whose process was killed leaves a run recorded as running, and no lock held.
    with box.store() as store:
        store.reconciliation().start_run("task", True)
    killed = cli("reconcile", "--last").output
    assert "Last reconcile: interrupted, started" in killed and "by a Stash task" in killed
    assert "process stopped before the run ended" in killed

    # While one runs (it holds the lock), another says so once and exits 3.
    with box.store() as store:
        store.reconciliation().start_run("schedule", True)
        with reconcile_lock(store) as locked:
            assert locked
            busy = cli("reconcile", expect=3).output
            running = cli("reconcile", "--last").output
            busy_json = json.loads(cli("--json", "reconcile", expect=3).stdout)
    assert busy.count("another reconcile is running") == 1
    # One sentence, no (empty) table before it.
    assert [line for line in busy.splitlines() if line.strip()] == [
        line for line in busy.splitlines() if line.startswith("stash2plex: another reconcile")
    ], busy
    assert "another reconcile is running" in busy_json["error"]
    assert "(started 20" in busy and "by the schedule (reconcile_interval)" in busy
    assert "Last reconcile: running" in running
    # The next run that gets the lock records the abandoned one as interrupted.
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", box.plex.url)
    cli("reconcile", expect=1)
    with box.store() as store:
        states = [run["state"] for run in store.reconciliation().runs(10)]
    assert "running" not in states and states.count("interrupted") == 2


def test_stash_unreachable_or_missing_says_what_to_do_also_as_json(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_STASH_URL", "http://127.0.0.1:9")
    down = cli("reconcile", expect=1).output
    assert "Stash is not reachable at http://127.0.0.1:9: is Stash running at" in down
    assert "stash_url" in down

    monkeypatch.delenv("STASH2PLEX_STASH_URL")
    empty = CliRunner().invoke(
        main, ["--data-dir", str(box.data_dir / "empty"), "--json", "reconcile"]
    )
    assert empty.exit_code == 2
    error = json.loads(empty.stdout)
    assert error["exit_code"] == 2 and "STASH2PLEX_STASH_URL" in error["error"]


def test_every_command_that_drains_prints_one_json_document(clean):
    """A command that does something and then drains prints one JSON document with --json:
    what it did under its own key, beside the drain's (a second document breaks every
    reader of the output)."""
    from stash2plex.records import Decision

    cli, box, clock = clean

    def one(*args: str, expect: int = 0) -> dict:
        result = cli("--json", *args, expect=expect)
        return json.loads(result.stdout)  # two documents: "Extra data"

    scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex and s.title]
    first, second, third = scenes[:3]
    assert one("sync", str(first.id))["queued"] == 1
    synced = one("sync", "--all")
    assert synced["queued"] == len(box.library.scenes) and "drained" in synced

    box.stash.update_scene(first.id, title="Changed for the recent sync")
    recent = one("sync", "--since", "1h")
    assert recent["recent"]["scene_ids"] == [first.id] and recent["drained"]["synced"] == 1

    clock.offset += 60
    box.stash.update_scene(second.id, title="Changed without a hook")
    fixed = one("reconcile", "--fix")
    assert fixed["reconcile"]["queued"] == 1 and fixed["drained"]["synced"] == 1
    assert fixed["error"] is None and "status" in fixed

    with box.store() as store:  # a dead letter, failed during an outage that has ended
        # Reconciled already, as the worker (still running from the drains above) does after
        # an outage: it would otherwise re-queue the dead letter before the command can.
        store.record_outage(store.clock() - 60, store.clock() + 1, 1)
        [outage] = store.outages()
        store.reconciliation().mark_outage_reconciled(outage["id"], {"queued": 0})
        store.enqueue([third.id], "test")
        [job] = store.claim_due("t", 1)
        store.apply(job, Decision("dead_letter", 5, error_class="transient", message="HTTP 502"))
    recovered = one("recover-outage-jobs")
    assert recovered["recover"]["recovered"] == 1 and "drained" in recovered
    from stash2plex.operations.queue import status_report

    with box.store() as store:  # as `queue status --json` shows it
        last = status_report(store, box.data_dir)["last_outage"]
    assert last["reconciled"]["queued"] == 0  # an object, not JSON text inside JSON

    with box.store() as store:
        store.enqueue([third.id], "test")
        [job] = store.claim_due("t", 1)
        store.apply(job, Decision("dead_letter", 5, error_class="transient", message="HTTP 502"))
    retried = one("dlq", "retry")
    assert retried["requeued"] == 1 and "drained" in retried
    assert "drained" in one("queue", "process")


def test_a_wrong_credential_names_where_it_came_from_as_health_and_sync_do(box, cli, monkeypatch):
    cli("sync", "--all")
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-000")
    where = "Plex token (plex_token) comes from the environment variable STASH2PLEX_PLEX_TOKEN"
    for args in (("reconcile",), ("reconcile", "--fix"), ("health",)):
        assert where in cli(*args, expect=2).output, args
    failed = json.loads(cli("--json", "reconcile", "--last").output)
    assert where in failed["report"]["summary"]
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", PLEX_TOKEN)

    box.stash.api_key, box.stash.require_auth = "the-right-stash-key", True
    monkeypatch.setenv("STASH2PLEX_STASH_API_KEY", "wrong-stash-key")
    where = (
        "Stash API key (stash_api_key) comes from the environment variable STASH2PLEX_STASH_API_KEY"
    )
    for args in (("reconcile",), ("sync", "--recent"), ("health",)):
        result = cli(*args, expect=2)
        assert "Stash rejected the API key" in result.output and where in result.output, args
        assert "wrong-stash-key" not in result.output and result.output.count(where) == 1


def test_plex_failing_mid_reconcile_says_what_happened_and_what_to_do(box, cli, monkeypatch):
    cli("sync", "--all")
    listing = "GET /library/sections/{id}/all"
    box.plex.faults.fail(500, route=listing)
    failed = cli("reconcile", "--fix", expect=1).output
    assert "Plex failed the request (HTTP 500" in failed
    assert "the reconcile stopped and changed nothing" in failed
    assert "runs it again in 15 minutes, or run it again later" in failed
    assert "its logs say why" in failed
    box.plex.faults.clear()

    # The library is deleted in Plex (another one is left): a setting to fix, not an item.
    title = box.plex.library.sections[box.section_id].title
    box.plex.add_section("Home Videos", ["/elsewhere"])
    box.plex.delete_section(box.section_id)
    gone = cli("reconcile", expect=2).output
    assert "no such item" not in gone
    assert f"Plex's library '{title}' (section {box.section_id}) is gone (404 Not Found" in gone
    assert "'Home Videos'" in gone and "check Plex libraries (plex_library)" in gone

    monkeypatch.setenv("STASH2PLEX_PLEX_LIBRARY", title)  # named: the library Plex lacks
    named = cli("reconcile", expect=2).output
    assert f"Plex has no library named '{title}'" in named and "'Home Videos'" in named
    assert "Plex libraries (plex_library) comes from the environment variable" in named
