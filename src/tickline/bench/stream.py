"""``tickline bench stream``: fan-out of the exchange-core mix's market data.

What is timed
-------------
The workload (:func:`tickline.bench.workload.exchange_core_mix`) is generated and run through
a :class:`~tickline.matching.MatchingEngine` *before* timing: the engine's events per command
are precomputed, so the numbers isolate the streaming layer. The timed loop, per cycle of
``batch`` commands, is::

    t0 = perf_counter_ns()
    publisher.publish_batch(events of the next `batch` commands)  # events -> messages, fan-out
    await asyncio.sleep(0)                                        # subscribers wake and take

so it covers the :class:`~tickline.stream.MarketDataPublisher` (mirror upkeep, sequence
numbers, message construction for trades, BBO, depth deltas and L3 events), the
:class:`~tickline.stream.Bus` (routing, per-subscriber bounded queues) and every subscriber's
wake-up and receipt. Each subscriber is an asyncio task subscribed to ``*.<symbol>`` (all
public per-symbol topics) that takes what is queued with ``get_chunks()`` and counts it.

*Deliveries* are messages received by the reading subscribers (a message received by ten
subscribers is ten deliveries), per second of wall time of the timed loop.
*Latency* is publish-to-receive: from ``t0`` (just before ``publish_batch``) to the moment a
subscriber holds the message. Every message of one cycle was published by the same call, so
a subscriber records one value with the count of messages it received (exact, and it keeps
``HdrHistogram.record_value`` out of the per-message path).

The *stalled* subscriber subscribes like the others, with a ``drop_oldest`` queue of
``capacity`` messages, and never reads; the run reports its queue against that bound.
"""

from __future__ import annotations

import asyncio
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tickline.matching.events import Event
from tickline.stream import Bus, MarketDataPublisher, Subscription, SubscriptionClosed

Batch = list[tuple[int, int, list[Event]]]


@dataclass
class CaseResult:
    """One timed run: ``subscribers`` readers (plus one stalled if ``stalled``)."""

    subscribers: int
    stalled: bool
    batch: int
    commands: int
    messages: int
    deliveries: int
    seconds: float
    deliveries_per_second: float
    messages_per_second: float
    commands_per_second: float
    latency_ns: dict[str, int] = field(default_factory=dict)
    stalled_queue: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    deliveries_per_cpu_second: float = 0.0
    repeats: int = 1
    deliveries_per_second_runs: list[float] = field(default_factory=list)
    histogram: Any = field(default=None, repr=False)


class _Clock:
    """The publish time of the current cycle, shared with the subscriber tasks."""

    t0 = 0


async def _reader(sub: Subscription, clock: _Clock, hist: HdrHistogram,
                  counts: list[int], index: int) -> None:
    now = time.perf_counter_ns
    received = 0
    try:
        while True:
            chunks = await sub.get_chunks()
            lat = now() - clock.t0
            n = 0
            for _topic, msgs in chunks:
                n += len(msgs)
            received += n
            hist.record_value(lat if lat > 0 else 1, n)
    except SubscriptionClosed:
        pass
    finally:
        counts[index] = received


def _retained_bytes(sub: Subscription) -> int:
    """Approximate bytes a queue pins: its messages and chunk lists (messages are shared
    with other subscribers, so this is an upper bound on what it alone keeps alive)."""
    total = sys.getsizeof(sub._chunks)
    for _topic, msgs in sub._chunks:
        total += sys.getsizeof(msgs) + sum(sys.getsizeof(m) for m in msgs)
    return total


async def _run_case(
    instruments: list[Any], prefill: Batch, batches: list[Batch], n_subscribers: int,
    stalled: bool, capacity: int, batch: int, advance: Callable[[int], None],
) -> CaseResult:
    bus = Bus(default_capacity=capacity)
    md = MarketDataPublisher(bus, instruments)
    md.publish_batch(prefill)  # untimed: builds the mirror (no subscribers yet)
    symbols = [inst.symbol for inst in instruments]
    clock = _Clock()
    hists = [HdrHistogram(1, 60_000_000_000, 3) for _ in range(n_subscribers)]
    counts = [0] * n_subscribers
    subs: list[Subscription] = []
    tasks = []
    for i in range(n_subscribers):
        pattern = f"*.{symbols[0]}" if len(symbols) == 1 else ">"
        sub = bus.subscribe(pattern, capacity=capacity, name=f"reader-{i}")
        subs.append(sub)
        tasks.append(asyncio.create_task(_reader(sub, clock, hists[i], counts, i)))
    slow = bus.subscribe(f"*.{symbols[0]}" if len(symbols) == 1 else ">", capacity=capacity,
                         policy="drop_oldest", name="stalled") if stalled else None
    await asyncio.sleep(0)
    messages_before = md.messages
    publish_batch = md.publish_batch
    sleep = asyncio.sleep
    now = time.perf_counter_ns
    step = max(1, len(batches) // 50)
    gc.collect()
    gc.disable()
    try:
        cpu_start = time.process_time()
        start = now()
        for i, cycle in enumerate(batches, 1):
            clock.t0 = now()
            publish_batch(cycle)
            await sleep(0)
            if i % step == 0:
                advance(step)
        elapsed = (now() - start) / 1e9
        advance(len(batches) % step)
    finally:
        gc.enable()
    for sub in subs:
        sub.close()
    await asyncio.gather(*tasks)
    merged = HdrHistogram(1, 60_000_000_000, 3)
    for hist in hists:
        merged.add(hist)
    cpu = time.process_time() - cpu_start
    deliveries = sum(counts)
    messages = md.messages - messages_before
    commands = sum(len(b) for b in batches)
    result = CaseResult(
        subscribers=n_subscribers, stalled=stalled, batch=batch, commands=commands,
        messages=messages, deliveries=deliveries, seconds=elapsed,
        deliveries_per_second=deliveries / elapsed, messages_per_second=messages / elapsed,
        commands_per_second=commands / elapsed,
        latency_ns=_percentiles(merged), cpu_seconds=cpu, histogram=merged,
        deliveries_per_cpu_second=deliveries / cpu if cpu > 0 else 0.0,
        deliveries_per_second_runs=[deliveries / elapsed],
    )
    if slow is not None:
        stats = slow.statistics()
        result.stalled_queue = {
            "capacity": stats.capacity, "queued": stats.queued,
            "high_water": stats.high_water, "offered": stats.offered,
            "dropped": stats.dropped, "retained_bytes": _retained_bytes(slow),
        }
        assert stats.queued <= stats.capacity and stats.high_water <= stats.capacity
    return result


def _percentiles(hist: HdrHistogram) -> dict[str, int]:
    if not hist.get_total_count():
        return {}
    out = {f"p{p:g}": int(hist.get_value_at_percentile(p)) for p in (50, 90, 99, 99.9)}
    out["max"] = int(hist.get_max_value())
    return out


def _summarize(runs: list[CaseResult]) -> CaseResult:
    """The best run's throughput; latency over all runs; every run's rate kept."""
    best = max(runs, key=lambda r: r.deliveries_per_second)
    merged = HdrHistogram(1, 60_000_000_000, 3)
    for r in runs:
        merged.add(r.histogram)
    rates = [r.deliveries_per_second for r in runs]
    return replace(best, latency_ns=_percentiles(merged), repeats=len(runs),
                   deliveries_per_second_runs=rates, histogram=None)


def _machine() -> dict[str, str]:
    return {"python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def run(
    *, commands: int = 200_000, seed: int = 1, symbols: int = 1, batch: int = 100,
    subscriber_counts: tuple[int, ...] = (1, 10, 100), capacity: int = 10_000,
    repeats: int = 3, per_command_limit: int = 20_000, use_uvloop: bool = True,
    json_path: Path | None = None, console: Console | None = None,
) -> dict[str, Any]:
    """Run the fan-out benchmark and print a table; return (and optionally write) results.

    Each case runs ``repeats`` times, interleaved with the other cases; throughput is the
    best run's (the least disturbed by other load on the machine), latency percentiles are
    over every run's deliveries together. The batch-of-1 case replays only the first
    ``per_command_limit`` commands (it is ~10x slower per message).
    """
    from tickline.bench.workload import exchange_core_mix

    if console is None:  # a table of 10 columns needs more than a pipe's default 80
        console = Console() if sys.stdout.isatty() else Console(width=120)
    loop_name = "asyncio"
    if use_uvloop:
        try:
            import uvloop

            loop_name = "uvloop"
        except ImportError:  # pragma: no cover - platform without uvloop
            use_uvloop = False
    cases: list[tuple[int, bool, int]] = [(n, False, batch) for n in subscriber_counts]
    cases += [(n, True, batch) for n in subscriber_counts]
    if 10 in subscriber_counts and batch != 1:
        cases.append((10, False, 1))  # the per-command cost, for honesty
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                        console=console)
    runs: dict[tuple[int, bool, int], list[CaseResult]] = {case: [] for case in cases}
    with progress:
        gen = progress.add_task("generate workload", total=commands)
        work = exchange_core_mix(commands, seed, symbols,
                                 progress=lambda n: progress.update(gen, completed=n))
        progress.update(gen, completed=commands)
        engine = work.engine()
        pre = progress.add_task("precompute engine events", total=len(work.commands))
        prefill: Batch = [(c.seq, c.ts, engine.process(c)) for c in work.prefill]
        events: Batch = []
        for i, cmd in enumerate(work.commands):
            events.append((cmd.seq, cmd.ts, engine.process(cmd)))
            if i % 10_000 == 0:
                progress.update(pre, completed=i)
        progress.update(pre, completed=len(work.commands))
        tasks = {}
        for n, stalled, size in cases:
            label = f"{n} subscriber{'s' if n != 1 else ''}" + (" + stalled" if stalled else "")
            cycles = -(-(min(len(events), per_command_limit) if size == 1 else len(events))
                       // size)
            tasks[(n, stalled, size)] = progress.add_task(
                f"{label}, batch {size}", total=cycles * repeats)
        # Repeats are interleaved (case A, B, C, A, B, C, ...) so that a burst of load from
        # elsewhere on a shared machine does not land on one case only.
        for _ in range(repeats):
            for case in cases:
                n, stalled, size = case
                cmds = events[:per_command_limit] if size == 1 else events
                batches = [cmds[i:i + size] for i in range(0, len(cmds), size)]

                def advance(k: int, task: Any = tasks[case]) -> None:
                    progress.advance(task, k)

                coro = _run_case(work.instruments, prefill, batches, n, stalled, capacity,
                                 size, advance)
                result = uvloop.run(coro) if use_uvloop else asyncio.run(coro)
                runs[case].append(result)
    results = [_summarize(runs[case]) for case in cases]

    table = Table(title=f"stream fan-out: exchange-core mix, {commands:,} commands, "
                        f"{loop_name}, best of {repeats}")
    for col in ("subscribers", "batch", "msgs/s", "deliv/s", "p50", "p90", "p99", "p99.9",
                "max µs", "stalled queue"):
        table.add_column(col, justify="right")
    for r in results:
        lat = r.latency_ns
        sq = r.stalled_queue
        table.add_row(
            f"{r.subscribers}{'+1' if r.stalled else ''}", str(r.batch),
            f"{r.messages_per_second / 1e6:.2f}M", f"{r.deliveries_per_second / 1e6:.2f}M",
            *(f"{lat.get(k, 0) / 1000:,.0f}" for k in ("p50", "p90", "p99", "p99.9", "max")),
            f"{sq['high_water']}/{sq['capacity']} {sq['retained_bytes'] // 1024}K"
            if sq else "",
        )
    console.print(table)
    console.print("latency: µs from publish_batch() to a subscriber holding the message; "
                  "+1 = plus one stalled subscriber (drop_oldest, never reads)")

    def pick(n: int, stalled: bool) -> CaseResult | None:
        return next((r for r in results if r.subscribers == n and r.stalled == stalled
                     and r.batch == batch), None)

    ten = pick(10, False)
    ten_slow = pick(10, True)
    out: dict[str, Any] = {
        "benchmark": "stream",
        "what": "MarketDataPublisher.publish_batch + Bus fan-out + subscriber receipt; "
                "engine events precomputed",
        "commands": commands, "seed": seed, "symbols": symbols, "batch": batch,
        "capacity": capacity, "loop": loop_name, "machine": _machine(),
        "messages_per_command": results[0].messages / max(1, results[0].commands),
        "cases": [asdict(r) for r in results],
    }
    if ten is not None:
        out["deliveries_per_second"] = ten.deliveries_per_second
    if ten_slow is not None:
        out["deliveries_per_second_with_slow_subscriber"] = ten_slow.deliveries_per_second
    if ten is not None and ten_slow is not None:
        ratio = ten_slow.deliveries_per_second / ten.deliveries_per_second
        out["slow_subscriber_ratio"] = ratio
        out["slow_subscriber_ratio_cpu"] = (ten_slow.deliveries_per_cpu_second
                                            / max(1e-9, ten.deliveries_per_cpu_second))
        console.print(f"10 subscribers: {ten.deliveries_per_second:,.0f} deliveries/s; with a "
                      f"stalled one: {ten_slow.deliveries_per_second:,.0f} ({ratio:.2f}x); "
                      f"stalled queue high water {ten_slow.stalled_queue['high_water']} "
                      f"<= capacity {capacity}")
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=2) + "\n")
        console.print(f"wrote {json_path}")
    return out
