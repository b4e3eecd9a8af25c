"""Binary order entry over TCP: sessions, authentication, limits, execution reports.

:class:`BinaryGateway` listens on a TCP port and runs one
:class:`~tickline.gateway.binary_session.BinarySession` (an ``asyncio.Protocol``: no stream
reader/writer objects and no task per connection) per client. The wire format is
:mod:`tickline.gateway.protocol`. This module holds what spans connections (the listener,
pre-logon slots, logon throttling, the heartbeat timer, counters and metrics);
:mod:`~tickline.gateway.binary_session` holds one connection's protocol and
:func:`to_wire` (re-exported here).

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
import time
from typing import Any

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
from tickline.core.ratelimit import TokenBuckets
from tickline.exchange import Exchange
from tickline.gateway import protocol as p
from tickline.gateway.binary_session import BinarySession, to_wire
from tickline.matching import RejectReason, reject_reason_name
from tickline.venue import VenueServices

log = logging.getLogger(__name__)

__all__ = ["BinaryGateway", "to_wire"]

_THROTTLED = int(RejectReason.THROTTLED)

_THROTTLE_MAX_ADDRESSES = 16_384
"""Source addresses whose failed logons are remembered at once (least recently failed
forgotten first; see :class:`~tickline.core.ratelimit.TokenBuckets`)."""

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
        self.services = VenueServices(exchange)
        """Resume, order status, open orders, mass cancel, cancel on disconnect."""
        self.symbols = frozenset(i.symbol for i in exchange.instruments)
        self.config = config
        self.max_output_bytes = max_output_bytes
        self.send_buffer_bytes = send_buffer_bytes
        self._accounts: list[Account] = list(config.accounts)
        self.sessions: set[BinarySession] = set()  # every open connection, logged on or not
        # connections not logged on yet, oldest first: all, and by source address
        self._pending: dict[BinarySession, None] = {}
        self._pending_by_host: dict[str, dict[BinarySession, None]] = {}
        limits = config.limits
        self.failed_logons = TokenBuckets(limits.logon_failures_per_second,
                                          limits.logon_failure_burst, _THROTTLE_MAX_ADDRESSES)
        self.accepting = False
        self._server: asyncio.Server | None = None
        self._dirty: list[BinarySession] = []
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
        self._server = await loop.create_server(lambda: BinarySession(self), host, port,
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

    def _admit_pending(self, session: BinarySession) -> None:
        """Give a new connection a pre-logon slot. When its source address already holds
        ``max_pending_logons_per_address`` of them, or all ``max_pending_logons`` are taken,
        the *oldest* such connection is closed to make room (drop-oldest): a crowd of idle
        connections can then never keep a client that logs on promptly out."""
        limits = self.config.limits
        host = session.host
        mine = self._pending_by_host.get(host)
        victim: BinarySession | None = None
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

    def _unpend(self, session: BinarySession) -> None:
        """``session`` logged on or closed: it holds no pre-logon slot any more."""
        if session in self._pending:
            del self._pending[session]
            mine = self._pending_by_host[session.host]
            del mine[session]
            if not mine:
                del self._pending_by_host[session.host]

    def count_reject(self, reason: int) -> None:
        self.rejects[reason] = self.rejects.get(reason, 0) + 1

    def _leave(self, session: BinarySession) -> None:
        self._unpend(session)
        if session in self.sessions:
            self.sessions.discard(session)
            self.sessions_closed += 1
        port = session.port
        if port is not None:
            session.port = None
            port.close()  # reports about its orders now reach the account's other sessions

    def _mark_dirty(self, session: BinarySession) -> None:
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
            **self.services.counters(),
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
            *self.services.families(prefix),
        ]
