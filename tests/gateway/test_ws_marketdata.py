"""WebSocket market data beyond one symbol: ``*`` wildcards over symbols, the client's choice
of slow-consumer policy and buffer within the server's limits, and gap recovery from the
bounded topic history (or a fresh snapshot when it no longer holds the range). Real sockets,
an in-process exchange; plus property tests of :class:`TopicHistory` itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.gateway.test_http import (
    Book,
    engine_depth,
    order,
    read_until,
    request,
    running,
    settle,
    ws_connect,
)
from tickline.exchange import Exchange
from tickline.matching import BUY, SELL
from tickline.stream.topic_history import TopicHistory


def first(got: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(m for m in got if m["type"] == kind)


def depth_sink(book: Book) -> Any:
    """Feed only the depth channel's messages to ``book``."""
    def sink(m: dict[str, Any]) -> None:
        if m["type"] == "depth" or (m["type"] == "snapshot" and m["channel"] == "depth"):
            book.apply(m)
    return sink


def sweep(ex: Exchange, n: int, symbol: str = "AAPL", base: int = 100) -> None:
    """``n`` one-lot sell levels, then one buy sweeping them: ``n`` trades in one batch."""
    for i in range(n):
        ex.submit(order(11, SELL, f"{base + i}.00", "1", symbol=symbol))
    ex.submit(order(12, BUY, f"{base + n + 100}.00", str(n), symbol=symbol))


def test_wildcard_subscriptions_cover_every_matching_symbol(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            ws = await ws_connect(gw.port)
            await request(ws, {"op": "subscribe", "symbol": "*", "channels": ["trades"]})
            got = await read_until(ws, lambda m: m["type"] == "subscribed")
            assert first(got, "subscribed")["symbols"] == ["AAPL", "MSFT", "BTC-USD"]
            sweep(ex, 2, "MSFT")
            sweep(ex, 1, "AAPL")
            await settle(ex)
            trades: list[dict[str, Any]] = []
            await read_until(ws, lambda m: len(trades) >= 3,
                             lambda m: trades.append(m) if m["type"] == "trade" else None)
            assert sorted(t["symbol"] for t in trades) == ["AAPL", "MSFT", "MSFT"]
            # A pattern inside a symbol; no match is a typed error.
            await request(ws, {"op": "subscribe", "symbol": "*-USD", "channels": ["bbo"]})
            got = await read_until(ws, lambda m: m["type"] == "subscribed")
            assert first(got, "subscribed")["symbols"] == ["BTC-USD"]
            await request(ws, {"op": "subscribe", "symbol": "X*", "channels": ["bbo"]})
            got = await read_until(ws, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "unknown_symbol"
            assert len(gw._sessions.copy().pop().feeds) == 4
            # Unsubscribe by pattern.
            await request(ws, {"op": "unsubscribe", "symbol": "*"})
            got = await read_until(ws, lambda m: m["type"] == "unsubscribed")
            assert got[-1]["channels"] == ["trades", "bbo"]
            assert not gw._sessions.copy().pop().feeds
            await ws.close()

    asyncio.run(scenario())


def test_wildcard_counts_against_the_subscription_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, max_subscriptions=5) as (_ex, gw):
            ws = await ws_connect(gw.port)
            await request(ws, {"op": "subscribe", "symbol": "*",
                               "channels": ["trades", "bbo"]})
            got = await read_until(ws, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "too_many_subscriptions"
            assert not gw._sessions.copy().pop().feeds
            await ws.close()

    asyncio.run(scenario())


def test_client_chosen_buffer_and_policy(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, trades_capacity=50) as (ex, gw):
            # Above the server's limit: typed error, no feed.
            ws = await ws_connect(gw.port)
            await request(ws, {"op": "subscribe", "symbol": "AAPL", "channels": ["trades"],
                               "buffer": 51})
            got = await read_until(ws, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "invalid_message" and "50" in got[-1]["message"]
            # drop_oldest with a buffer of 3: a gap, then the newest three.
            await request(ws, {"op": "subscribe", "symbol": "AAPL", "channels": ["trades"],
                               "buffer": 3})
            got = await read_until(ws, lambda m: m["type"] == "subscribed")
            sub = first(got, "subscribed")
            assert sub["buffer"] == {"trades": 3} and sub["policy"] == "drop_oldest"
            # disconnect with a buffer of 3, on a second session.
            strict = await ws_connect(gw.port)
            await request(strict, {"op": "subscribe", "symbol": "AAPL",
                                   "channels": ["trades"], "buffer": 3,
                                   "policy": "disconnect"})
            await read_until(strict, lambda m: m["type"] == "subscribed")
            sweep(ex, 10)
            await settle(ex)
            got = await read_until(ws, lambda m: m["type"] == "trade" and m["seq"] == 10)
            assert [m["type"] for m in got].count("gap") == 1
            assert [m["seq"] for m in got if m["type"] == "trade"] == [8, 9, 10]
            closed = None
            try:
                await read_until(strict, lambda m: False, timeout=5)
            except ConnectionClosed as exc:
                closed = exc
            assert closed is not None and closed.rcvd is not None
            assert closed.rcvd.code == 1008 and "slow consumer" in closed.rcvd.reason
            assert gw.statistics().ws_slow_consumer_disconnects == 1
            await ws.close()

    asyncio.run(scenario())


def test_gap_recovery_from_history_or_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, history_per_topic=12) as (ex, gw):
            ws = await ws_connect(gw.port)
            book = Book()
            apply = depth_sink(book)
            await request(ws, {"op": "subscribe", "symbol": "AAPL",
                               "channels": ["trades", "depth"], "buffer": 3})
            await read_until(ws, lambda m: m["type"] == "snapshot", apply)
            sweep(ex, 10)
            await settle(ex)
            got = await read_until(ws, lambda m: m["type"] == "trade" and m["seq"] == 10,
                                   apply)
            gap = next(m for m in got if m["type"] == "gap")
            assert (gap["from_seq"], gap["to_seq"]) == (1, 7)
            # The missed range, from the history: exactly what was published.
            await request(ws, {"op": "replay", "channel": "trades", "symbol": "AAPL",
                               "from_seq": gap["from_seq"], "to_seq": gap["to_seq"], "id": 1})
            got = await read_until(ws, lambda m: m["type"] == "replay", apply)
            replay = got[-1]
            assert replay["id"] == 1
            assert [t["seq"] for t in replay["messages"]] == list(range(1, 8))
            assert [t["price"] for t in replay["messages"]] == [f"{100 + i}.00"
                                                                for i in range(7)]
            # More trades than the history holds: an old range comes back as a snapshot
            # of what is held, with the seq the live feed continues from.
            sweep(ex, 10, base=200)
            await settle(ex)
            await read_until(ws, lambda m: m["type"] == "trade" and m["seq"] == 20,
                             apply)
            await request(ws, {"op": "replay", "channel": "trades", "symbol": "AAPL",
                               "from_seq": 1, "to_seq": 7})
            got = await read_until(ws, lambda m: m["type"] == "snapshot"
                                   and m["channel"] == "trades", apply)
            snap = got[-1]
            assert snap["seq"] == 20 and snap["resync"] is True
            assert [t["seq"] for t in snap["messages"]] == list(range(9, 21))
            sweep(ex, 1, base=400)
            await settle(ex)
            got = await read_until(ws, lambda m: m["type"] == "trade", apply)
            assert [m["seq"] for m in got if m["type"] == "trade"] == [21]
            # Depth: a fresh snapshot in the feed's place; the book stays exact.
            await request(ws, {"op": "replay", "channel": "depth", "symbol": "AAPL"})
            await read_until(ws, lambda m: m["type"] == "snapshot"
                             and m["channel"] == "depth", apply)
            assert book.depth() == engine_depth(ex, "AAPL")
            # Typed errors.
            for bad, code in (({"channel": "news", "symbol": "AAPL"}, "unknown_channel"),
                              ({"channel": "bbo", "symbol": "AAPL"}, "invalid_message"),
                              ({"channel": "depth", "symbol": "MSFT"}, "invalid_message"),
                              ({"channel": "trades", "symbol": "AAPL", "from_seq": 5,
                                "to_seq": 2}, "invalid_message"),
                              ({"channel": "trades", "symbol": "NOPE"}, "unknown_symbol")):
                await request(ws, {"op": "replay", **bad})
                got = await read_until(ws, lambda m: m["type"] == "error", apply)
                assert got[-1]["code"] == code, (bad, got[-1])
            await ws.close()

    asyncio.run(scenario())


def test_replays_have_their_own_rate_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, replays_per_second=1.0) as (_ex, gw):
            ws = await ws_connect(gw.port)
            codes = []
            for _ in range(3):  # a burst of 2, then refused
                await request(ws, {"op": "replay", "channel": "trades", "symbol": "AAPL",
                                   "from_seq": 1, "to_seq": 1})
                got = await read_until(ws, lambda m: m["type"] in ("snapshot", "error"))
                codes.append(got[-1].get("code", got[-1]["type"]))
            assert codes == ["snapshot", "snapshot", "rate_limited"]
            await ws.close()

    asyncio.run(scenario())


# -- TopicHistory itself ---------------------------------------------------------------------

def msgs(seqs: list[int]) -> list[Any]:
    return [SimpleNamespace(seq=s) for s in seqs]


@given(st.integers(1, 8), st.lists(st.lists(st.integers(1, 3), min_size=1, max_size=6),
                                   min_size=1, max_size=12),
       st.integers(0, 60), st.integers(0, 60))
def test_history_serves_a_range_exactly_or_not_at_all(per_topic: int, batches: list[list[int]],
                                                      lo: int, hi: int) -> None:
    """Batches with random holes (a step of 2 or 3 skips messages): a range is served only
    if every message in it was recorded and is still among the newest contiguous run."""
    h = TopicHistory(per_topic)
    seq = 0
    seen: list[int] = []
    for steps in batches:
        batch = []
        for step in steps:
            seq += step
            batch.append(seq)
        seen.extend(batch)
        h.record("trades.X", msgs(batch))
    assert h.last_seq("trades.X") == seq
    got = h.range("trades.X", lo, hi)
    held = [m.seq for m in h.recent("trades.X")]
    assert len(held) <= per_topic
    assert held == list(range(held[0], held[0] + len(held)))  # contiguous
    assert held[-1] == seq
    if hi < lo:
        assert got == []
    elif got is None:
        assert not (held[0] <= lo and hi <= held[-1])
    else:
        assert [m.seq for m in got] == list(range(lo, hi + 1))
        assert set(range(lo, hi + 1)) <= set(seen)


def test_history_ignores_repeats_and_zero_depth() -> None:
    h = TopicHistory(4)
    h.record("t", msgs([1, 2, 3]))
    h.record("t", msgs([2, 3, 4]))
    assert [m.seq for m in h.recent("t")] == [1, 2, 3, 4]
    assert h.restarts == 0
    off = TopicHistory(0)
    off.record("t", msgs([1, 2]))
    assert off.range("t", 1, 2) is None and off.last_seq("t") == 2
