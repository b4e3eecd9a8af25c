"""Properties over generated command sequences, checked after every command:

* invariants, by the engine's own checker *and* by an independent one written here from the
  public queries (never crossed, level totals and counts, index consistency, FIFO by the
  arrival order seen in the events);
* conservation per order, from the events alone (filled + open + cancelled == quantity);
* determinism: identical events (byte for byte) and digests on two engines, and after a
  snapshot/restore (through MessagePack) on a fresh engine.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.matching.commands import INSTRUMENTS, make_config, random_commands
from tests.matching.helpers import BOUNDED, OrderTracker
from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Cancel,
    Command,
    EngineSnapshot,
    Event,
    MatchingEngine,
    NewOrder,
    Replace,
    Replaced,
    SetTradingStatus,
    TimeTick,
    Trade,
    Triggered,
)

# -- generated command sequences ----------------------------------------------------------

SYMBOLS = ("AAA", "CCC", "BBB")
_account = st.integers(1, 3)
_symbol = st.sampled_from(SYMBOLS)
_clid = st.sampled_from(["", "", "", "a", "b", "c"])
_target = st.integers(0, 30)

_new = st.fixed_dictionaries({
    "kind": st.just("new"), "dt": st.integers(0, 3), "account": _account, "symbol": _symbol,
    "side": st.sampled_from([BUY, SELL]), "ticks": st.integers(-3, 3),
    "lots": st.integers(1, 6), "order_type": st.sampled_from([1, 1, 1, 1, 1, 1, 2, 3, 4]),
    "stop_ticks": st.integers(-3, 3), "display_lots": st.sampled_from([0, 0, 0, 1, 2]),
    "tif": st.sampled_from([1, 1, 2, 3, 4]), "post_only": st.sampled_from([False] * 5 + [True]),
    "stp": st.sampled_from([0, 0, 0, 1, 2, 3, 4]), "clid": _clid, "life": st.integers(-1, 12),
})
_cancel = st.fixed_dictionaries({
    "kind": st.just("cancel"), "dt": st.integers(0, 3), "account": _account,
    "symbol": _symbol, "order_id": _target, "clid": _clid,
})
_replace = st.fixed_dictionaries({
    "kind": st.just("replace"), "dt": st.integers(0, 3), "account": _account,
    "symbol": _symbol, "order_id": _target, "orig": _clid, "clid": _clid,
    "ticks": st.one_of(st.none(), st.integers(-3, 3)), "lots": st.integers(0, 7),
    "stop_ticks": st.one_of(st.none(), st.none(), st.integers(-3, 3)),
    "display_lots": st.sampled_from([0, 0, 0, 1, 2]),
})
_other = st.one_of(
    st.fixed_dictionaries({"kind": st.just("halt"), "dt": st.integers(0, 3),
                           "symbol": _symbol, "halted": st.sampled_from([True, False, False])}),
    st.fixed_dictionaries({"kind": st.just("tick"), "dt": st.integers(0, 15)}),
)
SPECS = st.lists(st.one_of(_new, _new, _cancel, _replace, _replace, _other), max_size=80)

_INST = {i.symbol: i for i in INSTRUMENTS}
_MID = {"AAA": 100, "BBB": 100, "CCC": 20}


def build(specs: list[dict[str, Any]]) -> list[Command]:
    """Turn generated specs into commands with increasing seq and non-decreasing ts."""
    cmds: list[Command] = []
    ts = 1_000
    for seq, s in enumerate(specs, 1):
        ts += s["dt"]
        kind = s["kind"]
        if kind == "tick":
            cmds.append(TimeTick(seq=seq, ts=ts))
            continue
        inst = _INST[s["symbol"]]
        if kind == "new":
            cmds.append(NewOrder(
                seq=seq, ts=ts, account=s["account"], symbol=s["symbol"], side=s["side"],
                price=_MID[s["symbol"]] + s["ticks"] * inst.tick_size,
                quantity=s["lots"] * inst.lot_size, order_type=s["order_type"], tif=s["tif"],
                post_only=s["post_only"], stp=s["stp"], client_order_id=s["clid"],
                expire_time=ts + s["life"] if s["tif"] == 4 else 0,
                stop_price=(_MID[s["symbol"]] + s["stop_ticks"] * inst.tick_size
                            if s["order_type"] >= 3 else 0),
                display_quantity=s["display_lots"] * inst.lot_size))
        elif kind == "cancel":
            cmds.append(Cancel(seq=seq, ts=ts, account=s["account"], symbol=s["symbol"],
                               order_id=s["order_id"] if not s["clid"] else 0,
                               orig_client_order_id=s["clid"]))
        elif kind == "replace":
            ticks = s["ticks"]
            cmds.append(Replace(
                seq=seq, ts=ts, account=s["account"], symbol=s["symbol"],
                order_id=s["order_id"] if not s["orig"] else 0,
                orig_client_order_id=s["orig"], client_order_id=s["clid"],
                price=0 if ticks is None else _MID[s["symbol"]] + ticks * inst.tick_size,
                quantity=s["lots"] * inst.lot_size,
                stop_price=(0 if s["stop_ticks"] is None
                            else _MID[s["symbol"]] + s["stop_ticks"] * inst.tick_size),
                display_quantity=s["display_lots"] * inst.lot_size))
        else:
            cmds.append(SetTradingStatus(seq=seq, ts=ts, symbol=s["symbol"],
                                         halted=s["halted"]))
    return cmds


# -- the independent invariant checker ----------------------------------------------------


class ArrivalTracker:
    """The place in the queue each order got, as the events tell it: the command that
    accepted it, triggered it (a stop), or the last replace that did not keep its priority;
    for an iceberg also any later command in which it traded as a maker with something
    left (a refill may have sent it to the back then)."""

    def __init__(self) -> None:
        self.arrival: dict[int, int] = {}
        self.maker_trades: dict[int, set[int]] = {}

    def apply(self, seq: int, events: list[Event]) -> None:
        for e in events:
            if (type(e) is Accepted or type(e) is Triggered
                    or (type(e) is Replaced and not e.kept_priority)):
                self.arrival[e.order_id] = seq
                self.maker_trades[e.order_id] = set()
            elif type(e) is Trade and e.maker_leaves > 0:
                self.maker_trades.setdefault(e.maker_order_id, set()).add(seq)


def check_independently(engine: MatchingEngine, arrivals: ArrivalTracker) -> None:
    resting: set[int] = set()
    for symbol, book in engine.books.items():
        depth = book.depth(1_000_000)
        for name, side in (("bids", BUY), ("asks", SELL)):
            levels = depth[name]
            prices = [p for p, _, _ in levels]
            assert prices == sorted(set(prices), reverse=side == BUY), (symbol, name, prices)
            for price, total, count in levels:
                orders = book.level_orders(side, price)
                assert len(orders) == count > 0, (symbol, side, price)
                assert sum(o.leaves for o in orders) == total, (symbol, side, price)
                for o in orders:
                    assert (o.symbol, o.side, o.price) == (symbol, side, price)
                    assert o.leaves > 0 and o.leaves + o.hidden == o.quantity - o.filled, o
                    assert o.hidden == 0 or 0 < o.leaves <= o.display, o
                    assert o.stop_price == 0, o
                    assert engine.order(o.order_id) is o, f"order {o.order_id} not indexed"
                    assert o.order_id not in resting
                    resting.add(o.order_id)
                queue = [o.priority for o in orders]
                assert queue == sorted(queue), f"FIFO broken at {symbol} {side} {price}"
                for o in orders:
                    arrived = arrivals.arrival[o.order_id]
                    if o.display:  # refills move an iceberg back without an event
                        assert o.priority == arrived or (
                            o.priority > arrived
                            and o.priority in arrivals.maker_trades[o.order_id]), o
                    else:
                        assert o.priority == arrived, o
            best = book.best_bid() if side == BUY else book.best_ask()
            assert best == (levels[0][:2] if levels else None)
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid[0] < ask[0], f"{symbol} crossed {bid} {ask}"
    for symbol, stops in engine.stops.items():
        last = engine.last_prices.get(symbol, 0)
        for o in stops.orders():
            assert o.order_id not in resting and engine.order(o.order_id) is o
            assert o.stop_price > 0 and o.filled == 0 and o.leaves == o.quantity
            if last:  # never left armed when due
                assert (last < o.stop_price) if o.side == BUY else (last > o.stop_price), o
            resting.add(o.order_id)
    assert resting == set(engine.orders), "index and books disagree"


def run_checked(cmds: list[Command]) -> tuple[MatchingEngine, OrderTracker]:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    tracker = OrderTracker()
    arrivals = ArrivalTracker()
    for cmd in cmds:
        events = engine.process(cmd)
        engine.check()
        arrivals.apply(cmd.seq, events)
        check_independently(engine, arrivals)
        tracker.apply(events)
        tracker.check_against(engine)
    return engine, tracker


@BOUNDED
@given(SPECS)
def test_invariants_and_conservation_after_every_command(specs: list[dict[str, Any]]) -> None:
    run_checked(build(specs))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_invariants_and_conservation_on_long_random_streams(seed: int) -> None:
    _engine, tracker = run_checked(random_commands(seed, 3000))
    assert len(tracker.quantity) > 800
    assert any(tracker.cancelled.values()) and any(tracker.filled.values())


# -- determinism ------------------------------------------------------------------------------


def encoded_run(engine: MatchingEngine, cmds: list[Command]) -> list[tuple[bytes, str]]:
    return [(msgspec.msgpack.encode(engine.process(cmd)), engine.digest()) for cmd in cmds]


@BOUNDED
@given(SPECS)
def test_same_commands_same_events_and_digests(specs: list[dict[str, Any]]) -> None:
    cmds = build(specs)
    a = encoded_run(MatchingEngine(INSTRUMENTS, make_config()), cmds)
    # the second engine gets the commands as they would come back from the journal
    wire = [msgspec.msgpack.decode(msgspec.msgpack.encode(c), type=Command) for c in cmds]
    b = encoded_run(MatchingEngine(INSTRUMENTS, make_config()), wire)
    assert a == b


def restore_copy(snap: EngineSnapshot) -> MatchingEngine:
    data = msgspec.msgpack.encode(snap)
    fresh = MatchingEngine(INSTRUMENTS, make_config())
    fresh.restore(msgspec.msgpack.decode(data, type=EngineSnapshot))
    return fresh


@BOUNDED
@given(SPECS, st.floats(0, 1))
def test_snapshot_restore_continues_identically(specs: list[dict[str, Any]], cut: float
                                                ) -> None:
    cmds = build(specs)
    k = int(len(cmds) * cut)
    whole = MatchingEngine(INSTRUMENTS, make_config())
    expected = encoded_run(whole, cmds)
    first = MatchingEngine(INSTRUMENTS, make_config())
    encoded_run(first, cmds[:k])
    restored = restore_copy(first.snapshot())
    assert restored.digest() == first.digest()
    restored.check()
    assert encoded_run(restored, cmds[k:]) == expected[k:]
    assert restored.digest() == whole.digest()


@pytest.mark.parametrize("seed", [21, 22])
def test_snapshot_restore_at_many_points_of_a_long_stream(seed: int) -> None:
    cmds = random_commands(seed, 2000)
    whole = MatchingEngine(INSTRUMENTS, make_config())
    expected = encoded_run(whole, cmds)
    for k in (1, 137, 500, 1234, 1999):
        first = MatchingEngine(INSTRUMENTS, make_config())
        encoded_run(first, cmds[:k])
        restored = restore_copy(first.snapshot())
        assert encoded_run(restored, cmds[k:]) == expected[k:], k


def test_digest_is_sensitive_to_state() -> None:
    """Equal digests must mean something: a command that changes a book changes that book's
    digest, and a rejected one changes no book digest."""
    e = MatchingEngine(INSTRUMENTS, make_config())
    changed = 0
    for cmd in random_commands(5, 1500):
        before = {s: b.digest() for s, b in e.books.items()}
        events = e.process(cmd)
        after = {s: b.digest() for s, b in e.books.items()}
        kinds = {type(ev).__name__ for ev in events}
        if kinds == {"Rejected"}:
            assert after == before, cmd
        elif "LevelChanged" in kinds:
            assert after != before, cmd
            changed += 1
    assert changed > 500


def test_restore_needs_a_fresh_engine() -> None:
    e = MatchingEngine(INSTRUMENTS, make_config())
    e.process(NewOrder(seq=1, ts=1, account=1, symbol="AAA", side=BUY, price=100, quantity=1))
    with pytest.raises(RuntimeError, match="fresh engine"):
        e.restore(e.snapshot())


# -- the invariant checker can fail ----------------------------------------------------------


def _populated() -> MatchingEngine:
    e = MatchingEngine(INSTRUMENTS, make_config())
    for seq, (account, side, price) in enumerate(
            [(1, BUY, 99), (2, BUY, 99), (3, BUY, 99), (1, BUY, 98), (2, SELL, 101),
             (3, SELL, 101), (1, SELL, 102)], 1):
        e.process(NewOrder(seq=seq, ts=seq, account=account, symbol="AAA", side=side,
                           price=price, quantity=5))
    e.check()
    return e


def _some_level(e: MatchingEngine) -> Any:
    for book in e.books.values():
        for side in (book.bids, book.asks):
            for level in side.levels.values():
                if len(level.orders) >= 2:
                    return book, side, level
    raise AssertionError("no level with two orders")


@pytest.mark.parametrize("corruption", ["total", "fifo", "index", "crossed", "empty", "leaves"])
def test_checkers_detect_corruption(corruption: str) -> None:
    e = _populated()
    book, side, level = _some_level(e)
    orders = list(level.orders.values())
    if corruption == "total":
        level.total += 1
    elif corruption == "fifo":
        first, second = orders[0], orders[1]
        level.orders = {second.order_id: second, first.order_id: first,
                        **{o.order_id: o for o in orders[2:]}}
    elif corruption == "index":
        del e.orders[orders[0].order_id]
    elif corruption == "crossed":
        opposite = book.asks if side is book.bids else book.bids
        o = orders[-1]
        del level.orders[o.order_id]
        level.total -= o.leaves
        o.side = opposite.side
        best = opposite.best_price()
        o.price = best if best is not None else o.price
        opposite.add(o)
    elif corruption == "empty":
        for o in orders:
            del level.orders[o.order_id]
            del e.orders[o.order_id]
        level.total = 0
    else:
        orders[0].leaves = 0
    with pytest.raises(AssertionError):
        e.check()
    arrivals = ArrivalTracker()
    arrivals.arrival = {o.order_id: o.priority for b in e.books.values() for o in b.orders()}
    for oid in e.orders:
        arrivals.arrival.setdefault(oid, 0)
    with pytest.raises((AssertionError, KeyError)):
        check_independently(e, arrivals)
