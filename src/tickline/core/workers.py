"""Process workers: ``workers=N`` partitions by key, one process each, over shared memory.

For CPU-bound handlers threads do not help (the GIL), so :class:`ProcessPartitions` runs each
partition's single consumer in its own process. Events cross the process boundary as
length-prefixed payloads in the fixed slots of an :class:`SpscShmRing` -- bytes copied, never
pickled; the only pickle is the handler itself, once, when the process starts. Every key maps
to one partition (:func:`partition_of`), and a partition's ring is FIFO with one consumer, so
each key's events are handled in submission order.

Slot framing (``slot_size`` bytes per record)::

    0        4                          4+len                      slot_size
    +--------+--------------------------+--------------------------+
    | len u32| payload                  | zero padding             |
    +--------+--------------------------+--------------------------+

Each worker writes whatever its handler returns (``bytes`` or ``None``) to a second ring back
to the parent; :meth:`ProcessPartitions.results` collects them. The parent is the only
producer of each input ring and the only consumer of each output ring (single-threaded use of
one :class:`ProcessPartitions` object is part of the contract).
"""

from __future__ import annotations

import multiprocessing as mp
import struct
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from tickline.core.processor import partition_of
from tickline.core.shm_ring import BackoffWait, BlockingWait, SpscShmRing

__all__ = ["ProcessPartitions", "ProcessPartitionsStatistics"]

_LEN = struct.Struct("<I")
WorkerHandler = Callable[[bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class ProcessPartitionsStatistics:
    """Frozen counts per partition: records submitted to it and results received from it."""

    workers: int
    submitted: tuple[int, ...]
    results: tuple[int, ...]
    queued: tuple[int, ...]
    alive: tuple[bool, ...]


def _worker_main(in_name: str, out_name: str, handler: WorkerHandler, max_batch: int) -> None:
    """Body of one worker process: drain the input ring in natural batches until closed."""
    rin = SpscShmRing.attach(in_name, wait=BlockingWait(recheck=0.005))
    rout = SpscShmRing.attach(out_name, wait=BackoffWait())
    slot = rin.slot_size
    limit = rout.slot_size - _LEN.size
    unpack = _LEN.unpack_from
    pack = _LEN.pack_into
    try:
        while True:
            data = rin.get_packed(max_batch)
            if not data:
                if rin.writer_closed and len(rin) == 0:
                    return
                continue
            out = bytearray(len(data))  # at most one result per record, same slot size
            k = 0
            for off in range(0, len(data), slot):
                (n,) = unpack(data, off)
                res = handler(data[off + 4:off + 4 + n])
                if res is not None:
                    if len(res) > limit:
                        raise ValueError(f"handler result of {len(res)} bytes exceeds "
                                         f"slot_size - 4 = {limit}")
                    base = k * slot
                    pack(out, base, len(res))
                    out[base + 4:base + 4 + len(res)] = res
                    k += 1
            if k:
                rout.put_packed(memoryview(out)[:k * slot])
    finally:
        rout.close_writer()
        rin.close()
        rout.close()


class ProcessPartitions:
    """``workers`` processes, each the single consumer of one key partition.

    ``handler(payload: bytes) -> bytes | None`` runs in the worker processes; it must be
    picklable (a module-level function). Payloads and results are at most ``slot_size - 4``
    bytes. ``capacity`` is each ring's slot count (power of two). Backpressure is ``block``:
    a full partition makes :meth:`submit_many` wait (collecting results meanwhile, so
    the workers never stall on a full result ring) up to ``block_timeout`` seconds, then raise
    ``TimeoutError``.
    """

    def __init__(self, *, workers: int, handler: WorkerHandler, slot_size: int = 64,
                 capacity: int = 1 << 14, max_batch: int = 1024, block_timeout: float = 10.0,
                 start_method: str = "spawn") -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.workers = workers
        self.slot_size = slot_size
        self.block_timeout = block_timeout
        self._handler = handler
        self._max_batch = max_batch
        self._ctx: Any = mp.get_context(start_method)
        self._in = [SpscShmRing.create(capacity=capacity, slot_size=slot_size,
                                       wait=BackoffWait()) for _ in range(workers)]
        self._out = [SpscShmRing.create(capacity=capacity, slot_size=slot_size,
                                        wait=BackoffWait()) for _ in range(workers)]
        self._procs: list[Any] = []
        self._results: list[list[bytes]] = [[] for _ in range(workers)]
        self._submitted = [0] * workers
        self._received = [0] * workers
        self._stopped = False

    def start(self) -> None:
        """Start the worker processes."""
        for i in range(self.workers):
            p = self._ctx.Process(target=_worker_main, name=f"tickline-worker-{i}",
                                  args=(self._in[i].name, self._out[i].name, self._handler,
                                        self._max_batch), daemon=True)
            p.start()
            self._procs.append(p)

    def submit_many(self, items: Sequence[tuple[Hashable, bytes]]) -> int:
        """Route ``(key, payload)`` pairs to their partitions, in order; return the count."""
        if self._stopped:
            raise RuntimeError("ProcessPartitions is stopped; nothing accepted")
        n = self.workers
        slot = self.slot_size
        limit = slot - _LEN.size
        bufs = [bytearray() for _ in range(n)]
        pad = bytes(slot)
        for key, payload in items:
            if len(payload) > limit:
                raise ValueError(f"payload of {len(payload)} bytes exceeds slot_size - 4 = "
                                 f"{limit}")
            b = bufs[partition_of(key, n)]
            b += _LEN.pack(len(payload))
            b += payload
            b += pad[:limit - len(payload)]
        for i, b in enumerate(bufs):
            if b:
                self._put(i, b)
        return len(items)

    def submit(self, key: Hashable, payload: bytes) -> None:
        """Route one payload (see :meth:`submit_many`)."""
        self.submit_many(((key, payload),))

    def _put(self, i: int, data: bytearray) -> None:
        ring = self._in[i]
        slot = self.slot_size
        total = len(data) // slot
        mv = memoryview(data)
        done = ring.write_packed(mv)
        if done < total:
            end = time.monotonic() + self.block_timeout
            while done < total:
                self._collect(i)
                if not self._procs[i].is_alive():
                    raise RuntimeError(f"worker {i} died (exit code "
                                       f"{self._procs[i].exitcode})")
                done += ring.put_packed(mv[done * slot:], timeout=0.001)
                if done < total and time.monotonic() > end:
                    self._submitted[i] += done
                    raise TimeoutError(f"partition {i} full for block_timeout="
                                       f"{self.block_timeout}s; {done}/{total} accepted")
        self._submitted[i] += total

    def _collect(self, i: int) -> None:
        ring = self._out[i]
        slot = self.slot_size
        unpack = _LEN.unpack_from
        res = self._results[i]
        while True:
            data = ring.read_packed(4096)
            if not data:
                return
            for off in range(0, len(data), slot):
                (n,) = unpack(data, off)
                res.append(data[off + 4:off + 4 + n])
            self._received[i] += len(data) // slot

    def results(self) -> list[list[bytes]]:
        """Collect and return (and forget) the results so far, one list per partition."""
        for i in range(self.workers):
            self._collect(i)
        out, self._results = self._results, [[] for _ in range(self.workers)]
        return out

    def stop(self, timeout: float = 30.0) -> list[list[bytes]]:
        """Close the inputs, let every worker drain, join them; return the remaining results."""
        self._stopped = True
        for r in self._in:
            r.close_writer()
        end = time.monotonic() + timeout
        for i, p in enumerate(self._procs):
            ring = self._out[i]
            while True:
                self._collect(i)
                if ring.writer_closed and len(ring) == 0:
                    break
                if not p.is_alive() and len(ring) == 0:
                    break
                if time.monotonic() > end:
                    raise TimeoutError(f"worker {i} did not drain within {timeout}s")
                ring.wait_readable(timeout=0.05)
            p.join(max(0.0, end - time.monotonic()))
        out = self.results()
        for r in (*self._in, *self._out):
            r.close()
            r.unlink()
        return out

    def statistics(self) -> ProcessPartitionsStatistics:
        """A frozen view of per-partition counts and worker liveness."""
        return ProcessPartitionsStatistics(
            self.workers, tuple(self._submitted), tuple(self._received),
            tuple(len(r) for r in self._in) if not self._stopped else (0,) * self.workers,
            tuple(p.is_alive() for p in self._procs))

    def check(self) -> None:
        """Invariant checker: rings sound; no partition returned more results than inputs."""
        if not self._stopped:
            for r in (*self._in, *self._out):
                r.check()
        for sub, rec in zip(self._submitted, self._received, strict=True):
            assert rec <= sub, (rec, sub)
