"""The HTTP and WebSocket gateway: ``/metrics``, ``/health``, ``/book/<symbol>``, ``/stats.json``,
the live dashboard page (``/``) and its JSON WebSocket feed (``/ws``), all on one port.

Why ``websockets`` and not a hand-written HTTP handler
-----------------------------------------------------
One port serves both plain HTTP and WebSocket. :func:`websockets.asyncio.server.serve` parses
every request with its strict HTTP/1.1 parser (request line and header lines at most 8 KiB,
at most 128 headers, request bodies refused) and hands it to :meth:`HttpGateway._route`
(its ``process_request`` hook), which answers the plain HTTP routes itself and lets ``/ws``
go on to the opening handshake. The WebSocket framing, masking, ping/pong, close handshake,
``max_size`` and write-buffer flow control are then the library's well-tested code, not ours.
The price is one connection per HTTP request (``Connection: close``, no keep-alive), which
is irrelevant here: these routes are scraped about once a second, and measured on the
development machine a client doing sequential ``GET /book/AAPL`` requests gets about 2,000
requests/s (loopback, new connection each) -- three orders of magnitude above a Prometheus
scrape. A hand-written handler would save per-request connection setup and nothing else.

Endpoints
---------
=====================  ===================================================================
``GET /``              the dashboard (a self-contained HTML page, no external fetches)
``GET /metrics``       Prometheus text 0.0.4: the server's metrics plus this gateway's own
``GET /health``        ``server.health()`` as JSON; 200 when ``status`` is ``ok``, else 503
``GET /book/SYM``      ``?depth=N`` (1..1000, default 10): levels best first as decimal
                       strings, the ``depth.SYM`` topic sequence, best bid and ask; 404 with
                       a JSON error for an unknown symbol, 400 for a bad ``depth``
``GET /stats.json``    stage latency percentiles, throughput and the recent latency
                       distribution (what the dashboard's ``stats`` channel pushes)
``GET /ws``            the WebSocket (below)
=====================  ===================================================================

Anything else is 404, a method other than GET is 405; every error body is JSON
``{"error": code, "message": text}``. A request whose ``Origin`` names another host than its
``Host`` header is refused (403): a web page elsewhere cannot drive the WebSocket from a
user's browser.

WebSocket protocol
------------------
Client frames are JSON objects with an ``op`` (decoded with typed ``msgspec`` structs, never
``eval``/pickle); **every server frame is a JSON array of one or more messages**, each an
object with a ``type``. Prices and quantities are decimal strings (converted at this edge
with the instrument's ``price_to_str``/``qty_to_str``); sides are ``"buy"``/``"sell"``.

``{"op":"subscribe","symbol":"AAPL","channels":["depth","trades","bbo","bars"]}``
    replies ``subscribed``, then per channel: ``depth`` -> a ``snapshot`` (every level,
    ``seq``) followed by ``depth`` updates with ``first_seq``/``seq``: ``first_seq`` is always
    the previous ``seq + 1``, and the levels listed (``[price, quantity, orders]``; quantity
    ``"0"`` and 0 orders = the level is gone) are the latest state of each level changed in
    ``first_seq..seq`` (depth conflated by level: exact, however far behind the client is).
    ``trades`` -> ``trade`` messages; ``bbo`` -> the current ``bbo``, then each change (only
    the latest is kept for a slow client); ``bars`` -> ``bar`` (1 s OHLCV and VWAP). The
    ``stats`` channel (no symbol) pushes a ``stats`` message about once a second.
``{"op":"unsubscribe","symbol":"AAPL","channels":[...]}``
    (``channels`` omitted = all of that symbol's) replies ``unsubscribed``.
``{"op":"ping","id":7}``
    replies ``{"type":"pong","id":7}``.
``{"op":"login","key":"demo-key-1"}``
    authenticates an account from the server configuration; replies ``login`` and from
    then on streams that account's private ``exec`` reports.
``{"op":"new_order","symbol":"AAPL","side":"buy","price":"101.25","quantity":"10",
"order_type":"limit","tif":"gtc","client_order_id":"c1","post_only":false}``
    submits through :meth:`~tickline.exchange.Exchange.submit` (after login); the outcome
    arrives as ``exec`` reports (``kind``: new, rejected, fill, cancelled, replaced,
    expired).
``{"op":"cancel","symbol":"AAPL","order_id":5}`` (or ``"client_order_id":"c1"``)
    cancels one of the account's own orders.

Errors are ``{"type":"error","code":...,"message":...}`` with ``code`` one of
``invalid_json``, ``invalid_message`` (wrong shape or types), ``unknown_op``,
``unknown_symbol``, ``unknown_channel``, ``too_large``, ``binary_not_supported``,
``too_many_subscriptions``, ``not_authenticated``, ``bad_credentials``, ``login_disabled``,
``already_logged_in``, ``invalid_order``, ``rate_limited``, ``busy`` and ``stopping``; a
request that fails changes nothing. Frames above ``max_message_bytes`` get ``too_large``;
above the library's hard ``max_size`` the connection is closed with code 1009.

Slow consumers
--------------
A WebSocket client never slows the exchange. Market data reaches a session through bus
callbacks that only update the session's bounded buffers: depth is conflated by level (at
most ``max_depth_levels`` distinct levels pending; beyond that, or on a sequence gap, the
pending changes are dropped and the next frame carries a fresh ``snapshot`` with
``"resync": true``); trades and bars are bounded deques that drop the oldest and announce
the hole with a ``gap`` message (``channel``, ``from_seq``, ``to_seq``); BBO and stats keep
only the latest. One sender task per session drains everything pending into one frame per
wake-up (natural batching); if one frame cannot be written within ``send_timeout`` seconds,
or the session's own replies or private reports overflow their bounds, the session is
closed as a slow consumer (code 1008, counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import importlib.resources
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickline.core.metrics import LatencyRecorder, prometheus_text
from tickline.exchange import Exchange, ExchangeBusy, ExchangeStopped
from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    Command,
    Event,
    Instrument,
    InstrumentError,
    NewOrder,
    RejectReason,
)
from tickline.matching.types import FOK, GTC, IOC, LIMIT, MARKET
from tickline.stream import (
    Bar,
    Bbo,
    DepthDelta,
    ExecKind,
    ExecReport,
    Subscription,
    TradeTick,
)
from tickline.stream.routing import ReportPort

if TYPE_CHECKING:
    from tickline.config import ServerConfig

__all__ = ["GatewayStatistics", "HttpGateway", "ServerLike", "hdr_summary"]

log = logging.getLogger(__name__)

_JSON = "application/json"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_ROUTES = ("/", "/metrics", "/health", "/book", "/stats.json", "/ws", "other")
_MARKET_CHANNELS = ("depth", "trades", "bbo", "bars")
_CHANNELS = (*_MARKET_CHANNELS, "stats")
_MAX_BOOK_DEPTH = 1000
_SIDE_NAME = {BUY: "buy", SELL: "sell"}
_EXEC_KIND = {int(k): k.name.lower() for k in ExecKind}
_TIF = {"gtc": GTC, "ioc": IOC, "fok": FOK}


class ServerLike(Protocol):
    """What the gateway needs from :class:`tickline.server.Server` (tests may pass a
    stand-in). ``config`` (optional) supplies the account keys for WebSocket login."""

    @property
    def exchange(self) -> Exchange: ...

    def prometheus(self) -> str: ...

    def health(self) -> dict[str, Any]: ...


# --- inbound WebSocket requests (typed decode, tagged on "op") ------------------------------

_Str64 = Annotated[str, msgspec.Meta(max_length=64)]
_Decimal = Annotated[str, msgspec.Meta(max_length=40)] | int


class _Subscribe(msgspec.Struct, tag_field="op", tag="subscribe", forbid_unknown_fields=True):
    channels: Annotated[list[_Str64], msgspec.Meta(max_length=16)]
    symbol: _Str64 = ""


class _Unsubscribe(msgspec.Struct, tag_field="op", tag="unsubscribe",
                   forbid_unknown_fields=True):
    symbol: _Str64 = ""
    channels: Annotated[list[_Str64], msgspec.Meta(max_length=16)] | None = None


class _Ping(msgspec.Struct, tag_field="op", tag="ping", forbid_unknown_fields=True):
    id: int | _Str64 | None = None


class _Login(msgspec.Struct, tag_field="op", tag="login", forbid_unknown_fields=True):
    key: Annotated[str, msgspec.Meta(max_length=256)]


class _NewOrder(msgspec.Struct, tag_field="op", tag="new_order", forbid_unknown_fields=True):
    symbol: _Str64
    side: Literal["buy", "sell"]
    quantity: _Decimal
    price: _Decimal | None = None
    order_type: Literal["limit", "market"] = "limit"
    tif: Literal["gtc", "ioc", "fok"] = "gtc"
    client_order_id: _Str64 = ""
    post_only: bool = False


class _Cancel(msgspec.Struct, tag_field="op", tag="cancel", forbid_unknown_fields=True):
    symbol: _Str64
    order_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    client_order_id: _Str64 = ""


_Op = _Subscribe | _Unsubscribe | _Ping | _Login | _NewOrder | _Cancel
_OP_NAMES = ("subscribe", "unsubscribe", "ping", "login", "new_order", "cancel")


class _Envelope(msgspec.Struct):
    """Only to classify a failed decode: is ``op`` there, and is it a known one?"""

    op: str


_op_decoder = msgspec.json.Decoder(_Op)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_encoder = msgspec.json.Encoder()


class _Error(Exception):
    """A typed error for the client: ``code`` and a message naming the value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _classify_decode_error(raw: str | bytes, exc: Exception) -> _Error:
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return _Error("invalid_json", f"not valid JSON: {exc}")
    try:
        env = _envelope_decoder.decode(raw)
    except msgspec.ValidationError:
        return _Error("invalid_message", f"a request is a JSON object with a string 'op': {exc}")
    except msgspec.DecodeError as e:  # pragma: no cover - it decoded once already
        return _Error("invalid_json", f"not valid JSON: {e}")
    if env.op not in _OP_NAMES:
        return _Error("unknown_op", f"unknown op {env.op[:64]!r}; expected one of "
                                    f"{', '.join(_OP_NAMES)}")
    return _Error("invalid_message", f"invalid {env.op!r} request: {exc}")


# --- edge formatting ---------------------------------------------------------------------------


class _Format:
    """Decimal-string conversion for one instrument (memoized: prices repeat)."""

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.price = functools.lru_cache(maxsize=8192)(inst.price_to_str)
        self.qty = functools.lru_cache(maxsize=8192)(inst.qty_to_str)
        self._vwap_scale = 10 ** 4

    def vwap(self, notional: int, volume: int) -> str:
        """``notional / volume`` in price units, four more decimals than prices, rounded
        half up, computed in integers (no float at the edge)."""
        if volume <= 0:
            return ""
        scaled = (notional * self._vwap_scale * 2 + volume) // (volume * 2)
        d = self.inst.price_decimals + 4
        sign = "-" if scaled < 0 else ""
        whole, frac = divmod(abs(scaled), 10 ** d)
        return f"{sign}{whole}.{frac:0{d}d}"

    def levels(self, levels: Sequence[tuple[int, int, int]]) -> list[tuple[str, str, int]]:
        price, qty = self.price, self.qty
        return [(price(p), qty(q), c) for p, q, c in levels]


def _side(side: int) -> str:
    return _SIDE_NAME.get(side, str(side))


# --- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayStatistics:
    """A frozen view of the gateway's counters (see :meth:`HttpGateway.statistics`)."""

    http_requests: int
    ws_sessions_opened: int
    ws_sessions_active: int
    ws_sessions_refused: int
    ws_frames_sent: int
    ws_messages_sent: int
    ws_bytes_sent: int
    ws_slow_consumer_disconnects: int
    ws_resyncs: int
    ws_gaps: int
    ws_errors: int
    ws_orders: int
    ws_pending_max: int
    """The most messages waiting in any one session's buffers now (each is bounded)."""


#: Latency distribution buckets for the dashboard: powers of two in ns, 1 us .. ~17 s.
_BUCKET_EXPONENTS = tuple(range(10, 35))


class _Sampler:
    """Once a second: throughput from the exchange's counters, stage percentiles and the
    distribution of the last second's end-to-end latencies (difference of two cumulative
    HDR bucket scans). Runs on a ``call_later`` timer on the loop, not a polling task; the
    histogram work (about 2 ms per sample: six recorders' counters summed in C) is done only
    while a WebSocket session watches the ``stats`` channel."""

    def __init__(self, gateway: HttpGateway, interval: float) -> None:
        self.gw = gateway
        self.interval = interval
        self.history: deque[dict[str, float]] = deque(maxlen=120)
        self.latest: dict[str, Any] = {}
        self._prev: tuple[float, int, int, int, int] | None = None
        self._prev_buckets: list[int] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.started = time.monotonic()

    def start(self) -> None:
        self._prev = self._counters()
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _counters(self) -> tuple[float, int, int, int, int]:
        ex = self.gw.exchange
        return (time.monotonic(), ex.commands, ex.events, ex.engine.next_trade_id - 1,
                self.gw._ws_messages)

    def _tick(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)
        try:
            self.sample()
        except Exception:  # the dashboard must never take the server down
            log.exception("stats sample failed")

    def sample(self) -> dict[str, Any]:
        """Take one sample now; returns the stats dict (also kept as :attr:`latest`)."""
        now = self._counters()
        prev = self._prev or now
        self._prev = now
        dt = now[0] - prev[0]
        rates = {
            "commands_per_s": (now[1] - prev[1]) / dt if dt > 0 else 0.0,
            "events_per_s": (now[2] - prev[2]) / dt if dt > 0 else 0.0,
            "trades_per_s": (now[3] - prev[3]) / dt if dt > 0 else 0.0,
            "ws_messages_per_s": (now[4] - prev[4]) / dt if dt > 0 else 0.0,
        }
        self.history.append({"t": round(now[0] - self.started, 3), **rates})
        watched = self.gw._stats_watchers > 0
        stats: dict[str, Any] = {
            "type": "stats",
            "uptime_s": round(now[0] - self.started, 3),
            "symbols": list(self.gw._formats),
            "commands": now[1],
            "events": now[2],
            "trades": now[3],
            "last_seq": self.gw.exchange.engine.last_seq,
            "rates": rates,
            "history": list(self.history),
            "stages": self._stages() if watched else {},
            "latency": self._distribution() if watched else self.latest.get("latency", {}),
            "gateway": {
                "ws_sessions": self.gw._ws_active,
                "ws_slow_consumer_disconnects": self.gw._ws_slow,
            },
        }
        self.latest = stats
        self.gw._push_stats(stats)
        return stats

    def _stages(self) -> dict[str, dict[str, int]]:
        ex = self.gw.exchange
        recorders: list[tuple[str, LatencyRecorder]] = [
            ("queue_wait", ex.processor.queue_wait),
            ("match", ex.stage_match),
            ("journal", ex.stage_journal),
            ("publish", ex.stage_publish),
            ("end_to_end", ex.processor.end_to_end),
        ]
        return {name: hdr_summary(rec) for name, rec in recorders}

    def _distribution(self) -> dict[str, Any]:
        rec = self.gw.exchange.processor.end_to_end
        hist = rec.histogram
        counts = memoryview(hist.counts).cast("B").cast("Q")
        limit = hist.counts_len
        edges = [min(hist.get_counts_array_index(1 << k), limit) for k in _BUCKET_EXPONENTS]
        cumulative = [sum(counts[: edges[0]])]
        cumulative.extend(sum(counts[a:b]) for a, b in zip(edges, [*edges[1:], limit],
                                                           strict=True))
        prev = self._prev_buckets
        self._prev_buckets = cumulative
        interval = cumulative if prev is None else [a - b for a, b in
                                                    zip(cumulative, prev, strict=True)]
        # bucket i counts values below 2**_BUCKET_EXPONENTS[i] (the first: everything below).
        uppers = [1 << k for k in _BUCKET_EXPONENTS] + [0]
        return {
            "name": "end_to_end (submit -> matched)",
            "unit": "ns",
            "buckets": [[u, c] for u, c in zip(uppers, interval, strict=True)],
        }


def hdr_summary(rec: LatencyRecorder) -> dict[str, int]:
    """``count``, ``max`` and the :data:`~tickline.core.metrics.PERCENTILES` of ``rec``
    (fast: see :func:`tickline.core.metrics.percentiles_of`). Runs on the event loop."""
    snap = rec.snapshot()
    return {"count": snap.count, "max": snap.max,
            **{f"p{p:g}": v for p, v in snap.percentiles.items()}}


# --- per-session feeds -------------------------------------------------------------------------


class _DepthFeed:
    """Depth for one session and symbol: pending level changes conflated by level."""

    __slots__ = ("fmt", "levels", "need_snapshot", "resync", "sent_seq", "seq", "session",
                 "sub", "symbol", "ts")

    def __init__(self, session: _Session, symbol: str, fmt: _Format) -> None:
        self.session = session
        self.symbol = symbol
        self.fmt = fmt
        self.levels: dict[tuple[int, int], tuple[int, int]] = {}
        self.seq = 0          # last delta folded into ``levels`` (or the snapshot's seq)
        self.sent_seq = 0     # last seq the client has
        self.ts = 0
        self.need_snapshot = True
        self.resync = False
        self.sub: Subscription | None = None

    def on_batch(self, _topic: str, msgs: Sequence[DepthDelta]) -> None:
        if not self.need_snapshot:
            levels = self.levels
            seq = self.seq
            for m in msgs:
                if m.seq <= seq:
                    continue  # already in the snapshot the client gets
                if m.seq != seq + 1 or len(levels) >= self.session.gw.max_depth_levels:
                    self._lost()
                    break
                seq = m.seq
                levels[(m.side, m.price)] = (m.quantity, m.order_count)
                self.ts = m.ts
            else:
                self.seq = seq
        self.session.wake()

    def _lost(self) -> None:
        self.need_snapshot = True
        self.resync = True
        self.levels.clear()

    def take(self, out: list[Any]) -> None:
        fmt = self.fmt
        if self.need_snapshot:
            snap = self.session.gw.exchange.publisher.depth_snapshot(self.symbol)
            self.need_snapshot = False
            self.levels.clear()
            self.seq = self.sent_seq = snap.seq
            out.append({"type": "snapshot", "channel": "depth", "symbol": self.symbol,
                        "seq": snap.seq, "ts": snap.ts, "resync": self.resync,
                        "bids": fmt.levels(snap.bids), "asks": fmt.levels(snap.asks)})
            if self.resync:
                self.session.gw._ws_resyncs += 1
            self.resync = False
            return
        if not self.levels:
            return
        price, qty = fmt.price, fmt.qty
        bids = [(price(p), qty(q), c) for (s, p), (q, c) in self.levels.items() if s == BUY]
        asks = [(price(p), qty(q), c) for (s, p), (q, c) in self.levels.items() if s != BUY]
        out.append({"type": "depth", "symbol": self.symbol, "first_seq": self.sent_seq + 1,
                    "seq": self.seq, "ts": self.ts, "bids": bids, "asks": asks})
        self.sent_seq = self.seq
        self.levels.clear()


class _SequencedFeed:
    """Trades or bars for one session and symbol: a bounded deque (drop oldest); a hole in
    the sequence becomes a ``gap`` message."""

    __slots__ = ("channel", "convert", "last_seq", "lost_from", "pending", "session", "sub",
                 "symbol")

    def __init__(self, session: _Session, channel: str, symbol: str, capacity: int,
                 convert: Callable[[Any], dict[str, Any]]) -> None:
        self.session = session
        self.channel = channel
        self.symbol = symbol
        self.convert = convert
        self.pending: deque[Any] = deque(maxlen=capacity)
        self.last_seq = -1  # unknown until the first message
        self.lost_from = 0  # the oldest seq the deque dropped since the last take (0 = none)
        self.sub: Subscription | None = None

    def on_batch(self, _topic: str, msgs: Sequence[Any]) -> None:
        pending = self.pending
        overflow = len(pending) + len(msgs) - (pending.maxlen or 0)
        if overflow > 0 and not self.lost_from:
            self.lost_from = pending[0].seq if pending else msgs[0].seq
        pending.extend(msgs)
        self.session.wake()

    def take(self, out: list[Any]) -> None:
        pending = self.pending
        if not pending:
            return
        last = self.last_seq
        if self.lost_from:
            last = self.lost_from - 1 if last < 0 else min(last, self.lost_from - 1)
            self.lost_from = 0
        convert = self.convert
        for m in pending:
            if last >= 0 and m.seq != last + 1:
                out.append({"type": "gap", "channel": self.channel, "symbol": self.symbol,
                            "from_seq": last + 1, "to_seq": m.seq - 1})
                self.session.gw._ws_gaps += 1
            last = m.seq
            out.append(convert(m))
        self.last_seq = last
        pending.clear()


class _BboFeed:
    """BBO for one session and symbol: only the latest matters."""

    __slots__ = ("latest", "session", "sub", "symbol")

    def __init__(self, session: _Session, symbol: str) -> None:
        self.session = session
        self.symbol = symbol
        self.latest: Bbo | None = session.gw.exchange.publisher.bbo(symbol)
        self.sub: Subscription | None = None

    def on_batch(self, _topic: str, msgs: Sequence[Bbo]) -> None:
        self.latest = msgs[-1]
        self.session.wake()

    def take(self, out: list[Any]) -> None:
        if self.latest is not None:
            out.append(self.session.gw._bbo_json(self.latest))
            self.latest = None


_Feed = _DepthFeed | _SequencedFeed | _BboFeed


# --- a WebSocket session -----------------------------------------------------------------------


class _Session:
    """One WebSocket client: its feeds, bounded outboxes and the single sender task."""

    def __init__(self, gw: HttpGateway, ws: ServerConnection) -> None:
        self.gw = gw
        self.ws = ws
        self.feeds: dict[tuple[str, str], _Feed] = {}
        self.control: deque[dict[str, Any]] = deque()
        self.execs: deque[ExecReport] = deque()
        self.exec_port: ReportPort | None = None
        self.account = 0
        self.stats: dict[str, Any] | None = None
        self.watch_stats = False
        self.closing = False
        self.close_reason = ""
        self._event = asyncio.Event()
        self._tokens = float(gw.order_burst)
        self._refill = time.monotonic()
        self._requests = float(gw.request_burst)
        self._requests_at = self._refill
        self.failed_logins = 0

    # -- queueing (called from the receiver and from bus callbacks) -----------------------

    def wake(self) -> None:
        self._event.set()

    def reply(self, msg: dict[str, Any]) -> None:
        if len(self.control) >= self.gw.control_capacity:
            self.slow("replies not read")
            return
        self.control.append(msg)
        self.wake()

    def error(self, code: str, message: str, **extra: Any) -> None:
        self.gw._ws_errors[code] = self.gw._ws_errors.get(code, 0) + 1
        self.reply({"type": "error", "code": code, "message": message, **extra})

    def on_reply(self, _cmd: Command, _events: list[Event], reports: list[ExecReport]) -> None:
        """The exchange's reply to one of this session's orders: its own reports."""
        self.on_exec(reports)

    def on_exec(self, msgs: Sequence[ExecReport]) -> None:
        """Reports for this session's account (a reply's, or unsolicited from the router)."""
        if len(self.execs) + len(msgs) > self.gw.exec_capacity:
            self.slow("execution reports not read")
            return
        self.execs.extend(msgs)
        self.wake()

    def slow(self, reason: str) -> None:
        """Give up on this client: close it as a slow consumer (counted once)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = f"slow consumer: {reason}"
        self.gw._ws_slow += 1
        self.unsubscribe_all()
        self.wake()

    def pending(self) -> int:
        """Messages waiting to be sent (depth counts pending levels). O(feeds)."""
        n = len(self.control) + len(self.execs) + (self.stats is not None)
        for feed in self.feeds.values():
            if isinstance(feed, _DepthFeed):
                n += len(feed.levels)
            elif isinstance(feed, _SequencedFeed):
                n += len(feed.pending)
            else:
                n += feed.latest is not None
        return n

    # -- the sender ----------------------------------------------------------------------------

    def collect(self) -> list[Any]:
        out: list[Any] = list(self.control)
        self.control.clear()
        for feed in self.feeds.values():
            feed.take(out)
        if self.execs:
            conv = self.gw._exec_json
            out.extend(conv(r) for r in self.execs)
            self.execs.clear()
        if self.stats is not None:
            out.append(self.stats)
            self.stats = None
        return out

    async def send_loop(self) -> None:
        gw = self.gw
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
            data = _encoder.encode(out)
            t0 = time.perf_counter_ns()
            try:
                await asyncio.wait_for(ws.send(data, text=True), gw.send_timeout)
            except TimeoutError:
                self.slow(f"a frame was not taken within {gw.send_timeout} s")
                break
            except ConnectionClosed:
                return
            gw._ws_send.record(time.perf_counter_ns() - t0)
            gw._ws_frames += 1
            gw._ws_messages += len(out)
            gw._ws_bytes += len(data)
        if self.closing:
            await self._close_slow()

    async def _close_slow(self) -> None:
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
        gw = self.gw
        if isinstance(raw, bytes):
            self.error("binary_not_supported", "send JSON requests as text frames")
            return
        if len(raw) > gw.max_message_bytes:
            self.error("too_large", f"request of {len(raw)} characters exceeds "
                                    f"max_message_bytes={gw.max_message_bytes}")
            return
        now = time.monotonic()
        self._requests = min(float(gw.request_burst),
                             self._requests + (now - self._requests_at) * gw.requests_per_second)
        self._requests_at = now
        if self._requests < 1.0:
            self.error("rate_limited", f"more than {gw.requests_per_second:g} requests/s")
            return
        self._requests -= 1.0
        try:
            op = _op_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            err = _classify_decode_error(raw, exc)
            self.error(err.code, err.message)
            return
        try:
            if isinstance(op, _Subscribe):
                self.subscribe(op)
            elif isinstance(op, _Unsubscribe):
                self.unsubscribe(op)
            elif isinstance(op, _Ping):
                self.reply({"type": "pong", "id": op.id})
            elif isinstance(op, _Login):
                self.login(op)
            elif isinstance(op, _NewOrder):
                self.new_order(op)
            else:
                self.cancel(op)
        except _Error as err:
            self.error(err.code, err.message, op=type(op).__struct_config__.tag)

    def _check_channels(self, channels: Sequence[str]) -> list[str]:
        unknown = [c for c in channels if c not in _CHANNELS]
        if unknown:
            raise _Error("unknown_channel", f"unknown channel {unknown[0]!r}; expected some "
                                            f"of {', '.join(_CHANNELS)}")
        if not channels:
            raise _Error("invalid_message", "channels must not be empty")
        return list(dict.fromkeys(channels))

    def _check_symbol(self, symbol: str) -> _Format:
        fmt = self.gw._formats.get(symbol)
        if fmt is None:
            raise _Error("unknown_symbol", f"unknown symbol {symbol!r}")
        return fmt

    def subscribe(self, op: _Subscribe) -> None:
        channels = self._check_channels(op.channels)
        market = [c for c in channels if c != "stats"]
        fmt: _Format | None = None
        if market:
            if not op.symbol:
                raise _Error("invalid_message", f"channels {market} need a 'symbol'")
            fmt = self._check_symbol(op.symbol)
            new = sum(1 for c in market if (c, op.symbol) not in self.feeds)
            if len(self.feeds) + new > self.gw.max_subscriptions:
                raise _Error("too_many_subscriptions",
                             f"at most {self.gw.max_subscriptions} (channel, symbol) "
                             f"subscriptions per session")
        self.reply({"type": "subscribed", "symbol": op.symbol, "channels": channels})
        if "stats" in channels and not self.watch_stats:
            self.watch_stats = True
            self.gw._stats_watchers += 1
            sampler = self.gw._sampler
            if sampler.latest:  # else the next tick brings it
                self.stats = {**sampler.latest, "stages": sampler._stages()}
        for channel in market:
            assert fmt is not None
            self._drop_feed(channel, op.symbol)
            self.feeds[(channel, op.symbol)] = self._open_feed(channel, op.symbol, fmt)
        self.wake()

    def _open_feed(self, channel: str, symbol: str, fmt: _Format) -> _Feed:
        gw = self.gw
        publisher = gw.exchange.publisher
        bus = gw.exchange.bus
        opts: dict[str, Any] = {"capacity": gw.bus_capacity, "policy": "drop_oldest",
                                "name": f"ws-{id(self):x}-{channel}.{symbol}"}
        feed: _Feed
        if channel == "depth":
            feed = _DepthFeed(self, symbol, fmt)
            _snap, feed.sub = publisher.subscribe_depth(symbol, batch_callback=feed.on_batch,
                                                        **opts)
        elif channel == "bbo":
            feed = _BboFeed(self, symbol)
            feed.sub = bus.subscribe(f"bbo.{symbol}", batch_callback=feed.on_batch, **opts)
        elif channel == "trades":
            feed = _SequencedFeed(self, "trades", symbol, gw.trades_capacity,
                                  functools.partial(_trade_json, fmt))
            feed.sub = bus.subscribe(f"trades.{symbol}", batch_callback=feed.on_batch, **opts)
        else:
            feed = _SequencedFeed(self, "bars", symbol, gw.bars_capacity,
                                  functools.partial(_bar_json, fmt))
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

    def unsubscribe(self, op: _Unsubscribe) -> None:
        channels = self._check_channels(op.channels) if op.channels is not None else None
        if channels is None or any(c != "stats" for c in channels):
            if not op.symbol:
                raise _Error("invalid_message", "unsubscribe needs a 'symbol'")
            self._check_symbol(op.symbol)
        removed: list[str] = []
        for channel in channels if channels is not None else _MARKET_CHANNELS:
            if channel == "stats":
                if self.watch_stats:
                    self.watch_stats = False
                    self.gw._stats_watchers -= 1
                    self.stats = None
                    removed.append(channel)
            elif self._drop_feed(channel, op.symbol):
                removed.append(channel)
        self.reply({"type": "unsubscribed", "symbol": op.symbol, "channels": removed})

    def unsubscribe_all(self) -> None:
        for channel, symbol in list(self.feeds):
            self._drop_feed(channel, symbol)
        if self.exec_port is not None:
            self.exec_port.close()
            self.exec_port = None
        if self.watch_stats:
            self.watch_stats = False
            self.gw._stats_watchers -= 1

    def login(self, op: _Login) -> None:
        accounts = self.gw._accounts
        if accounts is None:
            raise _Error("login_disabled", "this server has no account configuration")
        if self.account:
            raise _Error("already_logged_in", f"already logged in as account {self.account}")
        acct = accounts.get(op.key)
        if acct is None:
            self.failed_logins += 1
            if self.failed_logins >= 3:
                self.slow("too many failed logins")
            raise _Error("bad_credentials", "unknown account key")
        self.account = acct.id
        self.exec_port = self.gw.exchange.router.attach(acct.id, self.on_exec)
        self.reply({"type": "login", "account": acct.id, "name": acct.name})

    def _take_token(self) -> None:
        now = time.monotonic()
        gw = self.gw
        self._tokens = min(float(gw.order_burst),
                           self._tokens + (now - self._refill) * gw.orders_per_second)
        self._refill = now
        if self._tokens < 1.0:
            raise _Error("rate_limited", f"more than {gw.orders_per_second:g} orders/s "
                                         f"(burst {gw.order_burst})")
        self._tokens -= 1.0

    def _submit(self, cmd: NewOrder | Cancel) -> None:
        try:
            self.gw.exchange.submit(cmd, self.on_reply, self.exec_port)
        except ExchangeBusy as exc:
            raise _Error("busy", str(exc)) from None
        except ExchangeStopped as exc:
            raise _Error("stopping", str(exc)) from None
        self.gw._ws_orders += 1

    def new_order(self, op: _NewOrder) -> None:
        if not self.account:
            raise _Error("not_authenticated", "log in first ({'op': 'login', 'key': ...})")
        inst = self._check_symbol(op.symbol).inst
        try:
            quantity = inst.qty_from_str(str(op.quantity))
            if op.order_type == "limit":
                if op.price is None:
                    raise _Error("invalid_order", "a limit order needs a 'price'")
                price = inst.price_from_str(str(op.price))
            else:
                price = 0
        except InstrumentError as exc:
            raise _Error("invalid_order", str(exc)) from None
        self._take_token()
        self._submit(NewOrder(
            account=self.account, symbol=op.symbol, side=BUY if op.side == "buy" else SELL,
            quantity=quantity, price=price,
            order_type=LIMIT if op.order_type == "limit" else MARKET,
            tif=_TIF[op.tif], client_order_id=op.client_order_id,
            post_only=op.post_only))

    def cancel(self, op: _Cancel) -> None:
        if not self.account:
            raise _Error("not_authenticated", "log in first ({'op': 'login', 'key': ...})")
        self._check_symbol(op.symbol)
        if not op.order_id and not op.client_order_id:
            raise _Error("invalid_message", "cancel needs 'order_id' or 'client_order_id'")
        self._take_token()
        self._submit(Cancel(account=self.account, symbol=op.symbol, order_id=op.order_id,
                            orig_client_order_id=op.client_order_id))


def _trade_json(fmt: _Format, t: TradeTick) -> dict[str, Any]:
    return {"type": "trade", "symbol": t.symbol, "seq": t.seq, "ts": t.ts,
            "trade_id": t.trade_id, "price": fmt.price(t.price), "quantity": fmt.qty(t.quantity),
            "side": _side(t.aggressor_side)}


def _bar_json(fmt: _Format, b: Bar) -> dict[str, Any]:
    price = fmt.price
    return {"type": "bar", "symbol": b.symbol, "seq": b.seq, "window": b.window,
            "start": b.start, "end": b.end, "open": price(b.open), "high": price(b.high),
            "low": price(b.low), "close": price(b.close), "volume": fmt.qty(b.volume),
            "trades": b.trades, "vwap": fmt.vwap(b.notional, b.volume)}


# --- the gateway -----------------------------------------------------------------------------


def _reason_name(code: int) -> str:
    try:
        return RejectReason(code).name
    except ValueError:
        return str(code)


class HttpGateway:
    """HTTP routes and the WebSocket feed on one port (see the module doc).

    ``HttpGateway(server)`` then ``await start(host, port)`` (returns the bound port; 0 = any
    free port) and ``await close()``. Limits: ``max_message_bytes`` per WebSocket request
    (``too_large`` error), ``max_frame_bytes`` the library's hard limit (close 1009),
    ``max_sessions`` concurrent WebSocket sessions (503 beyond), ``max_subscriptions`` per
    session, ``send_timeout`` seconds for one frame before a slow consumer is closed,
    ``write_limit`` bytes buffered in user space per connection before a send waits, and
    ``send_buffer`` the kernel send buffer per WebSocket (``SO_SNDBUF``; ``None`` keeps the
    OS's autotuned default) -- together they bound what one slow client can hold.
    Single-threaded: everything runs on the server's event loop.
    """

    def __init__(
        self,
        server: ServerLike,
        *,
        max_message_bytes: int = 4096,
        max_frame_bytes: int = 65536,
        max_sessions: int = 256,
        max_subscriptions: int = 64,
        send_timeout: float = 5.0,
        write_limit: int = 256 * 1024,
        send_buffer: int | None = None,
        bus_capacity: int = 65536,
        max_depth_levels: int = 4096,
        trades_capacity: int = 1000,
        bars_capacity: int = 100,
        control_capacity: int = 256,
        exec_capacity: int = 10000,
        requests_per_second: float = 2000.0,
        request_burst: int = 4000,
        stats_interval: float = 1.0,
    ) -> None:
        self.server = server
        self.exchange: Exchange = server.exchange
        self.max_message_bytes = max_message_bytes
        self.max_frame_bytes = max_frame_bytes
        self.max_sessions = max_sessions
        self.max_subscriptions = max_subscriptions
        self.send_timeout = send_timeout
        self.write_limit = write_limit
        self.send_buffer = send_buffer
        self.bus_capacity = bus_capacity
        self.max_depth_levels = max_depth_levels
        self.trades_capacity = trades_capacity
        self.bars_capacity = bars_capacity
        self.control_capacity = control_capacity
        self.exec_capacity = exec_capacity
        self.requests_per_second = requests_per_second
        self.request_burst = request_burst
        config: ServerConfig | None = getattr(server, "config", None)
        self._accounts = config.account_by_key() if config is not None else None
        limits = config.limits if config is not None else None
        self.orders_per_second = limits.orders_per_second if limits is not None else 1000.0
        self.order_burst = limits.burst if limits is not None else 100
        self._formats = {i.symbol: _Format(i) for i in self.exchange.instruments}
        self._sampler = _Sampler(self, stats_interval)
        self._server: WsServer | None = None
        self._sessions: set[_Session] = set()
        self._dashboard = b""
        self.port = 0
        # counters (single writer: the event loop)
        self._requests: dict[tuple[str, int], int] = {}
        self._ws_opened = 0
        self._ws_active = 0
        self._ws_refused = 0
        self._ws_frames = 0
        self._ws_messages = 0
        self._ws_bytes = 0
        self._ws_slow = 0
        self._ws_resyncs = 0
        self._ws_gaps = 0
        self._ws_errors: dict[str, int] = {}
        self._ws_orders = 0
        self._stats_watchers = 0
        # Two significant figures (1 %) keep these histograms small (~4.6k counters), so a
        # scrape's percentile walk costs ~0.3 ms of loop time rather than ~3 ms.
        self._http_latency = LatencyRecorder("http_request_seconds", significant_figures=2)
        self._ws_send = LatencyRecorder("frame_send_seconds", significant_figures=2)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (0 = any free port) and serve; returns the bound port."""
        self._dashboard = (importlib.resources.files("tickline.gateway")
                           .joinpath("static/dashboard.html").read_bytes())
        self._server = await serve(
            self._session, host, port, process_request=self._route,
            max_size=self.max_frame_bytes, max_queue=16, write_limit=self.write_limit,
            compression=None, ping_interval=20, ping_timeout=20, close_timeout=2,
            open_timeout=10, server_header="tickline",
        )
        sockets = list(self._server.sockets)
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        self._sampler.start()
        return self.port

    async def close(self) -> None:
        """Stop listening, close every WebSocket (1001) and wait for them. Idempotent."""
        self._sampler.stop()
        server = self._server
        if server is None:
            return
        self._server = None
        for session in list(self._sessions):
            session.unsubscribe_all()
        server.close(close_connections=True)
        await server.wait_closed()

    def session_count(self) -> int:
        """WebSocket sessions open now."""
        return self._ws_active

    # -- HTTP ------------------------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        t0 = time.perf_counter_ns()
        route, response = self._dispatch(connection, request)
        status = response.status_code if response is not None else 101
        key = (route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        self._http_latency.record(time.perf_counter_ns() - t0)
        return response

    def _dispatch(self, connection: ServerConnection,
                  request: Request) -> tuple[str, Response | None]:
        parts = urlsplit(request.path)
        path = parts.path
        route = path if path in _ROUTES else ("/book" if path.startswith("/book/")
                                              else "other")
        method = getattr(request, "method", "GET")
        if method != "GET":
            return route, _error(405, "method_not_allowed",
                                 f"method {method!r} not allowed; use GET", allow="GET")
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, request.headers.get("Host")):
            return route, _error(403, "forbidden_origin",
                                 f"origin {origin[:100]!r} is not this server")
        if route == "/ws":
            if self._ws_active >= self.max_sessions:
                self._ws_refused += 1
                return route, _error(503, "too_many_sessions",
                                     f"at most {self.max_sessions} WebSocket sessions")
            return route, None
        if route == "/":
            return route, _response(200, self._dashboard, _HTML)
        if route == "/metrics":
            body = (self.server.prometheus() + self.prometheus()).encode()
            return route, _response(200, body, _PROMETHEUS)
        if route == "/health":
            health = self.server.health()
            status = 200 if health.get("status") == "ok" else 503
            return route, _response(status, _encoder.encode(health), _JSON)
        if route == "/stats.json":
            return route, _response(200, _encoder.encode(self.stats()), _JSON)
        if route == "/book":
            return route, self._book(unquote(path[len("/book/"):]), parts.query)
        return route, _error(404, "not_found", f"no route {path[:100]!r}")

    def _book(self, symbol: str, query: str) -> Response:
        fmt = self._formats.get(symbol)
        if fmt is None:
            return _error(404, "unknown_symbol", f"unknown symbol {symbol[:64]!r}")
        try:
            params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                              max_num_fields=8)
        except ValueError:
            return _error(400, "bad_query", f"malformed query string {query[:100]!r}")
        values = params.get("depth", ["10"])
        text = values[-1]
        if (len(values) != 1 or not (text.isascii() and text.isdigit()) or len(text) > 4
                or not 1 <= int(text) <= _MAX_BOOK_DEPTH):
            return _error(400, "bad_depth", f"depth must be an integer 1..{_MAX_BOOK_DEPTH}, "
                                            f"got {','.join(values)[:40]!r}")
        return _response(200, _encoder.encode(self.book(symbol, int(text))), _JSON)

    def book(self, symbol: str, depth: int = 10) -> dict[str, Any]:
        """The ``/book/<symbol>`` document: the best ``depth`` levels per side as decimal
        strings, consistent with ``depth.SYM`` sequence ``seq``. Raises ``KeyError`` for an
        unknown symbol."""
        fmt = self._formats[symbol]
        snap = self.exchange.publisher.depth_snapshot(symbol)
        price, qty = fmt.price, fmt.qty

        def levels(side: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
            return [{"price": price(p), "quantity": qty(q), "orders": c}
                    for p, q, c in side[:depth]]

        def best(side: list[tuple[int, int, int]]) -> dict[str, str] | None:
            return {"price": price(side[0][0]), "quantity": qty(side[0][1])} if side else None

        return {"symbol": symbol, "seq": snap.seq, "ts": snap.ts,
                "last_seq": self.exchange.engine.last_seq, "depth": depth,
                "best_bid": best(snap.bids), "best_ask": best(snap.asks),
                "bids": levels(snap.bids), "asks": levels(snap.asks)}

    def stats(self) -> dict[str, Any]:
        """The ``/stats.json`` document (the latest sample, with fresh stage percentiles)."""
        sampler = self._sampler
        latest = dict(sampler.latest) if sampler.latest else sampler.sample()
        latest["stages"] = sampler._stages()
        latest.pop("type", None)
        return latest

    # -- WebSocket -------------------------------------------------------------------------

    async def _session(self, ws: ServerConnection) -> None:
        if self.send_buffer is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        session = _Session(self, ws)
        self._sessions.add(session)
        self._ws_opened += 1
        self._ws_active += 1
        sender = asyncio.create_task(session.send_loop(), name="ws-sender")
        try:
            async for raw in ws:
                if session.closing:
                    break
                session.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            session.unsubscribe_all()
            if not sender.done():
                if session.closing:
                    with contextlib.suppress(Exception):
                        await sender
                else:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sender
            self._sessions.discard(session)
            self._ws_active -= 1

    def _push_stats(self, stats: dict[str, Any]) -> None:
        for session in self._sessions:
            if session.watch_stats:
                session.stats = stats
                session.wake()

    def _bbo_json(self, b: Bbo) -> dict[str, Any]:
        fmt = self._formats[b.symbol]
        price, qty = fmt.price, fmt.qty
        return {"type": "bbo", "symbol": b.symbol, "seq": b.seq, "ts": b.ts,
                "bid": price(b.bid_price) if b.bid_quantity else None,
                "bid_quantity": qty(b.bid_quantity),
                "ask": price(b.ask_price) if b.ask_quantity else None,
                "ask_quantity": qty(b.ask_quantity)}

    def _exec_json(self, r: ExecReport) -> dict[str, Any]:
        fmt = self._formats.get(r.symbol)
        price = fmt.price if fmt is not None else str
        qty = fmt.qty if fmt is not None else str
        out: dict[str, Any] = {
            "type": "exec", "kind": _EXEC_KIND.get(r.kind, str(r.kind)), "seq": r.seq,
            "ts": r.ts, "account": r.account, "symbol": r.symbol, "order_id": r.order_id,
            "client_order_id": r.client_order_id, "side": _side(r.side) if r.side else None,
            "price": price(r.price), "quantity": qty(r.quantity), "leaves": qty(r.leaves),
        }
        if r.kind == ExecKind.FILL:
            out.update(last_price=price(r.last_price), last_quantity=qty(r.last_quantity),
                       trade_id=r.trade_id)
        if r.kind == ExecKind.REJECTED:
            out.update(reason=_reason_name(r.reason), text=r.text)
        elif r.reason:
            out["reason"] = r.reason
        return out

    # -- observability ---------------------------------------------------------------------

    def statistics(self) -> GatewayStatistics:
        """A frozen snapshot of the gateway's counters. O(routes + error codes)."""
        return GatewayStatistics(
            http_requests=sum(self._requests.values()), ws_sessions_opened=self._ws_opened,
            ws_sessions_active=self._ws_active, ws_sessions_refused=self._ws_refused,
            ws_frames_sent=self._ws_frames, ws_messages_sent=self._ws_messages,
            ws_bytes_sent=self._ws_bytes, ws_slow_consumer_disconnects=self._ws_slow,
            ws_resyncs=self._ws_resyncs, ws_gaps=self._ws_gaps,
            ws_errors=sum(self._ws_errors.values()), ws_orders=self._ws_orders,
            ws_pending_max=max((s.pending() for s in self._sessions), default=0),
        )

    def prometheus(self) -> str:
        """This gateway's metrics in the Prometheus text format 0.0.4."""
        lines = [
            "# HELP tickline_http_requests_total HTTP requests by route and status code",
            "# TYPE tickline_http_requests_total counter",
        ]
        for (route, code), n in sorted(self._requests.items()):
            lines.append(f'tickline_http_requests_total{{route="{route}",code="{code}"}} {n}')
        lines += [
            "# HELP tickline_ws_errors_total typed errors sent to WebSocket clients, by code",
            "# TYPE tickline_ws_errors_total counter",
        ]
        lines.extend(f'tickline_ws_errors_total{{code="{code}"}} {n}'
                     for code, n in sorted(self._ws_errors.items()))
        lines += [
            "# HELP tickline_ws_sessions WebSocket sessions open now",
            "# TYPE tickline_ws_sessions gauge",
            f"tickline_ws_sessions {self._ws_active}",
            "# HELP tickline_ws_pending_max most messages waiting in one session now",
            "# TYPE tickline_ws_pending_max gauge",
            f"tickline_ws_pending_max {self.statistics().ws_pending_max}",
        ]
        text = "\n".join(lines) + "\n"
        st = self.statistics()
        counters = {
            "sessions_opened": st.ws_sessions_opened,
            "sessions_refused": st.ws_sessions_refused,
            "frames_sent": st.ws_frames_sent,
            "messages_sent": st.ws_messages_sent,
            "bytes_sent": st.ws_bytes_sent,
            "slow_consumer_disconnects": st.ws_slow_consumer_disconnects,
            "resyncs": st.ws_resyncs,
            "gaps": st.ws_gaps,
            "orders": st.ws_orders,
        }
        text += prometheus_text("tickline_ws", counters, [self._ws_send.snapshot()],
                                scale={"frame_send_seconds": 1e-9},
                                help_text={"frame_send_seconds": "seconds to write one "
                                           "WebSocket frame (includes waiting for the client)"})
        text += prometheus_text("tickline", {}, [self._http_latency.snapshot()],
                                scale={"http_request_seconds": 1e-9},
                                help_text={"http_request_seconds": "seconds to answer one HTTP "
                                           "request (excluding network)"})
        return text


# --- helpers -----------------------------------------------------------------------------------


def _response(status: int, body: bytes, content_type: str,
              extra: Sequence[tuple[str, str]] = ()) -> Response:
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Connection", "close"),
        *extra,
    ])
    if content_type == _HTML:
        headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'")
        headers["X-Frame-Options"] = "DENY"
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def _error(status: int, code: str, message: str, *, allow: str | None = None) -> Response:
    extra = [("Allow", allow)] if allow is not None else []
    return _response(status, _encoder.encode({"error": code, "message": message}), _JSON,
                     extra)


def _same_origin(origin: str, host: str | None) -> bool:
    if host is None:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
