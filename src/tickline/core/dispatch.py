"""Dispatch: route each taken event to its handler, and apply per-type deadlines.

The consumer side of an :class:`~tickline.core.processor.EventProcessor`, after a batch has
been taken from a lane: :class:`Dispatcher` looks up ``handler[type_of(event)]`` and runs it;
a handler's exception is counted and reported, never propagated (one bad event does not stop
the consumer). Events of a type with a :class:`Deadline` are measured from their time (the
enqueue time, or ``timestamp_of(event)``) on the processor's clock:

* **hard** -- a miss is counted and reported to ``on_deadline_miss`` (or logged); with
  ``fail_fast`` it raises :class:`DeadlineMissed` and keeps the rest of the batch as a
  carry-over for the next poll;
* **firm** -- an event already past its deadline when its turn comes is discarded unprocessed
  and counted as ``expired``;
* **soft** -- processed late, its lateness recorded in a histogram.

Single writer: only the consumer calls into a dispatcher, so its counters need no lock.
Batches with no deadline-bearing type in the table take a loop with no clock reads.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from tickline.core.metrics import LatencyRecorder

__all__ = ["Deadline", "DeadlineClass", "DeadlineMissed", "Dispatcher", "Handler"]

Handler = Callable[[Any], object]

log = logging.getLogger("tickline.core.processor")


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


class Dispatcher:
    """The handler table, the deadline table and what dispatching them counted.

    ``expired`` (firm, discarded) and ``carried`` (kept after a fail-fast miss, dispatched
    later) are the events of taken batches that were *not* processed by that batch;
    :attr:`carry` holds the ``(event, stamp)`` pairs still to be dispatched.
    """

    def __init__(self, *, name: str, type_of: Callable[[Any], Hashable],
                 timestamp_of: Callable[[Any], int] | None, clock: Callable[[], int],
                 on_deadline_miss: Callable[[Any, int], None] | None,
                 on_error: Callable[[Any, BaseException], None] | None) -> None:
        self.name = name
        self.handlers: dict[Hashable, Handler] = {}
        self.deadlines: dict[Hashable, Deadline] = {}
        self._type_of = type_of
        self._timestamp_of = timestamp_of
        self._clock = clock
        self._on_deadline_miss = on_deadline_miss
        self._on_error = on_error
        self.carry: list[tuple[Any, int]] = []
        self.expired = 0
        self.carried = 0
        self.hard_misses = 0
        self.soft_late = 0
        self.unhandled = 0
        self.handler_errors = 0
        self.lateness = LatencyRecorder("lateness_ns")

    def register(self, event_type: Hashable, handler: Handler,
                 deadline: Deadline | None = None) -> None:
        """Route events with ``type_of(event) == event_type`` to ``handler(event)``."""
        if event_type in self.handlers:
            raise ValueError(f"a handler for event_type={event_type!r} is already registered")
        self.handlers[event_type] = handler
        if deadline is not None:
            self.deadlines[event_type] = deadline

    def dispatch(self, items: list[Any], segs: list[tuple[int, int]]) -> None:
        """Run one taken batch; ``segs`` are its ``(count, enqueue_ns)`` runs. O(len(items))."""
        if not self.deadlines:
            get = self.handlers.get
            tp = self._type_of
            miss = self._unhandled_event
            for ev in items:
                try:
                    get(tp(ev), miss)(ev)
                except Exception as exc:
                    self._handler_error(ev, exc)
            return
        stamped: list[tuple[Any, int]] = []
        i = 0
        for count, stamp in segs:
            stamped.extend((ev, stamp) for ev in items[i:i + count])
            i += count
        self.dispatch_stamped(stamped)

    def take_carry(self) -> list[tuple[Any, int]]:
        """Remove and return the carry-over left by a fail-fast miss."""
        carry, self.carry = self.carry, []
        return carry

    def dispatch_stamped(self, stamped: list[tuple[Any, int]]) -> None:
        """Run ``(event, enqueue_ns)`` pairs, applying deadlines. May raise
        :class:`DeadlineMissed` (hard, fail-fast), keeping the rest in :attr:`carry`."""
        get = self.handlers.get
        deadlines = self.deadlines
        tp = self._type_of
        ts_of = self._timestamp_of
        clock = self._clock
        miss = self._unhandled_event
        firm = DeadlineClass.FIRM
        hard = DeadlineClass.HARD
        n = len(stamped)
        i = 0
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
                self.expired += 1
                continue
            try:
                get(key, miss)(ev)
            except Exception as exc:
                self._handler_error(ev, exc)
            late = clock() - born - dl.max_latency_ns
            if late <= 0:
                continue
            if dl.kind is hard:
                self.hard_misses += 1
                if self._on_deadline_miss is not None:
                    self._on_deadline_miss(ev, late)
                else:
                    log.warning("%s: hard deadline of %r missed by %d ns", self.name, key, late)
                if dl.fail_fast:
                    self.carry = stamped[i:]
                    self.carried += len(self.carry)
                    raise DeadlineMissed(ev, late)
            elif dl.kind is not firm:
                self.soft_late += 1
                self.lateness.record(late)

    def _unhandled_event(self, ev: object) -> None:
        self.unhandled += 1

    def _handler_error(self, ev: Any, exc: Exception) -> None:
        self.handler_errors += 1
        if self._on_error is not None:
            self._on_error(ev, exc)
        else:
            log.error("%s: handler failed on %r", self.name, ev, exc_info=exc)
