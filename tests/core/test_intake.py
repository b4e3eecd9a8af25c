"""The event processor's parts since the split: backpressure policies as named objects (and
their string forms), the one publication step, wait strategies for the consumer thread, and
the public names that must stay importable from where they were."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tickline.core
import tickline.core.processor
from tickline.core.intake import (
    BackpressurePolicy,
    BlockWhenFull,
    DropOldest,
    Lane,
    RejectWhenFull,
    backpressure_policy,
)
from tickline.core.processor import EventProcessor, PartitionedProcessor, ProcessorFull
from tickline.core.wait import BackoffWait, BlockingWait, SpinWait, WaitStrategy, YieldWait

# -- public names ---------------------------------------------------------------------------

PROCESSOR_NAMES = ("Backpressure", "Deadline", "DeadlineClass", "DeadlineMissed",
                   "EventProcessor", "PartitionedProcessor", "ProcessorFull",
                   "ProcessorStatistics", "ProcessorStopped", "SubmitTimeout", "partition_of")
CORE_NAMES = ("Deadline", "DeadlineClass", "EventProcessor", "PartitionedProcessor",
              "ProcessorFull", "ProcessorStopped", "RingFull", "SpscRing", "SpscShmRing")


def test_names_from_before_the_split_are_still_exported() -> None:
    for name in PROCESSOR_NAMES:
        assert name in tickline.core.processor.__all__, name
        assert getattr(tickline.core.processor, name) is not None
    for name in CORE_NAMES:
        assert name in tickline.core.__all__, name
    # the shm ring's wait strategies are the shared ones, not copies
    from tickline.core import shm_ring
    assert shm_ring.BlockingWait is BlockingWait and shm_ring.SpinWait is SpinWait


def test_dead_code_is_gone() -> None:
    assert not hasattr(EventProcessor, "on")
    assert not hasattr(EventProcessor, "set_default_handler")
    from tickline.stream.bus import Bus
    assert not hasattr(Bus, "subscribers")


# -- policies and their string forms ----------------------------------------------------------

def test_string_forms_map_to_the_policy_objects() -> None:
    assert isinstance(EventProcessor(policy="reject").backpressure, RejectWhenFull)
    assert isinstance(EventProcessor(policy="drop_oldest").backpressure, DropOldest)
    blocking: EventProcessor[int] = EventProcessor(policy="block", block_timeout=0.25)
    assert isinstance(blocking.backpressure, BlockWhenFull)
    assert blocking.backpressure.timeout == 0.25
    obj: EventProcessor[int] = EventProcessor(policy=BlockWhenFull(3.0))
    assert (obj.policy, obj.block_timeout) == ("block", 3.0)
    mine = DropOldest()
    assert backpressure_policy(mine) is mine
    assert repr(BlockWhenFull(0.5)) == "BlockWhenFull(timeout=0.5)"


def test_bad_policies_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match=r"policy must be 'reject', 'block', 'drop_oldest' or "
                                         r"a BackpressurePolicy, got 'drop_newest'"):
        EventProcessor(policy="drop_newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"block_timeout must be >= 0, got -1"):
        BlockWhenFull(-1)


CAP = 8


def _run(policy: BackpressurePolicy, sizes: Sequence[int],
         polls: Sequence[int]) -> tuple[list[int], list[int], dict[str, int]]:
    p: EventProcessor[int] = EventProcessor(capacity=CAP, policy=policy)
    got: list[int] = []
    p.register(int, got.append)
    accepted = []
    n = 0
    for size, take in zip(sizes, polls, strict=True):
        accepted.append(p.submit_many(list(range(n, n + size))))
        n += size
        p.check()
        if take:
            p.poll(take)
            p.check()
    p.drain()
    p.check()
    c = p.statistics().counters()
    return accepted, got, {k: c[k] for k in MODEL_COUNTERS}


MODEL_COUNTERS = ("submitted", "processed", "rejected", "block_timeouts", "dropped_oldest")


def _model(name: str, sizes: Sequence[int],
           polls: Sequence[int]) -> tuple[list[int], list[int], dict[str, int]]:
    """What each policy promises, on a plain list of capacity CAP."""
    queue: list[int] = []
    got: list[int] = []
    accepted = []
    c = dict.fromkeys(MODEL_COUNTERS, 0)
    n = 0
    for size, take in zip(sizes, polls, strict=True):
        batch = list(range(n, n + size))
        n += size
        if name == "drop_oldest":
            queue += batch
            c["dropped_oldest"] += max(0, len(queue) - CAP)
            queue = queue[-CAP:]
            accepted.append(size)
            c["submitted"] += size
        else:
            k = min(size, CAP - len(queue))
            queue += batch[:k]
            accepted.append(k)
            c["submitted"] += k
            c["rejected" if name == "reject" else "block_timeouts"] += size - k
        got += queue[:take]
        del queue[:take]
    got += queue
    c["processed"] = len(got)
    return accepted, got, c


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 20), min_size=1, max_size=12), data=st.data())
def test_each_policy_keeps_its_promise_against_a_model(
        sizes: list[int], data: st.DataObject) -> None:
    polls = data.draw(st.lists(st.integers(0, 9), min_size=len(sizes), max_size=len(sizes)))
    for name in ("reject", "drop_oldest", "block"):
        # block with a zero timeout, single-threaded: take what fits, count the rest
        assert _run(backpressure_policy(name, 0), sizes, polls) == _model(name, sizes, polls)


class CountOnly(BackpressurePolicy):
    """A custom policy: never accept beyond what fits, count the overflow as rejected twice
    (to show the processor reports what the policy counted, not what it assumes)."""

    name = "count_only"

    def admit(self, lane: Lane, events: Sequence[Any]) -> int:
        n = lane.offer(events)
        with lane.lock:
            lane.rejected += 2 * (len(events) - n)
        return n


def test_a_custom_policy_plugs_in_and_its_refusal_is_raised() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=2, policy=CountOnly())
    p.submit_many([1, 2, 3])
    with pytest.raises(ProcessorFull, match=r"processor: lane 0 full \(capacity=2, "
                                            r"policy='count_only'\)"):
        p.submit(4)
    assert p.statistics().rejected == 4
    assert p.policy == "count_only"
    part: PartitionedProcessor[int] = PartitionedProcessor(
        workers=2, key_of=lambda e: e, policy=RejectWhenFull(), capacity=2)
    assert all(isinstance(q.backpressure, RejectWhenFull) for q in part.partitions)


# -- the one publication step -------------------------------------------------------------

def test_every_accepted_event_goes_through_lane_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    published = [0]
    original = Lane.publish

    def counting(self: Lane, events: Sequence[Any], k: int) -> None:
        assert len(events) == k
        published[0] += k
        original(self, events, k)

    monkeypatch.setattr(Lane, "publish", counting)
    for policy in ("reject", "block", "drop_oldest"):
        published[0] = 0
        p: EventProcessor[int] = EventProcessor(capacity=4, policy=policy, block_timeout=0)
        p.register(int, lambda e: None)
        p.submit(0)
        p.submit_many([1, 2])
        p.submit_many([3, 4, 5])  # overflows: each policy does its own thing
        p.poll()

        async def main(proc: EventProcessor[int] = p) -> None:
            await proc.submit_async([6, 7], timeout=0)

        asyncio.run(main())
        st_ = p.statistics()
        assert published[0] == st_.submitted >= 6, policy


# -- wait strategies for the consumer thread -------------------------------------------------

@pytest.mark.parametrize("wait", [BlockingWait(), BackoffWait(spins=4, yields=4,
                                                              max_sleep=1e-4),
                                  YieldWait(), SpinWait()],
                         ids=lambda w: type(w).__name__)
def test_the_consumer_thread_waits_per_its_strategy_and_misses_no_wakeup(
        wait: WaitStrategy) -> None:
    p: EventProcessor[int] = EventProcessor(capacity=64, wait=wait)
    got: list[int] = []
    p.register(int, got.append)
    p.start()
    for burst in range(20):
        p.submit_many(list(range(burst * 3, burst * 3 + 3)))
        deadline = time.monotonic() + 10
        while len(got) < (burst + 1) * 3:  # the consumer must wake for every burst
            assert time.monotonic() < deadline, (type(wait).__name__, burst, len(got))
            time.sleep(0.0005)
    p.stop(timeout=10)
    assert got == list(range(60))
    p.check()


def test_a_blocking_consumer_parks_without_spinning() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=8)  # default wait: BlockingWait
    p.register(int, lambda e: None)
    p.start()
    deadline = time.monotonic() + 10
    while not p._bell.armed:  # parked on the doorbell
        assert time.monotonic() < deadline
        time.sleep(0.001)
    consumer = next(t for t in threading.enumerate() if t.name == "processor-consumer")
    assert consumer.ident is not None
    cpu = time.pthread_getcpuclockid(consumer.ident)
    cpu0, t0 = time.clock_gettime_ns(cpu), time.monotonic_ns()
    time.sleep(0.1)
    used, elapsed = time.clock_gettime_ns(cpu) - cpu0, time.monotonic_ns() - t0
    assert p._bell.armed
    assert used < elapsed // 10, (used, elapsed)  # a spinning thread would use most of it
    p.submit(1)
    p.stop(timeout=10)
    assert p.statistics().processed == 1
