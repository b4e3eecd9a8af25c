"""The engine's state as a whole: digest, invariant check, snapshot and restore.

Functions of :class:`~tickline.matching.engine.MatchingEngine` (its methods of the same
names delegate here), kept apart from the matching code only for size. The snapshot carries
the resting orders (in priority order), the armed stops (in arrival order), the last trade
price of every symbol, the id counters and the remembered client order ids; a restored
engine continues exactly as the original would (the property tests check this).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from tickline.matching.engine_types import OrderRecord
from tickline.matching.stops import restore_stops
from tickline.matching.types import BUY, GTD

if TYPE_CHECKING:
    from tickline.matching.engine import EngineSnapshot, MatchingEngine


def digest(engine: MatchingEngine) -> str:
    """A hex digest of the whole engine state: every book, the id counters, engine time,
    the last sequence number and the remembered client order ids. Equal digests mean
    engines that will behave identically from here on."""
    h = hashlib.blake2b(digest_size=16)
    h.update(b"%d|%d|%d|%d|" % (engine.last_seq, engine.now, engine.next_order_id,
                                engine.next_trade_id))
    for symbol in sorted(engine.books):
        h.update(engine.books[symbol].digest().encode())
    for account, clid in engine._recent_client_order:
        h.update(b"%d:%s;" % (account, clid.encode()))
    for symbol in sorted(engine.last_prices):
        h.update(b"L%s:%d;" % (symbol.encode(), engine.last_prices[symbol]))
    for symbol in sorted(engine.stops):
        h.update(engine.stops[symbol].digest().encode())
    h.update(engine._risk_digest())
    return h.hexdigest()

def check(engine: MatchingEngine) -> None:
    """Assert every invariant of every book and of the live-order index."""
    seen: set[int] = set()
    for symbol, book in engine.books.items():
        book.check()
        for order in book.orders():
            assert order.symbol == symbol
            assert engine.orders.get(order.order_id) is order, (
                f"order {order.order_id} rests but is not indexed"
            )
            seen.add(order.order_id)
    for symbol, stop_book in engine.stops.items():
        stop_book.check(engine.last_prices.get(symbol, 0))
        for order in stop_book.orders():
            assert order.symbol == symbol
            assert engine.orders.get(order.order_id) is order, (
                f"stop {order.order_id} is armed but not indexed"
            )
            assert order.order_id not in seen, f"stop {order.order_id} also rests"
            seen.add(order.order_id)
    assert seen == set(engine.orders), "index holds orders that neither rest nor are armed"
    for (account, _clid), order_id in engine._live_client_ids.items():
        assert engine.orders[order_id].account == account
    engine._check_risk()

def snapshot(engine: MatchingEngine, kind: type[EngineSnapshot]) -> EngineSnapshot:
    """A self-contained copy of the state, for the journal's snapshots."""
    record = OrderRecord.from_order
    orders = [record(o) for book in engine.books.values() for o in book.orders()]
    return kind(
        last_seq=engine.last_seq, now=engine.now, next_order_id=engine.next_order_id,
        next_trade_id=engine.next_trade_id,
        halted=[s for s, b in engine.books.items() if b.halted],
        orders=orders, recent_client_ids=list(engine._recent_client_order),
        stops=[record(o) for sb in engine.stops.values() for o in sb.orders()],
        last_prices=dict(engine.last_prices),
        positions=sorted((a, s, q) for (a, s), q in engine.positions().items()),
        disabled_accounts=sorted(engine._disabled),
    )

def restore(engine: MatchingEngine, snap: EngineSnapshot) -> None:
    """Replace this engine's state with ``snap`` (books must be empty and configured
    with the same instruments)."""
    if engine.orders or engine.last_seq:
        raise RuntimeError("restore needs a fresh engine")
    engine.last_seq = snap.last_seq
    engine.now = snap.now
    engine.next_order_id = snap.next_order_id
    engine.next_trade_id = snap.next_trade_id
    for symbol in snap.halted:
        book = engine.book(symbol)
        book.halted = True
        engine._set_move_bound(book)
    for record in snap.orders:
        order = record.to_order()
        book = engine.book(order.symbol)
        (book.bids if order.side == BUY else book.asks).add(order)
        engine.orders[order.order_id] = order
        if order.client_order_id:
            engine._live_client_ids[(order.account, order.client_order_id)] = order.order_id
        if order.tif == GTD:
            engine._schedule_expiry(order)
    for account, clid in snap.recent_client_ids:
        engine._remember_client_id((account, clid))
    engine.last_prices.update(snap.last_prices)
    restore_stops(engine, [record.to_order() for record in snap.stops])
    if engine._track_positions:
        for account, symbol, quantity in snap.positions:
            engine._exposure(account, symbol).net = quantity
    engine._disabled = set(snap.disabled_accounts)
    engine._update_gate()
    engine._recount_open()  # and the live orders' exposures


__all__ = ["check", "digest", "restore", "snapshot"]
