"""WebSocket order entry at parity with the binary gateway, over real sockets: replace, GTD,
STP mode, post-only, stop and stop-limit, display quantity, order status, open orders, mass
cancel, resume by report sequence and cancel on disconnect (the venue services below the
gateway, :mod:`tickline.venue`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.gateway.test_http import engine_depth, read_until, request, running, settle, ws_connect
from tickline.exchange import Exchange


async def login(port: int, key: str, **extra: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await ws_connect(port)
    await request(ws, {"op": "login", "key": key, **extra})
    got = await read_until(ws, lambda m: m["type"] in ("login", "error"))
    return ws, next(m for m in got if m["type"] in ("login", "error"))


async def send_exec(ws: ClientConnection, req: dict[str, Any],
                    kind: str | None = None) -> dict[str, Any]:
    """Send ``req``; the first ``exec`` (of ``kind``) or ``error`` it gets."""
    def match(m: dict[str, Any]) -> bool:
        return m["type"] == "error" or (m["type"] == "exec"
                                        and (kind is None or m["kind"] == kind))

    await request(ws, req)
    got = await read_until(ws, match)
    return next(m for m in got if match(m))


def new(symbol: str = "AAPL", **kw: Any) -> dict[str, Any]:
    return {"op": "new_order", "symbol": symbol, **kw}


def test_ws_orders_at_parity_with_binary(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            alice, _ = await login(gw.port, "alice-key")
            bob, _ = await login(gw.port, "bob-key-3")
            # Replace: new price and total quantity, a new client order id.
            m = await send_exec(alice, new(side="buy", price="99.00", quantity="10",
                                           client_order_id="a1"))
            assert m["kind"] == "new"
            m = await send_exec(alice, {"op": "replace", "symbol": "AAPL",
                                        "orig_client_order_id": "a1", "client_order_id": "a2",
                                        "price": "99.50", "quantity": "6"})
            assert m["kind"] == "replaced" and m["price"] == "99.50" and m["quantity"] == "6"
            assert engine_depth(ex, "AAPL")["bids"] == [["99.50", "6", 1]]
            # Replace with nothing to change: typed error, nothing submitted.
            seq = ex.engine.last_seq
            await request(alice, {"op": "replace", "symbol": "AAPL", "order_id": 1})
            got = await read_until(alice, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "invalid_order" and got[-1]["op"] == "replace"
            assert ex.engine.last_seq == seq
            # Post-only that would cross: the engine rejects it, typed.
            m = await send_exec(bob, new(side="sell", price="99.50", quantity="1",
                                         post_only=True))
            assert m["kind"] == "rejected", m
            # GTD: expires on time (the exchange's expiry timer).
            expire = time.time_ns() + 300_000_000
            m = await send_exec(bob, new(side="sell", price="105.00", quantity="2",
                                         tif="gtd", expire_time=expire,
                                         client_order_id="g1"))
            assert m["kind"] == "new"
            m = await send_exec(bob, {"op": "ping"}, kind="expired")
            assert m["client_order_id"] == "g1"
            await request(bob, new(side="sell", price="105.00", quantity="2", tif="gtd"))
            got = await read_until(bob, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "invalid_order" and "expire_time" in got[-1]["message"]
            # Stop and stop-limit: armed (not in the book), then triggered by a trade.
            m = await send_exec(bob, new(side="buy", order_type="stop_limit", price="103.00",
                                         stop_price="102.00", quantity="3",
                                         client_order_id="s1"))
            assert m["kind"] == "new", m
            assert ex.engine.books["AAPL"].depth(10)["bids"] == [(9950, 6, 1)]
            await request(bob, new(side="buy", order_type="stop", quantity="1"))
            got = await read_until(bob, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "invalid_order" and "stop_price" in got[-1]["message"]
            # A stop price on a plain limit order is the engine's typed reject.
            m = await send_exec(bob, new(side="buy", price="90.00", quantity="1",
                                         stop_price="91.00"))
            assert m["kind"] == "rejected"
            # Display quantity is carried to the engine (an iceberg).
            m = await send_exec(alice, new(side="sell", price="102.00", quantity="20",
                                           display_quantity="5", client_order_id="ice"))
            assert m["kind"] == "new"
            iceberg = ex.engine.orders[m["order_id"]]
            assert iceberg.display == 5 and iceberg.hidden == 15
            # STP off: Alice may trade with herself (the account default would cancel).
            m = await send_exec(alice, new(side="buy", price="102.00", quantity="2",
                                           tif="ioc", stp="off"), kind="fill")
            assert m["last_price"] == "102.00" and m["last_quantity"] == "2"
            # That trade at 102.00 triggered Bob's stop-limit (a ``triggered`` report), which
            # then bought 3 of Alice's iceberg at 102.00.
            await settle(ex)
            got = await read_until(bob, lambda m: m["type"] == "exec"
                                   and m["client_order_id"] == "s1" and m["kind"] == "fill")
            s1 = [m for m in got if m["type"] == "exec" and m["client_order_id"] == "s1"]
            assert [m["kind"] for m in s1] == ["triggered", "fill"], s1
            assert s1[-1]["last_price"] == "102.00" and s1[-1]["last_quantity"] == "3"
            await alice.close()
            await bob.close()

    asyncio.run(scenario())


def test_ws_order_status_open_orders_and_mass_cancel(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            alice, _ = await login(gw.port, "alice-key")
            bob, _ = await login(gw.port, "bob-key-3")
            for i, (side, price) in enumerate([("buy", "99.00"), ("buy", "98.00"),
                                               ("sell", "101.00")]):
                m = await send_exec(alice, new(side=side, price=price, quantity="5",
                                               client_order_id=f"o{i}"))
                assert m["kind"] == "new"
            await send_exec(alice, new(symbol="MSFT", side="sell", price="200.00",
                                       quantity="1", client_order_id="m0"))
            await request(alice, {"op": "order_status", "client_order_id": "o1", "id": 7})
            got = await read_until(alice, lambda m: m["type"] in ("order_status", "error"))
            status = got[-1]
            assert status["type"] == "order_status" and status["id"] == 7
            assert status["order"]["status"] == "new" and status["order"]["price"] == "98.00"
            assert status["order"]["leaves"] == "5" and status["order"]["avg_price"] is None
            # Another account's order looks like an unknown one.
            await request(bob, {"op": "order_status", "order_id": status["order"]["order_id"]})
            got = await read_until(bob, lambda m: m["type"] in ("order_status", "error"))
            assert got[-1]["code"] == "unknown_order"
            # A partial fill shows in the status: average price as decimal text.
            await send_exec(bob, new(side="sell", price="99.00", quantity="2", tif="ioc"),
                            kind="fill")
            await request(alice, {"op": "order_status", "client_order_id": "o0"})
            got = await read_until(alice, lambda m: m["type"] == "order_status")
            assert got[-1]["order"]["status"] == "partially_filled"
            assert got[-1]["order"]["avg_price"] == "99.00"
            assert got[-1]["order"]["cum_quantity"] == "2"
            await request(alice, {"op": "open_orders", "symbol": "AAPL", "id": "q"})
            got = await read_until(alice, lambda m: m["type"] == "open_orders")
            assert sorted(o["client_order_id"] for o in got[-1]["orders"]) == ["o0", "o1", "o2"]
            # Mass cancel of the buys in AAPL only.
            await request(alice, {"op": "mass_cancel", "symbol": "AAPL", "side": "buy",
                                  "id": 1})
            got = await read_until(alice, lambda m: m["type"] == "mass_cancelled")
            assert got[-1]["count"] == 2
            assert sorted(m["client_order_id"] for m in got
                          if m["type"] == "exec" and m["kind"] == "cancelled") == ["o0", "o1"]
            await request(alice, {"op": "open_orders"})
            got = await read_until(alice, lambda m: m["type"] == "open_orders")
            assert sorted(o["client_order_id"] for o in got[-1]["orders"]) == ["m0", "o2"]
            assert engine_depth(ex, "AAPL")["bids"] == []
            # Unknown symbol: typed error, nothing submitted.
            seq = ex.engine.last_seq
            await request(alice, {"op": "mass_cancel", "symbol": "NOPE"})
            got = await read_until(alice, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "unknown_symbol"
            assert ex.engine.last_seq == seq
            await alice.close()
            await bob.close()

    asyncio.run(scenario())


def alice_orders(ex: Exchange) -> list[int]:
    return sorted(oid for oid, o in ex.engine.orders.items() if o.account == 2)


def test_ws_resume_by_report_sequence(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            alice, hello = await login(gw.port, "alice-key")
            assert hello["last_report_seq"] == 0
            seqs = []
            for i in range(4):
                m = await send_exec(alice, new(side="buy", price=f"9{i}.00", quantity="1",
                                               client_order_id=f"r{i}"))
                seqs.append(m["seq"])
            assert seqs == [1, 2, 3, 4]
            await alice.close()
            # Reports made while away: a fill of r3 as a maker.
            bob, _ = await login(gw.port, "bob-key-3")
            await send_exec(bob, new(side="sell", price="93.00", quantity="1", tif="ioc"),
                            kind="fill")
            await settle(ex)
            again = await ws_connect(gw.port)
            await request(again, {"op": "login", "key": "alice-key", "resume_from": 2})
            got = await read_until(again, lambda m: m["type"] == "exec" and m["seq"] == 5)
            assert got[0]["type"] == "login" and got[0]["last_report_seq"] == 5
            execs = [m for m in got if m["type"] == "exec"]
            assert [m["seq"] for m in execs] == [3, 4, 5]
            assert execs[-1]["kind"] == "fill" and execs[-1]["client_order_id"] == "r3"
            # Live reports continue above last_report_seq.
            m = await send_exec(again, new(side="buy", price="90.00", quantity="1"))
            assert m["seq"] == 6
            # Beyond the last report: a typed error, not logged in.
            late, hello = await login(gw.port, "alice-key", resume_from=99)
            assert hello["type"] == "error" and hello["code"] == "resume_unavailable"
            await request(late, new(side="buy", price="90.00", quantity="1"))
            got = await read_until(late, lambda m: m["type"] == "error")
            assert got[-1]["code"] == "not_authenticated"
            for ws in (again, late, bob):
                await ws.close()

    asyncio.run(scenario())


def test_ws_cancel_on_disconnect(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            keeper, _ = await login(gw.port, "alice-key")
            m = await send_exec(keeper, new(side="buy", price="95.00", quantity="1"))
            kept = m["order_id"]
            leaver, hello = await login(gw.port, "alice-key", cancel_on_disconnect=True)
            assert hello["cancel_on_disconnect"] is True
            ids = []
            for price in ("96.00", "97.00"):
                m = await send_exec(leaver, new(side="buy", price=price, quantity="1"))
                ids.append(m["order_id"])
            assert alice_orders(ex) == sorted([kept, *ids])
            await leaver.close()
            # The other session of the account hears about the cancels (reason: disconnect).
            got = await read_until(keeper, lambda m: m["type"] == "exec"
                                   and m["kind"] == "cancelled" and m["order_id"] == ids[-1])
            cancelled = [m for m in got if m["type"] == "exec" and m["kind"] == "cancelled"]
            assert sorted(m["order_id"] for m in cancelled) == sorted(ids)
            await settle(ex)
            assert alice_orders(ex) == [kept]
            assert gw.services.cancels_on_disconnect == 1
            # Without the flag nothing is cancelled.
            await keeper.close()
            await asyncio.sleep(0.1)
            await settle(ex)
            assert alice_orders(ex) == [kept]

    asyncio.run(scenario())


def test_ws_resume_from_the_journal(tmp_path: Path) -> None:
    """Memory holds only the newest 2 reports per account: a resume from 0 reads the journal
    (off the loop), then live reports follow in order."""

    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            ex.history.per_account = 2
            alice, _ = await login(gw.port, "alice-key")
            for i in range(5):
                await send_exec(alice, new(side="buy", price=f"9{i}.00", quantity="1",
                                           client_order_id=f"j{i}"))
            await alice.close()
            from_journal = ex.resumer.from_journal
            again = await ws_connect(gw.port)
            await request(again, {"op": "login", "key": "alice-key", "resume_from": 0})
            # A live report asked for at once: it must come after the five missed ones.
            await request(again, new(side="buy", price="80.00", quantity="1",
                                     client_order_id="live"))
            got = await read_until(again, lambda m: m["type"] == "exec"
                                   and m["client_order_id"] == "live")
            assert got[0]["type"] == "login" and got[0]["last_report_seq"] == 5
            execs = [m for m in got if m["type"] == "exec"]
            assert [m["seq"] for m in execs] == [1, 2, 3, 4, 5, 6]
            assert [m["client_order_id"] for m in execs[:5]] == [f"j{i}" for i in range(5)]
            assert ex.resumer.from_journal == from_journal + 1
            await again.close()

    asyncio.run(scenario())
