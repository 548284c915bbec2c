"""The request throttle and the request slots, with an injected clock: exact waits, no
sleeping (a blocked acquire is woken by a release, which needs no clock)."""

from __future__ import annotations

import threading

from stash2plex.clients.throttle import RequestSlots, RequestThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_the_throttle_spaces_requests_to_the_cap():
    clock = Clock()
    throttle = RequestThrottle(4, clock=clock, sleep=clock.sleep)
    waits = [throttle.acquire() for _ in range(8)]
    # A second's worth goes at once, then one every quarter second.
    assert waits[:4] == [0.0, 0.0, 0.0, 0.0]
    assert [round(w, 6) for w in waits[4:]] == [0.25, 0.25, 0.25, 0.25]
    clock.now += 10  # idle: the bucket refills, but only to one second's worth
    assert [throttle.acquire() for _ in range(5)][-1] > 0


def test_no_cap_never_waits():
    clock = Clock()
    throttle = RequestThrottle(0, clock=clock, sleep=clock.sleep)
    assert [throttle.acquire() for _ in range(100)] == [0.0] * 100 and clock.slept == []


def test_threads_share_one_budget():
    clock = Clock()
    lock = threading.Lock()
    throttle = RequestThrottle(2, clock=clock, sleep=clock.sleep)

    def take() -> None:
        for _ in range(5):
            with lock:
                throttle.acquire()

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 requests at 2 per second, two of them free: 9 s of waiting in all.
    assert round(sum(clock.slept), 6) == 9.0


def test_a_timed_out_request_keeps_its_slot_until_it_may_have_ended():
    clock = Clock()
    slots = RequestSlots(2, clock=clock)
    slots.acquire()
    slots.acquire()
    slots.release()  # answered: free at once
    assert slots.in_use() == 1
    slots.release(abandoned_for=30.0)  # timed out: may still run at the server for 30 s
    assert slots.in_use() == 1
    clock.now += 29.9
    assert slots.in_use() == 1
    clock.now += 0.2
    assert slots.in_use() == 0


def test_a_request_waits_for_a_slot_and_takes_the_one_released():
    slots = RequestSlots(1)
    slots.acquire()
    got = threading.Event()

    def second() -> None:
        slots.acquire()
        got.set()

    waiter = threading.Thread(target=second, daemon=True)
    waiter.start()
    assert not got.wait(0.2)  # the only slot is taken
    slots.release()
    assert got.wait(5)
    waiter.join(5)
    assert slots.in_use() == 1


def test_a_wait_for_a_slot_ends_when_the_process_is_stopping():
    slots = RequestSlots(1)
    slots.acquire()
    slots.release(abandoned_for=60.0)  # Plex may run the abandoned request a minute more
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(slots.acquire()), daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    slots.cancel_waits()
    waiter.join(5)
    assert outcome == [False] and slots.acquire() is False


def test_a_wait_for_the_rate_ends_when_the_process_is_stopping():
    throttle = RequestThrottle(0.001)  # one request, then one per 1,000 s; waits really sleep
    assert throttle.acquire() == 0.0
    waited: list[float] = []
    waiting = threading.Thread(target=lambda: waited.append(throttle.acquire()))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive()  # waits its turn

    throttle.cancel_waits()
    waiting.join(5)

    assert not waiting.is_alive() and throttle.cancelled
    assert throttle.acquire() == 0.0  # and no wait after
