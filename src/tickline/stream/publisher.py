"""The market-data publisher: engine events in, sequenced messages on the bus out.

Topics, sequencing and snapshot rules are in :mod:`tickline.stream.marketdata`; the
messages in :mod:`tickline.stream.messages`; bars in :mod:`tickline.stream.bars`.

**Shape of a publish call.** :meth:`MarketDataPublisher.publish_batch` walks the batch's
events once and hands each to the handler of its kind: ``LevelChanged`` and ``Replaced``
(most events: a move makes one ``Replaced`` and two ``LevelChanged``) by a direct call (a
native call in the compiled build), the others through a table keyed by event type
(``type(event)`` -> bound method)::

    Accepted                -> _on_accepted       the order is in flight in this command
    Rejected                -> _on_rejected       nothing changed: no market data
    Trade                   -> _on_trade          trade tick, bars, L3 execution of the maker
                                                  (and an iceberg maker's refill)
    Cancelled, Expired      -> _on_left_book      L3 delete (reason cancelled / expired)
    Replaced                -> _on_replaced       L3 modify in place, or delete + re-add
    LevelChanged            -> _on_level_changed  mirror level, best key, depth delta
    StatusChanged           -> _on_status_changed status update
    Triggered               -> _on_accepted       a stop entered the book (armed stops and
                                                  their Accepted are invisible)
    MassCancelled           -> _on_rejected       a summary: its Cancelled and LevelChanged
                                                  events carried the market data
    AccountStatusChanged    -> _on_account_status an AccountStatusUpdate on every symbol's
                                                  status topic (kill switch / enable)

The table must name every type in :data:`tickline.matching.events.EVENT_TYPES`: the
constructor raises :class:`TypeError` otherwise, so a new event kind cannot be forgotten.
An order in flight (arrived, triggered or moved in this command) becomes resting (L3 add)
at the level change that puts it in its level -- not at the end of the command, because a
stop it triggers may trade with it within the same command. After each command a BBO is
emitted where the best bid/offer changed.

**Icebergs.** Market data shows only what the book shows: an iceberg's visible slice. The
mirror keeps, per order, ``leaves`` (the visible slice once resting; the whole open quantity
while in flight) and ``hidden`` (the reserve), and splits an iceberg exactly as the engine's
``_rest`` does when it comes to rest. When a fill empties the slice and a reserve is left, the
L3 feed shows the slice leaving (``OrderExecuted`` with ``leaves`` 0) and a new slice added at
the back of its level (``OrderAdded``, same order id) *at once*, in event order, because the
engine may trade the refilled slice again later in the same command (a taker that sweeps the
level twice); deferring the add to the end of the command would put those executions before
it. ``Trade.maker_leaves`` (the whole open quantity) minus the reserve is the slice left.

Messages are collected per topic and published once per topic per call
(:meth:`Bus.publish_many`).

Single writer: only the exchange loop calls ``publish``/``publish_batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import FunctionType
from typing import Any, Final

import msgspec

from tickline.matching.book import EMPTY, OrderBook, next_best_key
from tickline.matching.events import (
    EVENT_TYPES,
    Accepted,
    AccountStatusChanged,
    Cancelled,
    Event,
    Expired,
    LevelChanged,
    MassCancelled,
    Rejected,
    Replaced,
    StatusChanged,
    Trade,
    Triggered,
)
from tickline.matching.instruments import Instrument
from tickline.matching.types import BUY
from tickline.stream.bars import BarClock, OpenBar, window_label
from tickline.stream.bus import Bus, Callback, Subscription
from tickline.stream.messages import (
    AccountStatusUpdate,
    Bbo,
    DepthDelta,
    DepthSnapshot,
    L3Reason,
    L3Snapshot,
    OrderAdded,
    OrderDeleted,
    OrderExecuted,
    OrderModified,
    StatusUpdate,
    TradeTick,
)

__all__ = ["MarketDataPublisher", "PublisherStatistics"]

# ``Final`` aliases: the compiled build reads them as C statics, not from the module dict.
_Accepted: Final = Accepted
_Expired: Final = Expired
_LevelChanged: Final = LevelChanged
_Replaced: Final = Replaced
_AccountStatusChanged: Final = AccountStatusChanged
_TradeTick: Final = TradeTick
_Bbo: Final = Bbo
_DepthDelta: Final = DepthDelta
_OrderAdded: Final = OrderAdded
_OrderDeleted: Final = OrderDeleted
_OrderExecuted: Final = OrderExecuted
_OrderModified: Final = OrderModified
_BUY: Final = BUY
_EMPTY: Final = EMPTY

_astuple: Final = msgspec.structs.astuple
"""One C call for all of an event's fields (a tuple of the event's own objects)."""


def _probe() -> None:
    """(A function: compiled by mypyc, it is a builtin, not a Python function.)"""


COMPILED: Final = not isinstance(_probe, FunctionType)
"""True when this module runs compiled (mypyc): the level-change and replace handlers then
read an event's fields by one :func:`msgspec.structs.astuple` (each ``ev.x`` is a generic attribute
lookup there, ~160 instructions), interpreted by specialized attribute reads (cheaper)."""

_L3_CANCELLED: Final = int(L3Reason.CANCELLED)
_L3_EXPIRED: Final = int(L3Reason.EXPIRED)
_L3_REPLACED: Final = int(L3Reason.REPLACED)


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


# --- the mirror --------------------------------------------------------------------------------


class _Order:
    """The publisher's view of a live order (resting, or in flight within one command).
    ``leaves`` is the visible slice of a resting order (the whole open quantity while in
    flight), ``hidden`` an iceberg's reserve while it rests, ``display`` its display
    quantity (0: all visible). A plain slots class: a native class in the compiled build
    (its fields read and written in C), as cheap as a Struct to read in pure Python.
    ``order_id`` and ``price`` are ``Any``: compiled, they hold the event's own int objects
    (dict keys and message fields as they came, never boxed anew per use)."""

    __slots__ = ("account", "client_order_id", "display", "hidden", "leaves", "order_id",
                 "price", "quantity", "resting", "side")

    def __init__(self, order_id: Any, account: int, client_order_id: str, side: int,
                 price: Any, quantity: int, leaves: int, resting: bool, display: int = 0,
                 hidden: int = 0) -> None:
        self.order_id = order_id
        self.account = account
        self.client_order_id = client_order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.leaves = leaves
        self.resting = resting
        self.display = display
        self.hidden = hidden


class _Symbol:
    """Per-symbol mirror, sequence counters and this publish call's pending messages
    (``None``: nobody subscribes to that topic, so its messages are not built)."""

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
        # by price, asks by -price; EMPTY when empty), as in the engine's BookSide: no
        # sorted list to maintain per level change; sorted views are built on demand.
        self.bids: dict[int, tuple[int, int]] = {}
        self.asks: dict[int, tuple[int, int]] = {}
        self.bid_best = EMPTY
        self.ask_best = EMPTY
        self.bbo_last: tuple[int, int, int, int] = (0, 0, 0, 0)
        # Live orders of this symbol; resting ones in arrival order at their level.
        self.orders: dict[int, _Order] = {}
        self.bars = [OpenBar(symbol, width) for width in bar_windows]

    def best(self) -> tuple[int, int, int, int]:
        """``(bid price, bid size, ask price, ask size)``, 0/0 for an empty side. O(1)."""
        bb = self.bid_best
        ab = self.ask_best
        bp = 0 if bb == EMPTY else bb
        ap = 0 if ab == EMPTY else -ab
        return (bp, self.bids[bp][0] if bp else 0, ap, self.asks[ap][0] if ap else 0)

    def sorted_bid_prices(self) -> list[int]:
        """Bid prices, best (highest) first. O(L log L)."""
        return sorted(self.bids, reverse=True)

    def sorted_ask_prices(self) -> list[int]:
        """Ask prices, best (lowest) first. O(L log L)."""
        return sorted(self.asks)


_Handler = Callable[[_Symbol, Any, Any], None]
"""``handler(symbol state, event, ts)``: one event's effect on the mirror and the streams."""


# --- the publisher -----------------------------------------------------------------------------


class MarketDataPublisher:
    """Publishes trades, BBO, depth deltas, L3 order events, bars/VWAP and status on ``bus``
    from the engine's events (see :mod:`tickline.stream.marketdata`).

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
        self._handlers: dict[type[Any], _Handler] = {
            Accepted: self._on_accepted,
            Rejected: self._on_rejected,
            Trade: self._on_trade,
            Cancelled: self._on_left_book,
            Expired: self._on_left_book,
            Replaced: self._on_replaced,
            LevelChanged: self._on_level_changed,
            StatusChanged: self._on_status_changed,
            Triggered: self._on_accepted,
            MassCancelled: self._on_rejected,
            AccountStatusChanged: self._on_rejected,  # (no symbol: _on_account_status)
        }
        missing = [t.__name__ for t in EVENT_TYPES if t not in self._handlers]
        if missing:
            raise TypeError(f"MarketDataPublisher has no handler for event types {missing}")
        self._bars = BarClock()
        # State of the publish call in progress (single writer: one call at a time).
        self._epoch = 0
        self._cmd_no = 0
        self._touched: list[_Symbol] = []
        self._bbo_dirty: list[_Symbol] = []
        self._pending: list[tuple[_Symbol, _Order]] = []
        self.last_seq = 0
        self.last_ts = 0
        self.commands = 0
        self.events = 0
        self.messages = 0
        if books is not None:
            for symbol, book in books.items():
                if symbol in self._symbols:
                    self._seed(self._symbols[symbol], book)

    def handled_event_types(self) -> frozenset[type[Event]]:
        """The event types the dispatch table has a handler for (every one of
        :data:`~tickline.matching.events.EVENT_TYPES`, or the constructor would have
        raised)."""
        return frozenset(self._handlers)

    # -- setup --------------------------------------------------------------------------------

    @staticmethod
    def _seed(st: _Symbol, book: OrderBook) -> None:
        for side_book, levels in ((book.bids, st.bids), (book.asks, st.asks)):
            for level in side_book.iter_levels_best_first():
                levels[level.price] = (level.total, len(level.orders))
        st.bid_best = max(st.bids) if st.bids else EMPTY
        st.ask_best = -min(st.asks) if st.asks else EMPTY
        for order in book.orders():
            st.orders[order.order_id] = _Order(order.order_id, order.account,
                                               order.client_order_id, order.side, order.price,
                                               order.quantity, order.leaves, True,
                                               order.display, order.hidden)
        st.bbo_last = st.best()

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, seq: int, ts: int, events: list[Event]) -> None:
        """Publish the market data of one command (``seq``/``ts`` as stamped on it).
        Synchronous; never awaits."""
        self.publish_batch(((seq, ts, events),))

    def publish_batch(self, batch: Iterable[tuple[int, Any, list[Any]]]) -> None:
        """Publish the market data of many commands, in order: one ``publish_many`` per
        topic touched, so fan-out costs per batch rather than per message. Synchronous.
        An event of a symbol the publisher does not know is skipped; anything that is not
        an engine event raises :class:`TypeError`. Cost: O(events) plus O(topics touched x
        subscribers).

        ``ts`` is ``Any`` here and in the handlers: compiled, the command's own int object
        goes into every message as it is (an ``int`` would be unboxed once and boxed anew
        for each message; the same for the event fields the handlers pass on). The events
        are ``Any`` too: compiled, no per-event type check against the union of event
        types; interpreted, no ``cast()`` call per command."""
        self._epoch += 1
        epoch = self._epoch
        has_subs = self.bus.has_subscribers
        symbols = self._symbols
        handlers = self._handlers
        enter = self._enter
        bars = self._bars
        pending = self._pending
        bbo_dirty = self._bbo_dirty
        self._touched = []
        pending.clear()  # (empty unless a previous call raised)
        bbo_dirty.clear()
        n_events = 0
        n_commands = 0
        base = self.commands  # global command number, marks "BBO already queued for check"
        seq = 0
        ts: Any = 0
        for seq, ts, events in batch:  # noqa: B007 -- the last seq is kept below
            n_commands += 1
            self._cmd_no = base + n_commands
            now: int = ts  # (unboxed once, for the comparison)
            if now >= bars.next_close:
                bars.close(now, has_subs)
            n_events += len(events)
            for ev in events:
                if COMPILED:
                    # The two kinds of most events (a move: Replaced and two LevelChanged)
                    # read whole by one astuple, their symbol from it (each ev.x is a
                    # generic attribute lookup compiled), and handled by a native call.
                    kind = type(ev)
                    if kind is _LevelChanged or kind is _Replaced:
                        f = _astuple(ev)
                        st = symbols.get(f[0] if kind is _LevelChanged else f[3])
                        if st is None:
                            continue
                        if st.epoch != epoch:
                            enter(st, epoch)
                        if kind is _LevelChanged:
                            self._on_level_changed(st, ev, ts, f)
                        else:
                            self._on_replaced(st, ev, ts, f)
                        continue
                try:
                    st = symbols.get(ev.symbol)
                except AttributeError:  # an account-level event
                    if type(ev) is _AccountStatusChanged:
                        self._on_account_status(ev, ts)
                    continue
                if st is None:
                    continue
                if st.epoch != epoch:
                    enter(st, epoch)
                # The two kinds of most events (a move: Replaced and two LevelChanged) by a
                # direct call (a native call when compiled), the others through the table.
                kind = type(ev)
                if kind is _LevelChanged:
                    self._on_level_changed(st, ev, ts)
                elif kind is _Replaced:
                    self._on_replaced(st, ev, ts)
                else:
                    try:
                        handler = handlers[kind]
                    except KeyError:
                        raise TypeError(f"not an engine event: {kind.__name__}") from None
                    handler(st, ev, ts)
            # End of command. Inlined, not methods: these run for most commands, and two
            # calls per command cost ~5% of publish_batch's instructions (callgrind).
            if pending:
                # Orders in flight that did not rest (their level change came) are gone.
                pending.clear()
            if bbo_dirty:
                # A BBO message for each symbol marked by a level change whose best moved.
                for st in bbo_dirty:
                    best = st.best()
                    if best != st.bbo_last:
                        st.bbo_last = best
                        bbo = st.bbo
                        if bbo is not None:
                            st.bbo_seq += 1
                            bbo.append(_Bbo(st.bbo_seq, ts, st.symbol, *best))
                bbo_dirty.clear()
        if n_commands:
            self.last_seq = seq
            self.last_ts = ts
        self.commands += n_commands
        self.events += n_events
        self._flush()

    def _enter(self, st: _Symbol, epoch: int) -> None:
        """First event of ``st`` in this call: open its pending lists for the topics that
        have subscribers."""
        has_subs = self.bus.has_subscribers
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
        self._touched.append(st)

    # -- one handler per event kind ----------------------------------------------------------

    def _on_accepted(self, st: _Symbol, ev: Accepted | Triggered, ts: Any) -> None:
        """A new order (or a stop that triggered): live, not yet resting (it may trade away
        within its command). An armed stop is invisible until it triggers: nothing."""
        display = 0
        if type(ev) is _Accepted:
            if COMPILED:  # one C call, not seven generic lookups; the ids stay objects
                f = _astuple(ev)
                if f[9]:  # stop_price
                    return
                quantity: int = f[8]
                order = _Order(f[0], f[1], f[2], f[4], f[7], quantity, quantity, False,
                               f[10])
                st.orders[f[0]] = order
                self._pending.append((st, order))
                return
            if ev.stop_price:
                return
            display = ev.display_quantity
        order_id = ev.order_id
        quantity = ev.quantity
        order = _Order(order_id, ev.account, ev.client_order_id, ev.side, ev.price, quantity,
                       quantity, False, display)
        st.orders[order_id] = order
        self._pending.append((st, order))

    def _on_rejected(self, st: _Symbol, ev: Rejected, ts: Any) -> None:
        """A rejected command changed nothing: no market data."""

    def _on_trade(self, st: _Symbol, ev: Trade, ts: Any) -> None:
        """A trade tick; the bars; the maker's L3 execution (its visible slice: the open
        quantity less the reserve) and, for an iceberg whose slice is gone, the refill at the
        back of the level; both orders' open quantity."""
        price = ev.price
        qty = ev.quantity
        trade_id = ev.trade_id
        trades = st.trades
        if trades is not None:
            st.trades_seq += 1
            trades.append(_TradeTick(st.trades_seq, ts, st.symbol, trade_id,
                                     price, qty, ev.aggressor_side))
        self._bars.trade(st.bars, ts, price, qty)
        orders = st.orders
        maker_leaves = ev.maker_leaves
        maker_id = ev.maker_order_id
        maker = orders.get(maker_id)
        if maker is not None:
            hidden = maker.hidden
            if hidden:  # an iceberg with a reserve: only the slice is visible
                maker_leaves -= hidden
            maker.leaves = maker_leaves
            if maker_leaves == 0 and not hidden:
                del orders[maker_id]
            l3 = st.l3
            if l3 is not None:
                st.l3_seq += 1
                l3.append(_OrderExecuted(st.l3_seq, ts, st.symbol, maker_id,
                                         maker.side, price, qty, maker_leaves, trade_id))
            if maker_leaves == 0 and hidden:
                self._refill(st, maker, ts)
        taker_id = ev.taker_order_id
        taker = orders.get(taker_id)
        if taker is not None:
            taker_leaves = ev.taker_leaves
            taker.leaves = taker_leaves
            if taker_leaves == 0:
                del orders[taker_id]

    @staticmethod
    def _refill(st: _Symbol, order: _Order, ts: Any) -> None:
        """An iceberg's slice filled: the next slice (``min(display, reserve)``, as the
        engine) goes to the back of its level now (see the module doc for why not at the end
        of the command)."""
        hidden = order.hidden
        qty = order.display if order.display < hidden else hidden
        order.hidden = hidden - qty
        order.leaves = qty
        orders = st.orders
        del orders[order.order_id]  # re-insert: the back of its level
        orders[order.order_id] = order
        l3 = st.l3
        if l3 is not None:
            st.l3_seq += 1
            l3.append(_OrderAdded(st.l3_seq, ts, st.symbol, order.order_id, order.side,
                                  order.price, qty))

    def _on_left_book(self, st: _Symbol, ev: Cancelled | Expired, ts: Any) -> None:
        """An order (or its remainder) is gone: an L3 delete if it was resting."""
        order_id = ev.order_id
        order = st.orders.pop(order_id, None)
        l3 = st.l3
        if order is not None and order.resting and l3 is not None:
            st.l3_seq += 1
            l3.append(_OrderDeleted(st.l3_seq, ts, st.symbol, order_id, ev.side, ev.price,
                                    _L3_EXPIRED if type(ev) is _Expired else _L3_CANCELLED))

    def _on_replaced(self, st: _Symbol, ev: Replaced, ts: Any,
                     f: tuple[Any, ...] | None = None) -> None:
        """Kept priority: an L3 modify if the open quantity changed. Lost it: an L3 delete,
        and the order is in flight again (re-added at the end of the command if open).
        ``f``: ``ev``'s fields if the caller has them (compiled, :meth:`publish_batch`)."""
        if COMPILED:  # every field in one C call; the ids and price stay objects
            if f is None:
                f = _astuple(ev)
            order = st.orders.get(f[0])
            if order is None:
                return
            clid: str = f[2]
            price: Any = f[5]
            quantity: int = f[6]
            open_qty: int = f[7]
            kept: bool = f[8]
            display: int = f[10]
        else:
            order = st.orders.get(ev.order_id)
            if order is None:
                return
            clid = ev.client_order_id
            price = ev.price
            quantity = ev.quantity
            open_qty = ev.leaves
            kept = ev.kept_priority
            display = ev.display_quantity
        l3 = st.l3
        order.client_order_id = clid
        order.quantity = quantity
        order.display = display
        if kept:
            # the slice shrinks at most (iceberg.py): min(old slice, display, open)
            leaves = order.leaves
            if open_qty < leaves:
                leaves = open_qty
            if display and display < leaves:
                leaves = display
            order.hidden = open_qty - leaves
            if order.leaves != leaves:
                order.leaves = leaves
                if l3 is not None and order.resting:
                    st.l3_seq += 1
                    l3.append(_OrderModified(st.l3_seq, ts, st.symbol, order.order_id,
                                             order.side, order.price, leaves))
            return
        if order.resting:
            order.resting = False
            if l3 is not None:
                st.l3_seq += 1
                l3.append(_OrderDeleted(st.l3_seq, ts, st.symbol, order.order_id, order.side,
                                        order.price, _L3_REPLACED))
        order.price = price
        order.leaves = open_qty  # in flight: all of it takes; the slice is cut on rest
        order.hidden = 0
        self._pending.append((st, order))

    def _rest(self, st: _Symbol, side: int, price: Any, ts: Any) -> None:
        """The level change of an order in flight at ``side``/``price``: it rests now, at the
        back of its level (an iceberg shows one slice, as in the engine's ``_rest``).
        ``price``: the event's own object (compared with the order's by value)."""
        pending = self._pending
        for i, (pst, order) in enumerate(pending):
            if (pst is st and order.price == price and order.side == side
                    and order.leaves > 0 and st.orders.get(order.order_id) is order):
                del pending[i]
                order.resting = True
                display = order.display
                if display and order.leaves > display:
                    order.hidden = order.leaves - display
                    order.leaves = display
                orders = st.orders
                order_id = order.order_id
                del orders[order_id]  # re-insert: arrival order at its level
                orders[order_id] = order
                l3 = st.l3
                if l3 is not None:
                    st.l3_seq += 1
                    l3.append(_OrderAdded(st.l3_seq, ts, st.symbol, order_id, order.side,
                                          price, order.leaves))
                return

    def _on_level_changed(self, st: _Symbol, ev: LevelChanged, ts: Any,
                          f: tuple[Any, ...] | None = None) -> None:
        """The mirror's level and best key (next best by the engine's own scan), a depth
        delta, and the symbol marked for a BBO check at the end of the command; an order in
        flight at this level rests now (:meth:`_rest`). The price, quantity and count go
        into the mirror and the delta as the event's own objects (``Any``); only side,
        price and count are unboxed, for the comparisons. ``f``: ``ev``'s fields if the
        caller has them (compiled, :meth:`publish_batch`)."""
        if COMPILED:  # every field in one C call
            if f is None:
                f = _astuple(ev)
            side_o: Any = f[1]
            price_o: Any = f[2]
            quantity: Any = f[3]
            count_o: Any = f[4]
        else:
            side_o = ev.side
            price_o = ev.price
            quantity = ev.quantity
            count_o = ev.order_count
        side: int = side_o
        price: int = price_o
        count: int = count_o
        if count and self._pending:
            self._rest(st, side, price_o, ts)
        if side == _BUY:
            levels = st.bids
            if count:
                levels[price_o] = (quantity, count_o)
                if price > st.bid_best:
                    st.bid_best = price
            elif price_o in levels:
                del levels[price_o]
                if price == st.bid_best:
                    st.bid_best = next_best_key(levels, price, 1, st.step)
        else:
            levels = st.asks
            if count:
                levels[price_o] = (quantity, count_o)
                if -price > st.ask_best:
                    st.ask_best = -price
            elif price_o in levels:
                del levels[price_o]
                if -price == st.ask_best:
                    st.ask_best = next_best_key(levels, -price, -1, st.step)
        depth = st.depth
        if depth is not None:
            st.depth_seq += 1
            depth.append(_DepthDelta(st.depth_seq, ts, st.symbol, side_o, price_o, quantity,
                                     count_o))
        if st.bbo is not None and st.bbo_mark != self._cmd_no:
            st.bbo_mark = self._cmd_no
            self._bbo_dirty.append(st)

    def _on_status_changed(self, st: _Symbol, ev: StatusChanged, ts: Any) -> None:
        """Halt or resume: a status update, if anyone listens."""
        if self.bus.has_subscribers(st.t_status):
            if st.status is None:
                st.status = []
            st.status_seq += 1
            st.status.append(StatusUpdate(st.status_seq, ts, st.symbol, ev.halted))

    def _on_account_status(self, ev: AccountStatusChanged, ts: Any) -> None:
        """The kill switch was set or lifted: an update on every symbol's status topic that
        has subscribers (the switch applies to all symbols)."""
        has_subs = self.bus.has_subscribers
        epoch = self._epoch
        for st in self._symbols.values():
            if has_subs(st.t_status):
                if st.epoch != epoch:
                    self._enter(st, epoch)
                if st.status is None:
                    st.status = []
                st.status_seq += 1
                st.status.append(AccountStatusUpdate(st.status_seq, ts, st.symbol, ev.account,
                                                     ev.enabled, ev.cancelled))

    # -- end of call ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """One ``publish_many`` per topic with messages: the per-symbol topics, then the
        bars closed during the call."""
        publish_many = self.bus.publish_many
        messages = 0
        for st in self._touched:
            for topic, msgs in ((st.t_trades, st.trades), (st.t_depth, st.depth),
                                (st.t_bbo, st.bbo), (st.t_l3, st.l3),
                                (st.t_status, st.status)):
                if msgs:
                    messages += len(msgs)
                    publish_many(topic, msgs)
            st.trades = st.depth = st.bbo = st.l3 = st.status = None
        self._touched = []
        for topic, closed in self._bars.take().items():
            messages += len(closed)
            publish_many(topic, closed)
        self.messages += messages

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
            hidden = {oid: o.hidden for oid, o in st.orders.items() if o.hidden}
            assert hidden == {o.order_id: o.hidden for o in book.orders() if o.hidden}, (
                f"{symbol} iceberg reserves differ")
            live = {oid for oid, o in st.orders.items() if not o.resting}
            assert not live, f"{symbol} orders in flight after a command: {sorted(live)}"
            if st.want_bbo:
                assert st.bbo_last == st.best(), f"{symbol} BBO is stale"

    def statistics(self) -> PublisherStatistics:
        """A frozen snapshot of the publisher's counters. O(1)."""
        return PublisherStatistics(
            commands=self.commands, events=self.events, messages=self.messages,
            last_seq=self.last_seq, last_ts=self.last_ts, symbols=len(self._symbols),
            open_bars=len(self._bars.open_bars),
        )
