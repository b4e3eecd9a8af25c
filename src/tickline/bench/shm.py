"""``tickline bench processor``, parts 5 and 6: the shared-memory ring between processes.

5. **shm ring vs multiprocessing.Queue** -- 64-byte records from a spawned child to this
   process: :class:`~tickline.core.shm_ring.SpscShmRing` (``put_packed``/``get_packed``) vs
   ``multiprocessing.Queue.put``/``get`` of one 64-byte ``bytes`` each.
6. **shm wait strategies** -- one record every ``interval_us`` from a child; wake-up latency
   and the consumer's CPU time over wall time per wait strategy.

The producers are module-level functions so a ``spawn`` child can import them. Run from
:func:`tickline.bench.processor.run`.
"""

from __future__ import annotations

import multiprocessing as mp
import struct
import time
from array import array
from collections.abc import Callable
from typing import Any

from tickline.bench.report import histogram_of, percentiles
from tickline.core.shm_ring import BackoffWait, BlockingWait, SpscShmRing

__all__ = ["RECORD", "bench_mpq", "bench_shm", "bench_shm_wait"]


# -- 5. shm ring vs multiprocessing.Queue --------------------------------------------------

RECORD = 64


def _shm_producer(name: str, records: int, chunk: int) -> None:
    ring = SpscShmRing.attach(name, wait=BackoffWait())
    block = memoryview(bytes(range(RECORD)) * chunk)
    sent = 0
    while sent < records:
        k = min(chunk, records - sent)
        sent += ring.put_packed(block[:k * RECORD])
    ring.close_writer()
    ring.close()


def _mpq_producer(q: Any, records: int) -> None:
    rec = bytes(range(RECORD))
    put = q.put
    for _ in range(records):
        put(rec)
    put(None)


def bench_shm(records: int, chunk: int, prog: Any, *, split: bool = True) -> dict[str, Any]:
    """64-byte records child -> parent through SpscShmRing (packed batches).

    ``split``: the consumer turns every record into its own ``bytes`` and compares it (what a
    ``multiprocessing.Queue`` consumer gets); without it, it only moves the packed blocks.
    """
    ctx = mp.get_context("spawn")
    ring = SpscShmRing.create(capacity=1 << 14, slot_size=RECORD, wait=BlockingWait())
    iter_unpack = struct.Struct(f"{RECORD}s").iter_unpack
    label = "per-record bytes" if split else "packed blocks only"
    task = prog.add_task(f"shm ring (64-byte records, {label})", total=records)
    try:
        p = ctx.Process(target=_shm_producer, args=(ring.name, records, chunk))
        p.start()
        got = 0
        first = 0.0
        get = ring.get_packed
        expect = bytes(range(RECORD))
        checked = 0
        while True:
            data = get(8192, 30.0)
            if not data:
                if ring.writer_closed and len(ring) == 0:
                    break
                continue
            if not got:
                first = time.perf_counter()
            if split:
                # One bytes object per record, as multiprocessing.Queue hands out.
                for (rec,) in iter_unpack(data):
                    if rec != expect:
                        raise RuntimeError("shm ring delivered a corrupt record")
                    got += 1
            else:
                got += len(data) // RECORD
                if data[-RECORD:] != expect:  # spot-check the last record of each read
                    raise RuntimeError("shm ring delivered a corrupt record")
            checked += 1
            if checked % 64 == 0:
                prog.update(task, completed=got)
        dt = time.perf_counter() - first
        p.join(30)
    finally:
        ring.close()
        ring.unlink()
    prog.update(task, completed=records)
    return {"records": got, "seconds": dt, "records_per_second": got / dt}


def bench_mpq(records: int, prog: Any) -> dict[str, Any]:
    """64-byte records child -> parent through multiprocessing.Queue, one per put."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue(maxsize=1 << 14)
    task = prog.add_task("multiprocessing.Queue", total=records)
    p = ctx.Process(target=_mpq_producer, args=(q, records))
    p.start()
    got = 0
    get = q.get
    first = 0.0
    while True:
        rec = get()
        if rec is None:
            break
        if not got:
            first = time.perf_counter()
        got += 1
        if got % 20_000 == 0:
            prog.update(task, completed=got)
    dt = time.perf_counter() - first
    p.join(30)
    prog.update(task, completed=records)
    return {"records": got, "seconds": dt, "records_per_second": got / dt}


# -- 6. shm wake-up latency and idle CPU per wait strategy ---------------------------------

def _shm_paced_producer(name: str, records: int, interval_ns: int) -> None:
    ring = SpscShmRing.attach(name, wait=BackoffWait())
    rec = bytearray(RECORD)
    clock = time.perf_counter_ns  # CLOCK_MONOTONIC: comparable across processes
    nxt = clock() + 20_000_000
    for _ in range(records):
        delay = nxt - clock()
        if delay > 0:
            time.sleep(delay / 1e9)
        struct.pack_into("<q", rec, 0, clock())
        ring.put_packed(rec)
        nxt += interval_ns
    ring.close_writer()
    ring.close()


def bench_shm_wait(strategy: str, records: int, interval_us: int, prog: Any) -> dict[str, Any]:
    """One record every ``interval_us`` from a child; the parent waits with ``strategy``.

    Latency: the producer's write to the consumer holding the record (one clock, two
    processes). CPU: the consumer's process time over wall time while mostly idle.
    """
    from tickline.core.shm_ring import SpinWait, WaitStrategy, YieldWait

    waits: dict[str, Callable[[], WaitStrategy]] = {
        "spin": SpinWait, "yield": YieldWait, "backoff": BackoffWait, "blocking": BlockingWait}
    ctx = mp.get_context("spawn")
    ring = SpscShmRing.create(capacity=1 << 10, slot_size=RECORD, wait=waits[strategy]())
    task = prog.add_task(f"shm wake-up, {strategy} wait", total=records)
    lat = array("q")
    clock = time.perf_counter_ns
    unpack = struct.Struct("<q56x").iter_unpack
    try:
        p = ctx.Process(target=_shm_paced_producer,
                        args=(ring.name, records, interval_us * 1000))
        p.start()
        cpu0 = 0.0
        wall0 = 0.0
        while True:
            data = ring.get_packed(64, 30.0)
            now = clock()
            if not data:
                if ring.writer_closed and len(ring) == 0:
                    break
                continue
            if not lat:
                cpu0 = time.process_time()
                wall0 = time.perf_counter()
            lat.extend(now - t for (t,) in unpack(data))
            if len(lat) % 500 == 0:
                prog.update(task, completed=len(lat))
        cpu = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
        p.join(30)
    finally:
        ring.close()
        ring.unlink()
    prog.update(task, completed=records)
    return {"strategy": strategy, "records": len(lat), "interval_us": interval_us,
            "consumer_cpu_fraction": cpu, "latency_us": percentiles(histogram_of(lat), 1000.0)}
