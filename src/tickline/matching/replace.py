"""Cancel/replace of resting orders: the fast path for a price-only move of a plain order
(82% of the exchange-core mix) and the general path for everything else. Stops and icebergs
branch off to :mod:`tickline.matching.stops` and :mod:`tickline.matching.iceberg`.

A quantity decrease at the same price keeps time priority; a price change or a quantity
increase moves the order to the back of its (new) level, and a new price that crosses the
book trades first. Functions of the engine's state (the engine is their single writer),
kept out of :mod:`tickline.matching.engine` only for size.
"""

from __future__ import annotations

from types import FunctionType
from typing import TYPE_CHECKING, Any, Final, cast

from tickline.matching.commands import Replace
from tickline.matching.events import Event, LevelChanged, Replaced
from tickline.matching.iceberg import replace_iceberg
from tickline.matching.stops import replace_stop, trigger_stops
from tickline.matching.types import BUY, CancelReason
from tickline.matching.validation import (
    R_DUP_CLID,
    R_HALTED,
    R_POST_ONLY,
    R_REPLACE_QTY,
    check_price,
    check_quantity,
    price_text,
    quantity_text,
)

if TYPE_CHECKING:
    from tickline.matching.engine import MatchingEngine

C_PROTECTION: Final = int(CancelReason.PRICE_PROTECTION)

# Compiled by mypyc, a module-level name is looked up in the module's dict on every use
# unless it is ``Final`` (then a C static): the classes and constants the hot paths use
# are Final (pure Python reads both kinds the same way).
_Replaced: Final = Replaced
_LevelChanged: Final = LevelChanged


def _probe() -> None:
    """(A function: compiled by mypyc, it is a builtin, not a Python function.)"""


COMPILED: Final = not isinstance(_probe, FunctionType)
_ReplaceFields = tuple[int, int, int, str, int, str, int, int, str, int, int]
"""A :class:`~tickline.matching.commands.Replace` as :func:`msgspec.structs.astuple` gives
it: seq, ts, account, symbol, order_id, orig_client_order_id, price, quantity,
client_order_id, stop_price, display_quantity."""
"""True when this module runs compiled (mypyc). The move fast path reads a command's fields
by :func:`msgspec.structs.astuple` there and by attribute reads interpreted: each is the
cheaper one of its build (issue 13, docs/benchmarks.md). Compiled, the engine reads the
tuple once per command (``MatchingEngine._fields``: it needs ``seq`` and ``ts`` first), and
this fast path and the new-order path take theirs from it."""


def replace_order(engine: MatchingEngine, cmd: Replace, out: list[Event]) -> None:
    """Fast path for the commonest command of all (82% of the exchange-core mix): a
    price-only move of a plain order to a valid new price that does not cross (a post-only
    order moves here too: not crossing, it behaves as any other). Everything else —
    crossing moves, quantity, client-id, stop price or display changes, icebergs and armed
    stops (``Order.special``), every reject — takes :func:`replace_general`. Inlined by
    profile (each Python call and each line costs here); the contract is the same."""
    # Compiled, ``order_id`` and ``price_`` are the command's own int objects, kept as
    # they are for the dict keys and the events (a native int is boxed anew at each such
    # use); ``price`` is the same value as a native int, for the comparisons.
    order_id: Any
    price_: Any
    if COMPILED:  # ``cmd``'s fields, read in one C call by the engine (each ``cmd.x`` is a
        fields = engine._fields  # generic lookup); unboxed once into a native tuple
        f = cast(_ReplaceFields, fields)
        order_id = fields[4]
        order = engine.orders.get(order_id)
        if (order is None or f[7] or f[8] or order.special or order.account != f[2]
                or order.symbol != f[3] or f[9] or f[10]):
            return _replace_and_trigger(engine, cmd, out)
        symbol = f[3]
        price = f[6]
        price_ = fields[6]
        account: Any = fields[2]  # (== order.account, checked above)
    else:  # interpreted, specialized attribute reads, as few locals as can be, are cheaper
        order = engine.orders.get(cmd.order_id)
        if (order is None or cmd.quantity or cmd.client_order_id or order.special
                or order.account != cmd.account or order.symbol != cmd.symbol
                or cmd.stop_price or cmd.display_quantity):
            return _replace_and_trigger(engine, cmd, out)
        symbol = order.symbol
        price = price_ = cmd.price
        order_id = order.order_id  # (the dict's own key object: found by identity)
        account = order.account
    book = engine.books[symbol]
    old_price = order.price
    old_price_: Any = old_price  # compiled: boxed once, for the dict lookup and the event
    side = order.side
    if side == BUY:
        own_side = book.bids
        crosses = book.asks.best >= -price
    else:
        own_side = book.asks
        crosses = book.bids.best >= price
    if (crosses or price == old_price or price < book.min_price
            or price > book.move_max_price  # (0 while halted; and the notional limits)
            or price % book.tick_size):
        return _replace_and_trigger(engine, cmd, out)
    leaves = order.leaves
    levels = own_side.levels
    level = levels[old_price_]
    level_orders = level.orders
    del level_orders[order_id]
    if level_orders:
        total = level.total - leaves
        level.total = total
        out.append(_LevelChanged(symbol, side, old_price_, total, len(level_orders)))
    else:
        own_side.drop_level(old_price)
        out.append(_LevelChanged(symbol, side, old_price_, 0, 0))
    order.price = price
    order.priority = engine.last_seq  # (the command's seq, set by the engine)
    out.append(_Replaced(order_id, account, order.client_order_id, symbol, side,
                         price_, order.quantity, leaves, False))
    to = levels.get(price_)
    if to is None:
        to = own_side.new_level(price)
        to.orders[order_id] = order
        to.total = leaves
        key = price if own_side.sign == 1 else -price
        if key > own_side.best:
            own_side.best = key
        out.append(_LevelChanged(symbol, side, price_, leaves, 1))
    else:
        level_orders = to.orders
        level_orders[order_id] = order
        total = to.total + leaves
        to.total = total
        out.append(_LevelChanged(symbol, side, price_, total, len(level_orders)))
    return None

def _replace_and_trigger(engine: MatchingEngine, cmd: Replace, out: list[Event]) -> None:
    """The general path, then the stop trigger cascade: its trades, or a replaced stop that
    is due now, may trigger stops. (The fast path never trades and never moves a stop.)"""
    replace_general(engine, cmd, out)
    if engine.stops:
        trigger_stops(engine, cmd.symbol, out)


def replace_general(engine: MatchingEngine, cmd: Replace, out: list[Event]) -> None:
    """Every replace: lookup by client order id, quantity changes, new client ids,
    post-only orders, same-price changes, and all the rejects."""
    order = engine.orders.get(cmd.order_id)
    if order is None or order.account != cmd.account or order.symbol != cmd.symbol:
        order = engine._find_owned(cmd, out)  # by client order id, or the reject
        if order is None:
            return None
    order_id = order.order_id
    symbol = order.symbol
    book = engine.books[symbol]
    if book.halted:
        return engine._reject(out, cmd, order_id, R_HALTED, f"{symbol} is halted")
    if order.stop_price or order.display or cmd.stop_price or cmd.display_quantity:
        if engine._gated and engine._pretrade_replace(
                cmd, order, cmd.price or order.price, cmd.quantity or order.quantity, out):
            return None  # kill switch or a risk limit (risk.py)
        if order.stop_price:
            return replace_stop(engine, cmd, order, out)
        return replace_iceberg(engine, cmd, order, out)
    old_price = order.price
    price = cmd.price or old_price
    quantity = cmd.quantity or order.quantity
    if price != old_price and (
        price <= 0 or price % book.tick_size or price < book.min_price
        or price > book.max_price
    ):
        instrument = book.instrument
        return engine._reject(out, cmd, order_id, check_price(instrument, price),
                            price_text(instrument, price))
    if quantity != order.quantity:
        reason = check_quantity(book.instrument, quantity)
        if reason:
            return engine._reject(out, cmd, order_id, reason,
                                quantity_text(book.instrument, quantity))
    filled = order.filled
    if quantity <= filled:
        return engine._reject(
            out, cmd, order_id, R_REPLACE_QTY,
            f"new quantity {quantity} is not above the filled quantity {filled}",
        )
    clid = cmd.client_order_id
    account = order.account
    if clid and clid != order.client_order_id and engine._client_id_taken(account, clid):
        return engine._reject(out, cmd, order_id, R_DUP_CLID,
                            f"client order id {clid!r} already used by account {account}")
    side = order.side
    if side == BUY:
        own_side = book.bids
        opposite = book.asks
        limit_key = -price
    else:
        own_side = book.asks
        opposite = book.bids
        limit_key = price
    crosses = opposite.best >= limit_key
    if crosses and order.post_only:
        return engine._reject(out, cmd, order_id, R_POST_ONLY,
                            f"post-only order {order_id} at {price} would take liquidity")
    if engine._gated:  # kill switch or a risk limit (risk.py): the exact check only when
        risk = book.exposures.get(account)  # the replace may breach one (the engine's
        if risk is not None and (  # fast pass; a disabled account's caps are 0: checked)
                quantity > order.quantity or price * quantity > risk.max_notional) and (
                engine._pretrade_replace(cmd, order, price, quantity, out)):
            return None

    # Validated: from here on the replace happens.
    if clid and clid != order.client_order_id:
        live = engine._live_client_ids
        if order.client_order_id:
            old_key = (account, order.client_order_id)
            del live[old_key]
            engine._remember_client_id(old_key)
        live[(account, clid)] = order_id
        order.client_order_id = clid
    leaves = quantity - filled
    old_leaves = order.leaves
    levels = own_side.levels
    level = levels[old_price]
    if price == old_price and leaves <= old_leaves:  # keeps its place in the queue
        level.total -= old_leaves - leaves
        order.leaves = leaves
        order.quantity = quantity
        out.append(_Replaced(order_id, account, order.client_order_id, symbol,
                             side, price, quantity, leaves, True))
        if leaves != old_leaves:
            out.append(_LevelChanged(symbol, side, price, level.total, len(level.orders)))
        return None
    # Out of its old level (inlined BookSide.remove) ...
    level_orders = level.orders
    del level_orders[order_id]
    total = level.total - old_leaves
    level.total = total
    if level_orders:
        out.append(_LevelChanged(symbol, side, old_price, total, len(level_orders)))
    else:
        own_side.drop_level(old_price)
        out.append(_LevelChanged(symbol, side, old_price, 0, 0))
    order.price = price
    order.quantity = quantity
    order.leaves = leaves
    order.priority = cmd.seq
    out.append(_Replaced(order_id, account, order.client_order_id, symbol,
                         side, price, quantity, leaves, False))
    if crosses:
        engine._match(opposite, order, engine._protect(book, opposite, limit_key), out)
        if order.leaves == 0:  # filled, or cancelled by self-trade prevention
            engine._finish(order)
            return None
        if opposite.best >= limit_key:  # stopped by price protection
            engine._cancel_rest(order, out, C_PROTECTION)
            return None
    # ... and onto the back of its new one.
    level = own_side.add(order)
    out.append(_LevelChanged(symbol, side, price, level.total, len(level.orders)))
    return None


__all__ = ["replace_general", "replace_order"]
