"""Snapshots to the JetStream object store: a replica started from the newest snapshot plus
the input stream's tail has the leader's digest (and report numbers), and a gateway started
late catches up from the snapshot plus the output tail."""

from __future__ import annotations

import asyncio
import time

from tickline.bench.workload import exchange_core_mix
from tickline.cluster.gateway import ClusterExchange
from tickline.cluster.jetstream import connect, ensure_shard, log_command
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.node import EngineNode
from tickline.cluster.wire import Logged, decode_output, encode
from tickline.matching import BUY, Instrument, NewOrder


async def wait_until(pred: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_replica_from_snapshot_plus_tail_has_the_leaders_digest(
        nats_server: NatsServer) -> None:
    work = exchange_core_mix(400, seed=7)
    cmds = [*work.prefill, *work.commands]
    first, rest = cmds[:300], cmds[300:]

    async def main() -> None:
        leader = EngineNode(nats_server.url, work.instruments, shard=0, node_id="a",
                            snapshot_every=100)
        await leader.start()
        assert leader.leader
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        try:
            for i, cmd in enumerate(first):
                await log_command(js, 0, encode(Logged("t", i, time.time_ns(), [cmd])), f"t:{i}")
            await wait_until(lambda: leader.replica.seq == len(first))
            await wait_until(lambda: leader.published_seq == len(first))
            await leader.snapshot()  # the newest snapshot: at seq 300, not 300 - batch
            replica = EngineNode(nats_server.url, work.instruments, shard=0, node_id="b",
                                 standby_only=True)
            await replica.start()
            try:
                assert replica.started_from == len(first)  # from the snapshot, not replayed
                assert not replica.leader
                for i, cmd in enumerate(rest, len(first)):
                    await log_command(js, 0, encode(Logged("t", i, time.time_ns(), [cmd])),
                                      f"t:{i}")
                await wait_until(lambda: replica.replica.seq == len(cmds)
                                 and leader.replica.seq == len(cmds))
                assert replica.replica.digest() == leader.replica.digest()
                assert (replica.replica.reports.report_seqs()
                        == leader.replica.reports.report_seqs())
                assert leader.snapshots >= 3
                replica.replica.engine.check()
                # a gateway started now catches up from the snapshot + output tail
                await wait_until(lambda: leader.published_seq == len(cmds))
                gw = ClusterExchange(nats_server.url, work.instruments)
                await gw.start()
                try:
                    assert gw.engine.last_seq == len(cmds)
                    assert gw.reports.report_seqs() == leader.replica.reports.report_seqs()
                    assert set(gw.engine.orders) == set(leader.replica.engine.orders)
                finally:
                    await gw.stop()
            finally:
                await replica.stop()
        finally:
            await nc.close()
            await leader.stop()

    asyncio.run(main())


def test_gtd_order_expires_without_other_commands(nats_server: NatsServer) -> None:
    """The leader logs a TimeTick once a GTD expiry is due, so an idle shard still expires
    the order, at a place in the log every replica sees."""
    from tickline.matching import Expired
    from tickline.matching.types import GTD

    instruments = [Instrument(symbol="AAA")]

    async def main() -> None:
        leader = EngineNode(nats_server.url, instruments, node_id="a", lease_s=0.4)
        standby = EngineNode(nats_server.url, instruments, node_id="b", lease_s=0.4,
                             standby_only=True)
        await leader.start()
        await standby.start()
        nc = await connect(nats_server.url)
        try:
            expire = time.time_ns() + 300_000_000
            cmd = NewOrder(account=1, symbol="AAA", side=BUY, price=10, quantity=1, tif=GTD,
                           expire_time=expire)
            await log_command(nc.jetstream(), 0, encode(Logged("t", 1, time.time_ns(), [cmd])),
                              "t:1")
            await wait_until(lambda: leader.replica.seq == 1)
            assert len(leader.replica.engine.orders) == 1
            await wait_until(lambda: leader.replica.seq == 2 and standby.replica.seq == 2,
                             timeout=5)
            assert not leader.replica.engine.orders and not standby.replica.engine.orders
            assert standby.replica.digest() == leader.replica.digest()
            await wait_until(lambda: leader.published_seq == 2)
            assert leader.replica.engine.now >= expire
            out = await nc.jetstream().get_msg("TL_OUT_0", leader.out_seq)
            events = [e for d in decode_output(out.data or b"").done for e in d.events]
            assert any(type(e) is Expired for e in events)
        finally:
            await nc.close()
            await standby.stop()
            await leader.stop()

    asyncio.run(main())


def test_a_backlog_is_published_in_messages_below_max_payload(nats_server: NatsServer) -> None:
    """An engine that starts behind a long input backlog takes it in big batches; its output
    is split into messages NATS accepts (max_payload), every command published once."""
    instruments = [Instrument(symbol="AAA")]
    n = 5000

    async def main() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await ensure_shard(js, 0)
        clid = "x" * 60  # fat reports: a 4096-command batch would exceed 1 MB in one message
        for i in range(n):
            cmd = NewOrder(account=1, symbol="AAA", side=BUY, price=10, quantity=1,
                           client_order_id=f"{clid}{i}")
            await js.publish("tickline.in.0", encode(Logged("t", i, time.time_ns(), [cmd])),
                             headers={"Nats-Msg-Id": f"t:{i}"})
        node = EngineNode(nats_server.url, instruments, node_id="a")
        await node.start()
        try:
            await wait_until(lambda: node.published_seq == n, timeout=60)
            info = await js.stream_info("TL_OUT_0")
            assert info.state.messages >= n // 1024
            seqs = []
            for s in range(1, info.state.last_seq + 1):
                msg = await js.get_msg("TL_OUT_0", s)
                assert len(msg.data or b"") <= nc.max_payload
                seqs.extend(d.cmd.seq for d in decode_output(msg.data or b"").done)
            assert seqs == list(range(1, n + 1))
        finally:
            await node.stop()
            await nc.close()

    asyncio.run(main())
