"""Market data of icebergs: the L3 feed, depth and the publisher's mirror show only the
visible slice; a refill is the slice leaving (executed to 0) and a new slice added at the back
of its level, in event order even when the refilled slice trades again in the same command."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.matching.commands import INSTRUMENTS, make_config, random_commands
from tickline.matching import BUY, SELL, Instrument, MatchingEngine, NewOrder, Replace
from tickline.stream import (
    Bus,
    MarketDataPublisher,
    OrderAdded,
    OrderDeleted,
    OrderExecuted,
    OrderModified,
)

SYM = "AAA"


class L3Book:
    """A strict L3 consumer: per (side, price) level, orders in arrival order with their
    visible quantity. Every message must make sense against what it has seen (an execution
    of a known order whose quantity adds up, an add of an order not shown, ...)."""

    def __init__(self, snapshot: list[tuple[int, int, int, int]] | None = None) -> None:
        self.levels: dict[tuple[int, int], dict[int, int]] = {}
        self.where: dict[int, tuple[int, int]] = {}
        for order_id, side, price, qty in snapshot or ():
            self._add(order_id, side, price, qty)

    def _add(self, order_id: int, side: int, price: int, qty: int) -> None:
        assert order_id not in self.where, f"order {order_id} added twice"
        assert qty > 0
        self.levels.setdefault((side, price), {})[order_id] = qty
        self.where[order_id] = (side, price)

    def _remove(self, order_id: int) -> None:
        key = self.where.pop(order_id)
        del self.levels[key][order_id]
        if not self.levels[key]:
            del self.levels[key]

    def apply(self, msg: Any) -> None:
        kind = type(msg)
        if kind is OrderAdded:
            self._add(msg.order_id, msg.side, msg.price, msg.quantity)
            return
        key = self.where[msg.order_id]
        assert key == (msg.side, msg.price), msg
        level = self.levels[key]
        if kind is OrderExecuted:
            assert level[msg.order_id] - msg.quantity == msg.leaves, msg
            level[msg.order_id] = msg.leaves
            if msg.leaves == 0:
                self._remove(msg.order_id)
        elif kind is OrderModified:
            level[msg.order_id] = msg.quantity
        else:
            assert kind is OrderDeleted
            self._remove(msg.order_id)

    def view(self) -> dict[tuple[int, int], list[tuple[int, int]]]:
        return {k: list(v.items()) for k, v in self.levels.items()}


def engine_view(engine: MatchingEngine, symbol: str) -> dict[tuple[int, int],
                                                             list[tuple[int, int]]]:
    """The engine's book, level by level, in priority order, visible quantities."""
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for o in engine.books[symbol].orders():
        out.setdefault((o.side, o.price), []).append((o.order_id, o.leaves))
    return out


def _setup() -> tuple[MatchingEngine, Bus, MarketDataPublisher]:
    instruments = [Instrument(symbol=SYM)]
    bus = Bus(default_capacity=1_000_000)
    return MatchingEngine(instruments), bus, MarketDataPublisher(bus, instruments)


def test_refill_inside_a_multi_fill_taker_is_exec_to_zero_then_add_in_event_order() -> None:
    engine, bus, md = _setup()
    sub = bus.subscribe(f"l3.{SYM}")
    depth = bus.subscribe(f"depth.{SYM}")
    cmds = [NewOrder(seq=1, ts=1, account=1, symbol=SYM, side=SELL, price=101, quantity=25,
                     display_quantity=10),
            NewOrder(seq=2, ts=2, account=2, symbol=SYM, side=SELL, price=101, quantity=4)]
    for c in cmds:
        md.publish(c.seq, c.ts, engine.process(c))
    book = L3Book()
    for msg in sub.drain():
        book.apply(msg)
    assert book.view() == {(SELL, 101): [(1, 10), (2, 4)]}  # the reserve (15) is not shown
    assert [(d.quantity, d.order_count) for d in depth.drain()] == [(10, 1), (14, 2)]
    # One taker: slice 1 (10), the plain order (4), the refilled slice (10), the last 5 of
    # the reserve, then it rests with 1 -- the refilled slice trades twice in this command.
    taker = NewOrder(seq=3, ts=3, account=3, symbol=SYM, side=BUY, price=101, quantity=30)
    md.publish(3, 3, engine.process(taker))
    msgs = sub.drain()
    assert [(type(m).__name__, m.order_id, getattr(m, "leaves", getattr(m, "quantity", 0)))
            for m in msgs] == [
        ("OrderExecuted", 1, 0), ("OrderAdded", 1, 10),   # slice 1 leaves, slice 2 at back
        ("OrderExecuted", 2, 0),
        ("OrderExecuted", 1, 0), ("OrderAdded", 1, 5),    # slice 2 leaves, slice 3 (last 5)
        ("OrderExecuted", 1, 0),
        ("OrderAdded", 3, 1),                             # the taker's remainder rests
    ]
    for msg in msgs:
        book.apply(msg)
    assert book.view() == engine_view(engine, SYM) == {(BUY, 101): [(3, 1)]}
    md.check(engine.books)


def test_refill_goes_behind_the_level_and_replace_shrinks_the_slice() -> None:
    engine, bus, md = _setup()
    sub = bus.subscribe(f"l3.{SYM}")
    book = L3Book()
    cmds: list[Any] = [
        NewOrder(seq=1, ts=1, account=1, symbol=SYM, side=BUY, price=99, quantity=50,
                 display_quantity=10),
        NewOrder(seq=2, ts=2, account=2, symbol=SYM, side=BUY, price=99, quantity=7),
        NewOrder(seq=3, ts=3, account=3, symbol=SYM, side=SELL, price=99, quantity=12),
        # (the sell took slice 1 and 2 of order 2: level [2 (5), 1 (10, reserve 30)])
        # keeps priority: total 30 (open 20), display 4 -> slice min(10, 4, 20) = 4
        Replace(seq=4, ts=4, account=1, symbol=SYM, order_id=1, quantity=30,
                display_quantity=4),
        # loses priority: a higher price; trades nothing, rests with one fresh slice
        Replace(seq=5, ts=5, account=1, symbol=SYM, order_id=1, price=100),
    ]
    for c in cmds:
        md.publish(c.seq, c.ts, engine.process(c))
        for msg in sub.drain():
            book.apply(msg)
        assert book.view() == engine_view(engine, SYM), c
        md.check(engine.books)
        snap = md.l3_snapshot(SYM)
        assert L3Book(snap.orders).view() == book.view()
    assert engine_view(engine, SYM) == {(BUY, 99): [(2, 5)], (BUY, 100): [(1, 4)]}


def _run(seed: int, n: int, batch: int, join_at: int) -> None:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    bus = Bus(default_capacity=1_000_000)
    md = MarketDataPublisher(bus, INSTRUMENTS)
    symbols = [i.symbol for i in INSTRUMENTS]
    books: dict[str, L3Book] = {}
    subs: dict[str, Any] = {}
    icebergs = 0
    pending: list[tuple[int, int, list[Any]]] = []
    cmds = random_commands(seed, n)
    for i, cmd in enumerate(cmds):
        if isinstance(cmd, NewOrder) and cmd.display_quantity:
            icebergs += 1
        pending.append((cmd.seq, cmd.ts, engine.process(cmd)))
        if len(pending) < batch and i != len(cmds) - 1:
            continue
        md.publish_batch(pending)
        pending = []
        if i >= join_at and not subs:  # join late: snapshot, then the stream
            for s in symbols:
                snap, subs[s] = md.subscribe_l3(s)
                books[s] = L3Book(snap.orders)
        md.check(engine.books)
        for s, sub in subs.items():
            for msg in sub.drain():
                books[s].apply(msg)
            assert books[s].view() == engine_view(engine, s)
            for o in engine.books[s].orders():  # never more than a slice is on show
                assert not o.display or dict(books[s].levels[(o.side, o.price)])[
                    o.order_id] <= o.display
            # level order counts and totals on L3 equal depth (visible only)
            depth = md.depth_snapshot(s)
            for side, levels in ((BUY, depth.bids), (SELL, depth.asks)):
                for price, total, count in levels:
                    shown = books[s].levels[(side, price)]
                    assert (sum(shown.values()), len(shown)) == (total, count)
    assert icebergs > 10


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.sampled_from([1, 1, 4, 19]),
       join_at=st.integers(0, 200))
def test_l3_rebuilt_from_the_feed_equals_the_engines_visible_book(
        seed: int, batch: int, join_at: int) -> None:
    _run(seed, 600, batch, join_at)


def test_publisher_seeded_from_books_with_icebergs_hides_their_reserve() -> None:
    engine, _bus, _md = _setup()
    engine.process(NewOrder(seq=1, ts=1, account=1, symbol=SYM, side=SELL, price=101,
                            quantity=40, display_quantity=5))
    bus = Bus()
    md = MarketDataPublisher(bus, [Instrument(symbol=SYM)], books=engine.books)
    md.check(engine.books)
    assert md.l3_snapshot(SYM).orders == [(1, SELL, 101, 5)]
    sub = bus.subscribe(f"l3.{SYM}")
    md.publish(2, 2, engine.process(NewOrder(seq=2, ts=2, account=2, symbol=SYM, side=BUY,
                                             price=101, quantity=6)))
    assert [(type(m).__name__, m.order_id, getattr(m, "leaves", m.quantity))
            for m in sub.drain()] == [
        ("OrderExecuted", 1, 0), ("OrderAdded", 1, 5), ("OrderExecuted", 1, 4)]
    md.check(engine.books)


def test_a_stop_triggered_in_the_command_trades_with_the_order_that_just_rested() -> None:
    """The order that triggers a stop rests *before* the stop trades with it: its L3 add
    comes at its level change, ahead of the execution (not at the end of the command)."""
    engine, bus, md = _setup()
    sub = bus.subscribe(f"l3.{SYM}")
    cmds: list[Any] = [
        NewOrder(seq=1, ts=1, account=3, symbol=SYM, side=SELL, price=100, quantity=1),
        NewOrder(seq=2, ts=2, account=4, symbol=SYM, side=BUY, price=100, quantity=1),
        NewOrder(seq=3, ts=3, account=3, symbol=SYM, side=SELL, price=98, quantity=3),
        NewOrder(seq=4, ts=4, account=3, symbol=SYM, side=SELL, order_type=4, price=98,
                 stop_price=99, quantity=1),  # sell stop-limit: triggers at last <= 99
        NewOrder(seq=5, ts=5, account=1, symbol=SYM, side=BUY, price=103, quantity=5,
                 display_quantity=3),
    ]
    book = L3Book()
    for c in cmds:
        md.publish(c.seq, c.ts, engine.process(c))
        msgs = sub.drain()
        for msg in msgs:
            book.apply(msg)
        md.check(engine.books)
    assert [(type(m).__name__, m.order_id) for m in msgs] == [
        ("OrderExecuted", 3), ("OrderAdded", 5), ("OrderExecuted", 5)]
    assert book.view() == engine_view(engine, SYM) == {(BUY, 103): [(5, 1)]}
