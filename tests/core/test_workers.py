"""ProcessPartitions: per-key order across several worker processes, drain on stop."""

from __future__ import annotations

import pytest

from tests.core import worker_fns
from tickline.core.processor import partition_of
from tickline.core.workers import ProcessPartitions


def test_per_key_order_across_worker_processes() -> None:
    pp = ProcessPartitions(workers=2, handler=worker_fns.tag_handler, slot_size=32,
                           capacity=256)  # small rings: exercises blocking and collection
    pp.start()
    n_keys, per_key = 10, 2000
    try:
        for s in range(0, per_key, 100):
            pp.submit_many([(k, f"{k}:{s + i}".encode())
                            for i in range(100) for k in range(n_keys)])
        results = pp.stop(timeout=60)
    except BaseException:
        pp.stop(timeout=5)
        raise
    seen: dict[int, list[int]] = {}
    for part, outs in enumerate(results):
        for out in outs:
            k, s = map(int, out.split(b":"))
            assert partition_of(k, 2) == part
            seen.setdefault(k, []).append(s)
    assert sorted(seen) == list(range(n_keys))
    for k, seqs in seen.items():
        assert seqs == list(range(per_key)), k
    st = pp.statistics()
    assert sum(st.submitted) == sum(st.results) == n_keys * per_key
    pp.check()


def test_oversized_payload_is_rejected_with_its_size() -> None:
    pp = ProcessPartitions(workers=1, handler=worker_fns.tag_handler, slot_size=16)
    try:
        with pytest.raises(ValueError, match=r"payload of 13 bytes exceeds slot_size - 4 = 12"):
            pp.submit(1, bytes(13))
    finally:
        pp.stop()
