"""Iceberg orders: only the display slice is visible, refills go to the back of the level,
the owner sees the whole order, fill-or-kill counts the reserve correctly, and replace
follows the priority rules with the display quantity as one more size."""

from __future__ import annotations

from tests.matching.helpers import SYM, Harness, accepted_id, of_type
from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Cancelled,
    CancelReason,
    EngineConfig,
    Expired,
    LevelChanged,
    Replaced,
    STPMode,
    Trade,
)


def test_only_the_display_slice_is_visible() -> None:
    h = Harness()
    events = h.sell(1, 100, 101, display_quantity=10)
    assert events == [Accepted(1, 1, "", SYM, SELL, 1, 1, 101, 100, 0, 10),
                      LevelChanged(SYM, SELL, 101, 10, 1)]
    h.sell(2, 5, 101)
    assert h.engine.book(SYM).depth()["asks"] == [(101, 15, 2)]
    assert h.engine.book(SYM).best_ask() == (101, 15)
    order = h.engine.order(1)
    assert order is not None and (order.leaves, order.hidden) == (10, 90)


def test_refill_goes_to_the_back_and_fills_report_the_whole_order() -> None:
    h = Harness()
    ice = accepted_id(h.sell(1, 25, 101, display_quantity=10))
    plain = accepted_id(h.sell(2, 5, 101))
    events = h.buy(3, 10, 101)  # exactly the displayed slice
    assert of_type(events, Trade) == [Trade(1, SYM, 101, 10, BUY, ice, 1, 15, 3, 3, 0)]
    assert of_type(events, LevelChanged) == [LevelChanged(SYM, SELL, 101, 15, 2)]
    assert [o.order_id for o in h.engine.book(SYM).level_orders(SELL, 101)] == [plain, ice]
    events = h.buy(4, 8, 101)  # the plain order first now, then the refilled slice
    assert [(t.maker_order_id, t.quantity, t.maker_leaves) for t in of_type(events, Trade)] == [
        (plain, 5, 0), (ice, 3, 12)]


def test_one_taker_walks_through_several_slices() -> None:
    h = Harness()
    ice = accepted_id(h.sell(1, 25, 101, display_quantity=10))
    other = accepted_id(h.sell(2, 4, 101))
    events = h.buy(3, 30, 101)
    assert [(t.maker_order_id, t.quantity, t.maker_leaves) for t in of_type(events, Trade)] == [
        (ice, 10, 15), (other, 4, 0), (ice, 10, 5), (ice, 5, 0)]
    assert h.engine.order(ice) is None
    assert h.engine.book(SYM).depth()["bids"] == [(101, 1, 1)]
    assert of_type(events, LevelChanged)[-2:] == [LevelChanged(SYM, SELL, 101, 0, 0),
                                                  LevelChanged(SYM, BUY, 101, 1, 1)]


def test_an_iceberg_takes_with_its_whole_quantity_then_shows_a_slice() -> None:
    h = Harness()
    h.sell(1, 30, 100)
    events = h.buy(2, 50, 100, display_quantity=5)
    assert of_type(events, Trade)[0].quantity == 30
    assert events[-1] == LevelChanged(SYM, BUY, 100, 5, 1)
    order = h.engine.order(2)
    assert order is not None and (order.leaves, order.hidden, order.filled) == (5, 15, 30)


def test_cancel_and_expiry_report_the_whole_open_quantity() -> None:
    h = Harness()
    a = accepted_id(h.sell(1, 40, 101, display_quantity=10))
    b = accepted_id(h.sell(1, 40, 102, display_quantity=10, tif=4, expire_time=1_500))
    h.buy(2, 15, 101)
    user = int(CancelReason.USER)
    assert h.cancel(1, a) == [Cancelled(a, 1, SYM, SELL, 101, 25, user),
                              LevelChanged(SYM, SELL, 101, 0, 0)]
    assert h.tick(1_500) == [Expired(b, 1, SYM, SELL, 102, 40),
                             LevelChanged(SYM, SELL, 102, 0, 0)]


def test_self_trade_cancel_of_an_iceberg_maker_reports_all_of_it() -> None:
    h = Harness(config=EngineConfig(account_stp={1: int(STPMode.CANCEL_OLDEST)}))
    ice = accepted_id(h.sell(1, 40, 101, display_quantity=10))
    events = h.buy(1, 5, 101)
    assert Cancelled(ice, 1, SYM, SELL, 101, 40, int(CancelReason.SELF_TRADE)) in events


def test_fok_counts_the_reserve_unless_an_own_order_stops_it_first() -> None:
    fok = int(CancelReason.FOK_UNFILLABLE)
    h = Harness()
    h.sell(1, 30, 101, display_quantity=10)
    events = h.buy(2, 30, 101, tif=3)  # 10 shown + 20 in reserve: fillable
    assert sum(t.quantity for t in of_type(events, Trade)) == 30
    h = Harness()
    h.sell(1, 30, 101, display_quantity=10)
    h.sell(2, 5, 101)  # the FOK buyer's own order, queued behind the first slice
    events = h.buy(2, 12, 101, tif=3)  # 10, then its own order stops it: refills queue behind
    assert [type(e) for e in events][-1] is Cancelled and events[-1].reason == fok  # type: ignore[union-attr]
    assert of_type(events, Trade) == []
    events = h.buy(2, 10, 101, tif=3)  # the displayed 10 is reachable
    assert sum(t.quantity for t in of_type(events, Trade)) == 10


def test_replace_decrease_keeps_priority_and_takes_from_the_reserve_first() -> None:
    h = Harness()
    ice = accepted_id(h.sell(1, 40, 101, display_quantity=10))
    behind = accepted_id(h.sell(2, 5, 101))
    h.buy(3, 4, 101)  # slice 6 left, reserve 30
    events = h.replace(1, ice, quantity=20)  # open 36 -> 16: reserve 30 -> 10
    assert events == [Replaced(ice, 1, "", SYM, SELL, 101, 20, 16, True, 0, 10)]
    events = h.replace(1, ice, quantity=8)  # open 4: the slice shrinks to 4, no reserve
    assert events == [Replaced(ice, 1, "", SYM, SELL, 101, 8, 4, True, 0, 10),
                      LevelChanged(SYM, SELL, 101, 9, 2)]
    assert h.ids() == [ice, behind]


def test_replace_display_up_loses_priority_down_keeps_it() -> None:
    h = Harness()
    ice = accepted_id(h.sell(1, 40, 101, display_quantity=10))
    behind = accepted_id(h.sell(2, 5, 101))
    events = h.replace(1, ice, display_quantity=4)
    assert events == [Replaced(ice, 1, "", SYM, SELL, 101, 40, 40, True, 0, 4),
                      LevelChanged(SYM, SELL, 101, 9, 2)]
    assert h.ids() == [ice, behind]
    events = h.replace(1, ice, display_quantity=40)  # fully visible now: to the back
    assert events == [LevelChanged(SYM, SELL, 101, 5, 1),
                      Replaced(ice, 1, "", SYM, SELL, 101, 40, 40, False, 0, 40),
                      LevelChanged(SYM, SELL, 101, 45, 2)]
    assert h.ids() == [behind, ice]


def test_a_plain_order_becomes_an_iceberg_in_place() -> None:
    h = Harness()
    plain = accepted_id(h.sell(1, 40, 101))
    behind = accepted_id(h.sell(2, 5, 101))
    events = h.replace(1, plain, display_quantity=10)
    assert events == [Replaced(plain, 1, "", SYM, SELL, 101, 40, 40, True, 0, 10),
                      LevelChanged(SYM, SELL, 101, 15, 2)]
    assert h.ids() == [plain, behind]


def test_replace_to_a_crossing_price_takes_with_the_whole_order() -> None:
    h = Harness()
    h.buy(2, 25, 100)
    ice = accepted_id(h.sell(1, 40, 101, display_quantity=10))
    events = h.replace(1, ice, price=100)
    assert of_type(events, Trade)[0].quantity == 25
    assert events[-1] == LevelChanged(SYM, SELL, 100, 10, 1)
    order = h.engine.order(ice)
    assert order is not None and (order.leaves, order.hidden) == (10, 5)


def test_price_move_of_an_iceberg_goes_to_the_back_with_a_fresh_slice() -> None:
    h = Harness()
    ice = accepted_id(h.sell(1, 40, 101, display_quantity=10))
    h.buy(3, 4, 101)
    other = accepted_id(h.sell(2, 5, 102))
    events = h.replace(1, ice, price=102)
    assert events == [LevelChanged(SYM, SELL, 101, 0, 0),
                      Replaced(ice, 1, "", SYM, SELL, 102, 40, 36, False, 0, 10),
                      LevelChanged(SYM, SELL, 102, 15, 2)]
    assert h.ids() == [other, ice]
