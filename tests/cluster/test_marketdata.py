"""A cluster gateway serves market data from the engines' outputs, as one process does:
``/book/<symbol>``, the WebSocket trades and depth feeds, and FIX MarketDataRequest
snapshots (real nats-server, a ``tickline cluster-engine`` process, an in-process gateway
with the HTTP and FIX ports on). A second gateway started after the orders (from shard 0's
snapshot) serves the same book."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.cluster.procs import EngineProc
from tests.gateway.test_http import read_until, request, ws_connect
from tickline.client import Client
from tickline.cluster.jetstream import connect, snapshot_store
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.node import load_snapshot
from tickline.config import FixSessionConfig, ServerConfig, default_config
from tickline.gateway.fix.client import FixClient
from tickline.server import Server


def _config(url: str, tmp_path: Path) -> ServerConfig:
    cfg = default_config()
    cfg.server.cluster = url
    cfg.server.port = cfg.server.http_port = 0
    cfg.server.journal_dir = str(tmp_path / "j")
    cfg.fix.port = 0
    cfg.fix.store_dir = str(tmp_path / "fix")
    cfg.fix.sessions = [FixSessionConfig(sender_comp_id="ALICE", account="alice")]
    return cfg.validate()


def _book(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/book/AAPL", timeout=10) as resp:
        out: dict[str, Any] = json.loads(resp.read())
        return out


def _fix_snapshot(port: int) -> dict[str, list[str]]:
    """One MarketDataRequest snapshot (263=0) of AAPL: prices by side ("0" bid, "1" offer)."""
    c = FixClient("127.0.0.1", port, "ALICE")
    try:
        assert c.logon("alice-key").msg_type == "A"
        c.send("V", [(262, "md1"), (263, "0"), (264, 0), (267, 2), (269, "0"), (269, "1"),
                     (146, 1), (55, "AAPL")])
        snap = c.expect("W", "Y")
        assert snap.msg_type == "W", snap
        out: dict[str, list[str]] = {"0": [], "1": []}
        side = ""
        for tag, value in snap.fields:
            if tag == 269:
                side = value
            elif tag == 270:
                out[side].append(value)
        return out
    finally:
        c.sock.close()


def test_the_cluster_gateway_serves_market_data(nats_server: NatsServer,
                                               tmp_path: Path) -> None:
    engine = EngineProc(nats_server.url, tmp_path / "engine.log", snapshot_every=1)
    try:
        async def main() -> None:
            server = Server(_config(nats_server.url, tmp_path))
            await server.start()
            try:
                ws = await ws_connect(server.http_port)
                await request(ws, {"op": "subscribe", "symbol": "AAPL",
                                   "channels": ["trades", "depth"]})
                await read_until(ws, lambda m: m["type"] == "subscribed")
                alice = await Client.connect("127.0.0.1", server.port, "alice-key")
                bob = await Client.connect("127.0.0.1", server.port, "bob-key-3")
                await alice.new_order("AAPL", "sell", 10, "1.05")
                await alice.new_order("AAPL", "buy", 3, "0.95")
                await bob.new_order("AAPL", "buy", 4, "1.05")  # trades 4 at 1.05
                got = await read_until(ws, lambda m: m["type"] == "trade")
                trade = next(m for m in got if m["type"] == "trade")
                assert (trade["price"], trade["quantity"]) == ("1.05", "4")
                assert any(m["type"] in ("depth", "snapshot") for m in got)
                book = await asyncio.to_thread(_book, server.http_port)
                assert [(lv["price"], lv["quantity"]) for lv in book["asks"]] == [("1.05", "6")]
                assert [(lv["price"], lv["quantity"]) for lv in book["bids"]] == [("0.95", "3")]
                fix = await asyncio.to_thread(_fix_snapshot, server.fix_port)
                assert fix == {"0": ["0.95"], "1": ["1.05"]}
                await ws.close()
                await alice.logout()
                await bob.logout()
            finally:
                await server.stop()
            # a gateway started now begins from the engine's snapshot: the same book
            nc = await connect(nats_server.url)
            try:
                store = await snapshot_store(nc.jetstream())
                for _ in range(1000):
                    snap = await load_snapshot(store, 0)
                    if snap is not None and snap.seq == 3 and snap.out_seq:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("no snapshot at seq 3")
            finally:
                await nc.close()
            late_cfg = _config(nats_server.url, tmp_path / "late")
            late = Server(late_cfg)
            await late.start()
            try:
                # seeded from the snapshot, not rebuilt from the outputs
                assert late.exchange.publisher.commands == 0
                book = await asyncio.to_thread(_book, late.http_port)
                assert [(lv["price"], lv["quantity"]) for lv in book["asks"]] == [("1.05", "6")]
                assert [(lv["price"], lv["quantity"]) for lv in book["bids"]] == [("0.95", "3")]
            finally:
                await late.stop()

        asyncio.run(main())
    finally:
        engine.close()


