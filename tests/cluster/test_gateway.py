"""Cluster mode end to end over real sockets and a real nats-server: a ``tickline serve
--cluster`` gateway and ``tickline cluster-engine`` processes; clients use the binary
protocol exactly as with one process."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.cluster.procs import EngineProc
from tests.served import Served
from tickline.client import Client
from tickline.client_types import OrderRejectedError
from tickline.cluster import CLUSTER_UNAVAILABLE
from tickline.cluster.gateway import ClusterExchange
from tickline.cluster.natsserver import NatsServer
from tickline.config import default_config
from tickline.gateway.binary import BinaryGateway
from tickline.matching import RejectReason


def test_reject_code_is_412() -> None:
    assert CLUSTER_UNAVAILABLE == 412 == int(RejectReason.CLUSTER_UNAVAILABLE)


def test_orders_trade_through_the_cluster(nats_server: NatsServer, tmp_path: Path) -> None:
    engine = EngineProc(nats_server.url, tmp_path / "engine.log")
    gateway = Served(tmp_path / "unused-journal", "--cluster", nats_server.url)
    try:
        async def main() -> None:
            alice = await Client.connect("127.0.0.1", gateway.port, "alice-key")
            bob = await Client.connect("127.0.0.1", gateway.port, "bob-key-3")
            sell = await alice.new_order("AAPL", "sell", 10, "1.00", client_order_id="s1")
            assert sell.status == "new" and sell.leaves == 10
            buy = await bob.new_order("AAPL", "buy", 4, "1.00")
            assert buy.status == "filled" and buy.fills[0].last_quantity == 4
            # alice's resting order was the maker: her fill arrives unsolicited
            deadline = time.monotonic() + 5
            got: list[object] = []
            while not got and time.monotonic() < deadline:
                got = list(alice.reports_nowait())
                await asyncio.sleep(0.01)
            assert [type(r).__name__ for r in got] == ["Fill"]
            # queries are answered in sequence from the gateway's mirror of the reports
            state = await alice.order_status("AAPL", client_order_id="s1")
            assert state is not None and state.cum_quantity == 4 and state.leaves == 6
            # a bad order gets the engine's typed reject
            with pytest.raises(OrderRejectedError) as err:
                await bob.new_order("AAPL", "buy", 0, "1.00")
            assert err.value.reason == RejectReason.NON_POSITIVE_QUANTITY
            # an acknowledgement waits for the engine: freeze it, no answer; thaw, answer
            engine.signal(signal.SIGSTOP)
            try:
                pending = asyncio.ensure_future(bob.new_order("AAPL", "buy", 1, "0.99"))
                await asyncio.sleep(0.4)
                assert not pending.done()
            finally:
                engine.signal(signal.SIGCONT)
            ack = await asyncio.wait_for(pending, 10)
            assert ack.status == "new"
            await alice.logout()
            await bob.logout()

        asyncio.run(main())
        health = gateway.get_json("/health")
        assert health["status"] == "ok"
        assert health["cluster"]["applied"] == [4]  # sell, buy, the bad one, buy
        assert health["cluster"]["waiting"] == 0
        assert health["resting_orders"] == 2
    finally:
        gateway.close()
        engine.close()


def test_no_leader_is_rejected_412(nats_server: NatsServer) -> None:
    """With no engine for longer than ``unavailable_after_s`` a gateway refuses orders with
    CLUSTER_UNAVAILABLE instead of logging commands nobody will process."""
    cfg = default_config()

    async def main() -> None:
        ex = ClusterExchange(nats_server.url, cfg.instruments, unavailable_after_s=0.2)
        await ex.start()
        gw = BinaryGateway(ex, cfg)
        port = await gw.start()
        try:
            await asyncio.sleep(0.3)
            client = await Client.connect("127.0.0.1", port, "alice-key")
            with pytest.raises(OrderRejectedError) as err:
                await client.new_order("AAPL", "buy", 1, "1.00")
            assert err.value.reason == CLUSTER_UNAVAILABLE
            assert "no engine leader" in str(err.value)
            client.close()
            info = await ex.js.stream_info("TL_IN_0")  # type: ignore[union-attr]
            assert info.state.messages == 0  # nothing was logged
        finally:
            await gw.close()
            await ex.stop()

    asyncio.run(main())
