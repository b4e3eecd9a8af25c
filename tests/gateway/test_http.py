"""The HTTP/WebSocket gateway over real sockets: an in-process :class:`Exchange` (real journal
in a temporary directory, running on the event loop) behind :class:`HttpGateway` on port 0.

HTTP requests are written by hand on an asyncio stream (the gateway answers with
``Connection: close``); WebSocket clients use the ``websockets`` asyncio client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tickline.config import ServerConfig, default_config
from tickline.core.metrics import LatencyRecorder
from tickline.exchange import Exchange, ExchangeCollector
from tickline.gateway.http import HttpGateway, hdr_summary
from tickline.matching import BUY, SELL, Cancel, NewOrder

CONFIG = default_config()
AAPL = next(i for i in CONFIG.instruments if i.symbol == "AAPL")
BTC = next(i for i in CONFIG.instruments if i.symbol == "BTC-USD")


class StandInServer:
    """What :class:`HttpGateway` needs from ``tickline.server.Server`` (the binary gateway,
    which ``Server.start`` also starts, is another component)."""

    def __init__(self, exchange: Exchange, config: ServerConfig | None) -> None:
        self.exchange = exchange
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ExchangeCollector(exchange))

    def health(self) -> dict[str, Any]:
        ex = self.exchange
        return {"status": "stopping" if ex.processor.stopping else "ok",
                "last_seq": ex.engine.last_seq, "resting_orders": len(ex.engine.orders),
                "journal": ex.journal.statistics() if ex.journal is not None else None}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, config: ServerConfig = CONFIG,
                  **options: Any) -> AsyncIterator[tuple[Exchange, HttpGateway]]:
    """An exchange (running task, journal in ``tmp_path``) and a gateway on a free port;
    ``options`` override single ``[websocket]`` settings of ``config``."""
    ex = Exchange(config.instruments, engine_config=config.engine_config(),
                  journal_dir=tmp_path / "journal", durability="none", segment_bytes=1 << 20)
    runner = asyncio.create_task(ex.run())
    gw = HttpGateway(StandInServer(ex, config), **options)
    port = await gw.start("127.0.0.1", 0)
    assert port > 0 and gw.port == port
    try:
        yield ex, gw
    finally:
        await gw.close()
        await ex.stop()
        await runner


class HttpResult:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


async def get(port: int, path: str, *, method: str = "GET",
              headers: dict[str, str] | None = None, host: str | None = None) -> HttpResult:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    assert int(hdrs["content-length"]) == len(body)
    return HttpResult(int(status_line.split()[1]), hdrs, body)


def order(account: int, side: int, price: str, qty: str, symbol: str = "AAPL",
          **kw: Any) -> NewOrder:
    inst = AAPL if symbol == "AAPL" else BTC
    return NewOrder(account=account, symbol=symbol, side=side, price=inst.price_from_str(price),
                    quantity=inst.qty_from_str(qty), **kw)


async def settle(ex: Exchange) -> None:
    """Let the exchange task take everything submitted and the bus run its callbacks."""
    for _ in range(200):
        await asyncio.sleep(0)
        if not ex.processor.has_work():
            break
    for _ in range(5):
        await asyncio.sleep(0)


def engine_depth(ex: Exchange, symbol: str, n: int = 1 << 30) -> dict[str, list[list[Any]]]:
    inst = AAPL if symbol == "AAPL" else BTC
    depth = ex.engine.books[symbol].depth(n)
    return {side: [[inst.price_to_str(p), inst.qty_to_str(q), c] for p, q, c in depth[side]]
            for side in ("bids", "asks")}


def random_orders(rnd: random.Random, n: int, symbol: str = "AAPL") -> list[NewOrder | Cancel]:
    """Limit orders around 100.00 from the market-maker accounts, some IOC, some cancels."""
    cmds: list[NewOrder | Cancel] = []
    for i in range(n):
        account = 11 + rnd.randrange(4)
        if i > 10 and rnd.random() < 0.15:
            cmds.append(Cancel(account=account, symbol=symbol,
                               orig_client_order_id=f"o{rnd.randrange(i)}"))
            continue
        side = rnd.choice((BUY, SELL))
        offset = rnd.randint(-3, 15)
        cents = 10_000 - offset if side == BUY else 10_000 + offset
        cmds.append(NewOrder(account=account, symbol=symbol, side=side, price=cents,
                             quantity=rnd.randint(1, 50), tif=1 if rnd.random() < 0.9 else 2,
                             client_order_id=f"o{i}"))
    return cmds


# --- WebSocket client helpers ----------------------------------------------------------------


class Book:
    """A client-side depth book rebuilt from the gateway's snapshot and depth messages,
    checking that every update continues the sequence."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.bids: dict[str, tuple[str, int]] = {}
        self.asks: dict[str, tuple[str, int]] = {}
        self.snapshots = 0
        self.resyncs = 0

    def apply(self, m: dict[str, Any]) -> None:
        if m["type"] == "snapshot":
            self.bids = {p: (q, c) for p, q, c in m["bids"]}
            self.asks = {p: (q, c) for p, q, c in m["asks"]}
            self.seq = m["seq"]
            self.snapshots += 1
            self.resyncs += bool(m["resync"])
        elif m["type"] == "depth":
            assert self.seq is not None, "depth before snapshot"
            assert m["first_seq"] == self.seq + 1, (m["first_seq"], self.seq)
            assert m["seq"] >= m["first_seq"]
            for side, levels in ((self.bids, m["bids"]), (self.asks, m["asks"])):
                for p, q, c in levels:
                    if c:
                        side[p] = (q, c)
                    else:
                        assert Decimal(q) == 0
                        side.pop(p, None)
            self.seq = m["seq"]

    def depth(self) -> dict[str, list[list[Any]]]:
        return {
            "bids": [[p, *self.bids[p]] for p in sorted(self.bids, key=Decimal, reverse=True)],
            "asks": [[p, *self.asks[p]] for p in sorted(self.asks, key=Decimal)],
        }


async def ws_connect(port: int, **kw: Any) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5, **kw)


async def request(ws: ClientConnection, obj: Any) -> None:
    await ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))


async def read_until(ws: ClientConnection, done: Callable[[dict[str, Any]], bool],
                     sink: Callable[[dict[str, Any]], None] | None = None,
                     timeout: float = 10.0) -> list[dict[str, Any]]:
    """Read frames (each a JSON array) until a message satisfies ``done``; return every
    message read (the whole last frame: nothing read is lost)."""
    got: list[dict[str, Any]] = []

    async def loop() -> None:
        finished = False
        while not finished:
            frame = json.loads(await ws.recv())
            assert isinstance(frame, list) and frame, frame
            for m in frame:
                got.append(m)
                if sink is not None:
                    sink(m)
                finished = finished or done(m)

    await asyncio.wait_for(loop(), timeout)
    return got


# --- HTTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 20_000])
def test_hdr_summary_equals_recorder_snapshot(n: int) -> None:
    rnd = random.Random(n)
    rec = LatencyRecorder("x")
    for _ in range(n):
        rec.record(int(rnd.lognormvariate(11, 2)) + 1)
    snap = rec.snapshot()
    got = hdr_summary(rec)
    assert got["count"] == snap.count == n
    assert {p: got[f"p{p:g}"] for p in snap.percentiles} == dict(snap.percentiles)
    assert snap.max <= got["max"] <= snap.max * 1.001 + 1  # HDR's highest equivalent value


def test_metrics_health_and_stats(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            for cmd in random_orders(random.Random(1), 200):
                ex.submit(cmd)
            await settle(ex)
            ws = await ws_connect(gw.port)
            await request(ws, {"op": "subscribe", "symbol": "AAPL", "channels": ["depth"]})
            await read_until(ws, lambda m: m["type"] == "snapshot")

            r = await get(gw.port, "/metrics")
            assert r.status == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
            for name in ("tickline_exchange_commands", "tickline_exchange_sequence_seconds",
                         "tickline_exchange_match_seconds",
                         "tickline_exchange_journal_seconds", "tickline_exchange_publish_seconds",
                         "tickline_inbound_queue_wait_seconds", "tickline_http_requests",
                         "tickline_ws_sessions", "tickline_ws_sessions_opened",
                         "tickline_ws_messages_sent", "tickline_ws_frames_sent",
                         "tickline_ws_slow_consumer_disconnects", "tickline_ws_frame_send_seconds",
                         "tickline_http_request_seconds", "tickline_ws_pending_max"):
                assert name in families, name
            commands = families["tickline_exchange_commands"].samples[0].value
            assert commands == ex.commands == 200
            assert families["tickline_ws_sessions"].samples[0].value == 1
            assert families["tickline_ws_messages_sent"].samples[0].value >= 2
            routes = {(s.labels["route"], s.labels["code"]): s.value
                      for s in families["tickline_http_requests"].samples}
            assert routes[("/ws", "101")] == 1

            r = await get(gw.port, "/health")
            assert r.status == 200
            health = r.json()
            assert health["status"] == "ok" and health["last_seq"] == 200
            assert health["journal"]["last_seq"] == 200

            r = await get(gw.port, "/stats.json")
            assert r.status == 200
            stats = r.json()
            assert stats["symbols"] == ["AAPL", "MSFT", "BTC-USD"]
            assert stats["commands"] == 200 and stats["last_seq"] == 200
            assert set(stats["stages"]) == {"queue_wait", "match", "journal", "publish",
                                            "end_to_end"}
            assert stats["stages"]["end_to_end"]["count"] == 200
            assert stats["stages"]["match"]["p50"] > 0
            assert "commands_per_s" in stats["rates"]
            await ws.close()

            ex.close()  # stopping: health turns 503, the gateway still answers
            r = await get(gw.port, "/health")
            assert r.status == 503 and r.json()["status"] == "stopping"

    asyncio.run(scenario())


def test_book_equals_engine_depth(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            for cmd in random_orders(random.Random(2), 400):
                ex.submit(cmd)
            ex.submit(order(1, SELL, "90000.50", "0.0125", "BTC-USD"))
            ex.submit(order(1, BUY, "89999.00", "1.5", "BTC-USD"))
            await settle(ex)
            assert ex.commands == 402
            for depth in (1, 5, 10, 1000):
                r = await get(gw.port, f"/book/AAPL?depth={depth}")
                assert r.status == 200
                book = r.json()
                want = engine_depth(ex, "AAPL", depth)
                assert [[lv["price"], lv["quantity"], lv["orders"]] for lv in book["bids"]] \
                    == want["bids"]
                assert [[lv["price"], lv["quantity"], lv["orders"]] for lv in book["asks"]] \
                    == want["asks"]
                assert book["depth"] == depth and book["symbol"] == "AAPL"
                assert book["seq"] == ex.publisher.depth_snapshot("AAPL").seq
                assert book["last_seq"] == 402
                assert book["best_bid"] == {"price": want["bids"][0][0],
                                            "quantity": want["bids"][0][1]}
                assert book["best_ask"] == {"price": want["asks"][0][0],
                                            "quantity": want["asks"][0][1]}
            r = await get(gw.port, "/book/BTC-USD")
            assert r.json()["asks"] == [{"price": "90000.50", "quantity": "0.0125", "orders": 1}]
            assert r.json()["bids"] == [{"price": "89999.00", "quantity": "1.5000", "orders": 1}]
            r = await get(gw.port, "/book/MSFT")  # empty book
            assert r.json()["bids"] == [] and r.json()["best_ask"] is None

    asyncio.run(scenario())


def test_http_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (_ex, gw):
            port = gw.port
            r = await get(port, "/book/NOPE")
            assert r.status == 404
            assert r.json() == {"error": "unknown_symbol", "message": "unknown symbol 'NOPE'"}
            for bad in ("0", "-1", "x", "1001", "1.5", "%C2%B2", "99999999999999999999", ""):
                r = await get(port, f"/book/AAPL?depth={bad}")
                assert r.status == 400, bad
                assert r.json()["error"] in ("bad_depth", "bad_query"), bad
            r = await get(port, "/book/AAPL?depth=1&depth=2")
            assert r.status == 400 and r.json()["error"] == "bad_depth"
            r = await get(port, "/nope")
            assert r.status == 404 and r.json()["error"] == "not_found"
            r = await get(port, "/metrics", method="POST")
            assert r.status == 405 and r.headers["allow"] == "GET"
            r = await get(port, "/ws", headers={"Origin": "http://evil.example"})
            assert r.status == 403 and r.json()["error"] == "forbidden_origin"
            r = await get(port, "/ws")  # not an upgrade request
            assert r.status == 426
            r = await get(port, "/book/AAPL", headers={"Origin": f"http://127.0.0.1:{port}"})
            assert r.status == 200
            # An oversized request line is refused by the HTTP parser, nothing is served.
            r = await get(port, "/book/AAPL?x=" + "a" * 9000)
            assert r.status == 414

    asyncio.run(scenario())


def test_dashboard_page_is_self_contained(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (_ex, gw):
            r = await get(gw.port, "/")
            assert r.status == 200
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            assert "connect-src 'self'" in r.headers["content-security-policy"]
            page = r.body.decode()
            for needle in ("<canvas", "/ws", "depth", "trades", "stats"):
                assert needle in page
            for external in ('src="http', "src='http", 'href="http', "@import", "url(http",
                             "//cdn", "fonts.googleapis"):
                assert external not in page, external

    asyncio.run(scenario())


# --- WebSocket -------------------------------------------------------------------------------


def test_ws_snapshot_and_deltas_rebuild_the_book(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            rnd = random.Random(3)
            for cmd in random_orders(rnd, 300):  # a book exists before the client joins
                ex.submit(cmd)
            await settle(ex)
            ws = await ws_connect(gw.port)
            book = Book()
            trades: list[dict[str, Any]] = []
            bbos: list[dict[str, Any]] = []

            def sink(m: dict[str, Any]) -> None:
                book.apply(m)
                if m["type"] == "trade":
                    trades.append(m)
                elif m["type"] == "bbo":
                    bbos.append(m)
                assert m["type"] not in ("error", "gap"), m

            await request(ws, {"op": "subscribe", "symbol": "AAPL",
                               "channels": ["depth", "trades", "bbo", "bars"]})
            got = await read_until(ws, lambda m: m["type"] == "snapshot", sink)
            assert got[0] == {"type": "subscribed", "symbol": "AAPL",
                              "channels": ["depth", "trades", "bbo", "bars"],
                              "symbols": ["AAPL"], "policy": "drop_oldest",
                              "buffer": {"depth": 4096, "trades": 1000, "bbo": 1,
                                         "bars": 100}}
            assert book.depth() == engine_depth(ex, "AAPL")
            trades_before = ex.engine.next_trade_id
            # Live traffic while subscribed, in several batches.
            for _ in range(6):
                for cmd in random_orders(rnd, 150):
                    ex.submit(cmd)
                await asyncio.sleep(0.01)
            await settle(ex)
            final_seq = ex.publisher.depth_snapshot("AAPL").seq
            assert final_seq > book.seq  # type: ignore[operator]
            await read_until(ws, lambda m: book.seq == final_seq, sink)
            assert book.depth() == engine_depth(ex, "AAPL")
            assert book.snapshots == 1 and book.resyncs == 0
            # Every trade, in sequence, none missing.
            await settle(ex)
            n_trades = ex.engine.next_trade_id - trades_before
            assert n_trades > 0
            if len(trades) < n_trades:
                await read_until(ws, lambda m: len(trades) >= n_trades, sink)
            # (numbered per topic since the server started: the gateway's topic history
            # listens from the start, so the first one seen need not be 1)
            first = trades[0]["seq"]
            assert [t["seq"] for t in trades] == list(range(first, first + n_trades))
            assert all(t["side"] in ("buy", "sell") and Decimal(t["price"]) > 0 for t in trades)
            # The last BBO is the book's top.
            top = engine_depth(ex, "AAPL", 1)
            last = bbos[-1]
            assert [last["bid"], last["bid_quantity"]] == top["bids"][0][:2]
            assert [last["ask"], last["ask_quantity"]] == top["asks"][0][:2]
            # Unsubscribe stops the feed and releases the bus subscriptions.
            subs_before = ex.bus.statistics().subscriptions
            await request(ws, {"op": "unsubscribe", "symbol": "AAPL"})
            got = await read_until(ws, lambda m: m["type"] == "unsubscribed", sink)
            assert got[-1]["channels"] == ["depth", "trades", "bbo", "bars"]
            assert ex.bus.statistics().subscriptions == subs_before - 4
            await ws.close()
            await asyncio.sleep(0.05)
            assert gw.session_count() == 0

    asyncio.run(scenario())


def test_ws_resync_and_gaps_when_buffers_overflow(tmp_path: Path) -> None:
    """Tiny per-session bounds: more level changes than ``max_depth_levels`` in one batch
    become a resync snapshot; more trades than ``trades_capacity`` a gap message. The book
    the client rebuilds is still exact."""

    async def scenario() -> None:
        async with running(tmp_path, max_depth_levels=4, trades_capacity=3) as (ex, gw):
            ws = await ws_connect(gw.port)
            book = Book()
            await request(ws, {"op": "subscribe", "symbol": "AAPL",
                               "channels": ["depth", "trades"]})
            await read_until(ws, lambda m: m["type"] == "snapshot", book.apply)
            # 20 sell levels, then one buy sweeping them: 20 trades, all in one batch.
            for i in range(20):
                ex.submit(order(11, SELL, f"{100 + i}.00", "1"))
            ex.submit(order(12, BUY, "200.00", "20"))
            await settle(ex)
            final = ex.publisher.depth_snapshot("AAPL").seq
            got = await read_until(ws, lambda m: book.seq == final and m["type"] != "gap",
                                   book.apply)
            assert book.resyncs >= 1
            assert book.depth() == engine_depth(ex, "AAPL")
            gaps = [m for m in got if m["type"] == "gap"]
            trades = [m for m in got if m["type"] == "trade"]
            assert gaps and gaps[0]["channel"] == "trades"
            assert len(trades) == 3 and [t["seq"] for t in trades] == [18, 19, 20]
            assert gaps[0]["from_seq"] == 1 and gaps[0]["to_seq"] == 17
            st = gw.statistics()
            assert st.ws_resyncs >= 1 and st.ws_gaps == 1
            await ws.close()

    asyncio.run(scenario())


def test_ws_hostile_input_gets_typed_errors_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, max_message_bytes=1024, max_frame_bytes=8192) as (ex, gw):
            ex.submit(order(11, BUY, "99.00", "5"))
            await settle(ex)
            seq_before = ex.engine.last_seq
            subs_before = ex.bus.statistics().subscriptions
            ws = await ws_connect(gw.port)
            cases: list[tuple[Any, str]] = [
                ("not json", "invalid_json"),
                ('{"op": "subscribe"', "invalid_json"),
                ("[1, 2]", "invalid_message"),
                ('"subscribe"', "invalid_message"),
                ("{}", "invalid_message"),
                ('{"op": 5}', "invalid_message"),
                ('{"op": "explode"}', "unknown_op"),
                ({"op": "subscribe", "channels": "depth", "symbol": "AAPL"}, "invalid_message"),
                ({"op": "subscribe", "channels": [1], "symbol": "AAPL"}, "invalid_message"),
                ({"op": "subscribe", "channels": ["depth"], "symbol": "AAPL", "x": 1},
                 "invalid_message"),
                ({"op": "subscribe", "channels": ["depth"], "symbol": "NOPE"}, "unknown_symbol"),
                ({"op": "subscribe", "channels": ["depth"]}, "invalid_message"),
                ({"op": "subscribe", "channels": [], "symbol": "AAPL"}, "invalid_message"),
                ({"op": "subscribe", "channels": ["l3"], "symbol": "AAPL"}, "unknown_channel"),
                ({"op": "subscribe", "channels": ["depth"] * 17, "symbol": "AAPL"},
                 "invalid_message"),
                ({"op": "subscribe", "channels": ["depth"], "symbol": "A" * 100},
                 "invalid_message"),
                ({"op": "unsubscribe", "symbol": "NOPE"}, "unknown_symbol"),
                ({"op": "new_order", "symbol": "AAPL", "side": "buy", "quantity": "1",
                  "price": "100.00"}, "not_authenticated"),
                ({"op": "cancel", "symbol": "AAPL", "order_id": 1}, "not_authenticated"),
                ({"op": "login", "key": 12345}, "invalid_message"),
                ({"op": "login", "key": "wrong-key-123"}, "bad_credentials"),
                ({"op": "ping", "id": {"a": 1}}, "invalid_message"),
                ('{"op": "ping", "id": 1e999}', "invalid_message"),
                ("x" * 2000, "too_large"),
                (b"\x00\x01binary", "binary_not_supported"),
            ]
            for raw, _code in cases:
                await request(ws, raw)
            await request(ws, {"op": "ping", "id": "after"})
            got = await read_until(ws, lambda m: m["type"] == "pong")
            errors = [m for m in got if m["type"] == "error"]
            assert [e["code"] for e in errors] == [code for _raw, code in cases]
            assert all(isinstance(e["message"], str) and e["message"] for e in errors)
            assert got[-1] == {"type": "pong", "id": "after"}
            # Nothing changed: no command sequenced, no subscription left behind.
            assert ex.engine.last_seq == seq_before
            assert ex.bus.statistics().subscriptions == subs_before
            assert gw.statistics().ws_errors == len(cases)
            # The session still works.
            await request(ws, {"op": "subscribe", "channels": ["depth"], "symbol": "AAPL"})
            got = await read_until(ws, lambda m: m["type"] == "snapshot")
            assert got[-1]["bids"] == [["99.00", "5", 1]]
            # Above the hard frame limit the library closes the connection (1009).
            await request(ws, "y" * 10_000)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(read_until(ws, lambda m: False), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
            await asyncio.sleep(0.05)
            assert ex.bus.statistics().subscriptions == subs_before
            assert ex.engine.last_seq == seq_before

    asyncio.run(scenario())


def test_ws_login_and_order_entry(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            alice = await ws_connect(gw.port)
            bob = await ws_connect(gw.port)
            await request(alice, {"op": "login", "key": "alice-key"})
            got = await read_until(alice, lambda m: m["type"] == "login")
            assert got[-1] == {"type": "login", "account": 2, "name": "alice",
                               "last_report_seq": 0, "cancel_on_disconnect": False}
            await request(alice, {"op": "login", "key": "alice-key"})
            got = await read_until(alice, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "already_logged_in"
            await request(bob, {"op": "login", "key": "bob-key-3"})
            await read_until(bob, lambda m: m["type"] == "login")

            await request(alice, {"op": "new_order", "symbol": "AAPL", "side": "sell",
                                  "price": "101.25", "quantity": "10",
                                  "client_order_id": "a1"})
            got = await read_until(alice, lambda m: m["type"] == "exec")
            new = got[-1]
            assert new["kind"] == "new" and new["client_order_id"] == "a1"
            assert new["price"] == "101.25" and new["quantity"] == "10" and new["side"] == "sell"
            assert engine_depth(ex, "AAPL")["asks"] == [["101.25", "10", 1]]
            # Off-tick price: rejected at the edge, nothing submitted.
            seq = ex.engine.last_seq
            await request(bob, {"op": "new_order", "symbol": "AAPL", "side": "buy",
                                "price": "101.255", "quantity": "4"})
            got = await read_until(bob, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "invalid_order" and "101.255" in got[-1]["message"]
            await request(bob, {"op": "new_order", "symbol": "AAPL", "side": "buy",
                                "quantity": "4"})
            got = await read_until(bob, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "invalid_order"
            assert ex.engine.last_seq == seq
            # Bob lifts 4: both sides get their fill.
            await request(bob, {"op": "new_order", "symbol": "AAPL", "side": "buy",
                                "price": "101.30", "quantity": 4, "tif": "ioc",
                                "client_order_id": "b1"})
            got = await read_until(bob, lambda m: m["type"] == "exec" and m["kind"] == "fill")
            fill = got[-1]
            assert fill["last_price"] == "101.25" and fill["last_quantity"] == "4"
            got = await read_until(alice, lambda m: m["type"] == "exec" and m["kind"] == "fill")
            assert got[-1]["leaves"] == "6" and got[-1]["client_order_id"] == "a1"
            # Bob cannot cancel Alice's order; the engine rejects it (typed, via exec) as if
            # it did not exist, so Bob learns nothing about Alice's order ids.
            order_id = new["order_id"]
            await request(bob, {"op": "cancel", "symbol": "AAPL", "order_id": order_id})
            got = await read_until(bob, lambda m: m["type"] == "exec")
            assert got[-1]["kind"] == "rejected" and got[-1]["reason"] == "UNKNOWN_ORDER"
            # Alice cancels it by client order id.
            await request(alice, {"op": "cancel", "symbol": "AAPL", "client_order_id": "a1"})
            got = await read_until(alice, lambda m: m["type"] == "exec"
                                   and m["kind"] == "cancelled")
            assert got[-1]["order_id"] == order_id
            assert engine_depth(ex, "AAPL") == {"bids": [], "asks": []}
            assert gw.statistics().ws_orders == 4
            await alice.close()
            await bob.close()

    asyncio.run(scenario())


def test_stalled_client_is_bounded_and_does_not_stall_the_exchange(tmp_path: Path) -> None:
    """A client that subscribes and then never reads: its buffers stay bounded, it is
    closed as a slow consumer after ``send_timeout``, and meanwhile the exchange keeps
    processing everything and a healthy client still rebuilds the book exactly."""

    async def scenario() -> None:
        async with running(tmp_path, send_timeout=0.5, write_limit=4096, send_buffer=8192,
                           trades_capacity=200, max_depth_levels=200) as (ex, gw):
            port = gw.port
            # The stalled client: a raw socket with a tiny receive buffer that never reads.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            handshake = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            assert handshake.startswith(b"HTTP/1.1 101")
            sub = json.dumps({"op": "subscribe", "symbol": "AAPL",
                              "channels": ["depth", "trades", "bbo"]}).encode()
            mask = b"\x01\x02\x03\x04"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(sub))
            await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(sub)]) + mask + masked)

            healthy = await ws_connect(port)
            book = Book()
            await request(healthy, {"op": "subscribe", "symbol": "AAPL", "channels": ["depth"]})
            await read_until(healthy, lambda m: m["type"] == "snapshot", book.apply)
            reader = asyncio.create_task(read_until(healthy, lambda m: False, book.apply,
                                                    timeout=60))
            rnd = random.Random(4)
            submitted = 0
            high_water = 0
            t0 = loop.time()
            for _ in range(40):
                batch = random_orders(rnd, 250)
                for cmd in batch:
                    ex.submit(cmd)
                submitted += len(batch)
                await asyncio.sleep(0.02)
                high_water = max(high_water, gw.statistics().ws_pending_max)
            await settle(ex)
            elapsed = loop.time() - t0
            assert ex.commands == submitted == 10_000
            assert elapsed < 15, elapsed
            # Bounded: never more pending than the per-session limits allow.
            assert high_water <= 200 + 200 + 1 + 256
            st = gw.statistics()
            assert st.ws_slow_consumer_disconnects == 1
            for _ in range(150):  # closing waits up to 1 s for a close frame, then aborts
                if gw.session_count() == 1:
                    break
                await asyncio.sleep(0.02)
            assert gw.session_count() == 1  # only the healthy client is left
            # the healthy client's depth, and the topic history's trades and bars
            assert ex.bus.statistics().subscriptions == 1 + len(gw.topic_history.subscriptions)
            # The healthy client saw every change, in sequence.
            final = ex.publisher.depth_snapshot("AAPL").seq
            for _ in range(100):
                if book.seq == final:
                    break
                await asyncio.sleep(0.02)
            assert book.seq == final
            assert book.depth() == engine_depth(ex, "AAPL")
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader
            await healthy.close()
            sock.close()

    asyncio.run(scenario())


def test_session_limit_and_close_with_open_sessions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, max_sessions=1, stats_interval=0.1) as (ex, gw):
            first = await ws_connect(gw.port)
            await request(first, {"op": "subscribe", "channels": ["stats"]})
            await read_until(first, lambda m: m["type"] == "subscribed")
            for cmd in random_orders(random.Random(6), 100):
                ex.submit(cmd)
            got = await read_until(first, lambda m: m["type"] == "stats"
                                   and m["commands"] == 100 and m["latency"])
            stats = got[-1]
            assert stats["stages"]["end_to_end"]["count"] == 100
            buckets = stats["latency"]["buckets"]
            uppers = [u for u, _c in buckets]
            assert uppers[:-1] == sorted(uppers[:-1]) and uppers[-1] == 0  # last: the rest
            assert sum(c for _u, c in buckets) <= 100
            r = await get(gw.port, "/ws", headers={
                "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
            assert r.status == 503 and r.json()["error"] == "too_many_sessions"
            assert gw.statistics().ws_sessions_refused == 1
        # The gateway closed with a session open: the client was told (1001 going away).
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(read_until(first, lambda m: False), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001

    asyncio.run(scenario())


def test_real_server_serves_metrics_health_and_book(tmp_path: Path) -> None:
    """The gateway as ``tickline.server.Server`` starts it, next to the binary gateway."""
    from tickline.config import load_config
    from tickline.server import Server

    async def scenario() -> None:
        config = load_config(None, port=0, http_port=0, journal_dir=str(tmp_path / "j"),
                             durability="none")
        server = Server(config)
        await server.start()
        try:
            assert server.http is not None and server.http_port == server.http.port > 0
            server.exchange.submit(order(1, BUY, "99.50", "3"))
            await settle(server.exchange)
            r = await get(server.http_port, "/metrics")
            names = {f.name for f in text_string_to_metric_families(r.body.decode())}
            for name in ("tickline_exchange_sequence_seconds", "tickline_exchange_match_seconds",
                         "tickline_exchange_journal_seconds",
                         "tickline_exchange_publish_seconds", "tickline_ws_sessions",
                         "tickline_http_requests"):
                assert name in names, name
            assert any(n.startswith("tickline_binary_") for n in names)
            r = await get(server.http_port, "/health")
            assert r.status == 200 and r.json()["last_seq"] == 1
            r = await get(server.http_port, "/book/AAPL")
            assert r.json()["bids"] == [{"price": "99.50", "quantity": "3", "orders": 1}]
        finally:
            await server.stop()

    asyncio.run(scenario())


# Every metric family ``/metrics`` exposed before it was produced through prometheus_client
# (captured from a running ``tickline serve`` with load), with its type and label names
# (``quantile`` aside). The exposition may add families; it must never drop or rename one.
_COUNTERS = (
    "tickline_binary_broken_frames", "tickline_binary_bytes_in", "tickline_binary_bytes_out",
    "tickline_binary_client_order_id_too_long", "tickline_binary_connections",
    "tickline_binary_disconnects", "tickline_binary_exchange_busy", "tickline_binary_frames_in",
    "tickline_binary_frames_out", "tickline_binary_heartbeat_timeouts",
    "tickline_binary_login_timeouts", "tickline_binary_logon_failures",
    "tickline_binary_logon_rejects", "tickline_binary_logon_throttled", "tickline_binary_logons",
    "tickline_binary_malformed_frames", "tickline_binary_pending_logons_evicted",
    "tickline_binary_rate_limited", "tickline_binary_requests",
    "tickline_binary_requests_before_logon", "tickline_binary_sessions_refused",
    "tickline_binary_slow_consumer_disconnects", "tickline_exchange_commands",
    "tickline_exchange_events", "tickline_exchange_snapshots",
    "tickline_exchange_snapshots_skipped",
    "tickline_gc_collections_gen0", "tickline_gc_collections_gen1", "tickline_gc_collections_gen2",
    "tickline_ws_bytes_sent", "tickline_ws_frames_sent", "tickline_ws_gaps",
    "tickline_ws_login_failures", "tickline_ws_login_throttled", "tickline_ws_login_timeouts",
    "tickline_ws_messages_sent", "tickline_ws_orders", "tickline_ws_resyncs",
    "tickline_ws_sessions_opened", "tickline_ws_sessions_refused",
    "tickline_ws_slow_consumer_disconnects",
)
_INBOUND_COUNTERS = ("batches", "block_timeouts", "dropped_oldest", "expired", "handler_errors",
                     "hard_misses", "processed", "rejected", "soft_late", "starvation_overrides",
                     "submitted", "unhandled")
_SUMMARIES = ("tickline_binary_decode_seconds", "tickline_exchange_journal_seconds",
              "tickline_exchange_match_seconds", "tickline_exchange_publish_seconds",
              "tickline_exchange_sequence_seconds", "tickline_gc_pause_seconds",
              "tickline_http_request_seconds", "tickline_ws_frame_send_seconds")
_INBOUND_SUMMARIES = ("batch_size", "end_to_end_seconds", "lateness_seconds",
                      "queue_wait_seconds", "service_seconds")
EXPECTED_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{n: ("counter", ()) for n in _COUNTERS},
    **{f"tickline_inbound_{n}": ("counter", ("processor",)) for n in _INBOUND_COUNTERS},
    **{n: ("summary", ()) for n in _SUMMARIES},
    **{f"{n}_max": ("gauge", ()) for n in _SUMMARIES},
    **{f"tickline_inbound_{n}": ("summary", ("processor",)) for n in _INBOUND_SUMMARIES},
    **{f"tickline_inbound_{n}_max": ("gauge", ("processor",)) for n in _INBOUND_SUMMARIES},
    "tickline_binary_pending_logons": ("gauge", ()),
    "tickline_binary_sessions": ("gauge", ()),
    "tickline_ws_pending_max": ("gauge", ()),
    "tickline_ws_sessions": ("gauge", ()),
    "tickline_ws_sessions_anonymous": ("gauge", ()),
    "tickline_binary_rejects": ("counter", ("reason",)),
    "tickline_http_requests": ("counter", ("code", "route")),
    "tickline_ws_errors": ("counter", ("code",)),
}


def test_real_server_metrics_keep_every_name_and_label(tmp_path: Path) -> None:
    """``/metrics`` of a loaded server: every family of :data:`EXPECTED_FAMILIES` with its
    type and labels, counters exposed as ``*_total``, percentiles as summary quantiles, and
    numbers that are the components' own."""
    from tickline.client import Client, ClientError
    from tickline.config import load_config
    from tickline.server import Server

    async def scenario() -> None:
        config = load_config(None, port=0, http_port=0, journal_dir=str(tmp_path / "j"),
                             durability="none")
        server = Server(config)
        await server.start()
        try:
            async with await Client.connect("127.0.0.1", server.port, "demo-key-1") as client:
                await client.new_order("AAPL", "buy", "3", price="99.50")
                with pytest.raises(ClientError):
                    await client.cancel("AAPL", 999)  # UNKNOWN_ORDER: rejects{reason}
            ws = await ws_connect(server.http_port)
            await ws.send("not json")  # ws_errors{code="invalid_json"}
            await read_until(ws, lambda m: m["type"] == "error")
            await ws.close()
            await settle(server.exchange)
            r = await get(server.http_port, "/metrics")
            assert r.status == 200
            text = r.body.decode()
        finally:
            await server.stop()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        missing = sorted(set(EXPECTED_FAMILIES) - set(families))
        assert missing == []
        for name, (kind, labels) in EXPECTED_FAMILIES.items():
            fam = families[name]
            assert fam.type == kind, name
            assert fam.samples, name
            for s in fam.samples:
                assert tuple(sorted(set(s.labels) - {"quantile"})) == labels, (name, s)
                if kind == "counter":
                    assert s.name == f"{name}_total", s.name
        assert "# TYPE tickline_exchange_commands_total counter" in text
        quantiles = {s.labels["quantile"] for s in families["tickline_exchange_match_seconds"]
                     .samples if "quantile" in s.labels}
        assert quantiles == {"0.5", "0.9", "0.99", "0.999", "0.9999"}
        assert families["tickline_exchange_commands"].samples[0].value == 2
        assert families["tickline_inbound_processed"].samples[0].labels == {
            "processor": "exchange"}
        rejects = {s.labels["reason"]: s.value for s in families["tickline_binary_rejects"].samples}
        assert rejects == {"UNKNOWN_ORDER": 1}
        errors = {s.labels["code"]: s.value for s in families["tickline_ws_errors"].samples}
        assert errors == {"invalid_json": 1}

    asyncio.run(scenario())


def test_each_server_has_its_own_registry(tmp_path: Path) -> None:
    """Two servers in one process: each ``/metrics`` counts only its own commands, nothing
    lands in prometheus_client's global default registry, and a stopped HTTP gateway's
    collector leaves its server's registry."""
    from prometheus_client import REGISTRY

    from tickline.config import load_config
    from tickline.server import Server

    async def scenario() -> None:
        servers = [Server(load_config(None, port=0, http_port=0,
                                      journal_dir=str(tmp_path / f"j{i}"), durability="none"))
                   for i in range(2)]
        for s in servers:
            await s.start()
        try:
            for i, s in enumerate(servers):
                for k in range(i + 1):
                    s.exchange.submit(order(1, BUY, "99.50", str(k + 1)))
                await settle(s.exchange)
            for i, s in enumerate(servers):
                r = await get(s.http_port, "/metrics")
                fams = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
                assert fams["tickline_exchange_commands"].samples[0].value == i + 1
                assert "tickline_ws_sessions" in fams
            assert not any(f.name.startswith("tickline_") for f in REGISTRY.collect())
        finally:
            for s in servers:
                await s.stop()
        after = {f.name for f in text_string_to_metric_families(servers[0].prometheus())}
        assert "tickline_exchange_commands" in after and "tickline_ws_sessions" not in after

    asyncio.run(scenario())
