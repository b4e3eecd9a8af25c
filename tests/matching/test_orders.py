"""Unit tests: order types, time in force, post-only, trades and the events they produce.

Every expectation is an exact event list: the engine's output *is* its contract."""

from __future__ import annotations

import pytest

from tests.matching.helpers import SYM, Harness, accepted_id, non_depth, of_type
from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Cancelled,
    CancelReason,
    EngineConfig,
    Expired,
    Instrument,
    LevelChanged,
    OrderType,
    Rejected,
    RejectReason,
    STPMode,
    TimeInForce,
    Trade,
)

LIMIT, MARKET = int(OrderType.LIMIT), int(OrderType.MARKET)
GTC, IOC, FOK, GTD = (int(t) for t in TimeInForce)


def acc(oid: int, account: int, side: int, price: int, qty: int, *, tif: int = GTC,
        order_type: int = LIMIT, clid: str = "") -> Accepted:
    return Accepted(oid, account, clid, SYM, side, order_type, tif, price, qty)


def lvl(side: int, price: int, qty: int, count: int) -> LevelChanged:
    return LevelChanged(SYM, side, price, qty, count)


def cxl(oid: int, account: int, side: int, price: int, qty: int, reason: CancelReason
        ) -> Cancelled:
    return Cancelled(oid, account, SYM, side, price, qty, int(reason))


# -- limit orders ---------------------------------------------------------------------------


def test_limit_order_rests_and_gets_engine_ids() -> None:
    h = Harness()
    assert h.buy(7, 10, 100, client_order_id="mine") == [
        acc(1, 7, BUY, 100, 10, clid="mine"), lvl(BUY, 100, 10, 1)]
    assert h.sell(8, 5, 105) == [acc(2, 8, SELL, 105, 5), lvl(SELL, 105, 5, 1)]
    book = h.engine.book(SYM)
    assert book.best_bid() == (100, 10)
    assert book.best_ask() == (105, 5)
    order = h.engine.order(1)
    assert order is not None
    assert (order.leaves, order.filled, order.quantity) == (10, 0, 10)


def test_crossing_limit_trades_at_the_makers_price() -> None:
    h = Harness()
    h.sell(1, 10, 100)
    events = h.buy(2, 4, 103)
    assert events == [
        acc(2, 2, BUY, 103, 4),
        Trade(1, SYM, 100, 4, BUY, 1, 1, 6, 2, 2, 0),
        lvl(SELL, 100, 6, 1),
    ]
    # the other direction: a sell taker trades at the resting bid's price
    h.buy(3, 5, 99)
    events = h.sell(4, 5, 90)
    assert events[1] == Trade(2, SYM, 99, 5, SELL, 3, 3, 0, 4, 4, 0)
    assert events[2:] == [lvl(BUY, 99, 0, 0)]


def test_limit_walks_levels_best_first_and_fifo_within_a_level() -> None:
    h = Harness()
    h.sell(1, 5, 101)  # id 1
    h.sell(2, 5, 100)  # id 2: better price, later
    h.sell(3, 5, 101)  # id 3: same price as 1, later
    events = h.buy(4, 12, 101)
    trades = of_type(events, Trade)
    assert [(t.trade_id, t.maker_order_id, t.price, t.quantity, t.maker_leaves, t.taker_leaves)
            for t in trades] == [(1, 2, 100, 5, 0, 7), (2, 1, 101, 5, 0, 2),
                                 (3, 3, 101, 2, 3, 0)]
    assert of_type(events, LevelChanged) == [lvl(SELL, 100, 0, 0), lvl(SELL, 101, 3, 1)]
    assert h.ids() == [3]


def test_limit_partial_fill_rests_the_remainder() -> None:
    h = Harness()
    h.sell(1, 5, 100)
    assert h.buy(2, 8, 100) == [
        acc(2, 2, BUY, 100, 8),
        Trade(1, SYM, 100, 5, BUY, 1, 1, 0, 2, 2, 3),
        lvl(SELL, 100, 0, 0),
        lvl(BUY, 100, 3, 1),
    ]
    order = h.engine.order(2)
    assert order is not None
    assert (order.quantity, order.leaves, order.filled) == (8, 3, 5)
    assert h.engine.order(1) is None  # filled orders leave the index


def test_limit_does_not_trade_through_its_price() -> None:
    h = Harness()
    h.sell(1, 5, 102)
    events = h.buy(2, 5, 101)
    assert not of_type(events, Trade)
    assert h.engine.book(SYM).best_bid() == (101, 5)


# -- market orders --------------------------------------------------------------------------


def test_market_order_sweeps_and_reports_ioc() -> None:
    h = Harness()
    h.sell(1, 5, 100)
    h.sell(1, 5, 102)
    events = h.buy(2, 7, order_type=MARKET)
    assert events == [
        acc(3, 2, BUY, 0, 7, tif=IOC, order_type=MARKET),
        Trade(1, SYM, 100, 5, BUY, 1, 1, 0, 3, 2, 2),
        lvl(SELL, 100, 0, 0),
        Trade(2, SYM, 102, 2, BUY, 2, 1, 3, 3, 2, 0),
        lvl(SELL, 102, 3, 1),
    ]


def test_market_order_price_is_ignored() -> None:
    h = Harness()
    h.buy(1, 5, 50)
    events = h.sell(2, 5, -7, order_type=MARKET)  # nonsense price: ignored, not validated
    assert of_type(events, Trade)[0].price == 50


@pytest.mark.parametrize("tif", [GTC, IOC, GTD])
def test_market_remainder_is_cancelled_never_rests(tif: int) -> None:
    h = Harness()
    h.sell(1, 3, 100)
    events = h.buy(2, 10, order_type=MARKET, tif=tif, expire_time=5)
    assert events[0] == acc(2, 2, BUY, 0, 10, tif=IOC, order_type=MARKET)
    assert events[-1] == cxl(2, 2, BUY, 0, 7, CancelReason.MARKET_REMAINDER)
    assert h.engine.book(SYM).orders() == []


def test_market_order_into_an_empty_book_is_cancelled_whole() -> None:
    h = Harness()
    assert h.sell(1, 4, order_type=MARKET) == [
        acc(1, 1, SELL, 0, 4, tif=IOC, order_type=MARKET),
        cxl(1, 1, SELL, 0, 4, CancelReason.MARKET_REMAINDER),
    ]


def test_market_fok() -> None:
    h = Harness()
    h.sell(1, 3, 100)
    h.sell(1, 3, 110)
    before = h.book_state()
    events = h.buy(2, 7, order_type=MARKET, tif=FOK)
    assert events == [acc(3, 2, BUY, 0, 7, tif=FOK, order_type=MARKET),
                      cxl(3, 2, BUY, 0, 7, CancelReason.FOK_UNFILLABLE)]
    assert h.book_state() == before
    events = h.buy(2, 6, order_type=MARKET, tif=FOK)
    assert [t.quantity for t in of_type(events, Trade)] == [3, 3]
    assert not of_type(events, Cancelled)


# -- IOC and FOK ----------------------------------------------------------------------------


def test_ioc_trades_then_cancels_the_remainder() -> None:
    h = Harness()
    h.sell(1, 4, 100)
    assert h.buy(2, 10, 100, tif=IOC) == [
        acc(2, 2, BUY, 100, 10, tif=IOC),
        Trade(1, SYM, 100, 4, BUY, 1, 1, 0, 2, 2, 6),
        lvl(SELL, 100, 0, 0),
        cxl(2, 2, BUY, 100, 6, CancelReason.IOC_REMAINDER),
    ]
    assert h.engine.book(SYM).orders() == []


def test_ioc_that_does_not_cross_is_cancelled_whole() -> None:
    h = Harness()
    h.sell(1, 4, 101)
    assert h.buy(2, 3, 100, tif=IOC) == [
        acc(2, 2, BUY, 100, 3, tif=IOC), cxl(2, 2, BUY, 100, 3, CancelReason.IOC_REMAINDER)]


def test_ioc_filled_completely_has_no_cancel() -> None:
    h = Harness()
    h.sell(1, 4, 100)
    assert not of_type(h.buy(2, 4, 100, tif=IOC), Cancelled)


def test_fok_unfillable_changes_nothing() -> None:
    h = Harness()
    h.sell(1, 5, 100)
    h.sell(1, 5, 102)  # beyond the FOK's limit: must not count
    before = h.books_digest()
    assert h.buy(2, 6, 101, tif=FOK) == [
        acc(3, 2, BUY, 101, 6, tif=FOK), cxl(3, 2, BUY, 101, 6, CancelReason.FOK_UNFILLABLE)]
    assert h.books_digest() == before
    assert h.engine.next_trade_id == 1


def test_fok_exactly_fillable_across_levels() -> None:
    h = Harness()
    h.sell(1, 5, 100)
    h.sell(3, 5, 101)
    events = h.buy(2, 10, 101, tif=FOK)
    assert [(t.price, t.quantity) for t in of_type(events, Trade)] == [(100, 5), (101, 5)]
    assert not of_type(events, Cancelled)
    assert h.engine.book(SYM).orders() == []


@pytest.mark.parametrize(
    ("stp", "fills", "own_cancelled"),
    [(STPMode.CANCEL_NEWEST, False, False),  # STP would stop it before 6 lots: unfillable
     (STPMode.CANCEL_BOTH, False, False),    # same; an unfillable FOK touches nothing
     (STPMode.CANCEL_OLDEST, True, True),    # own order skipped (and cancelled on the way)
     (STPMode.OFF, True, False)],            # trades with itself
)
def test_fok_with_self_trade_prevention(stp: STPMode, fills: bool, own_cancelled: bool) -> None:
    h = Harness()
    h.sell(1, 3, 100)  # id 1: own, at the front
    h.sell(2, 3, 100)  # id 2
    h.sell(3, 3, 101)  # id 3
    before = h.book_state()
    events = h.buy(1, 6, 101, tif=FOK, stp=int(stp))
    if not fills:
        assert non_depth(events) == [acc(4, 1, BUY, 101, 6, tif=FOK),
                                     cxl(4, 1, BUY, 101, 6, CancelReason.FOK_UNFILLABLE)]
        assert h.book_state() == before
        return
    trades = of_type(events, Trade)
    assert sum(t.quantity for t in trades) == 6
    if own_cancelled:
        assert of_type(events, Cancelled) == [cxl(1, 1, SELL, 100, 3, CancelReason.SELF_TRADE)]
        assert [t.maker_order_id for t in trades] == [2, 3]
    else:
        assert [t.maker_order_id for t in trades] == [1, 2]
        assert trades[0].maker_account == trades[0].taker_account == 1


def test_fok_cancel_oldest_unfillable_without_own_liquidity_keeps_own_order() -> None:
    h = Harness()
    h.sell(1, 5, 100)  # own
    h.sell(2, 2, 100)
    before = h.book_state()
    events = h.buy(1, 4, 100, tif=FOK, stp=int(STPMode.CANCEL_OLDEST))
    assert of_type(events, Cancelled) == [cxl(3, 1, BUY, 100, 4, CancelReason.FOK_UNFILLABLE)]
    assert h.book_state() == before


# -- GTD --------------------------------------------------------------------------------------


def test_gtd_expires_before_a_later_command_is_applied() -> None:
    h = Harness()
    h.sell(1, 5, 100, tif=GTD, expire_time=2_000, ts=1_500)
    assert h.engine.order(1) is not None
    # one tick early: still live, and trades
    events = h.buy(2, 1, 100, ts=1_999)
    assert of_type(events, Trade)
    # the next command at the expiry time sees it expire first, then is applied to a book
    # without it (so this buy rests instead of trading)
    events = h.buy(3, 2, 100, ts=2_000)
    assert events == [
        Expired(1, 1, SYM, SELL, 100, 4),
        lvl(SELL, 100, 0, 0),
        acc(3, 3, BUY, 100, 2),
        lvl(BUY, 100, 2, 1),
    ]
    assert h.engine.order(1) is None


def test_gtd_expires_on_a_time_tick_in_expiry_order() -> None:
    h = Harness()
    h.buy(1, 1, 100, tif=GTD, expire_time=5_000)  # id 1
    h.buy(1, 2, 99, tif=GTD, expire_time=3_000)   # id 2
    h.buy(1, 3, 98, tif=GTD, expire_time=3_000)   # id 3
    h.buy(1, 4, 97, tif=GTD, expire_time=9_000)   # id 4
    h.buy(1, 5, 96)                                # id 5: GTC
    assert h.tick(2_999) == []
    events = h.tick(5_000)
    assert of_type(events, Expired) == [Expired(2, 1, SYM, BUY, 99, 2),
                                        Expired(3, 1, SYM, BUY, 98, 3),
                                        Expired(1, 1, SYM, BUY, 100, 1)]
    assert h.ids() == [4, 5]
    assert h.engine.now == 5_000


def test_gtd_cancelled_or_filled_does_not_expire_later() -> None:
    h = Harness()
    h.buy(1, 1, 100, tif=GTD, expire_time=5_000)
    h.buy(1, 1, 99, tif=GTD, expire_time=5_000)
    h.cancel(1, 1)
    h.sell(2, 1, 99)
    assert h.engine.book(SYM).orders() == []
    assert h.tick(6_000) == []


def test_gtd_keeps_its_expiry_through_a_replace() -> None:
    h = Harness()
    h.buy(1, 5, 100, tif=GTD, expire_time=5_000)
    h.replace(1, 1, price=101, quantity=8)
    events = h.tick(5_000)
    assert of_type(events, Expired) == [Expired(1, 1, SYM, BUY, 101, 8)]


def test_gtd_reported_in_accepted_and_expire_in_past_rejected() -> None:
    h = Harness()
    assert h.buy(1, 5, 100, tif=GTD, expire_time=9_000, ts=1_001)[0] == acc(
        1, 1, BUY, 100, 5, tif=GTD)
    events = h.buy(1, 5, 100, tif=GTD, expire_time=1_005, ts=1_005)
    assert events == [Rejected(1, "", SYM, 0, int(RejectReason.EXPIRE_TIME_IN_PAST),
                               "expire_time 1005 is not after engine time 1005")]


def test_gtd_expiry_is_journaled_time_not_arrival_order() -> None:
    """Expiry uses the command's timestamp: a GTD order entered and expired on the same
    command boundary is exact to the nanosecond."""
    h = Harness()
    h.sell(1, 5, 100, tif=GTD, expire_time=10_000, ts=9_000)
    assert h.tick(9_999) == []
    assert of_type(h.tick(10_000), Expired)


# -- post-only --------------------------------------------------------------------------------


def test_post_only_rests_when_it_does_not_cross() -> None:
    h = Harness()
    h.sell(1, 5, 101)
    assert h.buy(2, 5, 100, post_only=True) == [acc(2, 2, BUY, 100, 5), lvl(BUY, 100, 5, 1)]
    order = h.engine.order(2)
    assert order is not None
    assert order.post_only


def test_post_only_that_would_take_is_rejected_and_changes_nothing() -> None:
    h = Harness()
    h.sell(1, 5, 101)
    before = h.books_digest()
    events = h.buy(2, 5, 101, post_only=True, client_order_id="p1")
    assert events == [Rejected(2, "p1", SYM, 0, int(RejectReason.POST_ONLY_WOULD_TAKE),
                               "post-only buy at 101 would take liquidity")]
    assert h.books_digest() == before
    # the client id of a rejected order is not burnt, and the order id was not consumed
    assert h.buy(2, 5, 100, post_only=True, client_order_id="p1")[0] == acc(
        2, 2, BUY, 100, 5, clid="p1")


def test_post_only_against_only_own_liquidity_is_still_rejected() -> None:
    h = Harness()
    h.sell(1, 5, 100)
    events = h.buy(1, 5, 100, post_only=True)
    assert events[0].reason == RejectReason.POST_ONLY_WOULD_TAKE  # type: ignore[union-attr]


def test_post_only_market_is_not_allowed() -> None:
    h = Harness()
    events = h.buy(1, 5, order_type=MARKET, post_only=True)
    assert events == [Rejected(1, "", SYM, 0, int(RejectReason.MARKET_ORDER_NOT_ALLOWED),
                               "a market order cannot be post-only")]


# -- price protection band --------------------------------------------------------------------


def _band_harness(ticks: int = 2, tick_size: int = 1) -> Harness:
    h = Harness([Instrument(symbol=SYM, protection_ticks=ticks, tick_size=tick_size)])
    for i in range(5):
        h.sell(9, 1, 100 + i * tick_size)  # ids 1..5
    return h


def test_protection_band_stops_a_market_order() -> None:
    h = _band_harness()
    events = h.buy(1, 10, order_type=MARKET)
    assert [t.price for t in of_type(events, Trade)] == [100, 101, 102]
    assert events[-1] == cxl(6, 1, BUY, 0, 7, CancelReason.PRICE_PROTECTION)
    assert h.engine.book(SYM).best_ask() == (103, 1)


def test_protection_band_cancels_a_limit_that_would_walk_further() -> None:
    h = _band_harness()
    events = h.buy(1, 10, 110)
    assert [t.price for t in of_type(events, Trade)] == [100, 101, 102]
    assert events[-1] == cxl(6, 1, BUY, 110, 7, CancelReason.PRICE_PROTECTION)
    assert h.engine.book(SYM).best_bid() is None


def test_protection_band_wider_than_the_limit_lets_the_limit_rest() -> None:
    h = _band_harness()
    events = h.buy(1, 10, 102)
    assert [t.price for t in of_type(events, Trade)] == [100, 101, 102]
    assert not of_type(events, Cancelled)
    assert h.engine.book(SYM).best_bid() == (102, 7)


def test_protection_band_is_in_ticks() -> None:
    h = _band_harness(ticks=1, tick_size=5)  # asks 100, 105, 110, ...
    events = h.buy(1, 10, order_type=MARKET)
    assert [t.price for t in of_type(events, Trade)] == [100, 105]
    assert events[-1].reason == CancelReason.PRICE_PROTECTION  # type: ignore[union-attr]


def test_protection_band_on_a_sell_and_on_fok() -> None:
    h = Harness([Instrument(symbol=SYM, protection_ticks=1)])
    for i in range(3):
        h.buy(9, 2, 100 - i)  # bids 100, 99, 98
    before = h.book_state()
    events = h.sell(1, 5, 90, tif=FOK)  # only 4 inside the band (100, 99)
    assert of_type(events, Cancelled) == [cxl(4, 1, SELL, 90, 5, CancelReason.FOK_UNFILLABLE)]
    assert h.book_state() == before
    events = h.sell(1, 5, 90, tif=IOC)
    assert [t.price for t in of_type(events, Trade)] == [100, 99]
    assert events[-1] == cxl(5, 1, SELL, 90, 1, CancelReason.PRICE_PROTECTION)


# -- queries --------------------------------------------------------------------------------


def test_depth_and_level_orders() -> None:
    h = Harness()
    h.buy(1, 5, 100)
    h.buy(2, 3, 100)
    h.buy(1, 4, 98)
    h.sell(3, 2, 103)
    h.sell(3, 6, 101)
    book = h.engine.book(SYM)
    assert book.depth(10) == {"bids": [(100, 8, 2), (98, 4, 1)],
                              "asks": [(101, 6, 1), (103, 2, 1)]}
    assert book.depth(1) == {"bids": [(100, 8, 2)], "asks": [(101, 6, 1)]}
    assert book.depth(0) == {"bids": [], "asks": []}
    assert [o.order_id for o in book.level_orders(BUY, 100)] == [1, 2]
    assert book.level_orders(SELL, 100) == []
    with pytest.raises(KeyError, match="unknown symbol 'NOPE'"):
        h.engine.book("NOPE")


def test_order_ids_and_trade_ids_are_engine_assigned_and_dense() -> None:
    h = Harness()
    ids = []
    for i in range(5):
        ids.append(accepted_id(h.sell(1, 1, 100 + i)))
        h.buy(1, 0, 100)  # rejected: consumes no id
    assert ids == [1, 2, 3, 4, 5]
    events = h.buy(2, 5, 104)
    assert [t.trade_id for t in of_type(events, Trade)] == [1, 2, 3, 4, 5]
    events = h.sell(3, 1, 90)
    assert of_type(events, Accepted)[0].order_id == 7


def test_config_default_stp_applies_to_every_account() -> None:
    h = Harness(config=EngineConfig(default_stp=int(STPMode.OFF)))
    h.sell(1, 5, 100)
    assert of_type(h.buy(1, 5, 100), Trade)


@pytest.mark.parametrize("order_type", [LIMIT, MARKET])
def test_fok_that_crosses_nothing_is_cancelled_as_fok_unfillable(order_type: int) -> None:
    # (a regression: it used to fall through to IOC_REMAINDER / MARKET_REMAINDER)
    h = Harness()
    if order_type == LIMIT:
        h.sell(1, 5, 105)  # present but out of reach; a market order needs an empty book
    price = 100 if order_type == LIMIT else 0
    oid = 2 if order_type == LIMIT else 1
    assert h.buy(2, 5, price, tif=FOK, order_type=order_type) == [
        acc(oid, 2, BUY, price, 5, tif=FOK, order_type=order_type),
        cxl(oid, 2, BUY, price, 5, CancelReason.FOK_UNFILLABLE)]
    h2 = Harness()
    assert h2.sell(1, 5, 100, tif=FOK)[-1] == cxl(1, 1, SELL, 100, 5,
                                                  CancelReason.FOK_UNFILLABLE)
