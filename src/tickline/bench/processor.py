"""``tickline bench processor``: the event processor and the shared-memory ring, with baselines.

What is timed, in one run (each rate is wall-clock, first submit to last event handled):

1. **processor** -- :class:`~tickline.core.processor.EventProcessor` in thread mode with a
   trivial handler; the producer (main thread) submits pre-built chunks of ``chunk`` events
   with ``submit_many``; the consumer thread drains natural batches. Latency percentiles are
   the processor's own end-to-end histogram (enqueue to batch end) *at saturation*.
2. **processor, paced** -- open-loop load at ``paced_rate`` events/s: each event carries its
   planned send time, the producer submits whatever is due (never waits for the consumer),
   and the handler records ``now - planned``: coordinated-omission-free latency.
3. **queue.Queue + threads** -- the textbook baseline: ``put`` per event, ``workers``
   threads doing ``get`` + handler.
4. **seed port** -- the seed document's processor ported straight: ``workers`` threads
   spinning on one shared queue with ``sleep(1 µs)`` when empty, a mutex-guarded batch each,
   a flush ticker, and mutex-guarded "average = (average + x) / 2" metrics.
5. **shm ring vs multiprocessing.Queue** -- 64-byte records from a child process to this one:
   :class:`~tickline.core.shm_ring.SpscShmRing` with ``write_packed``/``get_packed`` (the
   consumer splits every record into its own ``bytes`` and compares it -- the headline -- and
   once more moving packed blocks only) vs ``multiprocessing.Queue.put``/``get`` of one
   64-byte ``bytes`` each.

6. **shm wait strategies** -- one record every 250 µs from a child; the parent waits with
   each strategy: wake-up latency (write -> consumer holds it, one CLOCK_MONOTONIC across
   both processes) and the consumer's CPU time over wall time.
7. **gc settings** -- a handler that adds one live object per event to a 300k-object heap,
   run with default collector settings, ``gc.freeze()`` after warm-up, raised thresholds,
   and both, each in a fresh interpreter; per-batch service-time tail and collector pauses.

Also: the processor fed by one ``submit()`` per event (what batching on the producer side buys).

The handler is the same function in 1, 3 and 4 (it does nothing), so the rates compare the
machinery. Results are printed and written, never asserted. Parts 1-4 (in-process, one
``Event`` type and handler) are here; 5-6 are in :mod:`tickline.bench.shm`, 7 in
:mod:`tickline.bench.gc_settings`; :func:`run` runs them all and reports.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from pathlib import Path
from queue import Queue
from typing import Any

from rich.table import Table

from tickline.bench.gc_settings import GC_MODES, bench_gc
from tickline.bench.report import (
    console,
    histogram_of,
    latency_table,
    machine,
    percentiles,
    progress,
    write_json,
)
from tickline.bench.shm import RECORD, bench_mpq, bench_shm, bench_shm_wait
from tickline.core.processor import EventProcessor

__all__ = [
    "GC_MODES",
    "RECORD",
    "Event",
    "SeedProcessor",
    "bench_gc",
    "bench_mpq",
    "bench_paced",
    "bench_processor",
    "bench_processor_single",
    "bench_queue",
    "bench_seed",
    "bench_shm",
    "bench_shm_wait",
    "run",
    "trivial_handler",
]


class Event:
    """The benchmark's event: a small slotted object (type dispatch by class)."""

    __slots__ = ("key", "planned", "value")

    def __init__(self, key: int, value: int, planned: int = 0) -> None:
        self.key = key
        self.value = value
        self.planned = planned


def trivial_handler(ev: Event) -> None:
    """The trivial handler every variant runs."""


# -- 1. the processor --------------------------------------------------------------------

def bench_processor(events: int, chunk: int, max_batch: int, prog: Any) -> dict[str, Any]:
    """Saturating throughput of EventProcessor (thread mode) with a trivial handler."""
    proc: EventProcessor[Event] = EventProcessor(
        name="bench", capacity=1 << 16, max_batch=max_batch, policy="block", block_timeout=60,
        clock=time.perf_counter_ns)
    proc.register(Event, trivial_handler)
    batch = [Event(i, i) for i in range(chunk)]
    rounds = events // chunk
    task = prog.add_task("processor", total=rounds * chunk)
    proc.start()
    submit = proc.submit_many
    step = max(1, 50_000 // chunk)
    t0 = time.perf_counter()
    for r in range(rounds):
        submit(batch)
        if r % step == 0:
            prog.update(task, completed=r * chunk)
    proc.stop(timeout=120)
    dt = time.perf_counter() - t0
    prog.update(task, completed=rounds * chunk)
    st = proc.statistics()
    e2e = proc.end_to_end.histogram
    return {
        "events": st.processed, "seconds": dt, "events_per_second": st.processed / dt,
        "batches": st.batches, "mean_batch": st.batch_size.mean,
        "latency_us": percentiles(e2e, 1000.0),
        "queue_wait_us": percentiles(proc.queue_wait.histogram, 1000.0),
    }


def bench_processor_single(events: int, prog: Any) -> dict[str, Any]:
    """The processor fed one ``submit()`` call per event (no producer-side batching)."""
    proc: EventProcessor[Event] = EventProcessor(
        name="bench1", capacity=1 << 16, max_batch=4096, policy="block", block_timeout=60,
        clock=time.perf_counter_ns)
    proc.register(Event, trivial_handler)
    ev = Event(0, 0)
    task = prog.add_task("processor, submit() per event", total=events)
    proc.start()
    submit = proc.submit
    t0 = time.perf_counter()
    for i in range(events):
        submit(ev)
        if i % 50_000 == 0:
            prog.update(task, completed=i)
    proc.stop(timeout=120)
    dt = time.perf_counter() - t0
    prog.update(task, completed=events)
    st = proc.statistics()
    return {"events": st.processed, "seconds": dt, "events_per_second": st.processed / dt,
            "mean_batch": st.batch_size.mean}


def bench_paced(rate: int, seconds: float, prog: Any) -> dict[str, Any]:
    """Open-loop latency at ``rate`` events/s, measured from each event's planned time."""
    clock = time.perf_counter_ns
    lat = array("q")
    append = lat.append

    def handler(ev: Event) -> None:
        append(clock() - ev.planned)

    proc: EventProcessor[Event] = EventProcessor(
        name="paced", capacity=1 << 16, max_batch=1024, policy="block", block_timeout=60,
        clock=clock)
    proc.register(Event, handler)
    total = int(rate * seconds)
    interval = 1e9 / rate
    task = prog.add_task(f"processor paced {rate:,}/s", total=total)
    proc.start()
    start = clock() + 1_000_000
    sent = 0
    while sent < total:
        now = clock()
        due = min(total, int((now - start) / interval) + 1) if now >= start else 0
        if due > sent:
            proc.submit_many([Event(i, i, start + int(i * interval)) for i in range(sent, due)])
            sent = due
            if sent % 20_000 < 64:
                prog.update(task, completed=sent)
        else:
            time.sleep(max(0.0, (start + sent * interval - now) / 1e9))
    proc.stop(timeout=60)
    prog.update(task, completed=total)
    hist = histogram_of(lat)
    return {"rate": rate, "events": len(lat), "latency_us": percentiles(hist, 1000.0)}


# -- 3. queue.Queue + worker threads -------------------------------------------------------

def bench_queue(events: int, workers: int, prog: Any) -> dict[str, Any]:
    """``queue.Queue`` (bounded) with ``workers`` consumer threads, one put per event."""
    q: Queue[Event | None] = Queue(maxsize=1 << 16)
    done = array("q", [0] * workers)

    def worker(i: int) -> None:
        get = q.get
        n = 0
        while True:
            ev = get()
            if ev is None:
                break
            trivial_handler(ev)
            n += 1
        done[i] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    ev = Event(0, 0)
    task = prog.add_task(f"queue.Queue + {workers} threads", total=events)
    put = q.put
    t0 = time.perf_counter()
    for i in range(events):
        put(ev)
        if i % 50_000 == 0:
            prog.update(task, completed=i)
    for _ in threads:
        put(None)
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    prog.update(task, completed=events)
    return {"events": sum(done), "seconds": dt, "events_per_second": sum(done) / dt}


# -- 4. the seed's processor, ported straight ------------------------------------------------

class _SeedMetrics:
    """The seed's Metrics: a mutex around counters and a "moving average" of batch times."""

    def __init__(self) -> None:
        self.processed = 0
        self.dropped = 0
        self.average_latency = 0
        self.max_latency = 0
        self.mutex = threading.Lock()

    def increment_processed(self, n: int) -> None:
        with self.mutex:
            self.processed += n

    def increment_dropped(self) -> None:
        with self.mutex:
            self.dropped += 1

    def update_latency(self, latency: int) -> None:
        with self.mutex:
            self.max_latency = max(self.max_latency, latency)
            self.average_latency = (latency if self.average_latency == 0
                                    else (self.average_latency + latency) // 2)


class SeedProcessor:
    """A straight port of the seed's RealTimeProcessor (section 1), defects included.

    ``eventQueue`` is a ``deque`` (the "lock-free queue"); ``ProcessEvent`` drops when the
    size check says full; each worker spins: flush on a 1 ms ticker, else dequeue into its
    mutex-guarded batch, else ``sleep(1 µs)``.
    """

    def __init__(self, workers: int, queue_size: int, batch_size: int = 100,
                 flush_interval: float = 0.001) -> None:
        self.queue: deque[Event] = deque()
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.metrics = _SeedMetrics()
        self.shutdown = threading.Event()
        self.threads = [threading.Thread(target=self._worker) for _ in range(workers)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.shutdown.set()
        for t in self.threads:
            t.join()

    def process_event(self, ev: Event) -> bool:
        if len(self.queue) >= self.queue_size:
            self.metrics.increment_dropped()
            return False
        self.queue.append(ev)
        return True

    def _worker(self) -> None:
        batch: list[Event] = []
        mutex = threading.Lock()
        next_flush = time.monotonic() + self.flush_interval
        q = self.queue

        def process_batch() -> None:
            if not batch:
                return
            start = time.perf_counter_ns()
            for e in batch:
                trivial_handler(e)
            self.metrics.update_latency(time.perf_counter_ns() - start)
            self.metrics.increment_processed(len(batch))
            batch.clear()

        while True:
            if self.shutdown.is_set():
                # The seed flushes its batch and returns -- whatever is still queued is lost.
                with mutex:
                    process_batch()
                return
            if time.monotonic() >= next_flush:
                next_flush += self.flush_interval
                with mutex:
                    process_batch()
                continue
            try:
                ev = q.popleft()
            except IndexError:
                time.sleep(1e-6)
                continue
            with mutex:
                batch.append(ev)
                if len(batch) >= self.batch_size:
                    process_batch()


def bench_seed(events: int, workers: int, prog: Any) -> dict[str, Any]:
    """The seed port under the same load; the producer retries when the seed drops."""
    sp = SeedProcessor(workers, queue_size=10_000)
    sp.start()
    ev = Event(0, 0)
    task = prog.add_task(f"seed port, {workers} spinning workers", total=events)
    full = 0
    t0 = time.perf_counter()
    process = sp.process_event
    for i in range(events):
        while not process(ev):
            full += 1
            time.sleep(0)
        if i % 50_000 == 0:
            prog.update(task, completed=i)
    while sp.queue:  # wait for the workers to empty the queue (the seed cannot tell us)
        time.sleep(0.0005)
    sp.stop()
    dt = time.perf_counter() - t0
    prog.update(task, completed=events)
    m = sp.metrics
    return {"events": m.processed, "seconds": dt, "events_per_second": m.processed / dt,
            "queue_full_retries": full, "seed_average_latency_ns": m.average_latency,
            "seed_max_latency_ns": m.max_latency}


# -- the command ---------------------------------------------------------------------------

def run(*, events: int = 2_000_000, chunk: int = 256, max_batch: int = 4096,
        baseline_events: int = 300_000, workers: int = 2, paced_rate: int = 100_000,
        paced_seconds: float = 2.0, shm_records: int = 4_000_000,
        mpq_records: int = 200_000, gc_events: int = 1_000_000, gc_live: int = 300_000,
        wait_records: int = 4_000, json_path: Path | None = None) -> dict[str, Any]:
    """Run every measurement, print tables, write JSON; return the results dict."""
    with progress() as prog:
        proc = bench_processor(events, chunk, max_batch, prog)
        single = bench_processor_single(baseline_events, prog)
        paced = bench_paced(paced_rate, paced_seconds, prog) if paced_rate else None
        queue = bench_queue(baseline_events, workers, prog)
        seed = bench_seed(baseline_events, workers, prog)
        shm = bench_shm(shm_records, 1024, prog)
        shm_raw = bench_shm(shm_records, 1024, prog, split=False)
        mpq = bench_mpq(mpq_records, prog)
        waits = ([bench_shm_wait(w, wait_records, 250, prog)
                  for w in ("spin", "yield", "backoff", "blocking")] if wait_records else [])
        gcr = bench_gc(gc_events, gc_live, prog) if gc_events else []

    rates = Table(title="tickline bench processor: throughput")
    rates.add_column("")
    rates.add_column("events or records/s", justify="right")
    rates.add_column("vs baseline", justify="right")
    rates.add_row(f"EventProcessor (submit_many x{chunk}, trivial handler)",
                  f"{proc['events_per_second']:,.0f}",
                  f"{proc['events_per_second'] / queue['events_per_second']:.1f}x queue.Queue")
    rates.add_row("EventProcessor (submit() per event)", f"{single['events_per_second']:,.0f}",
                  f"{single['events_per_second'] / queue['events_per_second']:.1f}x queue.Queue")
    rates.add_row(f"queue.Queue + {workers} threads", f"{queue['events_per_second']:,.0f}", "1.0x")
    rates.add_row(f"seed port ({workers} spinning workers)", f"{seed['events_per_second']:,.0f}",
                  f"{seed['events_per_second'] / queue['events_per_second']:.2f}x queue.Queue")
    rates.add_row("SpscShmRing, 64-byte records (one bytes each)",
                  f"{shm['records_per_second']:,.0f}",
                  f"{shm['records_per_second'] / mpq['records_per_second']:.1f}x mp.Queue")
    rates.add_row("SpscShmRing, 64-byte records (packed blocks)",
                  f"{shm_raw['records_per_second']:,.0f}",
                  f"{shm_raw['records_per_second'] / mpq['records_per_second']:.1f}x mp.Queue")
    rates.add_row("multiprocessing.Queue, 64-byte records", f"{mpq['records_per_second']:,.0f}",
                  "1.0x")
    console.print(rates)
    rows = {"processor at saturation (enqueue -> batch end)": proc["latency_us"],
            "processor queue wait at saturation": proc["queue_wait_us"]}
    if paced is not None:
        rows[f"processor paced {paced_rate:,}/s (planned -> handled)"] = paced["latency_us"]
    console.print(latency_table("tickline bench processor: latency", rows, "µs"))
    if waits:
        rows_w = {f"shm {w['strategy']} wait (CPU {w['consumer_cpu_fraction']:.0%})":
                  w["latency_us"] for w in waits}
        console.print(latency_table(
            "SpscShmRing wake-up latency, 1 record / 250 µs (producer write -> consumer "
            "has it)", rows_w, "µs; CPU = consumer process time / wall time"))
    if gcr:
        gtab = Table(title=f"gc: {gc_live:,} live objects + 1 per event, {gc_events:,} events")
        for col in ("mode", "ev/s", "p99.9", "p99.99", "max", "gc g0/g1/g2", "g2 max ms"):
            gtab.add_column(col, justify="right")
        for r in gcr:
            b = r["batch_service_us"]
            gtab.add_row(r["mode"].replace("+thresholds", "+thr"),
                         f"{r['events_per_second'] / 1e6:.2f}M", f"{b['p99_9']:,.0f}",
                         f"{b['p99_99']:,.0f}", f"{b['max']:,.0f}",
                         "/".join(str(c) for c in r["gc_collections"]),
                         f"{r['gc_max_pause_ms'][2]:.0f}")
        gtab.caption = "per-batch (64 events) service time in µs"
        console.print(gtab)
    console.print(f"processor: {proc['events']:,} events in {proc['batches']:,} batches "
                  f"(mean {proc['mean_batch']:.0f}); seed port: {seed['queue_full_retries']:,} "
                  f"queue-full retries, its 'average latency' says "
                  f"{seed['seed_average_latency_ns']:,} ns")

    result: dict[str, Any] = {
        "events_per_second": proc["events_per_second"],
        "queue_baseline_events_per_second": queue["events_per_second"],
        "seed_port_events_per_second": seed["events_per_second"],
        "shm_ring_records_per_second": shm["records_per_second"],
        "shm_ring_packed_records_per_second": shm_raw["records_per_second"],
        "mp_queue_records_per_second": mpq["records_per_second"],
        "single_submit_events_per_second": single["events_per_second"],
        "speedup_vs_queue": proc["events_per_second"] / queue["events_per_second"],
        "shm_speedup_vs_mp_queue": shm["records_per_second"] / mpq["records_per_second"],
        "processor": proc, "paced": paced, "queue_baseline": queue, "seed_port": seed,
        "shm_ring": shm, "shm_ring_packed": shm_raw, "mp_queue": mpq,
        "processor_single_submit": single, "gc": gcr, "shm_wait_strategies": waits,
        "config": {"events": events, "chunk": chunk, "max_batch": max_batch,
                   "baseline_events": baseline_events, "workers": workers,
                   "paced_rate": paced_rate, "shm_records": shm_records,
                   "mpq_records": mpq_records, "record_bytes": RECORD},
        "machine": machine(),
    }
    write_json(json_path, result)
    return result
