"""The book's state as plain classes (issue 13 item 1): ``Order`` and ``Level`` are
``__slots__`` classes, not msgspec Structs, and snapshots still encode to exactly the bytes
of the format written while ``Order`` was a Struct (the ``OrderRecord`` edge), so old
snapshots load and new ones are readable by an older reader."""

from __future__ import annotations

import msgspec
import pytest

from tests.matching.commands import INSTRUMENTS, make_config, random_commands
from tickline.matching import (
    BUY,
    SELL,
    EngineSnapshot,
    Level,
    MatchingEngine,
    NewOrder,
    Order,
    OrderRecord,
    OrderType,
)
from tickline.matching.book import ORDER_FIELDS


class _StructOrder(msgspec.Struct, gc=False):
    """``Order`` exactly as it was defined when it was a Struct (the snapshot format)."""

    order_id: int
    account: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    leaves: int
    filled: int
    tif: int
    expire_time: int
    post_only: bool
    stp: int
    priority: int
    display: int = 0
    hidden: int = 0
    stop_price: int = 0
    special: bool = False


class _OldSnapshot(msgspec.Struct, kw_only=True):
    """``EngineSnapshot`` with the old ``list[Order]`` fields."""

    last_seq: int
    now: int
    next_order_id: int
    next_trade_id: int
    halted: list[str]
    orders: list[_StructOrder]
    recent_client_ids: list[tuple[int, str]]
    stops: list[_StructOrder] = msgspec.field(default_factory=list)
    last_prices: dict[str, int] = msgspec.field(default_factory=dict)
    attachments: dict[str, bytes] = msgspec.field(default_factory=dict)
    positions: list[tuple[int, str, int]] = msgspec.field(default_factory=list)
    disabled_accounts: list[int] = msgspec.field(default_factory=list)


def _busy_engine(seed: int) -> MatchingEngine:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    for cmd in random_commands(seed, 400):
        engine.process(cmd)
    # and for sure one iceberg and one armed stop
    seq = engine.last_seq
    engine.process(NewOrder(seq=seq + 1, ts=engine.now + 1, account=1, symbol="AAA",
                            side=SELL, price=900, quantity=50, display_quantity=5))
    engine.process(NewOrder(seq=seq + 2, ts=engine.now + 2, account=2, symbol="AAA",
                            side=BUY, quantity=5, order_type=int(OrderType.STOP),
                            stop_price=999))
    return engine


def test_plain_classes_have_slots_and_no_struct() -> None:
    assert not issubclass(Order, msgspec.Struct)
    assert not issubclass(Level, msgspec.Struct)
    order = Order(1, 2, "c", "AAA", BUY, 100, 10, 10, 0, 1, 0, False, 1, 7)
    with pytest.raises(AttributeError):
        order.nonexistent = 1  # type: ignore[attr-defined]
    assert tuple(ORDER_FIELDS) == tuple(OrderRecord.__struct_fields__)
    assert order.astuple() == tuple(getattr(order, f) for f in ORDER_FIELDS)
    copy = OrderRecord.from_order(order).to_order()
    assert copy == order and copy is not order
    copy.leaves = 3
    assert copy != order


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshot_bytes_are_the_struct_format(seed: int) -> None:
    engine = _busy_engine(seed)
    snap = engine.snapshot()
    assert snap.orders and snap.stops and any(o.display for o in snap.orders)
    data = msgspec.msgpack.encode(snap)
    old = msgspec.msgpack.decode(data, type=_OldSnapshot)
    assert msgspec.msgpack.encode(old) == data  # the old reader sees the same bytes
    # every field of every live order made it, in priority order
    live = [o for book in engine.books.values() for o in book.orders()]
    assert [msgspec.structs.astuple(o) for o in old.orders] == [o.astuple() for o in live]
    # and an old snapshot restores to the same engine
    fresh = MatchingEngine(INSTRUMENTS, make_config())
    fresh.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=EngineSnapshot))
    fresh.check()
    assert fresh.digest() == engine.digest()


def test_snapshot_is_a_copy() -> None:
    engine = _busy_engine(4)
    snap = engine.snapshot()
    before = msgspec.msgpack.encode(snap)
    for order in list(engine.orders.values()):
        order.priority += 1  # mutating the engine does not reach the snapshot ...
    assert msgspec.msgpack.encode(snap) == before
    fresh = MatchingEngine(INSTRUMENTS, make_config())
    fresh.restore(snap)
    snap.orders[0].leaves += 1  # ... nor the restored engine the snapshot's records
    fresh.check()


def test_emptied_levels_are_reused_and_start_clean() -> None:
    from tickline.matching import Cancel, Instrument, Replace

    engine = MatchingEngine([Instrument(symbol="X")])
    engine.process(NewOrder(seq=1, ts=1, account=1, symbol="X", side=BUY, price=100,
                            quantity=5))
    bids = engine.book("X").bids
    first = bids.levels[100]
    engine.process(Cancel(seq=2, ts=2, account=1, symbol="X", order_id=1))
    assert bids.spare == [first] and not first.orders and first.total == 0
    engine.process(NewOrder(seq=3, ts=3, account=2, symbol="X", side=BUY, price=99,
                            quantity=7))
    assert bids.levels[99] is first and bids.spare == []  # reused, not allocated
    assert (first.price, first.total, list(first.orders)) == (99, 7, [2])
    # a move to an empty price reuses the level it leaves behind
    engine.process(Replace(seq=4, ts=4, account=2, symbol="X", order_id=2, price=98))
    assert bids.levels == {98: first} and first.total == 7
    assert engine.book("X").depth(5)["bids"] == [(98, 7, 1)]
    engine.check()
