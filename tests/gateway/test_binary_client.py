"""The asyncio client library and session edge cases: decimal conversion at the edge, GTD
expiry as an unsolicited report, self-trades between two sessions of one account, a draining
shutdown that answers every request, the report iterator ending with the session."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tickline.client import Client, ClientError
from tickline.gateway import protocol as p
from tickline.matching import InstrumentError, RejectReason, STPMode

from .binary_harness import ServerThread
from .test_binary_gateway import run


@pytest.fixture
def server() -> Any:
    with ServerThread() as s:
        yield s


def test_decimal_prices_are_converted_exactly_with_the_servers_instruments(
        server: ServerThread) -> None:
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as c:
            assert set(c.instruments) == {"AAPL", "MSFT", "BTC-USD"}
            req = c.new_order_request("BTC-USD", "buy", "0.0005", "30000.50")
            assert (req.quantity, req.price) == (5, 3_000_050)
            with pytest.raises(InstrumentError, match="more than 2 decimal places"):
                c.send_new_order("AAPL", "buy", 1, "101.255")
            with pytest.raises(ValueError, match="unknown symbol 'NOPE'"):
                c.send_new_order("NOPE", "buy", 1, "1")
            with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
                c.send_new_order("AAPL", "long", 1, "1")
            with pytest.raises(ValueError, match="a limit order needs a price"):
                c.send_new_order("AAPL", "buy", 1)
            assert c.in_flight == 0  # nothing was sent for the bad ones
            ack = await c.new_order("BTC-USD", "sell", "1.5", "30000.50")
            inst = c.instrument("BTC-USD")
            assert inst.price_to_str(ack.accepted.price) == "30000.50"
            assert inst.qty_to_str(ack.accepted.quantity) == "1.5000"
    run(scenario())


def test_gtd_expiry_arrives_unsolicited(server: ServerThread) -> None:
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as c:
            expire = time.time_ns() + 150_000_000  # engine time is wall-clock ns
            ack = await c.new_order("AAPL", "buy", 3, "90.00", tif="gtd", expire_time=expire)
            report = await asyncio.wait_for(anext(aiter(c.reports())), 5)
            assert isinstance(report, p.OrderExpired)
            assert report.order_id == ack.order_id
    run(scenario())
    assert server.call(lambda: len(server.exchange.engine.orders)) == 0


def test_self_trade_between_two_sessions_of_one_account(server: ServerThread) -> None:
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as s1, \
                await Client.connect("127.0.0.1", server.port, "alice-key") as s2:
            rest = await s1.new_order("MSFT", "sell", 5, "50.00")
            # default self-trade prevention cancels the newest: no trade
            stp = await s2.new_order("MSFT", "buy", 5, "50.00")
            assert stp.status == "cancelled" and not stp.fills
            # prevention off: both sides of the trade are alice's
            take = await s2.new_order("MSFT", "buy", 2, "50.00", stp=int(STPMode.OFF))
            assert [(f.order_id, f.leaves) for f in take.reports if isinstance(f, p.Fill)] \
                == [(rest.order_id, 3), (take.order_id, 0)]
            # s1 entered the resting order: it hears of its fill once, unsolicited
            maker = await asyncio.wait_for(anext(aiter(s1.reports())), 5)
            assert isinstance(maker, p.Fill) and maker.order_id == rest.order_id
            await asyncio.sleep(0.05)
            assert s1.reports_nowait() == [] and s2.reports_nowait() == []
    run(scenario())


def test_shutdown_answers_every_request_then_logs_out() -> None:
    server = ServerThread().__enter__()
    try:
        async def scenario() -> list[p.Response]:
            c = await Client.connect("127.0.0.1", server.port, "alice-key")
            futs = [c.send_new_order("AAPL", "buy", 1, "10.00") for _ in range(500)]
            await asyncio.sleep(0)  # let the batch go out
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, server.stop)
            resps = await asyncio.wait_for(asyncio.gather(*futs), 10)
            await c.wait_closed()
            assert c.close_reason == "logout: server shutting down"
            with pytest.raises(ClientError, match="session closed"):
                c.send_new_order("AAPL", "buy", 1, "10.00")
            return list(resps)
        resps = run(scenario())
    finally:
        server.stop()
    outcomes = {type(r.reports[0]).__name__ for r in resps}
    assert outcomes <= {"OrderAccepted", "OrderRejected"}
    for r in resps:
        first = r.reports[0]
        if isinstance(first, p.OrderRejected):
            assert first.reason == RejectReason.THROTTLED
            assert first.text == "server is stopping"


def test_report_iterator_ends_when_the_session_closes(server: ServerThread) -> None:
    async def scenario() -> None:
        c = await Client.connect("127.0.0.1", server.port, "alice-key")

        async def consume() -> list[p.Report]:
            return [r async for r in c.reports()]
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        await c.logout()
        assert await asyncio.wait_for(task, 5) == []
    run(scenario())


def test_take_reports_waits_for_exactly_the_count_or_says_how_many_came(
        server: ServerThread) -> None:
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as alice, \
                await Client.connect("127.0.0.1", server.port, "bob-key-3") as bob:
            ask = await alice.new_order("AAPL", "sell", 5, "100.00")
            for _ in range(3):
                await bob.new_order("AAPL", "buy", 1, "100.00", tif="ioc")
            fills = await alice.take_reports(2)
            assert [(type(r), r.order_id) for r in fills] == [(p.Fill, ask.order_id)] * 2
            assert [r.leaves for r in fills] == [4, 3]  # type: ignore[union-attr]
            assert alice.last_report_seq == fills[-1].exec_seq
            with pytest.raises(TimeoutError, match=r"1 of 2 reports within 0\.3 s"):
                await alice.take_reports(2, timeout=0.3)
            assert alice.last_report_seq == fills[-1].exec_seq + 1  # the third was counted
            assert await alice.take_reports(0) == []
    run(scenario())


def test_take_reports_fails_when_the_session_closes_first(server: ServerThread) -> None:
    async def scenario() -> None:
        c = await Client.connect("127.0.0.1", server.port, "alice-key")
        task = asyncio.create_task(c.take_reports(1, timeout=5))
        await asyncio.sleep(0.01)
        await c.logout()
        with pytest.raises(ClientError, match="session closed after 0 of 1 reports"):
            await task
    run(scenario())


def test_connect_to_nothing_fails_cleanly() -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused

    async def scenario() -> None:
        with pytest.raises(ClientError, match=f"cannot connect to 127.0.0.1:{port}"):
            await Client.connect("127.0.0.1", port, "alice-key", timeout=2)
    run(scenario())


def test_raw_request_ids_and_generated_ids_do_not_collide(server: ServerThread) -> None:
    """Regression: the id counter handed out ids of raw requests still in flight, so
    ``new_order`` after ``send_request(request_id=1)`` got the *raw* order's Response (an
    acknowledgement of a different order) and the raw request's future never resolved."""
    async def scenario() -> None:
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as c:
            raw = c.send_request(p.NewOrderRequest(request_id=1, symbol="AAPL", side=1,
                                                   quantity=7, price=100))
            ack = await c.new_order("AAPL", "sell", 3, "2.00")
            assert (ack.accepted.side, ack.accepted.quantity, ack.accepted.price) == (2, 3, 200)
            first = (await asyncio.wait_for(raw, 5)).reports[0]
            assert isinstance(first, p.OrderAccepted) and first.quantity == 7
            again = c.send_request(p.NewOrderRequest(request_id=50, symbol="AAPL", side=1,
                                                     quantity=1, price=100))
            with pytest.raises(ValueError, match="in flight"):
                c.send_request(p.NewOrderRequest(request_id=50, symbol="AAPL", side=1,
                                                 quantity=1, price=100))
            await asyncio.wait_for(again, 5)

    run(scenario())
