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

Work that is the same for every session is done once (:class:`Shared`): every subscriber
of a topic receives the very same published batch and message objects, so a batch of
depth deltas is folded into its levels once and a trade or bar is formatted as JSON once,
however many sessions take it. With 100 sessions on one symbol this is what keeps the
fan-out's cost per message and session down to appending a shared dict.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tickline.gateway.jsonfmt import Format, bbo_json
from tickline.gateway.stats import WsCounters
from tickline.matching import BUY
from tickline.stream import Bbo, DepthDelta, MarketDataPublisher, Subscription

__all__ = ["BboFeed", "DepthFeed", "Feed", "SequencedFeed", "Shared"]

Fold = tuple[int, int, int, dict[tuple[int, int], tuple[int, int]]]
"""A contiguous batch of depth deltas: ``(first_seq, last_seq, last_ts, levels)``."""


class Shared:
    """Per-gateway memo of work common to all sessions, keyed by object identity (each entry
    keeps its key object alive, so an id is never reused while cached). Bounded: cleared
    when ``limit`` entries are held -- everyone takes a batch within a few loop turns of its
    publication, so a miss after a clear only repeats work, never changes a result."""

    __slots__ = ("_depth", "_folds", "_json", "limit")

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._folds: dict[int, tuple[Sequence[DepthDelta], Fold | None]] = {}
        self._json: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._depth: dict[tuple[str, int, int], dict[str, Any]] = {}

    def depth(self, key: tuple[str, int, int],
              build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The ``depth`` message of ``(symbol, first_seq, seq)``, built once: it lists the
        latest state of every level changed in that range, the same for every session
        that has exactly that range pending."""
        out = self._depth.get(key)
        if out is None:
            out = build()
            if len(self._depth) >= self.limit:
                self._depth.clear()
            self._depth[key] = out
        return out

    def fold(self, msgs: Sequence[DepthDelta]) -> Fold | None:
        """The batch's levels, latest state of each, if its ``seq`` run is contiguous (else
        None). O(len(msgs)) once per batch, O(1) after."""
        hit = self._folds.get(id(msgs))
        if hit is not None and hit[0] is msgs:
            return hit[1]
        fold: Fold | None = None
        first = msgs[0].seq
        if msgs[-1].seq - first == len(msgs) - 1:
            levels = {(m.side, m.price): (m.quantity, m.order_count) for m in msgs}
            fold = (first, msgs[-1].seq, msgs[-1].ts, levels)
        if len(self._folds) >= self.limit:
            self._folds.clear()
        self._folds[id(msgs)] = (msgs, fold)
        return fold

    def json(self, m: Any, convert: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """``convert(m)``, once per message object (the dict is shared: never modified)."""
        hit = self._json.get(id(m))
        if hit is not None and hit[0] is m:
            return hit[1]
        out = convert(m)
        if len(self._json) >= self.limit:
            self._json.clear()
        self._json[id(m)] = (m, out)
        return out


class DepthFeed:
    """Depth for one session and symbol: pending level changes conflated by level."""

    __slots__ = ("counters", "fmt", "levels", "max_levels", "need_snapshot", "on_loss",
                 "publisher", "resync", "sent_seq", "seq", "shared", "sub", "symbol", "ts",
                 "wake")

    def __init__(self, publisher: MarketDataPublisher, symbol: str, fmt: Format,
                 max_levels: int, wake: Callable[[], None], counters: WsCounters,
                 on_loss: Callable[[str], None] | None = None,
                 shared: Shared | None = None) -> None:
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
        self.shared = shared if shared is not None else Shared(256)
        self.sub: Subscription | None = None

    def pending(self) -> int:
        return len(self.levels)

    def resync_now(self) -> None:
        """The client asked for a fresh snapshot (gap recovery): the next ``take`` sends one."""
        self.need_snapshot = True
        self.resync = True
        self.levels.clear()

    def on_batch(self, _topic: str, msgs: Sequence[DepthDelta]) -> None:
        """Fold ``msgs`` into the pending levels: at most ``max_levels`` distinct ones, in
        sequence; else drop them and resync with a snapshot (or, ``on_loss``, give up)."""
        if not self.need_snapshot and msgs:
            if msgs[0].seq == self.seq + 1:  # the common case: the next contiguous batch
                fold = self.shared.fold(msgs)
                if fold is not None:
                    _first, last, ts, changed = fold
                    levels = self.levels
                    if len(levels) + len(changed) > self.max_levels and (
                            len(levels) + sum(1 for k in changed if k not in levels)
                            > self.max_levels):
                        self._lost()
                    else:
                        levels.update(changed)
                        self.seq = last
                        self.ts = ts
                    self.wake()
                    return
            levels = self.levels
            seq = self.seq
            for m in msgs:
                if m.seq <= seq:
                    continue  # already in the snapshot the client gets
                if m.seq != seq + 1 or (len(levels) >= self.max_levels
                                        and (m.side, m.price) not in levels):
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
        levels = self.levels

        def build() -> dict[str, Any]:
            price, qty = fmt.price, fmt.qty
            bids = [(price(p), qty(q), c) for (s, p), (q, c) in levels.items() if s == BUY]
            asks = [(price(p), qty(q), c) for (s, p), (q, c) in levels.items() if s != BUY]
            return {"type": "depth", "symbol": self.symbol, "first_seq": self.sent_seq + 1,
                    "seq": self.seq, "ts": self.ts, "bids": bids, "asks": asks}

        out.append(self.shared.depth((self.symbol, self.sent_seq + 1, self.seq), build))
        self.sent_seq = self.seq
        self.levels = {}


class SequencedFeed:
    """Trades or bars for one session and symbol: a bounded deque (drop oldest); a hole in
    the sequence becomes a ``gap`` message."""

    __slots__ = ("channel", "convert", "counters", "last_seq", "lost_from", "on_loss",
                 "pending_msgs", "shared", "sub", "symbol", "wake")

    def __init__(self, channel: str, symbol: str, capacity: int,
                 convert: Callable[[Any], dict[str, Any]], wake: Callable[[], None],
                 counters: WsCounters, on_loss: Callable[[str], None] | None = None,
                 shared: Shared | None = None) -> None:
        self.channel = channel
        self.symbol = symbol
        self.convert = convert
        self.wake = wake
        self.counters = counters
        self.pending_msgs: deque[Any] = deque(maxlen=capacity)
        self.last_seq = -1  # unknown until the first message
        self.lost_from = 0  # the oldest seq the deque dropped since the last take (0 = none)
        self.on_loss = on_loss
        self.shared = shared if shared is not None else Shared(256)
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
        shared = self.shared.json
        for m in pending:
            if last >= 0 and m.seq != last + 1:
                out.append({"type": "gap", "channel": self.channel, "symbol": self.symbol,
                            "from_seq": last + 1, "to_seq": m.seq - 1})
                self.counters.gaps += 1
            last = m.seq
            out.append(shared(m, convert))
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
