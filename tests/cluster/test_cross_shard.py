"""Cluster mode with two shards: a command spanning shards (mass cancel of every symbol, the
account kill switch) gets the permanent typed reject ``CROSS_SHARD_UNSUPPORTED`` (413), not
the retryable ``CLUSTER_UNAVAILABLE`` (412); nothing is logged, per-symbol commands still work
(real nats-server, one engine process per shard; the binary client, the admin endpoint, the
WebSocket and FIX)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cluster.procs import EngineProc
from tests.gateway.test_http import read_until, request, ws_connect
from tickline.client import Client
from tickline.client_types import OrderRejectedError
from tickline.cluster.gateway import ClusterExchange
from tickline.cluster.natsserver import NatsServer
from tickline.config import FixSessionConfig, load_config
from tickline.gateway.fix import codec
from tickline.gateway.fix.client import FixClient
from tickline.matching import RejectReason
from tickline.server import Server

KEY = "cross-shard-admin-key"


def test_code_413_is_new_and_distinct() -> None:
    assert int(RejectReason.CROSS_SHARD_UNSUPPORTED) == 413
    assert RejectReason.CROSS_SHARD_UNSUPPORTED != RejectReason.CLUSTER_UNAVAILABLE


def _post(port: int, path: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", headers={
        "Content-Length": "0", "Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def _fix_mass_cancel_all(port: int) -> codec.FixMessage:
    c = FixClient("127.0.0.1", port, "ALICE")
    try:
        assert c.logon("alice-key").msg_type == "A"
        c.send("q", [(11, "mc1"), (530, "7"), (60, codec.sending_time())])
        return c.expect("r")
    finally:
        c.sock.close()


def test_cross_shard_commands_get_a_permanent_reject(nats_server: NatsServer,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(f'[server]\nport = 0\nhttp_port = 0\ncluster = "{nats_server.url}"\n'
                    f'cluster_shards = 2\nadmin_key = "{KEY}"\n'
                    f'journal_dir = "{tmp_path / "j"}"\n')
    cfg = load_config(path)
    cfg.fix.port = 0
    cfg.fix.store_dir = str(tmp_path / "fix")
    cfg.fix.sessions = [FixSessionConfig(sender_comp_id="ALICE", account="alice")]
    engines = [EngineProc(nats_server.url, tmp_path / f"e{k}.log", shard=k) for k in (0, 1)]
    try:
        async def main() -> None:
            server = Server(cfg)
            ex = server.exchange
            assert isinstance(ex, ClusterExchange)
            assert ex.map.shard_of("AAPL") != ex.map.shard_of("MSFT")  # they span shards
            await server.start()
            try:
                alice = await Client.connect("127.0.0.1", server.port, "alice-key")
                a = await alice.new_order("AAPL", "buy", 1, "1.00")
                m = await alice.new_order("MSFT", "buy", 1, "1.00")
                with pytest.raises(OrderRejectedError) as err:
                    await alice.mass_cancel()  # every symbol: both shards
                assert err.value.reason == RejectReason.CROSS_SHARD_UNSUPPORTED
                assert "spans shards" in str(err.value)
                # nothing was cancelled; the session and the per-symbol path still work
                assert {s.order_id for s in await alice.open_orders()} == {a.order_id,
                                                                          m.order_id}
                done = await alice.mass_cancel("AAPL")
                assert [r.order_id for r in done] == [a.order_id]
                status, body = await asyncio.to_thread(_post, server.http_port,
                                                       "/admin/kill?account=2")
                assert status == 409
                assert body["error"] == "cross_shard_unsupported"
                assert await alice.new_order("MSFT", "sell", 1, "2.00")  # not killed
                ws = await ws_connect(server.http_port)
                await request(ws, {"op": "login", "key": "alice-key"})
                await read_until(ws, lambda m: m["type"] == "login")
                await request(ws, {"op": "mass_cancel", "id": 7})
                got = await read_until(ws, lambda m: m.get("id") == 7)
                err_msg = next(m for m in got if m.get("id") == 7)
                assert (err_msg["type"], err_msg["code"]) == ("error", "cross_shard_unsupported")
                await ws.close()
                answer = await asyncio.to_thread(_fix_mass_cancel_all, server.fix_port)
                assert answer.get(531) == "0" and answer.get(532) == "99"
                assert "spans shards" in answer.get(58)
                await alice.logout()
                js = ex.js
                assert js is not None
                # logged: 2 orders + 1 per-symbol mass cancel + 1 order; never the refused
                logged = [(await js.stream_info(f"TL_IN_{k}")).state.messages for k in (0, 1)]
                assert sum(logged) == 4
                assert ex.statistics()["cross_shard_refused"] == 4
            finally:
                await server.stop()

        asyncio.run(main())
    finally:
        for e in engines:
            e.close()
