"""Garbage-collector control for latency: measure pauses, freeze the warm heap, raise thresholds.

CPython frees most objects by reference counting; the cyclic collector runs when *net*
allocations of tracked containers pass a threshold (700 by default for generation 0), and a
full (generation-2) collection walks every tracked object in the heap. What the benchmark in
``tickline bench processor`` (section "gc") measured on this code, 2 cores, CPython 3.11:

* **Steady churn** (each event replaces a live object; 300k live objects): *no collections at
  all* -- allocations and frees cancel out -- and no setting changed the tail. Nothing to tune.
* **Growing heap** (each event adds a live object, 300k -> 2.3M): default thresholds ran 7
  full collections of up to ~300 ms each, the whole tail above p99.9. ``gc.freeze()`` after
  warm-up took the frozen 300k out of every later walk (max full pause ~220 ms); raising
  the thresholds to (10_000, 20, 1_000) removed the full collections from the run and cut
  gen-0 runs 14x (max batch ~40 ms, the dict resize, not the collector).

So this module keeps exactly three tools: :class:`GcPauseMonitor` (measure first),
:func:`freeze_after_warmup` and :func:`realtime_thresholds`. Object pooling was measured too
(a pooled object is ~50 ns vs ~150 ns to allocate, mean) but the processor allocates nothing
per event to pool, and a pool's release discipline is a bug farm; it is not provided.
Raising thresholds *defers* full collections, it does not remove them: a service that grows
for hours should also call ``gc.collect()`` at a moment it chooses (e.g. when idle).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tickline.core.metrics import HistogramSnapshot, LatencyRecorder

__all__ = [
    "REALTIME_THRESHOLDS",
    "GcPauseMonitor",
    "GcStatistics",
    "freeze_after_warmup",
    "frozen_heap",
    "realtime_thresholds",
]

#: Thresholds measured to keep full collections out of a growing heap's hot path.
REALTIME_THRESHOLDS: tuple[int, int, int] = (10_000, 20, 1_000)


@dataclass(frozen=True, slots=True)
class GcStatistics:
    """A frozen view of collector activity since the monitor was installed."""

    collections: tuple[int, int, int]
    collected: int
    uncollectable: int
    pause_ns: HistogramSnapshot
    max_pause_ns_by_generation: tuple[int, int, int]
    frozen_objects: int
    thresholds: tuple[int, int, int]


class GcPauseMonitor:
    """Times every collection through ``gc.callbacks`` (install, read, uninstall).

    Single writer: the collector runs under the GIL and never re-enters, so only one callback
    runs at a time; read :meth:`statistics` from any thread for a best-effort view.
    """

    def __init__(self) -> None:
        self.pauses = LatencyRecorder("gc_pause_ns")
        self._start = 0
        self._counts = [0, 0, 0]
        self._max = [0, 0, 0]
        self._collected = 0
        self._uncollectable = 0
        self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
            return
        pause = time.perf_counter_ns() - self._start
        g = int(info.get("generation", 2))
        self._counts[g] += 1
        if pause > self._max[g]:
            self._max[g] = pause
        self._collected += int(info.get("collected", 0))
        self._uncollectable += int(info.get("uncollectable", 0))
        self.pauses.record(pause)

    def install(self) -> GcPauseMonitor:
        """Start timing collections (idempotent); returns ``self``."""
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True
        return self

    def uninstall(self) -> None:
        """Stop timing collections."""
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def __enter__(self) -> GcPauseMonitor:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def statistics(self) -> GcStatistics:
        """Counts per generation, a pause histogram and the collector's current settings."""
        c, m = self._counts, self._max
        t0, t1, t2 = gc.get_threshold()
        return GcStatistics((c[0], c[1], c[2]), self._collected, self._uncollectable,
                            self.pauses.snapshot(), (m[0], m[1], m[2]), gc.get_freeze_count(),
                            (t0, t1, t2))

    def check(self) -> None:
        """Invariant checker: one pause recorded per collection counted."""
        assert self.pauses.count() == sum(self._counts), (self.pauses.count(), self._counts)
        self.pauses.check()


def freeze_after_warmup() -> int:
    """Collect once, then move every surviving object to the permanent generation.

    Call after the long-lived state is built (instruments loaded, books warm): later
    collections no longer walk those objects. Returns the number of frozen objects.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@contextlib.contextmanager
def frozen_heap() -> Iterator[int]:
    """Freeze the heap for the block (as :func:`freeze_after_warmup`); unfreeze after it.

    Yields the number of frozen objects. A frozen object is never examined by the cyclic
    collector, so a reference cycle among them is never freed: a server that runs inside a
    longer-lived process (tests, an embedding application) must give its frozen heap back
    when it stops, or every cycle it built before the freeze leaks for good.
    """
    frozen = freeze_after_warmup()
    try:
        yield frozen
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def realtime_thresholds(
    thresholds: tuple[int, int, int] = REALTIME_THRESHOLDS,
) -> Iterator[tuple[int, int, int]]:
    """Run the block with raised collector thresholds; restore the previous ones after.

    Yields the previous thresholds. See the module docstring for what was measured.
    """
    if min(thresholds) < 1:
        raise ValueError(f"thresholds must all be >= 1, got {thresholds!r}")
    t0, t1, t2 = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield (t0, t1, t2)
    finally:
        gc.set_threshold(t0, t1, t2)
