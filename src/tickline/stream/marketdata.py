"""Market data: turn the matching engine's events into sequenced public and private streams.

The exchange loop calls :meth:`MarketDataPublisher.publish` after each command (or
:meth:`MarketDataPublisher.publish_batch` after a batch of them) with the command's ``seq``,
``ts`` and events. The publisher keeps a mirror of every book (levels and resting orders,
rebuilt from the events alone) and publishes, per symbol:

=====================  ==================================================================
topic                  messages
=====================  ==================================================================
``trades.SYM``         :class:`TradeTick` per execution
``bbo.SYM``            :class:`Bbo` when the best bid/offer (price or size) changes
``depth.SYM``          :class:`DepthDelta` per level change (side, price, new total, count)
``l3.SYM``             :class:`OrderAdded`, :class:`OrderModified`, :class:`OrderExecuted`,
                       :class:`OrderDeleted`: the resting orders, one by one
``bars.SYM.<w>``       :class:`Bar`: OHLCV, notional and VWAP per window ``w`` (``1s``...)
``status.SYM``         :class:`StatusUpdate` on halt/resume
=====================  ==================================================================

**Sequence numbers.** Every message carries ``seq``, counted per topic from 1 without gaps.
Messages nobody is subscribed to are not built (the topic's sequence then stays put), which
is consistent because snapshots are taken from the same mirror: a late joiner calls
:meth:`MarketDataPublisher.subscribe_depth`, gets a :class:`DepthSnapshot` tagged with the
topic sequence it reflects, and the deltas on its subscription continue at ``seq + 1``. A
subscriber that sees a gap (its queue dropped or conflated) resyncs from
:meth:`MarketDataPublisher.depth_snapshot`; :class:`DepthBook` does the bookkeeping.

**Engine time.** Bars are aligned windows ``[k*w, (k+1)*w)`` of engine time; a window's bar
is published when a later command's ``ts`` reaches its end (a ``TimeTick`` command or an
empty ``publish(seq, ts, [])`` closes it too). Windows without trades publish nothing.

**Privacy.** Public messages carry no accounts. Execution reports are not market data:
:mod:`tickline.stream.reports` builds them and :mod:`tickline.stream.routing` delivers them
to their accounts' sessions only.

**Ordering.** Within a topic, messages are in engine order. A publish call delivers each
topic's messages as one chunk, so a subscriber to several topics sees them grouped by topic
per call; use ``ts`` and the per-topic ``seq`` to interleave if needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

import msgspec

from tickline.matching.book import OrderBook
from tickline.matching.events import (
    Accepted,
    Cancelled,
    Event,
    Expired,
    LevelChanged,
    Replaced,
    StatusChanged,
    Trade,
)
from tickline.matching.instruments import Instrument
from tickline.matching.types import BUY
from tickline.stream.bus import Bus, Callback, Subscription
from tickline.stream.reports import ExecKind, ExecReport  # re-exported (moved there)

__all__ = [
    "Bar",
    "Bbo",
    "DepthBook",
    "DepthDelta",
    "DepthSnapshot",
    "ExecKind",
    "ExecReport",
    "L3Reason",
    "L3Snapshot",
    "MarketDataMessage",
    "MarketDataPublisher",
    "OrderAdded",
    "OrderDeleted",
    "OrderExecuted",
    "OrderModified",
    "PublisherStatistics",
    "SequenceTracker",
    "StatusUpdate",
    "TradeTick",
    "window_label",
]

Level3 = tuple[int, int, int]
"""``(price, total quantity, order count)``: one depth level, as ``OrderBook.depth`` gives."""


# --- messages ---------------------------------------------------------------------------------


class TradeTick(msgspec.Struct, tag="trade", gc=False):
    """A public execution (no accounts): ``aggressor_side`` is the taker's side."""

    seq: int
    ts: int
    symbol: str
    trade_id: int
    price: int
    quantity: int
    aggressor_side: int


class Bbo(msgspec.Struct, tag="bbo", gc=False):
    """Best bid and offer after a command that changed either (0/0 = that side is empty)."""

    seq: int
    ts: int
    symbol: str
    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int

    def conflation_key(self) -> None:
        """One slot per topic: only the latest BBO matters."""
        return None


class DepthDelta(msgspec.Struct, tag="depth", gc=False):
    """A price level's new state: total open quantity and order count (both 0 = gone).
    Absolute, not incremental, so conflating by level keeps a book correct."""

    seq: int
    ts: int
    symbol: str
    side: int
    price: int
    quantity: int
    order_count: int

    def conflation_key(self) -> tuple[int, int]:
        """Conflate per price level."""
        return (self.side, self.price)


class DepthSnapshot(msgspec.Struct, tag="depth_snapshot"):
    """Every level of a book, best first, consistent with ``depth.SYM`` message ``seq``
    (the next delta is ``seq + 1``). ``ts`` is the engine time of the last command seen."""

    seq: int
    ts: int
    symbol: str
    bids: list[Level3]
    asks: list[Level3]


class L3Reason(IntEnum):
    """Why a resting order left the book in the L3 feed (fills use :class:`OrderExecuted`)."""

    CANCELLED = 1
    EXPIRED = 2
    REPLACED = 3  # moved: it reappears (new price / back of queue) with OrderAdded


class OrderAdded(msgspec.Struct, tag="l3_add", gc=False):
    """An order now rests at the back of its level with ``quantity`` open."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    quantity: int

    def conflation_key(self) -> int:
        return self.order_id


class OrderModified(msgspec.Struct, tag="l3_modify", gc=False):
    """A resting order's open quantity went down in place (it kept its priority)."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    quantity: int

    def conflation_key(self) -> int:
        return self.order_id


class OrderExecuted(msgspec.Struct, tag="l3_exec", gc=False):
    """A resting order traded ``quantity``; ``leaves`` remain (0 = it left the book)."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    quantity: int
    leaves: int
    trade_id: int

    def conflation_key(self) -> int:
        return self.order_id


class OrderDeleted(msgspec.Struct, tag="l3_delete", gc=False):
    """A resting order left the book without trading (``reason``: :class:`L3Reason`)."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    reason: int

    def conflation_key(self) -> int:
        return self.order_id


class L3Snapshot(msgspec.Struct, tag="l3_snapshot"):
    """Every resting order as ``(order_id, side, price, open quantity)``: bids best first,
    then asks best first, in time priority within a level; consistent with ``l3.SYM``
    message ``seq``."""

    seq: int
    ts: int
    symbol: str
    orders: list[tuple[int, int, int, int]]


class Bar(msgspec.Struct, tag="bar", gc=False):
    """OHLCV over the engine-time window ``[start, end)``; ``notional`` is the exact
    ``sum(price * quantity)`` and ``vwap`` is ``notional / volume`` (price units)."""

    seq: int
    symbol: str
    window: str
    start: int
    end: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    notional: int
    trades: int
    vwap: float


class StatusUpdate(msgspec.Struct, tag="status", gc=False):
    seq: int
    ts: int
    symbol: str
    halted: bool


MarketDataMessage = (TradeTick | Bbo | DepthDelta | DepthSnapshot | OrderAdded | OrderModified
                     | OrderExecuted | OrderDeleted | L3Snapshot | Bar | StatusUpdate)
"""Every message the publisher emits (a tagged union: ``msgspec.json.decode(data,
type=MarketDataMessage)`` round-trips)."""

_L3_CANCELLED = int(L3Reason.CANCELLED)
_L3_EXPIRED = int(L3Reason.EXPIRED)
_L3_REPLACED = int(L3Reason.REPLACED)


def window_label(width_ns: int) -> str:
    """A topic token for a window width: ``1s``, ``250ms``, ``5m``, ``1h``, ``10us``..."""
    if width_ns <= 0:
        raise ValueError(f"bar window must be a positive number of ns, got {width_ns}")
    for unit, size in (("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000),
                       ("ms", 1_000_000), ("us", 1_000)):
        if width_ns % size == 0:
            return f"{width_ns // size}{unit}"
    return f"{width_ns}ns"


@dataclass(frozen=True, slots=True)
class PublisherStatistics:
    """Counters of a :class:`MarketDataPublisher`: commands and events seen, messages
    published (messages nobody subscribed to are not built and not counted), the last
    command's ``seq``/``ts``, symbols known, bars currently open."""

    commands: int
    events: int
    messages: int
    last_seq: int
    last_ts: int
    symbols: int
    open_bars: int


# --- internal state ----------------------------------------------------------------------------


_EMPTY = -(1 << 63)  # the best key of an empty side, as in tickline.matching.book


class _Order(msgspec.Struct, gc=False):
    """The publisher's view of a live order (resting, or in flight within one command).
    A ``gc=False`` struct: built in C (one per accepted order), never scanned by the GC."""

    order_id: int
    account: int
    client_order_id: str
    side: int
    price: int
    quantity: int
    leaves: int
    resting: bool


class _Bar:
    """One symbol's open bar for one window width."""

    __slots__ = ("close", "count", "end", "high", "label", "low", "notional", "open", "seq",
                 "start", "topic", "volume", "width")

    def __init__(self, symbol: str, width: int) -> None:
        self.width = width
        self.label = window_label(width)
        self.topic = f"bars.{symbol}.{self.label}"
        self.seq = 0
        self.count = 0
        self.start = self.end = 0
        self.open = self.high = self.low = self.close = 0
        self.volume = self.notional = 0


class _Symbol:
    """Per-symbol mirror, sequence counters and this publish call's pending messages."""

    __slots__ = (
        "ask_best",
        "asks",
        "bars",
        "bbo",
        "bbo_last",
        "bbo_mark",
        "bbo_seq",
        "bid_best",
        "bids",
        "depth",
        "depth_seq",
        "epoch",
        "l3",
        "l3_seq",
        "orders",
        "status",
        "status_seq",
        "step",
        "symbol",
        "t_bbo",
        "t_depth",
        "t_l3",
        "t_status",
        "t_trades",
        "trades",
        "trades_seq",
        "want_bbo",
    )

    def __init__(self, symbol: str, bar_windows: Sequence[int], step: int = 1) -> None:
        self.symbol = symbol
        self.step = step  # the tick size: how far apart two price levels can be
        self.t_trades = f"trades.{symbol}"
        self.t_bbo = f"bbo.{symbol}"
        self.t_depth = f"depth.{symbol}"
        self.t_l3 = f"l3.{symbol}"
        self.t_status = f"status.{symbol}"
        self.trades_seq = self.bbo_seq = self.depth_seq = self.l3_seq = self.status_seq = 0
        self.epoch = -1
        self.bbo_mark = -1
        self.want_bbo = False
        self.trades: list[Any] | None = None
        self.bbo: list[Any] | None = None
        self.depth: list[Any] | None = None
        self.l3: list[Any] | None = None
        self.status: list[Any] | None = None
        # Mirror: levels as price -> (total, count), and the best key of each side (bids
        # by price, asks by -price; _EMPTY when empty), as in the engine's BookSide: no
        # sorted list to maintain per level change; sorted views are built on demand.
        self.bids: dict[int, tuple[int, int]] = {}
        self.asks: dict[int, tuple[int, int]] = {}
        self.bid_best = _EMPTY
        self.ask_best = _EMPTY
        self.bbo_last: tuple[int, int, int, int] = (0, 0, 0, 0)
        # Live orders of this symbol; resting ones in arrival order at their level.
        self.orders: dict[int, _Order] = {}
        self.bars = [_Bar(symbol, width) for width in bar_windows]

    def best(self) -> tuple[int, int, int, int]:
        bb = self.bid_best
        ab = self.ask_best
        bp = 0 if bb == _EMPTY else bb
        ap = 0 if ab == _EMPTY else -ab
        return (bp, self.bids[bp][0] if bp else 0, ap, self.asks[ap][0] if ap else 0)

    def sorted_bid_prices(self) -> list[int]:
        """Bid prices, best (highest) first. O(L log L)."""
        return sorted(self.bids, reverse=True)

    def sorted_ask_prices(self) -> list[int]:
        """Ask prices, best (lowest) first. O(L log L)."""
        return sorted(self.asks)


def _next_best(levels: Mapping[int, tuple[int, int]], key: int, sign: int, step: int) -> int:
    """The best key below ``key`` (just dropped) on a side: a short probe tick by tick,
    then a scan of every level (C speed)."""
    if not levels:
        return _EMPTY
    probe = key
    for _ in range(32):
        probe -= step
        if probe * sign in levels:
            return probe
    return max(levels) if sign == 1 else -min(levels)


class MarketDataPublisher:
    """Publishes trades, BBO, depth deltas, L3 order events, bars/VWAP, status and private
    execution reports on ``bus`` from the engine's events (see the module doc).

    ``instruments``: the symbols to publish (instruments or plain symbol strings).
    ``books``: the engine's books (``engine.books``) if they already hold orders that were
    not published through this publisher (e.g. after recovery); the mirror starts from them.
    ``bar_windows``: bar widths in engine ns (default one second).

    Single writer: call ``publish``/``publish_batch`` from the exchange loop only.
    """

    def __init__(
        self,
        bus: Bus,
        instruments: Iterable[Instrument | str],
        *,
        books: Mapping[str, OrderBook] | None = None,
        bar_windows: Sequence[int] = (1_000_000_000,),
    ) -> None:
        self.bus = bus
        for width in bar_windows:
            window_label(width)  # validates
        if len(set(bar_windows)) != len(bar_windows):
            raise ValueError(f"bar_windows has duplicates: {list(bar_windows)}")
        self.bar_windows = tuple(bar_windows)
        self._symbols: dict[str, _Symbol] = {}
        for inst in instruments:
            symbol = inst if isinstance(inst, str) else inst.symbol
            step = 1 if isinstance(inst, str) else inst.tick_size
            self._symbols[symbol] = _Symbol(symbol, self.bar_windows, step)
        self._epoch = 0
        self._open_bars: list[tuple[_Symbol, _Bar]] = []
        self._bars_out: dict[str, list[Bar]] = {}
        self._next_close = 1 << 62
        self.last_seq = 0
        self.last_ts = 0
        self.commands = 0
        self.events = 0
        self.messages = 0
        if books is not None:
            for symbol, book in books.items():
                if symbol in self._symbols:
                    self._seed(self._symbols[symbol], book)

    # -- setup --------------------------------------------------------------------------------

    @staticmethod
    def _seed(st: _Symbol, book: OrderBook) -> None:
        for side_book, levels in ((book.bids, st.bids), (book.asks, st.asks)):
            for level in side_book.iter_levels_best_first():
                levels[level.price] = (level.total, len(level.orders))
        st.bid_best = max(st.bids) if st.bids else _EMPTY
        st.ask_best = -min(st.asks) if st.asks else _EMPTY
        for order in book.orders():
            st.orders[order.order_id] = _Order(order.order_id, order.account,
                                               order.client_order_id, order.side, order.price,
                                               order.quantity, order.leaves, True)
        st.bbo_last = st.best()

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, seq: int, ts: int, events: list[Event]) -> None:
        """Publish the market data of one command (``seq``/``ts`` as stamped on it).
        Synchronous; never awaits."""
        self.publish_batch(((seq, ts, events),))

    def publish_batch(self, batch: Iterable[tuple[int, int, list[Event]]]) -> None:
        """Publish the market data of many commands, in order: one ``publish_many`` per
        topic touched, so fan-out costs per batch rather than per message. Synchronous.
        Cost: O(events) plus O(topics touched x subscribers)."""
        self._epoch += 1
        epoch = self._epoch
        bus = self.bus
        has_subs = bus.has_subscribers
        symbols = self._symbols
        touched: list[_Symbol] = []
        bbo_dirty: list[_Symbol] = []
        pending: list[tuple[_Symbol, _Order]] = []
        n_events = 0
        n_commands = 0
        base = self.commands  # global command number, marks "BBO already queued for check"
        seq = ts = 0

        def enter(st: _Symbol) -> None:
            st.epoch = epoch
            st.trades = [] if has_subs(st.t_trades) else None
            st.depth = [] if has_subs(st.t_depth) else None
            st.l3 = [] if has_subs(st.t_l3) else None
            want_bbo = has_subs(st.t_bbo)
            if want_bbo and not st.want_bbo:
                # BBO is only tracked while someone listens: re-baseline from the mirror,
                # which is still at the state before this batch's first event here.
                st.bbo_last = st.best()
            st.want_bbo = want_bbo
            st.bbo = [] if want_bbo else None
            st.status = None
            touched.append(st)

        for seq, ts, events in batch:  # noqa: B007 -- the last seq is kept below
            n_commands += 1
            cmd_no = base + n_commands
            if ts >= self._next_close:
                self._close_bars(ts)
            n_events += len(events)
            for ev in cast(list[Any], events):
                kind = type(ev)
                if kind is LevelChanged:
                    st = symbols.get(ev.symbol)
                    if st is None:
                        continue
                    if st.epoch != epoch:
                        enter(st)
                    price = ev.price
                    if ev.side == BUY:
                        levels = st.bids
                        if ev.order_count:
                            levels[price] = (ev.quantity, ev.order_count)
                            if price > st.bid_best:
                                st.bid_best = price
                        elif price in levels:
                            del levels[price]
                            if price == st.bid_best:
                                st.bid_best = _next_best(levels, price, 1, st.step)
                    else:
                        levels = st.asks
                        if ev.order_count:
                            levels[price] = (ev.quantity, ev.order_count)
                            if -price > st.ask_best:
                                st.ask_best = -price
                        elif price in levels:
                            del levels[price]
                            if -price == st.ask_best:
                                st.ask_best = _next_best(levels, -price, -1, st.step)
                    depth = st.depth
                    if depth is not None:
                        st.depth_seq += 1
                        depth.append(DepthDelta(st.depth_seq, ts, st.symbol, ev.side, price,
                                                ev.quantity, ev.order_count))
                    if st.bbo_mark != cmd_no and st.bbo is not None:
                        st.bbo_mark = cmd_no
                        bbo_dirty.append(st)
                elif kind is Replaced:
                    st = symbols.get(ev.symbol)
                    if st is None:
                        continue
                    if st.epoch != epoch:
                        enter(st)
                    order = st.orders.get(ev.order_id)
                    if order is not None:
                        l3 = st.l3
                        order.client_order_id = ev.client_order_id
                        order.quantity = ev.quantity
                        if ev.kept_priority:
                            if order.leaves != ev.leaves:
                                order.leaves = ev.leaves
                                if l3 is not None and order.resting:
                                    st.l3_seq += 1
                                    l3.append(OrderModified(st.l3_seq, ts, st.symbol,
                                                            order.order_id, order.side,
                                                            order.price, ev.leaves))
                        else:
                            if order.resting:
                                order.resting = False
                                if l3 is not None:
                                    st.l3_seq += 1
                                    l3.append(OrderDeleted(st.l3_seq, ts, st.symbol,
                                                           order.order_id, order.side,
                                                           order.price, _L3_REPLACED))
                            order.price = ev.price
                            order.leaves = ev.leaves
                            pending.append((st, order))
                elif kind is Trade:
                    st = symbols.get(ev.symbol)
                    if st is None:
                        continue
                    if st.epoch != epoch:
                        enter(st)
                    price = ev.price
                    qty = ev.quantity
                    trades = st.trades
                    if trades is not None:
                        st.trades_seq += 1
                        trades.append(TradeTick(st.trades_seq, ts, st.symbol, ev.trade_id,
                                                price, qty, ev.aggressor_side))
                    for bar in st.bars:
                        if bar.count == 0:
                            bar.start = ts - ts % bar.width
                            bar.end = bar.start + bar.width
                            bar.open = bar.high = bar.low = price
                            self._open_bars.append((st, bar))
                            if bar.end < self._next_close:
                                self._next_close = bar.end
                        elif price > bar.high:
                            bar.high = price
                        elif price < bar.low:
                            bar.low = price
                        bar.close = price
                        bar.count += 1
                        bar.volume += qty
                        bar.notional += price * qty
                    orders = st.orders
                    maker_leaves = ev.maker_leaves
                    maker = orders.get(ev.maker_order_id)
                    if maker is not None:
                        maker.leaves = maker_leaves
                        if maker_leaves == 0:
                            del orders[ev.maker_order_id]
                        l3 = st.l3
                        if l3 is not None:
                            st.l3_seq += 1
                            l3.append(OrderExecuted(st.l3_seq, ts, st.symbol,
                                                    ev.maker_order_id, maker.side, price, qty,
                                                    maker_leaves, ev.trade_id))
                    taker = orders.get(ev.taker_order_id)
                    if taker is not None:
                        taker.leaves = ev.taker_leaves
                        if ev.taker_leaves == 0:
                            del orders[ev.taker_order_id]
                elif kind is Accepted:
                    st = symbols.get(ev.symbol)
                    if st is not None:
                        if st.epoch != epoch:
                            enter(st)
                        order = _Order(ev.order_id, ev.account, ev.client_order_id, ev.side,
                                       ev.price, ev.quantity, ev.quantity, False)
                        st.orders[ev.order_id] = order
                        pending.append((st, order))
                elif kind is Cancelled or kind is Expired:
                    expired = kind is Expired
                    st = symbols.get(ev.symbol)
                    order = None
                    if st is not None:
                        if st.epoch != epoch:
                            enter(st)
                        order = st.orders.pop(ev.order_id, None)
                        l3 = st.l3
                        if order is not None and order.resting and l3 is not None:
                            st.l3_seq += 1
                            l3.append(OrderDeleted(st.l3_seq, ts, st.symbol, ev.order_id,
                                                   ev.side, ev.price,
                                                   _L3_EXPIRED if expired else _L3_CANCELLED))
                elif kind is StatusChanged:
                    st = symbols.get(ev.symbol)
                    if st is None:
                        continue
                    if st.epoch != epoch:
                        enter(st)
                    if has_subs(st.t_status):
                        if st.status is None:
                            st.status = []
                        st.status_seq += 1
                        st.status.append(StatusUpdate(st.status_seq, ts, st.symbol, ev.halted))
            # End of command: orders still open that arrived or moved in it now rest.
            if pending:
                for st, order in pending:
                    orders = st.orders
                    if order.leaves > 0 and orders.get(order.order_id) is order:
                        order.resting = True
                        del orders[order.order_id]  # re-insert: arrival order at its level
                        orders[order.order_id] = order
                        l3 = st.l3
                        if l3 is not None:
                            st.l3_seq += 1
                            l3.append(OrderAdded(st.l3_seq, ts, st.symbol, order.order_id,
                                                 order.side, order.price, order.leaves))
                pending.clear()
            if bbo_dirty:
                for st in bbo_dirty:
                    best = st.best()
                    if best != st.bbo_last:
                        st.bbo_last = best
                        bbo = st.bbo
                        if bbo is not None:
                            st.bbo_seq += 1
                            bbo.append(Bbo(st.bbo_seq, ts, st.symbol, *best))
                bbo_dirty.clear()

        if n_commands:
            self.last_seq = seq
            self.last_ts = ts
        self.commands += n_commands
        self.events += n_events
        self._flush(touched)

    def _flush(self, touched: list[_Symbol]) -> None:
        publish_many = self.bus.publish_many
        messages = 0
        for st in touched:
            for topic, msgs in ((st.t_trades, st.trades), (st.t_depth, st.depth),
                                (st.t_bbo, st.bbo), (st.t_l3, st.l3),
                                (st.t_status, st.status)):
                if msgs:
                    messages += len(msgs)
                    publish_many(topic, msgs)
            st.trades = st.depth = st.bbo = st.l3 = st.status = None
        if self._bars_out:
            bars_out = self._bars_out
            self._bars_out = {}
            for topic, bars in bars_out.items():
                messages += len(bars)
                publish_many(topic, bars)
        self.messages += messages

    def _close_bars(self, ts: int) -> None:
        """Close every open bar whose window ended at or before ``ts``; the bars go out
        with the rest of the publish call (after its other topics)."""
        still_open: list[tuple[_Symbol, _Bar]] = []
        next_close = 1 << 62
        has_subs = self.bus.has_subscribers
        for st, bar in self._open_bars:
            if bar.end > ts:
                still_open.append((st, bar))
                if bar.end < next_close:
                    next_close = bar.end
                continue
            if has_subs(bar.topic):
                bar.seq += 1
                self._bars_out.setdefault(bar.topic, []).append(Bar(
                    bar.seq, st.symbol, bar.label, bar.start, bar.end, bar.open, bar.high,
                    bar.low, bar.close, bar.volume, bar.notional, bar.count,
                    bar.notional / bar.volume,
                ))
            bar.count = bar.volume = bar.notional = 0
        self._open_bars = still_open
        self._next_close = next_close

    # -- snapshots and subscriptions -----------------------------------------------------------

    def _symbol(self, symbol: str) -> _Symbol:
        try:
            return self._symbols[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    def depth_snapshot(self, symbol: str) -> DepthSnapshot:
        """Every level of ``symbol``'s book, consistent with ``depth.SYM`` message ``seq``.
        O(levels)."""
        st = self._symbol(symbol)
        bids = st.bids
        asks = st.asks
        return DepthSnapshot(
            st.depth_seq, self.last_ts, symbol,
            [(p, *bids[p]) for p in st.sorted_bid_prices()],
            [(p, *asks[p]) for p in st.sorted_ask_prices()],
        )

    def l3_snapshot(self, symbol: str) -> L3Snapshot:
        """Every resting order of ``symbol`` in priority order, consistent with ``l3.SYM``
        message ``seq``. O(orders log orders)."""
        st = self._symbol(symbol)
        resting = [o for o in st.orders.values() if o.resting]
        # Stable sort: within a level, dict order is arrival order at that level.
        resting.sort(key=lambda o: (o.side, -o.price if o.side == BUY else o.price))
        return L3Snapshot(st.l3_seq, self.last_ts, symbol,
                          [(o.order_id, o.side, o.price, o.leaves) for o in resting])

    def bbo(self, symbol: str) -> Bbo:
        """The current best bid/offer, tagged with the last ``bbo.SYM`` sequence number."""
        st = self._symbol(symbol)
        return Bbo(st.bbo_seq, self.last_ts, symbol, *st.best())

    def subscribe_depth(
        self, symbol: str, callback: Callback | None = None, **options: Any
    ) -> tuple[DepthSnapshot, Subscription]:
        """Join ``depth.SYM`` late: subscribe, then snapshot. The subscription's first delta
        is ``snapshot.seq + 1``. ``options`` go to :meth:`Bus.subscribe`."""
        self._symbol(symbol)
        sub = self.bus.subscribe(f"depth.{symbol}", callback, **options)
        return self.depth_snapshot(symbol), sub

    def subscribe_l3(
        self, symbol: str, callback: Callback | None = None, **options: Any
    ) -> tuple[L3Snapshot, Subscription]:
        """Join ``l3.SYM`` late: subscribe, then an L3 snapshot (next message ``seq + 1``)."""
        self._symbol(symbol)
        sub = self.bus.subscribe(f"l3.{symbol}", callback, **options)
        return self.l3_snapshot(symbol), sub

    def check(self, books: Mapping[str, OrderBook]) -> None:
        """Assert that the mirror equals the engine's ``books`` (levels, counts, resting
        orders and their priority). For tests; O(orders)."""
        for symbol, st in self._symbols.items():
            book = books[symbol]
            snap = self.depth_snapshot(symbol)
            depth = book.depth(1 << 30)
            assert snap.bids == depth["bids"], f"{symbol} bids differ"
            assert snap.asks == depth["asks"], f"{symbol} asks differ"
            mine = self.l3_snapshot(symbol).orders
            theirs = [(o.order_id, o.side, o.price, o.leaves) for o in book.orders()]
            assert mine == theirs, f"{symbol} resting orders differ"
            live = {oid for oid, o in st.orders.items() if not o.resting}
            assert not live, f"{symbol} orders in flight after a command: {sorted(live)}"
            if st.want_bbo:
                assert st.bbo_last == st.best(), f"{symbol} BBO is stale"

    def statistics(self) -> PublisherStatistics:
        """A frozen snapshot of the publisher's counters. O(1)."""
        return PublisherStatistics(
            commands=self.commands, events=self.events, messages=self.messages,
            last_seq=self.last_seq, last_ts=self.last_ts, symbols=len(self._symbols),
            open_bars=len(self._open_bars),
        )


# --- client-side helpers ------------------------------------------------------------------------


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
        return self.seq is None

    def apply_snapshot(self, snap: DepthSnapshot) -> None:
        if snap.symbol != self.symbol:
            raise ValueError(f"snapshot of {snap.symbol!r} applied to {self.symbol!r}")
        self.bids = {p: (q, c) for p, q, c in snap.bids}
        self.asks = {p: (q, c) for p, q, c in snap.asks}
        if self.seq is not None or self.gaps:
            self.resyncs += 1
        self.seq = snap.seq

    def apply(self, delta: DepthDelta) -> bool:
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
        """All levels best first, in the shape of ``OrderBook.depth``."""
        return {
            "bids": [(p, *self.bids[p]) for p in sorted(self.bids, reverse=True)],
            "asks": [(p, *self.asks[p]) for p in sorted(self.asks)],
        }

