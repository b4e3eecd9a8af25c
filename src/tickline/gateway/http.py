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
``GET /metrics``       Prometheus text 0.0.4 of the server's registry (this gateway's own
                       collector included), through ``prometheus_client``
``GET /health``        ``server.health()`` as JSON; 200 when ``status`` is ``ok``, else 503
``GET /book/SYM``      ``?depth=N`` (1..1000, default 10): levels best first as decimal
                       strings, the ``depth.SYM`` topic sequence, best bid and ask; 404 with
                       a JSON error for an unknown symbol, 400 for a bad ``depth``
``GET /stats.json``    stage latency percentiles, throughput and the recent latency
                       distribution (what the dashboard's ``stats`` channel pushes)
``GET /ws``            the WebSocket (below)
``POST /admin/ACTION`` halt / resume a symbol, kill / enable an account, with the admin key
                       (:mod:`tickline.gateway.admin`; off unless ``server.admin_key`` is set)
=====================  ===================================================================

Anything else is 404, a method other than GET is 405; every error body is JSON
``{"error": code, "message": text}``. A request with an ``Origin`` that is neither one of the
addresses this gateway listens on nor in ``[websocket] allowed_origins`` is refused (403,
``forbidden_origin``): a web page elsewhere -- a DNS-rebinding page included -- cannot drive
the WebSocket from a user's browser (the rule: :mod:`tickline.gateway.admission`).

WebSocket protocol
------------------
Client frames are JSON objects with an ``op`` (decoded with typed ``msgspec`` structs, never
``eval``/pickle); **every server frame is a JSON array of one or more messages**, each an
object with a ``type``. Prices and quantities are decimal strings (converted at this edge
with the instrument's ``price_to_str``/``qty_to_str``); sides are ``"buy"``/``"sell"``.

``{"op":"subscribe","symbol":"AAPL","channels":["depth","trades","bbo","bars"]}``
    replies ``subscribed`` (with ``symbols``, ``policy`` and each channel's ``buffer``), then
    per channel: ``depth`` -> a ``snapshot`` (every level,
    ``seq``) followed by ``depth`` updates with ``first_seq``/``seq``: ``first_seq`` is always
    the previous ``seq + 1``, and the levels listed (``[price, quantity, orders]``; quantity
    ``"0"`` and 0 orders = the level is gone) are the latest state of each level changed in
    ``first_seq..seq`` (depth conflated by level: exact, however far behind the client is).
    ``trades`` -> ``trade`` messages; ``bbo`` -> the current ``bbo``, then each change (only
    the latest is kept for a slow client); ``bars`` -> ``bar`` (1 s OHLCV and VWAP). The
    ``stats`` channel (no symbol) pushes a ``stats`` message about once a second.
    ``symbol`` may be a pattern with ``*`` (any run of characters): ``"*"`` is every
    symbol, ``"*-USD"`` those ending so; it opens one feed per matching symbol (each counts
    against ``max_subscriptions``; no match is ``unknown_symbol``). ``policy`` is the
    client's slow-consumer choice: ``drop_oldest`` (default; see *Slow consumers*) or
    ``disconnect`` (close the session, 1008, rather than drop or resync); ``buffer``
    (messages; depth: pending levels) is at most the server's ``trades_capacity``,
    ``bars_capacity`` or ``max_depth_levels`` (more is ``invalid_message`` naming it).
``{"op":"unsubscribe","symbol":"AAPL","channels":[...]}``
    (``channels`` omitted = all of that symbol's; ``symbol`` may be a pattern) replies
    ``unsubscribed``.
``{"op":"replay","channel":"trades","symbol":"AAPL","from_seq":5,"to_seq":9,"id":1}``
    gap recovery. ``trades``/``bars``: the messages ``from_seq..to_seq`` from the gateway's
    bounded per-topic history (``history_per_topic`` newest of each topic, kept contiguous:
    :mod:`tickline.stream.topic_history`) as one ``replay`` message (``messages``); when
    it no longer holds the whole range, a ``snapshot`` (``channel``, ``"resync": true``,
    ``messages``: what it holds, ``seq``: the newest, which the live feed continues after --
    what the session's feed still had pending up to ``seq`` is dropped). ``from_seq`` 0 is
    never held: it asks for that snapshot (the dashboard's first candles). ``depth``: a fresh
    depth ``snapshot`` in the subscribed feed's place.
``{"op":"ping","id":7}``
    replies ``{"type":"pong","id":7}``.
``{"op":"login","key":"demo-key-1","resume_from":0,"cancel_on_disconnect":false}``
    authenticates an account from the server configuration; replies ``login``
    (``account``, ``name``, ``last_report_seq``: the account's last report number now,
    ``cancel_on_disconnect``) and from then on streams that account's private ``exec``
    reports. ``resume_from=N`` (optional) first sends the account's reports ``N+1 ..
    last_report_seq`` (from memory or the journal; live output is held back meanwhile, so
    the order is exact), then live ones numbered above it; ``N`` beyond the last report is
    ``resume_unavailable``. ``cancel_on_disconnect`` cancels the orders this session
    entered that are still live when it ends (however it ends), as one journaled command
    (:mod:`tickline.venue`). Wrong keys are throttled per
    source address (``login_failure_burst`` at once, then ``login_failures_per_second``;
    beyond that ``rate_limited`` without the key being checked) and counted
    (``tickline_ws_login_failures_total``, ``tickline_ws_login_throttled_total``); three on
    one session close it.
``{"op":"new_order","symbol":"AAPL","side":"buy","price":"101.25","quantity":"10",
"order_type":"limit","tif":"gtc","client_order_id":"c1","post_only":false}``
    submits through :meth:`~tickline.exchange.Exchange.submit` (after login;
    ``client_order_id`` at most ``limits.max_client_order_id_bytes`` UTF-8 bytes, else
    ``invalid_order`` naming the limit). Optional: ``order_type`` ``limit`` | ``market`` |
    ``stop`` | ``stop_limit`` (stops need ``stop_price``; ``stop_limit`` a ``price``
    too), ``tif`` ``gtc`` | ``ioc`` | ``fok`` | ``gtd`` (with ``expire_time``, engine ns =
    Unix ns), ``stp`` ``default`` (the account's) | ``cancel_newest`` | ``cancel_oldest`` |
    ``cancel_both`` | ``off``, ``display_quantity`` (an iceberg's visible slice). The
    outcome arrives as ``exec`` reports (``kind``: new, rejected, fill, cancelled, replaced,
    expired, triggered; ``reason`` names the reject or cancel reason); the engine's rejects
    (post-only that would cross, a stop price on a limit order, ...) are typed reports.
``{"op":"cancel","symbol":"AAPL","order_id":5}`` (or ``"client_order_id":"c1"``)
    cancels one of the account's own orders.
``{"op":"replace","symbol":"AAPL","order_id":5,"price":"101.30","quantity":"8"}``
    (or ``"orig_client_order_id"``; optional new ``client_order_id``, ``stop_price``,
    ``display_quantity``; fields left out keep their value, ``quantity`` is the new total)
    cancel/replaces one of the account's orders; nothing to change is ``invalid_order``.
``{"op":"order_status","order_id":5,"id":1}`` (or ``"client_order_id"``; optional ``symbol``)
    replies ``order_status`` with ``order`` (``status`` new, partially_filled, filled,
    cancelled, expired; ``leaves``, ``cum_quantity``, ``avg_price``), answered in sequence
    after everything the account sent before; another account's order is ``unknown_order``
    exactly like one that does not exist.
``{"op":"open_orders","symbol":"AAPL","id":2}`` (``symbol`` optional)
    replies ``open_orders`` with ``orders``.
``{"op":"mass_cancel","symbol":"AAPL","side":"buy","id":3}`` (optional: all symbols, both sides)
    cancels the account's live orders (one journaled command): a ``cancelled`` report each,
    then ``mass_cancelled`` with the ``count``. In cluster mode with several shards, all
    symbols span shards: the error ``cross_shard_unsupported`` (permanent; cancel per symbol).

Private output -- ``exec`` reports and the answers to ``order_status``, ``open_orders`` and
``mass_cancel`` -- is one ordered stream per session, so an answer never overtakes a report
it reflects. ``id`` (optional, a number or a string) is echoed in the answer.

Errors are ``{"type":"error","code":...,"message":...}`` (with ``op`` once the request was
decoded) and ``code`` one of
``invalid_json`` (not JSON, or nested too deeply), ``invalid_message`` (wrong shape or
types), ``unknown_op``,
``unknown_symbol``, ``unknown_channel``, ``too_large``, ``binary_not_supported``,
``too_many_subscriptions``, ``not_authenticated``, ``bad_credentials``, ``login_disabled``,
``already_logged_in``, ``invalid_order``, ``unknown_order``, ``resume_unavailable``,
``resume_failed``, ``rate_limited``, ``busy``, ``unavailable`` (cluster mode: no engine can
take the request now, ``CLUSTER_UNAVAILABLE`` 412 elsewhere; nothing was logged, retry
later; the message says why) and ``stopping``; a request that fails changes nothing. Frames
above ``max_message_bytes`` get ``too_large``; above the library's hard ``max_size`` the
connection is closed with code 1009.

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

Sessions
--------
At most ``max_sessions`` WebSocket sessions; sessions that have not logged in (market data
only, like the dashboard) have their own smaller budget ``max_anonymous`` and at most
``max_per_address`` per source address; a connection beyond the anonymous budget is admitted
on probation (``ping`` and ``login`` only, closed unless logged in within
``login_timeout_seconds``); a login leaves these budgets. The rule and its reasons:
:mod:`tickline.gateway.admission`.

Configuration
-------------
Every limit above is a field of :class:`tickline.config.WebSocketConfig`, the ``[websocket]``
section of the server's TOML file (defaults and one-line meanings in :mod:`tickline.config`);
``HttpGateway(server)`` takes it from ``server.config``, and keyword arguments override single
fields (tests). The order rate comes from ``[limits]`` (``orders_per_second``, ``burst``).

Modules
-------
This module holds the HTTP routes and the gateway object; the rest is split by concern:
:mod:`~tickline.gateway.wsproto` (request structs, decoding, typed errors),
:mod:`~tickline.gateway.wssession` (a session and its sender),
:mod:`~tickline.gateway.wsfeeds` (its market-data feeds),
:mod:`~tickline.gateway.admission` (origins and session budgets),
:mod:`~tickline.gateway.stats` (counters and the stats sampler),
:mod:`~tickline.gateway.jsonfmt` (decimal-string JSON formatting) and
:mod:`~tickline.gateway.ratelimit` (token buckets).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import importlib.resources
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickline.config import WebSocketConfig
from tickline.core.metrics import FamiliesCollector, LatencyRecorder, exposition
from tickline.core.ratelimit import TokenBuckets
from tickline.exchange import Exchange
from tickline.gateway.admin import AdminEndpoint, AdminError
from tickline.gateway.admission import Admission, OriginPolicy
from tickline.gateway.jsonfmt import Format, encoder
from tickline.gateway.stats import (
    GatewayStatistics,
    HttpCollector,
    Sampler,
    WsCounters,
    hdr_summary,
)
from tickline.gateway.wsfeeds import Shared
from tickline.gateway.wssession import Session
from tickline.stream.topic_history import TopicHistory
from tickline.venue import VenueServices

if TYPE_CHECKING:
    from tickline.config import Account, ServerConfig

__all__ = ["GatewayStatistics", "HttpGateway", "ServerLike", "hdr_summary"]

_JSON = "application/json"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_ROUTES = ("/", "/metrics", "/health", "/book", "/stats.json", "/ws", "/admin", "other")
_MAX_BOOK_DEPTH = 1000
_THROTTLE_MAX_ADDRESSES = 16_384
"""Source addresses whose failed logins are remembered (least recently used forgotten)."""


class ServerLike(Protocol):
    """What the gateway needs from :class:`tickline.server.Server` (tests may pass a
    stand-in). ``config`` (optional) supplies the account keys for WebSocket login, the
    ``[websocket]`` settings and the order limits. ``registry`` holds the server's metric
    collectors: the gateway adds its own while it runs and serves the whole registry as
    ``/metrics``."""

    @property
    def exchange(self) -> Exchange: ...

    @property
    def registry(self) -> CollectorRegistry: ...

    def health(self) -> dict[str, Any]: ...


class HttpGateway:
    """HTTP routes and the WebSocket feed on one port (see the module doc).

    ``HttpGateway(server, settings)`` then ``await start(host, port)`` (returns the bound
    port; 0 = any free port) and ``await close()``. ``settings`` (default: the ``[websocket]``
    section of ``server.config``, else the defaults) holds every limit: ``max_message_bytes``
    per WebSocket request (``too_large`` error), ``max_frame_bytes`` the library's hard limit
    (close 1009), the session budgets (``max_sessions``, ``max_anonymous``,
    ``max_per_address``), ``max_subscriptions`` per session, ``send_timeout`` seconds for one
    frame before a slow consumer is closed, ``write_limit`` bytes buffered in user space per
    connection before a send waits, and ``send_buffer`` the kernel send buffer per WebSocket
    (``SO_SNDBUF``; ``None`` keeps the OS's autotuned default) -- together they bound what one
    slow client can hold. Keyword ``overrides`` replace single fields (validated the same
    way: :class:`~tickline.config.ConfigError`). Single-threaded: everything runs on the
    server's event loop.
    """

    def __init__(self, server: ServerLike, settings: WebSocketConfig | None = None,
                 **overrides: Any) -> None:
        self.server = server
        self.exchange: Exchange = server.exchange
        config: ServerConfig | None = getattr(server, "config", None)
        if settings is None:
            settings = config.websocket if config is not None else WebSocketConfig()
        self.settings = msgspec.structs.replace(settings, **overrides).validate()
        s = self.settings
        self.accounts: dict[str, Account] | None = (config.account_by_key()
                                                    if config is not None else None)
        limits = config.limits if config is not None else None
        self.orders_per_second = limits.orders_per_second if limits is not None else 1000.0
        self.order_burst = limits.burst if limits is not None else 100
        self.max_client_order_id_bytes = (limits.max_client_order_id_bytes
                                          if limits is not None else 64)
        self.formats = {i.symbol: Format(i) for i in self.exchange.instruments}
        self.services = VenueServices(self.exchange)
        self.topic_history = TopicHistory(s.history_per_topic)
        self.shared = Shared()
        self.counters = WsCounters()
        self.admission = Admission(s.max_sessions, s.max_anonymous, s.max_per_address)
        self.login_throttle = TokenBuckets(s.login_failures_per_second,
                                           float(s.login_failure_burst), _THROTTLE_MAX_ADDRESSES)
        self.origins = OriginPolicy((), s.allowed_origins)
        self.sampler = Sampler(self.exchange, self.counters, s.stats_interval,
                               self.session_count, self._push_stats)
        self._server: WsServer | None = None
        self._sessions: set[Session] = set()
        self._dashboard = b""
        self.port = 0
        self._requests: dict[tuple[str, int], int] = {}
        # Two significant figures (1 %) keep these histograms small (~4.6k counters), so a
        # scrape's percentile walk costs ~0.3 ms of loop time rather than ~3 ms.
        self._http_latency = LatencyRecorder("http_request_seconds", significant_figures=2)
        self.frame_send_latency = LatencyRecorder("frame_send_seconds", significant_figures=2)
        self.collector = HttpCollector(self.statistics, self.counters, self._requests,
                                       self.frame_send_latency, self._http_latency)
        self.services_collector = FamiliesCollector(
            lambda: self.services.families("tickline_ws"))
        self._registered = False
        self.admin = AdminEndpoint(
            self.exchange, config.server.admin_key if config is not None else None,
            {a.id for a in config.accounts} if config is not None else set())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (0 = any free port) and serve; returns the bound port."""
        self._dashboard = (importlib.resources.files("tickline.gateway")
                           .joinpath("static/dashboard.html").read_bytes())
        s = self.settings
        self._server = await serve(
            self._session, host, port, process_request=self._process,
            max_size=s.max_frame_bytes, max_queue=16, write_limit=s.write_limit,
            compression=None, ping_interval=20, ping_timeout=20, close_timeout=2,
            open_timeout=10, server_header="tickline",
        )
        sockets = list(self._server.sockets)
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        self.origins = OriginPolicy(
            [(str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock in sockets],
            s.allowed_origins)
        if s.history_per_topic and not self.topic_history.subscriptions:
            self.topic_history.attach(self.exchange.bus, ("trades.*", "bars.*.1s"),
                                      s.bus_capacity)
        self.sampler.start()
        if not self._registered:
            self.server.registry.register(self.collector)
            self.server.registry.register(self.services_collector)
            self._registered = True
        return self.port

    async def close(self) -> None:
        """Stop listening, close every WebSocket (1001) and wait for them. Idempotent."""
        self.sampler.stop()
        self.topic_history.close()
        if self._registered:
            self.server.registry.unregister(self.collector)
            self.server.registry.unregister(self.services_collector)
            self._registered = False
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
        return self.admission.sessions

    # -- HTTP ------------------------------------------------------------------------------

    async def _process(self, connection: ServerConnection,
                       request: Request) -> Response | None:
        """``/admin/...`` awaits its journaled outcome; every other route answers at once."""
        path = urlsplit(request.path).path
        if path == "/admin" or path.startswith("/admin/"):
            t0 = time.perf_counter_ns()
            response = await self._admin(request, path[len("/admin/"):])
            key = ("/admin", response.status_code)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._http_latency.record(time.perf_counter_ns() - t0)
            return response
        return self._route(connection, request)

    async def _admin(self, request: Request, action: str) -> Response:
        admin = self.admin
        if not admin.enabled:
            return _error(404, "not_found", "no admin endpoint (server.admin_key is not set)")
        method = getattr(request, "method", "GET")
        if method != "POST":
            return _error(405, "method_not_allowed",
                          f"method {method!r} not allowed; use POST", allow="POST")
        origin = request.headers.get("Origin")
        if not self.origins.allows(origin):
            return _error(403, "forbidden_origin", f"origin {str(origin)[:100]!r} refused")
        try:
            result = await admin.run(action, urlsplit(request.path).query, request.headers)
        except AdminError as e:
            return _error(e.status, e.code, e.message)
        except TimeoutError:
            return _error(504, "timeout", "the action was not journaled within 10 s")
        return _response(200, encoder.encode(result), _JSON)

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
        if not self.origins.allows(origin):
            return route, _error(403, "forbidden_origin",
                                 f"origin {str(origin)[:100]!r} is neither this server nor "
                                 f"in websocket.allowed_origins")
        if route == "/ws":
            refusal, _probation = self.admission.check(_peer(connection))
            if refusal is not None:
                self.counters.refused += 1
                return route, _error(503, refusal.code, refusal.message)
            return route, None
        if route == "/":
            return route, _response(200, self._dashboard, _HTML)
        if route == "/metrics":
            body = generate_latest(self.server.registry)
            return route, _response(200, body, _PROMETHEUS)
        if route == "/health":
            health = self.server.health()
            status = 200 if health.get("status") == "ok" else 503
            return route, _response(status, encoder.encode(health), _JSON)
        if route == "/stats.json":
            return route, _response(200, encoder.encode(self.stats()), _JSON)
        if route == "/book":
            return route, self._book(unquote(path[len("/book/"):]), parts.query)
        return route, _error(404, "not_found", f"no route {path[:100]!r}")

    def _book(self, symbol: str, query: str) -> Response:
        if symbol not in self.formats:
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
        return _response(200, encoder.encode(self.book(symbol, int(text))), _JSON)

    def book(self, symbol: str, depth: int = 10) -> dict[str, Any]:
        """The ``/book/<symbol>`` document: the best ``depth`` levels per side as decimal
        strings, consistent with ``depth.SYM`` sequence ``seq``. Raises ``KeyError`` for an
        unknown symbol."""
        fmt = self.formats[symbol]
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
        """The ``/stats.json`` document: the latest sample (before the first one: a preview
        that publishes nothing) with fresh stage percentiles and without ``type``. Built as
        a new dict: the published sample is shared with WebSocket sessions and never
        modified here."""
        sampler = self.sampler
        latest = sampler.latest or sampler.preview()
        doc = {k: v for k, v in latest.items() if k != "type"}
        doc["stages"] = sampler.stages()
        return doc

    # -- WebSocket -------------------------------------------------------------------------

    async def _session(self, ws: ServerConnection) -> None:
        address = _peer(ws)
        admission = self.admission
        # Checked again here: several handshakes may have passed _dispatch's check at once.
        refusal, probation = admission.check(address)
        if refusal is not None:
            self.counters.refused += 1
            with contextlib.suppress(Exception):
                await ws.close(1013, refusal.message[:120])
            return
        send_buffer = self.settings.send_buffer
        if send_buffer is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        admission.open(address, probation)
        session = Session(self, ws, address, probation)
        self._sessions.add(session)
        self.counters.opened += 1
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
            admission.close(address, logged_in=bool(session.account),
                            probation=session.probation)

    def _push_stats(self, stats: dict[str, Any]) -> None:
        for session in self._sessions:
            if session.watch_stats:
                session.stats = stats
                session.wake()

    # -- observability ---------------------------------------------------------------------

    def statistics(self) -> GatewayStatistics:
        """A frozen snapshot of the gateway's counters. O(routes + error codes + sessions)."""
        c = self.counters
        return GatewayStatistics(
            http_requests=sum(self._requests.values()), ws_sessions_opened=c.opened,
            ws_sessions_active=self.admission.sessions, ws_sessions_refused=c.refused,
            ws_frames_sent=c.frames, ws_messages_sent=c.messages,
            ws_bytes_sent=c.bytes, ws_slow_consumer_disconnects=c.slow,
            ws_resyncs=c.resyncs, ws_gaps=c.gaps,
            ws_errors=sum(c.errors.values()), ws_orders=c.orders,
            ws_pending_max=max((s.pending() for s in self._sessions), default=0),
            ws_sessions_anonymous=self.admission.anonymous + self.admission.probation,
            ws_login_failures=c.login_failures, ws_login_throttled=c.login_throttled,
            ws_login_timeouts=c.timeouts,
        )

    def prometheus(self) -> str:
        """This gateway's own metrics (:attr:`collector`) in the Prometheus text format."""
        return exposition(self.collector)


# --- helpers -----------------------------------------------------------------------------------


def _peer(connection: ServerConnection) -> str:
    """The source address of a connection (its IP, without the port)."""
    remote = connection.remote_address
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return str(remote)


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
    return _response(status, encoder.encode({"error": code, "message": message}), _JSON,
                     extra)
