"""A batch lost between the gateway and JetStream is re-sent with the same Nats-Msg-Id and
processed once; replies keep submission order; commands submitted in one loop turn travel as
one input message."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tickline.cluster.gateway import ClusterExchange
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.node import EngineNode
from tickline.matching import BUY, Instrument, NewOrder


def test_lost_command_is_resent_once_and_replies_keep_order(nats_server: NatsServer) -> None:
    instruments = [Instrument(symbol="AAA")]

    async def main() -> None:
        node = EngineNode(nats_server.url, instruments, node_id="a")
        await node.start()
        ex = ClusterExchange(nats_server.url, instruments, resend_after_s=0.3)
        await ex.start()
        assert ex.nc is not None
        real_publish = ex.nc.publish
        dropped: list[str] = []

        async def lossy(subject: str, payload: bytes = b"", **kw: Any) -> None:
            msg_id = kw.get("headers", {}).get("Nats-Msg-Id", "")
            if msg_id.endswith(":2") and not dropped:
                dropped.append(msg_id)  # lost on the way, once
                return
            await real_publish(subject, payload, **kw)

        ex.nc.publish = lossy  # type: ignore[method-assign]
        replies: list[str] = []
        try:
            for i in range(1, 5):
                ex.submit(NewOrder(account=1, symbol="AAA", side=BUY, price=10, quantity=1,
                                   client_order_id=f"c{i}"),
                          lambda cmd, _e, _r: replies.append(cmd.client_order_id))
                await asyncio.sleep(0.01)  # one batch (one input message) each
            deadline = time.monotonic() + 10
            while len(replies) < 4:
                assert time.monotonic() < deadline, (replies, ex.statistics())
                await asyncio.sleep(0.01)
            assert dropped
            assert replies == ["c1", "c2", "c3", "c4"]  # c2 came late; order is kept
            assert ex.republished >= 1
            accepted = list(node.replica.engine.orders.values())
            assert sorted(o.client_order_id for o in accepted) == ["c1", "c2", "c3", "c4"]
            assert node.replica.seq == 4  # logged once each: the re-send was not duplicated
            assert node.replica.in_seq == 4
        finally:
            await ex.stop()
            await node.stop()

    asyncio.run(main())


def test_one_loop_turn_is_one_input_message(nats_server: NatsServer) -> None:
    instruments = [Instrument(symbol="AAA")]

    async def main() -> None:
        node = EngineNode(nats_server.url, instruments, node_id="a")
        await node.start()
        ex = ClusterExchange(nats_server.url, instruments)
        await ex.start()
        replies: list[tuple[str, int]] = []
        try:
            for i in range(1, 11):  # one turn: one batch
                ex.submit(NewOrder(account=1, symbol="AAA", side=BUY, price=10, quantity=1,
                                   client_order_id=f"c{i}"),
                          lambda cmd, _e, _r: replies.append((cmd.client_order_id, cmd.seq)))
            await asyncio.sleep(0.05)
            ex.submit(NewOrder(account=1, symbol="AAA", side=BUY, price=10, quantity=1,
                               client_order_id="c11"),
                      lambda cmd, _e, _r: replies.append((cmd.client_order_id, cmd.seq)))
            deadline = time.monotonic() + 10
            while len(replies) < 11:
                assert time.monotonic() < deadline, (replies, ex.statistics())
                await asyncio.sleep(0.01)
            assert replies == [(f"c{i}", i) for i in range(1, 12)]  # numbered by the log
            assert ex.batches == 2 and ex.published == 11
            assert (node.replica.seq, node.replica.in_seq) == (11, 2)
        finally:
            await ex.stop()
            await node.stop()

    asyncio.run(main())
