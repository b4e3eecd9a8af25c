"""Venue services over real sockets: resume (from memory, from the journal, across a SIGKILL
and restart of a real server), order status and open orders, mass cancel, cancel on
disconnect, drop copies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from tests.gateway.binary_harness import ServerThread, make_config
from tests.served import Served
from tickline.client import Client, ClientError, OrderRejectedError
from tickline.gateway import protocol as p
from tickline.matching import CancelReason, RejectReason

HOST = "127.0.0.1"
ALICE, BOB, ADMIN = "alice-key", "bob-key-3", "mm1-key-0"


def admin_config() -> object:
    cfg = make_config()
    cfg.accounts = [msgspec.structs.replace(a, admin=a.name == "mm1") for a in cfg.accounts]
    return cfg


async def fill_alice(port: int, n: int, price: str = "100.00") -> list[int]:
    """Bob takes ``n`` of alice's resting sells one lot at a time (alice is not there)."""
    async with await Client.connect(HOST, port, BOB) as bob:
        ids = []
        for _ in range(n):
            ack = await bob.new_order("AAPL", "buy", 1, price, tif="ioc")
            ids.append(ack.order_id)
        return ids


def seqs(reports: list[p.Report]) -> list[int]:
    return [r.exec_seq for r in reports]


@pytest.mark.parametrize("history", [4096, 0])  # 0: nothing in memory, always the journal
def test_resume_delivers_exactly_the_missed_reports(tmp_path: Path, history: int) -> None:
    with ServerThread(journal_dir=tmp_path / "j") as server:
        server.call(lambda: setattr(server.exchange.history, "per_account", history))

        async def scenario() -> None:
            alice = await Client.connect(HOST, server.port, ALICE)
            ack = await alice.new_order("AAPL", "sell", 10, "100.00", client_order_id="s1")
            await fill_alice(server.port, 3)
            seen = await alice.take_reports(3)
            assert [type(r) for r in seen] == [p.Fill] * 3
            mark = alice.last_report_seq
            assert mark == seen[-1].exec_seq == ack.accepted.exec_seq + 3
            alice.close()
            await alice.wait_closed()
            await fill_alice(server.port, 4)  # missed: nobody of alice's is connected
            back = await Client.connect(HOST, server.port, ALICE, resume_from=mark)
            assert back.ack is not None and back.ack.last_report_seq == mark + 4
            missed = await back.take_reports(4)
            assert seqs(missed) == list(range(mark + 1, mark + 5))
            assert [r.leaves for r in missed] == [6, 5, 4, 3]  # type: ignore[union-attr]
            # then live, numbered above: no gap, no duplicate
            await fill_alice(server.port, 1)
            live = await asyncio.wait_for(anext(aiter(back.reports())), 5)
            assert live.exec_seq == mark + 5 and back.last_report_seq == mark + 5
            # resume_from 0 = none processed: everything, from the first report
            full = await Client.connect(HOST, server.port, ALICE, resume_from=0)
            assert seqs(await full.take_reports(mark + 5)) == list(range(1, mark + 6))
            with pytest.raises(ClientError, match="resume_from=999 but account 2's last "
                                                  "report is 9"):
                await Client.connect(HOST, server.port, ALICE, resume_from=999)
            for c in (back, full):
                await c.logout()
                c.close()
        asyncio.run(scenario())
        if history == 0:
            assert server.call(lambda: server.exchange.resumer.from_journal) >= 2


def test_resume_across_a_sigkill_and_restart_of_a_real_server(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    server = Served(journal, "--durability", "batch")
    try:
        async def before() -> int:
            alice = await Client.connect(HOST, server.port, ALICE)
            await alice.new_order("AAPL", "sell", 20, "100.00")
            await fill_alice(server.port, 2)
            await alice.take_reports(2)
            mark = alice.last_report_seq
            alice.close()
            await alice.wait_closed()
            await fill_alice(server.port, 5)  # acknowledged to bob, never seen by alice
            return mark
        mark = asyncio.run(before())
        server.kill()
        server.close()
        server = Served(journal, "--durability", "batch")

        async def after() -> None:
            back = await Client.connect(HOST, server.port, ALICE, resume_from=mark)
            assert back.ack is not None and back.ack.last_report_seq == mark + 5
            missed = await back.take_reports(5)
            assert seqs(missed) == list(range(mark + 1, mark + 6))
            assert [r.leaves for r in missed] == [17, 16, 15, 14, 13]  # type: ignore[union-attr]
            await fill_alice(server.port, 1)
            live = await asyncio.wait_for(anext(aiter(back.reports())), 5)
            assert live.exec_seq == mark + 6
            await back.logout()
            back.close()
        asyncio.run(after())
    finally:
        server.close()


def test_order_status_and_open_orders_answer_the_owner_only() -> None:
    with ServerThread() as server:
        async def scenario() -> None:
            async with await Client.connect(HOST, server.port, ALICE) as alice, \
                    await Client.connect(HOST, server.port, BOB) as bob:
                a = await alice.new_order("AAPL", "sell", 10, "100.00", client_order_id="s1")
                b = await alice.new_order("MSFT", "buy", 5, "50.00", client_order_id="m1")
                await bob.new_order("AAPL", "buy", 4, "100.00", tif="ioc")
                st = await alice.order_status("AAPL", a.order_id)
                assert (st.status, st.leaves, st.cum_quantity, st.client_order_id) == (
                    p.OrderStatus.PARTIALLY_FILLED, 6, 4, "s1")
                assert st.avg_price == 10_000
                assert await alice.order_status("AAPL", client_order_id="s1") == st
                assert [o.order_id for o in await alice.open_orders()] == [a.order_id,
                                                                           b.order_id]
                assert [o.order_id for o in await alice.open_orders("MSFT")] == [b.order_id]
                # bob asks about alice's order: the same answer as for no such order
                with pytest.raises(OrderRejectedError) as foreign:
                    await bob.order_status("AAPL", a.order_id)
                with pytest.raises(OrderRejectedError) as missing:
                    await bob.order_status("AAPL", 10**9)
                assert foreign.value.reason == missing.value.reason == RejectReason.UNKNOWN_ORDER
                assert await bob.open_orders() == []
                await alice.cancel("AAPL", a.order_id)
                done = await alice.order_status("AAPL", a.order_id)
                assert (done.status, done.leaves, done.cum_quantity) == (
                    p.OrderStatus.CANCELLED, 0, 4)
        asyncio.run(scenario())


def test_mass_cancel_by_symbol_and_side_and_all() -> None:
    with ServerThread() as server:
        async def scenario() -> None:
            async with await Client.connect(HOST, server.port, ALICE) as alice, \
                    await Client.connect(HOST, server.port, BOB) as bob:
                for i in range(3):
                    await alice.new_order("AAPL", "buy", 1, f"9{i}.00")
                    await alice.new_order("AAPL", "sell", 1, f"11{i}.00")
                    await alice.new_order("MSFT", "buy", 1, f"4{i}.00")
                keep = await bob.new_order("AAPL", "buy", 1, "80.00")
                sells = await alice.mass_cancel("AAPL", "sell")
                assert len(sells) == 3 and all(r.side == 2 for r in sells)
                assert len(await alice.open_orders("AAPL")) == 3
                rest = await alice.mass_cancel()
                assert len(rest) == 6 and await alice.open_orders() == []
                assert await alice.mass_cancel() == []
                assert [o.order_id for o in await bob.open_orders()] == [keep.order_id]
        asyncio.run(scenario())


def test_cancel_on_disconnect_cancels_only_that_sessions_orders() -> None:
    with ServerThread() as server:
        async def scenario() -> None:
            async with await Client.connect(HOST, server.port, ALICE) as other:
                cod = await Client.connect(HOST, server.port, ALICE, cancel_on_disconnect=True)
                plain = await Client.connect(HOST, server.port, BOB)
                assert cod.ack is not None and cod.ack.cancel_on_disconnect
                mine = [(await cod.new_order("AAPL", "buy", 1, f"9{i}.00")).order_id
                        for i in range(3)]
                theirs = (await other.new_order("AAPL", "buy", 1, "80.00")).order_id
                bobs = (await plain.new_order("AAPL", "buy", 1, "81.00")).order_id
                # orders still in flight when the socket drops are cancelled too
                futs = [cod.send_new_order("AAPL", "buy", 1, "85.00") for _ in range(5)]
                cod.close()
                await cod.wait_closed()
                for f in futs:
                    f.exception() if f.done() else f.cancel()
                await asyncio.sleep(0.2)
                # the account's other session hears of it
                heard = [r for r in other.reports_nowait() if isinstance(r, p.OrderCancelled)]
                assert {r.order_id for r in heard} >= set(mine)
                assert all(r.reason == CancelReason.CANCEL_ON_DISCONNECT for r in heard)
                left = {o.order_id for o in await other.open_orders()}
                assert left == {theirs}
                plain.close()  # cancel_on_disconnect off: bob's order stays
                await plain.wait_closed()
                await asyncio.sleep(0.1)
                async with await Client.connect(HOST, server.port, BOB) as bob:
                    assert [o.order_id for o in await bob.open_orders()] == [bobs]
        asyncio.run(scenario())


def test_drop_copies_see_every_report_and_cannot_trade() -> None:
    with ServerThread(config=admin_config()) as server:  # type: ignore[arg-type]
        async def scenario() -> None:
            copy = await Client.connect(HOST, server.port, ALICE, kind="drop_copy")
            everything = await Client.connect(HOST, server.port, ADMIN, kind="drop_copy_all")
            with pytest.raises(ClientError, match="not an admin"):
                await Client.connect(HOST, server.port, BOB, kind="drop_copy_all")
            async with await Client.connect(HOST, server.port, ALICE) as alice, \
                    await Client.connect(HOST, server.port, BOB) as bob:
                a = await alice.new_order("AAPL", "sell", 5, "100.00")
                b = await bob.new_order("AAPL", "buy", 2, "100.00")
                got = await copy.take_reports(2)
                assert [(type(r), r.order_id) for r in got] == [
                    (p.OrderAccepted, a.order_id), (p.Fill, a.order_id)]
                assert seqs(got) == [1, 2]
                all_ids = [(type(r), r.order_id) for r in await everything.take_reports(4)]
                assert all_ids == [(p.OrderAccepted, a.order_id), (p.OrderAccepted, b.order_id),
                                   (p.Fill, a.order_id), (p.Fill, b.order_id)]
                with pytest.raises(OrderRejectedError) as ro:
                    await copy.new_order("AAPL", "buy", 1, "99.00")
                assert ro.value.reason == RejectReason.READ_ONLY_SESSION
            for c in (copy, everything):
                await c.logout()
                c.close()
        asyncio.run(scenario())


def test_cancel_on_disconnect_when_the_session_goes_silent() -> None:
    """A session that stops sending (no heartbeats) is closed after 3 x heartbeat_seconds,
    and with cancel_on_disconnect its orders leave the book."""
    from tests.gateway.binary_harness import RawClient

    with ServerThread(make_config(heartbeat_seconds=0.2)) as server:
        with RawClient(server.port) as raw:
            raw.send(p.Logon("alice-key", "silent", cancel_on_disconnect=True))
            ack = raw.recv_type(p.LogonAck)
            assert ack.cancel_on_disconnect
            raw.send(p.NewOrderRequest(request_id=1, symbol="AAPL", side=1, quantity=2,
                                       price=9_000))
            resp = raw.recv_type(p.Response)
            oid = resp.reports[0].order_id
            assert server.call(lambda: oid in server.exchange.engine.orders)
            # silent from now on: TestRequests go unanswered, the server closes the session
            assert raw.closed_by_server(timeout=5)
        server.settle()
        assert server.call(lambda: oid not in server.exchange.engine.orders)
        assert server.stats()["heartbeat_timeouts"] == 1


def test_stop_orders_over_the_binary_gateway_report_their_trigger() -> None:
    with ServerThread() as server:
        async def scenario() -> None:
            async with await Client.connect(HOST, server.port, ALICE) as alice, \
                    await Client.connect(HOST, server.port, BOB) as bob, \
                    await Client.connect(HOST, server.port, ADMIN) as mm:
                stop = await alice.new_order("AAPL", "buy", 2, None, order_type="stop",
                                             tif="ioc", stop_price="101.00")
                assert stop.status == "new" and stop.accepted.price == 0
                assert stop.triggered is None
                # invisible until triggered: not in the depth
                assert server.call(lambda: server.exchange.engine.book("AAPL").depth(5)) == {
                    "bids": [], "asks": []}
                await mm.new_order("AAPL", "sell", 5, "101.00")
                await bob.new_order("AAPL", "buy", 1, "101.00")  # last trade 101: triggers
                got = await alice.take_reports(2)
                assert [type(r).__name__ for r in got] == ["OrderTriggered", "Fill"]
                trig, fill = got
                assert isinstance(trig, p.OrderTriggered) and isinstance(fill, p.Fill)
                assert (trig.order_id, trig.stop_price, trig.price, trig.leaves) == (
                    stop.order_id, 10_100, 0, 2)
                assert (fill.order_id, fill.last_quantity, fill.last_price) == (
                    stop.order_id, 2, 10_100)
                assert seqs([stop.accepted, trig, fill]) == [1, 2, 3]  # gap-free numbering
                # a stop-limit that would trigger at once (last 101 >= 100) does so on entry
                now = await alice.new_order("AAPL", "buy", 1, "101.00",
                                            order_type="stop_limit", stop_price="100.00")
                assert now.triggered is not None and now.triggered.stop_price == 10_000
                assert now.status == "filled" and seqs(now.reports) == [4, 5, 6]
        asyncio.run(scenario())


def test_icebergs_over_the_binary_gateway_show_only_their_slice() -> None:
    """An iceberg entered and replaced over the binary gateway: the owner's fills carry the
    whole order, depth and the L3 feed (the exchange's bus) only the visible slice."""
    with ServerThread() as server:
        l3 = server.call(lambda: server.exchange.bus.subscribe("l3.AAPL"))
        async def scenario() -> None:
            async with await Client.connect(HOST, server.port, ALICE) as alice, \
                    await Client.connect(HOST, server.port, BOB) as bob:
                ice = await alice.new_order("AAPL", "sell", 10, "105.00", display_quantity=3)
                assert ice.status == "new" and ice.leaves == 10
                assert server.call(lambda: server.exchange.engine.book("AAPL").depth(5)) == {
                    "bids": [], "asks": [(10_500, 3, 1)]}
                # bob takes 4: slice 1 (3) and 1 of the refilled slice, in one command
                take = await bob.new_order("AAPL", "buy", 4, "105.00")
                assert take.status == "filled"
                fills = [r for r in await alice.take_reports(2) if isinstance(r, p.Fill)]
                assert [(f.last_quantity, f.leaves, f.cum_quantity) for f in fills] == [
                    (3, 7, 3), (1, 6, 4)]
                # keep priority, show 1 lot at a time; the open quantity (6) is unchanged
                rep = await alice.replace("AAPL", ice.order_id, display_quantity=1)
                assert rep.leaves == 6
                state = await alice.order_status("AAPL", ice.order_id)
                assert (state.leaves, state.cum_quantity) == (6, 4)
        asyncio.run(scenario())
        server.settle()
        assert server.call(lambda: server.exchange.engine.book("AAPL").depth(5)) == {
            "bids": [], "asks": [(10_500, 1, 1)]}
        msgs = server.call(l3.drain)
        shown = [(type(m).__name__, getattr(m, "leaves", getattr(m, "quantity", None)))
                 for m in msgs]
        assert shown == [("OrderAdded", 3), ("OrderExecuted", 0), ("OrderAdded", 3),
                         ("OrderExecuted", 2), ("OrderModified", 1)]
        assert all(getattr(m, "quantity", 0) <= 3 for m in msgs)  # the reserve never shows


def test_order_status_pipelined_behind_its_order_sees_it() -> None:
    """A status request sent right behind the order, in the same write, answers with the
    order's state after that order (the query is answered in sequence)."""
    with ServerThread() as server:
        async def scenario() -> None:
            async with await Client.connect(HOST, server.port, ALICE) as alice:
                for i in range(20):
                    fut = alice.send_new_order("AAPL", "buy", 1, "90.00",
                                               client_order_id=f"p{i}")
                    state = await alice.order_status("AAPL", client_order_id=f"p{i}")
                    assert state.status == p.OrderStatus.NEW and state.leaves == 1
                    await fut
        asyncio.run(scenario())
