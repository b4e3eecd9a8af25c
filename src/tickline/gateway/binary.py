"""Binary order entry over TCP: sessions, authentication, limits, execution reports.

:class:`BinaryGateway` listens on a TCP port and runs one :class:`_Session` (an
``asyncio.Protocol``: no stream reader/writer objects and no task per connection) per client.
The wire format is :mod:`tickline.gateway.protocol`.

Session life
------------

1. **Connect.** A connection that has not logged on holds a *pending* slot, apart from
   ``limits.max_sessions``: at most ``limits.max_pending_logons`` of them, and
   ``limits.max_pending_logons_per_address`` per source address. Past either, the oldest
   such connection gets :class:`~tickline.gateway.protocol.LogonReject` (``THROTTLED``) and
   is closed (drop-oldest, counted ``pending_logons_evicted``): idle sockets cannot keep out
   a client that logs on promptly, and open connections stay within ``max_sessions +
   max_pending_logons``.
2. **Logon** within ``limits.login_timeout_seconds`` (short: 3 s by default) with a
   configured account key, else ``Error(LOGON_TIMEOUT)`` and close. A wrong key gets
   ``LogonReject(NOT_AUTHENTICATED)`` and close (``logon_failures``); an address with more
   than ``limits.logon_failure_burst`` recent failures (refilling at
   ``limits.logon_failures_per_second``) gets ``LogonReject(RATE_LIMITED)``, "retry in N s",
   without its key being checked (``logon_throttled``; a wrong key names no account, so the
   throttle is per address). A right key past
   ``limits.max_sessions`` logged-on sessions gets ``LogonReject(THROTTLED)``. Before logon
   every request is answered with ``Error(NOT_LOGGED_ON)`` and does nothing.
3. **Requests** (new / cancel / replace) are checked in order: logout pending or server
   stopping (reject ``THROTTLED``), client order ids (``client_order_id`` and
   ``orig_client_order_id``) within ``limits.max_client_order_id_bytes`` of UTF-8 (reject
   ``CLIENT_ORDER_ID_TOO_LONG``), in-flight limit (``limits.max_in_flight`` requests sent
   and not yet answered; reject ``THROTTLED``), token-bucket rate
   (``limits.orders_per_second`` refilling up to ``limits.burst``; reject
   ``RATE_LIMITED``); the requests that pass, from one socket read, go to
   :meth:`Exchange.submit_many` together (a full inbound ring → reject ``THROTTLED``,
   counted as ``exchange_busy``). The account is always the session's: a session cannot
   name another account, and the engine answers a cancel or replace of another account's
   order exactly as one of a missing order (``UNKNOWN_ORDER``). Each request gets exactly
   one :class:`~tickline.gateway.protocol.Response`.
4. **Heartbeats.** A gateway timer sends a Heartbeat to sessions it has written nothing to
   for ``heartbeat_seconds``, a TestRequest to sessions silent for 1.5x that, and closes
   (``HEARTBEAT_TIMEOUT``) those silent for 3x.
5. **Logout**: no new requests; once every in-flight request is answered the gateway sends
   Logout and closes.

Bad input. A frame whose length prefix is 0 or above ``limits.max_frame_bytes`` gets
``Error(FRAME_TOO_LARGE | EMPTY_FRAME)`` and the connection is closed (the stream cannot be
resynchronised, and the payload is never buffered). A frame that does not decode as a client
message (msgspec typed decode: nothing is executed or looked up by name) gets
``Error(MALFORMED)`` and the session continues. Neither touches the exchange.

Reports
-------

The gateway builds no report and guesses nothing. A logged-on session attaches to the
exchange's :class:`~tickline.stream.ReportRouter` and submits with its port; the exchange
hands each request's reply the command's own reports (numbered per account), which go out
as ``Response(request_id, reports)``, and the router calls the session with the reports it
did not ask for (its resting order filled by someone else, a GTD expiry, a cancel another
session of the account made), which go out as unsolicited frames. Request ids are matched
to replies by order: one session's commands pass the exchange's single inbound ring in FIFO
order.

Output. Frames are encoded straight into a per-session ``bytearray``; a session with
output is flushed once per event-loop turn (``loop.call_soon``), i.e. one
``transport.write`` per release batch, however many reports it holds. If the transport's
unsent bytes exceed ``max_output_bytes`` (the client stopped reading) the session is
aborted and counted (``slow_consumer_disconnects``): a stalled reader never holds up the
exchange or other sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import socket
import time
from collections import deque
from typing import Any, cast

import msgspec
from prometheus_client.metrics_core import Metric

from tickline.config import Account, ServerConfig
from tickline.core.metrics import (
    FamiliesCollector,
    LatencyRecorder,
    exposition,
    gauge,
    labelled_counter,
    metric_families,
)
from tickline.core.ratelimit import TokenBucket, TokenBuckets
from tickline.exchange import Exchange, ExchangeStopped
from tickline.gateway import protocol as p
from tickline.matching import (
    Cancel,
    Command,
    Event,
    NewOrder,
    RejectReason,
    Replace,
    reject_reason_name,
)
from tickline.stream.reports import ExecKind, ExecReport
from tickline.stream.routing import ReportPort

log = logging.getLogger(__name__)

__all__ = ["BinaryGateway"]

_NEW = int(ExecKind.NEW)
_FILL = int(ExecKind.FILL)
_CANCELLED = int(ExecKind.CANCELLED)
_REPLACED = int(ExecKind.REPLACED)
_EXPIRED = int(ExecKind.EXPIRED)

_RATE_LIMITED = int(RejectReason.RATE_LIMITED)
_THROTTLED = int(RejectReason.THROTTLED)
_NOT_AUTHENTICATED = int(RejectReason.NOT_AUTHENTICATED)
_CLID_TOO_LONG = int(RejectReason.CLIENT_ORDER_ID_TOO_LONG)

_append_frame = p.append_frame  # bound once: _Session.send is on every report's path

_THROTTLE_MAX_ADDRESSES = 16_384
"""Source addresses whose failed logons are remembered at once (least recently failed
forgotten first; see :class:`~tickline.core.ratelimit.TokenBuckets`)."""

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
    return p.OrderRejected(r.seq, r.ts, r.order_id, r.client_order_id, r.symbol, r.reason,
                           r.text)


class _Session(asyncio.Protocol):
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
        gw._unpend(self)
        if self.login_timer is not None:
            self.login_timer.cancel()
            self.login_timer = None
        self.account = account
        gw.logons += 1
        self.send(p.LogonAck(
            account=account.id, name=account.name, heartbeat_seconds=limits.heartbeat_seconds,
            max_in_flight=limits.max_in_flight, orders_per_second=limits.orders_per_second,
            burst=limits.burst, max_frame_bytes=limits.max_frame_bytes,
            instruments=list(gw.exchange.instruments)))
        self.port = gw.exchange.router.attach(account.id, self._unsolicited)

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
        account = self.account
        if account is None:
            gw.not_logged_on += 1
            self.send(p.Error(int(p.ErrorCode.NOT_LOGGED_ON),
                              f"request {rid} before Logon: ignored"))
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
                           expire_time=req.expire_time, post_only=req.post_only, stp=req.stp)
        elif kind is p.CancelRequest:
            assert isinstance(req, p.CancelRequest)
            cmd = Cancel(account=account.id, symbol=req.symbol, order_id=req.order_id,
                         orig_client_order_id=req.orig_client_order_id,
                         client_order_id=req.client_order_id)
        else:
            assert isinstance(req, p.ReplaceRequest)
            cmd = Replace(account=account.id, symbol=req.symbol, order_id=req.order_id,
                          orig_client_order_id=req.orig_client_order_id, price=req.price,
                          quantity=req.quantity, client_order_id=req.client_order_id)
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
        operation); what does not fit is rejected as busy."""
        cmds = self.staged
        reqs = self.staged_reqs
        self.staged = []
        self.staged_reqs = []
        gw = self.gw
        text = "exchange busy: inbound queue full"
        try:
            n = gw.exchange.submit_many(cmds, self._on_reply, self.port)
        except ExchangeStopped:
            n = 0
            text = "server is stopping"
        if n:
            pending = self.pending
            for req in reqs[:n] if n < len(reqs) else reqs:
                pending.append(req.request_id)
            gw.requests += n
        if n < len(reqs):
            for req in reqs[n:]:
                if text.startswith("exchange busy"):
                    gw.busy += 1
                self._reject(req.request_id, req, _THROTTLED, text)

    def _on_reply(self, _cmd: Command, _events: list[Event],
                  reports: list[ExecReport]) -> None:
        """Exchange RELEASE stage: ``reports`` are the request's own, in report order."""
        rid = self.pending.popleft()
        wire = [to_wire(r) for r in reports]
        if wire and wire[0].__class__ is p.OrderRejected:
            self.gw.count_reject(wire[0].reason)
        if not self.closed:
            self.send(p.Response(rid, wire))
        if self.logout_pending and not self.pending and not self.closed:
            self.send(p.Logout("logged out"))
            self.close_after_flush()

    def _unsolicited(self, reports: list[ExecReport]) -> None:
        """The router's reports about this session's orders that it did not ask for."""
        for r in reports:
            self.send(to_wire(r))

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
        self.gw._leave(self)


class BinaryGateway:
    """The binary order-entry server for one :class:`~tickline.exchange.Exchange`.

    Runs on the exchange's event loop. ``max_output_bytes`` bounds each session's unsent
    output held by the transport (default 8 MiB): past it the session is disconnected as a
    slow consumer. ``send_buffer_bytes`` (default: the kernel's, which autotunes up to a few
    MiB on Linux) sets ``SO_SNDBUF`` on each connection, bounding what the kernel holds too.
    """

    def __init__(self, exchange: Exchange, config: ServerConfig, *,
                 max_output_bytes: int = 8 << 20, send_buffer_bytes: int | None = None) -> None:
        self.exchange = exchange
        self.config = config
        self.max_output_bytes = max_output_bytes
        self.send_buffer_bytes = send_buffer_bytes
        self._accounts: list[Account] = list(config.accounts)
        self.sessions: set[_Session] = set()  # every open connection, logged on or not
        # connections not logged on yet, oldest first: all, and by source address
        self._pending: dict[_Session, None] = {}
        self._pending_by_host: dict[str, dict[_Session, None]] = {}
        limits = config.limits
        self.failed_logons = TokenBuckets(limits.logon_failures_per_second,
                                          limits.logon_failure_burst, _THROTTLE_MAX_ADDRESSES)
        self.accepting = False
        self._server: asyncio.Server | None = None
        self._dirty: list[_Session] = []
        self._flush_scheduled = False
        self._hb_timer: asyncio.TimerHandle | None = None
        self.stage_decode = LatencyRecorder("decode_ns")
        # counters (single writer: the event loop)
        self.connections_total = 0
        self.sessions_refused = 0
        self.sessions_closed = 0
        self.logons = 0
        self.logon_rejects = 0
        self.logon_failures = 0
        self.logon_throttled = 0
        self.pending_logons_evicted = 0
        self.login_timeouts = 0
        self.heartbeat_timeouts = 0
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.malformed = 0
        self.frame_errors = 0
        self.not_logged_on = 0
        self.requests = 0
        self.rate_limited = 0
        self.client_order_id_too_long = 0
        self.busy = 0
        self.slow_consumer_disconnects = 0
        self.rejects: dict[int, int] = {}
        #: This gateway's metrics for a server's registry, built at scrape time.
        self.collector = FamiliesCollector(self._families)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); return the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Session(self), host, port,
                                                reuse_address=True)
        self.accepting = True
        self._arm_heartbeat()
        sock = self._server.sockets[0]
        bound: int = sock.getsockname()[1]
        log.info("binary gateway listening on %s:%d", host, bound)
        return bound

    async def stop_accepting(self) -> None:
        """Accept no new connection or request (requests get ``THROTTLED``); sessions stay
        open so reports of what the exchange drains are still delivered."""
        self.accepting = False
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Flush and close every session (detaching it from the router), stop the
        listener."""
        self.accepting = False
        if self._hb_timer is not None:
            self._hb_timer.cancel()
            self._hb_timer = None
        for s in list(self.sessions):
            s.send(p.Logout("server shutting down"))
            s.close_after_flush()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def session_count(self) -> int:
        """Open connections (logged on or not)."""
        return len(self.sessions)

    def logged_on(self) -> int:
        """Open connections that have logged on (what ``limits.max_sessions`` bounds)."""
        return len(self.sessions) - len(self._pending)

    def pending_logons(self) -> int:
        """Open connections that have not logged on yet."""
        return len(self._pending)

    # -- helpers used by sessions ----------------------------------------------------------

    def authenticate(self, key: str) -> Account | None:
        """The account whose key equals ``key`` (constant-time comparisons), or None."""
        found = None
        given = key.encode()
        for a in self._accounts:
            if hmac.compare_digest(a.key.encode(), given):
                found = a
        return found

    def _admit_pending(self, session: _Session) -> None:
        """Give a new connection a pre-logon slot. When its source address already holds
        ``max_pending_logons_per_address`` of them, or all ``max_pending_logons`` are taken,
        the *oldest* such connection is closed to make room (drop-oldest): a crowd of idle
        connections can then never keep a client that logs on promptly out."""
        limits = self.config.limits
        host = session.host
        mine = self._pending_by_host.get(host)
        victim: _Session | None = None
        if mine is not None and len(mine) >= limits.max_pending_logons_per_address:
            victim = next(iter(mine))
            text = (f"too many connections awaiting logon from {host} "
                    f"(max_pending_logons_per_address={limits.max_pending_logons_per_address})")
        elif len(self._pending) >= limits.max_pending_logons:
            victim = next(iter(self._pending))
            text = (f"too many connections awaiting logon "
                    f"(max_pending_logons={limits.max_pending_logons})")
        if victim is not None:
            self.pending_logons_evicted += 1
            self._unpend(victim)
            victim.send(p.LogonReject(_THROTTLED, f"{text}: the oldest is closed"))
            victim.close_after_flush()
        self._pending[session] = None
        self._pending_by_host.setdefault(host, {})[session] = None

    def _unpend(self, session: _Session) -> None:
        """``session`` logged on or closed: it holds no pre-logon slot any more."""
        if session in self._pending:
            del self._pending[session]
            mine = self._pending_by_host[session.host]
            del mine[session]
            if not mine:
                del self._pending_by_host[session.host]

    def count_reject(self, reason: int) -> None:
        self.rejects[reason] = self.rejects.get(reason, 0) + 1

    def _leave(self, session: _Session) -> None:
        self._unpend(session)
        if session in self.sessions:
            self.sessions.discard(session)
            self.sessions_closed += 1
        port = session.port
        if port is not None:
            session.port = None
            port.close()  # reports about its orders now reach the account's other sessions

    def _mark_dirty(self, session: _Session) -> None:
        self._dirty.append(session)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._flush_scheduled = False
        dirty = self._dirty
        self._dirty = []
        for s in dirty:
            s.flush()

    def _arm_heartbeat(self) -> None:
        hb = self.config.limits.heartbeat_seconds
        if hb > 0:
            self._hb_timer = asyncio.get_running_loop().call_later(
                min(hb / 2, 1.0), self._heartbeat)

    def _heartbeat(self) -> None:
        hb = self.config.limits.heartbeat_seconds
        now = time.monotonic()
        for s in list(self.sessions):
            if s.closed or s.account is None:
                continue
            silent = now - s.last_rx
            if silent > 3 * hb:
                self.heartbeat_timeouts += 1
                s.send(p.Error(int(p.ErrorCode.HEARTBEAT_TIMEOUT),
                               f"no data for {silent:.1f}s (heartbeat {hb}s)"))
                s.close_after_flush()
                continue
            if silent > 1.5 * hb and not s.test_sent:
                s.test_sent = True
                s.send(p.TestRequest(int(now * 1000)))
            elif now - s.last_tx > hb and not s.dirty:
                s.send(p.Heartbeat())
        self._arm_heartbeat()

    # -- observability ---------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """Every counter, plus the sessions open now and the decode histogram."""
        snap = self.stage_decode.snapshot()
        return {
            "sessions": len(self.sessions),
            "pending_logons": len(self._pending),
            "accounts_logged_on": len({s.account.id for s in self.sessions
                                       if s.account is not None}),
            **self._counters(),
            "rejects_by_reason": {reject_reason_name(r): n for r, n in self.rejects.items()},
            "decode_ns": {"count": snap.count, "p50": snap.percentiles[50.0],
                          "p99": snap.percentiles[99.0], "max": snap.max},
        }

    def _counters(self) -> dict[str, int]:
        return {
            "connections": self.connections_total,
            "sessions_refused": self.sessions_refused,
            "disconnects": self.sessions_closed,
            "logons": self.logons,
            "logon_rejects": self.logon_rejects,
            "logon_failures": self.logon_failures,
            "logon_throttled": self.logon_throttled,
            "pending_logons_evicted": self.pending_logons_evicted,
            "login_timeouts": self.login_timeouts,
            "heartbeat_timeouts": self.heartbeat_timeouts,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "malformed_frames": self.malformed,
            "broken_frames": self.frame_errors,
            "requests_before_logon": self.not_logged_on,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "client_order_id_too_long": self.client_order_id_too_long,
            "exchange_busy": self.busy,
            "slow_consumer_disconnects": self.slow_consumer_disconnects,
        }

    def prometheus(self) -> str:
        """This gateway's metrics (:attr:`collector`) in the Prometheus text format."""
        return exposition(self.collector)

    def _families(self) -> list[Metric]:
        """Counters, the session gauges, rejects by reason and decode times, at scrape time
        (the :attr:`collector`'s source)."""
        prefix = "tickline_binary"
        return [
            *metric_families(prefix, self._counters(), [self.stage_decode.snapshot()],
                             help_text={"decode_ns": "frame decode time, stage decode"}),
            gauge(f"{prefix}_sessions", "open binary order-entry connections",
                  len(self.sessions)),
            gauge(f"{prefix}_pending_logons", "open connections that have not logged on yet",
                  len(self._pending)),
            labelled_counter(f"{prefix}_rejects", "rejected requests by reason", "reason",
                             [(reject_reason_name(r), n)
                              for r, n in sorted(self.rejects.items())]),
        ]
