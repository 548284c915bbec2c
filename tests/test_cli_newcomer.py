"""What a newcomer following the README met, as the command line answers it now: counted
nouns in the right number, no date for a job that waits for a change, an availability that
says its window, `scene` for an unknown id and for a synced one, `serve` without its extra,
preview and dry-run exit codes with a hint when nothing would change, `config check` and
`diagnose` exit codes, and a wrong library named with the libraries Plex has."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from stash2plex.store.holds import PARKED
from stash2plex.words import plural

from . import test_cli_people as people
from .conftest import wait_until
from .sandbox import PLEX_TOKEN
from .seeding import wait

REPR, matchable = people.REPR, people.matchable
box, cli = people.box, people.cli  # the same sandbox and command-line fixtures

DATE = re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}\b")


def test_plural_is_one_helper_for_every_count():
    assert plural(1, "scene") == "1 scene"
    assert plural(0, "scene") == "0 scenes"
    assert plural(2, "library", "libraries") == "2 libraries"
    assert plural(30.0, "day") == "30 days" and plural(1.0, "day") == "1 day"


def test_one_scene_is_one_scene_not_1_scenes(box, cli):
    scene = matchable(box)[0]
    result = cli("sync", str(scene.id), str(scene.id))  # named twice: still one scene
    assert "queued 1 scene" in result.stderr and "1 scenes" not in result.output
    listed = cli("dlq", "purge", "--days", "1").stdout
    assert "purged 0 dead letters older than 1 day" in listed


def test_an_empty_queue_list_is_a_sentence(box, cli):
    said = cli("queue", "list").stdout
    assert said.strip() == (
        "No job is queued, being synced or waiting (dead letters: `stash2plex dlq list`)."
    )
    filtered = cli("queue", "list", "--reason", "ambiguous").stdout
    assert filtered.strip() == "No job in that state or waiting for that reason."
    assert json.loads(cli("--json", "queue", "list").stdout) == []
    mistyped = cli("queue", "list", "--reason", "plex-down", expect=2)  # not a reason at all
    assert "'plex_down'" in mistyped.output


def test_a_parked_job_waits_for_a_change_and_shows_no_date(box, cli):
    with box.store() as store:
        store.enqueue([5], "test")
        wait(store, store.job(5), reason="ambiguous", due_at=PARKED, error="2 Plex items")
    rows = json.loads(cli("queue", "list", "--json").stdout)
    assert rows[0]["next_attempt"] == "when something changes" and rows[0]["due_at"] is None
    text = cli("queue", "list").stdout
    assert "when something changes" in text
    assert "2286" not in text and "31688" not in text  # no date ~1e18 seconds away
    shown = cli("scene", "5").stdout
    assert "when something changes" in shown and "waiting: ambiguous" in shown
    with box.store() as store:
        retry = dict(reason="retry", due_at=store.clock() + 60, attempts=1, error="HTTP 500")
        wait(store, store.job(5), **retry)
    assert re.search(r"failed attempts\s+│\s+1\b", cli("scene", "5").stdout)


def test_availability_says_which_window_it_covers(box, cli):
    with box.store() as store:
        now = store.clock()
        store.record_outage(now - 600, now - 540, jobs_affected=3)
    text = cli("outages").stdout
    assert re.search(r"availability\s+│\s+\d+(\.\d+)? % over the last \d+ min", text), text
    assert "when Stash2Plex began watching" in text
    assert not REPR.search(text)


def test_scene_that_stash_does_not_have_is_one_sentence_and_exit_2(box, cli):
    result = cli("scene", "99999", expect=2)
    assert result.stdout == ""
    assert "Stash has no scene 99999, and Stash2Plex has no record of it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_scene_detail_shows_state_link_error_and_next_attempt(box, cli):
    scene = matchable(box)[0]
    cli("sync", str(scene.id))
    text = " ".join(cli("scene", str(scene.id)).stdout.split())
    assert "state │ in sync with Plex" in text
    with box.store() as store:
        link = store.link(scene.id)
    assert f"ratingKey {link.rating_key} in library section {link.section_id}" in text
    assert "last error │ —" in text and "next attempt │" in text
    assert "attempts" not in text  # a synced job has no failed attempts to show
    assert not REPR.search(text)
    # The worker recorded which server it talked to: the link opens the item itself, with no
    # health check run first.
    machine = box.plex.machine_identifier
    item_page = f"#!/server/{machine}/details?key=%2Flibrary%2Fmetadata%2F{link.rating_key}"
    # On a line of its own, whole: a terminal keeps a long link one link to click.
    raw = cli("scene", str(scene.id)).stdout
    assert f"\nOpen in Plex: {box.plex.url}/web/index.html{item_page}\n" in raw


def test_serve_without_its_extra_says_what_to_install():
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from stash2plex.cli import main\n"
        "main(['serve'])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "pip install 'stash2plex[serve]'" in run.stderr and "starlette" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_preview_exit_codes_follow_the_readme(box, cli, monkeypatch):
    scene = matchable(box)[0]
    cli("sync", str(scene.id))
    unchanged = cli("preview", str(scene.id))  # 0, and says what to do when nothing changes
    assert "(kept)" in unchanged.stdout and "Nothing would change" in unchanged.stderr
    assert "sync --force" in unchanged.stderr
    dry = cli("sync", "--dry-run", str(scene.id))
    assert "Nothing would change" in dry.stderr
    cli("preview", "99999", expect=2)  # a scene Stash does not have: bad input
    cli("sync", "--dry-run", "99999", expect=2)
    cli("preview", "abc", expect=2)  # usage
    unplaced = matchable(box)[1]
    box.plex.delete_item(box.rating_key(unplaced))  # its file is not in Plex (any more)
    missing = cli("preview", str(unplaced.id), expect=1)  # cannot sync as it is: attention
    assert "not in Plex" in missing.stderr
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", "http://127.0.0.1:1")
    down = cli("preview", str(scene.id), expect=1)  # Plex unreachable: attention
    assert "not reachable" in down.stderr


def test_config_check_exits_2_for_a_refused_value_and_masks_secrets(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_SKIP_TITLE", "maybe")
    result = cli("config", "check", expect=2)
    text = " ".join(result.stdout.split())
    assert "invalid, default used" in text and "on or off" in result.output
    assert "True" not in result.stdout and "False" not in result.stdout
    assert "environment variable STASH2PLEX_SKIP_TITLE" in text
    assert "Plex URL (plex_url)" in result.stdout
    data = json.loads(cli("config", "check", "--json", expect=2).stdout)
    assert data["invalid"] == ["skip_title"]
    token = next(row for row in data["settings"] if row["key"] == "plex_token")
    assert token["value"].startswith("***")


def test_a_wrong_library_names_the_libraries_and_the_setting(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PLEX_LIBRARY", "Moviez")
    result = cli("--json", "diagnose", expect=2)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    library = checks["libraries"]
    assert not library["ok"] and library["setting"] == "plex_library"
    assert "no library named 'Moviez'" in library["detail"]
    assert "'Stash Scenes' (a Movies or Other Videos library)" in library["detail"]
    assert "Plex libraries (plex_library)" in library["detail"]
    assert "environment variable STASH2PLEX_PLEX_LIBRARY" in library["fix"]
    sources = checks["settings"]["detail"]
    assert "Plex libraries (plex_library): environment variable STASH2PLEX_PLEX_LIBRARY" in sources
    human = cli("diagnose", expect=2)
    assert "1 problem found; first: libraries: Change Plex libraries (plex_library)" in human.stderr
    monkeypatch.setenv("STASH2PLEX_PLEX_LIBRARY", "Stash Scene")  # a letter short
    checks = {c["name"]: c for c in json.loads(cli("--json", "diagnose", expect=2).stdout)}
    said = checks["libraries"]["detail"]
    assert "no library named 'Stash Scene' (did you mean 'Stash Scenes'?)" in said, said
    assert checks["libraries"]["fix"].endswith("to 'Stash Scenes'.")


def test_sync_all_in_an_outage_counts_every_scene_that_waits(box, cli):
    """Plex failing every write: the breaker opens after a few scenes and holds the rest,
    which were never tried. The table counts them, so it adds up to the sentence."""
    box.plex.faults.fail(503, route="^(PUT|POST) ")
    result = cli("sync", "--all", expect=1)
    told = re.search(r"(\d+) scenes wait and sync by themselves when Plex is back", result.stderr)
    assert told, result.stderr
    text = " ".join(result.stdout.split())
    tried = re.search(r"waiting \(all\) │ (\d+) waiting for Plex to come back", text)
    untried = re.search(r"queued, not tried yet │ (\d+)", text)
    assert tried and untried, text
    assert int(tried[1]) + int(untried[1]) == int(told[1]) == 25
    outages = cli("outages", expect=1)  # like `health`: Plex is down, that needs attention
    assert re.search(r"\bongoing\b", outages.stdout)
    assert "Plex has been down since" in outages.stderr and "sync by themselves" in outages.stderr


def test_a_scene_plex_failed_says_why_and_when_and_syncs_again_when_asked(box, cli):
    """A scene waiting ten minutes for its retry, asked for again while Plex refuses its edit
    (a 500 on every try): it is tried at once, not after its backoff, and the sync names
    Plex's failure and the next try (not the match settings, which are fine). Sync All tries
    it at once too, once Plex is fixed."""
    scene, other = matchable(box)[:2]
    edits = "PUT /library/sections/{id}/all"
    with box.store() as store:  # earlier failures, their retries ten minutes away
        store.enqueue([scene.id, other.id], "hook")
        later = store.clock() + 600
        wait(store, store.job(scene.id), reason="retry", due_at=later, attempts=1, error="x")
        wait(store, store.job(other.id), reason="retry", due_at=later, error="older failure")
    box.plex.faults.fail(500, route=r"^PUT ")
    said = " ".join(cli("sync", str(scene.id), expect=1).stderr.split())
    assert box.plex.log.count(edits) > 0  # tried now, not in ten minutes
    job = box.job(scene.id)
    assert job.reason == "retry" and job.attempts >= 2  # the failed tries still count
    failure = f"It failed with: Plex failed the edit of Plex item {box.rating_key(scene)} (HTTP 500"
    assert failure in said
    # Judged on this sync's scene: the other one's older failure is not blamed.
    assert "1 scene waits (1 to be retried)" in said and "older failure" not in said
    # The jitter of the backoff may make the next try due at once.
    assert re.search(r"The next try is (now|at \d{4}-\d{2}-\d{2} \d{2}:\d{2} \(in \d+ s\)),", said)
    assert "syncing the scene again tries it at once" in said and "plex_library" not in said
    # Each sync asked for spends a try: how many are left before the dead letters is said.
    tries = re.search(r"That was try (\d) of 5 \(the setting max_retries\); (\d) more fail", said)
    assert tries is not None and int(tries[1]) == job.attempts and int(tries[2]) == 5 - job.attempts
    assert "goes to the dead letters, where Retry Dead Letters (or `stash2plex dlq retry`)" in said

    wait_until(lambda: box.job(scene.id).state == "waiting", message="the retry to end")
    with box.store() as store:  # its next retry ten minutes away again
        wait(store, store.job(scene.id), reason="retry", due_at=later, attempts=2, error="x")
    box.plex.faults.clear()
    everything = cli("sync", "--all")
    assert "waiting to be retried" not in everything.output
    assert box.job(scene.id).state == "done"
    assert box.item(scene).title == scene.title


def test_a_sync_that_reached_plex_says_why_the_scenes_it_left_waiting_wait(box, cli):
    """Some scenes reached Plex and some were refused (a reverse proxy's 502, Plex behind it
    not answering): the sync did its job (exit 0, as README says), but the refused ones are
    named with their failure and next try, not only counted in the table."""
    cli("sync", "--all")
    changed = matchable(box)[:2]
    for scene in changed:
        box.stash.update_scene(scene.id, title=f"Changed behind the proxy {scene.id}")
    box.plex.faults.fail(502, route=r"^PUT ", proxy=True)

    result = cli("sync", "--all")

    said = " ".join(result.stderr.split())
    assert "2 scenes did not reach Plex and wait (2 to be retried)." in said, said
    assert "the first to be retried, failed with: a reverse proxy at" in said
    assert "answered HTTP 502 to the edit of Plex item" in said and "The next try is" in said
    assert "unchanged │ " in " ".join(result.stdout.split())


def test_a_sync_counts_its_own_scenes_apart_from_the_queue(box, cli):
    """A job an earlier run queued and nobody drained is synced by the same drain: one scene
    queued, two synced, and the table says why. A scene left waiting from before and not
    touched is no outcome of this sync: it shows only in the rows that count the queue."""
    first, untouched, earlier = matchable(box)[:3]
    with box.store() as store:
        store.enqueue([untouched.id, earlier.id], "earlier run")
        wait(store, store.job(untouched.id), reason="not_in_plex", due_at=PARKED)
    text = " ".join(cli("sync", str(first.id)).stdout.split())
    counted = r"synced │ 2 .*tried, waits again │ 0 .*waiting \(all\) │ 1 not in Plex yet"
    assert re.search(counted, text), text
    assert "1 scene queued before this sync was taken up too and counted" in text
    # The scene asked for is found at once, where it stands now.
    assert text.index(f"scene {first.id} │ in sync with Plex") < text.index("synced │ 2"), text
    said = json.loads(cli("--json", "sync", str(first.id)).stdout)
    assert said["scenes"] == {str(first.id): "in sync with Plex"}
    alone = " ".join(cli("sync", str(first.id)).stdout.split())  # nothing else taken up
    assert "queued before this sync" not in alone and "tried, waits again │ 0" in alone, alone


def test_a_fixed_proxy_variable_takes_effect_at_the_next_command(box, cli, monkeypatch):
    """A dead HTTP_PROXY in the shell: the background worker the command started cannot reach
    Plex through it, and the queue holds naming the variable (Plex never answered this way:
    no outage). Unsetting the variable counts at the next command: the old worker (which
    keeps its environment) hands the queue over, and Plex is probed at once rather than at
    the pause's next backed-off check."""
    stash_address = box.stash.url.split("//", 1)[1]
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", stash_address)  # Stash direct, Plex through the proxy
    monkeypatch.delenv("no_proxy", raising=False)
    broken = cli("sync", "--all", expect=2)  # a setting to fix
    assert "through the proxy http://127.0.0.1:9 (HTTP_PROXY)" in broken.stderr, broken.stderr
    with box.store() as store:
        pause = store.holds().pause
        assert store.link_count() == 0 and store.outages() == []
    assert (pause.kind, pause.setting) == ("config", "HTTP_PROXY")
    assert "check HTTP_PROXY" in pause.message

    monkeypatch.delenv("HTTP_PROXY")
    fixed = cli("queue", "process")
    assert "proxy" not in fixed.output and "Plex is down" not in fixed.output
    with box.store() as store:
        assert store.holds().held is False
        assert store.link_count() == len(matchable(box))
        assert store.dead_letters() == []


def test_health_with_plex_back_but_the_breaker_open_says_how_to_resume(box, cli):
    from dataclasses import replace

    from stash2plex.records import BreakerState

    with box.store() as store:
        store.enqueue([1], "test")
        now = store.clock()
        opened = BreakerState("open", opened_at=now, next_probe_at=now + 3600, reason="Plex down")
        store.change_holds(lambda holds: (replace(holds, breaker=opened), []))
    result = cli("health", expect=1)
    said = " ".join(result.stderr.split())
    assert "Plex is healthy, but the queue is still held by an earlier check: Plex down" in said
    assert "Process Queue (or `stash2plex queue process`) drains the queue now" in said
    with box.store() as store:  # and a running worker probes now, not in an hour
        assert store.holds().breaker.next_probe_at <= store.clock()


@pytest.mark.parametrize(
    ("variable", "wrong", "said"),
    [
        ("STASH2PLEX_PLEX_LIBRARY", "Stash Scene", "no library named 'Stash Scene'"),
        ("STASH2PLEX_PLEX_TOKEN", "wrong-token-0000", "rejected the token"),
    ],
)
def test_a_setting_fixed_in_the_shell_counts_at_the_next_command(
    box, cli, monkeypatch, variable, wrong, said
):
    scene = matchable(box)[0]
    monkeypatch.setenv(variable, wrong)
    broken = cli("sync", "--force", str(scene.id), expect=2)
    assert said in broken.stderr and variable in broken.stderr
    monkeypatch.delenv(variable)
    if variable == "STASH2PLEX_PLEX_TOKEN":
        monkeypatch.setenv(variable, PLEX_TOKEN)
    status = json.loads(cli("--json", "queue", "status", expect=1).stdout)
    here = status.get("paused_here", "")
    gone = f"{variable} is not set here, but the worker that found this was started with it"
    assert here.startswith(gone) is (variable != "STASH2PLEX_PLEX_TOKEN"), status  # token set again
    assert here.endswith("`stash2plex queue process` drains with this shell's settings") is (
        variable != "STASH2PLEX_PLEX_TOKEN"
    )
    assert variable in status["paused"]  # the stored hold, as the worker wrote it
    fixed = cli("sync", str(scene.id))
    assert said not in fixed.output and variable not in fixed.output
    with box.store() as store:
        assert store.holds().held is False and store.link(scene.id) is not None


def test_health_checks_the_library_the_settings_name(box, cli, monkeypatch):
    healthy = " ".join(cli("health").stdout.split())
    assert "syncing into 'Stash Scenes'" in healthy
    monkeypatch.setenv("STASH2PLEX_PLEX_LIBRARY", "Stash Scene")
    result = cli("health", expect=2)
    said = " ".join(result.stderr.split())
    assert "Stash2Plex cannot use Plex: Plex has no library named 'Stash Scene'" in said
    assert "STASH2PLEX_PLEX_LIBRARY" in said


def test_a_wrong_token_is_a_setting_to_fix_not_plex_unhealthy(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-1234")
    said = " ".join(cli("health", expect=2).stderr.split())
    assert "Stash2Plex cannot use Plex: Plex rejected the token (401 Unauthorized)" in said
    assert "NOT healthy" not in said and "wrong-token-1234" not in said


def test_an_empty_variable_is_named_as_what_hides_the_setting(box, cli, monkeypatch):
    box.stash.plugin_settings = {"plex_token": PLEX_TOKEN}  # set in Stash, emptied here
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "")
    said = " ".join(cli("health", expect=2).stderr.split())
    assert "STASH2PLEX_PLEX_TOKEN is set but empty, which hides the value in Stash's" in said
    assert "unset it, or give Plex token (plex_token) a value there" in said


def test_a_misspelt_variable_is_pointed_out(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKN", "abc")
    checked = cli("config", "check")
    assert "STASH2PLEX_PLEX_TOKN is not a setting Stash2Plex reads (misspelt?)" in checked.stderr
    assert json.loads(cli("--json", "config", "check").stdout)["unknown_variables"] == [
        "STASH2PLEX_PLEX_TOKN"
    ]
    diagnosed = " ".join(cli("diagnose", expect=1).stdout.split())
    assert "STASH2PLEX_PLEX_TOKN is set but is not a setting Stash2Plex reads" in diagnosed


def test_ctrl_c_while_a_drain_is_followed_says_the_worker_goes_on(box, cli, monkeypatch):
    import os
    import signal

    box.plex.faults.latency(0.3)  # a slow Plex: the drain goes on for seconds
    with box.store() as store:
        store.enqueue([s.id for s in matchable(box)], "test")
    process = subprocess.Popen(
        [sys.executable, "-m", "stash2plex", "--data-dir", str(box.data_dir), "queue", "process"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    wait_until(lambda: box.writes() > 0, timeout=30, message="the drain to reach Plex")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "go on syncing in the background worker" in stderr and "Traceback" not in stderr


def test_a_long_value_wraps_in_a_narrow_terminal_and_is_never_cut(box, cli, monkeypatch):
    scene = matchable(box)[0]
    cli("sync", str(scene.id))
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("scene", str(scene.id)).stdout
    assert "…" not in shown
    with box.store() as store:
        link = store.link(scene.id)
    cells = [line.split("│")[2].strip() for line in shown.splitlines() if line.count("│") == 3]
    assert link.plex_path.replace(" ", "") in "".join(cells).replace(" ", "")  # folded, whole
    # The link is never folded (a terminal wraps it and keeps it one link), and never cut.
    assert f"key=%2Flibrary%2Fmetadata%2F{link.rating_key}\n" in shown


def test_a_scene_id_that_is_not_a_number_says_what_a_scene_id_is(box, cli):
    said = cli("sync", "abc", expect=2).output
    assert "'abc' is not a valid scene id (the number in the scene's address in Stash)" in said


def test_a_wrong_token_is_caught_even_when_the_scene_is_unchanged(box, cli, monkeypatch):
    scene = matchable(box)[0]
    cli("sync", str(scene.id))  # Plex answered these settings: proven
    # The background worker asks once, after its first batch, whether Plex is claimed.
    wait_until(lambda: box.plex.log.count("GET /identity") == 1, message="the worker's ask")
    requests = box.plex.log.count()
    # Unchanged, proven settings: Plex is asked only for its libraries (a Sync a person asks
    # for reads them once, to see a library removed and added again).
    cli("sync", str(scene.id))
    assert [e.route for e in box.plex.log.entries[requests:]] == ["GET /library/sections"]

    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-0000")
    result = cli("sync", str(scene.id), expect=2)  # unchanged, but the token is new
    assert "rejected the token" in result.stderr and "wrong-token-0000" not in result.output


def test_the_drain_bar_counts_scenes_and_says_it_syncs_the_whole_queue():
    # It showed a share only ("45%"), and counted the scenes already waiting without saying so.
    from rich.console import Console

    from stash2plex.cli import DRAIN_BAR_LABEL, drain_bar

    console = Console(record=True, force_terminal=True, width=100)
    with drain_bar(disable=False, console=console) as bar:
        task = bar.add_task(DRAIN_BAR_LABEL, total=None)
        bar.update(task, completed=3, total=10)
        bar.refresh()
    text = console.export_text()
    assert "syncing the queue" in text and "3/10 scenes" in text
    assert drain_bar(disable=True).disable  # --json: no bar on stdout


@pytest.mark.parametrize(
    "address",
    [
        "http://user:stash-secret-KEY-42@127.0.0.1:2",
        "http://127.0.0.1:2/?apikey=stash-secret-KEY-42",
        "user:stash-secret-KEY-42@127.0.0.1:2",
        "http://u:stash-secret-KEY-42/x@127.0.0.1:2",  # a / in the password: no netloc @
    ],
)
def test_a_key_typed_into_the_stash_address_is_never_shown(box, cli, monkeypatch, address):
    monkeypatch.setenv("STASH2PLEX_STASH_URL", address)
    for args in (("sync", "5"), ("--json", "diagnose"), ("health",)):
        result = cli(*args, expect=2)
        assert "stash-secret-KEY-42" not in result.output, (args, result.output)
        assert "127.0.0.1:2" in result.output  # the address itself is named
    said = cli("sync", "5", expect=2).stderr
    assert "STASH2PLEX_STASH_API_KEY" in said or "http://" in said, said


def test_config_check_without_stash_does_not_call_stashs_settings_missing(box, cli, monkeypatch):
    for key in ("url", "token"):  # both saved in Stash's plugin settings only
        variable = f"STASH2PLEX_PLEX_{key.upper()}"
        box.stash.plugin_settings[f"plex_{key}"] = os.environ[variable]
        monkeypatch.delenv(variable)
    monkeypatch.setenv("STASH2PLEX_STASH_URL", "http://user:stash-secret-KEY-42@127.0.0.1:2")
    said = " ".join(cli("config", "check", expect=2).output.split())
    assert "missing" not in said and "stash-secret-KEY-42" not in said
    assert "not set here (Stash not read)" in said
    assert "not set in the environment or the settings file: Plex URL (plex_url), Plex" in said
    assert "may be set in Stash, whose settings could not be read: fix that first" in said


def test_an_invalid_address_in_a_variable_is_one_problem_fixed_where_it_is_set(
    box, cli, monkeypatch
):
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", "plex.local:32400")  # no http://
    checks = json.loads(cli("--json", "diagnose", expect=2).output)
    failed = [c for c in checks if not c["ok"]]
    assert [c["name"] for c in failed] == ["setting plex_url"], failed  # not "missing" too
    assert "starting with http:// or https://, such as http://plex.local:32400" in str(failed)
    checked = " ".join(cli("config", "check", expect=2).output.split())
    assert "plex.local:32400 (not valid)" in checked and "missing" not in checked
    assert failed[0]["fix"].startswith("Correct the environment variable STASH2PLEX_PLEX_URL")
    assert "1 problem found" in cli("diagnose", expect=2).stderr


def test_an_empty_variable_is_where_diagnose_says_to_fix_a_missing_setting(box, cli, monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PLEX_URL", "")  # compose's ${PLEX_URL} left unset
    checks = json.loads(cli("--json", "diagnose", expect=2).output)
    missing = next(c for c in checks if c["name"] == "settings" and not c["ok"])
    assert missing["fix"].startswith("Correct the environment variable STASH2PLEX_PLEX_URL")
    assert "It is empty there" in missing["fix"]


def test_health_of_a_plex_failing_every_request_says_to_look_at_its_log_not_to_start_it(box, cli):
    box.plex.faults.fail(500)
    said = " ".join(cli("health", expect=1).stderr.split())
    assert "Plex is NOT healthy: Plex failed the request (HTTP 500" in said
    assert "Plex is running but failing: its log says why" in said and "Start Plex" not in said


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path, output):
    """`stash2plex queue list --json | head -1`: the reader leaves early; the command stops
    without a "Broken pipe" message, with the exit code of a command SIGPIPE ended (whatever
    printed the output: a script with `pipefail` tells it from "needs attention"), and the
    queue is untouched."""
    from stash2plex.store.db import Store

    with Store.open(tmp_path) as store:
        store.enqueue(range(1, 3001), "test")
    command = [sys.executable, "-m", "stash2plex", "--data-dir", str(tmp_path), "queue", "list"]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        run = subprocess.run(
            [*command, "--limit", "3000", *output],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)

    assert run.returncode == 141  # as for a command SIGPIPE ended (README)
    assert run.stderr == "", run.stderr
    with Store.open(tmp_path) as store:
        assert store.job_counts()["pending"] == 3000


def _worker_pid(data_dir) -> int | None:
    """The pid the worker lock file records (None when no worker holds it)."""
    from stash2plex.engine.worker_lock import LOCK_FILENAME, worker_running

    text = (data_dir / LOCK_FILENAME).read_text().strip()
    return int(text) if worker_running(data_dir) and text.isdigit() else None


def test_a_command_that_cannot_use_its_own_settings_leaves_the_running_worker_alone(
    box, cli, monkeypatch
):
    """A worker waits out an outage (Plex failing every write); a command given a Stash
    address it cannot use is refused (exit 2) before it asks that worker to hand the queue
    over: the worker goes on, and syncs the scenes when Plex is back."""
    from stash2plex.engine.handover import HANDOVER_KEY

    box.plex.faults.fail(503, route="^(PUT|POST) ")
    cli("sync", "--all", expect=1)
    draining = _worker_pid(box.data_dir)
    assert draining is not None

    monkeypatch.setenv("STASH2PLEX_STASH_URL", box.stash.url.removeprefix("http://"))
    refused = cli("sync", "--all", expect=2)
    assert "stash_url" in refused.stderr and "such as http://" in refused.stderr
    assert _worker_pid(box.data_dir) == draining
    with box.store() as store:
        assert store.get_value(HANDOVER_KEY) is None


def test_a_command_failing_after_it_took_the_queue_over_starts_a_worker_for_it(
    box, cli, monkeypatch
):
    """A command given other settings took the queue over (the running worker stopped), then
    Stash failed while it queued the scenes: a worker is started for the queue as a hook
    would start it, so what was queued before is not left without one."""
    import threading

    from stash2plex.engine.worker_lock import worker_running

    box.plex.faults.fail(503, route="^(PUT|POST) ")
    cli("sync", "--all", expect=1)  # a worker waits out the outage with the fixture's settings
    first = _worker_pid(box.data_dir)
    monkeypatch.setenv("STASH2PLEX_DEBUG_LOGGING", "true")  # other settings: a handover
    held = box.stash.hold("FindSceneIds")
    threading.Timer(2.0, held.set).start()  # then Stash answers the queueing 503

    failed = cli("sync", "--all", expect=1)
    assert "Stash" in failed.stderr
    wait_until(lambda: worker_running(box.data_dir), message="a worker for the queue")
    assert _worker_pid(box.data_dir) not in (None, first)


def test_availability_shows_two_decimals_at_most_and_never_rounds_up():
    from stash2plex.operations.present import availability_words

    assert availability_words(91.32145, 0.0, 3600.0).startswith("91.32 % over the last 1 h")
    assert availability_words(99.996, 0.0, 3600.0).startswith("99.99 %")  # not "100 %"
    assert availability_words(100.0, 0.0, 3600.0).startswith("100 %")


def test_every_json_answer_that_fails_carries_its_error_and_exit_code(box, cli, monkeypatch):
    """README: with --json a failure is also `{"error", "exit_code"}` on stdout, in the one
    document a command prints (health and sync print theirs before they exit)."""
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-0000")
    health = json.loads(cli("--json", "health", expect=2).stdout)
    assert health["exit_code"] == 2 and "token" in health["error"]
    synced = json.loads(cli("--json", "sync", "--all", expect=2).stdout)
    assert synced["exit_code"] == 2 and "token" in synced["error"]
    assert "wrong-token-0000" not in json.dumps([health, synced])


def test_sigterm_while_a_command_queues_after_taking_over_leaves_a_worker(box, cli, monkeypatch):
    """The same, stopped by SIGTERM (a service manager, `kill`): exit 143 with the sentence,
    and a worker with the command's settings drains the queue."""
    import os
    import signal
    import subprocess
    import sys

    from stash2plex.engine.worker_lock import worker_running

    box.plex.faults.fail(503, route="^(PUT|POST) ")
    cli("sync", "--all", expect=1)  # a worker waits out the outage with the fixture's settings
    first = _worker_pid(box.data_dir)
    held = box.stash.hold("FindSceneIds")
    asked = box.stash.count("FindSceneIds")
    env = {**os.environ, "STASH2PLEX_DEBUG_LOGGING": "true"}  # other settings: a handover
    command = [sys.executable, "-m", "stash2plex", "--data-dir", str(box.data_dir), "sync", "--all"]
    running = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _worker_pid(box.data_dir) is None, message="the handover")
        wait_until(lambda: box.stash.count("FindSceneIds") > asked, message="the queueing")
        running.send_signal(signal.SIGTERM)
        _, said = running.communicate(timeout=30)
    finally:
        held.set()
    assert running.returncode == 143, said
    assert "go on syncing in the background worker" in said and "Traceback" not in said
    wait_until(lambda: worker_running(box.data_dir), message="a worker for the queue")
    assert _worker_pid(box.data_dir) not in (None, first)


def test_an_error_with_json_into_a_closed_pipe_keeps_its_sentence_and_code(tmp_path):
    """`--json` sends the error to stdout too; a reader gone from stdout must not silence
    the sentence on stderr nor turn "a setting to fix" (2) into another code."""
    command = [sys.executable, "-m", "stash2plex", "--data-dir", str(tmp_path), "--json"]
    env = {**os.environ, "STASH2PLEX_STASH_URL": "127.0.0.1:9"}  # refused: no http://
    read, write = os.pipe()
    os.close(read)
    try:
        run = subprocess.run(
            [*command, "sync", "1"], stdout=write, stderr=subprocess.PIPE, text=True, env=env
        )
    finally:
        os.close(write)
    assert run.returncode == 2, run.stderr
    assert "stash_url" in run.stderr and "Traceback" not in run.stderr
