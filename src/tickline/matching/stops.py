"""Stop-market and stop-limit orders: the stop book of one symbol and the trigger cascade.

Semantics (the contract; docs/design.md repeats it):

* A ``STOP`` or ``STOP_LIMIT`` order is validated like any order (plus its ``stop_price``:
  positive, on tick, within the price band; never post-only, never an iceberg), accepted
  (``Accepted`` with ``stop_price``) and then *armed*: it rests in the symbol's
  :class:`StopBook`, outside the order book, invisible in depth and level counts, and takes
  no liquidity.
* **Last trade price**: the price of the symbol's most recent trade (``MatchingEngine.
  last_prices``). Before the first trade there is none, and no stop triggers; stops are
  accepted all the same and wait for that first trade.
* A buy stop is *due* when ``last >= stop_price``, a sell stop when ``last <= stop_price``.
  A due stop **triggers**: it leaves the stop book, emits ``Triggered``, and enters the book
  at that moment (time priority from the trigger) as a market order (``STOP``; IOC, or FOK if
  it was FOK) or as a limit order at its limit price (``STOP_LIMIT``, with its own time in
  force), followed by the usual trades, cancels and level changes.
* **Entry**: a stop that is already due when it is accepted (or when a replace moves its
  stop price) is *triggered immediately*, in the same command, after its ``Accepted``
  (``Replaced``); it is not rejected. So no "correct side of the last price" rule applies.
* **Order of triggers and cascades**: after every new order and replace, while a stop of the
  command's symbol is due, the next one triggers. "Next" is the stop touched first on the way
  to the last price: the largest overshoot (``last - stop`` for buys, ``stop - last`` for
  sells), then arrival (the sequence number of its entry or of its last replace that did not
  keep priority), then order id. The trades of a triggered stop move the last price and may
  make more stops due: the cascade runs to the end within the same command, so the journal
  replays to the same events.
* **Bound**: at most ``EngineConfig.max_stop_triggers`` stops trigger in one command. The
  stops still due once the bound is reached are cancelled (``Cancelled`` with
  ``STOP_TRIGGER_LIMIT``) in trigger order, so after every command no armed stop is due
  (:meth:`StopBook.check` asserts it) and a runaway cascade cannot stall the engine.
* Armed stops can be cancelled (``Cancelled`` ``USER``), expire (GTD) and be replaced: a new
  stop price, limit price (stop-limit only) or total quantity; a replace that changes neither
  price and does not increase the quantity keeps the stop's arrival, anything else takes a
  new one.

Pure, like the rest of :mod:`tickline.matching`: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from tickline.matching.book import Order, OrderBook
from tickline.matching.commands import NewOrder, Replace
from tickline.matching.events import Accepted, Event, Replaced, Triggered
from tickline.matching.types import (
    BUY,
    FOK,
    GTD,
    IOC,
    LIMIT,
    MARKET,
    CancelReason,
)
from tickline.matching.validation import (
    R_DISPLAY_NOT_ALLOWED,
    R_DUP_CLID,
    R_REPLACE_QTY,
    R_STOP_INVALID,
    check_price,
    check_quantity,
    check_stop_price,
    price_text,
    quantity_text,
)

if TYPE_CHECKING:
    from tickline.matching.engine import MatchingEngine

_NO_BUY: Final = 1 << 62  # the buy trigger of a stop book without buy stops: above every price
_NO_LIMIT: Final = -(1 << 62)  # a key below every real key: "match at any price"
C_USER: Final = int(CancelReason.USER)
C_IOC: Final = int(CancelReason.IOC_REMAINDER)
C_FOK: Final = int(CancelReason.FOK_UNFILLABLE)
C_MARKET: Final = int(CancelReason.MARKET_REMAINDER)
C_PROTECTION: Final = int(CancelReason.PRICE_PROTECTION)
C_TRIGGER_LIMIT: Final = int(CancelReason.STOP_TRIGGER_LIMIT)

# Compiled by mypyc, a module-level name is looked up in the module's dict on every use
# unless it is ``Final`` (then a C static): the classes and constants the hot paths use
# are Final (pure Python reads both kinds the same way).
_Accepted: Final = Accepted
_Replaced: Final = Replaced
_Triggered: Final = Triggered


class StopBook:
    """The armed stops of one symbol, by side, each side with a heap in trigger order: buys
    by ``(stop_price, arrival, id)``, sells by ``(-stop_price, arrival, id)``. The head of
    each heap is the stop that side triggers next, so "is any stop due?" is two comparisons
    (O(1)) and taking the next due stop is O(log S). Heap entries are removed lazily: an
    entry whose order was disarmed or re-armed (replace) since is skipped and dropped when it
    reaches the head; the heaps are rebuilt when stale entries outnumber live ones."""

    __slots__ = ("buy_heap", "buy_trigger", "buys", "sell_heap", "sell_trigger", "sells")

    def __init__(self) -> None:
        self.buys: dict[int, Order] = {}
        self.sells: dict[int, Order] = {}
        self.buy_heap: list[tuple[int, int, int]] = []
        self.sell_heap: list[tuple[int, int, int]] = []
        self.buy_trigger = _NO_BUY  # lowest buy stop price (_NO_BUY: none)
        self.sell_trigger = 0  # highest sell stop price (0: none)

    def __len__(self) -> int:
        return len(self.buys) + len(self.sells)

    def add(self, order: Order) -> None:
        """Arm ``order`` (its ``stop_price`` and ``priority`` set). O(log S)."""
        if order.side == BUY:
            self.buys[order.order_id] = order
            heapq.heappush(self.buy_heap, (order.stop_price, order.priority, order.order_id))
            if len(self.buy_heap) > 2 * len(self.buys) + 16:
                self.buy_heap = [(o.stop_price, o.priority, o.order_id)
                                 for o in self.buys.values()]
                heapq.heapify(self.buy_heap)
            self.buy_trigger = self.buy_heap[0][0]
        else:
            self.sells[order.order_id] = order
            heapq.heappush(self.sell_heap, (-order.stop_price, order.priority, order.order_id))
            if len(self.sell_heap) > 2 * len(self.sells) + 16:
                self.sell_heap = [(-o.stop_price, o.priority, o.order_id)
                                  for o in self.sells.values()]
                heapq.heapify(self.sell_heap)
            self.sell_trigger = -self.sell_heap[0][0]

    def remove(self, order: Order) -> None:
        """Disarm ``order``. O(log S) amortized."""
        if order.side == BUY:
            del self.buys[order.order_id]
            self.buy_trigger = _prune(self.buy_heap, self.buys, 1, _NO_BUY)
        else:
            del self.sells[order.order_id]
            self.sell_trigger = -_prune(self.sell_heap, self.sells, -1, 0)

    def due(self, last: int) -> bool:
        """Whether any stop is due at last trade price ``last`` (0: no trade yet). O(1)."""
        return last > 0 and (last >= self.buy_trigger or last <= self.sell_trigger)

    def next_due(self, last: int) -> Order | None:
        """The stop to trigger next at ``last``: largest overshoot, then arrival, then order
        id (see the module docstring); ``None`` if none is due. O(1): the heads."""
        best: Order | None = None
        if last > 0 and last >= self.buy_trigger:
            stop, priority, oid = self.buy_heap[0]
            best = self.buys[oid]
            best_key = (stop - last, priority, oid)
        if last > 0 and last <= self.sell_trigger:
            neg_stop, priority, oid = self.sell_heap[0]
            key = (last + neg_stop, priority, oid)
            if best is None or key < best_key:
                best = self.sells[oid]
        return best

    def orders(self) -> list[Order]:
        """Every armed stop in arrival order. O(S log S)."""
        return sorted((*self.buys.values(), *self.sells.values()),
                      key=lambda o: (o.priority, o.order_id))

    def digest(self) -> str:
        """A hash of every armed stop's identity, prices, quantities and arrival."""
        h = hashlib.blake2b(digest_size=16)
        for o in self.orders():
            h.update(b"%d,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d;"
                     % (o.order_id, o.account, o.client_order_id.encode(), o.side, o.price,
                        o.stop_price, o.quantity, o.leaves, o.tif, o.expire_time, o.priority))
        return h.hexdigest()

    def check(self, last: int) -> None:
        """Assert the stop book's invariants: thresholds equal to the extreme stop prices
        and to live heap heads, every armed stop in its heap, every stop armed (positive stop
        price) with its whole quantity open (an armed stop has never traded), on its side,
        and none of them due at ``last``."""
        for side, stops, heap, sign in ((BUY, self.buys, self.buy_heap, 1),
                                        (2, self.sells, self.sell_heap, -1)):
            entries = set(heap)
            for oid, o in stops.items():
                assert oid == o.order_id and o.side == side, f"stop {oid} misfiled"
                assert o.stop_price > 0, f"stop {oid} not armed"
                assert o.filled == 0 and o.hidden == 0 and o.display == 0, f"stop {oid}"
                assert o.special, f"stop {oid} not flagged special"
                assert 0 < o.leaves == o.quantity, f"stop {oid} leaves {o.leaves}"
                assert (sign * o.stop_price, o.priority, oid) in entries, f"stop {oid} lost"
            if heap:
                key, priority, oid = heap[0]
                assert oid in stops and stops[oid].stop_price == sign * key, "stale heap head"
                assert stops[oid].priority == priority, "stale heap head"
        assert self.buy_trigger == min((o.stop_price for o in self.buys.values()),
                                       default=_NO_BUY), "buy trigger stale"
        assert self.sell_trigger == max((o.stop_price for o in self.sells.values()),
                                        default=0), "sell trigger stale"
        assert len(self) > 0, "empty stop book kept"
        assert not self.due(last), f"a stop is due at last price {last} after a command"


def _prune(heap: list[tuple[int, int, int]], live: dict[int, Order], sign: int,
           empty: int) -> int:
    """Drop stale entries from the head of ``heap``; return the head's key (``empty``
    when the heap runs out)."""
    while heap:
        key, priority, oid = heap[0]
        o = live.get(oid)
        if o is not None and o.stop_price == sign * key and o.priority == priority:
            return key
        heapq.heappop(heap)
    return empty


def accept_stop(engine: MatchingEngine, cmd: NewOrder, order_type: int, price: int, stp: int,
                out: list[Event]) -> None:
    """Accept a validated ``STOP``/``STOP_LIMIT`` order and arm it. Whether it is due at
    once is decided by :func:`trigger_stops`, which the engine runs after the command."""
    order_id = engine.next_order_id
    engine.next_order_id = order_id + engine.order_id_step
    tif = cmd.tif
    order = Order(order_id, cmd.account, cmd.client_order_id, cmd.symbol, cmd.side, price,
                  cmd.quantity, cmd.quantity, 0, tif, cmd.expire_time if tif == GTD else 0,
                  False, stp, cmd.seq, 0, 0, cmd.stop_price, True)
    order.exposure = (engine._exposure(cmd.account, cmd.symbol) if engine._tracking
                      else engine.books[cmd.symbol].exposures.get(cmd.account))
    out.append(_Accepted(order_id, cmd.account, cmd.client_order_id, cmd.symbol, cmd.side,
                         order_type, tif, price, cmd.quantity, cmd.stop_price, 0))
    if cmd.client_order_id:
        engine._live_client_ids[(cmd.account, cmd.client_order_id)] = order_id
    _arm(engine, order)
    if tif == GTD:
        engine._schedule_expiry(order)


def _arm(engine: MatchingEngine, order: Order) -> None:
    stop_book = engine.stops.get(order.symbol)
    if stop_book is None:
        stop_book = engine.stops[order.symbol] = StopBook()
    stop_book.add(order)
    exposure = order.exposure  # (while open counts are tracked)
    if exposure is not None and order.order_id not in engine.orders:  # an armed stop is open
        exposure.risk.open += 1
    engine.orders[order.order_id] = order


def _disarm(engine: MatchingEngine, order: Order) -> None:
    stop_book = engine.stops[order.symbol]
    stop_book.remove(order)
    if not stop_book:
        del engine.stops[order.symbol]


def cancel_stop(engine: MatchingEngine, order: Order, out: list[Event],
                reason: int = C_USER) -> None:
    """Cancel an armed stop (a user cancel by default; a mass cancel or kill switch names
    its reason): no level changes (it was never visible)."""
    _disarm(engine, order)
    engine._cancel_rest(order, out, reason)


def restore_stops(engine: MatchingEngine, stops: Iterable[Order]) -> None:
    """Re-arm the stops of a snapshot (with their client ids and expiry)."""
    for order in stops:
        engine.book(order.symbol)  # KeyError for an unknown symbol
        _arm(engine, order)
        if order.client_order_id:
            engine._live_client_ids[(order.account, order.client_order_id)] = order.order_id
        if order.tif == GTD:
            engine._schedule_expiry(order)


def trigger_stops(engine: MatchingEngine, symbol: str, out: list[Event]) -> None:
    """Run the trigger cascade of ``symbol`` to its end (or to the bound), after a command.
    O(1) when no stop is due."""
    stop_book = engine.stops.get(symbol)
    last_prices = engine.last_prices
    last = last_prices.get(symbol, 0)
    if stop_book is None or not stop_book.due(last):
        return
    book = engine.books[symbol]
    left = engine.config.max_stop_triggers
    while True:
        order = stop_book.next_due(last)
        if order is None:
            break
        stop_book.remove(order)
        if left <= 0:
            engine._cancel_rest(order, out, C_TRIGGER_LIMIT)
            continue
        left -= 1
        _enter(engine, book, order, out)
        last = last_prices[symbol]
    if not stop_book:
        del engine.stops[symbol]


def _enter(engine: MatchingEngine, book: OrderBook, order: Order, out: list[Event]) -> None:
    """A triggered stop enters the book as a market or limit order (it is already accepted
    and indexed; it can be neither post-only nor an iceberg)."""
    stop_price = order.stop_price
    order.stop_price = 0
    order.special = False  # a plain market or limit order now
    order.priority = engine.last_seq
    price = order.price
    market = price == 0
    tif = order.tif
    if market and tif != FOK:
        tif = IOC
    out.append(_Triggered(order.order_id, order.account, order.client_order_id, order.symbol,
                          order.side, MARKET if market else LIMIT, price, stop_price,
                          order.leaves))
    if order.side == BUY:
        opposite = book.asks
        limit_key = _NO_LIMIT if market else -price
    else:
        opposite = book.bids
        limit_key = _NO_LIMIT if market else price
    if opposite.best >= limit_key:
        match_key = engine._protect(book, opposite, limit_key)
        if tif == FOK and engine._fillable(opposite, order, match_key) < order.leaves:
            engine._cancel_rest(order, out, C_FOK)
            return
        engine._match(opposite, order, match_key, out)
        if order.leaves == 0:  # filled, or cancelled by self-trade prevention
            engine._finish(order)
            return
        if match_key != limit_key and opposite.best >= limit_key:
            engine._cancel_rest(order, out, C_PROTECTION)
            return
    if tif == IOC or tif == FOK:
        engine._cancel_rest(order, out, C_FOK if tif == FOK else
                            C_MARKET if market else C_IOC)
        return
    engine._rest(book, order, out)


def rename_client_id(engine: MatchingEngine, order: Order, clid: str) -> None:
    """Give a live order a new client order id on replace (the old one is remembered)."""
    if not clid or clid == order.client_order_id:
        return
    live = engine._live_client_ids
    if order.client_order_id:
        old_key = (order.account, order.client_order_id)
        del live[old_key]
        engine._remember_client_id(old_key)
    live[(order.account, clid)] = order.order_id
    order.client_order_id = clid


def replace_stop(engine: MatchingEngine, cmd: Replace, order: Order, out: list[Event]) -> None:
    """Replace an armed stop (lookup and halt already checked). Checks, in order: limit
    price (a stop-market has none), stop price, quantity, display (never on a stop), client
    order id. If the new stop price is already due, the engine triggers it after this."""
    order_id = order.order_id
    instrument = engine.books[order.symbol].instrument
    price = cmd.price or order.price
    if cmd.price and cmd.price != order.price:
        if order.price == 0:
            return engine._reject(out, cmd, order_id, R_STOP_INVALID,
                                  f"stop-market order {order_id} has no limit price to replace")
        reason = check_price(instrument, price)
        if reason:
            return engine._reject(out, cmd, order_id, reason, price_text(instrument, price))
    stop_price = cmd.stop_price or order.stop_price
    if stop_price != order.stop_price:
        reason, text = check_stop_price(instrument, stop_price)
        if reason:
            return engine._reject(out, cmd, order_id, reason, text)
    quantity = cmd.quantity or order.quantity
    if quantity != order.quantity:
        reason = check_quantity(instrument, quantity)
        if reason:
            return engine._reject(out, cmd, order_id, reason, quantity_text(instrument, quantity))
    if quantity <= order.filled:  # never for an armed stop (it has not traded): kept for form
        return engine._reject(out, cmd, order_id, R_REPLACE_QTY,
                              f"new quantity {quantity} is not above the filled quantity")
    if cmd.display_quantity:
        return engine._reject(out, cmd, order_id, R_DISPLAY_NOT_ALLOWED,
                              "a stop order cannot have a display quantity")
    clid = cmd.client_order_id
    if clid and clid != order.client_order_id and engine._client_id_taken(order.account, clid):
        return engine._reject(out, cmd, order_id, R_DUP_CLID,
                              f"client order id {clid!r} already used by account "
                              f"{order.account}")
    rename_client_id(engine, order, clid)
    kept = price == order.price and stop_price == order.stop_price and quantity <= order.quantity
    _disarm(engine, order)
    order.price = price
    order.stop_price = stop_price
    order.quantity = quantity
    order.leaves = quantity - order.filled
    if not kept:
        order.priority = cmd.seq
    _arm(engine, order)
    out.append(_Replaced(order_id, order.account, order.client_order_id, order.symbol,
                         order.side, price, quantity, order.leaves, kept, stop_price, 0))


__all__ = ["StopBook", "accept_stop", "cancel_stop", "replace_stop", "restore_stops",
           "trigger_stops"]
