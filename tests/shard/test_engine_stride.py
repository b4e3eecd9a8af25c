"""A shard's engine numbers its orders ``shard+1, shard+1+N, ...`` (``order_id_step``): limit
orders and stops alike, across a snapshot restore, in both builds (the compiled
``MatchingEngine`` is a native class: the shard engine is a plain one, not a subclass)."""

from __future__ import annotations

from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Instrument,
    MatchingEngine,
    NewOrder,
    OrderType,
)
from tickline.shard.engine import engine_for_shard, shard_of_order

ABC = Instrument(symbol="ABC")


def _accepted_id(engine: MatchingEngine, seq: int, **fields: object) -> int:
    events = engine.process(NewOrder(seq=seq, ts=seq, account=1, symbol="ABC", **fields))
    assert type(events[0]) is Accepted, events
    return events[0].order_id


def test_order_ids_step_by_the_shard_count_for_orders_and_stops() -> None:
    engine = engine_for_shard([ABC], None, 1, 3)
    assert type(engine) is MatchingEngine
    ids = [_accepted_id(engine, 1, side=BUY, price=100, quantity=1),
           _accepted_id(engine, 2, side=SELL, price=101, quantity=1),
           _accepted_id(engine, 3, side=BUY, price=0, quantity=1,
                        order_type=int(OrderType.STOP), stop_price=105)]
    assert ids == [2, 5, 8]
    assert {shard_of_order(i, 3) for i in ids} == {1}
    restored = engine_for_shard([ABC], None, 1, 3)
    restored.restore(engine.snapshot())
    assert _accepted_id(restored, 4, side=BUY, price=99, quantity=1) == 11


def test_a_plain_engine_steps_by_one() -> None:
    engine = MatchingEngine([ABC])
    assert engine.order_id_step == 1
    assert [_accepted_id(engine, s, side=BUY, price=100 - s, quantity=1)
            for s in (1, 2)] == [1, 2]
