"""Execution reports: the one builder (numbering, cumulative fills, exact average price,
restore) and the one router (who receives which report)."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.stream.test_marketdata import SYMBOLS, build_commands, op_st
from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    Command,
    Instrument,
    MatchingEngine,
    NewOrder,
    Replace,
    SetTradingStatus,
    TimeTick,
    Trade,
)
from tickline.matching.types import IOC as IOC_
from tickline.stream import ExecKind, ExecReport, ReportBuilder, ReportRouter
from tickline.stream.reports import OrderStatus


def engine() -> MatchingEngine:
    return MatchingEngine([Instrument(symbol=s) for s in SYMBOLS])


def run(ops: list[tuple[Any, ...]]) -> tuple[MatchingEngine, ReportBuilder,
                                              list[tuple[Command, list[ExecReport]]]]:
    eng = engine()
    builder = ReportBuilder()
    out = []
    for cmd in build_commands(eng, ops):
        out.append((cmd, builder.build(cmd.seq, cmd.ts, eng.process(cmd))))
        builder.check(eng.orders)
    return eng, builder, out


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(op_st, min_size=20, max_size=400))
def test_every_party_gets_one_numbered_report_per_event(ops: list[tuple[Any, ...]]) -> None:
    eng = engine()
    builder = ReportBuilder()
    per_account: dict[int, list[ExecReport]] = defaultdict(list)
    for cmd in build_commands(eng, ops):
        events = eng.process(cmd)
        reports = builder.build(cmd.seq, cmd.ts, events)
        expected: list[int] = []
        for e in events:
            if type(e) is Trade:
                expected += [e.maker_account, e.taker_account]
            elif getattr(e, "account", 0):
                expected.append(e.account)
        assert [r.account for r in reports] == expected
        assert all(r.command_seq == cmd.seq and r.ts == cmd.ts for r in reports)
        for r in reports:
            per_account[r.account].append(r)
        builder.check(eng.orders)
    for account, reports in per_account.items():
        assert [r.seq for r in reports] == list(range(1, len(reports) + 1))
        assert builder.last_seq(account) == len(reports)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(op_st, min_size=20, max_size=400))
def test_cumulative_fills_and_average_price_are_exact(ops: list[tuple[Any, ...]]) -> None:
    _eng, _builder, out = run(ops)
    fills: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for _cmd, reports in out:
        for r in reports:
            if r.kind == ExecKind.FILL:
                fills[r.order_id].append((r.last_price, r.last_quantity))
            if r.kind != ExecKind.REJECTED:
                mine = fills.get(r.order_id, [])
                assert r.cum_quantity == sum(q for _, q in mine)
                assert r.cum_notional == sum(p * q for p, q in mine)
                if mine:
                    assert r.avg_price == Fraction(sum(p * q for p, q in mine),
                                                   sum(q for _, q in mine))
                else:
                    assert r.avg_price is None
            if r.kind == ExecKind.FILL:
                # conservation per order: filled + open <= quantity (the rest was cancelled)
                assert r.cum_quantity + r.leaves <= r.quantity


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(op_st, min_size=40, max_size=400), cut=st.integers(1, 399))
def test_restored_builder_continues_byte_for_byte(ops: list[tuple[Any, ...]], cut: int) -> None:
    """A builder rebuilt from a snapshot (engine books + its saved state) gives exactly the
    reports the original gives from there on."""
    cut = min(cut, len(ops) - 1)
    enc = msgspec.msgpack.encode
    _e, _b, straight = run(ops)
    eng = engine()
    builder = ReportBuilder()
    cmds = build_commands(eng, ops)
    got: list[bytes] = []
    for i, cmd in enumerate(cmds):
        got.append(enc(builder.build(cmd.seq, cmd.ts, eng.process(cmd))))
        if i + 1 == cut:
            snap = eng.snapshot()
            snap.attachments[ReportBuilder.key] = builder.state()
            fresh = engine()
            fresh.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(snap),
                                                 type=type(snap)))
            builder = ReportBuilder(fresh.orders.values(), snap.attachments[ReportBuilder.key])
            builder.check(eng.orders)
    assert got == [enc(r) for _c, r in straight]


def test_reports_describe_the_order_lifecycle() -> None:
    eng = engine()
    builder = ReportBuilder()
    cmds: list[Command] = [
        NewOrder(seq=1, ts=1, account=1, symbol="AAA", side=SELL, price=100, quantity=10,
                 client_order_id="s1"),
        NewOrder(seq=2, ts=2, account=2, symbol="AAA", side=BUY, price=100, quantity=4,
                 client_order_id="b1"),
        Replace(seq=3, ts=3, account=1, symbol="AAA", order_id=1, quantity=8),
        Cancel(seq=4, ts=4, account=2, symbol="AAA", order_id=1),  # not account 2's
        NewOrder(seq=5, ts=5, account=2, symbol="AAA", side=SELL, price=102, quantity=1),
        NewOrder(seq=6, ts=6, account=3, symbol="AAA", side=BUY, price=102, quantity=7),
        Cancel(seq=7, ts=7, account=3, symbol="AAA", order_id=4),
        SetTradingStatus(seq=8, ts=8, symbol="AAA", halted=True),
        TimeTick(seq=9, ts=9),
    ]
    reports = [r for cmd in cmds for r in builder.build(cmd.seq, cmd.ts, eng.process(cmd))]
    a = [(r.seq, r.kind, r.client_order_id, r.leaves, r.last_quantity, r.cum_quantity)
         for r in reports if r.account == 1]
    assert a == [(1, ExecKind.NEW, "s1", 10, 0, 0), (2, ExecKind.FILL, "s1", 6, 4, 4),
                 (3, ExecKind.REPLACED, "s1", 4, 0, 4), (4, ExecKind.FILL, "s1", 0, 4, 8)]
    b = [(r.seq, r.kind, r.leaves) for r in reports if r.account == 2]
    assert b == [(1, ExecKind.NEW, 4), (2, ExecKind.FILL, 0), (3, ExecKind.REJECTED, 0),
                 (4, ExecKind.NEW, 1), (5, ExecKind.FILL, 0)]
    # account 3 swept 4 at 100 and 1 at 102, rested 2, then cancelled: exact average
    c = [r for r in reports if r.account == 3]
    assert [r.kind for r in c] == [ExecKind.NEW, ExecKind.FILL, ExecKind.FILL,
                                   ExecKind.CANCELLED]
    assert c[-1].cum_quantity == 5 and c[-1].cum_notional == 502
    assert c[-1].avg_price == Fraction(502, 5)
    assert builder.report_seqs() == {1: 4, 2: 5, 3: 4}


# --- the router -------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.got: list[ExecReport] = []

    def __call__(self, reports: list[ExecReport]) -> None:
        self.got.extend(reports)


def rep(seq: int, account: int, kind: ExecKind, order_id: int, leaves: int = 1) -> ExecReport:
    return ExecReport(seq, 1, account, int(kind), "AAA", order_id, "", BUY, 100, 5, leaves)


def test_router_sends_a_makers_fill_to_the_session_that_entered_it() -> None:
    router = ReportRouter()
    s1, s2, s3 = Sink(), Sink(), Sink()
    p1 = router.attach(1, s1)
    p2 = router.attach(1, s2)  # a second session of account 1
    p3 = router.attach(2, s3)
    new = rep(1, 1, ExecKind.NEW, 10)
    assert router.route([new], 1, p1) == [new]  # own report: back with the reply only
    assert s1.got == s2.got == s3.got == []
    # account 2 trades against order 10: its own fill returns, the maker's goes to p1 only
    taker_new, maker_fill, taker_fill = (rep(1, 2, ExecKind.NEW, 11), rep(2, 1, ExecKind.FILL, 10),
                                         rep(2, 2, ExecKind.FILL, 11, 0))
    assert router.route([taker_new, maker_fill, taker_fill], 2, p3) == [taker_new, taker_fill]
    assert s1.got == [maker_fill] and s2.got == [] and s3.got == []
    # session 2 of the same account cancels order 10: session 1 hears of it too
    cancel = rep(3, 1, ExecKind.CANCELLED, 10, 0)
    assert router.route([cancel], 1, p2) == [cancel]
    assert s1.got == [maker_fill, cancel] and s2.got == []
    assert router.statistics()["tracked_orders"] == 0


def test_router_falls_back_to_every_session_of_the_account() -> None:
    router = ReportRouter()
    s1, s2, drop = Sink(), Sink(), Sink()
    p1 = router.attach(1, s1)
    router.route([rep(1, 1, ExecKind.NEW, 10)], 1, p1)
    p1.close()
    p1.close()  # twice is fine
    router.attach(1, s2)
    router.attach(None, drop)  # a drop copy of everything
    expiry = rep(2, 1, ExecKind.EXPIRED, 10, 0)
    assert router.route([expiry], 0, None) == []  # a TimeTick: nobody submitted it
    assert s1.got == [] and s2.got == [expiry] and drop.got == [expiry]
    # a reject goes to its submitter only, even for an order id another session owns
    p3 = router.attach(3, Sink())
    router.route([rep(1, 1, ExecKind.NEW, 20)], 1, None)
    reject = rep(1, 3, ExecKind.REJECTED, 20, 0)
    assert router.route([reject], 3, p3) == [reject]
    assert s2.got[-1].order_id == 20 and reject not in s2.got


# --- order state ------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(op_st, min_size=20, max_size=300))
def test_order_state_agrees_with_the_last_report_and_the_engine(
        ops: list[tuple[Any, ...]]) -> None:
    eng, builder, out = run(ops)
    last: dict[int, ExecReport] = {}
    for _cmd, reports in out:
        for r in reports:
            if r.kind != ExecKind.REJECTED:
                last[r.order_id] = r
    status_of = {ExecKind.CANCELLED: OrderStatus.CANCELLED, ExecKind.EXPIRED: OrderStatus.EXPIRED}
    for oid, r in last.items():
        state = builder.order_state(r.account, oid)
        assert state is not None
        assert (state.symbol, state.side, state.price, state.quantity, state.cum_quantity,
                state.cum_notional) == (r.symbol, r.side, r.price, r.quantity, r.cum_quantity,
                                        r.cum_notional)
        assert state.leaves == (r.leaves if oid in eng.orders else 0)
        if oid in eng.orders:
            assert state.status == (OrderStatus.PARTIALLY_FILLED if r.cum_quantity
                                    else OrderStatus.NEW)
        elif r.kind == ExecKind.FILL:
            assert state.status == OrderStatus.FILLED
        else:
            assert state.status == status_of[ExecKind(r.kind)]
        # another account gets nothing, as for an order that does not exist
        assert builder.order_state(r.account + 100, oid) is None
    for account in range(1, 5):
        assert [s.order_id for s in builder.open_orders(account)] == sorted(
            o.order_id for o in eng.orders.values() if o.account == account)
        assert all(s.symbol == "AAA" for s in builder.open_orders(account, "AAA"))
    assert builder.order_state(1, 10**9) is None


def test_order_state_by_client_order_id_and_bounded_memory_of_finished_orders() -> None:
    eng = engine()
    builder = ReportBuilder(finished_capacity=2)
    for i in range(1, 5):
        cmd = NewOrder(seq=i, ts=i, account=1, symbol="AAA", side=BUY, price=100, quantity=1,
                       client_order_id=f"c{i}")
        builder.build(i, i, eng.process(cmd))
        cancel = Cancel(seq=10 + i, ts=10 + i, account=1, symbol="AAA", order_id=i)
        builder.build(10 + i, 10 + i, eng.process(cancel))
    assert builder.order_state(1, client_order_id="c1") is None  # forgotten: capacity 2
    state = builder.order_state(1, client_order_id="c4")
    assert state is not None and state.status == OrderStatus.CANCELLED and state.order_id == 4
    live = NewOrder(seq=20, ts=20, account=1, symbol="AAA", side=SELL, price=101, quantity=3,
                    client_order_id="live")
    builder.build(20, 20, eng.process(live))
    state = builder.order_state(1, client_order_id="live")
    assert state is not None and (state.status, state.leaves, state.avg_price) == (
        OrderStatus.NEW, 3, None)


def test_a_builder_restored_with_armed_stops_reports_their_fills() -> None:
    """An armed stop is a live order outside the book: a builder restored from a snapshot
    must know it, or its fills after the trigger would go unreported and the numbering would
    differ from a run without the restart."""
    from tickline.matching import OrderType

    def commands() -> list[NewOrder]:
        return [
            NewOrder(seq=1, ts=1, account=1, symbol="AAA", side=BUY, price=0, quantity=2,
                     order_type=int(OrderType.STOP), tif=IOC_, stop_price=101,
                     client_order_id="stop"),
            NewOrder(seq=2, ts=2, account=2, symbol="AAA", side=SELL, price=101, quantity=5),
            NewOrder(seq=3, ts=3, account=3, symbol="AAA", side=BUY, price=101, quantity=1),
        ]

    eng, builder = engine(), ReportBuilder()
    straight = [builder.build(c.seq, c.ts, eng.process(c)) for c in commands()]
    eng, builder = engine(), ReportBuilder()
    first = commands()[0]
    got = [builder.build(first.seq, first.ts, eng.process(first))]
    snap = eng.snapshot()
    fresh = engine()
    fresh.restore(snap)
    builder = ReportBuilder(fresh.orders.values(), builder.state())
    builder.check(fresh.orders)
    got += [builder.build(c.seq, c.ts, fresh.process(c)) for c in commands()[1:]]
    enc = msgspec.msgpack.encode
    assert enc(got) == enc(straight)
    fills = [r for r in straight[-1] if r.account == 1 and r.kind == ExecKind.FILL]
    assert [(r.client_order_id, r.last_quantity) for r in fills] == [("stop", 2)]


def test_a_triggered_stop_gets_a_triggered_report_before_its_fills() -> None:
    """TRIGGERED (kind 7) carries the stop price and the price it entered at; it is numbered
    in the account's sequence like every other report, and a builder fed a random stream
    with stops numbers every account's reports 1..n."""
    from tests.matching.commands import INSTRUMENTS, make_config, random_commands
    from tickline.matching import OrderType

    eng, builder = engine(), ReportBuilder()
    cmds = [
        NewOrder(seq=1, ts=1, account=1, symbol="AAA", side=SELL, price=98, quantity=3,
                 order_type=int(OrderType.STOP_LIMIT), stop_price=99, client_order_id="s"),
        NewOrder(seq=2, ts=2, account=2, symbol="AAA", side=BUY, price=99, quantity=5),
        NewOrder(seq=3, ts=3, account=3, symbol="AAA", side=SELL, price=99, quantity=1),
    ]
    reports = [builder.build(c.seq, c.ts, eng.process(c)) for c in cmds]
    mine = [r for r in reports[-1] if r.account == 1]
    assert [(r.kind, r.seq) for r in mine] == [(ExecKind.TRIGGERED, 2), (ExecKind.FILL, 3)]
    trig = mine[0]
    assert (trig.client_order_id, trig.stop_price, trig.price, trig.quantity,
            trig.leaves) == ("s", 99, 98, 3, 3)
    assert mine[1].last_quantity == 3 and mine[1].leaves == 0
    builder.check(eng.orders)

    eng = MatchingEngine(INSTRUMENTS, make_config())
    builder = ReportBuilder()
    numbers: dict[int, list[int]] = defaultdict(list)
    triggered = 0
    for c in random_commands(5, 3000):
        for r in builder.build(c.seq, c.ts, eng.process(c)):
            numbers[r.account].append(r.seq)
            triggered += r.kind == ExecKind.TRIGGERED
    builder.check(eng.orders)
    assert triggered > 10
    assert all(ns == list(range(1, len(ns) + 1)) for ns in numbers.values())
