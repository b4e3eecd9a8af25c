"""Icebergs and armed stops across a restart (real journal, a snapshot, real sockets): the
recovered engine has the same slices, reserves and armed stops; the recovered publisher
shows only the slices; trading after the restart refills and triggers exactly as a run
without the restart would (same reports, same L3 messages)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from tests.gateway.binary_harness import ServerThread
from tickline.client import Client
from tickline.gateway import protocol as p

HOST = "127.0.0.1"


async def before(port: int) -> None:
    async with await Client.connect(HOST, port, "alice-key") as alice, \
            await Client.connect(HOST, port, "bob-key-3") as bob:
        await alice.new_order("AAPL", "sell", 20, "101.00", display_quantity=4,
                              client_order_id="ice")
        await bob.new_order("AAPL", "buy", 3, None, order_type="stop", tif="ioc",
                            stop_price="101.00", client_order_id="stop")
        await bob.new_order("AAPL", "sell", 2, "101.00")  # behind the first slice
        await bob.new_order("AAPL", "buy", 5, "100.00")   # rests; no trade yet


async def after(port: int) -> list[p.Report]:
    """A market maker buys 6 at 101: the iceberg's slice (4, refilled at the back), bob's 2;
    the trade at 101 triggers bob's buy stop, which takes 3 of the refilled slice. Returns
    alice's reports, then bob's."""
    async with await Client.connect(HOST, port, "alice-key") as alice, \
            await Client.connect(HOST, port, "bob-key-3") as bob, \
            await Client.connect(HOST, port, "mm1-key-0") as mm:
        await mm.new_order("AAPL", "buy", 6, "101.00")
        await asyncio.sleep(0.1)
        return alice.reports_nowait() + bob.reports_nowait()


def state(server: ServerThread) -> Any:
    def take() -> Any:
        engine = server.exchange.engine
        orders = sorted((o.order_id, o.leaves, o.hidden, o.display, o.stop_price)
                        for o in engine.orders.values())
        return orders, server.exchange.publisher.l3_snapshot("AAPL").orders
    return server.call(take)


def run(journal: Path, restart: bool) -> tuple[Any, Any, list[Any], list[Any]]:
    server = ServerThread(journal_dir=journal).__enter__()
    try:
        asyncio.run(before(server.port))
        server.settle()
        if restart:
            server.call(lambda: server.exchange.snapshot())
        mid = state(server)
    except BaseException:
        server.stop()
        raise
    if restart:
        server.stop()
        server = ServerThread(journal_dir=journal).__enter__()
        assert state(server) == mid  # recovered exactly, slices and reserves included
    try:
        l3 = server.call(lambda: server.exchange.bus.subscribe("l3.AAPL"))
        reports = asyncio.run(after(server.port))
        server.settle()
        msgs = server.call(l3.drain)
        end = state(server)
    finally:
        server.stop()
    def no_ts(x: Any) -> Any:  # engine time is the wall clock: differs between runs
        fields = msgspec.structs.astuple(x)
        return (type(x).__name__, fields[:1] + fields[2:])
    return mid, end, [no_ts(r) for r in reports], [no_ts(m) for m in msgs]


def test_icebergs_and_stops_survive_a_restart_and_trade_the_same(tmp_path: Path) -> None:
    straight = run(tmp_path / "a", restart=False)
    restarted = run(tmp_path / "b", restart=True)
    assert restarted == straight
    mid, _end, reports, msgs = straight
    orders, l3 = mid
    assert (1, 4, 16, 4, 0) in orders  # the iceberg: slice 4, reserve 16
    assert any(o[4] == 10_100 for o in orders)  # the armed stop
    assert [o for o in l3 if o[0] == 1] == [(1, 2, 10_100, 4)]  # no reserve on show
    assert [name for name, _f in reports] == [
        "Fill", "Fill",  # alice: the first slice to the market maker, 3 to bob's stop
        "Fill", "OrderTriggered", "Fill"]  # bob: his sell, his stop triggering and filling
    shown = [(name, f[2], f[-2] if name == "OrderExecuted" else f[-1])
             for name, f in msgs]  # (kind, order id, leaves / quantity shown)
    assert shown[:3] == [("OrderExecuted", 1, 0), ("OrderAdded", 1, 4),
                         ("OrderExecuted", 3, 0)]
    assert ("OrderExecuted", 1, 1) in shown
