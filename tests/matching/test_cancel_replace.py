"""Unit tests: cancel, replace (priority rules), self-trade prevention, halt/resume and
client order ids."""

from __future__ import annotations

from typing import Any

import pytest

from tests.matching.helpers import SYM, Harness, non_depth, of_type
from tickline.matching import (
    BUY,
    SELL,
    Cancelled,
    CancelReason,
    EngineConfig,
    Instrument,
    LevelChanged,
    Rejected,
    RejectReason,
    Replaced,
    StatusChanged,
    STPMode,
    TimeInForce,
    Trade,
)

USER = int(CancelReason.USER)
STP = int(CancelReason.SELF_TRADE)


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_by_order_id() -> None:
    h = Harness()
    h.buy(1, 5, 100)
    h.buy(2, 3, 100)
    assert h.cancel(1, 1) == [Cancelled(1, 1, SYM, BUY, 100, 5, USER),
                              LevelChanged(SYM, BUY, 100, 3, 1)]
    assert h.cancel(2, 2) == [Cancelled(2, 2, SYM, BUY, 100, 3, USER),
                              LevelChanged(SYM, BUY, 100, 0, 0)]
    assert h.engine.orders == {}


def test_cancel_by_orig_client_order_id_of_the_same_account() -> None:
    h = Harness()
    h.sell(1, 5, 100, client_order_id="A")
    h.sell(2, 5, 101, client_order_id="A")  # same client id, another account: allowed
    assert h.cancel(2, orig_client_order_id="A")[0] == Cancelled(2, 2, SYM, SELL, 101, 5, USER)
    assert h.ids() == [1]


def test_cancel_of_a_partially_filled_order_cancels_its_open_quantity() -> None:
    h = Harness()
    h.sell(1, 5, 100)
    h.buy(2, 2, 100)
    assert h.cancel(1, 1)[0] == Cancelled(1, 1, SYM, SELL, 100, 3, USER)


def test_cancel_of_a_foreign_order_is_answered_as_unknown() -> None:
    h = Harness()
    h.buy(1, 5, 100, client_order_id="x")
    before = h.books_digest()
    foreign = h.cancel(2, 1, client_order_id="c9")
    # exactly the answer for an id that was never issued (7): the caller learns nothing
    missing = h.cancel(2, 7, client_order_id="c9")
    assert foreign == [Rejected(2, "c9", SYM, 1, int(RejectReason.UNKNOWN_ORDER),
                                "order 1 is not a live order of 'ABC'")]
    assert missing == [Rejected(2, "c9", SYM, 7, int(RejectReason.UNKNOWN_ORDER),
                                "order 7 is not a live order of 'ABC'")]
    # client order ids are per account: another account's "x" is simply unknown to account 2
    assert h.cancel(2, orig_client_order_id="x") == [
        Rejected(2, "", SYM, 0, int(RejectReason.UNKNOWN_ORDER),
                 "order 'x' is not a live order of 'ABC'")]
    assert h.books_digest() == before


@pytest.mark.parametrize("case", ["unknown", "finished", "cancelled", "wrong symbol"])
def test_cancel_of_an_order_that_is_not_live_is_rejected(case: str) -> None:
    h = Harness([Instrument(symbol=SYM), Instrument(symbol="XYZ")])
    h.sell(1, 5, 100)
    symbol = SYM
    if case == "finished":
        h.buy(2, 5, 100)
    elif case == "cancelled":
        h.cancel(1, 1)
    elif case == "wrong symbol":
        symbol = "XYZ"
    oid = 99 if case == "unknown" else 1
    before = h.books_digest()
    assert h.cancel(1, oid, symbol=symbol) == [
        Rejected(1, "", symbol, oid, int(RejectReason.UNKNOWN_ORDER),
                 f"order {oid} is not a live order of {symbol!r}")]
    assert h.books_digest() == before


# -- replace --------------------------------------------------------------------------------


def _three_bids() -> Harness:
    h = Harness()
    h.buy(1, 10, 100)  # id 1
    h.buy(2, 10, 100)  # id 2
    h.buy(3, 10, 100)  # id 3
    return h


def test_replace_quantity_decrease_at_same_price_keeps_priority() -> None:
    h = _three_bids()
    assert h.replace(2, 2, quantity=4) == [
        Replaced(2, 2, "", SYM, BUY, 100, 4, 4, True), LevelChanged(SYM, BUY, 100, 24, 3)]
    assert [o.order_id for o in h.engine.book(SYM).level_orders(BUY, 100)] == [1, 2, 3]
    # and it is matched in that place
    events = h.sell(9, 12, 100)
    assert [(t.maker_order_id, t.quantity) for t in of_type(events, Trade)] == [(1, 10), (2, 2)]


def test_replace_with_nothing_changed_keeps_priority() -> None:
    h = _three_bids()
    assert h.replace(2, 2) == [Replaced(2, 2, "", SYM, BUY, 100, 10, 10, True)]
    assert h.ids() == [1, 2, 3]


def test_replace_quantity_increase_loses_priority() -> None:
    h = _three_bids()
    events = h.replace(1, 1, quantity=11)
    assert non_depth(events) == [Replaced(1, 1, "", SYM, BUY, 100, 11, 11, False)]
    assert of_type(events, LevelChanged)[-1] == LevelChanged(SYM, BUY, 100, 31, 3)
    assert h.ids() == [2, 3, 1]


def test_replace_price_change_loses_priority_even_when_moving_back() -> None:
    h = _three_bids()
    h.replace(1, 1, price=99)
    assert h.replace(1, 1, price=100)[0] == LevelChanged(SYM, BUY, 99, 0, 0)
    assert h.ids() == [2, 3, 1]
    h.replace(2, 2, price=101, quantity=5)  # better price: first in its new level
    assert h.ids() == [2, 3, 1]
    assert h.engine.book(SYM).depth() == {"bids": [(101, 5, 1), (100, 20, 2)], "asks": []}


def test_replace_keeps_filled_quantity_and_quantity_is_the_new_total() -> None:
    h = Harness()
    h.sell(1, 10, 100)
    h.buy(2, 4, 100)  # order 1 has filled 4, leaves 6
    assert h.replace(1, 1, quantity=7) == [
        Replaced(1, 1, "", SYM, SELL, 100, 7, 3, True), LevelChanged(SYM, SELL, 100, 3, 1)]
    order = h.engine.order(1)
    assert order is not None
    assert (order.quantity, order.filled, order.leaves) == (7, 4, 3)


@pytest.mark.parametrize("quantity", [4, 3])
def test_replace_to_quantity_at_or_below_filled_is_rejected(quantity: int) -> None:
    h = Harness()
    h.sell(1, 10, 100)
    h.buy(2, 4, 100)
    before = h.books_digest()
    assert h.replace(1, 1, quantity=quantity, client_order_id="r") == [
        Rejected(1, "r", SYM, 1, int(RejectReason.REPLACE_QUANTITY_TOO_LOW),
                 f"new quantity {quantity} is not above the filled quantity 4")]
    assert h.books_digest() == before


def test_crossing_replace_trades_at_the_makers_price_and_rests_the_rest() -> None:
    h = Harness()
    h.sell(1, 3, 101)  # id 1
    h.sell(1, 3, 102)  # id 2
    h.buy(2, 10, 99)   # id 3
    events = h.replace(2, 3, price=101)
    assert events == [
        LevelChanged(SYM, BUY, 99, 0, 0),
        Replaced(3, 2, "", SYM, BUY, 101, 10, 10, False),
        Trade(1, SYM, 101, 3, BUY, 1, 1, 0, 3, 2, 7),
        LevelChanged(SYM, SELL, 101, 0, 0),
        LevelChanged(SYM, BUY, 101, 7, 1),
    ]
    events = h.replace(2, 3, price=105, quantity=5)  # total 5, filled 3: leaves 2
    assert [(t.price, t.quantity, t.taker_leaves) for t in of_type(events, Trade)] == [
        (102, 2, 0)]
    assert h.engine.order(3) is None
    assert h.engine.book(SYM).best_ask() == (102, 1)


def test_replace_by_orig_client_order_id_and_a_new_client_id() -> None:
    h = Harness()
    h.buy(1, 5, 100, client_order_id="a")
    events = h.replace(1, orig_client_order_id="a", client_order_id="b", price=101)
    assert of_type(events, Replaced) == [Replaced(1, 1, "b", SYM, BUY, 101, 5, 5, False)]
    # the new id is live now; the old one is finished and remembered
    assert h.cancel(1, orig_client_order_id="a")[0].reason == RejectReason.UNKNOWN_ORDER  # type: ignore[union-attr]
    for clid in ("a", "b"):
        events = h.buy(1, 1, 90, client_order_id=clid)
        assert events[0].reason == RejectReason.DUPLICATE_CLIENT_ORDER_ID  # type: ignore[union-attr]
    assert of_type(h.cancel(1, orig_client_order_id="b"), Cancelled)


def test_replace_to_a_client_id_in_use_is_rejected() -> None:
    h = Harness()
    h.buy(1, 5, 100, client_order_id="a")
    h.buy(1, 5, 99, client_order_id="b")
    before = h.books_digest()
    assert h.replace(1, 1, price=98, client_order_id="b") == [
        Rejected(1, "b", SYM, 1, int(RejectReason.DUPLICATE_CLIENT_ORDER_ID),
                 "client order id 'b' already used by account 1")]
    assert h.books_digest() == before
    # replacing with its own current client id is not a duplicate
    assert of_type(h.replace(1, 1, price=98, client_order_id="a"), Replaced)


def test_replace_of_a_post_only_order_to_a_crossing_price_is_rejected() -> None:
    h = Harness()
    h.sell(1, 5, 101)
    h.buy(2, 5, 100, post_only=True)
    before = h.books_digest()
    assert h.replace(2, 2, price=101) == [
        Rejected(2, "", SYM, 2, int(RejectReason.POST_ONLY_WOULD_TAKE),
                 "post-only order 2 at 101 would take liquidity")]
    assert h.books_digest() == before


@pytest.mark.parametrize("case", ["unknown", "finished", "foreign"])
def test_replace_of_unknown_finished_or_foreign_order_is_rejected(case: str) -> None:
    h = Harness()
    h.sell(1, 5, 100)
    if case == "finished":
        h.buy(2, 5, 100)
    oid = 7 if case == "unknown" else 1
    account = 2 if case == "foreign" else 1
    before = h.books_digest()
    events = h.replace(account, oid, price=101)
    assert events == [Rejected(account, "", SYM, oid, int(RejectReason.UNKNOWN_ORDER),
                               f"order {oid} is not a live order of 'ABC'")]
    assert h.books_digest() == before


def test_replace_validates_price_and_quantity_on_the_instrument_grid() -> None:
    inst = Instrument(symbol=SYM, tick_size=5, lot_size=10, min_price=50, max_price=500,
                      max_quantity=1000)
    h = Harness([inst])
    h.buy(1, 100, 100)
    before = h.books_digest()
    cases: list[tuple[dict[str, Any], RejectReason, str]] = [
        ({"price": 102}, RejectReason.OFF_TICK_PRICE,
         "price 102 is not a multiple of the tick size 5"),
        ({"price": -5}, RejectReason.NON_POSITIVE_PRICE, "limit price must be positive, got -5"),
        ({"price": 505}, RejectReason.PRICE_OUT_OF_BAND, "price 505 is outside the band [50, 500]"),
        ({"price": 45}, RejectReason.PRICE_OUT_OF_BAND, "price 45 is outside the band [50, 500]"),
        ({"quantity": 15}, RejectReason.OFF_LOT_QUANTITY,
         "quantity 15 is not a multiple of the lot size 10"),
        ({"quantity": -10}, RejectReason.NON_POSITIVE_QUANTITY,
         "quantity must be positive, got -10"),
        ({"quantity": 1010}, RejectReason.QUANTITY_TOO_LARGE,
         "quantity 1010 exceeds the maximum 1000"),
    ]
    for kw, reason, text in cases:
        assert h.replace(1, 1, **kw) == [Rejected(1, "", SYM, 1, int(reason), text)], kw
    assert h.books_digest() == before


# -- self-trade prevention --------------------------------------------------------------------


def _stp_book(config: EngineConfig | None = None) -> Harness:
    h = Harness(config=config)
    h.sell(2, 4, 100)  # id 1: another account, first in the queue
    h.sell(1, 4, 100)  # id 2: the taker's own order
    h.sell(3, 4, 100)  # id 3
    return h


def test_stp_cancel_newest_is_the_default() -> None:
    h = _stp_book()
    events = h.buy(1, 10, 100)
    assert non_depth(events)[1:] == [
        Trade(1, SYM, 100, 4, BUY, 1, 2, 0, 4, 1, 6),
        Cancelled(4, 1, SYM, BUY, 100, 6, STP),
    ]
    assert of_type(events, LevelChanged) == [LevelChanged(SYM, SELL, 100, 8, 2)]
    assert h.ids() == [2, 3]  # own resting order untouched


def test_stp_cancel_newest_before_any_trade_changes_no_level() -> None:
    h = Harness()
    h.sell(1, 4, 100)
    assert h.buy(1, 2, 100)[1:] == [Cancelled(2, 1, SYM, BUY, 100, 2, STP)]


def test_stp_cancel_oldest_cancels_the_resting_order_and_keeps_matching() -> None:
    h = _stp_book()
    events = h.buy(1, 10, 100, stp=int(STPMode.CANCEL_OLDEST))
    assert non_depth(events)[1:] == [
        Trade(1, SYM, 100, 4, BUY, 1, 2, 0, 4, 1, 6),
        Cancelled(2, 1, SYM, SELL, 100, 4, STP),
        Trade(2, SYM, 100, 4, BUY, 3, 3, 0, 4, 1, 2),
    ]
    assert h.engine.book(SYM).best_bid() == (100, 2)
    assert h.engine.book(SYM).best_ask() is None


def test_stp_cancel_both() -> None:
    h = _stp_book()
    events = h.buy(1, 10, 100, stp=int(STPMode.CANCEL_BOTH))
    assert non_depth(events)[1:] == [
        Trade(1, SYM, 100, 4, BUY, 1, 2, 0, 4, 1, 6),
        Cancelled(2, 1, SYM, SELL, 100, 4, STP),
        Cancelled(4, 1, SYM, BUY, 100, 6, STP),
    ]
    assert h.ids() == [3]


def test_stp_off_trades_with_itself() -> None:
    h = _stp_book()
    events = h.buy(1, 10, 100, stp=int(STPMode.OFF))
    assert [t.maker_order_id for t in of_type(events, Trade)] == [1, 2, 3]
    assert not of_type(events, Cancelled)


def test_stp_per_account_config_and_per_order_override() -> None:
    config = EngineConfig(account_stp={1: int(STPMode.OFF), 2: int(STPMode.CANCEL_OLDEST)})
    h = Harness(config=config)
    h.sell(1, 4, 100)
    assert of_type(h.buy(1, 4, 100), Trade)  # account 1: off
    h.sell(1, 4, 100)
    events = h.buy(1, 4, 100, stp=int(STPMode.CANCEL_NEWEST))  # the order overrides
    assert of_type(events, Cancelled) == [Cancelled(4, 1, SYM, BUY, 100, 4, STP)]
    h.sell(2, 4, 100)  # id 5
    events = h.buy(2, 5, 100)  # account 2 (cancel oldest): trades with 3, cancels its own 5
    assert [t.maker_order_id for t in of_type(events, Trade)] == [3]
    assert of_type(events, Cancelled) == [Cancelled(5, 2, SYM, SELL, 100, 4, STP)]
    assert h.engine.book(SYM).best_bid() == (100, 1)


def test_stp_applies_across_levels() -> None:
    h = Harness()
    h.sell(2, 2, 100)
    h.sell(1, 2, 101)
    h.sell(3, 2, 102)
    events = h.buy(1, 6, 102)
    assert [t.price for t in of_type(events, Trade)] == [100]
    assert of_type(events, Cancelled) == [Cancelled(4, 1, SYM, BUY, 102, 4, STP)]


def test_stp_on_a_crossing_replace() -> None:
    h = Harness()
    h.sell(1, 4, 101)
    h.buy(1, 4, 99)
    events = h.replace(1, 2, price=101)
    assert of_type(events, Cancelled) == [Cancelled(2, 1, SYM, BUY, 101, 4, STP)]
    assert h.engine.order(2) is None
    assert h.ids() == [1]


def test_invalid_stp_mode_is_rejected() -> None:
    h = Harness()
    events = h.buy(1, 1, 100, stp=9)
    assert events == [Rejected(1, "", SYM, 0, int(RejectReason.INVALID_STP_MODE),
                               "stp mode must be 0..4, got 9")]


# -- halt and resume ------------------------------------------------------------------------


def test_halt_rejects_new_and_replace_but_allows_cancel() -> None:
    h = Harness([Instrument(symbol=SYM), Instrument(symbol="XYZ")])
    h.buy(1, 5, 100)
    h.buy(1, 5, 99)
    assert h.status(True) == [StatusChanged(SYM, True)]
    halted = int(RejectReason.INSTRUMENT_HALTED)
    before = h.books_digest()
    assert h.buy(2, 5, 100, client_order_id="n") == [
        Rejected(2, "n", SYM, 0, halted, "ABC is halted")]
    assert h.replace(1, 1, price=101) == [Rejected(1, "", SYM, 1, halted, "ABC is halted")]
    assert h.books_digest() == before
    assert of_type(h.cancel(1, 2), Cancelled)
    # another symbol trades on
    assert of_type(h.buy(2, 5, 100, symbol="XYZ"), LevelChanged)
    assert h.status(False) == [StatusChanged(SYM, False)]
    assert of_type(h.sell(2, 5, 100), Trade)


def test_status_of_unknown_symbol_is_rejected() -> None:
    h = Harness()
    assert h.status(True, symbol="NOPE") == [
        Rejected(0, "", "NOPE", 0, int(RejectReason.UNKNOWN_SYMBOL), "unknown symbol 'NOPE'")]


def test_halt_is_part_of_the_digest() -> None:
    h = Harness()
    before = h.books_digest()
    h.status(True)
    assert h.books_digest() != before


# -- client order ids -----------------------------------------------------------------------


DUP = int(RejectReason.DUPLICATE_CLIENT_ORDER_ID)


def _dup(account: int, clid: str) -> Rejected:
    return Rejected(account, clid, SYM, 0, DUP,
                    f"client order id {clid!r} already used by account {account}")


@pytest.mark.parametrize("how", ["live", "filled", "cancelled", "ioc", "fok", "stp", "expired"])
def test_duplicate_client_order_id_of_a_live_or_finished_order(how: str) -> None:
    h = Harness()
    kw: dict[str, Any] = {}
    if how == "ioc":
        kw = {"tif": int(TimeInForce.IOC)}
    elif how == "fok":
        kw = {"tif": int(TimeInForce.FOK)}
    elif how == "expired":
        kw = {"tif": int(TimeInForce.GTD), "expire_time": 5_000}
    if how == "stp":
        h.sell(1, 5, 100)
    h.buy(1, 5, 100, client_order_id="c1", **kw)
    if how == "filled":
        h.sell(2, 5, 100)
    elif how == "cancelled":
        h.cancel(1, 1)
    elif how == "expired":
        h.tick(5_000)
    if how != "live":
        assert h.engine.orders.keys().isdisjoint(
            o.order_id for o in h.engine.book(SYM).orders() if o.client_order_id == "c1")
    before = h.books_digest()
    assert h.buy(1, 5, 90, client_order_id="c1") == [_dup(1, "c1")]
    assert h.books_digest() == before
    # the same id under another account is fine
    assert h.buy(2, 5, 90, client_order_id="c1")[0].client_order_id == "c1"  # type: ignore[union-attr]


def test_finished_client_ids_are_forgotten_past_client_id_memory() -> None:
    h = Harness(config=EngineConfig(client_id_memory=2))
    for clid in ("a", "b", "c"):
        h.buy(1, 1, 100, client_order_id=clid, tif=int(TimeInForce.IOC))
    # "a" was evicted by "c"; "b" and "c" are remembered
    assert h.buy(1, 1, 100, client_order_id="b", tif=int(TimeInForce.IOC)) == [_dup(1, "b")]
    assert h.buy(1, 1, 100, client_order_id="c", tif=int(TimeInForce.IOC)) == [_dup(1, "c")]
    events = h.buy(1, 1, 100, client_order_id="a")
    assert events[0].client_order_id == "a" and type(events[0]).__name__ == "Accepted"  # type: ignore[union-attr]
    # a live id is never forgotten, however many finish after it
    for clid in "defg":
        h.buy(1, 1, 100, client_order_id=clid, tif=int(TimeInForce.IOC))
    assert h.buy(1, 1, 100, client_order_id="a") == [_dup(1, "a")]


def test_client_id_memory_zero_remembers_only_live_ids() -> None:
    h = Harness(config=EngineConfig(client_id_memory=0))
    h.buy(1, 1, 100, client_order_id="a")
    assert h.buy(1, 1, 100, client_order_id="a") == [_dup(1, "a")]
    h.cancel(1, 1)
    assert type(h.buy(1, 1, 100, client_order_id="a")[0]).__name__ == "Accepted"
