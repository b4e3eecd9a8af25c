"""Account controls (tickline.matching.risk): MassCancel, CancelOrders, the kill switch
(SetAccountStatus) and the pre-trade risk limits, each at, below and above its limit.

A reject must change nothing: the whole engine state (a snapshot with the clock fields zeroed,
so positions and disabled accounts included) is compared before and after."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.matching.helpers import SYM, Harness, accepted_id, non_depth, of_type
from tickline.matching import (
    BUY,
    COMMAND_TYPES,
    SELL,
    Accepted,
    AccountStatusChanged,
    Cancelled,
    CancelOrders,
    CancelReason,
    Command,
    EngineConfig,
    EngineSnapshot,
    Event,
    Instrument,
    LevelChanged,
    MassCancel,
    MassCancelled,
    MatchingEngine,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    RiskLimits,
    SetAccountStatus,
    Trade,
)
from tickline.matching.risk import FAST_CAP
from tickline.stream.reports import ExecKind, ReportBuilder

R = RejectReason
C = CancelReason
OTHER = "XYZ"


def state(engine: MatchingEngine) -> bytes:
    """The whole engine state without the clock (a reject still advances seq and time)."""
    snap = engine.snapshot()
    snap.last_seq = 0
    snap.now = 0
    return msgspec.msgpack.encode(snap)


def run(h: Harness, cmd: Command) -> list[Event]:
    """Stamp ``cmd`` with the harness's next seq/ts and apply it (invariants checked)."""
    h.seq += 1
    h.ts += 1
    return h.send(msgspec.structs.replace(cmd, seq=h.seq, ts=h.ts))


def harness(**limits: RiskLimits) -> Harness:
    """Two symbols; ``limits`` per account as ``a1=RiskLimits(...)``."""
    config = EngineConfig(account_limits={int(k[1:]): v for k, v in limits.items()})
    return Harness([Instrument(symbol=SYM), Instrument(symbol=OTHER)], config)


def rejected(events: list[Event], reason: RejectReason, *texts: str) -> Rejected:
    assert len(events) == 1, events
    rej = events[0]
    assert type(rej) is Rejected, rej
    assert rej.reason == reason, (R(rej.reason), rej.text)
    for text in texts:
        assert text in rej.text, rej.text
    return rej


def assert_reject_changes_nothing(h: Harness, cmd: Command, reason: RejectReason,
                                  *texts: str) -> Rejected:
    before = state(h.engine)
    rej = rejected(run(h, cmd), reason, *texts)
    assert state(h.engine) == before
    return rej


# -- MassCancel ---------------------------------------------------------------------------

def _book_for_mass_cancel(h: Harness) -> None:
    h.buy(1, 5, 100, symbol=OTHER)   # 1
    h.buy(1, 5, 99)                  # 2
    h.sell(1, 5, 110)                # 3
    h.buy(2, 5, 98)                  # 4 (account 2: never touched)
    h.sell(1, 5, 111, symbol=OTHER)  # 5
    h.buy(1, 5, 99)                  # 6


def test_mass_cancel_everything_in_symbol_then_order_id_order_with_the_count() -> None:
    h = harness()
    _book_for_mass_cancel(h)
    events = run(h, MassCancel(account=1))
    cancels = of_type(events, Cancelled)
    assert [(c.symbol, c.order_id) for c in cancels] == [
        (SYM, 2), (SYM, 3), (SYM, 6), (OTHER, 1), (OTHER, 5)]
    assert {c.reason for c in cancels} == {C.MASS_CANCEL}
    assert [c.quantity for c in cancels] == [5] * 5
    # each cancel is followed by its level's new depth, the summary comes last
    assert [type(e) for e in events] == [Cancelled, LevelChanged] * 5 + [MassCancelled]
    assert events[-1] == MassCancelled(1, "", 0, int(C.MASS_CANCEL), 5)
    assert h.ids() == [4]
    assert h.ids(OTHER) == []


@pytest.mark.parametrize(("symbol", "side", "gone"), [
    (SYM, 0, [2, 3, 6]), (OTHER, 0, [1, 5]), ("", BUY, [2, 6, 1]), ("", SELL, [3, 5]),
    (SYM, BUY, [2, 6]), (OTHER, BUY, [1]),
])
def test_mass_cancel_filters_by_symbol_and_side(symbol: str, side: int,
                                                gone: list[int]) -> None:
    h = harness()
    _book_for_mass_cancel(h)
    events = run(h, MassCancel(account=1, symbol=symbol, side=side))
    assert [c.order_id for c in of_type(events, Cancelled)] == gone
    assert events[-1] == MassCancelled(1, symbol, side, int(C.MASS_CANCEL), len(gone))
    left = set(h.ids()) | set(h.ids(OTHER))
    assert left == {1, 2, 3, 4, 5, 6} - set(gone)


def test_mass_cancel_with_nothing_open_answers_zero_and_works_while_halted() -> None:
    h = harness()
    assert run(h, MassCancel(account=1)) == [MassCancelled(1, "", 0, int(C.MASS_CANCEL), 0)]
    h.buy(1, 5, 99)
    h.status(True)
    events = run(h, MassCancel(account=1, symbol=SYM))
    assert events[-1].count == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("cmd", "reason", "text"), [
    (MassCancel(account=1, symbol="NOPE"), R.UNKNOWN_SYMBOL, "unknown symbol 'NOPE'"),
    (MassCancel(account=1, side=3), R.INVALID_SIDE, "got 3"),
    (MassCancel(account=1, symbol=SYM, side=-1), R.INVALID_SIDE, "got -1"),
])
def test_mass_cancel_rejects_change_nothing(cmd: MassCancel, reason: RejectReason,
                                            text: str) -> None:
    h = harness()
    _book_for_mass_cancel(h)
    rej = assert_reject_changes_nothing(h, cmd, reason, text)
    assert (rej.account, rej.symbol, rej.order_id) == (1, cmd.symbol, 0)


# -- CancelOrders ---------------------------------------------------------------------------

def test_cancel_orders_cancels_the_listed_live_orders_and_skips_the_rest() -> None:
    h = harness()
    _book_for_mass_cancel(h)
    h.sell(2, 5, 99)  # fills order 2 (account 1) completely: it is gone
    # 6 and 1 listed out of order, 2 gone (filled), 4 foreign, 99 unknown, 6 twice
    events = run(h, CancelOrders(account=1, order_ids=(6, 2, 4, 99, 1, 6)))
    cancels = of_type(events, Cancelled)
    assert [(c.symbol, c.order_id) for c in cancels] == [(SYM, 6), (OTHER, 1)]
    assert {c.reason for c in cancels} == {C.CANCEL_ON_DISCONNECT}
    assert events[-1] == MassCancelled(1, "", 0, int(C.CANCEL_ON_DISCONNECT), 2)
    assert 4 in h.ids()
    assert run(h, CancelOrders(account=1, order_ids=(), reason=int(C.USER))) == [
        MassCancelled(1, "", 0, int(C.USER), 0)]


@pytest.mark.parametrize("reason", [0, int(C.IOC_REMAINDER), int(C.SELF_TRADE), 7, 99])
def test_cancel_orders_with_an_engine_or_unknown_reason_is_rejected(reason: int) -> None:
    h = harness()
    _book_for_mass_cancel(h)
    rej = assert_reject_changes_nothing(h, CancelOrders(account=1, order_ids=(2,),
                                                        reason=reason),
                                        R.INVALID_CANCEL_REASON, f"got {reason}")
    assert rej.account == 1


# -- the kill switch ----------------------------------------------------------------------

def test_kill_switch_cancels_everything_then_rejects_until_enabled() -> None:
    h = harness(a1=RiskLimits(max_open_orders=10))  # with counts tracked, to check them too
    _book_for_mass_cancel(h)
    events = run(h, SetAccountStatus(account=1, enabled=False))
    cancels = of_type(events, Cancelled)
    assert [c.order_id for c in cancels] == [2, 3, 6, 1, 5]
    assert {c.reason for c in cancels} == {C.KILL_SWITCH}
    assert events[-1] == AccountStatusChanged(1, False, 5)
    assert h.ids() == [4]

    rej = assert_reject_changes_nothing(
        h, h_new(1, BUY, 5, 100), R.ACCOUNT_DISABLED, "account 1 is disabled")
    assert rej.order_id == 0
    # cancels still work: answered as for any order that is gone, never ACCOUNT_DISABLED
    assert rejected(h.cancel(1, 2), R.UNKNOWN_ORDER)
    assert run(h, MassCancel(account=1))[-1] == MassCancelled(1, "", 0, int(C.MASS_CANCEL), 0)
    # other accounts trade on
    assert accepted_id(h.buy(2, 5, 97)) == 7  # (rejects take no order id)
    # disabling again is idempotent
    assert run(h, SetAccountStatus(account=1, enabled=False)) == [
        AccountStatusChanged(1, False, 0)]

    assert run(h, SetAccountStatus(account=1, enabled=True)) == [
        AccountStatusChanged(1, True, 0)]
    oid = accepted_id(h.buy(1, 5, 100))
    assert h.engine.order(oid) is not None


def h_new(account: int, side: int, quantity: int, price: int, **kw: Any) -> NewOrder:
    """An unstamped new order (``run`` stamps it)."""
    return NewOrder(account=account, symbol=kw.pop("symbol", SYM), side=side,
                    quantity=quantity, price=price, **kw)


def h_replace(account: int, order_id: int, **kw: Any) -> Replace:
    """An unstamped replace (``run`` stamps it)."""
    return Replace(account=account, symbol=kw.pop("symbol", SYM), order_id=order_id, **kw)


def test_disabled_account_replaces_are_rejected() -> None:
    """The engine never leaves a disabled account an order, so a replace of a (former)
    order is the UNKNOWN_ORDER it would get anyway; the fast and general replace paths both
    see the gate (a disabled account's orders never rest: check() asserts it)."""
    h = harness()
    oid = accepted_id(h.buy(1, 5, 100))
    run(h, SetAccountStatus(account=1, enabled=False))
    assert_reject_changes_nothing(h, h_replace(1, oid, price=101), R.UNKNOWN_ORDER)


# -- risk limits ----------------------------------------------------------------------------

def test_max_order_quantity_at_below_and_above() -> None:
    h = harness(a1=RiskLimits(max_order_quantity=100))
    assert accepted_id(h.buy(1, 99, 90)) == 1
    assert accepted_id(h.buy(1, 100, 90)) == 2
    assert_reject_changes_nothing(h, h_new(1, BUY, 101, 90), R.RISK_MAX_QUANTITY,
                                  "quantity 101 exceeds max_order_quantity 100 of account 1")
    assert accepted_id(h.buy(2, 1000, 80)) == 3  # account 2 has no limit
    # replaces that increase the quantity are checked; decreases and moves are not
    assert_reject_changes_nothing(h, h_replace(1, 1, quantity=101), R.RISK_MAX_QUANTITY,
                                  "quantity 101", "max_order_quantity 100")
    assert of_type(h.replace(1, 1, quantity=100), Accepted) == []
    assert h.engine.orders[1].quantity == 100
    h.replace(1, 2, quantity=50)
    assert h.engine.orders[2].quantity == 50


def test_max_order_notional_limit_orders_and_replaces() -> None:
    h = harness(a1=RiskLimits(max_order_notional=1000))
    assert accepted_id(h.buy(1, 10, 99)) == 1      # 990
    assert accepted_id(h.buy(1, 10, 100)) == 2     # 1000: at the limit
    assert_reject_changes_nothing(h, h_new(1, BUY, 10, 101), R.RISK_MAX_NOTIONAL,
                                  "notional 1010 (101 x 10) exceeds max_order_notional 1000 "
                                  "of account 1")
    assert_reject_changes_nothing(h, h_new(1, SELL, 5, 201), R.RISK_MAX_NOTIONAL,
                                  "notional 1005")
    # a price-only move up (the engine's fast replace path) and a quantity increase
    assert_reject_changes_nothing(h, h_replace(1, 1, price=101), R.RISK_MAX_NOTIONAL,
                                  "notional 1010 (101 x 10)")
    assert_reject_changes_nothing(h, h_replace(1, 2, quantity=11), R.RISK_MAX_NOTIONAL,
                                  "notional 1100 (100 x 11)")
    h.replace(1, 1, price=100)  # to 1000: allowed
    assert h.engine.orders[1].price == 100
    h.replace(1, 2, price=50, quantity=20)  # 1000 again
    assert (h.engine.orders[2].price, h.engine.orders[2].quantity) == (50, 20)


def _asks(h: Harness) -> None:
    h.sell(2, 5, 100)
    h.sell(2, 5, 110)
    h.sell(2, 5, 120)


@pytest.mark.parametrize(("quantity", "reach"), [(3, 100), (5, 100), (6, 110), (10, 110),
                                                 (11, 120), (40, 120)])
def test_market_buy_notional_is_valued_at_the_deepest_ask_it_reaches(quantity: int,
                                                                     reach: int) -> None:
    at = harness(a1=RiskLimits(max_order_notional=reach * quantity))
    _asks(at)
    assert of_type(at.buy(1, quantity, order_type=2), Trade)
    above = harness(a1=RiskLimits(max_order_notional=reach * quantity - 1))
    _asks(above)
    assert_reject_changes_nothing(above, h_new(1, BUY, quantity, 0, order_type=2),
                                  R.RISK_MAX_NOTIONAL,
                                  f"notional {reach * quantity} ({reach} x {quantity})")


def test_market_notional_stops_at_the_protection_band_and_sells_use_the_best_bid() -> None:
    config = EngineConfig(account_limits={1: RiskLimits(max_order_notional=1100)})
    h = Harness([Instrument(symbol=SYM, protection_ticks=10)], config)
    _asks(h)  # the band from 100 is 110: the 120 level is out of reach
    assert_reject_changes_nothing(h, h_new(1, BUY, 11, 0, order_type=2), R.RISK_MAX_NOTIONAL,
                                  "notional 1210 (110 x 11)")
    events = h.buy(1, 10, order_type=2)
    assert sum(t.quantity for t in of_type(events, Trade)) == 10
    h.buy(3, 5, 90)
    h.buy(3, 5, 80)
    assert_reject_changes_nothing(h, h_new(1, SELL, 13, 0, order_type=2),
                                  R.RISK_MAX_NOTIONAL, "notional 1170 (90 x 13)")
    assert of_type(h.sell(1, 12, order_type=2), Trade)  # 1080
    # an empty far side: valued at 0, the market order simply finds nothing
    assert of_type(h.sell(1, 1000, order_type=2), Cancelled)


def test_max_open_orders_at_below_and_above() -> None:
    h = harness(a1=RiskLimits(max_open_orders=3))
    for price in (90, 91, 92):
        accepted_id(h.buy(1, 1, price, symbol=SYM if price != 91 else OTHER))
    assert_reject_changes_nothing(h, h_new(1, BUY, 1, 93), R.RISK_MAX_OPEN_ORDERS,
                                  "account 1 has 3 open orders, max_open_orders 3")
    assert_reject_changes_nothing(h, h_new(1, SELL, 1, 150, tif=4, expire_time=10**9),
                                  R.RISK_MAX_OPEN_ORDERS)
    # orders that cannot rest are not limited by it
    assert of_type(h.buy(1, 1, 93, tif=2), Cancelled)
    assert of_type(h.buy(1, 1, 93, tif=3), Cancelled)
    assert of_type(h.buy(1, 1, order_type=2), Cancelled)
    # a slot frees when an order finishes: by a cancel, or by a fill
    h.cancel(1, 1)
    assert accepted_id(h.buy(1, 1, 80)) == 7
    h.sell(2, 1, 92)  # fills order 3
    assert accepted_id(h.buy(1, 1, 81)) == 9
    assert accepted_id(h.buy(2, 1, 82)) == 10  # other accounts are not counted


def test_max_position_counts_fills_and_what_the_order_could_add() -> None:
    h = harness(a1=RiskLimits(max_position=10))
    h.sell(2, 100, 100)                          # liquidity for account 1 to buy
    assert accepted_id(h.buy(1, 10, 99)) == 2    # +10 if filled: at the limit, rests
    assert_reject_changes_nothing(h, h_new(1, BUY, 11, 99), R.RISK_MAX_POSITION,
                                  "position 11 in ABC if filled (now 0) exceeds max_position "
                                  "10 of account 1")
    assert of_type(h.buy(1, 6, 100), Trade)      # position +6
    assert h.engine.snapshot().positions == [(1, SYM, 6), (2, SYM, -6)]
    assert_reject_changes_nothing(h, h_new(1, BUY, 5, 100), R.RISK_MAX_POSITION,
                                  "position 11", "(now 6)")
    assert accepted_id(h.buy(1, 4, 90)) == 4     # +10: at the limit
    assert_reject_changes_nothing(h, h_new(1, SELL, 17, 200), R.RISK_MAX_POSITION,
                                  "position -11")
    assert accepted_id(h.sell(1, 16, 200)) == 5  # -10
    # per symbol: the other symbol's position is its own
    assert accepted_id(h.buy(1, 10, 50, symbol=OTHER)) == 6
    # a replace growing the open quantity is checked with its new open quantity
    assert_reject_changes_nothing(h, h_replace(1, 4, quantity=5), R.RISK_MAX_POSITION,
                                  "position 11")
    h.replace(1, 4, quantity=3)
    assert h.engine.orders[4].quantity == 3


def test_an_order_that_shrinks_the_position_is_allowed_even_beyond_the_limit() -> None:
    """Two resting buys within the limit each can fill to twice the limit together; an
    order that reduces the absolute position must still be accepted then."""
    h = harness(a1=RiskLimits(max_position=10))
    h.buy(1, 10, 100)
    h.buy(1, 10, 100)
    h.sell(2, 20, 100)
    assert h.engine.snapshot().positions == [(1, SYM, 20), (2, SYM, -20)]
    assert accepted_id(h.sell(1, 5, 120)) == 4   # 15: shrinks, allowed
    assert accepted_id(h.sell(1, 30, 120)) == 5  # -10: at the limit on the other side
    assert accepted_id(h.sell(1, 31, 120)) == 6  # -11 but |-11| < |20|: still shrinks
    assert_reject_changes_nothing(h, h_new(1, SELL, 40, 120), R.RISK_MAX_POSITION,
                                  "position -20")  # the same size short: not a reduction
    assert_reject_changes_nothing(h, h_new(1, BUY, 1, 90), R.RISK_MAX_POSITION, "position 21")


def test_limit_precedence_quantity_notional_open_orders_position() -> None:
    limits = RiskLimits(max_order_quantity=10, max_order_notional=500, max_open_orders=1,
                        max_position=5)
    h = harness(a1=limits)
    h.buy(1, 1, 10)
    assert rejected(h.buy(1, 11, 100), R.RISK_MAX_QUANTITY)
    assert rejected(h.buy(1, 10, 100), R.RISK_MAX_NOTIONAL)
    assert rejected(h.buy(1, 10, 10), R.RISK_MAX_OPEN_ORDERS)
    assert rejected(h.buy(1, 10, 10, tif=2), R.RISK_MAX_POSITION)
    # and a shape error comes before any of them
    assert rejected(h.buy(1, 0, 100), R.NON_POSITIVE_QUANTITY)


def test_every_account_reject_reason_is_covered_here() -> None:
    """Mirrors test_rejects.py's coverage test for the 250-269 range."""
    covered = {R.ACCOUNT_DISABLED, R.RISK_MAX_QUANTITY, R.RISK_MAX_NOTIONAL,
               R.RISK_MAX_OPEN_ORDERS, R.RISK_MAX_POSITION, R.INVALID_CANCEL_REASON}
    assert covered == {r for r in R if 250 <= r < 270}


def test_negative_limits_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="account 7: max_open_orders must be an integer >= 0"):
        MatchingEngine([Instrument(symbol=SYM)],
                       EngineConfig(account_limits={7: RiskLimits(max_open_orders=-1)}))


def test_no_limits_means_no_tracking() -> None:
    """Without limits the engine keeps no positions or counts (the hot path tests a flag);
    with only a quantity limit it still needs neither."""
    for config in (EngineConfig(), EngineConfig(account_limits={1: RiskLimits()}),
                   EngineConfig(account_limits={1: RiskLimits(max_order_quantity=5)})):
        engine = MatchingEngine([Instrument(symbol=SYM)], config)
        assert engine._tracking is False
        assert engine._track_positions is False
        assert engine.open_counts() == {}
    assert MatchingEngine([Instrument(symbol=SYM)], EngineConfig(account_limits={
        1: RiskLimits()}))._gated is False


# -- state: snapshots, determinism, reports ------------------------------------------------

LIMITS = EngineConfig(account_limits={
    1: RiskLimits(max_position=50, max_open_orders=20, max_order_notional=10**6),
    2: RiskLimits(max_order_quantity=30)})


def _session(h: Harness) -> None:
    h.buy(1, 10, 100)
    h.sell(2, 4, 100)
    h.sell(3, 20, 105)
    h.buy(1, 8, 106)
    h.sell(1, 3, 120, symbol=OTHER)
    run(h, SetAccountStatus(account=2, enabled=False))
    h.buy(3, 5, 95)


def test_snapshot_restore_round_trips_positions_disabled_accounts_and_counts() -> None:
    h = Harness([Instrument(symbol=SYM), Instrument(symbol=OTHER)], LIMITS)
    _session(h)
    snap = h.engine.snapshot()
    assert snap.positions == [(1, SYM, 12), (2, SYM, -4), (3, SYM, -8)]
    assert snap.disabled_accounts == [2]
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=EngineSnapshot)
    twin = Harness([Instrument(symbol=SYM), Instrument(symbol=OTHER)], LIMITS)
    twin.engine.restore(decoded)
    twin.seq, twin.ts = h.seq, h.ts
    twin.engine.check()
    assert twin.engine.digest() == h.engine.digest()
    assert twin.engine.open_counts() == h.engine.open_counts() != {}
    # and both go on identically: the disabled account, the position limit, the counts
    for harn in (h, twin):
        assert rejected(harn.buy(2, 1, 90), R.ACCOUNT_DISABLED)
        assert rejected(harn.buy(1, 39, 99), R.RISK_MAX_POSITION, "position 51")
        run(harn, SetAccountStatus(account=2, enabled=True))
        harn.buy(2, 1, 90)
    assert twin.engine.digest() == h.engine.digest()


def test_an_old_snapshot_without_the_new_fields_still_decodes() -> None:
    engine = MatchingEngine([Instrument(symbol=SYM)])
    engine.process(h_new(1, BUY, 5, 100))
    as_dict = msgspec.to_builtins(engine.snapshot())
    del as_dict["positions"], as_dict["disabled_accounts"]
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(as_dict), type=EngineSnapshot)
    assert (snap.positions, snap.disabled_accounts) == ([], [])
    fresh = MatchingEngine([Instrument(symbol=SYM)])
    fresh.restore(snap)
    assert fresh.digest() == engine.digest()


def test_digest_sees_positions_and_the_kill_switch() -> None:
    a = Harness(config=LIMITS)
    b = Harness(config=LIMITS)
    for h in (a, b):
        h.buy(1, 5, 100)
    a.sell(2, 5, 100)
    b.sell(2, 5, 100, tif=2)  # same trade: same state
    assert a.engine.digest() == b.engine.digest()
    run(a, SetAccountStatus(account=4, enabled=False))
    run(b, SetAccountStatus(account=4, enabled=True))
    assert a.engine.digest() != b.engine.digest()


def test_new_commands_round_trip_through_the_command_union() -> None:
    decoder = msgspec.msgpack.Decoder(Command)
    for cmd in (MassCancel(seq=3, ts=4, account=1, symbol=SYM, side=SELL),
                CancelOrders(seq=5, ts=6, account=2, order_ids=(3, 1, 2), reason=int(C.USER)),
                SetAccountStatus(seq=7, ts=8, account=9, enabled=False)):
        assert type(cmd) in COMMAND_TYPES
        assert decoder.decode(msgspec.msgpack.encode(cmd)) == cmd


def _stream() -> list[Command]:
    cmds: list[Command] = []
    seq = 0

    def add(cmd: Command) -> None:
        nonlocal seq
        seq += 1
        cmds.append(msgspec.structs.replace(cmd, seq=seq, ts=1000 + seq))

    for i in range(60):
        account = 1 + i % 3
        side = BUY if i % 2 else SELL
        add(NewOrder(account=account, symbol=(SYM, OTHER)[i % 5 == 0], side=side,
                     quantity=1 + i % 7, price=100 + (i * 7) % 9 - 4))
        if i % 11 == 5:
            add(MassCancel(account=account, side=side if i % 2 else 0))
        if i % 13 == 7:
            add(CancelOrders(account=account, order_ids=tuple(range(i // 2, i))))
        if i % 17 == 3:
            add(SetAccountStatus(account=account, enabled=i % 34 != 3))
    return cmds


def test_same_commands_same_events_byte_for_byte() -> None:
    runs = []
    for _ in range(2):
        engine = MatchingEngine([Instrument(symbol=SYM), Instrument(symbol=OTHER)], LIMITS)
        events = [engine.process(cmd) for cmd in _stream()]
        engine.check()
        runs.append((msgspec.msgpack.encode(events), engine.digest()))
    assert runs[0] == runs[1]
    per_command = msgspec.msgpack.decode(runs[0][0], type=list[list[Event]])
    kinds = {type(e) for events in per_command for e in events}
    assert {MassCancelled, AccountStatusChanged, Trade, Cancelled} <= kinds


def test_reports_are_ordinary_cancels_and_the_summaries_report_nothing() -> None:
    h = harness()
    builder = ReportBuilder()
    _book_for_mass_cancel(h)
    for oid in range(1, 7):  # build the mirror as the exchange would have
        order = h.engine.orders[oid]
        builder.build(oid, oid, [Accepted(oid, order.account, "", order.symbol, order.side, 1,
                                          1, order.price, order.quantity)])
    events = run(h, MassCancel(account=1, symbol=SYM))
    reports = builder.build(h.seq, h.ts, events)
    assert [(r.kind, r.order_id, r.reason) for r in reports] == [
        (ExecKind.CANCELLED, oid, C.MASS_CANCEL) for oid in (2, 3, 6)]
    events = run(h, SetAccountStatus(account=1, enabled=False))
    reports = builder.build(h.seq, h.ts, events)
    assert [(r.kind, r.order_id, r.reason) for r in reports] == [
        (ExecKind.CANCELLED, 1, C.KILL_SWITCH), (ExecKind.CANCELLED, 5, C.KILL_SWITCH)]
    assert non_depth(events)[-1] == AccountStatusChanged(1, False, 2)
    builder.check(h.engine.orders)


def test_limits_above_the_fast_cap_are_exact() -> None:
    """The fast pass clamps its thresholds to FAST_CAP (one-digit ints compare fastest);
    orders between FAST_CAP and a bigger real limit are accepted, above it rejected."""
    big = FAST_CAP * 4
    h = Harness([Instrument(symbol=SYM)], EngineConfig(account_limits={1: RiskLimits(
        max_order_quantity=big, max_order_notional=big * 3, max_open_orders=big,
        max_position=big)}))
    risk = h.engine._accounts[1]
    assert (risk.max_quantity, risk.max_notional, risk.max_open, risk.max_position) == (
        FAST_CAP, FAST_CAP, FAST_CAP, FAST_CAP)
    h.buy(1, FAST_CAP + 5, 2)                             # 1: suspect, exact check passes
    assert h.engine.orders[1].quantity == FAST_CAP + 5
    assert_reject_changes_nothing(h, h_new(1, BUY, big + 1, 1), R.RISK_MAX_QUANTITY,
                                  f"quantity {big + 1} exceeds")
    assert_reject_changes_nothing(h, h_new(1, BUY, big, 4), R.RISK_MAX_NOTIONAL,
                                  f"notional {4 * big}")
    h.replace(1, 1, price=3)                              # a move the fast path defers
    assert h.engine.orders[1].price == 3
    h.engine.check()


@pytest.mark.parametrize(("limits", "max_quantity", "floor"), [
    (RiskLimits(max_order_notional=1000, max_order_quantity=10), 0, 100),
    (RiskLimits(max_order_notional=1000), 20, 50),       # bounded by the instrument
    (RiskLimits(max_order_notional=1000), 0, 0),         # unbounded: every move is checked
    (RiskLimits(max_order_quantity=10), 0, FAST_CAP),    # no notional limit: no floor
])
def test_price_moves_are_checked_exactly_above_the_move_price_floor(
        limits: RiskLimits, max_quantity: int, floor: int) -> None:
    """The fast replace path only compares the new price with a floor below which no order
    can breach a notional limit; above it the exact check decides (and may accept)."""
    h = Harness([Instrument(symbol=SYM, max_quantity=max_quantity)],
                EngineConfig(account_limits={1: limits}))
    assert h.engine._move_price_floor == floor
    h.buy(1, 5, 80)                                        # 1
    h.buy(1, 10, 40)                                       # 2
    h.replace(1, 1, price=150)                             # 750: above any floor, allowed
    assert h.engine.orders[1].price == 150
    if limits.max_order_notional:
        assert_reject_changes_nothing(h, h_replace(1, 2, price=101), R.RISK_MAX_NOTIONAL,
                                      "notional 1010 (101 x 10)")
    else:
        h.replace(1, 2, price=101)
        assert h.engine.orders[2].price == 101
