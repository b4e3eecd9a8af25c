"""An asyncio client for tickline's binary order entry (:mod:`tickline.gateway.protocol`).

>>> async with await Client.connect("127.0.0.1", 7001, "demo-key-1") as c:  # doctest: +SKIP
...     ack = await c.new_order("AAPL", "buy", 10, "101.25")
...     print(ack.order_id, ack.status)
...     await c.cancel("AAPL", ack.order_id)
...     async for report in c.reports():   # passive fills, expiries, other sessions' doings
...         print(report)

Prices and quantities are decimals at this edge (``"101.25"``, ``Decimal("0.5")`` or an
``int`` meaning whole units) and are converted exactly with the instrument definitions the
server sends at logon (or the ``instruments`` given to :meth:`Client.connect`); the wire
carries integer units. The raw, integer-unit path is :meth:`Client.send_request`.

**Pipelining.** ``send_new_order`` / ``send_cancel`` / ``send_replace`` / ``send_request``
queue the request and return an ``asyncio.Future`` of its
:class:`~tickline.gateway.protocol.Response` at once; many may be in flight (up to the
server's ``max_in_flight``). Requests queued in one event-loop turn go out in one write.
``new_order`` / ``cancel`` / ``replace`` await the response and turn a reject into
:class:`OrderRejectedError`.

**Unsolicited reports** (everything about this account not caused by this client's own
requests) are kept in a bounded queue (``report_capacity``; when full the oldest is dropped
and counted in :attr:`Client.reports_dropped`) read with ``async for r in c.reports()``.

**Resume.** Every report carries the account's report sequence number (``exec_seq``).
:attr:`Client.last_report_seq` is the highest one this client has processed (reports in
responses when they arrive; unsolicited ones when :meth:`Client.reports`,
:meth:`Client.reports_nowait` or :attr:`Client.on_report` hand them over). Reconnect with
``Client.connect(..., resume_from=client.last_report_seq)`` and the server first sends every
report of the account numbered above it — also the ones made while no session was open, and
across a server restart — then continues live, with no gap and no duplicate.

**Venue services.** :meth:`Client.order_status` and :meth:`Client.open_orders` read the state
of this account's orders; :meth:`Client.mass_cancel` cancels them all (or one symbol/side);
``cancel_on_disconnect=True`` at connect cancels the orders this session entered when its
connection drops; ``kind="drop_copy"`` opens a read-only session that receives every report
of the account (``"drop_copy_all"``: of every account, for accounts marked ``admin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable
from types import TracebackType
from typing import Any, cast

import msgspec

from tickline.client_types import (
    ClientError,
    Decimalish,
    OrderAck,
    OrderRejectedError,
    decimal_arg,
    enum_code,
    expect_report,
    first_or_raise,
    order_ack,
    side_code,
)
from tickline.gateway import protocol as p
from tickline.matching import Instrument, OrderType, TimeInForce

__all__ = ["Client", "ClientError", "OrderAck", "OrderRejectedError"]


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.client._data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._connection_lost(exc)


class Client:
    """One binary order-entry session. Create with :meth:`connect`; use from one event
    loop. Not thread-safe."""

    def __init__(self, *, report_capacity: int = 100_000, max_frame: int = 1 << 24) -> None:
        self._transport: asyncio.Transport | None = None
        self._reader = p.FrameReader(max_frame)
        self._out = bytearray()
        self._flush_scheduled = False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._last_report_seq = 0
        self._reports: deque[p.Report] = deque()
        self._report_capacity = report_capacity
        self._report_waiter: asyncio.Future[None] | None = None
        self._logon: asyncio.Future[p.LogonAck] | None = None
        self._logout: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._hb_timer: asyncio.TimerHandle | None = None
        self._last_tx = time.monotonic()
        self.ack: p.LogonAck | None = None
        self.account = 0
        self.name = ""
        self.instruments: dict[str, Instrument] = {}
        self.errors: deque[p.Error] = deque(maxlen=100)
        self.reports_dropped = 0
        self.close_reason: str | None = None
        self.on_response: Callable[[p.Response], object] | None = None
        """Called with every Response before its future is resolved (load generators)."""
        self.on_report: Callable[[p.Report], object] | None = None
        """If set, unsolicited reports go to this hook instead of the :meth:`reports` queue."""

    # -- connecting ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, host: str, port: int, key: str, *,
                      instruments: Iterable[Instrument] | None = None,
                      client_name: str = "tickline.client", timeout: float = 10.0,
                      report_capacity: int = 100_000, resume_from: int | None = None,
                      cancel_on_disconnect: bool = False,
                      kind: str = "trading") -> Client:
        """Open a session and log on with ``key``; return the logged-on client. Raises
        :class:`ClientError` if the server refuses the logon or does not answer in time.
        ``instruments`` override/extend the definitions the server sends. ``resume_from``:
        the last report sequence number already processed (0: none) — the server sends
        every later report of the account first (see the module doc); None: live only.
        ``kind``: ``"trading"``, ``"drop_copy"`` or ``"drop_copy_all"``."""
        try:
            session_kind = int(p.SessionKind[kind.upper()])
        except KeyError:
            raise ValueError(f"kind must be one of {[k.name.lower() for k in p.SessionKind]}, "
                             f"got {kind!r}") from None
        if resume_from is not None and resume_from < 0:
            raise ValueError(f"resume_from must be >= 0, got {resume_from}")
        client = cls(report_capacity=report_capacity)
        client._last_report_seq = resume_from or 0
        loop = asyncio.get_running_loop()
        client._closed = loop.create_future()
        client._logon = loop.create_future()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _ClientProtocol(client), host, port), timeout)
        except (OSError, TimeoutError) as e:
            raise ClientError(f"cannot connect to {host}:{port}: {e}") from None
        client._send(p.Logon(key, client_name, resume_from or 0, resume_from is not None,
                             cancel_on_disconnect, session_kind))
        try:
            ack = await asyncio.wait_for(asyncio.shield(client._logon), timeout)
        except TimeoutError:
            client.close()
            raise ClientError(f"no logon answer from {host}:{port} within {timeout}s") from None
        except ClientError:
            client.close()
            raise
        client.ack = ack
        client.account = ack.account
        client.name = ack.name
        client.instruments = {i.symbol: i for i in ack.instruments}
        for i in instruments or ():
            client.instruments[i.symbol] = i
        client._arm_heartbeat()
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            with contextlib.suppress(ClientError, TimeoutError):
                await self.logout()
        self.close()
        await self.wait_closed()

    # -- requests: decimal edge --------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument:
        try:
            return self.instruments[symbol]
        except KeyError:
            raise ValueError(f"unknown symbol {symbol!r}; known: "
                             f"{sorted(self.instruments)}") from None

    def new_order_request(self, symbol: str, side: str | int, quantity: Decimalish,
                          price: Decimalish | None = None, *, order_type: str | int = "limit",
                          tif: str | int = "gtc", client_order_id: str = "",
                          expire_time: int = 0, post_only: bool = False,
                          stp: int = 0, stop_price: Decimalish | None = None,
                          display_quantity: Decimalish | None = None) -> p.NewOrderRequest:
        """Build (not send) a request from decimal values; ``request_id`` is assigned.
        ``stop_price`` (a price) is for ``stop``/``stop_limit`` orders, ``display_quantity``
        (a quantity) makes a resting limit order an iceberg."""
        inst = self.instrument(symbol)
        otype = enum_code(order_type, OrderType, "order_type")
        if price is None and otype in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            raise ValueError(f"a {OrderType(otype).name.lower()} order needs a price")
        if stop_price is None and otype in (OrderType.STOP, OrderType.STOP_LIMIT):
            raise ValueError(f"a {OrderType(otype).name.lower()} order needs a stop_price")
        return p.NewOrderRequest(
            request_id=self.next_request_id(), symbol=symbol, side=side_code(side),
            quantity=inst.qty_from_str(decimal_arg(quantity)),
            price=inst.price_from_str(decimal_arg(price)) if price is not None else 0,
            order_type=otype, tif=enum_code(tif, TimeInForce, "tif"),
            client_order_id=client_order_id, expire_time=expire_time, post_only=post_only,
            stp=stp,
            stop_price=(inst.price_from_str(decimal_arg(stop_price))
                        if stop_price is not None else 0),
            display_quantity=(inst.qty_from_str(decimal_arg(display_quantity))
                              if display_quantity is not None else 0))

    def send_new_order(self, symbol: str, side: str | int, quantity: Decimalish,
                       price: Decimalish | None = None, **kw: Any) -> asyncio.Future[p.Response]:
        """Queue a new order; return the future of its Response (pipelining)."""
        return self.send_request(self.new_order_request(symbol, side, quantity, price, **kw))

    def send_cancel(self, symbol: str, order_id: int = 0, *, orig_client_order_id: str = "",
                    client_order_id: str = "") -> asyncio.Future[p.Response]:
        self.instrument(symbol)
        return self.send_request(p.CancelRequest(
            request_id=0, symbol=symbol, order_id=order_id,
            orig_client_order_id=orig_client_order_id, client_order_id=client_order_id))

    def send_replace(self, symbol: str, order_id: int = 0, *, price: Decimalish | None = None,
                     quantity: Decimalish | None = None, orig_client_order_id: str = "",
                     client_order_id: str = "", stop_price: Decimalish | None = None,
                     display_quantity: Decimalish | None = None
                     ) -> asyncio.Future[p.Response]:
        """Queue a replace; ``None`` (or omitted) keeps a field as it is."""
        inst = self.instrument(symbol)
        return self.send_request(p.ReplaceRequest(
            request_id=0, symbol=symbol, order_id=order_id,
            orig_client_order_id=orig_client_order_id,
            price=inst.price_from_str(decimal_arg(price)) if price is not None else 0,
            quantity=inst.qty_from_str(decimal_arg(quantity)) if quantity is not None else 0,
            client_order_id=client_order_id,
            stop_price=(inst.price_from_str(decimal_arg(stop_price))
                        if stop_price is not None else 0),
            display_quantity=(inst.qty_from_str(decimal_arg(display_quantity))
                              if display_quantity is not None else 0)))

    async def new_order(self, symbol: str, side: str | int, quantity: Decimalish,
                        price: Decimalish | None = None, **kw: Any) -> OrderAck:
        """Enter an order and wait for the outcome. Raises :class:`OrderRejectedError`."""
        resp = await self.send_new_order(symbol, side, quantity, price, **kw)
        return order_ack(resp)

    async def cancel(self, symbol: str, order_id: int = 0, *,
                     orig_client_order_id: str = "") -> p.OrderCancelled:
        """Cancel one of this account's orders; return the Cancelled report."""
        resp = await self.send_cancel(symbol, order_id, orig_client_order_id=orig_client_order_id)
        return expect_report(resp, p.OrderCancelled)

    async def replace(self, symbol: str, order_id: int = 0, *, price: Decimalish | None = None,
                      quantity: Decimalish | None = None,
                      orig_client_order_id: str = "", stop_price: Decimalish | None = None,
                      display_quantity: Decimalish | None = None) -> p.OrderReplaced:
        """Cancel/replace: new price, total quantity, stop price and/or display quantity;
        return the Replaced report."""
        resp = await self.send_replace(symbol, order_id, price=price, quantity=quantity,
                                       orig_client_order_id=orig_client_order_id,
                                       stop_price=stop_price,
                                       display_quantity=display_quantity)
        return expect_report(resp, p.OrderReplaced)

    async def order_status(self, symbol: str, order_id: int = 0, *,
                           client_order_id: str = "") -> p.OrderState:
        """The current state of one of this account's orders (status, price, quantity,
        leaves, cumulative fills: ``avg_price`` exact), by engine ``order_id`` or, when 0, by
        ``client_order_id``. Raises :class:`OrderRejectedError` (``UNKNOWN_ORDER``) for an
        order that does not exist, is another account's, or finished long ago."""
        self.instrument(symbol)
        resp = await self._ask(p.OrderStatusRequest(request_id=0, symbol=symbol,
                                                    order_id=order_id,
                                                    client_order_id=client_order_id))
        if isinstance(resp, p.Response):
            first_or_raise(resp)
            raise ClientError(f"request {resp.request_id}: unexpected {resp!r}")
        assert isinstance(resp, p.OrderStatusResponse)
        return resp.order

    async def open_orders(self, symbol: str | None = None) -> list[p.OrderState]:
        """This account's open orders (optionally of one symbol), by order id."""
        if symbol is not None:
            self.instrument(symbol)
        resp = await self._ask(p.OpenOrdersRequest(request_id=0, symbol=symbol or ""))
        if isinstance(resp, p.Response):
            first_or_raise(resp)
            raise ClientError(f"request {resp.request_id}: unexpected {resp!r}")
        assert isinstance(resp, p.OpenOrdersResponse)
        return resp.orders

    async def mass_cancel(self, symbol: str | None = None,
                          side: str | int | None = None) -> list[p.OrderCancelled]:
        """Cancel every open order of this account (optionally one symbol and/or side) as
        one journaled command; return a cancel report per order cancelled."""
        if symbol is not None:
            self.instrument(symbol)
        resp = await self._ask(p.MassCancelRequest(
            request_id=0, symbol=symbol or "", side=side_code(side) if side is not None else 0))
        assert isinstance(resp, p.Response)
        if resp.reports and isinstance(resp.reports[0], p.OrderRejected):
            raise OrderRejectedError(resp.request_id, resp.reports[0])
        return [r for r in resp.reports if isinstance(r, p.OrderCancelled)]

    @property
    def last_report_seq(self) -> int:
        """The highest account report sequence number this client has processed: pass it
        as ``resume_from`` when reconnecting."""
        return self._last_report_seq

    def _ask(self, req: p.OrderStatusRequest | p.OpenOrdersRequest | p.MassCancelRequest
             ) -> asyncio.Future[Any]:
        if self._transport is None or self._transport.is_closing():
            raise ClientError(f"session closed: {self.close_reason or 'not connected'}")
        req.request_id = self.next_request_id()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req.request_id] = fut
        self._send(req)
        return fut

    # -- raw path ----------------------------------------------------------------------------

    def send_request(self, req: p.NewOrderRequest | p.CancelRequest | p.ReplaceRequest
                     ) -> asyncio.Future[p.Response]:
        """Send a request in integer units. A ``request_id`` of 0 is replaced by the next id
        (the request struct is updated). Returns the future of its Response. Raises
        ``ValueError`` if a request with the same ``request_id`` is still in flight (its
        Response could not be told apart)."""
        if self._transport is None or self._transport.is_closing():
            raise ClientError(f"session closed: {self.close_reason or 'not connected'}")
        if req.request_id == 0:
            req.request_id = self.next_request_id()
        elif req.request_id in self._pending:
            raise ValueError(f"request_id {req.request_id} is already in flight")
        fut: asyncio.Future[p.Response] = asyncio.get_running_loop().create_future()
        self._pending[req.request_id] = fut
        self._send(req)
        return fut

    def send_nowait(self, req: p.NewOrderRequest | p.CancelRequest | p.ReplaceRequest) -> None:
        """Send a request (integer units) without a future: its Response reaches only
        :attr:`on_response`. The cheapest path, for load generators. ``request_id`` must be
        set (see :meth:`next_request_id`)."""
        if self._transport is None or self._transport.is_closing():
            raise ClientError(f"session closed: {self.close_reason or 'not connected'}")
        self._send(req)

    def next_request_id(self) -> int:
        """The next unused request id (ids of requests in flight are skipped)."""
        rid = next(self._ids)
        while rid in self._pending:
            rid = next(self._ids)
        return rid

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    # -- unsolicited reports -----------------------------------------------------------------

    async def reports(self) -> AsyncGenerator[p.Report, None]:
        """Unsolicited reports in arrival order; ends when the session closes."""
        while True:
            while self._reports:
                report = self._reports.popleft()
                self._processed(report)
                yield report
            if self._closed is None or self._closed.done():
                return
            loop = asyncio.get_running_loop()
            waiter = self._report_waiter = loop.create_future()
            await asyncio.wait([waiter, self._closed], return_when=asyncio.FIRST_COMPLETED)
            self._report_waiter = None

    async def take_reports(self, count: int, timeout: float = 5.0) -> list[p.Report]:
        """Wait for the next ``count`` unsolicited reports and return them in arrival order.

        Raises ``TimeoutError`` (naming how many arrived) if they do not all arrive within
        ``timeout`` seconds, or ``ClientError`` if the session closes first; the reports that
        did arrive stay counted in ``last_report_seq``. Use it instead of sleeping and then
        calling ``reports_nowait()``: a fixed sleep is a guess at how busy the server is.
        """
        out: list[p.Report] = []

        async def gather() -> None:
            async with contextlib.aclosing(self.reports()) as stream:
                async for report in stream:
                    out.append(report)
                    if len(out) >= count:
                        return
            raise ClientError(f"session closed after {len(out)} of {count} reports")

        if count <= 0:
            return out
        try:
            await asyncio.wait_for(gather(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{len(out)} of {count} reports within {timeout} s") from None
        return out

    def reports_nowait(self) -> list[p.Report]:
        """Take every queued unsolicited report."""
        out = list(self._reports)
        self._reports.clear()
        for report in out:
            self._processed(report)
        return out

    def _processed(self, report: p.Report) -> None:
        if report.exec_seq > self._last_report_seq:
            self._last_report_seq = report.exec_seq

    # -- session ------------------------------------------------------------------------------

    async def logout(self, timeout: float = 10.0) -> None:
        """Log out cleanly: the server answers once every in-flight request is answered."""
        if self._transport is None or self._transport.is_closing():
            return
        self._logout = asyncio.get_running_loop().create_future()
        self._send(p.Logout())
        try:
            await asyncio.wait_for(asyncio.shield(self._logout), timeout)
        finally:
            self.close()  # the session is over: close our side too, not only the server's
        await self.wait_closed()

    def close(self) -> None:
        """Close the connection now (no logout)."""
        if self._hb_timer is not None:
            self._hb_timer.cancel()
            self._hb_timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await asyncio.shield(self._closed)

    @property
    def closed(self) -> bool:
        return self._closed is None or self._closed.done()

    # -- internals ---------------------------------------------------------------------------

    def _send(self, msg: msgspec.Struct) -> None:
        p.append_frame(msg, self._out)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out or self._transport is None or self._transport.is_closing():
            return
        data = self._out
        self._out = bytearray()
        self._last_tx = time.monotonic()
        self._transport.write(data)

    def _data_received(self, data: bytes) -> None:
        try:
            payloads = self._reader.feed(data)
        except p.FrameError as e:
            self._fail(f"server sent a broken frame: {e}")
            return
        decode = p.decode_server
        pending = self._pending
        hook = self.on_response
        for payload in payloads:
            try:
                msg = decode(payload)
            except (msgspec.DecodeError, ValueError) as e:
                self._fail(f"server sent a malformed message: {e}")
                return
            kind = type(msg)
            if kind is p.Response:
                assert isinstance(msg, p.Response)
                for r in msg.reports:
                    if r.exec_seq > self._last_report_seq:
                        self._last_report_seq = r.exec_seq
                if hook is not None:
                    hook(msg)
                fut = pending.pop(msg.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif kind is p.OrderStatusResponse or kind is p.OpenOrdersResponse:
                fut = pending.pop(msg.request_id, None)  # type: ignore[union-attr]
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif kind is p.Heartbeat:
                pass
            elif kind is p.TestRequest:
                assert isinstance(msg, p.TestRequest)
                self._send(p.Heartbeat(msg.test_id))
            elif kind is p.LogonAck:
                assert isinstance(msg, p.LogonAck)
                if self._logon is not None and not self._logon.done():
                    self._logon.set_result(msg)
            elif kind is p.LogonReject:
                assert isinstance(msg, p.LogonReject)
                if self._logon is not None and not self._logon.done():
                    self._logon.set_exception(ClientError(f"logon rejected: {msg.text}"))
                self.close_reason = f"logon rejected: {msg.text}"
            elif kind is p.Logout:
                assert isinstance(msg, p.Logout)
                self.close_reason = f"logout: {msg.text}"
                if self._logout is not None and not self._logout.done():
                    self._logout.set_result(None)
            elif kind is p.Error:
                assert isinstance(msg, p.Error)
                self.errors.append(msg)
            elif self.on_report is not None:
                self._processed(msg)  # type: ignore[arg-type]
                self.on_report(msg)  # type: ignore[arg-type]
            else:
                self._queue_report(msg)  # type: ignore[arg-type]

    def _queue_report(self, report: p.Report) -> None:
        reports = self._reports
        if len(reports) >= self._report_capacity:
            reports.popleft()
            self.reports_dropped += 1
        reports.append(report)
        waiter = self._report_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, reason: str) -> None:
        self.close_reason = reason
        if self._transport is not None:
            self._transport.abort()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._hb_timer is not None:
            self._hb_timer.cancel()
            self._hb_timer = None
        reason = self.close_reason or (f"connection lost: {exc}" if exc else "connection closed")
        self.close_reason = reason
        err = ClientError(f"session closed: {reason}")
        if self._logon is not None and not self._logon.done():
            self._logon.set_exception(err)
        if self._logout is not None and not self._logout.done():
            self._logout.set_result(None)
        pending = self._pending
        self._pending = {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # mark retrieved: a dropped pipelined future is not an error
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._report_waiter is not None and not self._report_waiter.done():
            self._report_waiter.set_result(None)

    def _arm_heartbeat(self) -> None:
        hb = self.ack.heartbeat_seconds if self.ack is not None else 0.0
        if hb > 0:
            self._hb_timer = asyncio.get_running_loop().call_later(hb / 2, self._heartbeat)

    def _heartbeat(self) -> None:
        self._hb_timer = None
        if self._transport is None or self._transport.is_closing():
            return
        hb = self.ack.heartbeat_seconds if self.ack is not None else 0.0
        if time.monotonic() - self._last_tx >= hb / 2:
            self._send(p.Heartbeat())
        self._arm_heartbeat()
