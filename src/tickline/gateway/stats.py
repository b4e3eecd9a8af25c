"""The HTTP/WebSocket gateway's counters and the once-a-second stats sampler.

:class:`WsCounters` is the gateway's mutable tally (single writer: the event loop), shared
by the gateway, its sessions and their feeds; :class:`GatewayStatistics` is its frozen view.
:class:`Sampler` produces the ``stats`` documents of ``GET /stats.json`` and the WebSocket
``stats`` channel. A published sample is shared by every subscriber and never changed after
publication: readers copy it (see :meth:`Sampler.preview` for a document taken without
publishing anything). :class:`HttpCollector` exposes the counters and the gateway's two
histograms to Prometheus at scrape time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from tickline.core.metrics import (
    FamiliesCollector,
    LatencyRecorder,
    gauge,
    labelled_counter,
    metric_families,
)
from tickline.exchange import Exchange

__all__ = ["GatewayStatistics", "HttpCollector", "Sampler", "WsCounters", "hdr_summary"]

log = logging.getLogger(__name__)


class WsCounters:
    """What the gateway counts. Plain attributes: single writer (the event loop)."""

    __slots__ = ("bytes", "errors", "frames", "gaps", "login_failures", "login_throttled",
                 "messages", "opened", "orders", "refused", "replay_snapshots", "replays",
                 "resyncs", "slow", "stats_watchers", "timeouts")

    def __init__(self) -> None:
        self.opened = 0
        self.refused = 0
        self.frames = 0
        self.messages = 0
        self.bytes = 0
        self.slow = 0
        self.resyncs = 0
        self.gaps = 0
        self.orders = 0
        self.login_failures = 0
        self.login_throttled = 0
        self.timeouts = 0
        self.stats_watchers = 0
        self.replays = 0           # gap-recovery requests for trades/bars
        self.replay_snapshots = 0  # of those, answered with a snapshot (range not held)
        self.errors: dict[str, int] = {}


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
    ws_sessions_anonymous: int = 0
    ws_login_failures: int = 0
    ws_login_throttled: int = 0
    ws_login_timeouts: int = 0


class HttpCollector(FamiliesCollector):
    """The HTTP/WebSocket gateway's metrics at scrape time: requests by route and status
    code, WebSocket errors by code, the session gauges, the counters of
    :class:`GatewayStatistics` (``tickline_ws_*``), the frame-send and request-time
    histograms. ``requests`` is the gateway's live ``(route, code) -> count`` dict (read,
    never changed, here). O(routes + error codes + sessions) per scrape."""

    def __init__(self, statistics: Callable[[], GatewayStatistics], counters: WsCounters,
                 requests: Mapping[tuple[str, int], int], frame_send: LatencyRecorder,
                 http_latency: LatencyRecorder) -> None:
        def families() -> list[Metric]:
            st = statistics()
            ws_counters = {
                "sessions_opened": st.ws_sessions_opened,
                "sessions_refused": st.ws_sessions_refused,
                "frames_sent": st.ws_frames_sent,
                "messages_sent": st.ws_messages_sent,
                "bytes_sent": st.ws_bytes_sent,
                "slow_consumer_disconnects": st.ws_slow_consumer_disconnects,
                "resyncs": st.ws_resyncs,
                "gaps": st.ws_gaps,
                "orders": st.ws_orders,
                "login_failures": st.ws_login_failures,
                "login_throttled": st.ws_login_throttled,
                "login_timeouts": st.ws_login_timeouts,
            }
            by_route = CounterMetricFamily("tickline_http_requests",
                                           "HTTP requests by route and status code",
                                           labels=["route", "code"])
            for (route, code), n in sorted(requests.items()):
                by_route.add_metric([route, str(code)], n)
            return [
                by_route,
                labelled_counter("tickline_ws_errors",
                                 "typed errors sent to WebSocket clients, by code", "code",
                                 sorted(counters.errors.items())),
                gauge("tickline_ws_sessions", "WebSocket sessions open now",
                      st.ws_sessions_active),
                gauge("tickline_ws_sessions_anonymous",
                      "WebSocket sessions open now, not logged in", st.ws_sessions_anonymous),
                gauge("tickline_ws_pending_max", "most messages waiting in one session now",
                      st.ws_pending_max),
                *metric_families(
                    "tickline_ws", ws_counters, [frame_send.snapshot()],
                    scale={"frame_send_seconds": 1e-9},
                    help_text={"frame_send_seconds": "seconds to write one WebSocket frame "
                                                     "(includes waiting for the client)",
                               "login_failures": "WebSocket logins with an unknown key",
                               "login_throttled": "WebSocket logins refused unchecked "
                                                  "(rate_limited) after too many failures "
                                                  "from the address",
                               "login_timeouts": "WebSocket sessions on probation closed for "
                                                 "not logging in in time"}),
                *metric_families(
                    "tickline", {}, [http_latency.snapshot()],
                    scale={"http_request_seconds": 1e-9},
                    help_text={"http_request_seconds": "seconds to answer one HTTP request "
                                                       "(excluding network)"}),
            ]

        super().__init__(families)


def hdr_summary(rec: LatencyRecorder) -> dict[str, int]:
    """``count``, ``max`` and the :data:`~tickline.core.metrics.PERCENTILES` of ``rec``
    (fast: see :func:`tickline.core.metrics.percentiles_of`). Runs on the event loop."""
    snap = rec.snapshot()
    return {"count": snap.count, "max": snap.max,
            **{f"p{p:g}": v for p, v in snap.percentiles.items()}}


#: Latency distribution buckets for the dashboard: powers of two in ns, 1 us .. ~17 s.
_BUCKET_EXPONENTS = tuple(range(10, 35))


class Sampler:
    """Once a second: throughput from the exchange's counters, stage percentiles and the
    distribution of the last second's end-to-end latencies (difference of two cumulative
    HDR bucket scans). Runs on a ``call_later`` timer on the loop, not a polling task; the
    histogram work (about 2 ms per sample: six recorders' counters summed in C) is done only
    while a WebSocket session watches the ``stats`` channel. Each sample is handed to
    ``publish`` and kept as :attr:`latest`; neither is modified afterwards."""

    def __init__(self, exchange: Exchange, counters: WsCounters, interval: float,
                 sessions: Callable[[], int], publish: Callable[[dict[str, Any]], None]) -> None:
        self.exchange = exchange
        self.counters = counters
        self.interval = interval
        self._sessions = sessions
        self._publish = publish
        self.symbols = [i.symbol for i in exchange.instruments]
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
        ex = self.exchange
        return (time.monotonic(), ex.commands, ex.events, ex.engine.next_trade_id - 1,
                self.counters.messages)

    def _tick(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)
        try:
            self.sample()
        except Exception:  # the dashboard must never take the server down
            log.exception("stats sample failed")

    def sample(self) -> dict[str, Any]:
        """Take one sample now, publish it and keep it as :attr:`latest`; returns it."""
        stats = self._document(commit=True)
        self.latest = stats
        self._publish(stats)
        return stats

    def preview(self) -> dict[str, Any]:
        """A stats document as of now that changes nothing: no rate window advanced,
        nothing published (``GET /stats.json`` before the first tick)."""
        return self._document(commit=False)

    def _document(self, *, commit: bool) -> dict[str, Any]:
        now = self._counters()
        prev = self._prev or now
        dt = now[0] - prev[0]
        rates = {
            "commands_per_s": (now[1] - prev[1]) / dt if dt > 0 else 0.0,
            "events_per_s": (now[2] - prev[2]) / dt if dt > 0 else 0.0,
            "trades_per_s": (now[3] - prev[3]) / dt if dt > 0 else 0.0,
            "ws_messages_per_s": (now[4] - prev[4]) / dt if dt > 0 else 0.0,
        }
        point = {"t": round(now[0] - self.started, 3), **rates}
        if commit:
            self._prev = now
            self.history.append(point)
        watched = self.counters.stats_watchers > 0
        return {
            "type": "stats",
            "uptime_s": round(now[0] - self.started, 3),
            "symbols": list(self.symbols),
            "commands": now[1],
            "events": now[2],
            "trades": now[3],
            "last_seq": self.exchange.engine.last_seq,
            "rates": rates,
            "history": list(self.history) if commit else [*self.history, point],
            "stages": self.stages() if watched else {},
            "latency": (self._distribution(commit=commit) if watched
                        else self.latest.get("latency", {})),
            "gateway": {
                "ws_sessions": self._sessions(),
                "ws_slow_consumer_disconnects": self.counters.slow,
            },
        }

    def stages(self) -> dict[str, dict[str, int]]:
        """Percentiles of each pipeline stage's latency, now."""
        ex = self.exchange
        recorders: list[tuple[str, LatencyRecorder]] = [
            ("queue_wait", ex.processor.queue_wait),
            ("match", ex.stage_match),
            ("journal", ex.stage_journal),
            ("publish", ex.stage_publish),
            ("end_to_end", ex.processor.end_to_end),
        ]
        return {name: hdr_summary(rec) for name, rec in recorders}

    def _distribution(self, *, commit: bool) -> dict[str, Any]:
        rec = self.exchange.processor.end_to_end
        hist = rec.histogram
        counts = memoryview(hist.counts).cast("B").cast("Q")
        limit = hist.counts_len
        edges = [min(hist.get_counts_array_index(1 << k), limit) for k in _BUCKET_EXPONENTS]
        cumulative = [sum(counts[: edges[0]])]
        cumulative.extend(sum(counts[a:b]) for a, b in zip(edges, [*edges[1:], limit],
                                                           strict=True))
        prev = self._prev_buckets
        if commit:
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
