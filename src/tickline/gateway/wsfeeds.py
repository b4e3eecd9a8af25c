"""A WebSocket session's market-data feeds: one per (channel, symbol), each a bus callback
that only updates a bounded buffer and wakes the session's sender, plus a ``take`` that the
sender calls to turn everything pending into JSON messages.

* :class:`DepthFeed` -- level changes conflated by level (at most ``max_levels`` distinct
  levels pending); on overflow or a sequence gap the pending changes are dropped and the next
  ``take`` sends a fresh ``snapshot`` with ``"resync": true``.
* :class:`SequencedFeed` -- trades or bars: a bounded deque (drop oldest); a hole in the
  sequence becomes a ``gap`` message (``from_seq``, ``to_seq``).
* :class:`BboFeed` -- only the latest BBO.

The buffer sizes are the client's choice within the server's limits, and so is the policy:
with ``on_loss`` set (the ``disconnect`` policy) a feed that would drop or resync calls it
instead (the session closes as a slow consumer).

A feed never blocks or slows the exchange: the bus callback is O(messages) on dicts and
deques. Single writer: the event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tickline.gateway.jsonfmt import Format, bbo_json
from tickline.gateway.stats import WsCounters
from tickline.matching import BUY
from tickline.stream import Bbo, DepthDelta, MarketDataPublisher, Subscription

__all__ = ["BboFeed", "DepthFeed", "Feed", "SequencedFeed"]


class DepthFeed:
    """Depth for one session and symbol: pending level changes conflated by level."""

    __slots__ = ("counters", "fmt", "levels", "max_levels", "need_snapshot", "on_loss",
                 "publisher", "resync", "sent_seq", "seq", "sub", "symbol", "ts", "wake")

    def __init__(self, publisher: MarketDataPublisher, symbol: str, fmt: Format,
                 max_levels: int, wake: Callable[[], None], counters: WsCounters,
                 on_loss: Callable[[str], None] | None = None) -> None:
        self.publisher = publisher
        self.symbol = symbol
        self.fmt = fmt
        self.max_levels = max_levels
        self.wake = wake
        self.counters = counters
        self.levels: dict[tuple[int, int], tuple[int, int]] = {}
        self.seq = 0          # last delta folded into ``levels`` (or the snapshot's seq)
        self.sent_seq = 0     # last seq the client has
        self.ts = 0
        self.need_snapshot = True
        self.resync = False
        self.on_loss = on_loss
        self.sub: Subscription | None = None

    def pending(self) -> int:
        return len(self.levels)

    def resync_now(self) -> None:
        """The client asked for a fresh snapshot (gap recovery): the next ``take`` sends one."""
        self.need_snapshot = True
        self.resync = True
        self.levels.clear()

    def on_batch(self, _topic: str, msgs: Sequence[DepthDelta]) -> None:
        if not self.need_snapshot:
            levels = self.levels
            seq = self.seq
            for m in msgs:
                if m.seq <= seq:
                    continue  # already in the snapshot the client gets
                if m.seq != seq + 1 or len(levels) >= self.max_levels:
                    self._lost()
                    break
                seq = m.seq
                levels[(m.side, m.price)] = (m.quantity, m.order_count)
                self.ts = m.ts
            else:
                self.seq = seq
        self.wake()

    def _lost(self) -> None:
        if self.on_loss is not None:
            self.on_loss(f"depth {self.symbol}: more than {self.max_levels} levels pending")
            return
        self.need_snapshot = True
        self.resync = True
        self.levels.clear()

    def take(self, out: list[Any]) -> None:
        fmt = self.fmt
        if self.need_snapshot:
            snap = self.publisher.depth_snapshot(self.symbol)
            self.need_snapshot = False
            self.levels.clear()
            self.seq = self.sent_seq = snap.seq
            out.append({"type": "snapshot", "channel": "depth", "symbol": self.symbol,
                        "seq": snap.seq, "ts": snap.ts, "resync": self.resync,
                        "bids": fmt.levels(snap.bids), "asks": fmt.levels(snap.asks)})
            if self.resync:
                self.counters.resyncs += 1
            self.resync = False
            return
        if not self.levels:
            return
        price, qty = fmt.price, fmt.qty
        bids = [(price(p), qty(q), c) for (s, p), (q, c) in self.levels.items() if s == BUY]
        asks = [(price(p), qty(q), c) for (s, p), (q, c) in self.levels.items() if s != BUY]
        out.append({"type": "depth", "symbol": self.symbol, "first_seq": self.sent_seq + 1,
                    "seq": self.seq, "ts": self.ts, "bids": bids, "asks": asks})
        self.sent_seq = self.seq
        self.levels.clear()


class SequencedFeed:
    """Trades or bars for one session and symbol: a bounded deque (drop oldest); a hole in
    the sequence becomes a ``gap`` message."""

    __slots__ = ("channel", "convert", "counters", "last_seq", "lost_from", "on_loss",
                 "pending_msgs", "sub", "symbol", "wake")

    def __init__(self, channel: str, symbol: str, capacity: int,
                 convert: Callable[[Any], dict[str, Any]], wake: Callable[[], None],
                 counters: WsCounters, on_loss: Callable[[str], None] | None = None) -> None:
        self.channel = channel
        self.symbol = symbol
        self.convert = convert
        self.wake = wake
        self.counters = counters
        self.pending_msgs: deque[Any] = deque(maxlen=capacity)
        self.last_seq = -1  # unknown until the first message
        self.lost_from = 0  # the oldest seq the deque dropped since the last take (0 = none)
        self.on_loss = on_loss
        self.sub: Subscription | None = None

    def pending(self) -> int:
        return len(self.pending_msgs)

    def skip_to(self, seq: int) -> None:
        """The client got a snapshot up to ``seq``: drop what it already has, continue after."""
        pending = self.pending_msgs
        while pending and pending[0].seq <= seq:
            pending.popleft()
        self.lost_from = 0
        self.last_seq = max(self.last_seq, seq)

    def on_batch(self, _topic: str, msgs: Sequence[Any]) -> None:
        pending = self.pending_msgs
        overflow = len(pending) + len(msgs) - (pending.maxlen or 0)
        if overflow > 0 and self.on_loss is not None:
            self.on_loss(f"{self.channel} {self.symbol}: more than {pending.maxlen} pending")
            return
        if overflow > 0 and not self.lost_from:
            self.lost_from = pending[0].seq if pending else msgs[0].seq
        pending.extend(msgs)
        self.wake()

    def take(self, out: list[Any]) -> None:
        pending = self.pending_msgs
        if not pending:
            return
        last = self.last_seq
        if self.lost_from:
            last = self.lost_from - 1 if last < 0 else min(last, self.lost_from - 1)
            self.lost_from = 0
        convert = self.convert
        for m in pending:
            if last >= 0 and m.seq != last + 1:
                out.append({"type": "gap", "channel": self.channel, "symbol": self.symbol,
                            "from_seq": last + 1, "to_seq": m.seq - 1})
                self.counters.gaps += 1
            last = m.seq
            out.append(convert(m))
        self.last_seq = last
        pending.clear()


class BboFeed:
    """BBO for one session and symbol: only the latest matters."""

    __slots__ = ("fmt", "latest", "sub", "symbol", "wake")

    def __init__(self, publisher: MarketDataPublisher, symbol: str, fmt: Format,
                 wake: Callable[[], None]) -> None:
        self.symbol = symbol
        self.fmt = fmt
        self.wake = wake
        self.latest: Bbo | None = publisher.bbo(symbol)
        self.sub: Subscription | None = None

    def pending(self) -> int:
        return self.latest is not None

    def on_batch(self, _topic: str, msgs: Sequence[Bbo]) -> None:
        self.latest = msgs[-1]
        self.wake()

    def take(self, out: list[Any]) -> None:
        if self.latest is not None:
            out.append(bbo_json(self.fmt, self.latest))
            self.latest = None


Feed = DepthFeed | SequencedFeed | BboFeed
