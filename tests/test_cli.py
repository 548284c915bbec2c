"""The command line for people who run Stash2Plex outside Stash: settings from the environment
or a TOML file, the operations as commands, --json output and meaningful exit codes."""

from __future__ import annotations

import json
import re
import socket

import pytest
from click.testing import CliRunner

from stash2plex import errors
from stash2plex.cli import main
from stash2plex.operations.diagnose import COVER_TRIES, _cover_fix
from stash2plex.records import Decision

from .conftest import wait_until
from .sandbox import PLEX_TOKEN, sandbox


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=25, settings={}) as opened:
        opened.stash.plugin_settings = {}  # nothing saved in Stash: the CLI brings it all
        yield opened


@pytest.fixture
def cli(box, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_STASH_URL", box.stash.url)
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", box.plex.url)
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", PLEX_TOKEN)
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(main, ["--data-dir", str(box.data_dir), *args])
        assert result.exit_code == expect, result.output
        assert PLEX_TOKEN not in result.output
        return result

    return run


def test_config_check_shows_values_sources_and_masks_the_token(box, cli, tmp_path):
    settings_file = tmp_path / "s2p.toml"
    settings_file.write_text(
        f'[stash2plex]\npath_map = "{box.library.path_map}"\nmax_retries = 7\n'
    )
    result = cli("--config", str(settings_file), "--json", "config", "check")
    rows = {row["key"]: row for row in json.loads(result.output)["settings"]}
    assert rows["plex_url"]["source"] == "environment STASH2PLEX_PLEX_URL"
    assert rows["plex_token"]["value"].startswith("***")
    assert rows["max_retries"] == {
        "key": "max_retries",
        "value": 7,
        "source": f"file {settings_file}",
        "problem": None,
    }
    assert rows["path_map"]["value"] == [box.library.path_map.replace(" => ", " => ")]
    assert rows["plex_timeout"]["source"] == "default"
    # Valid values are not yet working ones: the next step is named.
    checked = cli("--config", str(settings_file), "config", "check")
    assert "`stash2plex diagnose` tries them on Stash and Plex" in checked.stderr
    # The Stash the settings were read from, and why that one.
    assert rows["stash_url"]["value"] == box.stash.url
    assert rows["stash_url"]["source"] == "environment STASH2PLEX_STASH_URL"


def test_config_check_and_diagnose_say_which_stash_and_where_its_address_came_from(
    box, cli, monkeypatch
):
    """Inside Stash the address is the connection Stash gave the plugin; the command line
    then reads that one (kept in the store) unless STASH2PLEX_STASH_URL says otherwise."""
    from stash2plex.engine.context import FROM_STASH
    from stash2plex.store.schema import SERVER_CONNECTION_KEY

    host, port = box.stash.url.removeprefix("http://").split(":")
    with box.store() as store:
        store.put_value(SERVER_CONNECTION_KEY, {"Scheme": "http", "Host": host, "Port": int(port)})
    monkeypatch.delenv("STASH2PLEX_STASH_URL")

    rows = {
        row["key"]: row for row in json.loads(cli("--json", "config", "check").output)["settings"]
    }
    assert rows["stash_url"]["value"] == box.stash.url
    assert rows["stash_url"]["source"] == FROM_STASH
    diagnosed = json.loads(cli("--json", "diagnose").output)
    assert diagnosed[0]["detail"].endswith(
        f"answers at {box.stash.url} (the connection Stash gave the plugin (its last hook or task))"
    )


@pytest.mark.parametrize(
    "address",
    [
        "{url}/library/metadata/1?X-Plex-Token=aBcDeFgH12345",
        # Typed without the scheme: refused for that, still never repeated with the token.
        "{host}/?X-Plex-Token=aBcDeFgH12345",
        "user:aBcDeFgH12345@{host}",
    ],
)
def test_a_plex_url_carrying_the_token_is_shown_nowhere_with_it(box, cli, monkeypatch, address):
    url = address.format(url=box.plex.url, host=box.plex.url.removeprefix("http://"))
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", url)
    for command in (("config", "check"), ("--json", "config", "check"), ("health",), ("diagnose",)):
        result = cli(*command, expect=2)
        assert "aBcDeFgH12345" not in result.output + result.stderr, command
        assert "plex_url" in result.output + result.stderr, command


@pytest.mark.parametrize(
    "address", ["user:sEcReT-pw-77@{host}", "http://[::1", "{host}?apikey=sEcReT-pw-77"]
)
def test_a_stash_url_that_is_refused_is_shown_nowhere_with_its_login(
    box, cli, monkeypatch, address
):
    monkeypatch.setenv(
        "STASH2PLEX_STASH_URL", address.format(host=box.stash.url.removeprefix("http://"))
    )
    monkeypatch.setenv("STASH2PLEX_STASH_API_KEY", "sEcReT-pw-77")
    for command in (("config", "check"), ("--json", "config", "check"), ("diagnose",), ("health",)):
        result = cli(*command, expect=2)
        said = result.output + result.stderr
        assert "sEcReT-pw-77" not in said and "Traceback" not in said, command
        assert "stash_url" in said, command
    rows = json.loads(cli("--json", "config", "check", expect=2).stdout)["settings"]
    assert rows[0]["key"] == "stash_url" and rows[0]["problem"] == "invalid (see below)"
    fix = json.loads(cli("--json", "diagnose", expect=2).stdout)[0]["fix"]
    assert "in the environment variable STASH2PLEX_STASH_URL" in fix
    key = {"key": "stash_api_key", "value": "***", "problem": None}  # read, never shown
    assert rows[1] == {**key, "source": "environment STASH2PLEX_STASH_API_KEY"}


def test_missing_required_setting_exits_2_naming_it(cli, monkeypatch):
    monkeypatch.delenv("STASH2PLEX_PLEX_TOKEN")
    result = cli("config", "check", expect=2)
    assert "plex_token" in result.output


def test_unknown_key_in_the_settings_file_is_named(box, cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("plex_tokn = 'x'\n")
    result = cli("--config", str(bad), "config", "check", expect=2)
    assert "plex_tokn" in result.output


@pytest.mark.parametrize(
    "key, value", [("plex_max_concurrency", "'four'"), ("plex_max_requests_per_second", "-1")]
)
def test_a_refused_setting_is_said_by_each_command_that_reads_the_settings(
    box, cli, tmp_path, key, value
):
    # The default is used instead; a user who set it to go faster (or gentler) is told.
    settings_file = tmp_path / "s2p.toml"
    settings_file.write_text(f"{key} = {value}\n")
    for command in (["sync", "--all"], ["health"]):
        said = cli("--config", str(settings_file), *command).stderr
        assert said.count(f"({key}) = ") == 1 and "not valid" in said, said


def test_sync_all_then_status_health_and_preview(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", box.library.path_map)
    cli("sync", "--all")
    matchable = [s for s in box.library.scenes.values() if s.files and s.in_plex]
    status = json.loads(cli("--json", "queue", "status").output)
    assert status["linked_scenes"] == len(matchable)
    assert status["pending"] == 0 and status["breaker"] == "closed"

    health = json.loads(cli("--json", "health").output)
    assert health["healthy"] is True and health["latency_ms"] >= 0

    scene = matchable[0]
    in_plex = box.item(scene).title
    box.stash.update_scene(scene.id, title="Previewed title")
    writes = box.writes()
    previews = json.loads(cli("--json", "preview", str(scene.id)).output)
    assert previews[0]["status"] == "would change"
    assert {"field": "title", "plex": in_plex, "stash": "Previewed title"} in previews[0]["changes"]
    assert box.writes() == writes


def test_health_exits_1_when_plex_is_down(box, cli):
    box.plex.faults.maintenance(True)
    result = cli("--json", "health", expect=1)
    assert json.loads(result.output)["healthy"] is False


def test_health_tells_a_slow_plex_from_one_that_is_down(box, cli):
    # Plex, answering before, now takes each request and answers after the user's
    # plex_timeout: running, but busy.
    box.settings(plex_timeout=1)
    cli("health")
    box.plex.faults.latency(2.5)
    said = " ".join(cli("health", expect=1).stderr.split())
    assert "did not answer within 1 s (read timeout)" in said
    assert "running but slow to answer" in said and "Start Plex" not in said


def test_diagnose_takes_plex_down_for_an_outage_not_a_setting(box, cli):
    """Plex down at an address where it answered (a 503 of its own while it starts; refused
    after it answered before) is the README's exit 1, as `health` says; only where it never
    answered is plex_url the likelier fault (exit 2)."""
    box.plex.faults.maintenance(True)  # Plex itself answers 503
    plex = {c["name"]: c for c in json.loads(cli("--json", "diagnose", expect=1).output)}["Plex"]
    assert not plex["ok"] and plex["setting"] == "" and "by themselves" in plex["fix"]
    box.plex.faults.maintenance(False)
    cli("health")  # Plex answered at this address: recorded
    box.plex.faults.refuse_connections()
    plex = {c["name"]: c for c in json.loads(cli("--json", "diagnose", expect=1).output)}["Plex"]
    assert not plex["ok"] and plex["setting"] == ""
    box.plex.faults.accept_connections()


def test_dead_letter_commands(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", box.library.path_map)
    with box.store() as store:
        store.enqueue([1, 2], "test")
        for job in store.claim_due("t", 2):
            store.apply(
                job, Decision("dead_letter", 5, error_class="transient", message="HTTP 502")
            )
    listed = json.loads(cli("--json", "dlq", "list").output)
    assert sorted(letter["scene_id"] for letter in listed) == [1, 2]
    assert "`stash2plex dlq retry`" in " ".join(cli("dlq", "list").output.split())
    # An error class picks dead letters out of the queue list too, as its help says.
    classed = json.loads(cli("--json", "queue", "list", "--reason", "transient").output)
    assert sorted(row["scene_id"] for row in classed) == [1, 2]
    assert cli("dlq", "list", "--class", "permanent").output.strip() == (
        "No dead letter of class permanent."
    )
    cli("dlq", "retry", "--class", "permanent")
    assert len(json.loads(cli("--json", "dlq", "list").output)) == 2
    cli("dlq", "purge", "--days", "30")
    assert len(json.loads(cli("--json", "dlq", "list").output)) == 2
    cli("dlq", "clear")
    assert json.loads(cli("--json", "dlq", "list").output) == []
    assert cli("dlq", "list").output.strip() == "No dead letter."
    outages = json.loads(cli("--json", "outages").output)
    assert outages["outages"] == 0 and outages["mttr_s"] is None


def test_diagnose_suggests_the_path_map_rule_that_makes_matching_exact(box, cli):
    result = cli("--json", "diagnose")
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["Stash"]["ok"] and checks["Plex"]["ok"] and checks["libraries"]["ok"]
    assert "by file name and size only" in checks["path mapping"]["detail"]
    assert f"'{box.library.path_map}'" in checks["path mapping"]["fix"]
    assert checks["covers"]["ok"] and " downloads (" in checks["covers"]["detail"]


def test_diagnose_tries_a_cover_download_as_a_sync_does(box, cli):
    """Stash answers every query but not its images (a proxy in front of the image routes, a
    broken screenshot file): every poster and background would fail, so Diagnose says so;
    one broken cover among good ones is that scene's problem."""
    box.stash.fail(403, images=True)
    result = cli("--json", "diagnose", expect=1)  # not a setting of ours: attention, not config
    covers = {c["name"]: c for c in json.loads(result.output)}["covers"]
    assert not covers["ok"]
    said = r"no cover could be downloaded from Stash \(scene \d+: .*403"
    assert re.match(said, covers["detail"]), covers
    assert "Stash answers queries but refuses or fails its images" in covers["fix"]
    assert len([r for r in box.stash.http_log if "/screenshot" in r[1]]) <= COVER_TRIES

    box.stash.clear()
    box.stash.fail(403, count=1, images=True)  # the first cover only
    covers = {c["name"]: c for c in json.loads(cli("--json", "diagnose", expect=1).output)}
    assert re.match(
        r"the cover of scene \d+ downloads .*, but scene \d+'s cannot", covers["covers"]["detail"]
    )
    assert "Generate" in covers["covers"]["fix"]

    box.settings(skip_poster=True, skip_art=True)  # no image is synced: nothing to check
    names = [c["name"] for c in json.loads(cli("--json", "diagnose").output)]
    assert "covers" not in names and "path mapping" in names


def test_a_cover_no_one_here_can_reach_points_at_external_host():
    unreachable = errors.TransientError(
        "Stash gives this scene's image at ext.invalid, which cannot be reached from here"
    )
    for error in (unreachable, errors.StashDownError("Stash is not reachable")):
        assert "external_host in Stash's config.yml" in _cover_fix(error)
    assert "external_host" not in _cover_fix(errors.TransientError("HTTP 500"))


def test_diagnose_fails_when_plex_holds_other_files(box, cli):
    for key in box.plex.items(box.section_id):
        box.plex.delete_item(key)
    box.plex.add_item(box.section_id, "/plex/media/unrelated.mp4", sizes=1)
    result = cli("--json", "diagnose", expect=2)  # a setting to change: a configuration error
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert not checks["path mapping"]["ok"]
    assert "0 of" in checks["path mapping"]["detail"]


@pytest.mark.parametrize("other", [None, "show"], ids=["no library", "only a TV library"])
def test_diagnose_says_to_add_a_library_to_a_plex_without_one_for_scenes(box, cli, other):
    box.plex.delete_section(box.section_id)
    if other:
        box.plex.add_section("TV Shows", ["/plex/tv"], type=other)
    result = cli("--json", "diagnose", expect=2)
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["Plex"]["ok"] and not checks["libraries"]["ok"]
    assert checks["libraries"]["fix"].startswith("In Plex, add a library of type Movies")


@pytest.mark.parametrize("proxy", [False, True], ids=["Plex's 500", "a proxy's 502"])
def test_health_tells_a_failing_plex_from_one_a_proxy_cannot_reach(box, cli, proxy):
    cli("health")  # Plex answered with these settings: what follows is no wrong address
    box.plex.faults.fail(502 if proxy else 500, proxy=proxy)
    said = " ".join(cli("health", expect=1).stderr.split())
    assert said.startswith("stash2plex: Plex is NOT healthy: ")
    if proxy:  # Plex did not answer: it is not "running but failing"
        assert "Plex behind it did not answer" in said and "Start Plex" in said
        assert "running but failing" not in said
    else:
        assert "Plex is running but failing" in said


def test_a_scene_shown_without_stash_does_not_claim_stash_dropped_its_values(box, cli, monkeypatch):
    cli("sync", "--all")
    scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex and s.title)
    monkeypatch.setenv("STASH2PLEX_STASH_URL", "http://127.0.0.1:9")  # nothing listens
    shown = " ".join(cli("scene", str(scene.id)).stdout.split())
    assert "Stash was not asked (Stash is not reachable at" in shown  # tables fold lines
    assert "not known here (its fingerprint is kept; Stash was" in shown
    assert "a value Stash no longer has" not in shown


def test_a_sync_of_unchanged_scenes_says_when_plex_lost_the_library(box, cli, monkeypatch):
    """An unchanged scene asks Plex nothing, but the one read of Plex's libraries a Sync makes
    finds the library gone: the Sync says so and holds the queue (exit 2), instead of "in
    sync with Plex"."""
    monkeypatch.setenv("STASH2PLEX_PLEX_LIBRARY", "Stash Scenes")
    cli("sync", "--all")
    scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
    box.plex.delete_section(box.section_id)
    box.plex.add_section("Films", ["/plex/films"])
    said = " ".join(cli("sync", str(scene.id), expect=2).stderr.split())
    assert "Plex has no library named 'Stash Scenes'" in said, said


def test_a_sync_of_unchanged_scenes_says_when_plex_is_down(box, cli):
    """Nothing to push, but the Sync asked Plex for its libraries and Plex is down: the
    person is told (exit 1, as README says for Plex down), and the scenes wait for it."""
    cli("sync", "--all")
    box.plex.faults.maintenance()
    said = " ".join(cli("sync", "--all", expect=1).stderr.split())
    assert "Plex is unavailable (503" in said and "sync by themselves when Plex is back" in said
    box.plex.faults.maintenance(False)

    def drained() -> bool:
        with box.store() as store:
            return set(store.job_counts()) == {"done"}

    wait_until(drained, timeout=60, message="the queue to drain once Plex is back")


def test_diagnose_names_the_token_setting_when_plex_rejects_it(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-000")
    result = cli("--json", "diagnose", expect=2)  # a setting to change: a configuration error
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert not checks["Plex"]["ok"] and "Plex token (plex_token)" in checks["Plex"]["fix"]
    # Where each setting came from: the fix and the settings check name the variable.
    assert "environment variable STASH2PLEX_PLEX_TOKEN" in checks["Plex"]["fix"]
    assert (
        "Plex token (plex_token): environment variable STASH2PLEX_PLEX_TOKEN"
        in checks["settings"]["detail"]
    )
    assert checks["Plex"]["setting"] == "plex_token"
    assert "wrong-token-000" not in result.output


def test_diagnose_blames_the_address_not_the_token_for_a_closed_port_with_401_in_it(
    box, cli, monkeypatch
):
    with socket.socket() as probe:  # a port nothing listens on, spelled with "401" in it
        for port in range(32401, 65000, 1000):
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", f"http://127.0.0.1:{port}")
    result = cli("--json", "diagnose", expect=2)  # a setting to change
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["Plex"]["setting"] == "plex_url", checks["Plex"]
    assert "token" not in checks["Plex"]["fix"].lower()


def test_reconcile_reports_exits_1_on_differences_and_fix_repairs(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", box.library.path_map)
    cli("sync", "--all")
    scene = box.find(lambda s: bool(s.title) and len(s.files) == 1)
    box.stash.update_scene(scene.id, title="Renamed without a hook")

    report = json.loads(cli("reconcile", "--json", expect=1).output)
    assert report["results"]["stale"] == 1 and report["repaired"] is False
    [sample] = report["samples"]["stale"]
    assert sample["scene_id"] == scene.id and "title" in sample["fields"]
    assert report["plex_requests"]["total"] >= 1 and report["stash_requests"] >= 1

    cli("reconcile", "--fix")
    assert box.item(scene).title == "Renamed without a hook"
    last = json.loads(cli("--json", "reconcile", "--last").output)
    assert last["trigger"] == "command" and last["fix"] is True
    assert json.loads(cli("reconcile", "--json").output)["results"]["stale"] == 0


def test_sync_since_takes_a_duration_or_a_date_and_rejects_anything_else(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", box.library.path_map)
    cli("sync", "--all")
    scene = box.find(lambda s: bool(s.title) and len(s.files) == 1)
    box.stash.update_scene(scene.id, title="Changed an hour ago, or less")
    result = cli("sync", "--since", "1h")
    assert "queued 1 scene changed in Stash since" in result.output
    assert box.item(scene).title == "Changed an hour ago, or less"
    assert "nothing changed in Stash since" in cli("sync", "--recent").output
    bad = cli("sync", "--since", "yesterday", expect=2)
    assert "a duration (90m, 6h, 2d, 1w)" in bad.output
    cli("sync", "--all", "--since", "1h", expect=2)


def test_a_command_meeting_an_unreadable_store_says_it_was_replaced_before_answering(box, cli):
    cli("queue", "status")  # the store exists
    store_file = box.data_dir / "stash2plex.db"
    store_file.write_bytes(b"this is not a database" * 100)
    result = cli("--json", "queue", "status")
    assert "was unreadable" in result.stderr and "Sync All Scenes" in result.stderr
    assert json.loads(result.stdout)["pending"] == 0  # the answer itself stays machine-readable
    assert list(box.data_dir.glob("stash2plex.db.unreadable-*"))
