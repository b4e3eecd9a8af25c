"""``tickline bench processor``, part 7: garbage-collector settings under a growing heap.

A handler that adds one live object per event to a large heap, run in a fresh spawned
interpreter per mode (default collector settings, ``gc.freeze()`` after warm-up, raised
thresholds, both): per-batch service-time tail and collector pauses. Run from
:func:`tickline.bench.processor.run`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from typing import Any

from tickline.bench.report import percentiles
from tickline.core.processor import EventProcessor

__all__ = ["GC_MODES", "bench_gc"]


# -- 7. gc settings under a growing heap ----------------------------------------------------

class _Order:
    __slots__ = ("fills", "id", "px")

    def __init__(self, i: int, px: int) -> None:
        self.id = i
        self.px = px
        self.fills: list[int] = []


def _gc_trial(mode: str, events: int, live: int, out: Any) -> None:
    """One fresh interpreter: build ``live`` objects, then each event adds one more."""
    import gc

    from tickline.core.gctune import GcPauseMonitor, freeze_after_warmup, realtime_thresholds

    book = {i: _Order(i, i % 1000) for i in range(live)}

    def handler(ev: int) -> None:
        book[live + ev] = _Order(ev, ev)

    proc: EventProcessor[int] = EventProcessor(capacity=1 << 12, max_batch=64,
                                               clock=time.perf_counter_ns)
    proc.register(int, handler)
    for s in range(0, 64_000, 64):  # warm-up
        proc.submit_many(range(-s - 64, -s))
        proc.poll()
    if "freeze" in mode:
        freeze_after_warmup()
    ctx = (realtime_thresholds() if "thresholds" in mode
           else contextlib.nullcontext(gc.get_threshold()))
    proc.service.reset()
    with ctx, GcPauseMonitor() as mon:
        t0 = time.perf_counter()
        for s in range(0, events, 64):
            proc.submit_many(range(s, s + 64))
            proc.poll()
        dt = time.perf_counter() - t0
    st = mon.statistics()
    out.put({"mode": mode, "events_per_second": events / dt,
             "batch_service_us": percentiles(proc.service.histogram, 1000.0),
             "gc_collections": list(st.collections),
             "gc_max_pause_ms": [m / 1e6 for m in st.max_pause_ns_by_generation]})


GC_MODES = ("default", "freeze", "thresholds", "freeze+thresholds")


def bench_gc(events: int, live: int, prog: Any) -> list[dict[str, Any]]:
    """Each gc mode in its own spawned interpreter (clean collector state)."""
    ctx = mp.get_context("spawn")
    task = prog.add_task("gc modes, growing heap", total=len(GC_MODES))
    results = []
    for mode in GC_MODES:
        q = ctx.Queue()
        p = ctx.Process(target=_gc_trial, args=(mode, events, live, q))
        p.start()
        results.append(q.get(timeout=300))
        p.join(30)
        prog.advance(task)
    return results
