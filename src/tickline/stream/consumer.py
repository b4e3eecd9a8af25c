"""Consumer-side helpers for the market-data streams: gap detection and a rebuilt depth book.

Both live on the subscriber's side of the bus and read only messages
(:mod:`tickline.stream.messages`): :class:`SequenceTracker` watches per-topic sequence
numbers; :class:`DepthBook` applies a :class:`DepthSnapshot` and then :class:`DepthDelta`
messages, and says when a gap means it must resync from
:meth:`~tickline.stream.publisher.MarketDataPublisher.depth_snapshot`.
"""

from __future__ import annotations

from tickline.matching.types import BUY
from tickline.stream.messages import DepthDelta, DepthSnapshot, Level3

__all__ = ["DepthBook", "SequenceTracker"]


class SequenceTracker:
    """Detects gaps in per-topic sequence numbers on the consumer side.

    ``observe(topic, seq)`` returns how many messages were missed just before this one
    (0 if contiguous; a first message counts as contiguous unless ``expect`` said where the
    topic starts). A duplicate or stale ``seq`` returns -1 (and is not counted as a gap).
    """

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.gaps = 0
        self.missed = 0

    def expect(self, topic: str, after: int) -> None:
        """The next message on ``topic`` should be ``after + 1`` (e.g. after a snapshot)."""
        self.last[topic] = after

    def observe(self, topic: str, seq: int) -> int:
        """Record ``seq`` on ``topic``: the number of messages missed before it, or -1 for a
        duplicate/stale one. O(1)."""
        last = self.last.get(topic)
        if last is not None and seq <= last:
            return -1
        self.last[topic] = seq
        if last is None or seq == last + 1:
            return 0
        self.gaps += 1
        self.missed += seq - last - 1
        return seq - last - 1


class DepthBook:
    """A consumer's depth book rebuilt from a :class:`DepthSnapshot` and :class:`DepthDelta`
    messages; notices gaps so the consumer can resync.

    ``apply(delta)`` returns ``True`` if applied, ``False`` if the delta is stale (already in
    the snapshot) or reveals a gap -- then ``needs_snapshot`` is set and deltas are ignored
    until the next :meth:`apply_snapshot`.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.seq: int | None = None
        self.bids: dict[int, tuple[int, int]] = {}
        self.asks: dict[int, tuple[int, int]] = {}
        self.gaps = 0
        self.resyncs = 0

    @property
    def needs_snapshot(self) -> bool:
        """No snapshot yet, or a gap since the last one: deltas are ignored until one."""
        return self.seq is None

    def apply_snapshot(self, snap: DepthSnapshot) -> None:
        """Replace the book with ``snap``. Raises :class:`ValueError` (and changes nothing)
        for another symbol's snapshot. O(levels)."""
        if snap.symbol != self.symbol:
            raise ValueError(f"snapshot of {snap.symbol!r} applied to {self.symbol!r}")
        self.bids = {p: (q, c) for p, q, c in snap.bids}
        self.asks = {p: (q, c) for p, q, c in snap.asks}
        if self.seq is not None or self.gaps:
            self.resyncs += 1
        self.seq = snap.seq

    def apply(self, delta: DepthDelta) -> bool:
        """Apply the next delta (see the class doc for ``False``). O(1)."""
        if self.seq is None:
            return False
        if delta.seq <= self.seq:
            return False  # already reflected in the snapshot
        if delta.seq != self.seq + 1:
            self.gaps += 1
            self.seq = None
            return False
        self.seq = delta.seq
        levels = self.bids if delta.side == BUY else self.asks
        if delta.order_count:
            levels[delta.price] = (delta.quantity, delta.order_count)
        else:
            levels.pop(delta.price, None)
        return True

    def depth(self) -> dict[str, list[Level3]]:
        """All levels best first, in the shape of ``OrderBook.depth``. O(L log L)."""
        return {
            "bids": [(p, *self.bids[p]) for p in sorted(self.bids, reverse=True)],
            "asks": [(p, *self.asks[p]) for p in sorted(self.asks)],
        }
