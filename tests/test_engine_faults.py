"""Faults that must never end as lost edits or dead letters, each a kind found by trying to
break the engine: an answer that did not come from Plex, Plex failing only writes, a sick
server with only a few jobs queued, a hanging Plex, a busy Plex refusing some requests, Stash
failing every request, answers of the wrong shape in the probe path. The real worker against
the emulators; timers reached with an injected clock."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from stash2plex import errors
from stash2plex.clients.http import BUSY_RETRY_DELAYS
from stash2plex.clients.plex import PlexClient
from stash2plex.engine.worker import Worker
from stash2plex.engine.worker_lock import LOCK_FILENAME, worker_running
from stash2plex.sandbox.verify import library_problems
from stash2plex.store.db import Store, quarantine

from .conftest import wait_until
from .sandbox import PLEX_TOKEN, SteppedClock, sandbox

BUSY_TRIES = len(BUSY_RETRY_DELAYS) + 1
PROXY_PAGE = "<html><head><title>Maintenance</title></head><body><p>Back soon</p></body></html>"


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=20, seed=8) as opened:
        yield opened


def edited(box, count: int):
    """Sync the library once, then edit `count` scenes in Stash (their new titles must
    reach Plex)."""
    box.drain()
    scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex][:count]
    for number, scene in enumerate(scenes):
        box.stash.update_scene(scene.id, title=f"Edited {number}")
    box.queue(*[s.id for s in scenes])
    return scenes


def run_for(box, clock, minutes: int, step: int = 1) -> None:
    """Let the worker's timers run for `minutes` of the injected clock, `step` minutes at a
    time (each step a worker run: every probe and check due by then is made)."""
    for _ in range(0, minutes, step):
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        clock.offset += 60 * step


def library_added_again(box, scenes=None) -> int:
    """Add the "Stash Scenes" library to Plex (again), scanned: an item for each of `scenes`
    (in that order; all scenes Plex holds files of when None). Returns its section id."""
    if scenes is None:
        scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex]
    section = box.plex.add_section("Stash Scenes", ["/plex/media"])
    for scene in scenes:
        box.plex.add_item(section, [box.library.plex_path(f.path) for f in scene.files])
    return section


@pytest.mark.parametrize("body", [PROXY_PAGE, ""])
def test_an_answer_that_is_not_from_plex_is_an_outage_never_a_success(box, body):
    clock = SteppedClock()
    scenes = edited(box, 3)
    box.plex.faults.fail(200, body=body, proxy=True)

    run_for(box, clock, 3)

    with box.store() as store:
        assert store.dead_letters() == []
        assert store.holds().breaker.state == "open"
        assert "something other than Plex" in store.holds().breaker.reason
        assert all(store.job(s.id).state != "done" for s in scenes)
    box.plex.faults.clear()
    run_for(box, clock, 2)
    assert [box.item(s).title for s in scenes] == ["Edited 0", "Edited 1", "Edited 2"]


def test_plex_failing_only_writes_is_one_outage_that_backs_off(box):
    clock = SteppedClock()
    scenes = edited(box, 8)
    box.plex.faults.fail(500, route=r"^PUT ")
    synced_before = box.plex.log.count(route="PUT /library/sections/{id}/all")

    run_for(box, clock, 10)

    with box.store() as store:
        assert store.dead_letters() == []
        outages = store.outages()
        said = [e["message"] for e in store.recent_events(200)]
    assert len(outages) == 1, outages
    # Each probe passes (Plex reads fine) and the scene tried next fails: told once.
    assert sum(m.startswith("Plex is down") for m in said) == 1, said
    assert sum(m.startswith("Plex is back online") for m in said) <= 1, said
    assert sum(m.startswith("Plex answers again but still fails") for m in said) <= 1, said
    # Each write is sent up to three times (a refusal is asked again after a pause).
    edits = (
        box.plex.log.count(route="PUT /library/sections/{id}/all") - synced_before
    ) / BUSY_TRIES
    assert edits < 25, f"{edits} failing writes in 10 minutes: the probes did not back off"
    box.plex.faults.clear()
    run_for(box, clock, 3)
    assert all(box.item(s).title.startswith("Edited") for s in scenes)
    with box.store() as store:
        assert [o["ended_at"] is not None for o in store.outages()] == [True]


@pytest.mark.parametrize("how", ["500", "hang", "proxy 502"])
def test_a_sick_plex_with_few_jobs_queued_is_an_outage_not_dead_letters(box, how):
    # "proxy 502": Plex down behind nginx, which answers every request with its gateway error.
    clock = SteppedClock()
    if how == "hang":
        box.settings(plex_timeout=1)
    scenes = edited(box, 2)
    if how == "500":
        box.plex.faults.fail(500)
    elif how == "proxy 502":
        box.plex.faults.fail(502, proxy=True)
    else:
        box.plex.faults.latency(1.5)

    run_for(box, clock, 30, step=3)

    with box.store() as store:
        assert store.dead_letters() == []
        assert len(store.outages()) == 1
        assert store.holds().breaker.state in ("open", "half_open")
    box.plex.faults.clear()
    run_for(box, clock, 2)
    assert [box.item(s).title for s in scenes] == ["Edited 0", "Edited 1"]


@pytest.mark.parametrize(("status", "proxy"), [(500, False), (429, False), (502, True)])
def test_a_busy_plex_refusing_some_requests_is_no_outage_and_costs_no_attempt(
    tmp_path, status, proxy
):
    # A Plex whose database is busy under bulk edits refuses some requests and serves the
    # next (or a reverse proxy in front of it answers 502 for it): every request of the sync,
    # reads and writes, fails one time in four here. The four sync threads share that count,
    # so a request can meet a refusal on each of its tries: such a job is tried again at its
    # retry, with the clock stepped there.
    clock = SteppedClock()
    with sandbox(tmp_path, scenes=60, seed=3) as box:
        box.plex.faults.fail(status, every=4, proxy=proxy)

        box.queue()
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        with box.store() as store:
            first_run = store.job_counts()
        for _ in range(4):
            clock.offset += 600
            Worker(box.data_dir, clock=clock).run(until_idle=True)

        refused = [e for e in box.plex.log.entries if e.status == status]
        with box.store() as store:
            jobs = store.jobs()
            outages = store.outages()
            letters = store.dead_letters()
        assert outages == [] and letters == []
        assert len(refused) > 40
        assert {job.state for job in jobs} == {"done"}
        assert first_run.get("done", 0) >= 0.9 * len(jobs), first_run
        assert library_problems(box.plex, box.library) == {}


def test_a_stash_whose_database_is_locked_now_and_then_neither_pauses_nor_delays(tmp_path):
    # A library scan holds Stash's database: every other GraphQL request is refused with
    # "database is locked" (settings, scene reads, the tag hierarchy alike).
    with sandbox(tmp_path, scenes=60, seed=3) as box:
        Worker(box.data_dir).run(until_idle=True)
        scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex]

        def retitle_and_sync(prefix: str) -> tuple[int, int]:
            for scene in scenes:
                box.stash.update_scene(scene.id, title=f"{prefix} {scene.id}")
            logged = len(box.stash.log)
            report = box.drain(*[s.id for s in scenes])
            return report.synced, len(box.stash.log) - logged

        healthy = retitle_and_sync("Before")
        box.stash.graphql_error("beginning transaction: database is locked", every=2)
        synced, asked = retitle_and_sync("Scanned")

        with box.store() as store:
            assert store.holds().pause is None
            assert {job.state for job in store.jobs()} == {"done"}
            events = [e["message"] for e in store.recent_events(50)]
        assert not any("paused" in message for message in events), events
        assert synced == healthy[0] == len(scenes)
        assert asked >= 2 * healthy[1] - 1  # every other request refused and asked again
        assert library_problems(box.plex, box.library) == {}


@pytest.mark.parametrize("fault", ["500", "graphql"])
def test_stash_failing_every_request_pauses_instead_of_dead_letters(box, fault):
    clock = SteppedClock()
    scenes = edited(box, 2)
    if fault == "500":
        box.stash.fail(500)
    else:
        box.stash.graphql_error("database is locked")

    run_for(box, clock, 30, step=3)

    with box.store() as store:
        assert store.dead_letters() == []
        pause = store.holds().pause
        assert pause is not None and pause.kind == "stash_down"
        assert store.outages() == []  # Stash's trouble is no Plex outage
    box.stash.clear()
    run_for(box, clock, 2)
    assert [box.item(s).title for s in scenes] == ["Edited 0", "Edited 1"]


def test_one_bad_item_still_dead_letters_while_plex_is_healthy(box):
    clock = SteppedClock()
    [scene] = edited(box, 1)
    box.plex.faults.fail(500, route=rf"^PUT .*id={box.rating_key(scene)}\b")
    box.plex.faults.fail(500, route=r"^PUT ")

    run_for(box, clock, 60)

    with box.store() as store:
        [letter] = store.dead_letters()
        assert store.outages() == []
    assert letter["scene_id"] == scene.id and letter["attempts"] == 5


@pytest.mark.parametrize(
    "body",
    [
        '<?xml version="1.0"?><MediaContainer size="1"><Directory title="x" type="movie"/>'
        "</MediaContainer>",
        '<?xml version="1.0"?><MediaContainer size="1"><Directory key="one"/></MediaContainer>',
    ],
)
def test_an_answer_of_the_wrong_shape_is_a_transient_failure(box, body):
    box.plex.faults.fail(200, route=r"^GET /library/sections$", body=body)
    client = PlexClient(box.plex.url, PLEX_TOKEN)
    with pytest.raises(errors.TransientError, match="could not be read"):
        client.sections()
    assert client.health().error_class == "transient"


def test_a_stale_pid_in_the_lock_file_is_no_running_worker(tmp_path):
    (tmp_path / LOCK_FILENAME).write_text(f"{os.getpid()}\n")  # alive, but holds no lock
    assert not worker_running(tmp_path)


def test_a_waiting_worker_wakes_when_its_store_is_replaced(tmp_path):
    """A hook that found the store damaged moves it aside and writes its job to a fresh file:
    a worker waiting on the old file sees no commit there, so it must notice the new file."""
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 2:  # another process replaces the store while the worker sleeps
            quarantine(tmp_path / "stash2plex.db", "damaged")
            with Store.open(tmp_path) as fresh:
                fresh.enqueue([7], "hook")

    worker = Worker(tmp_path, clock=lambda: now[0], sleep=sleep)
    try:
        worker._wait(now[0] + 600)
        assert len(sleeps) == 2, "the worker slept on after its store was replaced"
        assert worker.store.replaced()
    finally:
        worker.store.close()


def test_a_settings_warning_is_logged_once_while_it_stands(tmp_path, caplog):
    with sandbox(tmp_path, scenes=5) as box:
        box.settings(max_retries="many")
        worker = Worker(box.data_dir)
        try:
            with caplog.at_level("WARNING", logger="stash2plex"):
                for _ in range(3):  # the worker re-reads its settings every minute
                    worker._read_settings()
                box.settings(max_retries=5)
                worker._read_settings()
                box.settings(max_retries="many")  # the problem comes back: said again
                worker._read_settings()
        finally:
            worker.store.close()
        said = [r.getMessage() for r in caplog.records if "max_retries" in r.getMessage()]
        assert len(said) == 2, said


def test_a_handover_request_stops_only_workers_with_other_settings_and_only_briefly():
    from stash2plex.engine.handover import HANDOVER_SECONDS, asked_to_hand_over

    host = socket.gethostname()
    request = {"local": "settings-of-the-command", "at": 1000.0, "host": host, "pid": 4242}
    living, gone = (lambda pid: True), (lambda pid: False)
    assert asked_to_hand_over(request, "settings-of-the-old-worker", 1001.0, living)
    assert not asked_to_hand_over(request, "settings-of-the-command", 1001.0, living)  # its own
    # A request nobody will follow up must not stop the workers later hooks start: not even
    # within its time, once the command that made it is gone (it failed before it drained).
    assert not asked_to_hand_over(request, "settings-of-a-hook", 1001.0, gone)
    late = 1000.0 + HANDOVER_SECONDS + 1
    assert not asked_to_hand_over(request, "settings-of-the-old-worker", late, living)
    assert not asked_to_hand_over(None, "anything", 1000.0, living)
    # From another host, or as an earlier version wrote it: its time decides.
    elsewhere = {**request, "host": "another-host"}
    assert asked_to_hand_over(elsewhere, "settings-of-the-old-worker", 1001.0, gone)
    older = {"local": "settings-of-the-command", "at": 1000.0}
    assert asked_to_hand_over(older, "settings-of-the-old-worker", 1001.0, gone)


def test_a_handover_nobody_followed_up_does_not_stop_the_next_hook_s_worker(box):
    """A command given other settings asks the running worker to hand over, then fails
    before it drains (Stash unreachable at the address it was given). A hook saving a scene
    right after starts a worker: it must drain the scene, not stop for that request."""
    import subprocess
    import sys
    import threading

    from .conftest import wait_until

    def start() -> tuple[Worker, threading.Thread]:
        worker = Worker(box.data_dir)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        wait_until(lambda: worker_running(box.data_dir), message="the worker to start")
        return worker, thread

    _, thread = start()
    asking = (  # the command, in a process of its own that ends after asking
        "import sys; from stash2plex.engine.handover import request_handover; "
        "print(request_handover(sys.argv[1], 'settings-of-a-command-that-then-failed'))"
    )
    command = subprocess.run(
        [sys.executable, "-c", asking, str(box.data_dir)], capture_output=True, text=True
    )
    assert command.stdout.strip() == "None", command.stderr
    thread.join(30)
    assert not thread.is_alive()  # the running worker handed over
    second, thread = start()  # a hook's worker, within the request's time
    try:
        scene = next(s for s in box.library.scenes.values() if s.files and s.in_plex)
        with box.store() as store:
            store.enqueue([scene.id], "Scene.Update.Post")
        wait_until(lambda: box.job(scene.id).state == "done", message="the hook's scene synced")
    finally:
        second.request_stop()
        thread.join(30)


def test_a_command_asking_while_a_hook_s_worker_starts_gets_the_queue(tmp_path):
    """A hook took the lock for its worker, which has not said who it is yet (it is still
    importing); a command given other settings asks for the queue meanwhile. The worker
    that comes up hands over: the command is alive and waiting."""
    import threading

    from stash2plex.engine.handover import HANDOVER_KEY, WORKER_SETTINGS_KEY, request_handover
    from stash2plex.engine.worker_lock import mark_holder, open_lock_file, try_lock

    from .conftest import wait_until

    with Store.open(tmp_path) as store:  # what the worker before it left
        store.put_value(WORKER_SETTINGS_KEY, {"owner": "h:1:0", "local": "old", "keeps": False})
    fd = open_lock_file(tmp_path)
    assert try_lock(fd)
    mark_holder(fd)  # as a hook locks for the worker it starts
    answer: dict[str, object] = {}
    asking = threading.Thread(
        target=lambda: answer.update(said=request_handover(tmp_path, "settings-of-a-command")),
        daemon=True,
    )
    asking.start()

    def asked() -> bool:
        with Store.open(tmp_path) as store:
            return store.get_value(HANDOVER_KEY) is not None

    wait_until(asked, message="the command's request")
    worker = Worker(tmp_path)  # the hook's worker comes up, with other settings
    running = threading.Thread(target=worker.run, kwargs={"lock_fd": fd}, daemon=True)
    running.start()
    asking.join(30)
    running.join(30)
    assert answer == {"said": None} and not running.is_alive()


def test_the_worker_a_handover_was_for_clears_the_request(tmp_path):
    from stash2plex.engine.handover import HANDOVER_KEY
    from stash2plex.settings.sources import load_local_settings

    own = load_local_settings(tmp_path).fingerprint()
    with Store.open(tmp_path) as store:
        store.put_value(HANDOVER_KEY, {"local": own, "at": 1000.0})
    worker = Worker(tmp_path, clock=lambda: 1001.0)
    try:
        worker._take_ownership()
        assert worker.store.get_value(HANDOVER_KEY) is None
    finally:
        worker.store.close()


def test_another_proxy_or_ca_bundle_is_another_worker_setting(tmp_path):
    # A worker keeps the environment it started with: a command whose proxy or CA bundle
    # differs has it hand the queue over (engine.handover), as for other settings.
    from stash2plex.settings.sources import load_local_settings

    def fingerprint(**environ: str) -> str:
        return load_local_settings(tmp_path, environ=environ).fingerprint()

    plain = fingerprint()
    others = {
        fingerprint(HTTP_PROXY="http://proxy:3128"),
        fingerprint(http_proxy="http://proxy:3128"),
        fingerprint(HTTP_PROXY="http://proxy:8080"),
        fingerprint(NO_PROXY="plex.lan"),
        fingerprint(REQUESTS_CA_BUNDLE="/etc/ssl/own.pem"),
        fingerprint(CURL_CA_BUNDLE="/etc/ssl/own.pem"),
    }
    assert plain not in others and len(others) == 6
    assert fingerprint(PATH="/usr/bin", LANG="C") == plain  # the rest of the environment


def test_a_request_too_large_for_plex_or_its_proxy_fails_that_scene_never_all(box):
    # A scene whose details make the edit's address longer than the server takes (the
    # emulator's HTTP layer answers 414, without Plex's header, as nginx does over 8 KB),
    # and a cover refused by a proxy's body limit (413): once taken for "Plex is down", such a
    # scene opened the breaker on every try and held every other scene behind it.
    scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex]
    long_one = scenes[0]
    box.stash.update_scene(long_one.id, details="日" * 7500)
    box.plex.faults.fail(413, route=r"POST /library/metadata/\{id\}/posters", proxy=True, count=1)
    box.drain()
    with box.store() as store:
        assert store.holds().breaker.state == "closed" and store.outages() == []
        letters = {letter["scene_id"]: letter["message"] for letter in store.dead_letters()}
        linked = {scene.id for scene in scenes if store.link(scene.id) is not None}
    assert "as too large (HTTP 414, an address of" in letters.pop(long_one.id)
    [(cover_scene, refused)] = letters.items()  # whichever poster the proxy refused
    assert "poster upload" in refused and "(HTTP 413, a body of" in refused
    assert "client_max_body_size" in refused and " 0 KB" not in refused
    assert linked == {scene.id for scene in scenes} - {long_one.id, cover_scene}


def test_a_pause_is_said_once_not_once_per_scene_in_flight(box, caplog):
    box.settings(plex_token="wrong-token-0000")
    box.drain()
    with box.store() as store:
        said = [e for e in store.recent_events(1000) if e["kind"] == "pause"]
        assert store.holds().pause is not None and store.holds().pause.kind == "plex_auth"
    assert len(said) == 1, said
    assert sum("queue paused" in r.getMessage() for r in caplog.records) == 1
    assert "wrong-token-0000" not in caplog.text


def test_a_worker_held_by_its_own_environment_does_not_wait_for_a_fix_it_cannot_see(
    tmp_path, monkeypatch
):
    """A command run with a wrong variable (a token, a library) started a worker with it: the
    fix (unsetting it elsewhere, a value in Stash) never reaches that process, so it leaves
    once idle and lets the next hook's worker, with Stash's environment, take over. Held by
    a value from Stash's settings, it stays to notice the fix."""
    from dataclasses import replace

    from stash2plex.records import Pause

    worker = Worker(tmp_path)
    try:
        worker.store.enqueue([1], "Scene.Update.Post")  # a scene saved meanwhile

        def held_by(source: str) -> None:
            pause = Pause(
                kind="plex_auth",
                message="Plex rejected the token",
                since=0,
                next_check_at=0,
                setting="plex_token",
                source=source,
            )
            worker.store.change_holds(lambda holds: (replace(holds, pause=pause), []))

        held_by("environment STASH2PLEX_PLEX_TOKEN")
        assert worker._idle_exit_after() is None  # found by another process: not this one's
        monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-0000")
        assert worker._idle_exit_after() == worker.idle_exit_seconds
        assert worker._should_continue() is False
        held_by("Stash plugin settings")
        assert worker._idle_exit_after() is None  # stays: a fix in Stash reaches it
    finally:
        worker.store.close()


def test_a_worker_leaving_over_its_own_wrong_variable_hands_the_queue_to_one_without_it(
    box, monkeypatch
):
    """`STASH2PLEX_PLEX_TOKEN=wrong stash2plex sync 5` left a worker with the wrong token, and
    a scene saved in Stash meanwhile waited, with no worker, until the next save. Leaving,
    that worker now starts one without the variable, which takes Stash's token and drains."""
    scene, saved = [
        s for s in box.library.scenes.values() if s.files and s.in_plex and (s.title or "").strip()
    ][:2]
    monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-0000")
    clock = SteppedClock()

    def sleep(seconds: float) -> None:  # idle time passes at once
        clock.offset += seconds
        time.sleep(0.001)

    box.queue(scene.id)
    worker = Worker(box.data_dir, clock=clock, sleep=sleep)
    runner = threading.Thread(target=worker.run)
    runner.start()
    wait_until(lambda: box.job(scene.id).state == "waiting", message="the token to hold it")
    box.queue(saved.id)  # saved in Stash while the queue is held
    runner.join(60)
    assert not runner.is_alive()

    def drained() -> bool:
        return box.job(saved.id).state == box.job(scene.id).state == "done"

    wait_until(drained, timeout=60, message="the next worker's drain")
    assert box.item(saved).title == saved.title.strip()


@pytest.mark.parametrize("named", [True, False], ids=["plex_library named", "plex_library empty"])
def test_a_library_deleted_in_plex_holds_the_queue_naming_the_setting(tmp_path, named):
    """The library the scenes were synced into is deleted in Plex: the next syncs hold the
    queue with the same sentence as a wrong library name (the setting to fix), not "not in
    Plex" per scene; a library made again in Plex gets everything synced by itself."""
    settings = {"plex_library": "Stash Scenes"} if named else {"plex_library": ""}
    with sandbox(tmp_path, scenes=30, seed=5, settings=settings) as box:
        box.drain()
        scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex][:6]
        box.plex.add_section("TV Shows", ["/plex/tv"], type="show")  # Plex keeps another
        box.plex.delete_section(box.section_id)
        for scene in scenes:
            box.stash.update_scene(scene.id, title=f"After the library went {scene.id}")
        box.queue(*[s.id for s in scenes])
        clock = SteppedClock()
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        with box.store() as store:
            pause = store.holds().pause
            assert store.dead_letters() == []
        assert pause is not None and pause.setting == "plex_library", pause
        expected = "no library named 'Stash Scenes'" if named else "no Movies or Other Videos"
        assert expected in pause.message
        assert {box.job(s.id).reason for s in scenes} != {"not_in_plex"}

        library_added_again(box)
        clock.offset += 3600  # the hold's next check
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        for scene in scenes:
            assert box.job(scene.id).state == "done", scene.id
            key = box.plex.find_by_file(box.library.plex_path(scene.files[0].path))
            assert box.plex.item(key).title == f"After the library went {scene.id}"


@pytest.mark.parametrize("asked", ["saved in Stash", "Sync, unchanged"])
@pytest.mark.parametrize("same_id", [True, False], ids=["same id", "new id"])
def test_a_library_deleted_and_added_again_in_plex_gets_every_scene_back(tmp_path, same_id, asked):
    """The usual cure for a Plex library that misbehaves: remove it and add it again. Plex
    gives it new, bare items, under a new id or (the newest library's, as an SQLite rowid)
    the same, and always a new uuid. The first sync that meets it queues every scene that was
    synced into it, and one drain puts the metadata of all of them back: a scene saved in
    Stash (its edit meets the gone item), or a Sync a person asks for of a scene unchanged
    since (which asks Plex nothing but its libraries)."""
    with sandbox(tmp_path, scenes=30, seed=5, settings={"plex_library": "Stash Scenes"}) as box:
        box.drain()
        synced = [s for s in box.library.scenes.values() if s.files and s.in_plex]
        if not same_id:
            box.plex.add_section("TV Shows", ["/plex/tv"], type="show")
        box.plex.delete_section(box.section_id)
        section = library_added_again(box, synced)
        assert library_problems(box.plex, box.library) != {}  # bare items
        saved = synced[0]
        if asked == "saved in Stash":
            box.stash.update_scene(saved.id, title="Saved after the library came back")
            box.drain(saved.id)
        else:
            with box.store() as store:
                store.enqueue([saved.id], "sync_now", retry_now=True)
            Worker(box.data_dir).run(until_idle=True)

        assert library_problems(box.plex, box.library) == {}
        with box.store() as store:
            assert store.dead_letters() == []
            assert {job.state for job in store.jobs()} == {"done"}
            said = [e["message"] for e in store.recent_events(50)]
        assert (section == box.section_id) is same_id
        # A saved scene meets its item's 404 first and is matched again at once.
        gone = len(synced) - (asked == "saved in Stash")
        told = f"the Plex items of {gone} synced scenes are gone"
        assert any(message.startswith(told) for message in said), said


def test_a_new_plex_without_a_library_holds_the_queue_saying_to_add_one(tmp_path):
    """A Plex just installed lists no library: that is a library to add, not an outage (which
    would read "Plex is down") nor a try per scene. Once one is added the queue goes on."""
    with sandbox(tmp_path, scenes=12, seed=4, settings={"plex_library": ""}) as box:
        box.plex.delete_section(box.section_id)
        clock = SteppedClock()
        box.queue()
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        with box.store() as store:
            holds = store.holds()
            assert store.dead_letters() == [] and store.outages() == []
            assert {job.attempts for job in store.jobs()} == {0}
        assert holds.breaker.is_closed
        assert holds.pause is not None and holds.pause.setting == "plex_library"
        assert holds.pause.message.startswith("Plex has no library yet: add a Movies")

        library_added_again(box)
        clock.offset += 3600  # the hold's next check
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        assert library_problems(box.plex, box.library) == {}


@pytest.mark.parametrize("how", ["proxy 502, max_retries 1", "no library listed"])
def test_a_lone_scene_waits_for_a_plex_that_cannot_take_it_instead_of_dead_letters(tmp_path, how):
    """One scene queued (too few to reach the breaker's threshold) while Plex cannot take it
    for reasons no scene can fix: Plex down behind a proxy with `max_retries` 1 (a first
    failure is also the last), a Plex listing no library after scenes were synced into one.
    It waits for Plex, and syncs by itself once Plex is well again."""
    settings = {"max_retries": 1} if how.endswith("max_retries 1") else {}
    with sandbox(tmp_path, scenes=20, seed=8, settings=settings) as box:
        clock = SteppedClock()
        (scene,) = edited(box, 1)
        if how.startswith("proxy 502"):
            box.plex.faults.fail(502, proxy=True)
        else:
            box.plex.delete_section(box.section_id)

        run_for(box, clock, 90, step=10)

        with box.store() as store:
            assert store.dead_letters() == []
            assert store.job(scene.id).reason == "plex_down", store.job(scene.id)
        box.plex.faults.clear()
        if how == "no library listed":
            library_added_again(box)
        run_for(box, clock, 60, step=10)
        assert box.job(scene.id).state == "done"
        assert box.item(scene).title == "Edited 0"


def test_one_item_a_proxy_always_times_out_is_that_scene_s_dead_letter_not_an_outage(tmp_path):
    """Plex is healthy and takes every other write; a reverse proxy times out (504) only this
    item's edit (a write too slow for the proxy's timeout): the scene goes to the dead letters
    with the reason after its tries, and no outage is recorded."""
    with sandbox(tmp_path, scenes=20, seed=8) as box:
        clock = SteppedClock()
        stuck, other = edited(box, 2)
        key = box.rating_key(stuck)
        box.plex.faults.fail(504, proxy=True, route=r"^PUT ", target=rf"[?&]id={key}(&|$)")

        run_for(box, clock, 600, step=30)

        with box.store() as store:
            (letter,) = store.dead_letters()
            assert store.outages() == []
        assert letter["scene_id"] == stuck.id and "answered HTTP 504" in letter["message"]
        assert box.item(other).title == "Edited 1"


def test_another_plex_at_the_same_address_gets_no_write_meant_for_the_old_ones_items(tmp_path):
    """Plex installed anew at the same address: another machine, its item numbers counted
    from 1 again, so the old ratingKeys name other scenes' items. A scene saved in Stash must
    not be written onto the item that now holds that number: every scene is matched afresh
    and synced to the new server."""
    with sandbox(tmp_path, scenes=20, seed=5, settings={"plex_library": "Stash Scenes"}) as box:
        box.drain()
        synced = [s for s in box.library.scenes.values() if s.files and s.in_plex]
        plex = box.plex.library
        plex.machine_identifier = "f" * 40
        box.plex.delete_section(box.section_id)
        plex._next_rating_key = 1  # a fresh database
        library_added_again(box, reversed(synced))  # scanned in another order: keys change hands
        saved = synced[0]
        box.stash.update_scene(saved.id, title="Saved after Plex was installed anew")
        box.queue(saved.id)  # a hook: no person's Sync reads the libraries first
        clock = SteppedClock()

        run_for(box, clock, 3)

        assert library_problems(box.plex, box.library) == {}
        with box.store() as store:
            assert store.dead_letters() == []
            said = [e["message"] for e in store.recent_events(50)]
        assert any(m.startswith("another Plex server answers at plex_url") for m in said), said
