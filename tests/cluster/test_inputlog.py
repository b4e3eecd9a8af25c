"""The input log on a real nats-server: JetStream dedups re-published batches by
``Nats-Msg-Id``, commands are numbered by their place in the log (one message = one batch),
each shard's stream keeps its symbols' commands in publish order, and replicas applying the
streams agree byte for byte."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from tickline.cluster.jetstream import connect, ensure_shard, follow, log_command
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.replica import Replica
from tickline.cluster.shardmap import ID_SPACE, ShardMap, in_stream, in_subject
from tickline.cluster.wire import Logged, decode_logged, encode
from tickline.matching import BUY, SELL, Accepted, Instrument, NewOrder, Trade

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
INSTRUMENTS = [Instrument(symbol=s) for s in SYMBOLS]


def order(i: int, symbol: str = "AAA", side: int = BUY, price: int = 100) -> NewOrder:
    return NewOrder(account=1 + i % 3, symbol=symbol, side=side, price=price, quantity=1,
                    client_order_id=f"c{i}")


async def read_all(js: JetStreamContext, shard: int, expect: int,
                   timeout: float = 5.0) -> list[tuple[int, Logged]]:
    got: list[tuple[int, Logged]] = []
    done = asyncio.Event()

    async def handle(items: list[tuple[int, bytes]]) -> None:
        got.extend((seq, decode_logged(data)) for seq, data in items)
        if len(got) >= expect:
            done.set()

    f = await follow(js, in_stream(shard), in_subject(shard), 1, handle)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await f.stop()
    return got


def run(url: str, body: Callable[..., Awaitable[object]]) -> object:
    async def main() -> object:
        nc = await connect(url)
        try:
            return await body(nc.jetstream())
        finally:
            await nc.close()
    return asyncio.run(main())


def test_republished_command_is_logged_once(nats_server: NatsServer) -> None:
    async def body(js: JetStreamContext) -> None:
        await ensure_shard(js, 0)
        acks = []
        for i in range(3):
            payload = encode(Logged("gw1", i, time.time_ns(), [order(i)]))
            acks.append(await log_command(js, 0, payload, f"gw1:{i}"))
        # a gateway that lost the acknowledgement re-publishes ticket 1 (same id, same bytes)
        again = await log_command(js, 0, encode(Logged("gw1", 1, time.time_ns(), [order(1)])),
                                  "gw1:1")
        assert [a.seq for a in acks] == [1, 2, 3]
        assert not any(a.duplicate for a in acks)
        assert again.duplicate and again.seq == 2
        # another gateway's ticket 1 is a different command
        other = await log_command(js, 0, encode(Logged("gw2", 1, time.time_ns(), [order(9)])),
                                  "gw2:1")
        assert not other.duplicate and other.seq == 4
        info = await js.stream_info(in_stream(0))
        assert info.state.messages == 4
        logged = await read_all(js, 0, 4)
        assert [seq for seq, _ in logged] == [1, 2, 3, 4]
        assert [(lg.gateway, lg.ticket) for _, lg in logged] == [
            ("gw1", 0), ("gw1", 1), ("gw1", 2), ("gw2", 1)]
        replica = Replica(INSTRUMENTS)
        accepted = [replica.apply(seq, lg)[0].events[0] for seq, lg in logged]
        assert all(type(e) is Accepted for e in accepted)
        assert len(replica.engine.orders) == 4  # the re-publish did not enter a 5th order
        assert replica.engine.last_seq == 4

    run(nats_server.url, body)


def test_per_symbol_order_across_two_shards(nats_server: NatsServer) -> None:
    smap = ShardMap(2)
    shards = {smap.shard_of(s) for s in SYMBOLS}
    assert shards == {0, 1}, "the test symbols must cover both shards"
    n = 120

    async def body(js: JetStreamContext) -> None:
        for k in (0, 1):
            await ensure_shard(js, k)
        # publish concurrently (as many gateway sessions would), but each symbol's commands
        # from one publisher in order, awaiting each acknowledgement
        async def publisher(symbol: str) -> None:
            k = smap.shard_of(symbol)
            for i in range(n // len(SYMBOLS)):
                side = BUY if i % 2 else SELL
                cmd = order(i, symbol, side, 100)
                cmd.client_order_id = f"{symbol}-{i}"
                await log_command(js, k, encode(Logged(f"gw-{symbol}", i, time.time_ns(),
                                                       [cmd])), f"gw-{symbol}:{i}")

        await asyncio.gather(*(publisher(s) for s in SYMBOLS))
        counts = {k: sum(1 for s in SYMBOLS if smap.shard_of(s) == k) * (n // len(SYMBOLS))
                  for k in (0, 1)}
        for k in (0, 1):
            logged = await read_all(js, k, counts[k])
            assert len(logged) == counts[k]
            assert [seq for seq, _ in logged] == list(range(1, counts[k] + 1))
            per_symbol: dict[str, list[int]] = {}
            replica = Replica(INSTRUMENTS, shard=k)
            ts = 0
            for seq, lg in logged:
                cmd = lg.cmds[0]
                assert isinstance(cmd, NewOrder)
                assert smap.shard_of(cmd.symbol) == k  # only its own symbols
                per_symbol.setdefault(cmd.symbol, []).append(
                    int(cmd.client_order_id.split("-")[1]))
                [done] = replica.apply(seq, lg)
                assert done.cmd.ts > ts  # engine time strictly increasing in log order
                ts = done.cmd.ts
                for ev in done.events:
                    if type(ev) is Accepted:
                        assert ev.order_id // ID_SPACE == k  # ids in the shard's own block
                    if type(ev) is Trade:
                        assert ev.trade_id // ID_SPACE == k
            for sym, seen in per_symbol.items():
                assert seen == sorted(seen), f"{sym} out of order on shard {k}"
                assert len(seen) == n // len(SYMBOLS)
            replica.engine.check()

    run(nats_server.url, body)


_ORDER = st.tuples(st.sampled_from(SYMBOLS), st.sampled_from([BUY, SELL]),
                   st.integers(95, 105))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.lists(_ORDER, min_size=1, max_size=8), st.integers(0, 5)),
                max_size=20))
def test_replicas_of_one_log_agree(batches: list[tuple[list[tuple[str, int, int]], int]]
                                   ) -> None:
    """Two replicas fed the same decoded log of batches (whatever the gateways' clocks
    said) end with the same digest and the same events, byte for byte; commands are
    numbered 1, 2, 3, ... across the batches, engine time strictly increasing."""
    logged = []
    n = 0
    for cmds, jitter in batches:
        orders = []
        for s, side, px in cmds:
            orders.append(NewOrder(account=1 + n % 2, symbol=s, side=side, price=px,
                                   quantity=1 + n % 3))
            n += 1
        logged.append(Logged("g", n - len(cmds) + 1, jitter * 1000, orders))
    wire = [encode(lg) for lg in logged]
    a, b = Replica(INSTRUMENTS), Replica(INSTRUMENTS)
    done_a = [a.apply(i + 1, decode_logged(w)) for i, w in enumerate(wire)]
    done_b = [b.apply(i + 1, decode_logged(w)) for i, w in enumerate(wire)]
    out_a = [msgspec.msgpack.encode([d.events for d in ds]) for ds in done_a]
    out_b = [msgspec.msgpack.encode([d.events for d in ds]) for ds in done_b]
    assert out_a == out_b
    assert a.digest() == b.digest()
    assert a.reports.report_seqs() == b.reports.report_seqs()
    flat = [d for ds in done_a for d in ds]
    assert [d.cmd.seq for d in flat] == list(range(1, n + 1))
    assert [d.ticket for d in flat] == list(range(1, n + 1))
    assert all(x.cmd.ts < y.cmd.ts for x, y in itertools.pairwise(flat))
    assert (a.seq, a.in_seq) == (n, len(batches))


def test_undecodable_input_is_skipped_alike_and_numbers_nothing() -> None:
    """A message that is not a command batch takes no command number on any replica."""
    r = Replica(INSTRUMENTS)
    r.apply(1, Logged("g", 1, 10, [order(1), order(2)]))
    r.skip(2)
    [done] = r.apply(3, Logged("g", 3, 10, [order(3)]))
    assert done.cmd.seq == 3 and (r.seq, r.in_seq) == (3, 3)
