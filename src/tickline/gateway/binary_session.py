"""One binary order-entry connection: the per-session protocol of :mod:`tickline.gateway.binary`.

:class:`BinarySession` is the ``asyncio.Protocol`` of one TCP connection: it splits frames,
decodes them, runs the logon exchange, checks and stages requests (client order id size,
in-flight limit, token-bucket rate), submits each socket read's requests together, writes
each request's :class:`~tickline.gateway.protocol.Response` and the router's unsolicited
reports, and buffers its output for one write per event-loop turn. :func:`to_wire` turns an
execution report into its wire message. What spans connections -- the listener, pre-logon
slots, logon throttling per address, the heartbeat timer, counters and metrics -- is the
:class:`~tickline.gateway.binary.BinaryGateway`'s; the rules (session life, bad input,
reports, output) are stated once, in :mod:`tickline.gateway.binary`.

All methods run on the gateway's event loop (single writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import msgspec

from tickline.config import Account
from tickline.core.ratelimit import TokenBucket
from tickline.exchange import ExchangeBusy, ExchangeStopped, ExchangeUnavailable
from tickline.gateway import protocol as p
from tickline.gateway.submit import BUSY as _BUSY
from tickline.gateway.submit import submit_all
from tickline.matching import (
    Cancel,
    Command,
    Event,
    NewOrder,
    RejectReason,
    Replace,
)
from tickline.stream.reports import ExecKind, ExecReport, OrderState
from tickline.stream.routing import ReportPort
from tickline.venue import ResumeError

if TYPE_CHECKING:
    from tickline.gateway.binary import BinaryGateway

log = logging.getLogger("tickline.gateway.binary")  # one logger for the binary gateway

__all__ = ["BinarySession", "to_wire"]

_NEW = int(ExecKind.NEW)
_FILL = int(ExecKind.FILL)
_CANCELLED = int(ExecKind.CANCELLED)
_REPLACED = int(ExecKind.REPLACED)
_EXPIRED = int(ExecKind.EXPIRED)
_TRIGGERED = int(ExecKind.TRIGGERED)

_RATE_LIMITED = int(RejectReason.RATE_LIMITED)
_THROTTLED = int(RejectReason.THROTTLED)
_NOT_AUTHENTICATED = int(RejectReason.NOT_AUTHENTICATED)
_UNKNOWN_SYMBOL = int(RejectReason.UNKNOWN_SYMBOL)
_UNKNOWN_ORDER = int(RejectReason.UNKNOWN_ORDER)
_READ_ONLY = int(RejectReason.READ_ONLY_SESSION)
_RESUME_UNAVAILABLE = int(RejectReason.RESUME_UNAVAILABLE)
_NOT_ADMIN = int(RejectReason.NOT_ADMIN)
_TRADING = int(p.SessionKind.TRADING)
_DROP_COPY_ALL = int(p.SessionKind.DROP_COPY_ALL)
_KINDS = frozenset(int(k) for k in p.SessionKind)
_CLID_TOO_LONG = int(RejectReason.CLIENT_ORDER_ID_TOO_LONG)

_append_frame = p.append_frame  # bound once: BinarySession.send is on every report's path


def to_wire(r: ExecReport) -> p.Report:
    """One :class:`ExecReport` as its wire report (``exec_seq`` = the account's report
    sequence number)."""
    kind = r.kind
    if kind == _NEW:
        return p.OrderAccepted(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.side,
                               r.price, r.quantity, r.leaves)
    if kind == _FILL:
        return p.Fill(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.side, r.price,
                      r.quantity, r.leaves, r.last_price, r.last_quantity, r.trade_id,
                      r.cum_quantity, r.cum_notional)
    if kind == _CANCELLED:
        return p.OrderCancelled(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.side,
                                r.price, r.quantity, r.reason, r.cum_quantity, r.cum_notional)
    if kind == _REPLACED:
        return p.OrderReplaced(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.side,
                               r.price, r.quantity, r.leaves, r.cum_quantity, r.cum_notional)
    if kind == _EXPIRED:
        return p.OrderExpired(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.side,
                              r.price, r.quantity, r.cum_quantity, r.cum_notional)
    if kind == _TRIGGERED:
        return p.OrderTriggered(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.side,
                                r.price, r.quantity, r.leaves, r.stop_price)
    return p.OrderRejected(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.reason,
                           r.text)


class BinarySession(asyncio.Protocol):
    """One TCP connection. All methods run on the gateway's event loop."""

    def __init__(self, gateway: BinaryGateway) -> None:
        self.gw = gateway
        self.transport: asyncio.Transport | None = None
        self.reader = p.FrameReader(gateway.config.limits.max_frame_bytes)
        self.account: Account | None = None
        self.port: ReportPort | None = None
        self.peer = "?"
        self.host = "?"  # source address without the port: the per-address limits' key
        self.out = bytearray()
        self.dirty = False
        self.closed = False
        self.logout_pending = False
        self.pending: deque[int] = deque()  # request ids submitted, in order
        # requests of the current socket read, submitted together at its end
        self.staged: list[Command] = []
        self.staged_reqs: list[p.NewOrderRequest | p.CancelRequest | p.ReplaceRequest] = []
        limits = gateway.config.limits
        now = time.monotonic()
        self.rate = TokenBucket(limits.orders_per_second, limits.burst, now)
        self.max_in_flight = limits.max_in_flight
        self.max_clid = limits.max_client_order_id_bytes
        self.last_rx = self.last_tx = now
        self.test_sent = False
        self.login_timer: asyncio.TimerHandle | None = None
        self.kind = _TRADING
        self.cancel_on_disconnect = False
        self.held: list[msgspec.Struct] | None = None
        """Report frames held back while a resume reads the journal (None: not resuming)."""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        gw = self.gw
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        else:
            self.host = self.peer = str(peer)
        self.transport.set_write_buffer_limits(high=gw.max_output_bytes)
        if gw.send_buffer_bytes:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, gw.send_buffer_bytes)
        gw.connections_total += 1
        if not gw.accepting:
            gw.sessions_refused += 1
            self.send(p.LogonReject(_THROTTLED, "server is stopping"))
            self.close_after_flush()
            return
        gw.sessions.add(self)
        gw._admit_pending(self)
        self.login_timer = asyncio.get_running_loop().call_later(
            gw.config.limits.login_timeout_seconds, self._login_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()

    def pause_writing(self) -> None:
        # The transport buffer passed max_output_bytes: the client is not reading.
        self.gw.slow_consumer_disconnects += 1
        log.warning("binary session %s: slow consumer (%d bytes unsent), disconnecting",
                    self.peer, self.transport.get_write_buffer_size() if self.transport else 0)
        self.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        gw = self.gw
        gw.bytes_in += len(data)
        now = time.monotonic()
        self.last_rx = now
        self.test_sent = False
        try:
            payloads = self.reader.feed(data)
        except p.FrameError as e:
            # Deliver the complete frames that came before the broken one first? No: the
            # stream is untrustworthy from here; answer and close.
            gw.frame_errors += 1
            self.send(p.Error(int(e.code), e.text))
            self.close_after_flush()
            return
        if not payloads:
            return
        gw.frames_in += len(payloads)
        decode = p.decode_client
        record = gw.stage_decode.record
        clock = time.perf_counter_ns
        for payload in payloads:
            if self.closed:
                return
            t0 = clock()
            try:
                msg = decode(payload)
            except (msgspec.DecodeError, ValueError) as e:
                gw.malformed += 1
                self.send(p.Error(int(p.ErrorCode.MALFORMED), f"malformed message: {e}"))
                continue
            record(clock() - t0)
            kind = type(msg)
            if kind is p.NewOrderRequest or kind is p.CancelRequest or kind is p.ReplaceRequest:
                self._request(msg, now)  # type: ignore[arg-type]
                continue
            if self.staged:
                self._submit_staged()  # requests before this message go first
            if kind is p.Heartbeat:
                pass
            elif kind is p.TestRequest:
                assert isinstance(msg, p.TestRequest)
                self.send(p.Heartbeat(msg.test_id))
            elif kind is p.Logon:
                assert isinstance(msg, p.Logon)
                self._logon(msg)
            elif kind is p.Logout:
                self._logout()
            elif (kind is p.OrderStatusRequest or kind is p.OpenOrdersRequest
                  or kind is p.MassCancelRequest):
                self._service(msg)  # type: ignore[arg-type]
            else:  # pragma: no cover - the union is exhaustive
                self.send(p.Error(int(p.ErrorCode.UNEXPECTED_MESSAGE),
                                  f"unexpected message {kind.__name__}"))
        if self.staged:
            self._submit_staged()

    # -- session layer ---------------------------------------------------------------------

    def _logon(self, msg: p.Logon) -> None:
        gw = self.gw
        if self.account is not None:
            self.send(p.Error(int(p.ErrorCode.ALREADY_LOGGED_ON), "already logged on as "
                              f"{self.account.name!r}"))
            return
        now = time.monotonic()
        wait = gw.failed_logons.retry_after(self.host, now)
        if wait > 0.0:  # refused without looking at the key: guessing gains nothing here
            gw.logon_throttled += 1
            self._refuse_logon(_RATE_LIMITED, f"too many failed logons from {self.host}, "
                                              f"retry in {math.ceil(wait)} s")
            return
        account = gw.authenticate(msg.key)
        if account is None:
            gw.logon_failures += 1
            gw.failed_logons.take(self.host, now)
            self._refuse_logon(_NOT_AUTHENTICATED, "unknown account key")
            return
        limits = gw.config.limits
        if gw.logged_on() >= limits.max_sessions:
            gw.sessions_refused += 1
            self._refuse_logon(_THROTTLED,
                               f"too many sessions (max_sessions={limits.max_sessions})")
            return
        kind = msg.kind
        if kind not in _KINDS:
            self._refuse_logon(_NOT_AUTHENTICATED, f"unknown session kind {kind}")
            return
        if kind == _DROP_COPY_ALL and not account.admin:
            self._refuse_logon(_NOT_ADMIN, f"account {account.name!r} is not an admin: no "
                                           "drop copy of all accounts")
            return
        if kind == _DROP_COPY_ALL and msg.resume:
            self._refuse_logon(_RESUME_UNAVAILABLE, "a drop copy of all accounts cannot "
                                                    "resume (report numbers are per account)")
            return
        missed: list[ExecReport] | None = []
        last = gw.exchange.reports.last_seq(account.id)
        if msg.resume:
            try:
                last, missed = gw.services.resume(account.id, msg.resume_from)
            except ResumeError as e:
                self._refuse_logon(_RESUME_UNAVAILABLE, str(e))
                return
        gw._unpend(self)
        if self.login_timer is not None:
            self.login_timer.cancel()
            self.login_timer = None
        self.account = account
        self.kind = kind
        self.cancel_on_disconnect = msg.cancel_on_disconnect and kind == _TRADING
        gw.logons += 1
        self.send(p.LogonAck(
            account=account.id, name=account.name, heartbeat_seconds=limits.heartbeat_seconds,
            max_in_flight=limits.max_in_flight, orders_per_second=limits.orders_per_second,
            burst=limits.burst, max_frame_bytes=limits.max_frame_bytes,
            instruments=list(gw.exchange.instruments), last_report_seq=last, kind=kind,
            cancel_on_disconnect=self.cancel_on_disconnect,
            max_client_order_id_bytes=limits.max_client_order_id_bytes))
        # Attached in the same loop turn as ``last`` was read: every live report is numbered
        # above ``last``, every missed one at or below it.
        self.port = gw.exchange.router.attach(None if kind == _DROP_COPY_ALL else account.id,
                                              self._unsolicited, drop_copy=kind != _TRADING)
        if missed is None:  # not all in memory: read the journal, hold live output meanwhile
            self.held = []
            self.resume_task = asyncio.get_running_loop().create_task(
                self._resume_from_journal(account.id, msg.resume_from, last))
        else:
            for r in missed:
                self.send(to_wire(r))

    async def _resume_from_journal(self, account: int, after: int, last: int) -> None:
        try:
            missed = await self.gw.services.missed(account, after, last)
        except Exception as e:  # ResumeError or a journal read error: say so, then close
            log.error("binary session %s: resume failed: %s", self.peer, e)
            self.held = None
            self.send(p.Error(int(p.ErrorCode.RESUME_FAILED), f"resume failed: {e}"))
            self.close_after_flush()
            return
        held = self.held or []
        self.held = None
        for r in missed:
            self.send(to_wire(r))
        for m in held:
            self.send(m)

    def _logged_on(self, rid: int) -> Account | None:
        """The session's account, or None after answering a request sent before Logon."""
        account = self.account
        if account is None:
            self.gw.not_logged_on += 1
            self.send(p.Error(int(p.ErrorCode.NOT_LOGGED_ON),
                              f"request {rid} before Logon: ignored"))
        return account

    def _service(self, req: p.OrderStatusRequest | p.OpenOrdersRequest | p.MassCancelRequest
                 ) -> None:
        """Order status, open orders and mass cancel (see :mod:`tickline.venue`)."""
        gw = self.gw
        rid = req.request_id
        account = self._logged_on(rid)
        if account is None:
            return
        symbol = req.symbol
        if symbol and symbol not in gw.symbols:
            self._refuse(rid, 0, symbol, _UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
            return
        services = gw.services
        try:
            if type(req) is p.OrderStatusRequest:
                order_id, clid = req.order_id, req.client_order_id
                if len(clid.encode()) > self.max_clid:
                    self._refuse(rid, order_id, symbol, _CLID_TOO_LONG,
                                 f"client_order_id is {len(clid.encode())} bytes, above "
                                 f"limits.max_client_order_id_bytes={self.max_clid}")
                    return

                def status(state: OrderState | None) -> None:
                    if state is None or (symbol and state.symbol != symbol):
                        self._refuse(rid, order_id, symbol, _UNKNOWN_ORDER,
                                     f"unknown order {order_id or clid!r}")
                    else:
                        self._send_report_frame(p.OrderStatusResponse(rid, state))

                services.order_status(account.id, order_id, clid, status)
            elif type(req) is p.OpenOrdersRequest:
                def orders(found: list[OrderState]) -> None:
                    self._send_report_frame(p.OpenOrdersResponse(rid, found))

                services.open_orders(account.id, symbol or None, orders)
            else:
                assert isinstance(req, p.MassCancelRequest)
                if self.kind != _TRADING:
                    self._refuse(rid, 0, symbol, _READ_ONLY, "drop-copy session: read only")
                    return
                self.pending.append(rid)
                try:
                    services.mass_cancel(account.id, symbol, req.side, self._on_reply,
                                         self.port)
                except BaseException:
                    self.pending.pop()
                    raise
        except ExchangeUnavailable as e:  # before ExchangeStopped: it is one
            self._refuse(rid, 0, symbol, e.reason, str(e))
        except ExchangeStopped:
            self._refuse(rid, 0, symbol, _THROTTLED, "server is stopping")
        except ExchangeBusy:
            gw.busy += 1
            self._refuse(rid, 0, symbol, _THROTTLED, "exchange busy: inbound queue full")

    def _refuse(self, rid: int, order_id: int, symbol: str, reason: int, text: str) -> None:
        self.gw.count_reject(reason)
        self._send_report_frame(p.Response(rid, [p.OrderRejected(0, 0, order_id, "", symbol,
                                                                 reason, text)]))

    def _refuse_logon(self, reason: int, text: str) -> None:
        self.gw.logon_rejects += 1
        self.send(p.LogonReject(reason, text))
        self.close_after_flush()

    def _logout(self) -> None:
        if self.account is None:
            self.send(p.Logout("logged out"))
            self.close_after_flush()
            return
        self.logout_pending = True
        if not self.pending:
            self.send(p.Logout("logged out"))
            self.close_after_flush()

    def _login_expired(self) -> None:
        self.login_timer = None
        if self.account is None and not self.closed:
            self.gw.login_timeouts += 1
            self.send(p.Error(int(p.ErrorCode.LOGON_TIMEOUT),
                              f"no Logon within {self.gw.config.limits.login_timeout_seconds}s"))
            self.close_after_flush()

    # -- requests --------------------------------------------------------------------------

    def _reject(self, rid: int, req: p.NewOrderRequest | p.CancelRequest | p.ReplaceRequest,
                reason: int, text: str) -> None:
        self.gw.count_reject(reason)
        order_id = 0 if type(req) is p.NewOrderRequest else req.order_id  # type: ignore[union-attr]
        self.send(p.Response(rid, [p.OrderRejected(0, 0, order_id, req.client_order_id,
                                                   req.symbol, reason, text)]))

    def _request(self, req: p.NewOrderRequest | p.CancelRequest | p.ReplaceRequest,
                 now: float) -> None:
        gw = self.gw
        rid = req.request_id
        account = self._logged_on(rid)
        if account is None:
            return
        if self.kind != _TRADING:
            self._reject(rid, req, _READ_ONLY, "drop-copy session: read only")
            return
        if self.logout_pending or not gw.accepting:
            self._reject(rid, req, _THROTTLED, "session is logging out" if self.logout_pending
                         else "server is stopping")
            return
        clid = req.client_order_id
        # 4 UTF-8 bytes per code point at most: the byte length is only computed for long ids
        if len(clid) * 4 > self.max_clid and not self._clid_fits(rid, req, "client_order_id",
                                                                  clid):
            return
        kind = type(req)
        if kind is not p.NewOrderRequest:
            orig = req.orig_client_order_id  # type: ignore[union-attr]
            if len(orig) * 4 > self.max_clid and not self._clid_fits(
                    rid, req, "orig_client_order_id", orig):
                return
        if len(self.pending) + len(self.staged) >= self.max_in_flight:
            self._reject(rid, req, _THROTTLED,
                         f"{self.max_in_flight} requests in flight (max_in_flight)")
            return
        rate = self.rate
        if not rate.take(now):
            gw.rate_limited += 1
            self._reject(rid, req, _RATE_LIMITED,
                         f"rate limit {rate.rate:g} orders/s (burst {rate.burst:g}) exceeded")
            return
        cmd: Command
        if kind is p.NewOrderRequest:
            assert isinstance(req, p.NewOrderRequest)
            cmd = NewOrder(account=account.id, symbol=req.symbol, side=req.side,
                           quantity=req.quantity, price=req.price, order_type=req.order_type,
                           tif=req.tif, client_order_id=req.client_order_id,
                           expire_time=req.expire_time, post_only=req.post_only, stp=req.stp,
                           stop_price=req.stop_price, display_quantity=req.display_quantity)
        elif kind is p.CancelRequest:
            assert isinstance(req, p.CancelRequest)
            cmd = Cancel(account=account.id, symbol=req.symbol, order_id=req.order_id,
                         orig_client_order_id=req.orig_client_order_id,
                         client_order_id=req.client_order_id)
        else:
            assert isinstance(req, p.ReplaceRequest)
            cmd = Replace(account=account.id, symbol=req.symbol, order_id=req.order_id,
                          orig_client_order_id=req.orig_client_order_id, price=req.price,
                          quantity=req.quantity, client_order_id=req.client_order_id,
                          stop_price=req.stop_price, display_quantity=req.display_quantity)
        self.staged.append(cmd)
        self.staged_reqs.append(req)

    def _clid_fits(self, rid: int, req: p.NewOrderRequest | p.CancelRequest | p.ReplaceRequest,
                   field: str, value: str) -> bool:
        """True if ``value`` is within ``limits.max_client_order_id_bytes`` (UTF-8); else
        reject the request (``CLIENT_ORDER_ID_TOO_LONG``, counted) and return False. The bound
        keeps what one account can make the engine remember per order small."""
        size = len(value.encode())
        if size <= self.max_clid:
            return True
        self.gw.client_order_id_too_long += 1
        self._reject(rid, req, _CLID_TOO_LONG,
                     f"{field} is {size} bytes, above limits.max_client_order_id_bytes="
                     f"{self.max_clid}")
        return False

    def _submit_staged(self) -> None:
        """Hand every request of this socket read to the exchange at once (one ring
        operation); what is not accepted is rejected with the reason
        (:func:`~tickline.gateway.submit.submit_all`: busy, stopping, or 412 in cluster
        mode)."""
        cmds = self.staged
        reqs = self.staged_reqs
        self.staged = []
        self.staged_reqs = []
        gw = self.gw
        n, code, text = submit_all(gw.exchange, cmds, self._on_reply, self.port)
        if n:
            pending = self.pending
            for req in reqs[:n] if n < len(reqs) else reqs:
                pending.append(req.request_id)
            gw.requests += n
        if n < len(reqs):
            for req in reqs[n:]:
                if text is _BUSY:
                    gw.busy += 1
                self._reject(req.request_id, req, code, text)

    def _on_reply(self, _cmd: Command, _events: list[Event],
                  reports: list[ExecReport]) -> None:
        """Exchange RELEASE stage: ``reports`` are the request's own, in report order."""
        rid = self.pending.popleft()
        wire = [to_wire(r) for r in reports]
        if wire and wire[0].__class__ is p.OrderRejected:
            self.gw.count_reject(wire[0].reason)
        if not self.closed:
            self._send_report_frame(p.Response(rid, wire))
        if self.logout_pending and not self.pending and not self.closed:
            self.send(p.Logout("logged out"))
            self.close_after_flush()

    def _unsolicited(self, reports: list[ExecReport]) -> None:
        """The router's reports about this session's orders that it did not ask for."""
        held = self.held
        if held is not None:
            held.extend(to_wire(r) for r in reports)
            return
        for r in reports:
            self.send(to_wire(r))

    def _send_report_frame(self, msg: msgspec.Struct) -> None:
        """A frame carrying reports or order state: held back while a resume reads the
        journal, so the session sees everything in report order."""
        if self.held is not None:
            self.held.append(msg)
        else:
            self.send(msg)

    # -- output ----------------------------------------------------------------------------

    def send(self, msg: msgspec.Struct) -> None:
        """Queue one frame; flushed at the end of this loop turn."""
        if self.closed:
            return
        _append_frame(msg, self.out)
        self.gw.frames_out += 1
        if not self.dirty:
            self.dirty = True
            self.gw._mark_dirty(self)

    def flush(self) -> None:
        self.dirty = False
        transport = self.transport
        if self.closed or transport is None or not self.out:
            return
        data = self.out
        self.out = bytearray()
        self.gw.bytes_out += len(data)
        self.last_tx = time.monotonic()
        transport.write(data)

    def close_after_flush(self) -> None:
        """Send what is queued, then close (the transport closes after its buffer drains)."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._teardown()

    def abort(self) -> None:
        """Drop the connection now (slow consumer, shutdown)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._teardown()

    def _teardown(self) -> None:
        self.closed = True
        if self.login_timer is not None:
            self.login_timer.cancel()
            self.login_timer = None
        port = self.port
        if self.cancel_on_disconnect and port is not None and self.account is not None:
            self.cancel_on_disconnect = False  # once
            with contextlib.suppress(ExchangeStopped):  # a full ring: retried
                self.gw.services.cancel_on_disconnect(port, self.account.id)
        self.gw._leave(self)
