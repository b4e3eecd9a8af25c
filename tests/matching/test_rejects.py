"""Every reject reason the engine can emit: exact code, a text naming the value, and no
change of state (apart from ``last_seq``/``now``, which every command advances)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.matching.helpers import SYM, Harness
from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    EngineConfig,
    Instrument,
    MatchingEngine,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    SetTradingStatus,
    reject_reason_name,
)

INST = Instrument(symbol=SYM, tick_size=5, lot_size=10, min_price=50, max_price=500,
                  max_quantity=1000)
HALTED = "HLT"


def state_sans_clock(engine: MatchingEngine) -> bytes:
    snap = engine.snapshot()
    snap.last_seq = 0
    snap.now = 0
    return msgspec.msgpack.encode(snap)


def _setup() -> Harness:
    h = Harness([INST, Instrument(symbol=HALTED)], EngineConfig(client_id_memory=10))
    h.sell(1, 100, 200, client_order_id="live")         # id 1, live
    h.buy(1, 10, 100, client_order_id="done", tif=2)    # id 2, IOC: finished at once
    h.buy(2, 20, 150, client_order_id="partly")         # id 3
    h.sell(3, 10, 150)                                  # fills 10 of id 3
    h.buy(1, 10, 50, post_only=True)                    # id 5, post-only
    h.status(True, symbol=HALTED)
    # last trade price 150: these stops stay armed
    h.buy(1, 10, 310, order_type=4, stop_price=300)     # id 6, stop-limit
    h.sell(1, 100, 250, display_quantity=20)            # id 7, iceberg
    h.sell(1, 10, order_type=3, stop_price=100)         # id 8, stop-market
    return h


def new(**kw: Any) -> NewOrder:
    base: dict[str, Any] = {"account": 1, "symbol": SYM, "side": BUY, "quantity": 10,
                            "price": 100}
    base.update(kw)
    return NewOrder(**base)


R = RejectReason
NEW_ORDER_CASES: list[tuple[str, NewOrder, RejectReason, str]] = [
    ("unknown symbol", new(symbol="NOPE"), R.UNKNOWN_SYMBOL, "unknown symbol 'NOPE'"),
    ("halted", new(symbol=HALTED), R.INSTRUMENT_HALTED, "HLT is halted"),
    ("side 0", new(side=0), R.INVALID_SIDE, "side must be 1 (buy) or 2 (sell), got 0"),
    ("side 3", new(side=3), R.INVALID_SIDE, "got 3"),
    ("order type 0", new(order_type=0), R.INVALID_ORDER_TYPE,
     "order type must be 1 (limit), 2 (market), 3 (stop) or 4 (stop-limit), got 0"),
    ("order type 5", new(order_type=5), R.INVALID_ORDER_TYPE, "got 5"),
    ("stp mode", new(stp=5), R.INVALID_STP_MODE, "stp mode must be 0..4, got 5"),
    ("tif 0", new(tif=0), R.INVALID_TIME_IN_FORCE, "time in force must be 1..4, got 0"),
    ("tif 5", new(tif=5), R.INVALID_TIME_IN_FORCE, "got 5"),
    ("zero quantity", new(quantity=0), R.NON_POSITIVE_QUANTITY,
     "quantity must be positive, got 0"),
    ("negative quantity", new(quantity=-10), R.NON_POSITIVE_QUANTITY, "got -10"),
    ("off-lot quantity", new(quantity=15), R.OFF_LOT_QUANTITY,
     "quantity 15 is not a multiple of the lot size 10"),
    ("too large", new(quantity=1010), R.QUANTITY_TOO_LARGE,
     "quantity 1010 exceeds the maximum 1000"),
    ("market too large", new(quantity=1010, order_type=2), R.QUANTITY_TOO_LARGE, "1010"),
    ("zero price", new(price=0), R.NON_POSITIVE_PRICE, "limit price must be positive, got 0"),
    ("negative price", new(price=-5), R.NON_POSITIVE_PRICE, "got -5"),
    ("off-tick price", new(price=103), R.OFF_TICK_PRICE,
     "price 103 is not a multiple of the tick size 5"),
    ("below band", new(price=45), R.PRICE_OUT_OF_BAND, "price 45 is outside the band [50, 500]"),
    ("above band", new(price=505), R.PRICE_OUT_OF_BAND, "price 505 is outside the band"),
    ("expire now", new(tif=4, expire_time=-1), R.EXPIRE_TIME_IN_PAST,
     "is not after engine time"),
    ("expire missing", new(tif=4), R.EXPIRE_TIME_IN_PAST, "expire_time 0 is not after"),
    ("post-only takes", new(price=200, post_only=True), R.POST_ONLY_WOULD_TAKE,
     "post-only buy at 200 would take liquidity"),
    ("post-only sell takes", new(side=SELL, price=150, post_only=True, account=9),
     R.POST_ONLY_WOULD_TAKE, "post-only sell at 150 would take liquidity"),
    ("post-only market", new(order_type=2, post_only=True), R.MARKET_ORDER_NOT_ALLOWED,
     "a market order cannot be post-only"),
    ("duplicate live", new(client_order_id="live"), R.DUPLICATE_CLIENT_ORDER_ID,
     "client order id 'live' already used by account 1"),
    ("duplicate finished", new(client_order_id="done"), R.DUPLICATE_CLIENT_ORDER_ID,
     "client order id 'done' already used by account 1"),
    ("stop without stop price", new(order_type=3), R.NON_POSITIVE_STOP_PRICE,
     "stop price must be positive, got 0"),
    ("negative stop price", new(order_type=4, stop_price=-5), R.NON_POSITIVE_STOP_PRICE,
     "got -5"),
    ("off-tick stop price", new(order_type=3, stop_price=303), R.OFF_TICK_STOP_PRICE,
     "stop price 303 is not a multiple of the tick size 5"),
    ("stop price out of band", new(order_type=4, stop_price=600), R.STOP_PRICE_OUT_OF_BAND,
     "stop price 600 is outside the band [50, 500]"),
    ("stop-limit off-tick limit", new(order_type=4, stop_price=300, price=303),
     R.OFF_TICK_PRICE, "price 303 is not a multiple"),
    ("stop price on a limit", new(stop_price=300), R.STOP_PRICE_NOT_ALLOWED,
     "stop price 300 given on an order that is not a stop"),
    ("stop price on a market", new(order_type=2, stop_price=300), R.STOP_PRICE_NOT_ALLOWED,
     "not a stop"),
    ("post-only stop", new(order_type=4, stop_price=300, post_only=True),
     R.INVALID_STOP_ORDER, "a stop order cannot be post-only"),
    ("negative display", new(display_quantity=-10), R.NEGATIVE_DISPLAY_QUANTITY,
     "display quantity must not be negative, got -10"),
    ("off-lot display", new(display_quantity=15), R.OFF_LOT_DISPLAY_QUANTITY,
     "display quantity 15 is not a multiple of the lot size 10"),
    ("display above quantity", new(display_quantity=20), R.DISPLAY_QUANTITY_TOO_LARGE,
     "display quantity 20 exceeds the quantity 10"),
    ("display on market", new(order_type=2, display_quantity=10),
     R.DISPLAY_QUANTITY_NOT_ALLOWED, "a display quantity needs a resting limit order"),
    ("display on IOC", new(tif=2, display_quantity=10), R.DISPLAY_QUANTITY_NOT_ALLOWED,
     "resting limit order"),
    ("display on FOK", new(tif=3, display_quantity=10), R.DISPLAY_QUANTITY_NOT_ALLOWED,
     "resting limit order"),
    ("display on stop", new(order_type=4, stop_price=300, display_quantity=10),
     R.DISPLAY_QUANTITY_NOT_ALLOWED, "resting limit order"),
]


def _apply(h: Harness, cmd: Any) -> list[Any]:
    h.seq += 1
    h.ts += 1
    cmd = msgspec.structs.replace(cmd, seq=h.seq, ts=h.ts)
    if getattr(cmd, "tif", 0) == 4 and cmd.expire_time == -1:  # "expires right now"
        cmd = msgspec.structs.replace(cmd, expire_time=h.ts)
    return h.send(cmd)


@pytest.mark.parametrize(("name", "cmd", "reason", "text"), NEW_ORDER_CASES,
                         ids=[c[0] for c in NEW_ORDER_CASES])
def test_new_order_reject(name: str, cmd: NewOrder, reason: RejectReason, text: str) -> None:
    h = _setup()
    cmd = msgspec.structs.replace(cmd, client_order_id=cmd.client_order_id or "cl-" + name)
    before = state_sans_clock(h.engine)
    digests = h.books_digest()
    events = _apply(h, cmd)
    assert len(events) == 1
    rej = events[0]
    assert type(rej) is Rejected
    assert (rej.account, rej.client_order_id, rej.symbol, rej.order_id) == (
        cmd.account, cmd.client_order_id, cmd.symbol, 0)
    assert rej.reason == reason, (RejectReason(rej.reason), rej.text)
    assert text in rej.text
    assert state_sans_clock(h.engine) == before
    assert h.books_digest() == digests
    assert h.engine.last_seq == h.seq  # ... but the command was sequenced


def cancel(**kw: Any) -> Cancel:
    return Cancel(**{"account": 1, "symbol": SYM, **kw})


def replace(**kw: Any) -> Replace:
    return Replace(**{"account": 1, "symbol": SYM, **kw})


TARGET_CASES: list[tuple[str, Any, RejectReason, int, str]] = [
    ("cancel unknown id", cancel(order_id=42), R.UNKNOWN_ORDER, 42,
     "order 42 is not a live order of 'ABC'"),
    ("cancel finished id", cancel(order_id=2), R.UNKNOWN_ORDER, 2, "order 2 is not a live"),
    ("cancel unknown clid", cancel(orig_client_order_id="zz"), R.UNKNOWN_ORDER, 0,
     "order 'zz' is not a live order"),
    ("cancel finished clid", cancel(orig_client_order_id="done"), R.UNKNOWN_ORDER, 0, "'done'"),
    ("cancel other symbol", cancel(order_id=1, symbol=HALTED), R.UNKNOWN_ORDER, 1,
     "order 1 is not a live order of 'HLT'"),
    ("cancel foreign", cancel(order_id=3), R.UNKNOWN_ORDER, 3,
     "order 3 is not a live order of 'ABC'"),
    ("replace unknown", replace(order_id=42, price=100), R.UNKNOWN_ORDER, 42, "order 42"),
    ("replace foreign", replace(order_id=3, price=100), R.UNKNOWN_ORDER, 3,
     "order 3 is not a live order of 'ABC'"),
    ("replace foreign qty", replace(order_id=3, quantity=50), R.UNKNOWN_ORDER, 3,
     "order 3 is not a live order of 'ABC'"),
    ("replace too low", replace(account=2, order_id=3, quantity=10), R.REPLACE_QUANTITY_TOO_LOW,
     3, "new quantity 10 is not above the filled quantity 10"),
    ("replace off tick", replace(order_id=1, price=201), R.OFF_TICK_PRICE, 1, "price 201"),
    ("replace band", replace(order_id=1, price=600), R.PRICE_OUT_OF_BAND, 1, "price 600"),
    ("replace off lot", replace(order_id=1, quantity=55), R.OFF_LOT_QUANTITY, 1,
     "quantity 55 is not a multiple of the lot size 10"),
    ("replace too large", replace(order_id=1, quantity=2000), R.QUANTITY_TOO_LARGE, 1,
     "quantity 2000 exceeds the maximum 1000"),
    ("replace negative qty", replace(order_id=1, quantity=-10), R.NON_POSITIVE_QUANTITY, 1,
     "got -10"),
    ("replace negative price", replace(order_id=1, price=-10), R.NON_POSITIVE_PRICE, 1,
     "got -10"),
    ("replace dup clid", replace(order_id=1, price=205, client_order_id="done"),
     R.DUPLICATE_CLIENT_ORDER_ID, 1, "client order id 'done' already used by account 1"),
    ("replace post-only takes", replace(order_id=5, price=200), R.POST_ONLY_WOULD_TAKE, 5,
     "post-only order 5 at 200 would take liquidity"),
    ("replace stop price of a limit", replace(order_id=1, stop_price=300),
     R.STOP_PRICE_NOT_ALLOWED, 1, "order 1 is not an armed stop"),
    ("replace stop price of an iceberg", replace(order_id=7, stop_price=300),
     R.STOP_PRICE_NOT_ALLOWED, 7, "order 7 is not an armed stop"),
    ("replace off-tick stop price", replace(order_id=6, stop_price=301),
     R.OFF_TICK_STOP_PRICE, 6, "stop price 301 is not a multiple"),
    ("replace stop price zero-crossing", replace(order_id=6, stop_price=-5),
     R.NON_POSITIVE_STOP_PRICE, 6, "stop price must be positive"),
    ("replace stop price band", replace(order_id=8, stop_price=45), R.STOP_PRICE_OUT_OF_BAND,
     8, "stop price 45 is outside the band"),
    ("replace stop-market price", replace(order_id=8, price=120), R.INVALID_STOP_ORDER, 8,
     "stop-market order 8 has no limit price"),
    ("replace stop-limit off tick", replace(order_id=6, price=311), R.OFF_TICK_PRICE, 6,
     "price 311"),
    ("replace stop off lot", replace(order_id=6, quantity=15), R.OFF_LOT_QUANTITY, 6,
     "quantity 15"),
    ("replace stop display", replace(order_id=6, display_quantity=10),
     R.DISPLAY_QUANTITY_NOT_ALLOWED, 6, "a stop order cannot have a display quantity"),
    ("replace stop dup clid", replace(order_id=6, client_order_id="live"),
     R.DUPLICATE_CLIENT_ORDER_ID, 6, "client order id 'live' already used"),
    ("replace display off lot", replace(order_id=1, display_quantity=15),
     R.OFF_LOT_DISPLAY_QUANTITY, 1, "display quantity 15 is not a multiple"),
    ("replace display negative", replace(order_id=7, display_quantity=-10),
     R.NEGATIVE_DISPLAY_QUANTITY, 7, "got -10"),
    ("replace display too large", replace(order_id=7, display_quantity=200),
     R.DISPLAY_QUANTITY_TOO_LARGE, 7, "display quantity 200 exceeds the quantity 100"),
    ("replace display below new total", replace(order_id=7, quantity=30, display_quantity=40),
     R.DISPLAY_QUANTITY_TOO_LARGE, 7, "display quantity 40 exceeds the quantity 30"),
    ("replace iceberg too low", replace(account=2, order_id=3, quantity=10,
                                        display_quantity=10),
     R.REPLACE_QUANTITY_TOO_LOW, 3, "not above the filled quantity 10"),
    ("replace iceberg post-only", replace(order_id=5, price=200, display_quantity=10),
     R.POST_ONLY_WOULD_TAKE, 5, "post-only order 5 at 200 would take liquidity"),
]


@pytest.mark.parametrize(("name", "cmd", "reason", "order_id", "text"), TARGET_CASES,
                         ids=[c[0] for c in TARGET_CASES])
def test_cancel_and_replace_reject(name: str, cmd: Any, reason: RejectReason, order_id: int,
                                   text: str) -> None:
    h = _setup()
    before = state_sans_clock(h.engine)
    events = _apply(h, cmd)
    assert len(events) == 1
    rej = events[0]
    assert type(rej) is Rejected
    assert (rej.account, rej.symbol, rej.order_id) == (cmd.account, cmd.symbol, order_id)
    assert rej.reason == reason, (RejectReason(rej.reason), rej.text)
    assert text in rej.text
    assert state_sans_clock(h.engine) == before


def test_halted_replace_and_unknown_symbol_status() -> None:
    h2 = Harness([Instrument(symbol=SYM)])
    h2.buy(1, 1, 100)
    h2.status(True)
    before = state_sans_clock(h2.engine)
    assert h2.replace(1, 1, quantity=5)[0].reason == R.INSTRUMENT_HALTED  # type: ignore[union-attr]
    events = _apply(h2, SetTradingStatus(symbol="NOPE", halted=True))
    assert events == [Rejected(0, "", "NOPE", 0, int(R.UNKNOWN_SYMBOL), "unknown symbol 'NOPE'")]
    assert state_sans_clock(h2.engine) == before


ENGINE_REASONS = {r for r in RejectReason if r < 400 and not 250 <= r < 270}
"""250-269 (account status, risk limits) have their own coverage test in test_risk.py."""


def test_every_engine_reject_reason_is_covered_here() -> None:
    covered = {c[2] for c in NEW_ORDER_CASES} | {c[2] for c in TARGET_CASES}
    covered.add(R.INSTRUMENT_HALTED)
    assert covered == ENGINE_REASONS, ENGINE_REASONS - covered


def test_reject_reason_name_names_every_code_and_passes_unknown_ones_through() -> None:
    assert reject_reason_name(301) == "UNKNOWN_ORDER"
    assert reject_reason_name(int(R.INVALID_STP_MODE)) == "INVALID_STP_MODE"
    assert all(reject_reason_name(int(r)) == r.name for r in R)
    # retired numbers stay unknown (never reissued), as does any code from a newer peer
    for retired in (302, 403, 404, 501):
        assert retired not in {int(r) for r in R}
        assert reject_reason_name(retired) == str(retired)
    assert reject_reason_name(999) == "999"
