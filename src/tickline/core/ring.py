"""A bounded in-process ring for one producer thread and one consumer thread.

:class:`SpscRing` is the in-process counterpart of the shared-memory ring: a power-of-two
array of slots addressed by monotonically increasing 64-bit-style sequence numbers (Python
ints never wrap). The producer owns ``tail`` (the next sequence to publish), the consumer owns
``head`` (the next sequence to consume); ``tail - head`` is the number of items waiting and
never exceeds ``capacity``.

Why a ring and not ``queue.Queue``: ``Queue`` takes a lock and notifies a condition on every
``put`` and ``get`` (about 1-2 µs each). Here the producer writes a whole batch of items with one
list-slice assignment and publishes them with one store to ``tail``; the consumer drains
everything waiting with one slice read. Per item the cost is a pointer copy.

Memory-ordering argument (CPython with the GIL): the producer writes the slots *before* it
stores the new ``tail``, and the consumer reads ``tail`` *before* it reads the slots; each of
those steps is one or more bytecodes executed under the GIL, which orders them. On a
free-threaded build this class would need explicit barriers; it refuses nothing there but makes
no promise either.

Contract: **single producer, single consumer.** With ``check_threads=True`` (the default) the
first thread to produce and the first to consume are remembered, and a batch operation from
any other thread raises :class:`ConcurrencyViolation` (one ``get_ident()`` per call, ~30 ns).
A component that serializes several producers itself (e.g. under a lock) passes
``check_threads=False`` and owns that promise.

Full ring: :meth:`SpscRing.put` raises :class:`RingFull`; :meth:`SpscRing.offer` returns
``False``; :meth:`SpscRing.offer_many` publishes the prefix that fits and returns its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from threading import get_ident
from typing import Generic, TypeVar

__all__ = ["ConcurrencyViolation", "RingFull", "RingStatistics", "SpscRing"]

T = TypeVar("T")


class RingFull(Exception):
    """The ring has no room for what the producer tried to publish."""


class ConcurrencyViolation(RuntimeError):
    """A single-producer or single-consumer structure was used from a second thread."""


@dataclass(frozen=True, slots=True)
class RingStatistics:
    """A frozen view of a ring: sizes, sequence numbers and lifetime counts."""

    capacity: int
    size: int
    head: int
    tail: int
    published: int
    consumed: int
    full_events: int


class SpscRing(Generic[T]):
    """Bounded single-producer/single-consumer ring with batch publish and batch drain.

    ``capacity`` must be a power of two (slot index = ``sequence & (capacity - 1)``).

    Producer side (one thread): :meth:`offer`, :meth:`put`, :meth:`offer_many`, and the
    explicit three-step :meth:`claim` / :meth:`write` / :meth:`publish` for callers that
    build items in place. Consumer side (one thread): :meth:`drain`, :meth:`poll`,
    :meth:`discard`.

    Complexity: every operation is O(1) bytecodes plus O(k) C-level pointer copies for a batch
    of k items.
    """

    __slots__ = (
        "_buf",
        "_capacity",
        "_check_threads",
        "_claimed",
        "_consumer",
        "_full_events",
        "_head",
        "_mask",
        "_nones",
        "_producer",
        "_tail",
    )

    def __init__(self, capacity: int, *, check_threads: bool = True) -> None:
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 1, got {capacity!r}")
        self._capacity = capacity
        self._mask = capacity - 1
        self._buf: list[T | None] = [None] * capacity
        self._nones: list[None] = [None] * capacity
        self._head = 0
        self._tail = 0
        self._claimed = 0  # sequence up to which the producer has claimed (>= tail)
        self._full_events = 0
        self._check_threads = check_threads
        self._producer = 0
        self._consumer = 0

    # -- introspection -------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """The number of slots (a power of two)."""
        return self._capacity

    @property
    def head(self) -> int:
        """The sequence number of the next item the consumer will take."""
        return self._head

    @property
    def tail(self) -> int:
        """The sequence number the next published item will get."""
        return self._tail

    def __len__(self) -> int:
        return self._tail - self._head

    def free(self) -> int:
        """Slots the producer can still claim."""
        return self._capacity - (self._claimed - self._head)

    def statistics(self) -> RingStatistics:
        """A frozen snapshot (approximate when read from a third thread)."""
        head, tail = self._head, self._tail
        return RingStatistics(self._capacity, tail - head, head, tail, tail, head,
                              self._full_events)

    def check(self) -> None:
        """Invariant checker: ``0 <= tail - head <= capacity``; consumed slots are cleared."""
        head, tail, claimed = self._head, self._tail, self._claimed
        assert 0 <= head <= tail <= claimed, (head, tail, claimed)
        assert claimed - head <= self._capacity, (head, claimed, self._capacity)
        assert len(self._buf) == self._capacity
        # Slots outside [head, claimed) hold no references (nothing kept alive by the ring).
        free = self._capacity - (claimed - head)
        for i in range(free):
            assert self._buf[(claimed + i) & self._mask] is None, "stale reference in a slot"

    # -- thread contract -----------------------------------------------------------------

    def _check_producer(self) -> None:
        ident = get_ident()
        if self._producer != ident:
            if self._producer == 0:
                self._producer = ident
            else:
                raise ConcurrencyViolation(
                    f"SpscRing producer called from thread {ident}, but the producer is "
                    f"thread {self._producer}")

    def _check_consumer(self) -> None:
        ident = get_ident()
        if self._consumer != ident:
            if self._consumer == 0:
                self._consumer = ident
            else:
                raise ConcurrencyViolation(
                    f"SpscRing consumer called from thread {ident}, but the consumer is "
                    f"thread {self._consumer}")

    def rebind(self) -> None:
        """Forget the remembered producer/consumer threads (after a hand-over)."""
        self._producer = 0
        self._consumer = 0

    # -- producer side -------------------------------------------------------------------

    def offer(self, item: T) -> bool:
        """Publish one item; ``False`` (and nothing published) if the ring is full."""
        if self._check_threads:
            self._check_producer()
        tail = self._tail
        if self._claimed != tail:
            raise RuntimeError("offer() while a claim is outstanding")
        if tail - self._head >= self._capacity:
            self._full_events += 1
            return False
        self._buf[tail & self._mask] = item
        self._claimed = self._tail = tail + 1
        return True

    def put(self, item: T) -> None:
        """Publish one item or raise :class:`RingFull`."""
        if not self.offer(item):
            raise RingFull(f"ring full: capacity={self._capacity}, size={len(self)}")

    def offer_many(self, items: Sequence[T]) -> int:
        """Publish the longest prefix of ``items`` that fits; return its length.

        One slice assignment (two at the wrap) and one ``tail`` store for the whole batch.
        """
        if self._check_threads:
            self._check_producer()
        tail = self._tail
        if self._claimed != tail:
            raise RuntimeError("offer_many() while a claim is outstanding")
        room = self._capacity - (tail - self._head)
        k = len(items)
        if k > room:
            self._full_events += 1
            k = room
            items = items[:k]
        if k == 0:
            return 0
        self._write(tail, items, k)
        self._claimed = self._tail = tail + k
        return k

    def claim(self, n: int) -> int:
        """Reserve ``n`` slots and return the first reserved sequence number.

        Raises :class:`RingFull` if fewer than ``n`` slots are free (nothing is reserved).
        Fill the slots with :meth:`write`, then make them visible with :meth:`publish`.
        """
        if self._check_threads:
            self._check_producer()
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        start = self._claimed
        if self._capacity - (start - self._head) < n:
            self._full_events += 1
            raise RingFull(f"cannot claim {n} slots: capacity={self._capacity}, "
                           f"free={self.free()}")
        self._claimed = start + n
        return start

    def write(self, sequence: int, items: Sequence[T]) -> None:
        """Write ``items`` into claimed, unpublished slots starting at ``sequence``."""
        k = len(items)
        if not (self._tail <= sequence and sequence + k <= self._claimed):
            raise ValueError(f"slots [{sequence}, {sequence + k}) are not claimed "
                             f"(tail={self._tail}, claimed={self._claimed})")
        if k:
            self._write(sequence, items, k)

    def publish(self, upto: int) -> None:
        """Make every claimed slot below sequence ``upto`` visible to the consumer."""
        if not self._tail <= upto <= self._claimed:
            raise ValueError(f"publish({upto}) outside [tail={self._tail}, "
                             f"claimed={self._claimed}]")
        self._tail = upto

    def _write(self, seq: int, items: Sequence[T], k: int) -> None:
        buf = self._buf
        i = seq & self._mask
        end = i + k
        cap = self._capacity
        if end <= cap:
            buf[i:end] = items
        else:
            first = cap - i
            buf[i:] = items[:first]
            buf[: end - cap] = items[first:]

    # -- consumer side -------------------------------------------------------------------

    def drain(self, max_items: int) -> list[T]:
        """Take up to ``max_items`` waiting items (oldest first); ``[]`` if empty."""
        if self._check_threads:
            self._check_consumer()
        head = self._head
        n = self._tail - head
        if n > max_items:
            n = max_items
        if n <= 0:
            return []
        buf = self._buf
        i = head & self._mask
        end = i + n
        cap = self._capacity
        nones = self._nones
        if end <= cap:
            out = buf[i:end]
            buf[i:end] = nones[:n]
        else:
            out = buf[i:]
            out += buf[: end - cap]
            buf[i:] = nones[: cap - i]
            buf[: end - cap] = nones[: end - cap]
        self._head = head + n
        return out  # type: ignore[return-value]  # slots in [head, tail) are never None

    def poll(self) -> T | None:
        """Take one item, or ``None`` if the ring is empty."""
        got = self.drain(1)
        return got[0] if got else None

    def discard(self, n: int) -> int:
        """Drop up to ``n`` oldest items unconsumed; return how many were dropped.

        A consumer-side operation: it moves ``head``. A producer implementing drop-oldest
        must hold mutual exclusion with the consumer while calling it.
        """
        head = self._head
        k = min(n, self._tail - head)
        if k <= 0:
            return 0
        buf = self._buf
        mask = self._mask
        for s in range(head, head + k):
            buf[s & mask] = None
        self._head = head + k
        return k
