"""The binary gateway end to end over real sockets: trading between clients, reports exactly
once, authentication, ownership, limits, bad frames, slow readers, logout, metrics."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tickline.client import Client, ClientError, OrderRejectedError
from tickline.gateway import protocol as p
from tickline.matching import RejectReason

from .binary_harness import RawClient, ServerThread, make_config

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


@pytest.fixture
def server() -> Any:
    with ServerThread() as s:
        yield s


def test_clients_trade_and_every_report_arrives_exactly_once(server: ServerThread) -> None:
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as alice, \
                await Client.connect("127.0.0.1", server.port, "bob-key-3") as bob, \
                await Client.connect("127.0.0.1", server.port, "alice-key") as alice2:
            assert alice.account == 2 and bob.account == 3
            assert alice.instrument("AAPL").price_decimals == 2
            sell = await alice.new_order("AAPL", "sell", 10, "101.25", client_order_id="s1")
            assert sell.status == "new" and sell.leaves == 10
            buy = await bob.new_order("AAPL", "buy", 4, "101.30")
            assert buy.status == "filled"
            assert [(f.last_price, f.last_quantity) for f in buy.fills] == [(10125, 4)]
            # alice's resting order was filled by bob: unsolicited, exactly once, to the
            # session that entered it; alice2 (same account) hears nothing of it
            fill = await anext(aiter(alice.reports()))
            assert isinstance(fill, p.Fill)
            assert (fill.order_id, fill.leaves, fill.client_order_id) == (sell.order_id, 6, "s1")
            replaced = await alice.replace("AAPL", sell.order_id, price="101.50", quantity=8)
            assert (replaced.price, replaced.quantity, replaced.leaves) == (10150, 8, 4)
            await asyncio.sleep(0.05)
            assert alice.reports_nowait() == []  # nothing else, no duplicates
            assert alice2.reports_nowait() == []
            assert bob.reports_nowait() == []
            # alice leaves: reports about her orders now go to the account's other sessions
            alice.close()
            await alice.wait_closed()
            await bob.new_order("AAPL", "buy", 1, "101.50")
            late_fill = await asyncio.wait_for(anext(aiter(alice2.reports())), 5)
            assert isinstance(late_fill, p.Fill)
            assert (late_fill.order_id, late_fill.leaves) == (sell.order_id, 3)
            cancelled = await alice2.cancel("AAPL", orig_client_order_id="s1")
            assert cancelled.order_id == sell.order_id
            # exec_seq has no gaps over everything alice's account received
            seqs = ([r.exec_seq for r in sell.reports] + [fill.exec_seq]
                    + [replaced.exec_seq, late_fill.exec_seq, cancelled.exec_seq])
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    run(scenario())
    assert server.call(lambda: len(server.exchange.engine.orders)) == 0


def test_pipelined_orders_each_get_one_response_in_order(server: ServerThread) -> None:
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as a, \
                await Client.connect("127.0.0.1", server.port, "bob-key-3") as b:
            futs = [a.send_new_order("MSFT", "sell", 1, f"{100 + i % 7}.00") for i in range(300)]
            futs += [b.send_new_order("MSFT", "buy", 2, "103.00", tif="ioc")
                     for _ in range(100)]
            resps = await asyncio.gather(*futs)
            assert [r.request_id for r in resps[:300]] == list(range(1, 301))
            assert all(isinstance(r.reports[0], p.OrderAccepted) for r in resps)
            bob_fills = [f for r in resps[300:] for f in r.reports if isinstance(f, p.Fill)]
            bob_filled = sum(f.last_quantity for f in bob_fills)
            passive = [r for r in await a.take_reports(len(bob_fills)) if isinstance(r, p.Fill)]
            assert len(passive) == len(bob_fills)
            assert sum(f.last_quantity for f in passive) == bob_filled
            assert len({f.exec_seq for f in passive}) == len(passive)
    run(scenario())


def test_unsolicited_reports_from_outside_the_gateway(server: ServerThread) -> None:
    """A command submitted to the exchange directly (as another gateway would) that trades
    against a gateway session's resting order reaches that session as unsolicited."""
    from tickline.matching import BUY, NewOrder

    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as a:
            ack = await a.new_order("AAPL", "sell", 5, "99.00")
            server.call(lambda: server.exchange.submit(
                NewOrder(account=3, symbol="AAPL", side=BUY, quantity=2, price=9900)))
            report = await asyncio.wait_for(anext(aiter(a.reports())), 5)
            assert isinstance(report, p.Fill)
            assert (report.order_id, report.leaves) == (ack.order_id, 3)
    run(scenario())


def test_wrong_key_is_rejected_and_closed(server: ServerThread) -> None:
    with RawClient(server.port) as c:
        c.send(p.Logon("not-a-key"))
        reject = c.recv_type(p.LogonReject)
        assert reject.reason == RejectReason.NOT_AUTHENTICATED
        assert c.closed_by_server()

    async def scenario() -> None:
        with pytest.raises(ClientError, match="logon rejected: unknown account key"):
            await Client.connect("127.0.0.1", server.port, "wrong-key-123")
    run(scenario())
    assert server.stats()["logon_rejects"] == 2


def test_nothing_works_before_logon(server: ServerThread) -> None:
    before = server.digest()
    with RawClient(server.port) as c:
        c.send(p.NewOrderRequest(request_id=1, symbol="AAPL", side=1, quantity=1, price=100))
        c.send(p.CancelRequest(request_id=2, symbol="AAPL", order_id=1))
        for _ in range(2):
            err = c.recv_type(p.Error)
            assert err.code == p.ErrorCode.NOT_LOGGED_ON
        ack = c.logon()  # the session is still usable
        assert ack.account == 2
    server.settle()
    assert server.digest() == before
    assert server.stats()["requests"] == 0


def test_logon_timeout_closes_the_session() -> None:
    with ServerThread(make_config(login_timeout_seconds=0.2)) as server, \
            RawClient(server.port) as c:
        err = c.recv_type(p.Error, timeout=3)
        assert err.code == p.ErrorCode.LOGON_TIMEOUT
        assert c.closed_by_server()
        assert server.stats()["login_timeouts"] == 1


def test_foreign_orders_cannot_be_touched(server: ServerThread) -> None:
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as a, \
                await Client.connect("127.0.0.1", server.port, "bob-key-3") as b:
            ack = await a.new_order("AAPL", "buy", 10, "50.00", client_order_id="mine")
            before = server.digest()
            missing = ack.order_id + 1000
            # another account's live order is answered exactly as an order id never issued
            for order_id in (ack.order_id, missing):
                with pytest.raises(OrderRejectedError) as e1:
                    await b.cancel("AAPL", order_id)
                assert e1.value.reason is RejectReason.UNKNOWN_ORDER
                assert e1.value.text == f"order {order_id} is not a live order of 'AAPL'"
                assert e1.value.report.order_id == order_id
                with pytest.raises(OrderRejectedError) as e2:
                    await b.replace("AAPL", order_id, price="60.00")
                assert e2.value.reason is RejectReason.UNKNOWN_ORDER
                assert e2.value.text == f"order {order_id} is not a live order of 'AAPL'"
            with pytest.raises(OrderRejectedError) as e3:  # by client id: bob has no "mine"
                await b.cancel("AAPL", orig_client_order_id="mine")
            assert e3.value.reason is RejectReason.UNKNOWN_ORDER
            assert server.digest() == before
            assert a.reports_nowait() == []  # alice hears nothing of bob's attempts
    run(scenario())
    rejects = server.stats()["rejects_by_reason"]
    assert rejects == {"UNKNOWN_ORDER": 5}


def test_rate_limit_rejects_the_excess_and_counts_it() -> None:
    with ServerThread(make_config(orders_per_second=5.0, burst=10)) as server:
        async def scenario() -> list[p.Response]:
            async with await Client.connect("127.0.0.1", server.port, "alice-key") as a:
                futs = [a.send_new_order("AAPL", "buy", 1, "10.00") for _ in range(30)]
                return list(await asyncio.gather(*futs))
        resps = run(scenario())
        kinds = Counter(type(r.reports[0]).__name__ for r in resps)
        assert kinds["OrderAccepted"] in (10, 11)  # the burst (+1 refilled at most)
        limited = [r.reports[0] for r in resps if isinstance(r.reports[0], p.OrderRejected)]
        assert all(r.reason == RejectReason.RATE_LIMITED for r in limited)
        assert "rate limit 5 orders/s (burst 10) exceeded" in limited[0].text
        stats = server.stats()
        assert stats["rate_limited"] == len(limited) == 30 - kinds["OrderAccepted"]
        assert server.call(lambda: len(server.exchange.engine.orders)) == kinds["OrderAccepted"]


def test_in_flight_limit() -> None:
    with ServerThread(make_config(max_in_flight=5)) as server:
        # hold the exchange: nothing is answered until the loop turn ends
        async def scenario() -> list[p.Response]:
            async with await Client.connect("127.0.0.1", server.port, "alice-key") as a:
                futs = [a.send_new_order("AAPL", "buy", 1, "10.00") for _ in range(50)]
                return list(await asyncio.gather(*futs))
        resps = run(scenario())
        throttled = [r for r in resps if isinstance(r.reports[0], p.OrderRejected)]
        assert throttled, "50 pipelined requests in one write must exceed max_in_flight=5"
        assert all(r.reports[0].reason == RejectReason.THROTTLED for r in throttled)  # type: ignore[union-attr]
        assert "max_in_flight" in throttled[0].reports[0].text  # type: ignore[union-attr]


def test_malformed_frame_gets_an_error_and_the_session_continues(server: ServerThread) -> None:
    with RawClient(server.port) as c:
        c.logon()
        before = server.digest()
        c.send_bytes(b"\x00\x00\x00\x03\xc1\xc1\xc1")  # 0xc1 is never valid MessagePack
        err = c.recv_type(p.Error)
        assert err.code == p.ErrorCode.MALFORMED
        wrong = b"\x92\x0a\xa1x"  # [10, "x"]: a NewOrderRequest tag with a wrong field
        c.send_bytes(len(wrong).to_bytes(4, "big") + wrong)
        assert c.recv_type(p.Error).code == p.ErrorCode.MALFORMED
        server.settle()
        assert server.digest() == before
        c.send(p.NewOrderRequest(request_id=5, symbol="AAPL", side=1, quantity=1, price=100))
        resp = c.recv_type(p.Response)
        assert resp.request_id == 5 and isinstance(resp.reports[0], p.OrderAccepted)
    assert server.stats()["malformed_frames"] == 2


@pytest.mark.parametrize("header", [(1 << 32) - 1, 4097, 0], ids=["huge", "max+1", "zero"])
def test_broken_frame_length_gets_an_error_and_closes(server: ServerThread,
                                                       header: int) -> None:
    with RawClient(server.port) as c:
        c.logon()
        c.send_bytes(header.to_bytes(4, "big") + b"\x00" * 16)
        err = c.recv_type(p.Error)
        assert err.code in (p.ErrorCode.FRAME_TOO_LARGE, p.ErrorCode.EMPTY_FRAME)
        assert c.closed_by_server()
    assert server.stats()["broken_frames"] == 1


def test_disconnect_mid_frame_changes_nothing(server: ServerThread) -> None:
    before = server.digest()
    frame = p.encode_frame(p.NewOrderRequest(request_id=1, symbol="AAPL", side=1, quantity=1,
                                             price=100))
    with RawClient(server.port) as c:
        c.logon()
        c.send_bytes(frame[:-3])
    time.sleep(0.1)
    server.settle()
    assert server.digest() == before
    assert server.call(server.gateway.session_count) == 0


def test_stalled_reader_is_disconnected_and_others_keep_trading() -> None:
    config = make_config(orders_per_second=1e6, burst=100_000, max_in_flight=100_000)
    with ServerThread(config, max_output_bytes=16 << 10, send_buffer_bytes=16 << 10) as server:
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        stalled.connect(("127.0.0.1", server.port))
        try:
            stalled.sendall(p.encode_frame(p.Logon("bob-key-3")))
            # flood IOC orders (nothing rests) and never read a byte of the answers
            burst = bytes(p.encode_frames([
                p.NewOrderRequest(request_id=i, symbol="AAPL", side=1, quantity=1, price=100,
                                  tif=2) for i in range(1, 20_001)]))
            stalled.sendall(burst)

            async def others() -> float:
                async with await Client.connect("127.0.0.1", server.port, "alice-key") as a:
                    t0 = time.perf_counter()
                    for _ in range(50):
                        await a.new_order("MSFT", "buy", 1, "10.00", tif="ioc")
                    return time.perf_counter() - t0
            elapsed = run(others())
            assert elapsed < 5.0
            deadline = time.monotonic() + 10
            while server.stats()["slow_consumer_disconnects"] == 0:
                assert time.monotonic() < deadline, "the stalled reader was never disconnected"
                time.sleep(0.05)
            assert server.call(server.gateway.session_count) == 0
        finally:
            stalled.close()


def test_logout_waits_for_in_flight_answers(server: ServerThread) -> None:
    async def scenario() -> None:
        c = await Client.connect("127.0.0.1", server.port, "alice-key")
        futs = [c.send_new_order("AAPL", "buy", 1, "10.00") for _ in range(100)]
        await c.logout()
        assert all(f.done() and not f.exception() for f in futs)
        assert c.close_reason == "logout: logged out"
        await c.wait_closed()
    run(scenario())
    server.settle()
    assert server.call(server.gateway.session_count) == 0


def test_heartbeats_and_test_requests() -> None:
    with ServerThread(make_config(heartbeat_seconds=0.2)) as server, \
            RawClient(server.port) as c:
        c.logon()
        # we were quiet: the server heartbeats (a TestRequest may come first when its timer
        # ran late on a loaded machine and our silence already passed 1.5x the interval)
        first = c.recv(timeout=2)
        if isinstance(first, p.TestRequest):
            first = c.recv(timeout=2)
        assert isinstance(first, p.Heartbeat)
        c.send(p.TestRequest(42))
        msgs = [c.recv(timeout=2) for _ in range(2)]
        assert p.Heartbeat(42) in msgs
        # silence: a TestRequest, then a timeout close
        assert c.closed_by_server(timeout=3)
        assert server.stats()["heartbeat_timeouts"] == 1


def test_max_sessions_bounds_logged_on_sessions() -> None:
    with ServerThread(make_config(max_sessions=2)) as server, \
            RawClient(server.port) as c1, RawClient(server.port) as c2:
        c1.logon()
        c2.logon("bob-key-3")
        with RawClient(server.port) as c3:
            c3.send(p.Logon("alice-key"))
            reject = c3.recv_type(p.LogonReject)
            assert reject.reason == RejectReason.THROTTLED
            assert reject.text == "too many sessions (max_sessions=2)"
            assert c3.closed_by_server()
        c1.send(p.Logout())
        c1.recv_type(p.Logout)
        assert c1.closed_by_server()
        with RawClient(server.port) as c4:  # a slot is free again
            assert c4.logon("bob-key-3").account == 3
        assert server.stats()["sessions_refused"] == 1


def test_prometheus_text_parses(server: ServerThread) -> None:
    with RawClient(server.port) as c:
        c.logon()
        c.send_bytes(b"\x00\x00\x00\x01\xc1")
        c.recv_type(p.Error)
        c.send(p.CancelRequest(request_id=1, symbol="AAPL", order_id=99))
        c.recv_type(p.Response)
    text = server.call(server.gateway.prometheus)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["tickline_binary_malformed_frames"].samples[0].value == 1
    assert families["tickline_binary_sessions"].type == "gauge"
    rejects = {s.labels["reason"]: s.value for s in families["tickline_binary_rejects"].samples}
    assert rejects == {"UNKNOWN_ORDER": 1}
    decode = families["tickline_binary_decode_seconds"]
    assert decode.type == "summary"
    assert [s.value for s in decode.samples if s.name.endswith("_count")] == [2.0]  # logon, cancel


def test_response_is_attributed_right_when_the_wall_clock_stands_still(
        server: ServerThread) -> None:
    """Regression: the sequencer stamped equal ``ts`` on consecutive commands whenever the
    wall clock did not advance (stepped back by NTP, or coarse), and the gateway, which pairs
    a request with its reports by ``ts``, put another session's passive fill of the same
    order into a cancel's Response (the Cancelled went out unsolicited)."""
    alice = RawClient(server.port)
    bob = RawClient(server.port)
    try:
        alice.logon("alice-key")
        bob.logon("bob-key-3")
        alice.send(p.NewOrderRequest(request_id=1, symbol="AAPL", side=2, quantity=5,
                                     price=100))
        oid = alice.recv_type(p.Response).reports[0].order_id
        frozen = server.call(lambda: server.exchange._clock())

        def freeze() -> None:
            server.exchange._clock = lambda: frozen

        server.call(freeze)

        async def block_loop() -> None:
            time.sleep(0.3)  # both requests arrive while the loop is busy: one drain

        blocked = asyncio.run_coroutine_threadsafe(block_loop(), server.loop)
        time.sleep(0.05)
        bob.send(p.NewOrderRequest(request_id=1, symbol="AAPL", side=1, quantity=2,
                                   price=100))
        time.sleep(0.05)
        # A replace, not a cancel: a cancel would travel in the high-priority lane and be
        # sequenced before bob's order (exchange lanes); a replace keeps arrival order.
        alice.send(p.ReplaceRequest(request_id=2, symbol="AAPL", order_id=oid, quantity=4))
        blocked.result(5)
        got = [alice.recv(), alice.recv()]
        fill = next(m for m in got if isinstance(m, p.Fill))
        response = next(m for m in got if isinstance(m, p.Response))
        assert fill.order_id == oid and fill.last_quantity == 2  # unsolicited: bob's doing
        assert [type(r) for r in response.reports] == [p.OrderReplaced]
        assert response.request_id == 2
    finally:
        alice.close()
        bob.close()
