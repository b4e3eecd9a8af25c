"""Stop-market and stop-limit orders: arming, trigger directions, the last trade price,
immediate triggers, cascade order and bound, cancel, replace, expiry and snapshots."""

from __future__ import annotations

import random

import msgspec
import pytest

from tests.matching.helpers import SYM, Harness, accepted_id, non_depth, of_type
from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Cancelled,
    CancelReason,
    EngineConfig,
    EngineSnapshot,
    Event,
    Expired,
    Instrument,
    LevelChanged,
    MatchingEngine,
    OrderType,
    Replaced,
    Trade,
    Triggered,
)

STOP, STOP_LIMIT = int(OrderType.STOP), int(OrderType.STOP_LIMIT)
MARKET, LIMIT = int(OrderType.MARKET), int(OrderType.LIMIT)


def trade_at(h: Harness, price: int, qty: int = 1, seller: int = 8, buyer: int = 9
             ) -> list[Event]:
    """Make one trade at ``price`` between two accounts that own no stops."""
    h.sell(seller, qty, price)
    return h.buy(buyer, qty, price)


def test_an_armed_stop_is_invisible_and_takes_nothing() -> None:
    h = Harness()
    h.sell(1, 10, 101)
    events = h.buy(2, 5, 105, order_type=STOP_LIMIT, stop_price=103)
    assert events == [Accepted(2, 2, "", SYM, BUY, STOP_LIMIT, 1, 105, 5, 103, 0)]
    assert h.ids() == [1]  # not in the book, although its limit crosses the ask
    assert h.engine.book(SYM).depth() == {"bids": [], "asks": [(101, 10, 1)]}
    assert h.engine.order(2) is not None  # but live: cancel and replace find it


def test_no_trigger_before_the_first_trade_then_largest_overshoot_first() -> None:
    """Before the first trade there is no last price: stops on both sides wait, whatever
    their stop price. The first trade (at 100) makes both due; the sell stop at 102
    overshoots more (2 vs 1) and goes first; its sale at 90 moves the last price below the
    buy stop at 99, which stays armed."""
    h = Harness()
    buy_stop = accepted_id(h.buy(1, 5, order_type=STOP, stop_price=99))
    sell_stop = accepted_id(h.sell(1, 5, order_type=STOP, stop_price=102))
    h.sell(2, 5, 100)
    h.buy(3, 5, 90)
    assert sorted(h.engine.orders) == [buy_stop, sell_stop, 3, 4]
    events = h.buy(4, 1, 100)  # the first trade
    assert [t.order_id for t in of_type(events, Triggered)] == [sell_stop]
    assert [(t.price, t.quantity) for t in of_type(events, Trade)] == [(100, 1), (90, 5)]
    assert h.engine.last_prices[SYM] == 90
    assert list(h.engine.stops[SYM].buys) == [buy_stop]


def test_buy_stop_triggers_at_or_above_sell_stop_at_or_below() -> None:
    h = Harness()
    for p in (102, 104):
        h.sell(5, 50, p)
    h.buy(5, 50, 95)
    h.buy(5, 50, 94)
    trade_at(h, 99)
    buy_stop = accepted_id(h.buy(1, 3, order_type=STOP, stop_price=101))
    sell_stop = accepted_id(h.sell(2, 3, order_type=STOP, stop_price=96))
    assert not of_type(trade_at(h, 100), Triggered)  # 100 < 101 and 100 > 96
    events = trade_at(h, 101)  # touches the buy stop exactly
    [trig] = of_type(events, Triggered)
    assert trig == Triggered(buy_stop, 1, "", SYM, BUY, MARKET, 0, 101, 3)
    assert of_type(events, Trade)[-1].taker_order_id == buy_stop
    assert of_type(trade_at(h, 97), Triggered) == []
    events = trade_at(h, 96)
    assert [t.order_id for t in of_type(events, Triggered)] == [sell_stop]
    assert of_type(events, Trade)[-1].price == 95  # sold into the best bid
    h.engine.check()


def test_stop_market_remainder_is_cancelled_and_events_are_in_order() -> None:
    h = Harness()
    trade_at(h, 100)
    stop = accepted_id(h.buy(1, 10, order_type=STOP, stop_price=101))
    h.sell(2, 4, 101)
    events = h.buy(3, 1, 101)  # trades 1 at 101: the stop triggers and takes the other 3
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Accepted", "Trade", "LevelChanged", "Triggered", "Trade", "LevelChanged",
                     "Cancelled"]
    assert events[-1] == Cancelled(stop, 1, SYM, BUY, 0, 7, int(CancelReason.MARKET_REMAINDER))


def test_stop_limit_rests_with_priority_from_its_trigger() -> None:
    h = Harness()
    trade_at(h, 100)
    stop = accepted_id(h.buy(1, 5, 99, order_type=STOP_LIMIT, stop_price=101))
    early = accepted_id(h.buy(2, 5, 99))  # arrives after the stop, rests before it
    events = trade_at(h, 101)
    assert of_type(events, Triggered) == [Triggered(stop, 1, "", SYM, BUY, LIMIT, 99, 101, 5)]
    assert LevelChanged(SYM, BUY, 99, 10, 2) in events
    level = h.engine.book(SYM).level_orders(BUY, 99)
    assert [o.order_id for o in level] == [early, stop]
    assert level[1].priority == h.seq and level[1].stop_price == 0


def test_a_stop_due_on_entry_triggers_immediately() -> None:
    h = Harness()
    trade_at(h, 100)
    h.sell(2, 5, 100)
    events = h.buy(1, 3, order_type=STOP, stop_price=100, client_order_id="s")
    assert [type(e) for e in events] == [Accepted, Triggered, Trade, LevelChanged]
    assert events[0] == Accepted(4, 1, "s", SYM, BUY, STOP, 1, 0, 3, 100, 0)
    assert events[2].quantity == 3 and events[2].taker_order_id == 4  # type: ignore[union-attr]
    assert h.engine.order(4) is None  # filled; its client id is remembered as finished


def test_cascade_runs_in_trigger_order_within_the_command() -> None:
    """Buy stops at 103, 101, 102 (arrival order) and two at 101: a trade at 103 triggers
    them by trigger price, then arrival; each triggered buy lifts the ask and the trades move
    the last price, which triggers a further stop at 104 in the same command."""
    h = Harness()
    trade_at(h, 100)
    for p in (101, 102, 103, 104, 105):
        h.sell(5, 1, p)
    ids = [accepted_id(h.buy(1, 1, order_type=STOP, stop_price=s))
           for s in (103, 101, 102, 101)]
    late = accepted_id(h.buy(2, 1, order_type=STOP, stop_price=106))
    events = h.buy(3, 1, 101)  # takes 101: last 101 triggers ids[1], ids[3]
    order = [t.order_id for t in of_type(events, Triggered)]
    # 101 (first arrival), 101 (second): take 102, 103 -> last 103 -> 102-stop, 103-stop
    # take 104, 105 -> last 105; the 106-stop stays armed
    assert order == [ids[1], ids[3], ids[2], ids[0]]
    assert [t.price for t in of_type(events, Trade)] == [101, 102, 103, 104, 105]
    assert h.engine.order(late) is not None and h.engine.last_prices[SYM] == 105


def test_the_cascade_bound_cancels_the_stops_still_due() -> None:
    h = Harness(config=EngineConfig(max_stop_triggers=2))
    trade_at(h, 100)
    h.sell(5, 3, 101)
    ids = [accepted_id(h.buy(1, 1, 101, order_type=STOP_LIMIT, stop_price=101))
           for _ in range(4)]
    events = trade_at(h, 101)
    assert [t.order_id for t in of_type(events, Triggered)] == ids[:2]
    cancels = of_type(events, Cancelled)
    limit = int(CancelReason.STOP_TRIGGER_LIMIT)
    assert cancels == [Cancelled(i, 1, SYM, BUY, 101, 1, limit) for i in ids[2:]]
    assert SYM not in h.engine.stops  # nothing armed is left due (check() asserts it)
    # the bound is per command: the next command triggers afresh
    h.buy(7, 1, 101)  # clears the ask at 101 that trade_at left
    again = [accepted_id(h.buy(1, 1, 105, order_type=STOP_LIMIT, stop_price=105))
             for _ in range(3)]
    h.sell(5, 10, 105)
    events = trade_at(h, 105)
    assert [t.order_id for t in of_type(events, Triggered)] == again[:2]
    assert [c.order_id for c in of_type(events, Cancelled)] == again[2:]


def test_cancel_a_stop_by_id_and_by_client_id() -> None:
    h = Harness()
    a = accepted_id(h.buy(1, 5, order_type=STOP, stop_price=101))
    accepted_id(h.sell(1, 7, 95, order_type=STOP_LIMIT, stop_price=96, client_order_id="s"))
    assert h.cancel(1, a) == [Cancelled(a, 1, SYM, BUY, 0, 5, int(CancelReason.USER))]
    assert h.cancel(1, orig_client_order_id="s") == [
        Cancelled(2, 1, SYM, SELL, 95, 7, int(CancelReason.USER))]
    assert h.engine.stops == {} and h.engine.orders == {}
    assert h.cancel(2, a)[0].reason == 301  # type: ignore[union-attr]


def test_replace_a_stop_price_limit_and_quantity() -> None:
    h = Harness()
    trade_at(h, 100)
    h.sell(5, 10, 103)
    a = accepted_id(h.buy(1, 5, 103, order_type=STOP_LIMIT, stop_price=102))
    b = accepted_id(h.buy(1, 5, 103, order_type=STOP_LIMIT, stop_price=102))
    assert h.replace(1, a, quantity=4) == [
        Replaced(a, 1, "", SYM, BUY, 103, 4, 4, True, 102, 0)]
    assert h.replace(1, b, price=104) == [
        Replaced(b, 1, "", SYM, BUY, 104, 5, 5, False, 102, 0)]
    # a new stop price that is already touched triggers at once; its trade at 103 makes
    # b due too, in the same command
    events = h.replace(1, a, stop_price=100)
    assert [type(e) for e in events] == [Replaced, Triggered, Trade, LevelChanged,
                                         Triggered, Trade, LevelChanged]
    assert events[0] == Replaced(a, 1, "", SYM, BUY, 103, 4, 4, False, 100, 0)
    assert [(t.taker_order_id, t.price, t.quantity) for t in of_type(events, Trade)] == [
        (a, 103, 4), (b, 103, 5)]
    assert events[-1] == LevelChanged(SYM, SELL, 103, 1, 1)


def test_replace_of_a_stop_moves_its_arrival_unless_only_reduced() -> None:
    h = Harness()
    trade_at(h, 100)
    h.sell(5, 10, 110)
    a = accepted_id(h.buy(1, 1, order_type=STOP, stop_price=102))
    b = accepted_id(h.buy(2, 1, order_type=STOP, stop_price=102))
    h.replace(1, a, quantity=2)  # an increase: a's arrival is now after b's
    events = trade_at(h, 102)
    assert [t.order_id for t in of_type(events, Triggered)] == [b, a]


def test_gtd_stop_expires_while_armed_and_after_trigger() -> None:
    h = Harness()
    trade_at(h, 100)
    a = accepted_id(h.buy(1, 5, 99, order_type=STOP_LIMIT, stop_price=105, tif=4,
                          expire_time=5_000))
    b = accepted_id(h.buy(1, 5, 99, order_type=STOP_LIMIT, stop_price=101, tif=4,
                          expire_time=6_000))
    trade_at(h, 101)  # b triggers and rests at 99
    assert h.ids() == [b]
    assert h.tick(5_000) == [Expired(a, 1, SYM, BUY, 99, 5)]
    events = h.tick(6_000)
    assert events == [Expired(b, 1, SYM, BUY, 99, 5), LevelChanged(SYM, BUY, 99, 0, 0)]
    assert h.engine.orders == {} and h.engine.stops == {}


def test_fok_stop_limit_that_cannot_fill_is_cancelled_whole() -> None:
    h = Harness()
    trade_at(h, 100)
    h.sell(5, 2, 101)
    events = h.buy(1, 5, 101, order_type=STOP_LIMIT, stop_price=100, tif=3)
    stop = accepted_id(events)
    assert non_depth(events)[1:] == [
        Triggered(stop, 1, "", SYM, BUY, LIMIT, 101, 100, 5),
        Cancelled(stop, 1, SYM, BUY, 101, 5, int(CancelReason.FOK_UNFILLABLE))]
    assert h.engine.book(SYM).depth()["asks"] == [(101, 2, 1)]


def test_snapshot_carries_stops_and_last_prices() -> None:
    inst = [Instrument(symbol=SYM)]
    h = Harness(inst)
    trade_at(h, 100)
    h.buy(1, 5, 104, order_type=STOP_LIMIT, stop_price=103, client_order_id="x")
    h.sell(2, 5, order_type=STOP, stop_price=97, tif=4, expire_time=9_000)
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(h.engine.snapshot()),
                                  type=EngineSnapshot)
    assert [o.stop_price for o in snap.stops] == [103, 97]
    assert snap.last_prices == {SYM: 100}
    fresh = MatchingEngine(inst)
    fresh.restore(snap)
    fresh.check()
    assert fresh.digest() == h.engine.digest()
    assert fresh.next_expiry == 9_000
    assert fresh._client_id_taken(1, "x")


def test_digest_sees_stops_and_the_last_price() -> None:
    h = Harness()
    d0 = h.engine.digest()
    h.buy(1, 5, order_type=STOP, stop_price=101)
    d1 = h.engine.digest()
    assert d1 != d0 and h.books_digest() == Harness().books_digest()
    trade_at(h, 99)
    h2 = Harness()
    h2.buy(1, 5, order_type=STOP, stop_price=101)
    trade_at(h2, 98)
    assert [h.engine.book(SYM).digest()] == [h2.engine.book(SYM).digest()]
    assert h.engine.digest() != h2.engine.digest()  # only the last price differs


def test_check_detects_broken_stop_and_iceberg_invariants() -> None:
    """The invariant checker can fail on each new invariant."""
    def armed() -> Harness:
        h = Harness()
        trade_at(h, 100)
        h.buy(1, 5, order_type=STOP, stop_price=105)
        h.sell(1, 5, order_type=STOP, stop_price=95)
        h.sell(2, 30, 110, display_quantity=10)
        h.engine.check()
        return h

    corruptions = {
        "due stop left armed": lambda h: h.engine.last_prices.__setitem__(SYM, 105),
        "stale trigger": lambda h: setattr(h.engine.stops[SYM], "buy_trigger", 104),
        "stop not indexed": lambda h: h.engine.orders.pop(4),
        "stop with fills": lambda h: setattr(h.engine.orders[4], "filled", 1),
        "iceberg shows too much": lambda h: setattr(h.engine.orders[5], "display", 5),
        "reserve without display": lambda h: setattr(h.engine.orders[5], "display", 0),
        "reserve overfull": lambda h: setattr(h.engine.orders[5], "hidden", 30),
        "armed stop in a level": lambda h: setattr(h.engine.orders[5], "stop_price", 1),
    }
    for name, corrupt in corruptions.items():
        h = armed()
        corrupt(h)
        with pytest.raises(AssertionError):
            h.engine.check()
            raise RuntimeError(f"check() missed: {name}")


def test_trigger_order_survives_many_cancels_and_replaces() -> None:
    """The stop book's lazy heaps: after random cancels and replaces (kept and not kept
    priority) of hundreds of stops, one sweep triggers exactly the live stops, in (stop
    price, arrival, id) order, and the bound cuts the tail."""
    rng = random.Random(5)
    h = Harness(config=EngineConfig(max_stop_triggers=250))
    trade_at(h, 100)
    h.sell(5, 10_000, 200)
    ids = [accepted_id(h.buy(1 + i % 3, 1, order_type=STOP, stop_price=rng.randint(101, 150)))
           for i in range(400)]
    for oid in rng.sample(ids, 120):
        o = h.engine.order(oid)
        assert o is not None
        what = rng.random()
        if what < 0.4:
            h.cancel(o.account, oid)
        elif what < 0.7:
            h.replace(o.account, oid, stop_price=rng.randint(101, 150))
        else:
            h.replace(o.account, oid, quantity=1 if rng.random() < 0.5 else 2)
    live = sorted((o.stop_price, o.priority, o.order_id) for o in h.engine.orders.values()
                  if o.stop_price)
    events = trade_at(h, 150, seller=6, buyer=7)  # also touches every stop: 150 >= all
    triggered = [t.order_id for t in of_type(events, Triggered)]
    assert triggered == [oid for _s, _p, oid in live[:250]]
    assert [c.order_id for c in of_type(events, Cancelled)] == [oid for *_k, oid in live[250:]]
    assert SYM not in h.engine.stops
