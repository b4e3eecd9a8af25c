"""The generic event processor: producers -> bounded lanes -> one consumer, natural batches.

Shape (seed section 1, done as DESIGN.md "Event processor" says)::

    producers ──submit()──► lane 0 (highest) ─┐
       (any thread,          lane 1          ─┼─► one consumer ──► handler[type_of(event)]
        serialized by a      ...              │    (a thread: start(); or the caller:
        per-lane lock)       lane L-1        ─┘     poll() / await wait_for_work())

:class:`EventProcessor` wires three concerns, each in its own module:

* **intake** (:mod:`~tickline.core.intake`) -- the lanes, the one publication step, and the
  backpressure policy for a full lane: :class:`RejectWhenFull` (``"reject"``, raise
  :class:`ProcessorFull`), :class:`BlockWhenFull` (``"block"``, wait up to ``block_timeout``
  s, then raise :class:`SubmitTimeout`), :class:`DropOldest` (``"drop_oldest"``, discard the
  oldest waiting events of the lane). Each outcome is counted.
* **dispatch** (:mod:`~tickline.core.dispatch`) -- handlers per event type and
  :class:`Deadline` classes (*hard*: counted, reported, optionally fail-fast with
  :class:`DeadlineMissed`; *firm*: discarded if already late; *soft*: lateness recorded).
* **drivers** (:mod:`~tickline.core.drivers`) -- who runs the one consumer: a thread it owns
  (:meth:`EventProcessor.start`, idle waiting per a :mod:`~tickline.core.wait` strategy) *or*
  the caller (:meth:`EventProcessor.poll`, :meth:`EventProcessor.run_async`).

What stays here is the consumer's batch step and its bookkeeping:

* **One consumer.** Handlers run single-threaded and need no locks; per-lane order is
  submission order. :class:`PartitionedProcessor` runs ``workers=N`` processors, partitioned
  by key, so each key's events stay in order on one worker.
* **Natural batching.** The consumer takes everything waiting in the chosen lane up to
  ``max_batch``, runs it, records metrics once, calls the ``batch_end`` hook once (flush
  outputs there), and repeats. When idle it *blocks*: no fixed sleeps, no spinning (unless a
  spinning wait strategy is chosen). Producers only pay for a wake-up when the consumer is
  actually waiting.
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

import threading
import time
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tickline.core.dispatch import Deadline, DeadlineClass, DeadlineMissed, Dispatcher, Handler
from tickline.core.drivers import Doorbell, ThreadDriver, run_async
from tickline.core.intake import (
    Backpressure,
    BackpressurePolicy,
    BlockWhenFull,
    DropOldest,
    Lane,
    ProcessorFull,
    ProcessorStopped,
    RejectWhenFull,
    SubmitTimeout,
    backpressure_policy,
    pick_lane,
)
from tickline.core.metrics import HistogramSnapshot, LatencyRecorder, prometheus_text
from tickline.core.wait import WaitStrategy

__all__ = [
    "Backpressure",
    "BackpressurePolicy",
    "BlockWhenFull",
    "Deadline",
    "DeadlineClass",
    "DeadlineMissed",
    "DropOldest",
    "EventProcessor",
    "PartitionedProcessor",
    "ProcessorFull",
    "ProcessorStatistics",
    "ProcessorStopped",
    "RejectWhenFull",
    "SubmitTimeout",
    "partition_of",
]

E = TypeVar("E")
Clock = Callable[[], int]

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

    Parameters: ``capacity`` per lane (power of two; or a sequence, one per lane);
    ``max_batch`` natural-batch limit; ``policy`` for a full lane -- a
    :class:`~tickline.core.intake.BackpressurePolicy` or its string form (``block_timeout``
    seconds applies to ``"block"``); ``lanes`` and
    ``starvation_bound`` for priorities; ``type_of`` maps an event to its handler key (default
    ``type``); ``timestamp_of`` gives an event's own creation time on ``clock``, from which
    deadlines are measured (default: its enqueue time; the latency histograms always use the
    enqueue time); ``clock`` returns ns;
    ``on_deadline_miss(event, lateness_ns)`` is the hard-deadline alarm; ``on_error(event,
    exc)`` sees handler exceptions (default: log them); ``batch_end(n)`` runs after every
    batch -- flush outputs there; ``batch_start(lane, segments, taken_ns)`` runs once per
    lane a batch took from, after it is taken and before it is dispatched (``segments``: that
    part's ``(count, enqueue_ns)`` runs, oldest first; e.g. to find the prefix that waited
    too long); ``combine_lanes``: a batch that took less than ``max_batch`` from the lane
    chosen fills up from the lanes of lower priority, in priority order, each part taken only
    once the part before it was dispatched (so within a batch higher lanes always come
    first, and are not kept waiting by the lower ones' take), and one batch end (one
    journal commit, one flush) covers all of it;
    ``wait`` is how the :meth:`start` thread waits when idle
    (default :class:`~tickline.core.wait.BlockingWait`); ``batch_dispatch(events, segments)``,
    when given and no deadline is registered, replaces the per-event dispatch of each taken
    part of a batch (a consumer that handles a run of events in one call, e.g. the exchange's
    sequencer); it must route every event itself, handing those it does not handle to
    :meth:`dispatch_each` (the handler table).
    """

    def __init__(
        self,
        *,
        name: str = "processor",
        capacity: int | Sequence[int] = 65536,
        max_batch: int = 1024,
        policy: Backpressure | BackpressurePolicy = "block",
        block_timeout: float = 1.0,
        lanes: int = 1,
        starvation_bound: int = 8,
        type_of: Callable[[E], Hashable] = type,
        timestamp_of: Callable[[E], int] | None = None,
        clock: Clock = time.monotonic_ns,
        on_deadline_miss: Callable[[E, int], None] | None = None,
        on_error: Callable[[E, BaseException], None] | None = None,
        batch_end: Callable[[int], None] | None = None,
        batch_start: Callable[[int, list[tuple[int, int]], int], None] | None = None,
        combine_lanes: bool = False,
        wait: WaitStrategy | None = None,
        batch_dispatch: Callable[[list[E], list[tuple[int, int]]], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes!r}")
        if starvation_bound < 1:
            raise ValueError(f"starvation_bound must be >= 1, got {starvation_bound!r}")
        if block_timeout < 0:
            raise ValueError(f"block_timeout must be >= 0, got {block_timeout!r}")
        self.backpressure = backpressure_policy(policy, block_timeout)
        self.policy = self.backpressure.name
        """The policy's name (``"reject"``, ``"block"``, ``"drop_oldest"``)."""
        self.block_timeout = (self.backpressure.timeout
                              if isinstance(self.backpressure, BlockWhenFull) else block_timeout)
        self.name = name
        self.max_batch = max_batch
        self.starvation_bound = starvation_bound
        self.wait = wait
        self._bell = Doorbell()
        caps = [capacity] * lanes if isinstance(capacity, int) else list(capacity)
        if len(caps) != lanes:
            raise ValueError(f"capacity: one per lane ({lanes}), got {capacity!r}")
        self._lanes = [Lane(caps[i], index=i, owner=name, clock=clock, bell=self._bell)
                       for i in range(lanes)]
        self._clock = clock
        self._batch_end = batch_end
        self._batch_start = batch_start
        self._combine = combine_lanes and lanes > 1
        self._dispatch = Dispatcher(name=name, type_of=type_of, timestamp_of=timestamp_of,
                                    clock=clock, on_deadline_miss=on_deadline_miss,
                                    on_error=on_error)
        self._batch_dispatch = batch_dispatch
        self._consumer_locks = self.backpressure.consumer_locks
        self._thread: ThreadDriver | None = None
        self._stopping = False
        self.failure: BaseException | None = None
        # Consumer-side counters (single writer: the consumer). Producer-side ones live on
        # each lane, written under its lock; the dispatcher counts what it did.
        self._recorded = 0
        self._batches = 0
        self._starvation_overrides = 0
        self.queue_wait = LatencyRecorder("queue_wait_ns")
        self.service = LatencyRecorder("service_ns")
        self.end_to_end = LatencyRecorder("end_to_end_ns")
        self.batch_size = LatencyRecorder("batch_size", highest=1 << 31)
        self.lateness = self._dispatch.lateness

    def register(self, event_type: Hashable, handler: Handler, *,
                 deadline: Deadline | None = None) -> None:
        """Route events with ``type_of(event) == event_type`` to ``handler(event)``; events
        with no handler are counted as ``unhandled`` and dropped."""
        self._dispatch.register(event_type, handler, deadline)

    def dispatch_each(self, events: list[E], segments: list[tuple[int, int]]) -> None:
        """Route each of ``events`` (taken, with their ``(count, enqueue_ns)`` runs) to its
        handler, applying deadlines: the per-event dispatch, for a ``batch_dispatch``."""
        self._dispatch.dispatch(events, segments)

    def _dispatch_part(self, events: list[E], segments: list[tuple[int, int]]) -> None:
        bd = self._batch_dispatch
        if bd is not None and not self._dispatch.deadlines:
            bd(events, segments)
        else:
            self._dispatch.dispatch(events, segments)

    # -- producer side (intake) ----------------------------------------------------------

    def submit(self, event: E, *, lane: int = 0) -> None:
        """Accept one event into ``lane`` or raise per the backpressure policy.

        Raises :class:`ProcessorFull` (``reject``), :class:`SubmitTimeout` (``block``),
        :class:`ProcessorStopped` after :meth:`stop`. ``drop_oldest`` never raises for room.
        Fast path (room available, the common case): one lock, one publication.
        """
        ln = self._lanes[lane]
        one = (event,)
        with ln.lock:
            if not ln.closed and ln.ring.free():
                ln.publish(one, 1)
                return
        if self.backpressure.admit(ln, one) != 1:
            raise self.backpressure.refusal(ln)

    def submit_many(self, events: Sequence[E], *, lane: int = 0) -> int:
        """Accept a batch into ``lane``; return how many were accepted (in order, a prefix).

        ``reject``: the prefix that fits is accepted, the rest counted as rejected.
        ``block``: waits up to ``block_timeout`` for room for all of them (in chunks); what did
        not fit by then is counted as a block timeout. ``drop_oldest``: all are accepted (the
        return value is ``len(events)``), and the oldest waiting events -- for a batch larger
        than the lane, the batch's own head too -- are dropped and counted. Raises
        :class:`ProcessorStopped` after :meth:`stop`.
        """
        if not events:
            return 0
        return self.backpressure.admit(self._lanes[lane], events)

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
        return await self._lanes[lane].offer_async(events, timeout)

    # -- consumer side -------------------------------------------------------------------

    def has_work(self) -> bool:
        """True if any lane holds an event (or a fail-fast carry-over is pending)."""
        if self._dispatch.carry:
            return True
        return any(ln.ring.tail != ln.ring.head for ln in self._lanes)

    def lane(self, index: int) -> Lane:
        """Lane ``index`` itself, for a consumer that orders its own work by lane
        positions (``lane.published``: events ever accepted, ``lane.ring.head``: events
        taken). Read it from the consumer's thread."""
        return self._lanes[index]

    def queued(self) -> int:
        """Events accepted and not yet taken by the consumer."""
        return sum(len(ln.ring) for ln in self._lanes) + len(self._dispatch.carry)

    async def wait_for_work(self) -> None:
        """Caller-driven mode: return when :meth:`poll` has something to do (or on stop).

        Parks on the doorbell: a future that producers resolve -- directly when they run on
        the same thread as the loop, via ``call_soon_threadsafe`` from other threads. No
        polling, no sleeping. Only one task may wait at a time (the single consumer).
        """
        await self._bell.wait(self._ready)

    def _ready(self) -> bool:
        return self._stopping or self.has_work()

    def poll(self, max_batch: int | None = None) -> int:
        """Caller-driven mode: process one natural batch; return how many events it took.

        Chooses a lane by priority (with the starvation bound), takes up to ``max_batch``
        (default: the processor's) of what is waiting there, dispatches, records metrics and
        calls ``batch_end``. Returns 0 at once if nothing waits. Must always be called from
        the same thread, and not while :meth:`start`'s thread runs. May raise
        :class:`DeadlineMissed` (hard, fail-fast); the rest of that batch is kept and
        processed by the next :meth:`poll` or :meth:`drain`.
        """
        self._bell.consumer_ident = threading.get_ident()
        return self._poll(max_batch or self.max_batch)

    def drain(self) -> int:
        """Caller-driven mode: :meth:`poll` until nothing is waiting; return the total."""
        total = 0
        while True:
            n = self._poll(self.max_batch)
            if not n:
                return total
            total += n

    def _pick_lane(self) -> Lane | None:
        lanes = self._lanes
        if len(lanes) == 1:
            ln = lanes[0]
            return ln if ln.ring.tail != ln.ring.head else None
        picked, overridden = pick_lane(lanes, self.starvation_bound)
        if overridden:
            self._starvation_overrides += 1
        return picked

    def _poll(self, max_batch: int) -> int:
        dispatch = self._dispatch
        if dispatch.carry:
            return self._run_carry()
        ln = self._pick_lane()
        if ln is None:
            return 0
        if self._consumer_locks:
            with ln.lock:
                items, segs = ln.take(max_batch)
        else:
            items, segs = ln.take(max_batch)
        n = len(items)
        if not n:
            return 0
        ln.space_freed()
        clock = self._clock
        t0 = clock()
        bs = self._batch_start
        if bs is not None:
            bs(ln.index, segs, t0)
        try:
            self._dispatch_part(items, segs)
            if self._combine and n < max_batch:
                n = self._fill_up(ln, n, segs, max_batch)
        except DeadlineMissed as err:
            self.failure = err
            raise
        finally:
            self._record(n, segs, t0, clock())
        return n

    def _fill_up(self, ln: Lane, n: int, segs: list[tuple[int, int]], max_batch: int) -> int:
        """``combine_lanes``: after ``ln``'s part of the batch was dispatched, take and
        dispatch the lower lanes' waiting events up to ``max_batch`` in all (so the higher
        part is handled before the lower part is even taken); ``segs`` gains theirs.
        Returns the batch's new size."""
        bs = self._batch_start
        for other in self._lanes[ln.index + 1:]:
            if other.ring.tail == other.ring.head:
                continue
            if self._consumer_locks:
                with other.lock:
                    more, more_segs = other.take(max_batch - n)
            else:
                more, more_segs = other.take(max_batch - n)
            other.skipped = 0
            other.space_freed()
            if bs is not None:
                bs(other.index, more_segs, self._clock())
            segs.extend(more_segs)
            n += len(more)
            self._dispatch_part(more, more_segs)
            if n >= max_batch:
                break
        return n

    def _run_carry(self) -> int:
        carry = self._dispatch.take_carry()
        t0 = self._clock()
        try:
            self._dispatch.dispatch_stamped(carry)
        except DeadlineMissed as err:
            self.failure = err
            raise
        finally:
            self._record(len(carry), [(len(carry), t0)], t0, self._clock())
        return len(carry)

    def _record(self, n: int, segs: list[tuple[int, int]], t0: int, t1: int) -> None:
        self._recorded += n
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

    @property
    def _processed(self) -> int:
        """Events taken and dispatched (not expired, not waiting in a carry-over)."""
        d = self._dispatch
        return self._recorded - d.expired - d.carried

    # -- drivers -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the consumer on a daemon thread this processor owns (thread mode)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = ThreadDriver(f"{self.name}-consumer", poll=self._poll,
                                    max_batch=self.max_batch, has_work=self.has_work,
                                    stopping=self._is_stopping, bell=self._bell,
                                    on_failure=self._thread_failed, wait=self.wait)
        self._thread.start()

    def _is_stopping(self) -> bool:
        return self._stopping

    def _thread_failed(self, exc: BaseException) -> None:
        self.failure = exc
        self._stopping = True

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new events, drain everything accepted, then return.

        Thread mode: waits for the consumer thread (up to ``timeout`` s; raises
        ``TimeoutError`` if it has not drained by then) and re-raises a fail-fast
        :class:`DeadlineMissed` if that is why it stopped. Caller-driven mode: wakes a task
        blocked in :meth:`wait_for_work` (so :meth:`run_async` drains and returns), and drains
        right here if called from the consumer's own thread (or if nothing ever polled).
        """
        for ln in self._lanes:
            ln.close()
        self._stopping = True
        self._bell.ring_for_stop()
        if self._thread is not None:
            if not self._thread.join(timeout):
                raise TimeoutError(f"{self.name}: consumer did not drain within {timeout}s")
            if self.failure is not None:
                raise self.failure
        elif self._bell.consumer_ident in (0, threading.get_ident()):
            self.drain()
        # else: a caller-driven consumer on another thread (e.g. run_async on an event loop)
        # was woken above; it drains and returns by itself.

    async def run_async(self, max_batch: int | None = None) -> None:
        """Caller-driven mode as one asyncio task: wait, poll, yield; return once stopped
        and drained.

        Between batches it yields to the event loop (``asyncio.sleep(0)``) so producers on
        the same loop run; when idle it awaits :meth:`wait_for_work`.
        """
        await run_async(poll=self._poll, max_batch=max_batch or self.max_batch,
                        has_work=self.has_work, stopping=self._is_stopping, bell=self._bell)

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
        d = self._dispatch
        return ProcessorStatistics(
            name=self.name,
            submitted=sum(ln.submitted for ln in lanes), processed=self._processed,
            rejected=sum(ln.rejected for ln in lanes),
            block_timeouts=sum(ln.block_timeouts for ln in lanes),
            dropped_oldest=sum(ln.dropped for ln in lanes),
            expired=d.expired, hard_misses=d.hard_misses, soft_late=d.soft_late,
            unhandled=d.unhandled, handler_errors=d.handler_errors,
            batches=self._batches, starvation_overrides=self._starvation_overrides,
            queued=tuple(len(ln.ring) for ln in lanes),
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
            assert ln.published == ln.ring.tail, "an event was published around Lane.publish"
            if len(ln.ring):
                assert ln.runs, "queued events without an enqueue-time run"
                assert ln.runs[-1][0] == ln.ring.tail, (ln.runs[-1], ln.ring.tail)
                assert ln.runs[0][0] > ln.ring.head, (ln.runs[0], ln.ring.head)
            ends = [r[0] for r in ln.runs]
            assert ends == sorted(ends), "runs out of order"
        in_flight = self.queued()
        submitted = sum(ln.submitted for ln in self._lanes)
        dropped = sum(ln.dropped for ln in self._lanes)
        accounted = self._processed + self._dispatch.expired + dropped + in_flight
        assert submitted == accounted, (
            f"submitted={submitted} != processed+expired+dropped+queued={accounted}")
        for rec in (self.queue_wait, self.service, self.end_to_end, self.batch_size,
                    self.lateness):
            rec.check()


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
