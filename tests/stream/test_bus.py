"""The bus: wildcard routing, filters, slow-consumer policies, isolation, async wake-ups."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.stream import (
    Bus,
    Policy,
    SubscriberDisconnected,
    SubscriptionClosed,
    topic_matches,
)

# --- wildcards and filters --------------------------------------------------------------------

TOKENS = ["a", "b", "c"]
topic_st = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=4).map(".".join)
pattern_st = st.lists(st.sampled_from([*TOKENS, "*"]), min_size=1, max_size=4).flatmap(
    lambda toks: st.booleans().map(lambda gt: ".".join([*toks, ">"] if gt else toks))
) | st.just(">")


def reference_match(pattern: str, topic: str) -> bool:
    """A straightforward recursive matcher to check the bus against."""
    p, t = pattern.split("."), topic.split(".")

    def rec(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(t)
        if p[i] == ">":
            return j < len(t)
        if j == len(t):
            return False
        return (p[i] == "*" or p[i] == t[j]) and rec(i + 1, j + 1)

    return rec(0, 0)


@settings(max_examples=150, deadline=None)
@given(patterns=st.lists(pattern_st, min_size=1, max_size=6),
       published=st.lists(st.tuples(topic_st, st.integers(0, 9)), max_size=40),
       modulus=st.integers(1, 3))
def test_wildcards_and_filters_route_exactly_the_right_messages(
    patterns: list[str], published: list[tuple[str, int]], modulus: int
) -> None:
    bus = Bus(default_capacity=1000)
    plain = [bus.subscribe(p) for p in patterns]
    filtered = [bus.subscribe(p, filter=lambda m, k=modulus: m[1] % k == 0) for p in patterns]
    for i, (topic, value) in enumerate(published):
        if i % 2:
            bus.publish(topic, (topic, value))
        else:
            bus.publish_many(topic, [(topic, value)])
    for pattern, sub, fsub in zip(patterns, plain, filtered, strict=True):
        want = [m for m in published if reference_match(pattern, m[0])]
        assert sub.drain() == want
        assert fsub.drain() == [m for m in want if m[1] % modulus == 0]
        assert all(topic_matches(pattern, m[0]) for m in want)


def test_wildcard_semantics_examples() -> None:
    assert topic_matches("depth.*", "depth.AAPL")
    assert not topic_matches("depth.*", "depth")
    assert not topic_matches("depth.*", "depth.AAPL.x")
    assert topic_matches("bars.>", "bars.AAPL.1s")
    assert not topic_matches("bars.>", "bars")
    assert topic_matches(">", "trades.AAPL")
    assert topic_matches("*.AAPL", "bbo.AAPL")


def test_bad_patterns_and_topics_are_rejected_with_the_value() -> None:
    bus = Bus()
    with pytest.raises(ValueError, match=r"'a\.>\.b': '>' may only be the last token"):
        bus.subscribe("a.>.b")
    with pytest.raises(ValueError, match="empty token"):
        bus.subscribe("a..b")
    with pytest.raises(ValueError, match="wildcards must be whole tokens"):
        bus.subscribe("a.b*")
    with pytest.raises(ValueError, match="capacity must be positive, got 0"):
        bus.subscribe("a", capacity=0)
    with pytest.raises(ValueError, match="without wildcards"):
        bus.publish("a.*", 1)


def test_private_namespace_needs_exact_topic_or_admin() -> None:
    bus = Bus()
    everything = bus.subscribe(">")
    star_first = bus.subscribe("*.7")
    with pytest.raises(PermissionError, match=r"'exec\.\*' spans private topics"):
        bus.subscribe("exec.*")
    with pytest.raises(PermissionError):
        bus.subscribe("exec.>")
    own = bus.subscribe("exec.7")
    admin = bus.subscribe("exec.*", admin=True)
    bus.publish("exec.7", "report-7")
    bus.publish("exec.8", "report-8")
    bus.publish("trades.X", "t")
    assert everything.drain() == ["t"]
    assert star_first.drain() == []
    assert own.drain() == ["report-7"]
    assert admin.drain() == ["report-7", "report-8"]


def test_publish_without_subscribers_is_counted_and_cached() -> None:
    bus = Bus()
    for _ in range(100):
        assert bus.publish_many("trades.X", [1, 2, 3]) == 0
    stats = bus.statistics()
    assert stats.unrouted == 300 and stats.deliveries == 0 and stats.topics_cached == 1
    sub = bus.subscribe("trades.*")  # invalidates the cache
    assert bus.statistics().topics_cached == 0
    assert bus.publish("trades.X", 4) == 1
    assert sub.drain() == [4]
    sub.close()
    assert bus.publish("trades.X", 5) == 0
    assert sub.drain() == []


# --- slow-consumer policies ---------------------------------------------------------------------

def _stalled_run(policy: Policy, batches: int, capacity: int = 100) -> tuple[Any, float]:
    bus = Bus()
    reader = bus.subscribe("md.*", capacity=10_000_000)
    stalled = bus.subscribe("md.*", capacity=capacity, policy=policy,
                            key=lambda m: m % 10)
    t0 = time.perf_counter()
    for i in range(batches):
        bus.publish_many("md.X", list(range(i * 10, i * 10 + 10)))
        assert len(stalled) <= capacity
    elapsed = time.perf_counter() - t0
    assert len(reader.drain()) == batches * 10  # the healthy subscriber got everything
    return stalled, elapsed


def test_drop_oldest_keeps_the_newest_and_counts_the_rest() -> None:
    stalled, _ = _stalled_run(Policy.DROP_OLDEST, 1_000)
    stats = stalled.statistics()
    assert stats.queued == 100 and stats.high_water == 100
    assert stats.offered == 10_000 and stats.dropped == 9_900 and not stats.closed
    assert stalled.drain() == list(range(9_900, 10_000))


def test_drop_oldest_trims_inside_a_batch_and_a_batch_larger_than_capacity() -> None:
    bus = Bus()
    sub = bus.subscribe("t", capacity=5)
    bus.publish_many("t", [1, 2, 3])
    assert sub.get_nowait() == 1
    bus.publish_many("t", [4, 5, 6, 7])  # 2,3 + 4..7 = 6 > 5: drop 2
    assert sub.drain() == [3, 4, 5, 6, 7]
    bus.publish_many("t", list(range(100)))
    assert sub.drain() == [95, 96, 97, 98, 99]
    assert sub.statistics().dropped == 1 + 95


def test_conflate_keeps_the_latest_per_key() -> None:
    stalled, _ = _stalled_run(Policy.CONFLATE, 1_000)
    stats = stalled.statistics()
    assert stats.queued == 10 and stats.dropped == 0 and stats.conflated == 9_990
    assert sorted(stalled.drain()) == list(range(9_990, 10_000))


def test_conflate_evicts_the_oldest_key_when_full() -> None:
    bus = Bus()
    sub = bus.subscribe("t.*", capacity=3, policy="conflate", key=lambda m: m[0])
    bus.publish_many("t.a", [("x", 1), ("y", 1), ("x", 2), ("z", 1), ("w", 1)])
    bus.publish("t.b", ("x", 9))  # same key, other topic: a separate slot
    stats = sub.statistics()
    assert stats.conflated == 1 and stats.dropped == 2 and stats.queued == 3
    assert sub.drain() == [("z", 1), ("w", 1), ("x", 9)]


def test_disconnect_closes_the_slow_consumer_only() -> None:
    stalled, _ = _stalled_run(Policy.DISCONNECT, 1_000)
    stats = stalled.statistics()
    assert stats.closed and stats.disconnects == 1 and stats.close_reason.startswith("slow")
    assert stats.queued == 100 and stats.offered == 110
    assert stats.dropped == 10  # the batch that did not fit; later ones never reached it
    assert len(stalled.drain()) == 100

    async def consume() -> list[int]:
        got: list[int] = []
        with pytest.raises(SubscriberDisconnected, match="slow consumer"):
            async for msg in stalled:
                got.append(msg)  # noqa: PERF401 -- keep what came before the error
        return got

    bus = Bus()
    sub = bus.subscribe("x", capacity=2, policy="disconnect")
    bus.publish_many("x", [1, 2])
    bus.publish("x", 3)
    stalled = sub
    assert asyncio.run(consume()) == [1, 2]
    assert bus.statistics().disconnects == 1


def _publish_times(stalled_policy: Policy | None, batches: int) -> list[float]:
    """Per-publish wall times (s) of 10-message batches to one reader, plus one stalled
    subscriber with ``stalled_policy`` (capacity 100) if given."""
    bus = Bus()
    reader = bus.subscribe("md.*", capacity=10_000_000)
    if stalled_policy is not None:
        bus.subscribe("md.*", capacity=100, policy=stalled_policy, key=lambda m: m % 10)
    clock = time.perf_counter
    times = []
    for i in range(batches):
        msgs = list(range(i * 10, i * 10 + 10))
        t0 = clock()
        bus.publish_many("md.X", msgs)
        times.append(clock() - t0)
    assert len(reader.drain()) == batches * 10
    return times


def test_a_stalled_subscriber_keeps_the_publisher_pace_and_memory_bounded() -> None:
    # Medians of per-publish times: robust to the odd preemption on a shared machine.
    _publish_times(None, 2_000)  # warm up
    baseline = statistics.median(_publish_times(None, 5_000))
    for policy in Policy:
        times = _publish_times(policy, 10_000)
        first = statistics.median(times[100:2_000])  # the queue is full after 10 batches
        last = statistics.median(times[-2_000:])
        # The pace does not degrade however long the subscriber stays stalled (an unbounded
        # queue would grow 100x here)... Bounds are loose: the 2 cores are shared, and a
        # medians' ratio still moves a few x under load; the benchmark measures the pace.
        assert last < 4 * first + 20e-6, (policy, first, last)
        # ...and stays near the pace without it (conflate pays a key call per message).
        assert last < 10 * baseline + 20e-6, (policy, baseline, last)

        # Memory: the stalled queue holds at most `capacity` messages however long it runs.
        bus = Bus()
        sub = bus.subscribe("m", capacity=1_000, policy=policy, key=lambda m: m[0] % 500)
        gc.collect()
        tracemalloc.start()
        try:
            for i in range(20_000):
                bus.publish_many("m", [(i * 4 + j, "x" * 50) for j in range(4)])
                if i == 2_000:
                    early = tracemalloc.get_traced_memory()[0]
            late = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(sub) <= 1_000
        assert late < early + 64 * 1024, (policy, early, late)


# --- isolation, callbacks, async consumers ----------------------------------------------------

def test_a_raising_callback_is_counted_and_isolated() -> None:
    bus = Bus()
    seen: list[int] = []

    def bad(msg: int) -> None:
        raise RuntimeError(f"boom {msg}")

    failing = bus.subscribe("t", bad, max_errors=3)
    bus.subscribe("t", seen.append)
    failing_filter = bus.subscribe("t", filter=lambda m: m < 1 / 0)
    for i in range(5):
        bus.publish("t", i)
    bus.pump()
    assert seen == [0, 1, 2, 3, 4]
    stats = failing.statistics()
    assert stats.errors == 3 and stats.closed and "3 errors" in stats.close_reason
    assert isinstance(failing.last_error, RuntimeError)
    assert failing_filter.statistics().errors == 5
    assert bus.statistics().errors == 8


def test_subscribe_and_unsubscribe_from_inside_callbacks() -> None:
    bus = Bus()
    log: list[tuple[str, int]] = []
    late: list[Any] = []

    def first(msg: int) -> None:
        log.append(("first", msg))
        if msg == 1:
            late.append(bus.subscribe("t", lambda m: log.append(("late", m))))
        if msg == 2:
            sub_first.close()

    sub_first = bus.subscribe("t", first)
    for i in range(4):
        bus.publish("t", i)
        bus.pump()
    assert log == [("first", 0), ("first", 1), ("first", 2), ("late", 2), ("late", 3)]
    assert sub_first.closed and not late[0].closed


def test_callbacks_run_from_the_loop_once_per_cycle() -> None:
    async def main() -> tuple[list[int], int]:
        bus = Bus(pump_batch=3)
        got: list[int] = []
        bus.subscribe("t", got.append)
        bus.publish_many("t", list(range(10)))
        assert got == []  # publish never runs subscriber code
        for _ in range(5):
            await asyncio.sleep(0)
        return got, bus.statistics().pump_runs

    got, runs = asyncio.run(main())
    assert got == list(range(10))
    assert runs == 4  # 3 + 3 + 3 + 1: bounded work per turn


def test_async_iterators_are_woken_without_a_task_per_message() -> None:
    async def main() -> tuple[list[int], list[list[int]], int]:
        bus = Bus()
        sub = bus.subscribe("t")
        batch_sub = bus.subscribe("t")
        received: list[int] = []
        batches: list[list[int]] = []

        async def reader() -> None:
            received.extend([msg async for msg in sub])

        async def batch_reader() -> None:
            while True:
                try:
                    batches.append(await batch_sub.get_batch())
                except SubscriptionClosed as exc:
                    assert exc.reason == "unsubscribed"
                    return

        tasks = [asyncio.create_task(reader()), asyncio.create_task(batch_reader())]
        await asyncio.sleep(0)
        before = len(asyncio.all_tasks())
        for i in range(5):
            bus.publish_many("t", [i * 3, i * 3 + 1, i * 3 + 2])
            await asyncio.sleep(0)
            assert len(asyncio.all_tasks()) == before
        sub.close()
        batch_sub.close()
        await asyncio.gather(*tasks)
        return received, batches, before

    received, batches, _ = asyncio.run(main())
    assert received == list(range(15))
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]]


def test_statistics_are_frozen() -> None:
    bus = Bus()
    sub = bus.subscribe("t", name="ticker")
    bus.publish("t", 1)
    stats = sub.statistics()
    with pytest.raises(AttributeError):
        stats.queued = 5  # type: ignore[misc]
    assert stats.name == "ticker" and stats.queued == 1
    assert bus.statistics().subscribers == (stats,)


def test_has_subscribers_under_a_first_token() -> None:
    bus = Bus()
    assert not bus.has_subscribers_under("exec")
    public = bus.subscribe(">")
    assert bus.has_subscribers_under("trades") and not bus.has_subscribers_under("exec")
    own = bus.subscribe("exec.3")
    assert bus.has_subscribers_under("exec")
    own.close()
    public.close()
    bus.subscribe("*.>", admin=True)
    assert bus.has_subscribers_under("exec")


def test_callbacks_queued_without_a_loop_run_once_a_loop_publishes() -> None:
    bus = Bus()
    got: list[int] = []
    bus.subscribe("t", got.append)
    bus.publish("t", 1)  # no loop running: waits for pump()

    async def main() -> None:
        bus.publish("t", 2)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert got == [1, 2]
