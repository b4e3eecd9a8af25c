"""A shared-memory ring for one producer process and one consumer process.

:class:`SpscShmRing` moves fixed-size records of bytes between two processes through a
``multiprocessing.shared_memory`` block. Nothing is pickled: a batch of records is one
``memoryview`` slice copy (two at the wrap) and one 8-byte counter store. Per-call Python
overhead (~1 µs) dominates per-record cost, so the API is batch-first: ``write_packed`` /
``read_packed`` move many contiguous records per call.

Block layout (all counters native-endian u64, each on its own 64-byte cache line so the
producer's and the consumer's stores never share a line)::

      0         8         16        24        32                             64
      +---------+---------+---------+---------+------------------------------+
    0 | magic   | capacity| slot_sz | version |   (reserved)                 |
      +---------+---------+---------+---------+------------------------------+
   64 | tail: next sequence the producer will publish   (producer writes)    |
      +----------------------------------------------------------------------+
  128 | head: next sequence the consumer will read      (consumer writes)    |
      +---------+---------+---------+----------------------------------------+
  192 | closed  | cons_wt | prod_wt |   closed: producer finished (end of stream)
      +---------+---------+---------+   cons_wt/prod_wt: a side is blocked (BlockingWait)
  256 | slot 0 | slot 1 | ... | slot capacity-1      (capacity * slot_size bytes)
      +----------------------------------------------------------------------+

Publication order: the producer copies the payload into its slots, *then* stores ``tail``;
the consumer loads ``tail``, *then* copies the slots, *then* stores ``head``. Counter stores go
through a ``memoryview`` cast to ``'Q'`` -- one aligned 8-byte store, never torn. This relies on
the platform keeping stores in program order and loads in program order (x86-64 TSO does;
on weakly ordered CPUs such as ARM a real fence would be needed, which pure Python cannot
issue -- this module is specified for x86-64).

Contract: **exactly one producer process/thread and one consumer process/thread.** The
creator is usually the producer, but either side may create; the other attaches by ``name``.
Lifecycle: ``create`` -> ``attach`` (other side) -> ... -> ``close`` (each side) -> ``unlink``
(the creator, once). Doorbells for :class:`BlockingWait` are two FIFOs next to the block,
created with it and removed by ``unlink``. The wait strategies are
:mod:`tickline.core.wait`'s (re-exported here), shared with the event processor.
"""

from __future__ import annotations

import contextlib
import os
import select
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from typing import Protocol

from tickline.core.wait import BackoffWait, BlockingWait, SpinWait, WaitStrategy, YieldWait

__all__ = [
    "BackoffWait",
    "BlockingWait",
    "ShmRingStatistics",
    "SpinWait",
    "SpscShmRing",
    "WaitStrategy",
    "YieldWait",
]

_MAGIC = 0x31524D48534C4B54  # b"TKLSHMR1" little-endian
_VERSION = 1
_HEADER = 256
_TAIL = 64 // 8
_HEAD = 128 // 8
_CLOSED = 192 // 8
_CONS_WAIT = _CLOSED + 1
_PROD_WAIT = _CLOSED + 2


@dataclass(frozen=True, slots=True)
class ShmRingStatistics:
    """A frozen view of one side of a shared-memory ring."""

    name: str
    capacity: int
    slot_size: int
    size: int
    head: int
    tail: int
    closed: bool
    records_written: int
    records_read: int
    full_waits: int
    empty_waits: int


def _fifo_paths(name: str) -> tuple[str, str]:
    base = os.path.join(tempfile.gettempdir(), f"tickline-{name.lstrip('/')}")
    return base + ".data", base + ".space"


def _open_fifo(path: str) -> int:
    # O_RDWR on a FIFO never blocks on open (Linux) and keeps it open for both directions.
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


class SpscShmRing:
    """Single-producer/single-consumer ring of fixed-size byte records in shared memory.

    Use :meth:`create` on one side and :meth:`attach` on the other (by :attr:`name`). A record
    is exactly :attr:`slot_size` bytes; "packed" buffers hold whole records back to back.

    Producer: :meth:`write`, :meth:`write_many`, :meth:`write_packed` (non-blocking, return how
    many records went in) and :meth:`put_packed` (waits with the wait strategy until all are
    in). :meth:`close_writer` marks end of stream. Consumer: :meth:`read_packed`,
    :meth:`read_many` (non-blocking) and :meth:`get_packed` (waits for at least one record or
    end of stream). All are O(1) Python steps plus an O(bytes) ``memcpy``. Each side waits
    with its own strategy (``wait=``, default :class:`BlockingWait`).
    """

    def __init__(self, shm: shared_memory.SharedMemory, *, owner: bool,
                 wait: WaitStrategy | None = None) -> None:
        self._shm = shm
        self._owner = owner
        self._wait: WaitStrategy = wait if wait is not None else BlockingWait()
        buf = shm.buf
        assert buf is not None
        self._buf = buf
        self._ctr = buf[:_HEADER].cast("Q")
        ctr = self._ctr
        if ctr[0] != _MAGIC or ctr[3] != _VERSION:
            magic, version = ctr[0], ctr[3]
            ctr.release()
            shm.close()
            raise ValueError(f"shared memory {shm.name!r} is not a tickline ring "
                             f"(magic={magic:#x}, version={version})")
        self._capacity = int(ctr[1])
        self._slot = int(ctr[2])
        self._mask = self._capacity - 1
        self._data = buf[_HEADER:_HEADER + self._capacity * self._slot]
        self._bytes = self._capacity * self._slot
        self._cached_head = int(ctr[_HEAD])
        self._cached_tail = int(ctr[_TAIL])
        self._written = 0
        self._read = 0
        self._full_waits = 0
        self._empty_waits = 0
        data_path, space_path = _fifo_paths(shm.name)
        self._fifo_paths = (data_path, space_path)
        try:
            self._data_bell = _open_fifo(data_path)
            self._space_bell = _open_fifo(space_path)
        except FileNotFoundError:
            self._data_bell = self._space_bell = -1

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def create(cls, *, capacity: int, slot_size: int, name: str | None = None,
               wait: WaitStrategy | None = None) -> SpscShmRing:
        """Create a new ring (``capacity`` a power of two, ``slot_size`` a multiple of 8)."""
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 2, got {capacity!r}")
        if slot_size < 8 or slot_size % 8:
            raise ValueError(f"slot_size must be a positive multiple of 8, got {slot_size!r}")
        shm = shared_memory.SharedMemory(name=name, create=True,
                                         size=_HEADER + capacity * slot_size)
        assert shm.buf is not None
        ctr = shm.buf[:_HEADER].cast("Q")
        for i in range(_HEADER // 8):
            ctr[i] = 0
        ctr[1] = capacity
        ctr[2] = slot_size
        ctr[3] = _VERSION
        ctr[0] = _MAGIC  # last: an attacher that sees the magic sees the geometry
        ctr.release()
        for path in _fifo_paths(shm.name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.mkfifo(path, 0o600)
        return cls(shm, owner=True, wait=wait)

    @classmethod
    def attach(cls, name: str, *, wait: WaitStrategy | None = None,
               untrack: bool = False) -> SpscShmRing:
        """Attach to a ring another process created.

        ``untrack``: Python < 3.13 registers an attached block with this process's resource
        tracker, which unlinks it when the tracker's last user exits (bpo-39959). A child
        started by the creator via ``multiprocessing`` shares the creator's tracker and must
        leave this ``False``; an unrelated process attaching by name passes ``True`` so that
        its exit does not destroy the creator's ring.
        """
        shm = shared_memory.SharedMemory(name=name, create=False)
        if untrack:
            resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
        return cls(shm, owner=False, wait=wait)

    @property
    def name(self) -> str:
        """The shared-memory block's name (pass it to :meth:`attach`)."""
        return self._shm.name

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return self._capacity

    @property
    def slot_size(self) -> int:
        """Bytes per record."""
        return self._slot

    def _release(self) -> None:
        with contextlib.suppress(AttributeError):
            self._data.release()
        with contextlib.suppress(AttributeError):
            self._ctr.release()
        self._shm.close()

    def close(self) -> None:
        """Detach this side (release views, close the doorbells). Idempotent."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for fd in (self._data_bell, self._space_bell):
            if fd >= 0:
                os.close(fd)
        self._release()

    def unlink(self) -> None:
        """Destroy the block and its doorbells (the creator, once, after both sides close)."""
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()
        for path in self._fifo_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __enter__(self) -> SpscShmRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._owner:
            self.unlink()

    # -- waiting -------------------------------------------------------------------------

    def _ring(self, fd: int) -> None:
        if fd >= 0:
            try:
                os.write(fd, b"\x01")
            except BlockingIOError:  # FIFO full: a wake-up is already pending
                pass

    def _park(self, flag: int, fd: int, ready: _Ready, timeout: float | None) -> bool:
        """Wait until ``ready()`` per the strategy; ``False`` on timeout."""
        wait = self._wait
        end = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        ctr = self._ctr
        while True:
            if wait.blocking and fd >= 0:
                ctr[flag] = 1
                if ready():
                    ctr[flag] = 0
                    return True
                slice_ = getattr(wait, "recheck", 0.01)
                if end is not None:
                    slice_ = max(0.0, min(slice_, end - time.monotonic()))
                try:
                    readable, _, _ = select.select([fd], [], [], slice_)
                except InterruptedError:
                    readable = []
                if readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 4096)
                ctr[flag] = 0
            else:
                wait.idle(attempt)
            if ready():
                return True
            attempt += 1
            if end is not None and time.monotonic() >= end:
                return False

    # -- producer side -------------------------------------------------------------------

    def free(self) -> int:
        """Slots the producer can fill right now (refreshes the cached ``head``)."""
        self._cached_head = head = self._ctr[_HEAD]
        return self._capacity - (self._ctr[_TAIL] - head)

    def write_packed(self, data: bytes | bytearray | memoryview) -> int:
        """Publish as many whole records from ``data`` as fit; return how many. Non-blocking.

        ``len(data)`` must be a multiple of :attr:`slot_size`.
        """
        slot = self._slot
        nbytes = len(data)
        if nbytes % slot:
            raise ValueError(f"len(data) must be a multiple of slot_size={slot}, "
                             f"got {nbytes}")
        ctr = self._ctr
        tail = ctr[_TAIL]
        k = nbytes // slot
        room = self._capacity - (tail - self._cached_head)
        if k > room:
            self._cached_head = ctr[_HEAD]
            room = self._capacity - (tail - self._cached_head)
            if k > room:
                k = room
                if k == 0:
                    return 0
                nbytes = k * slot
        off = (tail & self._mask) * slot
        end = off + nbytes
        dst = self._data
        if end <= self._bytes:
            dst[off:end] = data if nbytes == len(data) else memoryview(data)[:nbytes]
        else:
            first = self._bytes - off
            mv = memoryview(data)
            dst[off:] = mv[:first]
            dst[:nbytes - first] = mv[first:nbytes]
        ctr[_TAIL] = tail + k  # publish after the payload
        self._written += k
        if ctr[_CONS_WAIT]:
            self._ring(self._data_bell)
        return k

    def write(self, record: bytes | bytearray | memoryview) -> bool:
        """Publish one record (exactly :attr:`slot_size` bytes); ``False`` if full."""
        if len(record) != self._slot:
            raise ValueError(f"record must be slot_size={self._slot} bytes, got {len(record)}")
        return self.write_packed(record) == 1

    def write_many(self, records: Sequence[bytes]) -> int:
        """Publish the prefix of ``records`` that fits (each exactly :attr:`slot_size` bytes)."""
        if not records:
            return 0
        if {len(r) for r in records} != {self._slot}:
            bad = next(len(r) for r in records if len(r) != self._slot)
            raise ValueError(f"every record must be slot_size={self._slot} bytes, got {bad}")
        return self.write_packed(b"".join(records))

    def put_packed(self, data: bytes | bytearray | memoryview,
                   timeout: float | None = None) -> int:
        """Publish every record of ``data``, waiting for room with the wait strategy.

        Returns the number of records written (all of them unless ``timeout`` expired).
        """
        mv = memoryview(data)
        slot = self._slot
        total = len(mv) // slot
        done = self.write_packed(mv)
        if done == total:
            return done
        end = None if timeout is None else time.monotonic() + timeout
        while done < total:
            self._full_waits += 1
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if not self._park(_PROD_WAIT, self._space_bell, self._has_room, remaining):
                break
            done += self.write_packed(mv[done * slot:])
        return done

    def _has_room(self) -> bool:
        return self._ctr[_TAIL] - self._ctr[_HEAD] < self._capacity

    def close_writer(self) -> None:
        """Mark end of stream: the consumer's :meth:`get_packed` returns ``b""`` once empty."""
        self._ctr[_CLOSED] = 1
        self._ring(self._data_bell)

    # -- consumer side -------------------------------------------------------------------

    def __len__(self) -> int:
        ctr = self._ctr
        return int(ctr[_TAIL] - ctr[_HEAD])

    @property
    def writer_closed(self) -> bool:
        """True once the producer called :meth:`close_writer`."""
        return bool(self._ctr[_CLOSED])

    def read_packed(self, max_records: int) -> bytes:
        """Take up to ``max_records`` records as one contiguous ``bytes``; ``b""`` if empty."""
        ctr = self._ctr
        head = ctr[_HEAD]
        n = self._cached_tail - head
        if n < max_records:
            self._cached_tail = ctr[_TAIL]
            n = self._cached_tail - head
        if n > max_records:
            n = max_records
        if n <= 0:
            return b""
        slot = self._slot
        off = (head & self._mask) * slot
        end = off + n * slot
        src = self._data
        if end <= self._bytes:
            out = src[off:end].tobytes()
        else:
            out = src[off:].tobytes() + src[:end - self._bytes].tobytes()
        ctr[_HEAD] = head + n  # release the slots after the copy
        self._read += n
        if ctr[_PROD_WAIT]:
            self._ring(self._space_bell)
        return out

    def read_many(self, max_records: int) -> list[bytes]:
        """Like :meth:`read_packed` but split into one ``bytes`` per record."""
        data = self.read_packed(max_records)
        slot = self._slot
        return [data[i:i + slot] for i in range(0, len(data), slot)]

    def get_packed(self, max_records: int, timeout: float | None = None) -> bytes:
        """Wait (per the strategy) for at least one record, then take up to ``max_records``.

        Returns ``b""`` at end of stream (writer closed and ring empty) or on timeout; tell
        them apart with :attr:`writer_closed`.
        """
        out = self.read_packed(max_records)
        if out:
            return out
        if self._ctr[_CLOSED]:
            return self.read_packed(max_records)  # a last publish may race the close flag
        self.wait_readable(timeout)
        return self.read_packed(max_records)

    def wait_readable(self, timeout: float | None = None) -> bool:
        """Wait (per the strategy) until a record is waiting or the writer closed.

        Consumes nothing; ``False`` on timeout.
        """
        if self._readable():
            return True
        self._empty_waits += 1
        return self._park(_CONS_WAIT, self._data_bell, self._readable, timeout)

    def _readable(self) -> bool:
        ctr = self._ctr
        return ctr[_TAIL] != ctr[_HEAD] or bool(ctr[_CLOSED])

    # -- observation ---------------------------------------------------------------------

    def statistics(self) -> ShmRingStatistics:
        """A frozen view from this side (counts are this side's own)."""
        ctr = self._ctr
        head, tail = int(ctr[_HEAD]), int(ctr[_TAIL])
        return ShmRingStatistics(self.name, self._capacity, self._slot, tail - head, head, tail,
                                 bool(ctr[_CLOSED]), self._written, self._read,
                                 self._full_waits, self._empty_waits)

    def check(self) -> None:
        """Invariant checker: header intact and ``0 <= tail - head <= capacity``."""
        ctr = self._ctr
        assert ctr[0] == _MAGIC and ctr[3] == _VERSION, "header corrupted"
        assert ctr[1] == self._capacity and ctr[2] == self._slot, "geometry changed"
        head, tail = ctr[_HEAD], ctr[_TAIL]
        assert 0 <= tail - head <= self._capacity, (head, tail, self._capacity)


class _Ready(Protocol):
    def __call__(self) -> bool: ...

