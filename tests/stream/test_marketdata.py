"""Market data: rebuilt books equal the engine's, sequences, gaps and resync, bars/VWAP."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    Command,
    Instrument,
    MatchingEngine,
    NewOrder,
    Replace,
    TimeTick,
    Trade,
)
from tickline.matching.types import FOK, GTC, GTD, IOC, MARKET
from tickline.stream import (
    Bar,
    Bbo,
    Bus,
    DepthBook,
    DepthDelta,
    MarketDataMessage,
    MarketDataPublisher,
    OrderAdded,
    OrderDeleted,
    OrderExecuted,
    OrderModified,
    SequenceTracker,
    TradeTick,
)

SYMBOLS = ("AAA", "BBB")

# One op: (kind, symbol index, side, price offset, quantity, tif, account, pick, time step)
op_st = st.tuples(
    st.sampled_from(["new", "new", "new", "cancel", "replace", "replace", "tick"]),
    st.integers(0, 1), st.sampled_from([BUY, SELL]), st.integers(-6, 6), st.integers(1, 30),
    st.sampled_from([GTC, GTC, GTC, IOC, FOK, GTD, MARKET]), st.integers(1, 4),
    st.integers(0, 10_000), st.integers(0, 400),
)


def build_commands(engine: MatchingEngine, ops: list[tuple[Any, ...]]) -> Any:
    """Turn random ops into commands against the engine's live orders, lazily (each command
    is yielded before it is processed, so picks see the current book)."""
    ts = 1_000
    for seq, (kind, si, side, off, qty, tif, account, pick, step) in enumerate(ops, 1):
        ts += step
        symbol = SYMBOLS[si]
        live = [o for o in engine.orders.values() if o.symbol == symbol]
        cmd: Command
        if kind == "tick":
            cmd = TimeTick(seq=seq, ts=ts)
        elif kind == "new" or not live:
            order_type = 1
            if tif == MARKET:
                order_type, tif = MARKET, IOC
            cmd = NewOrder(seq=seq, ts=ts, account=account, symbol=symbol, side=side,
                           price=100 + off, quantity=qty, tif=tif, order_type=order_type,
                           expire_time=ts + 50 * qty if tif == GTD else 0)
        elif kind == "cancel":
            target = live[pick % len(live)]
            cmd = Cancel(seq=seq, ts=ts, account=target.account, symbol=symbol,
                         order_id=target.order_id)
        else:
            target = live[pick % len(live)]
            price = 100 + off if pick % 3 else 0
            new_qty = target.filled + qty if pick % 2 else 0
            cmd = Replace(seq=seq, ts=ts, account=target.account, symbol=symbol,
                          order_id=target.order_id, price=price, quantity=new_qty)
        yield cmd


def setup(**kw: Any) -> tuple[MatchingEngine, Bus, MarketDataPublisher]:
    instruments = [Instrument(symbol=s) for s in SYMBOLS]
    engine = MatchingEngine(instruments)
    bus = Bus(default_capacity=1_000_000)
    return engine, bus, MarketDataPublisher(bus, instruments, **kw)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(op_st, min_size=100, max_size=1000), join_at=st.integers(0, 300),
       batch=st.sampled_from([1, 1, 3, 17]))
def test_books_rebuilt_from_snapshot_and_deltas_equal_the_engines(
    ops: list[tuple[Any, ...]], join_at: int, batch: int
) -> None:
    engine, bus, md = setup()
    early = {s: md.subscribe_depth(s) for s in SYMBOLS}
    early_books = {}
    for s, (snap, _sub) in early.items():
        early_books[s] = DepthBook(s)
        early_books[s].apply_snapshot(snap)
    l3_subs = {s: md.subscribe_l3(s)[1] for s in SYMBOLS}
    l3_books: dict[str, dict[int, list[int]]] = {s: {} for s in SYMBOLS}
    conflated = bus.subscribe("depth.*", policy="conflate", capacity=10_000)
    conflated_books: dict[str, dict[tuple[int, int], tuple[int, int]]] = defaultdict(dict)
    bbo = bus.subscribe("bbo.*")
    seqs = SequenceTracker()
    everything = bus.subscribe(">")
    late: dict[str, tuple[DepthBook, Any]] = {}
    pending: list[tuple[int, int, list[Any]]] = []

    for i, cmd in enumerate(build_commands(engine, ops)):
        pending.append((cmd.seq, cmd.ts, engine.process(cmd)))
        if len(pending) < batch and i != len(ops) - 1:
            continue
        md.publish_batch(pending)
        pending = []
        if i >= join_at and not late:  # late joiners, mid-stream
            for s in SYMBOLS:
                snap, sub = md.subscribe_depth(s)
                book = DepthBook(s)
                book.apply_snapshot(snap)
                late[s] = (book, sub)
        md.check(engine.books)
        for s in SYMBOLS:
            truth = engine.books[s].depth(1 << 30)
            for book, sub in ((early_books[s], early[s][1]), late.get(s, (None, None))):
                if book is None:
                    continue
                for delta in sub.drain():
                    assert book.apply(delta), (delta, book.seq)
                assert book.depth() == truth
            # L3: replay order events into {order_id: [side, price, qty]} in arrival order
            l3 = l3_books[s]
            for msg in l3_subs[s].drain():
                if type(msg) is OrderAdded:
                    l3[msg.order_id] = [msg.side, msg.price, msg.quantity]
                elif type(msg) is OrderModified:
                    l3[msg.order_id][2] = msg.quantity
                elif type(msg) is OrderExecuted:
                    l3[msg.order_id][2] = msg.leaves
                    if msg.leaves == 0:
                        del l3[msg.order_id]
                else:
                    assert type(msg) is OrderDeleted
                    del l3[msg.order_id]
            resting = {o.order_id: [o.side, o.price, o.leaves]
                       for o in engine.books[s].orders()}
            assert l3 == resting
        # Conflated deltas are absolute per level: the latest per level gives the book.
        for delta in conflated.drain():
            key = (delta.side, delta.price)
            if delta.order_count:
                conflated_books[delta.symbol][key] = (delta.quantity, delta.order_count)
            else:
                conflated_books[delta.symbol].pop(key, None)
        for s in SYMBOLS:
            depth = engine.books[s].depth(1 << 30)
            want = {(BUY, p): (q, c) for p, q, c in depth["bids"]}
            want.update({(SELL, p): (q, c) for p, q, c in depth["asks"]})
            assert conflated_books[s] == want
        for msg in bbo.drain():
            assert type(msg) is Bbo
        for s in SYMBOLS:
            bid, ask = engine.books[s].best_bid(), engine.books[s].best_ask()
            cur = md.bbo(s)
            assert (cur.bid_price, cur.bid_quantity) == (bid or (0, 0))
            assert (cur.ask_price, cur.ask_quantity) == (ask or (0, 0))
        # Per-topic sequence numbers are continuous on an unbounded subscriber.
        for msg in everything.drain():
            topic = {TradeTick: "trades", Bbo: "bbo", DepthDelta: "depth", Bar: "bars"}.get(
                type(msg), "l3")
            assert seqs.observe(f"{topic}.{msg.symbol}", msg.seq) == 0
    assert seqs.gaps == 0


def test_late_joiner_snapshot_continues_the_sequence_and_bbo_only_on_change() -> None:
    engine, bus, md = setup()
    bbo = bus.subscribe("bbo.AAA")
    cmds = [
        NewOrder(seq=1, ts=1, account=1, symbol="AAA", side=BUY, price=99, quantity=5),
        NewOrder(seq=2, ts=2, account=1, symbol="AAA", side=BUY, price=98, quantity=5),
        NewOrder(seq=3, ts=3, account=2, symbol="AAA", side=SELL, price=101, quantity=5),
    ]
    for cmd in cmds:
        md.publish(cmd.seq, cmd.ts, engine.process(cmd))
    assert [(m.seq, m.bid_price, m.ask_price) for m in bbo.drain()] == [(1, 99, 0), (2, 99, 101)]
    snap, sub = md.subscribe_depth("AAA")
    assert snap.seq == 0  # nobody listened to depth.AAA before: its sequence never moved
    assert snap.bids == [(99, 5, 1), (98, 5, 1)] and snap.asks == [(101, 5, 1)]
    cmd = NewOrder(seq=4, ts=4, account=2, symbol="AAA", side=SELL, price=99, quantity=2)
    md.publish(cmd.seq, cmd.ts, engine.process(cmd))
    deltas = sub.drain()
    assert [(d.seq, d.side, d.price, d.quantity, d.order_count) for d in deltas] == [
        (1, BUY, 99, 3, 1)]
    snap2 = md.depth_snapshot("AAA")
    assert snap2.seq == 1 and snap2.bids[0] == (99, 3, 1)
    assert [(m.seq, m.bid_quantity) for m in bbo.drain()] == [(3, 3)]


def test_gaps_are_detected_after_drops_and_resync_recovers() -> None:
    engine, _bus, md = setup()
    snap, sub = md.subscribe_depth("AAA", capacity=8)  # drop_oldest, small: will drop
    book = DepthBook("AAA")
    book.apply_snapshot(snap)
    ops = [("new", 0, BUY if i % 2 else SELL, i % 7 - 3, 5, GTC, 1 + i % 3, i, 1)
           for i in range(200)]
    for cmd in build_commands(engine, ops):
        md.publish(cmd.seq, cmd.ts, engine.process(cmd))
    stats = sub.statistics()
    assert stats.dropped > 0 and stats.queued == 8
    applied = [book.apply(d) for d in sub.drain()]
    assert not any(applied) and book.gaps == 1 and book.needs_snapshot
    book.apply_snapshot(md.depth_snapshot("AAA"))  # resync
    assert book.resyncs == 1 and book.depth() == engine.books["AAA"].depth(1 << 30)
    for cmd in build_commands(engine, ops[:5]):
        md.publish(cmd.seq, cmd.ts, engine.process(cmd))
    assert all(book.apply(d) for d in sub.drain())
    assert book.depth() == engine.books["AAA"].depth(1 << 30)

    tracker = SequenceTracker()
    assert [tracker.observe("t", s) for s in (1, 2, 5, 5, 6, 9)] == [0, 0, 2, -1, 0, 2]
    assert tracker.gaps == 2 and tracker.missed == 4


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(op_st, min_size=20, max_size=300),
       windows=st.sampled_from([(1_000,), (250, 1_000), (3_000, 700)]))
def test_bars_and_vwap_match_a_direct_computation(
    ops: list[tuple[Any, ...]], windows: tuple[int, ...]
) -> None:
    engine, bus, md = setup(bar_windows=windows)
    bars_sub = bus.subscribe("bars.>")
    trades: list[tuple[int, str, int, int]] = []
    last_ts = 0
    for cmd in build_commands(engine, ops):
        events = engine.process(cmd)
        trades.extend((cmd.ts, e.symbol, e.price, e.quantity) for e in events if type(e) is Trade)
        md.publish(cmd.seq, cmd.ts, events)
        last_ts = cmd.ts
    got = {(b.symbol, b.window, b.start): b for b in bars_sub.drain()}
    want: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
    for ts, symbol, price, qty in trades:
        for w in windows:
            start = ts - ts % w
            if start + w <= last_ts:  # closed: a later command's ts reached its end
                want[(symbol, f"{w}ns" if w % 1000 else f"{w // 1000}us", start)].append(
                    (price, qty))
    assert set(got) == set(want)
    for key, fills in want.items():
        bar = got[key]
        prices = [p for p, _ in fills]
        volume = sum(q for _, q in fills)
        notional = sum(p * q for p, q in fills)
        assert (bar.open, bar.high, bar.low, bar.close) == (
            prices[0], max(prices), min(prices), prices[-1])
        assert (bar.volume, bar.notional, bar.trades) == (volume, notional, len(fills))
        assert type(bar.vwap) is Fraction and bar.vwap == Fraction(notional, volume)
        assert bar.end - bar.start in windows
    per_topic: dict[str, list[int]] = defaultdict(list)
    for bar in got.values():
        per_topic[f"{bar.symbol}.{bar.window}"].append(bar.seq)
    for seqs in per_topic.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))


def test_messages_round_trip_through_json() -> None:
    engine, bus, md = setup()
    sub = bus.subscribe(">", admin=True)
    cmds = [NewOrder(seq=1, ts=1, account=1, symbol="AAA", side=SELL, price=100, quantity=10),
            NewOrder(seq=2, ts=2_000_000_000, account=2, symbol="AAA", side=BUY, price=100,
                     quantity=4),
            TimeTick(seq=3, ts=5_000_000_000)]
    for cmd in cmds:
        md.publish(cmd.seq, cmd.ts, engine.process(cmd))
    msgs = [*sub.drain(), md.depth_snapshot("AAA"), md.l3_snapshot("AAA")]
    assert {type(m).__name__ for m in msgs} >= {"TradeTick", "Bar", "Bbo",
                                                 "DepthDelta", "OrderAdded", "OrderExecuted"}
    data = msgspec.json.encode(msgs)
    assert msgspec.json.decode(data, type=list[MarketDataMessage]) == msgs


def test_publisher_seeded_from_an_engine_book() -> None:
    engine, _bus, _md = setup()
    for i in range(1, 30):
        engine.process(NewOrder(seq=i, ts=i, account=1 + i % 3, symbol="AAA",
                                side=BUY if i % 2 else SELL, price=100 + (i % 5) * (
                                    -1 if i % 2 else 1) + (0 if i % 2 else 5), quantity=i))
    bus = Bus()
    md = MarketDataPublisher(bus, [Instrument(symbol=s) for s in SYMBOLS], books=engine.books)
    md.check(engine.books)
    snap = md.depth_snapshot("AAA")
    assert snap.bids == engine.books["AAA"].depth(100)["bids"]


def test_exchange_core_mix_long_run_rebuilds_depth_and_l3() -> None:
    """A long run of the benchmark mix, published in uneven batches: a depth subscriber that
    joined late, and the mirror, equal the engine's book throughout."""
    from tickline.bench.workload import exchange_core_mix

    work = exchange_core_mix(6_000, seed=7)
    engine = work.engine()
    bus = Bus(default_capacity=1_000_000)
    md = MarketDataPublisher(bus, work.instruments)
    symbol = work.instruments[0].symbol
    for cmd in work.prefill:
        md.publish(cmd.seq, cmd.ts, engine.process(cmd))
    snap, sub = md.subscribe_depth(symbol)
    book = DepthBook(symbol)
    book.apply_snapshot(snap)
    l3_snap, l3_sub = md.subscribe_l3(symbol)
    l3 = {oid: [side, price, qty] for oid, side, price, qty in l3_snap.orders}
    assert len(l3) == len(engine.orders) > 500
    seqs = SequenceTracker()
    trades = bus.subscribe(f"trades.{symbol}")
    batch: list[tuple[int, int, list[Any]]] = []
    for i, cmd in enumerate(work.commands):
        batch.append((cmd.seq, cmd.ts, engine.process(cmd)))
        if len(batch) >= 1 + i % 13:
            md.publish_batch(batch)
            batch = []
            for delta in sub.drain():
                assert book.apply(delta)
            assert book.depth() == engine.books[symbol].depth(1 << 30)
            if i % 50 == 0:
                md.check(engine.books)
    md.publish_batch(batch)
    md.check(engine.books)
    l3_seqs = [l3_snap.seq]
    for msg in l3_sub.drain():
        l3_seqs.append(msg.seq)
        if type(msg) is OrderAdded:
            l3[msg.order_id] = [msg.side, msg.price, msg.quantity]
        elif type(msg) is OrderModified:
            l3[msg.order_id][2] = msg.quantity
        elif type(msg) is OrderExecuted:
            l3[msg.order_id][2] = msg.leaves
            if msg.leaves == 0:
                del l3[msg.order_id]
        else:
            del l3[msg.order_id]
    assert l3_seqs == list(range(l3_snap.seq, l3_snap.seq + len(l3_seqs)))
    assert l3 == {o.order_id: [o.side, o.price, o.leaves] for o in engine.books[symbol].orders()}
    stats = md.statistics()
    assert stats.commands == len(work.prefill) + len(work.commands)
    assert stats.last_seq == work.commands[-1].seq
    for t in trades.drain():
        assert seqs.observe("t", t.seq) == 0
    assert seqs.last["t"] > 100  # the mix trades
