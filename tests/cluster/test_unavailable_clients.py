"""CLUSTER_UNAVAILABLE (412) reaches every kind of order-entry client as itself, over real
sockets, a real nats-server and a real ``serve --cluster`` server with no engine (review
item 4): WebSocket ``unavailable`` (not ``stopping``), FIX rejects saying why (not THROTTLED
"server is stopping" / "exchange busy"), binary mass cancel 412. (Order status is answered
from the gateway's own report state in cluster mode: never refused.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.fix.harness import FixServer, fix_config
from tests.gateway.test_http import read_until, request, ws_connect
from tickline.client import Client
from tickline.client_types import OrderRejectedError
from tickline.cluster import CLUSTER_UNAVAILABLE
from tickline.cluster.natsserver import NatsServer

NOW = "20260101-00:00:00"
WHY = "no engine leader"


@pytest.fixture
def srv(nats_server: NatsServer, tmp_path: Path) -> Iterator[FixServer]:
    cfg = fix_config(tmp_path / "j")
    cfg.server.cluster = nats_server.url
    cfg.server.journal_dir = ""  # cluster mode: the engines journal
    cfg.fix.store_dir = str(tmp_path / "fixstore")
    with FixServer(tmp_path, cfg) as server:
        server.call(lambda: setattr(server.server.exchange, "unavailable_after_s", 0.1))
        time.sleep(0.2)  # no leader seen for longer than that: every submit is refused
        yield server


def test_fix_clients_hear_cluster_unavailable(srv: FixServer) -> None:
    with srv.client("ALICE") as c:
        c.send("D", [(11, "o1"), (55, "AAPL"), (54, 1), (60, NOW), (38, "1"), (40, 2),
                     (44, "90.00")])
        er = c.expect("8")
        assert (er.get(150), er.get(11)) == ("8", "o1"), er
        assert WHY in (er.get(58) or ""), er
        c.send("F", [(11, "c1"), (41, "o0"), (55, "AAPL"), (54, 1), (60, NOW)])
        cxl = c.expect("9")
        assert WHY in (cxl.get(58) or ""), cxl
        c.send("q", [(11, "m1"), (530, 7), (60, NOW)])
        mc = c.expect("r")
        assert mc.get(531) == "0" and WHY in (mc.get(58) or ""), mc


def test_ws_and_binary_clients_hear_cluster_unavailable(srv: FixServer) -> None:
    async def ws() -> None:
        conn = await ws_connect(srv.server.http_port)
        await request(conn, {"op": "login", "key": "alice-key"})
        await read_until(conn, lambda m: m["type"] == "login")
        for op in ({"op": "new_order", "symbol": "AAPL", "side": "buy", "price": "90.00",
                    "quantity": "1"},
                   {"op": "mass_cancel"}):
            await request(conn, op)
            got = await read_until(conn, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "unavailable" and WHY in got[-1]["message"], got[-1]
            assert got[-1]["op"] == op["op"]
        await conn.close()

    async def binary() -> None:
        async with await Client.connect("127.0.0.1", srv.server.port, "alice-key") as c:
            with pytest.raises(OrderRejectedError) as err:
                await c.new_order("AAPL", "buy", 1, "90.00")
            assert err.value.reason == CLUSTER_UNAVAILABLE
            with pytest.raises(OrderRejectedError) as err:
                await c.mass_cancel()
            assert err.value.reason == CLUSTER_UNAVAILABLE and WHY in str(err.value)

    asyncio.run(ws())
    asyncio.run(binary())


def test_binary_read_cut_short_by_an_unavailable_shard_says_why(
        nats_server: NatsServer, tmp_path: Path) -> None:
    """One socket read: an order for the shard with an engine, then orders from where the
    shard without one stops the read. Those get 412 with the reason, not "exchange busy"."""
    from tests.cluster.procs import EngineProc
    from tickline.cluster.gateway import ClusterExchange
    from tickline.config import default_config
    from tickline.gateway import protocol as p
    from tickline.gateway.binary import BinaryGateway

    cfg = default_config()
    engine = EngineProc(nats_server.url, tmp_path / "engine0.log", shard=0)

    async def main() -> None:
        ex = ClusterExchange(nats_server.url, cfg.instruments, shards=2,
                             unavailable_after_s=1.5)  # shard 0's leader: seen every 0.25 s
        t0 = time.monotonic()
        await ex.start()
        gw = BinaryGateway(ex, cfg)
        port = await gw.start()
        try:
            on = next(i.symbol for i in cfg.instruments if ex.map.shard_of(i.symbol) == 0)
            off = next(i.symbol for i in cfg.instruments if ex.map.shard_of(i.symbol) == 1)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            frames = p.FrameReader(1 << 24)
            got: list[p.ServerMessage] = []

            async def until(n: int) -> None:
                while len(got) < n:
                    data = await asyncio.wait_for(reader.read(65536), 20)
                    assert data, "server closed"
                    got.extend(p.decode_server(f) for f in frames.feed(data))

            writer.write(p.encode_frame(p.Logon("alice-key", "")))
            await until(1)
            assert isinstance(got[0], p.LogonAck)
            # shard 0's engine answers (it leads); then shard 1 has had no leader for 1.5 s
            writer.write(p.encode_frame(p.NewOrderRequest(
                request_id=9, symbol=on, side=1, quantity=1, price=100)))
            await until(2)
            await asyncio.sleep(max(0.0, ex.unavailable_after_s + 0.2 - (time.monotonic() - t0)))
            got.clear()
            writer.write(b"".join(p.encode_frame(p.NewOrderRequest(
                request_id=rid, symbol=sym, side=1, quantity=1, price=100))
                for rid, sym in ((1, on), (2, off), (3, on))))
            await until(3)
            answers = {m.request_id: m.reports[0] for m in got
                       if isinstance(m, p.Response)}
            assert sorted(answers) == [1, 2, 3]
            assert getattr(answers[1], "reason", 0) != CLUSTER_UNAVAILABLE  # the engine's
            for rid in (2, 3):
                r = answers[rid]
                assert isinstance(r, p.OrderRejected) and r.reason == CLUSTER_UNAVAILABLE, r
                assert "shard 1" in r.text and WHY in r.text, r
            assert gw.busy == 0
            writer.close()
        finally:
            await asyncio.wait_for(gw.close(), 10)
            await asyncio.wait_for(ex.stop(), 10)

    try:
        asyncio.run(main())
    finally:
        engine.close()
