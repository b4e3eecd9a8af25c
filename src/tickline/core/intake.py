"""Intake: an event processor's bounded priority lanes and what happens when one is full.

A :class:`Lane` is an :class:`~tickline.core.ring.SpscRing` made safe for many producers by
a lock held only for the slice copy, plus the enqueue-time *runs* of what it holds (one
``(end_sequence, enqueue_ns)`` per accepted slice, so latency histograms cost O(submit calls),
not O(events)). Every accepted slice goes through one step, :meth:`Lane.publish`: append the
run, offer the events, count them, ring the consumer's doorbell.

The consumer serves lanes by priority with a starvation bound (:func:`pick_lane`) and takes
a batch with :meth:`Lane.take`.

When a lane is full, a **backpressure policy** decides (DESIGN.md principle 4: every queue
has a capacity, a policy and a counter of what the policy did). Each is a named strategy
object stating its trade-off:

* :class:`RejectWhenFull` (``policy="reject"``) -- refuse what does not fit, at once;
* :class:`BlockWhenFull` (``policy="block"``) -- wait up to ``timeout`` seconds for room;
* :class:`DropOldest` (``policy="drop_oldest"``) -- make room by discarding the oldest
  waiting events.

:func:`backpressure_policy` maps the string forms to these objects. Producers on an event loop
use :meth:`Lane.offer_async`, which *awaits* room under any policy.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

from tickline.core.drivers import Doorbell, Waiter, resolve_soon
from tickline.core.ring import SpscRing

__all__ = [
    "Backpressure",
    "BackpressurePolicy",
    "BlockWhenFull",
    "DropOldest",
    "Lane",
    "ProcessorFull",
    "ProcessorStopped",
    "RejectWhenFull",
    "SubmitTimeout",
    "backpressure_policy",
    "pick_lane",
]

Backpressure = Literal["reject", "block", "drop_oldest"]
"""The string forms of the three built-in policies."""


class ProcessorFull(Exception):
    """``reject`` policy: the lane is full and the event was not accepted."""


class SubmitTimeout(ProcessorFull):
    """``block`` policy: no room appeared within ``block_timeout``."""


class ProcessorStopped(RuntimeError):
    """The processor is stopping or stopped and accepts no new events."""


class Lane:
    """One priority lane: a ring, its enqueue-time runs, its lock and its counters.

    ``runs`` holds ``(end_sequence, enqueue_ns)`` per accepted slice; :meth:`publish` appends
    a run *before* publishing the events, so the consumer always finds the run of an event it
    sees. Producer-side counters are written only under ``lock``.
    """

    __slots__ = ("async_space", "bell", "block_timeouts", "clock", "closed", "dropped",
                 "index", "lock", "owner", "published", "rejected", "ring", "runs", "skipped",
                 "space", "space_waiting", "submitted")

    def __init__(self, capacity: int, *, index: int, owner: str, clock: Callable[[], int],
                 bell: Doorbell) -> None:
        self.ring: SpscRing[Any] = SpscRing(capacity, check_threads=False)
        self.runs: deque[tuple[int, int]] = deque()
        self.published = 0  # == ring.tail: every publication goes through publish()
        self.index = index
        self.owner = owner
        self.clock = clock
        self.bell = bell
        self.lock = threading.Lock()  # serializes producers (and, for drop_oldest, the consumer)
        self.closed = False
        self.skipped = 0  # batches this lane waited while another was served (consumer only)
        self.space = threading.Event()
        self.space_waiting = False
        self.async_space: list[Waiter] = []  # tasks awaiting room (offer_async)
        self.submitted = 0
        self.rejected = 0
        self.dropped = 0
        self.block_timeouts = 0

    # -- the one publication step (lock held) -------------------------------------------

    def publish(self, events: Sequence[Any], k: int) -> None:
        """Append the run, offer the ``k`` events (``k == len(events) <= free``), count them,
        ring the doorbell. The caller holds ``lock`` and has checked :meth:`check_open`."""
        end = self.published + k
        self.runs.append((end, self.clock()))
        if k == 1:
            self.ring.offer(events[0])  # a slot store: cheaper than a one-item slice copy
        else:
            self.ring.offer_many(events)
        self.published = end
        self.submitted += k
        bell = self.bell
        if bell.armed:
            bell.ring()

    def check_open(self) -> None:
        """Raise :class:`ProcessorStopped` once :meth:`close` has run (lock held)."""
        if self.closed:
            raise ProcessorStopped(f"{self.owner} is stopped; event not accepted")

    def offer(self, events: Sequence[Any]) -> int:
        """Accept the prefix of ``events`` that fits now; count nothing as refused."""
        with self.lock:
            self.check_open()
            k = min(len(events), self.ring.free())
            if k:
                self.publish(events if k == len(events) else events[:k], k)
        return k

    async def offer_async(self, events: Sequence[Any], timeout: float | None) -> int:
        """Accept all of ``events``, *awaiting* room; what is left when ``timeout`` (s)
        expires is counted in ``block_timeouts``. The consumer resolves the awaited future
        after each batch it takes, so the loop is never blocked."""
        k = len(events)
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        done = self.offer(events)
        while done < k:
            fut: asyncio.Future[None] = loop.create_future()
            self.async_space.append((loop, fut, threading.get_ident()))
            if self.ring.free() == 0 and not self.closed:
                remaining = None if end is None else end - loop.time()
                try:
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError
                    await asyncio.wait_for(fut, remaining)
                except TimeoutError:
                    with self.lock:
                        self.block_timeouts += k - done
                    return done
            done += self.offer(events[done:])
        return done

    # -- consumer side ----------------------------------------------------------------

    def space_freed(self) -> None:
        """The consumer took events: wake producers waiting for room (blocked or awaiting)."""
        if self.space_waiting:
            self.space_waiting = False
            self.space.set()
        if self.async_space:
            self._wake_async_space()

    def _wake_async_space(self) -> None:
        waiters, self.async_space = self.async_space, []
        for w in waiters:
            resolve_soon(w)

    def close(self) -> None:
        """Refuse further events and release every producer waiting for room."""
        with self.lock:
            self.closed = True
        self.space.set()
        self._wake_async_space()

    def take(self, max_batch: int) -> tuple[list[Any], list[tuple[int, int]]]:
        """Drain up to ``max_batch`` events; return them and their ``(count, enqueue_ns)``
        segments (one per run they span). O(taken + runs spanned)."""
        ring = self.ring
        head = ring.head
        items = ring.drain(max_batch)
        end = head + len(items)
        segs: list[tuple[int, int]] = []
        runs = self.runs
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

    def trim_runs(self) -> None:
        """Forget runs wholly below ``head`` (after events were discarded)."""
        head = self.ring.head
        runs = self.runs
        while runs and runs[0][0] <= head:
            runs.popleft()


def pick_lane(lanes: list[Lane], bound: int) -> tuple[Lane | None, bool]:
    """The lane to serve next, and whether the starvation bound overrode strict priority.

    Lane 0 first (strict priority), but a waiting lane passed over for ``bound`` batches in
    a row is served next; among several such lanes the longest-waiting one (ties: higher
    priority). With L lanes a waiting lane is served within ``bound + L - 2`` batches.
    ``(None, False)`` if every lane is empty. Consumer only; O(L).
    """
    chosen = -1
    for i, ln in enumerate(lanes):
        if ln.ring.tail != ln.ring.head:
            chosen = i
            break
    if chosen < 0:
        return None, False
    pick = chosen
    worst = max(bound - 1, lanes[chosen].skipped)
    for j in range(chosen + 1, len(lanes)):
        lj = lanes[j]
        if lj.skipped > worst and lj.ring.tail != lj.ring.head:
            pick = j
            worst = lj.skipped
    for j in range(chosen, len(lanes)):
        lj = lanes[j]
        if j != pick and lj.ring.tail != lj.ring.head:
            lj.skipped += 1
    lanes[pick].skipped = 0
    return lanes[pick], pick != chosen


# -- backpressure policies --------------------------------------------------------------

class BackpressurePolicy(abc.ABC):
    """What a lane does with events that do not fit: a named strategy with a trade-off.

    :meth:`admit` accepts a prefix of ``events`` into ``lane`` (returning its length) and
    counts what it refused on the lane. ``consumer_locks`` says whether the consumer must
    take the lane's lock to drain (only when the policy moves ``head`` itself).
    """

    name: str = ""
    consumer_locks = False

    @abc.abstractmethod
    def admit(self, lane: Lane, events: Sequence[Any]) -> int:
        """Accept a prefix of ``events`` (non-empty) into ``lane``; return its length."""

    def refusal(self, lane: Lane) -> ProcessorFull:
        """The error :meth:`~tickline.core.processor.EventProcessor.submit` raises when
        :meth:`admit` refused its one event."""
        return ProcessorFull(f"{lane.owner}: lane {lane.index} full "
                             f"(capacity={lane.ring.capacity}, policy={self.name!r})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RejectWhenFull(BackpressurePolicy):
    """Accept the prefix that fits, refuse (and count in ``rejected``) the rest, at once.

    The producer never waits and the consumer never sees an event twice or late; the cost is
    pushed to the caller, who must handle :class:`ProcessorFull` (e.g. answer "busy"). Right
    for a producer that must stay responsive, such as the exchange's gateways.
    """

    name = "reject"

    def admit(self, lane: Lane, events: Sequence[Any]) -> int:
        """O(1) plus the slice copy; one more lock round only when something is refused."""
        n = lane.offer(events)
        if n < len(events):
            with lane.lock:
                lane.rejected += len(events) - n
        return n


class BlockWhenFull(BackpressurePolicy):
    """Wait up to ``timeout`` seconds for room, accepting in chunks as room appears; what
    still does not fit is counted in ``block_timeouts`` (:class:`SubmitTimeout` for one
    event).

    Nothing is lost and the producer is slowed to the consumer's pace -- the throughput
    choice -- but a producer thread blocks: never use it from a task on the consumer's own
    event loop (the consumer's own thread fails at once instead of deadlocking; tasks use
    :meth:`Lane.offer_async`). The waiting producer parks on an event the consumer sets
    after a batch, so it does not spin.
    """

    name = "block"

    def __init__(self, timeout: float = 1.0) -> None:
        if timeout < 0:
            raise ValueError(f"block_timeout must be >= 0, got {timeout!r}")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"BlockWhenFull(timeout={self.timeout!r})"

    def refusal(self, lane: Lane) -> ProcessorFull:
        """:class:`SubmitTimeout` naming the timeout."""
        return SubmitTimeout(f"{lane.owner}: lane {lane.index} full for "
                             f"block_timeout={self.timeout}s")

    def admit(self, lane: Lane, events: Sequence[Any]) -> int:
        """Chunks of whatever room there is, until all fit or the timeout passes."""
        k = len(events)
        deadline = time.monotonic() + self.timeout
        done = 0
        ring = lane.ring
        lock = lane.lock
        while True:
            if not lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                break
            try:
                lane.check_open()
                room = ring.free()
                if room:
                    n = min(room, k - done)
                    lane.publish(events[done:done + n] if done or n < k else events, n)
                    done += n
                    if done == k:
                        return k
                    continue
                if threading.get_ident() == lane.bell.consumer_ident:
                    # The consumer itself (e.g. a task on the polling event loop) would wait
                    # for itself: fail now instead of deadlocking for the timeout.
                    break
                lane.space.clear()
                lane.space_waiting = True
                if ring.free():
                    continue
            finally:
                lock.release()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not lane.space.wait(remaining):
                # Re-check once: room may have appeared just as we timed out.
                if ring.free() and deadline - time.monotonic() > -1e-3:
                    continue
                break
        with lock:
            lane.block_timeouts += k - done
        return done


class DropOldest(BackpressurePolicy):
    """Accept everything; make room by discarding the oldest waiting events (counted in
    ``dropped_oldest``), and for a batch larger than the lane, the batch's own head too.

    The producer never waits or fails and the consumer always sees the newest data -- right
    for state that supersedes itself (quotes, positions) -- but accepted events are lost,
    and the consumer takes the lane's lock to drain, since the producer moves ``head``.
    """

    name = "drop_oldest"
    consumer_locks = True

    def admit(self, lane: Lane, events: Sequence[Any]) -> int:
        """Always ``len(events)``; O(dropped) to clear the discarded slots."""
        k = len(events)
        accepted = 0
        with lane.lock:
            lane.check_open()
            ring = lane.ring
            room = ring.free()
            if k > room:
                cap = ring.capacity
                if k > cap:  # accepted, and at once the oldest of them drop
                    excess = k - cap
                    lane.dropped += excess
                    lane.submitted += excess
                    accepted = excess
                    events = events[excess:]
                    k = cap
                lane.dropped += ring.discard(k - room)
                lane.trim_runs()
            lane.publish(events, k)
        return accepted + k


def backpressure_policy(policy: Backpressure | BackpressurePolicy,
                        block_timeout: float = 1.0) -> BackpressurePolicy:
    """The policy object for ``policy``: a :class:`BackpressurePolicy` as is, or a string
    form mapped to its class (``block_timeout`` applies to ``"block"`` only)."""
    if isinstance(policy, BackpressurePolicy):
        return policy
    if policy == "reject":
        return RejectWhenFull()
    if policy == "block":
        return BlockWhenFull(block_timeout)
    if policy == "drop_oldest":
        return DropOldest()
    raise ValueError(f"policy must be 'reject', 'block', 'drop_oldest' or a "
                     f"BackpressurePolicy, got {policy!r}")
