"""The generic event processor: producers -> bounded lanes -> one consumer, natural batches.

Shape (seed section 1, done as DESIGN.md "Event processor" says)::

    producers ──submit()──► lane 0 (highest) ─┐
       (any thread,          lane 1          ─┼─► one consumer ──► handler[type_of(event)]
        serialized by a      ...              │    (a thread: start(); or the caller:
        per-lane lock)       lane L-1        ─┘     poll() / await wait_for_work())

* **One consumer.** :class:`EventProcessor` has exactly one consumer -- a thread it owns
  (:meth:`EventProcessor.start`) *or* the caller (:meth:`EventProcessor.poll`, e.g. from an
  asyncio task). Handlers therefore run single-threaded and need no locks; per-lane order is
  submission order. :class:`PartitionedProcessor` runs ``workers=N`` of them, partitioned by
  key, so each key's events stay in order on one worker.
* **Natural batching.** The consumer takes everything waiting in the chosen lane up to
  ``max_batch``, runs it, records metrics once, calls the ``batch_end`` hook once (flush
  outputs there), and repeats. When idle it *blocks* (a ``threading.Event`` in thread mode, an
  asyncio future in caller-driven mode): no fixed sleeps, no spinning. Producers only pay for a
  wake-up when the consumer is actually waiting.
* **Backpressure** per processor: ``"reject"`` (raise :class:`ProcessorFull`), ``"block"`` (wait
  up to ``block_timeout`` s, then raise :class:`SubmitTimeout`), ``"drop_oldest"`` (make room
  by discarding the oldest waiting events of the lane). Each outcome is counted.
* **Deadlines** per event type (:class:`Deadline`), measured from the event's time (its enqueue
  time, or ``timestamp_of(event)`` if given) on the processor's ``clock``: *hard* -- a miss is
  counted, reported to ``on_deadline_miss`` (or logged) and, with ``fail_fast``, raises
  :class:`DeadlineMissed`; *firm* -- an event already past its deadline when its turn comes is
  discarded unprocessed and counted; *soft* -- processed late, lateness recorded in a
  histogram.
* **Priorities.** Lane 0 is served first (strict priority), but a waiting lane that has been
  passed over for ``starvation_bound`` batches in a row is served next (the longest-waiting
  one first). With L lanes a waiting lane is served within ``starvation_bound + L - 2``
  batches (checked by a property test).
* **Stop.** :meth:`EventProcessor.stop` refuses new submissions and drains everything
  already accepted before it returns.

Metrics (single writer: the consumer): counters and HDR histograms of queue wait (enqueue to
batch start), service time (per batch), end-to-end latency (enqueue to batch end, i.e. to the
moment the batch's outputs are flushed) and batch size; see :meth:`EventProcessor.statistics`
and :meth:`EventProcessor.prometheus`. All events of one ``submit_many`` call share one
enqueue timestamp, so those histograms cost O(submit calls), not O(events).

Caller-driven use on one asyncio loop (what the exchange loop does)::

    proc = EventProcessor(policy="reject", batch_end=flush_outputs)
    proc.register(Order, on_order)
    consumer = asyncio.create_task(proc.run_async())   # or: await wait_for_work(); drain()
    await proc.submit_async([order])                   # a gateway task: awaits room
    proc.submit(order)                                 # or: raises ProcessorFull when full
    proc.stop(); await consumer                        # drains what was accepted
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from tickline.core.metrics import HistogramSnapshot, LatencyRecorder, prometheus_text
from tickline.core.ring import SpscRing

__all__ = [
    "Backpressure",
    "Deadline",
    "DeadlineClass",
    "DeadlineMissed",
    "EventProcessor",
    "PartitionedProcessor",
    "ProcessorFull",
    "ProcessorStatistics",
    "ProcessorStopped",
    "SubmitTimeout",
    "partition_of",
]

E = TypeVar("E")
Clock = Callable[[], int]
Handler = Callable[[Any], object]
Backpressure = Literal["reject", "block", "drop_oldest"]

log = logging.getLogger(__name__)


class ProcessorFull(Exception):
    """``reject`` policy: the lane is full and the event was not accepted."""


class SubmitTimeout(ProcessorFull):
    """``block`` policy: no room appeared within ``block_timeout``."""


class ProcessorStopped(RuntimeError):
    """The processor is stopping or stopped and accepts no new events."""


class DeadlineMissed(RuntimeError):
    """A hard deadline with ``fail_fast=True`` was missed; the processor has failed."""

    def __init__(self, event: object, lateness_ns: int) -> None:
        super().__init__(f"hard deadline missed by {lateness_ns} ns: {event!r}")
        self.event = event
        self.lateness_ns = lateness_ns


class DeadlineClass(enum.Enum):
    """How a missed deadline is treated (see the module docstring)."""

    HARD = "hard"
    FIRM = "firm"
    SOFT = "soft"


@dataclass(frozen=True, slots=True)
class Deadline:
    """A per-event-type latency bound: ``max_latency_ns`` and its :class:`DeadlineClass`."""

    max_latency_ns: int
    kind: DeadlineClass
    fail_fast: bool = False

    def __post_init__(self) -> None:
        if self.max_latency_ns <= 0:
            raise ValueError(f"max_latency_ns must be > 0, got {self.max_latency_ns!r}")
        if self.fail_fast and self.kind is not DeadlineClass.HARD:
            raise ValueError(f"fail_fast applies to hard deadlines only, got kind={self.kind}")


@dataclass(frozen=True, slots=True)
class ProcessorStatistics:
    """A frozen view of a processor's counters, queue depths and latency histograms.

    Accounting identity once drained: ``submitted == processed + expired + dropped_oldest``
    (``rejected`` and ``block_timeouts`` were never accepted). ``processed`` includes events
    whose handler raised (``handler_errors``) or that had no handler (``unhandled``).
    """

    name: str
    submitted: int
    processed: int
    rejected: int
    block_timeouts: int
    dropped_oldest: int
    expired: int
    hard_misses: int
    soft_late: int
    unhandled: int
    handler_errors: int
    batches: int
    starvation_overrides: int
    queued: tuple[int, ...]
    queue_wait_ns: HistogramSnapshot
    service_ns: HistogramSnapshot
    end_to_end_ns: HistogramSnapshot
    batch_size: HistogramSnapshot
    lateness_ns: HistogramSnapshot
    extra: dict[str, int] = field(default_factory=dict)

    def counters(self) -> dict[str, int]:
        """The plain counters as a dict (for snapshots and Prometheus)."""
        return {
            "submitted": self.submitted, "processed": self.processed,
            "rejected": self.rejected, "block_timeouts": self.block_timeouts,
            "dropped_oldest": self.dropped_oldest, "expired": self.expired,
            "hard_misses": self.hard_misses, "soft_late": self.soft_late,
            "unhandled": self.unhandled, "handler_errors": self.handler_errors,
            "batches": self.batches, "starvation_overrides": self.starvation_overrides,
        }

    def histograms(self) -> tuple[HistogramSnapshot, ...]:
        """The histogram snapshots, in a fixed order."""
        return (self.queue_wait_ns, self.service_ns, self.end_to_end_ns, self.batch_size,
                self.lateness_ns)

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly snapshot dict."""
        out: dict[str, object] = {"name": self.name, **self.counters(),
                                  "queued": list(self.queued)}
        for h in self.histograms():
            out[h.name] = {"count": h.count, "min": h.min, "max": h.max, "mean": h.mean,
                           **{f"p{p:g}": v for p, v in h.percentiles.items()}}
        return out


class _Lane:
    """One priority lane: an SPSC ring plus the enqueue-time runs of what is in it.

    ``runs`` holds ``(end_sequence, enqueue_ns)`` per submit call; the producer appends a run
    *before* publishing the events, so the consumer always finds the run of an event it sees.
    """

    __slots__ = ("async_space", "block_timeouts", "dropped", "lock", "rejected", "ring", "runs",
                 "skipped", "space", "space_waiting", "submitted")

    def __init__(self, capacity: int) -> None:
        self.ring: SpscRing[Any] = SpscRing(capacity, check_threads=False)
        self.runs: deque[tuple[int, int]] = deque()
        self.lock = threading.Lock()  # serializes producers (and, for drop_oldest, the consumer)
        self.skipped = 0
        self.space = threading.Event()
        self.space_waiting = False
        # Tasks awaiting room (submit_async): (loop, future, loop thread id).
        self.async_space: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int]] = []
        # Producer-side counters, written only under ``lock``.
        self.submitted = 0
        self.rejected = 0
        self.dropped = 0
        self.block_timeouts = 0


def partition_of(key: Hashable, workers: int) -> int:
    """The partition of ``key``: stable across processes for ``int``/``str``/``bytes`` keys.

    ``hash(str)`` is salted per process, so strings and bytes go through CRC32 instead.
    """
    if isinstance(key, int):
        return key % workers
    if isinstance(key, str):
        return zlib.crc32(key.encode()) % workers
    if isinstance(key, bytes | bytearray):
        return zlib.crc32(key) % workers
    return hash(key) % workers


class EventProcessor(Generic[E]):
    """Bounded multi-lane event processor with exactly one consumer (see module docstring).

    Producers: any number of threads may call :meth:`submit` / :meth:`submit_many`; each lane
    serializes them with a lock held only for the slice copy. Consumer: either the thread
    started by :meth:`start`, or the caller of :meth:`poll` -- never both, never two callers.

    Parameters: ``capacity`` per lane (power of two); ``max_batch`` natural-batch limit;
    ``policy`` and ``block_timeout`` (seconds) for a full lane; ``lanes`` and
    ``starvation_bound`` for priorities; ``type_of`` maps an event to its handler key (default
    ``type``); ``timestamp_of`` gives an event's own creation time on ``clock``, from which
    deadlines are measured (default: its enqueue time; the latency histograms always use the
    enqueue time); ``clock`` returns ns;
    ``on_deadline_miss(event, lateness_ns)`` is the hard-deadline alarm; ``on_error(event,
    exc)`` sees handler exceptions (default: log them); ``batch_end(n)`` runs after every
    batch -- flush outputs there.
    """

    def __init__(
        self,
        *,
        name: str = "processor",
        capacity: int = 65536,
        max_batch: int = 1024,
        policy: Backpressure = "block",
        block_timeout: float = 1.0,
        lanes: int = 1,
        starvation_bound: int = 8,
        type_of: Callable[[E], Hashable] = type,
        timestamp_of: Callable[[E], int] | None = None,
        clock: Clock = time.monotonic_ns,
        on_deadline_miss: Callable[[E, int], None] | None = None,
        on_error: Callable[[E, BaseException], None] | None = None,
        batch_end: Callable[[int], None] | None = None,
    ) -> None:
        if policy not in ("reject", "block", "drop_oldest"):
            raise ValueError(f"policy must be 'reject', 'block' or 'drop_oldest', "
                             f"got {policy!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes!r}")
        if starvation_bound < 1:
            raise ValueError(f"starvation_bound must be >= 1, got {starvation_bound!r}")
        if block_timeout < 0:
            raise ValueError(f"block_timeout must be >= 0, got {block_timeout!r}")
        self.name = name
        self.policy: Backpressure = policy
        self.max_batch = max_batch
        self.block_timeout = block_timeout
        self.starvation_bound = starvation_bound
        self._lanes = [_Lane(capacity) for _ in range(lanes)]
        self._capacity = self._lanes[0].ring.capacity
        self._type_of = type_of
        self._timestamp_of = timestamp_of
        self._clock = clock
        self._on_deadline_miss = on_deadline_miss
        self._on_error = on_error
        self._batch_end = batch_end
        self._handlers: dict[Hashable, Handler] = {}
        self._deadlines: dict[Hashable, Deadline] = {}
        self._default: Handler | None = None
        self._consumer_locks = policy == "drop_oldest"
        # Carry-over after a fail-fast stop: (items, stamps) not yet dispatched.
        self._carry: list[tuple[Any, int]] = []
        # Wake-up state: a blocked consumer thread or an awaiting asyncio task.
        self._data = threading.Event()
        self._thread_waiting = False
        self._async_waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int] | None
        self._async_waiter = None
        self._consumer_ident = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = threading.Event()
        self.failure: BaseException | None = None
        # Consumer-side counters, written by the consumer only (producer-side ones live on
        # each lane, written under its lock).
        self._processed = 0
        self._expired = 0
        self._hard_misses = 0
        self._soft_late = 0
        self._unhandled = 0
        self._handler_errors = 0
        self._batches = 0
        self._starvation_overrides = 0
        self.queue_wait = LatencyRecorder("queue_wait_ns")
        self.service = LatencyRecorder("service_ns")
        self.end_to_end = LatencyRecorder("end_to_end_ns")
        self.batch_size = LatencyRecorder("batch_size", highest=1 << 31)
        self.lateness = LatencyRecorder("lateness_ns")

    # -- registration --------------------------------------------------------------------

    def register(self, event_type: Hashable, handler: Handler, *,
                 deadline: Deadline | None = None) -> None:
        """Route events with ``type_of(event) == event_type`` to ``handler(event)``."""
        if event_type in self._handlers:
            raise ValueError(f"a handler for event_type={event_type!r} is already registered")
        self._handlers[event_type] = handler
        if deadline is not None:
            self._deadlines[event_type] = deadline

    def on(self, event_type: Hashable, *,
           deadline: Deadline | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""
        def deco(fn: Handler) -> Handler:
            self.register(event_type, fn, deadline=deadline)
            return fn
        return deco

    def set_default_handler(self, handler: Handler | None) -> None:
        """Handler for event types with no registered handler (default: count and drop)."""
        self._default = handler

    # -- producer side -------------------------------------------------------------------

    def submit(self, event: E, *, lane: int = 0) -> None:
        """Accept one event into ``lane`` or raise per the backpressure policy.

        Raises :class:`ProcessorFull` (``reject``), :class:`SubmitTimeout` (``block``),
        :class:`ProcessorStopped` after :meth:`stop`. ``drop_oldest`` never raises for room.
        Fast path (room available, the common case): one lock, one slot store.
        """
        ln = self._lanes[lane]
        ring = ln.ring
        with ln.lock:
            if not self._stopping and ring.free() > 0:
                ln.runs.append((ring.tail + 1, self._clock()))
                ring.offer(event)
                ln.submitted += 1
                fast = True
            else:
                fast = False
        if fast:
            if self._thread_waiting or self._async_waiter is not None:
                self._wake()
            return
        if self.submit_many((event,), lane=lane) != 1:
            if self.policy == "block":
                raise SubmitTimeout(f"{self.name}: lane {lane} full for "
                                    f"block_timeout={self.block_timeout}s")
            raise ProcessorFull(f"{self.name}: lane {lane} full "
                                f"(capacity={self._capacity}, policy={self.policy!r})")

    def submit_many(self, events: Sequence[E], *, lane: int = 0) -> int:
        """Accept a batch into ``lane``; return how many were accepted (in order, a prefix).

        ``reject``: the prefix that fits is accepted, the rest counted as rejected.
        ``block``: waits up to ``block_timeout`` for room for all of them (in chunks); what did
        not fit by then is counted as a block timeout. ``drop_oldest``: all are accepted (the
        return value is ``len(events)``), and the oldest waiting events -- for a batch larger
        than the lane, the batch's own head too -- are dropped and counted. Raises
        :class:`ProcessorStopped` after :meth:`stop`.
        """
        ln = self._lanes[lane]
        k = len(events)
        if k == 0:
            return 0
        policy = self.policy
        if policy == "block":
            return self._submit_blocking(ln, events, k)
        accepted = 0
        with ln.lock:
            if self._stopping:
                raise ProcessorStopped(f"{self.name} is stopped; event not accepted")
            ring = ln.ring
            room = ring.free()
            if k > room:
                if policy == "reject":
                    ln.rejected += k - room
                    k = room
                    events = events[:k]
                else:  # drop_oldest: the consumer also holds ln.lock while draining
                    if k > self._capacity:  # accepted, and at once the oldest of them drop
                        excess = k - self._capacity
                        ln.dropped += excess
                        ln.submitted += excess
                        accepted += excess
                        events = events[excess:]
                        k = self._capacity
                    ln.dropped += ring.discard(k - room)
                    head = ring.head
                    runs = ln.runs
                    while runs and runs[0][0] <= head:
                        runs.popleft()
            if k:
                ln.runs.append((ring.tail + k, self._clock()))
                ring.offer_many(events)
                ln.submitted += k
        if k:
            self._wake()
        return accepted + k

    def _submit_blocking(self, ln: _Lane, events: Sequence[E], k: int) -> int:
        deadline = time.monotonic() + self.block_timeout
        done = 0
        ring = ln.ring
        while True:
            remaining = deadline - time.monotonic()
            if not ln.lock.acquire(timeout=max(remaining, 0.0)):
                break
            try:
                if self._stopping:
                    raise ProcessorStopped(f"{self.name} is stopped; event not accepted")
                room = ring.free()
                if room:
                    n = min(room, k - done)
                    chunk = events[done:done + n] if done or n < k else events
                    ln.runs.append((ring.tail + n, self._clock()))
                    ring.offer_many(chunk)
                    ln.submitted += n
                    done += n
                    self._wake()
                    if done == k:
                        return k
                    continue
                if threading.get_ident() == self._consumer_ident:
                    # The consumer itself (e.g. a task on the polling event loop) would wait
                    # for itself: fail now instead of deadlocking for block_timeout.
                    break
                ln.space.clear()
                ln.space_waiting = True
                if ring.free():
                    continue
            finally:
                ln.lock.release()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not ln.space.wait(remaining):
                # Re-check once: room may have appeared just as we timed out.
                if ring.free() and deadline - time.monotonic() > -1e-3:
                    continue
                break
        with ln.lock:
            ln.block_timeouts += k - done
        return done

    def _offer_prefix(self, ln: _Lane, events: Sequence[E]) -> int:
        """Accept the prefix of ``events`` that fits, counting nothing as refused."""
        with ln.lock:
            if self._stopping:
                raise ProcessorStopped(f"{self.name} is stopped; event not accepted")
            ring = ln.ring
            k = min(len(events), ring.free())
            if k:
                ln.runs.append((ring.tail + k, self._clock()))
                ring.offer_many(events if k == len(events) else events[:k])
                ln.submitted += k
        if k:
            self._wake()
        return k

    async def submit_async(self, events: Sequence[E], *, lane: int = 0,
                           timeout: float | None = None) -> int:
        """Producer side for asyncio tasks: accept all of ``events``, *awaiting* room.

        The ``block`` policy for code on an event loop: instead of blocking the thread (which
        would stall a consumer running on the same loop), the task awaits a future the
        consumer resolves after each batch it takes. Returns the number accepted -- all of
        them, unless ``timeout`` (seconds) expires first, in which case the rest is counted in
        ``block_timeouts``. Raises :class:`ProcessorStopped` after :meth:`stop`. Works under
        any policy (it never rejects or drops).
        """
        ln = self._lanes[lane]
        k = len(events)
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        done = self._offer_prefix(ln, events)
        while done < k:
            fut: asyncio.Future[None] = loop.create_future()
            ln.async_space.append((loop, fut, threading.get_ident()))
            if ln.ring.free() == 0 and not self._stopping:
                remaining = None if end is None else end - loop.time()
                try:
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError
                    await asyncio.wait_for(fut, remaining)
                except TimeoutError:
                    with ln.lock:
                        ln.block_timeouts += k - done
                    return done
            done += self._offer_prefix(ln, events[done:])
        return done

    def _wake(self) -> None:
        """Wake the consumer if (and only if) it is waiting."""
        if self._thread_waiting:
            self._data.set()
        w = self._async_waiter
        if w is not None:
            self._async_waiter = None
            loop, fut, ident = w
            if threading.get_ident() == ident:
                if not fut.done():
                    fut.set_result(None)
            else:
                try:
                    loop.call_soon_threadsafe(_resolve, fut)
                except RuntimeError:  # loop closed
                    pass

    # -- consumer side -------------------------------------------------------------------

    def has_work(self) -> bool:
        """True if any lane holds an event (or a fail-fast carry-over is pending)."""
        if self._carry:
            return True
        return any(ln.ring.tail != ln.ring.head for ln in self._lanes)

    def queued(self) -> int:
        """Events accepted and not yet taken by the consumer."""
        return sum(len(ln.ring) for ln in self._lanes) + len(self._carry)

    async def wait_for_work(self) -> None:
        """Caller-driven mode: return when :meth:`poll` has something to do (or on stop).

        Registers an asyncio future that producers resolve -- directly when they run on the
        same thread as the loop, via ``call_soon_threadsafe`` from other threads. No polling,
        no sleeping. Only one task may wait at a time (the single consumer).
        """
        if self.has_work() or self._stopping:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._consumer_ident = threading.get_ident()
        self._async_waiter = (loop, fut, self._consumer_ident)
        try:
            if self.has_work() or self._stopping:
                return
            await fut
        finally:
            self._async_waiter = None

    def poll(self, max_batch: int | None = None) -> int:
        """Caller-driven mode: process one natural batch; return how many events it took.

        Chooses a lane by priority (with the starvation bound), takes up to ``max_batch``
        (default: the processor's) of what is waiting there, dispatches, records metrics and
        calls ``batch_end``. Returns 0 at once if nothing waits. Must always be called from
        the same thread, and not while :meth:`start`'s thread runs. May raise
        :class:`DeadlineMissed` (hard, fail-fast); the rest of that batch is kept and
        processed by the next :meth:`poll` or :meth:`drain`.
        """
        self._consumer_ident = threading.get_ident()
        return self._poll(max_batch or self.max_batch)

    def drain(self) -> int:
        """Caller-driven mode: :meth:`poll` until nothing is waiting; return the total."""
        total = 0
        while True:
            n = self._poll(self.max_batch)
            if not n:
                return total
            total += n

    def _pick_lane(self) -> _Lane | None:
        lanes = self._lanes
        if len(lanes) == 1:
            ln = lanes[0]
            return ln if ln.ring.tail != ln.ring.head else None
        chosen = -1
        for i, ln in enumerate(lanes):
            if ln.ring.tail != ln.ring.head:
                chosen = i
                break
        if chosen < 0:
            return None
        # Starvation bound: a waiting lane passed over for `bound` batches in a row is served
        # next; among several such lanes the longest-waiting one (ties: higher priority).
        bound = self.starvation_bound
        pick = chosen
        worst = max(bound - 1, lanes[chosen].skipped)
        for j in range(chosen + 1, len(lanes)):
            lj = lanes[j]
            if lj.skipped > worst and lj.ring.tail != lj.ring.head:
                pick = j
                worst = lj.skipped
        if pick != chosen:
            self._starvation_overrides += 1
        for j in range(chosen, len(lanes)):
            lj = lanes[j]
            if j != pick and lj.ring.tail != lj.ring.head:
                lj.skipped += 1
        lanes[pick].skipped = 0
        return lanes[pick]

    def _take(self, ln: _Lane, max_batch: int) -> tuple[list[Any], list[tuple[int, int]]]:
        """Drain up to ``max_batch`` from ``ln``; return items and (count, stamp) segments."""
        ring = ln.ring
        head = ring.head
        items = ring.drain(max_batch)
        end = head + len(items)
        segs: list[tuple[int, int]] = []
        runs = ln.runs
        cur = head
        while cur < end:
            run_end, stamp = runs[0]
            if run_end <= cur:
                runs.popleft()
                continue
            seg_end = run_end if run_end < end else end
            segs.append((seg_end - cur, stamp))
            cur = seg_end
            if run_end <= end:
                runs.popleft()
        return items, segs

    def _poll(self, max_batch: int) -> int:
        if self._carry:
            return self._run_carry()
        ln = self._pick_lane()
        if ln is None:
            return 0
        if self._consumer_locks:
            with ln.lock:
                items, segs = self._take(ln, max_batch)
        else:
            items, segs = self._take(ln, max_batch)
        n = len(items)
        if not n:
            return 0
        if ln.space_waiting:
            ln.space_waiting = False
            ln.space.set()
        if ln.async_space:
            _resolve_all(ln)
        clock = self._clock
        t0 = clock()
        try:
            if self._deadlines:
                self._dispatch_timed(items, segs)
            else:
                self._dispatch_fast(items)
        finally:
            t1 = clock()
            self._record(n, segs, t0, t1)
        return n

    def _dispatch_fast(self, items: list[Any]) -> None:
        get = self._handlers.get
        tp = self._type_of
        miss = self._unhandled_event
        for ev in items:
            try:
                get(tp(ev), miss)(ev)
            except Exception as exc:
                self._handler_error(ev, exc)

    def _dispatch_timed(self, items: list[Any], segs: list[tuple[int, int]]) -> None:
        stamped: list[tuple[Any, int]] = []
        i = 0
        for count, stamp in segs:
            stamped.extend((ev, stamp) for ev in items[i:i + count])
            i += count
        self._dispatch_stamped(stamped, 0)

    def _run_carry(self) -> int:
        carry, self._carry = self._carry, []
        t0 = self._clock()
        try:
            self._dispatch_stamped(carry, 0)
        finally:
            self._record(len(carry), [(len(carry), t0)], t0, self._clock())
        return len(carry)

    def _dispatch_stamped(self, stamped: list[tuple[Any, int]], start: int) -> None:
        get = self._handlers.get
        deadlines = self._deadlines
        tp = self._type_of
        ts_of = self._timestamp_of
        clock = self._clock
        miss = self._unhandled_event
        firm = DeadlineClass.FIRM
        hard = DeadlineClass.HARD
        n = len(stamped)
        i = start
        while i < n:
            ev, stamp = stamped[i]
            i += 1
            key = tp(ev)
            dl = deadlines.get(key)
            if dl is None:
                try:
                    get(key, miss)(ev)
                except Exception as exc:
                    self._handler_error(ev, exc)
                continue
            born = ts_of(ev) if ts_of is not None else stamp
            if dl.kind is firm and clock() - born > dl.max_latency_ns:
                self._expired += 1
                self._processed -= 1  # counted in the batch total; expired ones are not
                continue
            try:
                get(key, miss)(ev)
            except Exception as exc:
                self._handler_error(ev, exc)
            late = clock() - born - dl.max_latency_ns
            if late > 0:
                if dl.kind is hard:
                    self._hard_misses += 1
                    if self._on_deadline_miss is not None:
                        self._on_deadline_miss(ev, late)
                    else:
                        log.warning("%s: hard deadline of %r missed by %d ns",
                                    self.name, key, late)
                    if dl.fail_fast:
                        self._carry = stamped[i:]
                        self._processed -= len(self._carry)
                        err = DeadlineMissed(ev, late)
                        self.failure = err
                        raise err
                elif dl.kind is not firm:
                    self._soft_late += 1
                    self.lateness.record(late)

    def _record(self, n: int, segs: list[tuple[int, int]], t0: int, t1: int) -> None:
        self._processed += n
        self._batches += 1
        self.batch_size.record(n)
        self.service.record(t1 - t0)
        qw = self.queue_wait
        e2e = self.end_to_end
        if len(segs) == n:  # one submit() per event: bulk-record (C-speed extend)
            qw.record_many([t0 - stamp for _, stamp in segs])
            e2e.record_many([t1 - stamp for _, stamp in segs])
        else:
            for count, stamp in segs:
                qw.record_n(t0 - stamp, count)
                e2e.record_n(t1 - stamp, count)
        be = self._batch_end
        if be is not None:
            be(n)

    def _unhandled_event(self, ev: object) -> None:
        if self._default is not None:
            self._default(ev)
        else:
            self._unhandled += 1

    def _handler_error(self, ev: Any, exc: Exception) -> None:
        self._handler_errors += 1
        if self._on_error is not None:
            self._on_error(ev, exc)
        else:
            log.error("%s: handler failed on %r", self.name, ev, exc_info=exc)

    # -- thread mode ---------------------------------------------------------------------

    def start(self) -> None:
        """Run the consumer on a daemon thread this processor owns (thread mode)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-consumer",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._consumer_ident = threading.get_ident()
        poll = self._poll
        mb = self.max_batch
        data = self._data
        try:
            while True:
                if poll(mb):
                    continue
                if self._stopping and not self.has_work():
                    return
                data.clear()
                self._thread_waiting = True
                if not self.has_work() and not self._stopping:
                    data.wait()
                self._thread_waiting = False
        except BaseException as exc:  # fail-fast or a bug: record, stop accepting
            self.failure = exc
            self._stopping = True
        finally:
            self._stopped.set()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new events, drain everything accepted, then return.

        Thread mode: waits for the consumer thread (up to ``timeout`` s; raises
        ``TimeoutError`` if it has not drained by then) and re-raises a fail-fast
        :class:`DeadlineMissed` if that is why it stopped. Caller-driven mode: wakes a task
        blocked in :meth:`wait_for_work` (so :meth:`run_async` drains and returns), and drains
        right here if called from the consumer's own thread (or if nothing ever polled).
        """
        for ln in self._lanes:
            with ln.lock:
                self._stopping = True
            ln.space.set()
            _resolve_all(ln)
        self._stopping = True
        self._data.set()
        w = self._async_waiter
        if w is not None:
            self._async_waiter = None
            w[0].call_soon_threadsafe(_resolve, w[1])
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self.name}: consumer did not drain within {timeout}s")
            if self.failure is not None:
                raise self.failure
        elif self._consumer_ident in (0, threading.get_ident()):
            self.drain()
        # else: a caller-driven consumer on another thread (e.g. run_async on an event loop)
        # was woken above; it drains and returns by itself.

    async def run_async(self, max_batch: int | None = None) -> None:
        """Caller-driven mode as one asyncio task: wait, poll, yield; return once stopped
        and drained.

        Between batches it yields to the event loop (``asyncio.sleep(0)``) so producers on
        the same loop run; when idle it awaits :meth:`wait_for_work`.
        """
        mb = max_batch or self.max_batch
        self._consumer_ident = threading.get_ident()
        while True:
            if self._poll(mb):
                await asyncio.sleep(0)
                continue
            if self._stopping and not self.has_work():
                return
            await self.wait_for_work()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` has been called."""
        return self._stopping

    # -- observation ---------------------------------------------------------------------

    def statistics(self) -> ProcessorStatistics:
        """A frozen snapshot of counters, queue depths and histograms.

        Folds the histograms' raw buffers, so call it from the consumer thread or after
        :meth:`stop` for exact numbers (from elsewhere it is a best-effort view).
        """
        lanes = self._lanes
        return ProcessorStatistics(
            name=self.name,
            submitted=sum(ln.submitted for ln in lanes), processed=self._processed,
            rejected=sum(ln.rejected for ln in lanes),
            block_timeouts=sum(ln.block_timeouts for ln in lanes),
            dropped_oldest=sum(ln.dropped for ln in lanes),
            expired=self._expired, hard_misses=self._hard_misses, soft_late=self._soft_late,
            unhandled=self._unhandled, handler_errors=self._handler_errors,
            batches=self._batches, starvation_overrides=self._starvation_overrides,
            queued=tuple(len(ln.ring) for ln in self._lanes),
            queue_wait_ns=self.queue_wait.snapshot(), service_ns=self.service.snapshot(),
            end_to_end_ns=self.end_to_end.snapshot(), batch_size=self.batch_size.snapshot(),
            lateness_ns=self.lateness.snapshot(),
        )

    def prometheus(self, prefix: str = "tickline_processor") -> str:
        """Prometheus text exposition of :meth:`statistics` (latencies in seconds)."""
        st = self.statistics()
        scale = {h.name: 1e-9 for h in st.histograms() if h.name.endswith("_ns")}
        return prometheus_text(prefix, st.counters(), st.histograms(),
                               labels={"processor": self.name}, scale=scale)

    def check(self) -> None:
        """Invariant checker: rings sound, runs cover exactly the queued events, counts add up.

        Call from the consumer thread or while producers and consumer are quiescent.
        """
        for ln in self._lanes:
            ln.ring.check()
            if len(ln.ring):
                assert ln.runs, "queued events without an enqueue-time run"
                assert ln.runs[-1][0] == ln.ring.tail, (ln.runs[-1], ln.ring.tail)
                assert ln.runs[0][0] > ln.ring.head, (ln.runs[0], ln.ring.head)
            ends = [r[0] for r in ln.runs]
            assert ends == sorted(ends), "runs out of order"
        in_flight = self.queued()
        submitted = sum(ln.submitted for ln in self._lanes)
        dropped = sum(ln.dropped for ln in self._lanes)
        accounted = self._processed + self._expired + dropped + in_flight
        assert submitted == accounted, (
            f"submitted={submitted} != processed+expired+dropped+queued={accounted}")
        for rec in (self.queue_wait, self.service, self.end_to_end, self.batch_size,
                    self.lateness):
            rec.check()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _resolve_all(ln: _Lane) -> None:
    """Wake every task awaiting room in ``ln`` (from whichever thread the consumer runs on)."""
    waiters, ln.async_space = ln.async_space, []
    me = threading.get_ident()
    for loop, fut, ident in waiters:
        if ident == me:
            _resolve(fut)
        else:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that loop is closed
                pass


class PartitionedProcessor(Generic[E]):
    """``workers=N`` :class:`EventProcessor` partitions, one consumer thread each.

    Events are routed by ``partition_of(key_of(event), N)``, so all events of one key go
    to one partition and stay in submission order. Thread workers suit handlers that wait on
    I/O (the GIL is released while they wait); for CPU-bound handlers use
    :class:`tickline.core.workers.ProcessPartitions`, which runs each partition in its own
    process behind a shared-memory ring. ``kwargs`` configure every partition alike.
    """

    def __init__(self, *, workers: int, key_of: Callable[[E], Hashable],
                 name: str = "partitioned", **kwargs: Any) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.workers = workers
        self._key_of = key_of
        self.partitions: list[EventProcessor[E]] = [
            EventProcessor(name=f"{name}-{i}", **kwargs) for i in range(workers)]

    def register(self, event_type: Hashable, handler: Handler, *,
                 deadline: Deadline | None = None) -> None:
        """Register ``handler`` on every partition (it must tolerate running on N threads)."""
        for p in self.partitions:
            p.register(event_type, handler, deadline=deadline)

    def submit(self, event: E, *, lane: int = 0) -> None:
        """Route one event to its key's partition (see :meth:`EventProcessor.submit`)."""
        self.partitions[partition_of(self._key_of(event), self.workers)].submit(event,
                                                                                 lane=lane)

    def submit_many(self, events: Sequence[E], *, lane: int = 0) -> int:
        """Split ``events`` by partition (keeping order within each) and submit each part."""
        n = self.workers
        parts: list[list[E]] = [[] for _ in range(n)]
        key_of = self._key_of
        for ev in events:
            parts[partition_of(key_of(ev), n)].append(ev)
        return sum(p.submit_many(part, lane=lane)
                   for p, part in zip(self.partitions, parts, strict=True) if part)

    def start(self) -> None:
        """Start one consumer thread per partition."""
        for p in self.partitions:
            p.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and drain every partition."""
        for p in self.partitions:
            p.stop(timeout)

    def statistics(self) -> list[ProcessorStatistics]:
        """One frozen snapshot per partition."""
        return [p.statistics() for p in self.partitions]

    def check(self) -> None:
        """Run every partition's invariant checker."""
        for p in self.partitions:
            p.check()
