"""SpscRing: the full/empty contract, wrap-around, claim/publish, the thread contract, and
randomized producer/consumer schedules that must lose, duplicate and reorder nothing."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.core.ring import ConcurrencyViolation, RingFull, SpscRing


def test_capacity_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match=r"capacity must be a power of two >= 1, got 12"):
        SpscRing(12)


def test_full_ring_put_raises_and_offer_returns_false() -> None:
    ring: SpscRing[int] = SpscRing(4)
    for i in range(4):
        ring.put(i)
    assert not ring.offer(99)
    with pytest.raises(RingFull, match=r"ring full: capacity=4, size=4"):
        ring.put(99)
    assert ring.statistics().full_events == 2
    assert ring.drain(10) == [0, 1, 2, 3]
    assert ring.drain(10) == []
    ring.check()


def test_offer_many_publishes_the_prefix_that_fits_across_the_wrap() -> None:
    ring: SpscRing[int] = SpscRing(8)
    assert ring.offer_many(list(range(6))) == 6
    assert ring.drain(5) == [0, 1, 2, 3, 4]
    assert ring.offer_many(list(range(6, 20))) == 7  # 1 waiting, 7 free, wraps at index 8
    ring.check()
    assert ring.drain(100) == list(range(5, 13))
    assert (ring.head, ring.tail) == (13, 13)
    ring.check()


def test_claim_write_publish() -> None:
    ring: SpscRing[str] = SpscRing(4)
    ring.put("a")
    seq = ring.claim(3)
    assert seq == 1
    assert ring.drain(10) == ["a"]  # claimed but unpublished slots are invisible
    ring.write(seq, ["b", "c"])
    ring.publish(seq + 2)
    assert ring.drain(10) == ["b", "c"]
    ring.write(seq + 2, ["d"])
    ring.publish(seq + 3)
    assert ring.drain(10) == ["d"]
    with pytest.raises(RingFull, match=r"cannot claim 5 slots: capacity=4, free=4"):
        ring.claim(5)
    with pytest.raises(ValueError, match=r"publish\(9\) outside \[tail=4, claimed=4\]"):
        ring.publish(9)
    ring.check()


def test_second_producer_thread_is_detected() -> None:
    ring: SpscRing[int] = SpscRing(8)
    ring.put(1)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            ring.put(2)
        except ConcurrencyViolation as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1
    assert "SpscRing producer called from thread" in str(errors[0])


def test_drained_slots_hold_no_references() -> None:
    ring: SpscRing[object] = SpscRing(4)
    ring.offer_many([object() for _ in range(4)])
    ring.drain(3)
    ring.check()  # asserts free slots are None
    ring.discard(5)
    ring.check()
    assert len(ring) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=60),
       st.sampled_from([1, 2, 4, 8]))
def test_random_single_thread_schedule_matches_a_model(
        ops: list[tuple[bool, int]], capacity: int) -> None:
    ring: SpscRing[int] = SpscRing(capacity)
    model: list[int] = []
    nxt = 0
    for produce, k in ops:
        if produce:
            batch = list(range(nxt, nxt + k))
            n = ring.offer_many(batch)
            assert n == min(k, capacity - len(model))
            model.extend(batch[:n])
            nxt += n
        else:
            got = ring.drain(k)
            assert got == model[:k]
            del model[:k]
        ring.check()
        assert len(ring) == len(model)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=8),
       st.lists(st.integers(1, 300), min_size=1, max_size=8),
       st.sampled_from([4, 64, 1024]))
def test_threads_lose_duplicate_and_reorder_nothing(
        produce_sizes: list[int], drain_sizes: list[int], capacity: int) -> None:
    total = 20_000
    ring: SpscRing[int] = SpscRing(capacity)
    got: list[int] = []
    done = threading.Event()

    def producer() -> None:
        i = 0
        j = 0
        while i < total:
            k = produce_sizes[j % len(produce_sizes)]
            j += 1
            n = ring.offer_many(range(i, min(i + k, total)))  # type: ignore[arg-type]
            if not n:
                time.sleep(0)  # full: hand the GIL to the consumer instead of spinning 5 ms
            i += n
        done.set()

    def consumer() -> None:
        j = 0
        while True:
            batch = ring.drain(drain_sizes[j % len(drain_sizes)])
            j += 1
            got.extend(batch)
            if not batch:
                if done.is_set() and len(ring) == 0:
                    return
                time.sleep(0)  # empty: hand the GIL to the producer

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert got == list(range(total))
    ring.check()


def test_second_consumer_thread_is_detected_and_rebind_hands_over() -> None:
    ring: SpscRing[int] = SpscRing(8)
    ring.offer_many([1, 2, 3])
    assert ring.drain(1) == [1]
    errors: list[BaseException] = []
    taken: list[int] = []

    def other() -> None:
        try:
            ring.drain(1)
        except ConcurrencyViolation as exc:
            errors.append(exc)
        ring.rebind()  # an explicit hand-over: now this thread may consume
        taken.extend(ring.drain(5))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert "SpscRing consumer called from thread" in str(errors[0])
    assert taken == [2, 3]
