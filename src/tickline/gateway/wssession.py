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
(attached at login) — and :func:`~tickline.gateway.jsonfmt.exec_json` formats them. The
answers to ``order_status``, ``open_orders`` and ``mass_cancel`` travel in the same ordered
private queue, so an answer never overtakes a report it reflects; while a resume reads the
journal that queue is held back (:attr:`Session.held`).

Order entry builds the same engine commands as the binary gateway, and every session-level
service (resume, order status, open orders, mass cancel, cancel on disconnect) is a call to
:class:`tickline.venue.VenueServices`: no venue logic lives here. Gap recovery (``replay``)
reads the gateway's :class:`~tickline.stream.topic_history.TopicHistory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tickline.core.ratelimit import TokenBucket
from tickline.exchange import ExchangeBusy, ExchangeStopped, ExchangeUnavailable
from tickline.gateway.jsonfmt import (
    Format,
    bar_json,
    encoder,
    exec_json,
    side_name,
    trade_json,
)
from tickline.gateway.wsfeeds import BboFeed, DepthFeed, Feed, SequencedFeed
from tickline.gateway.wsproto import (
    CHANNELS,
    MARKET_CHANNELS,
    CancelOp,
    LoginOp,
    MassCancelOp,
    NewOrderOp,
    OpenOrdersOp,
    OrderStatusOp,
    PingOp,
    ReplaceOp,
    ReplayOp,
    SubscribeOp,
    UnsubscribeOp,
    WsError,
    decode_request,
)
from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    Command,
    Event,
    Instrument,
    InstrumentError,
    NewOrder,
    Replace,
)
from tickline.matching.types import (
    FOK,
    GTC,
    GTD,
    IOC,
    LIMIT,
    MARKET,
    STOP,
    STOP_LIMIT,
    STP_ACCOUNT_DEFAULT,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_OFF,
    reject_reason_name,
)
from tickline.stream import ExecKind, ExecReport, ReportPort
from tickline.stream.reports import OrderState, OrderStatus
from tickline.venue import ResumeError

if TYPE_CHECKING:
    from tickline.gateway.http import HttpGateway

__all__ = ["Session"]

log = logging.getLogger(__name__)

_TIF = {"gtc": GTC, "ioc": IOC, "fok": FOK, "gtd": GTD}
_ORDER_TYPE = {"limit": LIMIT, "market": MARKET, "stop": STOP, "stop_limit": STOP_LIMIT}
_STP = {"default": STP_ACCOUNT_DEFAULT, "cancel_newest": STP_CANCEL_NEWEST,
        "cancel_oldest": STP_CANCEL_OLDEST, "cancel_both": STP_CANCEL_BOTH, "off": STP_OFF}
_STATUS = {int(s): s.name.lower() for s in OrderStatus}
_TOPIC = {"trades": "trades.{}", "bars": "bars.{}.1s"}
_NOT_LOGGED_IN = "log in first ({'op': 'login', 'key': ...})"
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
        self.execs: deque[ExecReport | dict[str, Any]] = deque()
        """Private output in report order: execution reports and the answers to queries."""
        self.held: list[ExecReport | dict[str, Any]] | None = None
        """Private output held back while a resume reads the journal (None: not resuming)."""
        self.exec_port: ReportPort | None = None
        self.account = 0
        self.cancel_on_disconnect = False
        self.stats: dict[str, Any] | None = None
        self.watch_stats = False
        self.closing = False
        self.close_reason = ""
        self.failed_logins = 0
        self._event = asyncio.Event()
        now = time.monotonic()
        self._orders = TokenBucket(gw.orders_per_second, gw.order_burst, now)
        self._requests = TokenBucket(settings.requests_per_second, settings.request_burst, now)
        self._replays = TokenBucket(settings.replays_per_second,
                                    max(1.0, 2 * settings.replays_per_second), now)
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

    def deliver_reports(self, reports: Sequence[ExecReport | dict[str, Any]]) -> None:
        """The one entry for this session's execution reports (and, in the same order, the
        answers to its order queries): queue them for the sender (reports are formatted
        there by :func:`exec_json`); held back while a resume reads the journal; too many
        unread closes the session."""
        queue = self.held if self.held is not None else self.execs
        if len(queue) + len(reports) > self.gw.settings.exec_capacity:
            self.slow("execution reports not read")
            return
        queue.extend(reports)
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
            out.extend(exec_json(formats.get(r.symbol), r) if isinstance(r, ExecReport) else r
                       for r in self.execs)
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
            elif isinstance(op, CancelOp):
                self.cancel(op)
            elif isinstance(op, ReplaceOp):
                self.replace(op)
            elif isinstance(op, OrderStatusOp):
                self.order_status(op)
            elif isinstance(op, OpenOrdersOp):
                self.open_orders(op)
            elif isinstance(op, MassCancelOp):
                self.mass_cancel(op)
            else:
                self.replay(op)
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

    def _symbols(self, pattern: str) -> list[str]:
        """The symbols ``pattern`` names: itself, or with ``*`` wildcards (any run of
        characters) every configured symbol it matches, in configuration order."""
        if "*" not in pattern:
            self._check_symbol(pattern)
            return [pattern]
        rx = re.compile("".join(".*" if part == "*" else re.escape(part)
                                for part in re.split(r"(\*)", pattern)) + r"\Z")
        found = [s for s in self.gw.formats if rx.match(s)]
        if not found:
            raise WsError("unknown_symbol", f"no symbol matches {pattern!r}")
        return found

    def _buffer(self, channel: str, requested: int | None) -> int:
        """The buffer a feed gets: the client's choice, at most the server's limit."""
        s = self.gw.settings
        limit = {"depth": s.max_depth_levels, "trades": s.trades_capacity,
                 "bars": s.bars_capacity}.get(channel, 1)
        if requested is None:
            return limit
        if requested > limit and channel in ("depth", "trades", "bars"):
            raise WsError("invalid_message", f"buffer {requested} is above the server's limit "
                                             f"{limit} for {channel}")
        return requested if channel != "bbo" else 1

    def subscribe(self, op: SubscribeOp) -> None:
        channels = self._check_channels(op.channels)
        market = [c for c in channels if c != "stats"]
        limit = self.gw.settings.max_subscriptions
        symbols: list[str] = []
        buffers: dict[str, int] = {}
        if market:
            if not op.symbol:
                raise WsError("invalid_message", f"channels {market} need a 'symbol'")
            symbols = self._symbols(op.symbol)
            buffers = {c: self._buffer(c, op.buffer) for c in market}
            new = sum(1 for c in market for s in symbols if (c, s) not in self.feeds)
            if len(self.feeds) + new > limit:
                raise WsError("too_many_subscriptions",
                              f"at most {limit} (channel, symbol) subscriptions per session")
        reply: dict[str, Any] = {"type": "subscribed", "symbol": op.symbol, "channels": channels}
        if market:
            reply.update(symbols=symbols, policy=op.policy, buffer=buffers)
        self.reply(reply)
        if "stats" in channels and not self.watch_stats:
            self.watch_stats = True
            self.gw.counters.stats_watchers += 1
            sampler = self.gw.sampler
            if sampler.latest:  # else the next tick brings it (a copy: latest is shared)
                self.stats = {**sampler.latest, "stages": sampler.stages()}
        formats = self.gw.formats
        for symbol in symbols:
            for channel in market:
                self._drop_feed(channel, symbol)
                self.feeds[(channel, symbol)] = self._open_feed(
                    channel, symbol, formats[symbol], buffers[channel], op.policy)
        self.wake()

    def _open_feed(self, channel: str, symbol: str, fmt: Format, buffer: int,
                   policy: str) -> Feed:
        gw = self.gw
        settings = gw.settings
        publisher = gw.exchange.publisher
        bus = gw.exchange.bus
        opts: dict[str, Any] = {"capacity": settings.bus_capacity, "policy": "drop_oldest",
                                "name": f"ws-{id(self):x}-{channel}.{symbol}"}
        on_loss = self.slow if policy == "disconnect" else None
        feed: Feed
        if channel == "depth":
            feed = DepthFeed(publisher, symbol, fmt, buffer, self.wake, gw.counters, on_loss,
                             gw.shared)
            _snap, feed.sub = publisher.subscribe_depth(symbol, batch_callback=feed.on_batch,
                                                        **opts)
        elif channel == "bbo":
            feed = BboFeed(publisher, symbol, fmt, self.wake)
            feed.sub = bus.subscribe(f"bbo.{symbol}", batch_callback=feed.on_batch, **opts)
        elif channel == "trades":
            feed = SequencedFeed("trades", symbol, buffer, functools.partial(trade_json, fmt),
                                 self.wake, gw.counters, on_loss, gw.shared)
            feed.sub = bus.subscribe(f"trades.{symbol}", batch_callback=feed.on_batch, **opts)
        else:
            feed = SequencedFeed("bars", symbol, buffer, functools.partial(bar_json, fmt),
                                 self.wake, gw.counters, on_loss, gw.shared)
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
        symbols: list[str] = []
        if channels is None or any(c != "stats" for c in channels):
            if not op.symbol:
                raise WsError("invalid_message", "unsubscribe needs a 'symbol'")
            symbols = self._symbols(op.symbol)
        removed: list[str] = []
        for channel in channels if channels is not None else MARKET_CHANNELS:
            if channel == "stats":
                if self.watch_stats:
                    self.watch_stats = False
                    self.gw.counters.stats_watchers -= 1
                    self.stats = None
                    removed.append(channel)
                continue
            dropped = [self._drop_feed(channel, symbol) for symbol in symbols]
            if any(dropped):
                removed.append(channel)
        self.reply({"type": "unsubscribed", "symbol": op.symbol, "channels": removed})

    def unsubscribe_all(self) -> None:
        """Release every bus subscription and timer of this session (first cancelling its
        orders if it logged in with ``cancel_on_disconnect``). Idempotent."""
        for channel, symbol in list(self.feeds):
            self._drop_feed(channel, symbol)
        port = self.exec_port
        if port is not None:
            if self.cancel_on_disconnect:
                self.cancel_on_disconnect = False  # once
                with contextlib.suppress(ExchangeStopped):  # a full ring: retried
                    self.gw.services.cancel_on_disconnect(port, self.account)
            port.close()
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
        being looked at. ``resume_from=N`` replays the account's reports ``N+1 ..
        last_report_seq`` (from memory or the journal) before any live one."""
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
        missed: list[ExecReport] | None = []
        last = gw.exchange.reports.last_seq(acct.id)
        if op.resume_from is not None:
            try:
                last, missed = gw.services.resume(acct.id, op.resume_from)
            except ResumeError as exc:
                raise WsError("resume_unavailable", str(exc)) from None
        self.account = acct.id
        self.cancel_on_disconnect = op.cancel_on_disconnect
        gw.admission.logged_in(self.address, self.probation)
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        # Attached in the same loop turn as ``last`` was read: every live report is
        # numbered above ``last``, every missed one at or below it.
        self._subscribe_reports(acct.id)
        self.reply({"type": "login", "account": acct.id, "name": acct.name,
                    "last_report_seq": last, "cancel_on_disconnect": op.cancel_on_disconnect})
        if missed is None:  # not all in memory: read the journal, hold live output meanwhile
            assert op.resume_from is not None
            self.held = []
            self._resume_task = asyncio.get_running_loop().create_task(
                self._resume_from_journal(acct.id, op.resume_from, last))
        elif missed:
            self.deliver_reports(missed)

    async def _resume_from_journal(self, account: int, after: int, last: int) -> None:
        try:
            missed = await self.gw.services.missed(account, after, last)
        except Exception as exc:  # ResumeError or a journal read error: say so, then close
            log.error("ws session %s: resume failed: %s", self.address, exc)
            self.held = None
            self.error("resume_failed", f"resume failed: {exc}")
            self._shut(f"resume failed: {str(exc)[:80]}")
            return
        held = self.held or []
        self.held = None
        self.deliver_reports([*missed, *held])

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

    def _submit(self, cmd: NewOrder | Cancel | Replace) -> None:
        try:
            self.gw.exchange.submit(cmd, self._on_reply, self.exec_port)
        except ExchangeBusy as exc:
            raise WsError("busy", str(exc)) from None
        except ExchangeUnavailable as exc:  # before ExchangeStopped: it is one
            raise WsError("unavailable", str(exc)) from None
        except ExchangeStopped as exc:
            raise WsError("stopping", str(exc)) from None
        self.gw.counters.orders += 1

    def _logged_in(self) -> int:
        if not self.account:
            raise WsError("not_authenticated", _NOT_LOGGED_IN)
        return self.account

    @staticmethod
    def _price(inst: Instrument, value: str | int | None, field: str) -> int:
        """A decimal price as ticks (0 when absent); off-tick or malformed is
        ``invalid_order`` naming the field, never rounded."""
        if value is None:
            return 0
        try:
            return inst.price_from_str(str(value))
        except InstrumentError as exc:
            raise WsError("invalid_order", f"{field}: {exc}") from None

    @staticmethod
    def _qty(inst: Instrument, value: str | int | None, field: str) -> int:
        if value is None:
            return 0
        try:
            return inst.qty_from_str(str(value))
        except InstrumentError as exc:
            raise WsError("invalid_order", f"{field}: {exc}") from None

    def new_order(self, op: NewOrderOp) -> None:
        account = self._logged_in()
        inst = self._check_symbol(op.symbol).inst
        self._check_client_order_id(op.client_order_id)
        order_type = _ORDER_TYPE[op.order_type]
        quantity = self._qty(inst, op.quantity, "quantity")
        price = 0
        if order_type in (LIMIT, STOP_LIMIT):
            if op.price is None:
                raise WsError("invalid_order", f"a {op.order_type} order needs a 'price'")
            price = self._price(inst, op.price, "price")
        if order_type in (STOP, STOP_LIMIT) and op.stop_price is None:
            raise WsError("invalid_order", f"a {op.order_type} order needs a 'stop_price'")
        if op.tif == "gtd" and not op.expire_time:
            raise WsError("invalid_order", "a gtd order needs an 'expire_time' (engine ns)")
        # Everything else (stop price on a limit order, display quantity above the total,
        # post-only on a market order, ...) is the engine's to reject, typed, in sequence.
        stop_price = self._price(inst, op.stop_price, "stop_price")
        display = self._qty(inst, op.display_quantity, "display_quantity")
        self._take_token()
        self._submit(NewOrder(
            account=account, symbol=op.symbol, side=BUY if op.side == "buy" else SELL,
            quantity=quantity, price=price, order_type=order_type, tif=_TIF[op.tif],
            client_order_id=op.client_order_id, expire_time=op.expire_time,
            post_only=op.post_only, stp=_STP[op.stp], stop_price=stop_price,
            display_quantity=display))

    def cancel(self, op: CancelOp) -> None:
        account = self._logged_in()
        self._check_symbol(op.symbol)
        self._check_client_order_id(op.client_order_id)
        if not op.order_id and not op.client_order_id:
            raise WsError("invalid_message", "cancel needs 'order_id' or 'client_order_id'")
        self._take_token()
        self._submit(Cancel(account=account, symbol=op.symbol, order_id=op.order_id,
                            orig_client_order_id=op.client_order_id))

    def replace(self, op: ReplaceOp) -> None:
        account = self._logged_in()
        inst = self._check_symbol(op.symbol).inst
        self._check_client_order_id(op.client_order_id)
        self._check_client_order_id(op.orig_client_order_id)
        if not op.order_id and not op.orig_client_order_id:
            raise WsError("invalid_message",
                          "replace needs 'order_id' or 'orig_client_order_id'")
        price = self._price(inst, op.price, "price")
        quantity = self._qty(inst, op.quantity, "quantity")
        stop_price = self._price(inst, op.stop_price, "stop_price")
        display = self._qty(inst, op.display_quantity, "display_quantity")
        if not (price or quantity or stop_price or display):
            raise WsError("invalid_order", "replace changes nothing: give 'price', "
                                           "'quantity', 'stop_price' or 'display_quantity'")
        self._take_token()
        self._submit(Replace(account=account, symbol=op.symbol, order_id=op.order_id,
                             orig_client_order_id=op.orig_client_order_id, price=price,
                             quantity=quantity, client_order_id=op.client_order_id,
                             stop_price=stop_price, display_quantity=display))

    # -- venue services: order status, open orders, mass cancel (tickline.venue) ---------------

    def _order_json(self, state: OrderState) -> dict[str, Any]:
        fmt = self.gw.formats.get(state.symbol)
        price = fmt.price if fmt is not None else str
        qty = fmt.qty if fmt is not None else str
        avg = state.avg_price
        avg_text = None
        if avg is not None and fmt is not None:
            avg_text = fmt.vwap(state.cum_notional, state.cum_quantity)
        return {"order_id": state.order_id, "client_order_id": state.client_order_id,
                "symbol": state.symbol, "side": side_name(state.side),
                "status": _STATUS.get(state.status, str(state.status)),
                "price": price(state.price), "quantity": qty(state.quantity),
                "leaves": qty(state.leaves), "cum_quantity": qty(state.cum_quantity),
                "avg_price": avg_text}

    def _venue_call(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except ExchangeBusy as exc:
            raise WsError("busy", str(exc)) from None
        except ExchangeUnavailable as exc:  # before ExchangeStopped: it is one
            raise WsError("unavailable", str(exc)) from None
        except ExchangeStopped as exc:
            raise WsError("stopping", str(exc)) from None

    def order_status(self, op: OrderStatusOp) -> None:
        account = self._logged_in()
        symbol = op.symbol
        if symbol:
            self._check_symbol(symbol)
        self._check_client_order_id(op.client_order_id)
        if not op.order_id and not op.client_order_id:
            raise WsError("invalid_message",
                          "order_status needs 'order_id' or 'client_order_id'")
        rid = op.id

        def answer(state: OrderState | None) -> None:
            if state is None or (symbol and state.symbol != symbol):
                self.gw.counters.errors["unknown_order"] = (
                    self.gw.counters.errors.get("unknown_order", 0) + 1)
                self.deliver_reports([{"type": "error", "code": "unknown_order",
                                       "message": f"unknown order "
                                                  f"{op.order_id or op.client_order_id!r}",
                                       "op": "order_status", "id": rid}])
            else:
                self.deliver_reports([{"type": "order_status", "id": rid,
                                       "order": self._order_json(state)}])

        self._venue_call(self.gw.services.order_status, account, op.order_id,
                         op.client_order_id, answer)

    def open_orders(self, op: OpenOrdersOp) -> None:
        account = self._logged_in()
        if op.symbol:
            self._check_symbol(op.symbol)
        rid = op.id

        def answer(found: list[OrderState]) -> None:
            self.deliver_reports([{"type": "open_orders", "id": rid, "symbol": op.symbol,
                                   "orders": [self._order_json(s) for s in found]}])

        self._venue_call(self.gw.services.open_orders, account, op.symbol or None, answer)

    def mass_cancel(self, op: MassCancelOp) -> None:
        account = self._logged_in()
        if op.symbol:
            self._check_symbol(op.symbol)
        side = 0 if op.side is None else (BUY if op.side == "buy" else SELL)
        rid = op.id

        def answer(_cmd: Command, _events: list[Event], reports: list[ExecReport]) -> None:
            if reports and reports[0].kind == ExecKind.REJECTED:  # cluster: spans shards
                r = reports[0]
                self.deliver_reports([{"type": "error", "code": reject_reason_name(
                    r.reason).lower(), "message": r.text, "op": "mass_cancel", "id": rid}])
                return
            cancelled = sum(1 for r in reports if r.kind == ExecKind.CANCELLED)
            self.deliver_reports([*reports, {"type": "mass_cancelled", "id": rid,
                                             "symbol": op.symbol, "side": op.side,
                                             "count": cancelled}])

        self._take_token()
        self._venue_call(self.gw.services.mass_cancel, account, op.symbol, side, answer,
                         self.exec_port)
        self.gw.counters.orders += 1

    # -- gap recovery ----------------------------------------------------------------------

    def replay(self, op: ReplayOp) -> None:
        """A missed range of ``trades``/``bars`` from the gateway's topic history, else a
        fresh snapshot (recent messages and the ``seq`` the live feed continues from);
        ``depth``: a fresh depth snapshot in the feed's place."""
        if op.channel not in MARKET_CHANNELS:
            raise WsError("unknown_channel", f"cannot replay channel {op.channel!r}; expected "
                                             f"depth, trades or bars")
        fmt = self._check_symbol(op.symbol)
        if op.channel == "bbo":
            raise WsError("invalid_message", "bbo has no history: it is only the latest")
        feed = self.feeds.get((op.channel, op.symbol))
        if op.channel == "depth":
            if not isinstance(feed, DepthFeed):
                raise WsError("invalid_message", f"not subscribed to depth of {op.symbol}")
            feed.resync_now()
            self.wake()
            return
        if op.to_seq < op.from_seq:
            raise WsError("invalid_message", f"to_seq {op.to_seq} < from_seq {op.from_seq}")
        if not self._replays.take(time.monotonic()):
            raise WsError("rate_limited", f"more than {self.gw.settings.replays_per_second:g} "
                                          f"replays/s")
        convert = trade_json if op.channel == "trades" else bar_json
        topic = _TOPIC[op.channel].format(op.symbol)
        history = self.gw.topic_history
        got = history.range(topic, op.from_seq, op.to_seq)
        self.gw.counters.replays += 1
        if got is not None:
            self.reply({"type": "replay", "id": op.id, "channel": op.channel,
                        "symbol": op.symbol, "from_seq": op.from_seq, "to_seq": op.to_seq,
                        "messages": [convert(fmt, m) for m in got]})
            return
        seq = history.last_seq(topic)
        recent = history.recent(topic)
        if isinstance(feed, SequencedFeed):
            feed.skip_to(seq)
        self.gw.counters.replay_snapshots += 1
        self.reply({"type": "snapshot", "id": op.id, "channel": op.channel,
                    "symbol": op.symbol, "seq": seq, "resync": True,
                    "messages": [convert(fmt, m) for m in recent]})
