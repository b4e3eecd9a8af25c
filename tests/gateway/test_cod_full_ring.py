"""Cancel on disconnect while a flood of new orders fills the inbound ring, over real sockets:
the session's orders must all leave the book, never be silently kept (review item 2).

The exchange consumer is held at a gate (its ``wait_for_work`` awaits an event first) so
the ring stays full while the session drops; then the gate opens and the exchange drains.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.gateway.binary_harness import SHARDS, RawClient, ServerThread
from tickline.gateway import protocol as p
from tickline.matching import CancelReason

pytestmark = pytest.mark.skipif(bool(SHARDS), reason="gates the one-process exchange loop")

CAPACITY = 64  # per inbound lane


def logon(port: int, key: str, *, cod: bool = False) -> RawClient:
    c = RawClient(port)
    c.send(p.Logon(key, "", cancel_on_disconnect=cod))
    assert c.recv_type(p.LogonAck).cancel_on_disconnect is cod
    return c


def order(rid: int, price: int) -> p.NewOrderRequest:
    return p.NewOrderRequest(request_id=rid, symbol="AAPL", side=1, quantity=1, price=price)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def hold_exchange(server: ServerThread) -> asyncio.Event:
    """From the exchange loop's next turn on, it waits for the returned event to be set."""
    gate: asyncio.Event | None = None

    def install() -> None:
        nonlocal gate
        gate = asyncio.Event()
        proc = server.exchange.processor
        original = proc.wait_for_work
        held = gate

        async def gated() -> None:
            await held.wait()
            await original()

        proc.wait_for_work = gated  # type: ignore[method-assign]

    server.call(install)
    assert gate is not None
    return gate


@pytest.mark.parametrize("flooder", ["bob-key-3", "alice-key"])
def test_cancel_on_disconnect_is_not_dropped_when_the_ring_is_full(flooder: str) -> None:
    """bob floods: the cancel goes into the high-priority lane, past the full normal lane.
    alice floods from another session: her cancel must wait behind her own new orders (it
    is held in the normal lane, which is full), so it is refused and retried until room."""
    with ServerThread(capacity=CAPACITY) as server:
        cod = logon(server.port, "alice-key", cod=True)
        mine = []
        for i in range(3):
            cod.send(order(i + 1, 9_000 + i))
            mine.append(cod.recv_type(p.Response).reports[0].order_id)
        flood = logon(server.port, flooder)
        gate = hold_exchange(server)
        # one order so the loop turns once and is then held at the gate
        flood.send(order(1, 5_000))
        flood.recv_type(p.Response)
        frames = b"".join(p.encode_frame(order(rid, 5_000)) for rid in range(2, 2 + 4 * CAPACITY))
        flood.send_bytes(frames)
        wait_until(lambda: server.stats()["exchange_busy"] >= 2 * CAPACITY)
        assert server.call(lambda: server.exchange.processor.lane(1).ring.free()) == 0
        cod.close()
        wait_until(lambda: server.call(lambda: len(server.gateway.sessions)) == 1)
        if flooder == "alice-key":  # held behind her own orders: refused, retried
            wait_until(lambda: server.stats()["cancel_on_disconnect_retries"] >= 2)
        assert server.call(lambda: all(o in server.exchange.engine.orders for o in mine))
        server.call(gate.set)
        server.settle()
        wait_until(lambda: server.call(
            lambda: not any(o in server.exchange.engine.orders for o in mine)))
        stats = server.stats()
        assert stats["cancels_on_disconnect"] == 1
        assert stats["cancel_on_disconnect_failures"] == 0
        assert (stats["cancel_on_disconnect_retries"] > 0) is (flooder == "alice-key")
        # the flood's accepted orders are untouched (another session's)
        assert server.call(lambda: len(server.exchange.engine.orders)) == 1 + CAPACITY
        metrics = server.call(server.gateway.prometheus)
        assert "tickline_binary_cancel_on_disconnect_retries_total" in metrics
        flood.close()


def test_cancel_on_disconnect_reason_reaches_the_accounts_other_session() -> None:
    """With the ring full, the account's other session still hears each order cancelled
    CANCEL_ON_DISCONNECT once the exchange drains."""
    with ServerThread(capacity=CAPACITY) as server:
        cod = logon(server.port, "alice-key", cod=True)
        cod.send(order(1, 9_000))
        oid = cod.recv_type(p.Response).reports[0].order_id
        watcher = logon(server.port, "alice-key")
        flood = logon(server.port, "bob-key-3")
        gate = hold_exchange(server)
        flood.send(order(1, 5_000))
        flood.recv_type(p.Response)
        flood.send_bytes(b"".join(p.encode_frame(order(r, 5_000))
                                  for r in range(2, 2 + 2 * CAPACITY)))
        wait_until(lambda: server.stats()["exchange_busy"] >= CAPACITY)
        cod.close()
        wait_until(lambda: server.call(lambda: len(server.gateway.sessions)) == 2)
        server.call(gate.set)
        got = watcher.recv(timeout=5)
        while not isinstance(got, p.OrderCancelled):
            got = watcher.recv(timeout=5)
        assert got.order_id == oid and got.reason == CancelReason.CANCEL_ON_DISCONNECT
        for c in (watcher, flood):
            c.close()
