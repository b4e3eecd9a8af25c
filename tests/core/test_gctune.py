"""gctune: the pause monitor sees collections; thresholds are restored; freeze freezes."""

from __future__ import annotations

import gc

import pytest

from tickline.core.gctune import (
    GcPauseMonitor,
    freeze_after_warmup,
    frozen_heap,
    realtime_thresholds,
)


def test_monitor_times_every_collection() -> None:
    with GcPauseMonitor() as mon:
        gc.collect(0)
        gc.collect(2)
    gc.collect()  # after uninstall: not counted
    st = mon.statistics()
    assert st.collections[0] >= 1 and st.collections[2] >= 1
    assert st.pause_ns.count == sum(st.collections)
    assert st.max_pause_ns_by_generation[2] > 0
    mon.check()


def test_realtime_thresholds_restore_the_previous_ones() -> None:
    before = gc.get_threshold()
    with realtime_thresholds((5000, 11, 99)) as prev:
        assert gc.get_threshold() == (5000, 11, 99)
        assert prev == before
    assert gc.get_threshold() == before
    with (pytest.raises(ValueError, match=r"thresholds must all be >= 1, got \(0, 1, 1\)"),
          realtime_thresholds((0, 1, 1))):
        pass


def test_freeze_after_warmup_moves_objects_to_the_permanent_generation() -> None:
    try:
        assert freeze_after_warmup() > 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


class _Cycle:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_frozen_heap_gives_the_heap_back_so_cycles_built_before_it_are_freed() -> None:
    import weakref

    cycle = _Cycle()
    alive = weakref.ref(cycle)
    with frozen_heap() as frozen:
        assert frozen > 0 and gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert alive() is not None  # frozen: the collector does not look at it
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None
