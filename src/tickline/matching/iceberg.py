"""Iceberg (reserve) orders: replace of an iceberg, or of a plain order that becomes one.

The rest of the iceberg behaviour lives where the book is touched, in
:mod:`tickline.matching.engine`:

* ``NewOrder.display_quantity`` (lots, 0 = all visible) on a resting limit order (GTC or
  GTD; not market, stop, IOC or FOK): as a *taker* the order trades its whole quantity; what
  rests shows ``min(display, open)`` in its level (``Order.leaves``) and keeps the rest in
  reserve (``Order.hidden``). Depth, level totals and order counts show the visible slice only.
* When the visible slice fills, the next slice (``min(display, reserve)``) is taken from the
  reserve and goes to the **back** of its level (after the current pass over the level): the
  reserve has no priority of its own.
* Trades, cancels and expiries report the whole order: ``Trade.maker_leaves`` is the open
  quantity including the reserve, ``Cancelled.quantity`` what was open including it.
* A fill-or-kill taker counts an iceberg's reserve only at a level where no own order stops
  it (self-trade prevention), since a refilled slice queues behind that order.

Replace (this module) follows the rules of plain orders, with the display quantity as one
more size: with ``size(d) = d`` for an iceberg and "infinite" for a plain order, a replace
**keeps priority** when the price is unchanged, the open quantity does not grow and the
display size does not grow; the visible slice then becomes ``min(old slice, new display,
new open)`` and the rest is reserve. Anything else moves the order to the back of its (new)
level, where it may trade with its whole open quantity first and then shows a fresh slice.
``display_quantity`` 0 on a replace keeps the display quantity; a display quantity equal to
the total makes an iceberg fully visible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tickline.matching.book import Order
from tickline.matching.commands import Replace
from tickline.matching.events import Event, LevelChanged, Replaced
from tickline.matching.stops import rename_client_id
from tickline.matching.types import BUY, CancelReason
from tickline.matching.validation import (
    R_DUP_CLID,
    R_POST_ONLY,
    R_REPLACE_QTY,
    R_STOP_NOT_ALLOWED,
    check_display,
    check_price,
    check_quantity,
    price_text,
    quantity_text,
)

if TYPE_CHECKING:
    from tickline.matching.engine import MatchingEngine

_ALL: Final = 1 << 62  # the display size of a plain order: everything is visible
C_PROTECTION: Final = int(CancelReason.PRICE_PROTECTION)

# Compiled by mypyc, a module-level name is looked up in the module's dict on every use
# unless it is ``Final`` (then a C static): the classes and constants the hot paths use
# are Final (pure Python reads both kinds the same way).
_Replaced: Final = Replaced
_LevelChanged: Final = LevelChanged


def replace_iceberg(engine: MatchingEngine, cmd: Replace, order: Order,
                    out: list[Event]) -> None:
    """Replace a resting order that is an iceberg or is given a display quantity (lookup
    and halt already checked). Checks, in order: stop price (refused: not a stop), price,
    quantity, quantity vs filled, display quantity, client order id, post-only."""
    order_id = order.order_id
    symbol = order.symbol
    book = engine.books[symbol]
    instrument = book.instrument
    if cmd.stop_price:
        return engine._reject(out, cmd, order_id, R_STOP_NOT_ALLOWED,
                              f"order {order_id} is not an armed stop: no stop price to set")
    old_price = order.price
    price = cmd.price or old_price
    if price != old_price:
        reason = check_price(instrument, price)
        if reason:
            return engine._reject(out, cmd, order_id, reason, price_text(instrument, price))
    quantity = cmd.quantity or order.quantity
    if quantity != order.quantity:
        reason = check_quantity(instrument, quantity)
        if reason:
            return engine._reject(out, cmd, order_id, reason, quantity_text(instrument, quantity))
    filled = order.filled
    if quantity <= filled:
        return engine._reject(out, cmd, order_id, R_REPLACE_QTY,
                              f"new quantity {quantity} is not above the filled quantity {filled}")
    display = cmd.display_quantity or order.display
    if cmd.display_quantity:
        reason, text = check_display(instrument, display, quantity)
        if reason:
            return engine._reject(out, cmd, order_id, reason, text)
    clid = cmd.client_order_id
    if clid and clid != order.client_order_id and engine._client_id_taken(order.account, clid):
        return engine._reject(out, cmd, order_id, R_DUP_CLID,
                              f"client order id {clid!r} already used by account "
                              f"{order.account}")
    side = order.side
    if side == BUY:
        own_side, opposite, limit_key = book.bids, book.asks, -price
    else:
        own_side, opposite, limit_key = book.asks, book.bids, price
    crosses = opposite.best >= limit_key
    if crosses and order.post_only:
        return engine._reject(out, cmd, order_id, R_POST_ONLY,
                              f"post-only order {order_id} at {price} would take liquidity")

    # Validated: from here on the replace happens.
    rename_client_id(engine, order, clid)
    open_qty = quantity - filled
    old_leaves = order.leaves
    level = own_side.levels[old_price]
    if (price == old_price and open_qty <= old_leaves + order.hidden
            and (display or _ALL) <= (order.display or _ALL)):  # keeps its place
        leaves = min(old_leaves, display or open_qty, open_qty)
        level.total -= old_leaves - leaves
        order.leaves = leaves
        order.hidden = open_qty - leaves
        order.quantity = quantity
        order.display = display
        order.special = True
        out.append(_Replaced(order_id, order.account, order.client_order_id, symbol, side,
                             price, quantity, open_qty, True, 0, display))
        if leaves != old_leaves:
            out.append(_LevelChanged(symbol, side, price, level.total, len(level.orders)))
        return None
    level = own_side.remove(order)
    out.append(_LevelChanged(symbol, side, old_price, level.total, len(level.orders)))
    order.price = price
    order.quantity = quantity
    order.display = display
    order.leaves = open_qty  # takes with all of it; _rest shows one slice
    order.hidden = 0
    order.priority = cmd.seq
    out.append(_Replaced(order_id, order.account, order.client_order_id, symbol, side, price,
                         quantity, open_qty, False, 0, display))
    if crosses:
        engine._match(opposite, order, engine._protect(book, opposite, limit_key), out)
        if order.leaves == 0:  # filled, or cancelled by self-trade prevention
            engine._finish(order)
            return None
        if opposite.best >= limit_key:  # stopped by price protection
            engine._cancel_rest(order, out, C_PROTECTION)
            return None
    engine._rest(book, order, out)
    return None


__all__ = ["replace_iceberg"]
