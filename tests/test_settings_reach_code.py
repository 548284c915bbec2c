"""Every setting in the manifest reaches the code: each one changes behaviour or is validated.

The connection and operational settings are proven here; the field settings in
tests/test_field_settings.py. A registry maps every manifest key
to the tests that prove it, and a test fails when a key has none or a named test is missing.
"""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest

from stash2plex.engine.context import build_context
from stash2plex.engine.worker import Worker
from stash2plex.records import Decision
from stash2plex.sandbox.manifest import load_manifest

from .conftest import wait_until
from .sandbox import SteppedClock, sandbox

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

PROVEN_BY = {
    "plex_url": ["test_settings_reach_code.py::test_plex_url_is_validated_and_used"],
    "plex_token": ["test_settings_reach_code.py::test_plex_token_is_sent_and_a_wrong_one_pauses"],
    "plex_library": [
        "test_settings_reach_code.py::test_a_missing_plex_library_holds_the_queue_until_fixed"
    ],
    "path_map": ["test_settings_reach_code.py::test_path_map_makes_matching_exact"],
    "plex_timeout": ["test_settings_reach_code.py::test_plex_timeout_bounds_each_request"],
    "plex_max_concurrency": [
        "test_settings_reach_code.py::test_plex_max_concurrency_writes_that_many_scenes_at_once"
    ],
    "plex_max_requests_per_second": [
        "test_settings_reach_code.py::test_plex_max_requests_per_second_reaches_the_plex_transport",
    ],
    "enabled": ["test_settings_reach_code.py::test_enabled_off_keeps_jobs_and_sends_nothing"],
    "verify_tls": ["test_settings_reach_code.py::test_verify_tls_reaches_the_plex_transport"],
    "max_retries": ["test_settings_reach_code.py::test_max_retries_sets_attempts_before_dlq"],
    "dlq_retention_days": ["test_settings_reach_code.py::test_dlq_retention_days_prunes"],
    "debug_logging": ["test_settings_reach_code.py::test_debug_logging_and_obfuscate_paths"],
    "obfuscate_paths": ["test_settings_reach_code.py::test_debug_logging_and_obfuscate_paths"],
    "skip_title": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_summary": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_date": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_studio": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_performers": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_tags": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_collections": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_poster": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "skip_art": ["test_field_settings.py::test_each_skip_setting_leaves_its_field_alone"],
    "sync_performer_photos": [
        "test_field_settings.py::test_performer_photos_only_when_asked_and_never_the_placeholder"
    ],
    "sync_rating": ["test_field_settings.py::test_rating_syncs_only_when_asked"],
    "collection_parent_studio": [
        "test_field_settings.py::test_parent_studio_and_group_collections_are_optional"
    ],
    "collection_groups": [
        "test_field_settings.py::test_parent_studio_and_group_collections_are_optional"
    ],
    "tag_include": ["test_field_settings.py::test_tag_filters_cover_child_tags_and_exclusion_wins"],
    "tag_exclude": ["test_field_settings.py::test_tag_filters_cover_child_tags_and_exclusion_wins"],
    "sync_empty_scenes": [
        "test_situations.py::test_09_a_freshly_scanned_scene_leaves_agent_metadata_alone_and_locks_nothing"
    ],
    "preserve_plex_edits": [
        "test_field_settings.py::test_preserve_plex_edits_keeps_a_field_edited_in_plex_and_reports_it"
    ],
    "trigger_plex_scan": [
        "test_field_settings.py::test_a_new_scene_waits_for_plex_then_syncs_by_itself"
    ],
    "skip_not_found": ["test_field_settings.py::test_skip_not_found_drops_instead_of_waiting"],
    "label_tags": ["test_collection_art.py::test_labels_mirror_the_chosen_tags_and_keep_the_users"],
    "pull_plays": [
        "test_pull.py::test_two_plays_arrive_once_with_their_times_and_counts_only_go_up",
        "test_pull.py::test_nothing_is_pulled_while_the_settings_are_off",
    ],
    "pull_resume": [
        "test_pull.py::test_a_partial_view_sets_the_resume_point_and_only_plex_changes_move_it"
    ],
    "sync_rating_both_ways": ["test_pull.py::test_ratings_come_back_and_go_out_without_a_loop"],
    "pull_account": ["test_pull.py::test_only_the_chosen_accounts_plays_count"],
    "pull_interval_minutes": [
        "test_pull.py::test_the_worker_pulls_within_one_poll_interval_on_its_own_clock"
    ],
    "reconcile_interval": [
        "test_reconcile.py::test_the_worker_reconciles_on_its_own_clock",
        "test_reconcile_rules.py::test_the_timer_reconciles_once_per_interval_only_when_the_queue_is_idle",
    ],
}


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_manifest_setting_is_proven_by_a_test():
    keys = set(load_manifest(REPO / "Stash2Plex.yml").settings)
    assert keys == set(PROVEN_BY), "update PROVEN_BY to match the manifest's settings"
    for key, proofs in PROVEN_BY.items():
        for proof in proofs:
            file_name, _, test_name = proof.partition("::")
            path = HERE / file_name
            assert path.is_file(), f"{key}: {file_name} does not exist"
            text = path.read_text()
            assert test_name in _test_names(path), f"{key}: {proof} does not exist"
            assert key in text, f"{key}: {file_name} never sets it"


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=15) as opened:
        yield opened


def some_scene(box):
    return box.find(lambda s: bool(s.title))


def test_plex_url_is_validated_and_used(box):
    box.settings(plex_url="plex.local:32400")
    with box.store() as store, pytest.raises(Exception, match="plex_url"):
        build_context(store)
    box.settings(plex_url=box.plex.url)
    assert box.drain(some_scene(box).id).synced == 1


def test_plex_token_is_sent_and_a_wrong_one_pauses(box):
    box.settings(plex_token="not-the-token")
    scene = some_scene(box)
    box.drain(scene.id)
    assert box.job(scene.id).reason == "auth"
    with box.store() as store:
        assert "plex_token" in store.holds().pause.message


def test_a_missing_plex_library_holds_the_queue_until_fixed(box):
    box.settings(plex_library="Nope")
    scene = some_scene(box)
    report = box.drain(scene.id)
    job = box.job(scene.id)
    # A setting is never a dead letter: the job waits, and the run says what to fix.
    assert (job.state, job.reason) == ("waiting", "settings")
    assert "Nope" in job.last_error and "Stash Scenes" in job.last_error
    assert report.errors == [job.last_error]
    with box.store() as store:
        assert store.dead_letters() == []
        pause = store.holds().pause
    assert (pause.kind, pause.setting, pause.source) == (
        "config",
        "plex_library",
        "Stash plugin settings",
    )
    assert "Nope" in pause.message and "Stash Scenes" in pause.message
    assert box.job(scene.id).reason == "settings"
    box.settings(plex_library="Stash Scenes")
    assert Worker(box.data_dir).run(until_idle=True).synced == 1


def test_path_map_makes_matching_exact(box):
    scene = some_scene(box)
    box.drain(scene.id)
    with box.store() as store:
        link = store.link(scene.id)
    assert link.plex_path == box.library.plex_path(scene.files[0].path)
    box.settings(path_map="/nowhere => /never")
    box.plex.delete_item(box.rating_key(scene))
    box.plex.add_item(
        box.section_id,
        "/other/root/" + scene.files[0].path.rsplit("/", 1)[-1],
        sizes=scene.files[0].size + 1,
    )
    box.stash.update_scene(scene.id, title="Moved")
    box.drain(scene.id)
    assert box.job(scene.id).reason == "not_in_plex"


def test_plex_timeout_bounds_each_request(box):
    box.settings(plex_timeout=1)
    scene = some_scene(box)
    box.drain()
    box.stash.update_scene(scene.id, title="Slow")
    box.plex.faults.latency(1.5, route=r"^PUT ")
    started = time.monotonic()
    box.drain(scene.id)
    assert time.monotonic() - started < 5
    job = box.job(scene.id)
    assert job.reason == "retry" and "within 1 s" in job.last_error
    assert "plex_timeout" in job.last_error  # the message names the setting to raise


def test_enabled_off_keeps_jobs_and_sends_nothing(box):
    box.settings(enabled=False)
    scene = some_scene(box)
    box.drain(scene.id)
    assert box.writes() == 0
    assert box.job(scene.id).state == "pending"
    with box.store() as store:
        assert "enabled" in store.holds().pause.message
    box.settings(enabled=True)
    assert Worker(box.data_dir).run(until_idle=True).synced == 1  # the kept job now syncs


def test_verify_tls_reaches_the_plex_transport(box, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    box.settings(plex_url=box.plex.url.replace("http://", "https://"))  # only https reads it
    with box.store() as store:
        # Verified against the environment's CA bundle, read once for the transport.
        transport = build_context(store).plex.transport
        assert transport.verify and transport.ca_bundle == "/etc/ssl/certs/ca-certificates.crt"
        box.settings(verify_tls=False)
        transport = build_context(store).plex.transport
        assert transport.verify is False and transport.ca_bundle is None


def test_max_retries_sets_attempts_before_dlq(box):
    box.settings(max_retries=2)
    scene = some_scene(box)
    box.drain()
    box.stash.update_scene(scene.id, title="Failing")
    box.plex.faults.fail(500, route=r"^PUT ")
    box.queue(scene.id)
    clock_offset = [0.0]
    for _ in range(4):
        Worker(box.data_dir, clock=lambda: time.time() + clock_offset[0]).run(until_idle=True)
        clock_offset[0] += 7200
    with box.store() as store:
        [letter] = store.dead_letters()
    assert letter["attempts"] == 2


def test_dlq_retention_days_prunes(box):
    box.settings(dlq_retention_days=3)
    with box.store() as store:
        store.enqueue([1, 2], "test")
        old, new = store.claim_due("t", 2)
        store.clock = lambda: time.time() - 5 * 86400
        store.apply(old, Decision("dead_letter", 1, error_class="permanent", message="old"))
        store.clock = time.time
        store.apply(new, Decision("dead_letter", 1, error_class="permanent", message="new"))
    box.drain(some_scene(box).id)
    with box.store() as store:
        assert [letter["message"] for letter in store.dead_letters()] == ["new"]


def test_debug_logging_and_obfuscate_paths(box, tmp_path):
    import io

    from stash2plex.plugin import protocol
    from stash2plex.plugin.tasks import run_task

    scene = box.find(lambda s: len(s.files) == 1)
    box.plex.delete_item(box.rating_key(scene))
    connection = box.stash.server_connection()
    for debug, hide in ((False, False), (True, True)):
        box.settings(debug_logging=debug, obfuscate_paths=hide)
        err, out = io.StringIO(), io.StringIO()
        run_task(
            {"mode": "preview", "scene_id": str(scene.id)},
            connection,
            box.data_dir,
            None,
            log=protocol.StashLog(err),
            stdout=out,
        )
        text = err.getvalue() + out.getvalue()
        assert ("\x01d\x02" in err.getvalue()) is debug
        plex_path = box.library.plex_path(scene.files[0].path)
        assert (plex_path in text) is (not hide)
        assert ("<path-" in text) is hide


@pytest.mark.parametrize("width", [1, 4])
def test_plex_max_concurrency_writes_that_many_scenes_at_once(box, width):
    box.settings(plex_max_concurrency=width)
    box.drain()
    scenes = [s for s in box.library.scenes.values() if s.files and s.in_plex][:8]
    for scene in scenes:
        box.stash.update_scene(scene.id, title=f"At once {scene.id}")
    box.plex.faults.latency(0.2, route=r"^PUT ")
    box.plex.max_in_flight = 0
    box.drain(*[s.id for s in scenes])
    assert [box.item(s).title for s in scenes] == [f"At once {s.id}" for s in scenes]
    assert box.plex.max_in_flight == width


def test_plex_max_requests_per_second_reaches_the_plex_transport(box):
    box.settings(plex_max_requests_per_second=5)
    with box.store() as store:
        context = build_context(store)
    assert context.plex.throttle.per_second == 5  # its arithmetic: tests/test_throttle.py
    assert context.plex.transport.pool_size == 4  # the default concurrency's connections


def test_changed_request_limits_reach_a_running_workers_plex_client(box):
    # The worker keeps its Plex client (and connection) across settings reads; the limits
    # are made into it, so a change must bring a new one (a user easing a busy NAS Plex).
    clock = SteppedClock()
    worker = Worker(box.data_dir, clock=clock)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: worker.context is not None, message="the worker's settings")
        kept = worker.context.plex
        box.settings(plex_max_requests_per_second=5, plex_max_concurrency=2)
        clock.offset += 61  # the next settings read
        box.queue(next(iter(box.library.scenes)))

        wait_until(lambda: worker.context.plex is not kept, message="a new Plex client")
        plex = worker.context.plex
        assert (plex.throttle.per_second, plex.slots.slots) == (5, 2)
    finally:
        worker.request_stop()
        thread.join(10)


def test_a_rate_cap_lifted_mid_drain_applies_within_the_settings_minute(tmp_path):
    # A cap of two requests a second set for a busy Plex, lifted while 150 scenes drain: the
    # worker reads the settings again each minute, and a round of batches (hundreds of scenes)
    # no longer runs on with the old ones (150 scenes at two requests a second: 4 minutes).
    clock = SteppedClock()
    settings = {"plex_max_requests_per_second": 2}
    with sandbox(tmp_path, scenes=150, seed=5, settings=settings) as box:
        box.queue()
        worker = Worker(box.data_dir, clock=clock)
        thread = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
        thread.start()
        wait_until(lambda: len(box.plex.log.writes()) >= 2, timeout=30, message="writes")
        box.settings(plex_max_requests_per_second=None)
        clock.offset += 61  # the settings minute is up

        thread.join(45)

        assert not thread.is_alive(), "still draining at two requests a second"
        with box.store() as store:
            assert store.outstanding_jobs() == 0 and store.dead_letters() == []
