"""One WebSocket session: request handling, its market-data feeds, its bounded outboxes and
its single sender task.

Requests arrive from the connection's receive loop (:meth:`Session.handle`); replies, feed
updates and execution reports only append to bounded buffers and wake the sender, which
drains everything pending into one frame per wake-up (natural batching). A frame not taken
within ``send_timeout``, or an outbox overflowing, closes the session as a slow consumer
(1008). A session admitted on probation (see :mod:`tickline.gateway.admission`) may only
``ping`` and ``login`` and is closed (1008) unless it logs in within
``login_timeout_seconds``.

Execution reports reach a session in exactly one place: :meth:`Session.deliver_reports`
receives :class:`~tickline.stream.ExecReport` objects — its own orders' reports with the
exchange's reply, the others from the exchange's :class:`~tickline.stream.ReportRouter`
(attached at login) — and :func:`~tickline.gateway.jsonfmt.exec_json` formats them.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tickline.core.ratelimit import TokenBucket
from tickline.exchange import ExchangeBusy, ExchangeStopped
from tickline.gateway.jsonfmt import Format, bar_json, encoder, exec_json, trade_json
from tickline.gateway.wsfeeds import BboFeed, DepthFeed, Feed, SequencedFeed
from tickline.gateway.wsproto import (
    CHANNELS,
    MARKET_CHANNELS,
    CancelOp,
    LoginOp,
    NewOrderOp,
    PingOp,
    SubscribeOp,
    UnsubscribeOp,
    WsError,
    decode_request,
)
from tickline.matching import BUY, SELL, Cancel, Command, Event, InstrumentError, NewOrder
from tickline.matching.types import FOK, GTC, IOC, LIMIT, MARKET
from tickline.stream import ExecReport, ReportPort

if TYPE_CHECKING:
    from tickline.gateway.http import HttpGateway

__all__ = ["Session"]

_TIF = {"gtc": GTC, "ioc": IOC, "fok": FOK}
_MAX_FAILED_LOGINS = 3  # per session; then it is closed (the address is throttled as well)


class Session:
    """One WebSocket client from source ``address``: its feeds, bounded outboxes and the
    single sender task. ``probation``: admitted beyond the anonymous budget."""

    def __init__(self, gw: HttpGateway, ws: ServerConnection, address: str,
                 probation: bool) -> None:
        self.gw = gw
        self.ws = ws
        self.address = address
        self.probation = probation
        settings = gw.settings
        self.feeds: dict[tuple[str, str], Feed] = {}
        self.control: deque[dict[str, Any]] = deque()
        self.execs: deque[ExecReport] = deque()
        self.exec_port: ReportPort | None = None
        self.account = 0
        self.stats: dict[str, Any] | None = None
        self.watch_stats = False
        self.closing = False
        self.close_reason = ""
        self.failed_logins = 0
        self._event = asyncio.Event()
        now = time.monotonic()
        self._orders = TokenBucket(gw.orders_per_second, gw.order_burst, now)
        self._requests = TokenBucket(settings.requests_per_second, settings.request_burst, now)
        self._login_timer: asyncio.TimerHandle | None = None
        if probation:
            self._login_timer = asyncio.get_running_loop().call_later(
                settings.login_timeout_seconds, self._login_deadline)

    # -- queueing (called from the receiver and from bus callbacks) -----------------------

    def wake(self) -> None:
        self._event.set()

    def reply(self, msg: dict[str, Any]) -> None:
        if len(self.control) >= self.gw.settings.control_capacity:
            self.slow("replies not read")
            return
        self.control.append(msg)
        self.wake()

    def error(self, code: str, message: str, **extra: Any) -> None:
        errors = self.gw.counters.errors
        errors[code] = errors.get(code, 0) + 1
        self.reply({"type": "error", "code": code, "message": message, **extra})

    def deliver_reports(self, reports: Sequence[ExecReport]) -> None:
        """The one entry for this session's execution reports: queue them for the sender
        (formatted there by :func:`exec_json`); too many unread closes the session."""
        if len(self.execs) + len(reports) > self.gw.settings.exec_capacity:
            self.slow("execution reports not read")
            return
        self.execs.extend(reports)
        self.wake()

    def slow(self, reason: str) -> None:
        """Give up on this client: close it as a slow consumer (counted once)."""
        if not self.closing:
            self.gw.counters.slow += 1
            self._shut(f"slow consumer: {reason}")

    def _shut(self, reason: str) -> None:
        """Stop everything and let the sender close the connection (1008, ``reason``)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        self.unsubscribe_all()
        self.wake()

    def _login_deadline(self) -> None:
        self._login_timer = None
        if not self.account and not self.closing:
            self.gw.counters.timeouts += 1
            self._shut(f"not logged in within {self.gw.settings.login_timeout_seconds:g} s "
                       f"(admitted beyond max_anonymous)")

    def pending(self) -> int:
        """Messages waiting to be sent (depth counts pending levels). O(feeds)."""
        n = len(self.control) + len(self.execs) + (self.stats is not None)
        return n + sum(feed.pending() for feed in self.feeds.values())

    # -- the sender ----------------------------------------------------------------------------

    def collect(self) -> list[Any]:
        out: list[Any] = list(self.control)
        self.control.clear()
        for feed in self.feeds.values():
            feed.take(out)
        if self.execs:
            formats = self.gw.formats
            out.extend(exec_json(formats.get(r.symbol), r) for r in self.execs)
            self.execs.clear()
        if self.stats is not None:
            out.append(self.stats)
            self.stats = None
        return out

    async def send_loop(self) -> None:
        gw = self.gw
        counters = gw.counters
        timeout = gw.settings.send_timeout
        ws = self.ws
        event = self._event
        while True:
            await event.wait()
            event.clear()
            if self.closing:
                break
            out = self.collect()
            if not out:
                continue
            data = encoder.encode(out)
            t0 = time.perf_counter_ns()
            try:
                await asyncio.wait_for(ws.send(data, text=True), timeout)
            except TimeoutError:
                self.slow(f"a frame was not taken within {timeout} s")
                break
            except ConnectionClosed:
                return
            gw.frame_send_latency.record(time.perf_counter_ns() - t0)
            counters.frames += 1
            counters.messages += len(out)
            counters.bytes += len(data)
        if self.closing:
            await self._close_1008()

    async def _close_1008(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(1008, self.close_reason[:120]), 1.0)
        except (TimeoutError, ConnectionClosed):
            pass
        finally:
            transport = self.ws.transport
            if transport is not None and not transport.is_closing():
                transport.abort()

    # -- requests ------------------------------------------------------------------------------

    def handle(self, raw: str | bytes) -> None:
        """One client frame: a reply, an error or a submitted command; never raises."""
        settings = self.gw.settings
        if isinstance(raw, bytes):
            self.error("binary_not_supported", "send JSON requests as text frames")
            return
        if len(raw) > settings.max_message_bytes:
            self.error("too_large", f"request of {len(raw)} characters exceeds "
                                    f"max_message_bytes={settings.max_message_bytes}")
            return
        if not self._requests.take(time.monotonic()):
            self.error("rate_limited", f"more than {settings.requests_per_second:g} requests/s")
            return
        try:
            op = decode_request(raw)
        except WsError as err:
            self.error(err.code, err.message)
            return
        try:
            if isinstance(op, PingOp):
                self.reply({"type": "pong", "id": op.id})
            elif isinstance(op, LoginOp):
                self.login(op)
            elif self.probation and not self.account:
                raise WsError("not_authenticated",
                              "the anonymous sessions' budget (max_anonymous) is full: log in "
                              "first ({'op': 'login', 'key': ...})")
            elif isinstance(op, SubscribeOp):
                self.subscribe(op)
            elif isinstance(op, UnsubscribeOp):
                self.unsubscribe(op)
            elif isinstance(op, NewOrderOp):
                self.new_order(op)
            else:
                self.cancel(op)
        except WsError as err:
            self.error(err.code, err.message, op=type(op).__struct_config__.tag)

    def _check_channels(self, channels: Sequence[str]) -> list[str]:
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise WsError("unknown_channel", f"unknown channel {unknown[0]!r}; expected some "
                                             f"of {', '.join(CHANNELS)}")
        if not channels:
            raise WsError("invalid_message", "channels must not be empty")
        return list(dict.fromkeys(channels))

    def _check_symbol(self, symbol: str) -> Format:
        fmt = self.gw.formats.get(symbol)
        if fmt is None:
            raise WsError("unknown_symbol", f"unknown symbol {symbol!r}")
        return fmt

    def subscribe(self, op: SubscribeOp) -> None:
        channels = self._check_channels(op.channels)
        market = [c for c in channels if c != "stats"]
        limit = self.gw.settings.max_subscriptions
        fmt: Format | None = None
        if market:
            if not op.symbol:
                raise WsError("invalid_message", f"channels {market} need a 'symbol'")
            fmt = self._check_symbol(op.symbol)
            new = sum(1 for c in market if (c, op.symbol) not in self.feeds)
            if len(self.feeds) + new > limit:
                raise WsError("too_many_subscriptions",
                              f"at most {limit} (channel, symbol) subscriptions per session")
        self.reply({"type": "subscribed", "symbol": op.symbol, "channels": channels})
        if "stats" in channels and not self.watch_stats:
            self.watch_stats = True
            self.gw.counters.stats_watchers += 1
            sampler = self.gw.sampler
            if sampler.latest:  # else the next tick brings it (a copy: latest is shared)
                self.stats = {**sampler.latest, "stages": sampler.stages()}
        for channel in market:
            assert fmt is not None
            self._drop_feed(channel, op.symbol)
            self.feeds[(channel, op.symbol)] = self._open_feed(channel, op.symbol, fmt)
        self.wake()

    def _open_feed(self, channel: str, symbol: str, fmt: Format) -> Feed:
        gw = self.gw
        settings = gw.settings
        publisher = gw.exchange.publisher
        bus = gw.exchange.bus
        opts: dict[str, Any] = {"capacity": settings.bus_capacity, "policy": "drop_oldest",
                                "name": f"ws-{id(self):x}-{channel}.{symbol}"}
        feed: Feed
        if channel == "depth":
            feed = DepthFeed(publisher, symbol, fmt, settings.max_depth_levels, self.wake,
                             gw.counters)
            _snap, feed.sub = publisher.subscribe_depth(symbol, batch_callback=feed.on_batch,
                                                        **opts)
        elif channel == "bbo":
            feed = BboFeed(publisher, symbol, fmt, self.wake)
            feed.sub = bus.subscribe(f"bbo.{symbol}", batch_callback=feed.on_batch, **opts)
        elif channel == "trades":
            feed = SequencedFeed("trades", symbol, settings.trades_capacity,
                                 functools.partial(trade_json, fmt), self.wake, gw.counters)
            feed.sub = bus.subscribe(f"trades.{symbol}", batch_callback=feed.on_batch, **opts)
        else:
            feed = SequencedFeed("bars", symbol, settings.bars_capacity,
                                 functools.partial(bar_json, fmt), self.wake, gw.counters)
            feed.sub = bus.subscribe(f"bars.{symbol}.1s", batch_callback=feed.on_batch,
                                     **opts)
        return feed

    def _drop_feed(self, channel: str, symbol: str) -> bool:
        feed = self.feeds.pop((channel, symbol), None)
        if feed is None:
            return False
        if feed.sub is not None:
            feed.sub.close()
        return True

    def unsubscribe(self, op: UnsubscribeOp) -> None:
        channels = self._check_channels(op.channels) if op.channels is not None else None
        if channels is None or any(c != "stats" for c in channels):
            if not op.symbol:
                raise WsError("invalid_message", "unsubscribe needs a 'symbol'")
            self._check_symbol(op.symbol)
        removed: list[str] = []
        for channel in channels if channels is not None else MARKET_CHANNELS:
            if channel == "stats":
                if self.watch_stats:
                    self.watch_stats = False
                    self.gw.counters.stats_watchers -= 1
                    self.stats = None
                    removed.append(channel)
            elif self._drop_feed(channel, op.symbol):
                removed.append(channel)
        self.reply({"type": "unsubscribed", "symbol": op.symbol, "channels": removed})

    def unsubscribe_all(self) -> None:
        """Release every bus subscription and timer of this session. Idempotent."""
        for channel, symbol in list(self.feeds):
            self._drop_feed(channel, symbol)
        if self.exec_port is not None:
            self.exec_port.close()
            self.exec_port = None
        if self.watch_stats:
            self.watch_stats = False
            self.gw.counters.stats_watchers -= 1
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None

    def login(self, op: LoginOp) -> None:
        """Authenticate with an account key. Wrong keys are throttled per source address:
        while the address's bucket is empty, attempts get ``rate_limited`` without the key
        being looked at."""
        gw = self.gw
        accounts = gw.accounts
        if accounts is None:
            raise WsError("login_disabled", "this server has no account configuration")
        if self.account:
            raise WsError("already_logged_in", f"already logged in as account {self.account}")
        now = time.monotonic()
        throttle = gw.login_throttle
        if not throttle.allowed(self.address, now):
            gw.counters.login_throttled += 1
            raise WsError("rate_limited", f"too many failed logins from this address; retry "
                                          f"in {throttle.retry_after(self.address, now):.1f} s")
        acct = accounts.get(op.key)
        if acct is None:
            throttle.take(self.address, now)
            gw.counters.login_failures += 1
            self.failed_logins += 1
            if self.failed_logins >= _MAX_FAILED_LOGINS:
                self._shut("too many failed logins")
            raise WsError("bad_credentials", "unknown account key")
        self.account = acct.id
        gw.admission.logged_in(self.address, self.probation)
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self._subscribe_reports(acct.id)
        self.reply({"type": "login", "account": acct.id, "name": acct.name})

    def _subscribe_reports(self, account: int) -> None:
        """Attach to the report router: reports about this session's orders that it did not
        ask for (fills as a maker, expiries) go to :meth:`deliver_reports`."""
        self.exec_port = self.gw.exchange.router.attach(account, self.deliver_reports)

    def _on_reply(self, _cmd: Command, _events: list[Event], reports: list[ExecReport]) -> None:
        """The exchange's reply to one of this session's requests: its own reports."""
        self.deliver_reports(reports)

    def _check_client_order_id(self, client_order_id: str) -> None:
        limit = self.gw.max_client_order_id_bytes
        n = len(client_order_id.encode())
        if n > limit:
            raise WsError("invalid_order", f"client_order_id is {n} bytes; at most "
                                           f"max_client_order_id_bytes={limit}")

    def _take_token(self) -> None:
        gw = self.gw
        if not self._orders.take(time.monotonic()):
            raise WsError("rate_limited", f"more than {gw.orders_per_second:g} orders/s "
                                          f"(burst {gw.order_burst})")

    def _submit(self, cmd: NewOrder | Cancel) -> None:
        try:
            self.gw.exchange.submit(cmd, self._on_reply, self.exec_port)
        except ExchangeBusy as exc:
            raise WsError("busy", str(exc)) from None
        except ExchangeStopped as exc:
            raise WsError("stopping", str(exc)) from None
        self.gw.counters.orders += 1

    def new_order(self, op: NewOrderOp) -> None:
        if not self.account:
            raise WsError("not_authenticated", "log in first ({'op': 'login', 'key': ...})")
        inst = self._check_symbol(op.symbol).inst
        self._check_client_order_id(op.client_order_id)
        try:
            quantity = inst.qty_from_str(str(op.quantity))
            if op.order_type == "limit":
                if op.price is None:
                    raise WsError("invalid_order", "a limit order needs a 'price'")
                price = inst.price_from_str(str(op.price))
            else:
                price = 0
        except InstrumentError as exc:
            raise WsError("invalid_order", str(exc)) from None
        self._take_token()
        self._submit(NewOrder(
            account=self.account, symbol=op.symbol, side=BUY if op.side == "buy" else SELL,
            quantity=quantity, price=price,
            order_type=LIMIT if op.order_type == "limit" else MARKET,
            tif=_TIF[op.tif], client_order_id=op.client_order_id,
            post_only=op.post_only))

    def cancel(self, op: CancelOp) -> None:
        if not self.account:
            raise WsError("not_authenticated", "log in first ({'op': 'login', 'key': ...})")
        self._check_symbol(op.symbol)
        self._check_client_order_id(op.client_order_id)
        if not op.order_id and not op.client_order_id:
            raise WsError("invalid_message", "cancel needs 'order_id' or 'client_order_id'")
        self._take_token()
        self._submit(Cancel(account=self.account, symbol=op.symbol, order_id=op.order_id,
                            orig_client_order_id=op.client_order_id))
