"""The FIX 4.4 acceptor's listener and what spans its connections: the configured sessions
(SenderCompID -> account), the session stores, who is logged on, the heartbeat and market
data timers, one write per session per event-loop turn, counters and metrics.

The per-connection rules are in :mod:`tickline.gateway.fix.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric

from tickline.config import ServerConfig
from tickline.core.metrics import FamiliesCollector, gauge, metric_families
from tickline.exchange import Exchange
from tickline.gateway.fix.marketdata import FixMarketData
from tickline.gateway.fix.session import FixSession
from tickline.gateway.fix.store import SessionStore
from tickline.venue import VenueServices

log = logging.getLogger("tickline.gateway.fix")

__all__ = ["FixGateway"]

MD_INTERVAL = 0.05  # seconds between market data updates (conflated)


class FixGateway:
    """The FIX acceptor of one exchange. All methods run on the exchange's event loop."""

    def __init__(self, exchange: Exchange, config: ServerConfig, *,
                 max_output_bytes: int = 8 << 20) -> None:
        self.exchange = exchange
        self.config = config
        fix = config.fix
        self.comp_id = fix.comp_id
        self.instruments = {i.symbol: i for i in exchange.instruments}
        self.accounts = {a.name: a for a in config.accounts}
        self.entries = {s.sender_comp_id: s for s in fix.sessions}
        self.store_dir: Path | None = Path(fix.store_dir or
                                           Path(config.server.journal_dir) / "fix")
        self.services = VenueServices(exchange)
        self.max_output_bytes = max_output_bytes
        self.marketdata = FixMarketData(self)
        self.sessions: set[FixSession] = set()
        self.active: dict[str, FixSession] = {}
        self.stores: dict[str, SessionStore] = {}
        self.accepting = False
        self._server: asyncio.Server | None = None
        self._dirty: list[FixSession] = []
        self._flush_scheduled = False
        self._timers: list[asyncio.TimerHandle] = []
        self.connections = 0
        self.logons = 0
        self.logon_failures = 0
        self.login_timeouts = 0
        self.heartbeat_timeouts = 0
        self.garbled = 0
        self.gaps = 0
        self.messages_in = 0
        self.messages_out = 0
        self.messages_resent = 0
        self.resend_requests = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.session_rejects_sent = 0
        self.rejects_received = 0
        self.business_rejects = 0
        self.orders = 0
        self.orders_refused = 0
        self.rate_limited = 0
        self.md_rejects = 0
        self.slow_consumer_disconnects = 0
        self.collector = FamiliesCollector(self._families)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: FixSession(self), host, port,
                                                reuse_address=True)
        self.accepting = True
        self._every(1.0, self._heartbeats)
        self._every(MD_INTERVAL, self.marketdata.publish)
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("FIX 4.4 acceptor %s listening on %s:%d", self.comp_id, host, bound)
        return bound

    def _every(self, seconds: float, fn: Any) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                fn()
            except Exception:  # a timer must survive one bad session
                log.exception("fix gateway timer")
            self._timers[index] = loop.call_later(seconds, run)

        index = len(self._timers)
        self._timers.append(loop.call_later(seconds, run))

    def stop_accepting(self) -> None:
        """No new connections or orders; sessions stay so drained reports are delivered."""
        self.accepting = False
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Logout every session, stop timers and the listener, close the stores."""
        self.accepting = False
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        for s in list(self.sessions):
            if s.logged_on and not s.closed:
                s.send_admin("5", b"58=server shutting down\x01")
            s.close_after_flush()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        for store in self.stores.values():
            with contextlib.suppress(OSError):
                store.close()
        self.stores.clear()

    def session_count(self) -> int:
        return len(self.sessions)

    # -- used by sessions ------------------------------------------------------------------

    def store_for(self, sender: str) -> SessionStore:
        """The persistent state of the session with ``sender`` (opened once, kept open)."""
        store = self.stores.get(sender)
        if store is None:
            store = SessionStore(self.store_dir, f"{self.comp_id}-{sender}",
                                 fsync=self.config.fix.fsync)
            self.stores[sender] = store
        return store

    def mark_dirty(self, session: FixSession) -> None:
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

    def _heartbeats(self) -> None:
        now = time.monotonic()
        for s in list(self.sessions):
            s.tick(now)

    # -- observability ---------------------------------------------------------------------

    def _counters(self) -> dict[str, int]:
        return {
            "connections": self.connections, "logons": self.logons,
            "logon_failures": self.logon_failures, "login_timeouts": self.login_timeouts,
            "heartbeat_timeouts": self.heartbeat_timeouts, "garbled": self.garbled,
            "gaps": self.gaps, "messages_in": self.messages_in,
            "messages_out": self.messages_out, "messages_resent": self.messages_resent,
            "resend_requests": self.resend_requests, "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out, "session_rejects_sent": self.session_rejects_sent,
            "rejects_received": self.rejects_received,
            "business_rejects": self.business_rejects, "orders": self.orders,
            "orders_refused": self.orders_refused, "rate_limited": self.rate_limited,
            "md_rejects": self.md_rejects,
            "slow_consumer_disconnects": self.slow_consumer_disconnects,
        }

    def statistics(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "logged_on": len(self.active),
                **self._counters(), **self.services.counters()}

    def _families(self) -> list[Metric]:
        prefix = "tickline_fix"
        return [*metric_families(prefix, self._counters(), []),
                gauge(f"{prefix}_sessions", "open FIX connections", len(self.sessions)),
                gauge(f"{prefix}_logged_on", "logged-on FIX sessions", len(self.active)),
                *self.services.families(prefix)]
