"""EventProcessor: backpressure policies, deadline classes (controlled clock), priorities with
the starvation bound, per-key order on several workers, drain on stop, the caller-driven
asyncio mode, and randomized multi-producer schedules."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.core.processor import (
    Deadline,
    DeadlineClass,
    DeadlineMissed,
    EventProcessor,
    PartitionedProcessor,
    ProcessorFull,
    ProcessorStopped,
    SubmitTimeout,
)


class FakeClock:
    """A controllable ns clock: tests advance it explicitly."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@dataclass(frozen=True)
class Tick:
    key: int
    seq: int


@dataclass(frozen=True)
class Slow:
    n: int


# -- backpressure ------------------------------------------------------------------------

def test_reject_raises_and_counts() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=4, policy="reject")
    for i in range(4):
        p.submit(i)
    with pytest.raises(ProcessorFull, match=r"processor: lane 0 full \(capacity=4, "
                                            r"policy='reject'\)"):
        p.submit(4)
    assert p.submit_many([5, 6, 7]) == 0
    got: list[int] = []
    p.register(int, got.append)
    assert p.poll() == 4
    assert p.submit_many([8, 9, 10, 11, 12, 13]) == 4
    p.drain()
    st_ = p.statistics()
    assert got == [0, 1, 2, 3, 8, 9, 10, 11]
    assert (st_.submitted, st_.processed, st_.rejected) == (8, 8, 1 + 3 + 2)
    p.check()


def test_drop_oldest_keeps_the_newest_and_counts() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=4, policy="drop_oldest")
    got: list[int] = []
    p.register(int, got.append)
    for i in range(10):
        p.submit(i)
    p.check()
    assert p.submit_many(list(range(10, 20))) == 10  # larger than the lane: its head drops
    p.check()
    p.drain()
    st_ = p.statistics()
    assert got == [16, 17, 18, 19]
    assert st_.dropped_oldest == 16
    assert st_.submitted == st_.processed + st_.dropped_oldest
    p.check()


def test_block_waits_for_room_then_succeeds() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=2, policy="block", block_timeout=10)
    gate = threading.Event()
    got: list[int] = []

    def handler(e: int) -> None:
        gate.wait()
        got.append(e)

    p.register(int, handler)
    p.start()
    p.submit_many([0, 1, 2])  # consumer takes one batch and blocks in the handler on 0..1
    submitted = threading.Event()

    def producer() -> None:
        p.submit_many(list(range(3, 8)))  # must wait: the lane is full
        submitted.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not submitted.wait(0.05)  # still blocked (a bounded check, not a sync point)
    gate.set()
    assert submitted.wait(10)
    t.join()
    p.stop(timeout=10)
    assert got == list(range(8))
    assert p.statistics().block_timeouts == 0
    p.check()


def test_block_times_out_and_counts() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=2, policy="block", block_timeout=0.02)
    p.submit_many([1, 2])
    t0 = time.monotonic()
    with pytest.raises(SubmitTimeout, match=r"lane 0 full for block_timeout=0.02s"):
        p.submit(3)
    assert time.monotonic() - t0 >= 0.015
    assert p.submit_many([4, 5]) == 0
    assert p.statistics().block_timeouts == 3


def test_block_from_the_consumer_thread_fails_at_once() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=2, policy="block", block_timeout=5)
    p.register(int, lambda e: None)
    p.poll()  # this thread is now the consumer
    p.submit_many([1, 2])
    t0 = time.monotonic()
    with pytest.raises(SubmitTimeout):
        p.submit(3)
    assert time.monotonic() - t0 < 1


def test_submit_after_stop_is_refused() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=4)
    p.stop()
    with pytest.raises(ProcessorStopped, match="processor is stopped"):
        p.submit(1)


# -- deadlines ---------------------------------------------------------------------------

def test_firm_deadline_discards_expired_events_unprocessed() -> None:
    clock = FakeClock()
    p: EventProcessor[int] = EventProcessor(capacity=16, clock=clock)
    got: list[int] = []
    p.register(int, got.append, deadline=Deadline(100, DeadlineClass.FIRM))
    p.submit_many([1, 2])
    clock.now += 150
    p.submit(3)
    assert p.poll() == 3
    st_ = p.statistics()
    assert got == [3]
    assert (st_.expired, st_.processed) == (2, 1)
    p.check()


def test_soft_deadline_processes_late_and_records_lateness() -> None:
    clock = FakeClock()
    p: EventProcessor[Slow] = EventProcessor(capacity=16, clock=clock)
    got: list[int] = []

    def slow(e: Slow) -> None:
        clock.now += e.n
        got.append(e.n)

    p.register(Slow, slow, deadline=Deadline(100, DeadlineClass.SOFT))
    p.submit_many([Slow(50), Slow(250)])
    p.poll()
    st_ = p.statistics()
    assert got == [50, 250]
    assert st_.soft_late == 1
    assert st_.lateness_ns.count == 1 and st_.lateness_ns.max == 200  # 300 - 100
    assert st_.end_to_end_ns.max == 300
    p.check()


def test_hard_deadline_alarms_and_can_fail_fast_without_losing_events() -> None:
    clock = FakeClock()
    alarms: list[tuple[Slow, int]] = []
    got: list[int] = []

    def slow(e: Slow) -> None:
        clock.now += e.n
        got.append(e.n)

    p: EventProcessor[Slow | int] = EventProcessor(
        capacity=16, clock=clock, on_deadline_miss=lambda e, late: alarms.append((e, late)))
    p.register(Slow, slow, deadline=Deadline(100, DeadlineClass.HARD, fail_fast=True))
    p.register(int, got.append)  # no deadline
    p.submit_many([Slow(10), Slow(500), 1, 2])
    with pytest.raises(DeadlineMissed, match=r"hard deadline missed by 410 ns"):
        p.poll()
    assert alarms == [(Slow(500), 410)]
    assert got == [10, 500]
    assert isinstance(p.failure, DeadlineMissed)
    p.check()  # the rest of the batch is kept, not lost
    assert p.poll() == 2
    assert got == [10, 500, 1, 2]
    assert p.statistics().hard_misses == 1
    p.check()


def test_hard_deadline_without_fail_fast_logs_and_continues(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    p: EventProcessor[Slow] = EventProcessor(capacity=16, clock=clock, name="hp")

    def slow(e: Slow) -> None:
        clock.now += e.n

    p.register(Slow, slow, deadline=Deadline(100, DeadlineClass.HARD))
    p.submit_many([Slow(300), Slow(1)])
    assert p.poll() == 2
    assert p.statistics().hard_misses == 2
    assert "hp: hard deadline of <class" in caplog.text and "missed by 200 ns" in caplog.text


def test_deadline_rejects_fail_fast_on_soft() -> None:
    with pytest.raises(ValueError, match=r"fail_fast applies to hard deadlines only"):
        Deadline(10, DeadlineClass.SOFT, fail_fast=True)


def test_timestamp_of_measures_from_the_event_time() -> None:
    clock = FakeClock()
    p: EventProcessor[Tick] = EventProcessor(capacity=16, clock=clock,
                                             timestamp_of=lambda e: e.seq)
    p.register(Tick, lambda e: None, deadline=Deadline(100, DeadlineClass.FIRM))
    p.submit_many([Tick(0, clock.now - 500), Tick(0, clock.now)])
    p.poll()
    assert p.statistics().expired == 1


# -- priorities --------------------------------------------------------------------------

def test_strict_priority_with_a_starvation_bound() -> None:
    p: EventProcessor[tuple[str, int]] = EventProcessor(
        capacity=64, lanes=2, starvation_bound=3, type_of=lambda e: "x")
    order: list[str] = []
    p.register("x", lambda e: order.append(e[0]))
    p.submit_many([("L", i) for i in range(3)], lane=1)
    p.submit_many([("H", i) for i in range(10)], lane=0)
    while p.poll(max_batch=1):
        pass
    assert "".join(order) == "HHHLHHHLHHHLH"
    assert p.statistics().starvation_overrides == 3
    p.check()


def test_higher_lane_always_first_below_the_bound() -> None:
    p: EventProcessor[tuple[str, int]] = EventProcessor(
        capacity=64, lanes=3, starvation_bound=100, type_of=lambda e: "x")
    order: list[str] = []
    p.register("x", lambda e: order.append(e[0]))
    p.submit_many([("c", 0)], lane=2)
    p.submit_many([("b", 0)], lane=1)
    p.submit_many([("a", 0), ("a", 1)], lane=0)
    p.drain()
    assert order == ["a", "a", "b", "c"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 5)), min_size=1, max_size=30),
       st.integers(1, 4), st.integers(2, 4))
def test_no_lane_waits_longer_than_the_bound(
        submits: list[tuple[int, int]], bound: int, lanes: int) -> None:
    p: EventProcessor[int] = EventProcessor(capacity=256, lanes=lanes, starvation_bound=bound)
    served: list[int] = []
    p.register(int, served.append)
    for lane, k in submits:
        p.submit_many([lane % lanes] * k, lane=lane % lanes)
    waited = [0] * lanes
    while True:
        before = len(served)
        if not p.poll(max_batch=1):
            break
        lane = served[before]
        for j in range(lanes):
            if j != lane and len(p._lanes[j].ring):
                waited[j] += 1
                assert waited[j] <= bound + lanes - 2, (j, waited)
        waited[lane] = 0
        p.check()


# -- partitions, stop, randomized schedules ------------------------------------------------

def test_per_key_order_with_thread_workers() -> None:
    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    def handler(e: Tick) -> None:
        with lock:  # the test's own shared dict; handlers per key never race on order
            seen.setdefault(e.key, []).append(e.seq)

    pp: PartitionedProcessor[Tick] = PartitionedProcessor(
        workers=3, key_of=lambda e: e.key, capacity=256, policy="block", block_timeout=30)
    pp.register(Tick, handler)
    pp.start()
    n_keys, per_key = 12, 3000

    def producer(keys: range) -> None:
        for s in range(0, per_key, 50):
            pp.submit_many([Tick(k, s + i) for i in range(50) for k in keys])

    ts = [threading.Thread(target=producer, args=(range(i, n_keys, 3),)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    pp.stop(timeout=30)
    assert sorted(seen) == list(range(n_keys))
    for k, seqs in seen.items():
        assert seqs == list(range(per_key)), k
    assert sum(s.processed for s in pp.statistics()) == n_keys * per_key
    pp.check()


def test_stop_drains_everything_accepted() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=1 << 15, max_batch=64)
    gate = threading.Event()
    got: list[int] = []

    def handler(e: int) -> None:
        gate.wait()
        got.append(e)

    p.register(int, handler)
    p.start()
    n = 0
    for i in range(0, 20_000, 100):
        n += p.submit_many(list(range(i, i + 100)))
    stopper = threading.Thread(target=p.stop, kwargs={"timeout": 30})
    stopper.start()
    gate.set()
    stopper.join()
    assert got == list(range(n)) and n == 20_000
    st_ = p.statistics()
    assert st_.processed == st_.submitted == 20_000
    assert st_.batch_size.max <= 64
    p.check()


def test_handler_errors_are_counted_and_do_not_stop_processing() -> None:
    errors: list[tuple[int, BaseException]] = []
    p: EventProcessor[int] = EventProcessor(capacity=16,
                                            on_error=lambda e, x: errors.append((e, x)))
    got: list[int] = []

    def handler(e: int) -> None:
        if e == 2:
            raise KeyError(e)
        got.append(e)

    p.register(int, handler)
    p.submit_many([1, 2, 3, "unhandled"])  # type: ignore[list-item]
    p.drain()
    st_ = p.statistics()
    assert got == [1, 3] and len(errors) == 1 and isinstance(errors[0][1], KeyError)
    assert (st_.handler_errors, st_.unhandled, st_.processed) == (1, 1, 4)


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 3), st.sampled_from([8, 64, 4096]), st.integers(1, 200),
       st.integers(1, 100))
def test_multi_producer_schedules_lose_duplicate_and_reorder_nothing(
        producers: int, capacity: int, max_batch: int, chunk: int) -> None:
    per = 3000
    p: EventProcessor[tuple[int, int]] = EventProcessor(
        capacity=capacity, max_batch=max_batch, policy="block", block_timeout=30,
        type_of=lambda e: 0)
    got: dict[int, list[int]] = {i: [] for i in range(producers)}
    p.register(0, lambda e: got[e[0]].append(e[1]))
    p.start()

    def producer(pid: int) -> None:
        for s in range(0, per, chunk):
            batch = [(pid, i) for i in range(s, min(s + chunk, per))]
            if len(batch) == 1:
                p.submit(batch[0])
            else:
                assert p.submit_many(batch) == len(batch)

    ts = [threading.Thread(target=producer, args=(i,)) for i in range(producers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    p.stop(timeout=30)
    for pid in range(producers):
        assert got[pid] == list(range(per))
    p.check()


# -- caller-driven (asyncio) mode ------------------------------------------------------------

def test_asyncio_mode_wakes_on_same_loop_and_cross_thread_producers() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=1024)
    got: list[int] = []
    p.register(int, got.append)

    async def main() -> None:
        consumer = asyncio.create_task(p.run_async())
        await asyncio.sleep(0)  # the consumer is now parked in wait_for_work
        assert p._bell.waiter is not None
        p.submit_many([1, 2, 3])  # same-loop producer
        t = threading.Thread(target=lambda: p.submit_many([4, 5]))  # another thread
        while len(got) < 3:
            await asyncio.sleep(0)
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, t.join)
        p.stop()  # from the loop thread: wakes run_async, which drains and returns
        await asyncio.wait_for(consumer, 10)

    asyncio.run(main())
    assert got == [1, 2, 3, 4, 5]
    p.check()


def test_wait_for_work_returns_immediately_when_work_is_waiting() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=16)
    p.register(int, lambda e: None)

    async def main() -> int:
        p.submit(1)
        await asyncio.wait_for(p.wait_for_work(), 1)
        return p.poll()

    assert asyncio.run(main()) == 1


def test_submit_async_awaits_room_from_a_consumer_on_the_same_loop() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=4, max_batch=2, policy="reject")
    got: list[int] = []
    p.register(int, got.append)

    async def main() -> None:
        consumer = asyncio.create_task(p.run_async())
        assert await p.submit_async(list(range(50))) == 50  # 12x more than fits at once
        assert await p.submit_async([50]) == 1
        p.stop()
        await asyncio.wait_for(consumer, 10)

    asyncio.run(main())
    assert got == list(range(51))
    st_ = p.statistics()
    assert (st_.rejected, st_.block_timeouts, st_.processed) == (0, 0, 51)
    p.check()


def test_submit_async_times_out_and_counts() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=2)

    async def main() -> int:
        return await p.submit_async([1, 2, 3, 4], timeout=0.02)

    assert asyncio.run(main()) == 2
    assert p.statistics().block_timeouts == 2


def test_thread_mode_fail_fast_stops_and_stop_reraises() -> None:
    clock = FakeClock()
    p: EventProcessor[Slow] = EventProcessor(capacity=16, clock=clock,
                                             on_deadline_miss=lambda e, late: None)

    def slow(e: Slow) -> None:
        clock.now += e.n

    p.register(Slow, slow, deadline=Deadline(100, DeadlineClass.HARD, fail_fast=True))
    p.start()
    p.submit(Slow(500))
    with pytest.raises(DeadlineMissed, match="missed by 400 ns"):
        p.stop(timeout=10)
    assert p.stopping
    with pytest.raises(ProcessorStopped):
        p.submit(Slow(1))
