"""How many scenes sync at once (engine/sync_width.py): `plex_max_concurrency` of them, and one
more while Plex answers writes slowly, so Plex's request slots stay busy while a scene reads
its cover from Stash; Plex itself never gets more requests at once than the setting allows."""

from __future__ import annotations

import pytest

from stash2plex.clients.http import Exchange
from stash2plex.engine.sync_width import (
    SLOW_ANSWER_SECONDS,
    AnswerTimes,
    most_scenes_at_once,
    scenes_at_once,
)
from stash2plex.engine.worker import BATCH_SIZE

from .sandbox import sandbox


def answer(method: str, seconds: float) -> Exchange:
    return Exchange(method, "/library/metadata/1/posters", 200, {}, seconds)


@pytest.mark.parametrize(
    "slots, typical, expected",
    [
        (4, None, 4),  # nothing known yet
        (4, SLOW_ANSWER_SECONDS / 10, 4),  # a fast Plex: the worker's CPU is the limit
        (4, SLOW_ANSWER_SECONDS, 5),
        (16, 0.5, 17),
        (1, 0.5, 1),  # one at a time stays one at a time
    ],
)
def test_one_scene_more_than_the_slots_only_while_plex_answers_slowly(slots, typical, expected):
    assert scenes_at_once(slots, typical) == expected
    assert most_scenes_at_once(slots) >= expected


def test_the_typical_answer_follows_writes_and_leaves_reads_out():
    times = AnswerTimes()
    times.observe(answer("GET", 5.0))  # a long listing says nothing of a scene's writes
    assert times.typical is None
    times.observe(answer("PUT", 0.05))
    assert times.typical == pytest.approx(0.05)
    for _ in range(40):
        times.observe(answer("POST", 0.002))
    assert times.typical < SLOW_ANSWER_SECONDS  # Plex got fast again: back to the slots


@pytest.mark.parametrize("slow_plex", [True, False], ids=["slow Plex", "fast Plex"])
def test_a_slow_plex_gets_a_scene_more_at_once_but_never_more_requests(tmp_path, slow_plex):
    # Two slots; covers take 0.3 s to download. The first batch runs at two scenes (Plex's
    # speed is not known yet); from the second on, a Plex whose writes take 30 ms gets a third
    # scene, seen as three covers downloading at once.
    with sandbox(tmp_path, scenes=BATCH_SIZE + 15, settings={"plex_max_concurrency": 2}) as box:
        box.stash.latency(0, images=0.3)
        if slow_plex:
            box.plex.faults.latency(0.03, route=r"^(PUT|POST) ")

        box.drain()

        assert box.plex.max_in_flight == 2
        if slow_plex:
            assert box.stash.max_images_at_once == 3
        else:  # the worker's CPU is the limit: no scene beyond the slots
            assert box.stash.max_images_at_once <= 2
