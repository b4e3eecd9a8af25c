"""The depth feed's shared fold (:class:`tickline.gateway.wsfeeds.Shared`): many sessions
folding the same published batches through one memo end in exactly the state each would
reach folding message by message -- levels, sequence, resyncs -- whatever the batches."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tickline.gateway.stats import WsCounters
from tickline.gateway.wsfeeds import DepthFeed, SequencedFeed, Shared
from tickline.stream import DepthDelta


def reference(batches: list[list[DepthDelta]], max_levels: int) -> tuple[Any, int, bool]:
    """Message by message: pending levels, seq, and whether a resync is due."""
    levels: dict[tuple[int, int], tuple[int, int]] = {}
    seq, lost = 0, False
    for batch in batches:
        if lost:
            break
        for m in batch:
            if m.seq <= seq:
                continue
            if m.seq != seq + 1 or (len(levels) >= max_levels
                                    and (m.side, m.price) not in levels):
                lost = True
                levels.clear()
                break
            seq = m.seq
            levels[(m.side, m.price)] = (m.quantity, m.order_count)
    return levels, seq, lost


deltas = st.lists(st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(0, 9),
                            st.integers(0, 2)), min_size=1, max_size=30)


@given(st.lists(deltas, min_size=1, max_size=8), st.integers(1, 8), st.integers(1, 4),
       st.lists(st.integers(0, 3), min_size=8, max_size=8))
def test_shared_fold_equals_folding_each_message(raw: list[list[tuple[int, int, int, int]]],
                                                 max_levels: int, sessions: int,
                                                 skips: list[int]) -> None:
    seq = 0
    batches: list[list[DepthDelta]] = []
    for i, batch in enumerate(raw):
        out = []
        for side, price, qty, skip in batch:
            seq += 1 + (skip if skips[i % len(skips)] == 3 else 0)  # some batches with holes
            out.append(DepthDelta(seq, seq * 10, "X", side, price, qty, qty and 1))
        batches.append(out)
    shared = Shared(limit=3)  # tiny: clears while in use, which must not matter
    feeds = [DepthFeed(None, "X", None, max_levels, lambda: None, WsCounters(),  # type: ignore[arg-type]
                       shared=shared) for _ in range(sessions)]
    for f in feeds:
        f.need_snapshot = False  # as after the first snapshot at seq 0
    for batch in batches:
        for f in feeds:
            if not f.need_snapshot:
                f.on_batch("depth.X", batch)
    levels, want_seq, lost = reference(batches, max_levels)
    for f in feeds:
        assert f.need_snapshot == lost
        if not lost:
            assert f.levels == levels and f.seq == want_seq


def test_sequenced_feeds_share_one_json_per_message() -> None:
    shared = Shared()
    calls: list[int] = []

    def convert(m: Any) -> dict[str, Any]:
        calls.append(m.seq)
        return {"seq": m.seq}

    class Msg:
        def __init__(self, seq: int) -> None:
            self.seq = seq

    msgs = [Msg(i) for i in range(1, 6)]
    outs = []
    for _ in range(3):
        feed = SequencedFeed("trades", "X", 10, convert, lambda: None, WsCounters(),
                             shared=shared)
        feed.on_batch("trades.X", msgs)
        out: list[Any] = []
        feed.take(out)
        outs.append(out)
    assert calls == [1, 2, 3, 4, 5]  # converted once, whatever the number of sessions
    assert outs[0] == outs[1] == outs[2] == [{"seq": i} for i in range(1, 6)]
