"""A busy Plex refuses a request and serves the next one: the Plex client asks again after a
short pause before a refusal counts as a failure (clients/http.py, BUSY_RETRY_DELAYS). Real
HTTP to the Plex emulator; the pauses are recorded, not slept."""

from __future__ import annotations

import random
import threading
import time

import pytest

from stash2plex import errors
from stash2plex.clients.http import BUSY_RETRY_AFTER_CAP, BUSY_RETRY_DELAYS
from stash2plex.clients.plex import PlexClient

from .conftest import wait_until
from .sandbox import PLEX_TOKEN, sandbox

EDIT = r"^PUT /library/sections/\{id\}/all"


@pytest.fixture
def box(tmp_path):
    with sandbox(tmp_path, scenes=6, seed=5) as opened:
        yield opened


class Pauses(list):
    """An injected `sleep`: records each pause instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_of(box, pauses: Pauses, **options) -> PlexClient:
    return PlexClient(box.plex.url, PLEX_TOKEN, sleep=pauses, rng=random.Random(1), **options)


def edit_title(box, client: PlexClient, title: str):
    scene = box.find(lambda s: bool(s.title))
    client.edit(box.section_id, box.rating_key(scene), {"title.value": title})
    return box.item(scene)


def edits_answered(box) -> list[int]:
    return [e.status for e in box.plex.log.entries if e.route == "PUT /library/sections/{id}/all"]


@pytest.mark.parametrize("status", [500, 502, 504, 429, 408, 520])
def test_a_refused_edit_is_sent_again_after_a_pause_and_lands(box, status):
    pauses = Pauses()
    client = client_of(box, pauses)
    box.plex.faults.fail(status, count=2, route=EDIT)

    item = edit_title(box, client, "Landed")

    assert item.title == "Landed"
    assert edits_answered(box) == [status, status, 200]
    assert len(pauses) == 2
    for pause, delay in zip(pauses, BUSY_RETRY_DELAYS, strict=True):
        assert delay / 2 <= pause <= delay


@pytest.mark.parametrize("status", [502, 504])
def test_a_reverse_proxys_gateway_error_is_asked_again_too(box, status):
    # nginx or Traefik in front of Plex answer 502/504 themselves when Plex is slow or busy.
    pauses = Pauses()
    client = client_of(box, pauses)
    box.plex.faults.fail(status, count=2, route=EDIT, proxy=True)
    assert edit_title(box, client, "Through the proxy").title == "Through the proxy"
    assert edits_answered(box) == [status, status, 200] and len(pauses) == 2


def test_a_proxys_other_pages_are_plex_unreachable_and_a_lasting_gateway_error_fails_the_request(
    box,
):
    # A lasting 502 is the request's failure, like Plex's own 500: one busy moment of Plex
    # behind the proxy must not hold the queue (the breaker's threshold and the health check
    # decide an outage, tests/test_engine_faults.py).
    pauses = Pauses()
    client = client_of(box, pauses)
    client.connect()
    box.plex.faults.fail(503, count=1, route=EDIT, proxy=True)  # its maintenance page
    with pytest.raises(errors.ServerDownError, match="something other than Plex"):
        edit_title(box, client, "Maintenance")
    assert pauses == []
    box.plex.faults.fail(502, route=EDIT, proxy=True)
    with pytest.raises(errors.TransientError, match=r"reverse proxy .* HTTP 502") as raised:
        edit_title(box, client, "Gone")
    assert raised.value.server == "plex" and raised.value.error_class == errors.TRANSIENT
    assert len(pauses) == len(BUSY_RETRY_DELAYS)
    assert edits_answered(box) == [503] + [502] * (len(BUSY_RETRY_DELAYS) + 1)


def test_a_refusal_that_outlasts_the_pauses_is_a_transient_failure(box):
    pauses = Pauses()
    client = client_of(box, pauses)
    box.plex.faults.fail(500, route=EDIT)

    with pytest.raises(errors.TransientError, match="HTTP 500") as raised:
        edit_title(box, client, "Never")

    assert edits_answered(box) == [500] * (len(BUSY_RETRY_DELAYS) + 1)
    assert len(pauses) == len(BUSY_RETRY_DELAYS)
    assert PLEX_TOKEN not in raised.value.message


@pytest.mark.parametrize(
    ("header", "pause"),
    [
        ("3", 3.0),
        ("3600", BUSY_RETRY_AFTER_CAP),
        ("²", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
    ],
)
def test_a_retry_after_header_sets_the_pause_up_to_a_cap(box, header, pause):
    pauses = Pauses()
    client = client_of(box, pauses)
    box.plex.faults.fail(429, count=1, route=EDIT, headers={"Retry-After": header})

    assert edit_title(box, client, "Later").title == "Later"
    if pause is None:  # not whole seconds: the pause's own length
        assert len(pauses) == 1 and BUSY_RETRY_DELAYS[0] / 2 <= pauses[0] <= BUSY_RETRY_DELAYS[0]
    else:
        assert pauses == [pause]


def test_maintenance_and_a_hanging_write_are_not_sent_again(box):
    pauses = Pauses()
    client = client_of(box, pauses, timeout=0.5)
    client.connect()
    box.plex.faults.maintenance()
    with pytest.raises(errors.ServerDownError):
        edit_title(box, client, "Down")
    box.plex.faults.clear()
    # A write that timed out may still land: sending it again could land after a newer one.
    box.plex.faults.latency(1.5, route=EDIT)
    with pytest.raises(errors.TransientError, match="timeout"):
        edit_title(box, client, "Slow")
    wait_until(lambda: box.plex.in_flight == 0, message="Plex finishing the slow write")
    assert pauses == []
    assert edits_answered(box) == [503, 200]


def test_a_worker_asked_to_stop_does_not_wait_to_ask_a_busy_plex_again(box):
    # SIGTERM (Docker stops a container ten seconds later): the pause ends, nothing is re-sent.
    client = PlexClient(box.plex.url, PLEX_TOKEN)  # the shipped pause: a real wait
    client.connect()
    box.plex.faults.fail(429, route=EDIT, headers={"Retry-After": "5"})
    threading.Timer(0.3, client.stop_waiting).start()
    started = time.monotonic()
    with pytest.raises(errors.TransientError, match="429"):
        edit_title(box, client, "Never")
    assert time.monotonic() - started < 3
    assert edits_answered(box) == [429]


def test_after_a_request_refused_on_every_try_the_next_get_one_try_until_one_is_answered(box):
    # Refused on every try: Plex is not merely busy, it is failing (an outage, a broken
    # database). The next requests do not wait to ask again, so the breaker judges sooner.
    pauses = Pauses()
    client = client_of(box, pauses)
    client.connect()
    box.plex.faults.fail(500, route=EDIT)
    for title in ("First", "Second"):
        with pytest.raises(errors.TransientError):
            edit_title(box, client, title)
    assert edits_answered(box) == [500] * (len(BUSY_RETRY_DELAYS) + 1) + [500]
    assert len(pauses) == len(BUSY_RETRY_DELAYS)
    box.plex.faults.clear()
    assert edit_title(box, client, "Answered").title == "Answered"
    box.plex.faults.fail(500, count=1, route=EDIT)
    assert edit_title(box, client, "Busy again").title == "Busy again"
    assert len(pauses) == len(BUSY_RETRY_DELAYS) + 1  # asked again after a pause once more
